//! Read-back of the packs a backup wrote: the next backup from the same machine reads each of them
//! once and checks it still hashes to its name, before it builds on them.
//!
//! A backup carries unchanged items forward by reference, so without this a pack that a NAS or a
//! flaky disk damaged after it was written would be referenced by every later snapshot, unnoticed
//! until a restore needs it. Reading back what the *previous* run wrote costs exactly the data that
//! run added, whatever the repository's size; older packs are `verify --read-data`'s business.
//!
//! The local cache keeps one empty marker file per pack still to be read (`readback/<pack id>`), so
//! concurrent writers never rewrite a shared list. A marker goes once its pack read back intact, or
//! when the pack is gone and no index names it (a prune removed it). A damaged pack keeps its
//! marker: every later backup reports it again until it is dealt with.

use crate::index::IndexTable;
use crate::storage::{FileKind, Storage};
use crate::{Error, Id, Result};
use std::path::{Path, PathBuf};

/// What a read-back found.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct ReadBack {
    /// Packs read and found intact.
    pub packs: u64,
    pub bytes: u64,
    /// Packs that are damaged or missing, each with what is wrong.
    pub damaged: Vec<DamagedPack>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct DamagedPack {
    pub pack: String,
    pub problem: String,
}

fn dir(cache_dir: &Path) -> PathBuf {
    cache_dir.join("readback")
}

/// Notes that `pack` was just stored, so the next backup reads it back.
pub fn note_written(cache_dir: &Path, pack: &Id) -> Result<()> {
    let d = dir(cache_dir);
    crate::private_fs::create_dir_all(&d).map_err(|e| Error::io(&d, e))?;
    let p = d.join(pack.to_hex());
    crate::private_fs::create(&p).map_err(|e| Error::io(&p, e))?;
    Ok(())
}

/// Reads back every pack noted as written and not yet read back. Damage is reported, not returned
/// as an error: the caller decides (a backup goes on, and exits 4 at the end).
pub fn read_back(storage: &dyn Storage, index: &IndexTable, cache_dir: &Path) -> Result<ReadBack> {
    let d = dir(cache_dir);
    let mut report = ReadBack::default();
    let entries = match std::fs::read_dir(&d) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(report),
        Err(e) => return Err(Error::io(&d, e)),
    };
    let mut pending: Vec<(Id, PathBuf)> = Vec::new();
    for e in entries {
        let e = e.map_err(|err| Error::io(&d, err))?;
        let name = e.file_name().to_string_lossy().into_owned();
        match Id::from_hex(&name) {
            Some(id) => pending.push((id, e.path())),
            // Not ours (an editor's backup file, a temp file): left alone.
            None => continue,
        }
    }
    pending.sort();
    let done = |p: &Path| std::fs::remove_file(p).map_err(|e| Error::io(p, e));
    for (id, marker) in pending {
        let name = id.to_hex();
        if !storage.exists(FileKind::Pack, &name)? {
            if index.iter().any(|l| l.pack == id) {
                report
                    .damaged
                    .push(DamagedPack { pack: name, problem: "missing, but the index still lists its chunks".into() });
            } else {
                done(&marker)?;
            }
            continue;
        }
        let bytes = storage.get(FileKind::Pack, &name)?;
        if Id::of_content(&bytes) != id {
            report.damaged.push(DamagedPack {
                pack: name,
                problem: format!(
                    "its {} bytes no longer hash to its name: it changed after this machine stored it",
                    bytes.len()
                ),
            });
            continue;
        }
        report.packs += 1;
        report.bytes += bytes.len() as u64;
        done(&marker)?;
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::LocalStorage;

    #[test]
    fn reads_each_noted_pack_once_and_keeps_reporting_damage() {
        let repo = tempfile::tempdir().unwrap();
        let cache = tempfile::tempdir().unwrap();
        let storage = LocalStorage::new(repo.path());
        storage.create_layout().unwrap();
        let index = IndexTable::empty();
        let good = b"a good pack".to_vec();
        let bad = b"a pack to damage".to_vec();
        let (g, b) = (Id::of_content(&good), Id::of_content(&bad));
        storage.put(FileKind::Pack, &g.to_hex(), &good).unwrap();
        storage.put(FileKind::Pack, &b.to_hex(), b"a pack to damagE").unwrap();
        note_written(cache.path(), &g).unwrap();
        note_written(cache.path(), &b).unwrap();
        // a pruned pack: gone and unindexed, so simply forgotten
        note_written(cache.path(), &Id([7; 32])).unwrap();

        let r = read_back(&storage, &index, cache.path()).unwrap();
        assert_eq!((r.packs, r.bytes), (1, good.len() as u64));
        assert_eq!(r.damaged.len(), 1);
        assert_eq!(r.damaged[0].pack, b.to_hex());

        let again = read_back(&storage, &index, cache.path()).unwrap();
        assert_eq!(again.packs, 0, "an intact pack is read once");
        assert_eq!(again.damaged.len(), 1, "damage is reported until dealt with");
    }
}
