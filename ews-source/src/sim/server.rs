//! The simulated Exchange server: EWS over HTTP on loopback, with Exchange-like throttling.
//!
//! Throttling follows Exchange's model closely enough to punish careless clients: each mailbox has
//! a budget that recharges over time; a request that finds it empty gets `ErrorServerBusy` with a
//! `BackOffMilliseconds` hint; a request that arrives before that back-off has passed is a
//! *penalty* (counted, and the back-off grows). Concurrent requests beyond the profile's cap get
//! `ErrorExceededConnectionCount`. Items flagged dirty fail every ExportItems batch containing them.

use super::model::{Item, State};
use crate::dom;
use quick_xml::escape::escape;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Throttling settings.
#[derive(Debug, Clone, Copy)]
pub struct Profile {
    /// Requests one account may have in flight.
    pub max_concurrency: usize,
    /// Sync calls (SyncFolderHierarchy, SyncFolderItems) one account may have in flight.
    pub max_sync_concurrency: usize,
    /// Budget units a mailbox can spend at once, and per second after that.
    pub burst: f64,
    pub recharge_per_sec: f64,
    /// The back-off the server asks for when a budget runs dry.
    pub back_off_ms: u64,
    /// Budget units each exported item costs on top of the request's one.
    pub item_cost: f64,
}

impl Profile {
    pub fn named(name: &str) -> Option<Profile> {
        Some(match name {
            // Exchange 2016+ defaults: EWSMaxConcurrency 27, generous budgets.
            "onprem-default" => Profile {
                max_concurrency: 27,
                max_sync_concurrency: 8,
                burst: 2000.0,
                recharge_per_sec: 1000.0,
                back_off_ms: 1000,
                item_cost: 0.1,
            },
            // A tight policy: few concurrent requests, small budgets, real back-offs.
            "strict" => Profile {
                max_concurrency: 6,
                max_sync_concurrency: 2,
                burst: 15.0,
                recharge_per_sec: 8.0,
                back_off_ms: 500,
                item_cost: 0.5,
            },
            "unlimited" => Profile {
                max_concurrency: 10_000,
                max_sync_concurrency: 10_000,
                burst: 1e12,
                recharge_per_sec: 1e12,
                back_off_ms: 0,
                item_cost: 0.0,
            },
            _ => return None,
        })
    }
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct Stats {
    pub requests: BTreeMap<String, u64>,
    pub items_exported: u64,
    pub items_uploaded: u64,
    /// Uploaded items the server refused (per-item errors), and folders created.
    pub uploads_refused: u64,
    pub folders_created: u64,
    /// Requests answered with HTTP 413 because their body exceeded the request size limit.
    pub requests_too_large: u64,
    pub server_busy_sent: u64,
    pub connection_count_exceeded: u64,
    /// Sync calls refused because the account had too many in flight.
    pub sync_concurrency_exceeded: u64,
    pub penalties: u64,
    pub errors: u64,
    pub batches_failed_dirty: u64,
    /// Transient faults injected: 503s, dropped connections, truncated bodies.
    pub faults_injected: u64,
}

struct Budget {
    tokens: f64,
    last: Instant,
    busy_until: Option<Instant>,
}

pub struct Simulator {
    pub dir: PathBuf,
    state: Mutex<State>,
    profile: Profile,
    credentials: Option<(String, String)>,
    stats: Mutex<Stats>,
    budgets: Mutex<HashMap<String, Budget>>,
    inflight: AtomicUsize,
    sync_inflight: AtomicUsize,
    sizes: Mutex<HashMap<(String, String), u64>>,
    /// Share of requests answered with a transient fault.
    fault_rate: f64,
    fault_counter: AtomicUsize,
    /// Share of uploaded items refused (chosen by content, so the same items every time).
    refuse_rate: f64,
    /// Largest request body accepted (IIS/EWS maxReceivedMessageSize); larger ones get HTTP 413.
    max_request_bytes: usize,
    /// Windows authentication (NTLM) instead of Basic: per connection, by its peer address.
    ntlm: bool,
    ntlm_conns: Mutex<HashMap<std::net::SocketAddr, NtlmConn>>,
    /// Mailboxes that get a misbehaving server (tests of the client's defences).
    hostile: Vec<super::hostile::Rule>,
}

#[derive(Default)]
struct NtlmConn {
    challenge: Option<[u8; 8]>,
    authenticated: bool,
}

/// What the NTLM gate decided for one request.
pub enum Gate {
    Pass,
    /// Answer 401 with this `WWW-Authenticate` value.
    Challenge(String),
}

/// Default request size limit: room for the ~25 MB of base64 Exchange accepts in one import.
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 35_000_000;

/// A transient fault to inject instead of a normal reply.
pub enum Fault {
    /// HTTP 503 with `Retry-After: 1`, as IIS answers when requests queue up.
    Unavailable,
    /// The connection breaks without a reply (the request is not handled).
    Drop,
    /// The reply is cut off halfway.
    Truncate,
}

fn fault(code: &str, message: &str, back_off_ms: Option<u64>) -> String {
    let hint = back_off_ms
        .map(|ms| format!("<t:MessageXml><t:Value Name=\"BackOffMilliseconds\">{ms}</t:Value></t:MessageXml>"))
        .unwrap_or_default();
    envelope(&format!(
        "<s:Fault><faultcode xmlns:a=\"{t}\">a:{code}</faultcode><faultstring xml:lang=\"en-US\">{msg}</faultstring><detail><e:ResponseCode xmlns:e=\"http://schemas.microsoft.com/exchange/services/2006/errors\">{code}</e:ResponseCode><e:Message xmlns:e=\"http://schemas.microsoft.com/exchange/services/2006/errors\">{msg}</e:Message>{hint}</detail></s:Fault>",
        t = crate::NS_TYPES,
        msg = escape(message)
    ))
}

fn envelope(body: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?><s:Envelope xmlns:s=\"{}\" xmlns:m=\"{}\" xmlns:t=\"{}\"><s:Header><h:ServerVersionInfo xmlns:h=\"{}\" MajorVersion=\"15\" MinorVersion=\"2\" MajorBuildNumber=\"1544\" MinorBuildNumber=\"4\" Version=\"V2017_07_11\"/></s:Header><s:Body>{body}</s:Body></s:Envelope>",
        crate::NS_SOAP,
        crate::NS_MESSAGES,
        crate::NS_TYPES,
        crate::NS_TYPES
    )
}

fn ok_message(op: &str, inner: &str) -> String {
    format!("<m:{op}ResponseMessage ResponseClass=\"Success\"><m:ResponseCode>NoError</m:ResponseCode>{inner}</m:{op}ResponseMessage>")
}

fn response(op: &str, messages: &str) -> String {
    envelope(&format!("<m:{op}Response><m:ResponseMessages>{messages}</m:ResponseMessages></m:{op}Response>"))
}

/// An HTTP reply: status and body.
type Reply = (u16, String);

impl Simulator {
    pub fn new(dir: PathBuf, state: State, profile: Profile, credentials: Option<(String, String)>) -> Simulator {
        Simulator {
            dir,
            state: Mutex::new(state),
            profile,
            credentials,
            stats: Mutex::new(Stats::default()),
            budgets: Mutex::new(HashMap::new()),
            inflight: AtomicUsize::new(0),
            sync_inflight: AtomicUsize::new(0),
            sizes: Mutex::new(HashMap::new()),
            fault_rate: 0.0,
            fault_counter: AtomicUsize::new(0),
            refuse_rate: 0.0,
            max_request_bytes: DEFAULT_MAX_REQUEST_BYTES,
            ntlm: false,
            ntlm_conns: Mutex::new(HashMap::new()),
            hostile: Vec::new(),
        }
    }

    /// Accepts only NTLM (Windows authentication), as on-premises Exchange does by default. Needs
    /// credentials.
    pub fn with_ntlm(mut self) -> Simulator {
        self.ntlm = true;
        self
    }

    /// The NTLM handshake for a request that arrived on connection `peer`: an authenticated
    /// connection passes; NEGOTIATE gets a CHALLENGE; a valid AUTHENTICATE authenticates the
    /// connection and passes. In Basic mode every request passes here.
    pub fn ntlm_gate(&self, peer: Option<std::net::SocketAddr>, auth: Option<&str>) -> Gate {
        if !self.ntlm {
            return Gate::Pass;
        }
        let (Some(peer), Some((user, pass))) = (peer, &self.credentials) else {
            return Gate::Challenge("NTLM".into());
        };
        let mut conns = self.ntlm_conns.lock().expect("ntlm");
        let conn = conns.entry(peer).or_default();
        let msg = auth
            .and_then(|a| a.strip_prefix("NTLM "))
            .and_then(|b| base64::Engine::decode(&base64::engine::general_purpose::STANDARD, b.trim()).ok());
        match msg {
            Some(m) if m.get(8) == Some(&1) => {
                let c: [u8; 8] = rand::random();
                conn.challenge = Some(c);
                conn.authenticated = false;
                let ch = crate::ntlm::challenge(c, "EXCHANGE");
                Gate::Challenge(format!(
                    "NTLM {}",
                    base64::Engine::encode(&base64::engine::general_purpose::STANDARD, ch)
                ))
            }
            Some(m) if m.get(8) == Some(&3) => {
                let ok = conn.challenge.take().is_some_and(|c| {
                    crate::ntlm::verify(&m, c, pass).is_ok_and(|u| {
                        u.eq_ignore_ascii_case(user) || crate::ntlm::split_user(user).0.eq_ignore_ascii_case(&u)
                    })
                });
                conn.authenticated = ok;
                if ok {
                    Gate::Pass
                } else {
                    Gate::Challenge("NTLM".into())
                }
            }
            _ if conn.authenticated => Gate::Pass,
            _ => Gate::Challenge("NTLM".into()),
        }
    }

    /// Refuses this share of uploaded items with a per-item `ErrorCorruptData`.
    pub fn with_refuse_rate(mut self, rate: f64) -> Simulator {
        self.refuse_rate = rate.clamp(0.0, 1.0);
        self
    }

    /// Answers requests larger than `bytes` with HTTP 413.
    pub fn with_max_request_bytes(mut self, bytes: usize) -> Simulator {
        self.max_request_bytes = bytes;
        self
    }

    /// Whether the simulator refuses to import this stream.
    fn refuses(&self, blob: &[u8]) -> bool {
        let h = blake3::hash(blob);
        (u64::from_le_bytes(h.as_bytes()[..8].try_into().expect("8")) as f64 / u64::MAX as f64) < self.refuse_rate
    }

    /// Misbehaves towards the mailboxes these rules name (see `hostile`).
    pub fn with_hostile(mut self, rules: Vec<super::hostile::Rule>) -> Simulator {
        self.hostile = rules;
        self
    }

    /// Injects transient faults into this share of requests (deterministically spread).
    pub fn with_fault_rate(mut self, rate: f64) -> Simulator {
        self.fault_rate = rate.clamp(0.0, 1.0);
        self
    }

    /// Whether the next request gets a fault, and which.
    pub fn next_fault(&self) -> Option<Fault> {
        if self.fault_rate <= 0.0 {
            return None;
        }
        let n = self.fault_counter.fetch_add(1, Ordering::SeqCst) as u64;
        let h = blake3::hash(&n.to_le_bytes());
        let x = u64::from_le_bytes(h.as_bytes()[..8].try_into().expect("8")) as f64 / u64::MAX as f64;
        if x >= self.fault_rate {
            return None;
        }
        self.stats.lock().expect("stats").faults_injected += 1;
        Some(match h.as_bytes()[8] % 3 {
            0 => Fault::Unavailable,
            1 => Fault::Drop,
            _ => Fault::Truncate,
        })
    }

    pub fn stats(&self) -> Stats {
        self.stats.lock().expect("stats").clone()
    }

    /// Spends budget for `who`; an error reply if the server is "busy" for them.
    fn charge(&self, who: &str, cost: f64) -> Option<Reply> {
        let now = Instant::now();
        let mut budgets = self.budgets.lock().expect("budgets");
        let b = budgets.entry(who.to_string()).or_insert(Budget {
            tokens: self.profile.burst,
            last: now,
            busy_until: None,
        });
        let back_off = Duration::from_millis(self.profile.back_off_ms);
        if let Some(until) = b.busy_until {
            if now < until {
                // The client did not wait as told: Exchange lengthens the back-off.
                let mut st = self.stats.lock().expect("stats");
                st.penalties += 1;
                st.server_busy_sent += 1;
                b.busy_until = Some(until + back_off);
                let ms = (until + back_off - now).as_millis() as u64;
                return Some((
                    500,
                    fault(
                        "ErrorServerBusy",
                        "The server cannot service this request right now. Try again later.",
                        Some(ms),
                    ),
                ));
            }
            b.busy_until = None;
        }
        b.tokens = (b.tokens + now.duration_since(b.last).as_secs_f64() * self.profile.recharge_per_sec)
            .min(self.profile.burst);
        b.last = now;
        if b.tokens < cost {
            b.busy_until = Some(now + back_off);
            self.stats.lock().expect("stats").server_busy_sent += 1;
            return Some((
                500,
                fault(
                    "ErrorServerBusy",
                    "The server cannot service this request right now. Try again later.",
                    Some(self.profile.back_off_ms),
                ),
            ));
        }
        b.tokens -= cost;
        None
    }

    fn authorised(&self, header: Option<&str>) -> bool {
        if self.ntlm {
            return true; // the connection passed ntlm_gate
        }
        // A Basic-only server answers an NTLM attempt with 401, whatever the credentials.
        if header.is_some_and(|h| h.starts_with("NTLM ")) {
            return false;
        }
        let Some((user, pass)) = &self.credentials else { return true };
        let Some(v) = header.and_then(|h| h.strip_prefix("Basic ")) else { return false };
        let Ok(raw) = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, v.trim()) else {
            return false;
        };
        let raw = String::from_utf8_lossy(&raw);
        raw.split_once(':').is_some_and(|(u, p)| u.eq_ignore_ascii_case(user) && p == pass)
    }

    /// Handles one EWS POST body.
    pub fn handle(&self, auth: Option<&str>, body: &[u8]) -> Reply {
        if !self.authorised(auth) {
            return (401, String::new());
        }
        if body.len() > self.max_request_bytes {
            self.stats.lock().expect("stats").requests_too_large += 1;
            return (413, String::new());
        }
        let doc = match dom::parse(body) {
            Ok(d) => d,
            Err(e) => {
                self.stats.lock().expect("stats").errors += 1;
                return (
                    500,
                    fault("ErrorSchemaValidation", &format!("The request failed schema validation: {e}"), None),
                );
            }
        };
        let Some(op_el) = doc.child("Body").and_then(|b| b.children.first()) else {
            return (500, fault("ErrorInvalidRequest", "The request is invalid.", None));
        };
        let op = op_el.name.clone();
        *self.stats.lock().expect("stats").requests.entry(op.clone()).or_default() += 1;
        let mailbox =
            doc.find("ExchangeImpersonation").and_then(|i| i.find("PrimarySmtpAddress")).map(|e| e.text.clone());
        let n = self.inflight.fetch_add(1, Ordering::SeqCst) + 1;
        let sync = op.starts_with("Sync");
        let sync_n = if sync { self.sync_inflight.fetch_add(1, Ordering::SeqCst) + 1 } else { 0 };
        let reply = if sync && sync_n > self.profile.max_sync_concurrency {
            self.stats.lock().expect("stats").sync_concurrency_exceeded += 1;
            (
                500,
                fault(
                    "ErrorExceededConnectionCount",
                    "You have exceeded the maximum number of concurrent synchronization calls.",
                    None,
                ),
            )
        } else if n > self.profile.max_concurrency {
            self.stats.lock().expect("stats").connection_count_exceeded += 1;
            (
                500,
                fault(
                    "ErrorExceededConnectionCount",
                    "You have exceeded the maximum number of concurrent connections.",
                    None,
                ),
            )
        } else {
            let who = mailbox.clone().unwrap_or_else(|| "service-account".into());
            let cost = if op == "ExportItems" {
                1.0 + op_el.find("ItemIds").map(|i| i.children.len()).unwrap_or(0) as f64 / 10.0
            } else {
                1.0
            };
            match self.charge(&who, cost) {
                Some(busy) => busy,
                None => self.dispatch(&op, op_el, mailbox.as_deref()),
            }
        };
        self.inflight.fetch_sub(1, Ordering::SeqCst);
        if sync {
            self.sync_inflight.fetch_sub(1, Ordering::SeqCst);
        }
        if reply.0 >= 500 && !reply.1.contains("ErrorServerBusy") && !reply.1.contains("ErrorExceededConnectionCount") {
            self.stats.lock().expect("stats").errors += 1;
        }
        reply
    }

    fn dispatch(&self, op: &str, el: &dom::Element, mailbox: Option<&str>) -> Reply {
        let mut state = self.state.lock().expect("state");
        if op == "ResolveNames" {
            let set: String = state
                .mailboxes
                .iter()
                .filter(|m| !m.public)
                .map(|m| format!("<t:Resolution><t:Mailbox><t:Name>{a}</t:Name><t:EmailAddress>{a}</t:EmailAddress><t:RoutingType>SMTP</t:RoutingType><t:MailboxType>Mailbox</t:MailboxType></t:Mailbox></t:Resolution>", a = escape(&m.address)))
                .collect();
            let msg = format!("<m:ResolveNamesResponseMessage ResponseClass=\"Warning\"><m:MessageText>Multiple results were found.</m:MessageText><m:ResponseCode>ErrorNameResolutionMultipleResults</m:ResponseCode><m:ResolutionSet TotalItemsInView=\"{n}\" IncludesLastItemInRange=\"true\">{set}</m:ResolutionSet></m:ResolveNamesResponseMessage>", n = state.mailboxes.iter().filter(|m| !m.public).count());
            return (200, response("ResolveNames", &msg));
        }
        // Without impersonation a request goes to the public folders, which know no sync.
        let Some(mbx) = (match mailbox {
            Some(m) => state.mailbox(m),
            None => state.public_store(),
        }) else {
            return (500, fault("ErrorNonExistentMailbox", "No mailbox with such guid or address.", None));
        };
        if state.mailboxes[mbx].public && op.starts_with("Sync") {
            return (500, fault("ErrorInvalidOperation", &format!("{op} is not supported for public folders."), None));
        }
        match op {
            "UploadItems" => return self.upload_items(&mut state, mbx, el),
            "CreateFolder" => return self.create_folder(&mut state, mbx, el),
            _ => {}
        }
        let state = &*state;
        let mb = &state.mailboxes[mbx];
        match op {
            "SyncFolderHierarchy" => {
                let since: u64 = el.text_at(&["SyncState"]).and_then(|s| s.parse().ok()).unwrap_or(0);
                let changes: String = if since == 0 {
                    mb.folders
                        .iter()
                        .filter(|f| !f.parent_id.is_empty())
                        .map(|f| format!("<t:Create>{}</t:Create>", folder_xml(f)))
                        .collect()
                } else {
                    String::new()
                };
                let inner = format!("<m:SyncState>1</m:SyncState><m:IncludesLastFolderInRange>true</m:IncludesLastFolderInRange><m:Changes>{changes}</m:Changes>");
                (200, response("SyncFolderHierarchy", &ok_message("SyncFolderHierarchy", &inner)))
            }
            "SyncFolderItems" => {
                let folder_id = el.find("FolderId").and_then(|f| f.attr("Id")).unwrap_or("").to_string();
                if !mb.folders.iter().any(|f| f.id == folder_id) {
                    return (200, response("SyncFolderItems", "<m:SyncFolderItemsResponseMessage ResponseClass=\"Error\"><m:MessageText>The specified folder could not be found in the store.</m:MessageText><m:ResponseCode>ErrorFolderNotFound</m:ResponseCode></m:SyncFolderItemsResponseMessage>"));
                }
                let since: u64 = el.text_at(&["SyncState"]).and_then(|s| s.parse().ok()).unwrap_or(0);
                let max: usize = el
                    .text_at(&["MaxChangesReturned"])
                    .and_then(|s| s.trim().parse().ok())
                    .unwrap_or(512)
                    .clamp(1, 512);
                // Changes newer than the client's watermark, oldest first.
                let mut changes: Vec<(u64, String)> = Vec::new();
                for it in mb.items.iter().filter(|i| i.folder_id == folder_id && i.seq > since) {
                    let kind = if it.created_seq > since { "Create" } else { "Update" };
                    changes.push((it.seq, format!("<t:{kind}>{}</t:{kind}>", self.item_xml(state, it))));
                }
                for t in mb.tombstones.iter().filter(|t| t.folder_id == folder_id && t.seq > since) {
                    changes.push((
                        t.seq,
                        format!("<t:Delete><t:ItemId Id=\"{}\" ChangeKey=\"AAAA\"/></t:Delete>", escape(&t.id)),
                    ));
                }
                changes.sort_by_key(|c| c.0);
                let last = changes.len() <= max;
                changes.truncate(max);
                let new_state = changes.last().map(|c| c.0).unwrap_or(since);
                let body: String = changes.into_iter().map(|c| c.1).collect();
                let inner = format!("<m:SyncState>{new_state}</m:SyncState><m:IncludesLastItemInRange>{last}</m:IncludesLastItemInRange><m:Changes>{body}</m:Changes>");
                (200, response("SyncFolderItems", &ok_message("SyncFolderItems", &inner)))
            }
            "GetFolder" => {
                let mut msgs = String::new();
                for f in el.find("FolderIds").map(|f| f.children.as_slice()).unwrap_or(&[]) {
                    let found = match (f.name.as_str(), f.attr("Id")) {
                        ("DistinguishedFolderId", Some(d)) => state.distinguished_folder(mbx, d),
                        (_, Some(id)) => mb.folders.iter().find(|x| x.id == id),
                        _ => None,
                    };
                    match found {
                        Some(x) => msgs.push_str(&ok_message("GetFolder", &format!("<m:Folders>{}</m:Folders>", folder_xml(x)))),
                        None => msgs.push_str("<m:GetFolderResponseMessage ResponseClass=\"Error\"><m:MessageText>The specified folder could not be found in the store.</m:MessageText><m:ResponseCode>ErrorFolderNotFound</m:ResponseCode></m:GetFolderResponseMessage>"),
                    }
                }
                (200, response("GetFolder", &msgs))
            }
            "FindFolder" => {
                let parent = match el.find("ParentFolderIds").and_then(|p| p.children.first()) {
                    Some(f) if f.name == "DistinguishedFolderId" => {
                        mb.folders.iter().find(|f| f.parent_id.is_empty()).map(|f| f.id.clone()).unwrap_or_default()
                    }
                    Some(f) => f.attr("Id").unwrap_or("").to_string(),
                    None => String::new(),
                };
                if !mb.folders.iter().any(|f| f.id == parent) {
                    return (200, response("FindFolder", "<m:FindFolderResponseMessage ResponseClass=\"Error\"><m:MessageText>The specified folder could not be found in the store.</m:MessageText><m:ResponseCode>ErrorFolderNotFound</m:ResponseCode></m:FindFolderResponseMessage>"));
                }
                let children: Vec<_> = mb.folders.iter().filter(|f| f.parent_id == parent).collect();
                let (from, to, last) = page_bounds(el, "IndexedPageFolderView", children.len());
                let body: String = children[from..to].iter().map(|f| folder_xml(f)).collect();
                let inner = format!("<m:RootFolder IndexedPagingOffset=\"{to}\" TotalItemsInView=\"{}\" IncludesLastItemInRange=\"{last}\"><t:Folders>{body}</t:Folders></m:RootFolder>", children.len());
                (200, response("FindFolder", &ok_message("FindFolder", &inner)))
            }
            "FindItem" => {
                let folder_id = el
                    .find("ParentFolderIds")
                    .and_then(|p| p.find("FolderId"))
                    .and_then(|f| f.attr("Id"))
                    .unwrap_or("");
                if !mb.folders.iter().any(|f| f.id == folder_id) {
                    return (200, response("FindItem", "<m:FindItemResponseMessage ResponseClass=\"Error\"><m:MessageText>The specified folder could not be found in the store.</m:MessageText><m:ResponseCode>ErrorFolderNotFound</m:ResponseCode></m:FindItemResponseMessage>"));
                }
                let items: Vec<_> = mb.items.iter().filter(|i| i.folder_id == folder_id && !i.associated).collect();
                let (from, to, last) = page_bounds(el, "IndexedPageItemView", items.len());
                let body: String = items[from..to].iter().map(|it| self.item_xml(state, it)).collect();
                let inner = format!("<m:RootFolder IndexedPagingOffset=\"{to}\" TotalItemsInView=\"{}\" IncludesLastItemInRange=\"{last}\"><t:Items>{body}</t:Items></m:RootFolder>", items.len());
                (200, response("FindItem", &ok_message("FindItem", &inner)))
            }
            "ExportItems" => {
                let ids: Vec<&str> = el
                    .find("ItemIds")
                    .map(|i| i.children.iter().filter_map(|c| c.attr("Id")).collect())
                    .unwrap_or_default();
                let items: Vec<Option<&Item>> = ids.iter().map(|id| mb.items.iter().find(|i| i.id == *id)).collect();
                if items.iter().flatten().any(|i| i.dirty) {
                    self.stats.lock().expect("stats").batches_failed_dirty += 1;
                    return (
                        500,
                        fault(
                            "ErrorInternalServerError",
                            "An internal server error occurred. The operation failed.",
                            None,
                        ),
                    );
                }
                let slow = items.iter().flatten().filter(|i| i.class == "IPM.Appointment").count();
                drop_guard_sleep(slow);
                let mut msgs = String::new();
                let mut exported = 0;
                for (id, it) in ids.iter().zip(items) {
                    match it {
                        Some(it) => match state.blob(&self.dir, it) {
                            Ok(b) => {
                                exported += 1;
                                let data = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, b);
                                msgs.push_str(&ok_message("ExportItems", &format!("<m:ItemId Id=\"{}\" ChangeKey=\"{}\"/><m:Data>{data}</m:Data>", escape(&it.id), escape(&it.change_key))));
                            }
                            Err(e) => msgs.push_str(&format!("<m:ExportItemsResponseMessage ResponseClass=\"Error\"><m:MessageText>{}</m:MessageText><m:ResponseCode>ErrorInternalServerError</m:ResponseCode></m:ExportItemsResponseMessage>", escape(&e.to_string()))),
                        },
                        None => msgs.push_str(&format!("<m:ExportItemsResponseMessage ResponseClass=\"Error\"><m:MessageText>The specified object was not found in the store. ({})</m:MessageText><m:ResponseCode>ErrorItemNotFound</m:ResponseCode></m:ExportItemsResponseMessage>", escape(*id))),
                    }
                }
                self.stats.lock().expect("stats").items_exported += exported;
                (200, response("ExportItems", &msgs))
            }
            other => {
                (500, fault("ErrorInvalidOperation", &format!("{other} is not supported by this simulator."), None))
            }
        }
    }

    /// UploadItems: each item created or updated on its own; refused ones get their own error.
    /// The state is saved before the reply, so what a client was told is stored is stored.
    fn upload_items(&self, state: &mut State, mbx: usize, el: &dom::Element) -> Reply {
        let Some(items) = el.child("Items") else {
            return (500, fault("ErrorSchemaValidation", "UploadItems needs Items.", None));
        };
        let mut msgs = String::new();
        let (mut uploaded, mut refused) = (0u64, 0u64);
        for it in items.children_named("Item") {
            let parent = it.child("ParentFolderId").and_then(|p| p.attr("Id")).unwrap_or("");
            let item_id = it.child("ItemId").and_then(|i| i.attr("Id"));
            let action = it.attr("CreateAction").unwrap_or("");
            let associated = it.attr("IsAssociated").is_some_and(|v| v == "true" || v == "1");
            let b64: String = it.text_at(&["Data"]).unwrap_or("").split_ascii_whitespace().collect();
            let result = match base64::Engine::decode(&base64::engine::general_purpose::STANDARD, b64.as_bytes()) {
                Err(_) => Err(("ErrorInvalidRequest", "Data is not valid base64.".to_string())),
                Ok(blob) if blob.is_empty() => Err(("ErrorInvalidRequest", "Data is empty.".to_string())),
                Ok(blob) if self.refuses(&blob) => {
                    Err(("ErrorCorruptData", "The item could not be imported: its data is corrupt.".to_string()))
                }
                Ok(blob) => state
                    .upload(&self.dir, mbx, parent, item_id, action, associated, &blob)
                    .map_err(|r| (r.code, r.message)),
            };
            match result {
                Ok((id, ck)) => {
                    uploaded += 1;
                    msgs.push_str(&ok_message(
                        "UploadItems",
                        &format!("<m:ItemId Id=\"{}\" ChangeKey=\"{}\"/>", escape(&id), escape(&ck)),
                    ));
                }
                Err((code, msg)) => {
                    refused += 1;
                    msgs.push_str(&format!("<m:UploadItemsResponseMessage ResponseClass=\"Error\"><m:MessageText>{}</m:MessageText><m:ResponseCode>{code}</m:ResponseCode></m:UploadItemsResponseMessage>", escape(&msg)));
                }
            }
        }
        if uploaded > 0 {
            if let Err(e) = state.save(&self.dir) {
                return (500, fault("ErrorInternalServerError", &format!("saving the mailbox store: {e}"), None));
            }
        }
        let mut st = self.stats.lock().expect("stats");
        st.items_uploaded += uploaded;
        st.uploads_refused += refused;
        drop(st);
        (200, response("UploadItems", &msgs))
    }

    /// CreateFolder: one or more folders under one parent.
    fn create_folder(&self, state: &mut State, mbx: usize, el: &dom::Element) -> Reply {
        let parent = match el.child("ParentFolderId").and_then(|p| p.children.first()) {
            Some(f)
                if f.name == "DistinguishedFolderId"
                    && matches!(f.attr("Id"), Some("msgfolderroot" | "publicfoldersroot")) =>
            {
                String::new()
            }
            Some(f) if f.name == "FolderId" => f.attr("Id").unwrap_or("").to_string(),
            _ => {
                return (
                    200,
                    response("CreateFolder", "<m:CreateFolderResponseMessage ResponseClass=\"Error\"><m:MessageText>Only msgfolderroot, publicfoldersroot and folder ids are supported as parents.</m:MessageText><m:ResponseCode>ErrorInvalidRequest</m:ResponseCode></m:CreateFolderResponseMessage>"),
                )
            }
        };
        let mut msgs = String::new();
        let mut created = 0;
        for f in el.child("Folders").map(|f| f.children.iter().collect::<Vec<_>>()).unwrap_or_default() {
            let name = f.text_at(&["DisplayName"]).unwrap_or("");
            let class = f.text_at(&["FolderClass"]).unwrap_or("IPF.Note");
            match state.create_folder(mbx, &parent, name, class) {
                Ok(id) => {
                    created += 1;
                    msgs.push_str(&ok_message(
                        "CreateFolder",
                        &format!("<m:Folders><t:{n}><t:FolderId Id=\"{}\" ChangeKey=\"AQAAAA==\"/></t:{n}></m:Folders>", escape(&id), n = f.name),
                    ));
                }
                Err(r) => msgs.push_str(&format!("<m:CreateFolderResponseMessage ResponseClass=\"Error\"><m:MessageText>{}</m:MessageText><m:ResponseCode>{}</m:ResponseCode></m:CreateFolderResponseMessage>", escape(&r.message), r.code)),
            }
        }
        if created > 0 {
            if let Err(e) = state.save(&self.dir) {
                return (500, fault("ErrorInternalServerError", &format!("saving the mailbox store: {e}"), None));
            }
        }
        self.stats.lock().expect("stats").folders_created += created;
        (200, response("CreateFolder", &msgs))
    }

    fn item_xml(&self, state: &State, it: &Item) -> String {
        let key = (it.id.clone(), it.change_key.clone());
        let size = {
            let cached = self.sizes.lock().expect("sizes").get(&key).copied();
            match cached {
                Some(s) => s,
                None => {
                    let s = state.blob(&self.dir, it).map(|b| b.len() as u64).unwrap_or(0);
                    self.sizes.lock().expect("sizes").insert(key, s);
                    s
                }
            }
        };
        let el = match it.class.as_str() {
            "IPM.Appointment" => "CalendarItem",
            "IPM.Contact" => "Contact",
            "IPM.Task" => "Task",
            _ => "Message",
        };
        format!(
            "<t:{el}><t:ItemId Id=\"{}\" ChangeKey=\"{}\"/><t:Subject>{}</t:Subject><t:ItemClass>{}</t:ItemClass><t:Size>{size}</t:Size><t:DateTimeReceived>{}</t:DateTimeReceived><t:From><t:Mailbox><t:EmailAddress>{}</t:EmailAddress></t:Mailbox></t:From><t:IsAssociated>{}</t:IsAssociated></t:{el}>",
            escape(&it.id),
            escape(&it.change_key),
            escape(&it.subject),
            escape(&it.class),
            escape(&it.received),
            escape(&it.sender),
            it.associated
        )
    }
}

/// A folder element with the properties clients ask for (sync, FindFolder and GetFolder alike).
fn folder_xml(f: &super::model::Folder) -> String {
    format!(
        "<t:Folder><t:FolderId Id=\"{}\" ChangeKey=\"AQAAAA==\"/><t:ParentFolderId Id=\"{}\"/><t:FolderClass>{}</t:FolderClass><t:DisplayName>{}</t:DisplayName></t:Folder>",
        escape(&f.id),
        escape(&f.parent_id),
        escape(&f.class),
        escape(&f.name)
    )
}

/// The slice `[from, to)` of `total` entries an indexed page view asks for, and whether it is the last.
fn page_bounds(el: &dom::Element, view: &str, total: usize) -> (usize, usize, bool) {
    let v = el.find(view);
    let num = |name: &str, default: usize| v.and_then(|v| v.attr(name)).and_then(|x| x.parse().ok()).unwrap_or(default);
    let from = num("Offset", 0).min(total);
    let to = (from + num("MaxEntriesReturned", 1000).clamp(1, 1000)).min(total);
    (from, to, to == total)
}

/// Calendars are slow to export on real servers; so are they here.
fn drop_guard_sleep(calendar_items: usize) {
    if calendar_items > 0 {
        std::thread::sleep(Duration::from_millis(2 * calendar_items as u64));
    }
}

/// A running simulator: its address, and the threads serving it.
pub struct Running {
    pub addr: std::net::SocketAddr,
    pub sim: Arc<Simulator>,
    server: Arc<tiny_http::Server>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Running {
    pub fn url(&self) -> String {
        format!("http://{}/EWS/Exchange.asmx", self.addr)
    }

    /// Stops serving and waits for the threads.
    pub fn stop(mut self) {
        self.server.unblock();
        for _ in 0..self.threads.len() {
            self.server.unblock();
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }

    /// Serves until the process ends.
    pub fn wait(mut self) {
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// The misbehaving answer to a request, if a hostile rule covers its mailbox and operation.
fn hostile_answer(
    sim: &Simulator,
    req: &tiny_http::Request,
    auth: Option<&str>,
    body: &[u8],
    port: u16,
) -> Option<super::hostile::Answer> {
    let header =
        |name: &'static str| req.headers().iter().find(|h| h.field.equiv(name)).map(|h| h.value.as_str().to_string());
    let op = header("SOAPAction").map(|a| a.trim_matches('"').rsplit('/').next().unwrap_or("").to_string())?;
    let mailbox = header("X-AnchorMailbox").unwrap_or_else(|| crate::PUBLIC_FOLDERS.to_string());
    let parent = (op == "FindFolder").then(|| dom::parse(body).ok()).flatten().and_then(|d| {
        d.find("ParentFolderIds").and_then(|p| p.find("FolderId")).and_then(|f| f.attr("Id").map(String::from))
    });
    let mut normal = || sim.handle(auth, body);
    sim.hostile.iter().find_map(|r| super::hostile::answer(r, &op, &mailbox, parent.as_deref(), port, &mut normal))
}

/// Serves `sim` on `listen` (e.g. `127.0.0.1:0`) with `threads` handler threads.
pub fn serve(listen: &str, sim: Arc<Simulator>, threads: usize) -> std::io::Result<Running> {
    let server = Arc::new(tiny_http::Server::http(listen).map_err(std::io::Error::other)?);
    let addr = server.server_addr().to_ip().ok_or_else(|| std::io::Error::other("not an IP listener"))?;
    let mut handles = Vec::new();
    for _ in 0..threads.max(1) {
        let (server, sim) = (server.clone(), sim.clone());
        handles.push(std::thread::spawn(move || {
            while let Ok(mut req) = server.recv() {
                let json = |v: String| {
                    tiny_http::Response::from_string(v)
                        .with_header(tiny_http::Header::from_bytes("Content-Type", "application/json").expect("header"))
                };
                if req.method() == &tiny_http::Method::Get && req.url() == "/stats" {
                    let _ = req.respond(json(serde_json::to_string(&sim.stats()).expect("stats serialise")));
                    continue;
                }
                if req.method() != &tiny_http::Method::Post || !req.url().eq_ignore_ascii_case("/EWS/Exchange.asmx") {
                    let _ = req.respond(tiny_http::Response::from_string("not found").with_status_code(404));
                    continue;
                }
                let auth =
                    req.headers().iter().find(|h| h.field.equiv("Authorization")).map(|h| h.value.as_str().to_string());
                let mut body = Vec::new();
                if std::io::Read::read_to_end(req.as_reader(), &mut body).is_err() {
                    continue;
                }
                if let Gate::Challenge(v) = sim.ntlm_gate(req.remote_addr().copied(), auth.as_deref()) {
                    let _ = req.respond(
                        tiny_http::Response::from_string("")
                            .with_status_code(401)
                            .with_header(tiny_http::Header::from_bytes("WWW-Authenticate", v).expect("header")),
                    );
                    continue;
                }
                if !sim.hostile.is_empty() {
                    if let Some(a) = hostile_answer(&sim, &req, auth.as_deref(), &body, addr.port()) {
                        let mut resp =
                            tiny_http::Response::new(tiny_http::StatusCode(a.status), Vec::new(), a.body, a.len, None);
                        for (k, v) in a.headers {
                            resp.add_header(tiny_http::Header::from_bytes(k, v).expect("header"));
                        }
                        let _ = req.respond(resp);
                        continue;
                    }
                }
                match sim.next_fault() {
                    Some(Fault::Unavailable) => {
                        let _ = req.respond(
                            tiny_http::Response::from_string("Service Unavailable")
                                .with_status_code(503)
                                .with_header(tiny_http::Header::from_bytes("Retry-After", "1").expect("header")),
                        );
                        continue;
                    }
                    Some(Fault::Drop) => {
                        // The connection breaks before the request is handled: the client reads
                        // bytes that are not HTTP, gives up on this connection, and must resend.
                        let mut w = req.into_writer();
                        let _ = std::io::Write::write_all(&mut w, b"\x00\x00 connection reset\r\n\r\n");
                        let _ = std::io::Write::flush(&mut w);
                        continue;
                    }
                    Some(Fault::Truncate) => {
                        let (_, text) = sim.handle(auth.as_deref(), &body);
                        let mut cut = text.len() / 2;
                        while !text.is_char_boundary(cut) {
                            cut -= 1;
                        }
                        let _ = req.respond(tiny_http::Response::from_string(&text[..cut]).with_status_code(200));
                        continue;
                    }
                    None => {}
                }
                let (status, text) = sim.handle(auth.as_deref(), &body);
                let mut resp = tiny_http::Response::from_string(text).with_status_code(status).with_header(
                    tiny_http::Header::from_bytes("Content-Type", "text/xml; charset=utf-8").expect("header"),
                );
                if status == 401 {
                    resp = resp.with_header(
                        tiny_http::Header::from_bytes(
                            "WWW-Authenticate",
                            if sim.ntlm { "NTLM" } else { "Basic realm=\"exarch-simulate\"" },
                        )
                        .expect("header"),
                    );
                }
                let _ = req.respond(resp);
            }
        }));
    }
    Ok(Running { addr, sim, server, threads: handles })
}
