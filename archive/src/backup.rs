//! Writing a snapshot: the chunk → hash → compress → seal → pack pipeline.
//!
//! The calling thread cuts each item into chunks and hashes them (cheap, sequential); chunks not
//! already stored go to worker threads that compress and seal them (the expensive part, in
//! parallel); one packer thread appends sealed blobs to packs in submission order, stores full packs,
//! and writes index files. Channels are bounded, so memory is a few packs' worth whatever the input.
//! Order of durability: packs, then index files naming them, then the snapshot naming the chunks.

use crate::chunker::Chunker;
use crate::crypto::{Entropy, Keys};
use crate::error::{Error, Result};
use crate::id::Id;
use crate::index::{write_index_file, BlobLocation, IndexTable, MAX_ENTRIES_PER_FILE};
use crate::manifest::{Folder, Item, Manifest, Skipped, Summary, NO_PARENT};
use crate::pack::{seal_blob, PackBuilder, SealedBlob};
use crate::repository::Repository;
use crate::snapshot;
use crate::storage::{FileKind, Storage};
use crossbeam_channel::{bounded, Receiver, Sender};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Read;
use std::sync::Arc;
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

struct Job {
    seq: u64,
    id: Id,
    data: Vec<u8>,
}

enum PackerMsg {
    Blob(u64, SealedBlob),
    /// Store the open pack and pending index entries once every blob before `seq` has arrived.
    Flush(u64, Sender<Result<()>>),
}

#[derive(Default)]
struct PackerStats {
    bytes_stored: u64,
    packs: u64,
    index_files: u64,
}

pub struct Backup<'r> {
    repo: &'r Repository,
    index: &'r IndexTable,
    opts: BackupOptions,
    chunker: Chunker,
    seen: HashSet<Id>,
    seq: u64,
    jobs: Option<Sender<Job>>,
    to_packer: Option<Sender<PackerMsg>>,
    workers: Vec<JoinHandle<()>>,
    packer: Option<JoinHandle<Result<PackerStats>>>,
    manifest: Manifest,
    folder_names: HashMap<(u32, String), u32>,
    stats: BackupStats,
}

/// Streams larger than this are chunked from a reader instead of being held whole.
pub const IN_MEMORY_LIMIT: u64 = 64 * 1024 * 1024;

impl<'r> Backup<'r> {
    /// Starts a backup. `index` must be current (`Repository::index`); chunks it lists are not stored again.
    pub fn start(repo: &'r Repository, index: &'r IndexTable, opts: BackupOptions) -> Result<Backup<'r>> {
        let keys = repo.keys().clone();
        let chunker = Chunker::new(repo.config().chunker, keys.chunker_seed());
        let workers_n = opts.workers.max(1);
        let (job_tx, job_rx) = bounded::<Job>(workers_n * 8);
        let (pk_tx, pk_rx) = bounded::<PackerMsg>(workers_n * 8);
        let level = repo.config().zstd_level;
        let mut workers = Vec::new();
        for i in 0..workers_n {
            let (rx, tx, keys, ctx) = (job_rx.clone(), pk_tx.clone(), keys.clone(), repo.context().clone());
            workers.push(
                std::thread::Builder::new()
                    .name(format!("seal-{i}"))
                    .spawn(move || {
                        for job in rx {
                            let blob = seal_blob(&keys, &ctx.entropy, level, job.id, &job.data);
                            if tx.send(PackerMsg::Blob(job.seq, blob)).is_err() {
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
            std::thread::Builder::new()
                .name("packer".into())
                .spawn(move || run_packer(pk_rx, storage, keys, &ctx.entropy, pack_size))
                .map_err(|e| Error::Other(format!("starting packer: {e}")))?
        };
        let mut manifest = Manifest::default();
        manifest.folders.push(Folder { parent: NO_PARENT, name: vec![], source_id: vec![], folder_class: vec![] });
        Ok(Backup {
            repo,
            index,
            opts,
            chunker,
            seen: HashSet::new(),
            seq: 0,
            jobs: Some(job_tx),
            to_packer: Some(pk_tx),
            workers,
            packer: Some(packer),
            manifest,
            folder_names: HashMap::new(),
            stats: BackupStats::default(),
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

    fn is_stored(&self, id: &Id) -> bool {
        self.seen.contains(id) || self.index.contains(id)
    }

    fn submit(&mut self, id: Id, data: &[u8]) -> Result<()> {
        if self.is_stored(&id) {
            return Ok(());
        }
        self.seen.insert(id);
        self.stats.chunks_new += 1;
        self.stats.bytes_new += data.len() as u64;
        let job = Job { seq: self.seq, id, data: data.to_vec() };
        self.seq += 1;
        let sent = self.jobs.as_ref().expect("backup is running").send(job);
        if sent.is_err() {
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

    fn record(&mut self, meta: ItemMeta, size: u64, blob_hash: [u8; 32], chunks: Vec<[u8; 32]>) {
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
    }

    /// Stores an item held in memory.
    pub fn add_item(&mut self, meta: ItemMeta, data: &[u8]) -> Result<()> {
        let keys = self.repo.keys().clone();
        let mut chunks = Vec::new();
        let cuts: Vec<(usize, usize)> = self.chunker.cuts(data).collect();
        for (o, l) in cuts {
            let c = &data[o..o + l];
            let id = keys.chunk_id(c);
            chunks.push(id.0);
            self.submit(id, c)?;
        }
        self.stats.items_read += 1;
        self.stats.bytes_read += data.len() as u64;
        self.record(meta, data.len() as u64, *blake3::hash(data).as_bytes(), chunks);
        Ok(())
    }

    /// Stores an item read from a stream (for items too large to hold in memory).
    pub fn add_item_reader(&mut self, meta: ItemMeta, reader: impl Read) -> Result<()> {
        let keys = self.repo.keys().clone();
        let mut hasher = blake3::Hasher::new();
        let mut chunks = Vec::new();
        let mut size = 0u64;
        for c in self.chunker.stream(reader) {
            let c = c.map_err(|e| Error::Other(format!("reading item {}: {e}", meta.source_id)))?;
            hasher.update(&c);
            size += c.len() as u64;
            let id = keys.chunk_id(&c);
            chunks.push(id.0);
            self.submit(id, &c)?;
        }
        self.stats.items_read += 1;
        self.stats.bytes_read += size;
        self.record(meta, size, *hasher.finalize().as_bytes(), chunks);
        Ok(())
    }

    /// Records an unchanged item from the parent snapshot without reading it. Returns false (and
    /// records nothing) if any of its chunks is no longer stored, so the caller must read it again.
    pub fn carry_item(&mut self, meta: ItemMeta, size: u64, blob_hash: [u8; 32], chunks: &[[u8; 32]]) -> bool {
        if !chunks.iter().all(|c| self.is_stored(&Id(*c))) {
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

    /// Makes everything submitted so far durable and indexed (a resumable run's checkpoint).
    pub fn checkpoint(&mut self) -> Result<()> {
        let (tx, rx) = bounded(1);
        let sent = self.to_packer.as_ref().expect("backup is running").send(PackerMsg::Flush(self.seq, tx));
        match sent.ok().and_then(|_| rx.recv().ok()) {
            Some(r) => r,
            None => Err(self.pipeline_error()),
        }
    }

    /// Drains the pipeline, stores the last pack and index, and writes the snapshot.
    pub fn finish(mut self) -> Result<(Id, BackupStats)> {
        self.jobs = None;
        self.to_packer = None;
        for w in self.workers.drain(..) {
            w.join().map_err(|_| Error::Other("a sealing worker panicked".into()))?;
        }
        let ps = self
            .packer
            .take()
            .expect("packer running")
            .join()
            .map_err(|_| Error::Other("the packer thread panicked".into()))??;
        self.stats.bytes_stored = ps.bytes_stored;
        self.stats.packs = ps.packs;
        self.stats.index_files = ps.index_files;
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
        let (id, bytes) =
            snapshot::encode(self.repo.keys(), &ctx.entropy, self.repo.config().zstd_level, summary, &manifest)?;
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

fn run_packer(
    rx: Receiver<PackerMsg>,
    storage: Arc<dyn Storage>,
    keys: Arc<Keys>,
    entropy: &Entropy,
    pack_size: usize,
) -> Result<PackerStats> {
    let mut stats = PackerStats::default();
    let mut builder = PackBuilder::new(0);
    let mut pending: BTreeMap<u64, SealedBlob> = BTreeMap::new();
    let mut next = 0u64;
    let mut locs: Vec<BlobLocation> = Vec::new();
    let mut flushes: Vec<(u64, Sender<Result<()>>)> = Vec::new();

    let store_pack = |builder: &mut PackBuilder, locs: &mut Vec<BlobLocation>, stats: &mut PackerStats| -> Result<()> {
        if builder.is_empty() {
            return Ok(());
        }
        let full = std::mem::replace(builder, PackBuilder::new(0));
        let (id, bytes, entries) = full.finish(&keys, entropy);
        storage.put(FileKind::Pack, &id.to_hex(), &bytes)?;
        stats.bytes_stored += bytes.len() as u64;
        stats.packs += 1;
        locs.extend(entries.into_iter().map(|entry| BlobLocation { pack: id, entry }));
        Ok(())
    };
    let store_index = |locs: &mut Vec<BlobLocation>, stats: &mut PackerStats| -> Result<()> {
        if locs.is_empty() {
            return Ok(());
        }
        write_index_file(storage.as_ref(), &keys, entropy, locs)?;
        stats.index_files += 1;
        locs.clear();
        Ok(())
    };

    for msg in rx {
        match msg {
            PackerMsg::Blob(seq, blob) => {
                pending.insert(seq, blob);
            }
            PackerMsg::Flush(upto, reply) => flushes.push((upto, reply)),
        }
        while let Some(blob) = pending.remove(&next) {
            next += 1;
            builder.add(blob);
            if builder.len() >= pack_size {
                store_pack(&mut builder, &mut locs, &mut stats)?;
                if locs.len() >= MAX_ENTRIES_PER_FILE {
                    store_index(&mut locs, &mut stats)?;
                }
            }
        }
        while flushes.first().is_some_and(|(upto, _)| *upto <= next) {
            let (_, reply) = flushes.remove(0);
            let r = store_pack(&mut builder, &mut locs, &mut stats).and_then(|_| store_index(&mut locs, &mut stats));
            let failed = r.as_ref().err().map(|e| e.to_string());
            let _ = reply.send(r);
            if let Some(e) = failed {
                return Err(Error::Other(e));
            }
        }
    }
    if !pending.is_empty() {
        return Err(Error::Other("backup pipeline lost blobs".into()));
    }
    store_pack(&mut builder, &mut locs, &mut stats)?;
    store_index(&mut locs, &mut stats)?;
    Ok(stats)
}
