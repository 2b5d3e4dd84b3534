//! Extraction of a snapshot to files, in pack order.
//!
//! Items of a mailbox share chunks (an attachment forwarded to many people, an item stored again
//! after a header edit), so reading item by item opens, decompresses and hashes the same blobs
//! again and again. Here every chunk reference of every item is planned first, sorted by pack and
//! offset, and each pack's needed blobs are read in one pass: each blob is opened, decompressed and
//! checked against its keyed id once, then written to every place in every item that holds it.
//! Runs of a pack are spread over the threads, each thread starting in its own stretch (so that
//! threads mostly create files in different directories). An item read whole in one run is
//! checked in memory and, on Linux, written as a file without a name that is then linked under
//! its name (`linked_file`); any other item is written under a temporary name in its own directory
//! and renamed into place only after its last chunk arrived and the whole item matched its recorded
//! BLAKE3 and size. Either way nothing unverified, and no part of an item, ever appears under an
//! item's name.

use crate::error::{Error, Result};
use crate::id::Id;
use crate::index::IndexTable;
use crate::linked_file::Linked;
use crate::manifest::text;
use crate::pack::{open_blob_checked, PackEntry};
use crate::repository::Repository;
use crate::restore::mismatch;
use crate::snapshot::Snapshot;
use crate::storage::FileKind;
use serde::Serialize;
use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

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

/// Sealed bytes all threads' runs may hold at once; one run (adjacent blobs fetched with one read)
/// gets its share, between 1 and 8 MiB, and three times that in plaintext (kept while the run's
/// items are written). Two threads: 8 MiB runs; sixteen readers on an object store: 1 MiB.
const RUN_BUDGET: u64 = 16 * 1024 * 1024;
/// Runs below this size are not worth their read; above it, a restore is cut into at least
/// `RUNS_PER_THREAD` runs per thread.
const MIN_RUN: u64 = 64 * 1024;
const RUNS_PER_THREAD: u64 = 16;

/// One place a chunk goes: item `item`, at byte `at` of it.
#[derive(Clone, Copy)]
struct Use {
    pack: u32,
    entry: PackEntry,
    item: u32,
    at: u64,
}

/// An item being written: chunks still to come, and whether one failed.
struct Pending {
    left: AtomicU32,
    failed: AtomicBool,
    /// Written whole from memory after its hash matched: no need to read it back.
    verified: AtomicBool,
    /// Written under its name already (`linked_file`): no partial file to rename.
    placed: AtomicBool,
}

/// Writes every item of a snapshot under `to/<folder path>/<item name>`. Items that fail are listed
/// (and never written), the others are extracted. Calls `progress(bytes)` as data is written.
pub fn extract(
    repo: &Repository,
    index: &IndexTable,
    manifest: &Snapshot,
    to: &Path,
    opts: &ExtractOptions,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<(ExtractStats, Vec<ExtractFailure>)> {
    fs::create_dir_all(to).map_err(|e| Error::io(to, e))?;
    // Every item's path, decided up front (SPEC.md §13.1): unique, so parallel writers never meet.
    let folder_names: Vec<std::borrow::Cow<str>> = manifest.folders().iter().map(|f| text(&f.name)).collect();
    let folders: Vec<(u32, &str)> =
        manifest.folders().iter().zip(&folder_names).map(|(f, n)| (f.parent.to_native(), n.as_ref())).collect();
    let item_names: Vec<std::borrow::Cow<str>> = manifest.items().map(|i| text(&i.name)).collect();
    let items_in: Vec<(u32, &str)> =
        manifest.items().zip(&item_names).map(|(i, n)| (i.folder.to_native(), n.as_ref())).collect();
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
    let failures = Mutex::new(Vec::new());
    let fail = |i: usize, e: &Error| {
        failures.lock().expect("failures").push(ExtractFailure {
            path: stored_path(i),
            damage: e.class() == crate::ErrorClass::Damage,
            error: e.to_string(),
        })
    };
    let final_path = |i: usize| -> Result<PathBuf> {
        let dir = folder_dirs
            .get(manifest.item(i).folder.to_native() as usize)
            .ok_or_else(|| Error::damaged("manifest", "item names a folder that does not exist"))?;
        Ok(dir.join(&plan.item_names[i]))
    };
    // A partial file waits beside its final name (the rename stays in one directory).
    let tmp_of = |i: usize| {
        let dir = folder_dirs.get(manifest.item(i).folder.to_native() as usize).map_or(to, PathBuf::as_path);
        dir.join(crate::extract_names::temp_name(i))
    };

    // The plan: every chunk use of every item that can be extracted, by pack and offset.
    let mut packs: Vec<Id> = Vec::new();
    let mut pack_no: HashMap<Id, u32> = HashMap::new();
    let mut uses: Vec<Use> = Vec::new();
    let pending: Vec<Pending> = manifest
        .items()
        .map(|_| Pending {
            left: AtomicU32::new(0),
            failed: AtomicBool::new(false),
            verified: AtomicBool::new(false),
            placed: AtomicBool::new(false),
        })
        .collect();
    let mut empty = Vec::new();
    // Folders that will receive an item: their directories are made once, before any writer.
    let mut folders_used = std::collections::BTreeSet::new();
    'items: for (i, item) in manifest.items().enumerate() {
        let path = match final_path(i) {
            Ok(p) => p,
            Err(e) => {
                fail(i, &e);
                continue;
            }
        };
        if path.exists() && !opts.overwrite {
            fail(i, &exists(&path));
            continue;
        }
        let mut at = 0u64;
        let first = uses.len();
        for c in item.chunks.iter() {
            let Some(loc) = index.get(&Id(*c)) else {
                uses.truncate(first);
                let what = format!("chunk {}", Id(*c).short());
                fail(i, &Error::damaged(what, "not in any index (its pack is missing or unindexed)"));
                continue 'items;
            };
            let n = packs.len() as u32;
            let pack = *pack_no.entry(loc.pack).or_insert_with(|| {
                packs.push(loc.pack);
                n
            });
            uses.push(Use { pack, entry: loc.entry, item: i as u32, at });
            at += loc.entry.raw_length as u64;
        }
        if at != item.size.to_native() {
            uses.truncate(first);
            let why = "its chunks' lengths do not add up to the item's recorded size";
            fail(i, &Error::damaged(format!("item {}", text(&item.source_id)), why));
            continue;
        }
        pending[i].left.store((uses.len() - first) as u32, Ordering::Relaxed);
        if first == uses.len() {
            empty.push(i);
        }
        folders_used.insert(item.folder.to_native());
    }
    uses.sort_unstable_by_key(|u| (u.pack, u.entry.offset, u.item, u.at));
    for f in folders_used {
        let dir = &folder_dirs[f as usize];
        fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }

    let items_done = AtomicU64::new(0);
    let bytes_done = AtomicU64::new(0);
    // An item whose last chunk was written: checked whole, then renamed into place.
    let finish = |i: usize| {
        let item = manifest.item(i);
        let tmp = tmp_of(i);
        let result = (|| {
            if pending[i].failed.load(Ordering::Acquire) {
                return Ok(false);
            }
            if pending[i].placed.load(Ordering::Acquire) {
                return Ok(true);
            }
            if !item.chunks.is_empty() && !pending[i].verified.load(Ordering::Acquire) {
                // Read back what the runs wrote, in order and streamed (an item may be larger
                // than memory): the whole item against its BLAKE3 and size.
                let f = fs::File::open(&tmp).map_err(|e| Error::io(&tmp, e))?;
                let mut hasher = blake3::Hasher::new();
                let n = std::io::copy(&mut std::io::BufReader::with_capacity(1 << 20, f), &mut hasher)
                    .map_err(|e| Error::io(&tmp, e))?;
                if n != item.size.to_native() || *hasher.finalize().as_bytes() != item.blob_hash {
                    return Err(mismatch(format!("item {}", text(&item.source_id))));
                }
            }
            let path = final_path(i)?;
            fs::rename(&tmp, &path).map_err(|e| Error::io(&path, e))?;
            Ok(true)
        })();
        match result {
            Ok(true) => {
                items_done.fetch_add(1, Ordering::Relaxed);
                bytes_done.fetch_add(item.size.to_native(), Ordering::Relaxed);
            }
            Ok(false) => {
                let _ = fs::remove_file(&tmp);
            }
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                fail(i, &e);
            }
        }
    };
    // A chunk use done (written, or failed): the last one finishes its item.
    let done_one = |i: usize| {
        if pending[i].left.fetch_sub(1, Ordering::AcqRel) == 1 {
            finish(i);
        }
    };
    for &i in &empty {
        if let Err(e) = fs::File::create(tmp_of(i)).map_err(|e| Error::io(tmp_of(i), e)) {
            fail(i, &e);
            continue;
        }
        finish(i);
    }

    // Runs of uses: one read each (adjacent blobs of one pack, at most `max_run` bytes), and at
    // least a few per thread, so that a small restore (100,000 small items fit in one pack) is
    // spread over every thread too.
    let threads = opts.threads.max(1);
    let sealed_total: u64 = uses.iter().map(|u| u.entry.length as u64).sum();
    let max_run = (RUN_BUDGET / threads as u64)
        .clamp(1 << 20, 8 << 20)
        .min((sealed_total / (threads as u64 * RUNS_PER_THREAD)).max(MIN_RUN));
    let max_raw = 3 * max_run;
    let mut runs: Vec<(usize, usize)> = Vec::new();
    let mut s = 0;
    while s < uses.len() {
        let (pack, start) = (uses[s].pack, uses[s].entry.offset as u64);
        let mut raw = uses[s].entry.raw_length as u64;
        let mut e = s + 1;
        while e < uses.len() && uses[e].pack == pack {
            let prev_end = uses[e - 1].entry.offset as u64 + uses[e - 1].entry.length as u64;
            let off = uses[e].entry.offset as u64;
            let new_blob = off != uses[e - 1].entry.offset as u64;
            if off > prev_end
                || off + uses[e].entry.length as u64 - start > max_run
                || (new_blob && raw + uses[e].entry.raw_length as u64 > max_raw)
            {
                break;
            }
            if new_blob {
                raw += uses[e].entry.raw_length as u64;
            }
            e += 1;
        }
        runs.push((s, e));
        s = e;
    }
    let keys = repo.keys();
    let storage = repo.storage();
    // Each thread starts in its own stretch of the runs, and helps with the others' once its own
    // are done: neighbouring runs are mostly one folder's items, and threads that create files in
    // one directory queue on its lock. (On an object store all threads share one stretch, so they
    // read near each other and share its read-ahead windows.)
    let stretches = if storage.is_remote() { 1 } else { threads };
    let bounds: Vec<(usize, usize)> =
        (0..stretches).map(|k| (k * runs.len() / stretches, (k + 1) * runs.len() / stretches)).collect();
    let cursors: Vec<AtomicUsize> = bounds.iter().map(|b| AtomicUsize::new(b.0)).collect();
    let take = |me: usize| {
        (0..stretches).map(|k| (me + k) % stretches).find_map(|s| {
            let r = cursors[s].fetch_add(1, Ordering::Relaxed);
            (r < bounds[s].1).then_some(r)
        })
    };
    // Whether items checked in memory can be written straight under their names (cleared the
    // first time the file system says it cannot).
    let linking = AtomicBool::new(true);
    std::thread::scope(|sc| {
        let (take, runs, uses, packs, pending, linking) = (&take, &runs, &uses, &packs, &pending, &linking);
        for me in 0..threads {
            sc.spawn(move || {
                let (mut buf, mut out) = (Vec::new(), Vec::new());
                loop {
                    let Some(&(s, e)) = take(me).and_then(|r| runs.get(r)) else { return };
                    let run = &uses[s..e];
                    let pack = packs[run[0].pack as usize];
                    let start = run[0].entry.offset as u64;
                    let end = run.iter().map(|u| u.entry.offset as u64 + u.entry.length as u64).max().unwrap_or(start);
                    buf.clear();
                    buf.resize((end - start) as usize, 0);
                    let read = storage.read_into(FileKind::Pack, &pack.to_hex(), start, &mut buf);
                    // Each distinct blob of the run opened once; `blob[k]` is use k's.
                    let mut blobs: Vec<Result<Vec<u8>>> = Vec::new();
                    let mut blob = Vec::with_capacity(run.len());
                    for (k, u) in run.iter().enumerate() {
                        if k == 0 || u.entry.offset != run[k - 1].entry.offset {
                            blobs.push(read.as_ref().map_err(again).and_then(|_| {
                                let o = (u.entry.offset as u64 - start) as usize;
                                open_blob_checked(keys, &pack, &u.entry, &buf[o..o + u.entry.length as usize], true)
                            }));
                        }
                        blob.push(blobs.len() - 1);
                    }
                    // Then item by item: an item whole in this run is checked in memory and
                    // written at once; parts of longer items are written where they belong.
                    let mut order: Vec<usize> = (0..run.len()).collect();
                    order.sort_unstable_by_key(|&k| (run[k].item, run[k].at));
                    for group in order.chunk_by(|&a, &b| run[a].item == run[b].item) {
                        let i = run[group[0]].item as usize;
                        let item = manifest.item(i);
                        let what = || format!("item {}", text(&item.source_id));
                        let written = (|| -> Result<u64> {
                            if pending[i].failed.load(Ordering::Relaxed) {
                                return Ok(0);
                            }
                            out.clear();
                            let mut n = 0;
                            if group.len() == item.chunks.len() {
                                for &k in group {
                                    out.extend_from_slice(blobs[blob[k]].as_ref().map_err(again)?);
                                }
                                if blake3::hash(&out).as_bytes() != &item.blob_hash {
                                    return Err(mismatch(what()));
                                }
                                pending[i].verified.store(true, Ordering::Release);
                                // Checked: straight under its name where the system can make it
                                // appear whole (never over an existing file), else a partial file.
                                if !opts.overwrite && linking.load(Ordering::Relaxed) {
                                    let path = final_path(i)?;
                                    let dir = path.parent().unwrap_or(to);
                                    match crate::linked_file::write_new(dir, &path, &out) {
                                        Ok(Linked::Written) => {
                                            pending[i].placed.store(true, Ordering::Release);
                                            return Ok(out.len() as u64);
                                        }
                                        Ok(Linked::Unsupported) => linking.store(false, Ordering::Relaxed),
                                        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                                            return Err(exists(&path));
                                        }
                                        Err(e) => return Err(Error::io(&path, e)),
                                    }
                                }
                                let tmp = tmp_of(i);
                                fs::write(&tmp, &out).map_err(|e| Error::io(&tmp, e))?;
                                return Ok(out.len() as u64);
                            }
                            // contiguous pieces gathered, each written with one call
                            let mut at = run[group[0]].at;
                            for &k in group {
                                let d = blobs[blob[k]].as_ref().map_err(again)?;
                                if run[k].at != at + out.len() as u64 {
                                    write_at(&tmp_of(i), &out, at)?;
                                    (at, n) = (run[k].at, n + out.len() as u64);
                                    out.clear();
                                }
                                out.extend_from_slice(d);
                            }
                            write_at(&tmp_of(i), &out, at)?;
                            Ok(n + out.len() as u64)
                        })();
                        match written {
                            Ok(n) => progress(n),
                            Err(e) => {
                                if !pending[i].failed.swap(true, Ordering::AcqRel) {
                                    fail(i, &e);
                                }
                            }
                        }
                        for _ in group {
                            done_one(i);
                        }
                    }
                }
            });
        }
    });
    let failures = failures.into_inner().expect("failures");
    let stats = ExtractStats {
        items: items_done.into_inner(),
        bytes: bytes_done.into_inner(),
        failed: failures.len() as u64,
        renamed,
    };
    Ok((stats, failures))
}

/// The same error again, for each use of a blob that failed (I/O errors keep only their text).
fn again(e: &Error) -> Error {
    match e {
        Error::Damaged { what, detail } => Error::damaged(what.clone(), detail.clone()),
        other => Error::Other(other.to_string()),
    }
}

fn exists(path: &Path) -> Error {
    Error::Usage(format!("{} exists; not overwriting (use --overwrite)", path.display()))
}

/// Writes `data` at byte `at` of the file `path`, creating it if needed (several threads may write
/// parts of one file at once; no part overlaps another).
fn write_at(path: &Path, data: &[u8], at: u64) -> Result<()> {
    let f =
        fs::OpenOptions::new().write(true).create(true).truncate(false).open(path).map_err(|e| Error::io(path, e))?;
    positional_write(&f, data, at).map_err(|e| Error::io(path, e))
}

#[cfg(unix)]
fn positional_write(f: &fs::File, data: &[u8], at: u64) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::write_all_at(f, data, at)
}

#[cfg(windows)]
fn positional_write(f: &fs::File, mut data: &[u8], mut at: u64) -> std::io::Result<()> {
    while !data.is_empty() {
        let n = std::os::windows::fs::FileExt::seek_write(f, data, at)?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        data = &data[n..];
        at += n as u64;
    }
    Ok(())
}
