//! Where a node or hub keeps its replicated documents: sled tree `sync`, the only module that
//! reads or writes it.
//!
//! Keys: `d` + document id + `\0s` → snapshot; `d` + document id + `\0c` + index (u64 BE) →
//! incremental chunk; `h` + document id → the bytes the document takes (u64 BE) and its
//! heads (32 bytes each) as of its last chunk or snapshot, written in the same batch (what a
//! hub needs to hold a roster shard cold, [`SyncStore::load_cold_into`]); `p` + peer + `\0` + document id → sync state for that peer; `i` → the
//! last incarnation (random at each process start: each writes under a new Automerge actor,
//! even after a restore from an older backup).
//!
//! Architecture invariant: [`SyncStore::write`] applies everything the replica asked to
//! persist as one sled batch and flushes it before returning; the driver sends nothing the
//! replica produced after those writes until then.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use menjin_sync::automerge::ChangeHash;
use menjin_sync::{DocId, LoadError, LoadedDoc, Persist, Replica, Role, decode_doc};

/// Threads that decode stored documents at start (one shard each at a time).
const DECODE_THREADS_MAX: usize = 8;

/// A stored document: its snapshot, if any, and the chunks stored after it, in order.
type Stored = (Option<Vec<u8>>, Vec<Vec<u8>>);

/// A document decoded from its stored records, or why it could not be.
pub type Decoded = (DocId, Result<LoadedDoc, LoadError>);

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

fn heads_key(doc: DocId) -> Vec<u8> {
    let mut k = vec![b'h'];
    k.extend_from_slice(doc.to_string().as_bytes());
    k
}

fn encode_heads(stored_bytes: u64, heads: &[ChangeHash]) -> Vec<u8> {
    let mut v = Vec::with_capacity(8 + 32 * heads.len());
    v.extend_from_slice(&stored_bytes.to_be_bytes());
    for h in heads {
        v.extend_from_slice(&h.0);
    }
    v
}

fn decode_heads(key: &[u8], v: &[u8]) -> Result<(u64, Vec<ChangeHash>), StoreError> {
    if v.len() < 8 || !(v.len() - 8).is_multiple_of(32) {
        return Err(corrupt(key, "heads record is not 8 + 32·n bytes"));
    }
    let size = u64::from_be_bytes(v[..8].try_into().expect("8 bytes"));
    let heads = v[8..]
        .chunks_exact(32)
        .map(|c| ChangeHash(c.try_into().expect("32 bytes")))
        .collect();
    Ok((size, heads))
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
        self.stored_where(prefix, |_| true)
    }

    /// [`SyncStore::stored`] of the documents `keep` wants (the others' bytes are not copied).
    fn stored_where(
        &self,
        prefix: &[u8],
        keep: impl Fn(DocId) -> bool,
    ) -> Result<BTreeMap<DocId, Stored>, StoreError> {
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
            if !keep(id) {
                continue;
            }
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
        // Held already: loaded, or cold.
        let held: std::collections::BTreeSet<DocId> = replica.docs().collect();
        let docs = self.stored_where(b"d", |id| !held.contains(&id))?;
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
        // Each document's size and heads after this batch.
        let mut sizes: BTreeMap<DocId, (u64, Vec<ChangeHash>)> = BTreeMap::new();
        for op in ops {
            match op {
                Persist::Chunk { doc, bytes, heads } => {
                    let before = match sizes.get(&doc) {
                        Some((n, _)) => *n,
                        None => self.stored_size(doc)?,
                    };
                    sizes.insert(doc, (before + bytes.len() as u64, heads));
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
                Persist::Snapshot { doc, bytes, heads } => {
                    sizes.insert(doc, (bytes.len() as u64, heads));
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
        for (doc, (size, heads)) in sizes {
            batch.insert(heads_key(doc), encode_heads(size, &heads));
        }
        self.tree.apply_batch(batch)?;
        if data {
            self.db.flush()?;
        }
        Ok(())
    }

    /// The bytes a document takes as its heads record says (0 without one).
    fn stored_size(&self, doc: DocId) -> Result<u64, StoreError> {
        let k = heads_key(doc);
        match self.tree.get(&k)? {
            Some(v) => Ok(decode_heads(&k, &v)?.0),
            None => Ok(0),
        }
    }

    /// Like [`SyncStore::load_into`], but roster shards are held cold
    /// ([`Replica::insert_cold`]) from their heads records, not decoded: what a hub does at
    /// start. A shard without a heads record (stored by an older version) is decoded and
    /// gets one, so the next start holds it cold too. Returns (cold, decoded).
    ///
    /// # Errors
    /// [`StoreError`] if sled fails or a record is corrupt.
    pub fn load_cold_into(&self, replica: &mut Replica) -> Result<(usize, usize), StoreError> {
        let mut cold = 0;
        for item in self.tree.scan_prefix(b"h") {
            let (k, v) = item?;
            let id: DocId = std::str::from_utf8(&k[1..])
                .map_err(|e| corrupt(&k, e))?
                .parse()
                .map_err(|e: menjin_sync::DocIdError| corrupt(&k, e))?;
            if !matches!(id, DocId::Roster { .. }) || replica.doc(id).is_some() {
                continue;
            }
            let (size, heads) = decode_heads(&k, &v)?;
            match replica.insert_cold(id, heads, usize::try_from(size).unwrap_or(usize::MAX)) {
                Ok(()) => cold += 1,
                Err(e) => tracing::error!(doc = %id, error = %e, "stored document not held cold"),
            }
        }
        let before: Vec<DocId> = replica.docs().collect();
        let decoded = self.load_into(replica)?;
        // Shards decoded for want of a heads record get one now.
        let mut batch = sled::Batch::default();
        let mut added = 0;
        for doc in replica.docs().filter(|d| !before.contains(d)) {
            if let DocId::Roster { .. } = doc {
                let size = self
                    .stored(&doc_prefix(doc))?
                    .get(&doc)
                    .map_or(0, |(s, c)| {
                        s.as_ref().map_or(0, Vec::len) + c.iter().map(Vec::len).sum::<usize>()
                    });
                batch.insert(
                    heads_key(doc),
                    encode_heads(size as u64, &replica.heads(doc)),
                );
                added += 1;
            }
        }
        if added > 0 {
            self.tree.apply_batch(batch)?;
            self.db.flush()?;
            tracing::warn!(
                shards = added,
                "roster shards given heads records: held cold from the next start"
            );
        }
        Ok((cold, decoded))
    }

    /// Decodes stored documents (cold ones a frame or a reader needs), outside any lock.
    /// A document with nothing stored decodes empty.
    ///
    /// # Errors
    /// [`StoreError`] if sled fails.
    pub fn decode(&self, docs: &[DocId]) -> Result<Vec<Decoded>, StoreError> {
        let mut stored = BTreeMap::new();
        for doc in docs {
            let one = self
                .stored(&doc_prefix(*doc))?
                .remove(doc)
                .unwrap_or_default();
            stored.insert(*doc, one);
        }
        Ok(decode_all(stored))
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
fn decode_all(docs: BTreeMap<DocId, Stored>) -> Vec<Decoded> {
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

#[cfg(test)]
mod tests {
    use menjin_proto::credential::{HolderId, HolderKind};
    use menjin_proto::declaration::Outcome;
    use menjin_proto::idnum::IdHash;
    use menjin_sync::automerge::Automerge;
    use menjin_sync::{Config, RosterEntry, roster_docs_for};

    use super::*;

    fn stored_roster(store: &SyncStore) -> Vec<(DocId, Vec<ChangeHash>)> {
        let persons: Vec<RosterEntry> = (0..40u8)
            .map(|n| RosterEntry {
                holder: HolderId([n; 8]),
                id_hash: IdHash([n; 16]),
                building: "1".into(),
                door: "101".into(),
                kind: HolderKind::Resident,
                outcome: Outcome::Cleared,
                cred: None,
                declared_at: 1_700_000_000,
            })
            .collect();
        let docs = roster_docs_for(7, 4, &persons, &[], 1_700_000_000).unwrap();
        let mut out = Vec::new();
        let ops = docs
            .into_iter()
            .map(|(doc, bytes, heads)| {
                assert_eq!(Automerge::load(&bytes).unwrap().get_heads(), heads);
                out.push((doc, heads.clone()));
                Persist::Snapshot { doc, bytes, heads }
            })
            .collect();
        store.write(ops).unwrap();
        out
    }

    #[test]
    fn a_hub_holds_shards_cold_from_their_heads_records_and_gives_older_shards_one() {
        let db = sled::Config::new().temporary(true).open().unwrap();
        let store = SyncStore::open(&db).unwrap();
        let stored = stored_roster(&store);
        assert!(stored.len() > 1);
        // As an older version left it: no heads record for the first shard.
        store.tree.remove(heads_key(stored[0].0)).unwrap();

        let mut first = Replica::new(Role::Hub, 1, Config::default());
        let (cold, decoded) = store.load_cold_into(&mut first).unwrap();
        assert_eq!((cold, decoded), (stored.len() - 1, 1));
        assert!(
            first.doc(stored[0].0).is_some(),
            "the shard without a record is decoded"
        );
        for (doc, heads) in &stored[1..] {
            assert!(first.is_cold(*doc));
            assert_eq!(&first.heads(*doc), heads, "cold heads are the stored ones");
        }

        // It got its record: the next start holds every shard cold.
        let mut second = Replica::new(Role::Hub, 2, Config::default());
        assert_eq!(
            store.load_cold_into(&mut second).unwrap(),
            (stored.len(), 0)
        );
        assert_eq!(second.heads(stored[0].0), stored[0].1);

        // A cold shard decodes to the same document.
        let (doc, d) = store.decode(&[stored[1].0]).unwrap().pop().unwrap();
        second.insert_doc(doc, d.unwrap()).unwrap();
        assert!(!second.is_cold(doc));
        assert_eq!(second.heads(doc), stored[1].1);
    }
}
