//! A client that cannot be held hostage (issue 10, checks 2 and 5), through the real binary
//! against the simulator's hostile modes: each misbehaving mailbox ends quickly with a clear
//! message and no panic, no request follows a redirect to another host, and the other mailboxes
//! of the same run are backed up whole. A 500 MB item is archived with bounded memory.

mod util;

use std::io::Read;
use std::time::{Duration, Instant};
use util::sim::{start_sim, Sim};
use util::{assert_same_tree, code, stderr, Env};

fn pack(env: &Env, sim_url: &str, extra: &[&str]) -> (std::process::Output, Duration) {
    let repo = env.repo();
    let mut args = vec!["pack", "--repo", repo.to_str().unwrap(), "--ews", sim_url, "--user", "svc", "--json"];
    args.extend_from_slice(extra);
    let t = Instant::now();
    let out = env.cmd(&args).env("EXARCH_EWS_PASSWORD", "sim-secret").output().unwrap();
    (out, t.elapsed())
}

fn port(sim: &Sim) -> u16 {
    sim.url.trim_start_matches("http://").split('/').next().unwrap().rsplit(':').next().unwrap().parse().unwrap()
}

#[test]
fn hostile_mailboxes_fail_fast_and_the_others_are_saved() {
    let env = Env::new();
    env.init();
    let state = env.path("exchange");
    let rules = [
        "extra-messages@user1@example.com",
        "huge-retry-after@user2@example.com",
        "redirect@user3@example.com",
        "doctype@user4@example.com",
        "bad-utf8@user5@example.com",
        "folder-loop@public-folders",
    ];
    let mut args = vec!["--mailboxes", "6", "--items", "30", "--seed", "5", "--public-items", "20"];
    for r in &rules {
        args.extend_from_slice(&["--hostile", r]);
    }
    let sim = start_sim(&env, &state, &args);
    // Whatever the redirect points at must never be contacted.
    let trap = std::net::TcpListener::bind(("127.0.0.2", port(&sim))).unwrap();
    trap.set_nonblocking(true).unwrap();

    let (out, took) = pack(&env, &sim.url, &["--all-mailboxes", "--public-folders", "--max-duration", "10m"]);
    let err = stderr(&out);
    assert!(took < Duration::from_secs(60), "the run took {took:?}: {err}");
    assert_eq!(code(&out), 1, "some mailboxes failed, so exit 1 (not a panic): {err}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let by: std::collections::HashMap<String, &serde_json::Value> =
        v["mailboxes"].as_array().unwrap().iter().map(|m| (m["mailbox"].as_str().unwrap().to_string(), m)).collect();
    let error_of = |mb: &str| by[mb]["error"].as_str().unwrap_or_default().to_string();
    assert!(error_of("user1@example.com").contains("more items than"), "{}", error_of("user1@example.com"));
    assert!(error_of("user2@example.com").contains("asked to wait"), "{}", error_of("user2@example.com"));
    assert_eq!(by["user2@example.com"]["status"], "partial");
    assert!(error_of("user3@example.com").contains("another origin"), "{}", error_of("user3@example.com"));
    assert!(error_of("user3@example.com").contains("127.0.0.2"), "the target is named");
    assert!(error_of("user4@example.com").contains("HTML"), "{}", error_of("user4@example.com"));
    assert!(error_of("user5@example.com").contains("malformed XML"), "{}", error_of("user5@example.com"));
    // the folder loop is walked once: the public folders are backed up
    assert!(by["public-folders"]["snapshot"].is_string(), "{}", by["public-folders"]);
    assert!(by["user6@example.com"]["snapshot"].is_string(), "{}", by["user6@example.com"]);
    assert!(matches!(trap.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock), "a redirect was followed");

    // the healthy mailbox is whole
    let dump = env.path("dump");
    drop(sim);
    env.ok(&["simulate", "--state", state.to_str().unwrap(), "--dump", dump.to_str().unwrap()]);
    let ex = env.path("ex");
    env.extract_latest("user6@example.com", &ex);
    assert_same_tree(&dump.join("user6@example.com"), &ex);
}

#[test]
fn an_unreachable_server_fails_within_a_minute_with_a_clear_message() {
    let env = Env::new();
    env.init();
    // nothing listens on port 1
    let (out, took) = pack(&env, "http://127.0.0.1:1/EWS/Exchange.asmx", &["--mailbox", "a@example.com"]);
    assert!(took < Duration::from_secs(60), "{took:?}");
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["mailboxes"][0]["error"].as_str().unwrap().contains("cannot connect"), "{v}");
}

#[test]
fn a_500_mb_item_is_archived_with_bounded_memory() {
    let env = Env::new();
    env.init();
    let state = env.path("exchange");
    let sim = start_sim(
        &env,
        &state,
        &["--mailboxes", "1", "--items", "4", "--seed", "3", "--hostile", "huge-item@user1@example.com"],
    );
    let repo = env.repo();
    let mut child = env
        .cmd(&[
            "pack",
            "--repo",
            repo.to_str().unwrap(),
            "--ews",
            &sim.url,
            "--user",
            "svc",
            "--all-mailboxes",
            "--json",
        ])
        .env("EXARCH_EWS_PASSWORD", "sim-secret")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // peak resident memory, read from /proc while it runs (VmHWM only grows)
    let status = format!("/proc/{}/status", child.id());
    let mut peak_kb = 0u64;
    while child.try_wait().unwrap().is_none() {
        if let Ok(s) = std::fs::read_to_string(&status) {
            if let Some(kb) = s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)) {
                peak_kb = peak_kb.max(kb.parse().unwrap());
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert!(child.wait().unwrap().success(), "{err}");
    assert!(peak_kb > 0);
    assert!(peak_kb < 256 * 1024, "peak memory {} MiB for a 500 MB item", peak_kb / 1024);
    let items = env.json(&["ls", "--repo", repo.to_str().unwrap(), "latest"]);
    let sizes: Vec<u64> = items["items"].as_array().unwrap().iter().map(|i| i["size"].as_u64().unwrap()).collect();
    assert!(sizes.contains(&500_000_000), "{sizes:?}");
    env.ok(&["verify", "--repo", repo.to_str().unwrap(), "--read-data"]);
    // the spool holds nothing afterwards
    let spool = env.path("cache").join("spill");
    assert!(std::fs::read_dir(&spool).map(|d| d.count()).unwrap_or(0) == 0);
}

#[test]
fn credentials_in_the_url_are_used_but_never_stored_or_printed() {
    let env = Env::new();
    env.init();
    let state = env.path("exchange");
    let sim = start_sim(&env, &state, &["--mailboxes", "1", "--items", "5", "--user", "svc"]);
    let url = sim.url.replace("http://", "http://svc:sim%2Dsecret@");
    let repo = env.repo();
    let out = env
        .cmd(&["pack", "--repo", repo.to_str().unwrap(), "--ews", &url, "--all-mailboxes", "--json"])
        .env_remove("EXARCH_EWS_PASSWORD")
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(!String::from_utf8_lossy(&out.stdout).contains("secret"));
    assert!(!stderr(&out).contains("sim-secret") && stderr(&out).contains("warning"), "{}", stderr(&out));
    let snaps = env.ok(&["snapshots", "--repo", repo.to_str().unwrap(), "--json"]);
    assert!(!snaps.contains("secret") && !snaps.contains("svc:"), "{snaps}");
    assert!(snaps.contains(&sim.url), "the clean URL is the source: {snaps}");
}
