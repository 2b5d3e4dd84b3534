//! The EWS source of exarch: SOAP requests and responses for the operations a brick-level backup
//! and restore need (ResolveNames, SyncFolderHierarchy, SyncFolderItems, ExportItems, UploadItems).
//!
//! This crate knows nothing of the archive format; the CLI connects the two. Built so far: request
//! building (validated against Microsoft's published schema in tests) and response parsing,
//! including the throttling faults Exchange sends. The HTTP client, throttling governor, batch
//! bisection and the simulated Exchange server build on these.

pub mod dom;
pub mod request;
pub mod response;

/// EWS namespaces.
pub const NS_MESSAGES: &str = "http://schemas.microsoft.com/exchange/services/2006/messages";
pub const NS_TYPES: &str = "http://schemas.microsoft.com/exchange/services/2006/types";
pub const NS_SOAP: &str = "http://schemas.xmlsoap.org/soap/envelope/";
