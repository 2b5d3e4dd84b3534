//! The mailbox layer: what a brick-level backup does with a mailbox, written once over any source
//! of full-fidelity items (EWS today, Microsoft Graph next) and the archive.
//!
//! `source` is the small trait a source implements (folders, changes since a stored state, export
//! of a batch into a sink that streams items; and, as a replay target, folder creation, listings
//! and import of a batch); `ews` implements it over the EWS client, `graph` over the Microsoft Graph client. `backup` holds the plan (carry
//! unchanged items from the parent, export the rest, retry what the parent skipped), checkpoints
//! and `resume` files, and runs many mailboxes at once. `replay` holds the replay planner (target
//! folders by path and role, update-or-create decisions, duplicate checks), `import` sends its
//! batches, `select` says which items go back, and `journal` is the record that lets a killed
//! replay continue without duplicates. `store` names what a snapshot holds: a mailbox, its
//! In-Place Archive, their Recoverable Items, or the public folders. Layers point one way: the CLI calls this crate, which calls
//! the archive and the sources; they know nothing of each other or of it. Errors keep their class
//! (`error.rs`): archive damage stays damage.

pub mod backup;
pub mod error;
pub mod ews;
mod export_queue;
pub mod graph;
pub mod import;
pub mod journal;
pub mod progress;
pub mod replay;
pub mod resume;
pub mod select;
pub mod sizing;
pub mod source;
pub mod store;

pub use backup::{backup_run, Done, RunSettings};
pub use error::MailboxError;
pub use progress::Progress;
pub use source::Source;
