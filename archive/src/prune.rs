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
//!
//! Nothing is deleted (snapshot, pack or index file) before `usage::prove` has established, from
//! metadata that authenticated, what every snapshot references; a damaged or missing index file,
//! a damaged snapshot, an unindexed pack or a damaged cache makes prune refuse (exit 4) instead. An
//! unindexed pack is accepted only when its authenticated header shows that every blob in it is
//! indexed in another existing pack (a repack killed before its index file): it is marked.
//! Retention looks at intact snapshots only and never removes a mailbox's last snapshot unless
//! told to (`allow_empty`). When prune stops with an error part-way, `Stopped` still carries the
//! report of what it did delete.
//!
//! Memory: two bitmaps with one bit per indexed chunk, a counter pair per pack, one index file or
//! pack at a time.

use crate::envelope::{open_file, seal_file};
use crate::error::{Error, Result};
use crate::id::Id;
use crate::index::{read_index_file, write_index_file, BlobLocation, MAX_ENTRIES_PER_FILE};
use crate::lock::{live_locks, LockInfo};
use crate::manifest::text;
use crate::pack::{read_header, FinishedPack, PackBuilder, SealedBlob};
use crate::repository::Repository;
use crate::retention::{self, Policy};
use crate::storage::FileKind;
use crate::usage::{prove, Bitmap, ProofScope, Usage};
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
    let body = serde_json::to_vec(&MarkFile { version: 1, marked_ms: now_ms, packs: names })
        .map_err(|e| Error::Other(format!("encoding mark: {e}")))?;
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
    /// Let the policy remove every snapshot of a mailbox (otherwise that is refused).
    pub allow_empty: bool,
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
    /// Snapshots removed (in a dry run: that would be removed). Only those really deleted are
    /// listed, also when prune stopped with an error.
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
    /// Packs in no index file left alone because a backup is running that may still index them.
    pub packs_in_flight: u64,
    /// Packs in no index file whose every blob is indexed in another pack (what a repack that was
    /// interrupted before writing its index file leaves); marked with the dead ones.
    pub packs_redundant: u64,
    /// Marks not finished yet, and why.
    pub marks_waiting: Vec<String>,
    /// Temporary files of killed writers removed (in a dry run: that would be removed), and bytes.
    pub temporaries_removed: u64,
    pub bytes_temporaries: u64,
    /// Temporary files left alone: another process holds a lock (it may be writing them), or they
    /// were written less than [`TEMPORARY_AGE`] ago.
    pub temporaries_kept: u64,
}

/// A prune that stopped with an error, and what it had done by then.
#[derive(Debug)]
pub struct Stopped {
    pub report: PruneReport,
    pub error: Error,
}

/// Runs retention and garbage collection. On error the report of what was done comes back too.
pub fn prune(repo: &Repository, opts: &PruneOptions) -> std::result::Result<PruneReport, Box<Stopped>> {
    let mut report = PruneReport { dry_run: opts.dry_run, ..PruneReport::default() };
    match prune_into(repo, opts, &mut report).and_then(|()| sweep_temporaries(repo, opts, &mut report)) {
        Ok(()) => Ok(report),
        Err(error) => Err(Box::new(Stopped { report, error })),
    }
}

/// A temporary file untouched this long, with no other process holding a lock, is a dead writer's.
pub const TEMPORARY_AGE: std::time::Duration = std::time::Duration::from_secs(3600);

/// Removes the temporary files of writers that were killed (a backup stopped with Ctrl-C leaves the
/// pack it was filling, up to the pack size). They are not repository files (SPEC.md §4: readers
/// ignore them), so no snapshot can need one; what is proven instead is that no writer can still
/// own one: no other process holds a lock on the repository (any writer holds one while it
/// writes), and each file is older than [`TEMPORARY_AGE`].
fn sweep_temporaries(repo: &Repository, opts: &PruneOptions, report: &mut PruneReport) -> Result<()> {
    let storage = repo.storage();
    let temporaries = storage.temporaries()?;
    if temporaries.is_empty() {
        return Ok(());
    }
    let locks = live_locks(storage.as_ref(), &repo.context().host)?;
    if locks.iter().any(|(name, _)| Some(name) != opts.own_lock.as_ref()) {
        report.temporaries_kept = temporaries.len() as u64;
        return Ok(());
    }
    let now = std::time::SystemTime::now();
    for t in temporaries {
        let age = t.modified.and_then(|m| now.duration_since(m).ok());
        if age.is_none_or(|a| a < TEMPORARY_AGE) {
            report.temporaries_kept += 1;
            continue;
        }
        if !opts.dry_run {
            tracing::info!(file = %t.path, bytes = t.bytes, "temporary file of an interrupted writer removed");
            storage.delete_temporary(&t)?;
        }
        report.temporaries_removed += 1;
        report.bytes_temporaries += t.bytes;
    }
    Ok(())
}

/// Locks of other processes that are still running, except prunes.
fn others_running<'a>(locks: &'a [(String, LockInfo)], opts: &'a PruneOptions) -> impl Iterator<Item = &'a LockInfo> {
    locks.iter().filter(move |(n, l)| Some(n) != opts.own_lock.as_ref() && !l.prune).map(|(_, l)| l)
}

fn backups_running(repo: &Repository, opts: &PruneOptions) -> Result<bool> {
    let locks = live_locks(repo.storage().as_ref(), &repo.context().host)?;
    let running = others_running(&locks, opts).any(|l| l.is_backup());
    Ok(running)
}

fn prune_into(repo: &Repository, opts: &PruneOptions, report: &mut PruneReport) -> Result<()> {
    let storage = repo.storage();

    // Retention, per mailbox, on the snapshots whose summary opens (the proof below refuses if
    // any snapshot is damaged, so nothing is decided on a partial picture).
    let all = repo.snapshots()?;
    let mut groups: BTreeMap<String, Vec<(Id, i64)>> = BTreeMap::new();
    for s in &all {
        if let Ok(m) = &s.summary {
            groups.entry(text(&m.mailbox).into_owned()).or_default().push((s.id, m.time_ms));
        }
    }
    let mut doomed: Vec<SnapRef> = Vec::new();
    let mut doomed_ids: HashSet<Id> = HashSet::new();
    for (mailbox, snaps) in &groups {
        let applies = opts.mailbox.as_ref().is_none_or(|m| m == mailbox);
        let keep = if applies {
            retention::apply(&opts.policy, &snaps.iter().map(|s| s.1).collect::<Vec<_>>())
        } else {
            vec![true; snaps.len()]
        };
        if !keep.contains(&true) && !opts.allow_empty {
            return Err(Error::Usage(format!(
                "the retention rules would remove all {} snapshot(s) of mailbox {mailbox}; nothing was deleted. \
                 Keep at least one (e.g. --keep-last 1), or add --allow-empty if that is really meant",
                snaps.len()
            )));
        }
        for ((id, t), k) in snaps.iter().zip(keep) {
            let r = SnapRef { id: id.to_hex(), mailbox: mailbox.clone(), time: crate::time::format_unix_ms(*t) };
            if k {
                report.snapshots_kept.push(r);
            } else {
                doomed_ids.insert(*id);
                doomed.push(r);
            }
        }
    }
    let all_ids: Vec<Id> = all.iter().map(|s| s.id).collect();
    let running = !opts.delete_now && backups_running(repo, opts)?;
    let counts = |id: &Id| !doomed_ids.contains(id);
    let mut usage = prove(repo, &ProofScope { snapshots: &all_ids, counts: &counts, backups_running: running })?;

    if opts.dry_run {
        report.snapshots_removed = doomed;
    } else {
        for r in doomed {
            tracing::info!(snapshot = %r.id, mailbox = %r.mailbox, "snapshot removed by the retention rules");
            storage.delete(FileKind::Snapshot, &r.id)?;
            report.snapshots_removed.push(r);
        }
        // Finish older marks before making new ones, so a pack is never in both.
        if !opts.delete_now && finish_marks(repo, opts, report)? {
            usage = fresh_usage(repo, opts)?; // index files were rewritten
        }
    }
    report.packs_in_flight = usage.unindexed_in_flight.len() as u64;

    // What is dead now.
    let marked = marked_packs(repo)?;
    let mut live_bytes: HashMap<Id, (u64, u64)> = HashMap::new(); // pack -> (live, total)
    for name in &usage.index_files {
        for l in read_index_file(storage.as_ref(), repo.keys(), name)? {
            if marked.contains(&l.pack) {
                continue;
            }
            let e = live_bytes.entry(l.pack).or_default();
            e.1 += l.entry.length as u64;
            if usage.is_live(&l) {
                e.0 += l.entry.length as u64;
            }
        }
    }
    let mut to_mark: Vec<Id> = Vec::new();
    let mut to_repack: Vec<Id> = Vec::new();
    let mut packs: Vec<Id> = usage.packs.iter().copied().collect();
    packs.sort();
    for pack in packs {
        if marked.contains(&pack) {
            continue;
        }
        match live_bytes.get(&pack) {
            // In no index: in flight for a running backup (the proof refused otherwise).
            None => {}
            Some((0, _)) => to_mark.push(pack),
            Some((live, total)) if (total - live) as f64 >= opts.repack_threshold * *total as f64 && live < total => {
                to_repack.push(pack)
            }
            _ => {}
        }
    }
    // Debris of an interrupted repack: nothing in it is needed (every blob is indexed elsewhere).
    report.packs_redundant = usage.redundant.len() as u64;
    to_mark.extend(usage.redundant.iter().copied());
    for p in to_mark.iter().chain(&to_repack) {
        report.bytes_marked += storage.size(FileKind::Pack, &p.to_hex()).unwrap_or(0);
    }
    if opts.dry_run {
        report.packs_marked = (to_mark.len() + to_repack.len()) as u64;
        report.packs_repacked = to_repack.len() as u64;
        report.bytes_repacked = to_repack.iter().filter_map(|p| live_bytes.get(p)).map(|(l, _)| *l).sum();
        return Ok(());
    }

    let repacked = repack(repo, &usage, &to_repack, report)?;
    report.packs_repacked = repacked.len() as u64;
    to_mark.extend(repacked);
    report.packs_marked = to_mark.len() as u64;
    if !to_mark.is_empty() {
        write_mark(repo, &to_mark, crate::time::now_ms())?;
    }
    drop(usage); // the table is rebuilt after phase 2 rewrites index files; do not map both at once
    if opts.delete_now {
        finish_marks(repo, opts, report)?;
    }
    Ok(())
}

/// Usage of every snapshot that exists now (phase 2 must count backups that finished meanwhile).
fn fresh_usage(repo: &Repository, opts: &PruneOptions) -> Result<Usage> {
    let snapshots: Vec<Id> = repo.storage().list(FileKind::Snapshot)?.iter().filter_map(|n| Id::from_hex(n)).collect();
    let running = !opts.delete_now && backups_running(repo, opts)?;
    prove(repo, &ProofScope { snapshots: &snapshots, counts: &|_| true, backups_running: running })
}

/// Copies the live blobs out of mostly-dead packs into new packs; returns the packs emptied so.
fn repack(repo: &Repository, usage: &Usage, to_repack: &[Id], report: &mut PruneReport) -> Result<Vec<Id>> {
    let storage = repo.storage();
    let mut builder: Option<PackBuilder> = None;
    let mut new_locs: Vec<BlobLocation> = Vec::new();
    let pack_size = repo.config().pack_size as usize;
    let mut repacked = Vec::new();
    for pack in to_repack {
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
            if !usage.is_live(&l) {
                continue;
            }
            let Some(sealed) = bytes.get(entry.offset as usize..(entry.offset as u64 + entry.length as u64) as usize)
            else {
                continue;
            };
            let b = PackBuilder::current(&mut builder, storage.as_ref(), pack_size)?;
            b.add(SealedBlob {
                id: entry.id,
                compression: entry.compression,
                raw_length: entry.raw_length,
                bytes: sealed.to_vec(),
            })?;
            if b.written() >= pack_size as u64 {
                store_pack(repo, builder.take().expect("filled"), &mut new_locs, report)?;
            }
        }
        repacked.push(*pack);
    }
    if let Some(b) = builder {
        store_pack(repo, b, &mut new_locs, report)?;
    }
    for chunk in new_locs.chunks_mut(MAX_ENTRIES_PER_FILE) {
        write_index_file(storage.as_ref(), repo.keys(), &repo.context().entropy, chunk)?;
    }
    Ok(repacked)
}

fn store_pack(
    repo: &Repository,
    builder: PackBuilder,
    locs: &mut Vec<BlobLocation>,
    report: &mut PruneReport,
) -> Result<()> {
    let FinishedPack { id, upload, entries } = builder.finish(repo.keys(), &repo.context().entropy)?;
    report.bytes_repacked += upload.len();
    repo.storage().finish_upload(upload, &id.to_hex())?;
    locs.extend(entries.into_iter().map(|entry| BlobLocation { pack: id, entry }));
    Ok(())
}

/// Phase 2: delete the packs of marks that are old enough and that nothing can still need.
/// Returns true if it changed index files.
fn finish_marks(repo: &Repository, opts: &PruneOptions, report: &mut PruneReport) -> Result<bool> {
    let storage = repo.storage();
    let now = crate::time::now_ms();
    let locks = live_locks(storage.as_ref(), &repo.context().host)?;
    let mut eligible: Vec<(String, MarkFile)> = Vec::new();
    for (name, mark) in read_marks(repo)? {
        let Ok(mark) = mark else {
            report.marks_waiting.push(format!("mark {} is damaged; its packs are kept", &name[..8.min(name.len())]));
            continue;
        };
        if !opts.delete_now {
            if now.saturating_sub(mark.marked_ms) < opts.grace_ms {
                report.marks_waiting.push(format!(
                    "mark {} from {} waits for its grace period",
                    &name[..8.min(name.len())],
                    crate::time::format_unix_ms(mark.marked_ms)
                ));
                continue;
            }
            let busy = others_running(&locks, opts)
                .find(|l| !l.is_backup() || l.created.saturating_mul(1000) < mark.marked_ms);
            if let Some(l) = busy {
                report.marks_waiting.push(format!(
                    "mark {} waits for {} on {} (pid {}) to finish",
                    &name[..8.min(name.len())],
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
        return Ok(false);
    }
    let doomed: HashSet<Id> =
        eligible.iter().flat_map(|(_, m)| m.packs.iter().filter_map(|p| Id::from_hex(p))).collect();

    // Fresh, proven usage, and which used chunks have a copy outside the doomed packs.
    let usage = fresh_usage(repo, opts)?;
    let index = &usage.index;
    let mut elsewhere = Bitmap::new(index.len());
    let mut touching: Vec<String> = Vec::new();
    let mut needed_in: HashSet<Id> = HashSet::new();
    let mut doomed_entries: Vec<(Id, usize)> = Vec::new();
    for name in &usage.index_files {
        let locs = read_index_file(storage.as_ref(), repo.keys(), name)?;
        let mut touches = false;
        for l in locs {
            let Some(pos) = index.position(&l.entry.id) else { continue };
            if doomed.contains(&l.pack) {
                touches = true;
                if usage.used.get(pos) {
                    doomed_entries.push((l.pack, pos));
                }
            } else if usage.packs.contains(&l.pack) {
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
    drop(usage);

    // 1. index files without the deleted packs (new file first, then the old one goes)
    for name in &touching {
        let locs = read_index_file(storage.as_ref(), repo.keys(), name)?;
        let before = locs.len();
        let mut keep: Vec<BlobLocation> = locs.into_iter().filter(|l| !delete.contains(&l.pack)).collect();
        if keep.len() == before {
            continue; // only rescued packs in it
        }
        if !keep.is_empty() {
            write_index_file(storage.as_ref(), repo.keys(), &repo.context().entropy, &mut keep)?;
        }
        tracing::debug!(index = %name, kept = keep.len(), "index file rewritten without deleted packs");
        storage.delete(FileKind::Index, name)?;
    }
    // 2. the packs
    let mut delete: Vec<Id> = delete.into_iter().collect();
    delete.sort();
    for pack in &delete {
        let name = pack.to_hex();
        if let Ok(size) = storage.size(FileKind::Pack, &name) {
            tracing::info!(pack = %name, bytes = size, "pack deleted: marked, proven unreferenced, grace passed");
            storage.delete(FileKind::Pack, &name)?;
            report.packs_deleted += 1;
            report.bytes_deleted += size;
        }
    }
    // 3. the marks (rescued packs are thereby unmarked)
    for (name, _) in &eligible {
        storage.delete(FileKind::Mark, name)?;
    }
    Ok(true)
}
