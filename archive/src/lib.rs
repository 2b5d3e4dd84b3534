//! The exarch archive engine: a deduplicating, compressing, encrypting store for opaque item blobs.
//!
//! It knows nothing about Exchange. A source (a directory, EWS, later Microsoft Graph) hands it items
//! with a few searchable properties and a byte stream; the engine cuts the stream into content-defined
//! chunks, stores each new chunk once (compressed and sealed) in pack files, indexes them in sorted
//! on-disk tables, and records each snapshot in an rkyv manifest that is read without deserialising.
//! The byte-level format is published in `format-spec/SPEC.md`.

pub mod config;
pub mod crypto;
pub mod envelope;
pub mod error;
pub mod id;
pub mod index;
pub mod keyslot;
pub mod manifest;
pub mod manifest_check;
pub mod manifest_pages;
pub mod pack;
mod pack_writer;
pub mod passphrase;
pub mod private_fs;
pub mod storage;
pub mod summary_cache;

pub use error::{Error, ErrorClass, Result};
pub use id::Id;
pub mod chunker;
pub mod lock;
pub mod repository;
pub mod snapshot;
mod snapshot_pages;
pub mod time;

pub use repository::{Context, InitOptions, Repository, SnapshotInfo};
pub use storage::{FileKind, LocalStorage, Storage};
pub mod backup;
pub mod extract;
pub mod extract_names;
mod linked_file;
pub mod prune;
pub mod readback;
pub mod repair;
pub mod restore;
pub mod retention;
pub mod usage;
pub mod verify;
