//! Files that appear under their name only once whole, without a partial file and a rename.
//!
//! Extracting 100,000 small items spent 40% of its time in `rename` (`perf`: each rename looks up
//! and edits the directory twice). On Linux a file can be made without a name (`O_TMPFILE`),
//! written, and then given its name with `linkat`, which fails if the name is taken: nothing but
//! the whole file ever has the name, as with a rename, at the cost of one directory entry added.
//! Where that is not possible (another system, a file system without `O_TMPFILE`, no `/proc`)
//! [`write_new`] says so and the caller writes a partial file and renames it.

use std::io;
use std::path::Path;

/// What [`write_new`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Linked {
    /// The file is at `path`, whole.
    Written,
    /// Not possible here; nothing was written.
    Unsupported,
}

/// Writes `data` as a new file at `path` (in the existing directory `dir`) that is never seen
/// with part of its content; fails with `AlreadyExists` if `path` exists.
#[cfg(target_os = "linux")]
pub fn write_new(dir: &Path, path: &Path, data: &[u8]) -> io::Result<Linked> {
    use std::io::Write;
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::OpenOptionsExt;
    use std::os::unix::io::AsRawFd;
    let mut f = match std::fs::OpenOptions::new().write(true).custom_flags(libc::O_TMPFILE).open(dir) {
        Ok(f) => f,
        // The kernel or the file system has no unnamed files.
        Err(e) if matches!(e.raw_os_error(), Some(libc::EOPNOTSUPP | libc::EISDIR | libc::EINVAL)) => {
            return Ok(Linked::Unsupported)
        }
        Err(e) => return Err(e),
    };
    f.write_all(data)?;
    let from = std::ffi::CString::new(format!("/proc/self/fd/{}", f.as_raw_fd())).expect("no NUL");
    let to = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a path with a NUL byte"))?;
    // SAFETY: both are valid NUL-terminated strings that outlive the call.
    let r =
        unsafe { libc::linkat(libc::AT_FDCWD, from.as_ptr(), libc::AT_FDCWD, to.as_ptr(), libc::AT_SYMLINK_FOLLOW) };
    if r == 0 {
        return Ok(Linked::Written);
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        // No /proc to name the file by.
        Some(libc::ENOENT) if !dir.exists() => Err(e),
        Some(libc::ENOENT | libc::EOPNOTSUPP | libc::EPERM) => Ok(Linked::Unsupported),
        _ => Err(e),
    }
}

/// Elsewhere the caller writes a partial file and renames it.
#[cfg(not(target_os = "linux"))]
pub fn write_new(_dir: &Path, _path: &Path, _data: &[u8]) -> io::Result<Linked> {
    Ok(Linked::Unsupported)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_file_appears_whole_and_never_over_another() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("item.eml");
        match write_new(t.path(), &p, b"whole content").unwrap() {
            Linked::Written => {
                assert_eq!(std::fs::read(&p).unwrap(), b"whole content");
                let e = write_new(t.path(), &p, b"other").unwrap_err();
                assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
                assert_eq!(std::fs::read(&p).unwrap(), b"whole content", "an existing file is left alone");
                // Nothing else in the directory: no partial file.
                assert_eq!(std::fs::read_dir(t.path()).unwrap().count(), 1);
            }
            Linked::Unsupported => assert!(!p.exists()),
        }
        let missing = t.path().join("no/such/dir");
        assert!(write_new(&missing, &missing.join("x"), b"x").is_err());
    }
}
