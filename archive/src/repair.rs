//! Repairs that put damaged metadata right without guessing: rebuilding the index from the packs'
//! own sealed headers, and removing snapshots that are damaged or that the operator names.
//!
//! `repair_index` writes the new index files before it removes the old ones, so a repair that is
//! killed leaves extra index files (harmless duplicates), never fewer locations than before. A pack
//! whose header is damaged keeps the locations the old index files gave it, if they authenticated.
//! Removing snapshots deletes only snapshot files; their data goes with a later `prune`.

use crate::error::{Error, ErrorClass, Result};
use crate::id::Id;
use crate::index::{read_index_file, write_index_file, BlobLocation, MAX_ENTRIES_PER_FILE};
use crate::manifest::text;
use crate::pack::read_header;
use crate::prune::SnapRef;
use crate::repository::Repository;
use crate::storage::FileKind;
use serde::Serialize;
use std::collections::{HashMap, HashSet};

#[derive(Debug, Clone, Default, Serialize)]
pub struct RepairIndexReport {
    pub dry_run: bool,
    /// Packs whose sealed header was read and indexed.
    pub packs_indexed: u64,
    /// Packs the old index did not list (now indexed).
    pub packs_added: u64,
    /// Packs whose header is damaged: (pack, why, locations kept from the old index).
    pub packs_damaged: Vec<(String, String, u64)>,
    /// Packs the old index files listed that no longer exist (their entries are dropped).
    pub packs_missing: Vec<String>,
    /// Old index files that did not authenticate (replaced).
    pub index_files_damaged: Vec<String>,
    pub index_files_written: u64,
    pub index_files_removed: u64,
    pub entries: u64,
}

/// Writes locations as index files of at most `MAX_ENTRIES_PER_FILE` distinct chunk ids each.
struct IndexWriter<'a> {
    repo: &'a Repository,
    batch: Vec<BlobLocation>,
    ids: HashSet<Id>,
    written: Vec<String>,
    dry_run: bool,
}

impl IndexWriter<'_> {
    fn add(&mut self, l: BlobLocation) -> Result<()> {
        // An index file lists each chunk once; a second copy elsewhere goes to the next file.
        if !self.ids.insert(l.entry.id) {
            self.flush()?;
            self.ids.insert(l.entry.id);
        }
        self.batch.push(l);
        if self.batch.len() >= MAX_ENTRIES_PER_FILE {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        if !self.batch.is_empty() {
            if !self.dry_run {
                let storage = self.repo.storage();
                let id = write_index_file(
                    storage.as_ref(),
                    self.repo.keys(),
                    &self.repo.context().entropy,
                    &mut self.batch,
                )?;
                self.written.push(id.to_hex());
            } else {
                self.written.push(String::new());
            }
        }
        self.batch.clear();
        self.ids.clear();
        Ok(())
    }
}

/// Rebuilds every index file from the pack headers. The caller holds an exclusive lock.
pub fn repair_index(repo: &Repository, dry_run: bool) -> Result<RepairIndexReport> {
    let storage = repo.storage();
    let mut report = RepairIndexReport { dry_run, ..RepairIndexReport::default() };
    let old_files = storage.list(FileKind::Index)?;
    // Which packs the old index lists (and which old files are damaged).
    let mut old_packs: HashSet<Id> = HashSet::new();
    for name in &old_files {
        match read_index_file(storage.as_ref(), repo.keys(), name) {
            Ok(locs) => old_packs.extend(locs.iter().map(|l| l.pack)),
            Err(e) if e.class() == ErrorClass::Damage => report.index_files_damaged.push(name.clone()),
            Err(e) => return Err(e),
        }
    }
    let mut packs: Vec<Id> = storage.list(FileKind::Pack)?.iter().filter_map(|n| Id::from_hex(n)).collect();
    packs.sort();
    let present: HashSet<Id> = packs.iter().copied().collect();
    let mut w = IndexWriter { repo, batch: Vec::new(), ids: HashSet::new(), written: Vec::new(), dry_run };
    let mut damaged: HashMap<Id, String> = HashMap::new();
    for pack in &packs {
        match read_header(storage.as_ref(), repo.keys(), pack) {
            Ok(entries) => {
                report.packs_indexed += 1;
                if !old_packs.contains(pack) {
                    report.packs_added += 1;
                }
                for entry in entries {
                    report.entries += 1;
                    w.add(BlobLocation { pack: *pack, entry })?;
                }
            }
            Err(e) if e.class() == ErrorClass::Damage => {
                damaged.insert(*pack, e.to_string());
            }
            Err(e) => return Err(e),
        }
    }
    // Packs with a damaged header keep what intact old index files said about them.
    let mut kept: HashMap<Id, u64> = HashMap::new();
    if !damaged.is_empty() {
        for name in &old_files {
            let Ok(locs) = read_index_file(storage.as_ref(), repo.keys(), name) else { continue };
            for l in locs.into_iter().filter(|l| damaged.contains_key(&l.pack)) {
                *kept.entry(l.pack).or_default() += 1;
                report.entries += 1;
                w.add(l)?;
            }
        }
    }
    w.flush()?;
    let mut damaged: Vec<(Id, String)> = damaged.into_iter().collect();
    damaged.sort();
    report.packs_damaged =
        damaged.into_iter().map(|(p, why)| (p.to_hex(), why, kept.get(&p).copied().unwrap_or(0))).collect();
    let mut missing: Vec<String> = old_packs.difference(&present).map(|p| p.to_hex()).collect();
    missing.sort();
    report.packs_missing = missing;
    report.index_files_written = w.written.len() as u64;
    if dry_run {
        return Ok(report);
    }
    // The new files are durable; now the old ones go (one that was rewritten byte for byte stays).
    let new: HashSet<&String> = w.written.iter().collect();
    for name in &old_files {
        if !new.contains(name) {
            tracing::info!(index = %name, "old index file removed after the rebuild");
            storage.delete(FileKind::Index, name)?;
            report.index_files_removed += 1;
        }
    }
    Ok(report)
}

/// Snapshots that do not open (summary or manifest damaged), with why.
pub fn damaged_snapshots(repo: &Repository) -> Result<Vec<(Id, String)>> {
    let mut out = Vec::new();
    for s in repo.snapshots()? {
        let why = match &s.summary {
            Err(e) => Some(e.clone()),
            Ok(_) => match repo.load_snapshot(&s.id) {
                Ok(_) => None,
                Err(e) if e.class() == ErrorClass::Damage => Some(e.to_string()),
                Err(e) => return Err(e),
            },
        };
        if let Some(why) = why {
            out.push((s.id, why));
        }
    }
    Ok(out)
}

/// Removes the named snapshots (their data stays until a prune finds it unreferenced). Returns
/// what was removed; on an error part-way, the error says how many were removed before it.
pub fn forget(repo: &Repository, ids: &[Id], dry_run: bool) -> Result<Vec<SnapRef>> {
    let infos = repo.snapshots()?;
    let mut out = Vec::new();
    for id in ids {
        let info = infos.iter().find(|s| s.id == *id).ok_or_else(|| Error::NotFound(format!("snapshot {id}")))?;
        let (mailbox, time) = match &info.summary {
            Ok(m) => (text(&m.mailbox).into_owned(), crate::time::format_unix_ms(m.time_ms)),
            Err(_) => ("(damaged)".to_string(), String::new()),
        };
        if !dry_run {
            tracing::info!(snapshot = %id.to_hex(), "snapshot forgotten");
            repo.storage().delete(FileKind::Snapshot, &id.to_hex()).map_err(|e| {
                Error::Other(format!(
                    "{e} (after removing {} snapshot(s): {})",
                    out.len(),
                    out.iter().map(|r: &SnapRef| r.id[..8].to_string()).collect::<Vec<_>>().join(", ")
                ))
            })?;
        }
        out.push(SnapRef { id: id.to_hex(), mailbox, time });
    }
    Ok(out)
}
