//! Putting archived items back into a store (replay), written once over any `Source`.
//!
//! The imported stream is the one the export gave, so the restored item is the original (same
//! properties, same calendar UID). Steps: pick the items (folders, ids, dates); find each target
//! folder by path in the target store and create what is missing (default folders by role, so an
//! English Inbox goes into a German Posteingang); import in batches under the request limit,
//! isolating refused items; record every request in a journal in the cache so that a killed
//! replay continues without duplicates.
//!
//! Import action: `UpdateOrCreate` on the id an earlier replay gave the item, else, restoring into
//! the original store and an existing folder, on the original item id or on an item of the folder
//! that looks the same (class, subject, received time); `CreateNew` otherwise.

use crate::error::MailboxError;
use crate::import::import_all;
use crate::journal::{Journal, Recovered};
pub use crate::select::{select, Selection};
use crate::source::{CreateFolderError, ImportAction, ItemInfo, Source};
use crate::store::{Part, Store};
use exarch_archive::manifest::{text, ArchivedItem};
use exarch_archive::restore::ItemReader;
use exarch_archive::snapshot::Snapshot;
use exarch_archive::Id;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Mutex;

type Result<T, E = MailboxError> = std::result::Result<T, E>;

/// The top folder a restore into another store goes under, named for the snapshot's time.
pub fn restored_folder_name(time_ms: i64) -> String {
    format!("Restored {}", folder_time(time_ms))
}

/// The folder Recoverable Items are replayed into, in the primary mailbox: never back into
/// Deletions, Purges or Versions, which Exchange manages itself.
pub fn recovered_folder_name(time_ms: i64) -> String {
    format!("Recovered Items {}", folder_time(time_ms))
}

fn folder_time(time_ms: i64) -> String {
    let t =
        time::OffsetDateTime::from_unix_timestamp(time_ms.div_euclid(1000)).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let fmt = time::macros::format_description!("[year]-[month]-[day] [hour].[minute].[second]");
    format!("{} UTC", t.format(&fmt).unwrap_or_default())
}

/// Where items of a snapshot of `from` go: the target store, and the folder path under which
/// they are put there (empty: their original paths). `to` names another mailbox or store; an
/// address alone means the same part of that user's mailbox. An archive's items go back into the
/// archive, or under `Restored <time>` in the primary mailbox when the target has none; Recoverable
/// Items always go under `Recovered Items <time>` in the primary mailbox.
pub fn destination(
    source: &dyn Source,
    from: &str,
    to: Option<&str>,
    in_place: bool,
    time_ms: i64,
) -> Result<(String, Vec<String>)> {
    let origin = Store::parse(from);
    let wanted = match to.map(Store::parse) {
        None => origin.clone(),
        Some(t) if t.part() == Part::Primary && t != Store::PublicFolders => t.with_part(origin.part()),
        Some(t) => t,
    };
    if wanted.part().is_recoverable_items() {
        return Ok((wanted.with_part(Part::Primary).name(), vec![recovered_folder_name(time_ms)]));
    }
    if wanted.part() == Part::Archive && !source.has_store(&wanted.name())? {
        return Ok((wanted.with_part(Part::Primary).name(), vec![restored_folder_name(time_ms)]));
    }
    let other = !wanted.name().eq_ignore_ascii_case(from);
    let base = if other && !in_place { vec![restored_folder_name(time_ms)] } else { Vec::new() };
    Ok((wanted.name(), base))
}

/// The target store's folder tree.
#[derive(Clone)]
pub struct Tree {
    root: String,
    /// (parent id, lower-case display name) → folder id
    children: HashMap<(String, String), String>,
    /// folder id → (parent id, display name)
    folders: HashMap<String, (String, String)>,
}

impl Tree {
    fn load(source: &dyn Source, store: &str) -> Result<Tree> {
        let folders = source.folders(store)?;
        let ids: HashSet<&str> = folders.iter().map(|f| f.id.as_str()).collect();
        // The top of the store is the parent that is not itself listed.
        let mut roots: HashMap<&str, usize> = HashMap::new();
        for f in &folders {
            if !ids.contains(f.parent_id.as_str()) {
                *roots.entry(f.parent_id.as_str()).or_default() += 1;
            }
        }
        let root = roots.into_iter().max_by_key(|(_, n)| *n).map(|(r, _)| r.to_string()).unwrap_or_default();
        let children = folders.iter().map(|f| ((f.parent_id.clone(), f.name.to_lowercase()), f.id.clone())).collect();
        let folders = folders.into_iter().map(|f| (f.id, (f.parent_id, f.name))).collect();
        Ok(Tree { root, children, folders })
    }

    /// The id of the folder at `path`, if it exists.
    pub fn find(&self, path: &[String]) -> Option<String> {
        let mut cur = self.root.clone();
        for c in path {
            cur = self.children.get(&(cur, c.to_lowercase()))?.clone();
        }
        Some(cur)
    }
}

/// Finds or creates target folders, remembering which ones this replay created.
struct Folders<'a> {
    source: &'a dyn Source,
    store: &'a str,
    tree: Tree,
    by_path: HashMap<Vec<String>, String>,
    created: Vec<String>,
    created_ids: HashSet<String>,
}

impl Folders<'_> {
    /// The id of the folder at `path`, creating missing folders (`classes[i]` for `path[i]`).
    fn ensure(&mut self, path: &[String], classes: &[String]) -> Result<String> {
        if let Some(id) = self.by_path.get(path) {
            return Ok(id.clone());
        }
        let mut parent = self.tree.root.clone();
        for depth in 0..path.len() {
            let sub = &path[..=depth];
            if let Some(id) = self.tree.find(sub) {
                parent = id;
                continue;
            }
            let name = &path[depth];
            let class = classes.get(depth).map(String::as_str).unwrap_or("IPF.Note");
            let under = (parent != self.tree.root).then_some(parent.as_str());
            let id = match self.source.create_folder(self.store, under, name, class) {
                Ok(id) => {
                    self.created.push(sub.join("/"));
                    id
                }
                // Made meanwhile, or made by a request whose reply was lost: look again.
                Err(CreateFolderError::LookAgain(_)) => {
                    self.tree = Tree::load(self.source, self.store)?;
                    match self.tree.find(sub) {
                        Some(id) => id,
                        None => {
                            let under = (parent != self.tree.root).then_some(parent.as_str());
                            let id = self.source.create_folder(self.store, under, name, class).map_err(|e| {
                                let (CreateFolderError::LookAgain(e) | CreateFolderError::Failed(e)) = e;
                                MailboxError::Source(format!("creating folder {}: {e}", sub.join("/")).into())
                            })?;
                            self.created.push(sub.join("/"));
                            id
                        }
                    }
                }
                Err(CreateFolderError::Failed(e)) => {
                    return Err(MailboxError::Source(
                        format!("creating folder {} in {}: {e}", sub.join("/"), self.store).into(),
                    ))
                }
            };
            self.tree.children.insert((parent.clone(), name.to_lowercase()), id.clone());
            self.created_ids.insert(id.clone());
            parent = id;
        }
        self.by_path.insert(path.to_vec(), parent.clone());
        Ok(parent)
    }
}

/// One selected item and where it goes.
pub(crate) struct Job {
    pub(crate) key: u32,
    pub(crate) folder_id: String,
    pub(crate) action: ImportAction,
    pub(crate) item_id: Option<String>,
}

/// What a replay did, by manifest item index.
#[derive(Default)]
pub struct Results {
    pub uploaded: u64,
    pub bytes: u64,
    /// (item, the server's reason)
    pub refused: Vec<(u32, String)>,
    pub too_large: Vec<u32>,
    /// Items the archive could not give (damage), with why.
    pub unreadable: Vec<(u32, String)>,
    /// Items whose request broke off three times and that are not in their folder.
    pub uncertain: Vec<(u32, String)>,
    /// The id each restored item has in the target store.
    pub mapping: HashMap<u32, String>,
}

/// A replay, planned: what goes where.
pub struct Plan<'a> {
    pub source: &'a dyn Source,
    pub m: &'a Snapshot,
    pub snapshot: Id,
    /// The store the snapshot came from, and the one items go into.
    pub from: String,
    pub target: String,
    /// Items selected (manifest indexes).
    pub selected: Vec<u32>,
    pub tree: Tree,
    /// Import requests carry at most this much (in the source's `import_weight`).
    pub limit: u64,
    /// Import requests in flight.
    pub requests: usize,
    pub mode: Mode,
    journal_path: PathBuf,
    other: bool,
    base: Vec<String>,
    renamed: HashMap<u32, String>,
    paths: Vec<Vec<String>>,
    classes: Vec<Vec<String>>,
}

/// The folder classes along the path of folder `idx` (root excluded).
fn folder_classes(m: &Snapshot, idx: u32) -> Vec<String> {
    m.ancestors(idx).into_iter().map(|i| text(&m.folders()[i as usize].folder_class).into_owned()).collect()
}

/// What to do with items that are still in the target (found by id or by class, subject and time).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Put the archived version back over them (`UpdateOrCreate`), create the missing ones.
    #[default]
    Restore,
    /// Restore only items no longer there; leave every item that is there as it is.
    OnlyMissing,
    /// Restore missing items, and put the archived version back over items that changed since
    /// (another change key); leave unchanged ones alone.
    OverwriteChanged,
}

/// What replay is asked to do.
pub struct Request<'a> {
    pub m: &'a Snapshot,
    pub snapshot: Id,
    pub snapshot_time_ms: i64,
    pub from: String,
    /// Another store than `from` (None: back where they came from).
    pub to: Option<String>,
    /// With `to`: into the original folder paths rather than under `Restored <time>`.
    pub in_place: bool,
    pub selected: Vec<u32>,
    pub limit: u64,
    pub requests: usize,
    /// Where the journal lives (`<cache>/<repository id>`).
    pub cache_dir: PathBuf,
    pub mode: Mode,
}

/// Plans a replay: reads the target's folder tree and default folders.
pub fn plan<'a>(source: &'a dyn Source, r: Request<'a>) -> Result<Plan<'a>> {
    let m = r.m;
    let (target, base) = destination(source, &r.from, r.to.as_deref(), r.in_place, r.snapshot_time_ms)?;
    let other = !target.eq_ignore_ascii_case(&r.from);
    let tree = Tree::load(source, &target)?;
    // Default folders go back to the folder with the same role, whatever it is called there, when
    // restoring into original paths.
    let renamed = if base.is_empty() { default_folder_names(source, &target, &tree, m) } else { HashMap::new() };
    let journal_path = r.cache_dir.join("replay").join(format!(
        "{}.jsonl",
        &Id::of_content(
            format!("{}\n{}\n{}", r.snapshot.to_hex(), target.to_ascii_lowercase(), base.join("/")).as_bytes()
        )
        .to_hex()[..24]
    ));
    Ok(Plan {
        source,
        m,
        snapshot: r.snapshot,
        from: r.from,
        target,
        selected: r.selected,
        tree,
        limit: r.limit,
        requests: r.requests,
        mode: r.mode,
        journal_path,
        other,
        base,
        renamed,
        paths: (0..m.folders().len() as u32).map(|i| m.folder_path(i)).collect(),
        classes: (0..m.folders().len() as u32).map(|i| folder_classes(m, i)).collect(),
    })
}

/// For the snapshot's top-level default folders (by the roles the backup recorded), the name the
/// folder with the same role has in the target store, where that differs. Best effort.
fn default_folder_names(source: &dyn Source, target: &str, tree: &Tree, m: &Snapshot) -> HashMap<u32, String> {
    let roles: BTreeMap<String, String> = serde_json::from_slice::<serde_json::Value>(m.source_state())
        .ok()
        .and_then(|v| serde_json::from_value(v.get("default_folders")?.clone()).ok())
        .unwrap_or_default();
    if roles.is_empty() {
        return HashMap::new();
    }
    let there = source.default_folders(target);
    let name_of_role: HashMap<&str, &str> = there
        .iter()
        .filter_map(|(id, role)| {
            let (parent, name) = tree.folders.get(id)?;
            (parent == &tree.root).then_some((role.as_str(), name.as_str()))
        })
        .collect();
    let mut out = HashMap::new();
    for (i, f) in m.folders().iter().enumerate() {
        let Some(role) = roles.get(text(&f.source_id).as_ref()) else { continue };
        if let Some(name) = name_of_role.get(role.as_str()) {
            if !name.eq_ignore_ascii_case(&text(&f.name)) {
                out.insert(i as u32, name.to_string());
            }
        }
    }
    out
}

impl Plan<'_> {
    /// Where item `k` goes: its target folder path and the classes of the folders along it.
    pub fn target_path(&self, k: u32) -> (Vec<String>, Vec<String>) {
        let folder = self.m.item(k as usize).folder.to_native();
        let mut p = self.base.clone();
        p.extend(self.paths.get(folder as usize).cloned().unwrap_or_default());
        // (the first ancestor is the top-level folder)
        if let Some(name) = self.m.ancestors(folder).first().and_then(|t| self.renamed.get(t)) {
            if let Some(first) = p.first_mut() {
                *first = name.clone();
            }
        }
        let mut c: Vec<String> = self.base.iter().map(|_| "IPF.Note".to_string()).collect();
        c.extend(self.classes.get(folder as usize).cloned().unwrap_or_default());
        (p, c)
    }

    /// True if item `k` is larger than one import request may carry.
    pub fn too_large(&self, k: u32) -> bool {
        self.source.import_weight(self.m.item(k as usize).size.to_native()) > self.limit
    }

    /// What earlier, interrupted runs left (without changing anything).
    pub fn recovered(&self) -> Result<Recovered> {
        Journal::peek(&self.journal_path)
    }
}

/// How a snapshot item is recognised among a folder's items when a reply was lost.
fn fingerprint(class: &str, subject: &str, received_ms: i64) -> (String, String, i64) {
    (class.to_ascii_lowercase(), subject.to_string(), received_ms)
}

/// The items of a target folder: id → change key, and ids by fingerprint.
struct Listing {
    ids: HashMap<String, String>,
    by_fingerprint: HashMap<(String, String, i64), Vec<String>>,
}

impl Listing {
    fn new(items: Vec<ItemInfo>) -> Listing {
        let mut l = Listing { ids: HashMap::new(), by_fingerprint: HashMap::new() };
        for c in items {
            l.by_fingerprint
                .entry(fingerprint(&c.item_class, &c.subject, c.received_ms))
                .or_default()
                .push(c.id.clone());
            l.ids.insert(c.id, c.change_key);
        }
        l
    }

    /// An item of this folder that looks like `it` and is not yet `claimed`; claims it.
    fn claim(&self, it: &ArchivedItem, claimed: &mut HashSet<String>) -> Option<String> {
        let fp = fingerprint(&text(&it.item_class), &text(&it.subject), it.received_ms.to_native());
        let id = self.by_fingerprint.get(&fp)?.iter().find(|id| !claimed.contains(*id))?.clone();
        claimed.insert(id.clone());
        Some(id)
    }
}

/// Decides how item `k` goes into `folder_id` (see the module's doc and `Mode`); None: the item
/// is there and stays as it is.
fn assign(
    k: u32,
    folder_id: String,
    p: &Plan,
    mapping: &HashMap<u32, String>,
    listing: Option<&Listing>,
    claimed: &mut HashSet<String>,
) -> Option<Job> {
    let it = &p.m.item(k as usize);
    let archived_key = text(&it.change_key);
    // What to do with the item found as `id` (with its change key, when the folder was listed).
    let found = |id: String, key: Option<&String>| -> Option<Job> {
        let keep = match p.mode {
            Mode::Restore => false,
            Mode::OnlyMissing => true,
            Mode::OverwriteChanged => key.is_some_and(|key| *key == archived_key),
        };
        (!keep).then(|| Job {
            key: k,
            folder_id: folder_id.clone(),
            action: ImportAction::UpdateOrCreate,
            item_id: Some(id),
        })
    };
    if let Some(id) = mapping.get(&k) {
        // Restored by an earlier replay: is it still there? (Without a listing, assume so.)
        match listing {
            Some(l) if p.mode != Mode::Restore && !l.ids.contains_key(id) => {}
            Some(l) => return found(id.clone(), l.ids.get(id)),
            None => return found(id.clone(), None),
        }
    } else if let Some(l) = listing {
        let original = text(&it.source_id).into_owned();
        if !p.other && l.ids.contains_key(&original) && claimed.insert(original.clone()) {
            let key = l.ids.get(&original);
            return found(original.clone(), key);
        }
        if let Some(id) = l.claim(it, claimed) {
            let key = l.ids.get(&id);
            return found(id.clone(), key);
        }
    }
    Some(Job { key: k, folder_id, action: ImportAction::CreateNew, item_id: None })
}

/// Looks for `items` in their folders by class, subject and received time; returns the ones found
/// (with the id they have) and the ones missing. An id already given to another item is not reused.
#[allow(clippy::type_complexity)]
fn reconcile(
    p: &Plan,
    items: &[(u32, String)],
    mapping: &HashMap<u32, String>,
) -> Result<(Vec<(u32, String)>, Vec<(u32, String)>)> {
    let mut claimed: HashSet<String> = mapping.values().cloned().collect();
    let mut by_folder: BTreeMap<&str, Vec<u32>> = BTreeMap::new();
    for (k, f) in items {
        by_folder.entry(f.as_str()).or_default().push(*k);
    }
    let (mut found, mut missing) = (Vec::new(), Vec::new());
    for (folder, keys) in by_folder {
        let listing = Listing::new(p.source.list_folder(&p.target, folder)?);
        for k in keys {
            match listing.claim(p.m.item(k as usize), &mut claimed) {
                Some(id) => found.push((k, id)),
                None => missing.push((k, folder.to_string())),
            }
        }
    }
    Ok((found, missing))
}

/// What a finished replay reports.
pub struct Outcome {
    pub results: Results,
    pub folders_created: Vec<String>,
    /// Items an interrupted earlier run had restored (left as they are).
    pub already: u64,
    /// Items still in the target that the mode leaves as they are.
    pub left_alone: u64,
}

/// Runs the plan: reads items through `reader`, calls `progress(bytes)` as items are done.
pub fn run(p: &Plan, reader: &ItemReader, now: &str, progress: &(dyn Fn(u64) + Sync)) -> Result<Outcome> {
    let (journal, recovered) = Journal::open(&p.journal_path, now)?;
    let mut folders = Folders {
        source: p.source,
        store: &p.target,
        tree: p.tree.clone(),
        by_path: HashMap::new(),
        created: Vec::new(),
        created_ids: HashSet::new(),
    };
    let mut results = Results { mapping: recovered.mapping.clone(), ..Results::default() };
    let mut already = 0u64;
    let mut placed: Vec<(u32, String)> = Vec::new();
    let mut to_check: Vec<(u32, String)> = Vec::new();
    for &k in &p.selected {
        if recovered.done.contains(&k) {
            already += 1;
            continue;
        }
        let (path, cls) = p.target_path(k);
        let folder_id = folders.ensure(&path, &cls)?;
        if recovered.uncertain.contains(&k) {
            to_check.push((k, folder_id));
        } else {
            placed.push((k, folder_id));
        }
    }
    let journal = Mutex::new(journal);
    // An interrupted run's unanswered requests: are those items there already?
    if !to_check.is_empty() {
        let (found, missing) = reconcile(p, &to_check, &results.mapping)?;
        journal.lock().expect("journal").ok(found.clone())?;
        already += found.len() as u64;
        results.mapping.extend(found);
        placed.extend(missing);
    }
    // What the target folders already hold: an item found there (by its original id, or by class,
    // subject and received time) is updated in place, never created a second time, even when the
    // journal is gone (another machine, a cleared cache).
    let mut listings: HashMap<String, Listing> = HashMap::new();
    for (_, f) in &placed {
        if !folders.created_ids.contains(f) && !listings.contains_key(f) {
            listings.insert(f.clone(), Listing::new(p.source.list_folder(&p.target, f)?));
        }
    }
    let mut claimed: HashSet<String> = results.mapping.values().cloned().collect();
    let assigned: Vec<Option<Job>> = placed
        .into_iter()
        .map(|(k, f)| assign(k, f.clone(), p, &results.mapping, listings.get(&f), &mut claimed))
        .collect();
    let left_alone = assigned.iter().filter(|j| j.is_none()).count() as u64;
    let jobs: Vec<Job> = assigned.into_iter().flatten().collect();

    let results = Mutex::new(results);
    let mut pending = jobs;
    for round in 0..3 {
        import_all(p, reader, &pending, &journal, &results, progress)?;
        let uncertain = std::mem::take(&mut results.lock().expect("results").uncertain);
        if uncertain.is_empty() {
            break;
        }
        // Replies were lost: look in the folders, then import only what is not there.
        let by_key: HashMap<u32, &Job> = pending.iter().map(|j| (j.key, j)).collect();
        let check: Vec<(u32, String)> =
            uncertain.iter().filter_map(|(k, _)| Some((*k, by_key.get(k)?.folder_id.clone()))).collect();
        let mapping = results.lock().expect("results").mapping.clone();
        let (found, missing) = reconcile(p, &check, &mapping)?;
        journal.lock().expect("journal").ok(found.clone())?;
        let mut r = results.lock().expect("results");
        r.uploaded += found.len() as u64;
        r.mapping.extend(found);
        if round == 2 {
            // Sent three times without an answer and not there: reported; the next run checks again.
            r.uncertain = uncertain.into_iter().filter(|(k, _)| missing.iter().any(|(mk, _)| mk == k)).collect();
            break;
        }
        // Known not to be there: created (on the id an earlier replay gave it, if any), whatever
        // the mode.
        pending = missing
            .into_iter()
            .map(|(k, f)| match r.mapping.get(&k) {
                Some(id) => {
                    Job { key: k, folder_id: f, action: ImportAction::UpdateOrCreate, item_id: Some(id.clone()) }
                }
                None => Job { key: k, folder_id: f, action: ImportAction::CreateNew, item_id: None },
            })
            .collect();
        drop(r);
        if pending.is_empty() {
            break;
        }
    }
    let results = results.into_inner().expect("results");
    let journal = journal.into_inner().expect("journal");
    if results.uncertain.is_empty() {
        journal.complete(&results.mapping)?;
    }
    Ok(Outcome { results, folders_created: folders.created, already, left_alone })
}
