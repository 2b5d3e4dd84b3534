//! The log: `tracing` events from the libraries and the CLI. On stderr only when asked for (`-v`,
//! `-vv`, `RUST_LOG`); in `--log-file` (text or JSON lines) always at least at info, so that a
//! scheduled run leaves a record. Lines the user reads anyway (the target [`SAID`]: notices,
//! warnings, summaries, the final error) go to the file only, not twice to the terminal.
//!
//! Nothing secret is ever an event's field: the libraries log operations, mailboxes, statuses and
//! durations, never a request's headers or body.

use crate::args::{Global, LogFormat};
use anyhow::{Context as _, Result};
use std::io::IsTerminal as _;
use std::sync::Mutex;
use tracing_subscriber::filter::{filter_fn, EnvFilter};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::Layer as _;

/// The target of lines the user also sees on stderr or stdout.
pub const SAID: &str = "exarch::said";

/// Our crates: what `-v` turns up (other crates' events stay off unless RUST_LOG names them).
const CRATES: [&str; 5] = ["exarch", "exarch_archive", "exarch_mailbox", "exarch_ews_source", "exarch_graph_source"];

/// Whether the log goes to stderr too (then progress bars stay off: they would be torn apart).
pub fn on_stderr(g: &Global) -> bool {
    g.verbose > 0 || rust_log().is_some()
}

fn rust_log() -> Option<String> {
    std::env::var("RUST_LOG").ok().filter(|s| !s.trim().is_empty())
}

/// Directives for our crates at the level `-v` given `verbose` times asks for.
fn directives(verbose: u8) -> String {
    let level = match verbose {
        0 | 1 => "info",
        2 => "debug",
        _ => "trace",
    };
    CRATES.iter().map(|c| format!("{c}={level}")).collect::<Vec<_>>().join(",")
}

fn filter(spec: &str) -> Result<EnvFilter> {
    EnvFilter::builder()
        .parse(spec)
        .map_err(|e| crate::usage(format!("RUST_LOG or -v: cannot read the log filter `{spec}`: {e}")))
}

/// Sets the log up for this run; call once, before anything logs.
pub fn init(g: &Global) -> Result<()> {
    let console_spec = rust_log().unwrap_or_else(|| directives(g.verbose));
    let console = on_stderr(g).then(|| {
        filter(&console_spec).map(|f| {
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(std::io::stderr().is_terminal())
                .with_target(true)
                .with_filter(f)
                .with_filter(filter_fn(|m| m.target() != SAID))
        })
    });
    let console = console.transpose()?;
    let file = match &g.log_file {
        None => None,
        Some(path) => {
            let f = exarch_archive::private_fs::options()
                .append(true)
                .create(true)
                .open(path)
                .with_context(|| format!("opening the log file {}", path.display()))?;
            // At least info, whatever the terminal shows; RUST_LOG adds to it.
            let spec = match rust_log() {
                Some(r) => format!("{},{r},{SAID}=info", directives(g.verbose.max(1))),
                None => format!("{},{SAID}=info", directives(g.verbose.max(1))),
            };
            let layer = tracing_subscriber::fmt::layer().with_ansi(false).with_writer(Mutex::new(f));
            Some(match g.log_format {
                LogFormat::Text => layer.with_filter(filter(&spec)?).boxed(),
                LogFormat::Json => layer.json().flatten_event(true).with_filter(filter(&spec)?).boxed(),
            })
        }
    };
    tracing_subscriber::registry().with(console).with(file).try_init().context("setting up the log")?;
    Ok(())
}

/// A line for the user on stderr (when `show`), kept in the log file as well.
pub fn tell(show: bool, line: &str) {
    if show {
        eprintln!("{line}");
    }
    tracing::info!(target: SAID, "{line}");
}

/// A warning for the user on stderr (when `show`), kept in the log file at warn level.
pub fn warn(show: bool, line: &str) {
    if show {
        eprintln!("{line}");
    }
    tracing::warn!(target: SAID, "{line}");
}

/// A summary line on stdout, kept in the log file as well.
pub fn out(line: &str) {
    println!("{line}");
    tracing::info!(target: SAID, "{line}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verbosity_raises_our_crates_only() {
        assert!(directives(0).contains("exarch_ews_source=info"));
        assert!(directives(2).split(',').all(|d| d.ends_with("=debug")));
        assert!(directives(5).contains("exarch_graph_source=trace"));
        assert!(!directives(2).contains("reqwest"));
        assert!(filter(&directives(2)).is_ok());
        assert!(filter("exarch=notalevel[").is_err());
    }
}
