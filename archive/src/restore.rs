//! Reading items back: chunk lookup, blob opening, whole-item verification, extraction to files.
//!
//! Nothing unverified reaches the caller: every chunk is authenticated and checked against its keyed
//! id, every item against its whole-blob BLAKE3, and `extract` writes each file under a temporary
//! name and renames it only after the item verified.

use crate::error::{Error, Result};
use crate::id::Id;
use crate::index::{BlobLocation, IndexTable};
use crate::manifest::{text, ArchivedItem, ArchivedManifest};
use crate::pack::{open_blob, open_blob_checked};
use crate::repository::Repository;
use crate::storage::FileKind;
use serde::Serialize;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

/// Reads chunks and items of one repository through its index.
pub struct ItemReader<'r> {
    repo: &'r Repository,
    index: &'r IndexTable,
}

thread_local! {
    /// Read buffer reused across runs, so restores do not fault in fresh pages for every read.
    static READ_BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl<'r> ItemReader<'r> {
    pub fn new(repo: &'r Repository, index: &'r IndexTable) -> Self {
        ItemReader { repo, index }
    }

    pub fn read_chunk(&self, id: &Id) -> Result<Vec<u8>> {
        let loc = self.locate(id)?;
        let sealed = self.repo.storage().get_range(
            FileKind::Pack,
            &loc.pack.to_hex(),
            loc.entry.offset as u64,
            loc.entry.length as usize,
        )?;
        open_blob(self.repo.keys(), &loc.pack, &loc.entry, &sealed)
    }

    fn locate(&self, id: &Id) -> Result<BlobLocation> {
        self.index.get(id).ok_or_else(|| {
            Error::damaged(format!("chunk {}", id.short()), "not in any index (its pack is missing or unindexed)")
        })
    }

    /// Writes an item's bytes to `out`, verifying every chunk and the whole blob. On error `out`
    /// may hold a verified prefix; callers that must not expose partial data write to a temp file.
    ///
    /// Chunks stored back to back in one pack (the usual case: a backup writes an item's new chunks
    /// in order) are fetched with one read of up to `MAX_RUN` bytes instead of one read per chunk.
    pub fn read_item(&self, item: &ArchivedItem, out: &mut dyn Write) -> Result<u64> {
        let mut hasher = blake3::Hasher::new();
        let mut n = 0u64;
        let ids: Vec<Id> = item.chunks.iter().map(|c| Id(*c)).collect();
        let mut i = 0;
        while i < ids.len() {
            let first = self.locate(&ids[i])?;
            let mut run = vec![first];
            let mut end = first.entry.offset as u64 + first.entry.length as u64;
            while i + run.len() < ids.len() {
                let next = self.locate(&ids[i + run.len()])?;
                if next.pack != first.pack
                    || next.entry.offset as u64 != end
                    || end - first.entry.offset as u64 > MAX_RUN
                {
                    break;
                }
                end += next.entry.length as u64;
                run.push(next);
            }
            let start = first.entry.offset as u64;
            READ_BUF.with(|cell| -> Result<()> {
                let mut bytes = cell.borrow_mut();
                bytes.clear();
                bytes.resize((end - start) as usize, 0);
                self.repo.storage().read_into(FileKind::Pack, &first.pack.to_hex(), start, &mut bytes)?;
                for loc in &run {
                    let o = (loc.entry.offset as u64 - start) as usize;
                    // The whole-item hash below covers what a per-chunk id check would.
                    let sealed = &bytes[o..o + loc.entry.length as usize];
                    let data = open_blob_checked(self.repo.keys(), &loc.pack, &loc.entry, sealed, false)?;
                    hasher.update(&data);
                    n += data.len() as u64;
                    out.write_all(&data).map_err(|e| Error::Other(format!("writing item: {e}")))?;
                }
                Ok(())
            })?;
            i += run.len();
        }
        if *hasher.finalize().as_bytes() != item.blob_hash || n != item.size.to_native() {
            return Err(Error::damaged(
                format!("item {}", text(&item.source_id)),
                "reassembled bytes do not match the item's recorded hash and size",
            ));
        }
        Ok(n)
    }
}

/// Longest run of adjacent blobs fetched with one read.
const MAX_RUN: u64 = 8 * 1024 * 1024;

pub use crate::extract_names::safe_component;

#[derive(Debug, Clone, Default, Serialize)]
pub struct ExtractStats {
    pub items: u64,
    pub bytes: u64,
    pub failed: u64,
    /// Items written under another name than the stored one (unsafe characters, a name already
    /// taken in its directory, too long): (stored path, written path), in manifest order.
    pub renamed: Vec<(String, String)>,
}

/// One item that could not be extracted.
#[derive(Debug, Clone, Serialize)]
pub struct ExtractFailure {
    pub path: String,
    pub error: String,
    pub damage: bool,
}

pub struct ExtractOptions {
    pub overwrite: bool,
    pub threads: usize,
}

/// Writes every item of a snapshot under `to/<folder path>/<item name>`. Items that fail are listed
/// (and never written), the others are extracted. Calls `progress(bytes)` after each item.
pub fn extract(
    repo: &Repository,
    index: &IndexTable,
    manifest: &ArchivedManifest,
    to: &Path,
    opts: &ExtractOptions,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<(ExtractStats, Vec<ExtractFailure>)> {
    fs::create_dir_all(to).map_err(|e| Error::io(to, e))?;
    let reader = ItemReader::new(repo, index);
    // Every item's path, decided up front (SPEC.md §13.1): unique, so parallel writers never meet.
    let folder_names: Vec<std::borrow::Cow<str>> = manifest.folders.iter().map(|f| text(&f.name)).collect();
    let folders: Vec<(u32, &str)> =
        manifest.folders.iter().zip(&folder_names).map(|(f, n)| (f.parent.to_native(), n.as_ref())).collect();
    let item_names: Vec<std::borrow::Cow<str>> = manifest.items.iter().map(|i| text(&i.name)).collect();
    let items_in: Vec<(u32, &str)> =
        manifest.items.iter().zip(&item_names).map(|(i, n)| (i.folder.to_native(), n.as_ref())).collect();
    let plan = crate::extract_names::plan(&folders, &items_in);
    let folder_dirs: Vec<PathBuf> =
        plan.folder_dirs.iter().map(|parts| parts.iter().fold(to.to_path_buf(), |p, c| p.join(c))).collect();
    let stored_path = |i: usize| {
        let mut p = manifest.folder_path(items_in[i].0);
        p.push(items_in[i].1.to_string());
        p.join("/")
    };
    let written_path = |i: usize| {
        let mut p = plan.folder_dirs.get(items_in[i].0 as usize).cloned().unwrap_or_default();
        p.push(plan.item_names[i].clone());
        p.join("/")
    };
    let renamed: Vec<(String, String)> = (0..items_in.len())
        .filter_map(|i| {
            let (stored, written) = (stored_path(i), written_path(i));
            (stored != written).then_some((stored, written))
        })
        .collect();
    let tmp_dir = to.join(crate::extract_names::TEMP_DIR);
    fs::create_dir_all(&tmp_dir).map_err(|e| Error::io(&tmp_dir, e))?;
    let next = AtomicUsize::new(0);
    let items = AtomicU64::new(0);
    let bytes = AtomicU64::new(0);
    let failures = Mutex::new(Vec::new());
    let one = |i: usize, item: &ArchivedItem| -> Result<u64> {
        let dir = folder_dirs
            .get(item.folder.to_native() as usize)
            .ok_or_else(|| Error::damaged("manifest", "item names a folder that does not exist"))?;
        fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let path = dir.join(&plan.item_names[i]);
        if path.exists() && !opts.overwrite {
            return Err(Error::Usage(format!("{} exists; not overwriting (use --overwrite)", path.display())));
        }
        // A temporary name no item can have: partial files never meet real ones.
        let tmp = tmp_dir.join(format!("{i}.partial"));
        let result = (|| {
            let f = fs::File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
            let mut w = std::io::BufWriter::with_capacity(256 * 1024, f);
            let n = reader.read_item(item, &mut w)?;
            w.flush().map_err(|e| Error::io(&tmp, e))?;
            drop(w);
            fs::rename(&tmp, &path).map_err(|e| Error::io(&path, e))?;
            Ok(n)
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    };
    std::thread::scope(|s| {
        for _ in 0..opts.threads.max(1) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(item) = manifest.items.get(i) else {
                    return;
                };
                match one(i, item) {
                    Ok(n) => {
                        items.fetch_add(1, Ordering::Relaxed);
                        bytes.fetch_add(n, Ordering::Relaxed);
                        progress(n);
                    }
                    Err(e) => {
                        failures.lock().expect("failures").push(ExtractFailure {
                            path: stored_path(i),
                            damage: e.class() == crate::ErrorClass::Damage,
                            error: e.to_string(),
                        });
                    }
                }
            });
        }
    });
    let _ = fs::remove_dir(&tmp_dir); // empty unless another extract is writing there too
    let failures = failures.into_inner().expect("failures");
    let stats =
        ExtractStats { items: items.into_inner(), bytes: bytes.into_inner(), failed: failures.len() as u64, renamed };
    Ok((stats, failures))
}
