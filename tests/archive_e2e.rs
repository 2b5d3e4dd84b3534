//! End-to-end tests of the archive verbs through the real binary (issue 3's acceptance checks and
//! the failure cases the standards name: wrong passphrase, truncated pack, corrupt manifest, a
//! flipped byte, a killed process).

mod util;

use std::fs;
use util::{assert_same_tree, code, corpus, dir_size, repo_files, stderr, Env};

/// Two mailboxes of 1,000 files each: text, random binary, and attachments shared between them.
fn two_mailboxes(env: &Env) -> (std::path::PathBuf, std::path::PathBuf) {
    let shared = corpus::shared_attachments(1, 6, 400 * 1024);
    let (a, b) = (env.path("src-a"), env.path("src-b"));
    let items_a = corpus::mailbox(1, 1, 1000, &shared);
    let items_b = corpus::mailbox(1, 2, 1000, &shared);
    corpus::write_tree(&a, &items_a);
    corpus::write_tree(&b, &items_b);
    // some items byte-identical in both mailboxes (a message sent to both users)
    for it in items_a.iter().take(40) {
        fs::create_dir_all(b.join("From A")).unwrap();
        fs::write(b.join("From A").join(&it.name), &it.data).unwrap();
    }
    (a, b)
}

#[test]
fn pack_extract_round_trip_and_repack_dedups() {
    let env = Env::new();
    env.init();
    let repo = env.repo();
    let r = repo.to_str().unwrap();
    let (a, b) = two_mailboxes(&env);
    let sa = env.json(&["pack", "--repo", r, "--from-dir", a.to_str().unwrap(), "--mailbox", "alice@example.com"]);
    let sb = env.json(&["pack", "--repo", r, "--from-dir", b.to_str().unwrap(), "--mailbox", "bob@example.com"]);
    assert_eq!(sa["items"], 1000);
    assert_eq!(sb["items"], 1040);
    // shared attachments and the 40 copied items were stored once
    assert!(sb["bytes_new"].as_u64().unwrap() < sb["bytes"].as_u64().unwrap());

    for (src, mb) in [(&a, "alice@example.com"), (&b, "bob@example.com")] {
        let out = env.path(&format!("out-{mb}"));
        env.extract_latest(mb, &out);
        assert_same_tree(src, &out);
    }

    // The same tree again, reading every file (no shortcut through the parent): < 1% more bytes.
    let before = dir_size(&repo);
    let again = env.json(&[
        "pack",
        "--repo",
        r,
        "--from-dir",
        a.to_str().unwrap(),
        "--mailbox",
        "alice@example.com",
        "--force",
    ]);
    assert_eq!(again["items_read"], 1000);
    assert_eq!(again["bytes_new"], 0);
    let grown = dir_size(&repo) - before;
    assert!((grown as f64) < 0.01 * dir_size(&a) as f64, "repacking added {grown} bytes");

    // And with the parent shortcut nothing is read at all.
    let quick = env.json(&["pack", "--repo", r, "--from-dir", a.to_str().unwrap(), "--mailbox", "alice@example.com"]);
    assert_eq!(quick["items_carried"], 1000);

    let snaps = env.json(&["snapshots", "--repo", r]);
    let snaps = snaps.as_array().unwrap();
    assert_eq!(snaps.len(), 4);
    for s in snaps {
        for field in ["id", "mailbox", "time", "run_id", "parent", "items", "bytes"] {
            assert!(s.get(field).is_some(), "snapshots --json lacks {field}: {s}");
        }
    }
    // `latest` without --mailbox is ambiguous with two mailboxes: a usage error
    let out = env.run(&["ls", "--repo", r, "latest"]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    // an id prefix works
    let prefix = &snaps[0]["id"].as_str().unwrap()[..8];
    let listing = env.json(&["ls", "--repo", r, prefix]);
    assert_eq!(listing["items"].as_array().unwrap().len(), 1000);
}

#[test]
fn wrong_or_missing_passphrase_exits_3() {
    let env = Env::new();
    env.init();
    let r = env.repo();
    let out = env.cmd(&["snapshots", "--repo", r.to_str().unwrap()]).env("EXARCH_PASSWORD", "wrong").output().unwrap();
    assert_eq!(code(&out), 3);
    assert!(stderr(&out).contains("passphrase opens none"), "{}", stderr(&out));
    assert!(!stderr(&out).contains("wrong"), "the passphrase must not be echoed");
    let out = env.cmd(&["snapshots", "--repo", r.to_str().unwrap()]).env_remove("EXARCH_PASSWORD").output().unwrap();
    assert_eq!(code(&out), 3);
    assert!(stderr(&out).contains("EXARCH_PASSWORD"), "{}", stderr(&out));
    // not a repository at all: exit 1 and says what to do
    let out = env.run(&["snapshots", "--repo", env.path("nothing").to_str().unwrap()]);
    assert_eq!(code(&out), 1);
    assert!(stderr(&out).contains("exarch init"), "{}", stderr(&out));
    // init refuses to overwrite a repository
    let out = env.run(&["init", "--repo", r.to_str().unwrap()]);
    assert_eq!(code(&out), 1);
}

fn small_repo(env: &Env) -> std::path::PathBuf {
    env.init();
    let src = env.path("src");
    let shared = corpus::shared_attachments(3, 2, 200 * 1024);
    corpus::write_tree(&src, &corpus::mailbox(3, 1, 60, &shared));
    env.ok(&["pack", "--repo", env.repo().to_str().unwrap(), "--from-dir", src.to_str().unwrap(), "--mailbox", "m"]);
    src
}

#[test]
fn flipped_byte_in_pack_exits_4_names_pack_and_writes_no_wrong_bytes() {
    let env = Env::new();
    let src = small_repo(&env);
    let r = env.repo();
    let packs = repo_files(&r, "data");
    assert_eq!(packs.len(), 1);
    let pack = &packs[0];
    let mut bytes = fs::read(pack).unwrap();
    let at = bytes.len() / 3;
    bytes[at] ^= 0x01;
    fs::write(pack, &bytes).unwrap();
    let out_dir = env.path("out");
    let out = env.run(&["extract", "--repo", r.to_str().unwrap(), "latest", "--to", out_dir.to_str().unwrap()]);
    assert_eq!(code(&out), 4, "{}", stderr(&out));
    let pack_name = pack.file_name().unwrap().to_str().unwrap();
    assert!(stderr(&out).contains(pack_name), "error does not name the pack: {}", stderr(&out));
    // every file that was written is correct; the damaged one is absent, no partial files remain
    let written = util::tree(&out_dir);
    let original = util::tree(&src);
    assert!(written.len() < original.len());
    assert!(written.len() + 3 > original.len(), "one flipped byte should cost about one item");
    for (k, v) in &written {
        assert_eq!(&original[k], v, "{k} was written with wrong bytes");
    }
}

#[test]
fn truncated_pack_exits_4() {
    let env = Env::new();
    small_repo(&env);
    let r = env.repo();
    let pack = &repo_files(&r, "data")[0];
    let bytes = fs::read(pack).unwrap();
    fs::write(pack, &bytes[..bytes.len() / 2]).unwrap();
    let out = env.run(&["extract", "--repo", r.to_str().unwrap(), "latest", "--to", env.path("out").to_str().unwrap()]);
    assert_eq!(code(&out), 4, "{}", stderr(&out));
    assert!(stderr(&out).contains("truncated"), "{}", stderr(&out));
}

#[test]
fn corrupt_manifest_harms_only_its_snapshot() {
    let env = Env::new();
    let src = small_repo(&env);
    let r = env.repo();
    let rs = r.to_str().unwrap();
    let src2 = env.path("src2");
    corpus::write_tree(&src2, &corpus::mailbox(4, 2, 30, &[]));
    env.pack(&src2, "other", &[]);
    let snaps = env.json(&["snapshots", "--repo", rs]);
    let victim =
        snaps.as_array().unwrap().iter().find(|s| s["mailbox"] == "m").unwrap()["id"].as_str().unwrap().to_string();
    let path = r.join("snapshots").join(&victim);
    let mut bytes = fs::read(&path).unwrap();
    let n = bytes.len();
    bytes[n - 30] ^= 0x80;
    fs::write(&path, &bytes).unwrap();
    let out = env.run(&["ls", "--repo", rs, &victim[..12]]);
    assert_eq!(code(&out), 4, "{}", stderr(&out));
    assert!(stderr(&out).contains(&victim), "{}", stderr(&out));
    // the other mailbox is untouched
    let out_dir = env.path("out2");
    env.extract_latest("other", &out_dir);
    assert_same_tree(&src2, &out_dir);
    // and the listing still works
    assert_eq!(env.json(&["snapshots", "--repo", rs]).as_array().unwrap().len(), 2);
    let _ = src;
}

#[test]
fn killed_pack_leaves_a_usable_repository() {
    let env = Env::new();
    env.init();
    let r = env.repo();
    let rs = r.to_str().unwrap();
    let src = env.path("src");
    let shared = corpus::shared_attachments(5, 4, 1024 * 1024);
    corpus::write_tree(&src, &corpus::mailbox(5, 1, 1500, &shared));
    let mut killed = 0;
    for delay_ms in [50u64, 300, 900] {
        let mut child = env
            .cmd(&["pack", "--repo", rs, "--from-dir", src.to_str().unwrap(), "--mailbox", "m", "--force"])
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        killed += usize::from(child.try_wait().unwrap().is_none());
        let _ = child.kill();
        let _ = child.wait();
        // whatever it left, the repository opens and lists
        env.ok(&["snapshots", "--repo", rs]);
    }
    assert!(killed >= 2, "only {killed} of 3 kills landed mid-backup");
    // the lock of a killed process does not block (same host, process gone)
    env.pack(&src, "m", &[]);
    let out = env.path("out");
    env.extract_latest("m", &out);
    assert_same_tree(&src, &out);
    // no temporary files were left visible as repository files
    for kind in ["data", "index", "snapshots"] {
        for f in repo_files(&r, kind) {
            let name = f.file_name().unwrap().to_str().unwrap();
            assert!(name.starts_with('.') || name.len() == 64, "stray file {}", f.display());
        }
    }
}

#[test]
fn key_slots_add_list_passwd_remove() {
    let env = Env::new();
    env.init();
    let r = env.repo();
    let rs = r.to_str().unwrap();
    let newpw = env.path("new.pw");
    fs::write(&newpw, "second passphrase\n").unwrap();
    env.ok(&["key", "add", "--repo", rs, "--label", "recovery", "--new-password-file", newpw.to_str().unwrap()]);
    let keys = env.json(&["key", "list", "--repo", rs]);
    assert_eq!(keys.as_array().unwrap().len(), 2);
    // the second passphrase opens the repository
    let out = env.cmd(&["snapshots", "--repo", rs]).env("EXARCH_PASSWORD", "second passphrase").output().unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    // change the first passphrase: the old one stops working
    let third = env.path("third.pw");
    fs::write(&third, "third passphrase").unwrap();
    env.ok(&["key", "passwd", "--repo", rs, "--new-password-file", third.to_str().unwrap()]);
    assert_eq!(code(&env.run(&["snapshots", "--repo", rs])), 3);
    let out = env.cmd(&["snapshots", "--repo", rs]).env("EXARCH_PASSWORD", "third passphrase").output().unwrap();
    assert_eq!(code(&out), 0);
    // remove the recovery key; the last key cannot be removed
    let keys =
        env.cmd(&["key", "list", "--repo", rs, "--json"]).env("EXARCH_PASSWORD", "third passphrase").output().unwrap();
    let keys: serde_json::Value = serde_json::from_slice(&keys.stdout).unwrap();
    let recovery =
        keys.as_array().unwrap().iter().find(|k| k["label"] == "recovery").unwrap()["id"].as_str().unwrap().to_string();
    let out = env
        .cmd(&["key", "remove", "--repo", rs, &recovery[..10]])
        .env("EXARCH_PASSWORD", "third passphrase")
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let keys =
        env.cmd(&["key", "list", "--repo", rs, "--json"]).env("EXARCH_PASSWORD", "third passphrase").output().unwrap();
    let keys: serde_json::Value = serde_json::from_slice(&keys.stdout).unwrap();
    let last = keys[0]["id"].as_str().unwrap().to_string();
    let out =
        env.cmd(&["key", "remove", "--repo", rs, &last]).env("EXARCH_PASSWORD", "third passphrase").output().unwrap();
    assert_eq!(code(&out), 2, "{}", stderr(&out));
}

/// SPEC §10.3, "a directory source writes": the fields of a `pack --from-dir` item, exactly.
#[cfg(unix)]
#[test]
fn directory_source_fields_are_as_published() {
    use std::os::unix::fs::MetadataExt;
    let env = Env::new();
    env.init();
    let src = env.path("src");
    std::fs::create_dir_all(src.join("Inbox/empty dir")).unwrap();
    std::fs::write(src.join("tiny.txt"), b"x").unwrap();
    std::fs::write(src.join("Inbox/hello.eml"), b"hello").unwrap();
    std::os::unix::fs::symlink(src.join("tiny.txt"), src.join("link.txt")).unwrap();
    env.pack(&src, "fields@example.com", &[]);
    let v = env.json(&["ls", "--repo", env.repo().to_str().unwrap(), "latest"]);
    let items = v["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "regular files only, no symlink: {v}");
    for rel in ["Inbox/hello.eml", "tiny.txt"] {
        let it = items.iter().find(|i| i["path"] == rel).unwrap();
        let md = std::fs::metadata(src.join(rel)).unwrap();
        let mtime_ns = md.mtime() as i128 * 1_000_000_000 + md.mtime_nsec() as i128;
        let ctime_ns = md.ctime() as i128 * 1_000_000_000 + md.ctime_nsec() as i128;
        assert_eq!(it["source_id"], rel, "no leading slash: {it}");
        assert_eq!(it["change_key"], format!("{}:{mtime_ns}:{ctime_ns}:{}", md.len(), md.ino()));
        assert_eq!(it["item_class"], "file");
        assert_eq!(it["subject"], it["name"]);
        assert_eq!(it["sender"], "");
    }
    // an empty directory is not a folder of the snapshot
    let out = env.path("out");
    env.ok(&["extract", "--repo", env.repo().to_str().unwrap(), "latest", "--to", out.to_str().unwrap()]);
    assert!(!out.join("Inbox/empty dir").exists());
}

/// Issue 16, point 1 (and CONTRACT's whole runs): several snapshots in one extract, each into
/// DIR/<mailbox>/ — the newest of every mailbox, a run, or several ids.
#[test]
fn whole_runs_extract_in_one_command() {
    let env = Env::new();
    env.init();
    let r = env.repo();
    let rs = r.to_str().unwrap();
    let (a, b) = (env.path("a"), env.path("b"));
    corpus::write_tree(&a, &corpus::mailbox(41, 1, 30, &[]));
    corpus::write_tree(&b, &corpus::mailbox(41, 2, 20, &[]));
    let old_a = env.json(&["pack", "--repo", rs, "--from-dir", a.to_str().unwrap(), "--mailbox", "alice@example.com"]);
    fs::write(a.join("newer.txt"), b"only in the newest snapshot").unwrap();
    let new_a = env.json(&["pack", "--repo", rs, "--from-dir", a.to_str().unwrap(), "--mailbox", "alice@example.com"]);
    env.pack(&b, "bob@example.com#archive", &[]);

    let out = env.path("all");
    let v = env.json(&["extract", "--repo", rs, "latest", "--all-mailboxes", "--to", out.to_str().unwrap()]);
    assert_eq!(v["snapshots"].as_array().unwrap().len(), 2, "{v}");
    assert_eq!(v["items"], 31 + 20);
    assert_same_tree(&a, &out.join("alice@example.com"));
    assert_same_tree(&b, &out.join("bob@example.com#archive"));

    // a run id (8+ hex digits of it): that run's snapshots only
    let snaps = env.json(&["snapshots", "--repo", rs]);
    let run_of = |id: &str| {
        snaps.as_array().unwrap().iter().find(|s| s["id"] == id).unwrap()["run_id"].as_str().unwrap().to_string()
    };
    let old_id = old_a["snapshot"].as_str().unwrap();
    let out = env.path("run");
    let v = env.json(&["extract", "--repo", rs, "--run", &run_of(old_id)[..10], "--to", out.to_str().unwrap()]);
    assert_eq!(v["snapshots"][0]["snapshot"], old_id, "{v}");
    assert!(out.join("alice@example.com").is_dir() && !out.join("alice@example.com/newer.txt").exists());

    // several ids, one mailbox twice: the later one beside it, named by its id
    let new_id = new_a["snapshot"].as_str().unwrap();
    let out = env.path("ids");
    env.ok(&["extract", "--repo", rs, &old_id[..12], new_id, "--to", out.to_str().unwrap()]);
    let dirs: Vec<String> =
        fs::read_dir(&out).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    assert_eq!(dirs.len(), 2, "{dirs:?}");
    assert!(!out.join("alice@example.com/newer.txt").exists(), "the first named goes to the mailbox's name");
    assert_same_tree(&a, &out.join(format!("alice@example.com~{}", &new_id[..8])));

    // one snapshot as before: straight into DIR
    let out = env.path("one");
    env.ok(&["extract", "--repo", rs, "latest", "--mailbox", "alice@example.com", "--to", out.to_str().unwrap()]);
    assert_same_tree(&a, &out);

    // misuse is a usage error
    for args in [
        vec!["extract", "--repo", rs, old_id, "--all-mailboxes", "--to", "x"],
        vec!["extract", "--repo", rs, "latest", "--all-mailboxes", "--mailbox", "alice@example.com", "--to", "x"],
        vec!["extract", "--repo", rs, "--run", "zz", "--to", "x"],
        vec!["extract", "--repo", rs, "--run", "0123456789", "latest", "--to", "x"],
    ] {
        assert_eq!(code(&env.run(&args)), 2, "{args:?}");
    }
}

/// Issue 16, point 1: `pack --from-dir SRC --all-mailboxes` backs up every SRC/<mailbox> in one
/// run (one run id), and what one mailbox stored the next does not store again.
#[test]
fn several_mailboxes_from_one_directory_in_one_run() {
    let env = Env::new();
    env.init();
    let r = env.repo();
    let rs = r.to_str().unwrap();
    let src = env.path("export");
    let shared = corpus::shared_attachments(43, 3, 300 * 1024);
    corpus::write_tree(&src.join("alice@example.com"), &corpus::mailbox(43, 1, 25, &shared));
    corpus::write_tree(&src.join("bob@example.com"), &corpus::mailbox(43, 2, 15, &shared));
    // the same big attachment in both mailboxes
    let big: Vec<u8> = (0..600_000u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
    for mb in ["alice@example.com", "bob@example.com"] {
        fs::write(src.join(mb).join("report.pdf"), &big).unwrap();
    }
    let v = env.json(&["pack", "--repo", rs, "--from-dir", src.to_str().unwrap(), "--all-mailboxes"]);
    let snaps = v["snapshots"].as_array().unwrap();
    assert_eq!(snaps.len(), 2, "{v}");
    assert_eq!(snaps[0]["mailbox"], "alice@example.com");
    assert!(
        snaps[1]["bytes_new"].as_u64().unwrap() + 500_000 < snaps[1]["bytes"].as_u64().unwrap(),
        "bob's copy of the attachment was not stored again: {v}"
    );
    let listed = env.json(&["snapshots", "--repo", rs]);
    let runs: Vec<&str> = listed.as_array().unwrap().iter().map(|s| s["run_id"].as_str().unwrap()).collect();
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[0], runs[1], "one run id");
    // and a whole run back in one command
    let out = env.path("out");
    env.ok(&["extract", "--repo", rs, "--run", runs[0], "--to", out.to_str().unwrap()]);
    assert_same_tree(&src, &out);
    // two named mailboxes: the same, a second run with nothing new
    let v = env.json(&[
        "pack",
        "--repo",
        rs,
        "--from-dir",
        src.to_str().unwrap(),
        "--mailbox",
        "bob@example.com",
        "--mailbox",
        "alice@example.com",
    ]);
    assert_eq!(v["bytes_new"], 0, "{v}");
    assert_eq!(
        code(&env.run(&[
            "pack",
            "--repo",
            rs,
            "--from-dir",
            src.to_str().unwrap(),
            "--mailbox",
            "..",
            "--mailbox",
            "x"
        ])),
        2
    );
}
