//! Measures FastCDC parameter choices on the mailbox-like corpus: deduplicated size, chunk count
//! (index size) and chunking speed. The numbers behind the defaults in SPEC.md ("Chunking").
//!
//! Run: `cargo run --release -p exarch-archive --example chunk_params`

#[path = "../../benches/corpus.rs"]
mod corpus;

use exarch_archive::chunker::Chunker;
use exarch_archive::config::ChunkerParams;
use std::collections::HashSet;
use std::time::Instant;

fn main() {
    let shared = corpus::shared_attachments(11, 12, 3 * 1024 * 1024);
    let mut items: Vec<Vec<u8>> = Vec::new();
    for mb in 0..4 {
        for it in corpus::mailbox(11, mb, 400, &shared) {
            // the same item again after an edit of its header (a flag change, a category)
            let mut edited = b"X-Edited: 1\r\n".to_vec();
            edited.extend_from_slice(&it.data);
            items.push(it.data);
            items.push(edited);
        }
    }
    let total: usize = items.iter().map(Vec::len).sum();
    println!("corpus: {} items, {:.1} MiB", items.len(), total as f64 / 1048576.0);
    println!("{:>22}  {:>12}  {:>9}  {:>10}", "min/avg/max KiB", "unique MiB", "chunks", "MiB/s");
    for (min, avg, max) in
        [(4, 16, 64), (8, 32, 128), (16, 64, 256), (32, 128, 512), (64, 256, 1024), (512, 1024, 8192)]
    {
        let p = ChunkerParams { min_size: min * 1024, avg_size: avg * 1024, max_size: max * 1024 };
        let c = Chunker::new(p, 0x1234_5678);
        let mut seen = HashSet::new();
        let mut unique = 0usize;
        let started = Instant::now();
        for data in &items {
            for (o, l) in c.cuts(data) {
                if seen.insert(*blake3::hash(&data[o..o + l]).as_bytes()) {
                    unique += l;
                }
            }
        }
        let secs = started.elapsed().as_secs_f64();
        println!(
            "{:>22}  {:>12.1}  {:>9}  {:>10.0}",
            format!("{min}/{avg}/{max}"),
            unique as f64 / 1048576.0,
            seen.len(),
            total as f64 / 1048576.0 / secs
        );
    }
}
