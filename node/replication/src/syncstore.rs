//! Where a node or hub keeps its replicated documents: sled tree `sync`, the only module that
//! reads or writes it.
//!
//! Keys: `d` + document id + `\0s` → snapshot; `d` + document id + `\0c` + index (u64 BE) →
//! incremental chunk; `p` + peer + `\0` + document id → sync state for that peer; `i` → the
//! last incarnation (random at each process start: each writes under a new Automerge actor,
//! even after a restore from an older backup).
//!
//! Architecture invariant: [`SyncStore::write`] applies everything the replica asked to
//! persist as one sled batch and flushes it before returning; the driver sends nothing the
//! replica produced after those writes until then.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use menjin_sync::{DocId, LoadError, LoadedDoc, Persist, Replica, Role, decode_doc};

/// Threads that decode stored documents at start (one shard each at a time).
const DECODE_THREADS_MAX: usize = 8;

/// A stored document: its snapshot, if any, and the chunks stored after it, in order.
type Stored = (Option<Vec<u8>>, Vec<Vec<u8>>);

/// Why the `sync` tree could not be read or written. A corrupt record stops the start: the
/// replica would otherwise send a partial document.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// sled failed (disk full, IO error).
    #[error("sync storage: {0}")]
    Storage(#[from] sled::Error),
    /// A stored record does not decode.
    #[error("sync record {key} is corrupt: {why}")]
    Corrupt {
        /// The record's key (lossy UTF-8).
        key: String,
        /// What does not decode.
        why: String,
    },
}

/// The owner of sled tree `sync`: documents, per-peer sync states, the last incarnation.
#[derive(Clone)]
pub struct SyncStore {
    db: sled::Db,
    tree: sled::Tree,
}

fn doc_prefix(doc: DocId) -> Vec<u8> {
    let mut k = vec![b'd'];
    k.extend_from_slice(doc.to_string().as_bytes());
    k.push(0);
    k
}

fn peer_key(peer: Role, doc: DocId) -> Vec<u8> {
    let mut k = vec![b'p'];
    k.extend_from_slice(peer.to_string().as_bytes());
    k.push(0);
    k.extend_from_slice(doc.to_string().as_bytes());
    k
}

fn parse_role(s: &str) -> Option<Role> {
    if s == "hub" {
        return Some(Role::Hub);
    }
    s.strip_prefix("node/")?.parse().ok().map(Role::Node)
}

fn corrupt(key: &[u8], why: impl ToString) -> StoreError {
    StoreError::Corrupt {
        key: String::from_utf8_lossy(key).into_owned(),
        why: why.to_string(),
    }
}

impl SyncStore {
    /// Opens (or creates) the `sync` tree in `db`.
    ///
    /// # Errors
    /// [`StoreError::Storage`] if sled fails.
    pub fn open(db: &sled::Db) -> Result<SyncStore, StoreError> {
        Ok(SyncStore {
            db: db.clone(),
            tree: db.open_tree("sync")?,
        })
    }

    /// A new incarnation: a random non-zero number, other than the last one stored, stored
    /// and flushed before it is returned. Random, not counted: a store restored from an
    /// older backup would count again through the numbers of the runs the backup missed, and
    /// write under their Automerge actors (forking those actors' sequences of changes). Two
    /// starts of one writer draw the same number with a chance of 2^-32.
    ///
    /// # Errors
    /// [`StoreError`] if the stored one is corrupt or sled fails.
    pub fn next_incarnation(&self) -> Result<u32, StoreError> {
        let last = match self.tree.get(b"i")? {
            Some(v) => Some(
                v.as_ref()
                    .try_into()
                    .map(u32::from_be_bytes)
                    .map_err(|_| corrupt(b"i", "not 4 bytes"))?,
            ),
            None => None,
        };
        let drawn = rand::random_range(1..=u32::MAX);
        // Never the last one again (a restart right after this one's start).
        let next = if Some(drawn) == last {
            drawn % u32::MAX + 1
        } else {
            drawn
        };
        self.tree.insert(b"i", &next.to_be_bytes())?;
        self.db.flush()?;
        Ok(next)
    }

    /// The stored records of the documents whose keys start with `prefix` (`d` for all).
    fn stored(&self, prefix: &[u8]) -> Result<BTreeMap<DocId, Stored>, StoreError> {
        let mut docs: BTreeMap<DocId, Stored> = BTreeMap::new();
        for item in self.tree.scan_prefix(prefix) {
            let (k, v) = item?;
            let sep = k
                .iter()
                .position(|b| *b == 0)
                .ok_or_else(|| corrupt(&k, "no separator"))?;
            let id: DocId = std::str::from_utf8(&k[1..sep])
                .map_err(|e| corrupt(&k, e))?
                .parse()
                .map_err(|e: menjin_sync::DocIdError| corrupt(&k, e))?;
            let entry = docs.entry(id).or_default();
            match k.get(sep + 1) {
                Some(b's') => entry.0 = Some(v.to_vec()),
                // Chunk keys sort by index, so they arrive in the order they were written.
                Some(b'c') => entry.1.push(v.to_vec()),
                _ => return Err(corrupt(&k, "unknown document record")),
            }
        }
        Ok(docs)
    }

    /// Loads the stored policy documents alone into `replica`: they are small, and a node needs
    /// its lockdown before it answers a gate (the rosters can follow, see `mirror`).
    /// Returns whether one was stored; one that fails to decode is reported and skipped.
    pub fn load_policy_into(&self, replica: &mut Replica) -> Result<bool, StoreError> {
        // `dpolicy\0...` (the district document) and `dpolicy/<community>\0...` (community
        // policies: a node holds its own only, the hub all).
        let mut prefix = doc_prefix(DocId::Policy);
        prefix.pop();
        let docs = self.stored(&prefix)?;
        Ok(insert_decoded(replica, docs) > 0)
    }

    /// Loads every stored document not yet in `replica`, and every peer state. Documents
    /// the replica does not hold, or that fail to decode, are reported and skipped (they are
    /// rebuilt from the peer), never half-loaded. Returns the documents loaded here.
    pub fn load_into(&self, replica: &mut Replica) -> Result<usize, StoreError> {
        let mut docs = self.stored(b"d")?;
        docs.retain(|id, _| replica.doc(*id).is_none());
        let loaded = insert_decoded(replica, docs);
        for item in self.tree.scan_prefix(b"p") {
            let (k, v) = item?;
            let text = std::str::from_utf8(&k[1..]).map_err(|e| corrupt(&k, e))?;
            let (peer, doc) = text
                .split_once('\0')
                .ok_or_else(|| corrupt(&k, "no separator"))?;
            let (Some(peer), Ok(doc)) = (parse_role(peer), doc.parse::<DocId>()) else {
                return Err(corrupt(&k, "bad peer state key"));
            };
            if let Err(e) = replica.load_peer_state(peer, doc, &v) {
                tracing::warn!(%peer, %doc, error = %e, "stored sync state dropped");
            }
        }
        Ok(loaded)
    }

    /// Writes what the replica asked to persist, as one batch, and flushes it if it holds
    /// document data. A batch of per-peer sync states only is not flushed: a lost one costs
    /// a resend, never data (the states name heads whose changes were flushed with their own
    /// batch), and a hub exchanging with hundreds of nodes would otherwise wait on a disk
    /// flush for every message of every node, one at a time.
    pub fn write(&self, ops: Vec<Persist>) -> Result<(), StoreError> {
        if ops.is_empty() {
            return Ok(());
        }
        let data = ops
            .iter()
            .any(|op| !matches!(op, Persist::PeerState { .. }));
        let mut batch = sled::Batch::default();
        // Chunk indexes continue after the last stored one, also within this batch.
        let mut next_chunk: BTreeMap<DocId, u64> = BTreeMap::new();
        for op in ops {
            match op {
                Persist::Chunk { doc, bytes } => {
                    let n = match next_chunk.get(&doc) {
                        Some(n) => *n,
                        None => self.last_chunk(doc)?.map_or(0, |n| n + 1),
                    };
                    next_chunk.insert(doc, n + 1);
                    let mut k = doc_prefix(doc);
                    k.push(b'c');
                    k.extend_from_slice(&n.to_be_bytes());
                    batch.insert(k, bytes);
                }
                Persist::Snapshot { doc, bytes } => {
                    let mut chunks = doc_prefix(doc);
                    chunks.push(b'c');
                    for item in self.tree.scan_prefix(&chunks) {
                        batch.remove(item?.0);
                    }
                    // Chunks queued earlier in this batch are covered by the snapshot too.
                    if let Some(upto) = next_chunk.get(&doc) {
                        for n in 0..*upto {
                            let mut k = chunks.clone();
                            k.extend_from_slice(&n.to_be_bytes());
                            batch.remove(k);
                        }
                    }
                    next_chunk.insert(doc, 0);
                    let mut k = doc_prefix(doc);
                    k.push(b's');
                    batch.insert(k, bytes);
                }
                Persist::PeerState { peer, doc, bytes } => {
                    batch.insert(peer_key(peer, doc), bytes);
                }
            }
        }
        self.tree.apply_batch(batch)?;
        if data {
            self.db.flush()?;
        }
        Ok(())
    }

    fn last_chunk(&self, doc: DocId) -> Result<Option<u64>, StoreError> {
        let mut prefix = doc_prefix(doc);
        prefix.push(b'c');
        match self.tree.scan_prefix(&prefix).next_back() {
            Some(item) => {
                let (k, _) = item?;
                let raw = k
                    .get(prefix.len()..)
                    .ok_or_else(|| corrupt(&k, "short chunk key"))?;
                let n: [u8; 8] = raw
                    .try_into()
                    .map_err(|_| corrupt(&k, "chunk index is not 8 bytes"))?;
                Ok(Some(u64::from_be_bytes(n)))
            }
            None => Ok(None),
        }
    }
}

/// Decodes `docs` and inserts those `replica` holds; returns how many it took.
fn insert_decoded(replica: &mut Replica, docs: BTreeMap<DocId, Stored>) -> usize {
    // Documents this replica does not hold are refused by `insert_doc`: do not decode them.
    let (docs, foreign): (BTreeMap<_, _>, BTreeMap<_, _>) = docs
        .into_iter()
        .partition(|(id, _)| menjin_sync::holds(replica.me(), *id));
    for id in foreign.keys() {
        tracing::error!(doc = %id, me = %replica.me(), "stored document not held by this replica; not loaded");
    }
    let mut loaded = 0;
    for (id, decoded) in decode_all(docs) {
        match decoded.and_then(|d| replica.insert_doc(id, d)) {
            Ok(()) => loaded += 1,
            Err(e) => {
                tracing::error!(doc = %id, error = %e, "stored document not loaded; it will be synced again")
            }
        }
    }
    loaded
}

/// Decodes stored documents on several threads: decoding is most of a cold start (about
/// 20 µs per roster entry, 2 s for 100,000 residents on one core), and documents are
/// independent. Each thread takes the next document not yet taken, so one large shard does
/// not hold back the others. Results come back in the order given.
fn decode_all(docs: BTreeMap<DocId, Stored>) -> Vec<(DocId, Result<LoadedDoc, LoadError>)> {
    let docs: Vec<_> = docs.into_iter().collect();
    let threads = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .clamp(1, DECODE_THREADS_MAX)
        .min(docs.len());
    let next = AtomicUsize::new(0);
    let mut decoded: Vec<_> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut out = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some((id, (snapshot, chunks))) = docs.get(i) else {
                            return out;
                        };
                        out.push((i, *id, decode_doc(snapshot.as_deref(), chunks)));
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().expect("document decoder"))
            .collect()
    });
    decoded.sort_unstable_by_key(|(i, _, _)| *i);
    decoded.into_iter().map(|(_, id, d)| (id, d)).collect()
}
