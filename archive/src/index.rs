//! The chunk index: chunk id → (pack, offset, length).
//!
//! In the repository, index files (`index/<id>`) are sealed, each listing the blobs of a few packs,
//! sorted by chunk id. Lookups never load them into a hash map: they are merged once into a single
//! sorted table in the local cache (`IndexTable`), read through a memory map, with a 65,536-slot
//! fan-out on the first two id bytes so a lookup touches one or two pages. Keeping the table current
//! is a streaming k-way merge, so memory stays flat however large the repository grows.
//!
//! The table is a cache on a local disk, not authenticated repository data, so it carries a BLAKE3
//! checksum of its bytes. Opening checks its structure (cheap, so a damaged table never makes a
//! lookup panic); merging and `sync_verified` (what prune and repair use before they act on it)
//! check the checksum too and rebuild a table that fails it.

use crate::crypto::{Entropy, Keys};
use crate::envelope::{open_file, seal_file};
use crate::error::{Error, Result};
use crate::id::Id;
use crate::pack::PackEntry;
use crate::storage::{FileKind, Storage};
use memmap2::Mmap;
use std::collections::BinaryHeap;
use std::fs::{self, File};
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

pub const INDEX_MAGIC: &[u8; 8] = b"EXRINDX1";
pub const INDEX_VERSION: u8 = 1;
/// Writers start a new index file after this many entries, which bounds what a reader must hold.
pub const MAX_ENTRIES_PER_FILE: usize = 65_536;
const FILE_ENTRY_LEN: usize = 32 + 4 + 4 + 4 + 4 + 1;

const TABLE_MAGIC: &[u8; 8] = b"EXRIDXT2";
const TABLE_CHECKSUM: usize = 32;
const FANOUT: usize = 65_536;
const TABLE_HEADER: usize = 8 + 8 + 8 + 8;
const TABLE_ENTRY: usize = 80;
/// Entries sorted in memory at a time while merging new index files into the table.
const RUN_ENTRIES: usize = 262_144;

/// A blob's location, as the index records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobLocation {
    pub pack: Id,
    pub entry: PackEntry,
}

/// Encodes one repository index file's body (before sealing). Sorts `locs` by id.
pub fn encode_index(locs: &mut [BlobLocation]) -> Vec<u8> {
    locs.sort_by_key(|a| a.entry.id);
    let mut packs: Vec<Id> = locs.iter().map(|l| l.pack).collect();
    packs.sort();
    packs.dedup();
    let mut out = Vec::with_capacity(9 + packs.len() * 32 + locs.len() * FILE_ENTRY_LEN);
    out.push(INDEX_VERSION);
    out.extend_from_slice(&(packs.len() as u32).to_le_bytes());
    out.extend_from_slice(&(locs.len() as u32).to_le_bytes());
    for p in &packs {
        out.extend_from_slice(&p.0);
    }
    for l in locs.iter() {
        let pno = packs.binary_search(&l.pack).expect("pack listed") as u32;
        out.extend_from_slice(&l.entry.id.0);
        out.extend_from_slice(&pno.to_le_bytes());
        out.extend_from_slice(&l.entry.offset.to_le_bytes());
        out.extend_from_slice(&l.entry.length.to_le_bytes());
        out.extend_from_slice(&l.entry.raw_length.to_le_bytes());
        out.push(l.entry.compression);
    }
    out
}

/// Decodes an index file body; checks it is well formed and sorted.
pub fn decode_index(body: &[u8], name: &str) -> Result<Vec<BlobLocation>> {
    let bad = |d: &str| Error::damaged(format!("index {name}"), d.to_string());
    if body.first() != Some(&INDEX_VERSION) || body.len() < 9 {
        return Err(bad("unknown version or short body"));
    }
    let u = |b: &[u8]| u32::from_le_bytes(b.try_into().expect("4"));
    let np = u(&body[1..5]) as usize;
    let ne = u(&body[5..9]) as usize;
    if body.len() as u64 != 9 + np as u64 * 32 + ne as u64 * FILE_ENTRY_LEN as u64 {
        return Err(bad("length does not match counts"));
    }
    let packs: Vec<Id> = body[9..9 + np * 32].chunks_exact(32).map(|c| Id::from_slice(c).expect("32")).collect();
    let mut out = Vec::with_capacity(ne);
    for c in body[9 + np * 32..].chunks_exact(FILE_ENTRY_LEN) {
        let pno = u(&c[32..36]) as usize;
        let pack = *packs.get(pno).ok_or_else(|| bad("entry names a pack outside the table"))?;
        let entry = PackEntry {
            id: Id::from_slice(&c[..32]).expect("32"),
            offset: u(&c[36..40]),
            length: u(&c[40..44]),
            raw_length: u(&c[44..48]),
            compression: c[48],
        };
        if let Some(prev) = out.last() {
            let prev: &BlobLocation = prev;
            if prev.entry.id >= entry.id {
                return Err(bad("entries are not sorted by id"));
            }
        }
        out.push(BlobLocation { pack, entry });
    }
    Ok(out)
}

/// Seals and stores one index file; returns its name.
pub fn write_index_file(
    storage: &dyn Storage,
    keys: &Keys,
    entropy: &Entropy,
    locs: &mut [BlobLocation],
) -> Result<Id> {
    let body = encode_index(locs);
    // Index bodies are random ids and offsets: compression would not pay, level is irrelevant.
    let file = seal_file(keys, entropy, INDEX_MAGIC, 1, &body);
    let id = Id::of_content(&file);
    storage.put(FileKind::Index, &id.to_hex(), &file)?;
    Ok(id)
}

pub fn read_index_file(storage: &dyn Storage, keys: &Keys, name: &str) -> Result<Vec<BlobLocation>> {
    let raw = storage.get(FileKind::Index, name)?;
    if Id::of_content(&raw).to_hex() != name {
        return Err(Error::damaged(format!("index {name}"), "content does not match its name"));
    }
    let body = open_file(keys, INDEX_MAGIC, &raw, &format!("index {name}"))?;
    decode_index(&body, name)
}

fn encode_table_entry(l: &BlobLocation, out: &mut [u8]) {
    out[..32].copy_from_slice(&l.entry.id.0);
    out[32..64].copy_from_slice(&l.pack.0);
    out[64..68].copy_from_slice(&l.entry.offset.to_le_bytes());
    out[68..72].copy_from_slice(&l.entry.length.to_le_bytes());
    out[72..76].copy_from_slice(&l.entry.raw_length.to_le_bytes());
    out[76] = l.entry.compression;
    out[77..80].fill(0);
}

fn decode_table_entry(b: &[u8]) -> BlobLocation {
    let u = |r: std::ops::Range<usize>| u32::from_le_bytes(b[r].try_into().expect("4"));
    BlobLocation {
        pack: Id::from_slice(&b[32..64]).expect("32"),
        entry: PackEntry {
            id: Id::from_slice(&b[..32]).expect("32"),
            offset: u(64..68),
            length: u(68..72),
            raw_length: u(72..76),
            compression: b[76],
        },
    }
}

/// The merged, memory-mapped index of a repository (a local cache file, rebuilt when missing).
pub struct IndexTable {
    map: Option<Mmap>,
    count: usize,
    covers: Vec<String>,
    /// Index files left out because they are damaged, with the reason.
    skipped: Vec<(String, String)>,
}

fn table_err(path: &Path, d: &str) -> Error {
    Error::Other(format!("index cache {}: {d}; delete it and it will be rebuilt", path.display()))
}

impl IndexTable {
    /// An empty table (for a new repository).
    pub fn empty() -> IndexTable {
        IndexTable { map: None, count: 0, covers: Vec::new(), skipped: Vec::new() }
    }

    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Index files this table was built from.
    pub fn covers(&self) -> &[String] {
        &self.covers
    }

    /// Damaged index files that were left out (name, reason). Chunks only they listed are missing
    /// from the table: reads of them fail as damage, and backups store such chunks again.
    pub fn skipped(&self) -> &[(String, String)] {
        &self.skipped
    }

    fn open_file(path: &Path) -> Result<Option<IndexTable>> {
        let f = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(path, e)),
        };
        let map = map_file(&f, path)?;
        if map.len() < TABLE_HEADER + FANOUT * 4 || &map[..8] != TABLE_MAGIC {
            return Ok(None);
        }
        let u64at = |o: usize| u64::from_le_bytes(map[o..o + 8].try_into().expect("8"));
        let count = u64at(8) as usize;
        let covers_off = u64at(16) as usize;
        let covers_len = u64at(24) as usize;
        let Some(entries_end) = count.checked_mul(TABLE_ENTRY).and_then(|n| n.checked_add(TABLE_HEADER + FANOUT * 4))
        else {
            return Ok(None);
        };
        if covers_off != entries_end
            || covers_off.checked_add(covers_len).and_then(|n| n.checked_add(TABLE_CHECKSUM)) != Some(map.len())
        {
            return Ok(None);
        }
        // The fan-out must rise to `count`, or a lookup could index past the entries.
        let mut prev = 0usize;
        for slot in 0..FANOUT {
            let o = TABLE_HEADER + slot * 4;
            let v = u32::from_le_bytes(map[o..o + 4].try_into().expect("4")) as usize;
            if v < prev || v > count {
                return Ok(None);
            }
            prev = v;
        }
        if prev != count {
            return Ok(None);
        }
        let covers = std::str::from_utf8(&map[covers_off..covers_off + covers_len])
            .map_err(|_| table_err(path, "covers list is not text"))?
            .lines()
            .map(str::to_string)
            .collect();
        Ok(Some(IndexTable { map: Some(map), count, covers, skipped: Vec::new() }))
    }

    /// True if the table's bytes match their checksum (reads the whole table).
    pub fn checksum_ok(&self) -> bool {
        match &self.map {
            None => true,
            Some(m) => {
                let body = m.len() - TABLE_CHECKSUM;
                blake3::hash(&m[..body]).as_bytes()[..] == m[body..]
            }
        }
    }

    fn fanout(&self, slot: usize) -> usize {
        let map = self.map.as_ref().expect("non-empty table has a map");
        let o = TABLE_HEADER + slot * 4;
        u32::from_le_bytes(map[o..o + 4].try_into().expect("4")) as usize
    }

    fn entry_bytes(&self, i: usize) -> &[u8] {
        let map = self.map.as_ref().expect("non-empty table has a map");
        let o = TABLE_HEADER + FANOUT * 4 + i * TABLE_ENTRY;
        &map[o..o + TABLE_ENTRY]
    }

    pub fn entry(&self, i: usize) -> BlobLocation {
        decode_table_entry(self.entry_bytes(i))
    }

    /// Finds a chunk: fan-out on the first two bytes, then binary search in a tiny range.
    pub fn get(&self, id: &Id) -> Option<BlobLocation> {
        self.position(id).map(|i| self.entry(i))
    }

    /// The chunk's position in the table (0..len), for compact per-chunk bitmaps.
    pub fn position(&self, id: &Id) -> Option<usize> {
        if self.count == 0 {
            return None;
        }
        let slot = u16::from_be_bytes([id.0[0], id.0[1]]) as usize;
        let mut lo = if slot == 0 { 0 } else { self.fanout(slot - 1) };
        let mut hi = self.fanout(slot);
        while lo < hi {
            let mid = (lo + hi) / 2;
            match self.entry_bytes(mid)[..32].cmp(&id.0[..]) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return Some(mid),
            }
        }
        None
    }

    pub fn contains(&self, id: &Id) -> bool {
        self.get(id).is_some()
    }

    pub fn iter(&self) -> impl Iterator<Item = BlobLocation> + '_ {
        (0..self.count).map(|i| self.entry(i))
    }

    /// Brings the cached table in `cache_dir` up to date with the repository's index files and
    /// maps it. New index files are merged in; if any file the table covers has gone (prune), the
    /// table is rebuilt. Either way memory use is bounded by `RUN_ENTRIES`, not by the repository.
    pub fn sync(storage: &dyn Storage, keys: &Keys, cache_dir: &Path) -> Result<IndexTable> {
        Self::sync_inner(storage, keys, cache_dir, false)
    }

    /// Like `sync`, but the table is trusted only after its checksum was checked; one that fails
    /// it is rebuilt from the index files. What prune and repair use before deciding anything.
    pub fn sync_verified(storage: &dyn Storage, keys: &Keys, cache_dir: &Path) -> Result<IndexTable> {
        Self::sync_inner(storage, keys, cache_dir, true)
    }

    fn sync_inner(storage: &dyn Storage, keys: &Keys, cache_dir: &Path, verify: bool) -> Result<IndexTable> {
        let path = cache_dir.join("index.tbl");
        let mut names = storage.list(FileKind::Index)?;
        names.sort();
        // A table that fails its checksum is not used, not even as the base of a merge.
        let old = IndexTable::open_file(&path)?;
        let old = match old {
            Some(t) if (verify || t.covers != names) && !t.checksum_ok() => None,
            o => o,
        };
        let (base, todo): (Option<IndexTable>, Vec<String>) = match old {
            Some(t) if t.covers == names => return Ok(t),
            Some(t) if t.covers.iter().all(|c| names.binary_search(c).is_ok()) => {
                let todo = names.iter().filter(|n| t.covers.binary_search(n).is_err()).cloned().collect();
                (Some(t), todo)
            }
            _ => (None, names.clone()),
        };
        if names.is_empty() {
            return Ok(IndexTable::empty());
        }
        crate::private_fs::create_dir_all(cache_dir).map_err(|e| Error::io(cache_dir, e))?;
        // Sorted runs of new entries, each written to a temporary file.
        let mut runs: Vec<RunFile> = Vec::new();
        let mut batch: Vec<BlobLocation> = Vec::new();
        let mut skipped = Vec::new();
        let mut read = Vec::new();
        for name in todo {
            match read_index_file(storage, keys, &name) {
                Ok(locs) => {
                    batch.extend(locs);
                    read.push(name);
                }
                Err(e) if e.class() == crate::ErrorClass::Damage => skipped.push((name, e.to_string())),
                Err(e) => return Err(e),
            }
            if batch.len() >= RUN_ENTRIES {
                runs.push(RunFile::write(cache_dir, &mut batch)?);
            }
        }
        if !batch.is_empty() {
            runs.push(RunFile::write(cache_dir, &mut batch)?);
        }
        if read.is_empty() {
            // Nothing new that opens: the table stays as it was.
            let mut t = base.unwrap_or_else(IndexTable::empty);
            t.skipped = skipped;
            return Ok(t);
        }
        let mut covers = match &base {
            Some(b) => b.covers.clone(),
            None => Vec::new(),
        };
        covers.extend(read);
        covers.sort();
        let tmp = cache_dir.join(format!("index.tbl.{}.tmp", std::process::id()));
        let result = write_merged(&tmp, base.as_ref(), &runs, &covers);
        drop(runs);
        if let Err(e) = result {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        drop(base);
        fs::rename(&tmp, &path).map_err(|e| Error::io(&path, e))?;
        let mut t =
            IndexTable::open_file(&path)?.ok_or_else(|| table_err(&path, "freshly written table does not parse"))?;
        t.skipped = skipped;
        Ok(t)
    }
}

fn map_file(f: &File, path: &Path) -> Result<Mmap> {
    // SAFETY: cache files are only ever replaced by rename, never modified in place, so the mapped
    // bytes cannot change under us.
    unsafe { Mmap::map(f) }.map_err(|e| Error::io(path, e))
}

/// A sorted run of table entries in a temporary file, removed when dropped.
struct RunFile {
    path: PathBuf,
    map: Mmap,
}

impl RunFile {
    fn write(dir: &Path, batch: &mut Vec<BlobLocation>) -> Result<RunFile> {
        batch.sort_by_key(|a| a.entry.id);
        let mut rnd = [0u8; 8];
        getrandom::getrandom(&mut rnd).expect("randomness");
        let path = dir.join(format!("run.{}.{}.tmp", std::process::id(), hex::encode(rnd)));
        let f = crate::private_fs::create_new(&path).map_err(|e| Error::io(&path, e))?;
        let mut w = BufWriter::new(f);
        let mut buf = [0u8; TABLE_ENTRY];
        for l in batch.iter() {
            encode_table_entry(l, &mut buf);
            w.write_all(&buf).map_err(|e| Error::io(&path, e))?;
        }
        let f = w.into_inner().map_err(|e| Error::io(&path, e.into_error()))?;
        batch.clear();
        let map = map_file(&f, &path)?;
        Ok(RunFile { path, map })
    }
}

impl Drop for RunFile {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

fn write_merged(tmp: &Path, base: Option<&IndexTable>, runs: &[RunFile], covers: &[String]) -> Result<()> {
    let f = crate::private_fs::create(tmp).map_err(|e| Error::io(tmp, e))?;
    let mut w = BufWriter::with_capacity(1 << 20, f);
    let io = |e| Error::io(tmp, e);
    w.write_all(&[0u8; TABLE_HEADER + FANOUT * 4]).map_err(io)?;
    // Sources: the old table's entries and each run, all sorted; a min-heap on each one's next id.
    let mut sources: Vec<&[u8]> = Vec::new();
    if let Some(b) = base.filter(|b| b.count > 0) {
        let start = TABLE_HEADER + FANOUT * 4;
        sources.push(&b.map.as_ref().expect("non-empty table has a map")[start..start + b.count * TABLE_ENTRY]);
    }
    sources.extend(runs.iter().map(|r| &r.map[..]));

    let mut pos = vec![0usize; sources.len()];
    let mut heap = BinaryHeap::new();
    for (s, src) in sources.iter().enumerate() {
        if let Some(e) = at(src, 0) {
            heap.push(std::cmp::Reverse((<[u8; 32]>::try_from(&e[..32]).expect("32"), s)));
        }
    }
    let mut fan = vec![0u32; FANOUT];
    let mut count: u64 = 0;
    let mut last: Option<[u8; 32]> = None;
    while let Some(std::cmp::Reverse((id, s))) = heap.pop() {
        let e = at(sources[s], pos[s]).expect("entry present");
        // The same chunk stored twice (two concurrent writers): keep one location.
        if last != Some(id) {
            w.write_all(e).map_err(io)?;
            fan[u16::from_be_bytes([id[0], id[1]]) as usize] += 1;
            count += 1;
            last = Some(id);
        }
        pos[s] += 1;
        if let Some(n) = at(sources[s], pos[s]) {
            heap.push(std::cmp::Reverse((<[u8; 32]>::try_from(&n[..32]).expect("32"), s)));
        }
    }
    let covers_off = (TABLE_HEADER + FANOUT * 4) as u64 + count * TABLE_ENTRY as u64;
    let covers_text: String = covers.iter().map(|c| format!("{c}\n")).collect();
    w.write_all(covers_text.as_bytes()).map_err(io)?;
    let mut f = w.into_inner().map_err(|e| Error::io(tmp, e.into_error()))?;
    let mut head = Vec::with_capacity(TABLE_HEADER + FANOUT * 4);
    head.extend_from_slice(TABLE_MAGIC);
    head.extend_from_slice(&count.to_le_bytes());
    head.extend_from_slice(&covers_off.to_le_bytes());
    head.extend_from_slice(&(covers_text.len() as u64).to_le_bytes());
    let mut cum = 0u32;
    for n in fan {
        cum += n;
        head.extend_from_slice(&cum.to_le_bytes());
    }
    f.seek(SeekFrom::Start(0)).map_err(io)?;
    f.write_all(&head).map_err(io)?;
    // The checksum covers everything written so far; read back through a map.
    let sum = {
        let map = map_file(&f, tmp)?;
        *blake3::hash(&map).as_bytes()
    };
    f.seek(SeekFrom::End(0)).map_err(io)?;
    f.write_all(&sum).map_err(io)?;
    f.sync_all().map_err(io)?;
    Ok(())
}

fn at(s: &[u8], i: usize) -> Option<&[u8]> {
    s.get(i * TABLE_ENTRY..(i + 1) * TABLE_ENTRY)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::MasterKey;
    use crate::storage::LocalStorage;

    fn loc(keys: &Keys, i: u32, pack: Id) -> BlobLocation {
        BlobLocation {
            pack,
            entry: PackEntry {
                id: keys.chunk_id(&i.to_le_bytes()),
                offset: i,
                length: 100 + i,
                raw_length: i,
                compression: 1,
            },
        }
    }

    #[test]
    fn files_merge_incrementally_and_rebuild_after_removal() {
        let keys = Keys::derive(MasterKey([1; 32]));
        let e = Entropy::os();
        let t = tempfile::tempdir().unwrap();
        let s = LocalStorage::new(t.path().join("repo"));
        s.create_layout().unwrap();
        let cache = t.path().join("cache");
        let p1 = Id::of_content(b"p1");
        let p2 = Id::of_content(b"p2");
        let mut a: Vec<_> = (0..1000).map(|i| loc(&keys, i, p1)).collect();
        let f1 = write_index_file(&s, &keys, &e, &mut a).unwrap();
        let t1 = IndexTable::sync(&s, &keys, &cache).unwrap();
        assert_eq!(t1.len(), 1000);
        for l in &a {
            assert_eq!(t1.get(&l.entry.id), Some(*l));
        }
        assert!(t1.get(&keys.chunk_id(b"absent")).is_none());
        // second file, overlapping one id (a concurrent writer stored it too)
        let mut b: Vec<_> = (999..1500).map(|i| loc(&keys, i, p2)).collect();
        write_index_file(&s, &keys, &e, &mut b).unwrap();
        let t2 = IndexTable::sync(&s, &keys, &cache).unwrap();
        assert_eq!(t2.len(), 1500);
        assert_eq!(t2.covers().len(), 2);
        let ids: Vec<Id> = t2.iter().map(|l| l.entry.id).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
        // unchanged repository: the table is reused as is
        assert_eq!(IndexTable::sync(&s, &keys, &cache).unwrap().len(), 1500);
        // a covered file disappears: rebuilt without it
        s.delete(FileKind::Index, &f1.to_hex()).unwrap();
        let t3 = IndexTable::sync(&s, &keys, &cache).unwrap();
        assert_eq!(t3.len(), 501);
        assert!(t3.get(&a[0].entry.id).is_none());
        // a flipped byte in the cached table: the plain sync may still map it, but the checksum
        // catches it and the verified sync rebuilds it
        let tbl = cache.join("index.tbl");
        let mut raw = fs::read(&tbl).unwrap();
        let at = TABLE_HEADER + FANOUT * 4 + 10 * TABLE_ENTRY + 40; // inside an entry's pack id
        raw[at] ^= 0x40;
        fs::write(&tbl, &raw).unwrap();
        assert!(!IndexTable::sync(&s, &keys, &cache).unwrap().checksum_ok());
        let t4 = IndexTable::sync_verified(&s, &keys, &cache).unwrap();
        assert!(t4.checksum_ok());
        assert_eq!(t4.len(), 501);
        for l in &b[1..] {
            assert_eq!(t4.get(&l.entry.id), Some(*l));
        }
        // a table whose fan-out is damaged is not even mapped (no lookup can run past its end)
        let mut raw = fs::read(&tbl).unwrap();
        raw[TABLE_HEADER + 4 * 100..TABLE_HEADER + 4 * 101].copy_from_slice(&u32::MAX.to_le_bytes());
        fs::write(&tbl, &raw).unwrap();
        assert!(IndexTable::open_file(&tbl).unwrap().is_none());
        // no temporary run files left
        let leftovers: Vec<_> = fs::read_dir(&cache).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(leftovers, vec![std::ffi::OsString::from("index.tbl")]);
    }

    #[test]
    fn damaged_index_file_is_reported() {
        let keys = Keys::derive(MasterKey([1; 32]));
        let t = tempfile::tempdir().unwrap();
        let s = LocalStorage::new(t.path());
        s.create_layout().unwrap();
        let mut a: Vec<_> = (0..10).map(|i| loc(&keys, i, Id::default())).collect();
        let id = write_index_file(&s, &keys, &Entropy::os(), &mut a).unwrap();
        let mut raw = s.get(FileKind::Index, &id.to_hex()).unwrap();
        raw[50] ^= 1;
        s.put(FileKind::Index, &id.to_hex(), &raw).unwrap();
        let err = read_index_file(&s, &keys, &id.to_hex()).unwrap_err();
        assert_eq!(err.class(), crate::ErrorClass::Damage);
    }
}
