//! The EWS client: one HTTP request per call, retried through the governor.
//!
//! HTTP, TLS and authentication are in `transport.rs`. Impersonation: every mailbox request carries the `ExchangeImpersonation` header and
//! `X-AnchorMailbox`, so Exchange routes it to the right mailbox server.

use crate::request::{envelope, FolderRef, Operation, UploadItem};
use crate::response::{self, EwsError, Exported, HierarchySync, ItemSync, Uploaded};
use crate::throttle::Governor;
pub use crate::transport::Auth;
use crate::transport::{Body, Transport};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub url: String,
    pub auth: Auth,
    /// PEM file of an extra CA to trust (on-premises certificates).
    pub ca_cert: Option<std::path::PathBuf>,
    /// Requests in flight overall, and per mailbox.
    pub concurrency: usize,
    pub per_mailbox: usize,
    /// Sync calls (SyncFolderHierarchy, SyncFolderItems) in flight for the account.
    pub sync_concurrency: usize,
    pub timeout: Duration,
    /// When the run must end: no request waits past it (`EwsError::OutOfTime` instead).
    pub deadline: Option<std::time::Instant>,
    /// Bounds on one exported item (size cap, memory, where large items are spooled).
    pub limits: crate::export_stream::Limits,
    /// Whether NTLM binds to the TLS channel (Extended Protection); `Never` behind a TLS-inspecting
    /// proxy.
    pub channel_binding: crate::transport::ChannelBinding,
}

/// The longest back-off the client waits out. A server asking for more stops the mailbox for
/// the run (a partial run the next one continues) rather than hold it hostage, and rather than
/// retry early, which Exchange punishes.
pub const MAX_BACK_OFF: Duration = Duration::from_secs(15 * 60);
/// Attempts to connect before a server that cannot be reached is given up on.
const CONNECT_ATTEMPTS: u32 = 3;
/// Folders in a public folder tree, items in one folder: far beyond real stores, but finite.
const MAX_FOLDERS: usize = 1_000_000;
const MAX_FOLDER_ITEMS: usize = 10_000_000;

/// What the client did, for the run summary.
#[derive(Debug, Default, Clone, Serialize)]
pub struct ClientStats {
    pub requests: BTreeMap<String, u64>,
    pub items_exported: u64,
    pub items_uploaded: u64,
    pub back_offs_honoured: u64,
    pub back_off_ms_total: u64,
    pub retries: u64,
    /// ExportItems batches that failed as a whole and were split.
    pub batches_split: u64,
    /// What plain halving (testing both halves of every failing batch) would have sent.
    pub export_requests_plain_halving: u64,
}

pub struct Client {
    transport: Transport,
    pub governor: Governor,
    stats: Mutex<ClientStats>,
    /// Server time per exported byte (seconds, moving average): sizes the next export batches.
    export_speed: Mutex<Option<f64>>,
    deadline: Option<std::time::Instant>,
    limits: crate::export_stream::Limits,
}

/// Distinguished names of the default folders a restore maps by role rather than by name.
pub const DEFAULT_FOLDERS: [&str; 11] = [
    "inbox",
    "sentitems",
    "deleteditems",
    "drafts",
    "outbox",
    "junkemail",
    "calendar",
    "contacts",
    "tasks",
    "notes",
    "journal",
];

/// Attempts per request before giving up on a transient failure.
const MAX_ATTEMPTS: u32 = 30;
/// Throttled attempts of a multi-item export before it is split into smaller requests.
const EXPORT_ATTEMPTS_BEFORE_SPLIT: u32 = 4;

impl Client {
    pub fn new(cfg: ClientConfig) -> Result<Client, EwsError> {
        let transport = Transport::new(
            cfg.url,
            cfg.auth,
            cfg.ca_cert.as_deref(),
            cfg.timeout,
            cfg.concurrency.max(4),
            cfg.channel_binding,
        )?;
        Ok(Client {
            transport,
            governor: Governor::new(cfg.concurrency, cfg.per_mailbox).with_sync_limit(cfg.sync_concurrency),
            stats: Mutex::new(ClientStats::default()),
            export_speed: Mutex::new(None),
            deadline: cfg.deadline,
            limits: cfg.limits,
        })
    }

    /// Whether another attempt may follow this failure (the `attempt`-th).
    fn may_retry(e: &EwsError, attempt: u32, max_attempts: u32) -> bool {
        attempt < max_attempts && (!matches!(e, EwsError::Connect(_)) || attempt < CONNECT_ATTEMPTS)
    }

    fn permit(&self, key: &str, sync: bool) -> Result<crate::throttle::Permit<'_>, EwsError> {
        // A mailbox the server told to wait longer than we do stays stopped for the run, even
        // for a caller that went on after the first refusal.
        let waiting = self.governor.waiting(key);
        if waiting > MAX_BACK_OFF {
            let cap_ms = MAX_BACK_OFF.as_millis() as u64;
            return Err(EwsError::BackOffTooLong { ms: waiting.as_millis().min(u64::MAX as u128) as u64, cap_ms });
        }
        self.governor.acquire_until(key, sync, self.deadline).ok_or(EwsError::OutOfTime)
    }

    pub fn stats(&self) -> ClientStats {
        self.stats.lock().expect("stats").clone()
    }

    pub(crate) fn note_split(&self, plain_equivalent: u64) {
        let mut s = self.stats.lock().expect("stats");
        s.batches_split += 1;
        s.export_requests_plain_halving += plain_equivalent;
    }

    pub(crate) fn note_plain(&self, n: u64) {
        self.stats.lock().expect("stats").export_requests_plain_halving += n;
    }

    /// Sends one request; returns the HTTP status (200 or 500, which carries a SOAP fault) and the
    /// body, still to be read. Requests for the public folders go without impersonation.
    fn send(&self, op: &Operation, mailbox: Option<&str>) -> Result<(u16, Body), EwsError> {
        let mailbox = mailbox.filter(|m| *m != crate::PUBLIC_FOLDERS);
        let started = std::time::Instant::now();
        let sent = self.transport.post(op.name(), mailbox, envelope(op, mailbox));
        log_request(op.name(), mailbox, &sent, started);
        sent
    }

    fn post(&self, op: &Operation, mailbox: Option<&str>) -> Result<Vec<u8>, EwsError> {
        self.send(op, mailbox)?.1.bytes()
    }

    /// Sets the back-off after a failed attempt (the next permit waits for it) and counts it. A
    /// hint beyond `MAX_BACK_OFF`, or one that ends after the deadline, is an error: the mailbox
    /// stops for this run, and no request of it goes before the hint has passed.
    /// `first`: the request's first attempt was refused (not a retry of one refused already).
    fn backed_off(&self, key: &str, e: &EwsError, retrying: bool, first: bool) -> Result<(), EwsError> {
        let hint = e.back_off_ms();
        let cap_ms = MAX_BACK_OFF.as_millis() as u64;
        let waited = self.governor.throttled(key, hint, first);
        let mut s = self.stats.lock().expect("stats");
        s.retries += u64::from(retrying);
        s.back_offs_honoured += u64::from(hint.is_some());
        s.back_off_ms_total += waited.as_millis().min(cap_ms as u128) as u64;
        if let Some(ms) = hint.filter(|ms| *ms > cap_ms) {
            return Err(EwsError::BackOffTooLong { ms, cap_ms });
        }
        if self.deadline.is_some_and(|d| std::time::Instant::now() + waited > d) {
            return Err(EwsError::OutOfTime);
        }
        Ok(())
    }

    /// Sends `op`, retrying transient failures after the back-off the governor sets.
    pub fn call<T>(
        &self,
        op: &Operation,
        mailbox: Option<&str>,
        parse: fn(&[u8]) -> Result<T, EwsError>,
    ) -> Result<T, EwsError> {
        self.call_with(op, mailbox, parse, MAX_ATTEMPTS, EwsError::is_transient)
    }

    /// `retry` decides which failures are sent again (after the back-off): requests that change
    /// the mailbox are only retried when the server surely did not act on them.
    fn call_with<T>(
        &self,
        op: &Operation,
        mailbox: Option<&str>,
        parse: fn(&[u8]) -> Result<T, EwsError>,
        max_attempts: u32,
        retry: fn(&EwsError) -> bool,
    ) -> Result<T, EwsError> {
        let key = mailbox.unwrap_or("(service account)");
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result = {
                let sync = matches!(op, Operation::SyncFolderHierarchy { .. } | Operation::SyncFolderItems { .. });
                let _permit = self.permit(key, sync)?;
                *self.stats.lock().expect("stats").requests.entry(op.name().to_string()).or_default() += 1;
                self.post(op, mailbox).and_then(|body| parse(&body))
            };
            match result {
                Ok(v) => {
                    self.governor.succeeded(key);
                    return Ok(v);
                }
                Err(e) if retry(&e) && Self::may_retry(&e, attempt, max_attempts) => {
                    self.backed_off(key, &e, true, attempt == 1)?
                }
                Err(e) => {
                    if e.is_transient() {
                        // Giving up on this request, but the back-off still binds the next one.
                        self.backed_off(key, &e, false, attempt == 1)?;
                    }
                    return Err(e);
                }
            }
        }
    }

    /// Every mailbox the address list resolves for `SMTP:` (see README for the limits).
    pub fn all_mailboxes(&self) -> Result<Vec<String>, EwsError> {
        let mut v = self.call(&Operation::ResolveNames { entry: "SMTP:" }, None, response::parse_resolve_names)?;
        v.sort();
        v.dedup();
        Ok(v)
    }

    pub fn sync_hierarchy(
        &self,
        mailbox: &str,
        root: FolderRef,
        state: Option<&str>,
    ) -> Result<HierarchySync, EwsError> {
        self.call(
            &Operation::SyncFolderHierarchy { root, sync_state: state },
            Some(mailbox),
            response::parse_sync_folder_hierarchy,
        )
    }

    pub fn sync_items(&self, mailbox: &str, folder: &str, state: Option<&str>, max: u32) -> Result<ItemSync, EwsError> {
        let op = Operation::SyncFolderItems { folder: FolderRef::Id(folder), sync_state: state, max_changes: max };
        self.call(&op, Some(mailbox), response::parse_sync_folder_items)
    }

    /// Exports `ids`, handing each item to `sink(index, item)` as it arrives (streamed: one item in
    /// memory at a time). Transient failures are retried after the back-off for the items not yet
    /// delivered, so no item is handed over twice. A batch the server keeps refusing as too
    /// expensive is given up on after a few back-offs, so the caller can split it; on `Err`, the
    /// items delivered so far are exactly those `sink` saw.
    pub fn export_each(
        &self,
        mailbox: &str,
        ids: &[&str],
        sink: &mut dyn FnMut(usize, Exported) -> Result<(), EwsError>,
    ) -> Result<(), EwsError> {
        let max_attempts = if ids.len() > 1 { EXPORT_ATTEMPTS_BEFORE_SPLIT } else { MAX_ATTEMPTS };
        let mut delivered = 0;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let rest = &ids[delivered..];
            let op = Operation::ExportItems { item_ids: rest };
            let (mut got, mut bytes, mut ok) = (0usize, 0usize, 0u64);
            let started;
            let result = {
                let _permit = self.permit(mailbox, false)?;
                started = std::time::Instant::now();
                *self.stats.lock().expect("stats").requests.entry(op.name().to_string()).or_default() += 1;
                self.send(&op, Some(mailbox)).and_then(|(status, resp)| {
                    if status == 500 {
                        return response::parse_export_items(&resp.bytes()?).map(|_| 0);
                    }
                    let input = std::io::BufReader::with_capacity(256 * 1024, resp);
                    crate::export_stream::stream_export_items(input, &self.limits, &mut |e| {
                        let i = delivered + got;
                        if i >= ids.len() {
                            return Err(EwsError::Unexpected {
                                operation: "ExportItems".into(),
                                detail: format!("the server answered more items than the {} asked for", ids.len()),
                            });
                        }
                        if let Exported::Ok { data, .. } = &e {
                            bytes += data.len.max(1024) as usize;
                            ok += 1;
                        } else {
                            bytes += 1024;
                        }
                        got += 1;
                        sink(i, e)
                    })
                })
            };
            delivered += got;
            self.stats.lock().expect("stats").items_exported += ok;
            match result {
                Ok(_) if delivered == ids.len() => {
                    self.governor.succeeded(mailbox);
                    let rate = started.elapsed().as_secs_f64() / bytes.max(1) as f64;
                    let mut speed = self.export_speed.lock().expect("speed");
                    *speed = Some(speed.map_or(rate, |old| 0.7 * old + 0.3 * rate));
                    return Ok(());
                }
                Ok(_) => {
                    return Err(EwsError::Unexpected {
                        operation: op.name().into(),
                        detail: format!("the server answered {delivered} of {} items", ids.len()),
                    })
                }
                // Cut off after the last item: everything arrived.
                Err(EwsError::Xml(ref x)) if x.truncated && delivered == ids.len() => return Ok(()),
                // Too much for the time limit: asking again unchanged would fail again; the caller
                // sends smaller requests (and there is nothing to back off from).
                Err(e) if e.is_time_limit() => return Err(e),
                Err(e) if e.is_transient() && Self::may_retry(&e, attempt, max_attempts) => {
                    self.backed_off(mailbox, &e, true, attempt == 1)?
                }
                Err(e) => {
                    if e.is_transient() {
                        self.backed_off(mailbox, &e, false, attempt == 1)?;
                    }
                    return Err(e);
                }
            }
        }
    }

    /// The server's recent export speed (seconds per byte), once there is a measurement.
    pub fn export_seconds_per_byte(&self) -> Option<f64> {
        *self.export_speed.lock().expect("speed")
    }

    /// One UploadItems request. Only failures after which the server surely stored nothing
    /// (throttling, HTTP 503/429) are retried; a broken connection or a cut-off reply leaves the
    /// outcome unknown and is returned, so the caller can look before uploading again.
    pub fn upload(&self, mailbox: &str, items: &[UploadItem]) -> Result<Vec<Uploaded>, EwsError> {
        let attempts = if items.len() > 1 { EXPORT_ATTEMPTS_BEFORE_SPLIT } else { MAX_ATTEMPTS };
        let r = self.call_with(
            &Operation::UploadItems { items },
            Some(mailbox),
            response::parse_upload_items,
            attempts,
            EwsError::surely_not_processed,
        )?;
        let n = r.iter().filter(|u| matches!(u, Uploaded::Ok { .. })).count() as u64;
        self.stats.lock().expect("stats").items_uploaded += n;
        Ok(r)
    }

    /// Creates one folder. Not retried when the outcome is unknown; the caller looks it up again.
    pub fn create_folder(&self, mailbox: &str, parent: FolderRef, name: &str, class: &str) -> Result<String, EwsError> {
        self.call_with(
            &Operation::CreateFolder { parent, name, class },
            Some(mailbox),
            response::parse_create_folder,
            MAX_ATTEMPTS,
            EwsError::surely_not_processed,
        )
    }

    /// The public folder tree below `publicfoldersroot`, parents before children. Public folders
    /// have no SyncFolderHierarchy, so each folder's children are found with FindFolder.
    pub fn public_folder_tree(&self) -> Result<Vec<response::FolderChange>, EwsError> {
        let mut out = Vec::new();
        let mut queue: std::collections::VecDeque<Option<String>> = std::collections::VecDeque::from([None]);
        // A folder met twice (a loop in what the server says) is walked once.
        let mut seen: std::collections::HashSet<String> = std::collections::HashSet::new();
        while let Some(parent) = queue.pop_front() {
            let mut offset = 0;
            loop {
                let pref = match &parent {
                    None => FolderRef::Distinguished("publicfoldersroot"),
                    Some(id) => FolderRef::Id(id),
                };
                let op = Operation::FindFolder { parent: pref, offset };
                let page = self.call(&op, Some(crate::PUBLIC_FOLDERS), response::parse_find_folder)?;
                for mut f in page.entries {
                    if let (Some(p), true) = (&parent, f.parent_id.is_empty()) {
                        f.parent_id = p.clone();
                    }
                    if !seen.insert(f.id.clone()) {
                        continue;
                    }
                    if out.len() >= MAX_FOLDERS {
                        return Err(EwsError::Unexpected {
                            operation: "FindFolder".into(),
                            detail: format!("more than {MAX_FOLDERS} public folders"),
                        });
                    }
                    queue.push_back(Some(f.id.clone()));
                    out.push(f);
                }
                if page.last || page.next_offset <= offset {
                    break;
                }
                offset = page.next_offset;
            }
        }
        Ok(out)
    }

    /// Every item of a folder through FindItem pages (for public folders, which have no sync).
    pub fn find_items(&self, mailbox: &str, folder: &str) -> Result<Vec<response::ItemChange>, EwsError> {
        let mut out = Vec::new();
        let mut offset = 0;
        loop {
            let op = Operation::FindItem { folder: FolderRef::Id(folder), offset, max: crate::request::MAX_FIND_PAGE };
            let page = self.call(&op, Some(mailbox), response::parse_find_item)?;
            out.extend(page.entries);
            if out.len() > MAX_FOLDER_ITEMS {
                return Err(EwsError::Unexpected {
                    operation: "FindItem".into(),
                    detail: format!("more than {MAX_FOLDER_ITEMS} items in one folder"),
                });
            }
            if page.last || page.next_offset <= offset {
                return Ok(out);
            }
            offset = page.next_offset;
        }
    }

    /// The mailbox's default folders (Inbox, Sent Items, ...), which have other names in other
    /// languages: folder id → distinguished name. Folders the mailbox lacks are left out.
    pub fn default_folders(&self, mailbox: &str) -> Result<std::collections::BTreeMap<String, String>, EwsError> {
        let refs: Vec<FolderRef> = DEFAULT_FOLDERS.iter().map(|d| FolderRef::Distinguished(d)).collect();
        let ids = self.call(&Operation::GetFolder { folders: &refs }, Some(mailbox), response::parse_get_folder)?;
        Ok(ids.into_iter().zip(DEFAULT_FOLDERS).filter_map(|(id, d)| id.map(|id| (id, d.to_string()))).collect())
    }

    /// The folder tree below the distinguished folder `root` (`msgfolderroot`, or the top of the
    /// archive or of Recoverable Items): SyncFolderHierarchy, or FindFolder for the public folders.
    pub fn folder_tree(&self, mailbox: &str, root: &str) -> Result<Vec<response::FolderChange>, EwsError> {
        if mailbox == crate::PUBLIC_FOLDERS {
            return self.public_folder_tree();
        }
        Ok(self.sync_hierarchy(mailbox, FolderRef::Distinguished(root), None)?.changes)
    }

    /// Whether the mailbox has the distinguished folder `id` (a mailbox without an In-Place
    /// Archive has no `archivemsgfolderroot`).
    pub fn has_folder(&self, mailbox: &str, id: &str) -> Result<bool, EwsError> {
        let refs = [FolderRef::Distinguished(id)];
        match self.call(&Operation::GetFolder { folders: &refs }, Some(mailbox), response::parse_get_folder) {
            Ok(found) => Ok(found.first().is_some_and(Option::is_some)),
            Err(EwsError::Failed { code, .. })
                if matches!(
                    code.as_str(),
                    "ErrorFolderNotFound" | "ErrorArchiveMailboxNotEnabled" | "ErrorMailboxStoreUnavailable"
                ) =>
            {
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// Every item of a folder (a sync from no state): ids and the searchable properties.
    pub fn list_folder(&self, mailbox: &str, folder: &str) -> Result<Vec<response::ItemChange>, EwsError> {
        if mailbox == crate::PUBLIC_FOLDERS {
            return self.find_items(mailbox, folder);
        }
        let mut out = Vec::new();
        let mut state: Option<String> = None;
        loop {
            let s = self.sync_items(mailbox, folder, state.as_deref(), crate::request::MAX_SYNC_CHANGES)?;
            for c in s.changes {
                match c.kind {
                    response::ChangeKind::Create | response::ChangeKind::Update => {
                        out.retain(|o: &response::ItemChange| o.id != c.id);
                        out.push(c);
                    }
                    response::ChangeKind::Delete => out.retain(|o| o.id != c.id),
                    response::ChangeKind::ReadFlagChange => {}
                }
            }
            if s.last {
                return Ok(out);
            }
            check_sync_progress(state.as_deref(), &s.sync_state, out.len())?;
            state = Some(s.sync_state);
        }
    }
}

/// A sync that claims more changes follow must move its state on, within bounds; otherwise the
/// server would keep us paging for ever.
pub fn check_sync_progress(old: Option<&str>, new: &str, items: usize) -> Result<(), EwsError> {
    let stuck = old == Some(new);
    if stuck || items > MAX_FOLDER_ITEMS {
        return Err(EwsError::Unexpected {
            operation: "SyncFolderItems".into(),
            detail: if stuck {
                "the server says more changes follow but returns the same sync state".into()
            } else {
                format!("more than {MAX_FOLDER_ITEMS} items in one folder")
            },
        });
    }
    Ok(())
}

/// One debug line per request: operation, mailbox, HTTP status (or the failure's kind) and time to
/// the reply's headers. Never headers or bodies: they carry credentials and mail.
fn log_request(op: &str, mailbox: Option<&str>, sent: &Result<(u16, Body), EwsError>, started: std::time::Instant) {
    let ms = started.elapsed().as_millis() as u64;
    let mailbox = mailbox.unwrap_or("(service account)");
    match sent {
        Ok((status, _)) => tracing::debug!(op, mailbox, status, ms, "EWS request"),
        Err(e) => tracing::debug!(op, mailbox, error = %e, ms, "EWS request failed"),
    }
}
