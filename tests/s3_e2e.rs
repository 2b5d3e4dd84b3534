//! Repositories on object storage, against a real three-node Garage cluster on 127.0.0.1
//! (`tests/garage/cluster.sh`): the storage contract, every command, a copy from disk to bucket, a
//! node killed mid-backup, backups killed at random points, and wrong credentials.

mod util;

use exarch_archive::storage::{suite, ObjectStorage, S3Config};
use exarch_archive::{FileKind, LocalStorage, Storage};
use std::process::{Command, Output};
use util::garage::Garage;
use util::sim::start_sim;
use util::{assert_same_tree, code, corpus, stderr, Env};

/// `exarch ARGS` on `repo` with the cluster's credentials.
fn cmd(env: &Env, g: &Garage, repo: &str, args: &[&str]) -> Command {
    let mut c = env.cmd(args);
    g.apply(&mut c);
    c.env("EXARCH_REPOSITORY", repo);
    c
}

fn ok(env: &Env, g: &Garage, repo: &str, args: &[&str]) -> String {
    let out = cmd(env, g, repo, args).output().unwrap();
    assert_eq!(code(&out), 0, "exarch {args:?}: {}\n{}", stderr(&out), String::from_utf8_lossy(&out.stdout));
    String::from_utf8(out.stdout).unwrap()
}

fn storage(g: &Garage, prefix: &str) -> ObjectStorage {
    let get = |k: &str| g.env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone().into());
    ObjectStorage::s3(&S3Config {
        endpoint: g.endpoints[0].clone(),
        bucket: g.bucket.clone(),
        prefix: prefix.into(),
        region: "garage".into(),
        access_key_id: get("AWS_ACCESS_KEY_ID"),
        secret_access_key: get("AWS_SECRET_ACCESS_KEY"),
        session_token: None,
    })
    .unwrap()
}

fn corpus_dir(env: &Env, name: &str, mailbox: u32, items: usize) -> std::path::PathBuf {
    let shared = corpus::shared_attachments(7, 4, 300 * 1024);
    let dir = env.path(name);
    corpus::write_tree(&dir, &corpus::mailbox(7, mailbox, items, &shared));
    dir
}

#[test]
fn every_command_works_on_garage_and_the_storage_contract_holds() {
    let Some(g) = Garage::start() else { return };
    suite::run(&storage(&g, "contract"));

    let env = Env::new();
    let repo = g.repo("site-a/exarch");
    ok(&env, &g, &repo, &["init"]);
    let src = corpus_dir(&env, "alice", 1, 300);
    ok(&env, &g, &repo, &["pack", "--from-dir", src.to_str().unwrap(), "--mailbox", "alice@example.com"]);
    // EWS too, from the simulator.
    let state = env.path("sim");
    let sim = start_sim(&env, &state, &["--mailboxes", "2", "--items", "40"]);
    let out = cmd(&env, &g, &repo, &["pack", "--ews", &sim.url, "--user", "svc", "--all-mailboxes", "--json"])
        .env("EXARCH_EWS_PASSWORD", "sim-secret")
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let snaps: serde_json::Value = serde_json::from_str(&ok(&env, &g, &repo, &["snapshots", "--json"])).unwrap();
    assert_eq!(snaps.as_array().unwrap().len(), 3);
    assert!(ok(&env, &g, &repo, &["ls", "latest", "--mailbox", "alice@example.com"]).lines().count() >= 300);
    let to = env.path("alice-out");
    ok(&env, &g, &repo, &["extract", "latest", "--mailbox", "alice@example.com", "--to", to.to_str().unwrap()]);
    assert_same_tree(&src, &to);
    let v: serde_json::Value =
        serde_json::from_str(&ok(&env, &g, &repo, &["verify", "--read-data", "--json"])).unwrap();
    assert_eq!(v["ok"], true, "{v}");
    // Replay through EWS from the bucket: the wiped mailbox comes back.
    let dump_before = util::sim::dump(&env, &state, "before");
    env.ok(&["simulate", "--state", state.to_str().unwrap(), "--wipe", "user1@example.com"]);
    let out = cmd(
        &env,
        &g,
        &repo,
        &["replay", "latest", "--mailbox", "user1@example.com", "--ews", &sim.url, "--user", "svc"],
    )
    .env("EXARCH_EWS_PASSWORD", "sim-secret")
    .output()
    .unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    drop(sim);
    let dump_after = util::sim::dump(&env, &state, "after");
    assert_same_tree(&dump_before.join("user1@example.com"), &dump_after.join("user1@example.com"));
    // Two more backups of alice (one changed), then prune down to one: the other data goes.
    std::fs::write(src.join("new-item.eml"), b"Subject: new\r\n\r\nnew").unwrap();
    ok(&env, &g, &repo, &["pack", "--from-dir", src.to_str().unwrap(), "--mailbox", "alice@example.com"]);
    ok(&env, &g, &repo, &["prune", "--keep-last", "1", "--delete-now"]);
    let v: serde_json::Value =
        serde_json::from_str(&ok(&env, &g, &repo, &["verify", "--read-data", "--json"])).unwrap();
    assert_eq!(v["ok"], true, "{v}");
    let to2 = env.path("alice-out2");
    ok(&env, &g, &repo, &["extract", "latest", "--mailbox", "alice@example.com", "--to", to2.to_str().unwrap()]);
    assert_same_tree(&src, &to2);
    // init into a prefix that holds a repository is refused, and nothing is written.
    let before = storage(&g, "site-a/exarch").list(FileKind::Key).unwrap();
    let out = cmd(&env, &g, &repo, &["init"]).output().unwrap();
    assert_ne!(code(&out), 0);
    assert!(stderr(&out).contains("already holds"), "{}", stderr(&out));
    assert_eq!(storage(&g, "site-a/exarch").list(FileKind::Key).unwrap(), before);
}

#[test]
fn a_repository_copied_from_disk_to_the_bucket_opens_unchanged() {
    let Some(g) = Garage::start() else { return };
    let env = Env::new();
    env.init();
    let src = corpus_dir(&env, "bob", 2, 200);
    env.pack(&src, "bob@example.com", &[]);
    // Copy every file byte for byte, as any S3 tool would.
    let local = LocalStorage::new(env.repo());
    let s3 = storage(&g, "copied");
    for kind in FileKind::ALL {
        for name in local.list(kind).unwrap() {
            s3.put(kind, &name, &local.get(kind, &name).unwrap()).unwrap();
        }
    }
    let repo = g.repo("copied");
    let v: serde_json::Value =
        serde_json::from_str(&ok(&env, &g, &repo, &["verify", "--read-data", "--json"])).unwrap();
    assert_eq!(v["ok"], true, "{v}");
    let to = env.path("out");
    ok(&env, &g, &repo, &["extract", "latest", "--mailbox", "bob@example.com", "--to", to.to_str().unwrap()]);
    assert_same_tree(&src, &to);
    // And back: a backup made on the bucket reads on disk after a copy the other way.
    ok(&env, &g, &repo, &["pack", "--from-dir", src.to_str().unwrap(), "--mailbox", "carol@example.com"]);
    let back = LocalStorage::new(env.path("back"));
    back.create_layout().unwrap();
    for kind in FileKind::ALL {
        for name in s3.list(kind).unwrap() {
            back.put(kind, &name, &s3.get(kind, &name).unwrap()).unwrap();
        }
    }
    let out = env.run(&["verify", "--repo", env.path("back").to_str().unwrap(), "--read-data"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
}

#[test]
fn a_backup_survives_a_node_killed_while_it_runs() {
    let Some(g) = Garage::start() else { return };
    let env = Env::new();
    let repo = g.repo("one-node-down");
    ok(&env, &g, &repo, &["init"]);
    let src = corpus_dir(&env, "dave", 3, 1500);
    let child = cmd(&env, &g, &repo, &["pack", "--from-dir", src.to_str().unwrap(), "--mailbox", "dave@example.com"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(700));
    // Node 3 (not the one the client talks to) dies; replication 3 keeps a write quorum of 2.
    g.kill(3);
    let out: Output = child.wait_with_output().unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let v: serde_json::Value =
        serde_json::from_str(&ok(&env, &g, &repo, &["verify", "--read-data", "--json"])).unwrap();
    assert_eq!(v["ok"], true, "{v}");
    let to = env.path("out");
    ok(&env, &g, &repo, &["extract", "latest", "--mailbox", "dave@example.com", "--to", to.to_str().unwrap()]);
    assert_same_tree(&src, &to);
}

#[test]
fn backups_killed_at_random_points_leave_a_repository_that_verifies() {
    let Some(g) = Garage::start() else { return };
    let env = Env::new();
    let repo = g.repo("kill-loop");
    ok(&env, &g, &repo, &["init"]);
    let src = corpus_dir(&env, "erin", 4, 800);
    let kills: u64 = std::env::var("EXARCH_S3_KILLS").ok().and_then(|v| v.parse().ok()).unwrap_or(20);
    let mut rng = rand::random::<u64>();
    for round in 0..kills {
        let mut child = cmd(
            &env,
            &g,
            &repo,
            &["pack", "--from-dir", src.to_str().unwrap(), "--mailbox", "erin@example.com", "--force"],
        )
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        std::thread::sleep(std::time::Duration::from_millis(50 + rng % 1500));
        let _ = child.kill();
        let _ = child.wait();
        // A killed backup may leave its lock: it goes stale, and unlock clears it; nothing else.
        let out = cmd(&env, &g, &repo, &["verify", "--json", "--no-lock"]).output().unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        assert_eq!(v["ok"], true, "round {round}: {}\n{v}", stderr(&out));
    }
    ok(&env, &g, &repo, &["unlock", "--remove-all"]);
    ok(&env, &g, &repo, &["pack", "--from-dir", src.to_str().unwrap(), "--mailbox", "erin@example.com"]);
    let v: serde_json::Value =
        serde_json::from_str(&ok(&env, &g, &repo, &["verify", "--read-data", "--json"])).unwrap();
    assert_eq!(v["ok"], true, "{v}");
    let to = env.path("out");
    ok(&env, &g, &repo, &["extract", "latest", "--mailbox", "erin@example.com", "--to", to.to_str().unwrap()]);
    assert_same_tree(&src, &to);
}

#[test]
fn wrong_credentials_and_a_missing_bucket_are_named() {
    let Some(g) = Garage::start() else { return };
    let env = Env::new();
    let repo = g.repo("creds");
    let mut c = cmd(&env, &g, &repo, &["init"]);
    c.env("AWS_SECRET_ACCESS_KEY", "0000000000000000000000000000000000000000000000000000000000000000");
    let out = c.output().unwrap();
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(stderr(&out).contains(&repo) && stderr(&out).contains("AccessDenied"), "{}", stderr(&out));
    assert!(stderr(&out).contains("AWS_SECRET_ACCESS_KEY"), "says what to check: {}", stderr(&out));
    assert!(!stderr(&out).contains("0000000000000000"), "the secret is never shown");
    assert!(storage(&g, "creds").list(FileKind::Key).unwrap().is_empty(), "no partial files");
    assert!(storage(&g, "creds").list(FileKind::Config).unwrap().is_empty());
    let missing = format!("s3:{}/no-such-bucket/x", g.endpoints[0]);
    let out = cmd(&env, &g, &missing, &["init"]).output().unwrap();
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(stderr(&out).contains("no-such-bucket"), "{}", stderr(&out));
    let out = cmd(&env, &g, &missing, &["snapshots"]).output().unwrap();
    assert_ne!(code(&out), 0);
    assert!(stderr(&out).contains("no-such-bucket"), "{}", stderr(&out));
    assert!(stderr(&out).contains("NoSuchBucket") && stderr(&out).contains("create the bucket"), "{}", stderr(&out));
    let mut c = cmd(&env, &g, &repo, &["snapshots"]);
    c.env_remove("AWS_ACCESS_KEY_ID");
    let out = c.output().unwrap();
    assert_eq!(code(&out), 1);
    assert!(stderr(&out).contains("AWS_ACCESS_KEY_ID"), "missing credentials are named: {}", stderr(&out));
    let out = cmd(&env, &g, "s3:https://user:pw@127.0.0.1/b", &["snapshots"]).output().unwrap();
    assert_eq!(code(&out), 2, "{}", stderr(&out));
}

/// The requests a run logged (`--log-file`, JSON lines): its "object store requests" line.
fn logged_requests(log: &std::path::Path) -> serde_json::Value {
    let text = std::fs::read_to_string(log).unwrap();
    let last = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .rfind(|e| e["message"] == "object store requests");
    last.unwrap_or_else(|| panic!("no request counts logged: {text}"))
}

#[test]
fn listing_snapshots_costs_no_request_per_snapshot_once_cached() {
    let Some(g) = Garage::start() else { return };
    let env = Env::new();
    let repo = g.repo("many-snapshots");
    ok(&env, &g, &repo, &["init"]);
    let src = env.path("tiny");
    std::fs::create_dir_all(&src).unwrap();
    let n = 25;
    for i in 0..n {
        std::fs::write(src.join("item.eml"), format!("Subject: {i}\r\n\r\nbody {i}")).unwrap();
        ok(&env, &g, &repo, &["pack", "--from-dir", src.to_str().unwrap(), "--mailbox", "m@example.com"]);
    }
    let run = |log: &str| {
        let log = env.path(log);
        let out =
            ok(&env, &g, &repo, &["snapshots", "--json", "--log-file", log.to_str().unwrap(), "--log-format", "json"]);
        let list: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(list.as_array().unwrap().len(), n);
        logged_requests(&log)
    };
    // A fresh cache: every summary is read once (one GET each).
    let _ = std::fs::remove_dir_all(env.path("cache"));
    let first = run("first.log");
    assert!(first["get"].as_u64().unwrap() >= n as u64, "{first}");
    // Then only the listing and opening the repository: no request per snapshot.
    let second = run("second.log");
    let gets = second["get"].as_u64().unwrap();
    assert!(gets < 5, "{gets} GETs for {n} cached snapshots: {second}");
    // (opening: the config's existence, its GET, the key slots' LIST and GET; then the LIST)
    let total: u64 = ["get", "put", "list", "stat", "delete"].iter().map(|k| second[k].as_u64().unwrap()).sum();
    assert!(total <= 6, "{total} requests in all for {n} cached snapshots: {second}");
}

#[test]
fn backups_run_beside_prune_on_garage_and_nothing_they_need_goes() {
    let Some(g) = Garage::start() else { return };
    let env = Env::new();
    let repo = g.repo("pack-and-prune");
    ok(&env, &g, &repo, &["init"]);
    let a = env.path("a");
    std::fs::create_dir_all(&a).unwrap();
    for d in 0..5 {
        // Each day a different mailbox content: the older snapshots' data dies with them.
        std::fs::remove_dir_all(&a).unwrap();
        corpus::write_tree(&a, &corpus::mailbox(20 + d, 1, 40, &[]));
        ok(&env, &g, &repo, &["pack", "--from-dir", a.to_str().unwrap(), "--mailbox", "a", "--force"]);
    }
    let b = corpus_dir(&env, "b", 5, 400);
    // Two-phase prune and a backup of another mailbox at the same time.
    let prune = cmd(&env, &g, &repo, &["prune", "--keep-last", "1", "--json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pack = cmd(&env, &g, &repo, &["pack", "--from-dir", b.to_str().unwrap(), "--mailbox", "b"]).output().unwrap();
    let prune = prune.wait_with_output().unwrap();
    assert_eq!(code(&pack), 0, "pack beside prune: {}", stderr(&pack));
    assert_eq!(code(&prune), 0, "prune beside pack: {}", stderr(&prune));
    let first: serde_json::Value = serde_json::from_slice(&prune.stdout).unwrap();
    assert_eq!(first["packs_deleted"], 0, "the first prune only marks: {first}");
    // Then a prune that owns the repository deletes; every remaining snapshot still reads whole.
    let done: serde_json::Value =
        serde_json::from_str(&ok(&env, &g, &repo, &["prune", "--keep-last", "1", "--delete-now", "--json"])).unwrap();
    assert!(done["packs_deleted"].as_u64().unwrap() > 0, "{done}");
    let v: serde_json::Value =
        serde_json::from_str(&ok(&env, &g, &repo, &["verify", "--read-data", "--json"])).unwrap();
    assert_eq!(v["ok"], true, "{v}");
    for (mb, src) in [("a", &a), ("b", &b)] {
        let to = env.path(&format!("{mb}-out"));
        ok(&env, &g, &repo, &["extract", "latest", "--mailbox", mb, "--to", to.to_str().unwrap()]);
        assert_same_tree(src, &to);
    }
}

#[test]
fn prune_on_garage_refuses_damaged_metadata_and_deletes_nothing() {
    let Some(g) = Garage::start() else { return };
    let env = Env::new();
    let repo = g.repo("damaged");
    ok(&env, &g, &repo, &["init"]);
    let a = env.path("a");
    for d in 0..3 {
        let _ = std::fs::remove_dir_all(&a);
        corpus::write_tree(&a, &corpus::mailbox(40 + d, 1, 30, &[]));
        ok(&env, &g, &repo, &["pack", "--from-dir", a.to_str().unwrap(), "--mailbox", "a"]);
    }
    let s3 = storage(&g, "damaged");
    let files = || -> Vec<(FileKind, String, Vec<u8>)> {
        FileKind::ALL
            .iter()
            .filter(|k| **k != FileKind::Lock)
            .flat_map(|k| s3.list(*k).unwrap().into_iter().map(move |n| (*k, n)))
            .map(|(k, n)| {
                let b = s3.get(k, &n).unwrap();
                (k, n, b)
            })
            .collect()
    };
    // An index file with a flipped byte: prune must refuse (exit 4, naming the repair) and leave
    // every object as it was.
    let index = s3.list(FileKind::Index).unwrap()[0].clone();
    let mut bytes = s3.get(FileKind::Index, &index).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    s3.put(FileKind::Index, &index, &bytes).unwrap();
    let before = files();
    for args in [&["prune", "--keep-last", "1"][..], &["prune", "--keep-last", "1", "--delete-now"][..]] {
        let out = cmd(&env, &g, &repo, args).output().unwrap();
        assert_eq!(code(&out), 4, "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains("exarch repair index"), "{}", stderr(&out));
        assert!(files() == before, "{args:?} changed the bucket");
    }
    // After the repair, prune deletes only what is unreferenced: the kept snapshot reads whole.
    ok(&env, &g, &repo, &["repair", "index"]);
    ok(&env, &g, &repo, &["prune", "--keep-last", "1", "--delete-now"]);
    let v: serde_json::Value =
        serde_json::from_str(&ok(&env, &g, &repo, &["verify", "--read-data", "--json"])).unwrap();
    assert_eq!(v["ok"], true, "{v}");
    let to = env.path("out");
    ok(&env, &g, &repo, &["extract", "latest", "--mailbox", "a", "--to", to.to_str().unwrap()]);
    assert_same_tree(&a, &to);
}
