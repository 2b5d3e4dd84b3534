//! What the snapshots reference, proven from authenticated metadata before anything is deleted.
//!
//! Deleting is the one operation that can lose backups, so `prove` gives garbage collection its
//! facts only when they are complete: every snapshot's summary and manifest opened, every index file
//! authenticated, the local index table matched its checksum and covers exactly those files, every
//! chunk a kept snapshot references was located in a pack that exists, and no pack lies outside the
//! index (unless a backup that may still index it is running, an authenticated mark of an
//! interrupted prune lists it, or its authenticated header shows every blob it holds indexed in
//! another existing pack — what an interrupted repack leaves). Anything less is a refusal
//! (`Error::Refused`, exit 4) that names each problem and the command that repairs it; nothing has
//! been deleted at that point.

use crate::error::{Error, ErrorClass, Result};
use crate::id::Id;
use crate::index::{read_index_file, BlobLocation, IndexTable};
use crate::pack::read_header;
use crate::repository::Repository;
use crate::storage::FileKind;
use std::collections::HashSet;

/// One bit per position of the index table.
pub struct Bitmap(Vec<u64>);

impl Bitmap {
    pub fn new(n: usize) -> Bitmap {
        Bitmap(vec![0; n.div_ceil(64)])
    }
    pub fn set(&mut self, i: usize) {
        self.0[i / 64] |= 1 << (i % 64);
    }
    pub fn get(&self, i: usize) -> bool {
        self.0[i / 64] & (1 << (i % 64)) != 0
    }
}

/// The proven state of the repository at one moment.
pub struct Usage {
    /// The index table, checked against its checksum and the repository's index files.
    pub index: IndexTable,
    /// Chunks referenced by the counted snapshots, by table position.
    pub used: Bitmap,
    /// Pack files present in storage.
    pub packs: HashSet<Id>,
    /// Packs that some index file lists.
    pub indexed_packs: HashSet<Id>,
    /// Index files, all of which authenticated.
    pub index_files: Vec<String>,
    /// Packs in no index file, left alone because a backup is running that may still index them.
    pub unindexed_in_flight: Vec<Id>,
    /// Packs in no index file whose every blob is indexed in another existing pack (debris of an
    /// interrupted repack): holding nothing needed, they are marked like dead packs.
    pub redundant: Vec<Id>,
}

impl Usage {
    /// True if `l` is the location the table serves for its chunk and the chunk is used.
    pub fn is_live(&self, l: &BlobLocation) -> bool {
        match self.index.position(&l.entry.id) {
            Some(pos) => {
                self.used.get(pos) && {
                    let served = self.index.entry(pos);
                    served.pack == l.pack && served.entry.offset == l.entry.offset
                }
            }
            None => false,
        }
    }
}

/// What `prove` is asked to establish.
pub struct ProofScope<'a> {
    /// Every snapshot that exists: each must open, whether or not it counts.
    pub snapshots: &'a [Id],
    /// Snapshots whose chunks count as used (the ones that will still exist afterwards).
    pub counts: &'a dyn Fn(&Id) -> bool,
    /// A backup may be writing right now: packs in no index are in flight, not lost.
    pub backups_running: bool,
}

/// Establishes `Usage`, or refuses with every problem found and what to run.
pub fn prove(repo: &Repository, scope: &ProofScope<'_>) -> Result<Usage> {
    let storage = repo.storage();
    let mut problems: Vec<String> = Vec::new();
    let mut remedies: Vec<&str> = Vec::new();

    // Index files: every one must authenticate.
    let mut index_files = storage.list(FileKind::Index)?;
    index_files.sort();
    let mut indexed_packs: HashSet<Id> = HashSet::new();
    for name in &index_files {
        match read_index_file(storage.as_ref(), repo.keys(), name) {
            Ok(locs) => indexed_packs.extend(locs.iter().map(|l| l.pack)),
            Err(e) if e.class() == ErrorClass::Damage => {
                problems.push(format!("index file {}: {e}", short(name)));
                remedies.push("exarch repair index");
            }
            Err(e) => return Err(e),
        }
    }
    // The local table, trusted only after its checksum, and only if it is those very files.
    let index = repo.index_verified()?;
    if problems.is_empty() && (index.covers() != index_files.as_slice() || !index.skipped().is_empty()) {
        problems
            .push("the local index table does not match the repository's index files (changed while reading?)".into());
        remedies.push("run the same command again");
    }
    let packs: HashSet<Id> = storage.list(FileKind::Pack)?.iter().filter_map(|n| Id::from_hex(n)).collect();
    // A marked pack in no index is one an interrupted prune had taken out of the index files
    // (after proving it unneeded) but not yet deleted: finishing its mark deletes it.
    let marked = crate::prune::marked_packs(repo)?;
    let mut unindexed: Vec<Id> = packs.difference(&indexed_packs).filter(|p| !marked.contains(p)).copied().collect();
    unindexed.sort();
    let mut unindexed_in_flight = Vec::new();
    let mut redundant = Vec::new();
    if !unindexed.is_empty() {
        if scope.backups_running {
            unindexed_in_flight = unindexed;
        } else {
            let (copies, needed): (Vec<Id>, Vec<Id>) =
                unindexed.into_iter().partition(|p| stored_elsewhere(repo, &index, &packs, p));
            redundant = copies;
            if !needed.is_empty() {
                problems.push(format!(
                    "{} pack(s) are in no index file (first: {}): an index file was lost, or a backup stopped \
                     before writing its index; their data may be needed",
                    needed.len(),
                    needed[0].short()
                ));
                remedies.push("exarch repair index");
            }
        }
    }

    // Snapshots: every one must open; the counted ones mark their chunks.
    let mut used = Bitmap::new(index.len());
    for id in scope.snapshots {
        let snap = match repo.load_snapshot(id) {
            Ok(s) => s,
            Err(e) if matches!(e.class(), ErrorClass::Damage) || matches!(e, Error::UnsupportedVersion { .. }) => {
                problems.push(format!("snapshot {}: {e}", id.short()));
                remedies.push("exarch forget <id> for each damaged snapshot (or exarch repair snapshots)");
                continue;
            }
            Err(e) => return Err(e),
        };
        if !(scope.counts)(id) {
            continue;
        }
        let (mut missing, mut lost_pack) = (0u64, None);
        for item in snap.items() {
            for c in item.chunks.iter() {
                match index.position(&Id(*c)) {
                    Some(pos) => {
                        used.set(pos);
                        let pack = index.entry(pos).pack;
                        if lost_pack.is_none() && !packs.contains(&pack) {
                            lost_pack = Some(pack);
                        }
                    }
                    None => missing += 1,
                }
            }
        }
        if missing > 0 {
            problems.push(format!("snapshot {} references {missing} chunk(s) that no index file lists", id.short()));
            remedies.push("exarch repair index, then exarch verify --read-data");
        }
        if let Some(p) = lost_pack {
            problems.push(format!("snapshot {} needs pack {}, which is missing", id.short(), p.short()));
            remedies.push("exarch verify --read-data (it names the damaged items), then exarch repair index");
        }
    }

    if !problems.is_empty() {
        remedies.dedup();
        let mut seen = HashSet::new();
        remedies.retain(|r| seen.insert(*r));
        return Err(Error::Refused(format!(
            "refusing to delete anything without proof that it is unreferenced:\n  - {}\nnothing was deleted; run: {}",
            problems.join("\n  - "),
            remedies.join("; ")
        )));
    }
    Ok(Usage { index, used, packs, indexed_packs, index_files, unindexed_in_flight, redundant })
}

/// True if `pack`'s header authenticates and every blob it lists is located by the index in
/// another pack that exists: the pack holds nothing that is not stored and indexed elsewhere.
/// This is what a repack killed between writing its new packs and their index file leaves (the
/// blobs were copied from packs that are still indexed). Asked only when no backup is running: a
/// running backup may store again a chunk whose indexed copy sits in a marked pack, and its pack
/// must then survive until it is indexed.
fn stored_elsewhere(repo: &Repository, index: &IndexTable, packs: &HashSet<Id>, pack: &Id) -> bool {
    let Ok(entries) = read_header(repo.storage().as_ref(), repo.keys(), pack) else {
        return false;
    };
    entries.iter().all(|e| {
        index.position(&e.id).is_some_and(|pos| {
            let served = index.entry(pos).pack;
            served != *pack && packs.contains(&served)
        })
    })
}

fn short(name: &str) -> &str {
    &name[..name.len().min(16)]
}
