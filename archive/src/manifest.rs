//! Snapshot manifests: the rkyv schema of a snapshot's summary and of its folder tree and items.
//!
//! Strings are stored as UTF-8 byte vectors (`Vec<u8>`), not rkyv strings: a byte vector has one
//! fixed layout (relative pointer + length), which keeps the published schema short for readers in
//! other languages. The field order below is the on-disk order; SPEC.md lists every offset, and the
//! `layout_is_as_published` test pins them.

use rkyv::{Archive, Deserialize, Serialize};

pub const MANIFEST_VERSION: u32 = 1;
/// `Folder::parent` of the root folder.
pub const NO_PARENT: u32 = u32::MAX;
/// `Item::received_ms` when the source gave no time.
pub const NO_TIME: i64 = i64::MIN;
/// `Item::flags`: a folder-associated (hidden) item, restored with `IsAssociated`.
pub const ITEM_ASSOCIATED: u32 = 1;

/// Small, separately sealed part of a snapshot: enough to list snapshots without opening manifests.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Snapshot time, Unix milliseconds UTC.
    pub time_ms: i64,
    pub items: u64,
    /// Sum of item sizes.
    pub bytes: u64,
    /// Items the source could not deliver (listed in the manifest).
    pub skipped: u64,
    pub version: u32,
    /// Shared by the snapshots taken in one run.
    pub run_id: [u8; 16],
    /// Unkeyed BLAKE3 of the sealed manifest section; binds the two sections together.
    pub manifest_hash: [u8; 32],
    /// Parent snapshot id (32 bytes) or empty.
    pub parent: Vec<u8>,
    /// Mailbox address or the name given with `--mailbox`.
    pub mailbox: Vec<u8>,
    /// Where the items came from, e.g. `dir:/srv/export` or `ews:https://mail.example.com/EWS/Exchange.asmx`.
    pub source: Vec<u8>,
    pub host: Vec<u8>,
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default)]
pub struct Manifest {
    /// Folder 0 is the root; every other folder names its parent by index.
    pub folders: Vec<Folder>,
    pub items: Vec<Item>,
    pub skipped: Vec<Skipped>,
    /// Opaque to the engine: what the source needs to continue incrementally (sync states).
    pub source_state: Vec<u8>,
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Folder {
    /// Index of the parent folder, `NO_PARENT` for the root.
    pub parent: u32,
    /// Display name: one path component.
    pub name: Vec<u8>,
    /// The source's folder id (EWS FolderId), or empty.
    pub source_id: Vec<u8>,
    /// The folder class (`IPF.Note`, `IPF.Appointment`, ...), or empty.
    pub folder_class: Vec<u8>,
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// Received (or modified) time, Unix milliseconds UTC; `NO_TIME` when unknown.
    pub received_ms: i64,
    /// Length of the item's blob in bytes.
    pub size: u64,
    /// Index into `Manifest::folders`.
    pub folder: u32,
    /// `ITEM_*` bits.
    pub flags: u32,
    /// Unkeyed BLAKE3 of the whole blob.
    pub blob_hash: [u8; 32],
    /// File name of the item when extracted (unique within its folder).
    pub name: Vec<u8>,
    /// The source's item id (EWS ItemId, or the relative path for a directory source).
    pub source_id: Vec<u8>,
    pub change_key: Vec<u8>,
    pub item_class: Vec<u8>,
    pub subject: Vec<u8>,
    pub sender: Vec<u8>,
    /// Chunk ids in order; the blob is their concatenation.
    pub chunks: Vec<[u8; 32]>,
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub folder: u32,
    pub source_id: Vec<u8>,
    /// The source's error, e.g. `ErrorItemCorrupt: ...`.
    pub error: Vec<u8>,
}

/// Lossy UTF-8 view of a stored text field.
pub fn text(v: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(v)
}

impl ArchivedManifest {
    /// The folders from below the root down to folder `idx` (root excluded), as indexes. Stops at
    /// a cycle or a parent index outside the table (a damaged manifest).
    pub fn ancestors(&self, idx: u32) -> Vec<u32> {
        let mut out = Vec::new();
        let mut cur = idx;
        let mut guard = 0;
        while cur != NO_PARENT && (cur as usize) < self.folders.len() && guard <= self.folders.len() {
            let f = &self.folders[cur as usize];
            if f.parent.to_native() != NO_PARENT {
                out.push(cur);
            }
            cur = f.parent.to_native();
            guard += 1;
        }
        out.reverse();
        out
    }

    /// The folder path of folder `idx` as its components (root excluded).
    pub fn folder_path(&self, idx: u32) -> Vec<String> {
        self.ancestors(idx).into_iter().map(|i| text(&self.folders[i as usize].name).into_owned()).collect()
    }

    /// Every folder's path, `/`-joined, indexed by folder number (the root's is empty).
    pub fn folder_paths(&self) -> Vec<String> {
        (0..self.folders.len() as u32).map(|i| self.folder_path(i).join("/")).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::{align_of, offset_of, size_of};

    #[test]
    fn layout_is_as_published() {
        // These numbers are in format-spec/SPEC.md; change both together (and bump the version).
        assert_eq!((size_of::<ArchivedSummary>(), align_of::<ArchivedSummary>()), (120, 8));
        assert_eq!(offset_of!(ArchivedSummary, time_ms), 0);
        assert_eq!(offset_of!(ArchivedSummary, items), 8);
        assert_eq!(offset_of!(ArchivedSummary, bytes), 16);
        assert_eq!(offset_of!(ArchivedSummary, skipped), 24);
        assert_eq!(offset_of!(ArchivedSummary, version), 32);
        assert_eq!(offset_of!(ArchivedSummary, run_id), 36);
        assert_eq!(offset_of!(ArchivedSummary, manifest_hash), 52);
        assert_eq!(offset_of!(ArchivedSummary, parent), 84);
        assert_eq!(offset_of!(ArchivedSummary, mailbox), 92);
        assert_eq!(offset_of!(ArchivedSummary, source), 100);
        assert_eq!(offset_of!(ArchivedSummary, host), 108);

        assert_eq!((size_of::<ArchivedManifest>(), align_of::<ArchivedManifest>()), (32, 4));
        assert_eq!(offset_of!(ArchivedManifest, items), 8);
        assert_eq!(offset_of!(ArchivedManifest, skipped), 16);
        assert_eq!(offset_of!(ArchivedManifest, source_state), 24);

        assert_eq!((size_of::<ArchivedFolder>(), align_of::<ArchivedFolder>()), (28, 4));
        assert_eq!(offset_of!(ArchivedFolder, name), 4);
        assert_eq!(offset_of!(ArchivedFolder, source_id), 12);
        assert_eq!(offset_of!(ArchivedFolder, folder_class), 20);

        assert_eq!((size_of::<ArchivedItem>(), align_of::<ArchivedItem>()), (112, 8));
        assert_eq!(offset_of!(ArchivedItem, size), 8);
        assert_eq!(offset_of!(ArchivedItem, folder), 16);
        assert_eq!(offset_of!(ArchivedItem, flags), 20);
        assert_eq!(offset_of!(ArchivedItem, blob_hash), 24);
        assert_eq!(offset_of!(ArchivedItem, name), 56);
        assert_eq!(offset_of!(ArchivedItem, source_id), 64);
        assert_eq!(offset_of!(ArchivedItem, change_key), 72);
        assert_eq!(offset_of!(ArchivedItem, item_class), 80);
        assert_eq!(offset_of!(ArchivedItem, subject), 88);
        assert_eq!(offset_of!(ArchivedItem, sender), 96);
        assert_eq!(offset_of!(ArchivedItem, chunks), 104);

        assert_eq!((size_of::<ArchivedSkipped>(), align_of::<ArchivedSkipped>()), (20, 4));
    }

    #[test]
    fn round_trip_and_folder_paths() {
        let m = Manifest {
            folders: vec![
                Folder { parent: NO_PARENT, name: vec![], source_id: vec![], folder_class: vec![] },
                Folder {
                    parent: 0,
                    name: b"Inbox".to_vec(),
                    source_id: b"f1".to_vec(),
                    folder_class: b"IPF.Note".to_vec(),
                },
                Folder { parent: 1, name: b"Projects".to_vec(), source_id: b"f2".to_vec(), folder_class: vec![] },
            ],
            items: vec![],
            skipped: vec![],
            source_state: b"state".to_vec(),
        };
        let bytes = rkyv::to_bytes::<rkyv::rancor::Error>(&m).unwrap();
        let a = rkyv::access::<ArchivedManifest, rkyv::rancor::Error>(&bytes).unwrap();
        assert_eq!(a.folder_path(2), vec!["Inbox", "Projects"]);
        assert!(a.folder_path(0).is_empty());
        assert_eq!(a.ancestors(2), vec![1, 2]);
        let mut bad = bytes.clone();
        let n = bad.len();
        bad[n - 28] = 0x7f; // a relative pointer in the root now points outside the buffer
        assert!(rkyv::access::<ArchivedManifest, rkyv::rancor::Error>(&bad).is_err());
    }
}
