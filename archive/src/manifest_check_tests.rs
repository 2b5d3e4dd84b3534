use super::*;
use crate::manifest::{ArchivedManifest, ArchivedSummary, Folder, Item, Manifest, Skipped, Summary, NO_PARENT};
use rkyv::rancor;
use rkyv::util::AlignedVec;

fn item(folder: u32, name: &str, chunks: usize) -> Item {
    Item {
        received_ms: 1,
        size: 10,
        folder,
        flags: 0,
        blob_hash: [1; 32],
        name: name.as_bytes().to_vec(),
        source_id: b"id".to_vec(),
        change_key: vec![],
        item_class: b"IPM.Note".to_vec(),
        subject: vec![],
        sender: b"a@b".to_vec(),
        chunks: vec![[2; 32]; chunks],
    }
}

fn folder(parent: u32, name: &str) -> Folder {
    Folder { parent, name: name.as_bytes().to_vec(), source_id: vec![], folder_class: b"IPF.Note".to_vec() }
}

fn manifest() -> Manifest {
    Manifest {
        folders: vec![folder(NO_PARENT, ""), folder(0, "Inbox"), folder(1, "Sub")],
        items: vec![item(1, "a.eml", 2), item(2, "", 0), item(0, "c", 1)],
        skipped: vec![Skipped { folder: 1, source_id: b"x".to_vec(), error: vec![] }],
        source_state: vec![],
    }
}

fn summary() -> Summary {
    Summary {
        time_ms: 5,
        items: 3,
        bytes: 30,
        skipped: 1,
        version: 1,
        run_id: [0; 16],
        manifest_hash: [0; 32],
        parent: vec![],
        mailbox: b"m@example.com".to_vec(),
        source: b"dir:/x".to_vec(),
        host: vec![],
    }
}

fn bytes_of_manifest(m: &Manifest) -> AlignedVec {
    rkyv::to_bytes::<rancor::Error>(m).unwrap()
}

fn aligned(b: &[u8]) -> AlignedVec {
    let mut v = AlignedVec::new();
    v.extend_from_slice(b);
    v
}

fn rkyv_accepts_manifest(b: &[u8]) -> bool {
    rkyv::access::<ArchivedManifest, rancor::Error>(&aligned(b)).is_ok()
}

fn rkyv_accepts_summary(b: &[u8]) -> bool {
    rkyv::access::<ArchivedSummary, rancor::Error>(&aligned(b)).is_ok()
}

fn set_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

#[test]
fn what_rkyv_writes_passes_with_its_counts() {
    let b = bytes_of_manifest(&manifest());
    assert_eq!(check_manifest(&b), Ok((3, 30, 1)));
    assert_eq!(check_summary(&rkyv::to_bytes::<rancor::Error>(&summary()).unwrap()), Ok(()));
    let empty = Manifest { folders: vec![folder(NO_PARENT, "")], ..Default::default() };
    assert_eq!(check_manifest(&bytes_of_manifest(&empty)), Ok((0, 0, 0)));
}

/// Every single-byte change the walk accepts, rkyv accepts, and every one it refuses, rkyv refuses:
/// the spec's rules are rkyv's, no more and no fewer (on the layout; the table rules are ours).
#[test]
fn agrees_with_rkyv_on_every_single_byte_change() {
    let good = bytes_of_manifest(&manifest());
    let mut refused = 0;
    for at in 0..good.len() {
        for x in [0x01u8, 0x04, 0x08, 0x10, 0x80, 0xff] {
            let mut b = good.to_vec();
            b[at] ^= x;
            let ours = manifest_layout(&b);
            assert_eq!(ours.is_ok(), rkyv_accepts_manifest(&b), "byte {at} ^ {x:#x}: ours {ours:?}");
            refused += ours.is_err() as usize;
        }
    }
    assert!(refused > 100, "the mutations must reach the pointers: {refused}");
    let good = rkyv::to_bytes::<rancor::Error>(&summary()).unwrap();
    for at in 0..good.len() {
        for x in [0x01u8, 0x04, 0x80, 0xff] {
            let mut b = good.to_vec();
            b[at] ^= x;
            assert_eq!(check_summary(&b).is_ok(), rkyv_accepts_summary(&b), "summary byte {at} ^ {x:#x}");
        }
    }
    // and for every truncation and extension by padding
    for cut in 1..good.len() {
        assert_eq!(check_summary(&good[cut..]).is_ok(), rkyv_accepts_summary(&good[cut..]));
    }
}

/// Offsets of `Manifest` fields inside the root (the last 32 bytes).
fn root(b: &[u8]) -> usize {
    b.len() - MANIFEST_SIZE
}

fn target(b: &[u8], field: usize) -> usize {
    (field as i64 + u32::from_le_bytes(b[field..field + 4].try_into().unwrap()) as i32 as i64) as usize
}

fn point(b: &mut [u8], field: usize, to: usize) {
    set_u32(b, field, (to as i64 - field as i64) as i32 as u32);
}

#[test]
fn each_layout_rule_is_named() {
    let good = bytes_of_manifest(&manifest()).to_vec();
    let r = root(&good);
    let items = target(&good, r + 8);
    // L1: a buffer cut so that the root is not aligned
    let e = check_manifest(&good[1..]).unwrap_err();
    assert_eq!(e.rule, Rule::Root, "{e}");
    // L2: a length running past the end
    let mut b = good.clone();
    set_u32(&mut b, r + 12, 1_000_000);
    assert_eq!(check_manifest(&b).unwrap_err().rule, Rule::Bounds);
    // L3: items (alignment 8) starting 4 bytes late
    let mut b = good.clone();
    point(&mut b, r + 8, items + 4);
    set_u32(&mut b, r + 12, 0);
    let e = check_manifest(&b).unwrap_err();
    assert_eq!(e.rule, Rule::Alignment, "{e}");
    // L4: source_state pointing at the root itself
    let mut b = good.clone();
    point(&mut b, r + 24, r);
    set_u32(&mut b, r + 28, 4);
    let e = check_manifest(&b).unwrap_err();
    assert_eq!(e.rule, Rule::Nesting, "{e}");
    assert!(e.to_string().contains("rule L4") && e.to_string().contains("manifest.source_state"), "{e}");
    // L5: two fields sharing one string (items[0].source_id pointing at items[0].name's bytes)
    let mut b = good.clone();
    let name = target(&b, items + 56);
    point(&mut b, items + 64, name);
    let e = check_manifest(&b).unwrap_err();
    assert_eq!(e.rule, Rule::Order, "{e}");
    assert!(e.to_string().contains("items[0].source_id"), "{e}");
    // L5 again: an empty vector pointing ahead (at the items table) leaves no room for what follows
    let mut b = good.clone();
    point(&mut b, items + 72, items);
    assert_eq!(check_manifest(&b).unwrap_err().rule, Rule::Order);
    for b in [&good[1..], &b[..]] {
        assert!(!rkyv_accepts_manifest(b));
    }
}

#[test]
fn each_table_rule_is_named() {
    let mut m = manifest();
    m.folders[0].parent = 0;
    assert_eq!(check_manifest(&bytes_of_manifest(&m)).unwrap_err().rule, Rule::FirstFolder);
    let mut m = manifest();
    m.folders.clear();
    m.items.clear();
    m.skipped.clear();
    assert_eq!(check_manifest(&bytes_of_manifest(&m)).unwrap_err().rule, Rule::FirstFolder);
    let mut m = manifest();
    m.folders[1].parent = 2; // 1 → 2 → 1
    let e = check_manifest(&bytes_of_manifest(&m)).unwrap_err();
    assert_eq!(e.rule, Rule::FolderChain, "{e}");
    assert!(e.to_string().contains("cycle"), "{e}");
    let mut m = manifest();
    m.folders[2].parent = 9;
    assert_eq!(check_manifest(&bytes_of_manifest(&m)).unwrap_err().rule, Rule::FolderChain);
    let mut m = manifest();
    m.folders.push(folder(NO_PARENT, "second root"));
    m.folders.push(folder(3, "under it"));
    assert!(check_manifest(&bytes_of_manifest(&m)).is_ok(), "several roots are allowed");
    let mut m = manifest();
    m.items[1].folder = 3;
    let e = check_manifest(&bytes_of_manifest(&m)).unwrap_err();
    assert_eq!(e.rule, Rule::FolderIndex);
    assert!(e.to_string().contains("items[1].folder"), "{e}");
    let mut m = manifest();
    m.skipped[0].folder = u32::MAX;
    assert_eq!(check_manifest(&bytes_of_manifest(&m)).unwrap_err().rule, Rule::FolderIndex);
}

#[test]
fn counts_must_match() {
    assert!(check_counts((3, 30, 1), (3, 30, 1)).is_ok());
    let e = check_counts((99, 30, 1), (3, 30, 1)).unwrap_err();
    assert_eq!(e.rule, Rule::Counts);
    assert!(e.to_string().contains("items = 99") && e.to_string().contains("holds 3"), "{e}");
    assert_eq!(check_counts((3, 31, 1), (3, 30, 1)).unwrap_err().rule, Rule::Counts);
    assert_eq!(check_counts((3, 30, 0), (3, 30, 1)).unwrap_err().rule, Rule::Counts);
}

/// Every vector pointer of the root and of items[0], pointed at every offset of the buffer, with
/// its own length and with length 0: the walk and rkyv agree.
#[test]
fn agrees_with_rkyv_on_every_pointer_target() {
    let good = bytes_of_manifest(&manifest()).to_vec();
    let r = root(&good);
    let items = target(&good, r + 8);
    let fields: Vec<usize> =
        [0, 8, 16, 24].iter().map(|o| r + o).chain((56..=104).step_by(8).map(|o| items + o)).collect();
    for field in fields {
        for to in 0..good.len() {
            for zero in [false, true] {
                let mut b = good.clone();
                point(&mut b, field, to);
                if zero {
                    set_u32(&mut b, field + 4, 0);
                }
                let ours = manifest_layout(&b);
                assert_eq!(ours.is_ok(), rkyv_accepts_manifest(&b), "field {field} -> {to} (len 0: {zero}): {ours:?}");
            }
        }
    }
}
