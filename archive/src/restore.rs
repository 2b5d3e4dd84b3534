//! Reading items back one at a time: chunk lookup, blob opening, whole-item verification (verify,
//! replay). Extraction of whole snapshots to files, in pack order, is `extract.rs`.
//!
//! Nothing unverified reaches the caller: every chunk is authenticated, every item checked against
//! its whole-blob BLAKE3 and size.

use crate::error::{Error, Result};
use crate::id::Id;
use crate::index::{BlobLocation, IndexTable};
use crate::manifest::{text, ArchivedItem};
use crate::pack::{open_blob, open_blob_checked};
use crate::repository::Repository;
use crate::storage::FileKind;
use std::io::Write;

/// Reads chunks and items of one repository through its index.
pub struct ItemReader<'r> {
    repo: &'r Repository,
    index: &'r IndexTable,
}

thread_local! {
    /// Read buffer reused across runs, so restores do not fault in fresh pages for every read.
    static READ_BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl<'r> ItemReader<'r> {
    pub fn new(repo: &'r Repository, index: &'r IndexTable) -> Self {
        ItemReader { repo, index }
    }

    pub fn read_chunk(&self, id: &Id) -> Result<Vec<u8>> {
        let loc = self.locate(id)?;
        let sealed = self.repo.storage().get_range(
            FileKind::Pack,
            &loc.pack.to_hex(),
            loc.entry.offset as u64,
            loc.entry.length as usize,
        )?;
        open_blob(self.repo.keys(), &loc.pack, &loc.entry, &sealed)
    }

    fn locate(&self, id: &Id) -> Result<BlobLocation> {
        self.index.get(id).ok_or_else(|| {
            Error::damaged(format!("chunk {}", id.short()), "not in any index (its pack is missing or unindexed)")
        })
    }

    /// Writes an item's bytes to `out`, verifying every chunk and the whole blob. On error `out`
    /// may hold a verified prefix; callers that must not expose partial data write to a temp file.
    ///
    /// Chunks stored back to back in one pack (the usual case: a backup writes an item's new chunks
    /// in order) are fetched with one read of up to `MAX_RUN` bytes instead of one read per chunk.
    pub fn read_item(&self, item: &ArchivedItem, out: &mut dyn Write) -> Result<u64> {
        let mut hasher = blake3::Hasher::new();
        let mut n = 0u64;
        let ids: Vec<Id> = item.chunks.iter().map(|c| Id(*c)).collect();
        let mut i = 0;
        while i < ids.len() {
            let first = self.locate(&ids[i])?;
            let mut run = vec![first];
            let mut end = first.entry.offset as u64 + first.entry.length as u64;
            while i + run.len() < ids.len() {
                let next = self.locate(&ids[i + run.len()])?;
                if next.pack != first.pack
                    || next.entry.offset as u64 != end
                    || end - first.entry.offset as u64 > MAX_RUN
                {
                    break;
                }
                end += next.entry.length as u64;
                run.push(next);
            }
            let start = first.entry.offset as u64;
            READ_BUF.with(|cell| -> Result<()> {
                let mut bytes = cell.borrow_mut();
                bytes.clear();
                bytes.resize((end - start) as usize, 0);
                self.repo.storage().read_into(FileKind::Pack, &first.pack.to_hex(), start, &mut bytes)?;
                for loc in &run {
                    let o = (loc.entry.offset as u64 - start) as usize;
                    // The whole-item hash below covers what a per-chunk id check would.
                    let sealed = &bytes[o..o + loc.entry.length as usize];
                    let data = open_blob_checked(self.repo.keys(), &loc.pack, &loc.entry, sealed, false)?;
                    hasher.update(&data);
                    n += data.len() as u64;
                    out.write_all(&data).map_err(|e| Error::Other(format!("writing item: {e}")))?;
                }
                Ok(())
            })?;
            i += run.len();
        }
        if *hasher.finalize().as_bytes() != item.blob_hash || n != item.size.to_native() {
            return Err(mismatch(format!("item {}", text(&item.source_id))));
        }
        Ok(n)
    }
}

/// An item whose reassembled bytes are not what its manifest entry records.
pub(crate) fn mismatch(what: String) -> Error {
    Error::damaged(what, "reassembled bytes do not match the item's recorded hash and size")
}

/// Longest run of adjacent blobs fetched with one read.
const MAX_RUN: u64 = 8 * 1024 * 1024;

pub use crate::extract::{extract, ExtractFailure, ExtractOptions, ExtractStats};
pub use crate::extract_names::safe_component;
