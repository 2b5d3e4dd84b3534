//! The repository's `config` file: format version and the parameters every writer must share.
//!
//! Stored as `EXRCONF1 || sealed(JSON)`. Chunking and packing parameters live here (not in code
//! constants) so that every writer of one repository cuts the same chunk boundaries, which is what
//! makes deduplication work across hosts and versions.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

pub const CONFIG_MAGIC: &[u8; 8] = b"EXRCONF1";
pub const FORMAT_VERSION: u32 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkerParams {
    pub min_size: u32,
    pub avg_size: u32,
    pub max_size: u32,
}

impl Default for ChunkerParams {
    /// Chosen by measurement on mailbox-like data; see format-spec/SPEC.md, "Chunking".
    fn default() -> Self {
        ChunkerParams { min_size: 8 * 1024, avg_size: 32 * 1024, max_size: 128 * 1024 }
    }
}

impl ChunkerParams {
    pub fn check(&self) -> Result<()> {
        use fastcdc::v2020::{AVERAGE_MAX, AVERAGE_MIN, MAXIMUM_MAX, MAXIMUM_MIN, MINIMUM_MAX, MINIMUM_MIN};
        let ok = (MINIMUM_MIN..=MINIMUM_MAX).contains(&self.min_size)
            && (AVERAGE_MIN..=AVERAGE_MAX).contains(&self.avg_size)
            && (MAXIMUM_MIN..=MAXIMUM_MAX).contains(&self.max_size)
            && self.min_size <= self.avg_size
            && self.avg_size <= self.max_size;
        if ok {
            Ok(())
        } else {
            Err(Error::Usage(format!("invalid chunker parameters {self:?}")))
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Config {
    pub version: u32,
    /// Random 128-bit id (hex); names the local cache directory.
    pub id: String,
    pub chunker: ChunkerParams,
    /// A pack is closed once it holds at least this many bytes.
    pub pack_size: u32,
    /// zstd level for blobs, indexes and manifests. Default 1: on the mailbox corpus it costs 3% in
    /// repository size against level 3 and saves a fifth of the backup's CPU time.
    pub zstd_level: i32,
}

impl Config {
    pub fn new(id: String) -> Config {
        Config {
            version: FORMAT_VERSION,
            id,
            chunker: ChunkerParams::default(),
            pack_size: 16 * 1024 * 1024,
            zstd_level: 1,
        }
    }

    pub fn check(&self) -> Result<()> {
        if self.version != FORMAT_VERSION {
            return Err(Error::UnsupportedVersion {
                what: "repository format".into(),
                version: self.version,
                supported: FORMAT_VERSION,
            });
        }
        self.chunker.check()?;
        if !(64 * 1024..=1024 * 1024 * 1024).contains(&self.pack_size) {
            return Err(Error::Usage(format!("pack size {} out of range (64 KiB .. 1 GiB)", self.pack_size)));
        }
        if !(1..=19).contains(&self.zstd_level) {
            return Err(Error::Usage(format!("zstd level {} out of range (1..19)", self.zstd_level)));
        }
        Ok(())
    }
}
