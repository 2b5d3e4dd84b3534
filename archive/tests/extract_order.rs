//! Extraction in pack order: items that share chunks, repeat a chunk, span several packs or runs,
//! are empty or tiny all come back byte for byte; a damaged blob fails exactly the items that hold
//! it, leaves nothing partial behind, and every other item is still written.

use exarch_archive::backup::{Backup, BackupOptions, ItemMeta};
use exarch_archive::config::{ChunkerParams, Config};
use exarch_archive::keyslot::KdfParams;
use exarch_archive::lock::LockWatch;
use exarch_archive::restore::{extract, ExtractOptions};
use exarch_archive::{Context, InitOptions, LocalStorage, Repository, Storage};
use std::path::Path;
use std::sync::Arc;

fn random(n: usize, seed: &str) -> Vec<u8> {
    let mut v = vec![0u8; n];
    blake3::Hasher::new_derive_key(seed).finalize_xof().fill(&mut v);
    v
}

fn items() -> Vec<(&'static str, Vec<u8>)> {
    let a = random(200 * 1024, "a");
    let mut b = b"X-Edited: yes\r\n".to_vec();
    b.extend_from_slice(&a);
    let twice = [a.clone(), a.clone()].concat();
    vec![
        ("a.bin", a.clone()),
        ("b-edited.bin", b),
        ("twice.bin", twice),
        ("tiny.txt", b"tiny".to_vec()),
        ("empty.eml", Vec::new()),
        ("copy-of-a.bin", a),
        ("other.bin", random(90 * 1024, "other")),
    ]
}

fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir.join("Inbox"))
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (e.file_name().into_string().unwrap(), std::fs::read(e.path()).unwrap())
        })
        .collect();
    out.sort();
    out
}

#[test]
fn shared_repeated_and_damaged_chunks() {
    let t = tempfile::tempdir().unwrap();
    let local = LocalStorage::new(t.path().join("repo"));
    local.create_layout().unwrap();
    let storage: Arc<dyn Storage> = Arc::new(local);
    let mut config = Config::new(String::new());
    config.chunker = ChunkerParams { min_size: 1024, avg_size: 4096, max_size: 16 * 1024 };
    config.pack_size = 64 * 1024; // items span several packs
    let opts = InitOptions {
        kdf: KdfParams { m_cost: 64, t_cost: 1, p_cost: 1 },
        config: Some(config),
        ..InitOptions::default()
    };
    let repo = Repository::init(storage, b"pw", opts, Context::new(t.path().join("cache"))).unwrap();
    let index = Arc::new(repo.index().unwrap());
    let bopts = BackupOptions {
        mailbox: "m".into(),
        source: "test".into(),
        time_ms: 0,
        parent: None,
        run_id: [0; 16],
        workers: 2,
        lock: LockWatch::unlocked(),
    };
    let mut b = Backup::start(&repo, index, bopts).unwrap();
    let inbox = b.folder_path(&["Inbox"]);
    for (name, data) in items() {
        let meta = ItemMeta {
            folder: inbox,
            name: name.into(),
            source_id: name.into(),
            change_key: String::new(),
            item_class: "IPM.Note".into(),
            subject: String::new(),
            sender: String::new(),
            received_ms: 0,
            flags: 0,
        };
        b.add_item(meta, data).unwrap();
    }
    let (id, _) = b.finish().unwrap();
    let snap = repo.load_snapshot(&id).unwrap();
    let index = repo.index().unwrap();
    let mut want: Vec<(String, Vec<u8>)> = items().into_iter().map(|(n, d)| (n.to_string(), d)).collect();
    want.sort();
    for threads in [1, 3] {
        let out = t.path().join(format!("out-{threads}"));
        let (stats, failures) =
            extract(&repo, &index, &snap, &out, &ExtractOptions { overwrite: false, threads }, &|_| {}).unwrap();
        assert!(failures.is_empty(), "{failures:?}");
        assert_eq!(stats.items, 7);
        assert_eq!(files(&out), want);
    }
    // Into the same place again: refused item by item without --overwrite (nothing replaced), and
    // with it every item replaced through a partial file and a rename.
    let out = t.path().join("out-1");
    let (stats, failures) =
        extract(&repo, &index, &snap, &out, &ExtractOptions { overwrite: false, threads: 2 }, &|_| {}).unwrap();
    assert_eq!((stats.items, failures.len()), (0, 7), "{failures:?}");
    assert!(failures.iter().all(|f| f.error.contains("not overwriting")), "{failures:?}");
    std::fs::write(out.join("Inbox/tiny.txt"), b"changed since").unwrap();
    let (stats, failures) =
        extract(&repo, &index, &snap, &out, &ExtractOptions { overwrite: true, threads: 2 }, &|_| {}).unwrap();
    assert!(failures.is_empty(), "{failures:?}");
    assert_eq!(stats.items, 7);
    assert_eq!(files(&out), want, "every item replaced, no partial file left");

    // Damage the blob of `a`'s second chunk. The items holding that chunk (a, its identical copy,
    // `twice`, and the edited copy when the edit did not reach past the first chunk: cut points
    // depend on the repository's seed) fail; the others are written; nothing partial is left.
    let first_chunk = exarch_archive::Id(snap.item(0).chunks[1]);
    let holders: Vec<String> = snap
        .items()
        .filter(|it| it.chunks.contains(&first_chunk.0))
        .map(|it| format!("Inbox/{}", String::from_utf8_lossy(&it.name)))
        .collect();
    let loc = index.get(&first_chunk).unwrap();
    let pack_path = t.path().join("repo/data").join(&loc.pack.to_hex()[..2]).join(loc.pack.to_hex());
    let mut bytes = std::fs::read(&pack_path).unwrap();
    bytes[loc.entry.offset as usize + 30] ^= 1;
    std::fs::write(&pack_path, bytes).unwrap();
    let out = t.path().join("out-damaged");
    let (stats, failures) =
        extract(&repo, &index, &snap, &out, &ExtractOptions { overwrite: false, threads: 2 }, &|_| {}).unwrap();
    let mut failed: Vec<String> = failures.iter().map(|f| f.path.clone()).collect();
    failed.sort();
    let mut holders = holders;
    holders.sort();
    assert_eq!(failed, holders, "{failures:?}");
    for must in ["Inbox/a.bin", "Inbox/copy-of-a.bin", "Inbox/twice.bin"] {
        assert!(failed.iter().any(|f| f == must), "{must} holds the chunk: {failed:?}");
    }
    assert!(failures.iter().all(|f| f.damage));
    assert_eq!(stats.items as usize, 7 - failed.len());
    let got = files(&out);
    let names: Vec<String> = got.iter().map(|(n, _)| format!("Inbox/{n}")).collect();
    let mut intact: Vec<String> =
        want.iter().map(|w| format!("Inbox/{}", w.0)).filter(|n| !failed.contains(n)).collect();
    intact.sort();
    assert_eq!(names, intact, "exactly the intact items, no partial file");
    for (n, d) in &got {
        assert_eq!(Some(d), want.iter().find(|w| &w.0 == n).map(|w| &w.1));
    }
}
