//! `exarch extract SNAPSHOT --to DIR`: every item back as a file, byte-identical, verified.
//!
//! Several snapshots in one command (`latest --all-mailboxes`, `--run RUN_ID`, or several ids):
//! the repository is opened, the key derived and the index loaded once, and each snapshot goes to
//! `DIR/<mailbox>/` (a mailbox named twice: `DIR/<mailbox>~<short id>/` for the later ones).

use crate::args::{ExtractArgs, Global};
use crate::output::{bytes, progress};
use anyhow::Result;
use exarch_archive::restore::{extract, safe_component, ExtractFailure, ExtractOptions, ExtractStats};
use exarch_archive::{Id, Repository};
use serde_json::json;
use std::path::PathBuf;

/// Parallel readers by default on an object store (measured on Garage: 2 → 11 s, 8 → 4.5 s for
/// 885 MB; more costs memory for little).
const REMOTE_READERS: usize = 8;

/// One snapshot to extract and where.
struct Target {
    id: Id,
    to: PathBuf,
}

/// What one snapshot gave.
struct Done {
    target: Target,
    mailbox: String,
    stats: ExtractStats,
    failures: Vec<ExtractFailure>,
}

/// The snapshots the arguments name, and whether they go to per-mailbox directories.
fn targets(repo: &Repository, a: &ExtractArgs) -> Result<(Vec<Target>, Vec<Id>)> {
    let (named, unreadable): (Vec<(String, Id)>, Vec<Id>) = if let Some(run) = &a.run {
        repo.snapshots_of_run(run)?
    } else if a.all_mailboxes {
        if a.snapshots != ["latest"] {
            return Err(crate::usage("--all-mailboxes takes the single snapshot `latest`"));
        }
        let (all, unreadable) = repo.latest_per_mailbox()?;
        if all.is_empty() && unreadable.is_empty() {
            return Err(exarch_archive::Error::NotFound("any snapshot".into()).into());
        }
        (all, unreadable)
    } else {
        let mut out = Vec::new();
        for s in &a.snapshots {
            let id = repo.resolve_snapshot(s, a.mailbox.as_deref())?;
            if out.iter().all(|(_, o)| *o != id) {
                let mailbox = exarch_archive::snapshot::read_summary(repo.storage().as_ref(), repo.keys(), &id)
                    .map(|m| exarch_archive::manifest::text(&m.mailbox).into_owned())
                    .unwrap_or_default();
                out.push((mailbox, id));
            }
        }
        (out, Vec::new())
    };
    let per_mailbox = a.run.is_some() || a.all_mailboxes || named.len() > 1;
    if !per_mailbox {
        return Ok((named.into_iter().map(|(_, id)| Target { id, to: a.to.clone() }).collect(), unreadable));
    }
    let mut used = std::collections::HashSet::new();
    let out = named
        .into_iter()
        .map(|(mailbox, id)| {
            let mut dir = safe_component(if mailbox.is_empty() { "unknown mailbox" } else { &mailbox });
            if !used.insert(dir.to_lowercase()) {
                dir = format!("{dir}~{}", id.short());
                used.insert(dir.to_lowercase());
            }
            Target { id, to: a.to.join(dir) }
        })
        .collect();
    Ok((out, unreadable))
}

pub fn run(g: &Global, a: ExtractArgs) -> Result<()> {
    let repo = super::open(g)?;
    let _lock = super::read_lock(g, &repo, exarch_archive::lock::LockPurpose::Extract)?;
    let (targets, unreadable) = targets(&repo, &a)?;
    let index = repo.index()?;
    super::warn_skipped_index(&index);
    let started = std::time::Instant::now();
    // On an object store readers mostly wait for replies: more of them than cores.
    let threads = match a.threads {
        None if repo.storage().is_remote() => super::threads(None).max(REMOTE_READERS),
        n => super::threads(n),
    };
    let many = a.run.is_some() || a.all_mailboxes || targets.len() > 1;
    // Several snapshots: two at a time, each with half the readers, so that one snapshot's serial
    // steps (opening its manifest, planning, its last run) overlap the other's reading and writing.
    let lanes = if targets.len() > 1 && threads > 1 { 2 } else { 1 };
    let opts = ExtractOptions { overwrite: a.overwrite, threads: (threads / lanes).max(1) };
    let mut unopened: Vec<ExtractFailure> = unreadable
        .iter()
        .map(|id| ExtractFailure {
            path: format!("snapshot {}", id.to_hex()),
            error: "its summary does not open, so its mailbox is unknown; `exarch verify` says why".into(),
            damage: true,
        })
        .collect();
    let sizes: std::collections::HashMap<Id, u64> =
        repo.snapshots()?.into_iter().filter_map(|s| s.summary.ok().map(|m| (s.id, m.bytes))).collect();
    let pb = progress(targets.iter().filter_map(|t| sizes.get(&t.id)).sum(), g.quiet, "extract");
    let n = targets.len();
    let queue = std::sync::Mutex::new(targets.into_iter().enumerate());
    let outcomes: std::sync::Mutex<Vec<(usize, Outcome)>> = std::sync::Mutex::new(Vec::with_capacity(n));
    std::thread::scope(|scope| {
        for _ in 0..lanes {
            scope.spawn(|| loop {
                let Some((i, t)) = queue.lock().expect("queue").next() else { break };
                let outcome = extract_one(&repo, &index, t, &opts, many, &|n| pb.inc(n));
                if matches!(outcome, Outcome::Fatal(_)) {
                    // the command stops: the other lane takes no further snapshot
                    queue.lock().expect("queue").by_ref().for_each(drop);
                }
                outcomes.lock().expect("outcomes").push((i, outcome));
            });
        }
    });
    pb.finish_and_clear();
    let mut outcomes = outcomes.into_inner().expect("outcomes");
    outcomes.sort_by_key(|o| o.0);
    let mut done = Vec::new();
    for (_, o) in outcomes {
        match o {
            Outcome::Done(d) => done.push(d),
            Outcome::Unopened(f) => unopened.push(f),
            Outcome::Fatal(e) => return Err(e),
        }
    }
    let secs = started.elapsed().as_secs_f64();
    report(g, many, &a.to, &done, &unopened, secs)?;
    let failed: Vec<&ExtractFailure> = done.iter().flat_map(|d| &d.failures).chain(&unopened).collect();
    if failed.is_empty() {
        return Ok(());
    }
    let damage = failed.iter().any(|f| f.damage);
    let msg = format!(
        "{} item(s) or snapshot(s) could not be extracted{}",
        failed.len(),
        if damage {
            " because the repository is damaged (see above); an older snapshot may hold good copies"
        } else {
            ""
        }
    );
    Err(crate::Exit(if damage { crate::EXIT_DAMAGE } else { crate::EXIT_ERROR }, msg).into())
}

/// What became of one snapshot of the command.
enum Outcome {
    Done(Done),
    /// It did not open; the other snapshots go on.
    Unopened(ExtractFailure),
    /// The command stops (the only snapshot did not open, or extraction itself failed).
    Fatal(anyhow::Error),
}

fn extract_one(
    repo: &Repository,
    index: &exarch_archive::index::IndexTable,
    t: Target,
    opts: &ExtractOptions,
    many: bool,
    progress: &(dyn Fn(u64) + Sync),
) -> Outcome {
    let snap = match repo.load_snapshot(&t.id) {
        Ok(s) => s,
        // one snapshot in the command: its damage is the answer; several: the others go on
        Err(e) if !many => return Outcome::Fatal(e.into()),
        Err(e) => {
            return Outcome::Unopened(ExtractFailure {
                path: format!("snapshot {}", t.id.to_hex()),
                damage: e.class() == exarch_archive::ErrorClass::Damage,
                error: e.to_string(),
            })
        }
    };
    match extract(repo, index, &snap, &t.to, opts, progress) {
        Ok((stats, failures)) => {
            let mailbox = exarch_archive::manifest::text(&snap.summary.mailbox).into_owned();
            Outcome::Done(Done { target: t, mailbox, stats, failures })
        }
        Err(e) => Outcome::Fatal(e.into()),
    }
}

fn snapshot_json(d: &Done) -> serde_json::Value {
    json!({
        "snapshot": d.target.id.to_hex(),
        "mailbox": d.mailbox,
        "to": d.target.to.display().to_string(),
        "items": d.stats.items,
        "bytes": d.stats.bytes,
        "failed": d.failures,
        "renamed": d.stats.renamed.iter().map(|(from, to)| json!({"stored": from, "written": to})).collect::<Vec<_>>(),
    })
}

fn report(
    g: &Global,
    many: bool,
    to: &std::path::Path,
    done: &[Done],
    unopened: &[ExtractFailure],
    secs: f64,
) -> Result<()> {
    let single = !many && done.len() == 1;
    let (items, total): (u64, u64) = done.iter().fold((0, 0), |(i, b), d| (i + d.stats.items, b + d.stats.bytes));
    if g.json {
        let v = if single {
            let mut v = snapshot_json(&done[0]);
            v["duration_secs"] = json!(secs);
            v
        } else {
            json!({
                "to": to.display().to_string(),
                "snapshots": done.iter().map(snapshot_json).collect::<Vec<_>>(),
                "items": items,
                "bytes": total,
                "failed": done.iter().flat_map(|d| &d.failures).chain(unopened).collect::<Vec<_>>(),
                "duration_secs": secs,
            })
        };
        return super::print_json(&v);
    }
    for d in done {
        if !g.quiet {
            println!(
                "extracted {} items ({}) of snapshot {} ({}) to {}{}",
                d.stats.items,
                bytes(d.stats.bytes),
                d.target.id.short(),
                d.mailbox,
                d.target.to.display(),
                if single { format!(" in {secs:.2} s") } else { String::new() }
            );
            if !d.stats.renamed.is_empty() {
                println!(
                    "{} item(s) written under another name (unsafe characters, a name taken in the folder, or too long):",
                    d.stats.renamed.len()
                );
                for (from, to) in &d.stats.renamed {
                    println!("  {from}  ->  {to}");
                }
            }
        }
        for f in &d.failures {
            crate::logging::warn(true, &format!("FAILED {}: {}", f.path, f.error));
        }
    }
    for f in unopened {
        crate::logging::warn(true, &format!("FAILED {}: {}", f.path, f.error));
    }
    if !single && !g.quiet {
        println!("extracted {} snapshot(s), {items} items ({}) in {secs:.2} s", done.len(), bytes(total));
    }
    Ok(())
}
