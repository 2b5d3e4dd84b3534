//! The trait a source of mailbox items implements, and the neutral types it speaks in.
//!
//! A source knows folders and items by its own ids; it reports what changed in a folder since a
//! state it handed out earlier (or, for a store without incremental sync, everything the folder
//! holds now), and exports batches of items as opaque full-fidelity streams into a sink.

use exarch_item_data::ItemData;
use std::collections::BTreeMap;

/// A folder of a store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FolderInfo {
    pub id: String,
    /// The parent's id; the top of the store is whatever is not listed itself.
    pub parent_id: String,
    pub name: String,
    /// `IPF.Note`, `IPF.Appointment`, ... (empty when unknown).
    pub class: String,
}

/// An item as the source lists it: its id and what is searchable without reading it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ItemInfo {
    pub id: String,
    /// Changes whenever the item does (EWS ChangeKey).
    pub change_key: String,
    pub item_class: String,
    pub subject: String,
    pub from: String,
    /// Unix ms, or `exarch_archive::manifest::NO_TIME`.
    pub received_ms: i64,
    pub size: u64,
    /// A hidden (folder-associated) item.
    pub associated: bool,
}

/// One change in a folder, in the order the source reported them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// New, or changed since.
    Upsert(ItemInfo),
    Delete(String),
}

/// What a folder holds, as the source can tell it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listing {
    /// Changes since the given state (all items when there was none), and the state to continue from.
    Delta { changes: Vec<Change>, state: String },
    /// Everything the folder holds now (a store without sync): unchanged items are recognised by
    /// their change key, and what is not listed is gone.
    Full(Vec<ItemInfo>),
}

/// An item to export, with the size the listing reported (for batching).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToExport {
    pub id: String,
    pub size: u64,
}

/// What became of an export request beyond the items handed over: positions (in the batch) of
/// items not tried, to be exported later in other batches, and of items whose request ran into the
/// server's time limit, to be sent again in smaller requests.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ExportOutcome {
    pub untried: Vec<usize>,
    pub timed_out: Vec<usize>,
}

/// What a source can fail with.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// This store stops for the run (the time window ended, the server wants a longer pause than
    /// we wait); what was stored is kept and the next run continues.
    #[error("{0}")]
    Stopped(String),
    /// The archive refused an item the source handed over; its error keeps its class.
    #[error(transparent)]
    Archive(#[from] exarch_archive::Error),
    /// Anything else, as the source says it.
    #[error(transparent)]
    Failed(Box<dyn std::error::Error + Send + Sync>),
}

/// How an imported item is put into its folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportAction {
    /// A new item, whatever the folder holds.
    CreateNew,
    /// Update the item with the given id if it is there, else create it.
    UpdateOrCreate,
}

/// An item to put back.
#[derive(Debug, Clone)]
pub struct ToImport {
    pub folder_id: String,
    /// The item to update (with `UpdateOrCreate`).
    pub item_id: Option<String>,
    pub action: ImportAction,
    /// A hidden (folder-associated) item.
    pub associated: bool,
    /// The full-fidelity stream the export gave.
    pub data: Vec<u8>,
}

/// What became of one imported item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Imported {
    /// Stored, with the id it has now.
    Ok { id: String },
    /// The server refused this item: its reason.
    Refused(String),
    /// The item alone is larger than the server accepts in one request.
    TooLarge,
    /// The request broke off: the item may or may not be there (look before sending it again).
    Uncertain(String),
}

/// Why a folder could not be created.
#[derive(Debug)]
pub enum CreateFolderError {
    /// It may exist after all (it was there already, or the reply was lost): look again.
    LookAgain(SourceError),
    Failed(SourceError),
}

/// A source of mailbox items (EWS, Graph, ...), and the target replay puts them back into.
/// Stores are named as snapshots name them (`store.rs`): `user@domain`, `user@domain#archive`, …,
/// or `public-folders`.
pub trait Source: Sync {
    /// What a snapshot records as where it came from (never with credentials), e.g. `ews:https://…`.
    fn describe(&self) -> String;
    /// The protocol, as a snapshot's source state records it (`ews`, `graph`): sync states of one
    /// mean nothing to another.
    fn protocol(&self) -> &'static str;
    /// Whether the store exists (a mailbox without an In-Place Archive has no `#archive` store).
    fn has_store(&self, store: &str) -> Result<bool, SourceError>;
    /// Every folder of the store.
    fn folders(&self, store: &str) -> Result<Vec<FolderInfo>, SourceError>;
    /// Folder id → role (`inbox`, `sentitems`, ...) for the default folders, so a restore finds
    /// them under other names. Best effort: empty when the source cannot tell.
    fn default_folders(&self, store: &str) -> BTreeMap<String, String>;
    /// What changed in `folder` since `since` (a state this source gave out), or its full listing.
    fn changes(&self, store: &str, folder: &str, since: Option<&str>) -> Result<Listing, SourceError>;
    /// The most items one export request may carry.
    fn batch_limit(&self) -> usize;
    /// How many of `items` (from the front, at most `cap`) the next export request should take.
    fn next_batch(&self, items: &[ToExport], cap: usize) -> usize;
    /// Exports `batch`, handing every item to `ok` as it arrives and every item the source could not
    /// export to `failed` with its reason. Returns the positions in `batch` of items it did not try
    /// (when isolating a failing item leaves part of a batch untried) and of items that ran into
    /// the server's time limit: the caller exports them later. Errors other than per-item failures
    /// end the call.
    fn export(
        &self,
        store: &str,
        batch: &[ToExport],
        ok: &mut dyn FnMut(&str, ItemData) -> Result<(), SourceError>,
        failed: &mut dyn FnMut(&str, String),
    ) -> Result<ExportOutcome, SourceError>;

    /// Creates a folder under `parent` (None: the top of the store); returns its id.
    fn create_folder(
        &self,
        store: &str,
        parent: Option<&str>,
        name: &str,
        class: &str,
    ) -> Result<String, CreateFolderError>;
    /// Every item a folder holds now.
    fn list_folder(&self, store: &str, folder: &str) -> Result<Vec<ItemInfo>, SourceError>;
    /// What an item of `raw` bytes weighs against the import `limit` (EWS: its base64 length).
    fn import_weight(&self, raw: u64) -> u64;
    /// Import requests for items of these weights: consecutive ranges, each within `limit`.
    fn import_batches(&self, weights: &[u64], limit: u64) -> Vec<std::ops::Range<usize>>;
    /// Imports `items`, reporting every item's outcome by its index. Errors that concern the whole
    /// connection end the call; items not reported by then were not sent.
    fn import(
        &self,
        store: &str,
        items: &[ToImport],
        limit: u64,
        outcome: &mut dyn FnMut(usize, Imported),
    ) -> Result<(), SourceError>;
}
