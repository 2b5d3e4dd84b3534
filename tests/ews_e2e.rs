//! Backups from the simulated Exchange through the real binary and a real HTTP server on 127.0.0.1
//! (issue 4's acceptance checks, at a size that suits a debug build).

mod util;

use util::sim::{assert_archive_matches_dump, pack_ews, pack_ews_expecting, start_sim, stats};
use util::{code, stderr, Env};

#[test]
fn all_mailboxes_back_up_and_match_the_server() {
    let env = Env::new();
    env.init();
    let state = env.path("exchange");
    let sim = start_sim(&env, &state, &["--mailboxes", "4", "--items", "80", "--seed", "7", "--user", "svc"]);
    let r = pack_ews(&env, &sim, &[]);
    assert_eq!(r["mailboxes"].as_array().unwrap().len(), 4);
    assert_eq!(r["items"], 320);
    assert_eq!(stats(&sim)["items_exported"], 320);
    assert_archive_matches_dump(&env, &state);
    // wrong password: a clear error, nothing written
    let repo = env.repo();
    let out = env
        .cmd(&["pack", "--repo", repo.to_str().unwrap(), "--ews", &sim.url, "--user", "svc", "--all-mailboxes"])
        .env("EXARCH_EWS_PASSWORD", "wrong")
        .output()
        .unwrap();
    assert_eq!(code(&out), 1);
    assert!(stderr(&out).contains("401"), "{}", stderr(&out));
}

/// What group testing says finding `d` dirty items among `n` should cost: d·log2(n/d) + 2d, and
/// one request per 100 items for a mailbox without any.
fn group_testing_bound(r: &serde_json::Value) -> f64 {
    r["mailboxes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let (items, d) = (m["stats"]["items"].as_f64().unwrap(), m["stats"]["skipped"].as_f64().unwrap());
            let n = items + d;
            if d == 0.0 {
                (n / 100.0).ceil()
            } else {
                d * (n / d).log2() + 2.0 * d
            }
        })
        .sum()
}

#[test]
fn dirty_items_cost_what_group_testing_says() {
    let env = Env::new();
    env.init();
    let state = env.path("exchange");
    let sim = start_sim(&env, &state, &["--mailboxes", "4", "--items", "300", "--seed", "11", "--dirty-rate", "0.01"]);
    // Items that could not be backed up make the run partial (exit 5), and are listed.
    let r = pack_ews_expecting(&env, &sim, &[], 5);
    assert_eq!(r["status"], "partial", "{r}");
    let dirty = r["skipped"].as_u64().unwrap();
    assert!(dirty >= 4, "expected some dirty items, got {dirty}");
    assert_eq!(r["items"].as_u64().unwrap() + dirty, 1200, "every clean item archived");
    let st = stats(&sim);
    let exports = st["requests"]["ExportItems"].as_u64().unwrap();
    let plain = r["export_requests_plain_halving"].as_u64().unwrap();
    let bound = group_testing_bound(&r);
    assert!(
        exports as f64 <= bound,
        "{exports} ExportItems requests for {dirty} dirty items; group testing: {bound:.1}"
    );
    assert!(exports < plain, "{exports} ExportItems requests, plain halving would need {plain}");
    // every dirty item is reported in its snapshot, with the server's error
    let repo = env.repo();
    let mut reported = 0;
    for s in env.json(&["snapshots", "--repo", repo.to_str().unwrap()]).as_array().unwrap() {
        let ls = env.json(&["ls", "--repo", repo.to_str().unwrap(), s["id"].as_str().unwrap()]);
        for k in ls["skipped"].as_array().unwrap() {
            assert!(k["error"].as_str().unwrap().contains("Error"), "{k}");
            reported += 1;
        }
    }
    assert_eq!(reported, dirty);
}

/// Under a tight throttling policy the client paces itself once pushed back, so refusals stay few
/// and the dirty-item search still costs about what group testing says.
#[test]
fn under_a_strict_policy_refusals_stay_few() {
    let env = Env::new();
    env.init();
    let state = env.path("exchange");
    let sim = start_sim(
        &env,
        &state,
        &["--mailboxes", "4", "--items", "150", "--seed", "3", "--dirty-rate", "0.02", "--profile", "strict"],
    );
    let r = pack_ews_expecting(&env, &sim, &[], 5);
    let st = stats(&sim);
    let exports = st["requests"]["ExportItems"].as_u64().unwrap();
    let refused = st["server_busy_sent"].as_u64().unwrap();
    let bound = group_testing_bound(&r);
    assert_eq!(st["penalties"], 0, "never early after a back-off");
    assert!(refused <= 6, "{refused} refusals: the client should pace itself after the first few");
    // (a small sample: a little above the expected cost is chance, plain halving is a third more)
    assert!(
        (exports - refused) as f64 <= bound * 1.1,
        "{exports} ExportItems ({refused} refused); group testing: {bound:.1}"
    );
}

#[test]
fn churn_exports_only_what_changed() {
    let env = Env::new();
    env.init();
    let state = env.path("exchange");
    {
        let sim = start_sim(&env, &state, &["--mailboxes", "3", "--items", "120", "--seed", "5"]);
        pack_ews(&env, &sim, &[]);
    }
    let churn = env.ok(&["simulate", "--state", state.to_str().unwrap(), "--churn", "20"]);
    let nums: Vec<u64> = churn.split(|c: char| !c.is_ascii_digit()).filter_map(|w| w.parse().ok()).collect();
    let (new, changed) = (nums[1], nums[2]);
    let sim = start_sim(&env, &state, &[]);
    let r = pack_ews(&env, &sim, &[]);
    let exported = stats(&sim)["items_exported"].as_u64().unwrap();
    assert!(
        exported > 0 && exported <= new + changed,
        "exported {exported}, churn made {new} new and {changed} changed"
    );
    assert!(r["mailboxes"][0]["stats"]["items_carried"].as_u64().unwrap() > 0);
    assert_archive_matches_dump(&env, &state);
}

#[test]
fn strict_profile_finishes_without_penalties() {
    let env = Env::new();
    env.init();
    let state = env.path("exchange");
    let sim = start_sim(
        &env,
        &state,
        &[
            "--mailboxes",
            "3",
            "--items",
            "60",
            "--seed",
            "3",
            "--profile",
            "strict",
            "--budget-burst",
            "3",
            "--budget-recharge",
            "6",
        ],
    );
    let repo = env.repo();
    let out = env
        .cmd(&["pack", "--repo", repo.to_str().unwrap(), "--ews", &sim.url, "--user", "svc", "--all-mailboxes"])
        .env("EXARCH_EWS_PASSWORD", "x")
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    for needle in ["requests", "items per ExportItems request", "back-off(s) honoured"] {
        assert!(text.contains(needle), "summary lacks {needle}: {text}");
    }
    let st = stats(&sim);
    assert_eq!(st["penalties"], 0, "{st}");
    assert_eq!(st["sync_concurrency_exceeded"], 0, "the client kept to the sync-call cap: {st}");
    // The budget (3 units, 6 a second) is far below what the backup needs, so the server did push
    // back; the client waited every time as told.
    assert!(st["server_busy_sent"].as_u64().unwrap() > 0, "the strict profile should push back: {st}");
    assert_archive_matches_dump(&env, &state);
}

#[test]
fn demo_runs_end_to_end() {
    let env = Env::new();
    let dir = env.path("demo");
    let out = env.cmd(&["demo", "--dir", dir.to_str().unwrap()]).env_remove("EXARCH_PASSWORD").output().unwrap();
    assert_eq!(code(&out), 0, "{}{}", String::from_utf8_lossy(&out.stdout), stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("no damage found"), "{text}");
    assert!(text.contains("5 snapshot(s)"), "{text}");
}

#[test]
fn killed_pack_resumes_without_exporting_again() {
    let env = Env::new();
    env.init();
    let state = env.path("exchange");
    // A budget that makes the run take a few seconds, so that the kill lands mid-mailbox.
    let sim = start_sim(
        &env,
        &state,
        &[
            "--mailboxes",
            "3",
            "--items",
            "400",
            "--seed",
            "9",
            "--profile",
            "strict",
            "--budget-burst",
            "40",
            "--budget-recharge",
            "120",
        ],
    );
    let repo = env.repo();
    let args = ["pack", "--repo", repo.to_str().unwrap(), "--ews", &sim.url, "--user", "svc", "--all-mailboxes", "-q"];
    let mut child = env.cmd(&args).env("EXARCH_EWS_PASSWORD", "x").spawn().unwrap();
    // Kill it soon after its first checkpoint.
    // (listing only: the running process renames files in the cache while we look)
    let has_checkpoint = || {
        std::fs::read_dir(env.path("cache")).into_iter().flatten().flatten().any(|repo_cache| {
            std::fs::read_dir(repo_cache.path().join("resume"))
                .into_iter()
                .flatten()
                .flatten()
                .any(|f| f.file_name().to_string_lossy().ends_with(".json"))
        })
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !has_checkpoint() && std::time::Instant::now() < deadline && child.try_wait().unwrap().is_none() {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    let _ = child.kill();
    let _ = child.wait();
    // What the killed run had made durable: checkpointed items, and finished mailboxes' snapshots.
    let mut saved = 0u64;
    for f in util::tree(&env.path("cache")).iter().filter(|(k, _)| k.contains("/resume/") && k.ends_with(".json")) {
        let v: serde_json::Value = serde_json::from_slice(f.1).unwrap();
        saved += v["items"].as_array().unwrap().len() as u64;
    }
    let done: u64 = env
        .json(&["snapshots", "--repo", repo.to_str().unwrap()])
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["items"].as_u64().unwrap())
        .sum();
    assert!(saved + done > 0, "the kill came before any checkpoint; make the run slower");
    assert!(done < 1200, "the first run finished before the kill");

    let second = pack_ews(&env, &sim, &[]);
    assert_eq!(second["items"], 1200);
    // This run's own ExportItems results (the server's total also holds whatever the dead client
    // still had in flight, which the server may finish at any time).
    let exported_second = second["items_exported"].as_u64().unwrap();
    assert!(
        exported_second <= 1200 - saved - done,
        "second run exported {exported_second}; {saved} were checkpointed and {done} in finished snapshots"
    );
    assert_archive_matches_dump(&env, &state);
}

#[test]
fn max_duration_stops_cleanly_and_the_next_run_continues() {
    let env = Env::new();
    env.init();
    let state = env.path("exchange");
    let sim = start_sim(
        &env,
        &state,
        &[
            "--mailboxes",
            "2",
            "--items",
            "200",
            "--seed",
            "13",
            "--profile",
            "strict",
            "--budget-burst",
            "5",
            "--budget-recharge",
            "25",
        ],
    );
    // A run cut off by its window is partial: exit code 5, "status": "partial".
    let first = pack_ews_expecting(&env, &sim, &["--max-duration", "2s"], 5);
    assert_eq!(first["status"], "partial", "{first}");
    let incomplete = first["mailboxes"].as_array().unwrap().iter().filter(|m| m["complete"] == false).count();
    assert!(incomplete > 0, "the window should have ended mid-run: {first}");
    let second = pack_ews(&env, &sim, &[]);
    assert_eq!(second["items"], 400, "{second}");
    // Nothing exported twice: the first run stopped between batches and saved what it had.
    assert_eq!(stats(&sim)["items_exported"], 400);
    assert_archive_matches_dump(&env, &state);
}

#[test]
fn transient_faults_are_retried_and_nothing_is_lost() {
    let env = Env::new();
    env.init();
    let state = env.path("exchange");
    let sim = start_sim(&env, &state, &["--mailboxes", "2", "--items", "120", "--seed", "17", "--fault-rate", "0.15"]);
    let r = pack_ews(&env, &sim, &[]);
    assert_eq!(r["items"], 240);
    assert!(r["retries"].as_u64().unwrap() > 0);
    let st = stats(&sim);
    assert!(st["faults_injected"].as_u64().unwrap() > 0, "{st}");
    assert_archive_matches_dump(&env, &state);
}

#[test]
fn public_folders_are_a_source_of_their_own() {
    let env = Env::new();
    env.init();
    let state = env.path("exchange");
    {
        let sim =
            start_sim(&env, &state, &["--mailboxes", "1", "--items", "40", "--seed", "19", "--public-items", "60"]);
        let r = pack_ews(&env, &sim, &["--public-folders"]);
        assert_eq!(r["items"], 100, "{r}");
        let st = stats(&sim);
        assert!(st["requests"]["FindItem"].as_u64().unwrap() > 0, "{st}");
        // the simulator refuses sync calls on public folders, so none failed
        assert_eq!(st["errors"], 0, "{st}");
        let snaps = env.json(&["snapshots", "--repo", env.repo().to_str().unwrap()]);
        assert!(snaps.as_array().unwrap().iter().any(|s| s["mailbox"] == "public-folders" && s["items"] == 60));
        assert_archive_matches_dump(&env, &state);
    }
    let churn = env.ok(&["simulate", "--state", state.to_str().unwrap(), "--churn", "30"]);
    assert!(churn.contains("churned"), "{churn}");
    let sim = start_sim(&env, &state, &[]);
    let r = pack_ews(&env, &sim, &["--public-folders"]);
    let public = r["mailboxes"].as_array().unwrap().iter().find(|m| m["mailbox"] == "public-folders").unwrap().clone();
    let carried = public["stats"]["items_carried"].as_u64().unwrap();
    let exported = public["stats"]["items_read"].as_u64().unwrap();
    assert!(carried > 0 && exported > 0 && exported < 30, "unchanged public items are carried: {public}");
    assert_archive_matches_dump(&env, &state);
}

#[test]
fn ntlm_windows_authentication() {
    let env = Env::new();
    env.init();
    let state = env.path("exchange");
    let sim = start_sim(
        &env,
        &state,
        &["--mailboxes", "2", "--items", "60", "--seed", "29", "--user", "CORP\\svc", "--auth", "ntlm"],
    );
    let repo = env.repo();
    let run = |password: &str, extra: &[&str]| {
        let mut args =
            vec!["pack", "--repo", repo.to_str().unwrap(), "--ews", &sim.url, "--user", "CORP\\svc", "--all-mailboxes"];
        args.extend_from_slice(extra);
        env.cmd(&args).env("EXARCH_EWS_PASSWORD", password).output().unwrap()
    };
    // the right password: the default (auto) finds NTLM, and so does --auth ntlm
    let out = run("sim-secret", &[]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let out = run("sim-secret", &["--auth", "ntlm", "--json"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_archive_matches_dump(&env, &state);
    // a wrong password, or Basic against a server that only takes NTLM: refused, clearly
    for (pass, extra) in [("wrong", &[][..]), ("sim-secret", &["--auth", "basic"][..])] {
        let out = run(pass, extra);
        assert_eq!(code(&out), 1);
        assert!(stderr(&out).contains("401"), "{}", stderr(&out));
    }
    assert_eq!(stats(&sim)["errors"], 0);
}

/// A pack damaged after the backup that wrote it is met by the next backup (which reads back what
/// the previous run stored before building on it): exit 4, the pack named, the new snapshot saved.
#[test]
fn a_flipped_pack_byte_met_during_an_ews_backup_exits_4_naming_the_pack() {
    let env = Env::new();
    env.init();
    let state = env.path("exchange");
    let sim = start_sim(&env, &state, &["--mailboxes", "2", "--items", "40", "--seed", "5"]);
    pack_ews(&env, &sim, &[]);
    let packs = util::repo_files(&env.repo(), "data");
    assert!(!packs.is_empty());
    let victim = &packs[packs.len() / 2];
    let mut bytes = std::fs::read(victim).unwrap();
    let at = bytes.len() / 3;
    bytes[at] ^= 0x20;
    std::fs::write(victim, bytes).unwrap();
    let name = victim.file_name().unwrap().to_str().unwrap().to_string();

    let repo = env.repo();
    let out = env
        .cmd(&["pack", "--repo", repo.to_str().unwrap(), "--ews", &sim.url, "--user", "svc", "--all-mailboxes"])
        .env("EXARCH_EWS_PASSWORD", "sim-secret")
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(code(&out), 4, "{err}");
    assert!(err.contains(&name), "the damaged pack is named: {err}");
    assert!(err.contains("exarch verify --read-data"), "{err}");
    // the run's own work was saved: both mailboxes have a second snapshot
    let snaps = env.json(&["snapshots", "--repo", repo.to_str().unwrap()]);
    assert_eq!(snaps.as_array().unwrap().len(), 4);
    // and the damage keeps being reported, not forgotten after one warning
    let again = env
        .cmd(&["pack", "--repo", repo.to_str().unwrap(), "--ews", &sim.url, "--user", "svc", "--all-mailboxes"])
        .env("EXARCH_EWS_PASSWORD", "sim-secret")
        .output()
        .unwrap();
    assert_eq!(code(&again), 4, "{}", stderr(&again));
}

/// The simulator's state directory (and so every file write through the shared atomic-write
/// helper) may be given as a relative path, as the README's commands do.
#[test]
fn relative_paths_are_fine() {
    let env = Env::new();
    let dir = env.path("work");
    std::fs::create_dir_all(&dir).unwrap();
    let out = env
        .cmd(&["simulate", "--state", "st", "--mailboxes", "1", "--items", "5", "--churn", "10"])
        .current_dir(&dir)
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(dir.join("st/state.json").is_file());
    let out = env.cmd(&["init", "--repo", "repo"]).current_dir(&dir).env("EXARCH_PASSWORD", "pw").output().unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
}
