//! What `pack --ews` and `pack --graph` share once their source is connected: the list of
//! mailboxes (flags, file, the source's own listing), the stores to back up, the read-back of the
//! previous run's packs, the run itself through the mailbox layer, the summary, and the exit code
//! (4 for damage, 5 for a run that stopped part-way, 1 for failures).

use crate::args::{Global, PackArgs};
use crate::output::bytes;
use crate::status::{self, Reading, Unit};
use crate::{logging, usage};
use anyhow::{bail, Context as _, Result};
use exarch_archive::backup::BackupStats;
use exarch_mailbox::backup::{backup_run, Done, RunSettings};
use exarch_mailbox::store::{self, Extra, PUBLIC_FOLDERS};
use exarch_mailbox::{MailboxError, Progress, Source};
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;

/// What a source's client did, for the summary.
pub(super) struct Traffic {
    /// `EWS` or `Graph`.
    pub protocol: &'static str,
    pub requests: BTreeMap<String, u64>,
    /// The operation that exports items (`ExportItems`, `exportItems`).
    pub export_op: &'static str,
    pub items_exported: u64,
    pub back_offs: u64,
    pub waited_ms: u64,
    pub retries: u64,
    pub batches_split: u64,
    pub export_requests_plain_halving: u64,
}

impl Traffic {
    /// What the EWS client did.
    pub(super) fn ews(cs: &exarch_ews_source::client::ClientStats) -> Traffic {
        Traffic {
            protocol: "EWS",
            requests: cs.requests.clone(),
            export_op: "ExportItems",
            items_exported: cs.items_exported,
            back_offs: cs.back_offs_honoured,
            waited_ms: cs.back_off_ms_total,
            retries: cs.retries,
            batches_split: cs.batches_split,
            export_requests_plain_halving: cs.export_requests_plain_halving,
        }
    }

    /// What the Graph client did.
    pub(super) fn graph(cs: &exarch_graph_source::http::Stats) -> Traffic {
        Traffic {
            protocol: "Graph",
            requests: cs.requests.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            export_op: "exportItems",
            items_exported: cs.items_exported,
            back_offs: cs.throttled,
            waited_ms: cs.waited_ms,
            retries: 0,
            batches_split: 0,
            export_requests_plain_halving: 0,
        }
    }
}

/// Mailboxes named by `--mailbox`, `--mailboxes-file`, the source's listing (`all`) and
/// `--public-folders`, sorted, once each.
pub(super) fn mailbox_list(a: &PackArgs, all: &dyn Fn() -> Result<Vec<String>>) -> Result<Vec<String>> {
    let mut mailboxes: Vec<String> = a.mailbox.clone();
    if let Some(f) = &a.mailboxes_file {
        let s = std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
        mailboxes.extend(s.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).map(String::from));
    }
    if a.all_mailboxes {
        mailboxes.extend(all()?);
    }
    if a.public_folders {
        mailboxes.push(PUBLIC_FOLDERS.to_string());
    }
    mailboxes.sort();
    mailboxes.dedup();
    if mailboxes.is_empty() {
        bail!(usage("no mailboxes: give --mailbox SMTP, --mailboxes-file FILE, --all-mailboxes or --public-folders"));
    }
    Ok(mailboxes)
}

/// Backs up `mailboxes` (and the stores `a` adds to them) from `source`.
pub(super) fn run(
    g: &Global,
    a: &PackArgs,
    source: &dyn Source,
    mailboxes: &[String],
    time_ms: i64,
    deadline: Option<std::time::Instant>,
    traffic: &(dyn Fn() -> Traffic + Sync),
) -> Result<()> {
    let talk = !g.quiet && !g.json;
    let extra = Extra { archive: a.archive_mailbox, recoverable_items: a.recoverable_items };
    let mailboxes = store::expand(source, mailboxes, extra, &|mb: &str, text: &str| {
        logging::tell(talk, &format!("{mb}: {text}"));
    })
    .map_err(MailboxError::from)
    .context("looking for In-Place Archives")?;
    let repo = super::open(g)?;
    let lock =
        super::write_lock(g, &repo, exarch_archive::lock::LockKind::Shared, exarch_archive::lock::LockPurpose::Pack)?;
    let index = repo.index()?;
    super::warn_skipped_index(&index);
    let (read_back, damage) = super::read_back(g, &repo, &index)?;
    let index = Arc::new(index);
    let mut run_id = [0u8; 16];
    repo.context().entropy.fill(&mut run_id);
    let started = std::time::Instant::now();
    let settings = RunSettings {
        run_id,
        time_ms,
        deadline,
        lock: lock.watch(),
        workers: 2,
        requests_per_store: a.requests_per_mailbox,
        progress: Arc::default(),
    };
    let progress = Arc::new(Progress::default());
    let settings = RunSettings { progress: progress.clone(), ..settings };
    let reading = || {
        let p = progress.seen();
        let t = traffic();
        Reading {
            pos: p.items_done,
            len: p.items_planned,
            text: format!(
                "{}/{} mailboxes, {}, {} back-off(s) ({:.1} s waited)",
                p.stores_done,
                p.stores_total,
                bytes(p.bytes_done),
                t.back_offs,
                t.waited_ms as f64 / 1000.0
            ),
        }
    };
    let done = status::while_running(g, "backup", Unit::Items, &reading, || {
        backup_run(
            &repo,
            index,
            source,
            &mailboxes,
            &settings,
            a.concurrency,
            &|mb: &str, text: &str| logging::warn(talk, &format!("{mb}: warning: {text}")),
            &|d: &Done| {
                let mb = &d.store;
                match &d.result {
                    Ok((id, st)) => logging::tell(
                        talk,
                        &format!(
                            "{mb}: snapshot {} ({} items, {} exported, {} unchanged, {} skipped)",
                            id.short(),
                            st.items,
                            st.items_read,
                            st.items_carried,
                            st.skipped
                        ),
                    ),
                    Err(e) if e.is_partial() => logging::warn(talk, &format!("{mb}: INCOMPLETE: {e}")),
                    Err(e) => logging::warn(talk, &format!("{mb}: FAILED: {e}")),
                }
            },
        )
    })?;
    report(g, &traffic(), &done, &read_back, started.elapsed().as_secs_f64())?;
    if let Some(exit) = damage {
        return Err(exit.into());
    }
    let failed = done.iter().filter(|d| d.result.as_ref().is_err_and(|e| !e.is_partial())).count();
    let partial = done.iter().filter(|d| d.result.as_ref().is_err_and(MailboxError::is_partial)).count();
    if failed > 0 {
        // Damage met in the repository outranks other failures: exit 4, as everywhere.
        let damaged = done
            .iter()
            .filter_map(|d| d.result.as_ref().err())
            .any(|e| e.archive().is_some_and(|a| a.class() == exarch_archive::ErrorClass::Damage));
        let msg =
            format!("{failed} of {} mailbox(es) could not be backed up (see above); the others were saved", done.len());
        if damaged {
            return Err(crate::Exit(crate::EXIT_DAMAGE, msg).into());
        }
        bail!(msg);
    }
    if partial > 0 {
        return Err(crate::Exit(
            crate::EXIT_PARTIAL,
            format!(
                "{partial} of {} mailbox(es) stopped part-way (see above); the next run continues them",
                done.len()
            ),
        )
        .into());
    }
    let skipped: u64 = done.iter().filter_map(|d| d.result.as_ref().ok()).map(|(_, s)| s.skipped).sum();
    if skipped > 0 {
        return Err(crate::Exit(
            crate::EXIT_PARTIAL,
            format!(
                "{skipped} item(s) could not be backed up (`exarch ls` lists them with the server's reasons); every \
                 other item is saved, and the next run tries them again"
            ),
        )
        .into());
    }
    Ok(())
}

fn report(
    g: &Global,
    t: &Traffic,
    done: &[Done],
    read_back: &exarch_archive::readback::ReadBack,
    secs: f64,
) -> Result<()> {
    let exports = t.requests.get(t.export_op).copied().unwrap_or(0);
    let items_per_request = if exports == 0 { 0.0 } else { t.items_exported as f64 / exports as f64 };
    let total =
        |f: fn(&BackupStats) -> u64| done.iter().filter_map(|d| d.result.as_ref().ok()).map(|(_, s)| f(s)).sum::<u64>();
    if g.json {
        let per: Vec<_> = done
            .iter()
            .map(|d| match &d.result {
                Ok((id, s)) => {
                    json!({"mailbox": d.store, "snapshot": id.to_hex(), "stats": s, "batch_sizes": d.classes})
                }
                Err(e) if e.is_partial() => {
                    json!({"mailbox": d.store, "complete": false, "status": "partial", "error": e.to_string()})
                }
                Err(e) => json!({"mailbox": d.store, "error": e.to_string()}),
            })
            .collect();
        let complete = done.iter().all(|d| d.result.is_ok()) && total(|s| s.skipped) == 0;
        let status = if complete { "complete" } else { "partial" };
        return super::print_json(&json!({
            "status": status,
            "protocol": t.protocol.to_ascii_lowercase(),
            "mailboxes": per,
            "requests": t.requests,
            "requests_total": t.requests.values().sum::<u64>(),
            "items_exported": t.items_exported,
            "items_per_export_request": items_per_request,
            "back_offs_honoured": t.back_offs,
            "back_off_ms_total": t.waited_ms,
            "retries": t.retries,
            "batches_split": t.batches_split,
            "export_requests_plain_halving": t.export_requests_plain_halving,
            "items": total(|s| s.items),
            "skipped": total(|s| s.skipped),
            "bytes_new": total(|s| s.bytes_new),
            "bytes_stored": total(|s| s.bytes_stored),
            "read_back": read_back,
            "duration_secs": secs,
        }));
    }
    if g.quiet {
        return Ok(());
    }
    let ok = done.iter().filter(|d| d.result.is_ok()).count();
    logging::out(&format!(
        "backed up {ok} of {} mailbox(es) in {secs:.1} s: {} items ({} skipped)",
        done.len(),
        total(|s| s.items),
        total(|s| s.skipped)
    ));
    logging::out(&format!(
        "  {:<10} {} requests ({}), {:.1} items per {} request",
        t.protocol,
        t.requests.values().sum::<u64>(),
        t.requests.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", "),
        items_per_request,
        t.export_op
    ));
    logging::out(&format!(
        "  throttling {} back-off(s) honoured ({:.1} s waited), {} retries; {} batch(es) split to isolate failing items",
        t.back_offs,
        t.waited_ms as f64 / 1000.0,
        t.retries,
        t.batches_split
    ));
    // Folder classes whose batches had to shrink under the server's time limit.
    let mut classes: BTreeMap<&str, (usize, u64)> = BTreeMap::new();
    for d in done {
        for (class, r) in &d.classes {
            let e = classes.entry(class.as_str()).or_insert((r.batch_size, 0));
            e.0 = e.0.min(r.batch_size);
            e.1 += r.timeouts;
        }
    }
    for (class, (size, timeouts)) in &classes {
        logging::out(&format!(
            "  {class:<10} batches of {size} item(s) (learned from the server's time limit), {timeouts} time-out(s)"
        ));
    }
    logging::out(&format!(
        "  data       {} new, {} stored after compression and encryption",
        bytes(total(|s| s.bytes_new)),
        bytes(total(|s| s.bytes_stored))
    ));
    Ok(())
}
