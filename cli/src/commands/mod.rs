//! One module per verb; this one dispatches and holds what they share (opening the repository).

mod demo;
mod ews_conn;
mod extract;
mod find;
mod forget;
mod graph_conn;
mod init;
mod key;
mod ls;
mod pack;
mod pack_ews;
mod pack_graph;
mod pack_mailboxes;
mod prune;
mod repair;
mod replay;
mod simulate;
mod snapshots;
mod store;
mod unlock;
mod verify;
mod when;

pub use when::parse_duration;

use crate::args::{Cli, Command, Global};
use crate::secrets;
use crate::secrets::ExposeSecret as _;
use anyhow::{Context as _, Result};
use exarch_archive::{Context, Repository};
use std::path::PathBuf;

pub fn run(cli: Cli) -> Result<()> {
    let g = &cli.global;
    match cli.command {
        Command::Init(a) => init::run(g, a),
        Command::Pack(a) => pack::run(g, a),
        Command::Snapshots(a) => snapshots::run(g, a),
        Command::Ls(a) => ls::run(g, a),
        Command::Extract(a) => extract::run(g, a),
        Command::Prune(a) => prune::run(g, a),
        Command::Replay(a) => replay::run(g, a),
        Command::Simulate(a) => simulate::run(g, a),
        Command::Demo(a) => demo::run(g, a),
        Command::Verify(a) => verify::run(g, a),
        Command::Forget(a) => forget::run(g, a),
        Command::Repair(c) => repair::run(g, c),
        Command::Key(k) => key::run(g, k),
        Command::Unlock(a) => unlock::run(g, a),
        Command::Find(a) => find::run(g, a),
        Command::Completion(a) => {
            let mut cmd = <crate::args::Cli as clap::CommandFactory>::command();
            clap_complete::generate(a.shell, &mut cmd, "exarch", &mut std::io::stdout());
            Ok(())
        }
        Command::Man => {
            let cmd = <crate::args::Cli as clap::CommandFactory>::command();
            clap_mangen::Man::new(cmd).render(&mut std::io::stdout())?;
            Ok(())
        }
    }
}

/// The local cache root: --cache-dir / EXARCH_CACHE_DIR, else the platform's cache directory.
pub fn cache_root(g: &Global) -> PathBuf {
    if let Some(d) = &g.cache_dir {
        return d.clone();
    }
    platform_cache_dir().unwrap_or_else(|| std::env::temp_dir().join("exarch-cache"))
}

#[cfg(unix)]
fn platform_cache_dir() -> Option<PathBuf> {
    if let Some(x) = std::env::var_os("XDG_CACHE_HOME").filter(|x| !x.is_empty()) {
        return Some(PathBuf::from(x).join("exarch"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache").join("exarch"))
}

#[cfg(windows)]
fn platform_cache_dir() -> Option<PathBuf> {
    std::env::var_os("LOCALAPPDATA").map(|h| PathBuf::from(h).join("exarch").join("cache"))
}

pub use store::storage;

pub fn open(g: &Global) -> Result<Repository> {
    let storage = storage(g)?;
    // Fail on a missing repository before asking for a passphrase.
    if !storage.exists(exarch_archive::FileKind::Config, "config")? {
        return Err(exarch_archive::repository::missing_config(storage.as_ref()).into());
    }
    let pass = secrets::repository_passphrase(g.password_file.as_deref(), g.password_command.as_deref(), false)?;
    let mut ctx = Context::new(cache_root(g));
    ctx.lease_secs = g.lock_lease;
    let at = storage.describe();
    Repository::open(storage, pass.expose_secret().as_bytes(), ctx).with_context(|| format!("opening repository {at}"))
}

/// The shared lock of a command that only reads, or none with `--no-lock` (read-only media).
pub fn read_lock(
    g: &Global,
    repo: &Repository,
    purpose: exarch_archive::lock::LockPurpose,
) -> Result<Option<exarch_archive::lock::LockGuard>> {
    if g.no_lock {
        return Ok(None);
    }
    Ok(Some(
        repo.lock(exarch_archive::lock::LockKind::Shared, purpose)
            .map_err(|e| anyhow::Error::new(e).context("taking a lock (on read-only media, add --no-lock)"))?,
    ))
}

/// The lock of a command that writes; `--no-lock` is refused for these.
pub fn write_lock(
    g: &Global,
    repo: &Repository,
    kind: exarch_archive::lock::LockKind,
    purpose: exarch_archive::lock::LockPurpose,
) -> Result<exarch_archive::lock::LockGuard> {
    if g.no_lock {
        return Err(crate::usage(format!("--no-lock is only for commands that only read, not {}", purpose.as_str())));
    }
    Ok(repo.lock(kind, purpose)?)
}

/// Prints a `--json` result. A summary object of a command that used an object store also says how
/// many requests it sent (`storage_requests`: get, put, list, stat, delete).
pub fn print_json(v: &impl serde::Serialize) -> Result<()> {
    use std::io::Write;
    let mut v = serde_json::to_value(v)?;
    let sent = exarch_archive::storage::request_counts();
    if let (Some(obj), true) = (v.as_object_mut(), sent.total() > 0) {
        obj.insert("storage_requests".into(), serde_json::to_value(sent)?);
    }
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, &v)?;
    writeln!(out)?;
    Ok(())
}

pub fn threads(n: Option<usize>) -> usize {
    n.unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2)).max(1)
}

/// Damaged index files are left out of the index; say so, since affected items will fail.
pub fn warn_skipped_index(index: &exarch_archive::index::IndexTable) {
    for (name, why) in index.skipped() {
        crate::logging::warn(
            true,
            &format!("warning: index file {} left out: {why}; run `exarch verify`", &name[..name.len().min(16)]),
        );
    }
}

/// Reads back the packs this machine's last backup wrote, before a backup builds on them. Damage is
/// printed at once (the pack named, and what to run) and returned as the exit the backup ends with
/// once its own work is saved: new mail is still worth keeping, but the run must not look clean.
pub fn read_back(
    g: &Global,
    repo: &Repository,
    index: &exarch_archive::index::IndexTable,
) -> Result<(exarch_archive::readback::ReadBack, Option<crate::Exit>)> {
    let r = exarch_archive::readback::read_back(repo.storage().as_ref(), index, &repo.cache_dir())?;
    if r.packs > 0 && !g.quiet && !g.json {
        crate::logging::tell(
            true,
            &format!("read back {} pack(s) ({} bytes) stored by the last backup: intact", r.packs, r.bytes),
        );
    }
    if r.damaged.is_empty() {
        return Ok((r, None));
    }
    for d in &r.damaged {
        crate::logging::warn(true, &format!("error: pack {} is damaged: {}", d.pack, d.problem));
    }
    let msg = format!(
        "{} pack(s) written by an earlier backup from this machine are damaged (named above); \
         items carried forward from them cannot be restored. Run `exarch verify --read-data` to see \
         which snapshots and items they hit",
        r.damaged.len()
    );
    Ok((r, Some(crate::Exit(crate::EXIT_DAMAGE, msg))))
}
