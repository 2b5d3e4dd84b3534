//! Replay (UploadItems) through the real binary into the simulated Exchange on 127.0.0.1
//! (issue 6's acceptance checks, at a size that suits a debug build).

mod util;

use std::path::{Path, PathBuf};
use util::sim::{dump, pack_ews, start_sim, stats, Sim};
use util::{code, stderr, tree, Env};

const MB1: &str = "user1@example.com";
const MB2: &str = "user2@example.com";

/// The GOID prefix (PidLidGlobalObjectId) every simulated calendar item carries.
const GOID: &[u8] = b"\x04\x00\x00\x00\x82\x00\xE0\x00\x74\xC5\xB7\x10\x1A\x82\xE0\x08";

fn replay(env: &Env, sim: &Sim, args: &[&str]) -> (i32, serde_json::Value, String) {
    let repo = env.repo();
    let mut all = vec!["replay", "--repo", repo.to_str().unwrap(), "--ews", &sim.url, "--user", "svc", "--json"];
    all.extend_from_slice(args);
    let out = env.cmd(&all).env("EXARCH_EWS_PASSWORD", "x").output().unwrap();
    // (no JSON when the command stops before replaying anything, e.g. on bad arguments)
    let v = serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
    (code(&out), v, stderr(&out))
}

/// A repository holding one backup of a fresh simulated organisation; the server is stopped.
fn backed_up(env: &Env, args: &[&str]) -> PathBuf {
    env.init();
    let state = env.path("exchange");
    let sim = start_sim(env, &state, args);
    pack_ews(env, &sim, &[]);
    state
}

fn wipe(env: &Env, state: &Path, mailbox: &str) {
    let out = env.ok(&["simulate", "--state", state.to_str().unwrap(), "--wipe", mailbox]);
    assert!(out.contains("wiped"), "{out}");
}

/// Items the server holds in mailbox `m` (0-based): a dump cannot show duplicates, since two copies
/// of one item have the same file name.
fn item_count(state: &Path, m: usize) -> usize {
    let st: serde_json::Value = serde_json::from_slice(&std::fs::read(state.join("state.json")).unwrap()).unwrap();
    st["mailboxes"][m]["items"].as_array().unwrap().len()
}

fn files(dir: &Path) -> Vec<String> {
    tree(dir).into_keys().collect()
}

#[test]
fn wiped_mailbox_comes_back_byte_identical_and_twice_leaves_one_copy() {
    let env = Env::new();
    let state = backed_up(&env, &["--mailboxes", "2", "--items", "120", "--seed", "21"]);
    let before = dump(&env, &state, "before");
    wipe(&env, &state, MB1);
    assert!(!dump(&env, &state, "wiped").join(MB1).exists(), "the wipe should leave no item");

    let sim = start_sim(&env, &state, &[]);
    // --dry-run says what would happen and changes nothing
    let (c, dry, err) = replay(&env, &sim, &["latest", "--mailbox", MB1, "--dry-run"]);
    assert_eq!(c, 0, "{err}");
    assert_eq!(dry["items"], 120);
    assert!(!dry["folders_to_create"].as_array().unwrap().is_empty(), "{dry}");
    assert!(stats(&sim)["requests"].get("UploadItems").is_none());

    let (c, r, err) = replay(&env, &sim, &["latest", "--mailbox", MB1]);
    assert_eq!(c, 0, "{err}");
    assert_eq!(r["uploaded"], 120, "{r}");
    let created = r["folders_created"].as_array().unwrap();
    assert!(created.iter().any(|f| f == "Inbox/Projects/Alpha"), "{r}");
    drop(sim);
    let after = dump(&env, &state, "after");
    util::assert_same_tree(&before, &after);
    assert_eq!(item_count(&state, 0), 120);
    // calendar items kept their global object id (the dump is byte-identical; check it is there)
    let cal: Vec<Vec<u8>> = tree(&after.join(MB1).join("Calendar")).into_values().collect();
    assert!(!cal.is_empty() && cal.iter().all(|b| b.windows(GOID.len()).any(|w| w == GOID)));
    // hidden (folder-associated) items went back as hidden items
    let st: serde_json::Value = serde_json::from_slice(&std::fs::read(state.join("state.json")).unwrap()).unwrap();
    let items = st["mailboxes"][0]["items"].as_array().unwrap();
    let hidden: Vec<_> = items.iter().filter(|i| i["class"] == "IPM.Microsoft.FolderDesign.NamedView").collect();
    assert!(!hidden.is_empty() && hidden.iter().all(|i| i["associated"] == true));

    // twice in place: still exactly one copy of each item, and no folder made twice
    let sim = start_sim(&env, &state, &[]);
    let (c, r, err) = replay(&env, &sim, &["latest", "--mailbox", MB1]);
    assert_eq!(c, 0, "{err}");
    assert_eq!(r["uploaded"], 120);
    assert!(r["folders_created"].as_array().unwrap().is_empty(), "{r}");
    // and a third time from a machine without the journal (cache cleared): still one copy
    std::fs::remove_dir_all(env.path("cache")).unwrap();
    let (c, r, err) = replay(&env, &sim, &["latest", "--mailbox", MB1]);
    assert_eq!(c, 0, "{err}");
    assert_eq!(r["uploaded"], 120);
    drop(sim);
    util::assert_same_tree(&before, &dump(&env, &state, "again"));
    assert_eq!(item_count(&state, 0), 120);
}

#[test]
fn replay_to_another_mailbox_goes_under_a_restored_folder_and_touches_nothing_else() {
    let env = Env::new();
    let state = backed_up(&env, &["--mailboxes", "2", "--items", "60", "--seed", "22"]);
    let before = dump(&env, &state, "before");
    let sim = start_sim(&env, &state, &[]);
    for round in 0..2 {
        let (c, r, err) = replay(&env, &sim, &["latest", "--mailbox", MB1, "--to-mailbox", MB2]);
        assert_eq!(c, 0, "{err}");
        assert_eq!(r["target_mailbox"], MB2);
        assert_eq!(r["uploaded"], 60);
        let made = r["folders_created"].as_array().unwrap();
        if round == 0 {
            assert!(made[0].as_str().unwrap().starts_with("Restored "), "{r}");
        } else {
            assert!(made.is_empty(), "a second replay must not make a second tree: {r}");
        }
    }
    drop(sim);
    let after = dump(&env, &state, "after");
    // user1 untouched
    util::assert_same_tree(&before.join(MB1), &after.join(MB1));
    // user2: everything it had, plus one `Restored <time>` folder holding user1's items once
    let restored: Vec<_> = std::fs::read_dir(after.join(MB2))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("Restored "))
        .collect();
    assert_eq!(restored.len(), 1, "{restored:?}");
    util::assert_same_tree(&before.join(MB1), &after.join(MB2).join(&restored[0]));
    let rest = env.path("rest");
    copy_except(&after.join(MB2), &rest, &restored[0]);
    util::assert_same_tree(&before.join(MB2), &rest);
    assert_eq!((item_count(&state, 0), item_count(&state, 1)), (60, 120));
}

fn copy_except(from: &Path, to: &Path, skip: &str) {
    for (rel, data) in tree(from) {
        if rel.starts_with(skip) {
            continue;
        }
        let p = to.join(&rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, data).unwrap();
    }
}

#[test]
fn killed_replay_continues_without_duplicates() {
    let env = Env::new();
    let state = backed_up(&env, &["--mailboxes", "1", "--items", "160", "--seed", "23"]);
    let before = dump(&env, &state, "before");
    wipe(&env, &state, MB1);
    // A tight budget and small requests make the replay take several seconds.
    let sim = start_sim(&env, &state, &["--profile", "strict", "--budget-burst", "3", "--budget-recharge", "12"]);
    let repo = env.repo();
    let args = [
        "replay",
        "--repo",
        repo.to_str().unwrap(),
        "latest",
        "--ews",
        &sim.url,
        "--user",
        "svc",
        "--upload-limit",
        "400000",
        "-q",
    ];
    let mut child = env.cmd(&args).env("EXARCH_EWS_PASSWORD", "x").spawn().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while stats(&sim)["items_uploaded"].as_u64().unwrap() < 40
        && std::time::Instant::now() < deadline
        && child.try_wait().unwrap().is_none()
    {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    let uploaded = stats(&sim)["items_uploaded"].as_u64().unwrap();
    assert!((40..160).contains(&uploaded), "the kill should land mid-run ({uploaded} uploaded)");

    let (c, r, err) = replay(&env, &sim, &["latest"]);
    assert_eq!(c, 0, "{err}");
    assert!(r["already_restored"].as_u64().unwrap() > 0, "{r}");
    drop(sim);
    util::assert_same_tree(&before, &dump(&env, &state, "after"));
    assert_eq!(item_count(&state, 0), 160, "no duplicates");
}

#[test]
fn lost_replies_are_checked_before_uploading_again() {
    let env = Env::new();
    let state = backed_up(&env, &["--mailboxes", "1", "--items", "100", "--seed", "24"]);
    let before = dump(&env, &state, "before");
    wipe(&env, &state, MB1);
    // dropped connections and replies cut off after the server stored the items
    let sim = start_sim(&env, &state, &["--fault-rate", "0.25"]);
    let (c, r, err) = replay(&env, &sim, &["latest", "--upload-limit", "3000000"]);
    assert_eq!(c, 0, "{err}");
    assert!(stats(&sim)["faults_injected"].as_u64().unwrap() > 0);
    assert_eq!(r["uploaded"], 100, "{r}");
    drop(sim);
    util::assert_same_tree(&before, &dump(&env, &state, "after"));
    assert_eq!(item_count(&state, 0), 100, "no duplicates");
}

#[test]
fn refused_and_oversized_items_are_listed_and_the_rest_restored() {
    let env = Env::new();
    let state = backed_up(&env, &["--mailboxes", "1", "--items", "120", "--seed", "25"]);
    let before = dump(&env, &state, "before");
    wipe(&env, &state, MB1);
    let sim = start_sim(&env, &state, &["--refuse-rate", "0.05", "--max-request-bytes", "600000"]);
    let (c, r, err) = replay(&env, &sim, &["latest"]);
    assert_eq!(c, 5, "refused items make the run partial: {err}");
    assert!(err.contains("could not be restored"), "{err}");
    let refused = r["refused"].as_array().unwrap();
    let too_large = r["too_large"].as_array().unwrap();
    assert!(!refused.is_empty(), "{r}");
    assert!(!too_large.is_empty(), "some items exceed the server's request limit: {r}");
    assert!(refused.iter().all(|x| x["error"].as_str().unwrap().starts_with("ErrorCorruptData")));
    assert!(stats(&sim)["requests_too_large"].as_u64().unwrap() > 0);
    let n = (refused.len() + too_large.len()) as u64;
    assert_eq!(r["uploaded"].as_u64().unwrap() + n, 120, "{r}");
    drop(sim);
    let after = dump(&env, &state, "after");
    let have = files(&after);
    let want = files(&before);
    assert_eq!(have.len() as u64, 120 - n);
    assert!(have.iter().all(|f| want.contains(f)));
    for x in refused.iter().chain(too_large) {
        let p = format!("{MB1}/{}", x["path"].as_str().unwrap());
        assert!(want.contains(&p) && !have.contains(&p), "{p}");
    }
}

#[test]
fn folder_item_and_date_filters_choose_what_goes_back() {
    let env = Env::new();
    let state = backed_up(&env, &["--mailboxes", "1", "--items", "150", "--seed", "26"]);
    let before = dump(&env, &state, "before");
    wipe(&env, &state, MB1);
    let sim = start_sim(&env, &state, &[]);
    let (c, r, err) = replay(&env, &sim, &["latest", "--folder", "inbox/projects"]);
    assert_eq!(c, 0, "{err}");
    let want: Vec<String> =
        files(&before).into_iter().filter(|f| f.starts_with(&format!("{MB1}/Inbox/Projects/"))).collect();
    assert_eq!(r["uploaded"].as_u64().unwrap() as usize, want.len());
    let one = files(&before).into_iter().find(|f| f.starts_with(&format!("{MB1}/Sent Items/"))).unwrap();
    let name = one.rsplit('/').next().unwrap().trim_end_matches(".fts").to_string();
    let (c, r, err) = replay(&env, &sim, &["latest", "--item", &name]);
    assert_eq!(c, 0, "{err}");
    assert_eq!(r["uploaded"], 1);
    // nothing received in 1990
    let (c, _, err) = replay(&env, &sim, &["latest", "--since", "1990-01-01", "--until", "1990-12-31"]);
    assert_eq!(c, 1);
    assert!(err.contains("nothing to replay"), "{err}");
    let (c, _, err) = replay(&env, &sim, &["latest", "--since", "last tuesday"]);
    assert_eq!(c, 2, "{err}");
    drop(sim);
    let mut expect = want;
    expect.push(one);
    expect.sort();
    assert_eq!(files(&dump(&env, &state, "after")), expect);
}

#[test]
fn public_folders_replay_into_their_tree() {
    let env = Env::new();
    let state = backed_up(&env, &["--mailboxes", "1", "--items", "10", "--seed", "27", "--public-items", "50"]);
    // (backed_up packs --all-mailboxes only; add the public folders)
    {
        let sim = start_sim(&env, &state, &[]);
        pack_ews(&env, &sim, &["--public-folders"]);
    }
    let before = dump(&env, &state, "before");
    wipe(&env, &state, "public-folders");
    let sim = start_sim(&env, &state, &[]);
    for _ in 0..2 {
        let (c, r, err) = replay(&env, &sim, &["latest", "--mailbox", "public-folders"]);
        assert_eq!(c, 0, "{err}");
        assert_eq!(r["uploaded"], 50, "{r}");
    }
    drop(sim);
    util::assert_same_tree(&before, &dump(&env, &state, "after"));
    assert_eq!(item_count(&state, 1), 50, "the public folders hold each item once");
}

#[test]
fn default_folders_go_to_the_folder_with_the_same_role_in_another_language() {
    let env = Env::new();
    let en = backed_up(&env, &["--mailboxes", "1", "--items", "60", "--seed", "31"]);
    let before = dump(&env, &en, "before");
    // another server, whose mailboxes call their default folders Posteingang, Kalender, ...
    let de = env.path("exchange-de");
    let sim = start_sim(&env, &de, &["--mailboxes", "1", "--items", "0", "--seed", "32", "--locale", "de"]);
    let (c, r, err) = replay(&env, &sim, &["latest"]);
    assert_eq!(c, 0, "{err}");
    assert_eq!(r["uploaded"], 60, "{r}");
    assert!(r["folders_created"].as_array().unwrap().is_empty(), "no English default folder made: {r}");
    drop(sim);
    let after = dump(&env, &de, "after");
    let renamed = |p: &str| {
        p.replacen("/Inbox/", "/Posteingang/", 1)
            .replacen("/Sent Items/", "/Gesendete Elemente/", 1)
            .replacen("/Deleted Items/", "/Gelöschte Elemente/", 1)
            .replacen("/Calendar/", "/Kalender/", 1)
            .replacen("/Contacts/", "/Kontakte/", 1)
            .replacen("/Tasks/", "/Aufgaben/", 1)
    };
    let want: std::collections::BTreeMap<String, Vec<u8>> =
        tree(&before).into_iter().map(|(k, v)| (renamed(&k), v)).collect();
    assert_eq!(tree(&after), want);
}

/// Issue 11, check 4: `--only-missing` restores exactly the deleted items and leaves changed ones
/// as they are; `--overwrite-changed` then puts the archived version back over the changed ones.
#[test]
fn only_missing_and_overwrite_changed_choose_what_goes_back() {
    let env = Env::new();
    let state = backed_up(&env, &["--mailboxes", "1", "--items", "90", "--seed", "31"]);
    let before = files(&dump(&env, &state, "before"));
    let out = env.ok(&["simulate", "--state", state.to_str().unwrap(), "--churn", "20"]);
    // "churned 20%: N new, C changed, D deleted item(s)"
    let nums: Vec<usize> = out.split(|c: char| !c.is_ascii_digit()).filter_map(|w| w.parse().ok()).collect();
    let (new, changed, deleted) = (nums[1], nums[2], nums[3]);
    assert!(changed > 0 && deleted > 0 && new > 0, "{out}");
    let churned = files(&dump(&env, &state, "churned"));

    let sim = start_sim(&env, &state, &[]);
    let (c, r, err) = replay(&env, &sim, &["latest", "--only-missing"]);
    assert_eq!(c, 0, "{err}");
    assert_eq!(r["uploaded"], deleted as u64, "{r}");
    assert_eq!(r["left_alone"], (90 - deleted) as u64, "{r}");
    drop(sim);
    let after = files(&dump(&env, &state, "only-missing"));
    let added: Vec<&String> = after.iter().filter(|f| !churned.contains(f)).collect();
    assert!(churned.iter().all(|f| after.contains(f)), "nothing that was there may change");
    assert_eq!(added.len(), deleted, "exactly the deleted items come back: {added:?}");
    assert!(added.iter().all(|f| before.contains(f)));
    assert_eq!(item_count(&state, 0), 90 + new);

    let sim = start_sim(&env, &state, &[]);
    let (c, r, err) = replay(&env, &sim, &["latest", "--overwrite-changed"]);
    assert_eq!(c, 0, "{err}");
    assert!(r["uploaded"].as_u64().unwrap() >= changed as u64, "{r}");
    drop(sim);
    let last = files(&dump(&env, &state, "overwritten"));
    // every archived version is back, the changed versions are gone, the new items stay
    assert!(before.iter().all(|f| last.contains(f)), "an archived version is missing");
    let extra: Vec<&String> = last.iter().filter(|f| !before.contains(f)).collect();
    assert_eq!(extra.len(), new, "only the items made after the backup remain besides it: {extra:?}");
    assert_eq!(item_count(&state, 0), 90 + new, "no item twice");
}
