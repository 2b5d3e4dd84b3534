//! `exarch demo`: the whole job in one command, against the built-in simulated Exchange: the
//! simulator, a new archive, a backup of every mailbox through the mailbox layer (EWS, or Graph
//! with `--graph`), a full verify and the snapshot list, all through the libraries (not through
//! other commands' arguments).

use crate::args::{DemoArgs, Global};
use anyhow::{Context as _, Result};
use exarch_archive::lock::{LockKind, LockPurpose};
use exarch_archive::verify::{verify, ReadData};
use exarch_archive::{Context, InitOptions, LocalStorage, Repository};
use exarch_ews_source::client::{Auth, Client, ClientConfig};
use exarch_ews_source::export_stream::Limits;
use exarch_exchange_sim::{serve, Profile, Simulator};
use exarch_mailbox::backup::{backup_run, Done, RunSettings};
use exarch_mailbox::ews::EwsSource;
use exarch_mailbox::graph::GraphSource;
use exarch_mailbox::Source;
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
    exarch_archive::private_fs::write_atomic(&passphrase, format!("{}\n", hex::encode(secret)).as_bytes())
        .with_context(|| format!("writing {}", passphrase.display()))?;

    let state_dir = dir.join("exchange");
    let org = super::simulate::Organisation {
        seed: 42,
        domain: "example.com",
        mailboxes: 5,
        items: 150,
        dirty_rate: 0.01,
        public_items: 0,
        archive_items: 0,
        recoverable_items: 0,
        calendar_items: 0,
        locale: "en",
    };
    let state = super::simulate::load_or_generate(&state_dir, &org)?;
    let sim = Arc::new(Simulator::new(
        state_dir.clone(),
        state,
        Profile::named("onprem-default").expect("built-in profile"),
        Some(("svc-backup".into(), "demo-password".into())),
    ));
    let running = serve("127.0.0.1:0", sim, 32, None)?;
    println!("1. simulated Exchange (5 mailboxes, 1% dirty items) serving at {}", running.url());

    // The archive, the backup and the checks, straight through the libraries.
    let archive = dir.join("archive");
    let cache = g.cache_dir.clone().unwrap_or_else(|| dir.join("cache"));
    let storage = LocalStorage::new(&archive);
    storage.create_layout().with_context(|| format!("creating {}", archive.display()))?;
    let mut ctx = Context::new(&cache);
    ctx.lease_secs = g.lock_lease;
    let opts = InitOptions { label: "demo".into(), ..InitOptions::default() };
    let repo = Repository::init(Arc::new(storage), hex::encode(secret).as_bytes(), opts, ctx)?;
    println!("2. new archive at {}", archive.display());
    let spill = crate::private::dir(&cache.join("spill"))?;
    let done = if a.graph {
        println!("3. backing up every mailbox through Microsoft Graph (users, folders/items delta, exportItems):");
        let client = exarch_graph_source::GraphClient::new(exarch_graph_source::GraphConfig {
            graph_url: running.graph_url(),
            login_url: running.base(),
            tenant: "example.com".into(),
            client_id: "exarch-demo".into(),
            credential: exarch_graph_source::Credential::Secret("demo-secret".to_string().into()),
            ca_cert: None,
            concurrency: 16,
            per_mailbox: 4,
            timeout: std::time::Duration::from_secs(180),
            deadline: None,
            max_wait: std::time::Duration::from_secs(300),
            limits: Limits { spill_dir: spill, ..Limits::default() },
        })?;
        let mailboxes: Vec<String> =
            client.users().context("listing users (GET /users)")?.into_iter().map(|u| u.address).collect();
        backup(&repo, &GraphSource::new(&client), &mailboxes)?
    } else {
        println!(
            "3. backing up every mailbox through EWS (ResolveNames, SyncFolderHierarchy, SyncFolderItems, ExportItems):"
        );
        let url = running.url();
        let client = Client::new(ClientConfig {
            url: url.clone(),
            auth: Auth::Auto { user: "svc-backup".into(), password: "demo-password".into() },
            ca_cert: None,
            concurrency: 16,
            per_mailbox: 4,
            sync_concurrency: 2,
            timeout: std::time::Duration::from_secs(180),
            deadline: None,
            channel_binding: Default::default(),
            limits: Limits { spill_dir: spill, ..Limits::default() },
        })?;
        let mailboxes = client.all_mailboxes().context("listing mailboxes (ResolveNames)")?;
        backup(&repo, &EwsSource::new(&client, &url), &mailboxes)?
    };
    if let Some(e) = done.into_iter().find_map(|d| d.result.err()) {
        return Err(e.into());
    }
    println!("4. verifying every blob and item:");
    let report = {
        let _lock = repo.lock(LockKind::Shared, LockPurpose::Verify)?;
        verify(&repo, ReadData::All)?
    };
    super::verify::print_report(&report, false);
    if !report.is_clean() {
        return Err(crate::Exit(crate::EXIT_DAMAGE, "the new archive did not verify".into()).into());
    }
    println!("5. snapshots:");
    let all = repo.snapshots()?;
    super::snapshots::print_table(&all.iter().collect::<Vec<_>>());
    running.stop();
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

/// Backs up `mailboxes` from `source` into `repo`, printing each snapshot as it is made.
fn backup(repo: &Repository, source: &dyn Source, mailboxes: &[String]) -> Result<Vec<Done>> {
    let lock = repo.lock(LockKind::Shared, LockPurpose::Pack)?;
    let mut run_id = [0u8; 16];
    repo.context().entropy.fill(&mut run_id);
    let settings = RunSettings {
        run_id,
        time_ms: exarch_archive::time::now_ms(),
        deadline: None,
        lock: lock.watch(),
        workers: 2,
        requests_per_store: 4,
        progress: Default::default(),
    };
    let done = backup_run(
        repo,
        Arc::new(repo.index()?),
        source,
        mailboxes,
        &settings,
        4,
        &|mb: &str, text: &str| crate::logging::warn(true, &format!("{mb}: warning: {text}")),
        &|d: &Done| match &d.result {
            Ok((id, st)) => println!(
                "   {}: snapshot {} ({} items, {} skipped as dirty)",
                d.store,
                id.short(),
                st.items,
                st.skipped
            ),
            Err(e) => println!("   {}: FAILED: {e}", d.store),
        },
    );
    drop(lock);
    Ok(done)
}
