//! The replay journal: which items a replay has put into the target mailbox, and under which id.
//!
//! It lives in the local cache (`<cache>/<repository id>/replay/<key>.jsonl`, one file per
//! snapshot, target mailbox, server and target root) and is written before and after every
//! UploadItems request, so that a replay that was killed continues where it stopped and creates
//! no duplicate:
//! - `{"run":TIME}` starts a run; `{"complete":true}` ends one;
//! - `{"sent":[K,…]}` is written before a request with items K (manifest item indexes);
//! - `{"ok":[[K,ID],…]}` after it, with the id each item got; `{"failed":[K,…]}` for refusals.
//!
//! Items an interrupted run uploaded are not sent again; items it sent without learning the outcome
//! are looked up in their folder first. Items of earlier complete runs are uploaded again with
//! `UpdateOrCreate` on the id they got, so a second replay updates instead of duplicating.

use crate::error::MailboxError;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

type Result<T, E = MailboxError> = std::result::Result<T, E>;

/// The journal's own failures: it lives in the local cache.
fn cache(what: &str, path: &Path, e: impl std::fmt::Display) -> MailboxError {
    MailboxError::Cache(format!("{what} replay journal {}: {e}", path.display()))
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Line {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    run: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sent: Option<Vec<u32>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ok: Option<Vec<(u32, String)>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    failed: Option<Vec<u32>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    complete: Option<bool>,
}

/// What earlier runs left behind.
#[derive(Debug, Default)]
pub struct Recovered {
    /// The id each item got in the target mailbox, from every earlier run.
    pub mapping: HashMap<u32, String>,
    /// Items an interrupted run uploaded: not sent again.
    pub done: HashSet<u32>,
    /// Items an interrupted run sent without learning the outcome: looked up before sending again.
    pub uncertain: HashSet<u32>,
    /// The last run did not finish.
    pub interrupted: bool,
}

pub struct Journal {
    path: PathBuf,
    file: File,
}

fn read(path: &Path) -> Result<Recovered> {
    let mut r = Recovered::default();
    let f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(r),
        Err(e) => return Err(cache("reading", path, e)),
    };
    for line in std::io::BufReader::new(f).lines() {
        // A line cut off by a kill ends the journal; what came before stands.
        let Ok(line) = line else { break };
        let Ok(l) = serde_json::from_str::<Line>(&line) else { break };
        if l.run.is_some() {
            // A run begins (or, after an interruption, continues: compact() carried its state).
            r.interrupted = true;
        }
        if let Some(keys) = l.sent {
            r.uncertain.extend(keys);
        }
        if let Some(ok) = l.ok {
            for (k, id) in ok {
                r.uncertain.remove(&k);
                r.done.insert(k);
                r.mapping.insert(k, id);
            }
        }
        if let Some(keys) = l.failed {
            for k in keys {
                r.uncertain.remove(&k);
            }
        }
        if l.complete == Some(true) {
            r.interrupted = false;
            r.done.clear();
            r.uncertain.clear();
        }
    }
    if !r.interrupted {
        r.done.clear();
        r.uncertain.clear();
    }
    Ok(r)
}

fn line(l: &Line) -> String {
    let mut s = serde_json::to_string(l).unwrap_or_default();
    s.push('\n');
    s
}

/// Rewrites the journal compactly: earlier complete runs as one mapping, then the interrupted
/// run (if any). This also drops a line a kill cut off, so appends start on a clean line.
fn compact(path: &Path, r: &Recovered, run_started: Option<&str>) -> Result<()> {
    let mut text = String::new();
    let mut earlier: Vec<(u32, String)> =
        r.mapping.iter().filter(|(k, _)| !r.done.contains(k)).map(|(k, v)| (*k, v.clone())).collect();
    earlier.sort();
    if !earlier.is_empty() {
        text.push_str(&line(&Line { ok: Some(earlier), ..Line::default() }));
        text.push_str(&line(&Line { complete: Some(true), ..Line::default() }));
    }
    if let Some(t) = run_started {
        text.push_str(&line(&Line { run: Some(t.to_string()), ..Line::default() }));
        let mut done: Vec<(u32, String)> = r.done.iter().map(|k| (*k, r.mapping[k].clone())).collect();
        done.sort();
        if !done.is_empty() {
            text.push_str(&line(&Line { ok: Some(done), ..Line::default() }));
        }
        let mut unc: Vec<u32> = r.uncertain.iter().copied().collect();
        unc.sort();
        if !unc.is_empty() {
            text.push_str(&line(&Line { sent: Some(unc), ..Line::default() }));
        }
    }
    exarch_archive::private_fs::write_atomic(path, text.as_bytes()).map_err(|e| cache("writing", path, e))
}

impl Journal {
    /// Opens the journal at `path` for a new run (or the continuation of an interrupted one).
    pub fn open(path: &Path, now: &str) -> Result<(Journal, Recovered)> {
        let r = read(path)?;
        compact(path, &r, Some(now))?;
        let file = std::fs::OpenOptions::new().append(true).open(path).map_err(|e| cache("opening", path, e))?;
        Ok((Journal { path: path.to_path_buf(), file }, r))
    }

    /// Reads what earlier runs left, without changing anything (for `--dry-run`).
    pub fn peek(path: &Path) -> Result<Recovered> {
        read(path)
    }

    fn append(&mut self, l: &Line) -> Result<()> {
        self.file.write_all(line(l).as_bytes()).map_err(|e| cache("writing", &self.path, e))?;
        self.file.sync_data().map_err(|e| cache("syncing", &self.path, e))?;
        Ok(())
    }

    pub fn sent(&mut self, keys: &[u32]) -> Result<()> {
        self.append(&Line { sent: Some(keys.to_vec()), ..Line::default() })
    }

    pub fn ok(&mut self, items: Vec<(u32, String)>) -> Result<()> {
        if items.is_empty() {
            return Ok(());
        }
        self.append(&Line { ok: Some(items), ..Line::default() })
    }

    pub fn failed(&mut self, keys: Vec<u32>) -> Result<()> {
        if keys.is_empty() {
            return Ok(());
        }
        self.append(&Line { failed: Some(keys), ..Line::default() })
    }

    /// Ends the run: the journal keeps only the id of every item restored so far.
    pub fn complete(self, mapping: &HashMap<u32, String>) -> Result<()> {
        let r = Recovered { mapping: mapping.clone(), ..Recovered::default() };
        compact(&self.path, &r, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interrupted_runs_resume_and_complete_runs_keep_ids() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("j.jsonl");
        let (mut j, r) = Journal::open(&p, "t1").unwrap();
        assert!(r.mapping.is_empty() && !r.interrupted);
        j.sent(&[1, 2, 3]).unwrap();
        j.ok(vec![(1, "A".into())]).unwrap();
        j.failed(vec![2]).unwrap();
        drop(j);
        // a kill cut the last line in half
        std::fs::OpenOptions::new().append(true).open(&p).unwrap().write_all(b"{\"ok\":[[3,\"C").unwrap();
        let (j, r) = Journal::open(&p, "t2").unwrap();
        assert!(r.interrupted);
        assert_eq!(r.done, HashSet::from([1]));
        assert_eq!(r.uncertain, HashSet::from([3]));
        assert_eq!(r.mapping[&1], "A");
        let mut all = r.mapping.clone();
        all.insert(3, "C".into());
        j.complete(&all).unwrap();
        let (mut j, r) = Journal::open(&p, "t3").unwrap();
        assert!(!r.interrupted && r.done.is_empty() && r.uncertain.is_empty());
        assert_eq!(r.mapping.len(), 2);
        j.sent(&[1]).unwrap();
        drop(j);
        let r = Journal::peek(&p).unwrap();
        assert!(r.interrupted);
        assert_eq!(r.uncertain, HashSet::from([1]));
        assert_eq!(r.mapping[&3], "C");
    }
}
