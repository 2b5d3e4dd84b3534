//! NTLM that Extended Protection accepts (issue 11, check 6): the simulator serves HTTPS with a
//! certificate made at start and checks NTLM logons' channel bindings (`--extended-protection
//! allow|require`); exarch binds its logons to the TLS channel, and exchangelib (whose NTLM
//! library computes its own binding) is accepted by the same server.

mod util;

use std::path::Path;
use util::sim::{start_sim, Sim};
use util::{code, stderr, Env};

const USER: &str = "CORP\\svc";

fn sim(env: &Env, state: &Path, protection: &str) -> (Sim, String) {
    let ca = env.path(&format!("ca-{protection}.pem"));
    let s = start_sim(
        env,
        state,
        &[
            "--mailboxes",
            "2",
            "--items",
            "250",
            "--seed",
            "4",
            "--auth",
            "ntlm",
            "--user",
            USER,
            "--tls-cert",
            ca.to_str().unwrap(),
            "--extended-protection",
            protection,
        ],
    );
    assert!(s.url.starts_with("https://"), "{}", s.url);
    (s, ca.to_str().unwrap().to_string())
}

fn exarch(env: &Env, args: &[&str]) -> std::process::Output {
    env.cmd(args).env("EXARCH_EWS_PASSWORD", "sim-secret").output().unwrap()
}

fn pack(env: &Env, sim: &Sim, ca: &str, extra: &[&str]) -> std::process::Output {
    let repo = env.repo();
    let mut a = vec!["pack", "--repo", repo.to_str().unwrap(), "--ews", &sim.url, "--user", USER, "--auth", "ntlm"];
    a.extend_from_slice(&["--ca-cert", ca, "--all-mailboxes", "--json"]);
    a.extend_from_slice(extra);
    exarch(env, &a)
}

#[test]
fn ntlm_over_https_under_extended_protection() {
    let env = Env::new();
    env.init();
    let state = env.path("exchange");
    let repo = env.repo();

    // require: exarch's bound logon passes, for backup and for replay
    let (s, ca) = sim(&env, &state, "require");
    let out = pack(&env, &s, &ca, &[]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["items"], 500, "{r}");
    let out = exarch(
        &env,
        &[
            "replay",
            "latest",
            "--mailbox",
            "user1@example.com",
            "--to-mailbox",
            "user2@example.com",
            "--repo",
            repo.to_str().unwrap(),
            "--ews",
            &s.url,
            "--user",
            USER,
            "--auth",
            "ntlm",
            "--ca-cert",
            &ca,
            "--json",
        ],
    );
    assert_eq!(code(&out), 0, "replay under require: {}", stderr(&out));
    // ... and a logon without a binding is refused
    let out = pack(&env, &s, &ca, &["--channel-binding", "never"]);
    assert_eq!(code(&out), 1, "require must refuse an unbound logon: {}", stderr(&out));
    assert!(stderr(&out).contains("401"), "{}", stderr(&out));

    // exchangelib's NTLM (requests-ntlm over pyspnego) computes its own binding from the
    // certificate, and the same server accepts it: client and checker are not only right about
    // each other
    let has = std::process::Command::new("python3").args(["-c", "import exchangelib"]).output();
    if has.is_ok_and(|o| o.status.success()) {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/scripts/exchangelib_roundtrip.py");
        let out = std::process::Command::new("python3")
            .args([script, &s.url, "user1@example.com", "user2@example.com", "ntlm", USER, "sim-secret", &ca])
            .output()
            .unwrap();
        assert!(out.status.success(), "exchangelib with NTLM under require: {}", String::from_utf8_lossy(&out.stderr));
        let v: serde_json::Value = serde_json::from_slice(out.stdout.trim_ascii()).unwrap();
        assert_eq!(v["uploaded"], 20, "{v}");
    } else {
        eprintln!("skipped the exchangelib part: python3 with exchangelib is not installed");
    }
    drop(s);

    // allow: an unbound logon passes (a TLS-inspecting proxy's case), a bound one too
    let (s, ca) = sim(&env, &state, "allow");
    let out = pack(&env, &s, &ca, &["--channel-binding", "never"]);
    assert_eq!(code(&out), 0, "allow accepts an unbound logon: {}", stderr(&out));
    let out = pack(&env, &s, &ca, &[]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
}
