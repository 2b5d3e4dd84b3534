//! The storage contract as one test suite that every backend passes (the local directory in unit
//! tests; an S3 store in `tests/s3_e2e.rs`). It panics with the broken promise. It needs an empty
//! place and leaves it holding only what `prepare_new` made.

use super::{FileKind, Storage};
use crate::error::{Error, ErrorClass};

/// Checks every promise of the [`Storage`] contract against `s`, which must be empty.
pub fn run(s: &dyn Storage) {
    s.prepare_new().expect("prepare_new on an empty place");
    for kind in FileKind::ALL {
        assert!(s.list(kind).unwrap().is_empty(), "a new place lists nothing of {kind:?}");
    }
    // put / get / exists / size, every kind, names as the engine makes them.
    let id = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    let body: Vec<u8> = (0..70_000u32).map(|i| (i * 7 % 251) as u8).collect();
    for kind in FileKind::ALL {
        let name = if kind == FileKind::Config { "config" } else { id };
        assert!(!s.exists(kind, name).unwrap(), "{kind:?} exists before put");
        s.put(kind, name, &body).unwrap();
        assert!(s.exists(kind, name).unwrap(), "{kind:?}: put is visible to exists");
        assert_eq!(s.get(kind, name).unwrap(), body, "{kind:?}: get returns what put stored");
        assert_eq!(s.size(kind, name).unwrap(), body.len() as u64);
        assert_eq!(s.list(kind).unwrap(), vec![name.to_string()], "{kind:?}: put is visible to list");
        assert_eq!(s.list_sized(kind).unwrap(), vec![(name.to_string(), body.len() as u64)]);
    }
    // A new put replaces the whole file.
    s.put(FileKind::Index, id, b"short").unwrap();
    assert_eq!(s.get(FileKind::Index, id).unwrap(), b"short");
    // Ranges: exact bytes; beyond the end is damage, never padding.
    assert_eq!(s.get_range(FileKind::Pack, id, 1000, 10).unwrap(), &body[1000..1010]);
    assert_eq!(s.get_range(FileKind::Pack, id, 0, body.len()).unwrap(), body);
    let mut buf = vec![0u8; 300];
    s.read_into(FileKind::Pack, id, 69_700, &mut buf).unwrap();
    assert_eq!(buf, &body[69_700..]);
    let short = s.get_range(FileKind::Pack, id, 69_990, 20).unwrap_err();
    assert_eq!(short.class(), ErrorClass::Damage, "a short read is damage: {short}");
    // Missing files.
    let missing = "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210";
    assert!(matches!(s.get(FileKind::Snapshot, missing), Err(Error::NotFound(_))), "get of a missing file");
    assert!(matches!(s.size(FileKind::Snapshot, missing), Err(Error::NotFound(_))), "size of a missing file");
    let e = s.get_range(FileKind::Pack, missing, 0, 4).unwrap_err();
    assert_eq!(e.class(), ErrorClass::Damage, "a missing pack read by range is damage: {e}");
    // Listing: sorted, many packs over their 256 directories, sizes in the same listing.
    let names: Vec<String> = (0..40u32).map(|i| format!("{:02x}{}", i * 6, &id[2..])).collect();
    for (i, n) in names.iter().enumerate().rev() {
        s.put(FileKind::Pack, n, &vec![i as u8; i + 1]).unwrap();
    }
    let mut want: Vec<String> = names.clone();
    want.push(id.to_string());
    want.sort();
    want.dedup();
    assert_eq!(s.list(FileKind::Pack).unwrap(), want, "list is sorted and complete");
    let sized = s.list_sized(FileKind::Pack).unwrap();
    assert_eq!(sized.len(), want.len());
    for (i, n) in names.iter().enumerate() {
        if n != id {
            assert!(sized.contains(&(n.clone(), i as u64 + 1)), "size of {n} in the listing");
        }
    }
    // Uploads: written in pieces, visible only once finished, whole; an abandoned one leaves
    // nothing listed.
    let up = "aa23456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    let mut u = s.start_upload(FileKind::Pack, 1000).unwrap();
    u.write(&body[..100]).unwrap();
    u.write(&body[100..]).unwrap();
    assert_eq!(u.len(), body.len() as u64);
    assert!(!s.list(FileKind::Pack).unwrap().contains(&up.to_string()), "an unfinished upload is not listed");
    s.finish_upload(u, up).unwrap();
    assert_eq!(s.get(FileKind::Pack, up).unwrap(), body, "a finished upload holds every byte written");
    let mut abandoned = s.start_upload(FileKind::Pack, 10).unwrap();
    abandoned.write(b"never finished").unwrap();
    drop(abandoned);
    want.push(up.to_string());
    want.sort();
    assert_eq!(s.list(FileKind::Pack).unwrap(), want, "uploads add only their finished names");
    s.delete(FileKind::Pack, up).unwrap();
    // Delete: gone from get, exists and list; deleting again is fine.
    for n in &names {
        s.delete(FileKind::Pack, n).unwrap();
    }
    s.delete(FileKind::Pack, id).unwrap();
    s.delete(FileKind::Pack, id).unwrap();
    listed_empty_soon(s, FileKind::Pack);
    assert!(!s.exists(FileKind::Pack, id).unwrap());
    // A place that holds files is refused for a new repository.
    let e = s.prepare_new().unwrap_err();
    assert!(matches!(e, Error::AlreadyExists(_)), "prepare_new on a used place: {e}");
    for kind in FileKind::ALL {
        for n in s.list(kind).unwrap() {
            s.delete(kind, &n).unwrap();
            assert!(!s.exists(kind, &n).unwrap(), "{kind:?} {n}: deleted, yet it exists");
        }
        listed_empty_soon(s, kind);
    }
    assert!(!s.describe().is_empty() && s.location(FileKind::Key, id).contains(id));
}

/// Deleted names leave listings within a few seconds. (A store under load may take a moment;
/// nothing in exarch relies on list-after-delete — a name still listed errs on the safe side: a
/// lock that seems held, a pack that is reported missing — only on list-after-write, which the
/// checks above hold to at once.)
fn listed_empty_soon(s: &dyn Storage, kind: FileKind) {
    let mut left = s.list(kind).unwrap();
    for _ in 0..50 {
        if left.is_empty() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        left = s.list(kind).unwrap();
    }
    panic!("{kind:?}: still listed 5 s after delete: {left:?}");
}
