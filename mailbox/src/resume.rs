//! Resume files: items an interrupted run (killed, or out of time) already stored, kept in the
//! local cache so the next run from the same parent carries them instead of exporting them again.
//! Format in SPEC.md §14.

use exarch_archive::{Id, Repository};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct ResumeFile {
    /// The parent snapshot the interrupted run started from; a different parent voids the file.
    pub parent: Option<String>,
    pub items: Vec<ResumeItem>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ResumeItem {
    pub source_id: String,
    pub change_key: String,
    pub name: String,
    pub size: u64,
    pub blob_hash: String,
    pub chunks: Vec<String>,
}

/// Where the resume file of a store lives.
pub fn path(repo: &Repository, store: &str) -> PathBuf {
    repo.cache_dir()
        .join("resume")
        .join(format!("{}.json", &Id::of_content(store.to_ascii_lowercase().as_bytes()).to_hex()[..24]))
}

/// The items an interrupted run from `parent` stored, by source id (none if there is no file, it
/// does not parse, or it belongs to another parent).
pub fn load(path: &Path, parent: Option<Id>) -> HashMap<String, ResumeItem> {
    std::fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice::<ResumeFile>(&b).ok())
        .filter(|f| f.parent == parent.map(|p| p.to_hex()))
        .map(|f| f.items.into_iter().map(|i| (i.source_id.clone(), i)).collect())
        .unwrap_or_default()
}

/// Writes the resume file for a checkpoint's items (private, atomically).
pub fn save(path: &Path, parent: Option<Id>, items: &[exarch_archive::manifest::Item]) -> std::io::Result<()> {
    let file = ResumeFile {
        parent: parent.map(|p| p.to_hex()),
        items: items
            .iter()
            .filter(|i| !i.name.is_empty())
            .map(|i| ResumeItem {
                source_id: String::from_utf8_lossy(&i.source_id).into_owned(),
                change_key: String::from_utf8_lossy(&i.change_key).into_owned(),
                name: String::from_utf8_lossy(&i.name).into_owned(),
                size: i.size,
                blob_hash: hex::encode(i.blob_hash),
                chunks: i.chunks.iter().map(hex::encode).collect(),
            })
            .collect(),
    };
    let bytes = serde_json::to_vec(&file).map_err(std::io::Error::other)?;
    exarch_archive::private_fs::write_atomic(path, &bytes)
}
