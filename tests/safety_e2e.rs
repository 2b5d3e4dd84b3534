//! Never lose data (issue 10, check 1), through the real binary: with a damaged or missing index
//! file, a corrupt local index cache, a damaged newest snapshot, or a backup stalled past its lock
//! lease, prune either refuses (exit 4, naming the repair) or deletes only what is unreferenced.
//! Every snapshot intact before extracts byte-identical afterwards, and after the named repair the
//! same prune frees every pack that really is unreferenced.

mod util;

use rand::{Rng, SeedableRng};
use std::fs;
use std::path::{Path, PathBuf};
use util::{assert_same_tree, code, repo_files, stderr, tree, Env};

/// A mailbox-like tree: `n` files of random content from `seed`, some shared with other seeds.
fn write_src(dir: &Path, seed: u64, n: usize) {
    let _ = fs::remove_dir_all(dir);
    fs::create_dir_all(dir.join("Inbox")).unwrap();
    fs::create_dir_all(dir.join("Sent Items")).unwrap();
    let mut shared = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    for i in 0..3 {
        let mut b = vec![0u8; 50_000];
        shared.fill(&mut b[..]);
        fs::write(dir.join("Sent Items").join(format!("shared-{i}.eml")), b).unwrap();
    }
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    for i in 0..n {
        let mut b = vec![0u8; rng.gen_range(2_000..120_000)];
        rng.fill(&mut b[..]);
        fs::write(dir.join("Inbox").join(format!("s{seed}-{i}.eml")), b).unwrap();
    }
}

struct Repo {
    env: Env,
    rs: String,
}

impl Repo {
    /// Three snapshots of mailbox m (the first holds data no other has) and one of mailbox n.
    fn new() -> Repo {
        let env = Env::new();
        env.init();
        let rs = env.repo().to_str().unwrap().to_string();
        let r = Repo { env, rs };
        for (seed, mailbox, day) in [(1, "m", 1), (2, "m", 2), (3, "n", 2), (4, "m", 3)] {
            let src = r.env.path(&format!("src{seed}"));
            write_src(&src, seed, 12);
            r.env.pack(&src, mailbox, &["--time", &format!("2026-03-0{day}T12:00:00Z")]);
        }
        r
    }

    fn args<'a>(&'a self, a: &[&'a str]) -> Vec<&'a str> {
        let mut v = a.to_vec();
        v.extend_from_slice(&["--repo", &self.rs]);
        v
    }

    fn ok(&self, a: &[&str]) -> String {
        self.env.ok(&self.args(a))
    }

    fn json(&self, a: &[&str]) -> serde_json::Value {
        self.env.json(&self.args(a))
    }

    fn run(&self, a: &[&str]) -> std::process::Output {
        self.env.run(&self.args(a))
    }

    /// Snapshot ids, oldest first.
    fn ids(&self) -> Vec<String> {
        self.json(&["snapshots"]).as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap().to_string()).collect()
    }

    /// Extracts each snapshot into `<dir>/<id>`.
    fn extract_all(&self, ids: &[String], dir: &str) -> PathBuf {
        let base = self.env.path(dir);
        for id in ids {
            self.ok(&["extract", id, "--to", base.join(id).to_str().unwrap()]);
        }
        base
    }

    /// Every repository file except locks, with its bytes.
    fn files(&self) -> std::collections::BTreeMap<String, Vec<u8>> {
        tree(&self.env.repo()).into_iter().filter(|(k, _)| !k.starts_with("locks/")).collect()
    }

    /// Asserts a refusal: exit 4, the remedy named, and not one repository file changed.
    fn assert_refuses(&self, a: &[&str], remedy: &str) {
        let before = self.files();
        let out = self.run(a);
        let err = stderr(&out);
        assert_eq!(code(&out), 4, "{a:?} should refuse with exit 4: {err}");
        assert!(err.contains(remedy), "{a:?}: the refusal should name `{remedy}`: {err}");
        assert!(self.files() == before, "{a:?} changed the repository although it refused");
    }

    /// After the repair: verify passes, every snapshot in `ids` extracts as before, and a second
    /// prune finds nothing more to free (the first freed everything unreferenced).
    fn assert_whole(&self, ids: &[String], before: &Path, tag: &str) {
        self.ok(&["verify", "--read-data"]);
        let after = self.extract_all(ids, tag);
        for id in ids {
            assert_same_tree(&before.join(id), &after.join(id));
        }
        let again = self.json(&["prune", "--delete-now", "--repack-threshold", "100"]);
        assert_eq!(again["packs_marked"], 0, "the first prune left unreferenced packs: {again}");
        assert_eq!(again["packs_deleted"], 0, "{again}");
    }
}

fn index_files(r: &Repo) -> Vec<PathBuf> {
    repo_files(&r.env.repo(), "index")
}

fn flip(path: &Path, at_from_end: usize) {
    let mut b = fs::read(path).unwrap();
    let i = b.len() - at_from_end;
    b[i] ^= 0x20;
    fs::write(path, b).unwrap();
}

/// The first snapshot is forgotten so that its own data is garbage; returns the others.
fn forget_first(r: &Repo) -> Vec<String> {
    let ids = r.ids();
    r.ok(&["forget", &ids[0][..12]]);
    ids[1..].to_vec()
}

#[test]
fn damaged_index_file_makes_prune_refuse_until_repair_index() {
    let r = Repo::new();
    let live = forget_first(&r);
    let before = r.extract_all(&live, "before");
    for f in index_files(&r) {
        flip(&f, 40);
    }
    r.assert_refuses(&["prune", "--delete-now"], "exarch repair index");
    r.assert_refuses(&["prune"], "exarch repair index");
    let rep = r.json(&["repair", "index"]);
    assert!(!rep["index_files_damaged"].as_array().unwrap().is_empty(), "{rep}");
    let p = r.json(&["prune", "--delete-now"]);
    assert!(p["packs_deleted"].as_u64().unwrap() + p["packs_repacked"].as_u64().unwrap() > 0, "{p}");
    r.assert_whole(&live, &before, "after");
}

#[test]
fn missing_index_file_makes_prune_refuse_until_repair_index() {
    let r = Repo::new();
    let live = forget_first(&r);
    let before = r.extract_all(&live, "before");
    // the index file of the newest backup goes missing: its packs are now in no index
    let newest = index_files(&r).into_iter().max_by_key(|f| fs::metadata(f).unwrap().modified().unwrap()).unwrap();
    fs::remove_file(&newest).unwrap();
    r.assert_refuses(&["prune", "--delete-now"], "exarch repair index");
    let rep = r.json(&["repair", "index"]);
    assert!(rep["packs_added"].as_u64().unwrap() >= 1, "{rep}");
    let p = r.json(&["prune", "--delete-now"]);
    assert!(p["bytes_deleted"].as_u64().unwrap() > 0, "{p}");
    r.assert_whole(&live, &before, "after");
}

#[test]
fn corrupt_index_cache_is_rebuilt_before_prune_trusts_it() {
    let r = Repo::new();
    let live = forget_first(&r);
    let before = r.extract_all(&live, "before");
    let tables: Vec<PathBuf> = tree(&r.env.path("cache"))
        .keys()
        .filter(|k| k.ends_with("index.tbl"))
        .map(|k| r.env.path("cache").join(k))
        .collect();
    assert_eq!(tables.len(), 1);
    // flip bytes inside the entries (pack ids and offsets), past the 32-byte header and fan-out
    let mut damaged = fs::read(&tables[0]).unwrap();
    let entries = 32 + 65_536 * 4;
    for k in 0..20 {
        let i = entries + k * 80 + 40 + (k % 30);
        if i < damaged.len() - 40 {
            damaged[i] ^= 0xff;
        }
    }
    fs::write(&tables[0], &damaged).unwrap();
    // verify does not take a damaged cache for damage in the repository
    r.ok(&["verify", "--read-data"]);
    fs::write(&tables[0], &damaged).unwrap();
    let p = r.json(&["prune", "--delete-now"]);
    assert!(p["bytes_deleted"].as_u64().unwrap() > 0, "{p}");
    r.assert_whole(&live, &before, "after");
}

#[test]
fn damaged_newest_snapshot_stops_retention_until_forgotten() {
    let r = Repo::new();
    // m1, m2, m3 of mailbox m (days 1, 2, 3) and n (day 2): found by mailbox and time, since m2
    // and n share a time and their order in the listing follows their ids
    let snaps = r.json(&["snapshots"]);
    let find = |mb: &str, day: u32| -> String {
        snaps
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["mailbox"] == mb && s["time"].as_str().unwrap().starts_with(&format!("2026-03-0{day}")))
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let (m1, m2, n, m3) = (&find("m", 1), &find("m", 2), &find("n", 2), &find("m", 3));
    let before = r.extract_all(&[m1.clone(), m2.clone(), n.clone()], "before");
    // the newest snapshot of m: a byte of its manifest (at the end of the file) flipped
    let snap = r.env.repo().join("snapshots").join(m3);
    flip(&snap, 30);
    let out = r.run(&["prune", "--keep-last", "1", "--delete-now"]);
    assert_eq!(code(&out), 4, "{}", stderr(&out));
    assert!(stderr(&out).contains(&m3[..8]) && stderr(&out).contains("exarch forget"), "{}", stderr(&out));
    assert_eq!(r.ids().len(), 4, "nothing may be removed while a manifest is damaged");
    r.assert_refuses(&["prune", "--keep-last", "1"], "exarch forget");

    // a backup of m continues from the newest intact snapshot and says so
    let src = r.env.path("src4");
    let out = r.run(&["pack", "--from-dir", src.to_str().unwrap(), "--mailbox", "m", "--time", "2026-03-04T12:00:00Z"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stderr(&out).contains(&m3[..8]), "the damaged parent should be named: {}", stderr(&out));

    // forgetting it (or repair snapshots) lets the same prune run; it names what it removed
    let dry = r.json(&["repair", "snapshots", "--dry-run"]);
    assert_eq!(dry["removed"].as_array().unwrap().len(), 1, "{dry}");
    r.ok(&["forget", &m3[..10]]);
    let p = r.json(&["prune", "--keep-last", "1", "--delete-now"]);
    let removed: Vec<&str> =
        p["snapshots_removed"].as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap()).collect();
    assert_eq!(removed, vec![m1.as_str(), m2.as_str()], "{p}");
    assert!(p["bytes_deleted"].as_u64().unwrap() > 0, "{p}");
    r.assert_whole(std::slice::from_ref(n), &before, "after");
}

#[test]
fn a_backup_stalled_past_its_lease_commits_nothing_and_prune_loses_nothing() {
    let r = Repo::new();
    let ids = r.ids();
    let before = r.extract_all(&ids, "before");
    let big = r.env.path("big");
    write_src(&big, 99, 400);
    let lease = "3";
    let child = r
        .env
        .cmd(&["pack", "--repo", &r.rs, "--from-dir", big.to_str().unwrap(), "--mailbox", "m", "--lock-lease", lease])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // stop it as soon as it holds its lock
    let locks = r.env.repo().join("locks");
    let t0 = std::time::Instant::now();
    while fs::read_dir(&locks).unwrap().next().is_none() {
        assert!(t0.elapsed().as_secs() < 30, "the backup never took its lock");
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    let pid = child.id().to_string();
    assert!(std::process::Command::new("kill").args(["-STOP", &pid]).status().unwrap().success());
    // more than two leases pass: others may now take the lock as stale
    std::thread::sleep(std::time::Duration::from_secs(7));
    let out = r.run(&["prune", "--delete-now", "--lock-lease", lease]);
    assert!([0, 4].contains(&code(&out)), "prune: {}", stderr(&out));
    assert!(std::process::Command::new("kill").args(["-CONT", &pid]).status().unwrap().success());
    let done = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&done.stderr);
    assert_ne!(done.status.code(), Some(0), "a backup that lost its lock must not succeed: {err}");
    assert!(err.contains("lock lost") && err.contains("Nothing was committed"), "{err}");
    assert_eq!(r.ids(), ids, "no snapshot from the stalled backup");
    // the packs it left are proven garbage only after repair index has indexed them
    r.ok(&["repair", "index"]);
    r.ok(&["prune", "--delete-now"]);
    r.assert_whole(&ids, &before, "after");
}

#[test]
fn absurd_arguments_are_refused_without_a_panic() {
    let r = Repo::new();
    let before = r.files();
    let o = r.env.path("o");
    let os = o.to_str().unwrap();
    let st = r.env.path("st");
    let sts = st.to_str().unwrap();
    let src = r.env.path("src1");
    let srcs = src.to_str().unwrap();
    let cases: &[&[&str]] = &[
        &["prune", "--keep-within", "99999999999d"],
        &["prune", "--keep-within", "20000y"],
        &["prune", "--grace", "200000000000000d"],
        &["prune", "--keep-within", "0h"], // would empty every mailbox: refused without --allow-empty
        &["prune", "--keep-last", "99999999999"],
        &["prune", "--repack-threshold", "nan"],
        &["pack", "--from-dir", srcs, "--mailbox", "m", "--threads", "99999999999"],
        &["pack", "--from-dir", srcs, "--mailbox", "m", "--time", "99999-99-99T99:99:99Z"],
        &["extract", "latest", "--mailbox", "m", "--to", os, "--threads", "0"],
        &["verify", "--read-data-subset", "99999999999/99999999999"],
        &["simulate", "--state", sts, "--items", "99999999999"],
        &["simulate", "--state", sts, "--mailboxes", "100000", "--items", "1000"],
        &[
            "pack",
            "--ews",
            "http://127.0.0.1:9/EWS",
            "--user",
            "u",
            "--mailbox",
            "a@b",
            "--max-duration",
            "9999999999999d",
        ],
        &["ls", "0000"],
        &["--lock-lease", "99999999999", "snapshots"],
        &["--no-lock", "prune", "--keep-last", "1"],
    ];
    for a in cases {
        let out = r.run(a);
        assert_eq!(code(&out), 2, "{a:?} should be a usage error: {}", stderr(&out));
    }
    assert!(r.files() == before, "a refused argument changed the repository");
    // read-only commands run without a lock when asked (read-only media)
    r.ok(&["--no-lock", "verify", "--read-data"]);
    assert!(r.files() == before);
    // `--keep-last 0` is no rule, as in restic: nothing is removed
    let p = r.json(&["prune", "--keep-last", "0", "--delete-now"]);
    assert_eq!(p["snapshots_removed"].as_array().unwrap().len(), 0, "{p}");
    assert_eq!(r.ids().len(), 4);
}

#[test]
fn damaged_keys_and_config_are_damage_and_files_are_private() {
    let r = Repo::new();
    let repo = r.env.repo();
    // every repository and cache file is private to its owner (Unix)
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        for kind in ["keys", "data", "index", "snapshots"] {
            for f in repo_files(&repo, kind) {
                assert_eq!(mode(&f), 0o600, "{}", f.display());
            }
        }
        assert_eq!(mode(&repo.join("config")), 0o600);
        assert_eq!(mode(&repo.join("keys")), 0o700);
        for (k, _) in tree(&r.env.path("cache")) {
            assert_eq!(mode(&r.env.path("cache").join(&k)), 0o600, "cache file {k}");
        }
    }
    // a key slot with a changed byte is damage (exit 4), not a wrong passphrase (3)
    let slot = repo_files(&repo, "keys").pop().unwrap();
    let good = fs::read(&slot).unwrap();
    flip(&slot, 20);
    let out = r.run(&["snapshots"]);
    assert_eq!(code(&out), 4, "{}", stderr(&out));
    assert!(stderr(&out).contains("damaged"), "{}", stderr(&out));
    // a slot edited to need 4 GiB of Argon2 memory is refused at once
    let mut slow = good.clone();
    slow[9..13].copy_from_slice(&(4u32 * 1024 * 1024).to_le_bytes());
    fs::write(&slot, &slow).unwrap();
    let t = std::time::Instant::now();
    let out = r.run(&["snapshots"]);
    assert_eq!(code(&out), 4, "{}", stderr(&out));
    assert!(t.elapsed().as_secs() < 10);
    fs::write(&slot, &good).unwrap();
    r.ok(&["snapshots"]);
    // a lost config is damage too, and the message must not suggest init over the repository
    fs::rename(repo.join("config"), r.env.path("config.bak")).unwrap();
    let out = r.run(&["snapshots"]);
    assert_eq!(code(&out), 4, "{}", stderr(&out));
    assert!(stderr(&out).contains("restore `config`") && !stderr(&out).contains("exarch init"), "{}", stderr(&out));
    assert_eq!(code(&r.run(&["init"])), 1, "init refuses a directory that holds a repository");
}

/// A small tmpfs, unmounted when dropped; None where this machine does not let us mount one.
struct SmallDisk(PathBuf);

impl SmallDisk {
    fn mount(at: PathBuf, size: &str) -> Option<SmallDisk> {
        fs::create_dir_all(&at).ok()?;
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs", at.to_str()?])
            .stderr(std::process::Stdio::null())
            .status()
            .ok()?
            .success();
        ok.then_some(SmallDisk(at))
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_is_named_and_loses_nothing() {
    let env = Env::new();
    let Some(disk) = SmallDisk::mount(env.path("disk"), "6m") else {
        eprintln!("skipped: this machine does not let the test mount a tmpfs");
        return;
    };
    let repo = disk.0.join("repo");
    let rs = repo.to_str().unwrap();
    env.ok(&["init", "--repo", rs]);
    let small = env.path("small");
    fs::create_dir_all(small.join("Inbox")).unwrap();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let mut b = vec![0u8; 2_000_000];
    rng.fill(&mut b[..]);
    fs::write(small.join("Inbox").join("one.eml"), &b).unwrap();
    env.ok(&["pack", "--repo", rs, "--from-dir", small.to_str().unwrap(), "--mailbox", "m"]);
    let before = env.path("before");
    env.ok(&["extract", "--repo", rs, "latest", "--to", before.to_str().unwrap()]);
    // a backup larger than the disk: the error says why, and what was there stays whole
    let big = env.path("big");
    fs::create_dir_all(big.join("Inbox")).unwrap();
    let mut b = vec![0u8; 8_000_000];
    rng.fill(&mut b[..]);
    fs::write(big.join("Inbox").join("big.eml"), &b).unwrap();
    let out = env.run(&["pack", "--repo", rs, "--from-dir", big.to_str().unwrap(), "--mailbox", "m"]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(stderr(&out).contains("No space left on device"), "{}", stderr(&out));
    assert!(!stderr(&out).contains("writer stopped"), "{}", stderr(&out));
    env.ok(&["verify", "--repo", rs, "--read-data"]);
    let after = env.path("after");
    env.ok(&["extract", "--repo", rs, "latest", "--to", after.to_str().unwrap()]);
    assert_same_tree(&before, &after);
    // and prune still frees space on it
    let id = env.json(&["snapshots", "--repo", rs])[0]["id"].as_str().unwrap().to_string();
    env.ok(&["forget", "--repo", rs, &id]);
    let p = env.json(&["prune", "--repo", rs, "--delete-now", "--allow-empty"]);
    assert!(p["bytes_deleted"].as_u64().unwrap() > 1_000_000, "{p}");
}
