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
use crate::manifest::{
    ArchivedFolder, ArchivedItem, ArchivedManifest, ArchivedSkipped, Manifest, Summary, MANIFEST_VERSION,
};
use crate::manifest_check::{check_manifest, Broken};
use crate::manifest_pages as pages;
pub use crate::snapshot_pages::PageReader;
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

/// Serialises and seals a snapshot; returns its id and bytes. `summary.manifest_hash` and
/// `summary.version` are filled in: version 1 (one manifest section) when the manifest has at most
/// `page_items` items, else version 2 (a page table and pages of `page_items` items, §10.4).
/// The manifest is taken by value and dropped as it is serialised, so its many small allocations
/// are gone before compression and sealing make their copies (a 100,000-item manifest is most of
/// a backup's peak memory).
pub fn encode(
    keys: &Keys,
    entropy: &Entropy,
    level: i32,
    summary: Summary,
    manifest: Manifest,
    page_items: usize,
) -> Result<(Id, Vec<u8>)> {
    if manifest.items.len() > page_items.max(1) {
        return crate::snapshot_pages::encode(keys, entropy, level, summary, manifest, page_items.max(1));
    }
    encode_v1(keys, entropy, level, summary, manifest)
}

pub(crate) fn serialise(manifest: &Manifest) -> Result<AlignedVec> {
    let buf = AlignedVec::<16>::with_capacity(serialized_size_estimate(manifest));
    rkyv::api::high::to_bytes_in::<_, rancor::Error>(manifest, buf)
        .map_err(|e| Error::Other(format!("serialising manifest: {e}")))
}

fn encode_v1(
    keys: &Keys,
    entropy: &Entropy,
    level: i32,
    mut summary: Summary,
    mut manifest: Manifest,
) -> Result<(Id, Vec<u8>)> {
    manifest.items.shrink_to_fit();
    let m = serialise(&manifest)?;
    drop(manifest);
    let sealed_manifest = seal_section(keys, entropy, &aad(SECTION_MANIFEST), level, &m);
    drop(m);
    summary.manifest_hash = *blake3::hash(&sealed_manifest).as_bytes();
    summary.version = MANIFEST_VERSION;
    let mut out = head_of(keys, entropy, level, &summary)?;
    out.extend_from_slice(&sealed_manifest);
    Ok((Id::of_content(&out), out))
}

/// `"EXRSNAP1" || summary length || sealed summary`.
pub(crate) fn head_of(keys: &Keys, entropy: &Entropy, level: i32, summary: &Summary) -> Result<Vec<u8>> {
    let s = rkyv::to_bytes::<rancor::Error>(summary).map_err(|e| Error::Other(format!("serialising summary: {e}")))?;
    let sealed_summary = seal_section(keys, entropy, &aad(SECTION_SUMMARY), level, &s);
    let mut out = Vec::with_capacity(12 + sealed_summary.len());
    out.extend_from_slice(SNAPSHOT_MAGIC);
    out.extend_from_slice(&(sealed_summary.len() as u32).to_le_bytes());
    out.extend_from_slice(&sealed_summary);
    Ok(out)
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
    if summary.version != MANIFEST_VERSION && summary.version != pages::VERSION_PAGED {
        return Err(Error::UnsupportedVersion {
            what: "snapshot manifest".into(),
            version: summary.version,
            supported: pages::VERSION_PAGED,
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

/// One validated manifest page (version 1: the whole manifest), read in place.
pub struct Page(AlignedVec);

impl Page {
    /// Opens sealed page bytes, checks them with `check` (§10.1 and the table or page rules), then
    /// with rkyv's validator.
    pub(crate) fn open<T>(
        keys: &Keys,
        aad: &[u8],
        sealed: &[u8],
        what: &str,
        check: impl FnOnce(&[u8]) -> std::result::Result<T, Broken>,
    ) -> Result<(Page, T)> {
        let mut buf = AlignedVec::new();
        open_section_into(keys, aad, sealed, what, &mut buf)?;
        let checked = check(&buf).map_err(|e| Error::damaged(what, e.to_string()))?;
        rkyv::access::<ArchivedManifest, rancor::Error>(&buf)
            .map_err(|e| Error::damaged(what, format!("invalid structure: {e}")))?;
        Ok((Page(buf), checked))
    }

    /// The page, read in place.
    pub fn manifest(&self) -> &ArchivedManifest {
        // SAFETY: `Page::open` validated exactly these bytes with bytecheck; they are never mutated.
        unsafe { rkyv::access_unchecked::<ArchivedManifest>(&self.0) }
    }
}

/// An opened snapshot: its summary plus its validated manifest, read in place (version 1: one
/// page holding everything; version 2: a head page and item pages, §10.4).
pub struct Snapshot {
    pub id: Id,
    pub summary: Summary,
    pub(crate) head: Page,
    /// Version 2 only: the item pages, and the index of each one's first item.
    pages: Vec<Page>,
    starts: Vec<usize>,
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
        let what_m = format!("{what} (manifest)");
        let counts;
        let (head, pages) = if summary.version == pages::VERSION_PAGED {
            let all = crate::snapshot_pages::open_all(keys, &summary, &raw[end..], &what_m)?;
            counts = all.counts;
            (all.head, all.items)
        } else {
            let sealed_manifest = &raw[end..];
            if *blake3::hash(sealed_manifest).as_bytes() != summary.manifest_hash {
                return Err(Error::damaged(&what_m, "does not belong to its summary"));
            }
            let (page, c) = Page::open(keys, &aad(SECTION_MANIFEST), sealed_manifest, &what_m, check_manifest)?;
            counts = c;
            (page, Vec::new())
        };
        drop(raw);
        crate::manifest_check::check_counts((summary.items, summary.bytes, summary.skipped), counts)
            .map_err(|e| Error::damaged(&what, e.to_string()))?;
        let mut starts = Vec::with_capacity(pages.len());
        let mut n = 0;
        for p in &pages {
            starts.push(n);
            n += p.manifest().items.len();
        }
        Ok(Snapshot { id: *id, summary, head, pages, starts })
    }

    fn root(&self) -> &ArchivedManifest {
        self.head.manifest()
    }

    /// The folder table; folder 0 is the root.
    pub fn folders(&self) -> &rkyv::vec::ArchivedVec<ArchivedFolder> {
        &self.root().folders
    }

    pub fn skipped(&self) -> &rkyv::vec::ArchivedVec<ArchivedSkipped> {
        &self.root().skipped
    }

    pub fn source_state(&self) -> &[u8] {
        &self.root().source_state
    }

    /// The manifest pages that hold items, in order.
    pub fn item_pages(&self) -> impl Iterator<Item = &ArchivedManifest> {
        let v1 = self.pages.is_empty().then_some(&self.head);
        v1.into_iter().chain(&self.pages).map(Page::manifest)
    }

    pub fn item_count(&self) -> usize {
        self.item_pages().map(|p| p.items.len()).sum()
    }

    /// Every item, in manifest order.
    pub fn items(&self) -> impl Iterator<Item = &ArchivedItem> {
        self.item_pages().flat_map(|p| p.items.iter())
    }

    /// Item `i` in manifest order. Panics if `i >= item_count()`, like a slice.
    pub fn item(&self, i: usize) -> &ArchivedItem {
        if self.pages.is_empty() {
            return &self.root().items[i];
        }
        let k = self.starts.partition_point(|&s| s <= i) - 1;
        &self.pages[k].manifest().items[i - self.starts[k]]
    }

    /// The whole manifest as owned values (tests and tools; readers use it in place).
    pub fn to_manifest(&self) -> Result<Manifest> {
        let de = |m: &ArchivedManifest| {
            rkyv::deserialize::<Manifest, rancor::Error>(m).map_err(|e| Error::Other(format!("reading manifest: {e}")))
        };
        let mut m = de(self.root())?;
        for p in &self.pages {
            m.items.extend(de(p.manifest())?.items);
        }
        Ok(m)
    }

    /// The folders from below the root down to folder `idx`, as indexes (see `ArchivedManifest`).
    pub fn ancestors(&self, idx: u32) -> Vec<u32> {
        self.root().ancestors(idx)
    }

    /// The folder path of folder `idx` as its components (root excluded).
    pub fn folder_path(&self, idx: u32) -> Vec<String> {
        self.root().folder_path(idx)
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
        let (id, bytes) = encode(&keys, &Entropy::os(), 3, summary.clone(), manifest, 1).unwrap();
        s.put(FileKind::Snapshot, &id.to_hex(), &bytes).unwrap();
        let snap = Snapshot::load(&s, &keys, &id).unwrap();
        assert_eq!(snap.summary.mailbox, summary.mailbox);
        assert_eq!(read_summary(&s, &keys, &id).unwrap(), snap.summary);
        assert_eq!(snap.summary.version, 1);
        assert_eq!(snap.item_count(), 1);
        assert_eq!(crate::manifest::text(&snap.item(0).subject), "Grüße");
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

    /// A manifest of `n` items (item k named `k`) over two folders, with a skipped item.
    fn numbered(n: usize) -> (Summary, Manifest) {
        let (mut summary, mut m) = sample();
        m.folders.push(Folder { parent: 0, name: b"Inbox".to_vec(), source_id: vec![], folder_class: vec![] });
        let proto = m.items.pop().unwrap();
        m.items = (0..n)
            .map(|k| Item { name: k.to_string().into_bytes(), folder: (k % 2) as u32, size: k as u64, ..proto.clone() })
            .collect();
        m.skipped = vec![crate::manifest::Skipped { folder: 1, source_id: b"x".to_vec(), error: b"gone".to_vec() }];
        m.source_state = b"state".to_vec();
        (summary.items, summary.bytes, summary.skipped) = (n as u64, (0..n as u64).sum(), 1);
        (summary, m)
    }

    #[test]
    fn a_paged_manifest_reads_as_one_and_damage_is_named() {
        let keys = Keys::derive(MasterKey([4; 32]));
        let t = tempfile::tempdir().unwrap();
        let s = LocalStorage::new(t.path());
        s.create_layout().unwrap();
        let (summary, manifest) = numbered(10);
        let (id, bytes) = encode(&keys, &Entropy::os(), 3, summary.clone(), manifest.clone(), 3).unwrap();
        s.put(FileKind::Snapshot, &id.to_hex(), &bytes).unwrap();
        let snap = Snapshot::load(&s, &keys, &id).unwrap();
        assert_eq!(snap.summary.version, pages::VERSION_PAGED);
        assert_eq!(snap.item_count(), 10);
        let names = |it: &ArchivedItem| String::from_utf8(it.name.to_vec()).unwrap();
        assert_eq!(
            (0..10).map(|k| names(snap.item(k))).collect::<Vec<_>>(),
            snap.items().map(names).collect::<Vec<_>>()
        );
        assert_eq!(names(snap.item(9)), "9");
        assert_eq!((snap.folders().len(), snap.skipped().len(), snap.source_state()), (2, 1, &b"state"[..]));
        assert_eq!(snap.to_manifest().unwrap(), manifest);
        assert_eq!(snap.folder_path(1), vec!["Inbox".to_string()]);
        // page by page: an empty head, then pages of 3, 3, 3 and 1
        let mut r = PageReader::open(&s, &keys, &id).unwrap();
        assert!(r.head().items.is_empty());
        let mut sizes = Vec::new();
        while let Some(p) = r.next_page() {
            sizes.push(p.unwrap().manifest().items.len());
        }
        assert_eq!(sizes, vec![3, 3, 3, 1]);
        // one page's worth stays version 1
        let (summary1, manifest1) = numbered(3);
        assert_eq!(encode(&keys, &Entropy::os(), 3, summary1, manifest1, 3).unwrap().1[..8], bytes[..8]);
        // any byte changed after the summary, or a byte added: damage, for load and page by page
        let head_len = 12 + u32::from_le_bytes(bytes[8..12].try_into().unwrap()) as usize;
        // every byte of the table length (a huge one must not be followed), then every 7th byte
        for at in (head_len..head_len + 4).chain((head_len..bytes.len()).step_by(7)).chain([bytes.len()]) {
            let mut bad = bytes.clone();
            if at == bytes.len() {
                bad.push(0);
            } else {
                bad[at] ^= 0x10;
            }
            let bad_id = Id::of_content(&bad);
            s.put(FileKind::Snapshot, &bad_id.to_hex(), &bad).unwrap();
            let err = Snapshot::load(&s, &keys, &bad_id).err().unwrap();
            assert_eq!(err.class(), crate::ErrorClass::Damage, "byte {at}: {err}");
            let streamed = PageReader::open(&s, &keys, &bad_id).and_then(|mut r| {
                while let Some(p) = r.next_page() {
                    p?;
                }
                Ok(())
            });
            if at < bytes.len() {
                assert_eq!(streamed.err().unwrap().class(), crate::ErrorClass::Damage, "byte {at}");
            }
            s.delete(FileKind::Snapshot, &bad_id.to_hex()).unwrap();
        }
        // a summary that counts one item more than the pages hold
        let (mut summary, manifest) = numbered(10);
        summary.items = 11;
        let (id, bytes) = encode(&keys, &Entropy::os(), 3, summary, manifest, 3).unwrap();
        s.put(FileKind::Snapshot, &id.to_hex(), &bytes).unwrap();
        assert!(Snapshot::load(&s, &keys, &id).err().unwrap().to_string().contains("T4"));
        let mut r = PageReader::open(&s, &keys, &id).unwrap();
        let mut last = None;
        while let Some(p) = r.next_page() {
            last = Some(p);
        }
        assert!(last.unwrap().err().unwrap().to_string().contains("T4"));
    }
}
