//! `exarch find`: which snapshots still hold a mail. Every snapshot (of `--mailbox`, if given) is
//! opened once and its items are matched in place, without copying them out of the manifest, by
//! subject, sender, folder path, item class and received time. A match is an item (mailbox,
//! folder path, item name — the name is a hash of the item's content): one line each, with the
//! newest snapshot that holds it and the first one that did.

use super::when::parse_date;
use crate::args::{FindArgs, Global};
use crate::usage;
use anyhow::Result;
use exarch_archive::manifest::{text, ArchivedItem, NO_TIME};
use exarch_archive::time::format_unix_ms;
use serde::Serialize;
use std::collections::BTreeMap;

/// One item and the snapshots it was seen in.
#[derive(Serialize)]
struct Found {
    /// The newest snapshot holding it (and its time).
    snapshot: String,
    time: String,
    mailbox: String,
    folder: String,
    name: String,
    subject: String,
    sender: String,
    item_class: String,
    received: Option<String>,
    first_snapshot: String,
    first_time: String,
    snapshots: usize,
    #[serde(skip)]
    first_ms: i64,
    #[serde(skip)]
    last_ms: i64,
}

fn contains_ci(hay: &[u8], needle: &str) -> bool {
    let n = needle.as_bytes();
    n.is_empty() || hay.windows(n.len()).any(|w| w.eq_ignore_ascii_case(n))
}

pub fn run(g: &Global, a: FindArgs) -> Result<()> {
    let since = match &a.since {
        Some(s) => Some(parse_date(s, false).ok_or_else(|| usage(format!("--since {s}: use YYYY-MM-DD or RFC 3339")))?),
        None => None,
    };
    let until = match &a.until {
        Some(s) => Some(parse_date(s, true).ok_or_else(|| usage(format!("--until {s}: use YYYY-MM-DD or RFC 3339")))?),
        None => None,
    };
    let folder: Option<Vec<String>> =
        a.folder.as_ref().map(|f| f.split('/').filter(|p| !p.is_empty()).map(|p| p.to_lowercase()).collect());
    let repo = super::open(g)?;
    let _lock = super::read_lock(g, &repo, exarch_archive::lock::LockPurpose::Extract)?;
    let mut found: BTreeMap<(String, String, String), Found> = BTreeMap::new();
    let mut damaged = 0;
    for info in repo.snapshots()? {
        let Ok(summary) = &info.summary else {
            damaged += 1;
            continue;
        };
        let mailbox = text(&summary.mailbox).into_owned();
        if a.mailbox.as_ref().is_some_and(|m| *m != mailbox) {
            continue;
        }
        // Page by page (SPEC §10.4): one page of a large snapshot in memory at a time.
        let warn = |e: &dyn std::fmt::Display| {
            let msg = format!("warning: snapshot {} cannot be read ({e}); `exarch verify` says more", info.id.short());
            crate::logging::warn(true, &msg);
        };
        let mut reader = match repo.page_reader(&info.id) {
            Ok(r) => r,
            Err(e) => {
                warn(&e);
                damaged += 1;
                continue;
            }
        };
        let head = reader.head();
        // Folder paths, worked out once per folder.
        let paths = head.folder_paths();
        let folder_ok: Vec<bool> = paths
            .iter()
            .map(|p| {
                folder.as_ref().is_none_or(|want| {
                    let have: Vec<String> = p.split('/').map(str::to_lowercase).collect();
                    have.len() >= want.len() && have[..want.len()] == want[..]
                })
            })
            .collect();
        let mut visit = |it: &ArchivedItem| {
            let f = it.folder.to_native() as usize;
            let received = it.received_ms.to_native();
            let hit = folder_ok.get(f).copied().unwrap_or(false)
                && a.subject.as_ref().is_none_or(|s| contains_ci(&it.subject, s))
                && a.sender.as_ref().is_none_or(|s| contains_ci(&it.sender, s))
                && a.class.as_ref().is_none_or(|c| {
                    it.item_class.len() >= c.len() && it.item_class[..c.len()].eq_ignore_ascii_case(c.as_bytes())
                })
                && since.is_none_or(|t| received != NO_TIME && received >= t)
                && until.is_none_or(|t| received != NO_TIME && received < t);
            if !hit {
                return;
            }
            let key = (mailbox.clone(), paths.get(f).cloned().unwrap_or_default(), text(&it.name).into_owned());
            let (id, t) = (info.id.to_hex(), summary.time_ms);
            let e = found.entry(key.clone()).or_insert_with(|| Found {
                snapshot: id.clone(),
                time: format_unix_ms(t),
                mailbox: key.0.clone(),
                folder: key.1.clone(),
                name: key.2.clone(),
                subject: text(&it.subject).into_owned(),
                sender: text(&it.sender).into_owned(),
                item_class: text(&it.item_class).into_owned(),
                received: (received != NO_TIME).then(|| format_unix_ms(received)),
                first_snapshot: id.clone(),
                first_time: format_unix_ms(t),
                snapshots: 0,
                first_ms: t,
                last_ms: t,
            });
            e.snapshots += 1;
            if t >= e.last_ms {
                (e.last_ms, e.snapshot, e.time) = (t, id.clone(), format_unix_ms(t));
            }
            if t < e.first_ms {
                (e.first_ms, e.first_snapshot, e.first_time) = (t, id, format_unix_ms(t));
            }
        };
        let walked = reader.for_each_item(|it| {
            visit(it);
            Ok::<(), exarch_archive::Error>(())
        });
        if let Err(e) = walked {
            warn(&e);
            damaged += 1;
        }
    }
    let mut list: Vec<Found> = found.into_values().collect();
    list.sort_by(|x, y| {
        y.last_ms.cmp(&x.last_ms).then_with(|| x.mailbox.cmp(&y.mailbox)).then_with(|| x.folder.cmp(&y.folder))
    });
    if g.json {
        super::print_json(&list)?;
    } else {
        for f in &list {
            println!(
                "{}  {}  {}  {}/{}  {}  (first seen {} {}, in {} snapshot(s))",
                &f.snapshot[..8],
                f.time,
                f.mailbox,
                f.folder,
                f.name,
                f.subject,
                &f.first_snapshot[..8],
                f.first_time,
                f.snapshots
            );
        }
        if !g.quiet {
            crate::logging::tell(true, &format!("{} item(s) found", list.len()));
        }
    }
    if damaged > 0 {
        return Err(crate::Exit(
            crate::EXIT_DAMAGE,
            format!("{damaged} snapshot(s) could not be read and were not searched; run `exarch verify`"),
        )
        .into());
    }
    Ok(())
}
