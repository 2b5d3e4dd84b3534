//! A mailbox is more than its folders: the In-Place Archive and the Recoverable Items folders are
//! backed up as stores of their own (`--archive-mailbox`, `--recoverable-items`), incrementally,
//! and replay puts each back where it belongs (issue 11's check 3, through the real binary and the
//! simulated Exchange on 127.0.0.1).

mod util;

use std::path::Path;
use util::sim::{assert_archive_matches_dump, dump, pack_ews, start_sim, Sim};
use util::{code, stderr, tree, Env};

const MB1: &str = "user1@example.com";
const MB2: &str = "user2@example.com";

fn replay(env: &Env, sim: &Sim, args: &[&str]) -> serde_json::Value {
    let repo = env.repo();
    let mut all = vec!["replay", "--repo", repo.to_str().unwrap(), "--ews", &sim.url, "--user", "svc", "--json"];
    all.extend_from_slice(args);
    let out = env.cmd(&all).env("EXARCH_EWS_PASSWORD", "x").output().unwrap();
    assert_eq!(code(&out), 0, "replay {args:?}: {}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn stores(r: &serde_json::Value) -> Vec<String> {
    r["mailboxes"].as_array().unwrap().iter().map(|m| m["mailbox"].as_str().unwrap().to_string()).collect()
}

/// The files under `dir` whose path starts with `prefix`, by content (the file name is a hash of it).
fn names_under(dir: &Path, prefix: &str) -> Vec<String> {
    let mut v: Vec<String> = tree(dir)
        .into_keys()
        .filter(|k| k.starts_with(prefix))
        .map(|k| k.rsplit('/').next().unwrap().to_string())
        .collect();
    v.sort();
    v
}

#[test]
fn archive_and_recoverable_items_are_stores_of_their_own() {
    let env = Env::new();
    env.init();
    let state = env.path("exchange");
    let org =
        ["--mailboxes", "2", "--items", "60", "--archive-items", "40", "--recoverable-items", "200", "--seed", "21"];
    let sim = start_sim(&env, &state, &org);

    // user1 has an archive, user2 has none: four stores and two
    let r = pack_ews(&env, &sim, &["--archive-mailbox", "--recoverable-items"]);
    assert_eq!(
        stores(&r),
        [
            "user1@example.com",
            "user1@example.com#archive",
            "user1@example.com#archive-recoverable-items",
            "user1@example.com#recoverable-items",
            "user2@example.com",
            "user2@example.com#recoverable-items"
        ],
        "{r}"
    );
    for m in r["mailboxes"].as_array().unwrap() {
        let want = match m["mailbox"].as_str().unwrap() {
            s if s.ends_with("#archive") => 40,
            s if s.ends_with("#archive-recoverable-items") => 50,
            s if s.ends_with("#recoverable-items") => 200,
            _ => 60,
        };
        assert_eq!(m["stats"]["items"], want, "{m}");
    }
    // every store's latest snapshot holds exactly what the server holds
    assert_archive_matches_dump(&env, &state);
    let before = dump(&env, &state, "before");
    assert!(before.join("user1@example.com#recoverable-items/Purges").is_dir());

    // incremental after churn: only what changed is exported, in every store
    drop(sim);
    let churned = env.ok(&["simulate", "--state", state.to_str().unwrap(), "--churn", "6"]);
    let n = |what: &str| -> u64 {
        let at = churned.find(what).unwrap();
        churned[..at].trim_end().rsplit([' ', ':']).next().unwrap().parse().unwrap()
    };
    let (new, changed) = (n("new"), n("changed"));
    let sim = start_sim(&env, &state, &[]);
    let r = pack_ews(&env, &sim, &["--archive-mailbox", "--recoverable-items"]);
    let read: u64 = r["mailboxes"].as_array().unwrap().iter().map(|m| m["stats"]["items_read"].as_u64().unwrap()).sum();
    assert_eq!(read, new + changed, "exported {read}, churn made {new} new and {changed} changed: {churned}");
    assert_archive_matches_dump(&env, &state);
    let before = dump(&env, &state, "before");

    // a wipe empties user1's mailbox and archive; replay brings both back byte for byte, and the
    // Recoverable Items (which a wipe leaves, as Exchange keeps them) are untouched
    drop(sim);
    env.ok(&["simulate", "--state", state.to_str().unwrap(), "--wipe", MB1]);
    let wiped = dump(&env, &state, "wiped");
    assert!(!wiped.join(MB1).exists() && !wiped.join(format!("{MB1}#archive")).exists());
    let sim = start_sim(&env, &state, &[]);
    for store in [MB1.to_string(), format!("{MB1}#archive")] {
        let r = replay(&env, &sim, &["latest", "--mailbox", &store]);
        assert_eq!(r["target_mailbox"], store.as_str(), "{r}");
    }
    drop(sim);
    util::assert_same_tree(&before, &dump(&env, &state, "after"));

    // Recoverable Items go into an ordinary folder of the primary mailbox, never back into
    // Purges or Versions
    let sim = start_sim(&env, &state, &[]);
    let ri = format!("{MB1}#recoverable-items");
    let r = replay(&env, &sim, &["latest", "--mailbox", &ri]);
    assert_eq!(r["target_mailbox"], MB1, "{r}");
    drop(sim);
    let after = dump(&env, &state, "recovered");
    let top = std::fs::read_dir(after.join(MB1))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .find(|n| n.starts_with("Recovered Items "))
        .expect("a Recovered Items folder in the primary mailbox");
    for sub in ["Deletions", "Purges", "Versions"] {
        let want = names_under(&before, &format!("{ri}/{sub}/"));
        assert!(!want.is_empty());
        assert_eq!(names_under(&after, &format!("{MB1}/{top}/{sub}/")), want, "{sub}");
    }
    assert_eq!(names_under(&after, &format!("{ri}/")), names_under(&before, &format!("{ri}/")), "RI untouched");

    // an archive replayed into a mailbox without one lands under Restored <time> in its primary
    let sim = start_sim(&env, &state, &[]);
    let r = replay(&env, &sim, &["latest", "--mailbox", &format!("{MB1}#archive"), "--to-mailbox", MB2]);
    assert_eq!(r["target_mailbox"], MB2, "{r}");
    drop(sim);
    let after = dump(&env, &state, "into-user2");
    let restored = std::fs::read_dir(after.join(MB2))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .find(|n| n.starts_with("Restored "))
        .expect("a Restored folder in user2's mailbox");
    assert_eq!(
        names_under(&after, &format!("{MB2}/{restored}/")),
        names_under(&before, &format!("{MB1}#archive/")),
        "the archive's items, all of them"
    );
}
