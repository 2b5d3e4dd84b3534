//! The CLI's own files in the local cache (resume files, the replay journal, the spool for large
//! items) are private to their owner, like the repository's: see `exarch_archive::private_fs`.

use anyhow::{Context as _, Result};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Creates `dir` (private) if needed and returns it.
pub fn dir(dir: &Path) -> Result<PathBuf> {
    exarch_archive::private_fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir.to_path_buf())
}

/// Writes `bytes` to `path` through a private temporary file, synced, then renamed into place.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let parent = path.parent().context("a file path has a parent")?;
    dir(parent)?;
    let tmp = path.with_extension("tmp");
    let mut f = exarch_archive::private_fs::create(&tmp).with_context(|| format!("writing {}", tmp.display()))?;
    f.write_all(bytes).with_context(|| format!("writing {}", tmp.display()))?;
    f.sync_all().with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("replacing {}", path.display()))?;
    Ok(())
}
