//! Pack files: many sealed blobs followed by a sealed header that lists them.
//!
//! ```text
//! blob* || sealed header || header length (u32 LE) || "EXRPACK1"
//! ```
//! A pack's name is the unkeyed BLAKE3 of all its bytes, so anyone can check a pack's integrity
//! without a key (`verify --no-key`). Each blob is sealed with its chunk id, compression flag and raw
//! length as associated data, so a blob cannot be moved to another id or reinterpreted.

use crate::crypto::{Entropy, Keys, SEAL_OVERHEAD};
use crate::envelope::{compress, decompress};
use crate::error::{Error, Result};
use crate::id::Id;
use crate::storage::{FileKind, Storage, Upload};

pub const PACK_MAGIC: &[u8; 8] = b"EXRPACK1";
pub const PACK_HEADER_VERSION: u8 = 1;
const ENTRY_LEN: usize = 32 + 4 + 4 + 4 + 1;
const TRAILER_LEN: usize = 4 + 8;

/// Room reserved beyond the pack size where a pack is gathered in memory (an object store): the
/// last blob passes the size, and the header and trailer follow.
const PACK_SLACK: usize = 1024 * 1024;

/// Where a blob lives inside a pack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackEntry {
    pub id: Id,
    pub offset: u32,
    /// Stored length: sealed bytes including nonce and tag.
    pub length: u32,
    /// Length of the chunk before compression.
    pub raw_length: u32,
    pub compression: u8,
}

/// A blob ready to be appended to a pack.
pub struct SealedBlob {
    pub id: Id,
    pub compression: u8,
    pub raw_length: u32,
    pub bytes: Vec<u8>,
}

fn blob_aad(id: &Id, compression: u8, raw_length: u32) -> [u8; 37] {
    let mut aad = [0u8; 37];
    aad[..32].copy_from_slice(&id.0);
    aad[32] = compression;
    aad[33..].copy_from_slice(&raw_length.to_le_bytes());
    aad
}

/// Compresses (when worth it) and seals one chunk whose id is already known.
pub fn seal_blob(keys: &Keys, entropy: &Entropy, level: i32, id: Id, data: &[u8]) -> SealedBlob {
    let (compression, stored) = compress(level, data);
    let raw_length = data.len() as u32;
    let bytes = keys.seal(entropy, &blob_aad(&id, compression, raw_length), &stored);
    SealedBlob { id, compression, raw_length, bytes }
}

/// Opens a blob read from a pack and proves it is the chunk `entry.id` names.
pub fn open_blob(keys: &Keys, pack: &Id, entry: &PackEntry, sealed: &[u8]) -> Result<Vec<u8>> {
    open_blob_checked(keys, pack, entry, sealed, true)
}

/// As `open_blob`; with `check_id` false the keyed hash of the plaintext is not recomputed. The
/// AEAD tag already binds the blob to its id (associated data), so only a writer that sealed wrong
/// data under its own key could slip through; callers that skip it check the whole item's hash.
pub fn open_blob_checked(keys: &Keys, pack: &Id, entry: &PackEntry, sealed: &[u8], check_id: bool) -> Result<Vec<u8>> {
    let what = || format!("pack {pack}");
    let stored = keys.open(&blob_aad(&entry.id, entry.compression, entry.raw_length), sealed).ok_or_else(|| {
        Error::damaged(what(), format!("blob {} at offset {} failed authentication", entry.id.short(), entry.offset))
    })?;
    let data = decompress(entry.compression, &stored, Some(entry.raw_length as usize))
        .map_err(|e| Error::damaged(what(), format!("blob {}: {e}", entry.id.short())))?;
    if check_id && keys.chunk_id(&data) != entry.id {
        return Err(Error::damaged(what(), format!("blob {} does not hash to its id", entry.id.short())));
    }
    Ok(data)
}

/// Accumulates blobs into one pack, written to an [`Upload`] as they come (on a local repository
/// straight to a temporary file: no pack is held in memory).
pub struct PackBuilder {
    upload: Upload,
    hasher: blake3::Hasher,
    entries: Vec<PackEntry>,
}

/// A pack written whole, not yet stored under its name.
pub struct FinishedPack {
    pub id: Id,
    pub upload: Upload,
    pub entries: Vec<PackEntry>,
}

impl PackBuilder {
    pub fn new(upload: Upload) -> Self {
        PackBuilder { upload, hasher: blake3::Hasher::new(), entries: Vec::new() }
    }

    /// The pack being filled in `slot`; a new one (an upload of `storage` with room for a pack of
    /// `pack_size` bytes) if there is none. Writers keep `None` until their first blob, so a pack
    /// is never started without one.
    pub fn current<'a>(
        slot: &'a mut Option<PackBuilder>,
        storage: &dyn Storage,
        pack_size: usize,
    ) -> Result<&'a mut PackBuilder> {
        match slot {
            Some(b) => Ok(b),
            None => Ok(slot.insert(PackBuilder::new(storage.start_upload(FileKind::Pack, pack_size + PACK_SLACK)?))),
        }
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.upload.len()
    }

    pub fn add(&mut self, blob: SealedBlob) -> Result<()> {
        let offset = u32::try_from(self.upload.len())
            .map_err(|_| Error::Other("a pack grew past 4 GiB (the pack size is at most 1 GiB)".into()))?;
        self.write(&blob.bytes)?;
        self.entries.push(PackEntry {
            id: blob.id,
            offset,
            length: blob.bytes.len() as u32,
            raw_length: blob.raw_length,
            compression: blob.compression,
        });
        Ok(())
    }

    fn write(&mut self, bytes: &[u8]) -> Result<()> {
        self.hasher.update(bytes);
        self.upload.write(bytes)
    }

    /// Appends the sealed header and trailer; the pack's name is the hash of all its bytes.
    pub fn finish(mut self, keys: &Keys, entropy: &Entropy) -> Result<FinishedPack> {
        let header = encode_header(&self.entries);
        let sealed = keys.seal(entropy, PACK_MAGIC, &header);
        self.write(&sealed)?;
        self.write(&(sealed.len() as u32).to_le_bytes())?;
        self.write(PACK_MAGIC)?;
        Ok(FinishedPack { id: Id(*self.hasher.finalize().as_bytes()), upload: self.upload, entries: self.entries })
    }
}

fn encode_header(entries: &[PackEntry]) -> Vec<u8> {
    let mut h = Vec::with_capacity(5 + entries.len() * ENTRY_LEN);
    h.push(PACK_HEADER_VERSION);
    h.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    for e in entries {
        h.extend_from_slice(&e.id.0);
        h.extend_from_slice(&e.offset.to_le_bytes());
        h.extend_from_slice(&e.length.to_le_bytes());
        h.extend_from_slice(&e.raw_length.to_le_bytes());
        h.push(e.compression);
    }
    h
}

/// Decodes an opened pack header; checks that every blob lies within `body_len` bytes.
pub fn decode_header(h: &[u8], pack: &Id, body_len: u64) -> Result<Vec<PackEntry>> {
    let bad = |d: String| Error::damaged(format!("pack {pack}"), d);
    if h.first() != Some(&PACK_HEADER_VERSION) {
        return Err(bad(format!("unknown header version {:?}", h.first())));
    }
    let count =
        u32::from_le_bytes(h.get(1..5).ok_or_else(|| bad("short header".into()))?.try_into().expect("4")) as usize;
    if h.len() != 5 + count * ENTRY_LEN {
        return Err(bad("header length does not match its entry count".into()));
    }
    let mut out = Vec::with_capacity(count);
    for c in h[5..].chunks_exact(ENTRY_LEN) {
        let u = |r: std::ops::Range<usize>| u32::from_le_bytes(c[r].try_into().expect("4"));
        let e = PackEntry {
            id: Id::from_slice(&c[..32]).expect("32"),
            offset: u(32..36),
            length: u(36..40),
            raw_length: u(40..44),
            compression: c[44],
        };
        if e.offset as u64 + e.length as u64 > body_len || (e.length as usize) < SEAL_OVERHEAD {
            return Err(bad(format!("blob {} lies outside the pack body", e.id.short())));
        }
        out.push(e);
    }
    Ok(out)
}

/// Reads and opens a pack's header (used to rebuild indexes and by verify).
pub fn read_header(storage: &dyn Storage, keys: &Keys, pack: &Id) -> Result<Vec<PackEntry>> {
    let size = storage.size(FileKind::Pack, &pack.to_hex())?;
    read_header_at(storage, keys, pack, size)
}

/// Bytes read from a pack's end in one go: the header of a pack of a few thousand blobs and its
/// trailer fit, so on an object store a header costs one ranged GET (two for larger headers).
const TAIL_GUESS: u64 = 128 * 1024;

/// `read_header` for a pack whose size is known (from a listing): no size request.
pub fn read_header_at(storage: &dyn Storage, keys: &Keys, pack: &Id, size: u64) -> Result<Vec<PackEntry>> {
    let name = pack.to_hex();
    if size < TRAILER_LEN as u64 {
        return Err(Error::damaged(format!("pack {pack}"), "shorter than its trailer"));
    }
    let tail_len = size.min(TAIL_GUESS);
    let tail = storage.get_range(FileKind::Pack, &name, size - tail_len, tail_len as usize)?;
    header_from_tail(keys, pack, size, &tail, |at, len| storage.get_range(FileKind::Pack, &name, at, len))
}

/// The header of a pack held whole in memory (verify has just read it to check its name).
pub fn header_of(keys: &Keys, pack: &Id, bytes: &[u8]) -> Result<Vec<PackEntry>> {
    if bytes.len() < TRAILER_LEN {
        return Err(Error::damaged(format!("pack {pack}"), "shorter than its trailer"));
    }
    header_from_tail(keys, pack, bytes.len() as u64, bytes, |_, _| unreachable!("the whole pack is the tail"))
}

/// Finds, opens and decodes the header from the last bytes of a pack of `size` bytes; `fetch(at,
/// len)` reads the header when it begins before `tail`.
fn header_from_tail(
    keys: &Keys,
    pack: &Id,
    size: u64,
    tail: &[u8],
    fetch: impl FnOnce(u64, usize) -> Result<Vec<u8>>,
) -> Result<Vec<PackEntry>> {
    let tail_len = tail.len() as u64;
    let trailer = &tail[tail.len() - TRAILER_LEN..];
    if &trailer[4..] != PACK_MAGIC {
        return Err(Error::damaged(format!("pack {pack}"), "trailer magic missing (truncated?)"));
    }
    let hlen = u32::from_le_bytes(trailer[..4].try_into().expect("4")) as u64;
    if hlen + TRAILER_LEN as u64 > size {
        return Err(Error::damaged(format!("pack {pack}"), "header length exceeds pack size"));
    }
    let body_len = size - TRAILER_LEN as u64 - hlen;
    let sealed = if hlen + TRAILER_LEN as u64 <= tail_len {
        let start = (tail_len - TRAILER_LEN as u64 - hlen) as usize;
        tail[start..start + hlen as usize].to_vec()
    } else {
        fetch(body_len, hlen as usize)?
    };
    let header = keys
        .open(PACK_MAGIC, &sealed)
        .ok_or_else(|| Error::damaged(format!("pack {pack}"), "header failed authentication"))?;
    decode_header(&header, pack, body_len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::MasterKey;
    use crate::storage::LocalStorage;

    #[test]
    fn build_read_and_detect_flips() {
        let keys = Keys::derive(MasterKey([5; 32]));
        let e = Entropy::os();
        let t = tempfile::tempdir().unwrap();
        let s = LocalStorage::new(t.path());
        s.create_layout().unwrap();
        let mut b = PackBuilder::new(s.start_upload(FileKind::Pack, 0).unwrap());
        let chunks: Vec<Vec<u8>> = vec![b"alpha".repeat(100), vec![7u8; 10], b"gamma".to_vec()];
        for c in &chunks {
            b.add(seal_blob(&keys, &e, 3, keys.chunk_id(c), c)).unwrap();
        }
        let FinishedPack { id, upload, entries } = b.finish(&keys, &e).unwrap();
        let len = upload.len();
        s.finish_upload(upload, &id.to_hex()).unwrap();
        let bytes = s.get(FileKind::Pack, &id.to_hex()).unwrap();
        assert_eq!(bytes.len() as u64, len);
        assert_eq!(id, Id::of_content(&bytes));
        let in_data: Vec<_> =
            std::fs::read_dir(t.path().join("data")).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(in_data, vec![std::ffi::OsString::from(&id.to_hex()[..2])], "no temporary file is left");
        let read = read_header(&s, &keys, &id).unwrap();
        assert_eq!(read, entries);
        assert_eq!(header_of(&keys, &id, &bytes).unwrap(), entries);
        assert!(header_of(&keys, &id, &bytes[..bytes.len() - 3]).is_err());
        assert!(header_of(&keys, &id, &bytes[..5]).is_err());
        for (c, en) in chunks.iter().zip(&entries) {
            let sealed = &bytes[en.offset as usize..(en.offset + en.length) as usize];
            assert_eq!(&open_blob(&keys, &id, en, sealed).unwrap(), c);
            let mut bad = sealed.to_vec();
            bad[30] ^= 0x40;
            let err = open_blob(&keys, &id, en, &bad).unwrap_err();
            assert!(err.to_string().contains(&id.to_hex()));
        }
        // an entry claiming another id cannot open the blob
        let mut wrong = entries[0];
        wrong.id = entries[1].id;
        let sealed = &bytes[wrong.offset as usize..(wrong.offset + wrong.length) as usize];
        assert!(open_blob(&keys, &id, &wrong, sealed).is_err());
        // truncated pack
        s.put(FileKind::Pack, &id.to_hex(), &bytes[..bytes.len() - 3]).unwrap();
        assert_eq!(read_header(&s, &keys, &id).unwrap_err().class(), crate::ErrorClass::Damage);
    }
}
