//! `exarch simulate`: the simulated Exchange's flags (mailboxes, throttling, faults, hostile
//! behaviour, Graph sign-in and limits, slow calendars).

use clap::{Args, ValueEnum};
use std::path::PathBuf;

/// `simulate --extended-protection`.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExtendedProtectionArg {
    Off,
    Allow,
    Require,
}

#[derive(Args, Debug)]
pub struct SimulateArgs {
    /// Directory holding the simulated mailboxes (made from the seed when empty)
    #[arg(long, value_name = "DIR")]
    pub state: PathBuf,
    /// Address to serve EWS on, e.g. 127.0.0.1:8080
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    #[arg(long, default_value_t = 5, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=100000))]
    pub mailboxes: usize,
    /// Items per mailbox
    #[arg(long, default_value_t = 100, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(0..=10000000))]
    pub items: usize,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    #[arg(long, default_value = "example.com")]
    pub domain: String,
    /// Throttling: onprem-default, strict or unlimited
    #[arg(long, value_enum, default_value_t = ThrottleProfile::OnpremDefault)]
    pub profile: ThrottleProfile,
    /// Override the profile's per-mailbox budget: units available at once
    #[arg(long, value_name = "UNITS")]
    pub budget_burst: Option<f64>,
    /// Override the profile's budget recharge, units per second
    #[arg(long, value_name = "UNITS")]
    pub budget_recharge: Option<f64>,
    /// Share of requests answered with a transient fault: HTTP 503, a dropped connection or a
    /// truncated body (0.05 = 5%)
    #[arg(long, default_value_t = 0.0)]
    pub fault_rate: f64,
    /// Names of the default folders when the state is first made: en (Inbox, ...) or de
    /// (Posteingang, ...)
    #[arg(long, value_enum, default_value_t = Locale::En)]
    pub locale: Locale,
    /// Also make public folders holding this many items (only when the state is first made)
    #[arg(long, default_value_t = 0, value_name = "N", value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(0..=10000000))]
    pub public_items: usize,
    /// Give every other mailbox (user1, user3, …) an In-Place Archive holding this many items
    /// (only when the state is first made)
    #[arg(long, default_value_t = 0, value_name = "N", value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(0..=10000000))]
    pub archive_items: usize,
    /// Put this many items in each mailbox's Recoverable Items (Deletions, Purges, Versions, …),
    /// and a quarter as many in each archive's (only when the state is first made)
    #[arg(long, default_value_t = 0, value_name = "N", value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(0..=10000000))]
    pub recoverable_items: usize,
    /// Share of items that fail any export batch containing them (0.01 = 1%)
    #[arg(long, default_value_t = 0.0)]
    pub dirty_rate: f64,
    /// Accept only this user (password from --password-file or EXARCH_EWS_PASSWORD)
    #[arg(long)]
    pub user: Option<String>,
    /// Authentication the server asks for: basic, or ntlm (Windows authentication; needs --user)
    #[arg(long, value_enum, default_value_t = ServerAuth::Basic)]
    pub auth: ServerAuth,
    /// Change PCT percent of the items (new, changed, deleted) and exit
    #[arg(long, value_name = "PCT")]
    pub churn: Option<f64>,
    /// Write every item, laid out as `exarch extract` lays out a snapshot, under OUT/<mailbox>/ and exit
    #[arg(long, value_name = "OUT")]
    pub dump: Option<PathBuf>,
    /// Empty this mailbox and its archive (every item, and every folder but the default ones; its
    /// Recoverable Items are kept, as Exchange keeps them) and exit
    #[arg(long, value_name = "MAILBOX")]
    pub wipe: Option<String>,
    /// Share of uploaded items the server refuses with ErrorCorruptData (0.02 = 2%), chosen by
    /// content so the same items are refused every time
    #[arg(long, default_value_t = 0.0)]
    pub refuse_rate: f64,
    /// Misbehave towards one mailbox, to test a client's defences: KIND@MAILBOX with KIND one of
    /// extra-messages, huge-retry-after, folder-loop, redirect, doctype, bad-utf8, huge-item
    /// (repeatable; `public-folders` names the public store)
    #[arg(long, value_name = "KIND@MAILBOX")]
    pub hostile: Vec<exarch_exchange_sim::hostile::Rule>,
    /// Serve HTTPS with a certificate made at start (for 127.0.0.1 and localhost), written to FILE
    /// as PEM so that clients can trust it (`--ca-cert FILE`)
    #[arg(long, value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// Windows Extended Protection for NTLM over HTTPS: off; allow (a logon without a channel
    /// binding passes, a wrong one is refused); require (only a logon bound to this TLS channel)
    #[arg(long, value_enum, default_value_t = ExtendedProtectionArg::Off)]
    pub extended_protection: ExtendedProtectionArg,
    /// Largest request body the server accepts; larger requests get HTTP 413
    #[arg(long, default_value_t = exarch_exchange_sim::DEFAULT_MAX_REQUEST_BYTES, value_name = "BYTES", value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1024..=4294967295))]
    pub max_request_bytes: usize,
    /// Graph: only this application (client id) may sign in (default: any)
    #[arg(long, value_name = "ID")]
    pub graph_client_id: Option<String>,
    /// Graph: file holding the only client secret accepted (default: any non-empty secret)
    #[arg(long, value_name = "FILE")]
    pub graph_client_secret_file: Option<PathBuf>,
    /// Graph: register this certificate (PEM) for the application; its key's assertions are accepted
    #[arg(long, value_name = "PEM")]
    pub graph_client_cert: Vec<PathBuf>,
    /// Graph: how long an access token lasts
    #[arg(long, value_name = "SECS", default_value_t = 3600, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub token_lifetime: u64,
    /// Graph: how long an import session's URL works
    #[arg(long, value_name = "SECS", default_value_t = 3600, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub import_session_lifetime: u64,
    /// Graph: an application permission the admin has not consented to (its calls get 403;
    /// repeatable), e.g. MailboxItem.ImportExport.All
    #[arg(long, value_name = "PERMISSION")]
    pub deny_permission: Vec<String>,
    /// Graph: requests per mailbox per --graph-window (Exchange Online: 10,000 per 10 minutes)
    #[arg(long, value_name = "N", default_value_t = 10_000, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=10_000_000))]
    pub graph_budget: usize,
    #[arg(long, value_name = "SECS", default_value_t = 600, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub graph_window: u64,
    /// A big calendar: this many more appointments in the first mailbox's Calendar (when the
    /// state is first made)
    #[arg(long, default_value_t = 0, value_name = "N", value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(0..=10000000))]
    pub calendar_items: usize,
    /// Server time per exported calendar item
    #[arg(long, default_value_t = 2, value_name = "MS", value_parser = clap::value_parser!(u64).range(0..=600_000))]
    pub calendar_export_ms: u64,
    /// The longest an ExportItems request may run: one that would run longer fails with
    /// ErrorTimeoutExpired when the time is up (Exchange's limit is about a minute)
    #[arg(long, value_name = "MS", value_parser = clap::value_parser!(u64).range(1..=3_600_000))]
    pub request_limit_ms: Option<u64>,
    /// How a request over the limit fails: a SOAP fault, or per-item messages (the items that
    /// fit exported, ErrorTimeoutExpired for the rest)
    #[arg(long, value_enum, default_value_t = TimeoutStyleArg::Fault)]
    pub timeout_style: TimeoutStyleArg,
}

/// `simulate --timeout-style`.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeoutStyleArg {
    Fault,
    Messages,
}

/// The logon the simulated server asks for.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerAuth {
    Basic,
    Ntlm,
}

/// The simulated server's throttling.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ThrottleProfile {
    /// Exchange 2016+ defaults: EWSMaxConcurrency 27, generous budgets
    OnpremDefault,
    /// Tight budgets and few concurrent requests, like a busy or hardened server
    Strict,
    /// No throttling at all
    Unlimited,
}

impl ThrottleProfile {
    /// The name the simulator knows the profile by.
    pub fn name(self) -> &'static str {
        match self {
            ThrottleProfile::OnpremDefault => "onprem-default",
            ThrottleProfile::Strict => "strict",
            ThrottleProfile::Unlimited => "unlimited",
        }
    }
}

/// The language of the default folders' names in a new simulated state.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Locale {
    En,
    De,
}

impl Locale {
    pub fn code(self) -> &'static str {
        match self {
            Locale::En => "en",
            Locale::De => "de",
        }
    }
}
