//! `exarch prune` through the real binary (issue 5, checks 2 and 3): restic's retention meaning,
//! space actually freed, kept snapshots intact, crash safety under repeated kills, and backups
//! running while prune runs.

mod util;

use rand::{Rng, SeedableRng};
use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use util::{code, dir_size, stderr, Env};

/// The mailbox as it looks on day `d`: some stable items, one new item a day, items older than
/// three days deleted, and one item edited every day.
fn tree_for_day(dir: &Path, d: u32) {
    let _ = fs::remove_dir_all(dir);
    fs::create_dir_all(dir.join("Inbox")).unwrap();
    fs::create_dir_all(dir.join("Archive")).unwrap();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1000);
    for i in 0..5 {
        let mut b = vec![0u8; 30_000];
        rng.fill(&mut b[..]);
        fs::write(dir.join("Archive").join(format!("stable-{i}.eml")), b).unwrap();
    }
    for day in d.saturating_sub(2)..=d {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(day as u64);
        let mut b = vec![0u8; 40_000 + day as usize * 100];
        rng.fill(&mut b[..]);
        fs::write(dir.join("Inbox").join(format!("day-{day}.eml")), b).unwrap();
    }
    fs::write(
        dir.join("Inbox").join("edited.eml"),
        format!("Subject: status\r\n\r\n{}", "today is day ".repeat(500) + &d.to_string()),
    )
    .unwrap();
}

/// Noon UTC on day `d` (0-based) of 2026, for d < 59.
fn day_time(d: u32) -> String {
    assert!(d < 59);
    if d < 31 {
        format!("2026-01-{:02}T12:00:00Z", d + 1)
    } else {
        format!("2026-02-{:02}T12:00:00Z", d - 30)
    }
}

#[test]
fn forty_daily_snapshots_keep_daily_7_weekly_4() {
    let env = Env::new();
    env.init();
    let r = env.repo();
    let rs = r.to_str().unwrap();
    let src = env.path("src");
    for d in 0..40 {
        tree_for_day(&src, d);
        env.pack(&src, "m@example.com", &["--time", &day_time(d)]);
    }
    let before = dir_size(&r);
    let dry = env.json(&["prune", "--repo", rs, "--keep-daily", "7", "--keep-weekly", "4", "--dry-run"]);
    assert_eq!(dry["snapshots_removed"].as_array().unwrap().len(), 31);
    assert!(dry["bytes_marked"].as_u64().unwrap() > 0);
    assert_eq!(dir_size(&r), before, "a dry run changes nothing");

    env.ok(&["prune", "--repo", rs, "--keep-daily", "7", "--keep-weekly", "4", "--delete-now"]);
    // Days 33..=39 (daily) and the newest of each of the last 4 ISO weeks: 39 (Mon 9 Feb),
    // 38 (Sun 8 Feb), 31 (Sun 1 Feb), 24 (Sun 25 Jan).
    let kept: BTreeSet<String> = env
        .json(&["snapshots", "--repo", rs])
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["time"].as_str().unwrap().to_string())
        .collect();
    let want: BTreeSet<String> =
        [24, 31, 33, 34, 35, 36, 37, 38, 39].iter().map(|d| day_time(*d).replace("Z", ".000Z")).collect();
    let kept_norm: BTreeSet<String> =
        kept.iter().map(|t| if t.contains('.') { t.clone() } else { t.replace("Z", ".000Z") }).collect();
    assert_eq!(kept_norm, want);
    let after = dir_size(&r);
    assert!(after < before * 2 / 3, "repository did not shrink enough: {before} -> {after}");
    env.ok(&["verify", "--repo", rs, "--read-data"]);
    let snaps = env.json(&["snapshots", "--repo", rs]);
    for s in snaps.as_array().unwrap() {
        let t = s["time"].as_str().unwrap();
        let d = (0..40).find(|d| t.starts_with(&day_time(*d)[..19])).unwrap();
        let out = env.path(&format!("out-{d}"));
        env.ok(&["extract", "--repo", rs, s["id"].as_str().unwrap(), "--to", out.to_str().unwrap()]);
        let expect = env.path(&format!("expect-{d}"));
        tree_for_day(&expect, d);
        util::assert_same_tree(&expect, &out);
    }
}

#[test]
fn killed_prune_leaves_a_repository_that_verifies_and_prunes_again() {
    let env = Env::new();
    env.init();
    let r = env.repo();
    let rs = r.to_str().unwrap();
    let src = env.path("src");
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(77);
    let mut killed = 0;
    // Kill times spread over a whole prune's run (opening the repository takes a good part of it).
    tree_for_day(&src, 100);
    env.pack(&src, "m", &["--time", "2025-12-01T12:00:00Z"]);
    let t = std::time::Instant::now();
    env.ok(&["prune", "--repo", rs, "--keep-last", "2", "--delete-now", "-q"]);
    let full_ms = (t.elapsed().as_millis() as u64).max(50);
    for round in 0..50u32 {
        tree_for_day(&src, round);
        env.pack(&src, "m", &["--time", &day_time(round)]);
        let mut child = env.cmd(&["prune", "--repo", rs, "--keep-last", "2", "--delete-now", "-q"]).spawn().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(rng.gen_range(0..full_ms)));
        // Count only the rounds where the kill really landed while prune was running.
        if child.try_wait().unwrap().is_none() {
            killed += 1;
        }
        let _ = child.kill();
        let status = child.wait().unwrap();
        // A prune that ran to its end must have succeeded: refusing would mean a killed
        // predecessor left a state it cannot prove safe.
        if status.code().is_some() {
            assert!(status.success(), "round {round}: prune failed after a killed predecessor");
        }
        let out = env.run(&["verify", "--repo", rs]);
        assert_eq!(
            code(&out),
            0,
            "round {round}: verify after a killed prune: {}{}",
            String::from_utf8_lossy(&out.stdout),
            stderr(&out)
        );
    }
    assert!(killed >= 10, "only {killed} of 50 kills landed mid-prune; the test proves little");
    eprintln!("{killed} of 50 prunes killed mid-run (a whole prune takes {full_ms} ms)");
    env.ok(&["prune", "--repo", rs, "--keep-last", "2", "--delete-now"]);
    env.ok(&["verify", "--repo", rs, "--read-data"]);
    let out = env.path("out");
    env.extract_latest("m", &out);
    util::assert_same_tree(&src, &out);
}

#[test]
fn backups_run_while_prune_runs_and_marked_packs_go_later() {
    let env = Env::new();
    env.init();
    let r = env.repo();
    let rs = r.to_str().unwrap().to_string();
    let (a, b) = (env.path("a"), env.path("b"));
    for d in 0..6 {
        tree_for_day(&a, d);
        env.pack(&a, "a", &["--time", &day_time(d)]);
    }
    util::corpus::write_tree(&b, &util::corpus::mailbox(9, 2, 300, &[]));
    // prune (two-phase, default grace) and a backup of another mailbox at the same time
    let prune = env
        .cmd(&["prune", "--repo", &rs, "--keep-last", "1", "--json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pack = env
        .cmd(&["pack", "--repo", &rs, "--from-dir", b.to_str().unwrap(), "--mailbox", "b", "--json"])
        .output()
        .unwrap();
    let prune = prune.wait_with_output().unwrap();
    assert_eq!(code(&pack), 0, "pack beside prune: {}", stderr(&pack));
    assert_eq!(code(&prune), 0, "prune beside pack: {}", stderr(&prune));
    env.ok(&["verify", "--repo", &rs, "--read-data"]);
    let out = env.path("b-out");
    env.extract_latest("b", &out);
    util::assert_same_tree(&b, &out);

    // packs were only marked: nothing deleted yet, and a backup now does not lean on them
    let first: serde_json::Value = serde_json::from_slice(&prune.stdout).unwrap();
    assert!(first["packs_marked"].as_u64().unwrap() > 0);
    assert_eq!(first["packs_deleted"], 0);
    tree_for_day(&a, 6);
    env.pack(&a, "a", &["--time", &day_time(6)]);
    // a later prune within the grace period waits; a grace shorter than the least allowed is
    // refused; taking the repository to itself (--delete-now), a prune deletes at once
    let waiting = env.json(&["prune", "--repo", &rs, "--keep-last", "1"]);
    assert_eq!(waiting["packs_deleted"], 0);
    assert!(!waiting["marks_waiting"].as_array().unwrap().is_empty());
    let short = env.run(&["prune", "--repo", &rs, "--keep-last", "1", "--grace", "30m"]);
    assert_eq!(util::code(&short), 2, "{}", util::stderr(&short));
    assert!(util::stderr(&short).contains("--delete-now"), "{}", util::stderr(&short));
    let done = env.json(&["prune", "--repo", &rs, "--keep-last", "1", "--delete-now"]);
    assert!(done["packs_deleted"].as_u64().unwrap() > 0, "{done}");
    // Packs the concurrent backup was still writing when the first prune looked were marked as
    // unindexed; that backup's snapshot needs them, so they must have been rescued, not deleted.
    assert!(done["bytes_deleted"].as_u64().unwrap() > 0);
    env.ok(&["verify", "--repo", &rs, "--read-data"]);
    let out = env.path("a-out");
    env.extract_latest("a", &out);
    util::assert_same_tree(&a, &out);
    let out = env.path("b-out-after");
    env.extract_latest("b", &out);
    util::assert_same_tree(&b, &out);
}

/// Temporary files in `data/` (packs being filled).
fn temporaries(repo: &Path) -> Vec<std::path::PathBuf> {
    fs::read_dir(repo.join("data"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_str().unwrap().starts_with('.') && p.is_file())
        .collect()
}

/// A backup killed while it fills a pack leaves that pack's temporary file; prune leaves it while
/// it may be a running writer's (written within the hour), and removes it once it is old, without
/// touching anything a snapshot needs.
#[test]
fn a_killed_backups_temporary_pack_is_removed_by_a_later_prune() {
    let env = Env::new();
    env.init();
    let r = env.repo();
    let rs = r.to_str().unwrap();
    let src = env.path("src");
    tree_for_day(&src, 1);
    env.pack(&src, "m", &["--time", &day_time(1)]);
    // Enough incompressible data for several packs, so the kill finds one being filled.
    let big = env.path("big");
    fs::create_dir_all(big.join("Inbox")).unwrap();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
    for i in 0..40 {
        let mut b = vec![0u8; 1_500_000];
        rng.fill(&mut b[..]);
        fs::write(big.join("Inbox").join(format!("{i}.eml")), b).unwrap();
    }
    let bigs = big.to_str().unwrap();
    let mut left = Vec::new();
    for _attempt in 0..20 {
        let mut child = env.cmd(&["pack", "--repo", rs, "--from-dir", bigs, "--mailbox", "big", "-q"]).spawn().unwrap();
        let t = std::time::Instant::now();
        while t.elapsed() < std::time::Duration::from_secs(30) && child.try_wait().unwrap().is_none() {
            if !temporaries(&r).is_empty() {
                let _ = child.kill(); // SIGKILL: no chance to clean up
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        let _ = child.kill();
        child.wait().unwrap();
        left = temporaries(&r);
        if !left.is_empty() {
            break;
        }
    }
    assert!(!left.is_empty(), "no kill landed while a pack was being filled");

    // Written just now: kept, and said so.
    let p = env.json(&["prune", "--repo", rs, "--keep-last", "1"]);
    assert_eq!(p["temporaries_removed"], 0, "{p}");
    assert_eq!(p["temporaries_kept"].as_u64().unwrap(), left.len() as u64, "{p}");
    assert!(left.iter().all(|f| f.exists()));
    let text = env.ok(&["prune", "--repo", rs, "--keep-last", "1"]);
    assert!(text.contains("left alone") && text.contains("temporary file(s)"), "{text}");

    // Two hours later (as far as the files' times say): removed, the repository whole.
    let bytes: u64 = left.iter().map(|f| fs::metadata(f).unwrap().len()).sum();
    for f in &left {
        let h = fs::File::options().write(true).open(f).unwrap();
        h.set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(7200)).unwrap();
    }
    let p = env.json(&["prune", "--repo", rs, "--keep-last", "1"]);
    assert_eq!(p["temporaries_removed"].as_u64().unwrap(), left.len() as u64, "{p}");
    assert_eq!(p["bytes_temporaries"].as_u64().unwrap(), bytes, "{p}");
    assert!(temporaries(&r).is_empty());
    env.ok(&["verify", "--repo", rs, "--read-data"]);
    let out = env.path("out");
    env.extract_latest("m", &out);
    util::assert_same_tree(&src, &out);
}
