//! Builds a repository with about a million chunks, for measuring prune and verify at scale.
//! Tiny chunks (64 B–1 KiB, 256 B average) keep the data small (~260 MiB) while the chunk count is
//! what a multi-hundred-GiB mailbox archive would have. The key slot uses cheap Argon2 parameters so
//! that a measurement of `exarch prune` shows prune's own memory, not key derivation.
//!
//! Run: `cargo run --release -p exarch-archive --example big_repo -- DIR [MIB]`
//! Two snapshots of mailbox `big`: the first holds items A and B, the second B and C, so that
//! `prune --keep-last 1` finds a third of the chunks dead. Passphrase: `bench`.

use exarch_archive::backup::{Backup, BackupOptions, ItemMeta};
use exarch_archive::config::{ChunkerParams, Config};
use exarch_archive::keyslot::KdfParams;
use exarch_archive::{Context, InitOptions, LocalStorage, Repository};
use rand::{RngCore, SeedableRng};
use std::sync::Arc;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = std::path::PathBuf::from(args.get(1).expect("usage: big_repo DIR [MIB]"));
    let mib: usize = args.get(2).map(|s| s.parse().expect("MIB")).unwrap_or(256);
    let storage = LocalStorage::new(&dir);
    storage.create_layout().unwrap();
    let mut config = Config::new(String::new());
    config.chunker = ChunkerParams { min_size: 64, avg_size: 256, max_size: 1024 };
    let opts = InitOptions {
        kdf: KdfParams { m_cost: 1024, t_cost: 1, p_cost: 1 },
        label: "bench".into(),
        config: Some(config),
    };
    let repo =
        Repository::init(Arc::new(storage), b"bench", opts, Context::new(dir.join("../big-repo-cache"))).unwrap();
    let third = mib * 1024 * 1024 / 3;
    let item = 4 * 1024 * 1024;
    let part = |seed: u64| -> Vec<Vec<u8>> {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        (0..third / item)
            .map(|_| {
                let mut v = vec![0u8; item];
                rng.fill_bytes(&mut v);
                v
            })
            .collect()
    };
    let (a, b, c) = (part(1), part(2), part(3));
    for (n, items) in [(1, [&a, &b]), (2, [&b, &c])] {
        let index = Arc::new(repo.index().unwrap());
        let opts = BackupOptions {
            mailbox: "big".into(),
            source: "bench".into(),
            time_ms: 1_767_225_600_000 + n * 86_400_000,
            parent: None,
            run_id: [n as u8; 16],
            workers: 2,
            lock: exarch_archive::lock::LockWatch::unlocked(),
        };
        let mut backup = Backup::start(&repo, index, opts).unwrap();
        for (k, data) in items.iter().flat_map(|p| p.iter()).enumerate() {
            let meta = ItemMeta { name: format!("item-{k}"), source_id: format!("{n}-{k}"), ..ItemMeta::default() };
            backup.add_item(meta, data.clone()).unwrap();
        }
        let (_, stats) = backup.finish().unwrap();
        eprintln!("snapshot {n}: {} chunks new", stats.chunks_new);
    }
    println!("{}", repo.index().unwrap().len());
}
