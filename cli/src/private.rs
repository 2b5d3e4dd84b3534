//! The CLI's own directories in the local cache (the spool for large items) are private to their
//! owner, like the repository's: see `exarch_archive::private_fs`.

use anyhow::{Context as _, Result};
use std::path::{Path, PathBuf};

/// Creates `dir` (private) if needed and returns it.
pub fn dir(dir: &Path) -> Result<PathBuf> {
    exarch_archive::private_fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir.to_path_buf())
}
