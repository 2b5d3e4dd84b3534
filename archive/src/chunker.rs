//! Content-defined chunking with FastCDC (2020), seeded per repository.
//!
//! Boundaries depend only on content (and the repository's seed), so an attachment forwarded to
//! fifty mailboxes, or an item re-exported with a changed header, still shares most chunks.

use crate::config::ChunkerParams;
use fastcdc::v2020::{FastCDC, Normalization, StreamCDC};
use std::io::Read;

#[derive(Debug, Clone, Copy)]
pub struct Chunker {
    params: ChunkerParams,
    seed: u64,
}

impl Chunker {
    pub fn new(params: ChunkerParams, seed: u64) -> Chunker {
        Chunker { params, seed }
    }

    /// Cut points of an in-memory blob, as (offset, length).
    pub fn cuts<'a>(&self, data: &'a [u8]) -> impl Iterator<Item = (usize, usize)> + 'a {
        let p = self.params;
        FastCDC::with_level_and_seed(data, p.min_size, p.avg_size, p.max_size, Normalization::Level1, self.seed)
            .map(|c| (c.offset, c.length))
    }

    /// Chunks of a stream too large to hold in memory.
    pub fn stream<R: Read>(&self, reader: R) -> impl Iterator<Item = std::io::Result<Vec<u8>>> {
        let p = self.params;
        StreamCDC::with_level_and_seed(reader, p.min_size, p.avg_size, p.max_size, Normalization::Level1, self.seed)
            .map(|r| {
                r.map(|c| c.data).map_err(|e| match e {
                    fastcdc::v2020::Error::IoError(io) => io,
                    other => std::io::Error::other(other.to_string()),
                })
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_and_memory_agree_and_shifts_resync() {
        let mut data = vec![0u8; 2_000_000];
        let mut x = 12345u64;
        for b in data.iter_mut() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
        let c = Chunker::new(ChunkerParams::default(), 99);
        let mem: Vec<Vec<u8>> = c.cuts(&data).map(|(o, l)| data[o..o + l].to_vec()).collect();
        let st: Vec<Vec<u8>> = c.stream(&data[..]).map(|r| r.unwrap()).collect();
        assert_eq!(mem, st);
        assert_eq!(mem.concat(), data);
        // insert a few bytes at the front: most chunks are unchanged
        let mut shifted = b"X-Header: 1\r\n".to_vec();
        shifted.extend_from_slice(&data);
        let again: std::collections::HashSet<Vec<u8>> =
            c.cuts(&shifted).map(|(o, l)| shifted[o..o + l].to_vec()).collect();
        let shared = mem.iter().filter(|m| again.contains(*m)).count();
        assert!(shared + 2 >= mem.len(), "only {shared} of {} chunks survived a 13-byte insert", mem.len());
        // another seed cuts elsewhere
        let other: Vec<(usize, usize)> = Chunker::new(ChunkerParams::default(), 7).cuts(&data).collect();
        assert_ne!(other, c.cuts(&data).collect::<Vec<_>>());
    }
}
