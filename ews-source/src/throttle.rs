//! The governor: keeps a client under the server's throttling budget instead of running into it.
//!
//! Requests wait for a permit. Permits are limited server-wide (an adaptive limit that starts at the
//! configured concurrency, halves when the server pushes back and grows by one after a run of
//! successes) and per mailbox. A mailbox that got a back-off (the server's `BackOffMilliseconds`,
//! or exponential with jitter when none was given) gets no permit before the back-off has passed:
//! the client never retries early, which is what Exchange penalises.

use rand::Rng;
use std::collections::HashMap;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, Default)]
struct MailboxState {
    inflight: usize,
    not_before: Option<Instant>,
    failures: u32,
}

#[derive(Debug)]
struct State {
    inflight: usize,
    /// SyncFolderHierarchy/SyncFolderItems calls in flight (Exchange caps these per user).
    sync_inflight: usize,
    limit: usize,
    successes: u32,
    mailboxes: HashMap<String, MailboxState>,
}

pub struct Governor {
    max: usize,
    per_mailbox: usize,
    sync_max: usize,
    state: Mutex<State>,
    cv: Condvar,
}

/// Held while a request is in flight.
pub struct Permit<'a> {
    gov: &'a Governor,
    mailbox: String,
    sync: bool,
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        let mut s = self.gov.state.lock().expect("governor");
        s.inflight -= 1;
        if self.sync {
            s.sync_inflight -= 1;
        }
        if let Some(m) = s.mailboxes.get_mut(&self.mailbox) {
            m.inflight -= 1;
        }
        self.gov.cv.notify_all();
    }
}

impl Governor {
    /// `max` requests in flight in all, `per_mailbox` for any one mailbox.
    pub fn new(max: usize, per_mailbox: usize) -> Governor {
        let max = max.max(1);
        Governor {
            max,
            per_mailbox: per_mailbox.max(1),
            sync_max: max,
            state: Mutex::new(State {
                inflight: 0,
                sync_inflight: 0,
                limit: max,
                successes: 0,
                mailboxes: HashMap::new(),
            }),
            cv: Condvar::new(),
        }
    }

    /// At most `n` sync calls (SyncFolderHierarchy, SyncFolderItems) in flight at once: Exchange
    /// 2016 and later limit concurrent sync calls per user separately from other requests.
    pub fn with_sync_limit(mut self, n: usize) -> Governor {
        self.sync_max = n.max(1);
        self
    }

    /// Waits until a request for `mailbox` may be sent.
    pub fn acquire(&self, mailbox: &str) -> Permit<'_> {
        self.acquire_for(mailbox, false)
    }

    /// Waits until a request for `mailbox` may be sent; `sync` for a sync call.
    pub fn acquire_for(&self, mailbox: &str, sync: bool) -> Permit<'_> {
        self.acquire_until(mailbox, sync, None).expect("no deadline")
    }

    /// Like `acquire_for`, but gives up (None) when the mailbox's back-off ends after `deadline`
    /// or the deadline passes while waiting.
    pub fn acquire_until(&self, mailbox: &str, sync: bool, deadline: Option<Instant>) -> Option<Permit<'_>> {
        let mut s = self.state.lock().expect("governor");
        loop {
            let now = Instant::now();
            let (limit, inflight) = (s.limit, s.inflight);
            let sync_full = sync && s.sync_inflight >= self.sync_max;
            let m = s.mailboxes.entry(mailbox.to_string()).or_default();
            if let Some(d) = deadline {
                if now >= d || m.not_before.is_some_and(|t| t > d) {
                    return None;
                }
            }
            let wait = m.not_before.filter(|t| *t > now).map(|t| t - now);
            if wait.is_none() && inflight < limit && m.inflight < self.per_mailbox && !sync_full {
                m.inflight += 1;
                s.inflight += 1;
                if sync {
                    s.sync_inflight += 1;
                }
                return Some(Permit { gov: self, mailbox: mailbox.to_string(), sync });
            }
            let mut timeout = wait.unwrap_or(Duration::from_millis(200));
            if let Some(d) = deadline {
                timeout = timeout.min(d.saturating_duration_since(now)).max(Duration::from_millis(1));
            }
            s = self.cv.wait_timeout(s, timeout).expect("governor").0;
        }
    }

    /// The server pushed back. Returns how long this mailbox now waits.
    pub fn throttled(&self, mailbox: &str, hint_ms: Option<u64>) -> Duration {
        let mut s = self.state.lock().expect("governor");
        s.limit = (s.limit / 2).max(1);
        s.successes = 0;
        let m = s.mailboxes.entry(mailbox.to_string()).or_default();
        m.failures += 1;
        let wait = match hint_ms {
            // a little past the hint; a hint of centuries is held at a year (the caller stops anyway)
            Some(ms) => Duration::from_millis(ms.min(366 * 86_400_000)) + Duration::from_millis(20),
            None => {
                let base = 250u64.saturating_mul(1 << m.failures.min(8)).min(60_000);
                Duration::from_millis(base + rand::thread_rng().gen_range(0..=base / 2))
            }
        };
        let until = Instant::now() + wait;
        m.not_before = Some(m.not_before.map_or(until, |t| t.max(until)));
        self.cv.notify_all();
        wait
    }

    /// A request succeeded: grow back slowly towards the configured concurrency.
    pub fn succeeded(&self, mailbox: &str) {
        let mut s = self.state.lock().expect("governor");
        if let Some(m) = s.mailboxes.get_mut(mailbox) {
            m.failures = 0;
        }
        s.successes += 1;
        if s.successes >= 20 && s.limit < self.max {
            s.limit += 1;
            s.successes = 0;
            self.cv.notify_all();
        }
    }

    /// How long the mailbox must still wait before its next request.
    pub fn waiting(&self, mailbox: &str) -> Duration {
        let s = self.state.lock().expect("governor");
        let now = Instant::now();
        s.mailboxes.get(mailbox).and_then(|m| m.not_before).map_or(Duration::ZERO, |t| t.saturating_duration_since(now))
    }

    pub fn limit(&self) -> usize {
        self.state.lock().expect("governor").limit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn back_off_is_honoured_and_limits_adapt() {
        let g = Governor::new(8, 2);
        let started = Instant::now();
        let waited = g.throttled("a", Some(150));
        assert!(waited >= Duration::from_millis(150));
        assert_eq!(g.limit(), 4);
        {
            let _p = g.acquire("a");
            assert!(started.elapsed() >= Duration::from_millis(150), "a permit came before the back-off passed");
        }
        // other mailboxes are not held back by one mailbox's back-off
        let t = Instant::now();
        let _q = g.acquire("b");
        assert!(t.elapsed() < Duration::from_millis(100));
        for _ in 0..100 {
            g.succeeded("b");
        }
        assert_eq!(g.limit(), 8);
    }

    #[test]
    fn sync_calls_have_their_own_cap() {
        let g = Governor::new(8, 8).with_sync_limit(1);
        let first = g.acquire_for("a", true);
        // other requests still go
        let t = Instant::now();
        let _other = g.acquire_for("b", false);
        assert!(t.elapsed() < Duration::from_millis(100));
        std::thread::scope(|s| {
            let h = s.spawn(|| {
                let t = Instant::now();
                let _second = g.acquire_for("b", true);
                t.elapsed()
            });
            std::thread::sleep(Duration::from_millis(150));
            drop(first);
            assert!(h.join().unwrap() >= Duration::from_millis(140), "a second sync call went past the cap");
        });
    }
}
