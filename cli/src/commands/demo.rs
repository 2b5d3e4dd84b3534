//! `exarch demo`: the whole job in one command, against the built-in simulated Exchange.

use crate::args::{DemoArgs, EwsConnArgs, Global, InitArgs, PackArgs, SnapshotsArgs, VerifyArgs};
use anyhow::{Context as _, Result};
use exarch_exchange_sim::{serve, Profile, Simulator};
use std::sync::Arc;

pub fn run(g: &Global, a: DemoArgs) -> Result<()> {
    let dir = &a.dir;
    if dir.exists() && std::fs::read_dir(dir).map(|mut d| d.next().is_some()).unwrap_or(true) {
        return Err(crate::usage(format!("{} is not empty: remove it or pass --dir NEW_DIR", dir.display())));
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut secret = [0u8; 16];
    exarch_archive::crypto::Entropy::os().fill(&mut secret);
    let passphrase = dir.join("passphrase.txt");
    write_private(&passphrase, &hex::encode(secret))?;
    let ews_password = dir.join("ews-password.txt");
    write_private(&ews_password, "demo-password")?;

    let state_dir = dir.join("exchange");
    let state = super::simulate::load_or_generate(&state_dir, 42, "example.com", 5, 150, 0.01, 0, "en")?;
    let sim = Arc::new(Simulator::new(
        state_dir.clone(),
        state,
        Profile::named("onprem-default").expect("built-in profile"),
        Some(("svc-backup".into(), "demo-password".into())),
    ));
    let running = serve("127.0.0.1:0", sim, 32)?;
    println!("1. simulated Exchange (5 mailboxes, 1% dirty items) serving at {}", running.url());

    let g2 = Global {
        repo: Some(dir.join("archive")),
        password_file: Some(passphrase.clone()),
        cache_dir: g.cache_dir.clone().or_else(|| Some(dir.join("cache"))),
        json: false,
        quiet: false,
        lock_lease: g.lock_lease,
        no_lock: false,
    };
    println!("2. new archive at {}", dir.join("archive").display());
    super::init::run(&Global { quiet: true, ..g2.clone() }, InitArgs { label: "demo".into() })?;
    println!(
        "3. backing up every mailbox through EWS (ResolveNames, SyncFolderHierarchy, SyncFolderItems, ExportItems):"
    );
    let pack = PackArgs {
        from_dir: None,
        ews: Some(running.url()),
        mailbox: Vec::new(),
        mailboxes_file: None,
        all_mailboxes: true,
        public_folders: false,
        conn: EwsConnArgs {
            user: Some("svc-backup".into()),
            ews_password_file: Some(ews_password),
            token_file: None,
            auth: crate::args::LogonAuth::Auto,
            ca_cert: None,
        },
        concurrency: 4,
        requests_per_mailbox: 4,
        sync_concurrency: 2,
        max_duration: None,
        time: None,
        force: false,
        threads: None,
        max_item_size: exarch_ews_source::export_stream::DEFAULT_MAX_ITEM_BYTES,
    };
    super::pack_ews::run(&g2, &pack, &running.url())?;
    println!("4. verifying every blob and item:");
    super::verify::run(&g2, VerifyArgs { read_data: true, read_data_subset: None, no_key: false })?;
    println!("5. snapshots:");
    super::snapshots::run(&g2, SnapshotsArgs { mailbox: None })?;
    running.stop();
    let archive = dir.join("archive");
    println!();
    println!("Everything is in {}:", dir.display());
    println!("  archive      {}  (passphrase in {})", archive.display(), passphrase.display());
    println!("  Exchange     {}  (the simulator's mailboxes)", state_dir.display());
    println!("Try:");
    println!("  export EXARCH_REPOSITORY={} EXARCH_PASSWORD_FILE={}", archive.display(), passphrase.display());
    println!("  exarch ls latest --mailbox user1@example.com");
    println!("  exarch extract latest --mailbox user1@example.com --to {}", dir.join("restore").display());
    Ok(())
}

#[cfg(unix)]
fn write_private(path: &std::path::Path, content: &str) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    writeln!(f, "{content}")?;
    Ok(())
}

#[cfg(not(unix))]
fn write_private(path: &std::path::Path, content: &str) -> Result<()> {
    std::fs::write(path, format!("{content}\n"))?;
    Ok(())
}
