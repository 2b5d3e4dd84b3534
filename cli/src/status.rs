//! Progress of the long runs against Exchange (backup, replay): a bar on a terminal; elsewhere (a
//! scheduler, a pipe, or with `-v`, whose log lines would tear a bar apart) a one-line status every
//! `--status-interval`, kept in the log file and shown on stderr unless `--quiet`.

use crate::args::Global;
use crate::logging;
use crate::output::bytes;
use anyhow::Result;
use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal as _;
use std::sync::mpsc;
use std::time::Duration;

/// What the run has done so far.
pub struct Reading {
    pub pos: u64,
    /// What `pos` goes up to, as far as known yet.
    pub len: u64,
    /// The rest of the line (mailboxes done, back-offs, …).
    pub text: String,
}

/// What `pos` counts.
#[derive(Clone, Copy)]
pub enum Unit {
    Items,
    Bytes,
}

/// `--status-interval`.
pub fn interval(g: &Global) -> Result<Duration> {
    crate::commands::parse_duration(&g.status_interval).filter(|d| *d >= Duration::from_secs(1)).ok_or_else(|| {
        crate::usage(format!("--status-interval {}: not a duration of 1s or more (e.g. 1m, 30s)", g.status_interval))
    })
}

fn line(what: &str, unit: Unit, r: &Reading) -> String {
    let counted = match unit {
        Unit::Items => format!("{}/{} items", r.pos, r.len),
        Unit::Bytes => format!("{}/{}", bytes(r.pos), bytes(r.len)),
    };
    if r.text.is_empty() {
        format!("{what}: {counted}")
    } else {
        format!("{what}: {counted}, {}", r.text)
    }
}

/// Runs `work` while showing `read()`'s progress; returns what `work` returned.
pub fn while_running<T>(
    g: &Global,
    what: &str,
    unit: Unit,
    read: &(dyn Fn() -> Reading + Sync),
    work: impl FnOnce() -> T,
) -> Result<T> {
    let every = interval(g)?;
    let bar = !g.quiet && !g.json && std::io::stderr().is_terminal() && !logging::on_stderr(g);
    let (stop, stopped) = mpsc::channel::<()>();
    Ok(std::thread::scope(|s| {
        s.spawn(move || {
            if bar {
                show_bar(what, unit, read, &stopped)
            } else {
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(every) {
                    logging::tell(!g.quiet, &line(what, unit, &read()));
                }
            }
        });
        let out = work();
        drop(stop);
        out
    }))
}

fn show_bar(what: &str, unit: Unit, read: &(dyn Fn() -> Reading + Sync), stopped: &mpsc::Receiver<()>) {
    let template = match unit {
        Unit::Items => "{prefix} [{elapsed_precise}] {wide_bar} {pos}/{len} items {msg}",
        Unit::Bytes => "{prefix} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} {bytes_per_sec} {msg}",
    };
    let pb = ProgressBar::new(0);
    pb.set_style(ProgressStyle::with_template(template).expect("valid template"));
    pb.set_prefix(what.to_string());
    loop {
        let r = read();
        pb.set_length(r.len.max(r.pos));
        pb.set_position(r.pos);
        pb.set_message(r.text);
        if !matches!(stopped.recv_timeout(Duration::from_millis(250)), Err(mpsc::RecvTimeoutError::Timeout)) {
            break;
        }
    }
    pb.finish_and_clear();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines_say_what_and_how_far() {
        let r = Reading { pos: 3, len: 10, text: "1/2 mailboxes".into() };
        assert_eq!(line("backup", Unit::Items, &r), "backup: 3/10 items, 1/2 mailboxes");
        let r = Reading { pos: 2048, len: 4096, text: String::new() };
        assert_eq!(line("replay", Unit::Bytes, &r), "replay: 2.0 KiB/4.0 KiB");
    }
}
