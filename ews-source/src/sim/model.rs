//! The simulated Exchange organisation: mailboxes, folders and items, deterministic from a seed.
//!
//! Item bodies are generated on demand from (seed, item key, version), so a state directory holds
//! only metadata (`state.json`) plus the blobs that clients uploaded. Blobs imitate Exchange
//! fast-transfer streams (MS-OXCFXICS): start/end markers, property tags with typed values, text that
//! compresses like mail, and attachments drawn from a pool shared across mailboxes.

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
    pub folders: Vec<Folder>,
    pub items: Vec<Item>,
    pub tombstones: Vec<Tombstone>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Folder {
    pub id: String,
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

const WORDS: &[&str] = &[
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
                folders: Vec::new(),
                items: Vec::new(),
                tombstones: Vec::new(),
            };
            for (name, parent, class) in FOLDERS {
                let id = token(&mut rng, "AQMkAD");
                let parent_id = parent.map(|p| mb.folders[p].id.clone()).unwrap_or_default();
                mb.folders.push(Folder { id, parent_id, name: name.to_string(), class: class.to_string() });
            }
            for _ in 0..items {
                let folder = 1 + rng.gen_range(0..FOLDERS.len() - 1);
                let item = state.new_item(&mut rng, &mb.folders[folder], m, dirty_rate);
                mb.items.push(item);
            }
            state.mailboxes.push(mb);
        }
        state
    }

    fn new_item(&mut self, rng: &mut ChaCha8Rng, folder: &Folder, mailbox: usize, dirty_rate: f64) -> Item {
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
                        let folder = self.mailboxes[m].folders[1 + rng.gen_range(0..FOLDERS.len() - 1)].clone();
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
        self.mailboxes.iter().position(|m| m.address.eq_ignore_ascii_case(address))
    }

    pub fn load(dir: &Path) -> std::io::Result<Option<State>> {
        match std::fs::read(dir.join("state.json")) {
            Ok(b) => serde_json::from_slice(&b).map(Some).map_err(std::io::Error::other),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub fn save(&self, dir: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        let tmp = dir.join(".state.json.tmp");
        std::fs::write(&tmp, serde_json::to_vec(self).map_err(std::io::Error::other)?)?;
        std::fs::rename(tmp, dir.join("state.json"))
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

fn prop_string(out: &mut Vec<u8>, tag: u32, s: &str) {
    out.extend_from_slice(&tag.to_le_bytes());
    let utf16: Vec<u8> = s.encode_utf16().chain(std::iter::once(0)).flat_map(|u| u.to_le_bytes()).collect();
    out.extend_from_slice(&(utf16.len() as u32).to_le_bytes());
    out.extend_from_slice(&utf16);
}

fn prop_binary(out: &mut Vec<u8>, tag: u32, b: &[u8]) {
    out.extend_from_slice(&tag.to_le_bytes());
    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
    out.extend_from_slice(b);
}

/// Attachments that recur across mailboxes (the all-staff PDF): 8 of 64 KiB–1 MiB.
fn shared_attachment(seed: u64, n: u64) -> Vec<u8> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xa77a_c4 ^ (n << 32));
    let mut b = vec![0u8; rng.gen_range(64 * 1024..1024 * 1024)];
    rng.fill(&mut b[..]);
    b
}

fn generate_blob(seed: u64, key: u64, version: u32, item: &Item) -> Vec<u8> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ key ^ ((version as u64) << 48));
    let mut out = Vec::new();
    out.extend_from_slice(&0x400C_0003u32.to_le_bytes()); // StartMessage
    prop_string(&mut out, 0x001A_001F, &item.class); // PidTagMessageClass
    prop_string(&mut out, 0x0037_001F, &item.subject); // PidTagSubject
    prop_string(&mut out, 0x0C1F_001F, &item.sender); // PidTagSenderEmailAddress
    if item.class == "IPM.Appointment" {
        // PidLidGlobalObjectId: the calendar UID that must survive a restore.
        let mut goid = b"\x04\x00\x00\x00\x82\x00\xE0\x00\x74\xC5\xB7\x10\x1A\x82\xE0\x08".to_vec();
        goid.extend_from_slice(&key.to_le_bytes());
        prop_binary(&mut out, 0x8003_0102, &goid);
    }
    let words = rng.gen_range(300..8000);
    let mut body = String::with_capacity(words * 7);
    for i in 0..words {
        body.push_str(WORDS[rng.gen_range(0..WORDS.len())]);
        body.push(if i % 14 == 13 { '\n' } else { ' ' });
    }
    body.push_str(&format!("\nversion {version}\n"));
    prop_string(&mut out, 0x1000_001F, &body); // PidTagBody
    if rng.gen_ratio(1, 10) {
        out.extend_from_slice(&0x4000_0003u32.to_le_bytes()); // NewAttach
        let data = if rng.gen_ratio(2, 3) {
            shared_attachment(seed, rng.gen_range(0..8))
        } else {
            let mut b = vec![0u8; rng.gen_range(8 * 1024..256 * 1024)];
            rng.fill(&mut b[..]);
            b
        };
        prop_binary(&mut out, 0x3701_0102, &data); // PidTagAttachDataBinary
        out.extend_from_slice(&0x400E_0003u32.to_le_bytes()); // EndAttach
    }
    out.extend_from_slice(&0x400D_0003u32.to_le_bytes()); // EndMessage
    out
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
