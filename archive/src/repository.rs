//! Opening, creating and administering a repository.
//!
//! `Repository` holds the storage, the derived keys and the config. Everything that needs the index
//! takes an `IndexTable` explicitly (see `index()`), so code that does not look chunks up never pays
//! for loading it.

use crate::config::{Config, CONFIG_MAGIC};
use crate::crypto::{Entropy, Keys, MasterKey};
use crate::envelope::{open_file, seal_file};
use crate::error::{Error, Result};
use crate::id::Id;
use crate::index::IndexTable;
use crate::keyslot::{KdfParams, KeySlot};
use crate::lock::{LockGuard, LockKind, LockPurpose, DEFAULT_LEASE_SECS};
use crate::manifest::{text, Summary};
use crate::snapshot::Snapshot;
use crate::storage::{FileKind, Storage};
use std::path::PathBuf;
use std::sync::Arc;

/// How to create a repository.
#[derive(Debug, Clone)]
pub struct InitOptions {
    pub kdf: KdfParams,
    /// Label of the first key slot (who or what it is for).
    pub label: String,
    /// Overrides the default config (chunking, pack size, compression level); the id is always fresh.
    pub config: Option<Config>,
}

impl Default for InitOptions {
    fn default() -> Self {
        InitOptions { kdf: KdfParams::default(), label: "initial key".into(), config: None }
    }
}

/// Settings of an open repository handle that are not stored in the repository.
pub struct Context {
    pub entropy: Entropy,
    /// Root of the local cache; the repository's cache lives in `<root>/<repository id>`.
    pub cache_root: PathBuf,
    /// Host name recorded in snapshots and locks.
    pub host: String,
    pub lease_secs: u64,
}

impl Context {
    pub fn new(cache_root: impl Into<PathBuf>) -> Context {
        Context {
            entropy: Entropy::os(),
            cache_root: cache_root.into(),
            host: host_name(),
            lease_secs: DEFAULT_LEASE_SECS,
        }
    }
}

/// This machine's name, for locks and snapshots.
#[cfg(unix)]
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown-host".into())
}

#[cfg(not(unix))]
pub fn host_name() -> String {
    std::env::var("COMPUTERNAME").unwrap_or_else(|_| "unknown-host".into())
}

/// Why there is no `config`: no repository at all, or a repository that lost it (which must not
/// be "repaired" by running init over it).
pub fn missing_config(storage: &dyn Storage) -> Error {
    let dir = storage.describe();
    // A store that cannot even list (a missing bucket, refused credentials) says why.
    let keys = match storage.list(FileKind::Key) {
        Ok(k) => k,
        Err(e) => return e,
    };
    let holds = |k: FileKind| storage.list(k).map(|l| !l.is_empty()).unwrap_or(false);
    if !keys.is_empty() || holds(FileKind::Snapshot) || holds(FileKind::Index) {
        return Error::damaged(
            format!("repository {dir}"),
            "its `config` file is missing, though it holds key slots and data; restore `config` from a copy of \
             the repository (do not run init here)",
        );
    }
    Error::NotARepository(dir)
}

/// The newest intact snapshot of a mailbox (if any), and the newer damaged ones with why.
pub type LatestIntact = (Option<(Id, Snapshot)>, Vec<(Id, String)>);

/// One snapshot as listed: its summary, or why it could not be read.
#[derive(Debug, Clone)]
pub struct SnapshotInfo {
    pub id: Id,
    pub summary: std::result::Result<Summary, String>,
}

pub struct Repository {
    storage: Arc<dyn Storage>,
    keys: Arc<Keys>,
    config: Config,
    ctx: Arc<Context>,
    /// Name of the key slot that opened this handle.
    slot: String,
}

/// What `latest` found nothing for: missing, or perhaps among snapshots whose summaries are damaged
/// (their mailbox cannot be read), which is damage to report rather than absence.
fn unreadable_or_missing(all: &[SnapshotInfo], what: &str, intact: &str) -> Error {
    let damaged: Vec<String> = all.iter().filter(|s| s.summary.is_err()).map(|s| s.id.to_hex()).collect();
    if damaged.is_empty() {
        return Error::NotFound(what.to_string());
    }
    Error::damaged(
        format!("snapshot {}", damaged.join(", ")),
        format!(
            "found no {intact} whose summary opens, and the summary of {} snapshot(s) does not open, so their mailbox is unknown; \
             run `exarch verify` to see why, `exarch forget ID` or `exarch repair snapshots` to remove them",
            damaged.len()
        ),
    )
}

/// Snapshots chosen one per mailbox, as (mailbox, id) sorted by mailbox, and the snapshots whose
/// summary does not open (their mailbox is unknown), for the caller to report.
pub type SnapshotsByMailbox = (Vec<(String, Id)>, Vec<Id>);

impl Repository {
    /// Creates a repository in empty storage and opens it.
    pub fn init(storage: Arc<dyn Storage>, passphrase: &[u8], opts: InitOptions, ctx: Context) -> Result<Repository> {
        if storage.exists(FileKind::Config, "config")? {
            return Err(Error::AlreadyExists(storage.describe()));
        }
        let mut m = [0u8; 32];
        ctx.entropy.fill(&mut m);
        let master = MasterKey(m);
        let mut rid = [0u8; 16];
        ctx.entropy.fill(&mut rid);
        let mut config = opts.config.unwrap_or_else(|| Config::new(String::new()));
        config.id = hex::encode(rid);
        config.check()?;
        let created = if ctx.entropy.is_deterministic() { 0 } else { crate::lock::now_unix() };
        let slot = KeySlot::create(&master, passphrase, opts.kdf, &opts.label, created, &ctx.entropy)?;
        let keys = Keys::derive(master);
        let cfg = seal_file(
            &keys,
            &ctx.entropy,
            CONFIG_MAGIC,
            config.zstd_level,
            &serde_json::to_vec_pretty(&config).expect("config serialises"),
        );
        let slot_name = Id::of_content(&slot).to_hex();
        storage.put(FileKind::Key, &slot_name, &slot)?;
        // The config is written last: a repository exists once it has one.
        storage.put(FileKind::Config, "config", &cfg)?;
        Ok(Repository { storage, keys: Arc::new(keys), config, ctx: Arc::new(ctx), slot: slot_name })
    }

    /// Opens a repository with a passphrase, trying every key slot.
    pub fn open(storage: Arc<dyn Storage>, passphrase: &[u8], ctx: Context) -> Result<Repository> {
        let raw_cfg = match storage.get(FileKind::Config, "config") {
            Ok(c) => c,
            Err(Error::NotFound(_)) => return Err(missing_config(storage.as_ref())),
            Err(e) => return Err(e),
        };
        let slots = storage.list(FileKind::Key)?;
        if slots.is_empty() {
            return Err(Error::NoKeySlot);
        }
        let mut damaged = Vec::new();
        for name in &slots {
            let raw = storage.get(FileKind::Key, name)?;
            // A slot is named by the hash of its bytes: a changed byte shows before any Argon2 run.
            if Id::of_content(&raw).to_hex() != *name {
                damaged.push(Error::damaged(format!("key slot {name}"), "content does not match its name"));
                continue;
            }
            let slot = match KeySlot::parse(&raw, name) {
                Ok(s) => s,
                Err(e) => {
                    damaged.push(e);
                    continue;
                }
            };
            let unwrapped = match slot.unwrap_key(passphrase) {
                Ok(k) => k,
                Err(e) if e.class() == crate::ErrorClass::Damage => {
                    damaged.push(e);
                    continue;
                }
                Err(e) => return Err(e),
            };
            if let Some(master) = unwrapped {
                let keys = Keys::derive(master);
                let body = open_file(&keys, CONFIG_MAGIC, &raw_cfg, "config")?;
                let config: Config =
                    serde_json::from_slice(&body).map_err(|e| Error::damaged("config", e.to_string()))?;
                config.check()?;
                return Ok(Repository {
                    storage,
                    keys: Arc::new(keys),
                    config,
                    ctx: Arc::new(ctx),
                    slot: name.clone(),
                });
            }
        }
        if !damaged.is_empty() {
            // Perhaps the damaged slot was this passphrase's: say so rather than "wrong passphrase".
            let what: Vec<String> = damaged.iter().map(|e| e.to_string()).collect();
            return Err(Error::damaged(
                "key slots",
                format!(
                    "no intact key slot opens with this passphrase, and {} of {} slot(s) are damaged ({}); \
                     try another passphrase of this repository, or restore keys/ from a copy",
                    damaged.len(),
                    slots.len(),
                    what.join("; ")
                ),
            ));
        }
        Err(Error::WrongPassphrase { slots: slots.len() })
    }

    pub fn storage(&self) -> &Arc<dyn Storage> {
        &self.storage
    }

    pub fn keys(&self) -> &Arc<Keys> {
        &self.keys
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn context(&self) -> &Arc<Context> {
        &self.ctx
    }

    pub fn cache_dir(&self) -> PathBuf {
        self.ctx.cache_root.join(&self.config.id)
    }

    /// The key slot that opened this handle.
    pub fn current_slot(&self) -> &str {
        &self.slot
    }

    /// Brings the local index table up to date and maps it.
    pub fn index(&self) -> Result<IndexTable> {
        IndexTable::sync(self.storage.as_ref(), &self.keys, &self.cache_dir())
    }

    /// Like `index`, but the cached table is trusted only after its checksum was checked (and
    /// rebuilt if it fails): for verify, prune and repair, which must not judge by a damaged cache.
    pub fn index_verified(&self) -> Result<IndexTable> {
        IndexTable::sync_verified(self.storage.as_ref(), &self.keys, &self.cache_dir())
    }

    /// Takes a shared (pack, verify, extract), prune, or exclusive (`prune --delete-now`) lock.
    pub fn lock(&self, kind: LockKind, purpose: LockPurpose) -> Result<LockGuard> {
        LockGuard::acquire(self.storage.clone(), &self.ctx.entropy, kind, purpose, &self.ctx.host, self.ctx.lease_secs)
    }

    /// Every snapshot with its summary (or why it cannot be read), oldest first.
    pub fn snapshots(&self) -> Result<Vec<SnapshotInfo>> {
        let mut out: Vec<SnapshotInfo> =
            crate::summary_cache::summaries(self.storage.as_ref(), &self.keys, &self.cache_dir())?
                .into_iter()
                .map(|(id, summary)| SnapshotInfo { id, summary })
                .collect();
        out.sort_by_key(|s| (s.summary.as_ref().map(|s| s.time_ms).unwrap_or(i64::MIN), s.id));
        Ok(out)
    }

    /// Resolves `latest`, a full id or a unique prefix of 8+ hex digits; `mailbox` narrows `latest`.
    pub fn resolve_snapshot(&self, spec: &str, mailbox: Option<&str>) -> Result<Id> {
        let all = self.snapshots()?;
        if spec == "latest" {
            let readable: Vec<(&Id, &Summary)> =
                all.iter().filter_map(|s| s.summary.as_ref().ok().map(|m| (&s.id, m))).collect();
            let mut boxes: Vec<String> = readable.iter().map(|(_, m)| text(&m.mailbox).into_owned()).collect();
            boxes.sort();
            boxes.dedup();
            let want = match mailbox {
                Some(m) => m.to_string(),
                None if boxes.len() <= 1 => match boxes.pop() {
                    Some(b) => b,
                    None => return Err(unreadable_or_missing(&all, "any snapshot", "snapshot")),
                },
                None => {
                    return Err(Error::Usage(format!(
                        "`latest` is ambiguous: the repository holds {} mailboxes; add --mailbox NAME",
                        boxes.len()
                    )))
                }
            };
            return readable
                .iter()
                .filter(|(_, m)| text(&m.mailbox) == want)
                .max_by_key(|(id, m)| (m.time_ms, **id))
                .map(|(id, _)| **id)
                .ok_or_else(|| {
                    unreadable_or_missing(
                        &all,
                        &format!("a snapshot of mailbox {want}"),
                        &format!("snapshot of {want}"),
                    )
                });
        }
        let spec_l = spec.to_ascii_lowercase();
        if spec_l.len() < 8 || !spec_l.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(Error::Usage(format!(
                "`{spec}` is not a snapshot id: give `latest`, a full id or at least 8 hex digits"
            )));
        }
        let hits: Vec<&SnapshotInfo> = all.iter().filter(|s| s.id.to_hex().starts_with(&spec_l)).collect();
        match hits.len() {
            0 => Err(Error::NotFound(format!("snapshot {spec}"))),
            1 => Ok(hits[0].id),
            n => Err(Error::Usage(format!("snapshot prefix {spec} matches {n} snapshots; give more digits"))),
        }
    }

    /// The newest snapshot of every mailbox (store), by mailbox name; and the snapshots whose
    /// summary does not open (their mailbox is unknown), for the caller to report.
    pub fn latest_per_mailbox(&self) -> Result<SnapshotsByMailbox> {
        let mut newest: std::collections::BTreeMap<String, (i64, Id)> = std::collections::BTreeMap::new();
        let mut unreadable = Vec::new();
        for s in self.snapshots()? {
            match &s.summary {
                Ok(m) => {
                    let e = newest.entry(text(&m.mailbox).into_owned()).or_insert((m.time_ms, s.id));
                    if (m.time_ms, s.id) > *e {
                        *e = (m.time_ms, s.id);
                    }
                }
                Err(_) => unreadable.push(s.id),
            }
        }
        Ok((newest.into_iter().map(|(m, (_, id))| (m, id)).collect(), unreadable))
    }

    /// Every snapshot of one backup run, given its run id or a unique prefix of 8+ hex digits:
    /// (mailbox, id) by mailbox; and the snapshots whose summary does not open.
    pub fn snapshots_of_run(&self, run: &str) -> Result<SnapshotsByMailbox> {
        let want = run.to_ascii_lowercase();
        if want.len() < 8 || want.len() > 32 || !want.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(Error::Usage(format!(
                "`{run}` is not a run id: give 8 to 32 hex digits (`exarch snapshots` shows run ids)"
            )));
        }
        let all = self.snapshots()?;
        let unreadable: Vec<Id> = all.iter().filter(|s| s.summary.is_err()).map(|s| s.id).collect();
        let mut runs: Vec<String> = Vec::new();
        let mut out = Vec::new();
        for s in &all {
            let Ok(m) = &s.summary else { continue };
            let rid = hex::encode(m.run_id);
            if rid.starts_with(&want) {
                if !runs.contains(&rid) {
                    runs.push(rid);
                }
                out.push((text(&m.mailbox).into_owned(), s.id));
            }
        }
        match runs.len() {
            0 => Err(unreadable_or_missing(&all, &format!("run {run}"), &format!("snapshot of run {run}"))),
            1 => {
                out.sort();
                Ok((out, unreadable))
            }
            n => Err(Error::Usage(format!("run id prefix {run} matches {n} runs; give more digits"))),
        }
    }

    /// The newest snapshot of `mailbox` whose summary and manifest both open, and the newer ones
    /// of that mailbox that did not (id, why), newest first. A backup continues from the former.
    pub fn latest_intact(&self, mailbox: &str) -> Result<LatestIntact> {
        let mut damaged = Vec::new();
        let all = self.snapshots()?;
        for s in all.iter().rev() {
            let Ok(summary) = &s.summary else { continue };
            if text(&summary.mailbox) != mailbox {
                continue;
            }
            match self.load_snapshot(&s.id) {
                Ok(snap) => return Ok((Some((s.id, snap)), damaged)),
                Err(e) if e.class() == crate::ErrorClass::Damage => damaged.push((s.id, e.to_string())),
                Err(e) => return Err(e),
            }
        }
        Ok((None, damaged))
    }

    pub fn load_snapshot(&self, id: &Id) -> Result<Snapshot> {
        Snapshot::load(self.storage.as_ref(), &self.keys, id)
    }

    /// Opens a snapshot's summary and manifest head only; item pages follow on demand (listing).
    pub fn page_reader(&self, id: &Id) -> Result<crate::snapshot::PageReader<'_>> {
        crate::snapshot::PageReader::open(self.storage.as_ref(), &self.keys, id)
    }

    /// All key slots with their names.
    pub fn key_slots(&self) -> Result<Vec<(String, std::result::Result<KeySlot, String>)>> {
        Ok(self
            .storage
            .list(FileKind::Key)?
            .into_iter()
            .map(|n| {
                let s = self
                    .storage
                    .get(FileKind::Key, &n)
                    .and_then(|raw| KeySlot::parse(&raw, &n))
                    .map_err(|e| e.to_string());
                (n, s)
            })
            .collect())
    }

    /// Adds a key slot for another passphrase; returns its name.
    pub fn add_key(&self, passphrase: &[u8], label: &str, kdf: KdfParams) -> Result<String> {
        let created = if self.ctx.entropy.is_deterministic() { 0 } else { crate::lock::now_unix() };
        let raw = KeySlot::create(self.keys.master(), passphrase, kdf, label, created, &self.ctx.entropy)?;
        let name = Id::of_content(&raw).to_hex();
        self.storage.put(FileKind::Key, &name, &raw)?;
        Ok(name)
    }

    /// Removes a key slot by name or unique prefix; the last slot cannot be removed.
    pub fn remove_key(&self, spec: &str) -> Result<String> {
        let names = self.storage.list(FileKind::Key)?;
        let hits: Vec<&String> = names.iter().filter(|n| n.starts_with(&spec.to_ascii_lowercase())).collect();
        let name = match hits.as_slice() {
            [one] if spec.len() >= 8 => (*one).clone(),
            [] => return Err(Error::NotFound(format!("key slot {spec}"))),
            _ => return Err(Error::Usage(format!("`{spec}` does not name exactly one key slot (give 8+ hex digits)"))),
        };
        if names.len() == 1 {
            return Err(Error::Usage(
                "refusing to remove the only key slot: the repository could never be opened again".into(),
            ));
        }
        self.storage.delete(FileKind::Key, &name)?;
        Ok(name)
    }
}
