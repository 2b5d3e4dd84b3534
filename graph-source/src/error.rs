//! What a Graph call can fail with, sorted so callers keep the class: a credential the identity
//! platform refused (exit 3 in the CLI), a permission not granted (named, so the admin knows what to
//! consent to), a stop (the time window ended, or the service wants a longer pause than we wait),
//! and everything else.

/// The Graph calls exarch makes, each with the application permission its documentation names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Users,
    ExchangeSettings,
    FolderDelta,
    ItemDelta,
    ListItems,
    CreateFolder,
    ExportItems,
    CreateImportSession,
    ImportItem,
}

impl Endpoint {
    /// The least-privileged application permission that lets an app make this call.
    pub fn permission(self) -> &'static str {
        match self {
            Endpoint::Users | Endpoint::ExchangeSettings => "User.Read.All",
            Endpoint::FolderDelta => "MailboxFolder.Read.All",
            Endpoint::ItemDelta | Endpoint::ListItems => "MailboxItem.Read.All",
            Endpoint::CreateFolder => "MailboxFolder.ReadWrite.All",
            Endpoint::ExportItems | Endpoint::CreateImportSession | Endpoint::ImportItem => {
                "MailboxItem.ImportExport.All"
            }
        }
    }

    /// How the call is named in counts and messages.
    pub fn name(self) -> &'static str {
        match self {
            Endpoint::Users => "users",
            Endpoint::ExchangeSettings => "settings/exchange",
            Endpoint::FolderDelta => "folders/delta",
            Endpoint::ItemDelta => "items/delta",
            Endpoint::ListItems => "items",
            Endpoint::CreateFolder => "folders (create)",
            Endpoint::ExportItems => "exportItems",
            Endpoint::CreateImportSession => "createImportSession",
            Endpoint::ImportItem => "importItem",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum GraphError {
    /// The identity platform refused the app's credentials (its own error text), or Graph kept
    /// refusing a fresh token.
    #[error("sign-in refused: {0}")]
    Auth(String),
    /// HTTP 403: the app lacks a permission (or admin consent for it).
    #[error(
        "{what}: access denied ({message}); grant the application permission {permission} to the app in Entra ID \
         and give admin consent"
    )]
    Forbidden { what: String, permission: &'static str, message: String },
    /// The user, mailbox, folder or item does not exist.
    #[error("{what}: not found ({message})")]
    NotFound { what: String, message: String },
    /// Any other HTTP error, with Graph's error code and message.
    #[error("{what}: HTTP {status} {code}: {message}")]
    Http { what: String, status: u16, code: String, message: String },
    /// A reply that is not what the API documents (bad JSON, a link to another origin, ...).
    #[error("{what}: unexpected reply: {message}")]
    Protocol { what: String, message: String },
    /// The connection failed (after retries).
    #[error("{0}")]
    Transport(String),
    /// The run stops for this mailbox: the time window ended, or the service asked for a longer
    /// pause than we wait.
    #[error("{0}")]
    Stopped(String),
    /// Settings that cannot work (bad URL, unreadable certificate or key).
    #[error("{0}")]
    Config(String),
    /// The consumer of exported items failed; its error is handed back unchanged.
    #[error(transparent)]
    Sink(Box<dyn std::error::Error + Send + Sync>),
}

impl GraphError {
    /// True when the request might or might not have taken effect (a reply lost on the way).
    pub fn outcome_unknown(&self) -> bool {
        matches!(self, GraphError::Transport(_))
    }

    pub(crate) fn protocol(what: &str, message: impl Into<String>) -> GraphError {
        GraphError::Protocol { what: what.to_string(), message: message.into() }
    }
}
