//! Keeps requests within Exchange Online's documented limits per app and mailbox, so a run draws
//! no 429 when it can avoid one: at most `per_mailbox` requests in flight for a mailbox (Outlook's
//! limit is 4), at most `budget` requests started in any `window` (10,000 in 10 minutes), and none
//! before a `Retry-After` the service gave for that mailbox has passed. A global cap bounds the
//! whole run.

use std::collections::{HashMap, VecDeque};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// Outlook's documented limits per app per mailbox.
pub const MAX_CONCURRENT_PER_MAILBOX: usize = 4;
pub const REQUESTS_PER_WINDOW: usize = 10_000;
pub const WINDOW: Duration = Duration::from_secs(600);

#[derive(Default)]
struct Mailbox {
    inflight: usize,
    started: VecDeque<Instant>,
    not_before: Option<Instant>,
}

struct State {
    inflight: usize,
    mailboxes: HashMap<String, Mailbox>,
}

pub struct Governor {
    max: usize,
    per_mailbox: usize,
    budget: usize,
    window: Duration,
    state: Mutex<State>,
    cv: Condvar,
}

/// Held while a request is in flight.
pub struct Permit<'a> {
    gov: &'a Governor,
    mailbox: String,
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        let mut s = self.gov.state.lock().expect("governor");
        s.inflight -= 1;
        if let Some(m) = s.mailboxes.get_mut(&self.mailbox) {
            m.inflight -= 1;
        }
        self.gov.cv.notify_all();
    }
}

impl Governor {
    /// `max` requests in flight in all; `per_mailbox` (at most 4) for one mailbox.
    pub fn new(max: usize, per_mailbox: usize) -> Governor {
        Governor::with_budget(max, per_mailbox, REQUESTS_PER_WINDOW, WINDOW)
    }

    pub fn with_budget(max: usize, per_mailbox: usize, budget: usize, window: Duration) -> Governor {
        Governor {
            max: max.max(1),
            per_mailbox: per_mailbox.clamp(1, MAX_CONCURRENT_PER_MAILBOX),
            budget: budget.max(1),
            window,
            state: Mutex::new(State { inflight: 0, mailboxes: HashMap::new() }),
            cv: Condvar::new(),
        }
    }

    /// Waits for a permit to send a request for `mailbox`; None when `deadline` comes first.
    pub fn acquire(&self, mailbox: &str, deadline: Option<Instant>) -> Option<Permit<'_>> {
        let mut s = self.state.lock().expect("governor");
        loop {
            let now = Instant::now();
            if deadline.is_some_and(|d| now >= d) {
                return None;
            }
            let global_free = s.inflight < self.max;
            let m = s.mailboxes.entry(mailbox.to_string()).or_default();
            while m.started.front().is_some_and(|t| now.duration_since(*t) >= self.window) {
                m.started.pop_front();
            }
            // When the mailbox may go next: after a Retry-After, and once the oldest request in a
            // full window has left it.
            let mut ready = m.not_before.filter(|t| *t > now);
            if m.started.len() >= self.budget {
                let free_at = m.started[m.started.len() - self.budget] + self.window;
                ready = Some(ready.map_or(free_at, |r| r.max(free_at)));
            }
            match ready {
                None if global_free && m.inflight < self.per_mailbox => {
                    m.inflight += 1;
                    m.started.push_back(now);
                    s.inflight += 1;
                    return Some(Permit { gov: self, mailbox: mailbox.to_string() });
                }
                None => match deadline {
                    Some(d) => s = self.cv.wait_timeout(s, d.saturating_duration_since(now)).expect("governor").0,
                    None => s = self.cv.wait(s).expect("governor"),
                },
                Some(at) => {
                    let until = deadline.map_or(at, |d| d.min(at));
                    let wait = until.saturating_duration_since(now).max(Duration::from_millis(1));
                    s = self.cv.wait_timeout(s, wait).expect("governor").0;
                }
            }
        }
    }

    /// The service refused a request for `mailbox` (429/503): no request for it before `pause`
    /// has passed.
    pub fn pause(&self, mailbox: &str, pause: Duration) {
        let mut s = self.state.lock().expect("governor");
        let m = s.mailboxes.entry(mailbox.to_string()).or_default();
        let until = Instant::now() + pause;
        m.not_before = Some(m.not_before.map_or(until, |t| t.max(until)));
        self.cv.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mailbox_gets_at_most_its_share_and_waits_out_its_pause() {
        let g = Governor::new(16, 9);
        let held: Vec<_> = (0..4).map(|_| g.acquire("a", None).expect("permit")).collect();
        let soon = Some(Instant::now() + Duration::from_millis(50));
        assert!(g.acquire("a", soon).is_none(), "a fifth request for one mailbox waits (Outlook allows 4)");
        assert!(g.acquire("b", None).is_some(), "another mailbox is not held up");
        drop(held);
        g.pause("a", Duration::from_millis(200));
        let t = Instant::now();
        let _p = g.acquire("a", None).expect("permit");
        assert!(t.elapsed() >= Duration::from_millis(190), "no request before Retry-After has passed");
    }

    #[test]
    fn the_request_budget_is_a_sliding_window() {
        let g = Governor::with_budget(8, 4, 3, Duration::from_millis(300));
        let t = Instant::now();
        for _ in 0..3 {
            drop(g.acquire("a", None).expect("permit"));
        }
        assert!(t.elapsed() < Duration::from_millis(100));
        drop(g.acquire("a", None).expect("permit"));
        assert!(t.elapsed() >= Duration::from_millis(290), "the fourth waits for the first to leave the window");
    }
}
