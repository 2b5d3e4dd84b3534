//! Replay's imports: items read from the archive (verified) and sent in batches under the
//! request limit, `requests` at a time, every request recorded in the journal before and after,
//! every item's outcome kept by its manifest index.

use crate::error::MailboxError;
use crate::journal::Journal;
use crate::replay::{Job, Plan, Results};
use crate::source::{Imported, ToImport};
use exarch_archive::manifest::ITEM_ASSOCIATED;
use exarch_archive::restore::ItemReader;
use std::sync::Mutex;

type Result<T, E = MailboxError> = std::result::Result<T, E>;

/// Reads the items of `jobs` from the archive and imports them in batches, `requests` at a time.
pub(crate) fn import_all(
    p: &Plan,
    reader: &ItemReader,
    jobs: &[Job],
    journal: &Mutex<Journal>,
    results: &Mutex<Results>,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<()> {
    let m = p.m;
    let weights: Vec<u64> =
        jobs.iter().map(|j| p.source.import_weight(m.item(j.key as usize).size.to_native())).collect();
    let batches = p.source.import_batches(&weights, p.limit);
    let (tx, rx) = std::sync::mpsc::sync_channel::<(Vec<u32>, Vec<ToImport>)>(p.requests.max(1));
    let rx = Mutex::new(rx);
    let failure: Mutex<Option<MailboxError>> = Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..p.requests.max(1) {
            s.spawn(|| loop {
                let Ok((keys, items)) = rx.lock().expect("queue").recv() else { return };
                if failure.lock().expect("failure").is_some() {
                    continue;
                }
                if let Err(e) = send_batch(p, &keys, &items, journal, results, progress) {
                    failure.lock().expect("failure").get_or_insert(e);
                }
            });
        }
        for range in batches {
            if failure.lock().expect("failure").is_some() {
                break;
            }
            let mut keys = Vec::new();
            let mut items = Vec::new();
            for j in &jobs[range] {
                let it = m.item(j.key as usize);
                if p.too_large(j.key) {
                    results.lock().expect("results").too_large.push(j.key);
                    progress(it.size.to_native());
                    continue;
                }
                let mut blob = Vec::with_capacity(it.size.to_native() as usize);
                if let Err(e) = reader.read_item(it, &mut blob) {
                    results.lock().expect("results").unreadable.push((j.key, e.to_string()));
                    continue;
                }
                keys.push(j.key);
                items.push(ToImport {
                    folder_id: j.folder_id.clone(),
                    item_id: j.item_id.clone(),
                    action: j.action,
                    associated: it.flags.to_native() & ITEM_ASSOCIATED != 0,
                    data: blob,
                });
            }
            if !items.is_empty() && tx.send((keys, items)).is_err() {
                break;
            }
        }
        drop(tx);
    });
    match failure.into_inner().expect("failure") {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

fn send_batch(
    p: &Plan,
    keys: &[u32],
    items: &[ToImport],
    journal: &Mutex<Journal>,
    results: &Mutex<Results>,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<()> {
    journal.lock().expect("journal").sent(keys)?;
    let mut outcomes: Vec<(usize, Imported)> = Vec::new();
    let r = p.source.import(&p.target, items, p.limit, &mut |i, o| outcomes.push((i, o)));
    let mut ok = Vec::new();
    let mut failed = Vec::new();
    {
        let mut res = results.lock().expect("results");
        for (i, o) in outcomes {
            let Some(&k) = keys.get(i) else { continue };
            let size = p.m.item(k as usize).size.to_native();
            match o {
                Imported::Ok { id } => {
                    res.uploaded += 1;
                    res.bytes += size;
                    res.mapping.insert(k, id.clone());
                    ok.push((k, id));
                    progress(size);
                }
                Imported::Refused(e) => {
                    res.refused.push((k, e));
                    failed.push(k);
                    progress(size);
                }
                Imported::TooLarge => {
                    res.too_large.push(k);
                    failed.push(k);
                    progress(size);
                }
                Imported::Uncertain(e) => res.uncertain.push((k, e)),
            }
        }
    }
    let mut j = journal.lock().expect("journal");
    j.ok(ok)?;
    j.failed(failed)?;
    drop(j);
    r.map_err(|e| match MailboxError::from(e) {
        MailboxError::Source(s) => MailboxError::Source(format!("importing items into {}: {s}", p.target).into()),
        other => other,
    })
}
