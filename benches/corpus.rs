//! A deterministic, mailbox-like corpus for tests and benchmarks.
//!
//! What real exports look like, roughly: many items of 5–200 KiB whose text compresses well, a
//! minority with attachments (already-compressed, so incompressible), and popular attachments
//! (the all-staff PDF, the signed contract) that recur across mailboxes.
//!
//! Included by path into benches, examples and tests, each of which uses part of it.
#![allow(dead_code)]

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const WORDS: &[&str] = &[
    "meeting",
    "budget",
    "quarter",
    "please",
    "review",
    "attached",
    "regards",
    "thanks",
    "project",
    "deadline",
    "customer",
    "invoice",
    "schedule",
    "update",
    "team",
    "report",
    "server",
    "mailbox",
    "migration",
    "backup",
    "Exchange",
    "calendar",
    "tomorrow",
    "approval",
    "contract",
    "the",
    "and",
    "for",
    "with",
    "we",
    "you",
    "will",
];
const FOLDERS: &[&str] = &["Inbox", "Sent Items", "Archive/2025", "Archive/2026", "Projects/Alpha", "Deleted Items"];

pub struct CorpusItem {
    pub folder: String,
    pub name: String,
    pub data: Vec<u8>,
}

fn random_bytes(rng: &mut ChaCha8Rng, n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    rng.fill(&mut v[..]);
    v
}

fn text(rng: &mut ChaCha8Rng, n: usize) -> Vec<u8> {
    let mut s = Vec::with_capacity(n + 16);
    while s.len() < n {
        s.extend_from_slice(WORDS[rng.gen_range(0..WORDS.len())].as_bytes());
        s.push(if rng.gen_ratio(1, 12) { b'\n' } else { b' ' });
    }
    s.truncate(n);
    s
}

/// Attachments shared across mailboxes (same seed → same bytes).
pub fn shared_attachments(seed: u64, count: usize, max_size: usize) -> Vec<Vec<u8>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5348_4152_4544);
    (0..count)
        .map(|_| {
            let n = rng.gen_range(max_size / 8..max_size);
            random_bytes(&mut rng, n)
        })
        .collect()
}

/// `items` items of mailbox `mailbox`; `shared` are attachments that several mailboxes carry.
pub fn mailbox(seed: u64, mailbox: u32, items: usize, shared: &[Vec<u8>]) -> Vec<CorpusItem> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed.wrapping_mul(1_000_003) + mailbox as u64);
    (0..items)
        .map(|i| {
            // log-uniform body size, 5–200 KiB
            let size = (5.0f64 * 1024.0 * (40.0f64).powf(rng.gen::<f64>())) as usize;
            let mut data = format!(
                "From: user{}@example.com\r\nTo: user{mailbox}@example.com\r\nSubject: {} {i}\r\nMessage-ID: <{:016x}@example.com>\r\n\r\n",
                rng.gen_range(0..50),
                WORDS[rng.gen_range(0..WORDS.len())],
                rng.gen::<u64>()
            )
            .into_bytes();
            data.extend_from_slice(&text(&mut rng, size));
            let roll = rng.gen_range(0..100);
            if roll < 8 && !shared.is_empty() {
                data.extend_from_slice(b"\r\n--attachment--\r\n");
                data.extend_from_slice(&shared[rng.gen_range(0..shared.len())]);
            } else if roll < 15 {
                data.extend_from_slice(b"\r\n--attachment--\r\n");
                let n = rng.gen_range(20 * 1024..400 * 1024);
                data.extend_from_slice(&random_bytes(&mut rng, n));
            }
            CorpusItem { folder: FOLDERS[rng.gen_range(0..FOLDERS.len())].to_string(), name: format!("item-{i:05}.eml"), data }
        })
        .collect()
}

/// Writes items under `dir/<folder>/<name>`.
pub fn write_tree(dir: &std::path::Path, items: &[CorpusItem]) {
    for it in items {
        let d = dir.join(&it.folder);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join(&it.name), &it.data).unwrap();
    }
}
