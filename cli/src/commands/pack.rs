//! `exarch pack --from-dir SRC --mailbox NAME`: back up a directory tree as one snapshot; with
//! `--all-mailboxes` (or several `--mailbox`, `--mailboxes-file`) every `SRC/<mailbox>` in one run:
//! one lock, the key derived and the index loaded once (and brought up to date between mailboxes,
//! so what one stored the next does not store again), one run id.
//!
//! Every regular file is one item; its folder is its directory relative to SRC. Items whose size,
//! modification time and inode match the parent snapshot (the latest of the same mailbox) are carried
//! over without being read, as restic does; `--force` reads everything.

use crate::args::{Global, PackArgs};
use crate::output::{bytes, progress};
use anyhow::{Context as _, Result};
use exarch_archive::backup::{Backup, BackupOptions, BackupStats, ItemMeta, IN_MEMORY_LIMIT};
use exarch_archive::manifest::text;
use exarch_archive::time::format_unix_ms;
use exarch_archive::Id;
use serde_json::json;
use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

struct FileEntry {
    path: PathBuf,
    /// Components relative to the source root; the last one is the file name.
    rel: Vec<String>,
    size: u64,
    change_key: String,
    mtime_ms: i64,
}

fn walk(root: &Path) -> Result<Vec<FileEntry>> {
    let mut out = Vec::new();
    let mut stack = vec![(root.to_path_buf(), Vec::<String>::new())];
    while let Some((dir, rel)) = stack.pop() {
        let mut entries: Vec<_> = fs::read_dir(&dir)
            .with_context(|| format!("reading directory {}", dir.display()))?
            .collect::<std::io::Result<_>>()
            .with_context(|| format!("reading directory {}", dir.display()))?;
        entries.sort_by_key(|e| e.file_name());
        let mut subdirs = Vec::new();
        for e in entries {
            let name = e.file_name().into_string().map_err(|n| {
                anyhow::anyhow!("file name {:?} in {} is not valid Unicode; rename it to back it up", n, dir.display())
            })?;
            let ft = e.file_type().with_context(|| format!("inspecting {}", e.path().display()))?;
            let mut r = rel.clone();
            r.push(name);
            if ft.is_dir() {
                subdirs.push((e.path(), r));
            } else if ft.is_file() {
                let md = e.metadata().with_context(|| format!("inspecting {}", e.path().display()))?;
                let (change_key, mtime_ms) = change_key(&md);
                out.push(FileEntry { path: e.path(), rel: r, size: md.len(), change_key, mtime_ms });
            }
        }
        // Depth-first in name order: push in reverse so the first name is visited first.
        stack.extend(subdirs.into_iter().rev());
    }
    Ok(out)
}

#[cfg(unix)]
fn change_key(md: &fs::Metadata) -> (String, i64) {
    use std::os::unix::fs::MetadataExt;
    let mtime_ns = md.mtime() as i128 * 1_000_000_000 + md.mtime_nsec() as i128;
    let ctime_ns = md.ctime() as i128 * 1_000_000_000 + md.ctime_nsec() as i128;
    (format!("{}:{mtime_ns}:{ctime_ns}:{}", md.len(), md.ino()), (mtime_ns / 1_000_000) as i64)
}

#[cfg(not(unix))]
fn change_key(md: &fs::Metadata) -> (String, i64) {
    let mtime_ns = md
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_nanos() as i128)
        .unwrap_or(0);
    (format!("{}:{mtime_ns}", md.len()), (mtime_ns / 1_000_000) as i64)
}

pub fn run(g: &Global, a: PackArgs) -> Result<()> {
    if let Some(url) = a.ews.clone() {
        return super::pack_ews::run(g, &a, &url);
    }
    if a.graph.graph {
        return super::pack_graph::run(g, &a);
    }
    let from_dir = a.from_dir.clone().expect("clap requires --from-dir without --ews or --graph");
    let time_ms = super::when::snapshot_time(a.time.as_deref())?;
    if !from_dir.is_dir() {
        return Err(crate::usage(format!("--from-dir {}: not a directory", from_dir.display())));
    }
    // One mailbox: SRC is its tree. Several (--all-mailboxes, a --mailboxes-file, --mailbox more
    // than once): SRC/<mailbox> for each, in one run.
    let several = a.all_mailboxes || a.mailboxes_file.is_some() || a.mailbox.len() > 1;
    let jobs: Vec<(String, PathBuf)> = if several {
        let names = if a.all_mailboxes {
            subdirectories(&from_dir)?
        } else {
            super::pack_mailboxes::mailbox_list(&a, &|| Ok(Vec::new()))?
        };
        if names.is_empty() {
            return Err(crate::usage(format!("--from-dir {}: no mailbox directories in it", from_dir.display())));
        }
        let mut jobs = Vec::new();
        for n in names {
            if n.is_empty() || n == "." || n == ".." || n.contains(['/', '\\']) {
                return Err(crate::usage(format!("mailbox {n:?}: not a directory name under --from-dir")));
            }
            let dir = from_dir.join(&n);
            if !dir.is_dir() {
                return Err(crate::usage(format!("mailbox {n}: {} is not a directory", dir.display())));
            }
            jobs.push((n, dir));
        }
        jobs
    } else {
        match a.mailbox.as_slice() {
            [m] => vec![(m.clone(), from_dir.clone())],
            _ => {
                return Err(crate::usage(
                    "--from-dir needs --mailbox NAME (or, for SRC/<mailbox> directories, --all-mailboxes, \
                     several --mailbox or --mailboxes-file)",
                ))
            }
        }
    };
    let repo = super::open(g)?;
    let lock =
        super::write_lock(g, &repo, exarch_archive::lock::LockKind::Shared, exarch_archive::lock::LockPurpose::Pack)?;
    let index = repo.index()?;
    super::warn_skipped_index(&index);
    let (_, damage) = super::read_back(g, &repo, &index)?;
    let mut run_id = [0u8; 16];
    repo.context().entropy.fill(&mut run_id);
    let mut index = Some(index);
    let mut done = Vec::new();
    for (mailbox, dir) in &jobs {
        let started = std::time::Instant::now();
        // The index as the previous mailbox left it: what it stored is not stored again.
        let idx = match index.take() {
            Some(i) => i,
            None => repo.index()?,
        };
        let one = DirJob { mailbox, dir, time_ms, run_id, force: a.force, threads: a.threads };
        let (id, stats) = pack_one(g, &repo, &lock, idx, &one)?;
        let secs = started.elapsed().as_secs_f64();
        if several {
            done.push((id, mailbox.clone(), stats, secs));
        } else {
            report(g, &id, mailbox, time_ms, &stats, secs)?;
        }
    }
    if several {
        report_several(g, time_ms, &done)?;
    }
    match damage {
        Some(exit) => Err(exit.into()),
        None => Ok(()),
    }
}

/// The subdirectories of `dir`, by name: one mailbox each.
fn subdirectories(dir: &Path) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).with_context(|| format!("reading directory {}", dir.display()))? {
        let e = e.with_context(|| format!("reading directory {}", dir.display()))?;
        if e.file_type().with_context(|| format!("inspecting {}", e.path().display()))?.is_dir() {
            out.push(e.file_name().into_string().map_err(|n| {
                anyhow::anyhow!("directory name {n:?} in {} is not valid Unicode; rename it", dir.display())
            })?);
        }
    }
    out.sort();
    Ok(out)
}

struct DirJob<'a> {
    mailbox: &'a str,
    dir: &'a Path,
    time_ms: i64,
    run_id: [u8; 16],
    force: bool,
    threads: Option<usize>,
}

/// Backs up one directory tree as one snapshot of `mailbox`.
fn pack_one(
    g: &Global,
    repo: &exarch_archive::Repository,
    lock: &exarch_archive::lock::LockGuard,
    index: exarch_archive::index::IndexTable,
    job: &DirJob,
) -> Result<(Id, BackupStats)> {
    let (mailbox, from_dir) = (job.mailbox, job.dir);
    let files = walk(from_dir)?;
    // The parent: the newest snapshot of this mailbox that opens (damaged newer ones are named).
    let (found, damaged) = repo.latest_intact(mailbox)?;
    for (id, why) in &damaged {
        crate::logging::warn(true, &format!(
            "warning: snapshot {} of {mailbox} is damaged ({why}); not used as the parent — `exarch forget {}` removes it",
            id.short(),
            id.short()
        ));
    }
    let (parent_id, parent) = match found {
        Some((id, s)) => (Some(id), (!job.force).then_some(s)),
        None => (None, None),
    };
    let previous: HashMap<&[u8], usize> = parent
        .as_ref()
        .map(|p| p.items().enumerate().map(|(i, it)| (&it.source_id[..], i)).collect())
        .unwrap_or_default();

    let source = format!("dir:{}", fs::canonicalize(from_dir).unwrap_or(from_dir.to_path_buf()).display());
    let opts = BackupOptions {
        mailbox: mailbox.to_string(),
        source,
        time_ms: job.time_ms,
        parent: parent_id,
        run_id: job.run_id,
        workers: super::threads(job.threads),
        lock: lock.watch(),
    };
    let mut backup = Backup::start(repo, std::sync::Arc::new(index), opts)?;
    let pb = progress(files.iter().map(|f| f.size).sum(), g.quiet, "pack");
    // by value: each file's entry is freed once stored, before the manifest is serialised
    for f in files {
        let dirs: Vec<&str> = f.rel[..f.rel.len() - 1].iter().map(String::as_str).collect();
        let folder = backup.folder_path(&dirs);
        let source_id = f.rel.join("/");
        let name = f.rel.last().expect("a file has a name").clone();
        let meta = ItemMeta {
            folder,
            subject: name.clone(),
            name,
            source_id: source_id.clone(),
            change_key: f.change_key.clone(),
            item_class: "file".into(),
            sender: String::new(),
            received_ms: f.mtime_ms,
            flags: 0,
        };
        let carried = match (previous.get(source_id.as_bytes()), &parent) {
            (Some(&i), Some(p)) => {
                let old = p.item(i);
                text(&old.change_key) == f.change_key.as_str()
                    && backup.carry_item(meta.clone(), old.size.to_native(), old.blob_hash, &old.chunks)
            }
            _ => false,
        };
        if !carried {
            if f.size > IN_MEMORY_LIMIT {
                let file = fs::File::open(&f.path).with_context(|| format!("opening {}", f.path.display()))?;
                backup.add_item_reader(meta, std::io::BufReader::with_capacity(1 << 20, file))?;
            } else {
                let data = fs::read(&f.path).with_context(|| format!("reading {}", f.path.display()))?;
                backup.add_item(meta, data)?;
            }
        }
        pb.inc(f.size);
    }
    let out = backup.finish()?;
    pb.finish_and_clear();
    Ok(out)
}

fn report_several(g: &Global, time_ms: i64, done: &[(Id, String, BackupStats, f64)]) -> Result<()> {
    let secs: f64 = done.iter().map(|d| d.3).sum();
    if g.json {
        let snaps: Vec<_> = done
            .iter()
            .map(|(id, mb, s, secs)| {
                json!({"snapshot": id.to_hex(), "mailbox": mb, "items": s.items, "items_read": s.items_read,
                    "items_carried": s.items_carried, "skipped": s.skipped, "bytes": s.bytes, "bytes_read": s.bytes_read,
                    "bytes_new": s.bytes_new, "bytes_stored": s.bytes_stored, "packs": s.packs, "duration_secs": secs})
            })
            .collect();
        return super::print_json(&json!({
            "time": format_unix_ms(time_ms),
            "snapshots": snaps,
            "items": done.iter().map(|d| d.2.items).sum::<u64>(),
            "bytes": done.iter().map(|d| d.2.bytes).sum::<u64>(),
            "bytes_new": done.iter().map(|d| d.2.bytes_new).sum::<u64>(),
            "duration_secs": secs,
        }));
    }
    if g.quiet {
        return Ok(());
    }
    for (id, mb, s, _) in done {
        println!(
            "{mb}: snapshot {} ({} items, {} read, {} unchanged, {} new)",
            id.short(),
            s.items,
            s.items_read,
            s.items_carried,
            bytes(s.bytes_new)
        );
    }
    let (b, n) = done.iter().fold((0, 0), |(b, n), d| (b + d.2.bytes, n + d.2.bytes_new));
    println!("{} mailbox(es), {} in items, {} new, in {secs:.2} s", done.len(), bytes(b), bytes(n));
    Ok(())
}

fn report(g: &Global, id: &Id, mailbox: &str, time_ms: i64, s: &BackupStats, secs: f64) -> Result<()> {
    let dedup = if s.bytes_new == 0 { None } else { Some(s.bytes as f64 / s.bytes_new as f64) };
    if g.json {
        return super::print_json(&json!({
            "snapshot": id.to_hex(),
            "short_id": id.short(),
            "mailbox": mailbox,
            "time": format_unix_ms(time_ms),
            "items": s.items,
            "items_read": s.items_read,
            "items_carried": s.items_carried,
            "skipped": s.skipped,
            "bytes": s.bytes,
            "bytes_read": s.bytes_read,
            "bytes_new": s.bytes_new,
            "bytes_stored": s.bytes_stored,
            "chunks_new": s.chunks_new,
            "packs": s.packs,
            "dedup_ratio": dedup,
            "duration_secs": secs,
        }));
    }
    if g.quiet {
        return Ok(());
    }
    println!("snapshot {} saved: mailbox {mailbox}, {} items", id.short(), s.items);
    println!("  items      {} read, {} unchanged since the parent snapshot", s.items_read, s.items_carried);
    println!("  data       {} in items, {} read, {} new", bytes(s.bytes), bytes(s.bytes_read), bytes(s.bytes_new));
    println!("  stored     {} in {} pack(s) after compression and encryption", bytes(s.bytes_stored), s.packs);
    match dedup {
        Some(d) => println!("  dedup      {d:.2}x"),
        None => println!("  dedup      everything was already stored"),
    }
    println!("  duration   {secs:.2} s ({}/s)", bytes((s.bytes_read as f64 / secs.max(1e-9)) as u64));
    Ok(())
}
