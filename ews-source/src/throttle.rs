//! The governor: keeps a client under the server's throttling budget instead of running into it.
//!
//! Requests wait for a permit. Permits are limited server-wide (an adaptive limit that starts at the
//! configured concurrency, halves when the server pushes back and grows by one after a run of
//! successes) and per mailbox. A mailbox that got a back-off (the server's `BackOffMilliseconds`,
//! or exponential with jitter when none was given) gets no permit before the back-off has passed:
//! the client never retries early, which is what Exchange penalises. Once pushed back, a mailbox's
//! requests are also *paced* (spaced by at least the back-off, more after each further refusal,
//! less after a run of successes), and the pace is shared with the other mailboxes, which live under
//! the same throttling policy: a tight budget is then met by pacing, not by a stream of refusals.

use rand::Rng;
use std::collections::HashMap;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// The longest spacing self-throttling puts between one mailbox's requests; longer back-offs are
/// waited out once but not learned.
const MAX_PACE: Duration = Duration::from_secs(5);
/// Successes in a row after which the spacing shrinks by a quarter.
const PACE_RELAX_AFTER: u32 = 32;

#[derive(Debug, Default)]
struct MailboxState {
    inflight: usize,
    not_before: Option<Instant>,
    failures: u32,
    /// Self-throttling once the server pushed back: requests for this mailbox start at least this
    /// far apart. Grows with each push-back, shrinks after a run of successes.
    pace: Option<Duration>,
    last_start: Option<Instant>,
    successes: u32,
}

#[derive(Debug)]
struct State {
    inflight: usize,
    /// SyncFolderHierarchy/SyncFolderItems calls in flight (Exchange caps these per user).
    sync_inflight: usize,
    limit: usize,
    successes: u32,
    mailboxes: HashMap<String, MailboxState>,
    /// The spacing the last push-back taught. Mailboxes of one server share a throttling policy,
    /// so a mailbox seen for the first time starts from it instead of learning it by a refusal.
    learned_pace: Option<Duration>,
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
                learned_pace: None,
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
            let learned = s.learned_pace;
            let m = s
                .mailboxes
                .entry(mailbox.to_string())
                .or_insert_with(|| MailboxState { pace: learned, ..MailboxState::default() });
            if let Some(d) = deadline {
                if now >= d || m.not_before.is_some_and(|t| t > d) {
                    return None;
                }
            }
            let paced = m.pace.zip(m.last_start).map(|(p, t)| t + p);
            let ready = m.not_before.into_iter().chain(paced).max();
            let wait = ready.filter(|t| *t > now).map(|t| t - now);
            if wait.is_none() && inflight < limit && m.inflight < self.per_mailbox && !sync_full {
                m.inflight += 1;
                m.last_start = Some(now);
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

    /// The server pushed back. Returns how long this mailbox now waits. `first`: on a request's
    /// first attempt, which means the pacing was too fast; a retry refused again (a request too
    /// costly for the budget, about to be split) says nothing about the pace.
    pub fn throttled(&self, mailbox: &str, hint_ms: Option<u64>, first: bool) -> Duration {
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
        // From now on, space this mailbox's requests: at least the back-off, longer after each
        // further push-back on a paced request, so that a tight budget is met by pacing rather
        // than by refusals.
        // A long back-off (a server in maintenance, a hostile hint) is waited out, not learned.
        if wait > MAX_PACE {
            self.cv.notify_all();
            return wait;
        }
        let grown = match m.pace {
            Some(p) if first => (p * 3 / 2).max(wait),
            Some(p) => p.max(wait),
            None => wait,
        };
        m.pace = Some(grown.min(MAX_PACE));
        m.successes = 0;
        s.learned_pace = m.pace;
        // The other mailboxes under way share the policy too: none is paced faster than this.
        let learned = s.learned_pace;
        for other in s.mailboxes.values_mut() {
            other.pace = other.pace.max(learned);
        }
        self.cv.notify_all();
        wait
    }

    /// A request succeeded: grow back slowly towards the configured concurrency.
    pub fn succeeded(&self, mailbox: &str) {
        let mut s = self.state.lock().expect("governor");
        if let Some(m) = s.mailboxes.get_mut(mailbox) {
            m.failures = 0;
            m.successes += 1;
            if m.successes >= PACE_RELAX_AFTER {
                m.successes = 0;
                m.pace = m.pace.map(|p| p * 3 / 4).filter(|p| *p >= Duration::from_millis(20));
            }
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
        let waited = g.throttled("a", Some(150), true);
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
    fn once_pushed_back_requests_are_paced_and_the_pace_is_shared() {
        let g = Governor::new(8, 8);
        drop(g.acquire("b")); // b is under way
        g.throttled("a", Some(100), true);
        drop(g.acquire("a"));
        let t = Instant::now();
        drop(g.acquire("a"));
        assert!(t.elapsed() >= Duration::from_millis(100), "a second request went before the pace allowed");
        // b and a newcomer start from what a learned: b's next request waits for the pace too
        let t = Instant::now();
        drop(g.acquire("b"));
        drop(g.acquire("b"));
        assert!(t.elapsed() >= Duration::from_millis(100));
        // a refusal of a paced request's first attempt slows the pace down; a retry's does not
        g.throttled("a", Some(100), false);
        assert_eq!(g.state.lock().unwrap().mailboxes["a"].pace, Some(Duration::from_millis(120)));
        g.throttled("a", Some(100), true);
        assert_eq!(g.state.lock().unwrap().mailboxes["a"].pace, Some(Duration::from_millis(180)));
        // successes relax it
        for _ in 0..PACE_RELAX_AFTER {
            g.succeeded("a");
        }
        assert_eq!(g.state.lock().unwrap().mailboxes["a"].pace, Some(Duration::from_millis(135)));
        // a back-off of minutes is waited out, not learned as a pace
        let g = Governor::new(8, 8);
        g.throttled("c", Some(600_000), true);
        assert_eq!(g.state.lock().unwrap().learned_pace, None);
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
