//! Files written piece by piece and named only once they are whole: a pack is named by the hash of
//! its bytes, so its name is known after its last byte. A local directory writes such a file to a
//! temporary file as it comes (a backup then holds no pack in memory, however large packs are); an
//! object store gathers it in memory and stores it with one PUT. Either way the file appears under
//! its name only when [`crate::storage::Storage::finish_upload`] stores it, atomically and durably,
//! as `put` would; an upload dropped unfinished leaves nothing (a killed process leaves at worst a
//! temporary file whose name starts with `.`, which every listing ignores).

use super::FileKind;
use crate::error::{Error, Result};
use std::fs::File;
use std::io::{BufWriter, Read, Seek, Write};
use std::path::{Path, PathBuf};

/// Bytes gathered before one write to a temporary file.
const FILE_BUFFER: usize = 256 * 1024;

/// A file being written; see the module documentation.
pub struct Upload {
    kind: FileKind,
    len: u64,
    body: Body,
}

pub(crate) enum Body {
    Memory(Vec<u8>),
    File(TempFile),
}

impl Upload {
    /// An upload gathered in memory, with `capacity` bytes reserved.
    pub fn memory(kind: FileKind, capacity: usize) -> Upload {
        Upload { kind, len: 0, body: Body::Memory(Vec::with_capacity(capacity)) }
    }

    /// An upload written to a new private temporary file in `dir`.
    pub(crate) fn file(kind: FileKind, dir: &Path) -> Result<Upload> {
        Ok(Upload { kind, len: 0, body: Body::File(TempFile::create(dir, kind)?) })
    }

    pub fn kind(&self) -> FileKind {
        self.kind
    }

    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn write(&mut self, data: &[u8]) -> Result<()> {
        match &mut self.body {
            Body::Memory(v) => v.extend_from_slice(data),
            Body::File(t) => t.write(data)?,
        }
        self.len += data.len() as u64;
        Ok(())
    }

    pub(crate) fn into_body(self) -> Body {
        self.body
    }

    /// Every byte written, in memory (how a backend without a file of its own stores an upload).
    pub fn into_bytes(self) -> Result<Vec<u8>> {
        match self.body {
            Body::Memory(v) => Ok(v),
            Body::File(t) => t.read_back(self.len),
        }
    }
}

/// A private temporary file being written; removed when dropped unless placed.
pub(crate) struct TempFile {
    file: Option<BufWriter<File>>,
    path: PathBuf,
}

impl TempFile {
    fn create(dir: &Path, kind: FileKind) -> Result<TempFile> {
        let path = crate::private_fs::temp_path(dir, kind.dir()).map_err(|e| Error::io(dir, e))?;
        let file = crate::private_fs::create_new(&path).map_err(|e| Error::io(&path, e))?;
        Ok(TempFile { file: Some(BufWriter::with_capacity(FILE_BUFFER, file)), path })
    }

    fn write(&mut self, data: &[u8]) -> Result<()> {
        let f = self.file.as_mut().expect("a temporary file is open until placed");
        f.write_all(data).map_err(|e| Error::io(&self.path, e))
    }

    /// Syncs the file and moves it to `dest` (SPEC.md §12: fsync, rename, fsync the directories).
    pub(crate) fn place(mut self, dest: &Path) -> Result<()> {
        let w = self.file.take().expect("a temporary file is open until placed");
        let f = w.into_inner().map_err(|e| Error::io(&self.path, e.into_error()))?;
        f.sync_all().map_err(|e| Error::io(&self.path, e))?;
        // Closed before the rename: Windows does not rename an open file.
        drop(f);
        crate::private_fs::place(&self.path, dest).map_err(|e| Error::io(dest, e))?;
        self.path = PathBuf::new();
        Ok(())
    }

    fn read_back(mut self, len: u64) -> Result<Vec<u8>> {
        let w = self.file.take().expect("a temporary file is open until placed");
        let mut f = w.into_inner().map_err(|e| Error::io(&self.path, e.into_error()))?;
        let mut v = Vec::with_capacity(len as usize);
        f.rewind().and_then(|()| f.read_to_end(&mut v)).map_err(|e| Error::io(&self.path, e))?;
        Ok(v)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.path.as_os_str().is_empty() {
            drop(self.file.take());
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_upload_is_placed_whole_or_leaves_nothing() {
        let t = tempfile::tempdir().unwrap();
        let mut u = Upload::file(FileKind::Pack, t.path()).unwrap();
        u.write(b"hello ").unwrap();
        u.write(&vec![7u8; 300_000]).unwrap();
        assert_eq!(u.len(), 300_006);
        let Body::File(f) = u.into_body() else { panic!("a file upload") };
        let dest = t.path().join("ab/abcd");
        f.place(&dest).unwrap();
        let got = std::fs::read(&dest).unwrap();
        assert_eq!(got.len(), 300_006);
        assert!(got.starts_with(b"hello "));
        // Nothing else is left in the directory.
        let names: Vec<_> = std::fs::read_dir(t.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("ab")]);

        // Dropped unfinished: the temporary file goes.
        let mut u = Upload::file(FileKind::Pack, t.path()).unwrap();
        u.write(b"abandoned").unwrap();
        drop(u);
        assert_eq!(std::fs::read_dir(t.path()).unwrap().count(), 1);
    }

    #[test]
    fn uploads_read_back_whole() {
        let t = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..500_000u32).map(|i| (i % 251) as u8).collect();
        for mut u in [Upload::memory(FileKind::Pack, 10), Upload::file(FileKind::Pack, t.path()).unwrap()] {
            u.write(&data[..1000]).unwrap();
            u.write(&data[1000..]).unwrap();
            assert_eq!(u.into_bytes().unwrap(), data);
        }
        assert_eq!(std::fs::read_dir(t.path()).unwrap().count(), 0, "read back, the temporary file is gone");
    }
}
