//! A Microsoft Graph client for Exchange Online's mailbox import and export API: the source and
//! replay target for mailboxes that EWS no longer reaches. It knows nothing of the archive.
//!
//! `token` gets app-only tokens from the Microsoft identity platform (client secret, or a
//! certificate's signed assertion from `assertion`) and renews them before they expire. `http`
//! sends every request: bearer token, the `governor`'s per-mailbox limits, `Retry-After`, one
//! renewal on a 401, a 403 that names the permission to grant, links that must stay on Graph's
//! origin. `api` holds the calls (users, mailbox ids, folder and item delta queries, exportItems,
//! import sessions); `export_json` reads an exportItems reply as it arrives, so an item's bytes
//! go to `ItemData` (memory or a temporary file) without the reply being held whole.

pub mod api;
pub mod assertion;
pub mod error;
pub mod export_json;
pub mod governor;
pub mod http;
pub mod token;

pub use error::GraphError;
pub use exarch_item_data::{ItemData, Limits};
pub use http::{GraphClient, GraphConfig};
pub use token::Credential;

/// Graph's API base, with its version.
pub const DEFAULT_GRAPH_URL: &str = "https://graph.microsoft.com/v1.0";
/// The Microsoft identity platform's authority host.
pub const DEFAULT_LOGIN_URL: &str = "https://login.microsoftonline.com";
/// The host Exchange Online's pre-authenticated import URLs point at.
pub const IMPORT_HOST: &str = "outlook.office365.com";
/// Items one exportItems request may name (Graph's documented maximum).
pub const MAX_EXPORT_ITEMS: usize = 20;
