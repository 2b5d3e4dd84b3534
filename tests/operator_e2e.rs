//! The operator's tools through the real binary: `find` across snapshots, `unlock` of locks left
//! by dead processes, shell completions and the man page.

mod util;

use util::sim::{pack_ews, start_sim};
use util::{code, stderr, Env, PASSWORD};

#[test]
fn find_names_each_matching_item_with_its_first_and_last_snapshot() {
    let env = Env::new();
    env.init();
    let state = env.path("exchange");
    let org = ["--mailboxes", "2", "--items", "60", "--seed", "51"];
    let sim = start_sim(&env, &state, &org);
    pack_ews(&env, &sim, &[]);
    drop(sim);
    env.ok(&["simulate", "--state", state.to_str().unwrap(), "--churn", "20"]);
    let sim = start_sim(&env, &state, &org);
    pack_ews(&env, &sim, &[]);
    let repo = env.repo();
    let rs = repo.to_str().unwrap();
    let found = env.json(&["find", "--repo", rs, "--subject", "BUDGET"]);
    let list = found.as_array().unwrap();
    assert!(!list.is_empty(), "the simulator's subjects use the word budget");
    for f in list {
        assert!(f["subject"].as_str().unwrap().to_lowercase().contains("budget"), "{f}");
        for k in ["snapshot", "time", "mailbox", "folder", "name", "first_snapshot", "first_time"] {
            assert!(f[k].is_string(), "{k} in {f}");
        }
        assert!((1..=2).contains(&f["snapshots"].as_u64().unwrap()), "{f}");
    }
    // Items the churn deleted were last seen in the first run's snapshots; unchanged ones in both.
    let runs: std::collections::BTreeSet<&str> = list.iter().map(|f| f["first_time"].as_str().unwrap()).collect();
    assert!(list.iter().any(|f| f["snapshots"] == 2), "unchanged items are in both runs");
    assert!(!runs.is_empty());
    // Narrowed by mailbox and folder; a folder that does not exist finds nothing.
    let one =
        env.json(&["find", "--repo", rs, "--subject", "budget", "--mailbox", "user1@example.com", "--folder", "inbox"]);
    assert!(one
        .as_array()
        .unwrap()
        .iter()
        .all(|f| f["mailbox"] == "user1@example.com" && f["folder"].as_str().unwrap().starts_with("Inbox")));
    assert_eq!(env.json(&["find", "--repo", rs, "--folder", "No Such Folder"]), serde_json::json!([]));
    let text = env.ok(&["find", "--repo", rs, "--subject", "budget", "--class", "IPM.Note"]);
    assert!(text.lines().all(|l| l.contains("budget") || l.contains("Budget")), "{text}");
}

fn write_lock(repo: &std::path::Path, name: &str, host: &str, pid: u32, refreshed: i64) {
    let lock = serde_json::json!({"exclusive": true, "prune": false, "host": host, "pid": pid, "purpose": "pack",
        "created": refreshed, "refreshed": refreshed, "lease_secs": 120});
    std::fs::write(repo.join("locks").join(name), lock.to_string()).unwrap();
}

#[test]
fn unlock_clears_locks_of_dead_processes_and_keeps_live_ones() {
    let env = Env::new();
    env.init();
    let repo = env.repo();
    let rs = repo.to_str().unwrap();
    let host = exarch_archive::repository::host_name();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    // A live exclusive lock (this test process, refreshed now) blocks a backup, and the message
    // names the command rather than a file to delete.
    write_lock(&repo, &"a".repeat(32), &host, std::process::id(), now);
    std::fs::create_dir_all(env.path("src")).unwrap();
    std::fs::write(env.path("src/x.txt"), "x").unwrap();
    let out = env.run(&["pack", "--repo", rs, "--from-dir", env.path("src").to_str().unwrap(), "--mailbox", "m"]);
    assert_ne!(code(&out), 0);
    assert!(stderr(&out).contains("exarch unlock"), "{}", stderr(&out));
    // A killed process's lock on this host (its pid is gone) and one whose lease ran out elsewhere.
    write_lock(&repo, &"b".repeat(32), &host, 999_999_999, now);
    write_lock(&repo, &"c".repeat(32), "elsewhere", 1, now - 3600);
    std::fs::write(repo.join("locks").join("d".repeat(32)), "not json").unwrap();
    let r = env.json(&["unlock", "--repo", rs]);
    let removed: Vec<&str> = r["removed"].as_array().unwrap().iter().map(|l| l["name"].as_str().unwrap()).collect();
    assert_eq!(removed.len(), 3, "{r}");
    assert!(!removed.contains(&"a".repeat(32).as_str()), "the live lock is kept: {r}");
    assert_eq!(r["kept"].as_array().unwrap().len(), 1);
    // --remove-all takes the live one too (with a warning).
    let out = env.run(&["unlock", "--repo", rs, "--remove-all"]);
    assert_eq!(code(&out), 0);
    assert!(stderr(&out).contains("warning"), "{}", stderr(&out));
    assert_eq!(std::fs::read_dir(repo.join("locks")).unwrap().count(), 0);
    env.ok(&["pack", "--repo", rs, "--from-dir", env.path("src").to_str().unwrap(), "--mailbox", "m"]);
}

#[test]
fn completions_and_the_man_page_are_well_formed() {
    let env = Env::new();
    for shell in ["bash", "zsh", "fish", "powershell"] {
        let out = env.ok(&["completion", shell]);
        assert!(out.contains("exarch") && out.contains("replay"), "{shell}");
    }
    let bash = env.path("exarch.bash");
    std::fs::write(&bash, env.ok(&["completion", "bash"])).unwrap();
    let check = std::process::Command::new("bash").arg("-n").arg(&bash).output().unwrap();
    assert!(check.status.success(), "bash -n: {}", String::from_utf8_lossy(&check.stderr));
    let man = env.ok(&["man"]);
    assert!(man.starts_with(".ie") || man.contains(".TH"), "{:.200}", man);
    let page = env.path("exarch.1");
    std::fs::write(&page, &man).unwrap();
    // Where man(1) is installed, it must render the page without complaint.
    if let Ok(out) =
        std::process::Command::new("man").arg("-l").arg(&page).env("MANPAGER", "cat").env("MANWIDTH", "80").output()
    {
        assert!(out.status.success(), "man -l: {}", String::from_utf8_lossy(&out.stderr));
        assert!(String::from_utf8_lossy(&out.stdout).contains("exarch"));
    }
}

#[test]
fn secrets_can_come_from_a_command_and_never_show() {
    let env = Env::new();
    let repo = env.repo();
    let rs = repo.to_str().unwrap();
    let cmd = |args: &[&str]| {
        let mut c = env.cmd(args);
        c.env_remove("EXARCH_PASSWORD");
        c
    };
    let out = cmd(&["init", "--repo", rs, "--password-command", "printf 'from-the-store\\nsecond line\\n'"])
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let out = cmd(&["snapshots", "--repo", rs]).env("EXARCH_PASSWORD_COMMAND", "echo from-the-store").output().unwrap();
    assert_eq!(code(&out), 0, "the first line is the passphrase: {}", stderr(&out));
    let out = cmd(&["snapshots", "--repo", rs, "--password-command", "echo wrong"]).output().unwrap();
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    // A failing command: its status is named, its output never shown.
    let out = cmd(&["snapshots", "--repo", rs, "--password-command", "echo leaked-secret; exit 7"]).output().unwrap();
    assert_ne!(code(&out), 0);
    assert!(
        !stderr(&out).contains("leaked-secret") && stderr(&out).contains("password command failed"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn the_schedules_in_contrib_are_well_formed() {
    let contrib = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../contrib");
    let env = Env::new();
    // systemd units, pointed at the binary under test (systemd-analyze checks that it exists).
    let units = env.path("units");
    std::fs::create_dir_all(&units).unwrap();
    let mut names = Vec::new();
    for e in std::fs::read_dir(contrib.join("systemd")).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        if !(name.ends_with(".service") || name.ends_with(".timer")) {
            continue;
        }
        let text = std::fs::read_to_string(&p).unwrap();
        if name.ends_with(".service") {
            assert!(text.contains("exarch -P nightly "), "{name} runs the profile");
        }
        let text = text.replace("/usr/local/bin/exarch", env!("CARGO_BIN_EXE_exarch"));
        std::fs::write(units.join(&name), text).unwrap();
        names.push(name);
    }
    assert_eq!(names.len(), 6, "{names:?}");
    if let Ok(out) =
        std::process::Command::new("systemd-analyze").arg("verify").args(&names).current_dir(&units).output()
    {
        assert!(
            out.status.success(),
            "systemd-analyze verify: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // The Task Scheduler definition is well-formed XML.
    let xml = contrib.join("windows/exarch-nightly.xml");
    if let Ok(out) = std::process::Command::new("python3")
        .args(["-c", "import sys, xml.dom.minidom; xml.dom.minidom.parse(sys.argv[1])"])
        .arg(&xml)
        .output()
    {
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
}

#[test]
fn a_debug_log_names_every_request_and_holds_no_secret() {
    let env = Env::new();
    // A slow calendar keeps the run going for a few seconds: long enough for status lines.
    let sim = start_sim(
        &env,
        &env.path("sim"),
        &[
            "--mailboxes",
            "2",
            "--items",
            "40",
            "--user",
            "svc",
            "--calendar-items",
            "300",
            "--calendar-export-ms",
            "10",
        ],
    );
    env.init();
    let (repo, log) = (env.repo(), env.path("logs/run.log"));
    std::fs::create_dir_all(log.parent().unwrap()).unwrap();
    let args = [
        "-vv",
        "pack",
        "--repo",
        repo.to_str().unwrap(),
        "--ews",
        &sim.url,
        "--user",
        "svc",
        "--auth",
        "basic",
        "--all-mailboxes",
        "--json",
        "--log-file",
        log.to_str().unwrap(),
        "--log-format",
        "json",
        "--status-interval",
        "1s",
    ];
    let out = env.cmd(&args).env("EXARCH_EWS_PASSWORD", "sim-secret").output().unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let err = stderr(&out);
    let file = std::fs::read_to_string(&log).unwrap();
    // Basic logon sends the password base64-encoded: that form must not show either.
    let basic = "c3ZjOnNpbS1zZWNyZXQ="; // base64("svc:sim-secret")
    for secret in ["sim-secret", PASSWORD, basic] {
        assert!(!err.contains(secret), "stderr holds a secret");
        assert!(!file.contains(secret), "the log file holds a secret");
    }
    // Every request is a debug line with its operation, mailbox, status and duration.
    let events: Vec<serde_json::Value> =
        file.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"))).collect();
    let requests: Vec<&serde_json::Value> = events.iter().filter(|e| e["message"] == "EWS request").collect();
    assert_eq!(requests.len() as u64, summary["requests_total"].as_u64().unwrap(), "one line per request");
    for r in &requests {
        assert_eq!(r["level"], "DEBUG");
        assert!(r["op"].is_string() && r["mailbox"].is_string() && r["status"] == 200 && r["ms"].is_u64(), "{r}");
    }
    let ops: std::collections::BTreeSet<&str> = requests.iter().filter_map(|r| r["op"].as_str()).collect();
    for op in ["ResolveNames", "SyncFolderHierarchy", "SyncFolderItems", "ExportItems"] {
        assert!(ops.contains(op), "{op} not logged: {ops:?}");
    }
    assert_eq!(err.matches("EWS request").count(), requests.len(), "-vv shows them on stderr too");
    // A record for a scheduled run: start, per-mailbox outcome, a status line, the end and its code.
    let said = |m: &str| events.iter().any(|e| e["message"].as_str().is_some_and(|s| s.contains(m)));
    assert!(said("exarch started") && said("backup finished") && said("backup: ") && said("exarch finished"), "{file}");
    assert!(events.iter().any(|e| e["message"] == "exarch finished" && e["exit_code"] == 0));
    // Appended, not replaced: a second run adds to the record.
    let again = env.cmd(&args).env("EXARCH_EWS_PASSWORD", "sim-secret").output().unwrap();
    assert_eq!(code(&again), 0, "{}", stderr(&again));
    let file2 = std::fs::read_to_string(&log).unwrap();
    assert!(file2.starts_with(&file) && file2.matches("exarch started").count() == 2);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(std::fs::metadata(&log).unwrap().permissions().mode() & 0o077, 0, "the log is private");
    }
}

#[test]
fn a_profile_drives_pack_prune_and_verify_and_flags_override_it() {
    let env = Env::new();
    let sim = start_sim(&env, &env.path("sim"), &["--mailboxes", "2", "--items", "20", "--user", "svc"]);
    let (repo, pass, ews_pass) = (env.repo(), env.path("repo.pass"), env.path("ews.pass"));
    std::fs::write(&pass, format!("{PASSWORD}\n")).unwrap();
    std::fs::write(&ews_pass, "sim-secret\n").unwrap();
    let config = env.path("exarch.toml");
    std::fs::write(
        &config,
        format!(
            r#"# exarch profiles
[profiles.nightly]
repo = "{repo}"
password-file = "{pass}"
cache-dir = "{cache}"
ews = "{url}"
user = "svc"
ews-password-file = "{ews_pass}"

[profiles.nightly.pack]
all-mailboxes = true
max-duration = "6h"

[profiles.nightly.prune]
keep-last = 1
delete-now = true

[profiles.nightly.verify]
read-data-subset = "week/1"
"#,
            repo = repo.display(),
            pass = pass.display(),
            cache = env.path("cache").display(),
            url = sim.url,
            ews_pass = ews_pass.display()
        ),
    )
    .unwrap();
    // Nothing but the profile: no passphrase, repository or cache in the environment either.
    let run = |args: &[&str]| {
        let mut c = env.cmd(args);
        c.env_remove("EXARCH_PASSWORD").env_remove("EXARCH_CACHE_DIR").env_remove("EXARCH_EWS_PASSWORD");
        c.env("EXARCH_CONFIG", &config);
        c.output().unwrap()
    };
    let init = run(&["-P", "nightly", "init"]);
    assert_eq!(code(&init), 0, "{}", stderr(&init));
    for _ in 0..3 {
        let out = run(&["-P", "nightly", "pack"]);
        assert_eq!(code(&out), 0, "{}", stderr(&out));
    }
    let snaps = |args: &[&str]| -> serde_json::Value {
        let out = run(args);
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    assert_eq!(snaps(&["-P", "nightly", "snapshots", "--json"]).as_array().unwrap().len(), 6);
    // A flag wins over the profile: this prune keeps two per mailbox, not one.
    let out = run(&["-P", "nightly", "prune", "--keep-last", "2"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(snaps(&["-P", "nightly", "snapshots", "--json"]).as_array().unwrap().len(), 4);
    let out = run(&["-P", "nightly", "prune"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(snaps(&["-P", "nightly", "snapshots", "--json"]).as_array().unwrap().len(), 2);
    let out = run(&["-P", "nightly", "verify"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(said.contains("no damage found") && said.contains("blob(s) read"), "{said}");
    assert!(!said.contains("; 0 blob(s) read"), "week/1 is every pack: {said}");
    // A mailbox named on the command line replaces the profile's --all-mailboxes.
    let out = run(&["-P", "nightly", "pack", "--mailbox", "user1@example.com", "--json"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["mailboxes"].as_array().unwrap().len(), 1, "{v}");
    // The environment wins too, and without -P the file is not read at all.
    let other = env.path("other-repo");
    let out = run(&["-P", "nightly", "snapshots"]).status;
    assert!(out.success());
    let mut c = env.cmd(&["-P", "nightly", "snapshots"]);
    c.env("EXARCH_CONFIG", &config).env("EXARCH_REPOSITORY", &other);
    let out = c.output().unwrap();
    assert_ne!(code(&out), 0);
    assert!(stderr(&out).contains("other-repo"), "{}", stderr(&out));
    let out = run(&["snapshots"]);
    assert_eq!(code(&out), 2, "no repository without the profile: {}", stderr(&out));
    // Mistakes in the file are named with the file and the profile.
    std::fs::write(&config, "[profiles.nightly]\nrepository = \"/x\"\n").unwrap();
    let out = run(&["-P", "nightly", "snapshots"]);
    assert_eq!(code(&out), 2);
    assert!(stderr(&out).contains("repository") && stderr(&out).contains("exarch.toml"), "{}", stderr(&out));
    let out = run(&["-P", "weekly", "snapshots"]);
    assert_eq!(code(&out), 2);
    assert!(stderr(&out).contains("no profile `weekly`"), "{}", stderr(&out));
}

#[test]
fn a_backup_on_a_terminal_shows_a_progress_bar() {
    // script(1) gives the run a terminal; where it is missing there is nothing to check.
    if std::process::Command::new("script").arg("--version").output().is_err() {
        eprintln!("SKIPPED: script(1) is needed for a terminal");
        return;
    }
    let env = Env::new();
    let sim = start_sim(
        &env,
        &env.path("sim"),
        &["--mailboxes", "2", "--items", "20", "--calendar-items", "200", "--calendar-export-ms", "10"],
    );
    env.init();
    let cmd = format!(
        "{} pack --repo {} --ews {} --user svc --all-mailboxes",
        env!("CARGO_BIN_EXE_exarch"),
        env.repo().display(),
        sim.url
    );
    let out = std::process::Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .env("EXARCH_PASSWORD", PASSWORD)
        .env("EXARCH_CACHE_DIR", env.path("cache"))
        .env("EXARCH_EWS_PASSWORD", "sim-secret")
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let screen = String::from_utf8_lossy(&out.stdout);
    assert_eq!(code(&out), 0, "{screen}");
    // The bar: its prefix, items of those planned, mailboxes done; then the summary.
    assert!(screen.contains("backup ["), "{screen}");
    assert!(screen.contains(" items ") && screen.contains("mailboxes"), "{screen}");
    assert!(screen.contains("backed up 2 of 2 mailbox(es)"), "{screen}");
    // Not a status line: those are for logs, not terminals.
    assert!(!screen.contains("backup: "), "{screen}");
}
