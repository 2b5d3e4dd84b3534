//! Typed errors of the archive engine.
//!
//! Every error says what went wrong, where, and (when there is something to do) what the operator can
//! do about it. `Error::class` sorts them into the few outcomes a caller acts on (and that the CLI maps
//! to exit codes): wrong key, damage, locked, usage, or plain failure.

use std::path::PathBuf;

/// What a caller does with an error; the CLI turns these into exit codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Something failed that is neither damage nor a key problem (I/O, locked, not found).
    Failure,
    /// The request itself is wrong (unknown snapshot, ambiguous prefix, bad parameter).
    Usage,
    /// No key slot opens the repository with the given passphrase.
    WrongKey,
    /// Stored data failed an integrity check.
    Damage,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// (The OS error is part of the message, not a separate cause, so it is printed once.)
    #[error("I/O error on {path}: {err}")]
    Io { path: PathBuf, err: std::io::Error },
    #[error("{0} is not an exarch repository (no `config` file); create one with `exarch init --repo {0}`")]
    NotARepository(String),
    #[error("{0} already holds a repository or other files; choose an empty or new directory (or prefix)")]
    AlreadyExists(String),
    /// A storage backend (object store) failed: where, and what the store said.
    #[error("storage error at {location}: {detail}")]
    Store { location: String, detail: String },
    #[error("the passphrase opens none of the {slots} key slot(s) of this repository; check EXARCH_PASSWORD / the password file")]
    WrongPassphrase { slots: usize },
    #[error("the repository has no key slot; it cannot be opened")]
    NoKeySlot,
    #[error("{what}: damaged ({detail})")]
    Damaged { what: String, detail: String },
    #[error("unsupported {what} version {version}; this exarch reads up to version {supported}: upgrade exarch")]
    UnsupportedVersion { what: String, version: u32, supported: u32 },
    #[error("repository is locked: {0}")]
    Locked(String),
    #[error("lock lost: {0}")]
    LockLost(String),
    /// A destructive operation would act without proof that it is safe; nothing was deleted.
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    Usage(String),
    #[error("{0} not found in the repository")]
    NotFound(String),
    #[error("{0}")]
    Other(String),
}

impl Error {
    pub fn class(&self) -> ErrorClass {
        match self {
            Error::WrongPassphrase { .. } | Error::NoKeySlot => ErrorClass::WrongKey,
            Error::Damaged { .. } | Error::Refused(_) => ErrorClass::Damage,
            Error::Usage(_) | Error::NotFound(_) => ErrorClass::Usage,
            _ => ErrorClass::Failure,
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), err: source }
    }

    pub(crate) fn damaged(what: impl Into<String>, detail: impl Into<String>) -> Self {
        Error::Damaged { what: what.into(), detail: detail.into() }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
