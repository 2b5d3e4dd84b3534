//! An exported item's bytes, as every source hands them over: the opaque full-fidelity stream,
//! its length and BLAKE3 hash, held in memory when small and in an unnamed temporary file when
//! large, so that no item makes memory grow with its size.
//!
//! `Decoder` takes an item's base64 text as it arrives (EWS: the content of a `Data` element;
//! Graph: the `data` string of an export result), decodes, hashes and stores it within `Limits`.
//! Sources share it; they know nothing of the archive, and the mailbox layer takes `ItemData`
//! from any of them.

use base64::Engine as _;
use std::io::{Read, Seek, Write};
use std::path::PathBuf;

/// Bounds on what one exported item may cost.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest item kept; larger ones are reported as too large (and skipped).
    pub max_item_bytes: u64,
    /// Items up to this size stay in memory; larger ones go to a temporary file.
    pub in_memory: usize,
    /// Where temporary files go (they have no name and vanish when closed).
    pub spill_dir: PathBuf,
}

/// Default cap on one item: far above Exchange's largest message sizes (150 MB in Exchange Online).
pub const DEFAULT_MAX_ITEM_BYTES: u64 = 2 * 1024 * 1024 * 1024;

impl Default for Limits {
    fn default() -> Self {
        Limits { max_item_bytes: DEFAULT_MAX_ITEM_BYTES, in_memory: 8 * 1024 * 1024, spill_dir: std::env::temp_dir() }
    }
}

/// An exported item's bytes, with their length and BLAKE3 hash.
pub struct ItemData {
    pub len: u64,
    pub blake3: [u8; 32],
    body: Body,
}

enum Body {
    Memory(Vec<u8>),
    File(std::fs::File),
}

impl std::fmt::Debug for ItemData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ItemData({} bytes, {})", self.len, &blake3::Hash::from(self.blake3).to_hex()[..16])
    }
}

impl PartialEq for ItemData {
    fn eq(&self, o: &Self) -> bool {
        self.len == o.len && self.blake3 == o.blake3
    }
}

impl ItemData {
    pub fn from_vec(v: Vec<u8>) -> ItemData {
        ItemData { len: v.len() as u64, blake3: *blake3::hash(&v).as_bytes(), body: Body::Memory(v) }
    }

    /// The bytes, if the item is held in memory.
    pub fn in_memory(&self) -> Option<&[u8]> {
        match &self.body {
            Body::Memory(v) => Some(v),
            Body::File(_) => None,
        }
    }

    /// The bytes as a stream (from memory or from the temporary file).
    pub fn into_reader(self) -> Box<dyn Read + Send> {
        match self.body {
            Body::Memory(v) => Box::new(std::io::Cursor::new(v)),
            Body::File(f) => Box::new(std::io::BufReader::with_capacity(256 * 1024, f)),
        }
    }

    /// All bytes in memory (small items, tests).
    pub fn into_vec(self) -> std::io::Result<Vec<u8>> {
        match self.body {
            Body::Memory(v) => Ok(v),
            Body::File(mut f) => {
                let mut v = Vec::new();
                f.read_to_end(&mut v)?;
                Ok(v)
            }
        }
    }

    /// The file name an item gets in a snapshot (see `crate::item_file_name`).
    pub fn file_name(&self) -> String {
        format!("{}.fts", &blake3::Hash::from(self.blake3).to_hex()[..32])
    }
}

/// Decodes one item's base64 text as it arrives (whitespace is ignored).
pub struct Decoder {
    pending: Vec<u8>,
    hasher: blake3::Hasher,
    len: u64,
    body: Option<Body>,
    too_large: bool,
    bad: Option<String>,
}

impl Decoder {
    pub fn new() -> Decoder {
        Decoder {
            pending: Vec::with_capacity(64 * 1024),
            hasher: blake3::Hasher::new(),
            len: 0,
            body: Some(Body::Memory(Vec::new())),
            too_large: false,
            bad: None,
        }
    }

    /// Takes the next piece of the base64 text.
    pub fn push(&mut self, text: &[u8], limits: &Limits) {
        for &b in text {
            match b {
                b' ' | b'\t' | b'\r' | b'\n' => {}
                _ => self.pending.push(b),
            }
        }
        // Decode whole groups of four, keeping the rest (padding only ever ends the text).
        if self.pending.len() >= 64 * 1024 {
            let whole = self.pending.len() / 4 * 4;
            let rest = self.pending.split_off(whole);
            let group = std::mem::replace(&mut self.pending, rest);
            self.decode(&group, limits);
        }
    }

    fn decode(&mut self, b64: &[u8], limits: &Limits) {
        if self.bad.is_some() || b64.is_empty() {
            return;
        }
        let bytes = match base64::engine::general_purpose::STANDARD.decode(b64) {
            Ok(b) => b,
            Err(e) => {
                self.bad = Some(format!("Data is not base64: {e}"));
                return;
            }
        };
        self.len += bytes.len() as u64;
        self.hasher.update(&bytes);
        if self.len > limits.max_item_bytes {
            self.too_large = true;
            self.body = None;
            return;
        }
        let spill = match &mut self.body {
            Some(Body::Memory(v)) if v.len() + bytes.len() > limits.in_memory => Some(std::mem::take(v)),
            _ => None,
        };
        if let Some(held) = spill {
            match tempfile::tempfile_in(&limits.spill_dir).and_then(|mut f| f.write_all(&held).map(|_| f)) {
                Ok(f) => self.body = Some(Body::File(f)),
                Err(e) => {
                    self.bad = Some(format!("cannot spill a large item to {}: {e}", limits.spill_dir.display()));
                    return;
                }
            }
        }
        match &mut self.body {
            Some(Body::Memory(v)) => v.extend_from_slice(&bytes),
            Some(Body::File(f)) => {
                if let Err(e) = f.write_all(&bytes) {
                    self.bad = Some(format!("writing a large item to {}: {e}", limits.spill_dir.display()));
                }
            }
            None => {}
        }
    }

    /// The item, once its text has ended.
    pub fn finish(mut self, limits: &Limits) -> Result<ItemData, ItemProblem> {
        let rest = std::mem::take(&mut self.pending);
        self.decode(&rest, limits);
        if let Some(b) = self.bad {
            return Err(ItemProblem::Broken(b));
        }
        if self.too_large {
            return Err(ItemProblem::TooLarge(self.len));
        }
        let mut body = self.body.take().unwrap_or(Body::Memory(Vec::new()));
        if let Body::File(f) = &mut body {
            f.flush()
                .and_then(|_| f.rewind())
                .map_err(|e| ItemProblem::Broken(format!("rereading a large item: {e}")))?;
        }
        Ok(ItemData { len: self.len, blake3: *self.hasher.finalize().as_bytes(), body })
    }
}

/// Why an item's text did not give an item.
#[derive(Debug)]
pub enum ItemProblem {
    /// Larger than `Limits::max_item_bytes` (its decoded length so far).
    TooLarge(u64),
    /// Not base64, or the temporary file failed.
    Broken(String),
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder::new()
    }
}
