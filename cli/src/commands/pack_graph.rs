//! `exarch pack --graph`: back up Exchange Online mailboxes through Microsoft Graph's mailbox
//! import/export API, one snapshot per store, as `pack --ews` does (the run is `pack_mailboxes.rs`).
//! Mailboxes are named by SMTP address; `--all-mailboxes` lists the tenant's users with mail.

use super::pack_mailboxes::{mailbox_list, Traffic};
use super::when::snapshot_time;
use crate::args::{Global, PackArgs};
use crate::usage;
use anyhow::Result;
use exarch_mailbox::graph::GraphSource;

pub fn run(g: &Global, a: &PackArgs) -> Result<()> {
    if a.public_folders || a.recoverable_items {
        return Err(usage(
            "--public-folders and --recoverable-items need --ews: Graph's mailbox API does not reach them",
        ));
    }
    let time_ms = snapshot_time(a.time.as_deref())?;
    let deadline = super::pack_ews::deadline(a)?;
    let limits = exarch_graph_source::Limits {
        max_item_bytes: a.max_item_size,
        in_memory: 8 * 1024 * 1024,
        spill_dir: crate::private::dir(&super::cache_root(g).join("spill"))?,
    };
    let per_mailbox = a.requests_per_mailbox.clamp(1, exarch_graph_source::governor::MAX_CONCURRENT_PER_MAILBOX);
    let client =
        super::graph_conn::client(&a.graph, &a.conn, a.concurrency * per_mailbox, per_mailbox, deadline, limits)?;
    let mailboxes = mailbox_list(a, &|| {
        Ok(client
            .users()
            .map_err(|e| anyhow::Error::new(e).context("listing users (GET /users)"))?
            .into_iter()
            .map(|u| u.address)
            .collect())
    })?;
    let source = GraphSource::new(&client);
    super::pack_mailboxes::run(g, a, &source, &mailboxes, time_ms, deadline, &|| Traffic::graph(&client.stats()))
}
