//! What a killed backup leaves on a local repository — the temporary file of the pack it was
//! filling — is removed by prune only when no writer can still own it: no other process holds a
//! lock, and the file has not been written for an hour. Everything else stays: files with other
//! names, files outside the repository's directories, and every file while a lock is held.

use exarch_archive::backup::{Backup, BackupOptions, ItemMeta};
use exarch_archive::keyslot::KdfParams;
use exarch_archive::lock::{LockGuard, LockKind, LockPurpose, LockWatch};
use exarch_archive::prune::{prune, PruneOptions};
use exarch_archive::retention::Policy;
use exarch_archive::{Context, FileKind, InitOptions, LocalStorage, Repository, Storage};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// A backup of mailbox `m` at `time_ms`, without a lock.
fn backup_at(time_ms: i64) -> BackupOptions {
    BackupOptions {
        mailbox: "m".into(),
        source: "test".into(),
        time_ms,
        parent: None,
        run_id: [0; 16],
        workers: 1,
        lock: LockWatch::unlocked(),
    }
}

/// A repository with one snapshot of mailbox `m` (one item).
fn repository(t: &Path) -> Repository {
    let local = LocalStorage::new(t.join("repo"));
    local.create_layout().unwrap();
    let storage: Arc<dyn Storage> = Arc::new(local);
    let opts = InitOptions { kdf: KdfParams { m_cost: 64, t_cost: 1, p_cost: 1 }, ..InitOptions::default() };
    let repo = Repository::init(storage, b"pw", opts, Context::new(t.join("cache"))).unwrap();
    let mut b = Backup::start(&repo, Arc::new(repo.index().unwrap()), backup_at(1_767_268_800_000)).unwrap();
    let f = b.folder_path(&["Inbox"]);
    let meta = ItemMeta { folder: f, name: "1.eml".into(), source_id: "1".into(), ..Default::default() };
    b.add_item(meta, vec![42u8; 100_000]).unwrap();
    b.finish().unwrap();
    repo
}

fn opts(dry_run: bool, own_lock: Option<String>) -> PruneOptions {
    PruneOptions {
        policy: Policy { last: Some(1), ..Policy::default() },
        mailbox: None,
        dry_run,
        delete_now: false,
        grace_ms: 0,
        repack_threshold: 0.2,
        own_lock,
        allow_empty: false,
    }
}

/// Writes `rel` under the repository, last modified `age` ago.
fn file(root: &Path, rel: &str, age: Duration) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, vec![1u8; 1000]).unwrap();
    let f = std::fs::File::options().write(true).open(&p).unwrap();
    f.set_modified(SystemTime::now() - age).unwrap();
}

#[test]
fn prune_removes_only_old_temporaries_when_no_one_else_holds_a_lock() {
    let t = tempfile::tempdir().unwrap();
    let repo = repository(t.path());
    let root = t.path().join("repo");
    let hours = |h: u64| Duration::from_secs(h * 3600);
    file(&root, "data/.data.4711-0123456789abcdef.tmp", hours(3)); // a killed backup's pack
    file(&root, "data/3f/.3f00.4711-aa.tmp", hours(30)); // an older version's pack temporary
    file(&root, "index/.ab.4711-bb.tmp", Duration::from_secs(60)); // written a minute ago
    file(&root, "index/.keep", hours(50)); // not a temporary name
    file(&root, "elsewhere/.x.1-cc.tmp", hours(50)); // not a repository directory
    let untouched = ["index/.ab.4711-bb.tmp", "index/.keep", "elsewhere/.x.1-cc.tmp"];

    // Another process holds a lock (a backup writing): nothing is removed, not even old files.
    let other = LockGuard::acquire(
        repo.storage().clone(),
        &repo.context().entropy,
        LockKind::Shared,
        LockPurpose::Pack,
        &repo.context().host,
        120,
    )
    .unwrap();
    let r = prune(&repo, &opts(false, None)).unwrap();
    assert_eq!((r.temporaries_removed, r.temporaries_kept), (0, 3), "{r:?}");
    assert!(root.join("data/.data.4711-0123456789abcdef.tmp").exists());

    // Our own prune lock is not another process's.
    let own = other.name().to_string();
    let r = prune(&repo, &opts(true, Some(own.clone()))).unwrap();
    assert_eq!((r.temporaries_removed, r.bytes_temporaries, r.temporaries_kept), (2, 2000, 1), "dry run: {r:?}");
    assert!(root.join("data/.data.4711-0123456789abcdef.tmp").exists(), "a dry run removes nothing");

    let r = prune(&repo, &opts(false, Some(own))).unwrap();
    assert_eq!((r.temporaries_removed, r.temporaries_kept), (2, 1), "{r:?}");
    assert!(!root.join("data/.data.4711-0123456789abcdef.tmp").exists());
    assert!(!root.join("data/3f/.3f00.4711-aa.tmp").exists());
    for f in untouched {
        assert!(root.join(f).exists(), "{f} was removed");
    }
    drop(other);
    let report = exarch_archive::verify::verify(&repo, exarch_archive::verify::ReadData::All).unwrap();
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(repo.storage().list(FileKind::Snapshot).unwrap().len(), 1);
}

#[test]
fn a_backup_dropped_unfinished_leaves_no_temporary_file() {
    let t = tempfile::tempdir().unwrap();
    let repo = repository(t.path());
    let mut b = Backup::start(&repo, Arc::new(repo.index().unwrap()), backup_at(1_767_268_900_000)).unwrap();
    let f = b.folder_path(&["Inbox"]);
    let data: Vec<u8> = (0..300_000u32).map(|i| (i * 31 % 253) as u8).collect();
    let meta = ItemMeta { folder: f, name: "2.eml".into(), source_id: "2".into(), ..Default::default() };
    b.add_item(meta, data).unwrap();
    drop(b); // abandoned: an error in the caller, not a kill
    assert!(repo.storage().temporaries().unwrap().is_empty(), "{:?}", repo.storage().temporaries().unwrap());
}
