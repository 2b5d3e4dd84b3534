//! Exporting items in batches, and isolating the "dirty" items that make a whole batch fail.
//!
//! Batches hold at most 100 items (Microsoft's advice), a byte budget from the sizes the sync
//! reported, and no more than the server exported in `TARGET_REQUEST_SECS` on earlier requests
//! (measured as the client goes), so one call stays well under the server's one-minute limit even
//! when a server or a calendar is slow. When a batch fails as a whole, group testing finds one
//! dirty item by binary search and hands back the part it did not try (see `export_batch`); the
//! caller sizes batches (Hwang's rule: smaller once dirty items turn out to be common). A batch the
//! server keeps throttling (too costly for the budget) is split too, without suspecting its items.

use crate::client::Client;
use crate::export_stream::ItemData;
use crate::response::{EwsError, Exported};

/// An item to export, with the size the sync reported.
#[derive(Debug, Clone)]
pub struct ToExport {
    pub id: String,
    pub size: u64,
}

/// Per-batch byte budget (raw item bytes; the response carries a third more as base64).
pub const BATCH_BYTES: u64 = 24 * 1024 * 1024;

/// How long one ExportItems request should take on the server. Exchange stops a request after
/// about a minute; staying far below leaves room for a slow moment without a failed batch.
pub const TARGET_REQUEST_SECS: f64 = 15.0;

/// The length of the next batch taken from the front of `items`: at most `max_items` items and
/// `BATCH_BYTES`, and, once the server's speed is known (`secs_per_byte`, measured on earlier
/// requests), no more than it exports in `TARGET_REQUEST_SECS`. Always at least one item.
pub fn next_batch(items: &[ToExport], max_items: usize, secs_per_byte: Option<f64>) -> usize {
    let mut bytes = 0u64;
    let mut weight = 0u64;
    for (i, it) in items.iter().enumerate() {
        weight += it.size.max(1024);
        let too_slow = secs_per_byte.is_some_and(|r| weight as f64 * r > TARGET_REQUEST_SECS);
        if i > 0 && (i >= max_items || bytes + it.size > BATCH_BYTES || too_slow) {
            return i;
        }
        bytes += it.size;
    }
    items.len()
}

/// What plain halving costs for `n` items of which the ones at `bad` (sorted positions) are dirty.
fn plain_halving(lo: usize, hi: usize, bad: &[usize]) -> u64 {
    let dirty = bad.iter().any(|&b| b >= lo && b < hi);
    if !dirty || hi - lo == 1 {
        return 1;
    }
    let mid = lo + (hi - lo) / 2;
    1 + plain_halving(lo, mid, bad) + plain_halving(mid, hi, bad)
}

/// What became of a batch beyond the items handed to `ok` and `failed`: positions (in the batch,
/// ascending) of items not tried, which the caller exports later in another batch, and of items a
/// request holding them ran into the server's time limit, which the caller sends again in
/// smaller requests.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct BatchResult {
    pub untried: Vec<usize>,
    pub timed_out: Vec<usize>,
}

/// Exports one batch: calls `ok(id, data)` for every exported item and `failed(id, error)` for each
/// item found to fail every request that holds it. Errors other than item failures and time-outs
/// (auth, persistent transport) abort with `Err`.
///
/// Group testing (Hwang's generalised binary splitting): the batch is tried whole; when it fails,
/// binary search finds *one* dirty item, exporting each half that goes through on the way. A half
/// that was never tried (the other half of one that failed) is handed back rather than tried now, so
/// it joins the next full batch instead of costing requests of its own. With d dirty items among n,
/// this costs about d·log2(n/d) + d requests where halving every failed batch to the end costs
/// about 2d·log2(batch). A time-out is not a dirty item: the items it held are handed back as
/// `timed_out`, never recorded as failed.
pub fn export_batch(
    client: &Client,
    mailbox: &str,
    batch: &[ToExport],
    ok: &mut dyn FnMut(&str, ItemData) -> Result<(), EwsError>,
    failed: &mut dyn FnMut(&str, String),
) -> Result<BatchResult, EwsError> {
    let mut r = BatchResult::default();
    let (from, to, error) = match try_send(client, mailbox, batch, 0, ok, failed, &mut r.timed_out)? {
        Tried::Clean => {
            client.note_plain(1);
            r.timed_out.sort_unstable();
            return Ok(r);
        }
        Tried::TimedOut { from } => {
            r.timed_out.extend(from..batch.len());
            r.timed_out.sort_unstable();
            return Ok(r);
        }
        Tried::Dirty { from, to, error } => (from, to, error),
    };
    r.untried.extend(to..batch.len());
    let (mut lo, mut hi, mut error) = (from, to, error);
    // A dirty item is known to be in batch[lo..hi].
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        match try_send(client, mailbox, &batch[lo..mid], lo, ok, failed, &mut r.timed_out)? {
            Tried::Clean => lo = mid,
            Tried::Dirty { from, to, error: e } => {
                r.untried.extend(lo + to..hi);
                (lo, hi, error) = (lo + from, lo + to, e);
            }
            Tried::TimedOut { from } => {
                // The search stops here; what it had not settled goes back to the caller.
                r.timed_out.extend(lo + from..mid);
                r.untried.extend(mid..hi);
                r.untried.sort_unstable();
                r.timed_out.sort_unstable();
                return Ok(r);
            }
        }
    }
    failed(&batch[lo].id, error);
    r.untried.sort_unstable();
    r.timed_out.sort_unstable();
    client.note_split(plain_halving(0, batch.len(), &[lo]));
    Ok(r)
}

/// What one try of a set of items showed.
enum Tried {
    /// Every item went through (or failed on its own, or timed out on its own).
    Clean,
    /// The items before `from` went through; a request holding `items[from..to]` failed as a whole
    /// (a dirty item is among them); the items from `to` on were not tried.
    Dirty { from: usize, to: usize, error: String },
    /// The items before `from` went through; the request ran into the time limit for the rest.
    TimedOut { from: usize },
}

/// Sends `items` (which start at position `base` of the batch) as one request, or, when the
/// server keeps throttling it as too costly, as two halves (neither suspected of holding a dirty
/// item; the second is not sent if the first fails). Items that time out on their own (a per-item
/// `ErrorTimeoutExpired`) go into `timed_out` by batch position.
fn try_send(
    client: &Client,
    mailbox: &str,
    items: &[ToExport],
    base: usize,
    ok: &mut dyn FnMut(&str, ItemData) -> Result<(), EwsError>,
    failed: &mut dyn FnMut(&str, String),
    timed_out: &mut Vec<usize>,
) -> Result<Tried, EwsError> {
    let ids: Vec<&str> = items.iter().map(|i| i.id.as_str()).collect();
    // Items arrive one by one; on a failure, those handed over are done.
    let mut delivered = 0;
    let result = client.export_each(mailbox, &ids, &mut |i, r| {
        delivered = i + 1;
        match r {
            Exported::Ok { data, .. } => ok(&items[i].id, data),
            Exported::Failed { status } if status.code == "ErrorTimeoutExpired" => {
                timed_out.push(base + i);
                Ok(())
            }
            Exported::Failed { status } => {
                failed(&items[i].id, format!("{}: {}", status.code, status.message));
                Ok(())
            }
        }
    });
    match result {
        Ok(()) => Ok(Tried::Clean),
        Err(e) if e.is_time_limit() => Ok(Tried::TimedOut { from: delivered }),
        Err(e) if e.is_throttling() && items.len() - delivered > 1 => {
            let rest = &items[delivered..];
            let mid = rest.len() / 2;
            match try_send(client, mailbox, &rest[..mid], base + delivered, ok, failed, timed_out)? {
                Tried::Dirty { from, to, error } => {
                    Ok(Tried::Dirty { from: delivered + from, to: delivered + to, error })
                }
                Tried::TimedOut { from } => Ok(Tried::TimedOut { from: delivered + from }),
                Tried::Clean => {
                    match try_send(client, mailbox, &rest[mid..], base + delivered + mid, ok, failed, timed_out)? {
                        Tried::Clean => Ok(Tried::Clean),
                        Tried::Dirty { from, to, error } => {
                            Ok(Tried::Dirty { from: delivered + mid + from, to: delivered + mid + to, error })
                        }
                        Tried::TimedOut { from } => Ok(Tried::TimedOut { from: delivered + mid + from }),
                    }
                }
            }
        }
        Err(e @ (EwsError::Fault { .. } | EwsError::Failed { .. }))
            if !e.is_throttling() && delivered < items.len() =>
        {
            Ok(Tried::Dirty { from: delivered, to: items.len(), error: e.to_string() })
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_respect_count_bytes_and_speed() {
        let items: Vec<ToExport> = (0..250).map(|i| ToExport { id: i.to_string(), size: 1000 }).collect();
        let big: Vec<ToExport> = (0..5).map(|i| ToExport { id: i.to_string(), size: BATCH_BYTES / 2 }).collect();
        assert_eq!(plain_halving(0, 100, &[37]), 13);
        // adaptive: a fast server gets full batches, a slow one smaller ones, never empty
        assert_eq!(next_batch(&items, 100, None), 100);
        assert_eq!(next_batch(&items, 100, Some(1e-9)), 100);
        assert_eq!(next_batch(&items, 100, Some(TARGET_REQUEST_SECS / 10_240.0)), 10);
        assert_eq!(next_batch(&items, 100, Some(1.0)), 1);
        assert_eq!(next_batch(&big, 100, None), 2);
        assert_eq!(next_batch(&[], 100, None), 0);
        assert_eq!(plain_halving(0, 100, &[]), 1);
    }
}
