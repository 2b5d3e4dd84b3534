//! Writes the small-item benchmark corpus: one mailbox of many tiny items (meeting responses, read
//! receipts, one-line replies) spread over folders, as files.
//!
//! Run: `cargo run --release -p exarch-archive --example gen_small -- DIR [ITEMS] [FOLDERS]`
//! (defaults 100,000 items in 100 folders; items of 20–40 bytes, all different).

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = std::path::PathBuf::from(args.get(1).expect("usage: gen_small DIR [ITEMS] [FOLDERS]"));
    let items: usize = args.get(2).map(|s| s.parse().expect("ITEMS")).unwrap_or(100_000);
    let folders: usize = args.get(3).map(|s| s.parse().expect("FOLDERS")).unwrap_or(100);
    let kinds = ["Accepted: ", "Declined: ", "Read: ", "RE: ok ", "Tentative: "];
    for f in 0..folders {
        std::fs::create_dir_all(dir.join(format!("folder-{f:03}"))).expect("create folder");
    }
    for i in 0..items {
        let body = format!("{}weekly sync #{i}\r\n", kinds[i % kinds.len()]);
        let path = dir.join(format!("folder-{:03}", i % folders)).join(format!("item-{i:06}.eml"));
        std::fs::write(path, body).expect("write item");
    }
}
