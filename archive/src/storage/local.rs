//! A repository in a local directory or on a mounted share. Every write is durable and atomic:
//! write a temporary file (its name starts with `.`, so no listing shows it), fsync it, rename it
//! into place, fsync the directory. A killed writer leaves at worst such a temporary file.

use super::upload::Body;
use super::{listed_name, relative_path, temporary_name, FileKind, Storage, Temporary, Upload};
use crate::error::{Error, Result};
use std::fs::{self, File};
use std::path::{Path, PathBuf};

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

    /// Creates the directory layout (also for an existing repository whose empty directories a
    /// copy lost; it never touches files).
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
        self.root.join(relative_path(kind, name))
    }

    fn write_atomic(&self, path: &Path, data: &[u8]) -> Result<()> {
        crate::private_fs::write_atomic(path, data).map_err(|e| Error::io(path, e))
    }
}

impl Storage for LocalStorage {
    fn put(&self, kind: FileKind, name: &str, data: &[u8]) -> Result<()> {
        self.write_atomic(&self.path(kind, name), data)
    }

    /// Written to a temporary file in the kind's directory (`data/` for packs) as it comes.
    fn start_upload(&self, kind: FileKind, _capacity: usize) -> Result<Upload> {
        Upload::file(kind, &self.root.join(kind.dir()))
    }

    fn finish_upload(&self, upload: Upload, name: &str) -> Result<()> {
        let path = self.path(upload.kind(), name);
        match upload.into_body() {
            Body::File(f) => f.place(&path),
            Body::Memory(v) => self.write_atomic(&path, &v),
        }
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
        match fs::metadata(&path) {
            Ok(m) => Ok(m.len()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(Error::NotFound(format!("{} {name}", kind.dir())))
            }
            Err(e) => Err(Error::io(&path, e)),
        }
    }

    fn list(&self, kind: FileKind) -> Result<Vec<String>> {
        let mut out = Vec::new();
        let mut dirs = vec![self.root.join(kind.dir())];
        while let Some(d) = dirs.pop() {
            for (entry, ft) in entries(&d)? {
                let name = entry.file_name().to_string_lossy().into_owned();
                if ft.is_dir() && kind == FileKind::Pack {
                    dirs.push(entry.path());
                } else if ft.is_file() && listed_name(kind, &name) {
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

    fn prepare_new(&self) -> Result<()> {
        // Empty directories (a layout left by an init that stopped at the passphrase) are no
        // reason to refuse; any file is.
        if holds_a_file(&self.root)? {
            return Err(Error::AlreadyExists(self.describe()));
        }
        self.create_layout()
    }

    fn temporaries(&self) -> Result<Vec<Temporary>> {
        let mut out = Vec::new();
        let mut dirs: Vec<String> = vec![String::new()];
        dirs.extend(FileKind::ALL.iter().filter(|k| !k.dir().is_empty()).map(|k| k.dir().to_string()));
        while let Some(rel) = dirs.pop() {
            for (entry, ft) in entries(&self.root.join(&rel))? {
                let Some(name) = entry.file_name().to_str().map(str::to_string) else { continue };
                if ft.is_dir() && rel == FileKind::Pack.dir() {
                    // data/<xx>/: where packs went before they were written as they fill.
                    dirs.push(format!("{rel}/{name}"));
                } else if ft.is_file() && temporary_name(&name) {
                    let m = entry.metadata().map_err(|e| Error::io(entry.path(), e))?;
                    let path = if rel.is_empty() { name } else { format!("{rel}/{name}") };
                    out.push(Temporary { path, bytes: m.len(), modified: m.modified().ok() });
                }
            }
        }
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }

    fn delete_temporary(&self, t: &Temporary) -> Result<()> {
        // Only a temporary name, in the repository's own directories, is ever deleted here.
        let (dir, name) = t.path.rsplit_once('/').unwrap_or(("", &t.path));
        let known_dir = dir.is_empty()
            || FileKind::ALL.iter().any(|k| !k.dir().is_empty() && k.dir() == dir)
            || dir
                .strip_prefix("data/")
                .is_some_and(|sub| sub.len() == 2 && sub.bytes().all(|b| b.is_ascii_hexdigit()));
        if !known_dir || !temporary_name(name) || name.contains(['/', '\\']) {
            return Err(Error::Other(format!("not a temporary file of this repository: {}", t.path)));
        }
        let path = self.root.join(&t.path);
        match fs::remove_file(&path) {
            Ok(()) => sync_dir(path.parent().expect("has parent")),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(&path, e)),
        }
    }

    fn location(&self, kind: FileKind, name: &str) -> String {
        self.path(kind, name).display().to_string()
    }

    fn describe(&self) -> String {
        self.root.display().to_string()
    }
}

/// The entries of `dir` with their types (not following links); none for a missing directory.
fn entries(dir: &Path) -> Result<Vec<(fs::DirEntry, fs::FileType)>> {
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(dir, e)),
    };
    rd.map(|entry| {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let ft = entry.file_type().map_err(|e| Error::io(entry.path(), e))?;
        Ok((entry, ft))
    })
    .collect()
}

/// Whether `dir` or a directory below it holds anything but directories.
fn holds_a_file(dir: &Path) -> Result<bool> {
    for (entry, ft) in entries(dir)? {
        if !ft.is_dir() || holds_a_file(&entry.path())? {
            return Ok(true);
        }
    }
    Ok(false)
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
    fn keeps_the_storage_contract() {
        let t = tempfile::tempdir().unwrap();
        super::super::suite::run(&LocalStorage::new(t.path().join("r")));
    }

    #[test]
    fn temporaries_are_writers_dot_tmp_files_in_the_repository_directories_only() {
        let t = tempfile::tempdir().unwrap();
        let s = LocalStorage::new(t.path().join("r"));
        s.create_layout().unwrap();
        let r = s.root().to_path_buf();
        std::fs::create_dir_all(r.join("data/ab")).unwrap();
        std::fs::create_dir_all(r.join("other")).unwrap();
        std::fs::create_dir_all(r.join("data/.dir.tmp")).unwrap();
        for f in [
            ".config.1-aa.tmp",
            "data/.data.2-bb.tmp",
            "data/ab/.abcd.3-cc.tmp",
            "index/.ef.4-dd.tmp",
            // not temporaries: no dot, not .tmp, a directory not the repository's
            "data/ab/abcd",
            "index/.keep",
            "snapshots/x.tmp",
            "other/.o.5-ee.tmp",
        ] {
            std::fs::write(r.join(f), b"0123").unwrap();
        }
        let listed: Vec<String> = s.temporaries().unwrap().into_iter().map(|t| t.path).collect();
        assert_eq!(listed, [".config.1-aa.tmp", "data/.data.2-bb.tmp", "data/ab/.abcd.3-cc.tmp", "index/.ef.4-dd.tmp"]);
        assert!(s.temporaries().unwrap().iter().all(|t| t.bytes == 4 && t.modified.is_some()));
        // Only listed kinds of path are deleted; anything else is refused, never touched.
        for bad in ["other/.o.5-ee.tmp", "index/.keep", "data/zz/.a.tmp", "../r/data/.data.2-bb.tmp", "data/ab/abcd"] {
            let e = s.delete_temporary(&Temporary { path: bad.into(), bytes: 0, modified: None }).unwrap_err();
            assert!(e.to_string().contains("not a temporary file"), "{bad}: {e}");
        }
        for t in s.temporaries().unwrap() {
            s.delete_temporary(&t).unwrap();
            s.delete_temporary(&t).unwrap(); // gone already: fine
        }
        assert!(s.temporaries().unwrap().is_empty());
        for kept in ["data/ab/abcd", "index/.keep", "snapshots/x.tmp", "other/.o.5-ee.tmp"] {
            assert!(r.join(kept).exists(), "{kept} was deleted");
        }
    }

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
        let err = s.get_range(FileKind::Pack, "abcdef", 3, 10).unwrap_err();
        assert_eq!(err.class(), crate::ErrorClass::Damage);
        s.delete(FileKind::Pack, "abcdef").unwrap();
        assert!(s.list(FileKind::Pack).unwrap().is_empty());
        // no temporary files left behind
        assert_eq!(fs::read_dir(t.path().join("r/data/ab")).unwrap().count(), 0);
    }
}
