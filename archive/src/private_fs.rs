//! Files and directories only their owner can read: key slots, the config, every repository file
//! and the local cache (its resume files hold whole-item hashes, its spool holds mail).
//!
//! On Unix, directories are created 0700 and files 0600; elsewhere the platform's defaults apply
//! (on Windows a user's profile directories are already private). These are the only places that
//! choose permissions, so a port changes them here. `write_atomic` is the one way files are
//! written whole: repository files, the index cache's neighbours, resume files, the replay
//! journal; `temp_path` and `place` do the same for files written in pieces (packs).

use std::fs::{File, OpenOptions};
use std::io;
use std::path::Path;

/// Creates `dir` and its missing parents, private to the owner (parents that exist are untouched).
pub fn create_dir_all(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    builder().create(dir)
}

#[cfg(unix)]
fn builder() -> std::fs::DirBuilder {
    use std::os::unix::fs::DirBuilderExt;
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true).mode(0o700);
    b
}

#[cfg(not(unix))]
fn builder() -> std::fs::DirBuilder {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    b
}

/// Options for a new private file opened for writing (and reading).
pub fn options() -> OpenOptions {
    let mut o = OpenOptions::new();
    o.read(true).write(true);
    set_mode(&mut o);
    o
}

#[cfg(unix)]
fn set_mode(o: &mut OpenOptions) {
    use std::os::unix::fs::OpenOptionsExt;
    o.mode(0o600);
}

#[cfg(not(unix))]
fn set_mode(_: &mut OpenOptions) {}

/// Creates (or truncates) a private file.
pub fn create(path: &Path) -> io::Result<File> {
    options().create(true).truncate(true).open(path)
}

/// Creates a private file that must not exist yet.
pub fn create_new(path: &Path) -> io::Result<File> {
    options().create_new(true).open(path)
}

/// Writes `data` to `path` so that a reader sees the old file or the new one, never a part, and the
/// new one survives a crash: a private temporary file `.<name>.<pid>-<random>.tmp` beside it,
/// written and synced, renamed over `path`, then the directory synced. A missing directory is
/// created (private). On error the temporary file is removed.
pub fn write_atomic(path: &Path, data: &[u8]) -> io::Result<()> {
    use std::io::Write;
    let dir = parent_of(path)?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = temp_path(dir, name)?;
    let result = (|| {
        ensure_dir(dir)?;
        let mut f = create_new(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        drop(f);
        place(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// A fresh temporary name `.<name>.<pid>-<random>.tmp` in `dir` (no listing shows a name that
/// starts with `.`).
pub fn temp_path(dir: &Path, name: &str) -> io::Result<std::path::PathBuf> {
    let mut rnd = [0u8; 8];
    getrandom::getrandom(&mut rnd).map_err(io::Error::other)?;
    Ok(dir.join(format!(".{name}.{}-{}.tmp", std::process::id(), hex::encode(rnd))))
}

/// Moves a written and synced temporary file to `path` durably: `path`'s directory is made if
/// missing (private), the rename done, and the directories involved synced.
pub fn place(tmp: &Path, path: &Path) -> io::Result<()> {
    let dir = parent_of(path)?;
    ensure_dir(dir)?;
    std::fs::rename(tmp, path)?;
    sync_dir(dir)?;
    match tmp.parent().map(or_here) {
        Some(from) if from != dir => sync_dir(from),
        _ => Ok(()),
    }
}

fn parent_of(path: &Path) -> io::Result<&Path> {
    path.parent().map(or_here).ok_or_else(|| io::Error::other("a file path without a directory"))
}

/// Makes `dir` (private) if it is missing, and makes its entry durable.
fn ensure_dir(dir: &Path) -> io::Result<()> {
    if !dir.exists() {
        create_dir_all(dir)?;
        if let Some(up) = dir.parent() {
            sync_dir(or_here(up))?;
        }
    }
    Ok(())
}

/// A relative path's parent can be empty (`state.json`, or `st` for `st/state.json`): that is the
/// current directory.
fn or_here(dir: &Path) -> &Path {
    if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    }
}

/// Makes a rename or unlink in `dir` durable.
#[cfg(unix)]
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    OpenOptions::new().read(true).open(dir)?.sync_all()
}

/// Windows has no directory handles to fsync; NTFS journals renames itself.
#[cfg(not(unix))]
pub fn sync_dir(_dir: &Path) -> io::Result<()> {
    Ok(())
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn files_and_directories_are_private() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("a/b");
        create_dir_all(&d).unwrap();
        assert_eq!(std::fs::metadata(&d).unwrap().permissions().mode() & 0o777, 0o700);
        let f = d.join("f");
        create(&f).unwrap();
        assert_eq!(std::fs::metadata(&f).unwrap().permissions().mode() & 0o777, 0o600);
    }
}

#[cfg(test)]
mod relative {
    use super::*;

    #[test]
    fn an_empty_parent_is_the_current_directory() {
        assert_eq!(or_here(Path::new("")), Path::new("."));
        assert_eq!(or_here(Path::new("st")), Path::new("st"));
        assert_eq!(or_here(Path::new("state.json").parent().unwrap()), Path::new("."));
    }
}
