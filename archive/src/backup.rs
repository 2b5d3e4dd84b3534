//! Writing a snapshot: the chunk → hash → compress → seal → pack pipeline.
//!
//! The calling thread cuts each item into chunks and hashes the whole item (sequential by nature);
//! worker threads compute each chunk's keyed id, claim the chunks not yet stored, and compress and
//! seal those (the expensive part, in parallel); one packer thread puts blobs into packs in
//! submission order, records every item's chunk ids, stores full packs,
//! and writes index files. Channels are bounded, so memory is a few packs' worth whatever the input.
//! Order of durability: packs, then index files naming them, then the snapshot naming the chunks.

use crate::chunker::Chunker;
use crate::crypto::Keys;
use crate::error::{Error, Result};
use crate::id::Id;
use crate::index::IndexTable;
use crate::lock::LockWatch;
use crate::manifest::{Folder, Item, Manifest, Skipped, Summary, NO_PARENT};
use crate::pack::{seal_blob, PackBuilder, SealedBlob};
use crate::pack_writer::{run_writer, WriterMsg};
use crate::repository::Repository;
use crate::snapshot;
use crate::storage::{FileKind, Storage};
use crossbeam_channel::{bounded, Receiver, Sender};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Read;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// What a source knows about an item besides its bytes.
#[derive(Debug, Clone, Default)]
pub struct ItemMeta {
    pub folder: u32,
    pub name: String,
    pub source_id: String,
    pub change_key: String,
    pub item_class: String,
    pub subject: String,
    pub sender: String,
    pub received_ms: i64,
    pub flags: u32,
}

#[derive(Debug, Clone)]
pub struct BackupOptions {
    pub mailbox: String,
    /// Where the items come from, recorded in the snapshot (`dir:...`, `ews:...`).
    pub source: String,
    pub time_ms: i64,
    pub parent: Option<Id>,
    pub run_id: [u8; 16],
    /// Compression/sealing threads.
    pub workers: usize,
    /// The repository lock this backup runs under: checked before a checkpoint is handed out and
    /// before the snapshot is written, so a backup that lost its lock commits nothing.
    pub lock: LockWatch,
}

/// Counters of one backup, reported to the user.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct BackupStats {
    pub items: u64,
    /// Items whose bytes were read and chunked in this run.
    pub items_read: u64,
    /// Items carried over unchanged from the parent snapshot without reading them.
    pub items_carried: u64,
    pub skipped: u64,
    /// Sum of item sizes in the snapshot.
    pub bytes: u64,
    pub bytes_read: u64,
    pub chunks_new: u64,
    /// Uncompressed bytes of chunks that were not yet in the repository.
    pub bytes_new: u64,
    /// Bytes of pack files written (compressed, sealed, with headers).
    pub bytes_stored: u64,
    pub packs: u64,
    pub index_files: u64,
}

/// Work for a sealing worker. `seq` orders results in packs; `item` says whose chunk ids they are.
struct Job {
    seq: u64,
    item: usize,
    work: Work,
}

/// Every item's chunk ids, by item in submission order.
type ChunkIds = Vec<Vec<[u8; 32]>>;

enum Work {
    /// A whole item of at most `WHOLE_ITEM_MAX` bytes: the worker cuts it too, so chunking runs
    /// in parallel across items.
    Item(Vec<u8>),
    /// One chunk (at position `pos`) of a larger item, cut by the calling thread.
    Chunk { pos: usize, data: Vec<u8> },
}

/// Items up to this size travel to workers whole; bounds memory in flight to a few of them.
const WHOLE_ITEM_MAX: usize = 4 * 1024 * 1024;

/// One chunk's outcome: its id, and its sealed blob if this run is the first to store it.
struct Stored {
    pos: usize,
    id: Id,
    blob: Option<SealedBlob>,
}

enum PackerMsg {
    Chunks {
        seq: u64,
        item: usize,
        chunks: Vec<Stored>,
    },
    /// Store the open pack and pending index entries once every job before `seq` has arrived.
    Flush(u64, Sender<Result<ChunkIds>>),
}

#[derive(Default)]
pub(crate) struct PackerStats {
    pub(crate) bytes_stored: u64,
    pub(crate) packs: u64,
    pub(crate) index_files: u64,
    pub(crate) chunks_new: u64,
    pub(crate) bytes_new: u64,
}

/// What the packer hands back: its counters and the chunk ids of every item read in this run.
struct PackerOutput {
    stats: PackerStats,
    chunk_ids: ChunkIds,
}

/// Chunks known to be stored: the repository's index plus what this run has claimed. Shared by
/// the workers, so a chunk that two items (or two mailboxes) carry is sealed once.
struct Known {
    index: Arc<IndexTable>,
    /// Packs a prune has marked for deletion: still readable, but nothing new may depend on them.
    marked: HashSet<Id>,
    claimed: Mutex<HashSet<Id>>,
}

impl Known {
    fn indexed(&self, id: &Id) -> bool {
        self.index.get(id).is_some_and(|l| !self.marked.contains(&l.pack))
    }

    fn contains(&self, id: &Id) -> bool {
        self.indexed(id) || self.claimed.lock().expect("claimed set").contains(id)
    }

    /// True if the caller is the first to claim `id` and must store it.
    fn claim(&self, id: Id) -> bool {
        !self.indexed(&id) && self.claimed.lock().expect("claimed set").insert(id)
    }
}

pub struct Backup<'r> {
    repo: &'r Repository,
    opts: BackupOptions,
    chunker: Chunker,
    known: Arc<Known>,
    seq: u64,
    jobs: Option<Sender<Job>>,
    to_packer: Option<Sender<PackerMsg>>,
    workers: Vec<JoinHandle<()>>,
    packer: Option<JoinHandle<Result<PackerOutput>>>,
    manifest: Manifest,
    /// For each item read in this run: its index in `manifest.items` (its chunk ids arrive at finish).
    read_items: Vec<usize>,
    folder_names: HashMap<(u32, String), u32>,
    stats: BackupStats,
    /// Items per manifest page (SPEC §10.4); more items than this make a paged manifest.
    page_items: usize,
}

/// Streams larger than this are chunked from a reader instead of being held whole.
pub const IN_MEMORY_LIMIT: u64 = 64 * 1024 * 1024;

impl<'r> Backup<'r> {
    /// Starts a backup. `index` must be current (`Repository::index`); chunks it lists are not stored
    /// again. With more than one worker, blobs land in packs in an order that depends on timing;
    /// with one worker the repository's bytes are a function of the input (test vectors).
    pub fn start(repo: &'r Repository, index: Arc<IndexTable>, opts: BackupOptions) -> Result<Backup<'r>> {
        let keys = repo.keys().clone();
        let chunker = Chunker::new(repo.config().chunker, keys.chunker_seed());
        let marked = crate::prune::marked_packs(repo)?;
        let known = Arc::new(Known { index, marked, claimed: Mutex::new(HashSet::new()) });
        let workers_n = opts.workers.max(1);
        let (job_tx, job_rx) = bounded::<Job>(workers_n * 2);
        let (pk_tx, pk_rx) = bounded::<PackerMsg>(workers_n * 4);
        let level = repo.config().zstd_level;
        let mut workers = Vec::new();
        for i in 0..workers_n {
            let (rx, tx, keys, ctx, known) =
                (job_rx.clone(), pk_tx.clone(), keys.clone(), repo.context().clone(), known.clone());
            workers.push(
                std::thread::Builder::new()
                    .name(format!("seal-{i}"))
                    .spawn(move || {
                        let store = |pos: usize, data: &[u8]| {
                            let id = keys.chunk_id(data);
                            let blob = known.claim(id).then(|| seal_blob(&keys, &ctx.entropy, level, id, data));
                            Stored { pos, id, blob }
                        };
                        for Job { seq, item, work } in rx {
                            let chunks = match work {
                                Work::Item(data) => chunker
                                    .cuts(&data)
                                    .enumerate()
                                    .map(|(pos, (o, l))| store(pos, &data[o..o + l]))
                                    .collect(),
                                Work::Chunk { pos, data } => vec![store(pos, &data)],
                            };
                            if tx.send(PackerMsg::Chunks { seq, item, chunks }).is_err() {
                                return; // the packer failed; finish() reports why
                            }
                        }
                    })
                    .map_err(|e| Error::Other(format!("starting worker: {e}")))?,
            );
        }
        let packer = {
            let (storage, keys, ctx) = (repo.storage().clone(), keys.clone(), repo.context().clone());
            let pack_size = repo.config().pack_size as usize;
            let cache_dir = repo.cache_dir();
            std::thread::Builder::new()
                .name("packer".into())
                .spawn(move || run_packer(pk_rx, storage, keys, ctx, cache_dir, pack_size))
                .map_err(|e| Error::Other(format!("starting packer: {e}")))?
        };
        let mut manifest = Manifest::default();
        manifest.folders.push(Folder { parent: NO_PARENT, name: vec![], source_id: vec![], folder_class: vec![] });
        Ok(Backup {
            repo,
            opts,
            chunker,
            known,
            seq: 0,
            jobs: Some(job_tx),
            to_packer: Some(pk_tx),
            workers,
            packer: Some(packer),
            manifest,
            read_items: Vec::new(),
            folder_names: HashMap::new(),
            stats: BackupStats::default(),
            page_items: crate::manifest_pages::PAGE_ITEMS,
        })
    }

    pub fn stats(&self) -> &BackupStats {
        &self.stats
    }

    /// Adds (or finds) folder `name` under `parent` (0 is the root).
    pub fn folder(&mut self, parent: u32, name: &str, source_id: &str, class: &str) -> u32 {
        if let Some(&i) = self.folder_names.get(&(parent, name.to_string())) {
            return i;
        }
        let i = self.manifest.folders.len() as u32;
        self.manifest.folders.push(Folder {
            parent,
            name: name.as_bytes().to_vec(),
            source_id: source_id.as_bytes().to_vec(),
            folder_class: class.as_bytes().to_vec(),
        });
        self.folder_names.insert((parent, name.to_string()), i);
        i
    }

    /// The folder at a path of names below the root, created as needed.
    pub fn folder_path(&mut self, path: &[&str]) -> u32 {
        path.iter().fold(0, |parent, name| self.folder(parent, name, "", ""))
    }

    fn submit(&mut self, item: usize, work: Work) -> Result<()> {
        let job = Job { seq: self.seq, item, work };
        self.seq += 1;
        if self.jobs.as_ref().expect("backup is running").send(job).is_err() {
            return Err(self.pipeline_error());
        }
        Ok(())
    }

    fn pipeline_error(&mut self) -> Error {
        self.jobs = None;
        self.to_packer = None;
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
        match self.packer.take().map(|p| p.join()) {
            Some(Ok(Err(e))) => e,
            Some(Err(_)) => Error::Other("the packer thread panicked".into()),
            _ => Error::Other("the backup pipeline stopped".into()),
        }
    }

    fn record(&mut self, meta: ItemMeta, size: u64, blob_hash: [u8; 32], chunks: Vec<[u8; 32]>) -> usize {
        self.stats.items += 1;
        self.stats.bytes += size;
        self.manifest.items.push(Item {
            received_ms: meta.received_ms,
            size,
            folder: meta.folder,
            flags: meta.flags,
            blob_hash,
            name: meta.name.into_bytes(),
            source_id: meta.source_id.into_bytes(),
            change_key: meta.change_key.into_bytes(),
            item_class: meta.item_class.into_bytes(),
            subject: meta.subject.into_bytes(),
            sender: meta.sender.into_bytes(),
            chunks,
        });
        self.manifest.items.len() - 1
    }

    /// Stores an item held in memory.
    pub fn add_item(&mut self, meta: ItemMeta, data: Vec<u8>) -> Result<()> {
        let item = self.read_items.len();
        let size = data.len();
        let slot = self.record(meta, size as u64, *blake3::hash(&data).as_bytes(), Vec::new());
        self.read_items.push(slot);
        if size <= WHOLE_ITEM_MAX {
            self.submit(item, Work::Item(data))?;
        } else {
            let cuts: Vec<(usize, usize)> = self.chunker.cuts(&data).collect();
            for (pos, (o, l)) in cuts.into_iter().enumerate() {
                self.submit(item, Work::Chunk { pos, data: data[o..o + l].to_vec() })?;
            }
        }
        self.stats.items_read += 1;
        self.stats.bytes_read += size as u64;
        Ok(())
    }

    /// Stores an item read from a stream (for items too large to hold in memory).
    pub fn add_item_reader(&mut self, meta: ItemMeta, reader: impl Read) -> Result<()> {
        let item = self.read_items.len();
        let what = meta.source_id.clone();
        let slot = self.record(meta, 0, [0; 32], Vec::new());
        self.read_items.push(slot);
        let mut hasher = blake3::Hasher::new();
        let mut size = 0u64;
        for (pos, c) in self.chunker.stream(reader).enumerate() {
            let c = c.map_err(|e| Error::Other(format!("reading item {what}: {e}")))?;
            hasher.update(&c);
            size += c.len() as u64;
            self.submit(item, Work::Chunk { pos, data: c })?;
        }
        let rec = &mut self.manifest.items[slot];
        rec.size = size;
        rec.blob_hash = *hasher.finalize().as_bytes();
        self.stats.bytes += size;
        self.stats.items_read += 1;
        self.stats.bytes_read += size;
        Ok(())
    }

    /// Records an unchanged item from the parent snapshot without reading it. Returns false (and
    /// records nothing) if any of its chunks is no longer stored, so the caller must read it again.
    pub fn carry_item(&mut self, meta: ItemMeta, size: u64, blob_hash: [u8; 32], chunks: &[[u8; 32]]) -> bool {
        if !chunks.iter().all(|c| self.known.contains(&Id(*c))) {
            return false;
        }
        self.stats.items_carried += 1;
        self.record(meta, size, blob_hash, chunks.to_vec());
        true
    }

    /// Records an item the source could not deliver, with its error.
    pub fn skip(&mut self, folder: u32, source_id: &str, error: &str) {
        self.stats.skipped += 1;
        self.manifest.skipped.push(Skipped {
            folder,
            source_id: source_id.as_bytes().to_vec(),
            error: error.as_bytes().to_vec(),
        });
    }

    /// Opaque source state (sync states) stored in the manifest for the next run.
    pub fn set_source_state(&mut self, state: Vec<u8>) {
        self.manifest.source_state = state;
    }

    /// Makes everything submitted so far durable and indexed, and returns every item recorded so
    /// far with its chunk ids: what a resumable run saves so that, if it is killed, the next run can
    /// carry these items instead of reading them from the source again.
    pub fn checkpoint(&mut self) -> Result<Vec<Item>> {
        let (tx, rx) = bounded(1);
        let sent = self.to_packer.as_ref().expect("backup is running").send(PackerMsg::Flush(self.seq, tx));
        let chunk_ids = match sent.ok().and_then(|_| rx.recv().ok()) {
            Some(r) => r?,
            None => return Err(self.pipeline_error()),
        };
        self.opts.lock.check()?;
        let mut items = self.manifest.items.clone();
        for (k, slot) in self.read_items.iter().enumerate() {
            items[*slot].chunks = chunk_ids.get(k).cloned().unwrap_or_default();
        }
        Ok(items)
    }

    /// Items per manifest page for this snapshot (default `manifest_pages::PAGE_ITEMS`); test
    /// vectors use small pages to exercise a paged manifest with a few items.
    pub fn set_page_items(&mut self, n: usize) {
        self.page_items = n.max(1);
    }

    /// Drains the pipeline, stores the last pack and index, and writes the snapshot.
    pub fn finish(mut self) -> Result<(Id, BackupStats)> {
        self.jobs = None;
        self.to_packer = None;
        for w in self.workers.drain(..) {
            w.join().map_err(|_| Error::Other("a sealing worker panicked".into()))?;
        }
        let out = self
            .packer
            .take()
            .expect("packer running")
            .join()
            .map_err(|_| Error::Other("the packer thread panicked".into()))??;
        let mut chunk_ids = out.chunk_ids;
        chunk_ids.resize_with(self.read_items.len(), Vec::new);
        for (slot, ids) in self.read_items.iter().zip(chunk_ids) {
            self.manifest.items[*slot].chunks = ids;
        }
        let ps = out.stats;
        self.stats.bytes_stored = ps.bytes_stored;
        self.stats.packs = ps.packs;
        self.stats.index_files = ps.index_files;
        self.stats.chunks_new = ps.chunks_new;
        self.stats.bytes_new = ps.bytes_new;
        let ctx = self.repo.context();
        let summary = Summary {
            time_ms: self.opts.time_ms,
            items: self.stats.items,
            bytes: self.stats.bytes,
            skipped: self.stats.skipped,
            version: 0,
            run_id: self.opts.run_id,
            manifest_hash: [0; 32],
            parent: self.opts.parent.map(|p| p.0.to_vec()).unwrap_or_default(),
            mailbox: self.opts.mailbox.as_bytes().to_vec(),
            source: self.opts.source.as_bytes().to_vec(),
            host: ctx.host.as_bytes().to_vec(),
        };
        let manifest = std::mem::take(&mut self.manifest);
        let (id, bytes) = snapshot::encode(
            self.repo.keys(),
            &ctx.entropy,
            self.repo.config().zstd_level,
            summary,
            manifest,
            self.page_items,
        )?;
        self.opts.lock.check()?;
        self.repo.storage().put(FileKind::Snapshot, &id.to_hex(), &bytes)?;
        Ok((id, self.stats.clone()))
    }
}

impl Drop for Backup<'_> {
    fn drop(&mut self) {
        // An abandoned backup still stops its threads; what was stored stays as unreferenced packs.
        self.jobs = None;
        self.to_packer = None;
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
        if let Some(p) = self.packer.take() {
            let _ = p.join();
        }
    }
}

/// Puts blobs into packs in submission order and records every item's chunk ids.
fn run_packer(
    rx: Receiver<PackerMsg>,
    storage: Arc<dyn Storage>,
    keys: Arc<Keys>,
    ctx: Arc<crate::repository::Context>,
    cache_dir: std::path::PathBuf,
    pack_size: usize,
) -> Result<PackerOutput> {
    let (wtx, wrx) = bounded::<WriterMsg>(1);
    let to_fill = storage.clone();
    let writer = std::thread::Builder::new()
        .name("pack-writer".into())
        .spawn(move || run_writer(wrx, storage, keys, &ctx.entropy, &cache_dir))
        .map_err(|e| Error::Other(format!("starting pack writer: {e}")))?;
    let result = fill_packs(rx, &wtx, to_fill.as_ref(), pack_size);
    drop(wtx);
    let written = writer.join().map_err(|_| Error::Other("the pack writer panicked".into()))?;
    // When the writer failed (a full disk, a lost share), its error is the one to report, not
    // the packer's "writer stopped" that followed from it.
    let (mut stats, chunk_ids, w) = match (result, written) {
        (Ok((s, c)), Ok(w)) => (s, c, w),
        (_, Err(e)) | (Err(e), Ok(_)) => return Err(e),
    };
    stats.bytes_stored = w.bytes_stored;
    stats.packs = w.packs;
    stats.index_files = w.index_files;
    Ok(PackerOutput { stats, chunk_ids })
}

fn fill_packs(
    rx: Receiver<PackerMsg>,
    writer: &Sender<WriterMsg>,
    storage: &dyn Storage,
    pack_size: usize,
) -> Result<(PackerStats, ChunkIds)> {
    let mut stats = PackerStats::default();
    let mut chunk_ids: ChunkIds = Vec::new();
    // The pack being filled; started with its first blob.
    let mut builder: Option<PackBuilder> = None;
    let mut pending: BTreeMap<u64, (usize, Vec<Stored>)> = BTreeMap::new();
    let mut next = 0u64;
    let mut flushes: Vec<(u64, Sender<Result<ChunkIds>>)> = Vec::new();
    let writer_gone = || Error::Other("the pack writer stopped".into());

    for msg in rx {
        match msg {
            PackerMsg::Chunks { seq, item, chunks } => {
                pending.insert(seq, (item, chunks));
            }
            PackerMsg::Flush(upto, reply) => flushes.push((upto, reply)),
        }
        while let Some((item, chunks)) = pending.remove(&next) {
            next += 1;
            if chunk_ids.len() <= item {
                chunk_ids.resize_with(item + 1, Vec::new);
            }
            for Stored { pos, id, blob } in chunks {
                let ids = &mut chunk_ids[item];
                if ids.len() <= pos {
                    ids.resize(pos + 1, [0; 32]);
                }
                ids[pos] = id.0;
                let Some(blob) = blob else { continue };
                stats.chunks_new += 1;
                stats.bytes_new += blob.raw_length as u64;
                let b = PackBuilder::current(&mut builder, storage, pack_size)?;
                b.add(blob)?;
                if b.written() >= pack_size as u64 {
                    writer
                        .send(WriterMsg::Pack(Box::new(builder.take().expect("filled"))))
                        .map_err(|_| writer_gone())?;
                }
            }
        }
        while flushes.first().is_some_and(|(upto, _)| *upto <= next) {
            let (_, reply) = flushes.remove(0);
            if let Some(b) = builder.take() {
                writer.send(WriterMsg::Pack(Box::new(b))).map_err(|_| writer_gone())?;
            }
            let (tx, rx) = bounded(1);
            writer.send(WriterMsg::Flush(tx)).map_err(|_| writer_gone())?;
            let r = rx.recv().map_err(|_| writer_gone())?;
            let _ = reply.send(r.map(|()| chunk_ids.clone()));
        }
    }
    if !pending.is_empty() {
        return Err(Error::Other("backup pipeline lost chunks".into()));
    }
    if let Some(b) = builder {
        writer.send(WriterMsg::Pack(Box::new(b))).map_err(|_| writer_gone())?;
    }
    Ok((stats, chunk_ids))
}
