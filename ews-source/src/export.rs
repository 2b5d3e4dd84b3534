//! Exporting items in batches, and isolating the "dirty" items that make a whole batch fail.
//!
//! Batches hold at most 100 items (Microsoft's advice), a byte budget from the sizes the sync
//! reported, and no more than the server exported in `TARGET_REQUEST_SECS` on earlier requests
//! (measured as the client goes), so one call stays well under the server's one-minute limit even
//! when a server or a calendar is slow. When a batch fails as a
//! whole, it is split in two and the halves are exported; but when the first half succeeds, the
//! second half is known to hold a dirty item and is split again *without* being sent whole. One dirty
//! item in 100 costs about 1.5·log2(100) ≈ 10 requests instead of plain halving's 2·log2(100) ≈ 13,
//! and every clean item is exported on the way. A batch the server keeps throttling (too costly for
//! the budget) is split too, without suspecting its items.

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

/// Exports one batch: calls `ok(id, data)` for every exported item and `failed(id, error)` for each
/// item that could not be exported. Errors other than item failures (auth, persistent transport)
/// abort with `Err`.
pub fn export_batch(
    client: &Client,
    mailbox: &str,
    batch: &[ToExport],
    ok: &mut dyn FnMut(&str, ItemData) -> Result<(), EwsError>,
    failed: &mut dyn FnMut(&str, String),
) -> Result<(), EwsError> {
    let mut bad = Vec::new();
    let whole = send(client, mailbox, batch, 0, false, ok, failed, &mut bad)?;
    if !whole {
        bad.sort_unstable();
        client.note_split(plain_halving(0, batch.len(), &bad));
    } else {
        client.note_plain(1);
    }
    Ok(())
}

/// Returns true if the request for `items` succeeded as a whole. `known_bad`: a dirty item is known
/// to be among `items`, so sending them whole would only fail again.
#[allow(clippy::too_many_arguments)]
fn send(
    client: &Client,
    mailbox: &str,
    items: &[ToExport],
    offset: usize,
    known_bad: bool,
    ok: &mut dyn FnMut(&str, ItemData) -> Result<(), EwsError>,
    failed: &mut dyn FnMut(&str, String),
    bad: &mut Vec<usize>,
) -> Result<bool, EwsError> {
    if known_bad && items.len() == 1 {
        bad.push(offset);
        failed(&items[0].id, "ErrorInternalServerError: the item fails every export request that contains it".into());
        return Ok(false);
    }
    let (mut items, mut offset) = (items, offset);
    if !known_bad {
        let ids: Vec<&str> = items.iter().map(|i| i.id.as_str()).collect();
        // Items arrive one by one; on a failure, those handed over are done and only the rest
        // is sent again.
        let mut delivered = 0;
        let result = client.export_each(mailbox, &ids, &mut |i, r| {
            delivered = i + 1;
            match r {
                Exported::Ok { data, .. } => ok(&items[i].id, data),
                Exported::Failed { status } => {
                    failed(&items[i].id, format!("{}: {}", status.code, status.message));
                    Ok(())
                }
            }
        });
        items = &items[delivered..];
        offset += delivered;
        match result {
            Ok(()) => return Ok(true),
            // Still throttled after several back-offs: the request is too big for the budget.
            // Send it in two halves (neither is suspected of holding a dirty item).
            Err(e) if e.is_throttling() && items.len() > 1 => {
                let mid = items.len() / 2;
                let left = send(client, mailbox, &items[..mid], offset, false, ok, failed, bad)?;
                let right = send(client, mailbox, &items[mid..], offset + mid, false, ok, failed, bad)?;
                return Ok(left && right);
            }
            Err(e @ (EwsError::Fault { .. } | EwsError::Failed { .. })) if !e.is_throttling() && !items.is_empty() => {
                if items.len() == 1 {
                    bad.push(offset);
                    failed(&items[0].id, e.to_string());
                    return Ok(false);
                }
            }
            Err(e) => return Err(e),
        }
    }
    let mid = items.len() / 2;
    let left_ok = send(client, mailbox, &items[..mid], offset, false, ok, failed, bad)?;
    // If the left half went through whole, the dirty item is on the right.
    send(client, mailbox, &items[mid..], offset + mid, left_ok, ok, failed, bad)?;
    Ok(false)
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
