//! The EWS client as a `Source`. Mailboxes: SyncFolderHierarchy for folders, SyncFolderItems from
//! the stored sync state for changes. Public folders have no sync: FindFolder for the tree and a
//! full FindItem listing per folder. Exports are ExportItems batches with dirty-item isolation.

use crate::source::{
    Change, CreateFolderError, ExportOutcome, FolderInfo, ImportAction, Imported, ItemInfo, Listing, Source,
    SourceError, ToExport, ToImport,
};
use crate::store::{Part, Store, PUBLIC_FOLDERS};
use base64::Engine as _;
use exarch_archive::manifest::NO_TIME;
use exarch_archive::time::parse_rfc3339_ms;
use exarch_ews_source::client::{check_sync_progress, Client};
use exarch_ews_source::export::{export_batch, next_batch};
use exarch_ews_source::request::{CreateAction, FolderRef, MAX_EXPORT_BATCH, MAX_SYNC_CHANGES};
use exarch_ews_source::response::{ChangeKind, EwsError, ItemChange};
use exarch_ews_source::upload::{plan, upload_batch, Outcome, ToUpload, MAX_UPLOAD_BATCH};
use exarch_item_data::ItemData;
use std::collections::BTreeMap;

pub struct EwsSource<'c> {
    client: &'c Client,
    /// The endpoint, without credentials.
    url: String,
}

impl<'c> EwsSource<'c> {
    pub fn new(client: &'c Client, url: &str) -> EwsSource<'c> {
        EwsSource { client, url: url.to_string() }
    }
}

/// An EWS error in the layer's terms: a stop stays a stop, the archive's own errors come back out.
fn from_ews(e: EwsError) -> SourceError {
    if e.stops_run() {
        return SourceError::Stopped(e.to_string());
    }
    match e {
        EwsError::Sink(inner) => match inner.downcast::<exarch_archive::Error>() {
            Ok(a) => SourceError::Archive(*a),
            Err(other) => SourceError::Failed(other),
        },
        e => SourceError::Failed(Box::new(e)),
    }
}

fn to_ews(e: SourceError) -> EwsError {
    match e {
        SourceError::Archive(a) => EwsError::Sink(Box::new(a)),
        SourceError::Failed(f) => EwsError::Sink(f),
        SourceError::Stopped(why) => EwsError::Sink(why.into()),
    }
}

fn info(c: &ItemChange) -> ItemInfo {
    ItemInfo {
        id: c.id.clone(),
        change_key: c.change_key.clone(),
        item_class: c.item_class.clone(),
        subject: c.subject.clone(),
        from: c.from.clone(),
        received_ms: parse_rfc3339_ms(&c.received).unwrap_or(NO_TIME),
        size: c.size,
        associated: c.associated,
    }
}

/// Where a store's EWS requests go: the mailbox they impersonate (the public folders' name, which
/// the client sends without impersonation) and the distinguished id of the store's top folder.
fn target(store: &str) -> (String, &'static str) {
    match Store::parse(store) {
        Store::PublicFolders => (PUBLIC_FOLDERS.to_string(), "publicfoldersroot"),
        Store::Mailbox { address, part } => (
            address,
            match part {
                Part::Primary => "msgfolderroot",
                Part::Archive => "archivemsgfolderroot",
                Part::RecoverableItems => "recoverableitemsroot",
                Part::ArchiveRecoverableItems => "archiverecoverableitemsroot",
            },
        ),
    }
}

fn batch(items: &[ToExport]) -> Vec<exarch_ews_source::export::ToExport> {
    items.iter().map(|t| exarch_ews_source::export::ToExport { id: t.id.clone(), size: t.size }).collect()
}

impl Source for EwsSource<'_> {
    fn describe(&self) -> String {
        format!("ews:{}", self.url)
    }

    fn protocol(&self) -> &'static str {
        "ews"
    }

    fn has_store(&self, store: &str) -> Result<bool, SourceError> {
        if Store::parse(store).part() == Part::Primary {
            return Ok(true);
        }
        let (mailbox, root) = target(store);
        self.client.has_folder(&mailbox, root).map_err(from_ews)
    }

    fn folders(&self, store: &str) -> Result<Vec<FolderInfo>, SourceError> {
        let (mailbox, root) = target(store);
        Ok(self
            .client
            .folder_tree(&mailbox, root)
            .map_err(from_ews)?
            .into_iter()
            .filter(|c| c.kind != ChangeKind::Delete)
            .map(|c| FolderInfo { id: c.id, parent_id: c.parent_id, name: c.display_name, class: c.folder_class })
            .collect())
    }

    fn default_folders(&self, store: &str) -> BTreeMap<String, String> {
        // (A restore aid only: a server that cannot say costs nothing but the mapping. The roles
        // are those of a primary mailbox's folders.)
        match Store::parse(store) {
            Store::Mailbox { address, part: Part::Primary } => {
                self.client.default_folders(&address).unwrap_or_default()
            }
            _ => BTreeMap::new(),
        }
    }

    fn changes(&self, store: &str, folder: &str, since: Option<&str>) -> Result<Listing, SourceError> {
        let (store, _) = &target(store);
        if store == PUBLIC_FOLDERS {
            let listed = self.client.find_items(store, folder).map_err(from_ews)?;
            return Ok(Listing::Full(listed.iter().map(info).collect()));
        }
        let mut changes = Vec::new();
        let mut state: Option<String> = since.map(str::to_string);
        loop {
            let s = self.client.sync_items(store, folder, state.as_deref(), MAX_SYNC_CHANGES).map_err(from_ews)?;
            for c in &s.changes {
                match c.kind {
                    ChangeKind::Create | ChangeKind::Update => changes.push(Change::Upsert(info(c))),
                    ChangeKind::Delete => changes.push(Change::Delete(c.id.clone())),
                    ChangeKind::ReadFlagChange => {}
                }
            }
            if s.last {
                return Ok(Listing::Delta { changes, state: s.sync_state });
            }
            check_sync_progress(state.as_deref(), &s.sync_state, changes.len()).map_err(from_ews)?;
            state = Some(s.sync_state);
        }
    }

    fn batch_limit(&self) -> usize {
        MAX_EXPORT_BATCH
    }

    fn next_batch(&self, items: &[ToExport], cap: usize) -> usize {
        let cap = cap.clamp(1, MAX_EXPORT_BATCH);
        // (sizes only matter up to a batch's worth)
        let head = &items[..items.len().min(cap * 2)];
        next_batch(&batch(head), cap, self.client.export_seconds_per_byte())
    }

    fn export(
        &self,
        store: &str,
        items: &[ToExport],
        ok: &mut dyn FnMut(&str, ItemData) -> Result<(), SourceError>,
        failed: &mut dyn FnMut(&str, String),
    ) -> Result<ExportOutcome, SourceError> {
        let mut ok_ews = |id: &str, data: ItemData| ok(id, data).map_err(to_ews);
        let r = export_batch(self.client, &target(store).0, &batch(items), &mut ok_ews, failed).map_err(from_ews)?;
        Ok(ExportOutcome { untried: r.untried, timed_out: r.timed_out })
    }

    fn create_folder(
        &self,
        store: &str,
        parent: Option<&str>,
        name: &str,
        class: &str,
    ) -> Result<String, CreateFolderError> {
        let (mailbox, root) = target(store);
        let pref = match parent {
            None => FolderRef::Distinguished(root),
            Some(id) => FolderRef::Id(id),
        };
        self.client.create_folder(&mailbox, pref, name, class).map_err(|e| {
            let exists = matches!(&e, EwsError::Failed { code, .. } if code == "ErrorFolderExists");
            if e.outcome_unknown() || exists {
                CreateFolderError::LookAgain(from_ews(e))
            } else {
                CreateFolderError::Failed(from_ews(e))
            }
        })
    }

    fn list_folder(&self, store: &str, folder: &str) -> Result<Vec<ItemInfo>, SourceError> {
        Ok(self.client.list_folder(&target(store).0, folder).map_err(from_ews)?.iter().map(info).collect())
    }

    fn import_weight(&self, raw: u64) -> u64 {
        raw.div_ceil(3) * 4
    }

    fn import_batches(&self, weights: &[u64], limit: u64) -> Vec<std::ops::Range<usize>> {
        let sizes: Vec<usize> = weights.iter().map(|w| *w as usize).collect();
        plan(&sizes, MAX_UPLOAD_BATCH, limit as usize)
    }

    fn import(
        &self,
        store: &str,
        items: &[ToImport],
        limit: u64,
        outcome: &mut dyn FnMut(usize, Imported),
    ) -> Result<(), SourceError> {
        let req: Vec<ToUpload> = items
            .iter()
            .map(|i| ToUpload {
                parent_folder_id: i.folder_id.clone(),
                item_id: i.item_id.clone(),
                action: match i.action {
                    ImportAction::CreateNew => CreateAction::CreateNew,
                    ImportAction::UpdateOrCreate => CreateAction::UpdateOrCreate,
                },
                associated: i.associated,
                data_base64: base64::engine::general_purpose::STANDARD.encode(&i.data),
            })
            .collect();
        upload_batch(self.client, &target(store).0, &req, limit as usize, &mut |i, o| {
            outcome(
                i,
                match o {
                    Outcome::Uploaded { id, .. } => Imported::Ok { id },
                    Outcome::Refused(e) => Imported::Refused(e),
                    Outcome::TooLarge => Imported::TooLarge,
                    Outcome::Uncertain(e) => Imported::Uncertain(e),
                },
            )
        })
        .map_err(from_ews)
    }
}
