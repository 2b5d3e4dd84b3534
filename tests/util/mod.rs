//! Harness for end-to-end tests: runs the real `exarch` binary in a scratch directory.
#![allow(dead_code)]

#[path = "../../benches/corpus.rs"]
pub mod corpus;
pub mod garage;
pub mod sim;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub const PASSWORD: &str = "correct horse battery staple";

pub struct Env {
    pub dir: tempfile::TempDir,
}

impl Env {
    pub fn new() -> Env {
        Env { dir: tempfile::tempdir().unwrap() }
    }

    pub fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    pub fn repo(&self) -> PathBuf {
        self.path("repo")
    }

    /// A command for the binary with the test's repository password and cache.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_exarch"));
        c.args(args)
            .env("EXARCH_PASSWORD", PASSWORD)
            .env("EXARCH_CACHE_DIR", self.path("cache"))
            .env_remove("EXARCH_REPOSITORY")
            .env_remove("EXARCH_PASSWORD_FILE")
            .env_remove("EXARCH_PASSWORD_COMMAND")
            .env_remove("EXARCH_CONFIG")
            .env_remove("EXARCH_USE_PROFILE")
            .env_remove("EXARCH_LOG_FILE")
            .env_remove("RUST_LOG");
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    /// Runs and insists on exit code 0.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "exarch {args:?} failed with {:?}\nstdout: {}\nstderr: {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut a = args.to_vec();
        a.push("--json");
        serde_json::from_str(&self.ok(&a)).unwrap()
    }

    /// Packs directory `src` as a snapshot of `mailbox`, with extra flags (e.g. `--time T`).
    pub fn pack(&self, src: &Path, mailbox: &str, extra: &[&str]) -> String {
        let repo = self.repo();
        let mut args =
            vec!["pack", "--repo", repo.to_str().unwrap(), "--from-dir", src.to_str().unwrap(), "--mailbox", mailbox];
        args.extend_from_slice(extra);
        self.ok(&args)
    }

    /// Extracts the latest snapshot of `mailbox` to `to`, insisting on success.
    pub fn extract_latest(&self, mailbox: &str, to: &Path) {
        let repo = self.repo();
        self.ok(&[
            "extract",
            "--repo",
            repo.to_str().unwrap(),
            "latest",
            "--mailbox",
            mailbox,
            "--to",
            to.to_str().unwrap(),
        ]);
    }

    pub fn init(&self) {
        let repo = self.repo();
        self.ok(&["init", "--repo", repo.to_str().unwrap()]);
    }
}

pub fn code(out: &Output) -> i32 {
    out.status.code().expect("exited normally")
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Every regular file under `dir`, relative path → bytes.
pub fn tree(dir: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else {
                let rel = e.path().strip_prefix(dir).unwrap().to_string_lossy().replace('\\', "/");
                out.insert(rel, std::fs::read(e.path()).unwrap());
            }
        }
    }
    out
}

/// Asserts two trees are identical, also with `diff -r` when the system has it.
pub fn assert_same_tree(a: &Path, b: &Path) {
    let (ta, tb) = (tree(a), tree(b));
    assert_eq!(ta.keys().collect::<Vec<_>>(), tb.keys().collect::<Vec<_>>(), "file lists differ");
    for (k, v) in &ta {
        assert!(tb[k] == *v, "{k} differs");
    }
    if let Ok(out) = Command::new("diff").arg("-r").arg(a).arg(b).output() {
        assert!(out.status.success(), "diff -r: {}", String::from_utf8_lossy(&out.stdout));
    }
}

pub fn dir_size(dir: &Path) -> u64 {
    tree(dir).values().map(|v| v.len() as u64).sum()
}

/// Files of a repository kind directory (e.g. "data", "snapshots"), recursively.
pub fn repo_files(repo: &Path, kind: &str) -> Vec<PathBuf> {
    tree(&repo.join(kind)).keys().map(|k| repo.join(kind).join(k)).collect()
}
