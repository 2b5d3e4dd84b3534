//! The EWS source of exarch: SOAP requests and responses for the operations a brick-level backup
//! and restore need (ResolveNames, SyncFolderHierarchy, SyncFolderItems, ExportItems, UploadItems).
//!
//! This crate knows nothing of the archive format; the CLI connects the two. Requests are validated
//! against Microsoft's published schema in tests; the client sends them through a throttling
//! governor and isolates dirty items when a batch fails. (The simulated Exchange server is the
//! `exarch-exchange-sim` crate: this one is only a client.)

pub mod channel_binding;
pub mod client;
pub mod dom;
pub mod export;
pub mod export_stream;
pub mod ntlm;
pub mod request;
pub mod response;

pub mod throttle;
pub mod transport;
pub mod upload;

/// The file name an item gets when extracted (and in the simulator's dump): derived from its
/// content, never from the server's item id, which changes when an item is restored.
pub fn item_file_name(blob: &[u8]) -> String {
    format!("{}.fts", &blake3::hash(blob).to_hex()[..32])
}

/// The name under which the public folders are backed up (as a snapshot's mailbox) and addressed:
/// requests for it go without impersonation (public folders are not a user's mailbox).
pub const PUBLIC_FOLDERS: &str = "public-folders";

/// EWS namespaces.
pub const NS_MESSAGES: &str = "http://schemas.microsoft.com/exchange/services/2006/messages";
pub const NS_TYPES: &str = "http://schemas.microsoft.com/exchange/services/2006/types";
pub const NS_SOAP: &str = "http://schemas.xmlsoap.org/soap/envelope/";
