//! `exarch pack --ews URL`: back up Exchange mailboxes through EWS, one snapshot per store, all
//! sharing a run id (the run itself is `pack_mailboxes.rs`, over the mailbox layer).
//!
//! Per mailbox: the folder tree from SyncFolderHierarchy; per folder, SyncFolderItems from the sync
//! state the parent snapshot stored, so only new and changed items are exported; unchanged items are
//! carried into the new snapshot from the parent; items the parent could not export are retried.
//! Exports go through the governor in batches with dirty-item isolation; each exported stream goes
//! straight into the archive's pipeline.

use super::ews_conn::{client, endpoint, Load};
use super::pack_mailboxes::{mailbox_list, Traffic};
use super::when::{parse_duration, snapshot_time};
use crate::args::{Global, PackArgs};
use crate::usage;
use anyhow::{Context as _, Result};
use exarch_mailbox::ews::EwsSource;

/// `--max-duration` as the instant no new export starts after.
pub(super) fn deadline(a: &PackArgs) -> Result<Option<std::time::Instant>> {
    Ok(match &a.max_duration {
        Some(d) => Some(
            std::time::Instant::now()
                + parse_duration(d)
                    .ok_or_else(|| usage(format!("--max-duration {d}: use e.g. 45m, 2h, 1h30m, 90s (at most 366d)")))?,
        ),
        None => None,
    })
}

pub fn run(g: &Global, a: &PackArgs, url: &str) -> Result<()> {
    let (url, auth) = endpoint(url, &a.conn)?;
    let url = url.as_str();
    let time_ms = snapshot_time(a.time.as_deref())?;
    let deadline = deadline(a)?;
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
    let mailboxes = mailbox_list(a, &|| client.all_mailboxes().context("listing mailboxes (ResolveNames)"))?;
    let source = EwsSource::new(&client, url);
    super::pack_mailboxes::run(g, a, &source, &mailboxes, time_ms, deadline, &|| Traffic::ews(&client.stats()))
}
