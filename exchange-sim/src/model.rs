//! The simulated Exchange organisation: mailboxes, folders and items, deterministic from a seed.
//!
//! Item bodies are generated on demand from (seed, item key, version) by `blob.rs`, so a state
//! directory holds only metadata (`state.json`) plus the blobs that clients uploaded.

use crate::blob::{blob_props, generate_blob};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::path::Path;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct State {
    pub seed: u64,
    pub domain: String,
    /// Global modification counter: every create, change and delete gets the next value.
    pub seq: u64,
    pub mailboxes: Vec<Mailbox>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Mailbox {
    pub address: String,
    /// The public folder store (address `public-folders`): reached without impersonation, listed
    /// with FindFolder/FindItem only, never returned by ResolveNames.
    #[serde(default)]
    pub public: bool,
    /// Which part of the user's mailbox this is (`stores.rs`).
    #[serde(default)]
    pub part: crate::stores::Part,
    pub folders: Vec<Folder>,
    pub items: Vec<Item>,
    pub tombstones: Vec<Tombstone>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Folder {
    pub id: String,
    /// The default folder's role (`inbox`, `sentitems`, ...), empty for user folders.
    #[serde(default)]
    pub distinguished: String,
    /// Empty for the top of the information store (`msgfolderroot`).
    pub parent_id: String,
    pub name: String,
    pub class: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Item {
    pub id: String,
    pub folder_id: String,
    pub change_key: String,
    pub created_seq: u64,
    pub seq: u64,
    pub class: String,
    pub subject: String,
    pub sender: String,
    pub received: String,
    /// Fails any ExportItems batch that contains it.
    pub dirty: bool,
    /// A folder-associated (hidden) item: a view, a rule, a form.
    #[serde(default)]
    pub associated: bool,
    pub content: Content,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Content {
    Generated {
        key: u64,
        version: u32,
    },
    /// Uploaded by a client (UploadItems): stored as `uploads/<hash>` in the state directory.
    Uploaded {
        hash: String,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Tombstone {
    pub id: String,
    pub folder_id: String,
    pub seq: u64,
}

pub(crate) const WORDS: &[&str] = &[
    "meeting",
    "budget",
    "quarter",
    "please",
    "review",
    "attached",
    "regards",
    "thanks",
    "project",
    "deadline",
    "customer",
    "invoice",
    "schedule",
    "update",
    "team",
    "report",
    "server",
    "mailbox",
    "migration",
    "backup",
    "calendar",
    "tomorrow",
    "approval",
    "contract",
    "the",
    "and",
    "for",
    "with",
    "we",
    "you",
    "will",
    "is",
];

/// Folder layout of every mailbox: (name, parent index or none, class).
const FOLDERS: &[(&str, Option<usize>, &str)] = &[
    ("Top of Information Store", None, ""),
    ("Inbox", Some(0), "IPF.Note"),
    ("Sent Items", Some(0), "IPF.Note"),
    ("Deleted Items", Some(0), "IPF.Note"),
    ("Calendar", Some(0), "IPF.Appointment"),
    ("Contacts", Some(0), "IPF.Contact"),
    ("Tasks", Some(0), "IPF.Task"),
    ("Projects", Some(1), "IPF.Note"),
    ("Alpha", Some(7), "IPF.Note"),
    ("Archive 2025", Some(0), "IPF.Note"),
];

fn token(rng: &mut ChaCha8Rng, prefix: &str) -> String {
    let mut b = [0u8; 18];
    rng.fill(&mut b);
    format!("{prefix}{}", base64::Engine::encode(&base64::engine::general_purpose::STANDARD, b))
}

impl State {
    /// A new organisation: `mailboxes` mailboxes `user1@domain`.. with `items` items each.
    pub fn generate(seed: u64, domain: &str, mailboxes: usize, items: usize, dirty_rate: f64) -> State {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut state = State { seed, domain: domain.to_string(), seq: 0, mailboxes: Vec::new() };
        for m in 0..mailboxes {
            let mut mb = Mailbox {
                address: format!("user{}@{domain}", m + 1),
                public: false,
                part: crate::stores::Part::Primary,
                folders: Vec::new(),
                items: Vec::new(),
                tombstones: Vec::new(),
            };
            for (name, parent, class) in FOLDERS {
                let id = token(&mut rng, "AQMkAD");
                let parent_id = parent.map(|p| mb.folders[p].id.clone()).unwrap_or_default();
                let distinguished = DEFAULT_FOLDERS
                    .iter()
                    .find(|(n, _, _)| n == name)
                    .map(|(_, d, _)| d.to_string())
                    .unwrap_or_default();
                mb.folders.push(Folder {
                    id,
                    distinguished,
                    parent_id,
                    name: name.to_string(),
                    class: class.to_string(),
                });
            }
            for i in 0..items {
                let folder = 1 + rng.gen_range(0..FOLDERS.len() - 1);
                let mut item = state.new_item(&mut rng, &mb.folders[folder], m, dirty_rate);
                if i % 40 == 39 {
                    // One item in forty is a hidden folder-associated item (a saved view).
                    item.associated = true;
                    item.class = "IPM.Microsoft.FolderDesign.NamedView".into();
                }
                mb.items.push(item);
            }
            state.mailboxes.push(mb);
        }
        state
    }

    pub(crate) fn new_item(&mut self, rng: &mut ChaCha8Rng, folder: &Folder, mailbox: usize, dirty_rate: f64) -> Item {
        self.seq += 1;
        let class = match folder.class.as_str() {
            "IPF.Appointment" => "IPM.Appointment",
            "IPF.Contact" => "IPM.Contact",
            "IPF.Task" => "IPM.Task",
            _ => "IPM.Note",
        };
        let day = rng.gen_range(0..700);
        let received =
            time::OffsetDateTime::from_unix_timestamp(1_735_689_600 + day * 86_400 + rng.gen_range(0..86_400))
                .expect("valid time")
                .format(&time::format_description::well_known::Rfc3339)
                .expect("formats");
        Item {
            id: token(rng, "AAMkAD"),
            folder_id: folder.id.clone(),
            change_key: token(rng, "CQAAAB"),
            created_seq: self.seq,
            seq: self.seq,
            class: class.to_string(),
            subject: format!(
                "{} {} {}",
                WORDS[rng.gen_range(0..WORDS.len())],
                WORDS[rng.gen_range(0..WORDS.len())],
                self.seq
            ),
            sender: format!("user{}@{}", rng.gen_range(1..=(mailbox + 5)), self.domain),
            received,
            dirty: rng.gen_bool(dirty_rate.clamp(0.0, 1.0)),
            associated: false,
            content: Content::Generated { key: rng.gen(), version: 0 },
        }
    }

    /// Mutates `pct` percent of each mailbox's items: a third changed, a third deleted, and as many
    /// new items as a third of that again. Returns (new, changed, deleted).
    pub fn churn(&mut self, pct: f64) -> (usize, usize, usize) {
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed ^ self.seq.wrapping_mul(0x9e37_79b9));
        let (mut n, mut c, mut d) = (0, 0, 0);
        for m in 0..self.mailboxes.len() {
            let count = ((self.mailboxes[m].items.len() as f64) * pct / 100.0).round() as usize;
            for k in 0..count {
                let len = self.mailboxes[m].items.len();
                if len == 0 {
                    break;
                }
                let i = rng.gen_range(0..len);
                match k % 3 {
                    0 => {
                        self.seq += 1;
                        let seq = self.seq;
                        let it = &mut self.mailboxes[m].items[i];
                        if let Content::Generated { version, .. } = &mut it.content {
                            *version += 1;
                        }
                        it.change_key = token(&mut rng, "CQAAAB");
                        it.seq = seq;
                        c += 1;
                    }
                    1 => {
                        self.seq += 1;
                        let it = self.mailboxes[m].items.remove(i);
                        self.mailboxes[m].tombstones.push(Tombstone {
                            id: it.id,
                            folder_id: it.folder_id,
                            seq: self.seq,
                        });
                        d += 1;
                    }
                    _ => {
                        // Any folder but the top of the store (a wiped mailbox or the public
                        // folders have fewer than the default layout).
                        let open: Vec<&Folder> =
                            self.mailboxes[m].folders.iter().filter(|f| !f.parent_id.is_empty()).collect();
                        if open.is_empty() {
                            continue;
                        }
                        let folder = open[rng.gen_range(0..open.len())].clone();
                        let item = self.new_item(&mut rng, &folder, m, 0.0);
                        self.mailboxes[m].items.push(item);
                        n += 1;
                    }
                }
            }
        }
        (n, c, d)
    }

    pub fn mailbox(&self, address: &str) -> Option<usize> {
        self.mailboxes.iter().position(|m| {
            !m.public && m.part == crate::stores::Part::Primary && m.address.eq_ignore_ascii_case(address)
        })
    }

    /// The public folder store, if this organisation has one.
    pub fn public_store(&self) -> Option<usize> {
        self.mailboxes.iter().position(|m| m.public)
    }

    /// Adds public folders holding `items` items (deterministic from the seed; the mailboxes are
    /// not touched).
    pub fn add_public_folders(&mut self, items: usize) {
        const LAYOUT: &[(&str, Option<usize>, &str)] = &[
            ("IPM_SUBTREE", None, ""),
            ("Company", Some(0), "IPF.Note"),
            ("Announcements", Some(1), "IPF.Note"),
            ("IT", Some(0), "IPF.Note"),
            ("Change Calendar", Some(3), "IPF.Appointment"),
            ("Suppliers", Some(0), "IPF.Contact"),
        ];
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed ^ 0x0090_b11c);
        let mut pf = Mailbox {
            address: exarch_ews_source::PUBLIC_FOLDERS.to_string(),
            public: true,
            part: crate::stores::Part::Primary,
            folders: Vec::new(),
            items: Vec::new(),
            tombstones: Vec::new(),
        };
        for (name, parent, class) in LAYOUT {
            let id = token(&mut rng, "AQEuAA");
            let parent_id = parent.map(|p| pf.folders[p].id.clone()).unwrap_or_default();
            pf.folders.push(Folder {
                id,
                distinguished: String::new(),
                parent_id,
                name: name.to_string(),
                class: class.to_string(),
            });
        }
        for _ in 0..items {
            let folder = pf.folders[1 + rng.gen_range(0..LAYOUT.len() - 1)].clone();
            let item = self.new_item(&mut rng, &folder, 0, 0.0);
            pf.items.push(item);
        }
        self.mailboxes.push(pf);
    }

    pub fn load(dir: &Path) -> std::io::Result<Option<State>> {
        match std::fs::read(dir.join("state.json")) {
            Ok(b) => serde_json::from_slice(&b).map(Some).map_err(std::io::Error::other),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Writes `state.json` whole or not at all (temporary file, data sync, rename), with the one
    /// helper every exarch file write goes through.
    pub fn save(&self, dir: &Path) -> std::io::Result<()> {
        let json = serde_json::to_vec(self).map_err(std::io::Error::other)?;
        exarch_archive::private_fs::write_atomic(&dir.join("state.json"), &json)
    }

    /// The folder path of `folder_id` below the top of the store, as names.
    pub fn folder_path(&self, mailbox: usize, folder_id: &str) -> Vec<String> {
        let mb = &self.mailboxes[mailbox];
        let mut out = Vec::new();
        let mut cur = folder_id.to_string();
        for _ in 0..mb.folders.len() {
            let Some(f) = mb.folders.iter().find(|f| f.id == cur) else { break };
            if f.parent_id.is_empty() {
                break;
            }
            out.push(f.name.clone());
            cur = f.parent_id.clone();
        }
        out.reverse();
        out
    }

    /// The item's full-fidelity stream.
    pub fn blob(&self, dir: &Path, item: &Item) -> std::io::Result<Vec<u8>> {
        match &item.content {
            Content::Uploaded { hash } => std::fs::read(dir.join("uploads").join(hash)),
            Content::Generated { key, version } => Ok(generate_blob(self.seed, *key, *version, item)),
        }
    }
}

/// Why the simulated store refused an operation: an EWS response code and its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: &'static str,
    pub message: String,
}

fn refuse(code: &'static str, message: impl Into<String>) -> Refusal {
    Refusal { code, message: message.into() }
}

/// The folders a wipe keeps: the mailbox's default folders.
/// The default folders: English name, role (distinguished id), German name.
const DEFAULT_FOLDERS: &[(&str, &str, &str)] = &[
    ("Inbox", "inbox", "Posteingang"),
    ("Sent Items", "sentitems", "Gesendete Elemente"),
    ("Deleted Items", "deleteditems", "Gelöschte Elemente"),
    ("Calendar", "calendar", "Kalender"),
    ("Contacts", "contacts", "Kontakte"),
    ("Tasks", "tasks", "Aufgaben"),
];

impl State {
    fn rng(&self, salt: u64) -> ChaCha8Rng {
        ChaCha8Rng::seed_from_u64(self.seed ^ salt ^ self.seq.wrapping_mul(0x9e37_79b9_7f4a_7c15))
    }

    /// Names the default folders of every mailbox as a server in `locale` does (`en`, `de`).
    pub fn localize(&mut self, locale: &str) -> Result<(), String> {
        let pick = |(en, _, de): &(&str, &str, &str)| -> Result<String, String> {
            match locale {
                "en" => Ok(en.to_string()),
                "de" => Ok(de.to_string()),
                other => Err(format!("unknown locale {other}: use en or de")),
            }
        };
        for mb in &mut self.mailboxes {
            for f in &mut mb.folders {
                if let Some(d) = DEFAULT_FOLDERS.iter().find(|d| d.1 == f.distinguished) {
                    f.name = pick(d)?;
                }
            }
        }
        Ok(())
    }

    /// The folder with this distinguished id (`msgfolderroot` is the top of the store).
    pub fn distinguished_folder(&self, mailbox: usize, id: &str) -> Option<&Folder> {
        let folders = &self.mailboxes[mailbox].folders;
        if id == "msgfolderroot" || id == "publicfoldersroot" || id == self.mailboxes[mailbox].part.top() {
            return folders.iter().find(|f| f.parent_id.is_empty());
        }
        folders.iter().find(|f| f.distinguished == id)
    }

    /// The mailbox's own root (distinguished `root`), above the top of the information store; it
    /// holds nothing but `msgfolderroot` here. Not stored: made up when a client asks for it.
    pub fn mailbox_root(&self, mailbox: usize) -> Folder {
        Folder {
            id: format!("{}.root", self.root_folder(mailbox)),
            distinguished: "root".into(),
            parent_id: String::new(),
            name: "root".into(),
            class: String::new(),
        }
    }

    /// The id of the top of the information store (`msgfolderroot`).
    pub fn root_folder(&self, mailbox: usize) -> String {
        self.mailboxes[mailbox]
            .folders
            .iter()
            .find(|f| f.parent_id.is_empty())
            .map(|f| f.id.clone())
            .unwrap_or_default()
    }

    /// Empties a mailbox as a careless user or a bad script would: every item deleted, and every
    /// folder that is not a default folder removed. Returns (items, folders) removed.
    pub fn wipe(&mut self, mailbox: usize) -> (usize, usize) {
        let items = std::mem::take(&mut self.mailboxes[mailbox].items);
        let n = items.len();
        for it in items {
            self.seq += 1;
            self.mailboxes[mailbox].tombstones.push(Tombstone { id: it.id, folder_id: it.folder_id, seq: self.seq });
        }
        let root = self.root_folder(mailbox);
        let mb = &mut self.mailboxes[mailbox];
        let before = mb.folders.len();
        mb.folders.retain(|f| f.id == root || (f.parent_id == root && !f.distinguished.is_empty()));
        (n, before - mb.folders.len())
    }

    /// CreateFolder: a new folder under `parent` (a folder id, or empty for the top of the store).
    pub fn create_folder(&mut self, mailbox: usize, parent: &str, name: &str, class: &str) -> Result<String, Refusal> {
        let parent = if parent.is_empty() { self.root_folder(mailbox) } else { parent.to_string() };
        let mb = &self.mailboxes[mailbox];
        if !mb.folders.iter().any(|f| f.id == parent) {
            return Err(refuse("ErrorParentFolderNotFound", "The parent folder could not be found."));
        }
        if name.trim().is_empty() {
            return Err(refuse("ErrorInvalidFolderName", "A folder needs a display name."));
        }
        if mb.folders.iter().any(|f| f.parent_id == parent && f.name.eq_ignore_ascii_case(name)) {
            return Err(refuse("ErrorFolderExists", "A folder with the specified name already exists."));
        }
        self.seq += 1;
        let id = token(&mut self.rng(0xf01d), "AQMkAD");
        self.mailboxes[mailbox].folders.push(Folder {
            id: id.clone(),
            distinguished: String::new(),
            parent_id: parent,
            name: name.to_string(),
            class: class.to_string(),
        });
        Ok(id)
    }

    /// UploadItems for one item: stores the stream under `uploads/` in `dir` and creates or
    /// updates the item as `action` says (`CreateNew`, `Update`, `UpdateOrCreate`). Returns the
    /// item's id and new change key.
    #[allow(clippy::too_many_arguments)]
    pub fn upload(
        &mut self,
        dir: &Path,
        mailbox: usize,
        parent: &str,
        item_id: Option<&str>,
        action: &str,
        associated: bool,
        blob: &[u8],
    ) -> Result<(String, String), Refusal> {
        let mb = &self.mailboxes[mailbox];
        if !mb.folders.iter().any(|f| f.id == parent && !f.parent_id.is_empty()) {
            return Err(refuse("ErrorFolderNotFound", "The specified folder could not be found in the store."));
        }
        let existing = item_id.and_then(|id| mb.items.iter().position(|i| i.id == id && i.folder_id == parent));
        match (action, existing, item_id) {
            ("CreateNew", _, Some(_)) => {
                return Err(refuse("ErrorInvalidRequest", "CreateNew must not carry an ItemId."))
            }
            ("Update", None, _) => {
                return Err(refuse("ErrorItemNotFound", "The specified object was not found in the store."))
            }
            ("CreateNew" | "Update" | "UpdateOrCreate", ..) => {}
            (other, ..) => return Err(refuse("ErrorInvalidRequest", format!("Unknown CreateAction {other}."))),
        }
        let hash = blake3::hash(blob).to_hex().to_string();
        let uploads = dir.join("uploads");
        let path = uploads.join(&hash);
        if !path.exists() {
            let io = |e: std::io::Error| refuse("ErrorInternalServerError", format!("storing the item: {e}"));
            exarch_archive::private_fs::write_atomic(&path, blob).map_err(io)?;
        }
        let props = blob_props(blob);
        self.seq += 1;
        let seq = self.seq;
        let mut rng = self.rng(0x0b10);
        let change_key = token(&mut rng, "CQAAAB");
        let mb = &mut self.mailboxes[mailbox];
        let item = match existing {
            Some(i) => &mut mb.items[i],
            None => {
                mb.items.push(Item {
                    id: token(&mut rng, "AAMkAD"),
                    folder_id: parent.to_string(),
                    change_key: String::new(),
                    created_seq: seq,
                    seq,
                    class: String::new(),
                    subject: String::new(),
                    sender: String::new(),
                    received: String::new(),
                    dirty: false,
                    associated,
                    content: Content::Uploaded { hash: hash.clone() },
                });
                mb.items.last_mut().expect("just pushed")
            }
        };
        item.change_key = change_key.clone();
        item.seq = seq;
        item.class = if props.class.is_empty() { "IPM.Note".into() } else { props.class };
        item.subject = props.subject;
        item.sender = props.sender;
        item.received = props.received;
        item.associated = associated;
        item.content = Content::Uploaded { hash };
        Ok((item.id.clone(), change_key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_churn_changes_what_it_says() {
        let a = State::generate(7, "example.com", 2, 50, 0.1);
        let b = State::generate(7, "example.com", 2, 50, 0.1);
        let t = tempfile::tempdir().unwrap();
        assert_eq!(a.mailboxes[1].items[3].id, b.mailboxes[1].items[3].id);
        assert_eq!(
            a.blob(t.path(), &a.mailboxes[1].items[3]).unwrap(),
            b.blob(t.path(), &b.mailboxes[1].items[3]).unwrap()
        );
        assert_eq!(a.folder_path(0, &a.mailboxes[0].folders[8].id), vec!["Inbox", "Projects", "Alpha"]);
        let mut c = a.clone();
        let (n, ch, d) = c.churn(30.0);
        assert!(n > 0 && ch > 0 && d > 0);
        assert_eq!(c.mailboxes[0].items.len() + c.mailboxes[1].items.len(), 100 + n - d);
        c.save(t.path()).unwrap();
        assert_eq!(State::load(t.path()).unwrap().unwrap().seq, c.seq);
    }
}
