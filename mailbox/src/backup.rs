//! Backing up stores (mailboxes, public folders) from any `Source` into snapshots.
//!
//! Per store: the folder tree; per folder, the changes since the sync state the parent snapshot
//! stored (or a full listing where the store has no sync), so only new and changed items are
//! exported; unchanged items are carried from the parent without being read; items the parent
//! could not export are tried again; items an interrupted run already stored are carried from its
//! resume file. The exports run through `export_queue.rs` (batches, learned sizes, checkpoints
//! every 100 exported items that make what was stored durable and note it in the resume file). A store that the source stops (window
//! ended, a back-off longer than we wait) keeps what it stored and is reported as partial.

use crate::error::MailboxError;
use crate::export_queue::{export_all, Run};
use crate::resume;
use crate::sizing::{class_of, ClassSizing, Learned};
use crate::source::{Change, FolderInfo, ItemInfo, Listing, Source, ToExport};
use exarch_archive::backup::{Backup, BackupOptions, BackupStats, ItemMeta};
use exarch_archive::index::IndexTable;
use exarch_archive::lock::LockWatch;
use exarch_archive::manifest::{text, ITEM_ASSOCIATED, NO_TIME};
use exarch_archive::snapshot::Snapshot;
use exarch_archive::{Id, Repository};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};

/// What every store of one run shares.
#[derive(Clone)]
pub struct RunSettings {
    pub run_id: [u8; 16],
    pub time_ms: i64,
    /// No new export batch starts after this.
    pub deadline: Option<std::time::Instant>,
    /// The repository lock the run holds (checked before anything is committed).
    pub lock: LockWatch,
    /// Sealing threads per store.
    pub workers: usize,
    /// Export requests in flight at once for one store.
    pub requests_per_store: usize,
    /// Moved forward as stores end and items are stored.
    pub progress: Arc<crate::progress::Progress>,
}

/// What the next run needs, stored in the snapshot: each folder's sync state, and the default
/// folders' roles (SPEC.md §10.3).
#[derive(Debug, Default, Serialize, Deserialize)]
struct SourceState {
    version: u32,
    /// The protocol that made the snapshot (`ews`, `graph`; absent before Graph: EWS).
    #[serde(default)]
    protocol: Option<String>,
    folders: BTreeMap<String, String>,
    /// Folder id → role (`inbox`, `sentitems`, ...), so that a restore finds the default folders in
    /// a mailbox where they have other names.
    #[serde(default)]
    default_folders: BTreeMap<String, String>,
    /// Folder class (`calendar`, `mail`, …) → the export batch size it learned (SPEC.md §10.3).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    batch_sizes: BTreeMap<String, Learned>,
}

/// The outcome for one store.
pub struct Done {
    pub store: String,
    pub result: Result<(Id, BackupStats), MailboxError>,
    /// Per folder class: the batch size it settled on and the time-outs met (classes that met
    /// none and kept the source's limit are left out).
    pub classes: BTreeMap<String, ClassReport>,
}

/// What a folder class's batch sizing came to in a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ClassReport {
    pub batch_size: usize,
    pub timeouts: u64,
}

/// Backs up `stores` with `concurrency` at a time; `notice(store, text)` hears warnings as they
/// come, `finished(&Done)` each store's outcome as it ends. Returns every outcome, by store.
#[allow(clippy::too_many_arguments)]
pub fn backup_run(
    repo: &Repository,
    index: Arc<IndexTable>,
    source: &dyn Source,
    stores: &[String],
    settings: &RunSettings,
    concurrency: usize,
    notice: &(dyn Fn(&str, &str) + Sync),
    finished: &(dyn Fn(&Done) + Sync),
) -> Vec<Done> {
    settings.progress.stores(stores.len());
    let queue = Mutex::new(stores.to_vec());
    let done: Mutex<Vec<Done>> = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..concurrency.max(1).min(stores.len()) {
            s.spawn(|| loop {
                let Some(store) = queue.lock().expect("queue").pop() else { return };
                let mut classes = BTreeMap::new();
                tracing::info!(store = %store, "backup started");
                let result =
                    backup_store(repo, index.clone(), source, settings, &store, &|t| notice(&store, t), &mut classes);
                match &result {
                    Ok((id, st)) => tracing::info!(
                        store = %store,
                        snapshot = %id.short(),
                        items = st.items,
                        exported = st.items_read,
                        unchanged = st.items_carried,
                        skipped = st.skipped,
                        "backup finished"
                    ),
                    Err(e) if e.is_partial() => tracing::warn!(store = %store, error = %e, "backup stopped part-way"),
                    Err(e) => tracing::warn!(store = %store, error = %e, "backup failed"),
                }
                settings.progress.store_done();
                let d = Done { store, result, classes };
                finished(&d);
                done.lock().expect("done").push(d);
            });
        }
    });
    let mut done = done.into_inner().expect("done");
    done.sort_by(|a, b| a.store.cmp(&b.store));
    done
}

/// An item to export and the metadata it will be recorded with.
#[derive(Clone)]
pub(crate) struct Pending {
    pub(crate) item: ToExport,
    pub(crate) meta: ItemMeta,
}

fn meta_of(folder: u32, c: &ItemInfo) -> ItemMeta {
    ItemMeta {
        folder,
        name: String::new(),
        source_id: c.id.clone(),
        change_key: c.change_key.clone(),
        item_class: c.item_class.clone(),
        subject: c.subject.clone(),
        sender: c.from.clone(),
        received_ms: c.received_ms,
        flags: if c.associated { ITEM_ASSOCIATED } else { 0 },
    }
}

/// Folder ids → the manifest's folder indexes, parents first (a folder's parent comes from the
/// listing; what is not listed is the top of the store).
struct Folders<'a> {
    by_id: HashMap<&'a str, &'a FolderInfo>,
    index_of: HashMap<String, u32>,
}

impl Folders<'_> {
    fn index(&mut self, id: &str, backup: &mut Backup, depth: usize) -> u32 {
        if let Some(i) = self.index_of.get(id) {
            return *i;
        }
        let Some(f) = self.by_id.get(id).copied() else { return 0 };
        let p = if depth > 64 { 0 } else { self.index(&f.parent_id, backup, depth + 1) };
        let i = backup.folder(p, &f.name, id, &f.class);
        self.index_of.insert(id.to_string(), i);
        i
    }
}

/// Backs up one store into a new snapshot.
pub fn backup_store(
    repo: &Repository,
    index: Arc<IndexTable>,
    source: &dyn Source,
    settings: &RunSettings,
    store: &str,
    notice: &dyn Fn(&str),
    classes: &mut BTreeMap<String, ClassReport>,
) -> Result<(Id, BackupStats), MailboxError> {
    // The parent: the newest snapshot of this store that opens. A damaged newer one is passed
    // over (and named), so one bad snapshot does not block every later backup.
    let (found, damaged) = repo.latest_intact(store)?;
    for (id, why) in &damaged {
        notice(&format!(
            "snapshot {} is damaged ({why}); continuing from {} — `exarch forget {}` removes it",
            id.short(),
            found.as_ref().map(|(p, _)| format!("snapshot {}", p.short())).unwrap_or_else(|| "a full export".into()),
            id.short()
        ));
    }
    let (parent_id, parent): (Option<Id>, Option<Snapshot>) = match found {
        Some((id, s)) => (Some(id), Some(s)),
        None => (None, None),
    };
    let mut prev: SourceState =
        parent.as_ref().and_then(|p| serde_json::from_slice(p.source_state()).ok()).unwrap_or_default();
    // Sync states of another protocol mean nothing here (a mailbox moved to Exchange Online and
    // now backed up through Graph): every folder is listed in full once.
    if prev.protocol.as_deref().unwrap_or("ews") != source.protocol() {
        if !prev.folders.is_empty() {
            notice(&format!(
                "the parent snapshot was made through {}; every folder is read in full once",
                prev.protocol.as_deref().unwrap_or("ews")
            ));
        }
        prev.folders.clear();
        prev.batch_sizes.clear();
    }
    let opts = BackupOptions {
        mailbox: store.to_string(),
        source: source.describe(),
        time_ms: settings.time_ms,
        parent: parent_id,
        run_id: settings.run_id,
        workers: settings.workers,
        lock: settings.lock.clone(),
    };
    let mut backup = Backup::start(repo, index, opts)?;
    let resume_at = resume::path(repo, store);
    let resumed = resume::load(&resume_at, parent_id);

    let tree = source.folders(store)?;
    let mut folders = Folders { by_id: tree.iter().map(|f| (f.id.as_str(), f)).collect(), index_of: HashMap::new() };
    let mut folder_ids: Vec<&str> = folders.by_id.keys().copied().collect();
    folder_ids.sort();

    // The parent's items and skipped items, by folder id.
    let mut parent_items: HashMap<String, Vec<usize>> = HashMap::new();
    let mut parent_skipped: HashMap<String, Vec<String>> = HashMap::new();
    if let Some(p) = &parent {
        let fid = |f: u32| p.folders().get(f as usize).map(|f| text(&f.source_id).into_owned()).unwrap_or_default();
        for (i, it) in p.items().enumerate() {
            parent_items.entry(fid(it.folder.to_native())).or_default().push(i);
        }
        for s in p.skipped().iter() {
            parent_skipped.entry(fid(s.folder.to_native())).or_default().push(text(&s.source_id).into_owned());
        }
    }

    let mut state = SourceState {
        version: 1,
        protocol: Some(source.protocol().to_string()),
        folders: BTreeMap::new(),
        default_folders: source.default_folders(store),
        batch_sizes: BTreeMap::new(),
    };
    // Each folder's class, for batch sizes learned per class.
    let mut class_of_folder: HashMap<u32, &'static str> = HashMap::new();
    // Everything to export, from all folders: batches then fill up across small folders.
    let mut to_export: Vec<Pending> = Vec::new();
    for fid in folder_ids {
        let folder = folders.index(fid, &mut backup, 0);
        class_of_folder.insert(folder, class_of(&folders.by_id[fid].class));
        let since = prev.folders.get(fid).cloned();
        let listing = source.changes(store, fid, since.as_deref())?;
        let full = matches!(listing, Listing::Full(_));
        // What the parent holds for this folder is a valid base only if we continue from its
        // state (a full listing is always compared with the parent).
        let base = full || since.is_some();
        let mut carried: HashMap<String, usize> = match (&parent, base) {
            (Some(p), true) => parent_items
                .get(fid)
                .map(|v| v.iter().map(|&i| (text(&p.item(i).source_id).into_owned(), i)).collect())
                .unwrap_or_default(),
            _ => HashMap::new(),
        };
        let mut pending: Vec<Pending> = Vec::new();
        match listing {
            Listing::Full(listed) => {
                // Everything in the folder now; what the parent holds with the same change key is
                // carried, the rest exported, and what is gone is left out.
                let m = parent.as_ref();
                let unchanged: HashSet<&str> = listed
                    .iter()
                    .filter(|c| {
                        carried.get(&c.id).zip(m).is_some_and(|(&i, m)| text(&m.item(i).change_key) == c.change_key)
                    })
                    .map(|c| c.id.as_str())
                    .collect();
                carried.retain(|id, _| unchanged.contains(id.as_str()));
                for c in listed.iter().filter(|c| !unchanged.contains(c.id.as_str())) {
                    pending
                        .push(Pending { item: ToExport { id: c.id.clone(), size: c.size }, meta: meta_of(folder, c) });
                }
            }
            Listing::Delta { changes, state: next } => {
                // Later changes of an item replace earlier ones: the last word counts.
                let mut order: Vec<String> = Vec::new();
                let mut latest: HashMap<String, Option<ItemInfo>> = HashMap::new();
                for c in changes {
                    let (id, v) = match c {
                        Change::Upsert(i) => (i.id.clone(), Some(i)),
                        Change::Delete(id) => (id, None),
                    };
                    carried.remove(&id);
                    if latest.insert(id.clone(), v).is_none() {
                        order.push(id);
                    }
                }
                for id in order {
                    if let Some(Some(c)) = latest.remove(&id) {
                        pending.push(Pending { item: ToExport { id, size: c.size }, meta: meta_of(folder, &c) });
                    }
                }
                state.folders.insert(fid.to_string(), next);
            }
        }

        // Unchanged items come from the parent without being exported again.
        if let Some(p) = &parent {
            let mut keys: Vec<(&String, &usize)> = carried.iter().collect();
            keys.sort();
            for (id, &i) in keys {
                let it = p.item(i);
                let meta = ItemMeta {
                    folder,
                    name: text(&it.name).into_owned(),
                    source_id: id.clone(),
                    change_key: text(&it.change_key).into_owned(),
                    item_class: text(&it.item_class).into_owned(),
                    subject: text(&it.subject).into_owned(),
                    sender: text(&it.sender).into_owned(),
                    received_ms: it.received_ms.to_native(),
                    flags: it.flags.to_native(),
                };
                if !backup.carry_item(meta.clone(), it.size.to_native(), it.blob_hash, &it.chunks) {
                    pending.push(Pending { item: ToExport { id: id.clone(), size: it.size.to_native() }, meta });
                }
            }
            // Items the parent could not export are tried again (a full listing already queued
            // every item the folder still holds).
            if !full && since.is_some() {
                let queued: HashSet<String> = pending.iter().map(|p| p.item.id.clone()).collect();
                for id in parent_skipped.get(fid).into_iter().flatten().filter(|id| !queued.contains(*id)) {
                    let meta = ItemMeta { folder, source_id: id.clone(), received_ms: NO_TIME, ..ItemMeta::default() };
                    pending.push(Pending { item: ToExport { id: id.clone(), size: 0 }, meta });
                }
            }
        }

        // Items an interrupted run already stored are carried, not exported again.
        pending.retain(|p| {
            let Some(r) = resumed.get(&p.item.id) else { return true };
            if !p.meta.change_key.is_empty() && p.meta.change_key != r.change_key {
                return true;
            }
            let (Some(hash), Some(chunks)) = (
                Id::from_hex(&r.blob_hash),
                r.chunks.iter().map(|c| Id::from_hex(c).map(|i| i.0)).collect::<Option<Vec<[u8; 32]>>>(),
            ) else {
                return true;
            };
            let meta = ItemMeta { name: r.name.clone(), change_key: r.change_key.clone(), ..p.meta.clone() };
            !backup.carry_item(meta, r.size, hash.0, &chunks)
        });
        to_export.extend(pending);
    }

    let mut sizing: BTreeMap<&'static str, ClassSizing> = BTreeMap::new();
    for (class, l) in &prev.batch_sizes {
        if let Some(c) = ["calendar", "contacts", "tasks", "notes", "journal", "mail"].into_iter().find(|c| c == class)
        {
            sizing.insert(c, ClassSizing::from_learned(l));
        }
    }
    let run = Run { source, store, settings, parent_id, resume_at: &resume_at, classes: &class_of_folder };
    settings.progress.planned(to_export.len());
    let stopped = export_all(&mut backup, &run, &to_export, &mut sizing);
    for (class, c) in &sizing {
        if let Some(l) = c.learned() {
            state.batch_sizes.insert(class.to_string(), l);
            classes.insert(class.to_string(), ClassReport { batch_size: l.size, timeouts: c.timeouts });
        }
    }
    let stopped = stopped?;
    if let Some(why) = stopped {
        // Stopped early: what was exported is stored and listed in the resume file; no snapshot.
        let items = backup.checkpoint()?;
        resume::save(&resume_at, parent_id, &items).map_err(|e| MailboxError::Cache(e.to_string()))?;
        return Err(MailboxError::Stopped(why));
    }
    backup.set_source_state(serde_json::to_vec(&state).map_err(|e| MailboxError::Cache(e.to_string()))?);
    let done = backup.finish()?;
    let _ = std::fs::remove_file(&resume_at);
    Ok(done)
}
