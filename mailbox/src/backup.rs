//! Backing up stores (mailboxes, public folders) from any `Source` into snapshots.
//!
//! Per store: the folder tree; per folder, the changes since the sync state the parent snapshot
//! stored (or a full listing where the store has no sync), so only new and changed items are
//! exported; unchanged items are carried from the parent without being read; items the parent
//! could not export are tried again; items an interrupted run already stored are carried from its
//! resume file. Exports fill batches across folders; every 100 exported items a checkpoint makes
//! what was stored durable and notes it in the resume file. A store that the source stops (window
//! ended, a back-off longer than we wait) keeps what it stored and is reported as partial.

use crate::error::MailboxError;
use crate::resume;
use crate::sizing::{class_of, ClassSizing, DirtySizing, Learned};
use crate::source::{Change, FolderInfo, ItemInfo, Listing, Source, SourceError, ToExport};
use exarch_archive::backup::{Backup, BackupOptions, BackupStats, ItemMeta};
use exarch_archive::index::IndexTable;
use exarch_archive::lock::LockWatch;
use exarch_archive::manifest::{text, ITEM_ASSOCIATED, NO_TIME};
use exarch_archive::snapshot::Snapshot;
use exarch_archive::{Id, Repository};
use exarch_item_data::ItemData;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};

/// Exported items between checkpoints: what a killed run may have to export again.
const CHECKPOINT_EVERY: usize = 100;

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
    let queue = Mutex::new(stores.to_vec());
    let done: Mutex<Vec<Done>> = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..concurrency.max(1).min(stores.len()) {
            s.spawn(|| loop {
                let Some(store) = queue.lock().expect("queue").pop() else { return };
                let mut classes = BTreeMap::new();
                let result =
                    backup_store(repo, index.clone(), source, settings, &store, &|t| notice(&store, t), &mut classes);
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
struct Pending {
    item: ToExport,
    meta: ItemMeta,
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
        parent.as_ref().and_then(|p| serde_json::from_slice(&p.manifest().source_state).ok()).unwrap_or_default();
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
        let m = p.manifest();
        let fid = |f: u32| m.folders.get(f as usize).map(|f| text(&f.source_id).into_owned()).unwrap_or_default();
        for (i, it) in m.items.iter().enumerate() {
            parent_items.entry(fid(it.folder.to_native())).or_default().push(i);
        }
        for s in m.skipped.iter() {
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
                .map(|v| v.iter().map(|&i| (text(&p.manifest().items[i].source_id).into_owned(), i)).collect())
                .unwrap_or_default(),
            _ => HashMap::new(),
        };
        let mut pending: Vec<Pending> = Vec::new();
        match listing {
            Listing::Full(listed) => {
                // Everything in the folder now; what the parent holds with the same change key is
                // carried, the rest exported, and what is gone is left out.
                let m = parent.as_ref().map(|p| p.manifest());
                let unchanged: HashSet<&str> = listed
                    .iter()
                    .filter(|c| {
                        carried.get(&c.id).zip(m).is_some_and(|(&i, m)| text(&m.items[i].change_key) == c.change_key)
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
            let m = p.manifest();
            let mut keys: Vec<(&String, &usize)> = carried.iter().collect();
            keys.sort();
            for (id, &i) in keys {
                let it = &m.items[i];
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

/// Hands an exported item to the backup, with the metadata the listing gave it.
fn store_item(
    backup: &Mutex<&mut Backup>,
    metas: &HashMap<&str, &ItemMeta>,
    id: &str,
    data: ItemData,
) -> Result<(), SourceError> {
    let Some(m) = metas.get(id) else {
        return Err(SourceError::Failed(format!("the source delivered item {id}, which was not asked for").into()));
    };
    let mut meta = (*m).clone();
    meta.name = data.file_name();
    // Small items go through memory; large ones were spooled to disk and are read as a stream.
    if data.in_memory().is_some() {
        let bytes = data.into_vec().map_err(|e| SourceError::Failed(Box::new(e)))?;
        backup.lock().expect("backup").add_item(meta, bytes)?;
    } else {
        backup.lock().expect("backup").add_item_reader(meta, data.into_reader())?;
    }
    Ok(())
}

/// What `export_all` works for: the store, the run, and each folder's class.
struct Run<'a> {
    source: &'a dyn Source,
    store: &'a str,
    settings: &'a RunSettings,
    parent_id: Option<Id>,
    resume_at: &'a std::path::Path,
    classes: &'a HashMap<u32, &'static str>,
}

/// The export queue of a store, shared by its request threads.
struct Queue<'s> {
    /// Items in listing order, with their class; handed-back items go to the front.
    shared: VecDeque<(ToExport, &'static str)>,
    /// Classes with a queue of their own: those the server's time limit made slow, and, once a
    /// batch of several classes timed out (which of them is slow is not known yet), every class.
    own: BTreeMap<&'static str, VecDeque<ToExport>>,
    separate: bool,
    sizing: &'s mut BTreeMap<&'static str, ClassSizing>,
    dirty: DirtySizing,
    /// Batches out with a request thread (they may hand items back).
    out: usize,
    since_checkpoint: usize,
    /// Why the store stops early, or what failed: every thread ends.
    end: Option<Result<String, MailboxError>>,
}

/// A batch taken from the queue: items with their classes.
struct Taken {
    batch: Vec<ToExport>,
    classes: Vec<&'static str>,
}

impl Queue<'_> {
    fn limited(&self, class: &str) -> bool {
        self.sizing.get(class).is_some_and(ClassSizing::is_limited)
    }

    /// Moves the items of classes that have become slow (or of every class, once classes are to
    /// be told apart) to their own queues.
    fn sort_out_slow(&mut self) {
        if !self.separate && self.shared.iter().all(|(_, c)| !self.limited(c)) {
            return;
        }
        let shared = std::mem::take(&mut self.shared);
        for (t, c) in shared {
            if self.separate || self.limited(c) {
                self.own.entry(c).or_default().push_back(t);
            } else {
                self.shared.push_back((t, c));
            }
        }
    }

    /// The next batch. A class the server's time limit made slow (a big calendar) gets batches of
    /// its own, of its learned size, with several requests in flight; the other items share
    /// batches in listing order (so small folders fill them up), one request at a time, so that a
    /// failing batch's untried half joins the very next batch (group testing's economy) and a
    /// back-off holds the whole store. Both are also sized by the dirty items met.
    fn take(&mut self, source: &dyn Source) -> Option<Taken> {
        let limit = source.batch_limit();
        let dirty_cap = self.dirty.cap(limit);
        // A slow class may have several requests out; other classes one at a time.
        let sizing = &*self.sizing;
        let busy = self.out > 0;
        let pick = self
            .own
            .iter_mut()
            .find(|(c, q)| !q.is_empty() && (!busy || sizing.get(*c).is_some_and(ClassSizing::is_limited)));
        if let Some((&class, queue)) = pick {
            let cap = sizing.get(class).map_or(limit, |s| s.cap(limit)).min(dirty_cap);
            let head = queue.make_contiguous();
            let n = source.next_batch(head, cap).clamp(1, head.len());
            self.out += 1;
            return Some(Taken { batch: queue.drain(..n).collect(), classes: vec![class; n] });
        }
        if self.out > 0 || self.shared.is_empty() {
            return None;
        }
        let items: Vec<ToExport> = self.shared.iter().take(2 * limit).map(|(t, _)| t.clone()).collect();
        let n = source.next_batch(&items, dirty_cap).clamp(1, items.len());
        self.out += 1;
        let (batch, classes) = self.shared.drain(..n).unzip();
        Some(Taken { batch, classes })
    }
}

/// Exports `list` into the backup, `settings.requests_per_store` requests at a time, with
/// checkpoints: each batch of one folder class, sized by that class's learned size and by the dirty
/// items met. Returns why it stopped early, if it did.
fn export_all(
    backup: &mut Backup,
    run: &Run,
    list: &[Pending],
    sizing: &mut BTreeMap<&'static str, ClassSizing>,
) -> Result<Option<String>, MailboxError> {
    let settings = run.settings;
    let metas: HashMap<&str, &ItemMeta> = list.iter().map(|p| (p.item.id.as_str(), &p.meta)).collect();
    let shared: VecDeque<(ToExport, &'static str)> =
        list.iter().map(|p| (p.item.clone(), run.classes.get(&p.meta.folder).copied().unwrap_or("mail"))).collect();
    let queue = Mutex::new(Queue {
        shared,
        own: BTreeMap::new(),
        separate: false,
        sizing,
        dirty: DirtySizing::default(),
        out: 0,
        since_checkpoint: 0,
        end: None,
    });
    // Classes an earlier run found slow start in their own queues.
    queue.lock().expect("queue").sort_out_slow();
    let wake = std::sync::Condvar::new();
    let backup = Mutex::new(backup);
    let out_of_time = || settings.deadline.is_some_and(|d| std::time::Instant::now() >= d);
    std::thread::scope(|s| {
        for _ in 0..settings.requests_per_store.max(1) {
            s.spawn(|| {
                while let Some(t) = next(&queue, &wake, run.source, &out_of_time) {
                    let r = export_one(&backup, run, &metas, &t);
                    let mut q = queue.lock().expect("queue");
                    q.out -= 1;
                    match r {
                        Ok(r) => settle(&mut q, &backup, run, &metas, t, r, &out_of_time),
                        Err(e) => {
                            q.end.get_or_insert(e);
                        }
                    }
                    wake.notify_all();
                }
            });
        }
    });
    match queue.into_inner().expect("queue").end {
        None => Ok(None),
        Some(Ok(why)) => Ok(Some(why)),
        Some(Err(e)) => Err(e),
    }
}

/// The next batch for a request thread; None when the store is done or ends early.
fn next(
    queue: &Mutex<Queue>,
    wake: &std::sync::Condvar,
    source: &dyn Source,
    out_of_time: &dyn Fn() -> bool,
) -> Option<Taken> {
    let mut q = queue.lock().expect("queue");
    loop {
        if q.end.is_some() {
            return None;
        }
        if out_of_time() {
            q.end = Some(Ok("the time window (--max-duration) ended".into()));
            return None;
        }
        if let Some(t) = q.take(source) {
            return Some(t);
        }
        if q.out == 0 {
            return None;
        }
        // Others may hand items back: wait for them.
        q = wake.wait(q).expect("queue");
    }
}

/// What one export request showed.
struct Sent {
    outcome: crate::source::ExportOutcome,
    newly_skipped: usize,
    server_secs: f64,
}

fn export_one(
    backup: &Mutex<&mut Backup>,
    run: &Run,
    metas: &HashMap<&str, &ItemMeta>,
    t: &Taken,
) -> Result<Sent, Result<String, MailboxError>> {
    let skipped = std::sync::atomic::AtomicUsize::new(0);
    // Time spent storing items is ours, not the server's: it is left out of the measurement.
    let mut sink_secs = 0.0f64;
    let mut ok = |id: &str, data: ItemData| -> Result<(), SourceError> {
        let started = std::time::Instant::now();
        let r = store_item(backup, metas, id, data);
        sink_secs += started.elapsed().as_secs_f64();
        r
    };
    let mut failed = |id: &str, err: String| {
        let folder = metas.get(id).map(|m| m.folder).unwrap_or(0);
        backup.lock().expect("backup").skip(folder, id, &err);
        skipped.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    };
    let started = std::time::Instant::now();
    let outcome = match run.source.export(run.store, &t.batch, &mut ok, &mut failed) {
        Ok(o) => o,
        // The server wants a longer pause than we wait, or the window ends first: keep what was
        // exported (the caller checkpoints) and stop this store for the run.
        Err(SourceError::Stopped(why)) => return Err(Ok(why)),
        Err(e) => return Err(Err(e.into())),
    };
    let secs = started.elapsed().as_secs_f64();
    Ok(Sent {
        outcome,
        newly_skipped: skipped.load(std::sync::atomic::Ordering::Relaxed),
        server_secs: (secs - sink_secs).max(0.0),
    })
}

/// Takes in what a request showed: items handed back go first into their class's queue (timed-out
/// ones then split by the class's smaller size — except an item that timed out alone, which no
/// smaller request can help: it is recorded as skipped, with the reason); sizes learn; every 100
/// items a checkpoint.
fn settle(
    q: &mut Queue,
    backup: &Mutex<&mut Backup>,
    run: &Run,
    metas: &HashMap<&str, &ItemMeta>,
    t: Taken,
    r: Sent,
    out_of_time: &dyn Fn() -> bool,
) {
    let n = t.batch.len();
    let limit = run.source.batch_limit();
    let mut back: Vec<usize> =
        r.outcome.untried.iter().chain(&r.outcome.timed_out).copied().filter(|&k| k < n).collect();
    back.sort_unstable();
    back.dedup();
    // Sizes learn per class. A batch of several classes that timed out does not say which is
    // slow: from then on, each class goes in batches of its own.
    let mut present: Vec<&'static str> = t.classes.clone();
    present.sort_unstable();
    present.dedup();
    let timed_out = !r.outcome.timed_out.is_empty();
    if timed_out && present.len() > 1 {
        q.separate = true;
        for class in &present {
            q.sizing.entry(class).or_default().timeouts += 1;
        }
    } else {
        for class in &present {
            let sizes = q.sizing.entry(class).or_default();
            if timed_out {
                sizes.timed_out(n, r.server_secs);
            } else if r.outcome.untried.is_empty() && r.newly_skipped == 0 {
                sizes.succeeded(n, r.server_secs, limit);
            }
        }
    }
    if !r.outcome.timed_out.is_empty() && n == 1 {
        let id = &t.batch[0].id;
        let folder = metas.get(id.as_str()).map(|m| m.folder).unwrap_or(0);
        backup.lock().expect("backup").skip(
            folder,
            id,
            "ErrorTimeoutExpired: this item alone takes the server longer than it allows a request",
        );
        back.clear();
    }
    // Handed back: to the front (a class with its own queue: to the front of that).
    for &k in back.iter().rev() {
        let (item, class) = (t.batch[k].clone(), t.classes[k]);
        match q.own.get_mut(class) {
            Some(own) => own.push_front(item),
            None => q.shared.push_front((item, class)),
        }
    }
    q.sort_out_slow();
    let resolved = n - back.len().min(n);
    q.dirty.record(resolved, r.newly_skipped);
    q.since_checkpoint += resolved;
    if q.since_checkpoint >= CHECKPOINT_EVERY || out_of_time() {
        q.since_checkpoint = 0;
        let saved = backup.lock().expect("backup").checkpoint().map_err(MailboxError::from).and_then(|items| {
            resume::save(run.resume_at, run.parent_id, &items).map_err(|e| MailboxError::Cache(e.to_string()))
        });
        if let Err(e) = saved {
            q.end.get_or_insert(Err(e));
        }
    }
}
