//! The published test vectors in `format-spec/test-vectors/`:
//!
//! 1. `regenerated_repository_is_byte_identical`: the code, in its deterministic test mode, writes
//!    exactly the committed repository (set `EXARCH_REGENERATE_VECTORS=1` to rewrite it after a
//!    deliberate format change, and say so in SPEC.md).
//! 2. `cli_extracts_the_expected_files`: the real binary reads the committed repository.
//! 3. `independent_reader_follows_the_spec`: a reader written from SPEC.md alone, using only the
//!    primitive crates (Argon2, XChaCha20-Poly1305, BLAKE3, zstd) and none of exarch's code, gets
//!    the same files.

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

#[test]
fn regenerated_repository_is_byte_identical() {
    let t = tempfile::tempdir().unwrap();
    let fresh = t.path().join("repo");
    generate(&fresh);
    let committed = vectors().join("repo");
    if std::env::var_os("EXARCH_REGENERATE_VECTORS").is_some() {
        let _ = std::fs::remove_dir_all(&committed);
        generate(&committed);
        let expected = vectors().join("expected");
        let _ = std::fs::remove_dir_all(&expected);
        for n in 1..=2 {
            for (folders, name, data) in snapshot_items(n) {
                let d = folders.iter().fold(expected.join(format!("snapshot-{n}")), |p, f| p.join(f));
                std::fs::create_dir_all(&d).unwrap();
                std::fs::write(d.join(name), data).unwrap();
            }
        }
    }
    let (a, b) = (files_of(&fresh), files_of(&committed));
    assert_eq!(
        a.keys().collect::<Vec<_>>(),
        b.keys().collect::<Vec<_>>(),
        "the set of files changed: the format changed"
    );
    for (k, v) in &a {
        assert!(b[k] == *v, "{k} differs from the published vector: the format changed (see SPEC.md)");
    }
}

fn snapshot_ids_by_time(env: &util::Env, repo: &str) -> Vec<String> {
    let v = env.cmd(&["snapshots", "--repo", repo, "--json"]).env("EXARCH_PASSWORD", PASSPHRASE).output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&v.stdout).unwrap();
    v.as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap().to_string()).collect()
}

#[test]
fn cli_extracts_the_expected_files() {
    let env = util::Env::new();
    // A copy, so the lock files the CLI writes never touch the published vectors.
    let repo = env.path("vector-repo");
    for (rel, data) in util::tree(&vectors().join("repo")) {
        let p = repo.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, data).unwrap();
    }
    let rs = repo.to_str().unwrap();
    let ids = snapshot_ids_by_time(&env, rs);
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
}

/// A reader written from SPEC.md alone.
mod independent {
    use argon2::{Algorithm, Argon2, Params, Version};
    use chacha20poly1305::aead::{Aead, KeyInit, Payload};
    use chacha20poly1305::{XChaCha20Poly1305, XNonce};
    use std::collections::HashMap;
    use std::path::Path;

    fn u32le(b: &[u8], o: usize) -> u32 {
        u32::from_le_bytes(b[o..o + 4].try_into().unwrap())
    }

    fn open(key: &[u8; 32], aad: &[u8], sealed: &[u8]) -> Vec<u8> {
        let c = XChaCha20Poly1305::new(key.into());
        c.decrypt(XNonce::from_slice(&sealed[..24]), Payload { msg: &sealed[24..], aad }).expect("authentic")
    }

    fn unflag(p: &[u8]) -> Vec<u8> {
        match p[0] {
            0 => p[1..].to_vec(),
            1 => zstd::stream::decode_all(&p[1..]).unwrap(),
            f => panic!("flag {f}"),
        }
    }

    /// rkyv `Vec<T>` at `at`: relative offset (i32) from the field itself, then length (u32).
    fn vec_at(buf: &[u8], at: usize, elem: usize) -> (usize, usize) {
        let rel = i32::from_le_bytes(buf[at..at + 4].try_into().unwrap()) as isize;
        let start = (at as isize + rel) as usize;
        let len = u32le(buf, at + 4) as usize;
        assert!(start + len * elem <= buf.len());
        (start, len)
    }

    fn bytes_at(buf: &[u8], at: usize) -> Vec<u8> {
        let (s, n) = vec_at(buf, at, 1);
        buf[s..s + n].to_vec()
    }

    /// One snapshot as stored: its mailbox, folders `(parent, name)` and items `(folder, name, bytes)`,
    /// in manifest order.
    pub struct Snap {
        pub mailbox: String,
        pub folders: Vec<(u32, String)>,
        pub items: Vec<(u32, String, Vec<u8>)>,
    }

    /// Returns, per snapshot (by time), `folder/path/name` → bytes.
    pub fn read(repo: &Path, passphrase: &str) -> (Vec<HashMap<String, Vec<u8>>>, serde_json::Value) {
        let (snaps, trace) = read_snaps(repo, passphrase);
        (snaps.into_iter().map(|s| s.0).collect(), trace)
    }

    /// Like `read`, with each snapshot's structure too.
    pub fn read_snaps(repo: &Path, passphrase: &str) -> (Vec<(HashMap<String, Vec<u8>>, Snap)>, serde_json::Value) {
        // 1. key slot → master key
        let slot_path = std::fs::read_dir(repo.join("keys")).unwrap().next().unwrap().unwrap().path();
        let slot = std::fs::read(slot_path).unwrap();
        assert_eq!(&slot[..8], b"EXRKEY01");
        assert_eq!(slot[8], 1);
        let (m, t, p) = (u32le(&slot, 9), u32le(&slot, 13), u32le(&slot, 17));
        let salt = &slot[21..53];
        let label_len = u16::from_le_bytes([slot[61], slot[62]]) as usize;
        let header_end = 63 + label_len;
        let mut wrap = [0u8; 32];
        Argon2::new(Algorithm::Argon2id, Version::V0x13, Params::new(m, t, p, Some(32)).unwrap())
            .hash_password_into(passphrase.as_bytes(), salt, &mut wrap)
            .unwrap();
        let master: [u8; 32] = open(&wrap, &slot[..header_end], &slot[header_end..]).try_into().unwrap();
        let enc = blake3::derive_key("exarch 2026-11 repository v1 encryption key", &master);
        let chunk_key = blake3::derive_key("exarch 2026-11 repository v1 chunk id key", &master);
        let seed = blake3::derive_key("exarch 2026-11 repository v1 chunker seed", &master);
        let mut trace = serde_json::json!({
            "passphrase": passphrase,
            "argon2id": {"m_cost_kib": m, "t_cost": t, "p_cost": p, "salt": hex::encode(salt)},
            "wrapping_key": hex::encode(wrap),
            "master_key": hex::encode(master),
            "encryption_key": hex::encode(enc),
            "chunk_id_key": hex::encode(chunk_key),
            "chunker_seed_u64": u64::from_le_bytes(seed[..8].try_into().unwrap()),
        });
        let mut chunks_seen = serde_json::Map::new();
        // 2. config
        let cfg = std::fs::read(repo.join("config")).unwrap();
        let cfg: serde_json::Value = serde_json::from_slice(&unflag(&open(&enc, b"EXRCONF1", &cfg[8..]))).unwrap();
        assert_eq!(cfg["version"], 1);
        // 3. index: chunk id → (pack, offset, length, raw length, compression)
        let mut index = HashMap::new();
        for f in std::fs::read_dir(repo.join("index")).unwrap() {
            let raw = std::fs::read(f.unwrap().path()).unwrap();
            let body = unflag(&open(&enc, b"EXRINDX1", &raw[8..]));
            assert_eq!(body[0], 1);
            let (np, ne) = (u32le(&body, 1) as usize, u32le(&body, 5) as usize);
            let packs: Vec<&[u8]> = body[9..9 + 32 * np].chunks(32).collect();
            for e in body[9 + 32 * np..].chunks(49).take(ne) {
                let pack = hex::encode(packs[u32le(e, 32) as usize]);
                index.insert(
                    e[..32].to_vec(),
                    (pack, u32le(e, 36) as usize, u32le(e, 40) as usize, u32le(e, 44), e[48]),
                );
            }
        }
        // 4. snapshots
        let mut snaps = Vec::new();
        for f in std::fs::read_dir(repo.join("snapshots")).unwrap() {
            let raw = std::fs::read(f.unwrap().path()).unwrap();
            assert_eq!(&raw[..8], b"EXRSNAP1");
            let slen = u32le(&raw, 8) as usize;
            let summary = unflag(&open(&enc, b"EXRSNAP1\x01", &raw[12..12 + slen]));
            let root = summary.len() - 120;
            let time = i64::from_le_bytes(summary[root..root + 8].try_into().unwrap());
            assert_eq!(&summary[root + 52..root + 84], blake3::hash(&raw[12 + slen..]).as_bytes());
            let mailbox = String::from_utf8(bytes_at(&summary, root + 92)).unwrap();
            let m = unflag(&open(&enc, b"EXRSNAP1\x02", &raw[12 + slen..]));
            let root = m.len() - 32;
            let (fs, nf) = vec_at(&m, root, 28);
            let folder = |i: usize| -> (u32, String) {
                let at = fs + 28 * i;
                (u32le(&m, at), String::from_utf8(bytes_at(&m, at + 4)).unwrap())
            };
            let path_of = |mut i: u32| {
                let mut parts = Vec::new();
                while i != u32::MAX {
                    let (parent, name) = folder(i as usize);
                    if parent != u32::MAX {
                        parts.push(name);
                    }
                    i = parent;
                }
                parts.reverse();
                parts
            };
            assert!(nf >= 1);
            let (is, ni) = vec_at(&m, root + 8, 112);
            let mut files = HashMap::new();
            let mut snap = Snap { mailbox, folders: (0..nf).map(folder).collect(), items: Vec::new() };
            for k in 0..ni {
                let at = is + 112 * k;
                let size = u64::from_le_bytes(m[at + 8..at + 16].try_into().unwrap()) as usize;
                let mut path = path_of(u32le(&m, at + 16));
                path.push(String::from_utf8(bytes_at(&m, at + 56)).unwrap());
                let (cs, nc) = vec_at(&m, at + 104, 32);
                let mut data = Vec::new();
                for c in 0..nc {
                    let id = &m[cs + 32 * c..cs + 32 * c + 32];
                    let (pack, off, len, raw_len, comp) = &index[id];
                    let packfile = std::fs::read(repo.join("data").join(&pack[..2]).join(pack)).unwrap();
                    assert_eq!(&blake3::hash(&packfile).to_hex().to_string(), pack);
                    let mut aad = id.to_vec();
                    aad.push(*comp);
                    aad.extend_from_slice(&raw_len.to_le_bytes());
                    let stored = open(&enc, &aad, &packfile[*off..*off + *len]);
                    let chunk = if *comp == 1 { zstd::stream::decode_all(&stored[..]).unwrap() } else { stored };
                    assert_eq!(blake3::keyed_hash(&chunk_key, &chunk).as_bytes(), id);
                    chunks_seen.insert(
                        hex::encode(id),
                        serde_json::json!({"pack": pack, "offset": off, "length": len, "raw_length": raw_len, "compression": comp}),
                    );
                    data.extend_from_slice(&chunk);
                }
                assert_eq!(data.len(), size);
                assert_eq!(blake3::hash(&data).as_bytes(), &m[at + 24..at + 56]);
                let name = path.pop().unwrap();
                snap.items.push((u32le(&m, at + 16), name.clone(), data.clone()));
                path.push(name);
                files.insert(path.join("/"), data);
            }
            snaps.push((time, files, snap));
        }
        snaps.sort_by_key(|s| s.0);
        trace["chunks"] = serde_json::Value::Object(chunks_seen);
        trace["config"] = cfg;
        (snaps.into_iter().map(|s| (s.1, s.2)).collect(), trace)
    }

    /// The file names of SPEC.md §13.1, written from the text alone: `written path` → bytes.
    pub fn extract_paths(s: &Snap) -> HashMap<String, Vec<u8>> {
        const NONE: u32 = u32::MAX;
        let ext_of = |n: &str| -> (String, String) {
            match n.rfind('.') {
                Some(i) if i > 0 && n.len() - i <= 16 => (n[..i].to_string(), n[i..].to_string()),
                _ => (n.to_string(), String::new()),
            }
        };
        let cut = |stem: &str, tail: &str| -> String {
            let mut end = 0;
            for (i, c) in stem.char_indices() {
                if i + c.len_utf8() + tail.len() > 200 {
                    break;
                }
                end = i + c.len_utf8();
            }
            format!("{}{tail}", &stem[..end])
        };
        let safe = |n: &str| -> String {
            let mut s: String = n
                .chars()
                .map(|c| if "/\\:*?\"<>|".contains(c) || c < ' ' || c == '\u{7f}' { '_' } else { c })
                .collect();
            let mut tail = 0;
            while s.ends_with('.') || s.ends_with(' ') {
                s.pop();
                tail += 1;
            }
            s.push_str(&"_".repeat(tail));
            let base = s.split('.').next().unwrap().to_ascii_uppercase();
            let devices = ["CON", "PRN", "AUX", "NUL"];
            let numbered = (base.starts_with("COM") || base.starts_with("LPT"))
                && base.len() == 4
                && ('1'..='9').contains(&base.chars().nth(3).unwrap());
            if s.is_empty() || devices.contains(&base.as_str()) || numbered || s.eq_ignore_ascii_case(".exarch-tmp") {
                s = format!("_{s}");
            }
            if s.len() > 200 {
                let h = blake3::hash(n.as_bytes()).to_hex().to_string();
                let (stem, ext) = ext_of(&s);
                s = cut(&stem, &format!("~{}{ext}", &h[..16]));
            }
            s
        };
        let lower = |n: &str| n.chars().flat_map(char::to_lowercase).collect::<String>();
        let mut taken: HashMap<u32, std::collections::HashSet<String>> = HashMap::new();
        let mut claim = |dir: u32, want: String| -> String {
            let set = taken.entry(dir).or_default();
            if set.insert(lower(&want)) {
                return want;
            }
            let (stem, ext) = ext_of(&want);
            let mut k = 2;
            loop {
                let c = cut(&stem, &format!("~{k}{ext}"));
                if set.insert(lower(&c)) {
                    return c;
                }
                k += 1;
            }
        };
        let dir = |f: u32| if s.folders[f as usize].0 == NONE { NONE } else { f };
        let names: Vec<String> =
            s.folders.iter().map(|(p, n)| if *p == NONE { String::new() } else { claim(dir(*p), safe(n)) }).collect();
        let path_of = |mut f: u32| {
            let mut parts = Vec::new();
            while s.folders[f as usize].0 != NONE {
                parts.push(names[f as usize].clone());
                f = s.folders[f as usize].0;
            }
            parts.reverse();
            parts
        };
        let mut out = HashMap::new();
        for (f, n, data) in &s.items {
            let mut p = path_of(*f);
            p.push(claim(dir(*f), safe(n)));
            assert!(out.insert(p.join("/"), data.clone()).is_none(), "two items on one path");
        }
        out
    }
}

#[test]
fn independent_reader_follows_the_spec() {
    let (snaps, trace) = independent::read(&vectors().join("repo"), PASSPHRASE);
    let trace_file = vectors().join("vectors.json");
    if std::env::var_os("EXARCH_REGENERATE_VECTORS").is_some() {
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
    assert!(!out.join(".exarch-tmp").exists());
}
