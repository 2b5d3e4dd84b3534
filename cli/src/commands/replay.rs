//! `exarch replay SNAPSHOT --ews URL | --graph`: put archived items back into Exchange, with
//! UploadItems (EWS) or through a mailbox import session (Graph).
//!
//! The uploaded stream is the one ExportItems gave, so the restored item is the original (same
//! properties, same calendar UID). Steps: pick the items (folders, ids, dates); find each target
//! folder by path in the target mailbox and create what is missing; upload in batches under the
//! request size limit through the same governor as backups, isolating refused items; record every
//! request in a journal in the cache so that a killed replay continues without duplicates.
//!
//! CreateAction: `UpdateOrCreate` on the id an earlier replay gave the item, else, restoring into
//! the original mailbox and an existing folder, on the original item id; `CreateNew` otherwise
//! (another mailbox, or a folder this replay had to create).

use super::ews_conn::{client, endpoint, Load};
use super::pack_mailboxes::Traffic;
use super::when::parse_date;
use crate::args::{Global, ReplayArgs};
use crate::output::bytes;
use crate::status::{self, Reading, Unit};
use crate::usage;
use anyhow::{Context as _, Result};
use exarch_archive::manifest::text;
use exarch_archive::restore::ItemReader;
use exarch_archive::snapshot::Snapshot;
use exarch_archive::time::{format_unix_ms, now_ms};
use exarch_mailbox::ews::EwsSource;
use exarch_mailbox::graph::{GraphSource, MAX_IMPORT_BYTES};
use exarch_mailbox::replay::{plan, run as replay_run, select, Mode, Outcome, Plan, Request, Selection};
use exarch_mailbox::Source;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

pub fn run(g: &Global, a: ReplayArgs) -> Result<()> {
    let since = match &a.since {
        Some(s) => Some(parse_date(s, false).ok_or_else(|| usage(format!("--since {s}: use YYYY-MM-DD or RFC 3339")))?),
        None => None,
    };
    let until = match &a.until {
        Some(s) => Some(parse_date(s, true).ok_or_else(|| usage(format!("--until {s}: use YYYY-MM-DD or RFC 3339")))?),
        None => None,
    };
    let dates = (since, until);
    if a.graph.graph {
        let per_mailbox = a.requests.clamp(1, exarch_graph_source::governor::MAX_CONCURRENT_PER_MAILBOX);
        let client = super::graph_conn::client(&a.graph, &a.conn, a.requests, per_mailbox, None, Default::default())?;
        let source = GraphSource::new(&client);
        let url = client.base().to_string();
        let limit = a.upload_limit.map_or(MAX_IMPORT_BYTES, |l| l as u64);
        return replay_into(g, &a, &source, &url, limit, dates, &|| Traffic::graph(&client.stats()));
    }
    let ews = a.ews.clone().ok_or_else(|| usage("replay needs --ews URL or --graph"))?;
    let (url, auth) = endpoint(&ews, &a.conn)?;
    let load =
        Load { concurrency: a.requests.max(1), per_mailbox: a.requests.max(1), sync_concurrency: 2, timeout_secs: 300 };
    let client = client(&url, auth, &a.conn, load, None, Default::default())?;
    let source = EwsSource::new(&client, &url);
    let limit = a.upload_limit.unwrap_or(exarch_ews_source::upload::DEFAULT_UPLOAD_LIMIT) as u64;
    replay_into(g, &a, &source, &url, limit, dates, &|| Traffic::ews(&client.stats()))
}

/// A date range of `--since` and `--until`.
type Dates = (Option<i64>, Option<i64>);

/// Replays into `source` (reached at `url`, shown without credentials), `limit` being the
/// request or item size limit.
fn replay_into(
    g: &Global,
    a: &ReplayArgs,
    source: &dyn Source,
    url: &str,
    limit: u64,
    (since, until): Dates,
    traffic: &(dyn Fn() -> Traffic + Sync),
) -> Result<()> {
    if limit < 1024 {
        return Err(usage("--upload-limit is in bytes and must be at least 1024"));
    }
    let repo = super::open(g)?;
    let _lock = super::read_lock(g, &repo, exarch_archive::lock::LockPurpose::Replay)?;
    let snap_id = repo.resolve_snapshot(&a.snapshot, a.mailbox.as_deref())?;
    let snap = repo.load_snapshot(&snap_id)?;
    let m = &snap;
    let selection = Selection { folders: a.folder.clone(), items: a.item.clone(), since, until };
    let selected = select(m, &selection);
    if selected.is_empty() {
        return Err(crate::Exit(
            crate::EXIT_ERROR,
            format!(
                "nothing to replay: no item of snapshot {} ({} items) matches --folder/--item/--since/--until",
                snap_id.short(),
                m.item_count()
            ),
        )
        .into());
    }

    let from = text(&snap.summary.mailbox).into_owned();
    let request = Request {
        m,
        snapshot: snap_id,
        snapshot_time_ms: snap.summary.time_ms,
        from,
        to: a.to_mailbox.clone(),
        in_place: a.in_place,
        selected,
        limit,
        requests: a.requests,
        cache_dir: repo.cache_dir(),
        mode: if a.only_missing {
            Mode::OnlyMissing
        } else if a.overwrite_changed {
            Mode::OverwriteChanged
        } else {
            Mode::Restore
        },
    };
    let p = plan(source, request).with_context(|| format!("reading the folder tree of the target of {snap_id}"))?;
    if a.dry_run {
        return dry_run(g, &p, url, limit);
    }
    let started = std::time::Instant::now();
    let total_bytes: u64 = p.selected.iter().map(|k| m.item(*k as usize).size.to_native()).sum();
    let index = repo.index()?;
    super::warn_skipped_index(&index);
    let reader = ItemReader::new(&repo, &index);
    let sent = AtomicU64::new(0);
    let reading = || {
        let t = traffic();
        Reading {
            pos: sent.load(Ordering::Relaxed),
            len: total_bytes,
            text: format!("{} back-off(s) ({:.1} s waited)", t.back_offs, t.waited_ms as f64 / 1000.0),
        }
    };
    let outcome = status::while_running(g, "replay", Unit::Bytes, &reading, || {
        replay_run(&p, &reader, &format_unix_ms(now_ms()), &|n| {
            sent.fetch_add(n, Ordering::Relaxed);
        })
    })??;
    report(g, &p, url, limit, &traffic(), &outcome, started.elapsed().as_secs_f64())
}

fn item_path(m: &Snapshot, k: u32) -> String {
    let it = &m.item(k as usize);
    let mut p = m.folder_path(it.folder.to_native());
    p.push(text(&it.name).into_owned());
    p.join("/")
}

fn dry_run(g: &Global, p: &Plan, url: &str, limit: u64) -> Result<()> {
    let (m, snap_id, source, target, tree) = (p.m, &p.snapshot, p.from.as_str(), p.target.as_str(), &p.tree);
    let selected = &p.selected;
    let recovered = p.recovered()?;
    let target_path = |k: u32| p.target_path(k);
    let mut per: BTreeMap<Vec<String>, (u64, u64)> = BTreeMap::new();
    for &k in selected {
        let e = per.entry(target_path(k).0).or_default();
        e.0 += 1;
        e.1 += m.item(k as usize).size.to_native();
    }
    let mut to_create: Vec<String> = Vec::new();
    for path in per.keys() {
        for d in 1..=path.len() {
            let p = path[..d].join("/");
            if tree.find(&path[..d]).is_none() && !to_create.contains(&p) {
                to_create.push(p);
            }
        }
    }
    let too_large = selected.iter().filter(|&&k| p.too_large(k)).count();
    let already = selected.iter().filter(|k| recovered.done.contains(k)).count();
    let total: u64 = per.values().map(|v| v.1).sum();
    if g.json {
        let folders: Vec<_> = per
            .iter()
            .map(|(p, (n, b))| json!({"path": p.join("/"), "exists": tree.find(p).is_some(), "items": n, "bytes": b}))
            .collect();
        return super::print_json(&json!({
            "dry_run": true,
            "snapshot": snap_id.to_hex(),
            "source_mailbox": source,
            "target_mailbox": target,
            "url": url,
            "items": selected.len(),
            "bytes": total,
            "folders": folders,
            "folders_to_create": to_create,
            "too_large": too_large,
            "already_restored": already,
        }));
    }
    println!(
        "would replay {} item(s) ({}) of snapshot {} ({source}) into {target}:",
        selected.len(),
        bytes(total),
        snap_id.short()
    );
    for (p, (n, b)) in &per {
        let mark = if tree.find(p).is_some() { "" } else { "  (new folder)" };
        println!("  {:>6} items  {:>10}  {}{mark}", n, bytes(*b), p.join("/"));
    }
    println!("{} folder(s) to create", to_create.len());
    if too_large > 0 {
        println!("{too_large} item(s) larger than the upload limit {limit} would be reported, not uploaded");
    }
    if already > 0 {
        println!("{already} item(s) already restored by an interrupted replay would be left as they are");
    }
    Ok(())
}

fn report(g: &Global, p: &Plan, url: &str, limit: u64, t: &Traffic, o: &Outcome, secs: f64) -> Result<()> {
    let (m, snap_id, source, target) = (p.m, &p.snapshot, p.from.as_str(), p.target.as_str());
    let (r, created, already, left_alone) = (&o.results, &o.folders_created, o.already, o.left_alone);
    let describe = |k: u32, error: &str| {
        let it = &m.item(k as usize);
        json!({
            "path": item_path(m, k),
            "source_id": text(&it.source_id),
            "subject": text(&it.subject),
            "size": it.size.to_native(),
            "error": error,
        })
    };
    let refused: Vec<_> = r.refused.iter().map(|(k, e)| describe(*k, e)).collect();
    let too_large: Vec<_> =
        r.too_large.iter().map(|k| describe(*k, &format!("larger than the upload limit of {limit} bytes"))).collect();
    let failed: Vec<_> = r.unreadable.iter().chain(&r.uncertain).map(|(k, e)| describe(*k, e)).collect();
    if g.json {
        super::print_json(&json!({
            "snapshot": snap_id.to_hex(),
            "source_mailbox": source,
            "target_mailbox": target,
            "url": url,
            "protocol": t.protocol.to_ascii_lowercase(),
            "uploaded": r.uploaded,
            "bytes": r.bytes,
            "already_restored": already,
            "left_alone": left_alone,
            "folders_created": created,
            "refused": refused,
            "too_large": too_large,
            "failed": failed,
            "requests": t.requests,
            "back_offs_honoured": t.back_offs,
            "retries": t.retries,
            "duration_secs": secs,
        }))?;
    } else if !g.quiet {
        println!(
            "replayed snapshot {} ({source}) into {target} in {secs:.1} s: {} item(s) uploaded ({}), {} already restored",
            snap_id.short(),
            r.uploaded,
            bytes(r.bytes),
            already
        );
        if !created.is_empty() {
            println!("  folders created: {}", created.join(", "));
        }
        if left_alone > 0 {
            println!("  {left_alone} item(s) still in the mailbox left as they are");
        }
        println!(
            "  {} {} requests ({}), {} back-off(s) honoured",
            t.protocol,
            t.requests.values().sum::<u64>(),
            t.requests.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", "),
            t.back_offs
        );
    }
    if !g.json {
        for (what, list) in [("REFUSED", &refused), ("TOO LARGE", &too_large), ("FAILED", &failed)] {
            for v in list {
                crate::logging::warn(
                    true,
                    &format!(
                        "{what} {} ({}): {}",
                        v["path"].as_str().unwrap_or(""),
                        v["source_id"].as_str().unwrap_or(""),
                        v["error"].as_str().unwrap_or("")
                    ),
                );
            }
        }
    }
    let bad = refused.len() + too_large.len() + failed.len();
    if bad > 0 {
        return Err(crate::Exit(
            crate::EXIT_PARTIAL,
            format!(
                "{bad} item(s) could not be restored (listed above); the other {} are in place",
                r.uploaded + already
            ),
        )
        .into());
    }
    Ok(())
}
