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
    match which % 7 {
        0 => {
            let _ = exarch_archive::index::decode_index(rest, "fuzz");
        }
        1 => {
            let _ = exarch_archive::pack::decode_header(rest, &Id::default(), u32::MAX as u64);
        }
        2 => {
            let mut v = rkyv::util::AlignedVec::<16>::new();
            v.extend_from_slice(rest);
            if let Ok(m) = rkyv::access::<ArchivedManifest, rkyv::rancor::Error>(&v) {
                for i in 0..m.folders.len().min(64) as u32 {
                    let _ = m.folder_path(i);
                }
            }
        }
        3 => {
            let mut v = rkyv::util::AlignedVec::<16>::new();
            v.extend_from_slice(rest);
            let _ = rkyv::access::<ArchivedSummary, rkyv::rancor::Error>(&v);
        }
        4 => {
            // parsing only: running Argon2 on fuzzed parameters is what the bounds are for
            let _ = exarch_archive::keyslot::KeySlot::parse(rest, "fuzz");
        }
        5 => {
            let _ = exarch_archive::envelope::decompress(1, rest, None);
        }
        _ => {
            let n = rest.first().map_or(0, |b| *b as usize * 97);
            let _ = exarch_archive::envelope::decompress(1, rest, Some(n));
        }
    }
});
