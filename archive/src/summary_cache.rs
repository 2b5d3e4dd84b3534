//! Snapshot summaries kept in the local cache, so that `snapshots`, `latest` and retention cost one
//! listing of `snapshots/` however many snapshots there are, instead of a read per snapshot — on an
//! object store the difference between one request and a thousand (SPEC.md §14).
//!
//! A cache file holds the snapshot file's size (u64, little-endian) and then exactly its sealed head
//! (magic, length, sealed summary), named by the snapshot id. Snapshot files never change, so an
//! entry never goes stale; it is used only while the listed size is the same, and it is opened
//! with the repository's key like the original (a damaged or foreign entry fails authentication and
//! is read again from the repository). Entries of snapshots no longer listed are removed. The cache
//! holds only sealed data: no subject, sender or mailbox in plaintext.

use crate::crypto::Keys;
use crate::error::Result;
use crate::id::Id;
use crate::manifest::Summary;
use crate::snapshot::{open_cached_summary, read_summary_sized};
use crate::storage::{FileKind, Storage};
use std::collections::HashSet;
use std::path::Path;

/// Every listed snapshot with its summary (or why it cannot be read).
pub fn summaries(storage: &dyn Storage, keys: &Keys, cache_dir: &Path) -> Result<Vec<(Id, Result<Summary, String>)>> {
    let listed: Vec<(Id, u64)> = storage
        .list_sized(FileKind::Snapshot)?
        .into_iter()
        .filter_map(|(n, size)| Some((Id::from_hex(&n)?, size)))
        .collect();
    let dir = cache_dir.join("summaries");
    // Without a usable cache directory every summary is read from the repository, as before.
    let cache_ok = crate::private_fs::create_dir_all(&dir).is_ok();
    let mut out = Vec::with_capacity(listed.len());
    for (id, size) in &listed {
        let path = dir.join(id.to_hex());
        if cache_ok {
            let cached = std::fs::read(&path).ok().filter(|c| c.len() > 8 && c[..8] == size.to_le_bytes());
            if let Some(s) = cached.and_then(|c| open_cached_summary(keys, &c[8..], id).ok()) {
                out.push((*id, Ok(s)));
                continue;
            }
        }
        match read_summary_sized(storage, keys, id, *size) {
            Ok((summary, head)) => {
                if cache_ok {
                    let entry = [&size.to_le_bytes()[..], &head].concat();
                    let _ = crate::private_fs::write_atomic(&path, &entry);
                }
                out.push((*id, Ok(summary)));
            }
            Err(e) => out.push((*id, Err(e.to_string()))),
        }
    }
    if cache_ok {
        let keep: HashSet<String> = listed.iter().map(|(id, _)| id.to_hex()).collect();
        if let Ok(rd) = std::fs::read_dir(&dir) {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if !keep.contains(&name) {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
    }
    Ok(out)
}
