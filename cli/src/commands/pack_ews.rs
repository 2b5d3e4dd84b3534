//! `exarch pack --ews URL`: back up Exchange mailboxes, one snapshot per mailbox, all sharing a run id.
//!
//! Per mailbox: the folder tree from SyncFolderHierarchy; per folder, SyncFolderItems from the sync
//! state the parent snapshot stored, so only new and changed items are exported; unchanged items are
//! carried into the new snapshot from the parent; items the parent could not export are retried.
//! Exports go through the governor in batches with dirty-item isolation; each exported stream goes
//! straight into the archive's pipeline.

use super::ews_conn::{client, endpoint, Load};
use super::when::{parse_duration, snapshot_time};
use crate::args::{Global, PackArgs};
use crate::output::bytes;
use crate::usage;
use anyhow::{bail, Context as _, Result};
use exarch_archive::backup::BackupStats;
use exarch_archive::readback::ReadBack;
use exarch_ews_source::client::Client;
use exarch_mailbox::backup::{backup_run, Done, RunSettings};
use exarch_mailbox::ews::EwsSource;
use exarch_mailbox::store::{self, Extra, PUBLIC_FOLDERS};
use exarch_mailbox::MailboxError;
use serde_json::json;
use std::sync::Arc;

/// True for a mailbox that stopped part-way rather than failed.
fn is_partial(e: &MailboxError) -> bool {
    e.is_partial()
}

pub fn run(g: &Global, a: &PackArgs, url: &str) -> Result<()> {
    let (url, auth) = endpoint(url, &a.conn)?;
    let url = url.as_str();
    let time_ms = snapshot_time(a.time.as_deref())?;
    let deadline = match &a.max_duration {
        Some(d) => Some(
            std::time::Instant::now()
                + parse_duration(d)
                    .ok_or_else(|| usage(format!("--max-duration {d}: use e.g. 45m, 2h, 1h30m, 90s (at most 366d)")))?,
        ),
        None => None,
    };
    let load = Load {
        concurrency: (a.concurrency * a.requests_per_mailbox).max(1),
        per_mailbox: a.requests_per_mailbox.max(1),
        sync_concurrency: a.sync_concurrency.max(1),
        timeout_secs: 180,
    };
    let limits = exarch_ews_source::export_stream::Limits {
        max_item_bytes: a.max_item_size,
        in_memory: 8 * 1024 * 1024,
        spill_dir: crate::private::dir(&super::cache_root(g).join("spill"))?,
    };
    let client = client(url, auth, &a.conn, load, deadline, limits)?;
    let mut mailboxes: Vec<String> = a.mailbox.clone();
    if let Some(f) = &a.mailboxes_file {
        let s = std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
        mailboxes.extend(s.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).map(String::from));
    }
    if a.all_mailboxes {
        mailboxes.extend(client.all_mailboxes().context("listing mailboxes (ResolveNames)")?);
    }
    if a.public_folders {
        mailboxes.push(PUBLIC_FOLDERS.to_string());
    }
    mailboxes.sort();
    mailboxes.dedup();
    if mailboxes.is_empty() {
        bail!(usage("no mailboxes: give --mailbox SMTP, --mailboxes-file FILE, --all-mailboxes or --public-folders"));
    }
    let source = EwsSource::new(&client, url);
    let talk = !g.quiet && !g.json;
    let extra = Extra { archive: a.archive_mailbox, recoverable_items: a.recoverable_items };
    let mailboxes = store::expand(&source, &mailboxes, extra, &|mb: &str, text: &str| {
        if talk {
            eprintln!("{mb}: {text}");
        }
    })
    .map_err(MailboxError::from)
    .context("looking for In-Place Archives (GetFolder archivemsgfolderroot)")?;
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
    let settings = RunSettings { run_id, time_ms, deadline, lock: lock.watch(), workers: 2 };
    let done = backup_run(
        &repo,
        index,
        &source,
        &mailboxes,
        &settings,
        a.concurrency,
        &|mb: &str, text: &str| {
            if talk {
                eprintln!("{mb}: warning: {text}");
            }
        },
        &|d: &Done| {
            if talk {
                let mb = &d.store;
                match &d.result {
                    Ok((id, st)) => eprintln!(
                        "{mb}: snapshot {} ({} items, {} exported, {} unchanged, {} skipped)",
                        id.short(),
                        st.items,
                        st.items_read,
                        st.items_carried,
                        st.skipped
                    ),
                    Err(e) if is_partial(e) => eprintln!("{mb}: INCOMPLETE: {e}"),
                    Err(e) => eprintln!("{mb}: FAILED: {e}"),
                }
            }
        },
    );
    report(g, &client, &done, &read_back, started.elapsed().as_secs_f64())?;
    if let Some(exit) = damage {
        return Err(exit.into());
    }
    let failed = done.iter().filter(|d| d.result.as_ref().is_err_and(|e| !is_partial(e))).count();
    let partial = done.iter().filter(|d| d.result.as_ref().is_err_and(is_partial)).count();
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
    Ok(())
}

fn report(g: &Global, client: &Client, done: &[Done], read_back: &ReadBack, secs: f64) -> Result<()> {
    let cs = client.stats();
    let exports = cs.requests.get("ExportItems").copied().unwrap_or(0);
    let items_per_request = if exports == 0 { 0.0 } else { cs.items_exported as f64 / exports as f64 };
    let total =
        |f: fn(&BackupStats) -> u64| done.iter().filter_map(|d| d.result.as_ref().ok()).map(|(_, s)| f(s)).sum::<u64>();
    if g.json {
        let per: Vec<_> = done
            .iter()
            .map(|d| match &d.result {
                Ok((id, s)) => json!({"mailbox": d.store, "snapshot": id.to_hex(), "stats": s}),
                Err(e) if is_partial(e) => {
                    json!({"mailbox": d.store, "complete": false, "status": "partial", "error": e.to_string()})
                }
                Err(e) => json!({"mailbox": d.store, "error": e.to_string()}),
            })
            .collect();
        let status = if done.iter().all(|d| d.result.is_ok()) { "complete" } else { "partial" };
        return super::print_json(&json!({
            "status": status,
            "mailboxes": per,
            "requests": cs.requests,
            "requests_total": cs.requests.values().sum::<u64>(),
            "items_exported": cs.items_exported,
            "items_per_export_request": items_per_request,
            "back_offs_honoured": cs.back_offs_honoured,
            "back_off_ms_total": cs.back_off_ms_total,
            "retries": cs.retries,
            "batches_split": cs.batches_split,
            "export_requests_plain_halving": cs.export_requests_plain_halving,
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
    println!(
        "backed up {ok} of {} mailbox(es) in {secs:.1} s: {} items ({} skipped)",
        done.len(),
        total(|s| s.items),
        total(|s| s.skipped)
    );
    println!(
        "  EWS        {} requests ({}), {:.1} items per ExportItems request",
        cs.requests.values().sum::<u64>(),
        cs.requests.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", "),
        items_per_request
    );
    println!(
        "  throttling {} back-off(s) honoured ({:.1} s waited), {} retries; {} batch(es) split to isolate failing items",
        cs.back_offs_honoured,
        cs.back_off_ms_total as f64 / 1000.0,
        cs.retries,
        cs.batches_split
    );
    println!(
        "  data       {} new, {} stored after compression and encryption",
        bytes(total(|s| s.bytes_new)),
        bytes(total(|s| s.bytes_stored))
    );
    Ok(())
}
