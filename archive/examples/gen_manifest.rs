//! Writes one snapshot of many items straight through the library, for the manifest benchmark:
//! a million files on disk would cost minutes and gigabytes before the measurement even starts.
//!
//! Run: `cargo run --release -p exarch-archive --example gen_manifest -- REPO CACHE [ITEMS] [FOLDERS]
//! [PAGE_ITEMS]` on a repository made by `exarch init` (passphrase in `EXARCH_PASSWORD`); defaults
//! 1,000,000 items in 1,000 folders, pages as exarch writes them (PAGE_ITEMS 0: one version 1
//! manifest, to compare). Items look like small mail: a subject, a sender, an EWS-like id and
//! change key, 30-60 bytes of content each (all different).

use exarch_archive::backup::{Backup, BackupOptions, ItemMeta};
use exarch_archive::lock::LockWatch;
use exarch_archive::{Context, LocalStorage, Repository, Storage};
use std::sync::Arc;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: gen_manifest REPO CACHE [ITEMS] [FOLDERS] [PAGE_ITEMS]";
    let repo_dir = std::path::PathBuf::from(args.get(1).expect(usage));
    let cache = std::path::PathBuf::from(args.get(2).expect(usage));
    let items: u32 = args.get(3).map(|s| s.parse().expect("ITEMS")).unwrap_or(1_000_000);
    let folders: u32 = args.get(4).map(|s| s.parse().expect("FOLDERS")).unwrap_or(1_000);
    let page_items: usize =
        args.get(5).map(|s| s.parse().expect("PAGE_ITEMS")).unwrap_or(exarch_archive::manifest_pages::PAGE_ITEMS);
    let pass = std::env::var("EXARCH_PASSWORD").expect("EXARCH_PASSWORD");
    let storage: Arc<dyn Storage> = Arc::new(LocalStorage::new(repo_dir));
    let repo = Repository::open(storage, pass.as_bytes(), Context::new(cache)).expect("open repository");
    let index = Arc::new(repo.index().expect("index"));
    let o = BackupOptions {
        mailbox: "big@example.com".into(),
        source: "bench:gen_manifest".into(),
        time_ms: 1_767_268_800_000,
        parent: None,
        run_id: [7; 16],
        workers: 2,
        lock: LockWatch::unlocked(),
    };
    let mut b = Backup::start(&repo, index, o).expect("start");
    b.set_page_items(if page_items == 0 { usize::MAX } else { page_items });
    let folder_ids: Vec<u32> = (0..folders).map(|f| b.folder_path(&["Inbox", &format!("Project {f:04}")])).collect();
    let kinds = ["Accepted: ", "Declined: ", "Read: ", "RE: ok ", "Tentative: "];
    for i in 0..items {
        let subject = format!("{}weekly sync #{i}", kinds[i as usize % kinds.len()]);
        let meta = ItemMeta {
            folder: folder_ids[(i % folders) as usize],
            name: format!("{subject}.eml"),
            source_id: format!("AAMkAGI2TG93AAA{i:012}AAA="),
            change_key: format!("CQAAABYAAAD{i:010}"),
            item_class: "IPM.Schedule.Meeting.Resp.Pos".into(),
            subject,
            sender: format!("user{}@example.com", i % 977),
            received_ms: 1_767_268_800_000 - i as i64 * 60_000,
            flags: 0,
        };
        let body = format!("From: user{}@example.com\r\nSubject: item {i}\r\n\r\nok\r\n", i % 977);
        b.add_item(meta, body.into_bytes()).expect("add item");
    }
    let (id, _) = b.finish().expect("finish");
    println!("{}", id.to_hex());
}
