//! Checks a decrypted summary or manifest against the layout rules of SPEC §10.1 (L1–L5) and the
//! table rules of §10.3 (T1–T4) before rkyv reads it in place.
//!
//! rkyv's own validator enforces the same layout, but when a buffer breaks it the reason is lost by
//! the time it reaches a user ("invalid structure: …"). A writer in another language needs to know
//! which rule it broke and where, so this walk follows the spec's algorithm step by step and names
//! the rule, the field and the offsets. rkyv's validator still runs afterwards; the unit tests check
//! that the two agree on every mutation they try.

use std::fmt;

/// A rule of SPEC §10.1 (layout) or §10.3 (tables).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// L1: the root is the buffer's last bytes and starts at a multiple of its alignment.
    Root,
    /// L2: a vector's elements lie inside the buffer.
    Bounds,
    /// L3: a vector's elements start at a multiple of their alignment.
    Alignment,
    /// L4: what an object points to lies before the object.
    Nesting,
    /// L5: objects appear in depth-first order, none before the end of the one checked before it.
    Order,
    /// T1: folder 0 exists and is a root.
    FirstFolder,
    /// T2: a folder's parent is a folder or `0xFFFFFFFF`, and its chain of parents ends at a root.
    FolderChain,
    /// T3: an item's or skipped item's folder is a folder of the table.
    FolderIndex,
    /// T4: the summary's counts are the manifest's.
    Counts,
    /// P1: a paged manifest's head page (page 0) holds no items.
    HeadPage,
    /// P2: an item page holds at least one item and no folders, skipped items or source state.
    ItemPage,
    /// P3: the page table is well formed and its item counts are the pages'.
    PageTable,
}

impl Rule {
    pub fn code(self) -> &'static str {
        match self {
            Rule::Root => "L1",
            Rule::Bounds => "L2",
            Rule::Alignment => "L3",
            Rule::Nesting => "L4",
            Rule::Order => "L5",
            Rule::FirstFolder => "T1",
            Rule::FolderChain => "T2",
            Rule::FolderIndex => "T3",
            Rule::Counts => "T4",
            Rule::HeadPage => "P1",
            Rule::ItemPage => "P2",
            Rule::PageTable => "P3",
        }
    }
}

/// A broken rule, where and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broken {
    pub rule: Rule,
    pub detail: String,
}

impl fmt::Display for Broken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let section = match self.rule {
            Rule::Root | Rule::Bounds | Rule::Alignment | Rule::Nesting | Rule::Order => "10.1",
            Rule::HeadPage | Rule::ItemPage | Rule::PageTable => "10.4",
            _ => "10.3",
        };
        write!(f, "breaks SPEC §{section} rule {}: {}", self.rule.code(), self.detail)
    }
}

type Check = Result<(), Broken>;

pub(crate) fn broken(rule: Rule, detail: String) -> Broken {
    Broken { rule, detail }
}

/// The free range of SPEC §10.1's walk: the next object must lie in `start..end`.
struct Walk<'a> {
    buf: &'a [u8],
    start: usize,
    end: usize,
}

impl Walk<'_> {
    fn u32_at(&self, at: usize) -> u32 {
        u32_at(self.buf, at)
    }

    /// Claims an object of `size` bytes at `pos`, runs `inner` for what it points to (which must
    /// lie before it), then moves the free range past it.
    fn claim(
        &mut self,
        what: &dyn Fn() -> String,
        pos: i64,
        size: u64,
        align: usize,
        inner: impl FnOnce(&mut Self) -> Check,
    ) -> Check {
        let len = self.buf.len() as i64;
        if pos < 0 || pos > len || pos as u64 + size > len as u64 {
            return Err(broken(
                Rule::Bounds,
                format!("{} at offset {pos} with {size} bytes runs outside the {len}-byte buffer", what()),
            ));
        }
        let (pos, end) = (pos as usize, (pos as u64 + size) as usize);
        if pos < self.start {
            return Err(broken(
                Rule::Order,
                format!(
                    "{} starts at offset {pos}, before offset {}, the end of the object checked before it",
                    what(),
                    self.start
                ),
            ));
        }
        if end > self.end {
            return Err(broken(
                Rule::Nesting,
                format!(
                    "{} ({pos}..{end}) does not end before the object that points to it (at offset {})",
                    what(),
                    self.end
                ),
            ));
        }
        if pos % align != 0 {
            return Err(broken(
                Rule::Alignment,
                format!("{} starts at offset {pos}, not a multiple of {align}", what()),
            ));
        }
        let outer_end = self.end;
        self.end = pos;
        inner(self)?;
        self.start = end;
        self.end = outer_end;
        Ok(())
    }

    /// A `Vec<T>` field at `field`: elements of `size` bytes and alignment `align`, each checked
    /// by `each(walk, element offset, index)`.
    fn vec(
        &mut self,
        what: &dyn Fn() -> String,
        field: usize,
        size: u64,
        align: usize,
        each: impl Fn(&mut Self, usize, usize) -> Check,
    ) -> Check {
        let rel = self.u32_at(field) as i32 as i64;
        let n = self.u32_at(field + 4) as u64;
        let pos = field as i64 + rel;
        self.claim(what, pos, n * size, align, |w| {
            for i in 0..n as usize {
                each(w, pos as usize + i * size as usize, i)?;
            }
            Ok(())
        })
    }

    fn bytes(&mut self, what: &dyn Fn() -> String, field: usize) -> Check {
        self.vec(what, field, 1, 1, |_, _, _| Ok(()))
    }

    fn root(buf: &[u8], size: usize, align: usize, what: &str, inner: impl FnOnce(&mut Walk) -> Check) -> Check {
        if buf.len() < size || !(buf.len() - size).is_multiple_of(align) {
            return Err(broken(
                Rule::Root,
                format!(
                    "a {what} of {} bytes cannot end with its {size}-byte root at a multiple of {align}",
                    buf.len()
                ),
            ));
        }
        let mut w = Walk { buf, start: 0, end: buf.len() };
        w.claim(&|| format!("the {what} root"), (buf.len() - size) as i64, size as u64, align, inner)
    }
}

pub const SUMMARY_SIZE: usize = 120;
pub const MANIFEST_SIZE: usize = 32;
const FOLDER_SIZE: u64 = 28;
const ITEM_SIZE: u64 = 112;
const SKIPPED_SIZE: u64 = 20;

/// SPEC §10.1 for a summary (§10.2).
pub fn check_summary(buf: &[u8]) -> Check {
    Walk::root(buf, SUMMARY_SIZE, 8, "summary", |w| {
        let r = buf.len() - SUMMARY_SIZE;
        for (off, name) in [(84, "parent"), (92, "mailbox"), (100, "source"), (108, "host")] {
            w.bytes(&|| format!("summary.{name}"), r + off)?;
        }
        Ok(())
    })
}

/// SPEC §10.1 and §10.3's table rules for a manifest. Returns (items, sum of item sizes, skipped).
pub fn check_manifest(buf: &[u8]) -> Result<(u64, u64, u64), Broken> {
    manifest_layout(buf)?;
    check_tables(buf)
}

/// SPEC §10.1 alone for a manifest.
fn manifest_layout(buf: &[u8]) -> Check {
    Walk::root(buf, MANIFEST_SIZE, 4, "manifest", |w| {
        let r = buf.len() - MANIFEST_SIZE;
        w.vec(&|| "manifest.folders".into(), r, FOLDER_SIZE, 4, |w, at, i| {
            for (off, name) in [(4, "name"), (12, "source_id"), (20, "folder_class")] {
                w.bytes(&|| format!("folders[{i}].{name}"), at + off)?;
            }
            Ok(())
        })?;
        w.vec(&|| "manifest.items".into(), r + 8, ITEM_SIZE, 8, |w, at, i| {
            let names = [
                (56, "name"),
                (64, "source_id"),
                (72, "change_key"),
                (80, "item_class"),
                (88, "subject"),
                (96, "sender"),
            ];
            for (off, name) in names {
                w.bytes(&|| format!("items[{i}].{name}"), at + off)?;
            }
            w.vec(&|| format!("items[{i}].chunks"), at + 104, 32, 1, |_, _, _| Ok(()))
        })?;
        w.vec(&|| "manifest.skipped".into(), r + 16, SKIPPED_SIZE, 4, |w, at, i| {
            w.bytes(&|| format!("skipped[{i}].source_id"), at + 4)?;
            w.bytes(&|| format!("skipped[{i}].error"), at + 12)
        })?;
        w.bytes(&|| "manifest.source_state".into(), r + 24)
    })
}

fn u32_at(buf: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(buf[at..at + 4].try_into().expect("4 bytes"))
}

/// §10.3's table rules, on a buffer whose layout passed.
fn check_tables(buf: &[u8]) -> Result<(u64, u64, u64), Broken> {
    let r = buf.len() - MANIFEST_SIZE;
    let table = |field: usize| table_at(buf, field);
    let (folders, nf) = table(r);
    let parent = |i: usize| u32_at(buf, folders + i * FOLDER_SIZE as usize);
    const ROOT: u32 = u32::MAX;
    if nf == 0 || parent(0) != ROOT {
        return Err(broken(Rule::FirstFolder, "folder 0 is missing or is not a root (parent 0xFFFFFFFF)".into()));
    }
    // Each folder's chain must reach a root within `nf` steps; `state` remembers folders already
    // known to reach one, so the whole table costs O(folders).
    let mut reaches_root = vec![false; nf];
    for i in 0..nf {
        let mut path = Vec::new();
        let mut cur = i as u32;
        loop {
            if cur == ROOT || reaches_root[cur as usize] {
                break;
            }
            if path.len() > nf {
                return Err(broken(Rule::FolderChain, format!("folders[{i}]'s parents form a cycle")));
            }
            path.push(cur);
            let p = parent(cur as usize);
            if p != ROOT && p as usize >= nf {
                return Err(broken(
                    Rule::FolderChain,
                    format!("folders[{cur}].parent is {p}, but there are {nf} folders"),
                ));
            }
            cur = p;
        }
        for f in path {
            reaches_root[f as usize] = true;
        }
    }
    let (ni, bytes) = item_folders(buf, nf)?;
    let (skipped, ns) = table(r + 16);
    for k in 0..ns {
        let folder = u32_at(buf, skipped + k * SKIPPED_SIZE as usize);
        if folder as usize >= nf {
            return Err(broken(
                Rule::FolderIndex,
                format!("skipped[{k}].folder is {folder}, but there are {nf} folders"),
            ));
        }
    }
    Ok((ni, bytes, ns as u64))
}

/// `(pointer target, length)` of the vector field at `field`, in a buffer whose layout passed.
fn table_at(buf: &[u8], field: usize) -> (usize, usize) {
    let pos = (field as i64 + u32_at(buf, field) as i32 as i64) as usize;
    (pos, u32_at(buf, field + 4) as usize)
}

/// T3 for the items of a manifest or page whose layout passed, against `nf` folders.
/// Returns (items, sum of their sizes).
fn item_folders(buf: &[u8], nf: usize) -> Result<(u64, u64), Broken> {
    let (items, ni) = table_at(buf, buf.len() - MANIFEST_SIZE + 8);
    let mut bytes = 0u64;
    for k in 0..ni {
        let at = items + k * ITEM_SIZE as usize;
        let folder = u32_at(buf, at + 16);
        if folder as usize >= nf {
            return Err(broken(
                Rule::FolderIndex,
                format!("items[{k}].folder is {folder}, but there are {nf} folders"),
            ));
        }
        bytes = bytes.saturating_add(u64::from_le_bytes(buf[at + 8..at + 16].try_into().expect("8 bytes")));
    }
    Ok((ni as u64, bytes))
}

/// A paged manifest's head page (§10.4): §10.1, T1–T3, and P1. Returns (folders, skipped).
pub fn check_head_page(buf: &[u8]) -> Result<(usize, u64), Broken> {
    let (items, _, skipped) = check_manifest(buf)?;
    if items != 0 {
        return Err(broken(Rule::HeadPage, format!("the head page holds {items} item(s)")));
    }
    Ok((table_at(buf, buf.len() - MANIFEST_SIZE).1, skipped))
}

/// An item page (§10.4) of a manifest whose head has `nf` folders: §10.1, P2 and T3.
/// Returns (items, sum of their sizes).
pub fn check_item_page(buf: &[u8], nf: usize) -> Result<(u64, u64), Broken> {
    manifest_layout(buf)?;
    let r = buf.len() - MANIFEST_SIZE;
    for (off, name) in [(0, "folders"), (16, "skipped"), (24, "source_state")] {
        let n = table_at(buf, r + off).1;
        if n != 0 {
            return Err(broken(Rule::ItemPage, format!("an item page holds {n} {name} element(s)")));
        }
    }
    let counts = item_folders(buf, nf)?;
    if counts.0 == 0 {
        return Err(broken(Rule::ItemPage, "an item page holds no item".into()));
    }
    Ok(counts)
}

/// T4: a summary's `items`, `bytes` and `skipped` against the manifest's `(items, bytes, skipped)`.
pub fn check_counts(summary: (u64, u64, u64), manifest: (u64, u64, u64)) -> Check {
    let names = ["items", "bytes", "skipped"];
    let s = [summary.0, summary.1, summary.2];
    let m = [manifest.0, manifest.1, manifest.2];
    for k in 0..3 {
        if s[k] != m[k] {
            return Err(broken(
                Rule::Counts,
                format!(
                    "the summary says {} = {}, the manifest holds {} (items: {}, bytes: {}, skipped: {})",
                    names[k], s[k], m[k], m[0], m[1], m[2]
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "manifest_check_tests.rs"]
mod tests;
