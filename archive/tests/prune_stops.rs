//! A prune that stops part-way (here: storage that refuses to delete packs, as a share gone
//! read-only would) still reports exactly which snapshots it removed, and loses nothing.

use exarch_archive::backup::{Backup, BackupOptions, ItemMeta};
use exarch_archive::keyslot::KdfParams;
use exarch_archive::lock::LockWatch;
use exarch_archive::prune::{prune, PruneOptions};
use exarch_archive::retention::Policy;
use exarch_archive::{Context, Error, FileKind, InitOptions, LocalStorage, Repository, Result, Storage};
use std::sync::Arc;

/// Local storage whose pack deletions fail.
struct NoPackDeletes(LocalStorage);

impl Storage for NoPackDeletes {
    fn put(&self, k: FileKind, n: &str, d: &[u8]) -> Result<()> {
        self.0.put(k, n, d)
    }
    fn get(&self, k: FileKind, n: &str) -> Result<Vec<u8>> {
        self.0.get(k, n)
    }
    fn get_range(&self, k: FileKind, n: &str, o: u64, l: usize) -> Result<Vec<u8>> {
        self.0.get_range(k, n, o, l)
    }
    fn size(&self, k: FileKind, n: &str) -> Result<u64> {
        self.0.size(k, n)
    }
    fn list(&self, k: FileKind) -> Result<Vec<String>> {
        self.0.list(k)
    }
    fn delete(&self, k: FileKind, n: &str) -> Result<()> {
        if k == FileKind::Pack {
            return Err(Error::Other(format!("cannot delete pack {n}: read-only file system")));
        }
        self.0.delete(k, n)
    }
    fn exists(&self, k: FileKind, n: &str) -> Result<bool> {
        self.0.exists(k, n)
    }
    fn location(&self, k: FileKind, n: &str) -> String {
        self.0.location(k, n)
    }
    fn prepare_new(&self) -> Result<()> {
        self.0.prepare_new()
    }
    fn describe(&self) -> String {
        self.0.describe()
    }
}

#[test]
fn a_prune_that_stops_reports_what_it_removed() {
    let t = tempfile::tempdir().unwrap();
    let local = LocalStorage::new(t.path().join("repo"));
    local.create_layout().unwrap();
    let storage: Arc<dyn Storage> = Arc::new(NoPackDeletes(local));
    let opts = InitOptions { kdf: KdfParams { m_cost: 64, t_cost: 1, p_cost: 1 }, ..InitOptions::default() };
    let repo = Repository::init(storage.clone(), b"pw", opts, Context::new(t.path().join("cache"))).unwrap();
    for day in 0..3i64 {
        let index = Arc::new(repo.index().unwrap());
        let o = BackupOptions {
            mailbox: "m".into(),
            source: "test".into(),
            time_ms: 1_767_268_800_000 + day * 86_400_000,
            parent: None,
            run_id: [0; 16],
            workers: 1,
            lock: LockWatch::unlocked(),
        };
        let mut b = Backup::start(&repo, index, o).unwrap();
        let f = b.folder_path(&["Inbox"]);
        // each day's item is its own: once its snapshot goes, its pack is garbage
        let data: Vec<u8> = (0..200_000u32).map(|i| (i.wrapping_mul(day as u32 + 7) >> 3) as u8).collect();
        b.add_item(
            ItemMeta { folder: f, name: format!("{day}.eml"), source_id: day.to_string(), ..Default::default() },
            data,
        )
        .unwrap();
        b.finish().unwrap();
    }
    let popts = PruneOptions {
        policy: Policy { last: Some(1), ..Policy::default() },
        mailbox: None,
        dry_run: false,
        delete_now: true,
        grace_ms: 0,
        repack_threshold: 1.0,
        own_lock: None,
        allow_empty: false,
    };
    let stopped = prune(&repo, &popts).unwrap_err();
    assert!(stopped.error.to_string().contains("read-only"), "{}", stopped.error);
    assert_eq!(stopped.report.snapshots_removed.len(), 2, "{:?}", stopped.report);
    assert_eq!(repo.snapshots().unwrap().len(), 1);
    // the remaining snapshot is whole
    let report = exarch_archive::verify::verify(&repo, exarch_archive::verify::ReadData::All).unwrap();
    assert!(report.is_clean(), "{report:?}");
}
