//! The simulated Exchange for end-to-end tests: `exarch simulate` as a child process on 127.0.0.1.

use super::{code, stderr, Env};
use std::io::BufRead;
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// A running `exarch simulate`, stopped when dropped.
pub struct Sim {
    pub child: Child,
    pub url: String,
    pub stats_url: String,
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn start_sim(env: &Env, state: &Path, args: &[&str]) -> Sim {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_exarch"));
    cmd.args(["simulate", "--listen", "127.0.0.1:0", "--state", state.to_str().unwrap()]).args(args);
    cmd.env("EXARCH_EWS_PASSWORD", "sim-secret").stdout(Stdio::piped());
    let _ = env;
    let mut child = cmd.spawn().unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let url = line
        .split_whitespace()
        .find(|w| (w.starts_with("http://") || w.starts_with("https://")) && w.ends_with("Exchange.asmx"))
        .expect(&line)
        .to_string();
    let stats_url = url.replace("/EWS/Exchange.asmx", "/stats");
    Sim { child, url, stats_url }
}

pub fn stats(sim: &Sim) -> serde_json::Value {
    // a tiny HTTP GET without extra dependencies
    use std::io::{Read, Write};
    let hostport = sim.stats_url.trim_start_matches("http://").split('/').next().unwrap().to_string();
    let mut s = std::net::TcpStream::connect(&hostport).unwrap();
    write!(s, "GET /stats HTTP/1.1\r\nHost: {hostport}\r\nConnection: close\r\n\r\n").unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let body = resp.split("\r\n\r\n").nth(1).unwrap();
    serde_json::from_str(body).unwrap()
}

pub fn pack_ews(env: &Env, sim: &Sim, extra: &[&str]) -> serde_json::Value {
    pack_ews_expecting(env, sim, extra, 0)
}

/// `pack --ews --all-mailboxes --json` that must end with exit code `want` (5: partial run).
pub fn pack_ews_expecting(env: &Env, sim: &Sim, extra: &[&str], want: i32) -> serde_json::Value {
    let repo = env.repo();
    let mut args = vec!["pack", "--repo", repo.to_str().unwrap(), "--ews", &sim.url, "--user", "svc", "--json"];
    // Every mailbox, unless the test names some.
    if !extra.iter().any(|a| *a == "--mailbox" || *a == "--mailboxes-file") {
        args.push("--all-mailboxes");
    }
    args.extend_from_slice(extra);
    let out = env.cmd(&args).env("EXARCH_EWS_PASSWORD", "sim-secret").output().unwrap();
    assert_eq!(code(&out), want, "pack --ews: {}\n{}", stderr(&out), String::from_utf8_lossy(&out.stdout));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `simulate --dump` into a fresh `name` under the scratch directory: every item the server holds.
pub fn dump(env: &Env, state: &Path, name: &str) -> std::path::PathBuf {
    let out = env.path(name);
    let _ = std::fs::remove_dir_all(&out);
    env.ok(&["simulate", "--state", state.to_str().unwrap(), "--dump", out.to_str().unwrap()]);
    out
}

/// Extracts each mailbox's latest snapshot and compares it with the simulator's dump.
pub fn assert_archive_matches_dump(env: &Env, state: &Path) {
    let dump = env.path("dump");
    let _ = std::fs::remove_dir_all(&dump);
    env.ok(&["simulate", "--state", state.to_str().unwrap(), "--dump", dump.to_str().unwrap()]);
    let out = env.path("extracted");
    let _ = std::fs::remove_dir_all(&out);
    for mb in std::fs::read_dir(&dump).unwrap() {
        let mb = mb.unwrap().file_name().into_string().unwrap();
        env.extract_latest(&mb, &out.join(&mb));
    }
    super::assert_same_tree(&dump, &out);
}

/// The simulator's base URL (`http://127.0.0.1:PORT`): the authority host for `--login-url`.
pub fn base(sim: &Sim) -> String {
    sim.url.trim_end_matches("/EWS/Exchange.asmx").to_string()
}

/// The flags that point `pack`/`replay` at the simulator's Graph side (the secret comes from
/// `EXARCH_GRAPH_CLIENT_SECRET`, which `graph_cmd` sets).
pub fn graph_flags(sim: &Sim) -> Vec<String> {
    let b = base(sim);
    [
        "--graph",
        "--tenant",
        "contoso",
        "--client-id",
        "exarch-app",
        "--login-url",
        &b,
        "--graph-url",
        &format!("{b}/v1.0"),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// `pack --graph --all-mailboxes --json` that must end with exit code `want`.
pub fn pack_graph_expecting(env: &Env, sim: &Sim, extra: &[&str], want: i32) -> serde_json::Value {
    let repo = env.repo();
    let flags = graph_flags(sim);
    let mut args = vec!["pack", "--repo", repo.to_str().unwrap(), "--all-mailboxes", "--json"];
    args.extend(flags.iter().map(String::as_str));
    args.extend_from_slice(extra);
    let out = env.cmd(&args).env("EXARCH_GRAPH_CLIENT_SECRET", "app-secret").output().unwrap();
    assert_eq!(code(&out), want, "pack --graph: {}\n{}", stderr(&out), String::from_utf8_lossy(&out.stdout));
    serde_json::from_slice(&out.stdout).unwrap()
}

pub fn pack_graph(env: &Env, sim: &Sim, extra: &[&str]) -> serde_json::Value {
    pack_graph_expecting(env, sim, extra, 0)
}
