//! Issue 11, check 2: a third-party EWS client works against the simulated Exchange. exchangelib
//! (Python, PyPI) opens a mailbox, walks `root` and `msgfolderroot`, lists the Inbox, exports 20
//! items, uploads them into another mailbox and finds them there. Skipped, saying so, where
//! exchangelib is not installed (`.ci/run` installs it).

mod util;

use util::sim::start_sim;
use util::Env;

#[test]
fn exchangelib_exports_and_uploads_through_the_simulator() {
    let has = std::process::Command::new("python3").args(["-c", "import exchangelib"]).output();
    if !has.is_ok_and(|o| o.status.success()) {
        eprintln!("skipped: python3 with exchangelib is not installed (pip install exchangelib)");
        return;
    }
    let env = Env::new();
    let state = env.path("exchange");
    let sim = start_sim(&env, &state, &["--mailboxes", "2", "--items", "250", "--seed", "8"]);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/scripts/exchangelib_roundtrip.py");
    let out = std::process::Command::new("python3")
        .args([script, &sim.url, "user1@example.com", "user2@example.com"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "exchangelib failed: {stderr}");
    let v: serde_json::Value = serde_json::from_slice(out.stdout.trim_ascii()).unwrap();
    assert_eq!(v["exported"], 20, "{v}");
    assert_eq!(v["uploaded"], 20, "{v}");
    assert_eq!(v["after"].as_u64().unwrap(), v["before"].as_u64().unwrap() + 20, "{v}");
    assert!(v["top"].as_array().unwrap().iter().any(|f| f == "Inbox"), "{v}");
    let stats = util::sim::stats(&sim);
    assert_eq!(stats["items_exported"], 20, "{stats}");
    assert_eq!(stats["items_uploaded"], 20, "{stats}");
}
