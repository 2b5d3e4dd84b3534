//! What a snapshot's "mailbox" names: a store. A user's mailbox has up to four (the primary
//! mailbox, the In-Place Archive, and the Recoverable Items folders of each), and an organisation
//! has its public folders. Each store is backed up as snapshots of its own, named
//! `<address>` and `<address>#archive`, `#recoverable-items`, `#archive-recoverable-items`
//! (SPEC.md §10.2): `#` never occurs in a domain name, so the address part is unambiguous.

use crate::source::{Source, SourceError};

/// The public folders' store name.
pub const PUBLIC_FOLDERS: &str = "public-folders";

/// Which part of a user's mailbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Part {
    Primary,
    /// The In-Place Archive (EWS `archivemsgfolderroot`).
    Archive,
    /// Recoverable Items of the primary mailbox (`recoverableitemsroot`): what users deleted,
    /// single-item recovery and holds keep.
    RecoverableItems,
    /// Recoverable Items of the archive (`archiverecoverableitemsroot`).
    ArchiveRecoverableItems,
}

impl Part {
    const ALL: [(Part, &'static str); 3] = [
        (Part::ArchiveRecoverableItems, "#archive-recoverable-items"),
        (Part::RecoverableItems, "#recoverable-items"),
        (Part::Archive, "#archive"),
    ];

    pub fn suffix(self) -> &'static str {
        Part::ALL.iter().find(|(p, _)| *p == self).map_or("", |(_, s)| s)
    }

    /// Recoverable Items are Exchange's own: replay puts them into an ordinary folder.
    pub fn is_recoverable_items(self) -> bool {
        matches!(self, Part::RecoverableItems | Part::ArchiveRecoverableItems)
    }
}

/// A store, parsed from its name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Store {
    Mailbox { address: String, part: Part },
    PublicFolders,
}

impl Store {
    pub fn parse(name: &str) -> Store {
        if name == PUBLIC_FOLDERS {
            return Store::PublicFolders;
        }
        for (part, suffix) in Part::ALL {
            if let Some(address) = name.strip_suffix(suffix) {
                return Store::Mailbox { address: address.to_string(), part };
            }
        }
        Store::Mailbox { address: name.to_string(), part: Part::Primary }
    }

    pub fn mailbox(address: &str, part: Part) -> Store {
        Store::Mailbox { address: address.to_string(), part }
    }

    pub fn name(&self) -> String {
        match self {
            Store::PublicFolders => PUBLIC_FOLDERS.to_string(),
            Store::Mailbox { address, part } => format!("{address}{}", part.suffix()),
        }
    }

    pub fn part(&self) -> Part {
        match self {
            Store::PublicFolders => Part::Primary,
            Store::Mailbox { part, .. } => *part,
        }
    }

    /// The same user's store of another part (the public folders have only themselves).
    pub fn with_part(&self, part: Part) -> Store {
        match self {
            Store::PublicFolders => Store::PublicFolders,
            Store::Mailbox { address, .. } => Store::mailbox(address, part),
        }
    }
}

/// Which stores beyond the primary mailbox a backup covers.
#[derive(Debug, Clone, Copy, Default)]
pub struct Extra {
    pub archive: bool,
    pub recoverable_items: bool,
}

/// The stores to back up for `names` (addresses, or store names as given): each mailbox's primary
/// store, plus its archive and Recoverable Items as `extra` asks. A mailbox without an archive is
/// named to `note` and backed up without one.
pub fn expand(
    source: &dyn Source,
    names: &[String],
    extra: Extra,
    note: &dyn Fn(&str, &str),
) -> Result<Vec<String>, SourceError> {
    let mut out = Vec::new();
    for name in names {
        let store = Store::parse(name);
        out.push(store.name());
        if store == Store::PublicFolders || store.part() != Part::Primary {
            continue;
        }
        let archive = store.with_part(Part::Archive);
        let has_archive = extra.archive && source.has_store(&archive.name())?;
        if extra.archive && !has_archive {
            note(name, "has no In-Place Archive; its primary mailbox is backed up alone");
        }
        if has_archive {
            out.push(archive.name());
        }
        if extra.recoverable_items {
            out.push(store.with_part(Part::RecoverableItems).name());
            if has_archive {
                out.push(store.with_part(Part::ArchiveRecoverableItems).name());
            }
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for name in [
            "alice@example.com",
            "alice@example.com#archive",
            "alice@example.com#recoverable-items",
            "alice@example.com#archive-recoverable-items",
            "public-folders",
        ] {
            assert_eq!(Store::parse(name).name(), name);
        }
        assert_eq!(
            Store::parse("a#b@example.com#archive"),
            Store::Mailbox { address: "a#b@example.com".into(), part: Part::Archive }
        );
        assert_eq!(
            Store::parse("bob@example.com").with_part(Part::RecoverableItems).name(),
            "bob@example.com#recoverable-items"
        );
        assert!(Part::ArchiveRecoverableItems.is_recoverable_items() && !Part::Archive.is_recoverable_items());
    }
}
