//! Where repository files live. The engine only ever puts, gets, lists and deletes whole files by
//! kind and name, so a local directory, a NAS mount or (later) an object store can hold a repository.
//!
//! `LocalStorage` makes every write durable and atomic: write a temporary file, fsync it, rename it
//! into place, fsync the directory. A killed writer leaves at worst a `*.tmp` file that no reader looks at.

use crate::error::{Error, Result};
use std::fs::{self, File};
use std::path::{Path, PathBuf};

/// The kinds of files a repository holds; each lives in its own directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileKind {
    Config,
    Key,
    Pack,
    Index,
    Snapshot,
    Lock,
    /// Packs marked for deletion by a prune, deleted by a later one (two-phase deletion).
    Mark,
}

impl FileKind {
    pub const ALL: [FileKind; 7] = [
        FileKind::Config,
        FileKind::Key,
        FileKind::Pack,
        FileKind::Index,
        FileKind::Snapshot,
        FileKind::Lock,
        FileKind::Mark,
    ];

    pub fn dir(self) -> &'static str {
        match self {
            FileKind::Config => "",
            FileKind::Key => "keys",
            FileKind::Pack => "data",
            FileKind::Index => "index",
            FileKind::Snapshot => "snapshots",
            FileKind::Lock => "locks",
            FileKind::Mark => "marks",
        }
    }
}

/// Storage for repository files. Names are plain file names (hex ids, or `config`).
pub trait Storage: Send + Sync {
    /// Stores a whole file atomically and durably; replaces an existing file of that name.
    fn put(&self, kind: FileKind, name: &str, data: &[u8]) -> Result<()>;
    /// Stores a file only if none of that name exists; returns false if one did.
    fn put_new(&self, kind: FileKind, name: &str, data: &[u8]) -> Result<bool>;
    fn get(&self, kind: FileKind, name: &str) -> Result<Vec<u8>>;
    /// Reads `len` bytes at `offset`; a short file is reported as damage, not padded.
    fn get_range(&self, kind: FileKind, name: &str, offset: u64, len: usize) -> Result<Vec<u8>>;
    fn size(&self, kind: FileKind, name: &str) -> Result<u64>;
    fn list(&self, kind: FileKind) -> Result<Vec<String>>;
    fn delete(&self, kind: FileKind, name: &str) -> Result<()>;
    fn exists(&self, kind: FileKind, name: &str) -> Result<bool>;
    /// Reads exactly `buf.len()` bytes at `offset` into `buf` (lets hot paths reuse a buffer).
    fn read_into(&self, kind: FileKind, name: &str, offset: u64, buf: &mut [u8]) -> Result<()> {
        let v = self.get_range(kind, name, offset, buf.len())?;
        buf.copy_from_slice(&v);
        Ok(())
    }
    /// A human-readable location for messages.
    fn location(&self, kind: FileKind, name: &str) -> String;
}

/// A repository in a local directory (or a mounted network share).
#[derive(Debug, Clone)]
pub struct LocalStorage {
    root: PathBuf,
}

impl LocalStorage {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        LocalStorage { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Creates the directory layout for a new repository.
    pub fn create_layout(&self) -> Result<()> {
        crate::private_fs::create_dir_all(&self.root).map_err(|e| Error::io(&self.root, e))?;
        for kind in FileKind::ALL {
            if kind != FileKind::Config {
                let d = self.root.join(kind.dir());
                crate::private_fs::create_dir_all(&d).map_err(|e| Error::io(&d, e))?;
            }
        }
        sync_dir(&self.root)
    }

    pub fn path(&self, kind: FileKind, name: &str) -> PathBuf {
        match kind {
            FileKind::Config => self.root.join(name),
            // Packs are spread over 256 subdirectories so no directory grows huge on a NAS.
            FileKind::Pack => self.root.join("data").join(&name[..name.len().min(2)]).join(name),
            k => self.root.join(k.dir()).join(name),
        }
    }

    fn write_atomic(&self, path: &Path, data: &[u8]) -> Result<()> {
        crate::private_fs::write_atomic(path, data).map_err(|e| Error::io(path, e))
    }
}

impl Storage for LocalStorage {
    fn put(&self, kind: FileKind, name: &str, data: &[u8]) -> Result<()> {
        self.write_atomic(&self.path(kind, name), data)
    }

    fn put_new(&self, kind: FileKind, name: &str, data: &[u8]) -> Result<bool> {
        let path = self.path(kind, name);
        if path.exists() {
            return Ok(false);
        }
        self.write_atomic(&path, data)?;
        Ok(true)
    }

    fn get(&self, kind: FileKind, name: &str) -> Result<Vec<u8>> {
        let path = self.path(kind, name);
        fs::read(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::NotFound(format!("{} {}", kind.dir(), name)),
            _ => Error::io(&path, e),
        })
    }

    fn get_range(&self, kind: FileKind, name: &str, offset: u64, len: usize) -> Result<Vec<u8>> {
        let mut buf = vec![0u8; len];
        self.read_into(kind, name, offset, &mut buf)?;
        Ok(buf)
    }

    fn read_into(&self, kind: FileKind, name: &str, offset: u64, buf: &mut [u8]) -> Result<()> {
        let path = self.path(kind, name);
        let f = File::open(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => {
                Error::damaged(format!("{} {name}", kind.dir()), format!("missing file {}", path.display()))
            }
            _ => Error::io(&path, e),
        })?;
        let got = read_at(&f, offset, buf).map_err(|e| Error::io(&path, e))?;
        if got < buf.len() {
            return Err(Error::damaged(
                format!("file {}", path.display()),
                format!("truncated: wanted {} bytes at offset {offset}, file ends after {got}", buf.len()),
            ));
        }
        Ok(())
    }

    fn size(&self, kind: FileKind, name: &str) -> Result<u64> {
        let path = self.path(kind, name);
        Ok(fs::metadata(&path).map_err(|e| Error::io(&path, e))?.len())
    }

    fn list(&self, kind: FileKind) -> Result<Vec<String>> {
        let mut out = Vec::new();
        let dir = self.root.join(kind.dir());
        let mut dirs = vec![dir];
        while let Some(d) = dirs.pop() {
            let rd = match fs::read_dir(&d) {
                Ok(rd) => rd,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io(&d, e)),
            };
            for entry in rd {
                let entry = entry.map_err(|e| Error::io(&d, e))?;
                let ft = entry.file_type().map_err(|e| Error::io(entry.path(), e))?;
                let name = entry.file_name().to_string_lossy().into_owned();
                if ft.is_dir() && kind == FileKind::Pack {
                    dirs.push(entry.path());
                } else if ft.is_file() && !name.starts_with('.') {
                    if kind == FileKind::Config && name != "config" {
                        continue;
                    }
                    out.push(name);
                }
            }
        }
        out.sort();
        Ok(out)
    }

    fn delete(&self, kind: FileKind, name: &str) -> Result<()> {
        let path = self.path(kind, name);
        match fs::remove_file(&path) {
            Ok(()) => sync_dir(path.parent().expect("has parent")),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(&path, e)),
        }
    }

    fn exists(&self, kind: FileKind, name: &str) -> Result<bool> {
        Ok(self.path(kind, name).exists())
    }

    fn location(&self, kind: FileKind, name: &str) -> String {
        self.path(kind, name).display().to_string()
    }
}

/// Positioned read that fills `buf` unless the file ends first; returns the bytes read.
fn read_at(f: &File, offset: u64, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match pread(f, &mut buf[got..], offset + got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

#[cfg(unix)]
fn pread(f: &File, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
    std::os::unix::fs::FileExt::read_at(f, buf, offset)
}

#[cfg(windows)]
fn pread(f: &File, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
    std::os::windows::fs::FileExt::seek_read(f, buf, offset)
}

/// Makes a rename or unlink in `dir` durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    crate::private_fs::sync_dir(dir).map_err(|e| Error::io(dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_get_list_delete() {
        let t = tempfile::tempdir().unwrap();
        let s = LocalStorage::new(t.path().join("r"));
        s.create_layout().unwrap();
        s.put(FileKind::Pack, "abcdef", b"hello").unwrap();
        assert!(s.path(FileKind::Pack, "abcdef").ends_with("data/ab/abcdef"));
        assert_eq!(s.get(FileKind::Pack, "abcdef").unwrap(), b"hello");
        assert_eq!(s.get_range(FileKind::Pack, "abcdef", 1, 3).unwrap(), b"ell");
        assert_eq!(s.list(FileKind::Pack).unwrap(), vec!["abcdef".to_string()]);
        assert!(!s.put_new(FileKind::Pack, "abcdef", b"x").unwrap());
        let err = s.get_range(FileKind::Pack, "abcdef", 3, 10).unwrap_err();
        assert_eq!(err.class(), crate::ErrorClass::Damage);
        s.delete(FileKind::Pack, "abcdef").unwrap();
        assert!(s.list(FileKind::Pack).unwrap().is_empty());
        // no temporary files left behind
        assert_eq!(fs::read_dir(t.path().join("r/data/ab")).unwrap().count(), 0);
    }
}
