//! Decoders of on-disk structures: whatever the bytes, no panic, no unbounded allocation. Key slots
//! are parsed before anything is authenticated; the others come after decryption (authentication
//! stops forged bytes first; this guards against our own bugs and a writer with the key producing
//! garbage), as does decompression.
#![no_main]

use exarch_archive::manifest::{ArchivedManifest, ArchivedSummary};
use exarch_archive::Id;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else { return };
    match which % 9 {
        0 => {
            let _ = exarch_archive::index::decode_index(rest, "fuzz");
        }
        1 => {
            let _ = exarch_archive::pack::decode_header(rest, &Id::default(), u32::MAX as u64);
        }
        2 => {
            let mut v = rkyv::util::AlignedVec::<16>::new();
            v.extend_from_slice(rest);
            let ours = exarch_archive::manifest_check::check_manifest(&v);
            let rkyv_ok = rkyv::access::<ArchivedManifest, rkyv::rancor::Error>(&v).is_ok();
            // SPEC §10.1's rules are rkyv's: whatever passes them (and the table rules) rkyv accepts
            assert!(ours.is_err() || rkyv_ok, "the spec's rules accepted what rkyv refuses");
            if let (Ok(_), Ok(m)) = (ours, rkyv::access::<ArchivedManifest, rkyv::rancor::Error>(&v)) {
                for i in 0..m.folders.len().min(64) as u32 {
                    let _ = m.folder_path(i);
                }
            }
        }
        3 => {
            let mut v = rkyv::util::AlignedVec::<16>::new();
            v.extend_from_slice(rest);
            let ours = exarch_archive::manifest_check::check_summary(&v).is_ok();
            assert_eq!(ours, rkyv::access::<ArchivedSummary, rkyv::rancor::Error>(&v).is_ok(), "L1-L5 are rkyv's rules");
        }
        4 => {
            // parsing only: running Argon2 on fuzzed parameters is what the bounds are for
            let _ = exarch_archive::keyslot::KeySlot::parse(rest, "fuzz");
        }
        5 => {
            let _ = exarch_archive::envelope::decompress(1, rest, None);
        }
        7 => {
            // SPEC §10.4's page table: whatever parses keeps P3's promises
            if let Ok(t) = exarch_archive::manifest_pages::PageTable::parse(rest) {
                assert!(t.pages.len() >= 2 && t.pages[0].items == 0 && t.pages[1..].iter().all(|p| p.items > 0));
                assert_eq!(exarch_archive::manifest_pages::PageTable::parse(&t.to_bytes()).as_ref(), Ok(&t));
            }
        }
        8 => {
            // an item page (P2, T3) against a folder count taken from the input
            let Some((&nf, page)) = rest.split_first() else { return };
            let mut v = rkyv::util::AlignedVec::<16>::new();
            v.extend_from_slice(page);
            let ours = exarch_archive::manifest_check::check_item_page(&v, nf as usize);
            let head = exarch_archive::manifest_check::check_head_page(&v);
            let rkyv_ok = rkyv::access::<ArchivedManifest, rkyv::rancor::Error>(&v).is_ok();
            assert!((ours.is_err() && head.is_err()) || rkyv_ok, "the spec's rules accepted what rkyv refuses");
        }
        _ => {
            let n = rest.first().map_or(0, |b| *b as usize * 97);
            let _ = exarch_archive::envelope::decompress(1, rest, Some(n));
        }
    }
});
