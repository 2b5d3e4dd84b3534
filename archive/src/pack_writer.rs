//! The pack writer of a backup: seals pack headers, stores packs and writes the index files naming
//! them. A thread of its own, so that storing one pack (on a local repository: syncing and renaming
//! the file the packer has written it to) overlaps with filling the next. On an object
//! store, where one PUT waits a round trip or more, several packs are uploaded at once
//! ([`UPLOADS_REMOTE`]); an index file is written only once every pack it names is stored, so the
//! order of SPEC.md §12 (packs, then their index, then the snapshot) holds however uploads finish.

use crate::backup::PackerStats;
use crate::crypto::{Entropy, Keys};
use crate::error::{Error, Result};
use crate::id::Id;
use crate::index::{write_index_file, BlobLocation, MAX_ENTRIES_PER_FILE};
use crate::pack::{FinishedPack, PackBuilder, PackEntry};
use crate::storage::{Storage, Upload};
use crossbeam_channel::{bounded, Receiver, Sender};
use std::sync::Arc;

/// Packs uploaded at once to an object store (each holds a pack in memory while it is sent).
pub(crate) const UPLOADS_REMOTE: usize = 3;

pub(crate) enum WriterMsg {
    Pack(Box<PackBuilder>),
    /// Store the index for every pack sent so far, then reply.
    Flush(Sender<Result<()>>),
}

/// A pack sealed and ready to store.
struct Sealed {
    id: Id,
    upload: Upload,
    entries: Vec<PackEntry>,
}

/// What storing a pack leaves to note: its name, size and blobs.
struct Stored {
    id: Id,
    len: u64,
    entries: Vec<PackEntry>,
}

fn store(storage: &dyn Storage, sealed: Sealed) -> Result<Stored> {
    let len = sealed.upload.len();
    storage.finish_upload(sealed.upload, &sealed.id.to_hex())?;
    Ok(Stored { id: sealed.id, len, entries: sealed.entries })
}

/// Stores packs; returns what was stored.
pub(crate) fn run_writer(
    rx: Receiver<WriterMsg>,
    storage: Arc<dyn Storage>,
    keys: Arc<Keys>,
    entropy: &Entropy,
    cache_dir: &std::path::Path,
) -> Result<PackerStats> {
    let uploads = if storage.is_remote() { UPLOADS_REMOTE } else { 1 };
    let mut w =
        Writer { storage: storage.as_ref(), keys: &keys, entropy, stats: PackerStats::default(), locs: Vec::new() };
    if uploads == 1 {
        for msg in rx {
            match msg {
                WriterMsg::Pack(builder) => {
                    let sealed = w.seal(builder, cache_dir)?;
                    w.stored(store(storage.as_ref(), sealed)?)?;
                }
                WriterMsg::Flush(reply) => w.flush(reply)?,
            }
        }
        w.store_index()?;
        return Ok(w.stats);
    }
    let (up_tx, up_rx) = bounded::<Sealed>(0);
    let (done_tx, done_rx) = bounded::<Result<Stored>>(uploads);
    std::thread::scope(|s| {
        for _ in 0..uploads {
            let (up_rx, done_tx, storage) = (up_rx.clone(), done_tx.clone(), storage.as_ref());
            s.spawn(move || {
                for sealed in up_rx {
                    if done_tx.send(store(storage, sealed)).is_err() {
                        return;
                    }
                }
            });
        }
        drop(done_tx);
        let mut in_flight = 0usize;
        let result = (|| -> Result<()> {
            for msg in &rx {
                match msg {
                    WriterMsg::Pack(builder) => {
                        let sealed = w.seal(builder, cache_dir)?;
                        // At most one pack per upload thread: wait for one to finish first.
                        if in_flight == uploads {
                            w.stored(done_rx.recv().map_err(|_| gone())??)?;
                            in_flight -= 1;
                        }
                        up_tx.send(sealed).map_err(|_| gone())?;
                        in_flight += 1;
                    }
                    WriterMsg::Flush(reply) => {
                        while in_flight > 0 {
                            w.stored(done_rx.recv().map_err(|_| gone())??)?;
                            in_flight -= 1;
                        }
                        w.flush(reply)?;
                    }
                }
            }
            while in_flight > 0 {
                w.stored(done_rx.recv().map_err(|_| gone())??)?;
                in_flight -= 1;
            }
            Ok(())
        })();
        drop(up_tx);
        result
    })?;
    w.store_index()?;
    Ok(w.stats)
}

fn gone() -> Error {
    Error::Other("a pack upload thread stopped".into())
}

struct Writer<'a> {
    storage: &'a dyn Storage,
    keys: &'a Keys,
    entropy: &'a Entropy,
    stats: PackerStats,
    /// Blobs of stored packs not yet in an index file.
    locs: Vec<BlobLocation>,
}

impl Writer<'_> {
    fn seal(&mut self, builder: Box<PackBuilder>, cache_dir: &std::path::Path) -> Result<Sealed> {
        let FinishedPack { id, upload, entries } = (*builder).finish(self.keys, self.entropy)?;
        // Noted first: a pack stored but not noted would never be read back.
        crate::readback::note_written(cache_dir, &id)?;
        Ok(Sealed { id, upload, entries })
    }

    /// A pack is stored: its blobs may go into an index file.
    fn stored(&mut self, p: Stored) -> Result<()> {
        self.stats.bytes_stored += p.len;
        self.stats.packs += 1;
        self.locs.extend(p.entries.into_iter().map(|entry| BlobLocation { pack: p.id, entry }));
        if self.locs.len() >= MAX_ENTRIES_PER_FILE {
            self.store_index()?;
        }
        Ok(())
    }

    fn store_index(&mut self) -> Result<()> {
        if !self.locs.is_empty() {
            write_index_file(self.storage, self.keys, self.entropy, &mut self.locs)?;
            self.stats.index_files += 1;
            self.locs.clear();
        }
        Ok(())
    }

    fn flush(&mut self, reply: Sender<Result<()>>) -> Result<()> {
        let r = self.store_index();
        let failed = r.as_ref().err().map(|e| e.to_string());
        let _ = reply.send(r);
        match failed {
            Some(e) => Err(Error::Other(e)),
            None => Ok(()),
        }
    }
}
