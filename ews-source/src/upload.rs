//! Uploading items in batches with UploadItems, isolating the ones the server refuses.
//!
//! A batch holds at most `MAX_UPLOAD_BATCH` items and `limit` bytes of base64 (Exchange's import
//! limit is about 25 MB per request). An item the server refuses on its own comes back as a
//! per-item error beside the others; a batch that fails as a whole (a SOAP fault, HTTP 413, or a
//! server that keeps throttling it) is split in halves until the failing item stands alone, as
//! exports are. A request whose outcome is unknown (the connection broke, the reply was cut off)
//! is never sent again blindly: its items are reported `Uncertain`, and the caller looks in the
//! target folder before uploading them again, so no item is created twice.

use crate::client::Client;
use crate::request::{CreateAction, UploadItem};
use crate::response::{EwsError, Uploaded};

/// Items per UploadItems request.
pub const MAX_UPLOAD_BATCH: usize = 50;
/// Default base64 bytes per UploadItems request (Exchange's default import limit is about 25 MB).
pub const DEFAULT_UPLOAD_LIMIT: usize = 25_000_000;

/// One item to upload.
#[derive(Debug, Clone)]
pub struct ToUpload {
    pub parent_folder_id: String,
    pub item_id: Option<String>,
    pub action: CreateAction,
    pub associated: bool,
    pub data_base64: String,
}

/// What became of one item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Uploaded {
        id: String,
        change_key: String,
    },
    /// The server refused the item: its response code and text.
    Refused(String),
    /// The item alone is larger than the server accepts in one request.
    TooLarge,
    /// The request broke off; the item may or may not have been stored.
    Uncertain(String),
}

/// Splits `sizes` (base64 lengths) into consecutive batches of at most `max_items` and `limit`
/// bytes; an item larger than `limit` gets a batch of its own (and is reported too large).
pub fn plan(sizes: &[usize], max_items: usize, limit: usize) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut bytes = 0usize;
    for (i, &n) in sizes.iter().enumerate() {
        if i > start && (i - start >= max_items || bytes + n > limit) {
            out.push(start..i);
            start = i;
            bytes = 0;
        }
        bytes += n;
    }
    if start < sizes.len() {
        out.push(start..sizes.len());
    }
    out
}

/// Uploads `items`, calling `report(index, outcome)` once for every item. Errors that concern the
/// whole connection (credentials, a server that stays unreachable) end the upload with `Err`;
/// items not reported by then were not sent.
pub fn upload_batch(
    client: &Client,
    mailbox: &str,
    items: &[ToUpload],
    limit: usize,
    report: &mut dyn FnMut(usize, Outcome),
) -> Result<(), EwsError> {
    let mut offset = 0;
    let mut sendable = Vec::new();
    for (i, it) in items.iter().enumerate() {
        if it.data_base64.len() > limit {
            report(i, Outcome::TooLarge);
        } else {
            sendable.push(i);
        }
    }
    while offset < sendable.len() {
        let end = (offset + MAX_UPLOAD_BATCH).min(sendable.len());
        send(client, mailbox, items, &sendable[offset..end], report)?;
        offset = end;
    }
    Ok(())
}

fn send(
    client: &Client,
    mailbox: &str,
    items: &[ToUpload],
    which: &[usize],
    report: &mut dyn FnMut(usize, Outcome),
) -> Result<(), EwsError> {
    let req: Vec<UploadItem> = which
        .iter()
        .map(|&i| {
            let it = &items[i];
            UploadItem {
                parent_folder_id: &it.parent_folder_id,
                item_id: it.item_id.as_deref(),
                action: it.action,
                associated: it.associated,
                data_base64: &it.data_base64,
            }
        })
        .collect();
    let split = |report: &mut dyn FnMut(usize, Outcome)| -> Result<(), EwsError> {
        let mid = which.len() / 2;
        send(client, mailbox, items, &which[..mid], report)?;
        send(client, mailbox, items, &which[mid..], report)
    };
    match client.upload(mailbox, &req) {
        Ok(results) if results.len() == which.len() => {
            for (&i, r) in which.iter().zip(results) {
                report(
                    i,
                    match r {
                        Uploaded::Ok { id, change_key } => Outcome::Uploaded { id, change_key },
                        Uploaded::Failed { status } => Outcome::Refused(format!("{}: {}", status.code, status.message)),
                    },
                );
            }
            Ok(())
        }
        Ok(results) => {
            let why = format!("the server answered {} of {} items", results.len(), which.len());
            for &i in which {
                report(i, Outcome::Uncertain(why.clone()));
            }
            Ok(())
        }
        Err(EwsError::TooLarge) if which.len() > 1 => split(report),
        Err(EwsError::TooLarge) => {
            report(which[0], Outcome::TooLarge);
            Ok(())
        }
        // Still throttled after several back-offs: too costly for the budget in one request.
        Err(e) if e.is_throttling() && which.len() > 1 => split(report),
        // The batch failed as a whole: find the item that breaks it.
        Err(e @ (EwsError::Fault { .. } | EwsError::Failed { .. })) if !e.is_throttling() => {
            if which.len() > 1 {
                split(report)
            } else {
                report(which[0], Outcome::Refused(e.to_string()));
                Ok(())
            }
        }
        Err(e) if e.outcome_unknown() => {
            for &i in which {
                report(i, Outcome::Uncertain(e.to_string()));
            }
            Ok(())
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_respects_count_and_bytes() {
        let sizes = vec![10usize; 120];
        let p = plan(&sizes, 50, 1000);
        assert_eq!(p, vec![0..50, 50..100, 100..120]);
        let sizes = [400, 400, 400, 5000, 10];
        assert_eq!(plan(&sizes, 50, 1000), vec![0..2, 2..3, 3..4, 4..5]);
        assert!(plan(&[], 50, 1000).is_empty());
    }
}
