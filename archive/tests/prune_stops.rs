//! A prune that stops part-way still reports exactly which snapshots it removed, loses nothing,
//! and leaves a repository the next prune finishes: here storage refuses to delete packs (a share
//! gone read-only) or to write index files (a repack killed between its new packs and their index).

use exarch_archive::backup::{Backup, BackupOptions, ItemMeta};
use exarch_archive::keyslot::KdfParams;
use exarch_archive::lock::LockWatch;
use exarch_archive::prune::{prune, PruneOptions};
use exarch_archive::retention::Policy;
use exarch_archive::{Context, Error, FileKind, InitOptions, LocalStorage, Repository, Result, Storage};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Local storage whose pack deletions or index writes fail while told to.
struct Failing {
    inner: LocalStorage,
    pack_deletes_fail: AtomicBool,
    index_puts_fail: AtomicBool,
}

impl Storage for Failing {
    fn put(&self, k: FileKind, n: &str, d: &[u8]) -> Result<()> {
        if k == FileKind::Index && self.index_puts_fail.load(Ordering::SeqCst) {
            return Err(Error::Other(format!("cannot write index file {n}: killed")));
        }
        self.inner.put(k, n, d)
    }
    fn get(&self, k: FileKind, n: &str) -> Result<Vec<u8>> {
        self.inner.get(k, n)
    }
    fn get_range(&self, k: FileKind, n: &str, o: u64, l: usize) -> Result<Vec<u8>> {
        self.inner.get_range(k, n, o, l)
    }
    fn size(&self, k: FileKind, n: &str) -> Result<u64> {
        self.inner.size(k, n)
    }
    fn list(&self, k: FileKind) -> Result<Vec<String>> {
        self.inner.list(k)
    }
    fn delete(&self, k: FileKind, n: &str) -> Result<()> {
        if k == FileKind::Pack && self.pack_deletes_fail.load(Ordering::SeqCst) {
            return Err(Error::Other(format!("cannot delete pack {n}: read-only file system")));
        }
        self.inner.delete(k, n)
    }
    fn exists(&self, k: FileKind, n: &str) -> Result<bool> {
        self.inner.exists(k, n)
    }
    fn location(&self, k: FileKind, n: &str) -> String {
        self.inner.location(k, n)
    }
    fn prepare_new(&self) -> Result<()> {
        self.inner.prepare_new()
    }
    fn describe(&self) -> String {
        self.inner.describe()
    }
}

/// A repository in which day `d`'s snapshot holds the items named in `days[d]` (item `i` is 60 kB
/// of its own data, so a pack holds several).
fn repository(t: &std::path::Path, days: &[&[u32]]) -> (Arc<Failing>, Repository) {
    let local = LocalStorage::new(t.join("repo"));
    local.create_layout().unwrap();
    let failing = Arc::new(Failing {
        inner: local,
        pack_deletes_fail: AtomicBool::new(false),
        index_puts_fail: AtomicBool::new(false),
    });
    let storage: Arc<dyn Storage> = failing.clone();
    let opts = InitOptions { kdf: KdfParams { m_cost: 64, t_cost: 1, p_cost: 1 }, ..InitOptions::default() };
    let repo = Repository::init(storage, b"pw", opts, Context::new(t.join("cache"))).unwrap();
    for (day, items) in days.iter().enumerate() {
        let index = Arc::new(repo.index().unwrap());
        let o = BackupOptions {
            mailbox: "m".into(),
            source: "test".into(),
            time_ms: 1_767_268_800_000 + day as i64 * 86_400_000,
            parent: None,
            run_id: [0; 16],
            workers: 1,
            lock: LockWatch::unlocked(),
        };
        let mut b = Backup::start(&repo, index, o).unwrap();
        let f = b.folder_path(&["Inbox"]);
        for &i in *items {
            let data: Vec<u8> = (0..60_000u32).map(|j| (j.wrapping_mul(i + 7) >> 3) as u8).collect();
            b.add_item(
                ItemMeta { folder: f, name: format!("{i}.eml"), source_id: i.to_string(), ..Default::default() },
                data,
            )
            .unwrap();
        }
        b.finish().unwrap();
    }
    (failing, repo)
}

fn keep_last(n: u32, delete_now: bool) -> PruneOptions {
    PruneOptions {
        policy: Policy { last: Some(n), ..Policy::default() },
        mailbox: None,
        dry_run: false,
        delete_now,
        grace_ms: 0,
        repack_threshold: 0.2,
        own_lock: None,
        allow_empty: false,
    }
}

fn assert_whole(repo: &Repository) {
    let report = exarch_archive::verify::verify(repo, exarch_archive::verify::ReadData::All).unwrap();
    assert!(report.is_clean(), "{report:?}");
    assert!(report.unindexed_packs.is_empty(), "{:?}", report.unindexed_packs);
}

#[test]
fn a_prune_that_stops_reports_what_it_removed() {
    let t = tempfile::tempdir().unwrap();
    // each day's item is its own: once its snapshot goes, its pack is garbage
    let (failing, repo) = repository(t.path(), &[&[0], &[1], &[2]]);
    failing.pack_deletes_fail.store(true, Ordering::SeqCst);
    let stopped = prune(&repo, &keep_last(1, true)).unwrap_err();
    assert!(stopped.error.to_string().contains("read-only"), "{}", stopped.error);
    assert_eq!(stopped.report.snapshots_removed.len(), 2, "{:?}", stopped.report);
    assert_eq!(repo.snapshots().unwrap().len(), 1);
    // the remaining snapshot is whole
    let report = exarch_archive::verify::verify(&repo, exarch_archive::verify::ReadData::All).unwrap();
    assert!(report.is_clean(), "{report:?}");
}

/// Day 0 stores items 0-3 in one pack; day 1 keeps items 2 and 3. Forgetting day 0 leaves that
/// pack half dead, so prune repacks it; the repack is killed after its new pack and before the
/// index file naming it. The new pack is in no index file, yet everything in it is still indexed
/// in the old pack: the next prune proves that from its header and finishes the work.
fn killed_repack(t: &std::path::Path) -> (Arc<Failing>, Repository) {
    let (failing, repo) = repository(t, &[&[0, 1, 2, 3], &[2, 3]]);
    let packs_before = repo.storage().list(FileKind::Pack).unwrap().len();
    failing.index_puts_fail.store(true, Ordering::SeqCst);
    let stopped = prune(&repo, &keep_last(1, true)).unwrap_err();
    failing.index_puts_fail.store(false, Ordering::SeqCst);
    assert!(stopped.error.to_string().contains("killed"), "{}", stopped.error);
    assert_eq!(stopped.report.snapshots_removed.len(), 1);
    assert_eq!(repo.storage().list(FileKind::Pack).unwrap().len(), packs_before + 1, "no pack was written");
    let report = exarch_archive::verify::verify(&repo, exarch_archive::verify::ReadData::All).unwrap();
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.unindexed_packs.len(), 1);
    (failing, repo)
}

#[test]
fn a_repack_killed_before_its_index_is_finished_by_the_next_prune() {
    let t = tempfile::tempdir().unwrap();
    let (_, repo) = killed_repack(t.path());
    let r = prune(&repo, &keep_last(1, true)).unwrap();
    assert_eq!(r.packs_redundant, 1, "{r:?}");
    assert_eq!(r.packs_repacked, 1, "{r:?}");
    assert_eq!(r.packs_deleted, 2, "{r:?}");
    assert_whole(&repo);
    assert_eq!(repo.storage().list(FileKind::Pack).unwrap().len(), 1);
}

#[test]
fn a_repack_killed_before_its_index_is_finished_in_two_phases() {
    let t = tempfile::tempdir().unwrap();
    let (_, repo) = killed_repack(t.path());
    let first = prune(&repo, &keep_last(1, false)).unwrap();
    assert_eq!((first.packs_redundant, first.packs_marked, first.packs_deleted), (1, 2, 0), "{first:?}");
    assert_whole(&repo);
    let second = prune(&repo, &keep_last(1, false)).unwrap();
    assert_eq!(second.packs_deleted, 2, "{second:?}");
    assert_whole(&repo);
}

#[test]
fn an_unindexed_pack_holding_a_blob_stored_nowhere_else_is_refused() {
    let t = tempfile::tempdir().unwrap();
    let (_, repo) = killed_repack(t.path());
    // Take away the old pack's index file: the new pack now holds the only indexed-nowhere copies.
    for name in repo.storage().list(FileKind::Index).unwrap() {
        repo.storage().delete(FileKind::Index, &name).unwrap();
    }
    let stopped = prune(&repo, &keep_last(1, true)).unwrap_err();
    assert!(matches!(stopped.error, Error::Refused(_)), "{}", stopped.error);
    assert!(stopped.error.to_string().contains("in no index file"), "{}", stopped.error);
    assert_eq!(stopped.report.packs_deleted, 0);
}
