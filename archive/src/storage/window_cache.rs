//! Small reads of packs on an object store, coalesced: a read of a few bytes (one blob) fetches the
//! aligned window of the pack around it ([`WINDOW`]) in one ranged GET, and keeps the window in an
//! unnamed temporary file (gone when the process ends), so reading a snapshot's items costs one
//! request per window of repository data, however the items' chunks are spread over packs and
//! however often shared chunks recur — instead of one request (a round trip) per blob. Memory stays
//! flat (one window per fetch in flight); the file grows with what was read, up to [`KEEP_BYTES`],
//! after which windows are fetched and used but not kept. Threads asking for the same window wait
//! for one fetch.

use crate::error::Result;
use std::collections::HashMap;
use std::fs::File;
use std::sync::{Arc, Mutex, OnceLock};

/// Bytes fetched at once.
pub(super) const WINDOW: u64 = 4 * 1024 * 1024;
/// Most bytes kept in the temporary file.
const KEEP_BYTES: u64 = 8 * 1024 * 1024 * 1024;

/// A window: its place in the file, given when it is first asked for, and once fetched its
/// (offset, length) there, or why it could not be fetched.
struct Window {
    slot: u64,
    got: OnceLock<std::result::Result<(u64, u64), String>>,
}

type Kept = Arc<Window>;

#[derive(Default)]
pub(super) struct WindowCache {
    state: Mutex<State>,
    file: OnceLock<Option<File>>,
}

#[derive(Default)]
struct State {
    windows: HashMap<(String, u64), Kept>,
    /// Bytes of the file handed out so far.
    used: u64,
    /// Pack sizes seen, so a window never asks past the end.
    sizes: HashMap<String, u64>,
}

impl WindowCache {
    /// Whether a read of `len` bytes is worth a window.
    pub(super) fn wants(len: usize) -> bool {
        (len as u64) <= WINDOW / 2
    }

    pub(super) fn size_of(&self, name: &str) -> Option<u64> {
        self.state.lock().expect("window cache").sizes.get(name).copied()
    }

    pub(super) fn note_size(&self, name: &str, size: u64) {
        self.state.lock().expect("window cache").sizes.insert(name.to_string(), size);
    }

    fn file(&self) -> Option<&File> {
        self.file.get_or_init(|| tempfile::tempfile().ok()).as_ref()
    }

    /// Copies `buf.len()` bytes at `offset` of pack `name` (of `size` bytes) into `buf`, fetching
    /// the window with `fetch(start, len)` unless it is kept. Returns false when the read crosses
    /// a window's end, or the window could not be had (the caller then reads directly).
    pub(super) fn read(
        &self,
        name: &str,
        size: u64,
        offset: u64,
        buf: &mut [u8],
        fetch: impl FnOnce(u64, usize) -> Result<Vec<u8>>,
    ) -> Result<bool> {
        let start = offset / WINDOW * WINDOW;
        let end = (start + WINDOW).min(size);
        if offset + buf.len() as u64 > end {
            return Ok(false);
        }
        let Some(file) = self.file() else { return Ok(false) };
        let key = (name.to_string(), start);
        let window = {
            let mut s = self.state.lock().expect("window cache");
            match s.windows.get(&key) {
                Some(w) => w.clone(),
                None if s.used + (end - start) > KEEP_BYTES => {
                    // Full: fetched for this read only.
                    drop(s);
                    let w = fetch(start, (end - start) as usize)?;
                    let at = (offset - start) as usize;
                    buf.copy_from_slice(&w[at..at + buf.len()]);
                    return Ok(true);
                }
                None => {
                    let w: Kept = Arc::new(Window { slot: s.used, got: OnceLock::new() });
                    s.windows.insert(key.clone(), w.clone());
                    s.used += end - start;
                    w
                }
            }
        };
        // Whichever thread comes first fetches the window into its slot; the others wait for it.
        let got = window.got.get_or_init(|| {
            let w = fetch(start, (end - start) as usize).map_err(|e| e.to_string())?;
            write_at(file, &w, window.slot).map_err(|e| e.to_string())?;
            Ok((window.slot, w.len() as u64))
        });
        match got {
            Ok((at, _)) => {
                read_exact_at(file, buf, at + (offset - start))
                    .map_err(|e| crate::error::Error::Other(format!("reading the pack window cache: {e}")))?;
                Ok(true)
            }
            Err(_) => {
                // Not kept: the caller's direct read reports the failure in its own terms.
                self.state.lock().expect("window cache").windows.remove(&key);
                Ok(false)
            }
        }
    }
}

#[cfg(unix)]
fn write_at(f: &File, buf: &[u8], off: u64) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::write_all_at(f, buf, off)
}

#[cfg(unix)]
fn read_exact_at(f: &File, buf: &mut [u8], off: u64) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(f, buf, off)
}

#[cfg(windows)]
fn write_at(f: &File, mut buf: &[u8], mut off: u64) -> std::io::Result<()> {
    while !buf.is_empty() {
        let n = std::os::windows::fs::FileExt::seek_write(f, buf, off)?;
        buf = &buf[n..];
        off += n as u64;
    }
    Ok(())
}

#[cfg(windows)]
fn read_exact_at(f: &File, mut buf: &mut [u8], mut off: u64) -> std::io::Result<()> {
    while !buf.is_empty() {
        let n = std::os::windows::fs::FileExt::seek_read(f, buf, off)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf = &mut buf[n..];
        off += n as u64;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn each_window_is_fetched_once() {
        let data: Vec<u8> = (0..(WINDOW as usize * 2 + 100)).map(|i| (i % 251) as u8).collect();
        let c = WindowCache::default();
        let fetches = AtomicUsize::new(0);
        let fetch = |s: u64, l: usize| {
            fetches.fetch_add(1, Ordering::Relaxed);
            Ok(data[s as usize..s as usize + l].to_vec())
        };
        for off in [0u64, 10, 5000, 100_000, WINDOW - 10, 2 * WINDOW + 50, 7, WINDOW + 3] {
            let mut b = vec![0u8; 10];
            assert!(c.read("p", data.len() as u64, off, &mut b, fetch).unwrap());
            assert_eq!(b, &data[off as usize..off as usize + 10]);
        }
        assert_eq!(fetches.load(Ordering::Relaxed), 3, "three windows, each fetched once");
        // Crossing a window's end: left to the caller.
        let mut b = vec![0u8; 20];
        assert!(!c.read("p", data.len() as u64, WINDOW - 10, &mut b, fetch).unwrap());
        // A failed fetch is not kept: the next read tries again.
        let mut b = vec![0u8; 10];
        let fail = |_: u64, _: usize| Err(crate::error::Error::Other("down".into()));
        assert!(!c.read("q", 100, 0, &mut b, fail).unwrap());
        assert!(c.read("q", 100, 0, &mut b, |_, l| Ok(vec![9u8; l])).unwrap());
        assert_eq!(b, [9u8; 10]);
    }
}
