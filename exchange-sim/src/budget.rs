//! Throttling as Exchange does it, and faults injected on purpose.
//!
//! Each mailbox has a budget that recharges over time; a request that finds it empty gets
//! `ErrorServerBusy` with a `BackOffMilliseconds` hint; a request that arrives before that back-off
//! has passed is a *penalty* (counted, and the back-off grows). Concurrent requests beyond the
//! profile's cap get `ErrorExceededConnectionCount` (in `server.rs`). `--fault-rate` adds 503s,
//! dropped connections and truncated bodies.

use crate::server::{Reply, Simulator};
use crate::soap::fault;
use std::sync::atomic::Ordering;
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

pub(crate) struct Budget {
    pub(crate) tokens: f64,
    pub(crate) last: Instant,
    pub(crate) busy_until: Option<Instant>,
}

/// A transient fault to inject instead of a normal reply.
pub enum Fault {
    /// HTTP 503 with `Retry-After: 1`, as IIS answers when requests queue up.
    Unavailable,
    /// The connection breaks without a reply (the request is not handled).
    Drop,
    /// The reply is cut off halfway.
    Truncate,
}

impl Simulator {
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

    /// Spends budget for `who`; an error reply if the server is "busy" for them.
    pub(crate) fn charge(&self, who: &str, cost: f64) -> Option<Reply> {
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
            // As Exchange does, the hint is how long until the budget covers this request again
            // (never less than the profile's back-off): a client that waits it gets through.
            // (A request that costs more than the whole burst never fits: the plain back-off.)
            let refill_ms = if cost > self.profile.burst {
                0.0
            } else {
                ((cost - b.tokens) / self.profile.recharge_per_sec.max(1e-9) * 1000.0).ceil()
            };
            let ms = (refill_ms.min(86_400_000.0) as u64).max(self.profile.back_off_ms);
            b.busy_until = Some(now + Duration::from_millis(ms));
            self.stats.lock().expect("stats").server_busy_sent += 1;
            return Some((
                500,
                fault(
                    "ErrorServerBusy",
                    "The server cannot service this request right now. Try again later.",
                    Some(ms),
                ),
            ));
        }
        b.tokens -= cost;
        None
    }
}
