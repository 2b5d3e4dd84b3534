//! The vector repositories as exarch's test mode writes them (SPEC §15): `repo/` (frozen),
//! `repo-2/` (names, passphrase normalisation) and `repo-3/` (a paged manifest, §10.4).

use exarch_archive::backup::{Backup, BackupOptions, ItemMeta};
use exarch_archive::config::{ChunkerParams, Config};
use exarch_archive::crypto::Entropy;
use exarch_archive::keyslot::KdfParams;
use exarch_archive::{Context, InitOptions, LocalStorage, Repository};
use std::path::Path;
use std::sync::Arc;

pub const PASSPHRASE: &str = "exarch test vector";
pub const SEED: [u8; 32] = [0x42; 32];
pub const MAILBOX: &str = "vector@example.com";

/// The items of the two vector snapshots: (folder path, name, bytes).
pub fn snapshot_items(n: usize) -> Vec<(Vec<&'static str>, &'static str, Vec<u8>)> {
    let hello = b"From: alice@example.com\r\nTo: vector@example.com\r\nSubject: hello\r\n\r\n"
        .iter()
        .copied()
        .chain(b"This message compresses well. ".repeat(60))
        .collect::<Vec<u8>>();
    let mut big = vec![0u8; 200 * 1024];
    blake3::Hasher::new_derive_key("exarch test vector attachment").finalize_xof().fill(&mut big);
    let mut items = vec![
        (vec!["Inbox"], "hello.eml", hello.clone()),
        (vec!["Inbox", "Projects"], "attachment.bin", big.clone()),
        (vec!["Sent Items"], "hello copy.eml", hello),
        (vec![], "tiny.txt", b"x".to_vec()),
    ];
    if n == 2 {
        // the attachment with a changed first line: most chunks are shared with snapshot 1
        let mut changed = b"X-Changed: yes\r\n".to_vec();
        changed.extend_from_slice(&big);
        items[1].2 = changed;
        items.push((vec!["Inbox"], "empty.eml", Vec::new()));
    }
    items
}

pub fn generate(dir: &Path) {
    let storage: Arc<dyn exarch_archive::Storage> = {
        let s = LocalStorage::new(dir);
        s.create_layout().unwrap();
        Arc::new(s)
    };
    let ctx = || Context {
        entropy: Entropy::deterministic_for_tests(SEED),
        cache_root: dir.join("../vector-cache"),
        host: "vector-host".into(),
        lease_secs: 60,
    };
    let mut cfg = Config::new(String::new());
    cfg.chunker = ChunkerParams { min_size: 16 * 1024, avg_size: 64 * 1024, max_size: 256 * 1024 };
    cfg.pack_size = 64 * 1024;
    cfg.zstd_level = 3;
    let opts = InitOptions {
        kdf: KdfParams { m_cost: 1024, t_cost: 1, p_cost: 1 },
        label: "vector key".into(),
        config: Some(cfg),
    };
    let repo = Repository::init(storage, PASSPHRASE.as_bytes(), opts, ctx()).unwrap();
    let mut parent = None;
    for n in 1..=2 {
        let index = repo.index().unwrap();
        let mut run_id = [0u8; 16];
        run_id[0] = n as u8;
        let opts = BackupOptions {
            mailbox: MAILBOX.into(),
            source: "dir:/vectors".into(),
            time_ms: 1_795_000_000_000 + n as i64 * 86_400_000,
            parent,
            run_id,
            // one worker: blob order in packs, and so every byte, is a function of the input
            workers: 1,
            lock: exarch_archive::lock::LockWatch::unlocked(),
        };
        let mut b = Backup::start(&repo, Arc::new(index), opts).unwrap();
        for (folders, name, data) in snapshot_items(n) {
            let folder = b.folder_path(&folders);
            let mut id = folders.join("/");
            id.push('/');
            id.push_str(name);
            let meta = ItemMeta {
                folder,
                name: name.into(),
                source_id: id,
                change_key: format!("ck{n}"),
                item_class: "IPM.Note".into(),
                subject: name.into(),
                sender: "alice@example.com".into(),
                received_ms: 1_790_000_000_000,
                flags: 0,
            };
            b.add_item(meta, data).unwrap();
        }
        b.skip(1, "AAMkADirtyItem=", "ErrorItemCorrupt: the item could not be exported");
        let (id, _) = b.finish().unwrap();
        parent = Some(id);
    }
    let _ = std::fs::remove_dir_all(dir.join("../vector-cache"));
}

/// The passphrase file of `repo-2`: decomposed (NFD) non-ASCII text and a Windows line ending.
pub const PASSPHRASE_2_FILE: &str = "Gru\u{308}\u{df}e, cafe\u{301} na\u{ef}ve \u{2014} \u{20ac}5\r\n";
/// The same passphrase as typed on most keyboards (NFC).
pub const PASSPHRASE_2_TYPED: &str = "Gr\u{fc}\u{df}e, caf\u{e9} na\u{ef}ve \u{2014} \u{20ac}5";
/// Stands for a name that is not UTF-8 until the manifest is rewritten (`generate2`).
pub const NOT_UTF8_PLACEHOLDER: &str = "NOT-UTF8.eml";
pub const NOT_UTF8: &[u8] = b"caf\xe9 \xff\xfe.eml";

/// One item of `repo-2`: (root number, folder path, name, flags, bytes).
pub type VectorItem = (u32, Vec<&'static str>, String, u32, Vec<u8>);

/// The items of `repo-2`.
pub fn repo2_items() -> Vec<VectorItem> {
    let long_a = "x".repeat(246) + "a.eml";
    let long_b = "x".repeat(246) + "b.eml";
    let mut big = vec![0u8; 300 * 1024];
    blake3::Hasher::new_derive_key("exarch test vector 2 big item").finalize_xof().fill(&mut big);
    let mut v: Vec<VectorItem> = [
        (0, vec!["Inbox"], "a:b.eml"),
        (0, vec!["Inbox"], "a_b.eml"),
        (0, vec!["Inbox"], "A_B.eml"),
        (0, vec!["Inbox"], "CON"),
        (0, vec!["Inbox"], "com1.txt"),
        (0, vec!["Inbox"], "trailing."),
        (0, vec!["Inbox"], "trailing_"),
        (0, vec!["Inbox"], "tab\there"),
        (0, vec!["Inbox"], ".."),
        (0, vec!["Inbox"], ""),
        (0, vec!["Inbox"], "\u{c9}clair.eml"),
        (0, vec!["Inbox"], "\u{e9}clair.eml"),
        (0, vec!["Inbox"], NOT_UTF8_PLACEHOLDER),
        (0, vec!["In:box"], "same.eml"),
        (0, vec!["In_box"], "same.eml"),
        (0, vec![".exarch-tmp"], "0.partial"),
        (0, vec!["nul.d", "deeper"], "x"),
        (0, vec![], "tiny.txt"),
        (1, vec![], "tiny.txt"),
    ]
    .into_iter()
    .enumerate()
    .map(|(i, (root, dirs, name))| (root, dirs, name.to_string(), 0, format!("item {i}: {name}\n").into_bytes()))
    .collect();
    v.push((0, vec!["Inbox"], long_a, 0, b"long a".to_vec()));
    v.push((0, vec!["Inbox"], long_b, 0, b"long b".to_vec()));
    v.push((0, vec!["Inbox"], "associated.cfg".into(), 1, b"<view settings/>".to_vec()));
    v.push((0, vec!["Inbox"], "empty.eml".into(), 0, Vec::new()));
    v.push((0, vec!["Attachments"], "big.bin".into(), 0, big));
    v
}

/// `repo-2`: a slot from a non-ASCII passphrase file, one snapshot by the directory-source rules
/// of SPEC §10.3 whose names exercise §13.1, with empty strings and vectors wherever a field can
/// be empty, a second root folder and an associated item.
pub fn generate2(dir: &Path) {
    use exarch_archive::manifest::{Manifest, NO_PARENT};
    let passphrase = exarch_archive::passphrase::first_line(PASSPHRASE_2_FILE);
    let repo = small_repo(dir, "vector-cache-2", "", passphrase);
    let index = repo.index().unwrap();
    let opts = BackupOptions {
        mailbox: "names@example.com".into(),
        source: "dir:/vectors/names".into(),
        time_ms: 1_795_500_000_000,
        parent: None,
        run_id: [7; 16],
        workers: 1,
        lock: exarch_archive::lock::LockWatch::unlocked(),
    };
    let mut b = Backup::start(&repo, Arc::new(index), opts).unwrap();
    let second_root = b.folder(NO_PARENT, "", "", "");
    for (n, (root, dirs, name, flags, data)) in repo2_items().into_iter().enumerate() {
        let folder = if root == 0 { b.folder_path(&dirs) } else { second_root };
        let mut rel = dirs.join("/");
        if !rel.is_empty() {
            rel.push('/');
        }
        rel.push_str(&name);
        let mtime_ns = 1_790_000_000_123_456_789i64 + n as i64 * 1_000_000_007;
        let meta = ItemMeta {
            folder,
            name: name.clone(),
            source_id: rel,
            change_key: format!("{}:{mtime_ns}:{}:{}", data.len(), mtime_ns + 5, 1000 + n),
            item_class: "file".into(),
            subject: name,
            sender: String::new(),
            received_ms: mtime_ns / 1_000_000,
            flags,
        };
        b.add_item(meta, data).unwrap();
    }
    let (id, _) = b.finish().unwrap();
    // A foreign writer's name that is not UTF-8 (exarch's own sources never write one).
    let snap = repo.load_snapshot(&id).unwrap();
    let mut manifest: Manifest = snap.to_manifest().unwrap();
    for it in manifest.items.iter_mut().filter(|it| it.name == NOT_UTF8_PLACEHOLDER.as_bytes()) {
        it.name = NOT_UTF8.to_vec();
        it.subject = NOT_UTF8.to_vec();
    }
    let (new_id, bytes) = exarch_archive::snapshot::encode(
        repo.keys(),
        &repo.context().entropy,
        repo.config().zstd_level,
        snap.summary.clone(),
        manifest,
        exarch_archive::manifest_pages::PAGE_ITEMS,
    )
    .unwrap();
    repo.storage().put(exarch_archive::FileKind::Snapshot, &new_id.to_hex(), &bytes).unwrap();
    repo.storage().delete(exarch_archive::FileKind::Snapshot, &id.to_hex()).unwrap();
    let _ = std::fs::remove_dir_all(dir.join("../vector-cache-2"));
}

/// `repo-3`: manifest version 2 (SPEC §10.4). One snapshot of seven items in two folders (one of
/// them empty), a skipped item and a source state, written with pages of three items: a head page,
/// then item pages of 3, 3 and 1 items. Written through the library, like `repo/`.
pub fn generate3(dir: &Path) {
    let repo = small_repo(dir, "vector-cache-3", "vector-host", PASSPHRASE);
    let index = repo.index().unwrap();
    let opts = BackupOptions {
        mailbox: "paged@example.com".into(),
        source: "ews:https://mail.example.com/EWS/Exchange.asmx".into(),
        time_ms: 1_796_000_000_000,
        parent: None,
        run_id: [3; 16],
        workers: 1,
        lock: exarch_archive::lock::LockWatch::unlocked(),
    };
    let mut b = Backup::start(&repo, Arc::new(index), opts).unwrap();
    b.set_page_items(3);
    let inbox = b.folder_path(&["Inbox"]);
    let archive = b.folder_path(&["Archive", "2026"]);
    for k in 0..7u32 {
        let data = if k == 4 {
            Vec::new()
        } else {
            format!("Subject: page item {k}\r\n\r\n{}", "ok ".repeat(k as usize * 9)).into_bytes()
        };
        let meta = ItemMeta {
            folder: if k % 2 == 0 { inbox } else { archive },
            name: format!("item-{k}.eml"),
            source_id: format!("AAMkPagedItem{k}="),
            change_key: format!("CQAAABYAAAA{k}"),
            item_class: "IPM.Note".into(),
            subject: format!("page item {k}"),
            sender: "carol@example.com".into(),
            received_ms: 1_795_900_000_000 + k as i64 * 60_000,
            flags: 0,
        };
        b.add_item(meta, data).unwrap();
    }
    b.skip(inbox, "AAMkPagedSkipped=", "ErrorItemNotFound: the item was deleted during the backup");
    b.set_source_state(br#"{"version": 1, "protocol": "ews", "folders": {}}"#.to_vec());
    b.finish().unwrap();
    let _ = std::fs::remove_dir_all(dir.join("../vector-cache-3"));
}

/// A vector repository with the parameters of SPEC §15 (Argon2id 1,024 KiB, chunker
/// 16/64/256 KiB, 64 KiB packs, zstd 3), in test mode with the cache `../CACHE` beside it.
fn small_repo(dir: &Path, cache: &str, host: &str, passphrase: &str) -> Repository {
    let storage: Arc<dyn exarch_archive::Storage> = {
        let s = LocalStorage::new(dir);
        s.create_layout().unwrap();
        Arc::new(s)
    };
    let ctx = Context {
        entropy: Entropy::deterministic_for_tests(SEED),
        cache_root: dir.join("..").join(cache),
        host: host.into(),
        lease_secs: 60,
    };
    let mut cfg = Config::new(String::new());
    cfg.chunker = ChunkerParams { min_size: 16 * 1024, avg_size: 64 * 1024, max_size: 256 * 1024 };
    cfg.pack_size = 64 * 1024;
    cfg.zstd_level = 3;
    let opts =
        InitOptions { kdf: KdfParams { m_cost: 1024, t_cost: 1, p_cost: 1 }, label: String::new(), config: Some(cfg) };
    Repository::init(storage, passphrase.as_bytes(), opts, ctx).unwrap()
}
