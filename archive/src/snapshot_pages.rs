//! Version 2 snapshots (SPEC §10.4): writing a manifest as a page table and sealed pages, opening
//! them all (for `Snapshot::load`), or opening the head alone and then one item page at a time
//! (`PageReader`, for listing), so that a million-item snapshot shows its first items after a
//! few kilobytes.

use crate::crypto::{Entropy, Keys};
use crate::envelope::seal_section;
use crate::error::{Error, Result};
use crate::id::Id;
use crate::manifest::{ArchivedItem, ArchivedManifest, Manifest, Summary};
use crate::manifest_check::{check_head_page, check_item_page};
use crate::manifest_pages::{self as pages, PageTable};
use crate::snapshot::{head_of, read_summary_sized, serialise, Page, Snapshot};
use crate::storage::{FileKind, Storage};

/// Writes a version 2 snapshot (SPEC §10.4): the head page, item pages of `page_items` items,
/// the page table, each sealed; the manifest's items are dropped page by page as they are sealed.
pub(crate) fn encode(
    keys: &Keys,
    entropy: &Entropy,
    level: i32,
    mut summary: Summary,
    manifest: Manifest,
    page_items: usize,
) -> Result<(Id, Vec<u8>)> {
    let (head, pages) = pages::split(manifest, page_items);
    let mut sealed: Vec<Vec<u8>> = Vec::new();
    let mut table = pages::PageTable { pages: Vec::new() };
    for (k, page) in std::iter::once(head).chain(pages).enumerate() {
        let body = serialise(&page)?;
        let items = page.items.len() as u32;
        drop(page);
        let s = seal_section(keys, entropy, &pages::page_aad(k as u32), level, &body);
        table.pages.push(pages::PageEntry { sealed_len: s.len() as u32, items, hash: *blake3::hash(&s).as_bytes() });
        sealed.push(s);
    }
    let sealed_table = seal_section(keys, entropy, &pages::table_aad(), level, &table.to_bytes());
    summary.manifest_hash = *blake3::hash(&sealed_table).as_bytes();
    summary.version = pages::VERSION_PAGED;
    let mut out = head_of(keys, entropy, level, &summary)?;
    out.reserve(4 + sealed_table.len() + sealed.iter().map(Vec::len).sum::<usize>());
    out.extend_from_slice(&(sealed_table.len() as u32).to_le_bytes());
    out.extend_from_slice(&sealed_table);
    for s in sealed {
        out.extend_from_slice(&s);
    }
    Ok((Id::of_content(&out), out))
}

/// Every page of a version 2 manifest, opened.
pub(crate) struct AllPages {
    pub head: Page,
    pub items: Vec<Page>,
    /// (items, bytes, skipped), for T4.
    pub counts: (u64, u64, u64),
}

/// Opens every page of a version 2 manifest from `rest`, the whole file after the summary.
pub(crate) fn open_all(keys: &Keys, summary: &Summary, rest: &[u8], what: &str) -> Result<AllPages> {
    // The whole file is here: a table said to run past its end is damage.
    let past_end = |_| Err(Error::damaged(what, "page table runs past the end of the file"));
    let (table, mut at) = open_table(keys, summary, rest, past_end, what)?;
    let (head, (nf, skipped)) = open_head(keys, &table, rest.get(at..).unwrap_or_default(), what)?;
    at += table.pages[0].sealed_len as usize;
    let mut pages = Vec::with_capacity(table.pages.len() - 1);
    let (mut items, mut bytes) = (0u64, 0u64);
    for k in 1..table.pages.len() {
        let (page, (n, b)) = open_item_page(keys, &table, k, rest.get(at..).unwrap_or_default(), nf, what)?;
        at += table.pages[k].sealed_len as usize;
        items += n;
        bytes = bytes.saturating_add(b);
        pages.push(page);
    }
    if at != rest.len() {
        return Err(Error::damaged(what, format!("{} byte(s) after the last page", rest.len() - at)));
    }
    Ok(AllPages { head, items: pages, counts: (items, bytes, skipped) })
}

/// Opens a version 2 page table from `rest` (the bytes after the summary, or a prefix of them;
/// `more(n)` must then return at least the first `n` bytes). Returns the table and the offset in
/// `rest` where page 0 starts.
fn open_table(
    keys: &Keys,
    summary: &Summary,
    rest: &[u8],
    more: impl FnOnce(usize) -> Result<Vec<u8>>,
    what: &str,
) -> Result<(PageTable, usize)> {
    let len = rest.get(..4).ok_or_else(|| Error::damaged(what, "truncated before its page table"))?;
    let tlen = u32::from_le_bytes(len.try_into().expect("4 bytes")) as usize;
    let fetched;
    let rest: &[u8] = if rest.len() < 4 + tlen {
        fetched = more(4 + tlen)?;
        &fetched
    } else {
        rest
    };
    let sealed = rest.get(4..4 + tlen).ok_or_else(|| Error::damaged(what, "truncated page table"))?;
    if *blake3::hash(sealed).as_bytes() != summary.manifest_hash {
        return Err(Error::damaged(what, "page table does not belong to its summary"));
    }
    let body = crate::envelope::open_section(keys, &pages::table_aad(), sealed, &format!("{what} page table"))?;
    let table = PageTable::parse(&body).map_err(|e| {
        Error::damaged(what, crate::manifest_check::broken(crate::manifest_check::Rule::PageTable, e).to_string())
    })?;
    Ok((table, 4 + tlen))
}

/// The sealed bytes of page `k` at the start of `at`, checked against the table's hash.
fn sealed_page<'b>(table: &PageTable, k: usize, at: &'b [u8], what: &str) -> Result<&'b [u8]> {
    let e = &table.pages[k];
    let sealed =
        at.get(..e.sealed_len as usize).ok_or_else(|| Error::damaged(what, format!("page {k} is truncated")))?;
    if *blake3::hash(sealed).as_bytes() != e.hash {
        return Err(Error::damaged(what, format!("page {k} does not match its page table entry")));
    }
    Ok(sealed)
}

/// Opens the head page (page 0); returns it with (folders, skipped).
fn open_head(keys: &Keys, table: &PageTable, at: &[u8], what: &str) -> Result<(Page, (usize, u64))> {
    let sealed = sealed_page(table, 0, at, what)?;
    Page::open(keys, &pages::page_aad(0), sealed, &format!("{what} page 0"), check_head_page)
}

/// Opens item page `k` of a manifest with `nf` folders; returns it with (items, bytes).
fn open_item_page(
    keys: &Keys,
    table: &PageTable,
    k: usize,
    at: &[u8],
    nf: usize,
    what: &str,
) -> Result<(Page, (u64, u64))> {
    let sealed = sealed_page(table, k, at, what)?;
    let what = format!("{what} page {k}");
    let (page, counts) = Page::open(keys, &pages::page_aad(k as u32), sealed, &what, |b| check_item_page(b, nf))?;
    if counts.0 != table.pages[k].items as u64 {
        let e = format!("the page table says {} item(s), the page holds {}", table.pages[k].items, counts.0);
        return Err(Error::damaged(
            what,
            crate::manifest_check::broken(crate::manifest_check::Rule::PageTable, e).to_string(),
        ));
    }
    Ok((page, counts))
}

/// A snapshot read page by page (for listing): the head opens with a few small reads, whatever
/// the manifest's size, and item pages are read one at a time. Each page is authenticated by its
/// seal and the page table's hash; the file's name against its whole content is what `load` and
/// `verify` check. Items are those of `head()` (version 1 keeps them all there; a version 2 head
/// holds none), then those of each page `next_page` returns.
pub struct PageReader<'a> {
    storage: &'a dyn Storage,
    keys: &'a Keys,
    name: String,
    pub summary: Summary,
    head: Page,
    /// Version 2: the table, the next page's number and offset in the file.
    paged: Option<(PageTable, usize, u64)>,
    folders: usize,
    /// Items and bytes of the pages read so far.
    seen: (u64, u64),
}

impl<'a> PageReader<'a> {
    pub fn open(storage: &'a dyn Storage, keys: &'a Keys, id: &Id) -> Result<PageReader<'a>> {
        let name = id.to_hex();
        let size = storage.size(FileKind::Snapshot, &name)?;
        let (summary, head) = read_summary_sized(storage, keys, id, size)?;
        if summary.version != pages::VERSION_PAGED {
            let snap = Snapshot::load(storage, keys, id)?;
            let (summary, head, folders) = (snap.summary, snap.head, 0);
            return Ok(PageReader { storage, keys, name, summary, head, paged: None, folders, seen: (0, 0) });
        }
        let end = head.len() as u64;
        let what = format!("snapshot {name} (manifest)");
        // One read for the table and, usually, the head page.
        let first = storage.get_range(FileKind::Snapshot, &name, end, (size - end).min(256 * 1024) as usize)?;
        let more = |n| storage.get_range(FileKind::Snapshot, &name, end, n);
        let (table, at) = open_table(keys, &summary, &first, more, &what)?;
        let hlen = table.pages[0].sealed_len as usize;
        let sealed_head = match first.get(at..at + hlen) {
            Some(b) => b.to_vec(),
            None => storage.get_range(FileKind::Snapshot, &name, end + at as u64, hlen)?,
        };
        let (head, (folders, _)) = open_head(keys, &table, &sealed_head, &what)?;
        let paged = Some((table, 1, end + (at + hlen) as u64));
        Ok(PageReader { storage, keys, name, summary, head, paged, folders, seen: (0, 0) })
    }

    /// The head: folders, skipped items, source state (and, for version 1, every item).
    pub fn head(&self) -> &ArchivedManifest {
        self.head.manifest()
    }

    /// Calls `f` with every item in order, the head's (all of a version 1 manifest's) and then each
    /// page's, holding one page at a time. The first error, of a page or of `f`, ends the walk.
    pub fn for_each_item<E: From<Error>>(
        &mut self,
        mut f: impl FnMut(&ArchivedItem) -> std::result::Result<(), E>,
    ) -> std::result::Result<(), E> {
        for item in self.head.manifest().items.iter() {
            f(item)?;
        }
        while let Some(page) = self.next_page() {
            for item in page?.manifest().items.iter() {
                f(item)?;
            }
        }
        Ok(())
    }

    /// The next item page (version 2), or `None` after the last one, when the items and bytes of
    /// all pages have also been checked against the summary (T4).
    pub fn next_page(&mut self) -> Option<Result<Page>> {
        let what = format!("snapshot {} (manifest)", self.name);
        let (table, k, at) = self.paged.as_mut()?;
        if *k == table.pages.len() {
            self.paged = None;
            let s = &self.summary;
            let check = crate::manifest_check::check_counts((s.items, s.bytes, 0), (self.seen.0, self.seen.1, 0));
            return check.err().map(|e| Err(Error::damaged(what, e.to_string())));
        }
        let len = table.pages[*k].sealed_len as usize;
        let page = self
            .storage
            .get_range(FileKind::Snapshot, &self.name, *at, len)
            .and_then(|sealed| open_item_page(self.keys, table, *k, &sealed, self.folders, &what));
        match page {
            Ok((page, (n, b))) => {
                *k += 1;
                *at += len as u64;
                self.seen = (self.seen.0 + n, self.seen.1.saturating_add(b));
                Some(Ok(page))
            }
            Err(e) => {
                self.paged = None;
                Some(Err(e))
            }
        }
    }
}
