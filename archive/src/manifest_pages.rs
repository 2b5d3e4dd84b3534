//! Paged manifests (snapshot version 2, SPEC §10.4): a large manifest is sealed as independent
//! pages behind a small page table, so a reader opens the folders and the first items without
//! decrypting, decompressing and validating a million others.
//!
//! rkyv keeps an archive's root at its end and validates the whole tree, so a page is a complete
//! archive of its own: the same `Manifest` struct as version 1, holding either the head (folders,
//! skipped items, source state; no items) or a run of items (nothing else). A manifest that fits
//! one page stays version 1, which every reader understands.

use crate::manifest::{Item, Manifest};

/// `Summary::version` of a paged manifest.
pub const VERSION_PAGED: u32 = 2;
/// Items per page exarch writes (about 1 MiB of rkyv for mail-like items); a manifest with no more
/// items than this is written as version 1.
pub const PAGE_ITEMS: usize = 4096;
/// Bytes of one page table entry: sealed length (u32), items (u32), BLAKE3 of the sealed page.
const ENTRY_LEN: usize = 40;
/// Section number of the page table in the AAD; pages use 4 followed by their number.
pub const SECTION_TABLE: u8 = 3;
pub const SECTION_PAGE: u8 = 4;

/// One page as the table describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageEntry {
    pub sealed_len: u32,
    pub items: u32,
    pub hash: [u8; 32],
}

/// The page table: page 0 is the head, pages 1.. hold the items in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageTable {
    pub pages: Vec<PageEntry>,
}

impl PageTable {
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(4 + ENTRY_LEN * self.pages.len());
        out.extend_from_slice(&(self.pages.len() as u32).to_le_bytes());
        for p in &self.pages {
            out.extend_from_slice(&p.sealed_len.to_le_bytes());
            out.extend_from_slice(&p.items.to_le_bytes());
            out.extend_from_slice(&p.hash);
        }
        out
    }

    /// Parses and checks rule P3's form: a count, exactly that many entries, at least one item
    /// page, no items in the head, at least one in every other page.
    pub fn parse(b: &[u8]) -> Result<PageTable, String> {
        let count = b.get(..4).map(|c| u32::from_le_bytes(c.try_into().expect("4 bytes")) as usize);
        let Some(count) = count else { return Err("page table shorter than its count".into()) };
        if b.len() != 4 + count.saturating_mul(ENTRY_LEN) {
            return Err(format!("page table of {} bytes cannot hold {count} entries of {ENTRY_LEN}", b.len()));
        }
        if count < 2 {
            return Err(format!("{count} page(s): a paged manifest has a head page and at least one item page"));
        }
        let pages: Vec<PageEntry> = b[4..]
            .chunks_exact(ENTRY_LEN)
            .map(|e| PageEntry {
                sealed_len: u32::from_le_bytes(e[0..4].try_into().expect("4 bytes")),
                items: u32::from_le_bytes(e[4..8].try_into().expect("4 bytes")),
                hash: e[8..40].try_into().expect("32 bytes"),
            })
            .collect();
        if pages[0].items != 0 {
            return Err(format!("the head page is said to hold {} item(s)", pages[0].items));
        }
        if let Some(k) = pages.iter().skip(1).position(|p| p.items == 0) {
            return Err(format!("item page {} is said to hold no item", k + 1));
        }
        Ok(PageTable { pages })
    }

    /// Number of items over all pages.
    pub fn items(&self) -> u64 {
        self.pages.iter().map(|p| p.items as u64).sum()
    }
}

fn aad(section: u8) -> Vec<u8> {
    let mut a = crate::snapshot::SNAPSHOT_MAGIC.to_vec();
    a.push(section);
    a
}

/// AAD of the page table section.
pub fn table_aad() -> Vec<u8> {
    aad(SECTION_TABLE)
}

/// AAD of page `k` (0 = head): the page's number is bound to it, so pages cannot be reordered.
pub fn page_aad(k: u32) -> Vec<u8> {
    let mut a = aad(SECTION_PAGE);
    a.extend_from_slice(&k.to_le_bytes());
    a
}

/// Splits a manifest into its head and item pages of at most `page_items` items each, handing the
/// items over page by page (each page's items are dropped by the caller once it is sealed).
pub fn split(manifest: Manifest, page_items: usize) -> (Manifest, impl Iterator<Item = Manifest>) {
    let Manifest { folders, items, skipped, source_state } = manifest;
    let head = Manifest { folders, items: Vec::new(), skipped, source_state };
    let mut rest = items.into_iter();
    let pages = std::iter::from_fn(move || {
        let page: Vec<Item> = rest.by_ref().take(page_items.max(1)).collect();
        (!page.is_empty()).then(|| Manifest { items: page, ..Manifest::default() })
    });
    (head, pages)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_round_trips_and_refuses_malformed() {
        let t = PageTable {
            pages: vec![
                PageEntry { sealed_len: 100, items: 0, hash: [1; 32] },
                PageEntry { sealed_len: 2000, items: 4096, hash: [2; 32] },
                PageEntry { sealed_len: 30, items: 1, hash: [3; 32] },
            ],
        };
        let b = t.to_bytes();
        assert_eq!(b.len(), 4 + 3 * 40);
        assert_eq!(PageTable::parse(&b).unwrap(), t);
        assert_eq!(t.items(), 4097);
        assert!(PageTable::parse(&b[..b.len() - 1]).is_err());
        assert!(PageTable::parse(&[]).is_err());
        let mut head_items = b.clone();
        head_items[8] = 1;
        assert!(PageTable::parse(&head_items).unwrap_err().contains("head page"));
        let mut empty_page = b.clone();
        empty_page[4 + 2 * 40 + 4] = 0;
        assert!(PageTable::parse(&empty_page).unwrap_err().contains("item page 2"));
        let one = PageTable { pages: vec![t.pages[0].clone()] }.to_bytes();
        assert!(PageTable::parse(&one).is_err());
        let mut huge = b.clone();
        huge[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(PageTable::parse(&huge).is_err());
    }

    #[test]
    fn split_keeps_order_and_puts_the_rest_in_the_head() {
        let item = |n: u8| Item {
            received_ms: 0,
            size: n as u64,
            folder: 0,
            flags: 0,
            blob_hash: [n; 32],
            name: vec![n],
            source_id: vec![],
            change_key: vec![],
            item_class: vec![],
            subject: vec![],
            sender: vec![],
            chunks: vec![],
        };
        let m = Manifest { items: (0..7).map(item).collect(), source_state: b"s".to_vec(), ..Manifest::default() };
        let (head, pages) = split(m, 3);
        assert!(head.items.is_empty());
        assert_eq!(head.source_state, b"s");
        let pages: Vec<Vec<u8>> = pages.map(|p| p.items.iter().map(|i| i.name[0]).collect()).collect();
        assert_eq!(pages, vec![vec![0, 1, 2], vec![3, 4, 5], vec![6]]);
    }
}
