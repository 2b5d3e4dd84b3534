//! Counters a backup run moves forward as it goes (stores done, items and bytes stored, items it
//! plans to export), read by whoever shows progress: the CLI's bar on a terminal, or its status
//! line in the log. Plain atomics: reading them never slows the run.

use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct Progress {
    stores_total: AtomicU64,
    stores_done: AtomicU64,
    items_planned: AtomicU64,
    items_done: AtomicU64,
    bytes_done: AtomicU64,
}

/// What the counters said at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Seen {
    pub stores_total: u64,
    pub stores_done: u64,
    /// Items to export, as far as the stores listed so far tell.
    pub items_planned: u64,
    /// Items exported and stored.
    pub items_done: u64,
    /// Their bytes, as exported.
    pub bytes_done: u64,
}

impl Progress {
    pub(crate) fn stores(&self, n: usize) {
        self.stores_total.store(n as u64, Ordering::Relaxed);
    }
    pub(crate) fn store_done(&self) {
        self.stores_done.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn planned(&self, items: usize) {
        self.items_planned.fetch_add(items as u64, Ordering::Relaxed);
    }
    pub(crate) fn item_done(&self, bytes: u64) {
        self.items_done.fetch_add(1, Ordering::Relaxed);
        self.bytes_done.fetch_add(bytes, Ordering::Relaxed);
    }

    pub fn seen(&self) -> Seen {
        Seen {
            stores_total: self.stores_total.load(Ordering::Relaxed),
            stores_done: self.stores_done.load(Ordering::Relaxed),
            items_planned: self.items_planned.load(Ordering::Relaxed),
            items_done: self.items_done.load(Ordering::Relaxed),
            bytes_done: self.bytes_done.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_add_up() {
        let p = Progress::default();
        p.stores(3);
        p.planned(10);
        p.planned(5);
        p.item_done(100);
        p.item_done(50);
        p.store_done();
        let s = p.seen();
        assert_eq!(s, Seen { stores_total: 3, stores_done: 1, items_planned: 15, items_done: 2, bytes_done: 150 });
    }
}
