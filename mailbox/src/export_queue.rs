//! Exporting a store's pending items into its backup: the queue its request threads share
//! (batches of one slow folder class with several requests in flight, other items sharing
//! batches one request at a time), what each request taught the batch sizes, items handed back,
//! and a checkpoint every 100 exported items.

use crate::backup::{Pending, RunSettings};
use crate::error::MailboxError;
use crate::resume;
use crate::sizing::{ClassSizing, DirtySizing};
use crate::source::{Source, SourceError, ToExport};
use exarch_archive::backup::{Backup, ItemMeta};
use exarch_archive::Id;
use exarch_item_data::ItemData;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Mutex;

/// Exported items between checkpoints: what a killed run may have to export again.
const CHECKPOINT_EVERY: usize = 100;

/// Hands an exported item to the backup, with the metadata the listing gave it.
fn store_item(
    backup: &Mutex<&mut Backup>,
    metas: &HashMap<&str, &ItemMeta>,
    id: &str,
    data: ItemData,
) -> Result<(), SourceError> {
    let Some(m) = metas.get(id) else {
        return Err(SourceError::Failed(format!("the source delivered item {id}, which was not asked for").into()));
    };
    let mut meta = (*m).clone();
    meta.name = data.file_name();
    // Small items go through memory; large ones were spooled to disk and are read as a stream.
    if data.in_memory().is_some() {
        let bytes = data.into_vec().map_err(|e| SourceError::Failed(Box::new(e)))?;
        backup.lock().expect("backup").add_item(meta, bytes)?;
    } else {
        backup.lock().expect("backup").add_item_reader(meta, data.into_reader())?;
    }
    Ok(())
}

/// What `export_all` works for: the store, the run, and each folder's class.
pub(crate) struct Run<'a> {
    pub(crate) source: &'a dyn Source,
    pub(crate) store: &'a str,
    pub(crate) settings: &'a RunSettings,
    pub(crate) parent_id: Option<Id>,
    pub(crate) resume_at: &'a std::path::Path,
    pub(crate) classes: &'a HashMap<u32, &'static str>,
}

/// The export queue of a store, shared by its request threads.
struct Queue<'s> {
    /// Items in listing order, with their class; handed-back items go to the front.
    shared: VecDeque<(ToExport, &'static str)>,
    /// Classes with a queue of their own: those the server's time limit made slow, and, once a
    /// batch of several classes timed out (which of them is slow is not known yet), every class.
    own: BTreeMap<&'static str, VecDeque<ToExport>>,
    separate: bool,
    sizing: &'s mut BTreeMap<&'static str, ClassSizing>,
    dirty: DirtySizing,
    /// Batches out with a request thread (they may hand items back).
    out: usize,
    since_checkpoint: usize,
    /// Why the store stops early, or what failed: every thread ends.
    end: Option<Result<String, MailboxError>>,
}

/// A batch taken from the queue: items with their classes.
struct Taken {
    batch: Vec<ToExport>,
    classes: Vec<&'static str>,
}

impl Queue<'_> {
    fn limited(&self, class: &str) -> bool {
        self.sizing.get(class).is_some_and(ClassSizing::is_limited)
    }

    /// Moves the items of classes that have become slow (or of every class, once classes are to
    /// be told apart) to their own queues.
    fn sort_out_slow(&mut self) {
        if !self.separate && self.shared.iter().all(|(_, c)| !self.limited(c)) {
            return;
        }
        let shared = std::mem::take(&mut self.shared);
        for (t, c) in shared {
            if self.separate || self.limited(c) {
                self.own.entry(c).or_default().push_back(t);
            } else {
                self.shared.push_back((t, c));
            }
        }
    }

    /// The next batch. A class the server's time limit made slow (a big calendar) gets batches of
    /// its own, of its learned size, with several requests in flight; the other items share
    /// batches in listing order (so small folders fill them up), one request at a time, so that a
    /// failing batch's untried half joins the very next batch (group testing's economy) and a
    /// back-off holds the whole store. Both are also sized by the dirty items met.
    fn take(&mut self, source: &dyn Source) -> Option<Taken> {
        let limit = source.batch_limit();
        let dirty_cap = self.dirty.cap(limit);
        // A slow class may have several requests out; other classes one at a time.
        let sizing = &*self.sizing;
        let busy = self.out > 0;
        let pick = self
            .own
            .iter_mut()
            .find(|(c, q)| !q.is_empty() && (!busy || sizing.get(*c).is_some_and(ClassSizing::is_limited)));
        if let Some((&class, queue)) = pick {
            let cap = sizing.get(class).map_or(limit, |s| s.cap(limit)).min(dirty_cap);
            let head = queue.make_contiguous();
            let n = source.next_batch(head, cap).clamp(1, head.len());
            self.out += 1;
            return Some(Taken { batch: queue.drain(..n).collect(), classes: vec![class; n] });
        }
        if self.out > 0 || self.shared.is_empty() {
            return None;
        }
        let items: Vec<ToExport> = self.shared.iter().take(2 * limit).map(|(t, _)| t.clone()).collect();
        let n = source.next_batch(&items, dirty_cap).clamp(1, items.len());
        self.out += 1;
        let (batch, classes) = self.shared.drain(..n).unzip();
        Some(Taken { batch, classes })
    }
}

/// Exports `list` into the backup, `settings.requests_per_store` requests at a time, with
/// checkpoints: each batch of one folder class, sized by that class's learned size and by the dirty
/// items met. Returns why it stopped early, if it did.
pub(crate) fn export_all(
    backup: &mut Backup,
    run: &Run,
    list: &[Pending],
    sizing: &mut BTreeMap<&'static str, ClassSizing>,
) -> Result<Option<String>, MailboxError> {
    let settings = run.settings;
    let metas: HashMap<&str, &ItemMeta> = list.iter().map(|p| (p.item.id.as_str(), &p.meta)).collect();
    let shared: VecDeque<(ToExport, &'static str)> =
        list.iter().map(|p| (p.item.clone(), run.classes.get(&p.meta.folder).copied().unwrap_or("mail"))).collect();
    let queue = Mutex::new(Queue {
        shared,
        own: BTreeMap::new(),
        separate: false,
        sizing,
        dirty: DirtySizing::default(),
        out: 0,
        since_checkpoint: 0,
        end: None,
    });
    // Classes an earlier run found slow start in their own queues.
    queue.lock().expect("queue").sort_out_slow();
    let wake = std::sync::Condvar::new();
    let backup = Mutex::new(backup);
    let out_of_time = || settings.deadline.is_some_and(|d| std::time::Instant::now() >= d);
    std::thread::scope(|s| {
        for _ in 0..settings.requests_per_store.max(1) {
            s.spawn(|| {
                while let Some(t) = next(&queue, &wake, run.source, &out_of_time) {
                    let r = export_one(&backup, run, &metas, &t);
                    let mut q = queue.lock().expect("queue");
                    q.out -= 1;
                    match r {
                        Ok(r) => settle(&mut q, &backup, run, &metas, t, r, &out_of_time),
                        Err(e) => {
                            q.end.get_or_insert(e);
                        }
                    }
                    wake.notify_all();
                }
            });
        }
    });
    match queue.into_inner().expect("queue").end {
        None => Ok(None),
        Some(Ok(why)) => Ok(Some(why)),
        Some(Err(e)) => Err(e),
    }
}

/// The next batch for a request thread; None when the store is done or ends early.
fn next(
    queue: &Mutex<Queue>,
    wake: &std::sync::Condvar,
    source: &dyn Source,
    out_of_time: &dyn Fn() -> bool,
) -> Option<Taken> {
    let mut q = queue.lock().expect("queue");
    loop {
        if q.end.is_some() {
            return None;
        }
        if out_of_time() {
            q.end = Some(Ok("the time window (--max-duration) ended".into()));
            return None;
        }
        if let Some(t) = q.take(source) {
            return Some(t);
        }
        if q.out == 0 {
            return None;
        }
        // Others may hand items back: wait for them.
        q = wake.wait(q).expect("queue");
    }
}

/// What one export request showed.
struct Sent {
    outcome: crate::source::ExportOutcome,
    newly_skipped: usize,
    server_secs: f64,
}

fn export_one(
    backup: &Mutex<&mut Backup>,
    run: &Run,
    metas: &HashMap<&str, &ItemMeta>,
    t: &Taken,
) -> Result<Sent, Result<String, MailboxError>> {
    let skipped = std::sync::atomic::AtomicUsize::new(0);
    // Time spent storing items is ours, not the server's: it is left out of the measurement.
    let mut sink_secs = 0.0f64;
    let mut ok = |id: &str, data: ItemData| -> Result<(), SourceError> {
        let started = std::time::Instant::now();
        let len = data.len;
        let r = store_item(backup, metas, id, data);
        if r.is_ok() {
            run.settings.progress.item_done(len);
        }
        sink_secs += started.elapsed().as_secs_f64();
        r
    };
    let mut failed = |id: &str, err: String| {
        let folder = metas.get(id).map(|m| m.folder).unwrap_or(0);
        backup.lock().expect("backup").skip(folder, id, &err);
        skipped.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    };
    let started = std::time::Instant::now();
    let outcome = match run.source.export(run.store, &t.batch, &mut ok, &mut failed) {
        Ok(o) => o,
        // The server wants a longer pause than we wait, or the window ends first: keep what was
        // exported (the caller checkpoints) and stop this store for the run.
        Err(SourceError::Stopped(why)) => return Err(Ok(why)),
        Err(e) => return Err(Err(e.into())),
    };
    let secs = started.elapsed().as_secs_f64();
    Ok(Sent {
        outcome,
        newly_skipped: skipped.load(std::sync::atomic::Ordering::Relaxed),
        server_secs: (secs - sink_secs).max(0.0),
    })
}

/// Takes in what a request showed: items handed back go first into their class's queue (timed-out
/// ones then split by the class's smaller size — except an item that timed out alone, which no
/// smaller request can help: it is recorded as skipped, with the reason); sizes learn; every 100
/// items a checkpoint.
fn settle(
    q: &mut Queue,
    backup: &Mutex<&mut Backup>,
    run: &Run,
    metas: &HashMap<&str, &ItemMeta>,
    t: Taken,
    r: Sent,
    out_of_time: &dyn Fn() -> bool,
) {
    let n = t.batch.len();
    let limit = run.source.batch_limit();
    let mut back: Vec<usize> =
        r.outcome.untried.iter().chain(&r.outcome.timed_out).copied().filter(|&k| k < n).collect();
    back.sort_unstable();
    back.dedup();
    // Sizes learn per class. A batch of several classes that timed out does not say which is
    // slow: from then on, each class goes in batches of its own.
    let mut present: Vec<&'static str> = t.classes.clone();
    present.sort_unstable();
    present.dedup();
    let timed_out = !r.outcome.timed_out.is_empty();
    if timed_out && present.len() > 1 {
        q.separate = true;
        for class in &present {
            q.sizing.entry(class).or_default().timeouts += 1;
        }
    } else {
        for class in &present {
            let sizes = q.sizing.entry(class).or_default();
            if timed_out {
                sizes.timed_out(n, r.server_secs);
            } else if r.outcome.untried.is_empty() && r.newly_skipped == 0 {
                sizes.succeeded(n, r.server_secs, limit);
            }
        }
    }
    if !r.outcome.timed_out.is_empty() && n == 1 {
        let id = &t.batch[0].id;
        let folder = metas.get(id.as_str()).map(|m| m.folder).unwrap_or(0);
        backup.lock().expect("backup").skip(
            folder,
            id,
            "ErrorTimeoutExpired: this item alone takes the server longer than it allows a request",
        );
        back.clear();
    }
    // Handed back: to the front (a class with its own queue: to the front of that).
    for &k in back.iter().rev() {
        let (item, class) = (t.batch[k].clone(), t.classes[k]);
        match q.own.get_mut(class) {
            Some(own) => own.push_front(item),
            None => q.shared.push_front((item, class)),
        }
    }
    q.sort_out_slow();
    let resolved = n - back.len().min(n);
    q.dirty.record(resolved, r.newly_skipped);
    q.since_checkpoint += resolved;
    if q.since_checkpoint >= CHECKPOINT_EVERY || out_of_time() {
        q.since_checkpoint = 0;
        let saved = backup.lock().expect("backup").checkpoint().map_err(MailboxError::from).and_then(|items| {
            resume::save(run.resume_at, run.parent_id, &items).map_err(|e| MailboxError::Cache(e.to_string()))
        });
        if let Err(e) = saved {
            q.end.get_or_insert(Err(e));
        }
    }
}
