//! Slow calendars finish in one run (issue 14, scaled down): against a simulated server that
//! spends time on every calendar item and fails any ExportItems request running past its time
//! limit, a backup learns the batch size that fits, finishes, stores the size for the next run,
//! and records as skipped only an item that cannot fit even alone.

mod util;

use util::sim::{assert_archive_matches_dump, pack_ews, pack_ews_expecting, start_sim, stats};
use util::Env;

const MB1: &str = "user1@example.com";

fn calendar(r: &serde_json::Value) -> serde_json::Value {
    let m = r["mailboxes"].as_array().unwrap().iter().find(|m| m["mailbox"] == MB1).unwrap();
    m["batch_sizes"]["calendar"].clone()
}

fn slow_org(style: &str) -> Vec<String> {
    [
        "--mailboxes",
        "1",
        "--items",
        "30",
        "--calendar-items",
        "300",
        "--calendar-export-ms",
        "10",
        "--request-limit-ms",
        "250",
        "--timeout-style",
        style,
        "--seed",
        "41",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

#[test]
fn a_big_calendar_finishes_in_one_run_and_the_next_starts_from_what_it_learned() {
    let env = Env::new();
    env.init();
    let state = env.path("exchange");
    let org = slow_org("fault");
    let org: Vec<&str> = org.iter().map(String::as_str).collect();
    let sim = start_sim(&env, &state, &org);
    let r = pack_ews(&env, &sim, &[]);
    assert_eq!(r["skipped"], 0, "time-outs are neither dirty items nor skips: {r}");
    assert_eq!(r["items"], 330);
    let cal = calendar(&r);
    let size = cal["batch_size"].as_u64().unwrap();
    // 25 calendar items fit in 250 ms; the learned size leaves headroom, and is not tiny.
    assert!((4..25).contains(&size), "{cal}");
    assert!(cal["timeouts"].as_u64().unwrap() >= 1, "{cal}");
    let s = stats(&sim);
    let (exports, timed_out) =
        (s["requests"]["ExportItems"].as_u64().unwrap(), s["requests_timed_out"].as_u64().unwrap());
    assert!(timed_out >= 1 && timed_out * 4 <= exports, "{timed_out} of {exports} requests timed out");
    assert_archive_matches_dump(&env, &state);
    drop(sim);

    // The next run starts from the stored size: its calendar requests do not time out.
    env.ok(&["simulate", "--state", state.to_str().unwrap(), "--churn", "10"]);
    let sim = start_sim(&env, &state, &org);
    let r = pack_ews(&env, &sim, &[]);
    assert_eq!(r["skipped"], 0, "{r}");
    assert_eq!(stats(&sim)["requests_timed_out"], 0, "the stored size fits: {r}");
    assert_archive_matches_dump(&env, &state);
}

#[test]
fn time_outs_reported_per_item_are_split_and_retried_not_skipped() {
    let env = Env::new();
    env.init();
    let state = env.path("exchange");
    let org = slow_org("messages");
    let org: Vec<&str> = org.iter().map(String::as_str).collect();
    let sim = start_sim(&env, &state, &org);
    let r = pack_ews(&env, &sim, &[]);
    assert_eq!(r["skipped"], 0, "nothing left skipped: {r}");
    assert!(stats(&sim)["requests_timed_out"].as_u64().unwrap() >= 1);
    assert_archive_matches_dump(&env, &state);
}

#[test]
fn only_an_item_too_slow_even_alone_is_skipped_with_the_reason() {
    let env = Env::new();
    env.init();
    let state = env.path("exchange");
    // One calendar item takes longer than the whole limit.
    let sim = start_sim(
        &env,
        &state,
        &[
            "--mailboxes",
            "1",
            "--items",
            "20",
            "--calendar-items",
            "2",
            "--calendar-export-ms",
            "400",
            "--request-limit-ms",
            "250",
            "--seed",
            "42",
        ],
    );
    let r = pack_ews_expecting(&env, &sim, &[], 5);
    let skipped = r["skipped"].as_u64().unwrap();
    // The mailbox's own calendar items (the generated layout has some) and the two added ones.
    assert!(skipped >= 2, "{r}");
    let repo = env.repo();
    let out = env.ok(&["ls", "--repo", repo.to_str().unwrap(), "latest", "--mailbox", MB1]);
    let lines: Vec<&str> = out.lines().filter(|l| l.starts_with("SKIPPED")).collect();
    assert_eq!(lines.len() as u64, skipped, "{out}");
    assert!(lines.iter().all(|l| l.contains("ErrorTimeoutExpired")), "{out}");
    assert_eq!(r["items"].as_u64().unwrap() + skipped, 22, "every other item is archived: {r}");
}
