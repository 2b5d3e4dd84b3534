//! Where repository files live. The engine only ever puts, gets, lists and deletes whole files by
//! kind and name, so a local directory, a NAS mount or an object store (S3-compatible, Azure Blob)
//! can hold a repository. The layout (SPEC.md §4) is defined once here, in [`relative_path`], and
//! every backend uses it, so a repository copied between them byte for byte opens unchanged.
//!
//! # The contract every backend keeps (checked by [`suite::run`])
//! - `put` stores a whole file atomically: a reader sees the old file, nothing, or the whole new
//!   one — never a part. Once `put` returns, the file is durable and visible to `get`, `list` and
//!   `exists` of every process (read-after-write and list-after-write consistency).
//! - `get` / `get_range` / `size` of a file that does not exist: [`Error::NotFound`] for `get`,
//!   damage (the file should be there) for `get_range` and `read_into`, which also report a file
//!   shorter than asked as damage and never pad.
//! - `delete` of a missing file succeeds (deleting is idempotent).
//! - `list` returns the names of one kind, sorted, without names starting with `.` (a backend's own
//!   temporary files) and, for `Config`, only `config`.
//! - `prepare_new` readies an empty place for `init` and refuses one that holds anything.
//! - Nothing relies on conditional writes (`If-None-Match`): files are named by their content or
//!   are a process's own (locks), so two writers never race for one name with different bytes.
//! - `location` / `describe` are for messages only and never contain credentials.

mod local;
mod location;
mod object;
pub mod suite;
mod upload;
mod window_cache;

pub use local::LocalStorage;
pub use location::Location;
pub use object::{request_counts, AzblobConfig, ObjectStorage, RequestCounts, S3Config};
pub use upload::Upload;

use crate::error::Result;

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

/// A file's path inside the repository, `/`-separated (SPEC.md §4): `config`, `keys/<id>`,
/// `data/<first two hex digits of id>/<id>`, `index/<id>`, `snapshots/<id>`, `locks/<name>`,
/// `marks/<id>`. Packs are spread over 256 directories so none grows huge on a NAS.
pub fn relative_path(kind: FileKind, name: &str) -> String {
    match kind {
        FileKind::Config => name.to_string(),
        FileKind::Pack => format!("data/{}/{name}", &name[..name.len().min(2)]),
        k => format!("{}/{name}", k.dir()),
    }
}

/// Whether a listed file name is one of the repository's (not a backend's temporary file).
pub(crate) fn listed_name(kind: FileKind, name: &str) -> bool {
    !name.is_empty() && !name.starts_with('.') && (kind != FileKind::Config || name == "config")
}

/// A writer's temporary file (see [`Storage::temporaries`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Temporary {
    /// `/`-separated path inside the repository, e.g. `data/.data.4711-0123456789abcdef.tmp`.
    pub path: String,
    pub bytes: u64,
    /// When it was last written, if the store says.
    pub modified: Option<std::time::SystemTime>,
}

/// Whether a file name is a writer's temporary name (`.` first, `.tmp` last).
pub(crate) fn temporary_name(name: &str) -> bool {
    name.len() > 5 && name.starts_with('.') && name.ends_with(".tmp")
}

/// Storage for repository files. Names are plain file names (hex ids, or `config`). See the module
/// documentation for the contract.
pub trait Storage: Send + Sync {
    /// Stores a whole file atomically and durably; replaces an existing file of that name.
    fn put(&self, kind: FileKind, name: &str, data: &[u8]) -> Result<()>;
    /// Starts a file of `kind` written piece by piece and named once whole (a pack is named by the
    /// hash of its bytes); `capacity` is the size expected. By default it is gathered in memory.
    fn start_upload(&self, kind: FileKind, capacity: usize) -> Result<Upload> {
        Ok(Upload::memory(kind, capacity))
    }
    /// Stores a finished upload under `name`, as `put` stores a file (atomically, durably).
    fn finish_upload(&self, upload: Upload, name: &str) -> Result<()> {
        let kind = upload.kind();
        self.put(kind, name, &upload.into_bytes()?)
    }
    fn get(&self, kind: FileKind, name: &str) -> Result<Vec<u8>>;
    /// Reads `len` bytes at `offset`; a short file is reported as damage, not padded.
    fn get_range(&self, kind: FileKind, name: &str, offset: u64, len: usize) -> Result<Vec<u8>>;
    fn size(&self, kind: FileKind, name: &str) -> Result<u64>;
    fn list(&self, kind: FileKind) -> Result<Vec<String>>;
    /// Every file of a kind with its size, sorted by name: one listing where the store gives sizes
    /// with names (object stores), so that checking a repository costs no request per file.
    fn list_sized(&self, kind: FileKind) -> Result<Vec<(String, u64)>> {
        self.list(kind)?.into_iter().map(|n| self.size(kind, &n).map(|s| (n, s))).collect()
    }
    fn delete(&self, kind: FileKind, name: &str) -> Result<()>;
    fn exists(&self, kind: FileKind, name: &str) -> Result<bool>;
    /// Reads exactly `buf.len()` bytes at `offset` into `buf` (lets hot paths reuse a buffer).
    fn read_into(&self, kind: FileKind, name: &str, offset: u64, buf: &mut [u8]) -> Result<()> {
        let v = self.get_range(kind, name, offset, buf.len())?;
        buf.copy_from_slice(&v);
        Ok(())
    }
    /// Readies the place for a new repository (a local directory and its subdirectories; nothing
    /// to make on an object store) and refuses, with [`crate::Error::AlreadyExists`], a place that
    /// already holds files.
    fn prepare_new(&self) -> Result<()>;
    /// Whether reading a whole file costs a transfer over a network (object stores): verify then
    /// checks packs by their headers and leaves their bodies to `--read-data`.
    fn is_remote(&self) -> bool {
        false
    }
    /// Temporary files writers left behind (a local directory's `.<name>.<pid>-<random>.tmp`,
    /// left by a writer killed mid-file). An object store has none: its writes are whole PUTs.
    fn temporaries(&self) -> Result<Vec<Temporary>> {
        Ok(Vec::new())
    }
    /// Deletes one file `temporaries` listed (a missing one is fine).
    fn delete_temporary(&self, _t: &Temporary) -> Result<()> {
        Ok(())
    }
    /// A human-readable location of one file, for messages.
    fn location(&self, kind: FileKind, name: &str) -> String;
    /// The repository's location as the user would give it (`/mnt/nas/exarch`,
    /// `s3:https://host/bucket/prefix`), for messages.
    fn describe(&self) -> String;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_layout_is_spec_4() {
        assert_eq!(relative_path(FileKind::Config, "config"), "config");
        assert_eq!(relative_path(FileKind::Pack, "abcdef"), "data/ab/abcdef");
        assert_eq!(relative_path(FileKind::Key, "k1"), "keys/k1");
        assert_eq!(relative_path(FileKind::Mark, "m"), "marks/m");
        assert!(!listed_name(FileKind::Index, ".tmp123"));
        assert!(!listed_name(FileKind::Config, "other"));
        assert!(listed_name(FileKind::Config, "config"));
    }
}
