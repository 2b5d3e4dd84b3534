//! Command-line definition. Flag names follow restic where the meaning is the same.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

mod conn;
mod simulate;
pub use conn::*;
pub use simulate::*;

#[derive(Parser, Debug)]
#[command(
    name = "exarch",
    version,
    about = "Brick-level, full-fidelity Exchange mailbox backup",
    long_about = None,
    after_help = "Exit codes: 0 ok; 1 error; 2 usage; 3 wrong passphrase, no key or refused sign-in; 4 damage found \
                  (or a refusal to delete without proof); 5 partial run (stopped at --max-duration or by the server, \
                  or some items could not be backed up or restored: they are listed; the next run continues)."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "Global options")]
pub struct Global {
    /// Repository: a directory (local disk or NAS mount), s3:https://HOST[:PORT]/BUCKET[/PREFIX]
    /// (S3-compatible object storage) or azblob:https://ACCOUNT.blob.core.windows.net/CONTAINER[/PREFIX]
    #[arg(long, short = 'r', global = true, env = "EXARCH_REPOSITORY", value_name = "DIR|URL")]
    pub repo: Option<PathBuf>,
    #[command(flatten)]
    pub store: StoreArgs,
    /// Read the repository passphrase from this file (first line)
    #[arg(long, global = true, env = "EXARCH_PASSWORD_FILE", value_name = "FILE")]
    pub password_file: Option<PathBuf>,
    /// Get the repository passphrase from this command's first output line (a secret store's
    /// client), run by the shell
    #[arg(long, global = true, env = "EXARCH_PASSWORD_COMMAND", value_name = "CMD")]
    pub password_command: Option<String>,
    /// Local cache directory (index tables); default: $XDG_CACHE_HOME/exarch or ~/.cache/exarch
    #[arg(long, global = true, env = "EXARCH_CACHE_DIR", value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Print machine-readable JSON on stdout
    #[arg(long, global = true)]
    pub json: bool,
    /// No progress bar and no summary (errors and --json output still print)
    #[arg(long, short = 'q', global = true)]
    pub quiet: bool,
    /// Seconds a lock holder has to refresh its lock; others take it as stale after twice this.
    /// Raise it for storage that can stall for minutes
    #[arg(long, global = true, env = "EXARCH_LOCK_LEASE", value_name = "SECS", default_value_t = 120,
          value_parser = clap::value_parser!(u64).range(3..=86_400))]
    pub lock_lease: u64,
    /// Take no lock (read-only media); only for commands that only read (verify, extract,
    /// replay). A prune running meanwhile can make such a read fail
    #[arg(long, global = true)]
    pub no_lock: bool,
    /// More log output on stderr: -v what happens, -vv every request to Exchange (operation,
    /// mailbox, status, duration), -vvv everything; RUST_LOG (e.g. `exarch_ews_source=debug`)
    /// chooses instead
    #[arg(long, short = 'v', global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Also write the log to this file (appended; at least what -v shows), so that a scheduled run
    /// leaves a record
    #[arg(long, global = true, env = "EXARCH_LOG_FILE", value_name = "FILE")]
    pub log_file: Option<PathBuf>,
    /// With a backup or replay not shown on a terminal: a status line this often (log, stderr)
    #[arg(long, global = true, default_value = "1m", value_name = "DURATION")]
    pub status_interval: String,
    /// Form of the --log-file lines: text, or json (one object a line)
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Configuration file with named profiles (default: config.toml in the user's configuration
    /// directory, e.g. ~/.config/exarch/config.toml; see README)
    #[arg(long, global = true, env = "EXARCH_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Take settings from this profile of the configuration file; flags and environment variables
    /// given as well win over it
    #[arg(long = "use-profile", short = 'P', global = true, env = "EXARCH_USE_PROFILE", value_name = "NAME")]
    pub use_profile: Option<String>,
}

/// Signing in to object storage (`--repo s3:…` / `azblob:…`). Secrets come from the environment or
/// a file, never from the command line.
#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "Object storage")]
pub struct StoreArgs {
    /// S3: the signing region (Garage: garage)
    #[arg(long, global = true, env = "AWS_REGION", value_name = "REGION", default_value = "us-east-1")]
    pub s3_region: String,
    /// S3: the endpoint for `s3:BUCKET[/PREFIX]` repositories (given in the URL otherwise)
    #[arg(long, global = true, env = "AWS_ENDPOINT_URL", value_name = "URL")]
    pub s3_endpoint: Option<String>,
    /// S3: the access key id (the secret key comes from AWS_SECRET_ACCESS_KEY or --s3-secret-key-file)
    #[arg(long, global = true, env = "AWS_ACCESS_KEY_ID", value_name = "ID", hide_env_values = true)]
    pub s3_access_key_id: Option<String>,
    /// S3: file holding the secret access key (first line)
    #[arg(long, global = true, value_name = "FILE")]
    pub s3_secret_key_file: Option<PathBuf>,
    /// Azure Blob: the storage account (its key comes from AZURE_STORAGE_KEY)
    #[arg(long, global = true, env = "AZURE_STORAGE_ACCOUNT", value_name = "NAME")]
    pub azure_account: Option<String>,
}

/// `--log-format`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create a new repository
    Init(InitArgs),
    /// Back up a source into a new snapshot
    Pack(PackArgs),
    /// List snapshots
    Snapshots(SnapshotsArgs),
    /// List the items of a snapshot
    Ls(LsArgs),
    /// Write a snapshot's items back as files
    Extract(ExtractArgs),
    /// Remove snapshots by retention rules and free the space they held
    Prune(PruneArgs),
    /// Run a simulated Exchange server (EWS and Microsoft Graph on loopback) for tests and demos
    Simulate(SimulateArgs),
    /// Put a snapshot's items back into Exchange (EWS UploadItems or a Graph import session), in place
    /// or into another mailbox
    Replay(ReplayArgs),
    /// Back up a simulated Exchange into a new local archive, verify it, and list it
    Demo(DemoArgs),
    /// Check the repository's integrity (exit 4 when anything is damaged)
    Verify(VerifyArgs),
    /// Remove the named snapshots (their data is freed by a later prune)
    Forget(ForgetArgs),
    /// Repair damaged metadata: rebuild the index from the packs, remove damaged snapshots
    #[command(subcommand)]
    Repair(RepairCommand),
    /// Manage key slots (passphrases)
    #[command(subcommand)]
    Key(KeyCommand),
    /// Remove stale locks (left by a process that died); live locks are kept
    Unlock(UnlockArgs),
    /// Find items across snapshots by subject, sender, folder, class and received time
    Find(FindArgs),
    /// Write a shell completion script to stdout (e.g. `exarch completion bash > /etc/bash_completion.d/exarch`)
    Completion(CompletionArgs),
    /// Write the man page (roff) to stdout (e.g. `exarch man | man -l -`)
    Man,
}

impl Command {
    /// The verb, as typed.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Init(_) => "init",
            Command::Pack(_) => "pack",
            Command::Snapshots(_) => "snapshots",
            Command::Ls(_) => "ls",
            Command::Extract(_) => "extract",
            Command::Prune(_) => "prune",
            Command::Simulate(_) => "simulate",
            Command::Replay(_) => "replay",
            Command::Demo(_) => "demo",
            Command::Verify(_) => "verify",
            Command::Forget(_) => "forget",
            Command::Repair(_) => "repair",
            Command::Key(_) => "key",
            Command::Unlock(_) => "unlock",
            Command::Find(_) => "find",
            Command::Completion(_) => "completion",
            Command::Man => "man",
        }
    }
}

#[derive(Args, Debug)]
pub struct FindArgs {
    /// Items whose subject contains this (case-insensitive)
    #[arg(long, value_name = "TEXT")]
    pub subject: Option<String>,
    /// Items whose sender contains this (case-insensitive)
    #[arg(long, value_name = "TEXT")]
    pub sender: Option<String>,
    /// Items in this folder or below (path as `exarch ls` shows it, case-insensitive)
    #[arg(long, value_name = "PATH")]
    pub folder: Option<String>,
    /// Items whose class starts with this (e.g. IPM.Appointment)
    #[arg(long, value_name = "CLASS")]
    pub class: Option<String>,
    /// Items received at or after this time (RFC 3339 or YYYY-MM-DD, UTC)
    #[arg(long, value_name = "DATE")]
    pub since: Option<String>,
    /// Items received before the end of this day, or before this time (RFC 3339)
    #[arg(long, value_name = "DATE")]
    pub until: Option<String>,
    /// Only snapshots of this mailbox
    #[arg(long)]
    pub mailbox: Option<String>,
}

#[derive(Args, Debug)]
pub struct UnlockArgs {
    /// Also remove locks that are not stale (only when no other exarch process can be using the
    /// repository: a running backup or prune would lose its lock)
    #[arg(long)]
    pub remove_all: bool,
}

#[derive(Args, Debug)]
pub struct CompletionArgs {
    /// The shell
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Args, Debug)]
pub struct InitArgs {
    /// Label of the first key slot
    #[arg(long, default_value = "initial key")]
    pub label: String,
    #[command(flatten)]
    pub kdf: KdfArgs,
}

/// Argon2id parameters of a new key slot (SPEC §4). The defaults are RFC 9106's second
/// recommendation; more memory or passes make guessing slower, and opening too.
#[derive(Args, Debug, Clone)]
pub struct KdfArgs {
    /// Argon2id memory of the new key slot, in MiB (8 to 1024)
    #[arg(long, value_name = "MIB", default_value_t = 64, value_parser = clap::value_parser!(u32).range(8..=1024))]
    pub kdf_memory: u32,
    /// Argon2id passes of the new key slot (1 to 16)
    #[arg(long, value_name = "N", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=16))]
    pub kdf_passes: u32,
    /// Argon2id lanes of the new key slot (1 to 16; computed in parallel)
    #[arg(long, value_name = "N", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=16))]
    pub kdf_lanes: u32,
}

impl KdfArgs {
    pub fn params(&self) -> exarch_archive::keyslot::KdfParams {
        exarch_archive::keyslot::KdfParams {
            m_cost: self.kdf_memory * 1024,
            t_cost: self.kdf_passes,
            p_cost: self.kdf_lanes,
        }
    }
}

#[derive(Args, Debug)]
pub struct PackArgs {
    /// Back up a directory tree: every regular file is one item, its folder being its directory
    #[arg(long, value_name = "SRC", conflicts_with_all = ["ews", "graph"], required_unless_present_any = ["ews", "graph"])]
    pub from_dir: Option<PathBuf>,
    /// Back up mailboxes from this EWS endpoint (https://server/EWS/Exchange.asmx)
    #[arg(long, value_name = "URL", conflicts_with = "graph")]
    pub ews: Option<String>,
    #[command(flatten)]
    pub graph: GraphConnArgs,
    /// With --from-dir: the name recorded as the snapshot's mailbox (more than once: SRC/<name>
    /// for each, in one run). With --ews or --graph: a mailbox's SMTP address (repeatable)
    #[arg(long)]
    pub mailbox: Vec<String>,
    /// A file of mailbox addresses, one a line (# comments allowed); with --from-dir, SRC/<name>
    /// for each
    #[arg(long, value_name = "FILE")]
    pub mailboxes_file: Option<PathBuf>,
    /// With --ews: every mailbox the address list resolves (ResolveNames "SMTP:"; see README).
    /// With --graph: every user with a mail address (GET /users). With --from-dir: every
    /// subdirectory of SRC, named by it. Not with --mailbox or --mailboxes-file
    #[arg(long, conflicts_with_all = ["mailbox", "mailboxes_file"])]
    pub all_mailboxes: bool,
    /// With --ews: also back up the public folders, as a snapshot of their own (mailbox
    /// `public-folders`)
    #[arg(long)]
    pub public_folders: bool,
    /// With --ews or --graph: also back up each mailbox's In-Place Archive, as a store of its own
    /// (snapshots named `<address>#archive`); mailboxes without one are noted and skipped
    #[arg(long)]
    pub archive_mailbox: bool,
    /// With --ews: also back up each mailbox's Recoverable Items folders (Deletions, Purges,
    /// Versions, …, and the archive's with --archive-mailbox), as stores of their own
    /// (`<address>#recoverable-items`, `<address>#archive-recoverable-items`)
    #[arg(long, requires = "ews")]
    pub recoverable_items: bool,
    #[command(flatten)]
    pub conn: EwsConnArgs,
    /// Mailboxes backed up at once
    #[arg(long, default_value_t = 4, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=256))]
    pub concurrency: usize,
    /// Requests in flight per mailbox (with --graph at most 4, Exchange Online's limit)
    #[arg(long, default_value_t = 4, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=64))]
    pub requests_per_mailbox: usize,
    /// Sync calls (SyncFolderHierarchy, SyncFolderItems) in flight for the account: Exchange 2016
    /// and later limit these per user
    #[arg(long, default_value_t = 2, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=64))]
    pub sync_concurrency: usize,
    /// With --ews or --graph: stop exporting after this long (e.g. 6h, 45m, 1h30m; m is minutes);
    /// what was stored is kept and the next run continues from there
    #[arg(long, value_name = "DURATION")]
    pub max_duration: Option<String>,
    /// Snapshot time (RFC 3339), for imports and tests; default now
    #[arg(long, value_name = "RFC3339")]
    pub time: Option<String>,
    /// Read every item, even those unchanged since the parent snapshot
    #[arg(long)]
    pub force: bool,
    /// Compression/sealing threads (default: number of CPUs)
    #[arg(long, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1024))]
    pub threads: Option<usize>,
    /// With --ews or --graph: largest item kept, in bytes; larger items are listed as skipped. Items over 8 MiB
    /// are spooled through a private file in the cache directory, so memory stays flat
    #[arg(long, value_name = "BYTES", default_value_t = exarch_ews_source::export_stream::DEFAULT_MAX_ITEM_BYTES,
          value_parser = clap::value_parser!(u64).range(1024..=(1u64 << 40)))]
    pub max_item_size: u64,
}

#[derive(Args, Debug)]
pub struct ReplayArgs {
    /// Snapshot id, unique prefix (8+ hex digits) or `latest`
    pub snapshot: String,
    /// Mailbox for `latest` when the repository holds several
    #[arg(long)]
    pub mailbox: Option<String>,
    /// EWS endpoint to restore into (https://server/EWS/Exchange.asmx)
    #[arg(long, value_name = "URL", required_unless_present = "graph", conflicts_with = "graph")]
    pub ews: Option<String>,
    #[command(flatten)]
    pub conn: EwsConnArgs,
    #[command(flatten)]
    pub graph: GraphConnArgs,
    /// Restore into this mailbox instead of the snapshot's own; items go under a new top folder
    /// `Restored <snapshot time>` unless --in-place is given
    #[arg(long, value_name = "SMTP")]
    pub to_mailbox: Option<String>,
    /// With --to-mailbox: restore into the original folder paths instead of a `Restored` folder
    #[arg(long)]
    pub in_place: bool,
    /// Only items in this folder or below (path as `exarch ls` shows it, e.g. `Inbox/Projects`;
    /// repeatable)
    #[arg(long, value_name = "PATH")]
    pub folder: Vec<String>,
    /// Only this item: its EWS item id, or its file name as `exarch ls` shows it (repeatable)
    #[arg(long, value_name = "ID")]
    pub item: Vec<String>,
    /// Only items received at or after this time (RFC 3339 or YYYY-MM-DD, UTC)
    #[arg(long, value_name = "DATE")]
    pub since: Option<String>,
    /// Only items received before the end of this day, or before this time (RFC 3339)
    #[arg(long, value_name = "DATE")]
    pub until: Option<String>,
    /// List what would be created where, with counts and bytes; change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// UploadItems requests in flight
    #[arg(long, default_value_t = 4, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=64))]
    pub requests: usize,
    /// Largest request the server accepts: with --ews in bytes of base64 item data (default
    /// 25000000, Exchange's), with --graph the largest item (default 150 MiB, Exchange Online's)
    #[arg(long, value_name = "BYTES", value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1024..=2147483647))]
    pub upload_limit: Option<usize>,
    /// Restore only items no longer in the mailbox; leave every item that is there as it is
    #[arg(long, conflicts_with = "overwrite_changed")]
    pub only_missing: bool,
    /// Restore missing items, and put the archived version back over items that changed since;
    /// unchanged ones are left alone (default: the archived version goes back over every item found)
    #[arg(long)]
    pub overwrite_changed: bool,
}

#[derive(Args, Debug)]
pub struct SnapshotsArgs {
    /// Only snapshots of this mailbox
    #[arg(long)]
    pub mailbox: Option<String>,
}

#[derive(Args, Debug)]
pub struct LsArgs {
    /// Snapshot id, unique prefix (8+ hex digits) or `latest`
    pub snapshot: String,
    /// Mailbox for `latest` when the repository holds several
    #[arg(long)]
    pub mailbox: Option<String>,
}

#[derive(Args, Debug)]
pub struct ExtractArgs {
    /// Snapshot ids, unique prefixes (8+ hex digits) or `latest`; several (or --all-mailboxes,
    /// --run) extract each into DIR/<mailbox>/
    #[arg(value_name = "SNAPSHOT", required_unless_present = "run")]
    pub snapshots: Vec<String>,
    /// Target directory
    #[arg(long, value_name = "DIR")]
    pub to: PathBuf,
    /// Mailbox for `latest` when the repository holds several
    #[arg(long, conflicts_with = "all_mailboxes")]
    pub mailbox: Option<String>,
    /// With `latest`: the newest snapshot of every mailbox and store, each into DIR/<mailbox>/
    #[arg(long)]
    pub all_mailboxes: bool,
    /// Every snapshot of one backup run (its run id or 8+ hex digits of it; `exarch snapshots`
    /// shows them), each into DIR/<mailbox>/
    #[arg(long, value_name = "RUN_ID", conflicts_with_all = ["snapshots", "all_mailboxes", "mailbox"])]
    pub run: Option<String>,
    /// Replace files that already exist in the target
    #[arg(long)]
    pub overwrite: bool,
    /// Parallel readers (default: number of CPUs; at least 8 on object storage)
    #[arg(long, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1024))]
    pub threads: Option<usize>,
}

#[derive(Args, Debug)]
pub struct PruneArgs {
    /// Keep the newest N snapshots of each mailbox
    #[arg(long, value_name = "N")]
    pub keep_last: Option<u32>,
    /// Keep the newest snapshot of each of the last N hours that have one
    #[arg(long, value_name = "N")]
    pub keep_hourly: Option<u32>,
    /// Keep the newest snapshot of each of the last N days that have one
    #[arg(long, value_name = "N")]
    pub keep_daily: Option<u32>,
    /// Keep the newest snapshot of each of the last N ISO weeks that have one
    #[arg(long, value_name = "N")]
    pub keep_weekly: Option<u32>,
    /// Keep the newest snapshot of each of the last N months that have one
    #[arg(long, value_name = "N")]
    pub keep_monthly: Option<u32>,
    /// Keep the newest snapshot of each of the last N years that have one
    #[arg(long, value_name = "N")]
    pub keep_yearly: Option<u32>,
    /// Keep every snapshot newer than the newest one minus DURATION, in restic's form (e.g. 1y6m,
    /// 14d, 2d12h: y years, m months, d days, h hours)
    #[arg(long, value_name = "DURATION")]
    pub keep_within: Option<String>,
    /// Apply the rules to this mailbox only (others keep all their snapshots)
    #[arg(long)]
    pub mailbox: Option<String>,
    /// Show what would be removed and how many bytes freed; change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Delete at once instead of marking for a later prune (needs every other process stopped)
    #[arg(long)]
    pub delete_now: bool,
    /// How long marked packs wait before a later prune deletes them (e.g. 24h, 90m, 7d; m is
    /// minutes; at least 1h and three --lock-lease)
    #[arg(long, default_value = "24h", value_name = "DURATION")]
    pub grace: String,
    /// Rewrite packs whose dead share is at least this many percent
    #[arg(long, default_value_t = 20.0, value_name = "PERCENT")]
    pub repack_threshold: f64,
    /// Let the rules remove every snapshot of a mailbox (refused otherwise)
    #[arg(long)]
    pub allow_empty: bool,
}

#[derive(Args, Debug)]
pub struct ForgetArgs {
    /// Snapshots to remove: ids (8+ hex digits) or `latest` with --mailbox
    #[arg(required = true, value_name = "SNAPSHOT")]
    pub snapshots: Vec<String>,
    /// Mailbox for `latest`
    #[arg(long)]
    pub mailbox: Option<String>,
    /// Show what would be removed; change nothing
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Subcommand, Debug)]
pub enum RepairCommand {
    /// Rebuild every index file from the packs' own sealed headers (takes an exclusive lock)
    Index(RepairArgs),
    /// Remove every snapshot that cannot be read (summary or manifest damaged)
    Snapshots(RepairArgs),
}

#[derive(Args, Debug)]
pub struct RepairArgs {
    /// Show what would change; change nothing
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Where to put the simulated server's state and the archive
    #[arg(long, default_value = "exarch-demo")]
    pub dir: PathBuf,
    /// Back up through Microsoft Graph's mailbox export API (as for Exchange Online) instead of EWS
    #[arg(long)]
    pub graph: bool,
}

#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// Also read every blob and check every item's whole hash
    #[arg(long, conflicts_with = "read_data_subset")]
    pub read_data: bool,
    /// Read the blobs of slice N of M of the packs (e.g. 2/7: seven runs cover everything);
    /// week/M or day/M: this week's (day's) slice, so a weekly (daily) schedule with one setting
    /// reads every pack over M weeks (days)
    #[arg(long, value_name = "N/M")]
    pub read_data_subset: Option<String>,
    /// Without a passphrase: only check that every file's content matches its name
    #[arg(long, conflicts_with_all = ["read_data", "read_data_subset"])]
    pub no_key: bool,
}

#[derive(Subcommand, Debug)]
pub enum KeyCommand {
    /// List key slots
    List,
    /// Add a key slot for another passphrase
    Add {
        #[arg(long, default_value = "added key")]
        label: String,
        /// Read the new passphrase from this file instead of prompting
        #[arg(long, value_name = "FILE")]
        new_password_file: Option<PathBuf>,
        #[command(flatten)]
        kdf: KdfArgs,
    },
    /// Remove a key slot (id or 8+ digit prefix); the last one cannot be removed
    Remove { id: String },
    /// Change the passphrase of the slot in use (adds a new slot, then removes the old one)
    Passwd {
        #[arg(long, value_name = "FILE")]
        new_password_file: Option<PathBuf>,
        #[command(flatten)]
        kdf: KdfArgs,
    },
}
