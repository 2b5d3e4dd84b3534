//! Errors of the mailbox layer, sorted so the CLI can pick exit codes: archive errors keep their
//! own class (damage stays damage), a store that stopped part-way is a partial run, not a failure.

use crate::source::SourceError;

#[derive(Debug, thiserror::Error)]
pub enum MailboxError {
    #[error(transparent)]
    Archive(#[from] exarch_archive::Error),
    /// The store stopped before the end; what was exported is stored and the next run continues.
    #[error("{0}; what was exported is stored and the next run continues")]
    Stopped(String),
    #[error(transparent)]
    Source(Box<dyn std::error::Error + Send + Sync>),
    /// The local cache (resume files) could not be written.
    #[error("{0}")]
    Cache(String),
}

impl MailboxError {
    /// True for a store that stopped part-way rather than failed.
    pub fn is_partial(&self) -> bool {
        matches!(self, MailboxError::Stopped(_))
    }

    /// The archive error inside, if that is what this is.
    pub fn archive(&self) -> Option<&exarch_archive::Error> {
        match self {
            MailboxError::Archive(e) => Some(e),
            _ => None,
        }
    }
}

impl From<SourceError> for MailboxError {
    fn from(e: SourceError) -> Self {
        match e {
            SourceError::Stopped(why) => MailboxError::Stopped(why),
            SourceError::Archive(a) => MailboxError::Archive(a),
            SourceError::Failed(f) => MailboxError::Source(f),
        }
    }
}
