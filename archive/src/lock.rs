//! Repository locks with leases.
//!
//! A lock is a small JSON file in `locks/`. Writers (`pack`) and readers (`verify`, `extract`) take
//! shared locks; `prune` takes a prune lock, which excludes other prunes but not backups (deletion
//! is two-phase, see `prune.rs`); `prune --delete-now` takes an exclusive lock. A holder rewrites
//! its lock every `lease / 3`. Others treat a lock as stale only when its `refreshed` time is older
//! than **twice** its lease (one lease plus a safety margin of one lease), so a host that died (or
//! lost the NAS) blocks others for a bounded time. On the same host a lock whose process is gone is
//! stale at once.
//!
//! The holder's side of the bargain: if it could not refresh for a whole lease (the process was
//! paused, the storage hung) or its file vanished, it must assume the lock was taken from it.
//! `LockWatch::check` says so, and writers call it before anything that makes their work
//! visible (a snapshot, a resume checkpoint), so a stalled backup never commits a snapshot whose
//! packs a prune may have deleted meanwhile.
//!
//! Acquiring is optimistic: write our lock, then look at the others; on conflict remove ours and fail.
//! Two processes racing for exclusive locks both back off, never both proceed.

use crate::crypto::Entropy;
use crate::error::{Error, Result};
use crate::storage::{FileKind, Storage};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

pub const DEFAULT_LEASE_SECS: u64 = 120;
/// Others wait this many leases after the last refresh before they treat a lock as stale; the
/// holder gives up after one. The lease in between is the margin that covers clock skew and a
/// refresh that is slow to land.
pub const STALE_AFTER_LEASES: i64 = 2;

/// What a lock excludes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockKind {
    /// Backups, restores, checks: any number at once.
    Shared,
    /// Garbage collection: one at a time, alongside shared holders.
    Prune,
    /// Nothing else at all.
    Exclusive,
}

/// What a lock is taken for (written as its `purpose`; prune looks for running backups by it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockPurpose {
    Pack,
    Extract,
    Verify,
    Replay,
    Prune,
    Forget,
    Repair,
}

impl LockPurpose {
    pub fn as_str(self) -> &'static str {
        match self {
            LockPurpose::Pack => "pack",
            LockPurpose::Extract => "extract",
            LockPurpose::Verify => "verify",
            LockPurpose::Replay => "replay",
            LockPurpose::Prune => "prune",
            LockPurpose::Forget => "forget",
            LockPurpose::Repair => "repair",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LockInfo {
    pub exclusive: bool,
    /// A prune lock (excludes other prunes only).
    #[serde(default)]
    pub prune: bool,
    pub host: String,
    pub pid: u32,
    /// What holds it (`pack`, `prune`, ...: `LockPurpose`; kept as text, so locks written by
    /// other versions still read).
    pub purpose: String,
    /// Unix seconds.
    pub created: i64,
    /// Unix seconds of the last refresh.
    pub refreshed: i64,
    pub lease_secs: u64,
}

impl LockInfo {
    /// Held by a backup (which may be writing packs no index lists yet).
    pub fn is_backup(&self) -> bool {
        self.purpose == LockPurpose::Pack.as_str()
    }

    pub fn is_stale(&self, now: i64, this_host: &str) -> bool {
        let lease = self.lease_secs.min(i64::MAX as u64 / 4) as i64;
        if now > self.refreshed.saturating_add(STALE_AFTER_LEASES * lease) {
            return true;
        }
        self.host == this_host && !process_alive(self.pid)
    }

    fn describe(&self) -> String {
        format!(
            "{} lock held by {} on {} (pid {}) since {}, lease {} s",
            if self.exclusive {
                "an exclusive"
            } else if self.prune {
                "a prune"
            } else {
                "a shared"
            },
            self.purpose,
            self.host,
            self.pid,
            crate::time::format_unix(self.created),
            self.lease_secs
        )
    }
}

#[cfg(target_os = "linux")]
fn process_alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// Without a cheap, reliable liveness check we rely on the lease alone.
#[cfg(not(target_os = "linux"))]
fn process_alive(_pid: u32) -> bool {
    true
}

/// Every lock that is not stale, with its file name.
pub fn live_locks(storage: &dyn Storage, this_host: &str) -> Result<Vec<(String, LockInfo)>> {
    let now = now_unix();
    Ok(storage
        .list(FileKind::Lock)?
        .into_iter()
        .filter_map(|n| {
            let raw = storage.get(FileKind::Lock, &n).ok()?;
            let info = serde_json::from_slice::<LockInfo>(&raw).ok()?;
            (!info.is_stale(now, this_host)).then_some((n, info))
        })
        .collect())
}

/// What `unlock` did: the locks it removed (unreadable ones have no info) and those it kept.
#[derive(Debug, Default)]
pub struct Unlocked {
    pub removed: Vec<(String, Option<LockInfo>)>,
    pub kept: Vec<(String, LockInfo)>,
}

/// Removes stale locks (and unreadable lock files, which no one honours); with `all`, every lock.
pub fn remove_locks(storage: &dyn Storage, this_host: &str, all: bool) -> Result<Unlocked> {
    let now = now_unix();
    let mut out = Unlocked::default();
    for name in storage.list(FileKind::Lock)? {
        let info =
            storage.get(FileKind::Lock, &name).ok().and_then(|raw| serde_json::from_slice::<LockInfo>(&raw).ok());
        match info {
            Some(i) if !all && !i.is_stale(now, this_host) => out.kept.push((name, i)),
            info => {
                tracing::info!(lock = %name, holder = %info.as_ref().map(LockInfo::summary).unwrap_or_default(), "lock removed");
                storage.delete(FileKind::Lock, &name)?;
                out.removed.push((name, info));
            }
        }
    }
    Ok(out)
}

impl LockInfo {
    /// One line for people: kind, purpose, host, pid, age.
    pub fn summary(&self) -> String {
        self.describe()
    }
}

pub fn now_unix() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// A held lock; refreshed in the background and removed when dropped.
pub struct LockGuard {
    storage: Arc<dyn Storage>,
    name: String,
    stop: Arc<(Mutex<bool>, Condvar)>,
    watch: LockWatch,
    refresher: Option<JoinHandle<()>>,
}

/// A cheap handle that tells whether a held lock may have been lost; cloned into long-running work.
#[derive(Clone, Debug)]
pub struct LockWatch {
    /// A refresh failed, or the file was gone when we came to refresh it.
    failed: Arc<AtomicBool>,
    /// Unix seconds of the last time the lock was known to be ours on the storage.
    last_ok: Arc<AtomicI64>,
    lease_secs: u64,
    name: String,
}

impl LockWatch {
    /// A watch that never reports a loss (for callers that hold no lock, e.g. tests).
    pub fn unlocked() -> LockWatch {
        LockWatch {
            failed: Arc::new(AtomicBool::new(false)),
            last_ok: Arc::new(AtomicI64::new(i64::MAX)),
            lease_secs: u64::MAX / 4,
            name: String::new(),
        }
    }

    /// True if others may have treated the lock as stale: a refresh failed, the file vanished, or
    /// a whole lease passed since the lock was last confirmed (the process was paused, the storage hung).
    pub fn lost(&self) -> bool {
        self.lost_at(now_unix())
    }

    fn lost_at(&self, now: i64) -> bool {
        let last = self.last_ok.load(Ordering::SeqCst);
        self.failed.load(Ordering::SeqCst)
            || (last != i64::MAX && now.saturating_sub(last) > self.lease_secs.min(i64::MAX as u64 / 4) as i64)
    }

    /// Fails when the lock may have been lost; writers call this before committing anything.
    pub fn check(&self) -> Result<()> {
        if !self.lost() {
            return Ok(());
        }
        let last = self.last_ok.load(Ordering::SeqCst);
        Err(Error::LockLost(format!(
            "the repository lock locks/{} was last confirmed {} s ago (lease {} s){}: the process was paused or \
             the storage did not answer, so another process may have taken the lock as stale and removed \
             data this run wrote. Nothing was committed; run the command again",
            self.name,
            now_unix().saturating_sub(last),
            self.lease_secs,
            if self.failed.load(Ordering::SeqCst) { ", and a refresh failed or found the file gone" } else { "" }
        )))
    }
}

impl LockGuard {
    pub fn acquire(
        storage: Arc<dyn Storage>,
        entropy: &Entropy,
        kind: LockKind,
        purpose: LockPurpose,
        host: &str,
        lease_secs: u64,
    ) -> Result<LockGuard> {
        let now = now_unix();
        let exclusive = kind == LockKind::Exclusive;
        let prune = kind == LockKind::Prune;
        let mut info = LockInfo {
            exclusive,
            prune,
            host: host.to_string(),
            pid: std::process::id(),
            purpose: purpose.as_str().to_string(),
            created: now,
            refreshed: now,
            lease_secs,
        };
        let mut rnd = [0u8; 16];
        entropy.fill(&mut rnd);
        let name = hex::encode(rnd);
        storage.put(FileKind::Lock, &name, &serde_json::to_vec(&info).expect("lock serialises"))?;
        for other in storage.list(FileKind::Lock)? {
            if other == name {
                continue;
            }
            let Ok(raw) = storage.get(FileKind::Lock, &other) else {
                continue;
            };
            let Ok(o) = serde_json::from_slice::<LockInfo>(&raw) else {
                continue;
            };
            if o.is_stale(now_unix(), host) {
                continue;
            }
            if exclusive || o.exclusive || (prune && o.prune) {
                let _ = storage.delete(FileKind::Lock, &name);
                return Err(Error::Locked(format!(
                    "{} (locks/{other}); wait for it to finish. If that process is gone, `exarch unlock` removes \
                     its lock once the lease has run out (`exarch unlock --remove-all` at once, when you are sure no \
                     exarch process uses the repository)",
                    o.describe()
                )));
            }
        }
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let watch = LockWatch {
            failed: Arc::new(AtomicBool::new(false)),
            last_ok: Arc::new(AtomicI64::new(now)),
            lease_secs,
            name: name.clone(),
        };
        let refresher = {
            let (storage, name, stop, watch) = (storage.clone(), name.clone(), stop.clone(), watch.clone());
            std::thread::Builder::new()
                .name("lock-refresh".into())
                .spawn(move || {
                    let (m, cv) = &*stop;
                    let mut stopped = m.lock().expect("lock mutex");
                    loop {
                        if *stopped {
                            return;
                        }
                        let (g, _) =
                            cv.wait_timeout(stopped, Duration::from_secs((lease_secs / 3).max(1))).expect("lock mutex");
                        stopped = g;
                        if *stopped {
                            return;
                        }
                        // A lease without a refresh (paused process, hung storage) is a loss for
                        // good: someone may have acted on it, so a late refresh cannot undo it.
                        if watch.lost_at(now_unix()) {
                            watch.failed.store(true, Ordering::SeqCst);
                        }
                        // A file that is gone was removed by someone who took it as stale.
                        if !matches!(storage.exists(FileKind::Lock, &name), Ok(true)) {
                            watch.failed.store(true, Ordering::SeqCst);
                        }
                        info.refreshed = now_unix();
                        match storage.put(FileKind::Lock, &name, &serde_json::to_vec(&info).expect("lock serialises")) {
                            Ok(()) => watch.last_ok.store(info.refreshed, Ordering::SeqCst),
                            Err(_) => watch.failed.store(true, Ordering::SeqCst),
                        }
                    }
                })
                .map_err(|e| Error::Other(format!("starting lock refresher: {e}")))?
        };
        Ok(LockGuard { storage, name, stop, watch, refresher: Some(refresher) })
    }

    /// The lock file's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// True if others may have taken the lock as stale (see `LockWatch::lost`).
    pub fn lost(&self) -> bool {
        self.watch.lost()
    }

    /// Fails when the lock may have been lost (see `LockWatch::check`).
    pub fn check(&self) -> Result<()> {
        self.watch.check()
    }

    /// A handle for work that runs while the lock is held.
    pub fn watch(&self) -> LockWatch {
        self.watch.clone()
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        {
            let (m, cv) = &*self.stop;
            *m.lock().expect("lock mutex") = true;
            cv.notify_all();
        }
        if let Some(h) = self.refresher.take() {
            let _ = h.join();
        }
        let _ = self.storage.delete(FileKind::Lock, &self.name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::LocalStorage;

    #[test]
    fn shared_coexist_exclusive_excludes_and_stale_is_ignored() {
        let t = tempfile::tempdir().unwrap();
        let s: Arc<dyn Storage> = Arc::new(LocalStorage::new(t.path()));
        let e = Entropy::os();
        use LockKind::*;
        let a = LockGuard::acquire(s.clone(), &e, Shared, LockPurpose::Pack, "h1", 60).unwrap();
        let b = LockGuard::acquire(s.clone(), &e, Shared, LockPurpose::Pack, "h1", 60).unwrap();
        // a prune runs beside backups, but not beside another prune
        let p = LockGuard::acquire(s.clone(), &e, Prune, LockPurpose::Prune, "h1", 60).unwrap();
        assert!(LockGuard::acquire(s.clone(), &e, Prune, LockPurpose::Prune, "h1", 60).is_err());
        drop(p);
        let err = LockGuard::acquire(s.clone(), &e, Exclusive, LockPurpose::Prune, "h1", 60).err().unwrap();
        assert!(err.to_string().contains("pack"), "{err}");
        drop(a);
        drop(b);
        assert!(s.list(FileKind::Lock).unwrap().is_empty());
        let x = LockGuard::acquire(s.clone(), &e, Exclusive, LockPurpose::Prune, "h1", 60).unwrap();
        assert!(LockGuard::acquire(s.clone(), &e, Shared, LockPurpose::Pack, "h1", 60).is_err());
        drop(x);
        // a lock from another host whose lease ran out does not block
        let old = LockInfo {
            exclusive: true,
            prune: false,
            host: "dead-host".into(),
            pid: 1,
            purpose: "prune".into(),
            created: 0,
            refreshed: now_unix() - 1000,
            lease_secs: 120,
        };
        // within two leases it still blocks: a paused holder gets a margin before others act
        let recent = LockInfo { refreshed: now_unix() - 200, ..old.clone() };
        assert!(!recent.is_stale(now_unix(), "h1"));
        s.put(FileKind::Lock, "stale", &serde_json::to_vec(&old).unwrap()).unwrap();
        let y = LockGuard::acquire(s.clone(), &e, Shared, LockPurpose::Pack, "h1", 60).unwrap();
        drop(y);
        // a fresh one from another host does
        let live = LockInfo { refreshed: now_unix(), ..old };
        s.put(FileKind::Lock, "live", &serde_json::to_vec(&live).unwrap()).unwrap();
        assert!(LockGuard::acquire(s.clone(), &e, Shared, LockPurpose::Pack, "h1", 60).is_err());
    }

    #[test]
    fn a_holder_paused_past_its_lease_knows_it_lost_the_lock() {
        let t = tempfile::tempdir().unwrap();
        let s: Arc<dyn Storage> = Arc::new(LocalStorage::new(t.path()));
        let g = LockGuard::acquire(s.clone(), &Entropy::os(), LockKind::Shared, LockPurpose::Pack, "h1", 60).unwrap();
        let w = g.watch();
        assert!(!w.lost() && w.check().is_ok());
        // as if the process had been stopped for 61 s: no refresh landed within the lease
        w.last_ok.store(now_unix() - 61, Ordering::SeqCst);
        assert!(w.lost());
        let err = g.check().unwrap_err();
        assert!(err.to_string().contains("Nothing was committed"), "{err}");
        // a lock file removed by someone else is a loss too
        let g2 = LockGuard::acquire(s.clone(), &Entropy::os(), LockKind::Shared, LockPurpose::Pack, "h1", 3).unwrap();
        s.delete(FileKind::Lock, &g2.name).unwrap();
        std::thread::sleep(Duration::from_millis(1300));
        assert!(g2.lost());
        assert!(!LockWatch::unlocked().lost());
    }
}
