//! The Microsoft Graph client as a `Source`: Exchange Online through the mailbox import and
//! export API. A store's mailbox id comes from the user's `settings/exchange` (primary, or the
//! In-Place Archive when the service names one); folders from a folder delta round; changes from
//! each folder's item delta query, continued from the relative delta link the parent snapshot
//! stored; exports of up to 20 items, whose per-item errors are recorded and retried next run.
//! Replay imports each item through the mailbox's import session (renewed before it expires);
//! an update needs the item's current change key, so a folder is listed once before its first
//! update.

use crate::source::{
    Change, CreateFolderError, ExportOutcome, FolderInfo, ImportAction, Imported, ItemInfo, Listing, Source,
    SourceError, ToExport, ToImport,
};
use crate::store::{Part, Store};
use exarch_archive::manifest::NO_TIME;
use exarch_archive::time::parse_rfc3339_ms;
use exarch_graph_source::api::{ImportMode, ImportSession, Item, ItemChange, MailboxIds};
use exarch_graph_source::export_json::Exported;
use exarch_graph_source::{GraphClient, GraphError, MAX_EXPORT_ITEMS};
use exarch_item_data::ItemData;
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

/// Listed bytes one export request may ask for: the reply is about 4/3 of it.
const MAX_EXPORT_BYTES: u64 = 48 << 20;
/// The largest item an import request carries (Exchange Online's message size limit).
pub const MAX_IMPORT_BYTES: u64 = 150 << 20;

pub struct GraphSource<'c> {
    client: &'c GraphClient,
    ids: Mutex<HashMap<String, MailboxIds>>,
    roles: Mutex<HashMap<String, BTreeMap<String, String>>>,
    sessions: Mutex<HashMap<String, ImportSession>>,
    /// Folder → item id → change key, for updates.
    keys: Mutex<HashMap<(String, String), HashMap<String, String>>>,
}

impl<'c> GraphSource<'c> {
    pub fn new(client: &'c GraphClient) -> GraphSource<'c> {
        GraphSource {
            client,
            ids: Mutex::new(HashMap::new()),
            roles: Mutex::new(HashMap::new()),
            sessions: Mutex::new(HashMap::new()),
            keys: Mutex::new(HashMap::new()),
        }
    }

    fn ids(&self, address: &str) -> Result<MailboxIds, SourceError> {
        if let Some(i) = self.ids.lock().expect("ids").get(address) {
            return Ok(i.clone());
        }
        let i = self.client.mailbox_ids(address).map_err(from_graph)?;
        self.ids.lock().expect("ids").insert(address.to_string(), i.clone());
        Ok(i)
    }

    /// The Graph mailbox id a store lives in.
    fn mailbox_id(&self, store: &str) -> Result<String, SourceError> {
        match Store::parse(store) {
            Store::PublicFolders => {
                Err(unsupported("public folders are not reachable through Graph; back them up with --ews"))
            }
            Store::Mailbox { address, part: Part::Primary } => Ok(self.ids(&address)?.primary),
            Store::Mailbox { address, part: Part::Archive } => self
                .ids(&address)?
                .archive
                .ok_or_else(|| unsupported(&format!("{address} has no In-Place Archive that Graph names"))),
            Store::Mailbox { .. } => Err(unsupported(
                "Recoverable Items are not reachable through Graph's mailbox API; back them up with --ews",
            )),
        }
    }

    fn session(&self, store: &str, mailbox_id: &str, renew: bool) -> Result<ImportSession, SourceError> {
        let mut s = self.sessions.lock().expect("sessions");
        match s.get(store) {
            Some(x) if x.fresh() && !renew => Ok(x.clone()),
            _ => {
                let x = self.client.create_import_session(mailbox_id).map_err(from_graph)?;
                s.insert(store.to_string(), x.clone());
                Ok(x)
            }
        }
    }

    /// The change key of `item` in `folder` now, if it is there (the folder listed once).
    fn change_key(
        &self,
        store: &str,
        mailbox_id: &str,
        folder: &str,
        item: &str,
    ) -> Result<Option<String>, SourceError> {
        let key = (store.to_string(), folder.to_string());
        if !self.keys.lock().expect("keys").contains_key(&key) {
            let listed = self.client.list_items(mailbox_id, folder).map_err(from_graph)?;
            let map = listed.into_iter().map(|i| (i.id, i.change_key)).collect();
            self.keys.lock().expect("keys").insert(key.clone(), map);
        }
        Ok(self.keys.lock().expect("keys").get(&key).and_then(|m| m.get(item).cloned()))
    }
}

fn unsupported(why: &str) -> SourceError {
    SourceError::Failed(why.to_string().into())
}

/// A Graph error in the layer's terms: a stop stays a stop, the archive's own errors come back out.
fn from_graph(e: GraphError) -> SourceError {
    match e {
        GraphError::Stopped(why) => SourceError::Stopped(why),
        GraphError::Sink(inner) => match inner.downcast::<exarch_archive::Error>() {
            Ok(a) => SourceError::Archive(*a),
            Err(other) => SourceError::Failed(other),
        },
        e => SourceError::Failed(Box::new(e)),
    }
}

fn to_graph(e: SourceError) -> GraphError {
    match e {
        SourceError::Archive(a) => GraphError::Sink(Box::new(a)),
        SourceError::Failed(f) => GraphError::Sink(f),
        SourceError::Stopped(why) => GraphError::Stopped(why),
    }
}

fn info(i: Item) -> ItemInfo {
    ItemInfo {
        received_ms: parse_rfc3339_ms(&i.time).unwrap_or(NO_TIME),
        id: i.id,
        change_key: i.change_key,
        item_class: i.class,
        subject: String::new(),
        from: String::new(),
        size: i.size,
        associated: false,
    }
}

impl Source for GraphSource<'_> {
    fn describe(&self) -> String {
        format!("graph:{}", self.client.base())
    }

    fn protocol(&self) -> &'static str {
        "graph"
    }

    fn has_store(&self, store: &str) -> Result<bool, SourceError> {
        match Store::parse(store) {
            Store::Mailbox { address, part: Part::Archive } => Ok(self.ids(&address)?.archive.is_some()),
            Store::Mailbox { part: Part::Primary, .. } => Ok(true),
            _ => self.mailbox_id(store).map(|_| true),
        }
    }

    fn folders(&self, store: &str) -> Result<Vec<FolderInfo>, SourceError> {
        let folders = self.client.folders(&self.mailbox_id(store)?).map_err(from_graph)?;
        let roles: BTreeMap<String, String> =
            folders.iter().filter_map(|f| Some((f.id.clone(), f.well_known.clone()?))).collect();
        self.roles.lock().expect("roles").insert(store.to_string(), roles);
        Ok(folders
            .into_iter()
            .map(|f| FolderInfo { id: f.id, parent_id: f.parent_id, name: f.name, class: f.class })
            .collect())
    }

    fn default_folders(&self, store: &str) -> BTreeMap<String, String> {
        if let Some(r) = self.roles.lock().expect("roles").get(store) {
            return r.clone();
        }
        let _ = self.folders(store);
        self.roles.lock().expect("roles").get(store).cloned().unwrap_or_default()
    }

    fn changes(&self, store: &str, folder: &str, since: Option<&str>) -> Result<Listing, SourceError> {
        let d = self.client.item_delta(&self.mailbox_id(store)?, folder, since).map_err(from_graph)?;
        let changes = d
            .changes
            .into_iter()
            .map(|c| match c {
                ItemChange::Upsert(i) => Change::Upsert(info(i)),
                ItemChange::Removed(id) => Change::Delete(id),
            })
            .collect();
        Ok(Listing::Delta { changes, state: d.delta_link })
    }

    fn batch_limit(&self) -> usize {
        MAX_EXPORT_ITEMS
    }

    fn next_batch(&self, items: &[ToExport], cap: usize) -> usize {
        let cap = cap.clamp(1, MAX_EXPORT_ITEMS);
        let mut bytes = 0u64;
        let mut n = 0;
        for it in items.iter().take(cap) {
            if n > 0 && bytes + it.size > MAX_EXPORT_BYTES {
                break;
            }
            bytes += it.size;
            n += 1;
        }
        n.max(1)
    }

    fn export(
        &self,
        store: &str,
        batch: &[ToExport],
        ok: &mut dyn FnMut(&str, ItemData) -> Result<(), SourceError>,
        failed: &mut dyn FnMut(&str, String),
    ) -> Result<ExportOutcome, SourceError> {
        let mailbox_id = self.mailbox_id(store)?;
        let ids: Vec<&str> = batch.iter().map(|t| t.id.as_str()).collect();
        let mut out = ExportOutcome::default();
        self.client
            .export(&mailbox_id, &ids, &mut |e| {
                match e {
                    Exported::Ok { id, data, .. } => ok(&id, data).map_err(to_graph)?,
                    // A time-out is not the item's fault: it goes again in a smaller request.
                    Exported::Failed { id, reason } if reason.starts_with("ErrorTimeoutExpired") => {
                        out.timed_out.extend(ids.iter().position(|x| *x == id));
                    }
                    Exported::Failed { id, reason } => failed(&id, reason),
                }
                Ok(())
            })
            .map_err(from_graph)?;
        out.timed_out.sort_unstable();
        Ok(out)
    }

    fn create_folder(
        &self,
        store: &str,
        parent: Option<&str>,
        name: &str,
        class: &str,
    ) -> Result<String, CreateFolderError> {
        let mailbox_id = self.mailbox_id(store).map_err(CreateFolderError::Failed)?;
        self.client.create_folder(&mailbox_id, parent, name, class).map_err(|e| {
            let exists = matches!(&e, GraphError::Http { status: 409, .. })
                || matches!(&e, GraphError::Http { code, .. } if code == "ErrorFolderExists");
            if e.outcome_unknown() || exists {
                CreateFolderError::LookAgain(from_graph(e))
            } else {
                CreateFolderError::Failed(from_graph(e))
            }
        })
    }

    fn list_folder(&self, store: &str, folder: &str) -> Result<Vec<ItemInfo>, SourceError> {
        let listed = self.client.list_items(&self.mailbox_id(store)?, folder).map_err(from_graph)?;
        let map = listed.iter().map(|i| (i.id.clone(), i.change_key.clone())).collect();
        self.keys.lock().expect("keys").insert((store.to_string(), folder.to_string()), map);
        Ok(listed.into_iter().map(info).collect())
    }

    fn import_weight(&self, raw: u64) -> u64 {
        raw
    }

    fn import_batches(&self, weights: &[u64], _limit: u64) -> Vec<std::ops::Range<usize>> {
        // One item per request: that is what an import URL takes.
        (0..weights.len()).map(|i| i..i + 1).collect()
    }

    fn import(
        &self,
        store: &str,
        items: &[ToImport],
        limit: u64,
        outcome: &mut dyn FnMut(usize, Imported),
    ) -> Result<(), SourceError> {
        let mailbox_id = self.mailbox_id(store)?;
        for (i, it) in items.iter().enumerate() {
            if it.data.len() as u64 > limit.min(MAX_IMPORT_BYTES) {
                outcome(i, Imported::TooLarge);
                continue;
            }
            let current = match (&it.action, &it.item_id) {
                (ImportAction::UpdateOrCreate, Some(id)) => {
                    self.change_key(store, &mailbox_id, &it.folder_id, id)?.map(|ck| (id.clone(), ck))
                }
                _ => None,
            };
            let mode = match &current {
                Some((id, ck)) => ImportMode::Update { item_id: id, change_key: ck },
                None => ImportMode::Create,
            };
            let mut renewed = false;
            let result = loop {
                let session = self.session(store, &mailbox_id, renewed)?;
                match self.client.import_item(&mailbox_id, &session, &it.folder_id, mode, &it.data) {
                    // An expired or revoked import URL: a new session, once.
                    Err(GraphError::Auth(_) | GraphError::Forbidden { .. }) if !renewed => renewed = true,
                    r => break r,
                }
            };
            match result {
                Ok((id, ck)) => {
                    if let Some(m) = self.keys.lock().expect("keys").get_mut(&(store.to_string(), it.folder_id.clone()))
                    {
                        m.insert(id.clone(), ck);
                    }
                    outcome(i, Imported::Ok { id })
                }
                Err(GraphError::Stopped(why)) => return Err(SourceError::Stopped(why)),
                Err(e) if e.outcome_unknown() => outcome(i, Imported::Uncertain(e.to_string())),
                Err(GraphError::Http { status: 413, .. }) => outcome(i, Imported::TooLarge),
                Err(e @ (GraphError::Http { status: 400..=499, .. } | GraphError::NotFound { .. })) => {
                    outcome(i, Imported::Refused(e.to_string()))
                }
                Err(e) => return Err(from_graph(e)),
            }
        }
        Ok(())
    }
}
