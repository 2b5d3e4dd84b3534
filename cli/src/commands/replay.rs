//! `exarch replay SNAPSHOT --ews URL`: put archived items back into Exchange with UploadItems.
//!
//! The uploaded stream is the one ExportItems gave, so the restored item is the original (same
//! properties, same calendar UID). Steps: pick the items (folders, ids, dates); find each target
//! folder by path in the target mailbox and create what is missing; upload in batches under the
//! request size limit through the same governor as backups, isolating refused items; record every
//! request in a journal in the cache so that a killed replay continues without duplicates.
//!
//! CreateAction: `UpdateOrCreate` on the id an earlier replay gave the item, else, restoring into
//! the original mailbox and an existing folder, on the original item id; `CreateNew` otherwise
//! (another mailbox, or a folder this replay had to create).

use super::replay_journal::{Journal, Recovered};
use crate::args::{Global, ReplayArgs};
use crate::output::{bytes, progress};
use crate::usage;
use anyhow::{Context as _, Result};
use base64::Engine as _;
use exarch_archive::manifest::{text, ArchivedManifest, ITEM_ASSOCIATED, NO_TIME};
use exarch_archive::restore::ItemReader;
use exarch_archive::time::{format_unix_ms, now_ms, parse_rfc3339_ms};
use exarch_archive::Id;
use exarch_ews_source::client::{Client, ClientConfig};
use exarch_ews_source::request::{CreateAction, FolderRef};
use exarch_ews_source::response::{ChangeKind, EwsError};
use exarch_ews_source::upload::{plan, upload_batch, Outcome, ToUpload, MAX_UPLOAD_BATCH};
use serde_json::json;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;

/// `2026-11-23T10:00:00Z` (any RFC 3339) or `2026-11-23` (midnight UTC; with `end`, the next one).
fn parse_date(s: &str, end: bool) -> Option<i64> {
    if let Some(ms) = parse_rfc3339_ms(s) {
        return Some(ms);
    }
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    let d = time::Date::parse(s.trim(), &fmt).ok()?;
    let ms = d.midnight().assume_utc().unix_timestamp() * 1000;
    Some(if end { ms + 86_400_000 } else { ms })
}

/// The top folder a restore into another mailbox goes under, named for the snapshot's time.
fn restored_folder_name(time_ms: i64) -> String {
    let t =
        time::OffsetDateTime::from_unix_timestamp(time_ms.div_euclid(1000)).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let fmt = time::macros::format_description!("[year]-[month]-[day] [hour].[minute].[second]");
    format!("Restored {} UTC", t.format(&fmt).unwrap_or_default())
}

fn split_path(p: &str) -> Vec<String> {
    p.split(['/', '\\']).filter(|c| !c.is_empty()).map(str::to_string).collect()
}

fn starts_with_ci(path: &[String], prefix: &[String]) -> bool {
    prefix.len() <= path.len() && prefix.iter().zip(path).all(|(a, b)| a.eq_ignore_ascii_case(b))
}

/// The target mailbox's folder tree, from SyncFolderHierarchy.
struct Tree {
    root: String,
    /// (parent id, lower-case display name) → folder id
    children: HashMap<(String, String), String>,
    /// folder id → (parent id, display name)
    folders: HashMap<String, (String, String)>,
}

impl Tree {
    fn load(client: &Client, mailbox: &str) -> Result<Tree, EwsError> {
        let folders: Vec<_> =
            client.folder_tree(mailbox)?.into_iter().filter(|c| c.kind != ChangeKind::Delete).collect();
        let ids: HashSet<&str> = folders.iter().map(|f| f.id.as_str()).collect();
        // The top of the store is the parent that is not itself listed.
        let mut roots: HashMap<&str, usize> = HashMap::new();
        for f in &folders {
            if !ids.contains(f.parent_id.as_str()) {
                *roots.entry(f.parent_id.as_str()).or_default() += 1;
            }
        }
        let root = roots.into_iter().max_by_key(|(_, n)| *n).map(|(r, _)| r.to_string()).unwrap_or_default();
        let children =
            folders.iter().map(|f| ((f.parent_id.clone(), f.display_name.to_lowercase()), f.id.clone())).collect();
        let folders = folders.into_iter().map(|f| (f.id, (f.parent_id, f.display_name))).collect();
        Ok(Tree { root, children, folders })
    }

    fn find(&self, path: &[String]) -> Option<String> {
        let mut cur = self.root.clone();
        for c in path {
            cur = self.children.get(&(cur, c.to_lowercase()))?.clone();
        }
        Some(cur)
    }
}

/// Finds or creates target folders, remembering which ones this replay created.
struct Folders<'a> {
    client: &'a Client,
    mailbox: &'a str,
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
            let pref = if parent == self.tree.root {
                FolderRef::Distinguished(Client::root_of(self.mailbox))
            } else {
                FolderRef::Id(&parent)
            };
            let id = match self.client.create_folder(self.mailbox, pref, name, class) {
                Ok(id) => {
                    self.created.push(sub.join("/"));
                    id
                }
                // Made meanwhile, or made by a request whose reply was lost: look again.
                Err(e)
                    if e.outcome_unknown()
                        || matches!(&e, EwsError::Failed { code, .. } if code == "ErrorFolderExists") =>
                {
                    self.tree = Tree::load(self.client, self.mailbox)?;
                    match self.tree.find(sub) {
                        Some(id) => id,
                        None => {
                            let id = self
                                .client
                                .create_folder(self.mailbox, pref, name, class)
                                .with_context(|| format!("creating folder {}", sub.join("/")))?;
                            self.created.push(sub.join("/"));
                            id
                        }
                    }
                }
                Err(e) => {
                    return Err(e).with_context(|| format!("creating folder {} in {}", sub.join("/"), self.mailbox))
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
struct Job {
    key: u32,
    folder_id: String,
    action: CreateAction,
    item_id: Option<String>,
}

#[derive(Default)]
struct Results {
    uploaded: u64,
    bytes: u64,
    /// (item key, error)
    refused: Vec<(u32, String)>,
    too_large: Vec<u32>,
    unreadable: Vec<(u32, String)>,
    uncertain: Vec<(u32, String)>,
    mapping: HashMap<u32, String>,
}

/// How a snapshot item is recognised among a folder's items when a reply was lost.
fn fingerprint(class: &str, subject: &str, received_ms: i64) -> (String, String, i64) {
    (class.to_ascii_lowercase(), subject.to_string(), received_ms)
}

pub fn run(g: &Global, a: ReplayArgs) -> Result<()> {
    let since = match &a.since {
        Some(s) => Some(parse_date(s, false).ok_or_else(|| usage(format!("--since {s}: use YYYY-MM-DD or RFC 3339")))?),
        None => None,
    };
    let until = match &a.until {
        Some(s) => Some(parse_date(s, true).ok_or_else(|| usage(format!("--until {s}: use YYYY-MM-DD or RFC 3339")))?),
        None => None,
    };
    if a.upload_limit < 1024 {
        return Err(usage("--upload-limit is in bytes and must be at least 1024"));
    }
    let (url, auth) = super::pack_ews::endpoint(&a.ews, &a.conn)?;
    let mut a = a;
    a.ews = url.clone(); // without credentials, for everything shown from here on
    let repo = super::open(g)?;
    let _lock = super::read_lock(g, &repo, exarch_archive::lock::LockPurpose::Replay)?;
    let snap_id = repo.resolve_snapshot(&a.snapshot, a.mailbox.as_deref())?;
    let snap = repo.load_snapshot(&snap_id)?;
    let m = snap.manifest();
    let source_mailbox = text(&snap.summary.mailbox).into_owned();
    let target = a.to_mailbox.clone().unwrap_or_else(|| source_mailbox.clone());
    let other = !target.eq_ignore_ascii_case(&source_mailbox);
    let base: Vec<String> =
        if other && !a.in_place { vec![restored_folder_name(snap.summary.time_ms)] } else { Vec::new() };

    // Which items, and the target path and folder classes of each.
    let paths: Vec<Vec<String>> = (0..m.folders.len() as u32).map(|i| m.folder_path(i)).collect();
    let classes: Vec<Vec<String>> = (0..m.folders.len() as u32).map(|i| folder_classes(m, i)).collect();
    let filters: Vec<Vec<String>> = a.folder.iter().map(|f| split_path(f)).collect();
    let selected: Vec<u32> = (0..m.items.len() as u32)
        .filter(|&k| {
            let it = &m.items[k as usize];
            let folder = it.folder.to_native() as usize;
            let path = paths.get(folder).map(Vec::as_slice).unwrap_or(&[]);
            let received = it.received_ms.to_native();
            (filters.is_empty() || filters.iter().any(|f| starts_with_ci(path, f)))
                && (a.item.is_empty() || a.item.iter().any(|id| item_matches(it, id)))
                && since.is_none_or(|s| received != NO_TIME && received >= s)
                && until.is_none_or(|u| received != NO_TIME && received < u)
        })
        .collect();
    if selected.is_empty() {
        return Err(crate::Exit(
            crate::EXIT_ERROR,
            format!(
                "nothing to replay: no item of snapshot {} ({} items) matches --folder/--item/--since/--until",
                snap_id.short(),
                m.items.len()
            ),
        )
        .into());
    }

    let client = Client::new(ClientConfig {
        url: url.clone(),
        auth,
        ca_cert: a.conn.ca_cert.clone(),
        concurrency: a.requests.max(1),
        per_mailbox: a.requests.max(1),
        sync_concurrency: 2,
        timeout: std::time::Duration::from_secs(300),
        deadline: None,
        limits: Default::default(),
    })?;
    let tree = Tree::load(&client, &target).with_context(|| format!("reading the folder tree of {target}"))?;
    // Default folders go back to the folder with the same role, whatever it is called there
    // (the snapshot's Inbox into the target's Posteingang), when restoring into original paths.
    let renamed = if base.is_empty() { default_folder_names(&client, &target, &tree, m) } else { HashMap::new() };
    let target_path = |k: u32| -> (Vec<String>, Vec<String>) {
        let folder = m.items[k as usize].folder.to_native();
        let mut p = base.clone();
        p.extend(paths.get(folder as usize).cloned().unwrap_or_default());
        // (the first ancestor is the top-level folder)
        if let Some(name) = m.ancestors(folder).first().and_then(|t| renamed.get(t)) {
            p[0] = name.clone();
        }
        let mut c: Vec<String> = base.iter().map(|_| "IPF.Note".to_string()).collect();
        c.extend(classes.get(folder as usize).cloned().unwrap_or_default());
        (p, c)
    };
    let journal_path = repo.cache_dir().join("replay").join(format!(
        "{}.jsonl",
        &Id::of_content(
            format!("{}\n{}\n{}", snap_id.to_hex(), target.to_ascii_lowercase(), base.join("/")).as_bytes()
        )
        .to_hex()[..24]
    ));

    if a.dry_run {
        let recovered = Journal::peek(&journal_path)?;
        let scope = Scope { g, a: &a, snap_id: &snap_id, source: &source_mailbox, target: &target, m };
        return dry_run(&scope, &selected, &target_path, &tree, &recovered);
    }

    let started = std::time::Instant::now();
    let (journal, recovered) = Journal::open(&journal_path, &format_unix_ms(now_ms()))?;
    let mut folders = Folders {
        client: &client,
        mailbox: &target,
        tree,
        by_path: HashMap::new(),
        created: Vec::new(),
        created_ids: HashSet::new(),
    };
    let mut results = Results { mapping: recovered.mapping.clone(), ..Results::default() };
    let mut already = 0u64;
    let mut placed: Vec<(u32, String)> = Vec::new();
    let mut to_check: Vec<(u32, String)> = Vec::new();
    for &k in &selected {
        if recovered.done.contains(&k) {
            already += 1;
            continue;
        }
        let (path, cls) = target_path(k);
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
        let (found, missing) = reconcile(&client, &target, m, &to_check, &results.mapping)?;
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
            let items = client.list_folder(&target, f).with_context(|| format!("listing a folder of {target}"))?;
            listings.insert(f.clone(), Listing::new(items));
        }
    }
    let mut claimed: HashSet<String> = results.mapping.values().cloned().collect();
    let jobs: Vec<Job> = placed
        .into_iter()
        .map(|(k, f)| {
            let listing = listings.get(&f);
            assign(k, f, m, other, &results.mapping, listing, &mut claimed)
        })
        .collect();

    let total_bytes: u64 = jobs.iter().map(|j| m.items[j.key as usize].size.to_native()).sum();
    let pb = progress(total_bytes, g.quiet || g.json, "replay");
    let index = repo.index()?;
    super::warn_skipped_index(&index);
    let reader = ItemReader::new(&repo, &index);
    let results = Mutex::new(results);
    let mut pending = jobs;
    for round in 0..3 {
        upload_all(&client, &target, m, &reader, &pending, a.upload_limit, a.requests, &journal, &results, &|n| {
            pb.inc(n)
        })?;
        let uncertain = std::mem::take(&mut results.lock().expect("results").uncertain);
        if uncertain.is_empty() {
            break;
        }
        // Replies were lost: look in the folders, then upload only what is not there.
        let by_key: HashMap<u32, &Job> = pending.iter().map(|j| (j.key, j)).collect();
        let check: Vec<(u32, String)> = uncertain.iter().map(|(k, _)| (*k, by_key[k].folder_id.clone())).collect();
        let mapping = results.lock().expect("results").mapping.clone();
        let (found, missing) = reconcile(&client, &target, m, &check, &mapping)?;
        journal.lock().expect("journal").ok(found.clone())?;
        let mut r = results.lock().expect("results");
        r.uploaded += found.len() as u64;
        r.mapping.extend(found);
        if round == 2 {
            // Sent three times without an answer and not there: reported, and the next run checks again.
            r.uncertain = uncertain.into_iter().filter(|(k, _)| missing.iter().any(|(mk, _)| mk == k)).collect();
            break;
        }
        // Known to be missing: no listing to match against.
        let mut claimed = HashSet::new();
        pending = missing.into_iter().map(|(k, f)| assign(k, f, m, other, &r.mapping, None, &mut claimed)).collect();
        drop(r);
        if pending.is_empty() {
            break;
        }
    }
    pb.finish_and_clear();
    let results = results.into_inner().expect("results");
    let journal = journal.into_inner().expect("journal");
    if results.uncertain.is_empty() {
        journal.complete(&results.mapping)?;
    }
    let scope = Scope { g, a: &a, snap_id: &snap_id, source: &source_mailbox, target: &target, m };
    report(&scope, &client, &folders.created, &results, already, started.elapsed().as_secs_f64())
}

/// What the dry run and the summary both describe.
struct Scope<'a> {
    g: &'a Global,
    a: &'a ReplayArgs,
    snap_id: &'a Id,
    source: &'a str,
    target: &'a str,
    m: &'a ArchivedManifest,
}

/// For the snapshot's top-level default folders (by the roles the backup recorded), the name the
/// folder with the same role has in the target mailbox, where that differs. Best effort: without
/// the roles, or when the server cannot say, names are matched as they are.
fn default_folder_names(client: &Client, target: &str, tree: &Tree, m: &ArchivedManifest) -> HashMap<u32, String> {
    let roles: BTreeMap<String, String> = serde_json::from_slice::<serde_json::Value>(&m.source_state)
        .ok()
        .and_then(|v| serde_json::from_value(v.get("default_folders")?.clone()).ok())
        .unwrap_or_default();
    if roles.is_empty() || target == exarch_ews_source::PUBLIC_FOLDERS {
        return HashMap::new();
    }
    let Ok(there) = client.default_folders(target) else { return HashMap::new() };
    let name_of_role: HashMap<&str, &str> = there
        .iter()
        .filter_map(|(id, role)| {
            let (parent, name) = tree.folders.get(id)?;
            (parent == &tree.root).then_some((role.as_str(), name.as_str()))
        })
        .collect();
    let mut out = HashMap::new();
    for (i, f) in m.folders.iter().enumerate() {
        let Some(role) = roles.get(text(&f.source_id).as_ref()) else { continue };
        if let Some(name) = name_of_role.get(role.as_str()) {
            if !name.eq_ignore_ascii_case(&text(&f.name)) {
                out.insert(i as u32, name.to_string());
            }
        }
    }
    out
}

/// The folder classes along the path of folder `idx` (root excluded).
fn folder_classes(m: &ArchivedManifest, idx: u32) -> Vec<String> {
    m.ancestors(idx).into_iter().map(|i| text(&m.folders[i as usize].folder_class).into_owned()).collect()
}

fn item_matches(it: &exarch_archive::manifest::ArchivedItem, id: &str) -> bool {
    let name = text(&it.name);
    text(&it.source_id) == id || name == id || name.strip_suffix(".fts") == Some(id)
}

/// The items of a target folder, by id and by fingerprint.
struct Listing {
    ids: HashSet<String>,
    by_fingerprint: HashMap<(String, String, i64), Vec<String>>,
}

impl Listing {
    fn new(items: Vec<exarch_ews_source::response::ItemChange>) -> Listing {
        let mut l = Listing { ids: HashSet::new(), by_fingerprint: HashMap::new() };
        for c in items {
            let fp = fingerprint(&c.item_class, &c.subject, parse_rfc3339_ms(&c.received).unwrap_or(NO_TIME));
            l.by_fingerprint.entry(fp).or_default().push(c.id.clone());
            l.ids.insert(c.id);
        }
        l
    }

    /// An item of this folder that looks like `it` and is not yet `claimed`; claims it.
    fn claim(&self, it: &exarch_archive::manifest::ArchivedItem, claimed: &mut HashSet<String>) -> Option<String> {
        let fp = fingerprint(&text(&it.item_class), &text(&it.subject), it.received_ms.to_native());
        let id = self.by_fingerprint.get(&fp)?.iter().find(|id| !claimed.contains(*id))?.clone();
        claimed.insert(id.clone());
        Some(id)
    }
}

/// Decides how item `k` goes into `folder_id`: `UpdateOrCreate` on the id an earlier replay gave
/// it, on its original id when restoring in place and that item is still there, or on the id of an
/// item in the folder that looks the same; otherwise `CreateNew` (the original is gone).
fn assign(
    k: u32,
    folder_id: String,
    m: &ArchivedManifest,
    other: bool,
    mapping: &HashMap<u32, String>,
    listing: Option<&Listing>,
    claimed: &mut HashSet<String>,
) -> Job {
    let update = |id: String| Job {
        key: k,
        folder_id: folder_id.clone(),
        action: CreateAction::UpdateOrCreate,
        item_id: Some(id),
    };
    if let Some(id) = mapping.get(&k) {
        return update(id.clone());
    }
    let it = &m.items[k as usize];
    if let Some(l) = listing {
        let original = text(&it.source_id).into_owned();
        if !other && l.ids.contains(&original) && claimed.insert(original.clone()) {
            return update(original);
        }
        if let Some(id) = l.claim(it, claimed) {
            return update(id);
        }
    }
    Job { key: k, folder_id, action: CreateAction::CreateNew, item_id: None }
}

/// Looks for `items` in their folders by class, subject and received time; returns the ones found
/// (with the id they have) and the ones missing. An id already given to another item is not reused.
#[allow(clippy::type_complexity)]
fn reconcile(
    client: &Client,
    mailbox: &str,
    m: &ArchivedManifest,
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
        let listing = Listing::new(
            client.list_folder(mailbox, folder).with_context(|| format!("listing a folder of {mailbox}"))?,
        );
        for k in keys {
            match listing.claim(&m.items[k as usize], &mut claimed) {
                Some(id) => found.push((k, id)),
                None => missing.push((k, folder.to_string())),
            }
        }
    }
    Ok((found, missing))
}

/// Reads the items of `jobs` from the archive and uploads them in batches, `requests` at a time.
#[allow(clippy::too_many_arguments)]
fn upload_all(
    client: &Client,
    mailbox: &str,
    m: &ArchivedManifest,
    reader: &ItemReader,
    jobs: &[Job],
    limit: usize,
    requests: usize,
    journal: &Mutex<Journal>,
    results: &Mutex<Results>,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<()> {
    let b64_len = |size: u64| (size as usize).div_ceil(3) * 4;
    let sizes: Vec<usize> = jobs.iter().map(|j| b64_len(m.items[j.key as usize].size.to_native())).collect();
    let batches = plan(&sizes, MAX_UPLOAD_BATCH, limit);
    let (tx, rx) = std::sync::mpsc::sync_channel::<(Vec<u32>, Vec<ToUpload>)>(requests.max(1));
    let rx = Mutex::new(rx);
    let failure: Mutex<Option<anyhow::Error>> = Mutex::new(None);
    std::thread::scope(|s| -> Result<()> {
        for _ in 0..requests.max(1) {
            s.spawn(|| loop {
                let Ok((keys, items)) = rx.lock().expect("queue").recv() else { return };
                if failure.lock().expect("failure").is_some() {
                    continue;
                }
                if let Err(e) = send_batch(client, mailbox, m, &keys, &items, limit, journal, results, progress) {
                    failure.lock().expect("failure").get_or_insert(e);
                }
            });
        }
        for range in batches {
            if failure.lock().expect("failure").is_some() {
                break;
            }
            let mut keys = Vec::new();
            let mut items = Vec::new();
            for j in &jobs[range] {
                let it = &m.items[j.key as usize];
                if b64_len(it.size.to_native()) > limit {
                    results.lock().expect("results").too_large.push(j.key);
                    progress(it.size.to_native());
                    continue;
                }
                let mut blob = Vec::with_capacity(it.size.to_native() as usize);
                if let Err(e) = reader.read_item(it, &mut blob) {
                    results.lock().expect("results").unreadable.push((j.key, e.to_string()));
                    continue;
                }
                keys.push(j.key);
                items.push(ToUpload {
                    parent_folder_id: j.folder_id.clone(),
                    item_id: j.item_id.clone(),
                    action: j.action,
                    associated: it.flags.to_native() & ITEM_ASSOCIATED != 0,
                    data_base64: base64::engine::general_purpose::STANDARD.encode(&blob),
                });
            }
            if !items.is_empty() && tx.send((keys, items)).is_err() {
                break;
            }
        }
        drop(tx);
        Ok(())
    })?;
    match failure.into_inner().expect("failure") {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

#[allow(clippy::too_many_arguments)]
fn send_batch(
    client: &Client,
    mailbox: &str,
    m: &ArchivedManifest,
    keys: &[u32],
    items: &[ToUpload],
    limit: usize,
    journal: &Mutex<Journal>,
    results: &Mutex<Results>,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<()> {
    journal.lock().expect("journal").sent(keys)?;
    let mut outcomes: Vec<(usize, Outcome)> = Vec::new();
    let r = upload_batch(client, mailbox, items, limit, &mut |i, o| outcomes.push((i, o)));
    let mut ok = Vec::new();
    let mut failed = Vec::new();
    {
        let mut res = results.lock().expect("results");
        for (i, o) in outcomes {
            let k = keys[i];
            let size = m.items[k as usize].size.to_native();
            match o {
                Outcome::Uploaded { id, .. } => {
                    res.uploaded += 1;
                    res.bytes += size;
                    res.mapping.insert(k, id.clone());
                    ok.push((k, id));
                    progress(size);
                }
                Outcome::Refused(e) => {
                    res.refused.push((k, e));
                    failed.push(k);
                    progress(size);
                }
                Outcome::TooLarge => {
                    res.too_large.push(k);
                    failed.push(k);
                    progress(size);
                }
                Outcome::Uncertain(e) => res.uncertain.push((k, e)),
            }
        }
    }
    let mut j = journal.lock().expect("journal");
    j.ok(ok)?;
    j.failed(failed)?;
    drop(j);
    r.with_context(|| format!("uploading items to {mailbox}"))
}

fn item_path(m: &ArchivedManifest, k: u32) -> String {
    let it = &m.items[k as usize];
    let mut p = m.folder_path(it.folder.to_native());
    p.push(text(&it.name).into_owned());
    p.join("/")
}

fn dry_run(
    scope: &Scope,
    selected: &[u32],
    target_path: &dyn Fn(u32) -> (Vec<String>, Vec<String>),
    tree: &Tree,
    recovered: &Recovered,
) -> Result<()> {
    let Scope { g, a, snap_id, source, target, m } = *scope;
    let mut per: BTreeMap<Vec<String>, (u64, u64)> = BTreeMap::new();
    for &k in selected {
        let e = per.entry(target_path(k).0).or_default();
        e.0 += 1;
        e.1 += m.items[k as usize].size.to_native();
    }
    let mut to_create: Vec<String> = Vec::new();
    for path in per.keys() {
        for d in 1..=path.len() {
            let p = path[..d].join("/");
            if tree.find(&path[..d]).is_none() && !to_create.contains(&p) {
                to_create.push(p);
            }
        }
    }
    let too_large = selected
        .iter()
        .filter(|&&k| (m.items[k as usize].size.to_native() as usize).div_ceil(3) * 4 > a.upload_limit)
        .count();
    let already = selected.iter().filter(|k| recovered.done.contains(k)).count();
    let total: u64 = per.values().map(|v| v.1).sum();
    if g.json {
        let folders: Vec<_> = per
            .iter()
            .map(|(p, (n, b))| json!({"path": p.join("/"), "exists": tree.find(p).is_some(), "items": n, "bytes": b}))
            .collect();
        return super::print_json(&json!({
            "dry_run": true,
            "snapshot": snap_id.to_hex(),
            "source_mailbox": source,
            "target_mailbox": target,
            "url": a.ews,
            "items": selected.len(),
            "bytes": total,
            "folders": folders,
            "folders_to_create": to_create,
            "too_large": too_large,
            "already_restored": already,
        }));
    }
    println!(
        "would replay {} item(s) ({}) of snapshot {} ({source}) into {target}:",
        selected.len(),
        bytes(total),
        snap_id.short()
    );
    for (p, (n, b)) in &per {
        let mark = if tree.find(p).is_some() { "" } else { "  (new folder)" };
        println!("  {:>6} items  {:>10}  {}{mark}", n, bytes(*b), p.join("/"));
    }
    println!("{} folder(s) to create", to_create.len());
    if too_large > 0 {
        println!("{too_large} item(s) larger than --upload-limit {} would be reported, not uploaded", a.upload_limit);
    }
    if already > 0 {
        println!("{already} item(s) already restored by an interrupted replay would be left as they are");
    }
    Ok(())
}

fn report(scope: &Scope, client: &Client, created: &[String], r: &Results, already: u64, secs: f64) -> Result<()> {
    let Scope { g, a, snap_id, source, target, m } = *scope;
    let cs = client.stats();
    let describe = |k: u32, error: &str| {
        let it = &m.items[k as usize];
        json!({
            "path": item_path(m, k),
            "source_id": text(&it.source_id),
            "subject": text(&it.subject),
            "size": it.size.to_native(),
            "error": error,
        })
    };
    let refused: Vec<_> = r.refused.iter().map(|(k, e)| describe(*k, e)).collect();
    let too_large: Vec<_> = r
        .too_large
        .iter()
        .map(|k| describe(*k, &format!("larger than the upload limit of {} bytes of base64", a.upload_limit)))
        .collect();
    let failed: Vec<_> = r.unreadable.iter().chain(&r.uncertain).map(|(k, e)| describe(*k, e)).collect();
    if g.json {
        super::print_json(&json!({
            "snapshot": snap_id.to_hex(),
            "source_mailbox": source,
            "target_mailbox": target,
            "url": a.ews,
            "uploaded": r.uploaded,
            "bytes": r.bytes,
            "already_restored": already,
            "folders_created": created,
            "refused": refused,
            "too_large": too_large,
            "failed": failed,
            "requests": cs.requests,
            "back_offs_honoured": cs.back_offs_honoured,
            "retries": cs.retries,
            "duration_secs": secs,
        }))?;
    } else if !g.quiet {
        println!(
            "replayed snapshot {} ({source}) into {target} in {secs:.1} s: {} item(s) uploaded ({}), {} already restored",
            snap_id.short(),
            r.uploaded,
            bytes(r.bytes),
            already
        );
        if !created.is_empty() {
            println!("  folders created: {}", created.join(", "));
        }
        println!(
            "  EWS {} requests ({}), {} back-off(s) honoured",
            cs.requests.values().sum::<u64>(),
            cs.requests.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", "),
            cs.back_offs_honoured
        );
    }
    if !g.json {
        for (what, list) in [("REFUSED", &refused), ("TOO LARGE", &too_large), ("FAILED", &failed)] {
            for v in list {
                eprintln!(
                    "{what} {} ({}): {}",
                    v["path"].as_str().unwrap_or(""),
                    v["source_id"].as_str().unwrap_or(""),
                    v["error"].as_str().unwrap_or("")
                );
            }
        }
    }
    let bad = refused.len() + too_large.len() + failed.len();
    if bad > 0 {
        return Err(crate::Exit(
            crate::EXIT_ERROR,
            format!(
                "{bad} item(s) could not be restored (listed above); the other {} are in place",
                r.uploaded + already
            ),
        )
        .into());
    }
    Ok(())
}
