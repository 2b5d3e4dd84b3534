//! The simulated Exchange server used by tests and by `exarch simulate` / `exarch demo`: EWS and
//! Microsoft Graph's mailbox import/export API over HTTP on loopback with Exchange-like throttling, faults and hostile modes on demand, and a model
//! of mailboxes that can be churned, wiped and dumped. A crate of its own, so the EWS client
//! (`exarch-ews-source`) holds no server code.

pub mod auth;
pub mod blob;
pub mod budget;
pub mod graph;
pub mod graph_gate;
pub mod hostile;
pub mod http;
pub mod model;
pub mod ops;
pub mod server;
pub mod slow;
pub mod soap;
pub mod stores;
pub mod tls;

pub use budget::Profile;
pub use graph_gate::GraphSettings;
pub use http::{serve, Running};
pub use server::{Simulator, DEFAULT_MAX_REQUEST_BYTES};
