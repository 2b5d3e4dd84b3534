//! The published test vectors in `format-spec/test-vectors/`:
//!
//! 1. `regenerated_repository_is_byte_identical`: the code, in its deterministic test mode, writes
//!    exactly the committed repositories. `repo/` (v1) is frozen forever (SPEC §16); set
//!    `EXARCH_REGENERATE_VECTORS=1` to rewrite `repo-2/`, its expected files and `vectors.json`
//!    after a deliberate change, and say so in SPEC.md.
//! 2. `cli_extracts_the_expected_files`: the real binary reads the committed repositories.
//! 3. `independent_reader_follows_the_spec`: a reader written from SPEC.md alone, using only the
//!    primitive crates and none of exarch's code, gets the same files, re-cuts every item into the
//!    stored chunks, and derives every value in `vectors.json`.

mod util;

use exarch_archive::backup::{Backup, BackupOptions, ItemMeta};
use exarch_archive::config::{ChunkerParams, Config};
use exarch_archive::crypto::Entropy;
use exarch_archive::keyslot::KdfParams;
use exarch_archive::{Context, InitOptions, LocalStorage, Repository};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

const PASSPHRASE: &str = "exarch test vector";
const SEED: [u8; 32] = [0x42; 32];
const MAILBOX: &str = "vector@example.com";

fn vectors() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../format-spec/test-vectors")
}

/// The items of the two vector snapshots: (folder path, name, bytes).
fn snapshot_items(n: usize) -> Vec<(Vec<&'static str>, &'static str, Vec<u8>)> {
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

fn generate(dir: &Path) {
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

fn files_of(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    util::tree(dir)
}

/// The passphrase file of `repo-2`: decomposed (NFD) non-ASCII text and a Windows line ending.
const PASSPHRASE_2_FILE: &str = "Gru\u{308}\u{df}e, cafe\u{301} na\u{ef}ve \u{2014} \u{20ac}5\r\n";
/// The same passphrase as typed on most keyboards (NFC).
const PASSPHRASE_2_TYPED: &str = "Gr\u{fc}\u{df}e, caf\u{e9} na\u{ef}ve \u{2014} \u{20ac}5";
/// Stands for a name that is not UTF-8 until the manifest is rewritten (`generate2`).
const NOT_UTF8_PLACEHOLDER: &str = "NOT-UTF8.eml";
const NOT_UTF8: &[u8] = b"caf\xe9 \xff\xfe.eml";

/// The items of `repo-2`: (root number, folder path, name, flags, bytes).
fn repo2_items() -> Vec<(u32, Vec<&'static str>, String, u32, Vec<u8>)> {
    let long_a = "x".repeat(246) + "a.eml";
    let long_b = "x".repeat(246) + "b.eml";
    let mut big = vec![0u8; 300 * 1024];
    blake3::Hasher::new_derive_key("exarch test vector 2 big item").finalize_xof().fill(&mut big);
    let mut v: Vec<(u32, Vec<&str>, String, u32, Vec<u8>)> = [
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
fn generate2(dir: &Path) {
    use exarch_archive::manifest::{Manifest, NO_PARENT};
    let storage: Arc<dyn exarch_archive::Storage> = {
        let s = LocalStorage::new(dir);
        s.create_layout().unwrap();
        Arc::new(s)
    };
    let ctx = Context {
        entropy: Entropy::deterministic_for_tests(SEED),
        cache_root: dir.join("../vector-cache-2"),
        host: String::new(),
        lease_secs: 60,
    };
    let mut cfg = Config::new(String::new());
    cfg.chunker = ChunkerParams { min_size: 16 * 1024, avg_size: 64 * 1024, max_size: 256 * 1024 };
    cfg.pack_size = 64 * 1024;
    cfg.zstd_level = 3;
    let opts =
        InitOptions { kdf: KdfParams { m_cost: 1024, t_cost: 1, p_cost: 1 }, label: String::new(), config: Some(cfg) };
    let passphrase = exarch_archive::passphrase::first_line(PASSPHRASE_2_FILE);
    let repo = Repository::init(storage, passphrase.as_bytes(), opts, ctx).unwrap();
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

fn assert_same_files(fresh: &Path, committed: &Path) {
    let (a, b) = (files_of(fresh), files_of(committed));
    assert_eq!(
        a.keys().collect::<Vec<_>>(),
        b.keys().collect::<Vec<_>>(),
        "the set of files changed: the format changed"
    );
    for (k, v) in &a {
        assert!(b[k] == *v, "{k} differs from the published vector: the format changed (see SPEC.md)");
    }
}

fn regenerate() -> bool {
    std::env::var_os("EXARCH_REGENERATE_VECTORS").is_some()
}

#[test]
fn regenerated_repository_is_byte_identical() {
    let t = tempfile::tempdir().unwrap();
    // v1: frozen forever (SPEC §16); never regenerated.
    let fresh = t.path().join("repo");
    generate(&fresh);
    assert_same_files(&fresh, &vectors().join("repo"));
    for n in 1..=2 {
        let expected = vectors().join(format!("expected/snapshot-{n}"));
        let want = snapshot_items(n).len();
        assert_eq!(util::tree(&expected).len(), want);
    }
    let fresh2 = t.path().join("repo-2");
    generate2(&fresh2);
    let committed2 = vectors().join("repo-2");
    if regenerate() {
        let _ = std::fs::remove_dir_all(&committed2);
        generate2(&committed2);
        let expected = vectors().join("expected/repo-2");
        let _ = std::fs::remove_dir_all(&expected);
        let (snaps, _) = independent::read_snaps(&committed2, PASSPHRASE_2_TYPED);
        for (path, data) in independent::extract_paths(&snaps[0].1) {
            let p = expected.join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, data).unwrap();
        }
    }
    assert_same_files(&fresh2, &committed2);
}

fn snapshot_ids_by_time(env: &util::Env, repo: &str, passphrase: &str) -> Vec<String> {
    let v = env.cmd(&["snapshots", "--repo", repo, "--json"]).env("EXARCH_PASSWORD", passphrase).output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&v.stdout).unwrap();
    v.as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap().to_string()).collect()
}

/// A copy of a vector repository, so the lock files the CLI writes never touch the published ones.
fn copy_of(env: &util::Env, name: &str) -> PathBuf {
    let repo = env.path(name);
    for (rel, data) in util::tree(&vectors().join(name)) {
        let p = repo.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, data).unwrap();
    }
    repo
}

#[test]
fn cli_extracts_the_expected_files() {
    let env = util::Env::new();
    let repo = copy_of(&env, "repo");
    let rs = repo.to_str().unwrap();
    let ids = snapshot_ids_by_time(&env, rs, PASSPHRASE);
    assert_eq!(ids.len(), 2);
    for (n, id) in ids.iter().enumerate() {
        let out = env.path(&format!("out{n}"));
        let r = env
            .cmd(&["extract", "--repo", rs, id, "--to", out.to_str().unwrap()])
            .env("EXARCH_PASSWORD", PASSPHRASE)
            .output()
            .unwrap();
        assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
        util::assert_same_tree(&vectors().join(format!("expected/snapshot-{}", n + 1)), &out);
    }
    // repo-2, opened with the passphrase file it was made from, and verified in full
    let repo = copy_of(&env, "repo-2");
    let rs = repo.to_str().unwrap();
    let pf = env.path("pass-2.txt");
    std::fs::write(&pf, PASSPHRASE_2_FILE).unwrap();
    let with_file =
        |args: &[&str]| env.cmd(args).env_remove("EXARCH_PASSWORD").env("EXARCH_PASSWORD_FILE", &pf).output().unwrap();
    let r = with_file(&["verify", "--repo", rs, "--read-data"]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let out = env.path("out-2");
    let r = with_file(&["extract", "--repo", rs, "latest", "--to", out.to_str().unwrap()]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    util::assert_same_tree(&vectors().join("expected/repo-2"), &out);
}

#[path = "format_vectors/independent.rs"]
mod independent;

#[test]
fn independent_reader_follows_the_spec() {
    let (snaps, trace1) = independent::read(&vectors().join("repo"), PASSPHRASE);
    let passphrase2 = independent::passphrase_from_file(PASSPHRASE_2_FILE.as_bytes());
    let (snaps2, trace2) = independent::read_snaps(&vectors().join("repo-2"), &passphrase2);
    // §7's gear table and the cuts of a 1 MiB stream under repo's seed and sizes
    let mut stream = vec![0u8; 1 << 20];
    blake3::Hasher::new_derive_key("exarch test vector chunker stream").finalize_xof().fill(&mut stream);
    let seed = trace1["chunker_seed_u64"].as_u64().unwrap();
    let lengths = independent::chunk_lengths(&stream, seed, 16 * 1024, 64 * 1024, 256 * 1024);
    let reference: Vec<usize> = exarch_archive::chunker::Chunker::new(
        ChunkerParams { min_size: 16 * 1024, avg_size: 64 * 1024, max_size: 256 * 1024 },
        seed,
    )
    .cuts(&stream)
    .map(|c| c.1)
    .collect();
    assert_eq!(lengths, reference, "§7 as written cuts where exarch cuts");
    let mut expected_dirs = serde_json::Map::new();
    for (n, s) in trace1["snapshots"].as_array().unwrap().iter().enumerate() {
        expected_dirs.insert(s["id"].as_str().unwrap().into(), format!("expected/snapshot-{}", n + 1).into());
    }
    expected_dirs.insert(snaps2[0].1.id.clone(), "expected/repo-2".into());
    let trace = serde_json::json!({
        "repo": trace1,
        "repo-2": trace2,
        "expected_dirs": expected_dirs,
        "passphrase_nfc": {
            "file_bytes_hex": hex::encode(PASSPHRASE_2_FILE.as_bytes()),
            "passphrase": passphrase2,
            "nfc_utf8_hex": hex::encode(PASSPHRASE_2_TYPED.as_bytes()),
        },
        "chunker": {
            "gear": independent::gear().iter().map(|g| format!("{g:016x}")).collect::<Vec<_>>(),
            "stream": "the first 1 MiB of BLAKE3 derive_key(\"exarch test vector chunker stream\", empty) output",
            "seed_u64": seed,
            "min_avg_max": [16 * 1024, 64 * 1024, 256 * 1024],
            "lengths": lengths,
        },
    });
    let trace_file = vectors().join("vectors.json");
    if regenerate() {
        std::fs::write(&trace_file, serde_json::to_string_pretty(&trace).unwrap() + "\n").unwrap();
    }
    let published: serde_json::Value = serde_json::from_slice(&std::fs::read(&trace_file).unwrap()).unwrap();
    assert_eq!(published, trace, "vectors.json disagrees with what the reader derived");
    let (structured, _) = independent::read_snaps(&vectors().join("repo"), PASSPHRASE);
    assert!(structured.iter().all(|s| s.1.mailbox == "vector@example.com"));
    assert_eq!(snaps.len(), 2);
    for (n, files) in snaps.iter().enumerate() {
        let expected = util::tree(&vectors().join(format!("expected/snapshot-{}", n + 1)));
        assert_eq!(files.len(), expected.len());
        for (k, v) in &expected {
            assert_eq!(files.get(k), Some(v), "{k}");
        }
    }
    let written = independent::extract_paths(&snaps2[0].1);
    let expected = util::tree(&vectors().join("expected/repo-2"));
    assert_eq!(written.len(), repo2_items().len());
    assert_eq!(written.len(), expected.len());
    for (k, v) in &expected {
        assert_eq!(written.get(k), Some(v), "{k}");
    }
}

/// Issue 12, check 3: a repository made with a non-ASCII passphrase from a file with a `\r\n`
/// ending opens with the same passphrase typed on a terminal (in its composed form).
#[test]
fn a_passphrase_from_a_windows_file_opens_when_typed() {
    if std::process::Command::new("script").arg("--version").output().is_err() {
        eprintln!("SKIPPED: script(1) is needed for a terminal");
        return;
    }
    let env = util::Env::new();
    let pf = env.path("pass.txt");
    std::fs::write(&pf, PASSPHRASE_2_FILE).unwrap();
    let repo = env.repo();
    let rs = repo.to_str().unwrap();
    let r = env
        .cmd(&["init", "--repo", rs, "--password-file", pf.to_str().unwrap()])
        .env_remove("EXARCH_PASSWORD")
        .output()
        .unwrap();
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let typed = |passphrase: &str| {
        let cmd = format!("{} snapshots --repo {rs}", env!("CARGO_BIN_EXE_exarch"));
        let mut child = std::process::Command::new("script")
            .args(["-qec", &cmd, "/dev/null"])
            .env_remove("EXARCH_PASSWORD")
            .env_remove("EXARCH_PASSWORD_FILE")
            .env("EXARCH_CACHE_DIR", env.path("cache"))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // typed once the prompt is up
        std::thread::sleep(std::time::Duration::from_millis(500));
        use std::io::Write;
        child.stdin.as_mut().unwrap().write_all(format!("{passphrase}\n").as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        (util::code(&out), String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let (code, screen) = typed(PASSPHRASE_2_TYPED);
    assert_eq!(code, 0, "{screen}");
    assert!(screen.contains("Repository passphrase"), "{screen}");
    let (code, screen) = typed("Grusse, cafe naive");
    assert_eq!(code, 3, "a wrong passphrase is still wrong: {screen}");
}

/// Issue 10, check 3: names that collide once cleaned, names of our temporary files, long names and
/// Windows device names all extract, each to a path of its own, and the rules of SPEC.md §13.1 as
/// the independent reader implements them give the very same paths.
#[test]
fn colliding_long_and_reserved_names_extract_as_the_spec_says() {
    let env = util::Env::new();
    env.init();
    let src = env.path("src");
    let long_a = "x".repeat(246) + "a.eml"; // 251 bytes
    let long_b = "x".repeat(246) + "b.eml";
    let names: Vec<(&str, String)> = vec![
        ("Inbox", "a:b.eml".into()),
        ("Inbox", "a_b.eml".into()),
        ("Inbox", "A_B.eml".into()),
        ("Inbox", "p".into()),
        ("Inbox", ".p.exarch-partial".into()),
        ("Inbox", "0.partial".into()),
        ("Inbox", "CON".into()),
        ("Inbox", "com1.txt".into()),
        ("Inbox", "trailing.".into()),
        ("Inbox", "trailing_".into()),
        ("Inbox", "tab\there".into()),
        ("Inbox", long_a.clone()),
        ("Inbox", long_b.clone()),
        ("In:box", "same.eml".into()),
        ("In_box", "same.eml".into()),
        (".exarch-tmp", "0.partial".into()),
        ("Inbox", ".exarch-tmp.3.partial".into()),
        ("nul.d", "x".into()),
    ];
    for (i, (dir, name)) in names.iter().enumerate() {
        std::fs::create_dir_all(src.join(dir)).unwrap();
        std::fs::write(src.join(dir).join(name), format!("item {i}: {dir}/{name}")).unwrap();
    }
    let repo = env.repo();
    let rs = repo.to_str().unwrap();
    env.pack(&src, "names@example.com", &[]);
    let out = env.path("out");
    let v = env.json(&["extract", "--repo", rs, "latest", "--to", out.to_str().unwrap()]);
    assert_eq!(v["items"], names.len() as u64, "{v}");
    assert!(v["renamed"].as_array().unwrap().len() >= 10, "{v}");
    let written = util::tree(&out);
    assert_eq!(written.len(), names.len(), "every item is a file of its own: {:?}", written.keys());
    let (snaps, _) = independent::read_snaps(&repo, util::PASSWORD);
    let expected = independent::extract_paths(&snaps[0].1);
    assert_eq!(written.keys().collect::<Vec<_>>(), {
        let mut k: Vec<_> = expected.keys().collect();
        k.sort();
        k
    });
    for (k, v) in &written {
        assert_eq!(Some(v), expected.get(k), "{k}");
    }
    // no temporary file or directory is left behind
    assert!(written.keys().all(|k| !k.rsplit('/').next().unwrap().starts_with(".exarch-tmp")));
}
