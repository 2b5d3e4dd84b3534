//! Pack and extract throughput of the archive engine on the mailbox-like corpus.
//!
//! Run: `cargo bench -p exarch-archive --bench throughput`
//! Criterion prints the median time per iteration and the throughput in MiB/s of item bytes.
//! The comparison with restic on the same corpus is `benches/vs-restic.sh`.

mod corpus;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use exarch_archive::backup::{Backup, BackupOptions, ItemMeta};
use exarch_archive::keyslot::KdfParams;
use exarch_archive::restore::ItemReader;
use exarch_archive::{Context, InitOptions, LocalStorage, Repository};
use std::sync::Arc;

fn new_repo(dir: &std::path::Path) -> Repository {
    let s = LocalStorage::new(dir.join("repo"));
    s.create_layout().unwrap();
    // Cheap KDF: the benchmark measures the data path, not key derivation.
    let opts = InitOptions { kdf: KdfParams { m_cost: 1024, t_cost: 1, p_cost: 1 }, ..InitOptions::default() };
    Repository::init(Arc::new(s), b"bench", opts, Context::new(dir.join("cache"))).unwrap()
}

fn pack_all(repo: &Repository, items: &[corpus::CorpusItem]) {
    let index = repo.index().unwrap();
    let workers = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
    let opts = BackupOptions {
        mailbox: "bench".into(),
        source: "bench".into(),
        time_ms: 0,
        parent: None,
        run_id: [0; 16],
        workers,
        lock: exarch_archive::lock::LockWatch::unlocked(),
    };
    let mut b = Backup::start(repo, Arc::new(index), opts).unwrap();
    for (i, it) in items.iter().enumerate() {
        let folder = b.folder_path(&[it.folder.as_str()]);
        let meta = ItemMeta { folder, name: it.name.clone(), source_id: i.to_string(), ..ItemMeta::default() };
        b.add_item(meta, it.data.clone()).unwrap();
    }
    b.finish().unwrap();
}

fn bench(c: &mut Criterion) {
    // 4 mailboxes × 250 items: ~220 MiB of item bytes, attachments shared across mailboxes.
    let shared = corpus::shared_attachments(7, 12, 3 * 1024 * 1024);
    let items: Vec<corpus::CorpusItem> = (0..4).flat_map(|m| corpus::mailbox(7, m, 250, &shared)).collect();
    let total: u64 = items.iter().map(|i| i.data.len() as u64).sum();

    let mut g = c.benchmark_group("archive");
    g.sample_size(10);
    g.throughput(Throughput::Bytes(total));
    g.bench_function(BenchmarkId::new("pack", "mailbox-corpus"), |b| {
        b.iter_with_setup(
            || tempfile::tempdir().unwrap(),
            |dir| {
                let repo = new_repo(dir.path());
                pack_all(&repo, &items);
                dir
            },
        )
    });

    let dir = tempfile::tempdir().unwrap();
    let repo = new_repo(dir.path());
    pack_all(&repo, &items);
    let id = repo.snapshots().unwrap()[0].id;
    let snap = repo.load_snapshot(&id).unwrap();
    let index = repo.index().unwrap();
    g.bench_function(BenchmarkId::new("extract", "mailbox-corpus"), |b| {
        b.iter_with_setup(
            || tempfile::tempdir().unwrap(),
            |out| {
                let opts = exarch_archive::restore::ExtractOptions { overwrite: false, threads: 2 };
                exarch_archive::restore::extract(&repo, &index, &snap, out.path(), &opts, &|_| {}).unwrap();
                out
            },
        )
    });
    g.bench_function(BenchmarkId::new("read-verify", "mailbox-corpus"), |b| {
        let reader = ItemReader::new(&repo, &index);
        b.iter(|| {
            for it in snap.items() {
                reader.read_item(it, &mut std::io::sink()).unwrap();
            }
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
