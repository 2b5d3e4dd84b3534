//! `exarch verify` through the real binary: clean repositories pass, and damage is named in terms
//! of mailboxes, snapshots and items (issue 5, checks 1 and 5).

mod util;

use std::fs;
use util::{code, corpus, repo_files, stderr, Env};

/// Two mailboxes, two snapshots of the first (the second after edits), one of the second.
fn repo_with_history(env: &Env) -> (std::path::PathBuf, std::path::PathBuf) {
    env.init();
    let (a, b) = (env.path("a"), env.path("b"));
    corpus::write_tree(&a, &corpus::mailbox(21, 1, 80, &[]));
    corpus::write_tree(&b, &corpus::mailbox(21, 2, 40, &[]));
    env.pack(&a, "alice@example.com", &["--time", "2026-01-01T00:00:00Z"]);
    env.pack(&b, "bob@example.com", &["--time", "2026-01-01T00:00:00Z"]);
    // a day later alice's mailbox has new items; the old ones are unchanged
    corpus::write_tree(
        &a.join("Inbox"),
        &corpus::mailbox(22, 1, 20, &[])
            .into_iter()
            .map(|mut i| {
                i.folder = "New".into();
                i
            })
            .collect::<Vec<_>>(),
    );
    env.pack(&a, "alice@example.com", &["--time", "2026-01-02T00:00:00Z"]);
    (a, b)
}

#[test]
fn clean_repository_verifies_every_way() {
    let env = Env::new();
    repo_with_history(&env);
    let rs = env.repo().to_str().unwrap().to_string();
    env.ok(&["verify", "--repo", &rs]);
    let full = env.json(&["verify", "--repo", &rs, "--read-data"]);
    assert_eq!(full["ok"], true);
    assert!(full["report"]["checked"]["items_hashed"].as_u64().unwrap() >= 140);
    let mut blobs = 0;
    for n in 1..=3 {
        let part = env.json(&["verify", "--repo", &rs, "--read-data-subset", &format!("{n}/3")]);
        assert_eq!(part["ok"], true);
        blobs += part["report"]["checked"]["blobs_read"].as_u64().unwrap();
    }
    assert_eq!(blobs, full["report"]["checked"]["blobs_read"].as_u64().unwrap(), "the slices cover every blob once");
    let out = env.cmd(&["verify", "--repo", &rs, "--no-key"]).env_remove("EXARCH_PASSWORD").output().unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(code(&env.run(&["verify", "--repo", &rs, "--read-data-subset", "4/3"])), 2);
}

#[test]
fn flipped_pack_byte_names_mailbox_items_and_intact_versions() {
    let env = Env::new();
    repo_with_history(&env);
    let r = env.repo();
    let rs = r.to_str().unwrap();
    // flip a byte in the pack that holds alice's first snapshot's data
    let packs = repo_files(&r, "data");
    let victim = &packs[0];
    let mut bytes = fs::read(victim).unwrap();
    let at = bytes.len() / 4;
    bytes[at] ^= 0x20;
    fs::write(victim, &bytes).unwrap();
    let pack_name = victim.file_name().unwrap().to_str().unwrap().to_string();

    let out = env.run(&["verify", "--repo", rs, "--read-data", "--json"]);
    assert_eq!(code(&out), 4, "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ok"], false);
    let problems = v["report"]["problems"].as_array().unwrap();
    assert!(problems.iter().any(|p| p["kind"] == "pack" && p["id"] == pack_name.as_str()), "{problems:?}");
    let affected = v["report"]["affected"].as_array().unwrap();
    assert!(!affected.is_empty());
    for s in affected {
        assert!(s["mailbox"].is_string());
        for it in s["items"].as_array().unwrap() {
            assert!(it["path"].as_str().unwrap().ends_with(".eml"), "{it}");
        }
    }
    // the human report names the mailbox and says whether a good copy exists
    let out = env.run(&["verify", "--repo", rs, "--read-data"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("mailbox alice@example.com") || text.contains("mailbox bob@example.com"), "{text}");
    assert!(text.contains("intact"), "{text}");

    // keyless check sees it too, without any passphrase
    let out = env.cmd(&["verify", "--repo", rs, "--no-key", "--json"]).env_remove("EXARCH_PASSWORD").output().unwrap();
    assert_eq!(code(&out), 4);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["report"]["problems"][0]["id"], pack_name.as_str());
}

#[test]
fn flipped_manifest_byte_reports_only_that_snapshot() {
    let env = Env::new();
    let (_, b) = repo_with_history(&env);
    let r = env.repo();
    let rs = r.to_str().unwrap();
    let snaps = env.json(&["snapshots", "--repo", rs]);
    let bob = snaps.as_array().unwrap().iter().find(|s| s["mailbox"] == "bob@example.com").unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let path = r.join("snapshots").join(&bob);
    let mut bytes = fs::read(&path).unwrap();
    let n = bytes.len();
    bytes[n - 50] ^= 1;
    fs::write(&path, &bytes).unwrap();
    let out = env.run(&["verify", "--repo", rs, "--json"]);
    assert_eq!(code(&out), 4);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let affected = v["report"]["affected"].as_array().unwrap();
    assert_eq!(affected.len(), 1, "{affected:?}");
    assert_eq!(affected[0]["id"], bob.as_str());
    assert_eq!(affected[0]["manifest_damaged"], true);
    assert_eq!(affected[0]["mailbox"], "bob@example.com");
    // alice's snapshots still extract
    let out_dir = env.path("alice-out");
    env.extract_latest("alice@example.com", &out_dir);
    assert!(util::tree(&out_dir).len() >= 100);
    let _ = b;
}

#[test]
fn damaged_index_file_is_reported_and_others_still_work() {
    let env = Env::new();
    let (a, _) = repo_with_history(&env);
    let r = env.repo();
    let rs = r.to_str().unwrap();
    let idx = repo_files(&r, "index");
    assert!(idx.len() >= 2);
    // damage the index of the last backup (alice's second day)
    let newest = idx.iter().max_by_key(|p| fs::metadata(p).unwrap().modified().unwrap()).unwrap();
    let mut bytes = fs::read(newest).unwrap();
    bytes[20] ^= 1;
    fs::write(newest, &bytes).unwrap();
    let out = env.run(&["verify", "--repo", rs, "--json"]);
    assert_eq!(code(&out), 4, "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["report"]["problems"].as_array().unwrap().iter().any(|p| p["kind"] == "index"));
    // bob's snapshot does not depend on that index file and extracts completely
    let out_dir = env.path("bob-out");
    env.extract_latest("bob@example.com", &out_dir);
    let _ = a;
}

#[test]
fn damaged_old_version_points_to_the_intact_newer_one() {
    let env = Env::new();
    env.init();
    let r = env.repo();
    let rs = r.to_str().unwrap();
    let a = env.path("a");
    corpus::write_tree(&a, &corpus::mailbox(31, 1, 30, &[]));
    env.pack(&a, "carol@example.com", &["--time", "2026-03-01T00:00:00Z"]);
    let first_pack = repo_files(&r, "data");
    assert_eq!(first_pack.len(), 1);
    // one item is rewritten completely before the next backup
    let victim = util::tree(&a).keys().next().unwrap().clone();
    fs::write(a.join(&victim), corpus::mailbox(32, 9, 1, &[])[0].data.clone()).unwrap();
    env.pack(&a, "carol@example.com", &["--time", "2026-03-02T00:00:00Z"]);
    // the first backup's pack loses its tail: every chunk in it is gone
    let bytes = fs::read(&first_pack[0]).unwrap();
    fs::write(&first_pack[0], &bytes[..bytes.len() / 2]).unwrap();
    let out = env.run(&["verify", "--repo", rs, "--json"]);
    assert_eq!(code(&out), 4, "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let snaps = env.json(&["snapshots", "--repo", rs]);
    let second = snaps[1]["id"].as_str().unwrap();
    let mut with_copy = Vec::new();
    for s in v["report"]["affected"].as_array().unwrap() {
        for it in s["items"].as_array().unwrap() {
            if !it["intact_in"].is_null() {
                assert_eq!(it["intact_in"], second);
                with_copy.push(it["path"].as_str().unwrap().to_string());
            }
        }
    }
    assert_eq!(with_copy, vec![victim], "only the rewritten item has an intact (newer) version");
}

/// Issue 12, check 2: a snapshot written by a foreign writer whose summary claims other counts than
/// its manifest holds (here 99 items over 5) is damage: verify exits 4 naming it, extract refuses.
#[test]
fn summary_that_disagrees_with_its_manifest_is_damage() {
    use exarch_archive::{crypto::Entropy, envelope, snapshot, Context, Id, LocalStorage, Repository};
    let env = Env::new();
    env.init();
    let src = env.path("src");
    corpus::write_tree(&src, &corpus::mailbox(31, 1, 5, &[]));
    env.pack(&src, "carol@example.com", &[]);
    let r = env.repo();
    let rs = r.to_str().unwrap();
    let ctx =
        Context { entropy: Entropy::os(), cache_root: env.path("forger-cache"), host: "forger".into(), lease_secs: 60 };
    let repo = Repository::open(std::sync::Arc::new(LocalStorage::new(&r)), util::PASSWORD.as_bytes(), ctx).unwrap();
    let path = repo_files(&r, "snapshots").pop().unwrap();
    let raw = fs::read(&path).unwrap();
    let id = Id::from_hex(path.file_name().unwrap().to_str().unwrap()).unwrap();
    let mut summary = snapshot::read_summary(repo.storage().as_ref(), repo.keys(), &id).unwrap();
    assert_eq!(summary.items, 5);
    summary.items = 99;
    let body = rkyv::to_bytes::<rkyv::rancor::Error>(&summary).unwrap();
    let sealed = envelope::seal_section(repo.keys(), &Entropy::os(), b"EXRSNAP1\x01", 3, &body);
    let slen = u32::from_le_bytes(raw[8..12].try_into().unwrap()) as usize;
    let mut forged = b"EXRSNAP1".to_vec();
    forged.extend_from_slice(&(sealed.len() as u32).to_le_bytes());
    forged.extend_from_slice(&sealed);
    forged.extend_from_slice(&raw[12 + slen..]);
    let forged_id = Id::of_content(&forged).to_hex();
    fs::remove_file(&path).unwrap();
    fs::write(path.with_file_name(&forged_id), &forged).unwrap();
    let out = env.run(&["verify", "--repo", rs]);
    assert_eq!(code(&out), 4, "{}", stderr(&out));
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr(&out));
    assert!(said.contains(&forged_id[..8]) && said.contains("items = 99"), "{said}");
    // it lists (the summary opens), but nothing extracts from it
    let listed = env.json(&["snapshots", "--repo", rs]);
    assert_eq!(listed[0]["items"], 99);
    let out = env.run(&["extract", "--repo", rs, &forged_id, "--to", env.path("out").to_str().unwrap()]);
    assert_eq!(code(&out), 4, "{}", stderr(&out));
}

/// Issue 12, point 2: a snapshot whose summary is damaged is damage (exit 4, named), never "not
/// found" — also when asked for `latest`, which cannot know the damaged snapshot's mailbox.
#[test]
fn damaged_summary_is_damage_not_absence() {
    let env = Env::new();
    env.init();
    let src = env.path("src");
    corpus::write_tree(&src, &corpus::mailbox(32, 1, 3, &[]));
    env.pack(&src, "dave@example.com", &[]);
    let r = env.repo();
    let rs = r.to_str().unwrap();
    let path = repo_files(&r, "snapshots").pop().unwrap();
    let mut raw = fs::read(&path).unwrap();
    raw[40] ^= 1; // inside the sealed summary
    fs::write(&path, &raw).unwrap();
    let id = path.file_name().unwrap().to_str().unwrap().to_string();
    let out_dir = env.path("out");
    for args in [
        vec!["extract", "--repo", rs, "latest", "--to", out_dir.to_str().unwrap()],
        vec!["extract", "--repo", rs, &id, "--to", out_dir.to_str().unwrap()],
        vec!["ls", "--repo", rs, "latest"],
        vec!["verify", "--repo", rs],
    ] {
        let out = env.run(&args);
        let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr(&out));
        assert_eq!(code(&out), 4, "{args:?}: {said}");
        assert!(said.contains(&id[..8]), "{args:?} names the snapshot: {said}");
        assert!(!said.contains("not found"), "{args:?}: {said}");
    }
}
