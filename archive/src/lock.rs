//! Repository locks with leases.
//!
//! A lock is a small JSON file in `locks/`. Writers (`pack`) and readers (`verify`, `extract`) take
//! shared locks; `prune` takes a prune lock, which excludes other prunes but not backups (deletion
//! is two-phase, see `prune.rs`); `prune --delete-now` takes an exclusive lock. A holder rewrites its lock every `lease / 3`; a lock
//! whose `refreshed` time is older than its lease is stale and ignored, so a host that died (or lost
//! the NAS) cannot block others for longer than one lease, and no one has to guess. On the same host a
//! lock whose process is gone is stale at once.
//!
//! Acquiring is optimistic: write our lock, then look at the others; on conflict remove ours and fail.
//! Two processes racing for exclusive locks both back off, never both proceed.

use crate::crypto::Entropy;
use crate::error::{Error, Result};
use crate::storage::{FileKind, Storage};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

pub const DEFAULT_LEASE_SECS: u64 = 120;

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

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LockInfo {
    pub exclusive: bool,
    /// A prune lock (excludes other prunes only).
    #[serde(default)]
    pub prune: bool,
    pub host: String,
    pub pid: u32,
    /// What holds it (`pack`, `prune`, ...).
    pub purpose: String,
    /// Unix seconds.
    pub created: i64,
    /// Unix seconds of the last refresh.
    pub refreshed: i64,
    pub lease_secs: u64,
}

impl LockInfo {
    pub fn is_stale(&self, now: i64, this_host: &str) -> bool {
        if now > self.refreshed + self.lease_secs as i64 {
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

pub fn now_unix() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// A held lock; refreshed in the background and removed when dropped.
pub struct LockGuard {
    storage: Arc<dyn Storage>,
    name: String,
    stop: Arc<(Mutex<bool>, Condvar)>,
    lost: Arc<AtomicBool>,
    refresher: Option<JoinHandle<()>>,
}

impl LockGuard {
    pub fn acquire(
        storage: Arc<dyn Storage>,
        entropy: &Entropy,
        kind: LockKind,
        purpose: &str,
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
            purpose: purpose.to_string(),
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
                    "{} (locks/{other}); wait for it to finish, or remove that file if you are sure the process is gone",
                    o.describe()
                )));
            }
        }
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let lost = Arc::new(AtomicBool::new(false));
        let refresher = {
            let (storage, name, stop, lost) = (storage.clone(), name.clone(), stop.clone(), lost.clone());
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
                        info.refreshed = now_unix();
                        if storage
                            .put(FileKind::Lock, &name, &serde_json::to_vec(&info).expect("lock serialises"))
                            .is_err()
                        {
                            lost.store(true, Ordering::SeqCst);
                        }
                    }
                })
                .map_err(|e| Error::Other(format!("starting lock refresher: {e}")))?
        };
        Ok(LockGuard { storage, name, stop, lost, refresher: Some(refresher) })
    }

    /// The lock file's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// True if a refresh failed, so others may have taken the lock as stale.
    pub fn lost(&self) -> bool {
        self.lost.load(Ordering::SeqCst)
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
        let a = LockGuard::acquire(s.clone(), &e, Shared, "pack", "h1", 60).unwrap();
        let b = LockGuard::acquire(s.clone(), &e, Shared, "pack", "h1", 60).unwrap();
        // a prune runs beside backups, but not beside another prune
        let p = LockGuard::acquire(s.clone(), &e, Prune, "prune", "h1", 60).unwrap();
        assert!(LockGuard::acquire(s.clone(), &e, Prune, "prune", "h1", 60).is_err());
        drop(p);
        let err = LockGuard::acquire(s.clone(), &e, Exclusive, "prune", "h1", 60).err().unwrap();
        assert!(err.to_string().contains("pack"), "{err}");
        drop(a);
        drop(b);
        assert!(s.list(FileKind::Lock).unwrap().is_empty());
        let x = LockGuard::acquire(s.clone(), &e, Exclusive, "prune", "h1", 60).unwrap();
        assert!(LockGuard::acquire(s.clone(), &e, Shared, "pack", "h1", 60).is_err());
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
        s.put(FileKind::Lock, "stale", &serde_json::to_vec(&old).unwrap()).unwrap();
        let y = LockGuard::acquire(s.clone(), &e, Shared, "pack", "h1", 60).unwrap();
        drop(y);
        // a fresh one from another host does
        let live = LockInfo { refreshed: now_unix(), ..old };
        s.put(FileKind::Lock, "live", &serde_json::to_vec(&live).unwrap()).unwrap();
        assert!(LockGuard::acquire(s.clone(), &e, Shared, "pack", "h1", 60).is_err());
    }
}
