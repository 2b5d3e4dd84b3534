//! Which items of a snapshot a replay puts back: by folder path, item id or file name, and
//! received time.

use exarch_archive::manifest::{text, ArchivedItem, NO_TIME};
use exarch_archive::snapshot::Snapshot;

/// Which items of a snapshot go back.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// Folder paths (as `ls` shows them, case-insensitive): these folders and below.
    pub folders: Vec<String>,
    /// Item ids, or the file names `ls` shows.
    pub items: Vec<String>,
    /// Received at or after / before (Unix ms).
    pub since: Option<i64>,
    pub until: Option<i64>,
}

fn split_path(p: &str) -> Vec<String> {
    p.split(['/', '\\']).filter(|c| !c.is_empty()).map(str::to_string).collect()
}

fn starts_with_ci(path: &[String], prefix: &[String]) -> bool {
    prefix.len() <= path.len() && prefix.iter().zip(path).all(|(a, b)| a.eq_ignore_ascii_case(b))
}

fn item_matches(it: &ArchivedItem, id: &str) -> bool {
    let name = text(&it.name);
    text(&it.source_id) == id || name == id || name.strip_suffix(".fts") == Some(id)
}

/// The manifest indexes of the items `sel` picks.
pub fn select(m: &Snapshot, sel: &Selection) -> Vec<u32> {
    let paths: Vec<Vec<String>> = (0..m.folders().len() as u32).map(|i| m.folder_path(i)).collect();
    let filters: Vec<Vec<String>> = sel.folders.iter().map(|f| split_path(f)).collect();
    (0..m.item_count() as u32)
        .filter(|&k| {
            let it = &m.item(k as usize);
            let path = paths.get(it.folder.to_native() as usize).map(Vec::as_slice).unwrap_or(&[]);
            let received = it.received_ms.to_native();
            (filters.is_empty() || filters.iter().any(|f| starts_with_ci(path, f)))
                && (sel.items.is_empty() || sel.items.iter().any(|id| item_matches(it, id)))
                && sel.since.is_none_or(|s| received != NO_TIME && received >= s)
                && sel.until.is_none_or(|u| received != NO_TIME && received < u)
        })
        .collect()
}
