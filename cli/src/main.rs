//! `exarch`: brick-level Exchange mailbox backup. A thin layer over the `exarch-archive` engine.
//!
//! Exit codes (also in README.md and `--help`): 0 ok, 1 error, 2 usage, 3 wrong passphrase / no key
//! / refused sign-in,
//! 4 damage found (or a refusal to delete without proof), 5 partial run.

mod args;
mod commands;
mod logging;
mod output;
mod private;
mod profile;
mod secrets;
mod status;

use exarch_archive::ErrorClass;
use std::process::ExitCode;

pub const EXIT_ERROR: u8 = 1;
pub const EXIT_USAGE: u8 = 2;
pub const EXIT_KEY: u8 = 3;
pub const EXIT_DAMAGE: u8 = 4;
/// The run finished part-way (stopped at --max-duration, or by the server); the next run continues.
pub const EXIT_PARTIAL: u8 = 5;

/// A usage error (exit 2) with its message: what was wrong with the command line, and what to give.
pub fn usage(msg: impl Into<String>) -> anyhow::Error {
    Exit(EXIT_USAGE, msg.into()).into()
}

/// An error that already decided its exit code (e.g. extract finished but some items were damaged).
#[derive(Debug)]
pub struct Exit(pub u8, pub String);

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.1)
    }
}
impl std::error::Error for Exit {}

fn exit_code(err: &anyhow::Error) -> u8 {
    for cause in err.chain() {
        if let Some(Exit(code, _)) = cause.downcast_ref::<Exit>() {
            return *code;
        }
        if let Some(e) = cause.downcast_ref::<exarch_archive::Error>() {
            return match e.class() {
                ErrorClass::WrongKey => EXIT_KEY,
                ErrorClass::Damage => EXIT_DAMAGE,
                ErrorClass::Usage => EXIT_USAGE,
                ErrorClass::Failure => EXIT_ERROR,
            };
        }
        if let Some(secrets::NoPassphrase) = cause.downcast_ref::<secrets::NoPassphrase>() {
            return EXIT_KEY;
        }
    }
    EXIT_ERROR
}

/// One malloc arena (glibc): the backup pipeline frees on one thread what another allocated, and
/// glibc's per-thread arenas keep such memory resident. Measured (2 cores): backing up 8 mailboxes
/// in one run peaked at 141 MB with the default arenas and 64 MB with one, and was faster; 100,000
/// small items 168 MB against 121 MB. Before any thread starts.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn one_malloc_arena() {
    // SAFETY: mallopt only sets an allocator parameter; called before other threads exist.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
        // Fixed thresholds: glibc otherwise raises both to the size of every large buffer freed
        // (16 MiB pack buffers), and then keeps up to twice that unused in the heap. Buffers stay
        // in the heap (mapping each afresh cost a third more time in page faults), and more than
        // 8 MiB free at its top goes back. 8 mailboxes in one run: 70-85 MB -> 54-62 MB peak.
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 8 << 20);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn one_malloc_arena() {}

fn main() -> ExitCode {
    one_malloc_arena();
    let (cli, from_profile) = match profile::parse().and_then(|p| logging::init(&p.0.global).map(|()| p)) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("exarch: error: {e:#}");
            return ExitCode::from(exit_code(&e));
        }
    };
    let verb = cli.command.name();
    tracing::info!(version = env!("CARGO_PKG_VERSION"), command = verb, "exarch started");
    if let Some(p) = &cli.global.use_profile {
        // The keys only: a value could be a command line the user would rather not see in a log.
        tracing::info!(profile = %p, settings = %from_profile.join(", "), "settings from the profile");
    }
    let code = match commands::run(cli) {
        Ok(()) => 0,
        // A closed pipe (`exarch ls ... | head`) is not an error.
        Err(e)
            if e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) =>
        {
            0
        }
        Err(e) => {
            eprintln!("exarch: error: {e:#}");
            tracing::error!(target: logging::SAID, "exarch: error: {e:#}");
            exit_code(&e)
        }
    };
    let sent = exarch_archive::storage::request_counts();
    if sent.total() > 0 {
        tracing::info!(
            get = sent.get,
            put = sent.put,
            list = sent.list,
            stat = sent.stat,
            delete = sent.delete,
            "object store requests"
        );
    }
    tracing::info!(command = verb, exit_code = code, "exarch finished");
    ExitCode::from(code)
}
