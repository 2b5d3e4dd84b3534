//! How many items the next export request of a mailbox may hold.
//!
//! Two things shrink a batch below the source's limit. *Dirty items* (items that make a whole
//! request fail): once two have turned up, batches shrink to Hwang's group size, which holds about
//! one (`DirtySizing`). *Time limits*: Exchange stops a request after about a minute, and items of
//! some folder classes cost the server far more time than others (a calendar item many times a
//! message), so each class learns its own size (`ClassSizing`): a request that times out cuts
//! that class's size at once, to what the measured time per item fits into the limit the time-out
//! showed (or to half, before any measurement), and no request of that class is sent at that size
//! again; successes grow it back slowly, never past what the measurements fit. What a class
//! learned is stored with the snapshot's sync state, so the next run starts from it.

use serde::{Deserialize, Serialize};

/// The class of items a folder holds, as batch sizes are learned for it.
pub fn class_of(folder_class: &str) -> &'static str {
    let c = folder_class.to_ascii_lowercase();
    if c.starts_with("ipf.appointment") {
        "calendar"
    } else if c.starts_with("ipf.contact") {
        "contacts"
    } else if c.starts_with("ipf.task") {
        "tasks"
    } else if c.starts_with("ipf.stickynote") {
        "notes"
    } else if c.starts_with("ipf.journal") {
        "journal"
    } else {
        "mail"
    }
}

/// The share of the learned time limit a request is sized to take.
const HEADROOM: f64 = 0.9;
/// Successes in a row before a class's size grows by an eighth.
const GROW_AFTER: u32 = 4;

/// What a class learned, as stored in a snapshot's source state (SPEC.md §10.3).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Learned {
    /// Items per request.
    pub size: usize,
    /// Seconds the server took per item, as measured.
    #[serde(default)]
    pub secs_per_item: Option<f64>,
    /// The server's time limit per request, as time-outs showed it.
    #[serde(default)]
    pub limit_secs: Option<f64>,
}

/// One folder class's batch size for a run.
#[derive(Debug, Default, Clone)]
pub struct ClassSizing {
    /// None: no time-out met yet, so the source's own limit.
    size: Option<usize>,
    /// The smallest request size that timed out in this run: never sent again.
    ceiling: Option<usize>,
    secs_per_item: Option<f64>,
    limit_secs: Option<f64>,
    successes: u32,
    /// Requests of this class that ran into the time limit in this run.
    pub timeouts: u64,
}

impl ClassSizing {
    /// Starts from what an earlier run learned.
    pub fn from_learned(l: &Learned) -> ClassSizing {
        ClassSizing {
            size: Some(l.size.max(1)),
            secs_per_item: l.secs_per_item.filter(|s| s.is_finite() && *s > 0.0),
            limit_secs: l.limit_secs.filter(|s| s.is_finite() && *s > 0.0),
            ..ClassSizing::default()
        }
    }

    /// What to store for the next run; None when this class never had to shrink.
    pub fn learned(&self) -> Option<Learned> {
        Some(Learned { size: self.size?, secs_per_item: self.secs_per_item, limit_secs: self.limit_secs })
    }

    /// Whether the server's time limit has shaped this class's size.
    pub fn is_limited(&self) -> bool {
        self.size.is_some()
    }

    /// The size the measurements fit into the limit, once both are known.
    fn fits(&self) -> Option<usize> {
        let (l, p) = (self.limit_secs?, self.secs_per_item?);
        Some(((HEADROOM * l / p).floor() as usize).max(1))
    }

    /// Items the next request of this class may hold, the source allowing `limit`.
    pub fn cap(&self, limit: usize) -> usize {
        let mut c = self.size.unwrap_or(limit).min(limit);
        if let Some(ceiling) = self.ceiling {
            c = c.min(ceiling.saturating_sub(1));
        }
        c.max(1)
    }

    /// A request of `n` items went through in `secs`.
    pub fn succeeded(&mut self, n: usize, secs: f64, limit: usize) {
        if n == 0 || !secs.is_finite() {
            return;
        }
        let per = secs / n as f64;
        self.secs_per_item = Some(self.secs_per_item.map_or(per, |old| 0.7 * old + 0.3 * per));
        let Some(size) = self.size else { return };
        self.successes += 1;
        let mut next = if self.successes.is_multiple_of(GROW_AFTER) { size + (size / 8).max(1) } else { size };
        if let Some(f) = self.fits() {
            next = next.min(f);
        }
        self.size = Some(next.clamp(1, limit.max(1)));
    }

    /// A request of `n` items ran into the time limit after `secs`.
    pub fn timed_out(&mut self, n: usize, secs: f64) {
        self.timeouts += 1;
        self.successes = 0;
        let n = n.max(1);
        self.ceiling = Some(self.ceiling.map_or(n, |c| c.min(n)));
        // The server gave up when its time was up: the request ran about as long as the limit.
        if secs.is_finite() && secs > 0.0 {
            self.limit_secs = Some(self.limit_secs.map_or(secs, |l| l.min(secs)));
        }
        let next = match self.fits() {
            Some(f) if f < n => f,
            _ => n / 2,
        };
        self.size = Some(next.max(1));
    }
}

/// How many items the next export request may hold while dirty items turn up: the source's limit
/// while they are rare, and Hwang's group size once two have: the power of two just under the
/// observed ratio of items to dirty items (counting 50 clean items more than seen, so that two
/// early finds do not shrink batches too far; never below 8). A group that size holds about one
/// dirty item, which binary search then finds in log2(size) requests.
#[derive(Debug, Default)]
pub struct DirtySizing {
    resolved: usize,
    dirty: usize,
}

impl DirtySizing {
    pub fn record(&mut self, resolved: usize, dirty: usize) {
        self.resolved += resolved;
        self.dirty += dirty;
    }

    pub fn cap(&self, limit: usize) -> usize {
        if self.dirty < 2 {
            return limit;
        }
        let ratio = ((self.resolved + 50) / self.dirty).max(1);
        let group = 1usize << (usize::BITS - 1 - ratio.leading_zeros());
        group.clamp(8.min(limit), limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_shrink_to_hwangs_group_size_as_dirty_items_turn_up() {
        let mut s = DirtySizing::default();
        assert_eq!(s.cap(100), 100);
        s.record(100, 1);
        assert_eq!(s.cap(100), 100, "one dirty item says little about the rate");
        s.record(200, 2); // 3 in 300: about one in 100
        assert_eq!(s.cap(100), 64);
        s.record(100, 17); // 20 in 400: one in 20
        assert_eq!(s.cap(100), 16);
        s.record(0, 200);
        assert_eq!(s.cap(100), 8, "never below 8");
        assert_eq!(s.cap(20), 8);
        assert_eq!(DirtySizing::default().cap(20), 20);
    }

    #[test]
    fn a_time_out_cuts_the_size_at_once_and_successes_settle_where_the_limit_fits() {
        // 20 ms an item, a 1 s limit: 50 fit, 45 leave headroom.
        let mut c = ClassSizing::default();
        assert_eq!(c.cap(100), 100, "a class that never timed out keeps the source's limit");
        assert!(c.learned().is_none());
        c.timed_out(100, 1.0);
        assert_eq!(c.cap(100), 50, "halved before any measurement");
        c.succeeded(50, 1.0, 100);
        assert_eq!(c.cap(100), 45, "then sized by the measured time per item");
        for _ in 0..40 {
            c.succeeded(45, 0.9, 100);
        }
        assert_eq!(c.cap(100), 45, "growth never passes what the limit fits");
        assert_eq!(c.timeouts, 1);
        // A size known to time out is never sent again, whatever the estimate says.
        let mut d = ClassSizing::default();
        d.timed_out(10, 1.0);
        d.succeeded(5, 0.1, 100);
        assert!(d.cap(100) < 10);
        // What is stored starts the next run at the same place.
        let l = c.learned().unwrap();
        assert_eq!(ClassSizing::from_learned(&l).cap(100), 45);
        let json = serde_json::to_string(&l).unwrap();
        assert_eq!(serde_json::from_str::<Learned>(&json).unwrap(), l);
    }

    #[test]
    fn folder_classes_map_to_the_classes_sizes_are_learned_for() {
        assert_eq!(class_of("IPF.Appointment"), "calendar");
        assert_eq!(class_of("IPF.Appointment.Birthday"), "calendar");
        assert_eq!(class_of("IPF.Contact"), "contacts");
        assert_eq!(class_of("IPF.Note"), "mail");
        assert_eq!(class_of(""), "mail");
    }
}
