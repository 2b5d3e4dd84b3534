//! Compression flags and the sealed envelope shared by config, index and snapshot files.
//!
//! A sealed file is `magic (8) || nonce (24) || ciphertext || tag (16)`, the associated data being
//! the magic, and the plaintext `compression (1) || body`. Blobs inside packs use the same
//! compression byte values but keep the flag in the pack header (see `pack.rs`).

use crate::crypto::{Entropy, Keys};
use crate::error::{Error, Result};
use std::borrow::Cow;

pub const COMPRESSION_NONE: u8 = 0;
pub const COMPRESSION_ZSTD: u8 = 1;

// zstd contexts are expensive to create (hundreds of KiB, zeroed); each worker thread keeps one.
thread_local! {
    static COMPRESSOR: std::cell::RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> = const { std::cell::RefCell::new(None) };
    static DECOMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> = const { std::cell::RefCell::new(None) };
}

/// Upper bound on anything we decompress, so a forged length cannot exhaust memory.
pub const MAX_DECOMPRESSED: usize = 1 << 31;

/// Compresses `data` with zstd unless that saves less than 1/32 of its size (already-compressed
/// attachments, encrypted mail): then it is stored as is.
pub fn compress(level: i32, data: &[u8]) -> (u8, Cow<'_, [u8]>) {
    if data.len() < 64 {
        return (COMPRESSION_NONE, Cow::Borrowed(data));
    }
    let compressed = COMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.as_ref().is_none_or(|(l, _)| *l != level) {
            *slot = Some((level, zstd::bulk::Compressor::new(level).ok()?));
        }
        slot.as_mut().and_then(|(_, c)| c.compress(data).ok())
    });
    match compressed {
        Some(c) if c.len() < data.len() - data.len() / 32 => (COMPRESSION_ZSTD, Cow::Owned(c)),
        _ => (COMPRESSION_NONE, Cow::Borrowed(data)),
    }
}

/// Reverses `compress`; `expected_len`, when known, is checked exactly.
pub fn decompress(flag: u8, data: &[u8], expected_len: Option<usize>) -> std::result::Result<Vec<u8>, String> {
    let out = match flag {
        COMPRESSION_NONE => data.to_vec(),
        COMPRESSION_ZSTD => {
            let cap = expected_len.unwrap_or(MAX_DECOMPRESSED).min(MAX_DECOMPRESSED);
            if let Some(n) = expected_len {
                DECOMPRESSOR.with(|cell| {
                    let mut slot = cell.borrow_mut();
                    if slot.is_none() {
                        *slot = Some(zstd::bulk::Decompressor::new().map_err(|e| format!("zstd: {e}"))?);
                    }
                    slot.as_mut().expect("set above").decompress(data, n).map_err(|e| format!("zstd: {e}"))
                })?
            } else {
                let mut out = Vec::new();
                let mut dec = zstd::stream::read::Decoder::new(data).map_err(|e| format!("zstd: {e}"))?;
                let mut limited = std::io::Read::take(&mut dec, cap as u64 + 1);
                std::io::Read::read_to_end(&mut limited, &mut out).map_err(|e| format!("zstd: {e}"))?;
                if out.len() > cap {
                    return Err("decompressed size exceeds limit".into());
                }
                out
            }
        }
        f => return Err(format!("unknown compression flag {f}")),
    };
    if let Some(n) = expected_len {
        if out.len() != n {
            return Err(format!("decompressed to {} bytes, expected {n}", out.len()));
        }
    }
    Ok(out)
}

/// Seals `body` as a whole file with the given magic.
pub fn seal_file(keys: &Keys, entropy: &Entropy, magic: &[u8; 8], level: i32, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + body.len() / 2 + 64);
    out.extend_from_slice(magic);
    out.extend_from_slice(&seal_section(keys, entropy, magic, level, body));
    out
}

/// Seals one section (compression byte + body) with `aad`.
pub fn seal_section(keys: &Keys, entropy: &Entropy, aad: &[u8], level: i32, body: &[u8]) -> Vec<u8> {
    let (flag, data) = compress(level, body);
    let mut plain = Vec::with_capacity(1 + data.len());
    plain.push(flag);
    plain.extend_from_slice(&data);
    keys.seal(entropy, aad, &plain)
}

/// Opens a section sealed by `seal_section`; `what` names it in errors.
pub fn open_section(keys: &Keys, aad: &[u8], sealed: &[u8], what: &str) -> Result<Vec<u8>> {
    let plain = keys.open(aad, sealed).ok_or_else(|| {
        Error::damaged(what, "authentication failed: altered, truncated or written under another key")
    })?;
    let (flag, data) = plain.split_first().ok_or_else(|| Error::damaged(what, "empty plaintext"))?;
    decompress(*flag, data, None).map_err(|e| Error::damaged(what, e))
}

/// As `open_section`, decompressing straight into `out` (e.g. an aligned buffer for rkyv), so a
/// large manifest is not held twice.
pub fn open_section_into(
    keys: &Keys,
    aad: &[u8],
    sealed: &[u8],
    what: &str,
    out: &mut impl std::io::Write,
) -> Result<()> {
    let plain = keys.open(aad, sealed).ok_or_else(|| {
        Error::damaged(what, "authentication failed: altered, truncated or written under another key")
    })?;
    let (flag, data) = plain.split_first().ok_or_else(|| Error::damaged(what, "empty plaintext"))?;
    let io = |e: std::io::Error| Error::damaged(what, format!("zstd: {e}"));
    match *flag {
        COMPRESSION_NONE => out.write_all(data).map_err(io),
        COMPRESSION_ZSTD => {
            let dec = zstd::stream::read::Decoder::new(data).map_err(io)?;
            let copied = std::io::copy(&mut std::io::Read::take(dec, MAX_DECOMPRESSED as u64 + 1), out).map_err(io)?;
            if copied > MAX_DECOMPRESSED as u64 {
                return Err(Error::damaged(what, "decompressed size exceeds limit"));
            }
            Ok(())
        }
        f => Err(Error::damaged(what, format!("unknown compression flag {f}"))),
    }
}

/// Opens a whole file sealed by `seal_file`.
pub fn open_file(keys: &Keys, magic: &[u8; 8], raw: &[u8], what: &str) -> Result<Vec<u8>> {
    if raw.len() < 8 || &raw[..8] != magic {
        return Err(Error::damaged(what, format!("does not start with {}", String::from_utf8_lossy(magic))));
    }
    open_section(keys, magic, &raw[8..], what)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incompressible_data_is_stored_raw() {
        let mut random = vec![0u8; 4096];
        getrandom::getrandom(&mut random).unwrap();
        assert_eq!(compress(3, &random).0, COMPRESSION_NONE);
        let text = b"Subject: hello\r\n".repeat(200);
        let (flag, c) = compress(3, &text);
        assert_eq!(flag, COMPRESSION_ZSTD);
        assert_eq!(decompress(flag, &c, Some(text.len())).unwrap(), text);
        assert_eq!(decompress(flag, &c, None).unwrap(), text);
        assert!(decompress(flag, &c, Some(text.len() - 1)).is_err());
        assert!(decompress(9, &c, None).is_err());
    }
}
