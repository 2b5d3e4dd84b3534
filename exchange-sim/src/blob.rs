//! Item streams as the simulator makes them: imitations of Exchange fast-transfer streams
//! (MS-OXCFXICS): start/end markers, property tags with typed values, text that compresses like
//! mail, and attachments drawn from a pool shared across mailboxes; and the reading back of the
//! few properties the server learns from an uploaded stream.

use crate::model::{Item, WORDS};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const START_MESSAGE: u32 = 0x400C_0003;
const END_MESSAGE: u32 = 0x400D_0003;
const NEW_ATTACH: u32 = 0x4000_0003;
const END_ATTACH: u32 = 0x400E_0003;
const TAG_CLASS: u32 = 0x001A_001F;
const TAG_SUBJECT: u32 = 0x0037_001F;
const TAG_SENDER: u32 = 0x0C1F_001F;
const TAG_DELIVERY_TIME: u32 = 0x0E06_0040;
/// 100 ns intervals from 1601-01-01 to 1970-01-01.
const FILETIME_UNIX_EPOCH: i128 = 116_444_736_000_000_000;

fn rfc3339_to_filetime(s: &str) -> Option<u64> {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()?;
    u64::try_from(t.unix_timestamp_nanos() / 100 + FILETIME_UNIX_EPOCH).ok()
}

fn filetime_to_rfc3339(ft: u64) -> Option<String> {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos((ft as i128 - FILETIME_UNIX_EPOCH) * 100).ok()?;
    t.format(&time::format_description::well_known::Rfc3339).ok()
}

/// What the server learns from an uploaded stream, as Exchange does when it imports one.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct BlobProps {
    pub class: String,
    pub subject: String,
    pub sender: String,
    pub received: String,
}

/// Reads the message-level properties of a stream in the simulator's format (the subset of
/// MS-OXCFXICS it writes). Unknown content ends the scan; what was read so far is kept.
pub fn blob_props(blob: &[u8]) -> BlobProps {
    let mut p = BlobProps::default();
    let mut pos = 0;
    let u32_at = |pos: usize| blob.get(pos..pos + 4).map(|b| u32::from_le_bytes(b.try_into().expect("4")));
    while let Some(tag) = u32_at(pos) {
        pos += 4;
        match tag {
            START_MESSAGE | END_MESSAGE | END_ATTACH => {}
            NEW_ATTACH => break,
            TAG_DELIVERY_TIME => {
                let Some(b) = blob.get(pos..pos + 8) else { break };
                p.received = filetime_to_rfc3339(u64::from_le_bytes(b.try_into().expect("8"))).unwrap_or_default();
                pos += 8;
            }
            t if t & 0xFFFF == 0x001F || t & 0xFFFF == 0x0102 => {
                let Some(len) = u32_at(pos) else { break };
                pos += 4;
                let Some(v) = blob.get(pos..pos + len as usize) else { break };
                pos += len as usize;
                if t & 0xFFFF == 0x001F {
                    let units: Vec<u16> =
                        v.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])).take_while(|&u| u != 0).collect();
                    let s = String::from_utf16_lossy(&units);
                    match t {
                        TAG_CLASS => p.class = s,
                        TAG_SUBJECT => p.subject = s,
                        TAG_SENDER => p.sender = s,
                        _ => {}
                    }
                }
            }
            _ => break,
        }
    }
    p
}

fn prop_string(out: &mut Vec<u8>, tag: u32, s: &str) {
    out.extend_from_slice(&tag.to_le_bytes());
    let utf16: Vec<u8> = s.encode_utf16().chain(std::iter::once(0)).flat_map(|u| u.to_le_bytes()).collect();
    out.extend_from_slice(&(utf16.len() as u32).to_le_bytes());
    out.extend_from_slice(&utf16);
}

fn prop_binary(out: &mut Vec<u8>, tag: u32, b: &[u8]) {
    out.extend_from_slice(&tag.to_le_bytes());
    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
    out.extend_from_slice(b);
}

/// Attachments that recur across mailboxes (the all-staff PDF): 8 of 64 KiB–1 MiB.
fn shared_attachment(seed: u64, n: u64) -> Vec<u8> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x00a7_7ac4 ^ (n << 32));
    let mut b = vec![0u8; rng.gen_range(64 * 1024..1024 * 1024)];
    rng.fill(&mut b[..]);
    b
}

pub(crate) fn generate_blob(seed: u64, key: u64, version: u32, item: &Item) -> Vec<u8> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ key ^ ((version as u64) << 48));
    let mut out = Vec::new();
    out.extend_from_slice(&START_MESSAGE.to_le_bytes());
    prop_string(&mut out, TAG_CLASS, &item.class); // PidTagMessageClass
    prop_string(&mut out, TAG_SUBJECT, &item.subject); // PidTagSubject
    prop_string(&mut out, TAG_SENDER, &item.sender); // PidTagSenderEmailAddress
    if let Some(ft) = rfc3339_to_filetime(&item.received) {
        out.extend_from_slice(&TAG_DELIVERY_TIME.to_le_bytes()); // PidTagMessageDeliveryTime
        out.extend_from_slice(&ft.to_le_bytes());
    }
    if item.class == "IPM.Appointment" {
        // PidLidGlobalObjectId: the calendar UID that must survive a restore.
        let mut goid = b"\x04\x00\x00\x00\x82\x00\xE0\x00\x74\xC5\xB7\x10\x1A\x82\xE0\x08".to_vec();
        goid.extend_from_slice(&key.to_le_bytes());
        prop_binary(&mut out, 0x8003_0102, &goid);
    }
    let words = rng.gen_range(300..8000);
    let mut body = String::with_capacity(words * 7);
    for i in 0..words {
        body.push_str(WORDS[rng.gen_range(0..WORDS.len())]);
        body.push(if i % 14 == 13 { '\n' } else { ' ' });
    }
    body.push_str(&format!("\nversion {version}\n"));
    prop_string(&mut out, 0x1000_001F, &body); // PidTagBody
    if rng.gen_ratio(1, 10) {
        out.extend_from_slice(&NEW_ATTACH.to_le_bytes());
        let data = if rng.gen_ratio(2, 3) {
            shared_attachment(seed, rng.gen_range(0..8))
        } else {
            let mut b = vec![0u8; rng.gen_range(8 * 1024..256 * 1024)];
            rng.fill(&mut b[..]);
            b
        };
        prop_binary(&mut out, 0x3701_0102, &data); // PidTagAttachDataBinary
        out.extend_from_slice(&END_ATTACH.to_le_bytes());
    }
    out.extend_from_slice(&END_MESSAGE.to_le_bytes());
    out
}
