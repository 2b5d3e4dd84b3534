//! `exarch pack --ews URL`: back up Exchange mailboxes, one snapshot per mailbox, all sharing a run id.
//!
//! Per mailbox: the folder tree from SyncFolderHierarchy; per folder, SyncFolderItems from the sync
//! state the parent snapshot stored, so only new and changed items are exported; unchanged items are
//! carried into the new snapshot from the parent; items the parent could not export are retried.
//! Exports go through the governor in batches with dirty-item isolation; each exported stream goes
//! straight into the archive's pipeline.

use crate::args::{EwsConnArgs, Global, LogonAuth, PackArgs};
use crate::output::bytes;
use crate::usage;
use anyhow::{bail, Context as _, Result};
use exarch_archive::backup::{Backup, BackupOptions, BackupStats, ItemMeta};
use exarch_archive::index::IndexTable;
use exarch_archive::manifest::{text, ITEM_ASSOCIATED, NO_TIME};
use exarch_archive::time::parse_rfc3339_ms;
use exarch_archive::{Id, Repository};
use exarch_ews_source::client::{Auth, Client, ClientConfig};
use exarch_ews_source::export::{export_batch, next_batch, ToExport};
use exarch_ews_source::export_stream::ItemData;
use exarch_ews_source::request::{MAX_EXPORT_BATCH, MAX_SYNC_CHANGES};
use exarch_ews_source::response::{ChangeKind, EwsError, ItemChange};
use exarch_ews_source::PUBLIC_FOLDERS;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};

/// Items already stored by a run that did not finish (killed, or out of time), kept in the local
/// cache so that the next run carries them instead of exporting them again.
#[derive(Debug, Default, Serialize, Deserialize)]
struct ResumeFile {
    /// The parent snapshot the interrupted run started from; a different parent voids the file.
    parent: Option<String>,
    items: Vec<ResumeItem>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct ResumeItem {
    source_id: String,
    change_key: String,
    name: String,
    size: u64,
    blob_hash: String,
    chunks: Vec<String>,
}

/// Exported items between checkpoints: what a killed run may have to export again.
const CHECKPOINT_EVERY: usize = 100;

fn resume_path(repo: &Repository, mailbox: &str) -> std::path::PathBuf {
    repo.cache_dir()
        .join("resume")
        .join(format!("{}.json", &Id::of_content(mailbox.to_ascii_lowercase().as_bytes()).to_hex()[..24]))
}

fn save_resume(path: &std::path::Path, file: &ResumeFile) -> Result<()> {
    crate::private::write_atomic(path, &serde_json::to_vec(file)?)
}

fn resume_file(parent: Option<Id>, items: &[exarch_archive::manifest::Item]) -> ResumeFile {
    ResumeFile {
        parent: parent.map(|p| p.to_hex()),
        items: items
            .iter()
            .filter(|i| !i.name.is_empty())
            .map(|i| ResumeItem {
                source_id: String::from_utf8_lossy(&i.source_id).into_owned(),
                change_key: String::from_utf8_lossy(&i.change_key).into_owned(),
                name: String::from_utf8_lossy(&i.name).into_owned(),
                size: i.size,
                blob_hash: hex::encode(i.blob_hash),
                chunks: i.chunks.iter().map(hex::encode).collect(),
            })
            .collect(),
    }
}

/// `90s`, `45m`, `2h`, `1h30m`; at most a year.
fn parse_duration(s: &str) -> Option<std::time::Duration> {
    let mut total = 0u64;
    let mut num = String::new();
    for c in s.trim().chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let n: u64 = num.parse().ok()?;
        num.clear();
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => return None,
        };
        total = total.checked_add(n.checked_mul(unit)?)?;
    }
    (num.is_empty() && total > 0 && total <= 366 * 86_400).then(|| std::time::Duration::from_secs(total))
}

/// A mailbox whose backup stopped before the end (the `--max-duration` window ended, or the server
/// asked for a longer wait than exarch accepts); what was exported is stored and the next run
/// continues it.
#[derive(Debug)]
struct Stopped(String);

impl std::fmt::Display for Stopped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}; what was exported is stored and the next run continues", self.0)
    }
}
impl std::error::Error for Stopped {}

/// True for a mailbox that stopped part-way rather than failed.
fn is_partial(e: &anyhow::Error) -> bool {
    e.is::<Stopped>() || e.downcast_ref::<EwsError>().is_some_and(EwsError::stops_run)
}

/// What the next run needs: each folder's SyncFolderItems state.
#[derive(Debug, Default, Serialize, Deserialize)]
struct SourceState {
    version: u32,
    folders: BTreeMap<String, String>,
    /// The mailbox's default folders, folder id → role (`inbox`, `sentitems`, ...), so that a
    /// restore finds them in a mailbox where they have other names.
    #[serde(default)]
    default_folders: BTreeMap<String, String>,
}

/// The EWS endpoint without any credentials written into it, and the credentials to use. A user or
/// password in the URL is taken out (it would otherwise be stored in snapshots and printed) and
/// used only where no flag, file or environment variable gives one.
pub(super) fn endpoint(url: &str, a: &EwsConnArgs) -> Result<(String, Auth)> {
    let mut u = reqwest::Url::parse(url).map_err(|e| usage(format!("--ews {url:?}: not a URL ({e})")))?;
    if !matches!(u.scheme(), "https" | "http") {
        return Err(usage(format!(
            "--ews: the URL must start with https:// (or http:// for tests), not {}:",
            u.scheme()
        )));
    }
    let decode = |s: &str| percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned();
    let (url_user, url_pass) = (decode(u.username()), u.password().map(decode));
    if !url_user.is_empty() || url_pass.is_some() {
        let _ = u.set_username("");
        let _ = u.set_password(None);
        eprintln!(
            "warning: the --ews URL holds credentials; they are not stored or shown. A password on the command line \
             is visible to other users of this machine: prefer EXARCH_EWS_PASSWORD or --ews-password-file"
        );
    }
    let auth = auth_with(a, (!url_user.is_empty()).then_some(url_user), url_pass)?;
    Ok((u.to_string(), auth))
}

fn auth_with(a: &EwsConnArgs, url_user: Option<String>, url_pass: Option<String>) -> Result<Auth> {
    if let Some(t) = &a.token_file {
        return Ok(Auth::Bearer(crate::secrets::read_file(t)?.0));
    }
    let user = a.user.clone().or(url_user).ok_or_else(|| usage("--ews needs --user NAME (or --token-file FILE)"))?;
    let password = match (&a.ews_password_file, std::env::var("EXARCH_EWS_PASSWORD"), url_pass) {
        (Some(f), _, _) => crate::secrets::read_file(f)?.0,
        (None, Ok(p), _) if !p.is_empty() => p,
        (None, _, Some(p)) => p,
        _ => return Err(usage("no EWS password: set EXARCH_EWS_PASSWORD or pass --ews-password-file FILE")),
    };
    Ok(match a.auth {
        LogonAuth::Basic => Auth::Basic { user, password },
        LogonAuth::Ntlm => Auth::Ntlm { user, password },
        LogonAuth::Auto => Auth::Auto { user, password },
    })
}

/// The outcome for one mailbox.
struct Done {
    mailbox: String,
    result: Result<(Id, BackupStats)>,
}

pub fn run(g: &Global, a: &PackArgs, url: &str) -> Result<()> {
    let (url, auth) = endpoint(url, &a.conn)?;
    let url = url.as_str();
    let time_ms = super::pack::snapshot_time(a.time.as_deref())?;
    let deadline = match &a.max_duration {
        Some(d) => Some(
            std::time::Instant::now()
                + parse_duration(d)
                    .ok_or_else(|| usage(format!("--max-duration {d}: use e.g. 45m, 2h, 1h30m, 90s (at most 366d)")))?,
        ),
        None => None,
    };
    let client = Client::new(ClientConfig {
        url: url.to_string(),
        auth,
        ca_cert: a.conn.ca_cert.clone(),
        concurrency: (a.concurrency * a.requests_per_mailbox).max(1),
        per_mailbox: a.requests_per_mailbox.max(1),
        sync_concurrency: a.sync_concurrency.max(1),
        timeout: std::time::Duration::from_secs(180),
        deadline,
        limits: exarch_ews_source::export_stream::Limits {
            max_item_bytes: a.max_item_size,
            in_memory: 8 * 1024 * 1024,
            spill_dir: crate::private::dir(&super::cache_root(g).join("spill"))?,
        },
    })?;
    let mut mailboxes: Vec<String> = a.mailbox.clone();
    if let Some(f) = &a.mailboxes_file {
        let s = std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
        mailboxes.extend(s.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).map(String::from));
    }
    if a.all_mailboxes {
        mailboxes.extend(client.all_mailboxes().context("listing mailboxes (ResolveNames)")?);
    }
    if a.public_folders {
        mailboxes.push(PUBLIC_FOLDERS.to_string());
    }
    mailboxes.sort();
    mailboxes.dedup();
    if mailboxes.is_empty() {
        bail!(usage("no mailboxes: give --mailbox SMTP, --mailboxes-file FILE, --all-mailboxes or --public-folders"));
    }
    let repo = super::open(g)?;
    let lock =
        super::write_lock(g, &repo, exarch_archive::lock::LockKind::Shared, exarch_archive::lock::LockPurpose::Pack)?;
    let index = Arc::new(repo.index()?);
    super::warn_skipped_index(&index);
    let mut run_id = [0u8; 16];
    repo.context().entropy.fill(&mut run_id);
    let started = std::time::Instant::now();
    let queue = Mutex::new(mailboxes.iter().cloned().collect::<Vec<_>>());
    let done: Mutex<Vec<Done>> = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..a.concurrency.max(1).min(mailboxes.len()) {
            s.spawn(|| loop {
                let Some(mb) = queue.lock().expect("queue").pop() else { return };
                let result = backup_mailbox(
                    &repo,
                    index.clone(),
                    &client,
                    Run { url, run_id, time_ms, deadline, lock: lock.watch(), quiet: g.quiet || g.json },
                    &mb,
                );
                if !g.quiet && !g.json {
                    match &result {
                        Ok((id, st)) => eprintln!(
                            "{mb}: snapshot {} ({} items, {} exported, {} unchanged, {} skipped)",
                            id.short(),
                            st.items,
                            st.items_read,
                            st.items_carried,
                            st.skipped
                        ),
                        Err(e) if is_partial(e) => eprintln!("{mb}: INCOMPLETE: {e}"),
                        Err(e) => eprintln!("{mb}: FAILED: {e:#}"),
                    }
                }
                done.lock().expect("done").push(Done { mailbox: mb, result });
            });
        }
    });
    let mut done = done.into_inner().expect("done");
    done.sort_by(|a, b| a.mailbox.cmp(&b.mailbox));
    report(g, &client, &done, started.elapsed().as_secs_f64())?;
    let failed = done.iter().filter(|d| d.result.as_ref().is_err_and(|e| !is_partial(e))).count();
    let partial = done.iter().filter(|d| d.result.as_ref().is_err_and(is_partial)).count();
    if failed > 0 {
        // Damage met in the repository outranks other failures: exit 4, as everywhere.
        let damaged = done.iter().filter_map(|d| d.result.as_ref().err()).any(|e| {
            e.chain().any(|c| {
                c.downcast_ref::<exarch_archive::Error>()
                    .is_some_and(|a| a.class() == exarch_archive::ErrorClass::Damage)
            })
        });
        let msg =
            format!("{failed} of {} mailbox(es) could not be backed up (see above); the others were saved", done.len());
        if damaged {
            return Err(crate::Exit(crate::EXIT_DAMAGE, msg).into());
        }
        bail!(msg);
    }
    if partial > 0 {
        return Err(crate::Exit(
            crate::EXIT_PARTIAL,
            format!(
                "{partial} of {} mailbox(es) stopped part-way (see above); the next run continues them",
                done.len()
            ),
        )
        .into());
    }
    Ok(())
}

fn report(g: &Global, client: &Client, done: &[Done], secs: f64) -> Result<()> {
    let cs = client.stats();
    let exports = cs.requests.get("ExportItems").copied().unwrap_or(0);
    let items_per_request = if exports == 0 { 0.0 } else { cs.items_exported as f64 / exports as f64 };
    let total =
        |f: fn(&BackupStats) -> u64| done.iter().filter_map(|d| d.result.as_ref().ok()).map(|(_, s)| f(s)).sum::<u64>();
    if g.json {
        let per: Vec<_> = done
            .iter()
            .map(|d| match &d.result {
                Ok((id, s)) => json!({"mailbox": d.mailbox, "snapshot": id.to_hex(), "stats": s}),
                Err(e) if is_partial(e) => {
                    json!({"mailbox": d.mailbox, "complete": false, "status": "partial", "error": e.to_string()})
                }
                Err(e) => json!({"mailbox": d.mailbox, "error": format!("{e:#}")}),
            })
            .collect();
        let status = if done.iter().all(|d| d.result.is_ok()) { "complete" } else { "partial" };
        return super::print_json(&json!({
            "status": status,
            "mailboxes": per,
            "requests": cs.requests,
            "requests_total": cs.requests.values().sum::<u64>(),
            "items_exported": cs.items_exported,
            "items_per_export_request": items_per_request,
            "back_offs_honoured": cs.back_offs_honoured,
            "back_off_ms_total": cs.back_off_ms_total,
            "retries": cs.retries,
            "batches_split": cs.batches_split,
            "export_requests_plain_halving": cs.export_requests_plain_halving,
            "items": total(|s| s.items),
            "skipped": total(|s| s.skipped),
            "bytes_new": total(|s| s.bytes_new),
            "bytes_stored": total(|s| s.bytes_stored),
            "duration_secs": secs,
        }));
    }
    if g.quiet {
        return Ok(());
    }
    let ok = done.iter().filter(|d| d.result.is_ok()).count();
    println!(
        "backed up {ok} of {} mailbox(es) in {secs:.1} s: {} items ({} skipped)",
        done.len(),
        total(|s| s.items),
        total(|s| s.skipped)
    );
    println!(
        "  EWS        {} requests ({}), {:.1} items per ExportItems request",
        cs.requests.values().sum::<u64>(),
        cs.requests.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", "),
        items_per_request
    );
    println!(
        "  throttling {} back-off(s) honoured ({:.1} s waited), {} retries; {} batch(es) split to isolate failing items",
        cs.back_offs_honoured,
        cs.back_off_ms_total as f64 / 1000.0,
        cs.retries,
        cs.batches_split
    );
    println!(
        "  data       {} new, {} stored after compression and encryption",
        bytes(total(|s| s.bytes_new)),
        bytes(total(|s| s.bytes_stored))
    );
    Ok(())
}

/// Metadata of an item as the sync reported it (or as the parent snapshot recorded it).
#[derive(Clone)]
struct Pending {
    folder: u32,
    meta: ItemMeta,
}

/// What every mailbox of one run shares.
struct Run<'a> {
    url: &'a str,
    run_id: [u8; 16],
    time_ms: i64,
    deadline: Option<std::time::Instant>,
    lock: exarch_archive::lock::LockWatch,
    quiet: bool,
}

fn backup_mailbox(
    repo: &Repository,
    index: Arc<IndexTable>,
    client: &Client,
    run: Run<'_>,
    mailbox: &str,
) -> Result<(Id, BackupStats)> {
    let Run { url, run_id, time_ms, deadline, lock, quiet } = run;
    // The parent: the newest snapshot of this mailbox that opens. A damaged newer one is passed
    // over (and named), so one bad snapshot does not block every later backup.
    let (parent, damaged) = repo.latest_intact(mailbox)?;
    if !quiet {
        for (id, why) in &damaged {
            eprintln!(
                "{mailbox}: warning: snapshot {} is damaged ({why}); continuing from {} — `exarch forget {}` removes it",
                id.short(),
                parent.as_ref().map(|(p, _)| format!("snapshot {}", p.short())).unwrap_or_else(|| "a full export".into()),
                id.short()
            );
        }
    }
    let (parent_id, parent) = match parent {
        Some((id, s)) => (Some(id), Some(s)),
        None => (None, None),
    };
    let prev: SourceState =
        parent.as_ref().and_then(|p| serde_json::from_slice(&p.manifest().source_state).ok()).unwrap_or_default();
    let opts = BackupOptions {
        mailbox: mailbox.to_string(),
        source: format!("ews:{url}"),
        time_ms,
        parent: parent_id,
        run_id,
        workers: 2,
        lock,
    };
    let mut backup = Backup::start(repo, index, opts)?;
    let resume_at = resume_path(repo, mailbox);
    let resumed: HashMap<String, ResumeItem> = std::fs::read(&resume_at)
        .ok()
        .and_then(|b| serde_json::from_slice::<ResumeFile>(&b).ok())
        .filter(|f| f.parent == parent_id.map(|p| p.to_hex()))
        .map(|f| f.items.into_iter().map(|i| (i.source_id.clone(), i)).collect())
        .unwrap_or_default();
    let mut since_checkpoint = 0usize;

    // Folders: display names and parents; the top of the store is whatever is not listed.
    // Public folders have no sync: their tree comes from FindFolder, their items from FindItem.
    let public = mailbox == PUBLIC_FOLDERS;
    let tree = client.folder_tree(mailbox)?;
    let folders: HashMap<String, (String, String, String)> = tree
        .iter()
        .filter(|c| c.kind != ChangeKind::Delete)
        .map(|c| (c.id.clone(), (c.parent_id.clone(), c.display_name.clone(), c.folder_class.clone())))
        .collect();
    let mut index_of: HashMap<String, u32> = HashMap::new();
    fn folder_index(
        id: &str,
        folders: &HashMap<String, (String, String, String)>,
        index_of: &mut HashMap<String, u32>,
        backup: &mut Backup,
        depth: usize,
    ) -> u32 {
        if let Some(i) = index_of.get(id) {
            return *i;
        }
        let Some((parent, name, class)) = folders.get(id) else { return 0 };
        let p = if depth > 64 { 0 } else { folder_index(parent, folders, index_of, backup, depth + 1) };
        let i = backup.folder(p, name, id, class);
        index_of.insert(id.to_string(), i);
        i
    }
    let mut folder_ids: Vec<&String> = folders.keys().collect();
    folder_ids.sort();

    // The parent's items and skipped items, by folder id.
    let mut parent_items: HashMap<String, Vec<usize>> = HashMap::new();
    let mut parent_skipped: HashMap<String, Vec<String>> = HashMap::new();
    if let Some(p) = &parent {
        let m = p.manifest();
        for (i, it) in m.items.iter().enumerate() {
            let fid = text(&m.folders[it.folder.to_native() as usize].source_id).into_owned();
            parent_items.entry(fid).or_default().push(i);
        }
        for s in m.skipped.iter() {
            let fid = text(&m.folders[s.folder.to_native() as usize].source_id).into_owned();
            parent_skipped.entry(fid).or_default().push(text(&s.source_id).into_owned());
        }
    }

    // (A restore aid only: a server that cannot say costs nothing but the mapping.)
    let default_folders = if public { BTreeMap::new() } else { client.default_folders(mailbox).unwrap_or_default() };
    let mut state = SourceState { version: 1, folders: BTreeMap::new(), default_folders };
    // Everything to export, from all folders: batches then fill up across small folders.
    let mut to_export: Vec<(ToExport, Pending)> = Vec::new();
    for fid in folder_ids {
        let folder = folder_index(fid, &folders, &mut index_of, &mut backup, 0);
        // (A public folder is listed whole every time, so the parent is always a valid base.)
        let since = if public { Some(String::new()) } else { prev.folders.get(fid).cloned() };
        // What the parent holds for this folder is only a valid base if we continue from its state.
        let mut carried: HashMap<String, usize> = match (&since, &parent) {
            (Some(_), Some(p)) => parent_items
                .get(fid)
                .map(|v| v.iter().map(|&i| (text(&p.manifest().items[i].source_id).into_owned(), i)).collect())
                .unwrap_or_default(),
            _ => HashMap::new(),
        };
        let mut pending: Vec<(ToExport, Pending)> = Vec::new();
        let meta_of = |c: &ItemChange| ItemMeta {
            folder,
            name: String::new(),
            source_id: c.id.clone(),
            change_key: c.change_key.clone(),
            item_class: c.item_class.clone(),
            subject: c.subject.clone(),
            sender: c.from.clone(),
            received_ms: parse_rfc3339_ms(&c.received).unwrap_or(NO_TIME),
            flags: if c.associated { ITEM_ASSOCIATED } else { 0 },
        };
        if public {
            // Everything in the folder now; what the parent holds with the same change key is
            // carried, the rest exported, and what is gone is left out.
            let listed = client.find_items(mailbox, fid)?;
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
                pending.push((ToExport { id: c.id.clone(), size: c.size }, Pending { folder, meta: meta_of(c) }));
            }
            // Deleted items are not listed, so nothing else to do; no sync state to keep.
        } else {
            let mut sync_state = since.clone();
            loop {
                let s = client.sync_items(mailbox, fid, sync_state.as_deref(), MAX_SYNC_CHANGES)?;
                for c in s.changes {
                    match c.kind {
                        ChangeKind::Create | ChangeKind::Update => {
                            carried.remove(&c.id);
                            pending.retain(|(t, _)| t.id != c.id);
                            let meta = meta_of(&c);
                            pending.push((ToExport { id: c.id, size: c.size }, Pending { folder, meta }));
                        }
                        ChangeKind::Delete => {
                            carried.remove(&c.id);
                            pending.retain(|(t, _)| t.id != c.id);
                        }
                        ChangeKind::ReadFlagChange => {}
                    }
                }
                if s.last {
                    sync_state = Some(s.sync_state);
                    break;
                }
                exarch_ews_source::client::check_sync_progress(
                    sync_state.as_deref(),
                    &s.sync_state,
                    pending.len() + carried.len(),
                )?;
                sync_state = Some(s.sync_state);
            }
            state.folders.insert(fid.clone(), sync_state.unwrap_or_default());
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
                    pending.push((ToExport { id: id.clone(), size: it.size.to_native() }, Pending { folder, meta }));
                }
            }
            // Items the parent could not export are tried again.
            let queued: HashSet<String> = pending.iter().map(|(t, _)| t.id.clone()).collect();
            for id in parent_skipped.get(fid).into_iter().flatten() {
                // (A public folder's listing already queued every item it still holds.)
                if !queued.contains(id) && since.is_some() && !public {
                    let meta = ItemMeta { folder, source_id: id.clone(), received_ms: NO_TIME, ..ItemMeta::default() };
                    pending.push((ToExport { id: id.clone(), size: 0 }, Pending { folder, meta }));
                }
            }
        }

        // Items an interrupted run already stored are carried, not exported again.
        pending.retain(|(t, p)| {
            let Some(r) = resumed.get(&t.id) else { return true };
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

    let metas: HashMap<String, Pending> = to_export.iter().map(|(t, p)| (t.id.clone(), p.clone())).collect();
    let list: Vec<ToExport> = to_export.into_iter().map(|(t, _)| t).collect();
    let backup_cell = std::cell::RefCell::new(&mut backup);
    let mut stopped: Option<String> = None;
    let mut pos = 0;
    while pos < list.len() {
        if deadline.is_some_and(|d| std::time::Instant::now() >= d) {
            stopped = Some("the time window (--max-duration) ended".into());
            break;
        }
        // Sized by count, bytes and the server's measured speed (see export::next_batch).
        let n = next_batch(&list[pos..], MAX_EXPORT_BATCH, client.export_seconds_per_byte());
        let batch = &list[pos..pos + n];
        pos += n;
        let mut ok = |id: &str, data: ItemData| -> Result<(), EwsError> {
            let archive_err = |e: exarch_archive::Error| EwsError::Sink(Box::new(e));
            let Some(p) = metas.get(id) else {
                return Err(EwsError::Unexpected {
                    operation: "ExportItems".into(),
                    detail: format!("item {id} was not asked for"),
                });
            };
            let mut meta = p.meta.clone();
            meta.name = data.file_name();
            // Small items go through memory; large ones were spooled to disk and are read as a stream.
            if data.in_memory().is_some() {
                let bytes = data.into_vec().map_err(|e| EwsError::Transport(e.to_string()))?;
                backup_cell.borrow_mut().add_item(meta, bytes).map_err(archive_err)
            } else {
                backup_cell.borrow_mut().add_item_reader(meta, data.into_reader()).map_err(archive_err)
            }
        };
        let mut failed = |id: &str, err: String| {
            let folder = metas.get(id).map(|p| p.folder).unwrap_or(0);
            backup_cell.borrow_mut().skip(folder, id, &err);
        };
        match export_batch(client, mailbox, batch, &mut ok, &mut failed) {
            Ok(()) => {}
            // The server wants a longer pause than we wait, or the window ends first: keep what
            // was exported (checkpoint below) and stop this mailbox for the run.
            Err(e) if e.stops_run() => {
                stopped = Some(e.to_string());
                break;
            }
            // The archive's own error, so damage stays damage (exit 4).
            Err(EwsError::Sink(e)) => {
                return Err(match e.downcast::<exarch_archive::Error>() {
                    Ok(a) => anyhow::Error::from(*a),
                    Err(e) => anyhow::anyhow!(e),
                })
            }
            Err(e) => return Err(e.into()),
        }
        since_checkpoint += batch.len();
        if since_checkpoint >= CHECKPOINT_EVERY || deadline.is_some_and(|d| std::time::Instant::now() >= d) {
            since_checkpoint = 0;
            let items = backup_cell.borrow_mut().checkpoint()?;
            save_resume(&resume_at, &resume_file(parent_id, &items))?;
        }
    }
    drop(backup_cell);
    if let Some(why) = stopped {
        // Stopped early: what was exported is stored and listed in the resume file; no snapshot.
        let items = backup.checkpoint()?;
        save_resume(&resume_at, &resume_file(parent_id, &items))?;
        return Err(Stopped(why).into());
    }
    backup.set_source_state(serde_json::to_vec(&state).expect("state serialises"));
    let done = backup.finish()?;
    let _ = std::fs::remove_file(&resume_at);
    Ok(done)
}
