//! The simulated Exchange server: its state and settings, and the handling of one request
//! (authentication, size limit, concurrency caps, budgets, then the operation).
//!
//! The parts live beside it: `budget.rs` (throttling and injected faults), `auth.rs` (Basic and
//! NTLM), `ops.rs` (the EWS operations), `soap.rs` (writing replies), `http.rs` (serving them).

use crate::auth::NtlmConn;
use crate::budget::{Budget, Profile};
use crate::model::State;
use crate::soap::fault;
use exarch_ews_source::dom;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

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
    /// ExportItems requests that ran into the time limit (`--request-limit-ms`).
    pub requests_timed_out: u64,
    /// Graph requests answered 429 (over a mailbox's concurrency or request budget).
    pub too_many_requests: u64,
    pub errors: u64,
    pub batches_failed_dirty: u64,
    /// Transient faults injected: 503s, dropped connections, truncated bodies.
    pub faults_injected: u64,
}

pub struct Simulator {
    pub dir: PathBuf,
    pub(crate) state: Mutex<State>,
    pub(crate) profile: Profile,
    pub(crate) credentials: Option<(String, String)>,
    pub(crate) stats: Mutex<Stats>,
    pub(crate) budgets: Mutex<HashMap<String, Budget>>,
    pub(crate) inflight: AtomicUsize,
    pub(crate) sync_inflight: AtomicUsize,
    pub(crate) sizes: Mutex<HashMap<(String, String), u64>>,
    /// Share of requests answered with a transient fault.
    pub(crate) fault_rate: f64,
    pub(crate) fault_counter: AtomicUsize,
    /// Share of uploaded items refused (chosen by content, so the same items every time).
    pub(crate) refuse_rate: f64,
    /// Largest request body accepted (IIS/EWS maxReceivedMessageSize); larger ones get HTTP 413.
    pub(crate) max_request_bytes: usize,
    /// Windows authentication (NTLM) instead of Basic: per connection, by its peer address.
    pub(crate) ntlm: bool,
    pub(crate) extended_protection: crate::tls::ExtendedProtection,
    pub(crate) ntlm_conns: Mutex<HashMap<std::net::SocketAddr, NtlmConn>>,
    /// Mailboxes that get a misbehaving server (tests of the client's defences).
    pub(crate) hostile: Vec<crate::hostile::Rule>,
    /// The Graph side: the tenant's settings and its changing state.
    pub(crate) graph: crate::graph_gate::GraphSettings,
    /// Slow calendar items and the per-request time limit.
    pub(crate) slow: crate::slow::SlowSettings,
    pub(crate) graph_rt: crate::graph_gate::GraphRuntime,
}

/// Default request size limit: room for the ~25 MB of base64 Exchange accepts in one import.
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 35_000_000;

thread_local! {
    /// Server time the current request still has to spend (see `Simulator::delay`).
    static DELAY: std::cell::Cell<std::time::Duration> = const { std::cell::Cell::new(std::time::Duration::ZERO) };
}

/// An HTTP reply: status and body.
pub(crate) type Reply = (u16, String);

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
            extended_protection: Default::default(),
            ntlm_conns: Mutex::new(HashMap::new()),
            hostile: Vec::new(),
            graph: Default::default(),
            slow: Default::default(),
            graph_rt: Default::default(),
        }
    }

    /// Makes calendar items slow to export and limits how long a request may run.
    pub fn with_slow(mut self, slow: crate::slow::SlowSettings) -> Simulator {
        self.slow = slow;
        self
    }

    /// The server works this long on the current request (slept once its state is unlocked).
    pub(crate) fn delay(&self, d: std::time::Duration) {
        DELAY.with(|c| c.set(c.get() + d));
    }

    /// Sets up the Graph side's tenant (sign-in, consent, limits).
    pub fn with_graph(mut self, settings: crate::graph_gate::GraphSettings) -> Simulator {
        self.graph = settings;
        self
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

    /// Misbehaves towards the mailboxes these rules name (see `hostile`).
    pub fn with_hostile(mut self, rules: Vec<crate::hostile::Rule>) -> Simulator {
        self.hostile = rules;
        self
    }

    pub fn stats(&self) -> Stats {
        self.stats.lock().expect("stats").clone()
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
        // Time the server spends on the request, with the mailbox store unlocked meanwhile (other
        // requests go on, as on a real server).
        let d = DELAY.with(|c| c.replace(std::time::Duration::ZERO));
        if !d.is_zero() {
            std::thread::sleep(d);
        }
        self.inflight.fetch_sub(1, Ordering::SeqCst);
        if sync {
            self.sync_inflight.fetch_sub(1, Ordering::SeqCst);
        }
        if reply.0 >= 500 && !reply.1.contains("ErrorServerBusy") && !reply.1.contains("ErrorExceededConnectionCount") {
            self.stats.lock().expect("stats").errors += 1;
        }
        reply
    }
}
