//! Writes the mailbox-like benchmark corpus as a directory tree (one folder per mailbox), for
//! comparing `exarch pack` with other tools on identical input.
//!
//! Run: `cargo run --release -p exarch-archive --example gen_corpus -- DIR [MAILBOXES] [ITEMS]`

#[path = "../../benches/corpus.rs"]
mod corpus;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = std::path::PathBuf::from(args.get(1).expect("usage: gen_corpus DIR [MAILBOXES] [ITEMS]"));
    let mailboxes: u32 = args.get(2).map(|s| s.parse().expect("MAILBOXES")).unwrap_or(4);
    let items: usize = args.get(3).map(|s| s.parse().expect("ITEMS")).unwrap_or(1000);
    let shared = corpus::shared_attachments(7, 12, 3 * 1024 * 1024);
    for m in 0..mailboxes {
        corpus::write_tree(&dir.join(format!("user{}@example.com", m + 1)), &corpus::mailbox(7, m, items, &shared));
    }
}
