//! Retention and garbage collection, with two-phase deletion so backups keep running meanwhile.
//!
//! Phase 1 (every prune): forget the snapshots the policy drops; find packs whose chunks no
//! snapshot needs; copy the live blobs out of mostly-dead packs into new packs (sealed bytes are
//! copied as they are); then *mark* the dead and emptied packs in a `marks/` file. Marked packs stay
//! readable and indexed, but writers no longer deduplicate against them.
//!
//! Phase 2 (a later prune): a mark is finished once it is older than the grace period, no backup
//! that started before it is still running, and no restore or check is running at all. Then, for
//! safety, usage is computed afresh: a marked pack holding a chunk some snapshot still needs and no
//! unmarked pack holds is kept ("rescued"). The others are removed from the index files (rewritten
//! without them), then deleted, then the mark file goes. Each step is crash-safe: a killed prune
//! leaves duplicates or marks to finish, never a snapshot pointing at nothing.
//!
//! `delete_now` (under an exclusive lock, so nothing else runs) does both phases at once.
//! Memory: two bitmaps with one bit per indexed chunk, a counter pair per pack, one index file or
//! pack at a time.

use crate::envelope::{open_file, seal_file};
use crate::error::{Error, Result};
use crate::id::Id;
use crate::index::{read_index_file, write_index_file, BlobLocation, IndexTable, MAX_ENTRIES_PER_FILE};
use crate::lock::live_locks;
use crate::manifest::text;
use crate::pack::{read_header, PackBuilder, SealedBlob};
use crate::repository::Repository;
use crate::retention::{self, Policy};
use crate::storage::FileKind;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet};

pub const MARK_MAGIC: &[u8; 8] = b"EXRMARK1";
/// Default share of dead bytes above which a pack is rewritten.
pub const DEFAULT_REPACK_THRESHOLD: f64 = 0.2;

/// Body of a `marks/<id>` file (sealed like an index file).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct MarkFile {
    pub version: u32,
    /// When the packs were marked, Unix ms.
    pub marked_ms: i64,
    pub packs: Vec<String>,
}

/// Reads every mark file. A damaged one is reported, and its packs are simply not deleted.
pub fn read_marks(repo: &Repository) -> Result<Vec<(String, std::result::Result<MarkFile, String>)>> {
    let storage = repo.storage();
    Ok(storage
        .list(FileKind::Mark)?
        .into_iter()
        .map(|name| {
            let m = storage
                .get(FileKind::Mark, &name)
                .and_then(|raw| open_file(repo.keys(), MARK_MAGIC, &raw, &format!("mark {name}")))
                .and_then(|body| {
                    serde_json::from_slice::<MarkFile>(&body)
                        .map_err(|e| Error::damaged(format!("mark {name}"), e.to_string()))
                })
                .map_err(|e| e.to_string());
            (name, m)
        })
        .collect())
}

/// Packs currently marked for deletion (writers must not deduplicate against them).
pub fn marked_packs(repo: &Repository) -> Result<HashSet<Id>> {
    Ok(read_marks(repo)?
        .into_iter()
        .filter_map(|(_, m)| m.ok())
        .flat_map(|m| m.packs.into_iter().filter_map(|p| Id::from_hex(&p)))
        .collect())
}

fn write_mark(repo: &Repository, packs: &[Id], now_ms: i64) -> Result<()> {
    let mut names: Vec<String> = packs.iter().map(|p| p.to_hex()).collect();
    names.sort();
    let body = serde_json::to_vec(&MarkFile { version: 1, marked_ms: now_ms, packs: names }).expect("serialises");
    let file = seal_file(repo.keys(), &repo.context().entropy, MARK_MAGIC, 1, &body);
    repo.storage().put(FileKind::Mark, &Id::of_content(&file).to_hex(), &file)
}

#[derive(Debug, Clone)]
pub struct PruneOptions {
    pub policy: Policy,
    /// Apply the policy to this mailbox only.
    pub mailbox: Option<String>,
    pub dry_run: bool,
    /// Skip the grace period: the caller holds an exclusive lock.
    pub delete_now: bool,
    pub grace_ms: i64,
    pub repack_threshold: f64,
    /// The caller's own lock file, ignored when looking for running processes.
    pub own_lock: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SnapRef {
    pub id: String,
    pub mailbox: String,
    pub time: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct PruneReport {
    pub dry_run: bool,
    pub snapshots_kept: Vec<SnapRef>,
    pub snapshots_removed: Vec<SnapRef>,
    /// Packs marked in this run (dead, or emptied by repacking).
    pub packs_marked: u64,
    pub packs_repacked: u64,
    /// Bytes of the marked packs: freed when their deletion is finished.
    pub bytes_marked: u64,
    /// Bytes written into new packs by repacking.
    pub bytes_repacked: u64,
    pub packs_deleted: u64,
    pub bytes_deleted: u64,
    /// Marked packs kept because a snapshot turned out to need them.
    pub packs_rescued: u64,
    /// Marks not finished yet, and why.
    pub marks_waiting: Vec<String>,
}

/// One bit per position of the index table.
struct Bitmap(Vec<u64>);

impl Bitmap {
    fn new(n: usize) -> Bitmap {
        Bitmap(vec![0; n.div_ceil(64)])
    }
    fn set(&mut self, i: usize) {
        self.0[i / 64] |= 1 << (i % 64);
    }
    fn get(&self, i: usize) -> bool {
        self.0[i / 64] & (1 << (i % 64)) != 0
    }
}

/// Chunks referenced by the given snapshots, as a bitmap over `index`. Fails if one cannot be read:
/// garbage collection must never guess what a damaged manifest referenced.
fn used_chunks(repo: &Repository, index: &IndexTable, snapshots: &[Id]) -> Result<Bitmap> {
    let mut used = Bitmap::new(index.len());
    for id in snapshots {
        let snap = repo.load_snapshot(id).map_err(|e| {
            Error::Other(format!(
                "snapshot {} cannot be read ({e}); garbage collection needs every manifest: run `exarch verify`",
                id.short()
            ))
        })?;
        for item in snap.manifest().items.iter() {
            for c in item.chunks.iter() {
                if let Some(pos) = index.position(&Id(*c)) {
                    used.set(pos);
                }
            }
        }
    }
    Ok(used)
}

/// True if `l` is the location the table serves for its chunk and the chunk is used.
fn is_live(index: &IndexTable, used: &Bitmap, l: &BlobLocation) -> bool {
    match index.position(&l.entry.id) {
        Some(pos) => {
            used.get(pos) && {
                let served = index.entry(pos);
                served.pack == l.pack && served.entry.offset == l.entry.offset
            }
        }
        None => false,
    }
}

pub fn prune(repo: &Repository, opts: &PruneOptions) -> Result<PruneReport> {
    let storage = repo.storage();
    let mut report = PruneReport { dry_run: opts.dry_run, ..PruneReport::default() };

    // Retention, per mailbox.
    let all = repo.snapshots()?;
    let mut groups: BTreeMap<String, Vec<(Id, i64)>> = BTreeMap::new();
    let mut unreadable = Vec::new();
    for s in &all {
        match &s.summary {
            Ok(m) => groups.entry(text(&m.mailbox).into_owned()).or_default().push((s.id, m.time_ms)),
            Err(_) => unreadable.push(s.id),
        }
    }
    let mut keep_ids: Vec<Id> = unreadable.clone();
    for (mailbox, snaps) in &groups {
        let applies = opts.mailbox.as_ref().is_none_or(|m| m == mailbox);
        let keep = if applies {
            retention::apply(&opts.policy, &snaps.iter().map(|s| s.1).collect::<Vec<_>>())
        } else {
            vec![true; snaps.len()]
        };
        for ((id, t), k) in snaps.iter().zip(keep) {
            let r = SnapRef { id: id.to_hex(), mailbox: mailbox.clone(), time: crate::time::format_unix_ms(*t) };
            if k {
                keep_ids.push(*id);
                report.snapshots_kept.push(r);
            } else {
                report.snapshots_removed.push(r);
            }
        }
    }
    if !opts.dry_run {
        for r in &report.snapshots_removed {
            storage.delete(FileKind::Snapshot, &r.id)?;
        }
        // Finish older marks before making new ones, so a pack is never in both.
        finish_marks(repo, opts, &mut report)?;
    }

    // What is dead now.
    let index = repo.index()?;
    let used = used_chunks(repo, &index, &keep_ids)?;
    let marked = marked_packs(repo)?;
    let mut live_bytes: HashMap<Id, (u64, u64)> = HashMap::new(); // pack -> (live, total)
    for name in storage.list(FileKind::Index)? {
        let locs = match read_index_file(storage.as_ref(), repo.keys(), &name) {
            Ok(l) => l,
            Err(e) if e.class() == crate::ErrorClass::Damage => continue, // verify reports it
            Err(e) => return Err(e),
        };
        for l in locs {
            if marked.contains(&l.pack) {
                continue;
            }
            let e = live_bytes.entry(l.pack).or_default();
            e.1 += l.entry.length as u64;
            if is_live(&index, &used, &l) {
                e.0 += l.entry.length as u64;
            }
        }
    }
    let mut to_mark: Vec<Id> = Vec::new();
    let mut to_repack: Vec<Id> = Vec::new();
    for name in storage.list(FileKind::Pack)? {
        let Some(pack) = Id::from_hex(&name) else { continue };
        if marked.contains(&pack) {
            continue;
        }
        match live_bytes.get(&pack) {
            // In no index: left by an interrupted backup, or being written right now. Marking is
            // safe either way: phase 2 rescues it if its backup finishes and needs it.
            None => to_mark.push(pack),
            Some((0, _)) => to_mark.push(pack),
            Some((live, total)) if (total - live) as f64 >= opts.repack_threshold * *total as f64 && live < total => {
                to_repack.push(pack)
            }
            _ => {}
        }
    }
    for p in to_mark.iter().chain(&to_repack) {
        report.bytes_marked += storage.size(FileKind::Pack, &p.to_hex()).unwrap_or(0);
    }
    if opts.dry_run {
        report.packs_marked = (to_mark.len() + to_repack.len()) as u64;
        report.packs_repacked = to_repack.len() as u64;
        report.bytes_repacked = to_repack.iter().filter_map(|p| live_bytes.get(p)).map(|(l, _)| *l).sum();
        return Ok(report);
    }

    // Copy live blobs out of mostly-dead packs.
    let mut builder = PackBuilder::new(0);
    let mut new_locs: Vec<BlobLocation> = Vec::new();
    let pack_size = repo.config().pack_size as usize;
    let mut repacked = Vec::new();
    for pack in &to_repack {
        let (entries, bytes) = match read_header(storage.as_ref(), repo.keys(), pack)
            .and_then(|e| Ok((e, storage.get(FileKind::Pack, &pack.to_hex())?)))
        {
            Ok(x) => x,
            Err(_) => continue, // damaged: leave it alone for verify to report
        };
        if Id::of_content(&bytes) != *pack {
            continue;
        }
        for entry in entries {
            let l = BlobLocation { pack: *pack, entry };
            if !is_live(&index, &used, &l) {
                continue;
            }
            let sealed = bytes[entry.offset as usize..(entry.offset + entry.length) as usize].to_vec();
            builder.add(SealedBlob {
                id: entry.id,
                compression: entry.compression,
                raw_length: entry.raw_length,
                bytes: sealed,
            });
            if builder.len() >= pack_size {
                store_pack(repo, std::mem::take(&mut builder), &mut new_locs, &mut report)?;
            }
        }
        repacked.push(*pack);
    }
    if !builder.is_empty() {
        store_pack(repo, builder, &mut new_locs, &mut report)?;
    }
    for chunk in new_locs.chunks_mut(MAX_ENTRIES_PER_FILE) {
        write_index_file(storage.as_ref(), repo.keys(), &repo.context().entropy, chunk)?;
    }
    report.packs_repacked = repacked.len() as u64;
    to_mark.extend(repacked);
    report.packs_marked = to_mark.len() as u64;
    if !to_mark.is_empty() {
        write_mark(repo, &to_mark, crate::time::now_ms())?;
    }
    drop(index); // the table is rebuilt after phase 2 rewrites index files; do not map both at once
    if opts.delete_now {
        finish_marks(repo, opts, &mut report)?;
    }
    Ok(report)
}

fn store_pack(
    repo: &Repository,
    builder: PackBuilder,
    locs: &mut Vec<BlobLocation>,
    report: &mut PruneReport,
) -> Result<()> {
    let (id, bytes, entries) = builder.finish(repo.keys(), &repo.context().entropy);
    repo.storage().put(FileKind::Pack, &id.to_hex(), &bytes)?;
    report.bytes_repacked += bytes.len() as u64;
    locs.extend(entries.into_iter().map(|entry| BlobLocation { pack: id, entry }));
    Ok(())
}

/// Phase 2: delete the packs of marks that are old enough and that nothing can still need.
fn finish_marks(repo: &Repository, opts: &PruneOptions, report: &mut PruneReport) -> Result<()> {
    let storage = repo.storage();
    let now = crate::time::now_ms();
    let locks = live_locks(storage.as_ref(), &repo.context().host)?;
    let mut eligible: Vec<(String, MarkFile)> = Vec::new();
    for (name, mark) in read_marks(repo)? {
        let Ok(mark) = mark else {
            report.marks_waiting.push(format!("mark {} is damaged; its packs are kept", &name[..8]));
            continue;
        };
        if !opts.delete_now {
            if now - mark.marked_ms < opts.grace_ms {
                report.marks_waiting.push(format!(
                    "mark {} from {} waits for its grace period",
                    &name[..8],
                    crate::time::format_unix_ms(mark.marked_ms)
                ));
                continue;
            }
            let busy = locks.iter().find(|(n, l)| {
                Some(n) != opts.own_lock.as_ref()
                    && !l.prune
                    && (l.purpose != "pack" || l.created * 1000 < mark.marked_ms)
            });
            if let Some((_, l)) = busy {
                report.marks_waiting.push(format!(
                    "mark {} waits for {} on {} (pid {}) to finish",
                    &name[..8],
                    l.purpose,
                    l.host,
                    l.pid
                ));
                continue;
            }
        }
        eligible.push((name, mark));
    }
    if eligible.is_empty() {
        return Ok(());
    }
    let doomed: HashSet<Id> =
        eligible.iter().flat_map(|(_, m)| m.packs.iter().filter_map(|p| Id::from_hex(p))).collect();

    // Fresh usage, and which used chunks have a copy outside the doomed packs.
    let index = repo.index()?;
    let snapshots: Vec<Id> = storage.list(FileKind::Snapshot)?.iter().filter_map(|n| Id::from_hex(n)).collect();
    let used = used_chunks(repo, &index, &snapshots)?;
    let mut elsewhere = Bitmap::new(index.len());
    let existing: HashSet<Id> = storage.list(FileKind::Pack)?.iter().filter_map(|n| Id::from_hex(n)).collect();
    let index_files = storage.list(FileKind::Index)?;
    let mut touching: Vec<String> = Vec::new();
    let mut needed_in: HashSet<Id> = HashSet::new();
    let mut doomed_entries: Vec<(Id, usize)> = Vec::new();
    for name in &index_files {
        let Ok(locs) = read_index_file(storage.as_ref(), repo.keys(), name) else { continue };
        let mut touches = false;
        for l in locs {
            let Some(pos) = index.position(&l.entry.id) else { continue };
            if doomed.contains(&l.pack) {
                touches = true;
                if used.get(pos) {
                    doomed_entries.push((l.pack, pos));
                }
            } else if existing.contains(&l.pack) {
                elsewhere.set(pos);
            }
        }
        if touches {
            touching.push(name.clone());
        }
    }
    for (pack, pos) in doomed_entries {
        if !elsewhere.get(pos) {
            needed_in.insert(pack);
        }
    }
    report.packs_rescued += needed_in.len() as u64;
    let delete: HashSet<Id> = doomed.difference(&needed_in).copied().collect();

    // 1. index files without the deleted packs (new file first, then the old one goes)
    for name in &touching {
        let Ok(locs) = read_index_file(storage.as_ref(), repo.keys(), name) else { continue };
        let before = locs.len();
        let mut keep: Vec<BlobLocation> = locs.into_iter().filter(|l| !delete.contains(&l.pack)).collect();
        if keep.len() == before {
            continue; // only rescued packs in it
        }
        if !keep.is_empty() {
            write_index_file(storage.as_ref(), repo.keys(), &repo.context().entropy, &mut keep)?;
        }
        storage.delete(FileKind::Index, name)?;
    }
    // 2. the packs
    for pack in &delete {
        let name = pack.to_hex();
        if let Ok(size) = storage.size(FileKind::Pack, &name) {
            storage.delete(FileKind::Pack, &name)?;
            report.packs_deleted += 1;
            report.bytes_deleted += size;
        }
    }
    // 3. the marks (rescued packs are thereby unmarked)
    for (name, _) in &eligible {
        storage.delete(FileKind::Mark, name)?;
    }
    Ok(())
}
