//! Small reads of packs on an object store, coalesced: a read of a few bytes (one blob) fetches the
//! aligned window of the pack around it ([`WINDOW`]) in one ranged GET and keeps the last few
//! windows, so reading a snapshot's items — whose blobs lie mostly in pack order — costs one request
//! per window instead of one per blob (a round trip each). Threads asking for the same window wait
//! for one fetch. Memory stays bounded at [`KEPT`] windows.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock};

/// Bytes fetched at once.
pub(super) const WINDOW: u64 = 4 * 1024 * 1024;
/// Windows kept (with two to four readers, each keeps its next blobs near).
const KEPT: usize = 8;

type Fetched = Arc<OnceLock<Result<Arc<Vec<u8>>, String>>>;

#[derive(Default)]
pub(super) struct WindowCache {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    windows: HashMap<(String, u64), Fetched>,
    order: VecDeque<(String, u64)>,
    /// Pack sizes seen, so a window never asks past the end.
    sizes: HashMap<String, u64>,
}

impl WindowCache {
    /// Whether a read of `len` bytes is worth a window.
    pub(super) fn wants(len: usize) -> bool {
        (len as u64) <= WINDOW / 8
    }

    pub(super) fn size_of(&self, name: &str) -> Option<u64> {
        self.state.lock().expect("window cache").sizes.get(name).copied()
    }

    pub(super) fn note_size(&self, name: &str, size: u64) {
        let mut s = self.state.lock().expect("window cache");
        if s.sizes.len() > 100_000 {
            s.sizes.clear();
        }
        s.sizes.insert(name.to_string(), size);
    }

    /// Copies `buf.len()` bytes at `offset` of pack `name` (of `size` bytes) into `buf`, fetching
    /// the window with `fetch(start, len)` unless it is kept. Returns false when the read crosses
    /// a window's end (the caller reads it directly).
    pub(super) fn read(
        &self,
        name: &str,
        size: u64,
        offset: u64,
        buf: &mut [u8],
        fetch: impl FnOnce(u64, usize) -> crate::error::Result<Vec<u8>>,
    ) -> crate::error::Result<bool> {
        let start = offset / WINDOW * WINDOW;
        let end = (start + WINDOW).min(size);
        if offset + buf.len() as u64 > end {
            return Ok(false);
        }
        let cell = {
            let mut s = self.state.lock().expect("window cache");
            let key = (name.to_string(), start);
            match s.windows.get(&key) {
                Some(c) => c.clone(),
                None => {
                    let c: Fetched = Arc::default();
                    s.windows.insert(key.clone(), c.clone());
                    s.order.push_back(key);
                    while s.order.len() > KEPT {
                        if let Some(old) = s.order.pop_front() {
                            s.windows.remove(&old);
                        }
                    }
                    c
                }
            }
        };
        let got = cell.get_or_init(|| fetch(start, (end - start) as usize).map(Arc::new).map_err(|e| e.to_string()));
        match got {
            Ok(w) => {
                let at = (offset - start) as usize;
                buf.copy_from_slice(&w[at..at + buf.len()]);
                Ok(true)
            }
            Err(_) => {
                // Not kept: the caller's direct read reports the failure in its own terms.
                self.state.lock().expect("window cache").windows.remove(&(name.to_string(), start));
                Ok(false)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn reads_within_a_window_fetch_it_once() {
        let data: Vec<u8> = (0..(WINDOW as usize * 2 + 100)).map(|i| (i % 251) as u8).collect();
        let c = WindowCache::default();
        let fetches = AtomicUsize::new(0);
        let fetch = |s: u64, l: usize| {
            fetches.fetch_add(1, Ordering::Relaxed);
            Ok(data[s as usize..s as usize + l].to_vec())
        };
        for off in [0u64, 10, 5000, 100_000, WINDOW - 10] {
            let mut b = vec![0u8; 10];
            assert!(c.read("p", data.len() as u64, off, &mut b, fetch).unwrap());
            assert_eq!(b, &data[off as usize..off as usize + 10]);
        }
        assert_eq!(fetches.load(Ordering::Relaxed), 1);
        // Crossing a window's end: left to the caller.
        let mut b = vec![0u8; 20];
        assert!(!c.read("p", data.len() as u64, WINDOW - 10, &mut b, fetch).unwrap());
        // The last, short window ends at the pack's end.
        let mut b = vec![0u8; 50];
        assert!(c.read("p", data.len() as u64, 2 * WINDOW + 50, &mut b, fetch).unwrap());
        assert_eq!(b, &data[2 * WINDOW as usize + 50..]);
        assert_eq!(fetches.load(Ordering::Relaxed), 2);
    }
}
