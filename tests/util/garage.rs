//! A three-node Garage cluster on 127.0.0.1 for the object-storage tests, started by
//! `tests/garage/cluster.sh` and stopped when dropped. Where `garage` is not installed the tests
//! say SKIPPED, unless `EXARCH_REQUIRE_GARAGE=1` (CI) makes that a failure.

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct Garage {
    pub dir: tempfile::TempDir,
    /// The S3 endpoints of the three nodes; tests talk to the first.
    pub endpoints: Vec<String>,
    pub bucket: String,
    pub env: Vec<(String, String)>,
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/garage/cluster.sh")
}

/// The garage binary: $GARAGE, or `garage` on the PATH, or in ~/.cargo/bin.
fn binary() -> Option<PathBuf> {
    if let Some(g) = std::env::var_os("GARAGE") {
        return Some(g.into());
    }
    if Command::new("garage").arg("--version").output().is_ok_and(|o| o.status.success()) {
        return Some("garage".into());
    }
    let home = std::env::var_os("HOME")?;
    let p = Path::new(&home).join(".cargo/bin/garage");
    p.exists().then_some(p)
}

fn ports_free(base: u16) -> bool {
    (0..3).chain(10..13).chain(20..23).all(|d| std::net::TcpListener::bind(("127.0.0.1", base + d)).is_ok())
}

impl Garage {
    /// A fresh cluster, or None (test skipped) where garage is missing.
    pub fn start() -> Option<Garage> {
        let Some(bin) = binary() else {
            assert!(
                std::env::var("EXARCH_REQUIRE_GARAGE").as_deref() != Ok("1"),
                "garage is not installed (cargo install garage --locked)"
            );
            eprintln!("SKIPPED: garage is needed (cargo install garage --locked)");
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        let mut base = 0u16;
        for _ in 0..50 {
            let b = 20_000 + (rand::random::<u16>() % 4000) * 10;
            if ports_free(b) {
                base = b;
                break;
            }
        }
        assert!(base != 0, "no free ports for garage");
        let out = Command::new("bash")
            .arg(script())
            .args(["start", dir.path().to_str().unwrap(), &base.to_string()])
            .env("GARAGE", &bin)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "starting garage: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let lines = std::fs::read_to_string(dir.path().join("env")).unwrap();
        let env: Vec<(String, String)> =
            lines.lines().filter_map(|l| l.split_once('=')).map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()).unwrap_or_default();
        Some(Garage {
            endpoints: get("EXARCH_TEST_S3_ENDPOINTS").split_whitespace().map(String::from).collect(),
            bucket: get("EXARCH_TEST_S3_BUCKET"),
            env: env.iter().filter(|(k, _)| k.starts_with("AWS_")).cloned().collect(),
            dir,
        })
    }

    /// `s3:http://127.0.0.1:PORT/BUCKET/PREFIX` on the first node.
    pub fn repo(&self, prefix: &str) -> String {
        format!("s3:{}/{}/{prefix}", self.endpoints[0], self.bucket)
    }

    /// Kills node `n` (1..3) at once.
    pub fn kill(&self, n: u32) {
        let out = Command::new("bash")
            .arg(script())
            .args(["kill", self.dir.path().to_str().unwrap(), &n.to_string()])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }

    /// A command with the cluster's credentials.
    pub fn apply(&self, c: &mut Command) {
        for (k, v) in &self.env {
            c.env(k, v);
        }
    }
}

impl Drop for Garage {
    fn drop(&mut self) {
        let _ = Command::new("bash").arg(script()).args(["stop", self.dir.path().to_str().unwrap()]).output();
    }
}
