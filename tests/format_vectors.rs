//! The published test vectors in `format-spec/test-vectors/`:
//!
//! 1. `regenerated_repository_is_byte_identical`: the code, in its deterministic test mode, writes
//!    exactly the committed repositories. `repo/` (v1) is frozen forever (SPEC §16); set
//!    `EXARCH_REGENERATE_VECTORS=1` to rewrite `repo-2/`, `repo-3/`, their expected files and
//!    `vectors.json` after a deliberate change, and say so in SPEC.md.
//! 2. `cli_extracts_the_expected_files`: the real binary reads the committed repositories.
//! 3. `independent_reader_follows_the_spec`: a reader written from SPEC.md alone, using only the
//!    primitive crates and none of exarch's code, gets the same files, re-cuts every item into the
//!    stored chunks, and derives every value in `vectors.json`.

mod util;

use exarch_archive::config::ChunkerParams;
use generate::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn vectors() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../format-spec/test-vectors")
}

fn files_of(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    util::tree(dir)
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
    for (name, generate, passphrase) in
        [("repo-2", generate2 as fn(&Path), PASSPHRASE_2_TYPED), ("repo-3", generate3 as fn(&Path), PASSPHRASE)]
    {
        let fresh = t.path().join(name);
        generate(&fresh);
        let committed = vectors().join(name);
        if regenerate() {
            let _ = std::fs::remove_dir_all(&committed);
            generate(&committed);
            let expected = vectors().join("expected").join(name);
            let _ = std::fs::remove_dir_all(&expected);
            let (snaps, _) = independent::read_snaps(&committed, passphrase);
            for (path, data) in independent::extract_paths(&snaps[0].1) {
                let p = expected.join(path);
                std::fs::create_dir_all(p.parent().unwrap()).unwrap();
                std::fs::write(p, data).unwrap();
            }
        }
        assert_same_files(&fresh, &committed);
    }
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
    // repo-3: a paged manifest (version 2) verifies, lists and extracts
    let repo = copy_of(&env, "repo-3");
    let rs = repo.to_str().unwrap();
    let run = |args: &[&str]| env.cmd(args).env("EXARCH_PASSWORD", PASSPHRASE).output().unwrap();
    let r = run(&["verify", "--repo", rs, "--read-data"]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let r = run(&["ls", "--repo", rs, "latest"]);
    let listed = String::from_utf8_lossy(&r.stdout);
    let names: Vec<&str> = listed.lines().filter_map(|l| l.split("  ").find(|f| f.contains(".eml"))).collect();
    assert_eq!(names.len(), 7, "{listed}");
    assert!(listed.contains("SKIPPED  Inbox  AAMkPagedSkipped="), "{listed}");
    let r = run(&["ls", "--repo", rs, "latest", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&r.stdout).unwrap();
    let json_names: Vec<&str> = v["items"].as_array().unwrap().iter().map(|i| i["name"].as_str().unwrap()).collect();
    assert_eq!(json_names, (0..7).map(|k| format!("item-{k}.eml")).collect::<Vec<_>>());
    let out = env.path("out-3");
    let r = run(&["extract", "--repo", rs, "latest", "--to", out.to_str().unwrap()]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    util::assert_same_tree(&vectors().join("expected/repo-3"), &out);
}

#[path = "format_vectors/generate.rs"]
mod generate;
#[path = "format_vectors/independent.rs"]
mod independent;

#[test]
fn independent_reader_follows_the_spec() {
    let (snaps, trace1) = independent::read(&vectors().join("repo"), PASSPHRASE);
    let passphrase2 = independent::passphrase_from_file(PASSPHRASE_2_FILE.as_bytes());
    let (snaps2, trace2) = independent::read_snaps(&vectors().join("repo-2"), &passphrase2);
    let (snaps3, trace3) = independent::read_snaps(&vectors().join("repo-3"), PASSPHRASE);
    assert_eq!(trace3["snapshots"][0]["manifest_version"], 2, "repo-3 holds a paged manifest");
    let pages: Vec<u64> = trace3["snapshots"][0]["paged_manifest"]["pages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["items"].as_u64().unwrap())
        .collect();
    assert_eq!(pages, vec![0, 3, 3, 1]);
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
    expected_dirs.insert(snaps3[0].1.id.clone(), "expected/repo-3".into());
    let trace = serde_json::json!({
        "repo": trace1,
        "repo-2": trace2,
        "repo-3": trace3,
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
    let written = independent::extract_paths(&snaps3[0].1);
    let expected = util::tree(&vectors().join("expected/repo-3"));
    assert_eq!((written.len(), expected.len()), (7, 7));
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
