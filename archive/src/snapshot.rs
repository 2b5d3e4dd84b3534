//! Snapshot files: a sealed summary followed by a sealed manifest.
//!
//! ```text
//! "EXRSNAP1" || summary length (u32 LE) || sealed summary || sealed manifest
//! ```
//! Listing snapshots opens only the small summaries. The manifest is opened on demand, validated
//! once with bytecheck, and then read in place (zero-copy). A damaged manifest fails only its own
//! snapshot: the others, and the summary of the damaged one, still open.

use crate::crypto::{Entropy, Keys};
use crate::envelope::{open_section, open_section_into, seal_section};
use crate::error::{Error, Result};
use crate::id::Id;
use crate::manifest::{ArchivedManifest, Manifest, Summary, MANIFEST_VERSION};
use crate::storage::{FileKind, Storage};
use rkyv::rancor;
use rkyv::util::AlignedVec;

pub const SNAPSHOT_MAGIC: &[u8; 8] = b"EXRSNAP1";
const SECTION_SUMMARY: u8 = 1;
const SECTION_MANIFEST: u8 = 2;

fn aad(section: u8) -> [u8; 9] {
    let mut a = [0u8; 9];
    a[..8].copy_from_slice(SNAPSHOT_MAGIC);
    a[8] = section;
    a
}

/// Serialises and seals a snapshot; returns its id and bytes. `summary.manifest_hash` is filled in.
/// The manifest is taken by value and dropped as soon as it is serialised, so its many small
/// allocations are gone before compression and sealing make their copies (a 100,000-item
/// manifest is most of a backup's peak memory).
pub fn encode(
    keys: &Keys,
    entropy: &Entropy,
    level: i32,
    mut summary: Summary,
    mut manifest: Manifest,
) -> Result<(Id, Vec<u8>)> {
    manifest.items.shrink_to_fit();
    let buf = AlignedVec::<16>::with_capacity(serialized_size_estimate(&manifest));
    let m = rkyv::api::high::to_bytes_in::<_, rancor::Error>(&manifest, buf)
        .map_err(|e| Error::Other(format!("serialising manifest: {e}")))?;
    drop(manifest);
    let sealed_manifest = seal_section(keys, entropy, &aad(SECTION_MANIFEST), level, &m);
    drop(m);
    summary.manifest_hash = *blake3::hash(&sealed_manifest).as_bytes();
    summary.version = MANIFEST_VERSION;
    let s = rkyv::to_bytes::<rancor::Error>(&summary).map_err(|e| Error::Other(format!("serialising summary: {e}")))?;
    let sealed_summary = seal_section(keys, entropy, &aad(SECTION_SUMMARY), level, &s);
    let mut out = Vec::with_capacity(12 + sealed_summary.len() + sealed_manifest.len());
    out.extend_from_slice(SNAPSHOT_MAGIC);
    out.extend_from_slice(&(sealed_summary.len() as u32).to_le_bytes());
    out.extend_from_slice(&sealed_summary);
    out.extend_from_slice(&sealed_manifest);
    Ok((Id::of_content(&out), out))
}

/// An upper bound of a manifest's rkyv size, so its buffer is allocated once instead of doubling.
fn serialized_size_estimate(m: &Manifest) -> usize {
    let folders: usize = m.folders.iter().map(|f| 28 + f.name.len() + f.source_id.len() + f.folder_class.len()).sum();
    let items: usize = m
        .items
        .iter()
        .map(|i| {
            112 + i.name.len()
                + i.source_id.len()
                + i.change_key.len()
                + i.item_class.len()
                + i.subject.len()
                + i.sender.len()
                + 32 * i.chunks.len()
        })
        .sum();
    let skipped: usize = m.skipped.iter().map(|s| 20 + s.source_id.len() + s.error.len()).sum();
    // alignment padding: at most 7 bytes before each array, 32 for the root
    folders + items + skipped + m.source_state.len() + 8 * (m.folders.len() + m.skipped.len() + 4) + 64
}

fn aligned(bytes: &[u8]) -> AlignedVec {
    let mut v = AlignedVec::with_capacity(bytes.len());
    v.extend_from_slice(bytes);
    v
}

fn open_summary(keys: &Keys, head: &[u8], name: &str) -> Result<(Summary, usize)> {
    let what = format!("snapshot {name}");
    if head.len() < 12 || &head[..8] != SNAPSHOT_MAGIC {
        return Err(Error::damaged(what, "does not start with EXRSNAP1"));
    }
    let slen = u32::from_le_bytes(head[8..12].try_into().expect("4")) as usize;
    let sealed = head.get(12..12 + slen).ok_or_else(|| Error::damaged(&what, "truncated summary"))?;
    let body = aligned(&open_section(keys, &aad(SECTION_SUMMARY), sealed, &format!("{what} (summary)"))?);
    crate::manifest_check::check_summary(&body)
        .map_err(|e| Error::damaged(format!("{what} (summary)"), e.to_string()))?;
    let summary = rkyv::from_bytes::<Summary, rancor::Error>(&body)
        .map_err(|e| Error::damaged(format!("{what} (summary)"), format!("invalid structure: {e}")))?;
    if summary.version != MANIFEST_VERSION {
        return Err(Error::UnsupportedVersion {
            what: "snapshot manifest".into(),
            version: summary.version,
            supported: MANIFEST_VERSION,
        });
    }
    Ok((summary, 12 + slen))
}

/// Reads only a snapshot's summary, whatever the manifest's size.
pub fn read_summary(storage: &dyn Storage, keys: &Keys, id: &Id) -> Result<Summary> {
    let size = storage.size(FileKind::Snapshot, &id.to_hex())?;
    Ok(read_summary_sized(storage, keys, id, size)?.0)
}

/// Bytes read from a snapshot's start in one go: a summary fits, so it costs one read.
const HEAD_GUESS: u64 = 4096;

/// `read_summary` for a snapshot whose size is known (from a listing); also returns the sealed
/// head (magic, length, sealed summary) for the local summary cache.
pub fn read_summary_sized(storage: &dyn Storage, keys: &Keys, id: &Id, size: u64) -> Result<(Summary, Vec<u8>)> {
    let name = id.to_hex();
    let mut head = storage.get_range(FileKind::Snapshot, &name, 0, size.min(HEAD_GUESS) as usize)?;
    if head.len() < 12 {
        return Err(Error::damaged(format!("snapshot {name}"), "shorter than its header"));
    }
    let slen = u32::from_le_bytes(head[8..12].try_into().expect("4")) as u64;
    if 12 + slen > size {
        return Err(Error::damaged(format!("snapshot {name}"), "summary runs past the end of the file"));
    }
    if 12 + slen > head.len() as u64 {
        head = storage.get_range(FileKind::Snapshot, &name, 0, 12 + slen as usize)?;
    }
    head.truncate(12 + slen as usize);
    let (summary, _) = open_summary(keys, &head, &name)?;
    Ok((summary, head))
}

/// Opens a sealed head kept in the local cache (the same bytes `read_summary_sized` returned).
pub fn open_cached_summary(keys: &Keys, head: &[u8], id: &Id) -> Result<Summary> {
    Ok(open_summary(keys, head, &id.to_hex())?.0)
}

/// An opened snapshot: its summary plus a validated manifest read in place.
pub struct Snapshot {
    pub id: Id,
    pub summary: Summary,
    manifest: AlignedVec,
}

impl Snapshot {
    pub fn load(storage: &dyn Storage, keys: &Keys, id: &Id) -> Result<Snapshot> {
        let name = id.to_hex();
        let raw = storage.get(FileKind::Snapshot, &name)?;
        let what = format!("snapshot {name}");
        if Id::of_content(&raw) != *id {
            return Err(Error::damaged(&what, "content does not match its name"));
        }
        let (summary, end) = open_summary(keys, &raw, &name)?;
        let sealed_manifest = &raw[end..];
        if *blake3::hash(sealed_manifest).as_bytes() != summary.manifest_hash {
            return Err(Error::damaged(format!("{what} (manifest)"), "does not belong to its summary"));
        }
        let mut manifest = AlignedVec::new();
        open_section_into(keys, &aad(SECTION_MANIFEST), sealed_manifest, &format!("{what} (manifest)"), &mut manifest)?;
        drop(raw);
        let damaged = |e: String| Error::damaged(format!("{what} (manifest)"), e);
        let counts = crate::manifest_check::check_manifest(&manifest).map_err(|e| damaged(e.to_string()))?;
        rkyv::access::<ArchivedManifest, rancor::Error>(&manifest)
            .map_err(|e| damaged(format!("invalid structure: {e}")))?;
        crate::manifest_check::check_counts((summary.items, summary.bytes, summary.skipped), counts)
            .map_err(|e| Error::damaged(&what, e.to_string()))?;
        Ok(Snapshot { id: *id, summary, manifest })
    }

    /// The manifest, read in place.
    pub fn manifest(&self) -> &ArchivedManifest {
        // SAFETY: `load` validated exactly these bytes with bytecheck, and they are never mutated.
        unsafe { rkyv::access_unchecked::<ArchivedManifest>(&self.manifest) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::MasterKey;
    use crate::manifest::{Folder, Item, NO_PARENT};
    use crate::storage::LocalStorage;

    fn sample() -> (Summary, Manifest) {
        let summary = Summary {
            time_ms: 1_700_000_000_000,
            items: 1,
            bytes: 5,
            skipped: 0,
            version: 0,
            run_id: [1; 16],
            manifest_hash: [0; 32],
            parent: vec![],
            mailbox: b"alice@example.com".to_vec(),
            source: b"dir:/x".to_vec(),
            host: b"h".to_vec(),
        };
        let manifest = Manifest {
            folders: vec![Folder { parent: NO_PARENT, name: vec![], source_id: vec![], folder_class: vec![] }],
            items: vec![Item {
                received_ms: 5,
                size: 5,
                folder: 0,
                flags: 0,
                blob_hash: [2; 32],
                name: b"a.eml".to_vec(),
                source_id: b"a.eml".to_vec(),
                change_key: vec![],
                item_class: b"IPM.Note".to_vec(),
                subject: "Grüße".as_bytes().to_vec(),
                sender: vec![],
                chunks: vec![[3; 32]],
            }],
            skipped: vec![],
            source_state: vec![],
        };
        (summary, manifest)
    }

    #[test]
    fn write_read_and_damage_stays_local() {
        let keys = Keys::derive(MasterKey([4; 32]));
        let t = tempfile::tempdir().unwrap();
        let s = LocalStorage::new(t.path());
        s.create_layout().unwrap();
        let (summary, manifest) = sample();
        let (id, bytes) = encode(&keys, &Entropy::os(), 3, summary.clone(), manifest).unwrap();
        s.put(FileKind::Snapshot, &id.to_hex(), &bytes).unwrap();
        let snap = Snapshot::load(&s, &keys, &id).unwrap();
        assert_eq!(snap.summary.mailbox, summary.mailbox);
        assert_eq!(read_summary(&s, &keys, &id).unwrap(), snap.summary);
        let m = snap.manifest();
        assert_eq!(m.items.len(), 1);
        assert_eq!(crate::manifest::text(&m.items[0].subject), "Grüße");
        // flip a byte in the manifest section: the summary still lists, the manifest is damage
        let mut bad = bytes.clone();
        let n = bad.len();
        bad[n - 20] ^= 1;
        let bad_id = Id::of_content(&bad);
        s.put(FileKind::Snapshot, &bad_id.to_hex(), &bad).unwrap();
        assert!(read_summary(&s, &keys, &bad_id).is_ok());
        let err = Snapshot::load(&s, &keys, &bad_id).err().unwrap();
        assert_eq!(err.class(), crate::ErrorClass::Damage);
        assert!(err.to_string().contains("manifest"));
    }
}
