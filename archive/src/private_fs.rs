//! Files and directories only their owner can read: key slots, the config, every repository file
//! and the local cache (its resume files hold whole-item hashes, its spool holds mail).
//!
//! On Unix, directories are created 0700 and files 0600; elsewhere the platform's defaults apply
//! (on Windows a user's profile directories are already private). These are the only places that
//! choose permissions, so a port changes them here.

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
