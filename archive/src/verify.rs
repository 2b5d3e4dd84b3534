//! Checking a repository, and saying what damage means in the user's terms.
//!
//! Without a key: every file's name must be the BLAKE3 of its bytes. With the key, also: key slots
//! and config open, index files open and point inside existing packs, every snapshot's summary and
//! manifest open and validate, and every chunk a manifest names is indexed. With `read_data`, every
//! blob is opened and checked against its id, and every distinct item against its whole-blob hash.
//! Damage is reported per mailbox, snapshot and item, with an intact version where one exists.
//! Memory: a set of damaged chunk ids and one manifest at a time; packs are read one at a time.

use crate::error::Result;
use crate::id::Id;
use crate::index::read_index_file;
use crate::manifest::text;
use crate::pack::{header_of, open_blob, read_header_at, PackEntry};
use crate::repository::Repository;
use crate::restore::ItemReader;
use crate::snapshot::read_summary;
use crate::storage::{FileKind, Storage};
use serde::Serialize;
use std::collections::{HashMap, HashSet};

/// How much data to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadData {
    /// Structure only (plus blobs of packs whose hash is wrong, to say what they hold).
    None,
    /// Every blob, and every distinct item's whole hash.
    All,
    /// Blobs of the packs in slice `n` of `m` (1-based): `m` runs with n = 1..m cover every pack.
    Subset { n: u32, m: u32 },
}

impl ReadData {
    fn selects(&self, pack: &Id) -> bool {
        match *self {
            ReadData::None => false,
            ReadData::All => true,
            ReadData::Subset { n, m } => u32::from_be_bytes(pack.0[..4].try_into().expect("4")) % m == n - 1,
        }
    }
}

/// One damaged file or object.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Problem {
    /// `config`, `key`, `pack`, `index`, `snapshot` or `chunk`.
    pub kind: String,
    pub id: String,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct AffectedItem {
    pub path: String,
    pub subject: String,
    pub source_id: String,
    /// A snapshot of the same mailbox holding an intact version of this item, if any.
    pub intact_in: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct AffectedSnapshot {
    pub id: String,
    pub mailbox: Option<String>,
    pub time: Option<String>,
    /// The manifest itself is unreadable: every item of the snapshot is lost from it.
    pub manifest_damaged: bool,
    pub detail: Option<String>,
    pub items: Vec<AffectedItem>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Checked {
    pub key_slots: u64,
    pub packs: u64,
    pub pack_bytes: u64,
    pub index_files: u64,
    pub snapshots: u64,
    pub blobs_read: u64,
    pub items_hashed: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub checked: Checked,
    pub problems: Vec<Problem>,
    pub affected: Vec<AffectedSnapshot>,
    /// Packs that no index lists and no mark (a lost index file, an interrupted backup or repack):
    /// `repair index` indexes them, after which prune can tell whether anything needs them.
    pub unindexed_packs: Vec<String>,
}

impl Report {
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty() && self.affected.is_empty()
    }

    fn problem(&mut self, kind: &str, id: &str, detail: impl Into<String>) {
        self.problems.push(Problem { kind: kind.into(), id: id.into(), detail: detail.into() });
    }
}

/// The keyless part: every content-named file must hash to its name. Needs no passphrase.
pub fn verify_names(storage: &dyn Storage) -> Result<Report> {
    let mut report = Report::default();
    check_names(storage, &mut report, true)?;
    Ok(report)
}

/// Hash checks of content-named files; packs only if `packs` (the keyed path reads them itself).
fn check_names(storage: &dyn Storage, report: &mut Report, packs: bool) -> Result<()> {
    if !storage.exists(FileKind::Config, "config")? {
        report.problem("config", "config", "missing");
    }
    let kinds: &[FileKind] = if packs {
        &[FileKind::Key, FileKind::Pack, FileKind::Index, FileKind::Snapshot, FileKind::Mark]
    } else {
        &[FileKind::Key, FileKind::Index, FileKind::Snapshot, FileKind::Mark]
    };
    for &kind in kinds {
        for name in storage.list(kind)? {
            let label = match kind {
                FileKind::Key => "key",
                FileKind::Pack => "pack",
                FileKind::Index => "index",
                FileKind::Mark => "mark",
                _ => "snapshot",
            };
            let Some(id) = Id::from_hex(&name) else {
                report.problem(label, &name, "file name is not a 64-digit hex id");
                continue;
            };
            let bytes = match storage.get(kind, &name) {
                Ok(b) => b,
                Err(e) => {
                    report.problem(label, &name, e.to_string());
                    continue;
                }
            };
            match kind {
                FileKind::Pack => {
                    report.checked.packs += 1;
                    report.checked.pack_bytes += bytes.len() as u64;
                }
                FileKind::Key => report.checked.key_slots += 1,
                FileKind::Index => report.checked.index_files += 1,
                FileKind::Mark => {}
                _ => report.checked.snapshots += 1,
            }
            if Id::of_content(&bytes) != id {
                report.problem(label, &name, NAME_MISMATCH);
            }
        }
    }
    Ok(())
}

const NAME_MISMATCH: &str = "content does not match its name (altered or truncated)";

/// Full verification with the key.
pub fn verify(repo: &Repository, read_data: ReadData) -> Result<Report> {
    let storage = repo.storage().as_ref();
    let keys = repo.keys();
    let mut report = Report::default();
    check_names(storage, &mut report, false)?;

    for (name, slot) in repo.key_slots()? {
        if let Err(e) = slot {
            report.problem("key", &name, e);
        }
    }

    // Index files: open, and every entry inside an existing pack.
    // (Sizes come with the listing: one request on an object store, not one per pack.)
    let pack_sizes: HashMap<Id, u64> = storage
        .list_sized(FileKind::Pack)?
        .into_iter()
        .filter_map(|(n, size)| Some((Id::from_hex(&n)?, size)))
        .collect();
    let mut indexed_packs: HashSet<Id> = HashSet::new();
    let mut missing_packs: HashSet<Id> = HashSet::new();
    let mut damaged: HashMap<Id, String> = HashMap::new();
    for name in storage.list(FileKind::Index)? {
        let locs = match read_index_file(storage, keys, &name) {
            Ok(l) => l,
            Err(e) => {
                if !report.problems.iter().any(|p| p.kind == "index" && p.id == name) {
                    report.problem("index", &name, e.to_string());
                }
                continue;
            }
        };
        for l in locs {
            indexed_packs.insert(l.pack);
            match pack_sizes.get(&l.pack) {
                None => {
                    missing_packs.insert(l.pack);
                    damaged.entry(l.entry.id).or_insert_with(|| format!("its pack {} is missing", l.pack));
                }
                Some(&size) if l.entry.offset as u64 + l.entry.length as u64 > size => {
                    damaged.entry(l.entry.id).or_insert_with(|| format!("lies beyond the end of pack {}", l.pack));
                }
                _ => {}
            }
        }
    }
    for p in missing_packs {
        report.problem("pack", &p.to_hex(), "missing, but listed by an index");
    }
    // A marked pack in no index is one a prune has proven unneeded and will delete.
    let marked = crate::prune::marked_packs(repo)?;
    let mut unindexed: Vec<String> =
        pack_sizes.keys().filter(|p| !indexed_packs.contains(p) && !marked.contains(p)).map(|p| p.to_hex()).collect();
    unindexed.sort();
    report.unindexed_packs = unindexed;

    // Packs, one at a time: the name check always; blobs when asked, or when the name check fails
    // (to tell which chunks are hit).
    // A damaged local cache must not pass for damage in the repository.
    let index = repo.index_verified()?;
    let mut packs: Vec<&Id> = pack_sizes.keys().collect();
    packs.sort();
    // Every pack's header is compared with the index: each blob the index places in the pack must
    // be in the header, where and as the index says, and no chunk may exceed the config's
    // max_size. On an object store, packs not chosen for reading are checked by their headers
    // alone (one ranged GET each); the store's own checksums guard the bodies, and --read-data
    // reads them.
    let headers_only = storage.is_remote();
    let max_chunk = repo.config().chunker.max_size;
    let mut by_pack: HashMap<Id, Vec<PackEntry>> = HashMap::new();
    for l in index.iter() {
        by_pack.entry(l.pack).or_default().push(l.entry);
    }
    for pack in packs {
        let name = pack.to_hex();
        let indexed = by_pack.remove(pack).unwrap_or_default();
        let unreadable = |damaged: &mut HashMap<Id, String>| {
            for en in &indexed {
                damaged.entry(en.id).or_insert_with(|| format!("pack {pack} header unreadable"));
            }
        };
        if headers_only && !read_data.selects(pack) {
            match read_header_at(storage, keys, pack, pack_sizes[pack]) {
                Ok(entries) => {
                    report.checked.packs += 1;
                    report.checked.pack_bytes += pack_sizes[pack];
                    compare_header(&mut report, &mut damaged, pack, &entries, &indexed, max_chunk);
                }
                Err(e) => {
                    report.problem("pack", &name, e.to_string());
                    unreadable(&mut damaged);
                }
            }
            continue;
        }
        let bytes = match storage.get(FileKind::Pack, &name) {
            Ok(b) => b,
            Err(e) => {
                report.problem("pack", &name, e.to_string());
                continue;
            }
        };
        report.checked.packs += 1;
        report.checked.pack_bytes += bytes.len() as u64;
        let name_ok = Id::of_content(&bytes) == *pack;
        if !name_ok {
            report.problem("pack", &name, NAME_MISMATCH);
        }
        let entries = match header_of(keys, pack, &bytes) {
            Ok(e) => e,
            Err(e) => {
                if name_ok {
                    report.problem("pack", &name, e.to_string());
                }
                // Without its header, every chunk the index places in this pack is suspect.
                unreadable(&mut damaged);
                continue;
            }
        };
        compare_header(&mut report, &mut damaged, pack, &entries, &indexed, max_chunk);
        if name_ok && !read_data.selects(pack) {
            continue;
        }
        for en in entries {
            report.checked.blobs_read += 1;
            let sealed = &bytes[en.offset as usize..(en.offset + en.length) as usize];
            if let Err(e) = open_blob(keys, pack, &en, sealed) {
                report.problem("pack", &name, e.to_string());
                damaged.entry(en.id).or_insert_with(|| e.to_string());
            }
        }
    }

    // Snapshots.
    for (name, why) in index.skipped() {
        if !report.problems.iter().any(|p| p.kind == "index" && p.id == *name) {
            report.problem("index", name, why.clone());
        }
    }
    let reader = ItemReader::new(repo, &index);
    let mut hashed_ok: HashSet<[u8; 32]> = HashSet::new();
    let mut hashed_bad: HashSet<[u8; 32]> = HashSet::new();
    // (mailbox, source id) of damaged items, to look for intact versions afterwards.
    let mut wanted: HashSet<(String, Vec<u8>)> = HashSet::new();
    let snapshot_ids: Vec<Id> = storage.list(FileKind::Snapshot)?.iter().filter_map(|n| Id::from_hex(n)).collect();
    for id in &snapshot_ids {
        let summary = read_summary(storage, keys, id).ok();
        let mailbox = summary.as_ref().map(|s| text(&s.mailbox).into_owned());
        let time = summary.as_ref().map(|s| crate::time::format_unix_ms(s.time_ms));
        let snap = match repo.load_snapshot(id) {
            Ok(s) => s,
            Err(e) => {
                if !report.problems.iter().any(|p| p.kind == "snapshot" && p.id == id.to_hex()) {
                    report.problem("snapshot", &id.to_hex(), e.to_string());
                }
                report.affected.push(AffectedSnapshot {
                    id: id.to_hex(),
                    mailbox,
                    time,
                    manifest_damaged: true,
                    detail: Some(e.to_string()),
                    items: Vec::new(),
                });
                continue;
            }
        };
        let mut items = Vec::new();
        for it in snap.items() {
            let mut bad = it.chunks.iter().find_map(|c| {
                let c = Id(*c);
                if let Some(d) = damaged.get(&c) {
                    Some(format!("chunk {}: {d}", c.short()))
                } else if !index.contains(&c) {
                    Some(format!("chunk {} is not indexed", c.short()))
                } else {
                    None
                }
            });
            if bad.is_none() && read_data == ReadData::All && !hashed_ok.contains(&it.blob_hash) {
                if hashed_bad.contains(&it.blob_hash) {
                    bad = Some("whole-item hash mismatch".into());
                } else {
                    report.checked.items_hashed += 1;
                    match reader.read_item(it, &mut std::io::sink()) {
                        Ok(_) => {
                            hashed_ok.insert(it.blob_hash);
                        }
                        Err(e) => {
                            hashed_bad.insert(it.blob_hash);
                            bad = Some(e.to_string());
                        }
                    }
                }
            }
            if let Some(_why) = bad {
                let mut path = snap.folder_path(it.folder.to_native());
                path.push(text(&it.name).into_owned());
                wanted.insert((mailbox.clone().unwrap_or_default(), it.source_id.to_vec()));
                items.push(AffectedItem {
                    path: path.join("/"),
                    subject: text(&it.subject).into_owned(),
                    source_id: text(&it.source_id).into_owned(),
                    intact_in: None,
                });
            }
        }
        if !items.is_empty() {
            report.affected.push(AffectedSnapshot {
                id: id.to_hex(),
                mailbox,
                time,
                manifest_damaged: false,
                detail: None,
                items,
            });
        }
    }
    if !wanted.is_empty() {
        find_intact_versions(repo, &snapshot_ids, &index, &damaged, &hashed_bad, &wanted, &mut report);
    }
    Ok(report)
}

/// A pack's header against the index entries placing blobs in it (SPEC §9: they agree), and its
/// chunks against the config's `max_size` (§7).
fn compare_header(
    report: &mut Report,
    damaged: &mut HashMap<Id, String>,
    pack: &Id,
    header: &[PackEntry],
    indexed: &[PackEntry],
    max_chunk: u32,
) {
    let name = pack.to_hex();
    let held: HashMap<Id, &PackEntry> = header.iter().map(|e| (e.id, e)).collect();
    for e in indexed {
        let why = match held.get(&e.id) {
            None => format!("the index places blob {} in pack {pack}, whose header does not hold it", e.id.short()),
            Some(h) if **h != *e => format!(
                "the index and the header of pack {pack} disagree on blob {}: index offset {} length {} raw {} \
                 flag {}, header offset {} length {} raw {} flag {} (run `exarch repair index`)",
                e.id.short(),
                e.offset,
                e.length,
                e.raw_length,
                e.compression,
                h.offset,
                h.length,
                h.raw_length,
                h.compression
            ),
            Some(_) => continue,
        };
        report.problem("pack", &name, why.clone());
        damaged.entry(e.id).or_insert(why);
    }
    for h in header.iter().filter(|h| h.raw_length > max_chunk) {
        report.problem(
            "pack",
            &name,
            format!(
                "blob {} holds a chunk of {} bytes, above the config's max_size of {max_chunk} (SPEC §7)",
                h.id.short(),
                h.raw_length
            ),
        );
    }
}

/// Second pass, only when something is damaged: for each damaged item, a snapshot of the same
/// mailbox where the item with the same source id is intact.
fn find_intact_versions(
    repo: &Repository,
    snapshot_ids: &[Id],
    index: &crate::index::IndexTable,
    damaged: &HashMap<Id, String>,
    hashed_bad: &HashSet<[u8; 32]>,
    wanted: &HashSet<(String, Vec<u8>)>,
    report: &mut Report,
) {
    let mut intact: HashMap<(String, Vec<u8>), String> = HashMap::new();
    for id in snapshot_ids {
        let Ok(snap) = repo.load_snapshot(id) else { continue };
        let mailbox = text(&snap.summary.mailbox).into_owned();
        for it in snap.items() {
            let key = (mailbox.clone(), it.source_id.to_vec());
            if !wanted.contains(&key) || intact.contains_key(&key) || hashed_bad.contains(&it.blob_hash) {
                continue;
            }
            let ok = it.chunks.iter().all(|c| !damaged.contains_key(&Id(*c)) && index.contains(&Id(*c)));
            if ok {
                intact.insert(key, id.to_hex());
            }
        }
    }
    for snap in &mut report.affected {
        let mailbox = snap.mailbox.clone().unwrap_or_default();
        for item in &mut snap.items {
            item.intact_in = intact.get(&(mailbox.clone(), item.source_id.as_bytes().to_vec())).cloned();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(n: u8, offset: u32, raw_length: u32) -> PackEntry {
        PackEntry { id: Id([n; 32]), offset, length: 100, raw_length, compression: 1 }
    }

    #[test]
    fn header_and_index_must_agree_and_chunks_stay_under_max_size() {
        let pack = Id([9; 32]);
        let header = vec![entry(1, 0, 500), entry(2, 100, 500)];
        let mut report = Report::default();
        let mut damaged = HashMap::new();
        compare_header(&mut report, &mut damaged, &pack, &header, &header, 1000);
        assert!(report.is_clean() && damaged.is_empty());
        // an index entry at another offset, one with another raw length, one the header lacks
        let indexed = vec![entry(1, 50, 500), entry(2, 100, 400), entry(3, 200, 500)];
        compare_header(&mut report, &mut damaged, &pack, &header, &indexed, 1000);
        assert_eq!(report.problems.len(), 3, "{:?}", report.problems);
        assert_eq!(damaged.len(), 3);
        assert!(report.problems[0].detail.contains("disagree") && report.problems[0].detail.contains("repair index"));
        assert!(report.problems[2].detail.contains("does not hold it"));
        // a chunk above max_size (a foreign writer's): reported, not marked as unreadable
        let mut report = Report::default();
        let mut damaged = HashMap::new();
        compare_header(&mut report, &mut damaged, &pack, &header, &header, 499);
        assert_eq!(report.problems.len(), 2);
        assert!(report.problems[0].detail.contains("above the config's max_size of 499"));
        assert!(damaged.is_empty());
    }
}
