//! The parts of a user's mailbox beyond its own folders: the In-Place Archive and the Recoverable
//! Items folders (the primary's and the archive's), where single-item recovery and litigation hold
//! keep what users deleted.
//!
//! Each part is a `Mailbox` entry of its own with the user's address and its `Part`. As with
//! Exchange, the one impersonated user reaches all of them: a request goes to the part its
//! distinguished folder ids name (`archivemsgfolderroot`, `recoverableitemsdeletions`, …) or whose
//! folders or items its ids name. Some mailboxes have an archive (user1, user3, …), every one has
//! Recoverable Items once they are asked for.

use crate::model::{Folder, Mailbox, State};
use exarch_ews_source::dom::Element;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// Which part of a user's mailbox an entry is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Part {
    #[default]
    Primary,
    Archive,
    RecoverableItems,
    ArchiveRecoverableItems,
}

impl Part {
    /// What the part adds to the address in a store's name (as exarch names its snapshots).
    pub fn suffix(self) -> &'static str {
        match self {
            Part::Primary => "",
            Part::Archive => "#archive",
            Part::RecoverableItems => "#recoverable-items",
            Part::ArchiveRecoverableItems => "#archive-recoverable-items",
        }
    }

    /// The part a distinguished folder id belongs to.
    pub fn of_distinguished(id: &str) -> Part {
        if id.starts_with("archiverecoverableitems") {
            Part::ArchiveRecoverableItems
        } else if id.starts_with("archive") {
            Part::Archive
        } else if id.starts_with("recoverableitems") {
            Part::RecoverableItems
        } else {
            Part::Primary
        }
    }

    /// The distinguished id of the part's top folder.
    pub fn top(self) -> &'static str {
        match self {
            Part::Primary => "msgfolderroot",
            Part::Archive => "archivemsgfolderroot",
            Part::RecoverableItems => "recoverableitemsroot",
            Part::ArchiveRecoverableItems => "archiverecoverableitemsroot",
        }
    }
}

/// Folder layouts: (name, parent index, class, distinguished id).
const ARCHIVE: &[(&str, Option<usize>, &str, &str)] = &[
    ("Top of Information Store", None, "", "archivemsgfolderroot"),
    ("Inbox", Some(0), "IPF.Note", "archiveinbox"),
    ("Deleted Items", Some(0), "IPF.Note", "archivedeleteditems"),
    ("Sent Items", Some(0), "IPF.Note", ""),
    ("2024", Some(0), "IPF.Note", ""),
    ("Customers", Some(4), "IPF.Note", ""),
];
const RECOVERABLE: &[(&str, Option<usize>, &str, &str)] = &[
    ("Recoverable Items", None, "", "recoverableitemsroot"),
    ("Deletions", Some(0), "", "recoverableitemsdeletions"),
    ("Purges", Some(0), "", "recoverableitemspurges"),
    ("Versions", Some(0), "", "recoverableitemsversions"),
    ("DiscoveryHolds", Some(0), "", "recoverableitemsdiscoveryholds"),
];

impl State {
    /// Gives every other mailbox (user1, user3, …) an In-Place Archive holding `items` items.
    pub fn add_archives(&mut self, items: usize) {
        let owners: Vec<usize> = (0..self.mailboxes.len())
            .filter(|&m| self.mailboxes[m].part == Part::Primary && !self.mailboxes[m].public)
            .step_by(2)
            .collect();
        for m in owners {
            self.add_part(m, Part::Archive, ARCHIVE, items, 0xa4c1);
        }
    }

    /// Puts `items` items in every mailbox's Recoverable Items, and a quarter as many in every
    /// archive's.
    pub fn add_recoverable_items(&mut self, items: usize) {
        let owners: Vec<usize> = (0..self.mailboxes.len())
            .filter(|&m| self.mailboxes[m].part == Part::Primary && !self.mailboxes[m].public)
            .collect();
        for m in owners {
            self.add_part(m, Part::RecoverableItems, RECOVERABLE, items, 0x5ec0);
            if self.part_of(m, Part::Archive).is_some() {
                self.add_part(m, Part::ArchiveRecoverableItems, RECOVERABLE, items / 4, 0xa5ec);
            }
        }
    }

    fn add_part(
        &mut self,
        owner: usize,
        part: Part,
        layout: &[(&str, Option<usize>, &str, &str)],
        items: usize,
        salt: u64,
    ) {
        if self.part_of(owner, part).is_some() {
            return;
        }
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed ^ salt ^ (owner as u64) << 20);
        let archive_ri = part == Part::ArchiveRecoverableItems;
        let mut mb = Mailbox {
            address: self.mailboxes[owner].address.clone(),
            public: false,
            part,
            folders: Vec::new(),
            items: Vec::new(),
            tombstones: Vec::new(),
        };
        for (name, parent, class, distinguished) in layout {
            let mut b = [0u8; 18];
            rng.fill(&mut b);
            let id = format!("AAMkAr{}", base64::Engine::encode(&base64::engine::general_purpose::STANDARD, b));
            let parent_id = parent.map(|p| mb.folders[p].id.clone()).unwrap_or_default();
            let distinguished = if archive_ri { format!("archive{distinguished}") } else { distinguished.to_string() };
            mb.folders.push(Folder { id, distinguished, parent_id, name: name.to_string(), class: class.to_string() });
        }
        for _ in 0..items {
            let folder = mb.folders[1 + rng.gen_range(0..layout.len() - 1)].clone();
            let item = self.new_item(&mut rng, &folder, owner, 0.0);
            mb.items.push(item);
        }
        self.mailboxes.push(mb);
    }

    /// The entry holding `part` of the user whose primary mailbox is `primary`.
    pub fn part_of(&self, primary: usize, part: Part) -> Option<usize> {
        if part == Part::Primary {
            return Some(primary);
        }
        let address = &self.mailboxes[primary].address;
        self.mailboxes.iter().position(|m| m.part == part && !m.public && m.address.eq_ignore_ascii_case(address))
    }

    /// Every entry of the user whose primary mailbox is `primary`, the primary first.
    pub fn parts(&self, primary: usize) -> Vec<usize> {
        let address = &self.mailboxes[primary].address;
        let mut v = vec![primary];
        v.extend((0..self.mailboxes.len()).filter(|&m| {
            m != primary && !self.mailboxes[m].public && self.mailboxes[m].address.eq_ignore_ascii_case(address)
        }));
        v
    }

    /// A store's name as exarch gives its snapshots: the address, with the part's suffix.
    pub fn store_name(&self, m: usize) -> String {
        format!("{}{}", self.mailboxes[m].address, self.mailboxes[m].part.suffix())
    }

    /// The entry a request for `primary`'s user goes to: the part named by the first distinguished
    /// folder id, folder id or item id in it (the primary when none names another). None when it
    /// names a part the user does not have.
    pub fn route(&self, primary: usize, el: &Element) -> Option<usize> {
        let parts = self.parts(primary);
        let mut found = None;
        visit(el, &mut |e: &Element| {
            if found.is_some() {
                return;
            }
            let Some(id) = e.attr("Id") else { return };
            found = match e.name.as_str() {
                "DistinguishedFolderId" if id == "root" => Some(Some(primary)),
                "DistinguishedFolderId" => Some(self.part_of(primary, Part::of_distinguished(id))),
                "FolderId" | "ParentFolderId" => {
                    parts.iter().find(|&&p| self.mailboxes[p].folders.iter().any(|f| f.id == id)).map(|&p| Some(p))
                }
                "ItemId" => {
                    parts.iter().find(|&&p| self.mailboxes[p].items.iter().any(|i| i.id == id)).map(|&p| Some(p))
                }
                _ => None,
            };
        });
        found.unwrap_or(Some(primary))
    }
}

fn visit(el: &Element, f: &mut dyn FnMut(&Element)) {
    f(el);
    for c in &el.children {
        visit(c, f);
    }
}
