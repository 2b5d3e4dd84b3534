//! Exporting items in batches, and isolating the "dirty" items that make a whole batch fail.
//!
//! Batches hold at most 100 items (Microsoft's advice) and a byte budget from the sizes the sync
//! reported, so one call stays well under the server's one-minute limit. When a batch fails as a
//! whole, it is split in two and the halves are exported; but when the first half succeeds, the
//! second half is known to hold a dirty item and is split again *without* being sent whole. One dirty
//! item in 100 costs about 1.5·log2(100) ≈ 10 requests instead of plain halving's 2·log2(100) ≈ 13,
//! and every clean item is exported on the way. A batch the server keeps throttling (too costly for
//! the budget) is split too, without suspecting its items.

use crate::client::Client;
use crate::response::{EwsError, Exported};

/// An item to export, with the size the sync reported.
#[derive(Debug, Clone)]
pub struct ToExport {
    pub id: String,
    pub size: u64,
}

/// Per-batch byte budget (raw item bytes; the response carries a third more as base64).
pub const BATCH_BYTES: u64 = 24 * 1024 * 1024;

/// Splits `items` into batches of at most `max_items` and `BATCH_BYTES`.
pub fn batches(items: &[ToExport], max_items: usize) -> Vec<&[ToExport]> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut bytes = 0;
    for (i, it) in items.iter().enumerate() {
        if i > start && (i - start >= max_items || bytes + it.size > BATCH_BYTES) {
            out.push(&items[start..i]);
            start = i;
            bytes = 0;
        }
        bytes += it.size;
    }
    if start < items.len() {
        out.push(&items[start..]);
    }
    out
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
    ok: &mut dyn FnMut(&str, Vec<u8>) -> Result<(), EwsError>,
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
    ok: &mut dyn FnMut(&str, Vec<u8>) -> Result<(), EwsError>,
    failed: &mut dyn FnMut(&str, String),
    bad: &mut Vec<usize>,
) -> Result<bool, EwsError> {
    if known_bad && items.len() == 1 {
        bad.push(offset);
        failed(&items[0].id, "ErrorInternalServerError: the item fails every export request that contains it".into());
        return Ok(false);
    }
    if !known_bad {
        let ids: Vec<&str> = items.iter().map(|i| i.id.as_str()).collect();
        match client.export(mailbox, &ids) {
            Ok(results) => {
                for (it, r) in items.iter().zip(results) {
                    match r {
                        Exported::Ok { data, .. } => ok(&it.id, data)?,
                        Exported::Failed { status } => failed(&it.id, format!("{}: {}", status.code, status.message)),
                    }
                }
                return Ok(true);
            }
            // Still throttled after several back-offs: the request is too big for the budget.
            // Send it in two halves (neither is suspected of holding a dirty item).
            Err(e) if e.is_throttling() && items.len() > 1 => {
                let mid = items.len() / 2;
                let left = send(client, mailbox, &items[..mid], offset, false, ok, failed, bad)?;
                let right = send(client, mailbox, &items[mid..], offset + mid, false, ok, failed, bad)?;
                return Ok(left && right);
            }
            Err(e @ (EwsError::Fault { .. } | EwsError::Failed { .. })) if !e.is_throttling() => {
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
    fn batches_respect_count_and_bytes() {
        let items: Vec<ToExport> = (0..250).map(|i| ToExport { id: i.to_string(), size: 1000 }).collect();
        let b = batches(&items, 100);
        assert_eq!(b.iter().map(|b| b.len()).collect::<Vec<_>>(), vec![100, 100, 50]);
        let big: Vec<ToExport> = (0..5).map(|i| ToExport { id: i.to_string(), size: BATCH_BYTES / 2 }).collect();
        assert_eq!(batches(&big, 100).len(), 3);
        assert_eq!(plain_halving(0, 100, &[37]), 13);
        assert_eq!(plain_halving(0, 100, &[]), 1);
    }
}
