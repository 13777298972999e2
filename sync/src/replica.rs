//! [`Replica`]: one process's documents and its sync sessions with its peers, as a state
//! machine driven by the caller (messages, time and storage are arguments and results).

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use automerge::sync::{self, SyncDoc};
use automerge::transaction::CommitOptions;
use automerge::{ActorId, Automerge, ChangeHash, ReadDoc};
use sha2::{Digest, Sha256};
use tracing::{debug, warn};

use menjin_proto::sync_wire::{
    DocDigest, SUMMARY_DOCS_MAX, SYNC_MESSAGE_LEN_MAX, SyncBody, SyncFrame,
};
use menjin_proto::{CommunityId, UnixTime};

use crate::doc_id::{DocId, ROSTER_SHARDS_DEFAULT, Role, accepts_changes, holds, shared};
use crate::error::{ConnectError, LoadError, SyncError, WriteError};
use crate::message_check::check_message;
use crate::policy::{self, Lockdown, PolicyBatch, PolicyView};
use crate::roster::{self, CodeStatus, RosterBatch, RosterView};

/// How often a session sends a summary when nothing else happens. An idle link then costs
/// one probe and one reply (about 45 bytes per shared document each) per period; changes are
/// pushed at once and do not wait for it. It is the repair path for what a broken session
/// missed, so it bounds how long a silent divergence can last.
pub const ANTI_ENTROPY_INTERVAL_MS_DEFAULT: u64 = 30_000;
/// How long a session waits for an answer it expects (a summary reply, or a sync message
/// while the peer's heads are known to differ) before it gives up on the session and starts
/// a new one. QUIC delivers in order, so on a live link an answer is late only when a
/// message was lost with a broken connection or something is wrong; 10 s is far above any
/// round trip on a district network, including a whole roster shard at 10 Mbit/s.
pub const STALL_TIMEOUT_MS_DEFAULT: u64 = 10_000;
/// Documents one session may have waiting for an answer at once. Bounds what a replica
/// sends ahead of its peer's answers (each can be a whole shard on an initial sync) and
/// keeps one peer's catch-up from crowding out the policy.
pub const DOCS_IN_FLIGHT_MAX_DEFAULT: usize = 8;
/// Incremental chunks stored for one document before it is compacted into one snapshot:
/// loading many small chunks is slower than loading one snapshot.
pub const SNAPSHOT_AFTER_CHUNKS_DEFAULT: usize = 64;
/// Or when the chunks add up to this many bytes (or half the last snapshot, if larger).
pub const SNAPSHOT_AFTER_BYTES_DEFAULT: usize = 256 * 1024;
/// Sync messages received in a row for one document that change nothing while the two
/// sides' heads differ, before the session is given up. An exchange that makes progress
/// changes someone's heads within two or three messages; more means the two sync states
/// disagree about what was sent (a frame lost with a broken connection).
pub const IDLE_ROUNDS_MAX: u32 = 8;
/// Session restarts in a row that did not converge after which the persisted sync state
/// (shared heads) is dropped and the next session starts from nothing. Guards against a
/// persisted state that no longer matches the peer (a peer restored from an old backup).
pub const FRESH_STATE_AFTER_RESTARTS: u32 = 3;
/// Stored bytes of one community's roster (all its shards, snapshot and chunks) past which
/// its node's changes are refused ([`Config::community_bytes_max`]). A roster of 30,000
/// residents is ~2 MB, of 100,000 ~7 MB; years of revisions stay far below this, and 200
/// communities at the limit would still fit a hub's disk, not its memory (issue 15).
pub const COMMUNITY_BYTES_MAX_DEFAULT: usize = 256 * 1024 * 1024;
/// Bytes of changes a document may hold queued for missing dependencies ([`Automerge`]
/// keeps them in memory until their dependencies arrive). An honest peer leaves a few
/// behind only after a Bloom filter's false positive, and sends what is missing in the
/// next round; past this the queue is dropped and the peer's session starts over.
pub const PENDING_BYTES_MAX_DEFAULT: u64 = 16 * 1024 * 1024;

/// Tunables; the defaults are the production values, tests shorten the periods.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Milliseconds between summary probes on an idle session
    /// ([`ANTI_ENTROPY_INTERVAL_MS_DEFAULT`]).
    pub anti_entropy_interval_ms: u64,
    /// Milliseconds to wait for an expected answer before the session is restarted
    /// ([`STALL_TIMEOUT_MS_DEFAULT`]).
    pub stall_timeout_ms: u64,
    /// Documents per peer with a sync message awaiting its answer
    /// ([`DOCS_IN_FLIGHT_MAX_DEFAULT`]).
    pub docs_in_flight_max: usize,
    /// Chunks per document before [`Persist::Snapshot`] compacts them
    /// ([`SNAPSHOT_AFTER_CHUNKS_DEFAULT`]).
    pub snapshot_after_chunks: usize,
    /// Bytes of chunks per document before a snapshot, or half the last snapshot's size if
    /// that is larger ([`SNAPSHOT_AFTER_BYTES_DEFAULT`]).
    pub snapshot_after_bytes: usize,
    /// Shards of this node's roster. Fixed for the life of a community's roster: holders
    /// are placed by it. A hub refuses a node's frames for a shard at or past it (a node
    /// could otherwise make 256 documents of its community).
    pub roster_shards: u8,
    /// Stored bytes of one community's roster past which its changes are refused
    /// ([`COMMUNITY_BYTES_MAX_DEFAULT`]).
    pub community_bytes_max: usize,
    /// Bytes of changes a document may hold queued for missing dependencies
    /// ([`PENDING_BYTES_MAX_DEFAULT`]).
    pub pending_bytes_max: u64,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            anti_entropy_interval_ms: ANTI_ENTROPY_INTERVAL_MS_DEFAULT,
            stall_timeout_ms: STALL_TIMEOUT_MS_DEFAULT,
            docs_in_flight_max: DOCS_IN_FLIGHT_MAX_DEFAULT,
            snapshot_after_chunks: SNAPSHOT_AFTER_CHUNKS_DEFAULT,
            snapshot_after_bytes: SNAPSHOT_AFTER_BYTES_DEFAULT,
            roster_shards: ROSTER_SHARDS_DEFAULT,
            community_bytes_max: COMMUNITY_BYTES_MAX_DEFAULT,
            pending_bytes_max: PENDING_BYTES_MAX_DEFAULT,
        }
    }
}

/// Something the driver must write to its store, in the order given, before it sends
/// anything [`Replica::poll_transmit`] returns afterwards (nothing is acknowledged before
/// it is on disk).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Persist {
    /// Append to the document's chunk list.
    Chunk {
        /// The document.
        doc: DocId,
        /// Automerge's incremental save since the last persist; stored after the others.
        bytes: Vec<u8>,
        /// The document's heads with this chunk: store them beside it (same batch) to
        /// start the document cold later ([`Replica::insert_cold`]).
        heads: Vec<ChangeHash>,
    },
    /// Replace the document's snapshot and delete every chunk stored for it before this.
    Snapshot {
        /// The document.
        doc: DocId,
        /// The whole compressed document (`Automerge::save`).
        bytes: Vec<u8>,
        /// The document's heads (as for [`Persist::Chunk`]).
        heads: Vec<ChangeHash>,
    },
    /// Replace the stored sync state for this peer and document (a few hashes).
    PeerState {
        /// The peer.
        peer: Role,
        /// The document.
        doc: DocId,
        /// Encoded `automerge::sync::State`; give it back with [`Replica::load_peer_state`].
        bytes: Vec<u8>,
    },
}

/// Counters for logs and metrics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SyncStats {
    /// Frames returned by [`Replica::poll_transmit`].
    pub frames_sent: u64,
    /// Their encoded bytes.
    pub bytes_sent: u64,
    /// Frames that decoded and passed the checks in [`Replica::handle_message`] (stale
    /// ones included).
    pub frames_received: u64,
    /// Their bytes.
    pub bytes_received: u64,
    /// Frames refused with an error (malformed, wrong peer, not shared).
    pub frames_refused: u64,
    /// Frames from a peer's older session, dropped.
    pub stale_frames: u64,
    /// Documents whose queue of changes with missing dependencies went over
    /// [`Config::pending_bytes_max`] and was dropped.
    pub queues_dropped: u64,
    /// Sessions given up and started anew (stall or silent divergence).
    pub session_restarts: u64,
    /// Sync messages that exceeded the frame limit and could not be sent: a shard grew too
    /// big (a broken invariant; raise the shard count).
    pub oversized_messages: u64,
}

/// A document decoded from storage, ready for [`Replica::insert_doc`]. Decoding is the slow
/// part of a cold start; this type is `Send`, so a driver can decode shards on several
/// threads.
pub struct LoadedDoc {
    doc: Automerge,
    chunks: usize,
    chunk_bytes: usize,
    snapshot_bytes: usize,
}

/// Decodes a stored document: its snapshot (if any) and the chunks stored after it, in
/// order.
///
/// # Errors
/// [`LoadError::Corrupt`] if Automerge refuses the bytes.
pub fn decode_doc(snapshot: Option<&[u8]>, chunks: &[Vec<u8>]) -> Result<LoadedDoc, LoadError> {
    let mut doc = match snapshot {
        Some(s) => Automerge::load(s).map_err(|e| LoadError::Corrupt(e.to_string()))?,
        None => Automerge::new(),
    };
    for c in chunks {
        doc.load_incremental(c)
            .map_err(|e| LoadError::Corrupt(e.to_string()))?;
    }
    Ok(LoadedDoc {
        doc,
        chunks: chunks.len(),
        chunk_bytes: chunks.iter().map(Vec::len).sum(),
        snapshot_bytes: snapshot.map_or(0, <[u8]>::len),
    })
}

/// The actor id of a writer: role and incarnation, so that two processes never write under
/// the same actor (Automerge requires that: an actor's sequence numbers must not fork).
pub(crate) fn actor_for(me: Role, incarnation: u32) -> ActorId {
    let (tag, community) = match me {
        Role::Hub => (0u8, 0u32),
        Role::Node(c) => (1, c),
    };
    let mut bytes = Vec::with_capacity(11);
    bytes.extend_from_slice(b"mj");
    bytes.push(tag);
    bytes.extend_from_slice(&community.to_be_bytes());
    bytes.extend_from_slice(&incarnation.to_be_bytes());
    ActorId::from(bytes)
}

/// SHA-256 of the sorted heads; `None` for a document without changes.
fn heads_hash(doc: &Automerge) -> Option<[u8; 32]> {
    hash_of_heads(&doc.get_heads())
}

fn hash_of_heads(heads: &[ChangeHash]) -> Option<[u8; 32]> {
    let mut heads = heads.to_vec();
    if heads.is_empty() {
        return None;
    }
    heads.sort();
    let mut h = Sha256::new();
    for head in &heads {
        h.update(head.0);
    }
    Some(h.finalize().into())
}

fn has_change(doc: &Automerge, hash: &ChangeHash) -> bool {
    doc.get_change_meta_by_hash(hash).is_some()
}

fn same_heads(a: &[ChangeHash], b: &[ChangeHash]) -> bool {
    let mut a = a.to_vec();
    let mut b = b.to_vec();
    a.sort();
    b.sort();
    a == b
}

/// A document held on disk only: what a summary and the quota need of it.
struct ColdDoc {
    heads: Vec<ChangeHash>,
    stored_bytes: usize,
}

struct DocSlot {
    doc: Automerge,
    /// Heads at the last [`Persist`] of this document.
    saved_heads: Vec<ChangeHash>,
    chunks: usize,
    chunk_bytes: usize,
    snapshot_bytes: usize,
    /// Bytes of changes received since the document last had no missing dependencies
    /// (bounded by [`Config::pending_bytes_max`]).
    pending_bytes: u64,
}

impl DocSlot {
    fn empty(actor: &ActorId) -> DocSlot {
        DocSlot {
            doc: Automerge::new().with_actor(actor.clone()),
            saved_heads: Vec::new(),
            chunks: 0,
            chunk_bytes: 0,
            snapshot_bytes: 0,
            pending_bytes: 0,
        }
    }

    /// What this document takes on disk: its snapshot and the chunks after it.
    fn stored_bytes(&self) -> usize {
        self.snapshot_bytes + self.chunk_bytes
    }

    /// Drops the changes Automerge holds queued for missing dependencies: the document is
    /// saved (which leaves the queue out) and loaded again.
    fn drop_queue(&mut self, actor: &ActorId) {
        match Automerge::load(&self.doc.save()) {
            Ok(doc) => self.doc = doc.with_actor(actor.clone()),
            Err(e) => warn!(error = %e, "reloading a document to drop its queue failed"),
        }
        self.pending_bytes = 0;
    }
}

/// Sync with one peer for one document.
struct DocSync {
    state: sync::State,
    /// Ask Automerge for a message at the next transmit (a local change, a received
    /// message, a summary difference).
    wanted: bool,
    /// The peer sent a message we have not answered yet. Answers are never held back by
    /// the in-flight bound: both sides holding back answers would deadlock.
    answer_due: bool,
    /// Messages received in a row that moved neither side's heads while they differ.
    idle_rounds: u32,
    last_tx_ms: Option<u64>,
    last_rx_ms: Option<u64>,
    /// When to check whether the answer to our last message is overdue (set on send,
    /// cleared on receipt).
    deadline_ms: Option<u64>,
}

impl DocSync {
    fn fresh(&self) -> bool {
        self.last_tx_ms.is_none() && self.last_rx_ms.is_none()
    }

    fn recently_active(&self, now: u64, window: u64) -> bool {
        self.last_tx_ms
            .into_iter()
            .chain(self.last_rx_ms)
            .any(|t| now < t.saturating_add(window))
    }
}

/// The difference that remains with this peer cannot be closed under the authority rule
/// (a writer lost changes that the reader still holds): not a stall.
fn explained(ds: &DocSync, doc: Option<&Automerge>) -> bool {
    let Some(theirs) = ds.state.their_heads.as_ref() else {
        return false;
    };
    let known = |h: &ChangeHash| doc.is_some_and(|d| has_change(d, h));
    (ds.state.read_only && !theirs.iter().all(known))
        || (ds.state.peer_read_only && theirs.iter().all(known))
}

/// We sent a message and the peer's heads, as far as we know, differ from ours: an answer
/// is due.
fn expecting(ds: &DocSync, doc: Option<&Automerge>) -> bool {
    if !ds.state.in_flight {
        return false;
    }
    let ours = doc.map(Automerge::get_heads).unwrap_or_default();
    if ds
        .state
        .their_heads
        .as_ref()
        .is_some_and(|t| same_heads(t, &ours))
    {
        return false;
    }
    !explained(ds, doc)
}

fn new_state(
    me: Role,
    peer: Role,
    doc: DocId,
    saved: Option<&[u8]>,
    local: Option<&Automerge>,
) -> sync::State {
    let mut st = saved
        .and_then(|b| sync::State::decode(b).ok())
        .unwrap_or_default();
    // Shared heads we do not have (a peer state stored after a chunk that was lost) would
    // make Automerge compute a Bloom filter from unknown changes: start from nothing.
    if !st
        .shared_heads
        .iter()
        .all(|h| local.is_some_and(|d| has_change(d, h)))
    {
        st = sync::State::new();
    }
    st.read_only = !accepts_changes(me, peer, doc);
    st.peer_read_only = !accepts_changes(peer, me, doc);
    st
}

/// Automerge's answer to a `have` whose `last_sync` it does not know: one empty `have`, no
/// changes. (An empty peer's first message looks the same; the reaction is harmless then.)
fn is_reset(msg: &sync::Message) -> bool {
    msg.changes.is_empty()
        && msg.have.len() == 1
        && msg.have[0].last_sync.is_empty()
        && msg.have[0].bloom.to_bytes().is_empty()
}

struct Session {
    id: u64,
    /// Newest session id seen from the peer on this connection; 0 before the first frame.
    peer_session: u64,
    docs: BTreeMap<DocId, DocSync>,
    probe_due: bool,
    reply_due: bool,
    probe_sent_ms: Option<u64>,
    next_probe_ms: u64,
    /// Round-robin position among documents with something to send.
    cursor: Option<DocId>,
    /// Restarts since the last summary that showed no difference.
    failed_restarts: u32,
}

#[derive(Default)]
struct PeerSlot {
    /// Last persisted (or loaded) sync state per document.
    saved: BTreeMap<DocId, Vec<u8>>,
    session: Option<Session>,
}

fn ensure_ds<'a>(
    session: &'a mut Session,
    me: Role,
    peer: Role,
    doc: DocId,
    saved: &BTreeMap<DocId, Vec<u8>>,
    local: Option<&Automerge>,
) -> &'a mut DocSync {
    session.docs.entry(doc).or_insert_with(|| DocSync {
        state: new_state(me, peer, doc, saved.get(&doc).map(Vec::as_slice), local),
        wanted: false,
        answer_due: false,
        idle_rounds: 0,
        last_tx_ms: None,
        last_rx_ms: None,
        deadline_ms: None,
    })
}

/// Automerge sends the whole compressed document instead of changes when the peer has
/// nothing, and also whenever the changes to send are more than a third of the document's
/// changes. Rosters are written in few large changes (one per declaration batch, one per
/// bulk import), so the second rule would turn a one-field revocation into a whole shard.
/// Keep the whole-document form for a peer that has nothing (an initial sync, where it is
/// much smaller than the changes), and send changes otherwise.
fn limit_whole_doc_sends(st: &mut sync::State) {
    let peer_has_something = st.their_heads.as_ref().is_some_and(|h| !h.is_empty());
    if let (true, Some(caps)) = (peer_has_something, st.their_capabilities.as_mut()) {
        caps.retain(|c| *c != sync::Capability::MessageV2);
    }
}

/// Automerge never sends a change twice in one session, even when the peer asks for it by
/// hash: on a lossless stream that is right, but a frame lost to a broken connection would
/// leave the peer asking forever. What the peer says it needs is sent again.
fn resend_needed(st: &mut sync::State) {
    if let Some(need) = st.their_need.as_ref() {
        for h in need {
            st.sent_hashes.remove(h);
        }
    }
}

/// The peer's summary showed the same heads as ours: start from what a finished exchange
/// would have left, so that the next local change goes out in the first message instead of
/// after a round trip of heads and Bloom filters.
fn seed_equal(ds: &mut DocSync, heads: Vec<ChangeHash>) {
    let st = &mut ds.state;
    st.shared_heads = heads.clone();
    st.their_heads = Some(heads.clone());
    st.their_need = Some(Vec::new());
    st.their_have = Some(vec![sync::Have {
        last_sync: heads,
        bloom: sync::BloomFilter::default(),
    }]);
}

/// Resets every per-document sync state of a session to what would be persisted (shared
/// heads), or to nothing when `fresh`. Keeps which documents have something to send.
fn reset_states(
    session: &mut Session,
    me: Role,
    peer: Role,
    docs: &BTreeMap<DocId, DocSlot>,
    fresh: bool,
) {
    for (doc, ds) in session.docs.iter_mut() {
        let encoded = ds.state.encode();
        let saved = (!fresh).then_some(encoded.as_slice());
        ds.state = new_state(me, peer, *doc, saved, docs.get(doc).map(|s| &s.doc));
        ds.last_tx_ms = None;
        ds.last_rx_ms = None;
        ds.deadline_ms = None;
        ds.answer_due = false;
        ds.idle_rounds = 0;
    }
}

/// One process's replicated documents and its sync sessions. See the crate doc for the
/// protocol and how a driver uses it.
pub struct Replica {
    me: Role,
    incarnation: u32,
    actor: ActorId,
    config: Config,
    docs: BTreeMap<DocId, DocSlot>,
    /// Roster shards known by their stored heads only, not decoded ([`Replica::insert_cold`]).
    cold: BTreeMap<DocId, ColdDoc>,
    peers: BTreeMap<Role, PeerSlot>,
    dirty_docs: BTreeSet<DocId>,
    dirty_peer_states: BTreeSet<(Role, DocId)>,
    pending: VecDeque<Persist>,
    next_session: u32,
    stats: SyncStats,
}

impl Replica {
    /// A replica with no documents. `incarnation` must be new at every process start and
    /// never repeat for this role, even after a restore from an older backup (the driver
    /// draws a random one and flushes it before calling this): it makes the Automerge actor
    /// id and the session ids unique. It need not grow: a peer compares session ids only
    /// within one connection.
    ///
    /// # Panics
    /// If `incarnation` is 0 (reserved for [`crate::roster_docs_for`]) or the config has no
    /// roster shards.
    pub fn new(me: Role, incarnation: u32, config: Config) -> Replica {
        assert!(
            incarnation > 0,
            "incarnation 0 is reserved for bulk imports"
        );
        assert!(config.roster_shards > 0, "at least one roster shard");
        Replica {
            me,
            incarnation,
            actor: actor_for(me, incarnation),
            config,
            docs: BTreeMap::new(),
            cold: BTreeMap::new(),
            peers: BTreeMap::new(),
            dirty_docs: BTreeSet::new(),
            dirty_peer_states: BTreeSet::new(),
            pending: VecDeque::new(),
            next_session: 0,
            stats: SyncStats::default(),
        }
    }

    /// This replica's role.
    pub fn me(&self) -> Role {
        self.me
    }

    /// This process's incarnation: the Automerge actor it writes under is made of it and
    /// the role, so two processes that wrote under the same one would fork that actor.
    pub fn incarnation(&self) -> u32 {
        self.incarnation
    }

    /// The tunables it runs with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Counters since this replica was created.
    pub fn stats(&self) -> &SyncStats {
        &self.stats
    }

    // ---- loading from storage --------------------------------------------------------

    /// Loads a stored document (snapshot and the chunks stored after it). Call before
    /// [`Replica::connect`]; loading later works too (the document is offered to connected
    /// peers at the next summary).
    ///
    /// # Errors
    /// [`LoadError`]; nothing is loaded.
    pub fn load_doc(
        &mut self,
        doc: DocId,
        snapshot: Option<&[u8]>,
        chunks: &[Vec<u8>],
    ) -> Result<(), LoadError> {
        if !holds(self.me, doc) {
            return Err(LoadError::NotHeld { me: self.me, doc });
        }
        let loaded = decode_doc(snapshot, chunks)?;
        self.insert_doc(doc, loaded)
    }

    /// Adds a document decoded with [`decode_doc`].
    ///
    /// # Errors
    /// [`LoadError::NotHeld`], [`LoadError::AlreadyLoaded`].
    pub fn insert_doc(&mut self, doc: DocId, loaded: LoadedDoc) -> Result<(), LoadError> {
        if !holds(self.me, doc) {
            return Err(LoadError::NotHeld { me: self.me, doc });
        }
        if self.docs.contains_key(&doc) {
            return Err(LoadError::AlreadyLoaded(doc));
        }
        if let Some(cold) = self.cold.remove(&doc)
            && !same_heads(&cold.heads, &loaded.doc.get_heads())
        {
            warn!(doc = %doc, "a cold document loaded with other heads than stored beside it");
        }
        let mut d = loaded.doc;
        d.set_actor(self.actor.clone());
        let saved_heads = d.get_heads();
        self.docs.insert(
            doc,
            DocSlot {
                doc: d,
                saved_heads,
                chunks: loaded.chunks,
                chunk_bytes: loaded.chunk_bytes,
                snapshot_bytes: loaded.snapshot_bytes,
                pending_bytes: 0,
            },
        );
        Ok(())
    }

    /// Holds a stored roster shard cold: known by the heads stored with it
    /// ([`Persist::Chunk`]'s `heads`) and its size on disk, not decoded. A hub holding 200
    /// communities' rosters starts in the time it takes to read their heads, and a shard
    /// costs memory only once a peer's frame needs its content: then
    /// [`Replica::handle_message`] answers [`SyncError::NeedsLoad`] and the driver decodes it
    /// ([`Replica::insert_doc`]) and gives the frame again. A summary whose heads match costs
    /// nothing. Reads ([`Replica::roster`], [`Replica::roster_shard`]) see warm shards only:
    /// a driver that reads a community warms its shards first ([`Replica::cold_docs`]).
    ///
    /// # Errors
    /// [`LoadError::NotHeld`], [`LoadError::NotCold`] (not a roster shard),
    /// [`LoadError::AlreadyLoaded`].
    pub fn insert_cold(
        &mut self,
        doc: DocId,
        heads: Vec<ChangeHash>,
        stored_bytes: usize,
    ) -> Result<(), LoadError> {
        if !holds(self.me, doc) {
            return Err(LoadError::NotHeld { me: self.me, doc });
        }
        if !matches!(doc, DocId::Roster { .. }) {
            return Err(LoadError::NotCold(doc));
        }
        if self.docs.contains_key(&doc) || self.cold.contains_key(&doc) {
            return Err(LoadError::AlreadyLoaded(doc));
        }
        self.cold.insert(
            doc,
            ColdDoc {
                heads,
                stored_bytes,
            },
        );
        Ok(())
    }

    /// Turns a warm roster shard cold again, dropping its decoded document, when nothing
    /// of it is unsaved or under way: saved to the last change, no changes waiting for
    /// dependencies, and no session sending it, expecting an answer about it or owing one.
    /// Returns whether it did. A hub calls it for shards idle for a while, so that the
    /// rosters in memory are the ones in use.
    pub fn cool(&mut self, doc: DocId) -> bool {
        if !matches!(doc, DocId::Roster { .. }) || self.dirty_docs.contains(&doc) {
            return false;
        }
        let Some(slot) = self.docs.get(&doc) else {
            return false;
        };
        let heads = slot.doc.get_heads();
        if heads != slot.saved_heads || slot.pending_bytes > 0 {
            return false;
        }
        let busy = self.peers.values().any(|p| {
            p.session.as_ref().is_some_and(|s| {
                s.docs.get(&doc).is_some_and(|ds| {
                    ds.wanted
                        || ds.answer_due
                        || ds.state.in_flight
                        || expecting(ds, Some(&slot.doc))
                })
            })
        });
        if busy {
            return false;
        }
        let stored_bytes = slot.stored_bytes();
        self.docs.remove(&doc);
        self.cold.insert(
            doc,
            ColdDoc {
                heads,
                stored_bytes,
            },
        );
        true
    }

    /// The roster shards held cold, of one community or (None) of all.
    pub fn cold_docs(&self, community: Option<CommunityId>) -> Vec<DocId> {
        match community {
            Some(c) => self.cold.range(roster_range(c)).map(|(d, _)| *d).collect(),
            None => self.cold.keys().copied().collect(),
        }
    }

    /// Whether `doc` is held cold.
    pub fn is_cold(&self, doc: DocId) -> bool {
        self.cold.contains_key(&doc)
    }

    /// The heads hash of a document held warm or cold.
    fn hash_of(&self, doc: DocId) -> Option<[u8; 32]> {
        match self.docs.get(&doc) {
            Some(slot) => heads_hash(&slot.doc),
            None => self.cold.get(&doc).and_then(|c| hash_of_heads(&c.heads)),
        }
    }

    /// Loads a stored sync state ([`Persist::PeerState`]). Call before connecting to that
    /// peer.
    ///
    /// # Errors
    /// [`LoadError::PeerState`] if the bytes do not decode or the document is not shared
    /// with that peer; nothing is loaded.
    pub fn load_peer_state(
        &mut self,
        peer: Role,
        doc: DocId,
        bytes: &[u8],
    ) -> Result<(), LoadError> {
        let err = |why: String| LoadError::PeerState { peer, doc, why };
        if !shared(self.me, peer, doc) {
            return Err(err("document not shared with this peer".into()));
        }
        sync::State::decode(bytes).map_err(|e| err(e.to_string()))?;
        self.peers
            .entry(peer)
            .or_default()
            .saved
            .insert(doc, bytes.to_vec());
        Ok(())
    }

    // ---- reading -----------------------------------------------------------------------

    /// The documents this replica holds, warm or cold (including empty ones created for a
    /// peer).
    pub fn docs(&self) -> impl Iterator<Item = DocId> + '_ {
        let mut all: Vec<DocId> = self.docs.keys().chain(self.cold.keys()).copied().collect();
        all.sort_unstable();
        all.into_iter()
    }

    /// Read access to a warm document (tests, benchmarks, diagnostics). Never on a hot path:
    /// drivers keep materialised views.
    pub fn doc(&self, doc: DocId) -> Option<&Automerge> {
        self.docs.get(&doc).map(|s| &s.doc)
    }

    /// The document's heads (empty if absent). A driver stores them with its view and
    /// passes them to [`Replica::roster_changes_since`] later.
    pub fn heads(&self, doc: DocId) -> Vec<ChangeHash> {
        match self.doc(doc) {
            Some(d) => d.get_heads(),
            None => self
                .cold
                .get(&doc)
                .map(|c| c.heads.clone())
                .unwrap_or_default(),
        }
    }

    /// A community's whole roster, all warm shards merged (see [`Replica::insert_cold`]).
    pub fn roster(&self, community: CommunityId) -> RosterView {
        let mut view = RosterView::default();
        for (_, slot) in self.docs.range(roster_range(community)) {
            view.merge(roster::read_roster(&slot.doc));
        }
        view
    }

    /// One roster shard.
    pub fn roster_shard(&self, doc: DocId) -> Option<RosterView> {
        match doc {
            DocId::Roster { .. } => self.doc(doc).map(roster::read_roster),
            DocId::Policy | DocId::CommunityPolicy { .. } => None,
        }
    }

    /// The entries of a roster shard that changed since `heads` (from [`Replica::heads`]).
    pub fn roster_changes_since(&self, doc: DocId, heads: &[ChangeHash]) -> RosterView {
        match (doc, self.doc(doc)) {
            (DocId::Roster { .. }, Some(d)) => roster::read_roster_changes(d, heads),
            _ => RosterView::default(),
        }
    }

    /// The policy as this replica knows it: the district document and every community
    /// policy held (a node holds its own only; the hub all, so this walks every health flag
    /// of the district there: use [`Replica::community_policy`] or
    /// [`Replica::lockdowns`] where one community or the lockdowns are enough).
    pub fn policy(&self) -> PolicyView {
        let mut view = self
            .doc(DocId::Policy)
            .map(policy::read_policy)
            .unwrap_or_default();
        for (doc, slot) in self.docs.range(community_policy_range()) {
            if let DocId::CommunityPolicy { community } = doc {
                view.merge(policy::read_policy_of(&slot.doc, *community));
            }
        }
        view
    }

    /// The district document alone: enrolled nodes and revoked node keys (and, before the
    /// split, every lockdown and flag).
    pub fn district_policy(&self) -> PolicyView {
        self.doc(DocId::Policy)
            .map(policy::read_policy)
            .unwrap_or_default()
    }

    /// One community's policy (its lockdown and health flags), with what the district
    /// document still holds of it from before the split.
    pub fn community_policy(&self, community: CommunityId) -> PolicyView {
        let mut view = self
            .doc(DocId::CommunityPolicy { community })
            .map(|d| policy::read_policy_of(d, community))
            .unwrap_or_default();
        if let Some(legacy) = self.doc(DocId::Policy).map(policy::read_policy)
            && let Some(l) = legacy.lockdowns.get(&community)
        {
            view.merge(PolicyView {
                lockdowns: BTreeMap::from([(community, l.clone())]),
                ..PolicyView::default()
            });
        }
        view
    }

    /// The ID hashes of the health flags the district document still holds from before the
    /// per-community split ([`Replica::migrate_policy`] moves them).
    pub fn legacy_health_hashes(&self) -> Vec<menjin_proto::idnum::IdHash> {
        self.doc(DocId::Policy)
            .map(|d| policy::read_policy(d).health.into_keys().collect())
            .unwrap_or_default()
    }

    /// The lockdown record in force of every community held, without reading any health
    /// flag (the hub's status and dashboard).
    pub fn lockdowns(&self) -> BTreeMap<CommunityId, Lockdown> {
        let mut view = PolicyView::default();
        for (doc, slot) in self.docs.range(community_policy_range()) {
            if let DocId::CommunityPolicy { .. } = doc {
                view.merge(PolicyView {
                    lockdowns: policy::read_lockdowns(&slot.doc),
                    ..PolicyView::default()
                });
            }
        }
        if let Some(d) = self.doc(DocId::Policy) {
            view.merge(PolicyView {
                lockdowns: policy::read_lockdowns(d),
                ..PolicyView::default()
            });
        }
        view.lockdowns
    }

    // ---- local writes ------------------------------------------------------------------

    /// Writes a roster change of `community` (this node's own): one Automerge change per
    /// shard touched, pushed to connected peers at the next [`Replica::poll_transmit`].
    /// Returns the documents that changed (none if the batch changed nothing).
    ///
    /// # Errors
    /// [`WriteError::NotWriter`] unless this replica is `Node(community)`;
    /// [`WriteError::StatusFinal`] for a code whose revoked or withdrawn status would
    /// change (a revoked code never comes back); [`WriteError::Invalid`]. Nothing is
    /// written.
    pub fn apply_roster(
        &mut self,
        community: CommunityId,
        batch: &RosterBatch,
        time: UnixTime,
    ) -> Result<Vec<DocId>, WriteError> {
        let shards = self.config.roster_shards;
        let any = DocId::Roster {
            community,
            shard: 0,
        };
        if self.me != any.writer() {
            return Err(WriteError::NotWriter {
                me: self.me,
                doc: any,
                writer: any.writer(),
            });
        }
        roster::check_batch(batch)?;
        let mut by_shard: BTreeMap<DocId, RosterBatch> = BTreeMap::new();
        for p in &batch.persons {
            by_shard
                .entry(DocId::roster_shard(community, p.holder, shards))
                .or_default()
                .persons
                .push(p.clone());
        }
        let mut final_in_batch: BTreeMap<_, CodeStatus> = BTreeMap::new();
        for c in &batch.codes {
            let doc = DocId::roster_shard(community, c.holder, shards);
            if let Some(slot) = self.docs.get(&doc) {
                roster::check_code_transition(&slot.doc, c)?;
            }
            if let Some(&s) = final_in_batch.get(&c.id).filter(|s| **s != c.status) {
                return Err(WriteError::StatusFinal {
                    code: c.id,
                    status: s,
                });
            }
            if c.status.is_final() {
                final_in_batch.insert(c.id, c.status);
            }
            by_shard.entry(doc).or_default().codes.push(c.clone());
        }
        let mut changed = Vec::new();
        for (doc, sub) in by_shard {
            let slot = self
                .docs
                .entry(doc)
                .or_insert_with(|| DocSlot::empty(&self.actor));
            // The last entry for a key in a batch is the one that counts.
            let persons: BTreeMap<_, _> = sub.persons.iter().map(|p| (p.holder, p)).collect();
            let codes: BTreeMap<_, _> = sub.codes.iter().map(|c| (c.id, c)).collect();
            let persons: Vec<_> = persons
                .into_values()
                .map(|p| {
                    (
                        p,
                        roster::existing(&slot.doc, &roster::person_key(p.holder)),
                    )
                })
                .collect();
            let codes: Vec<_> = codes
                .into_values()
                .map(|c| (c, roster::existing(&slot.doc, &roster::code_key(c.id))))
                .collect();
            let done = slot
                .doc
                .transact_with(
                    |_| CommitOptions::default().with_time(time as i64),
                    |tx| {
                        for (p, ex) in &persons {
                            roster::put_person(tx, p, ex.as_ref())?;
                        }
                        for (c, ex) in &codes {
                            roster::put_code(tx, c, ex.as_ref())?;
                        }
                        Ok::<_, automerge::AutomergeError>(())
                    },
                )
                .map_err(|f| WriteError::Automerge(f.error.to_string()))?;
            if done.hash.is_some() {
                changed.push(doc);
            }
        }
        for doc in &changed {
            self.local_change(*doc);
        }
        Ok(changed)
    }

    /// Writes a policy change (hub only): its enrolments and revocations into the district
    /// document, each community's lockdowns and health flags into that community's policy
    /// document, one Automerge change per document touched. Each document goes only to the
    /// peers that share it.
    ///
    /// # Errors
    /// [`WriteError::NotWriter`] unless this replica is the hub; [`WriteError::StaleEpoch`]
    /// for a lockdown whose epoch is not above the current one; [`WriteError::Invalid`].
    /// Nothing is written (every document is checked before any is written).
    pub fn apply_policy(
        &mut self,
        batch: &PolicyBatch,
        time: UnixTime,
    ) -> Result<bool, WriteError> {
        if self.me != Role::Hub {
            return Err(WriteError::NotWriter {
                me: self.me,
                doc: DocId::Policy,
                writer: Role::Hub,
            });
        }
        if batch.health.iter().any(|h| h.community == 0) {
            return Err(WriteError::Invalid(
                "a health flag names the community whose roster holds the person".into(),
            ));
        }
        let (district, per) = batch.split();
        let mut parts: Vec<(DocId, PolicyBatch)> = Vec::new();
        if !district.is_empty() {
            parts.push((DocId::Policy, district));
        }
        for (community, part) in per {
            if let Some(l) = part.lockdowns.first() {
                // Epochs continue from a record still in the district document.
                let floor = self.community_policy(community).next_epoch(community);
                if l.epoch < floor {
                    return Err(WriteError::StaleEpoch {
                        community,
                        epoch: l.epoch,
                        current: floor - 1,
                    });
                }
            }
            parts.push((DocId::CommunityPolicy { community }, part));
        }
        for (doc, part) in &parts {
            if let Some(slot) = self.docs.get(doc) {
                policy::check_batch(&slot.doc, part)?;
            } else {
                policy::check_batch(&Automerge::new(), part)?;
            }
        }
        let mut changed = false;
        for (doc, part) in parts {
            changed |= self.write_policy_doc(doc, time, &part)?;
        }
        Ok(changed)
    }

    /// One transaction on a policy document.
    fn write_policy_doc(
        &mut self,
        doc: DocId,
        time: UnixTime,
        part: &PolicyBatch,
    ) -> Result<bool, WriteError> {
        let slot = self
            .docs
            .entry(doc)
            .or_insert_with(|| DocSlot::empty(&self.actor));
        let enrolled = policy::existing_enrolments(&slot.doc, part);
        let done = slot
            .doc
            .transact_with(
                |_| CommitOptions::default().with_time(time as i64),
                |tx| policy::put_batch(tx, part, &enrolled),
            )
            .map_err(|f| WriteError::Automerge(f.error.to_string()))?;
        let changed = done.hash.is_some();
        if changed {
            self.local_change(doc);
        }
        Ok(changed)
    }

    /// Moves what the district document holds from before the split (lockdowns, health
    /// flags) into the community policy documents, and deletes it there (hub only; at
    /// start). `route` names the communities whose rosters hold a flagged person; a flag it
    /// cannot place is returned (the caller keeps it until that person declares) and
    /// deleted from the district document too. Returns how many records moved.
    ///
    /// # Errors
    /// [`WriteError`] if this replica is not the hub or Automerge fails; nothing is written.
    pub fn migrate_policy(
        &mut self,
        route: impl Fn(&menjin_proto::idnum::IdHash) -> Vec<CommunityId>,
        time: UnixTime,
    ) -> Result<(usize, Vec<policy::HealthFlag>), WriteError> {
        let Some(district) = self.doc(DocId::Policy) else {
            return Ok((0, Vec::new()));
        };
        let keys = policy::legacy_keys(district);
        if keys.is_empty() {
            return Ok((0, Vec::new()));
        }
        let legacy = policy::read_policy(district);
        let mut batch = PolicyBatch::default();
        for l in legacy.lockdowns.values() {
            // Written again with its epoch: the community document has none yet.
            if self
                .doc(DocId::CommunityPolicy {
                    community: l.community,
                })
                .is_none_or(|d| !policy::read_lockdowns(d).contains_key(&l.community))
            {
                batch.lockdowns.push(l.clone());
            }
        }
        let mut unplaced = Vec::new();
        for f in legacy.health.into_values() {
            let to = route(&f.id_hash);
            if to.is_empty() {
                unplaced.push(f);
            } else {
                batch
                    .health
                    .extend(to.into_iter().map(|community| policy::HealthFlag {
                        community,
                        ..f.clone()
                    }));
            }
        }
        let moved = batch.lockdowns.len() + batch.health.len();
        let (_, per) = batch.split();
        for (community, part) in per {
            self.write_policy_doc(DocId::CommunityPolicy { community }, time, &part)?;
        }
        let slot = self.docs.get_mut(&DocId::Policy).expect("checked above");
        slot.doc
            .transact_with(
                |_| CommitOptions::default().with_time(time as i64),
                |tx| policy::delete_keys(tx, &keys),
            )
            .map_err(|f| WriteError::Automerge(f.error.to_string()))?;
        self.local_change(DocId::Policy);
        Ok((moved, unplaced))
    }

    /// Locks a community down or lifts its lockdown, with the next epoch. Hub only.
    ///
    /// # Errors
    /// As [`Replica::apply_policy`].
    pub fn set_lockdown(
        &mut self,
        community: CommunityId,
        locked: bool,
        reason: &str,
        by: &str,
        at: UnixTime,
    ) -> Result<Lockdown, WriteError> {
        let lockdown = Lockdown {
            community,
            locked,
            epoch: self.community_policy(community).next_epoch(community),
            reason: reason.to_owned(),
            by: by.to_owned(),
            at,
        };
        self.apply_policy(
            &PolicyBatch {
                lockdowns: vec![lockdown.clone()],
                ..PolicyBatch::default()
            },
            at,
        )?;
        Ok(lockdown)
    }

    fn local_change(&mut self, doc: DocId) {
        self.dirty_docs.insert(doc);
        self.want_everywhere(doc, None);
    }

    /// Marks `doc` for a sync message to every connected peer that shares it (but `except`).
    fn want_everywhere(&mut self, doc: DocId, except: Option<Role>) {
        let local = self.docs.get(&doc).map(|s| &s.doc);
        for (peer, slot) in self.peers.iter_mut() {
            if Some(*peer) == except || !shared(self.me, *peer, doc) {
                continue;
            }
            if let Some(session) = slot.session.as_mut() {
                ensure_ds(session, self.me, *peer, doc, &slot.saved, local).wanted = true;
            }
        }
    }

    // ---- sessions ----------------------------------------------------------------------

    fn alloc_session(&mut self) -> u64 {
        self.next_session = self.next_session.wrapping_add(1);
        (u64::from(self.incarnation) << 32) | u64::from(self.next_session)
    }

    /// Starts a session with `peer` over a new connection (replacing any previous one). The
    /// first [`Replica::poll_transmit`] yields a summary.
    ///
    /// # Errors
    /// [`ConnectError::NoSharedDocs`] for a peer this replica never syncs with (node to
    /// node, hub to hub).
    pub fn connect(&mut self, peer: Role, now_ms: u64) -> Result<(), ConnectError> {
        if !shared(self.me, peer, DocId::Policy) {
            return Err(ConnectError::NoSharedDocs { me: self.me, peer });
        }
        self.disconnect(peer);
        let id = self.alloc_session();
        let slot = self.peers.entry(peer).or_default();
        slot.session = Some(Session {
            id,
            peer_session: 0,
            docs: BTreeMap::new(),
            probe_due: true,
            reply_due: false,
            probe_sent_ms: None,
            next_probe_ms: now_ms.saturating_add(self.config.anti_entropy_interval_ms),
            cursor: None,
            failed_restarts: 0,
        });
        debug!(peer = %peer, session = id, "sync session started");
        Ok(())
    }

    /// Ends the session with `peer` (connection lost). Its sync states are kept (and
    /// yielded by [`Replica::poll_persist`] if they changed) for the next connection.
    pub fn disconnect(&mut self, peer: Role) {
        let Some(slot) = self.peers.get_mut(&peer) else {
            return;
        };
        let Some(session) = slot.session.take() else {
            return;
        };
        for (doc, ds) in session.docs {
            let bytes = ds.state.encode();
            if slot.saved.get(&doc) != Some(&bytes) {
                slot.saved.insert(doc, bytes.clone());
                self.pending
                    .push_back(Persist::PeerState { peer, doc, bytes });
            }
        }
        self.dirty_peer_states.retain(|(p, _)| *p != peer);
    }

    /// The peers with an open session (poll each for frames after an event).
    pub fn connected_peers(&self) -> impl Iterator<Item = Role> + '_ {
        self.peers
            .iter()
            .filter(|(_, p)| p.session.is_some())
            .map(|(r, _)| *r)
    }

    /// Whether a session with `peer` is open.
    pub fn is_connected(&self, peer: Role) -> bool {
        self.peers.get(&peer).is_some_and(|s| s.session.is_some())
    }

    /// This side's current session id with `peer` (for logs).
    pub fn session_id(&self, peer: Role) -> Option<u64> {
        self.peers.get(&peer)?.session.as_ref().map(|s| s.id)
    }

    /// Nothing to send to `peer` and no answer awaited from it.
    pub fn is_settled(&self, peer: Role) -> bool {
        let Some(s) = self.peers.get(&peer).and_then(|p| p.session.as_ref()) else {
            return true;
        };
        !s.probe_due
            && !s.reply_due
            && s.probe_sent_ms.is_none()
            && s.docs
                .iter()
                .all(|(d, ds)| !ds.wanted && !expecting(ds, self.docs.get(d).map(|s| &s.doc)))
    }

    fn restart_session(&mut self, peer: Role, why: &'static str) {
        let id = self.alloc_session();
        let me = self.me;
        let Some(session) = self.peers.get_mut(&peer).and_then(|p| p.session.as_mut()) else {
            return;
        };
        session.failed_restarts += 1;
        let fresh = session.failed_restarts >= FRESH_STATE_AFTER_RESTARTS;
        warn!(peer = %peer, old = session.id, new = id, fresh, why, "sync session restarted");
        session.id = id;
        reset_states(session, me, peer, &self.docs, fresh);
        session.probe_due = true;
        session.probe_sent_ms = None;
        session.cursor = None;
        self.stats.session_restarts += 1;
    }

    fn summary(&self, peer: Role, session: &Session, now: u64) -> Vec<DocDigest> {
        let window = self.config.stall_timeout_ms;
        let mut out = Vec::new();
        for doc in self.shared_docs(peer) {
            let Some(hash) = self.hash_of(doc) else {
                continue;
            };
            let local = self.docs.get(&doc).map(|s| &s.doc);
            let busy = session.docs.get(&doc).is_some_and(|ds| {
                ds.wanted || expecting(ds, local) || ds.recently_active(now, window)
            });
            out.push(DocDigest {
                doc: doc.to_string(),
                heads_hash: hash,
                busy,
            });
        }
        assert!(
            out.len() <= SUMMARY_DOCS_MAX,
            "a peer pair shares at most 257 documents"
        );
        out
    }

    /// The documents held here that `peer` shares.
    fn shared_docs(&self, peer: Role) -> Vec<DocId> {
        let mut out = Vec::new();
        let community = match (self.me, peer) {
            (Role::Hub, Role::Node(c)) | (Role::Node(c), Role::Hub) => c,
            _ => return out,
        };
        out.extend(self.docs.range(roster_range(community)).map(|(d, _)| *d));
        out.extend(self.cold.range(roster_range(community)).map(|(d, _)| *d));
        out.sort_unstable();
        for doc in [DocId::Policy, DocId::CommunityPolicy { community }] {
            if self.docs.contains_key(&doc) {
                out.push(doc);
            }
        }
        out
    }

    // ---- the protocol ------------------------------------------------------------------

    /// Takes one frame from `peer`. Returns the documents whose content changed (the driver
    /// updates its views from them, after persisting what [`Replica::poll_persist`] yields).
    ///
    /// Frames from an older session of the peer are dropped (`Ok(vec![])`).
    ///
    /// # Errors
    /// [`SyncError`]: the frame is malformed, names a document this pair does not share,
    /// carries a list over its limit or an inconsistent Bloom filter (checked before
    /// Automerge sees the message), or carries changes to a document that `peer` may not
    /// change (the authority rule).
    /// Nothing is merged and no state changes. [`SyncError::Apply`] is the exception.
    pub fn handle_message(
        &mut self,
        peer: Role,
        bytes: &[u8],
        now_ms: u64,
    ) -> Result<Vec<DocId>, SyncError> {
        let me = self.me;
        if !self.is_connected(peer) {
            self.stats.frames_refused += 1;
            return Err(SyncError::NotConnected(peer));
        }
        let parsed = match parse_frame(me, peer, bytes).and_then(|p| self.within_quota(peer, p)) {
            Ok(p) => p,
            Err(e) => {
                self.stats.frames_refused += 1;
                return Err(e);
            }
        };
        let cold = self.cold_needed(peer, &parsed.body);
        if !cold.is_empty() {
            return Err(SyncError::NeedsLoad(cold));
        }
        self.stats.frames_received += 1;
        self.stats.bytes_received += bytes.len() as u64;

        let slot = self.peers.get_mut(&peer).expect("connected");
        let session = slot.session.as_mut().expect("connected");
        if parsed.session < session.peer_session {
            self.stats.stale_frames += 1;
            debug!(peer = %peer, session = parsed.session, "stale sync frame dropped");
            return Ok(Vec::new());
        }
        if parsed.session > session.peer_session {
            if session.peer_session != 0 {
                // The peer gave up on its session: what we had in flight is lost to it.
                reset_states(session, me, peer, &self.docs, false);
            }
            session.peer_session = parsed.session;
        }

        match parsed.body {
            Parsed::Summary { reply, docs } => {
                let stuck = self.handle_summary(peer, reply, docs, now_ms);
                if stuck {
                    self.restart_session(peer, "documents differ with no sync in progress");
                }
                Ok(Vec::new())
            }
            Parsed::Doc { doc, msg } => self.handle_doc(peer, doc, msg, now_ms),
        }
    }

    /// The cold documents a frame needs decoded: the one a sync message is for, and those
    /// a summary shows differ (or the peer lacks).
    fn cold_needed(&self, peer: Role, body: &Parsed) -> Vec<DocId> {
        if self.cold.is_empty() {
            return Vec::new();
        }
        match body {
            Parsed::Doc { doc, .. } => self
                .cold
                .contains_key(doc)
                .then_some(*doc)
                .into_iter()
                .collect(),
            Parsed::Summary { docs, .. } => self
                .shared_docs(peer)
                .into_iter()
                .filter(|d| self.cold.contains_key(d))
                .filter(|d| docs.get(d).map(|(h, _)| *h) != self.hash_of(*d))
                .collect(),
        }
    }

    /// Refuses a frame for a roster shard past the community's shard count, or one that
    /// brings changes to a community whose roster is over [`Config::community_bytes_max`].
    fn within_quota(&self, peer: Role, frame: ParsedFrame) -> Result<ParsedFrame, SyncError> {
        let Parsed::Doc { doc, msg } = &frame.body else {
            return Ok(frame);
        };
        let DocId::Roster { community, shard } = *doc else {
            return Ok(frame);
        };
        if shard >= self.config.roster_shards {
            return Err(SyncError::Quota {
                peer,
                doc: *doc,
                why: format!("shard {shard} of {}", self.config.roster_shards),
            });
        }
        if !msg.changes.is_empty() {
            let stored: usize = self
                .docs
                .range(roster_range(community))
                .map(|(_, slot)| slot.stored_bytes())
                .chain(
                    self.cold
                        .range(roster_range(community))
                        .map(|(_, c)| c.stored_bytes),
                )
                .sum();
            if stored >= self.config.community_bytes_max {
                return Err(SyncError::Quota {
                    peer,
                    doc: *doc,
                    why: format!(
                        "the community's roster takes {stored} bytes (at most {})",
                        self.config.community_bytes_max
                    ),
                });
            }
        }
        Ok(frame)
    }

    /// One document's Automerge sync message from `peer`, already checked by `parse_frame`:
    /// merge it, update the per-peer state, and notice a session that spins without progress.
    fn handle_doc(
        &mut self,
        peer: Role,
        doc: DocId,
        msg: sync::Message,
        now_ms: u64,
    ) -> Result<Vec<DocId>, SyncError> {
        let me = self.me;
        let slot = self.peers.get_mut(&peer).expect("connected");
        let session = slot.session.as_mut().expect("connected");
        let local = self
            .docs
            .entry(doc)
            .or_insert_with(|| DocSlot::empty(&self.actor));
        let ds = ensure_ds(session, me, peer, doc, &slot.saved, Some(&local.doc));
        let before = local.doc.get_heads();
        let their_before = ds.state.their_heads.clone();
        let reset = is_reset(&msg);
        let incoming: u64 = msg.changes.iter().map(|c| c.len() as u64).sum();
        let result = local.doc.receive_sync_message(&mut ds.state, msg);
        let mut dropped_queue = false;
        if incoming > 0 {
            if local.doc.get_missing_deps(&[]).is_empty() {
                local.pending_bytes = 0;
            } else {
                local.pending_bytes += incoming;
                if local.pending_bytes > self.config.pending_bytes_max {
                    warn!(peer = %peer, doc = %doc, bytes = local.pending_bytes, "changes with missing dependencies over the bound: queue dropped");
                    local.drop_queue(&self.actor);
                    self.stats.queues_dropped += 1;
                    dropped_queue = true;
                }
            }
        }
        limit_whole_doc_sends(&mut ds.state);
        resend_needed(&mut ds.state);
        if reset {
            // The peer does not know the shared heads we claimed (it lost data, or we
            // kept a state from before it did): start over from nothing, or both
            // sides repeat themselves forever.
            ds.state.shared_heads.clear();
            ds.state.sent_hashes.clear();
        }
        if !accepts_changes(peer, me, doc) {
            // Automerge learns this from a flag that its reset messages lack.
            ds.state.peer_read_only = true;
        }
        ds.last_rx_ms = Some(now_ms);
        ds.deadline_ms = None;
        ds.wanted = true;
        ds.answer_due = true;
        let after = local.doc.get_heads();
        let changed = after != before;
        let converged = ds
            .state
            .their_heads
            .as_ref()
            .is_some_and(|t| same_heads(t, &after));
        if changed || converged || ds.state.their_heads != their_before {
            ds.idle_rounds = 0;
        } else {
            ds.idle_rounds += 1;
        }
        let spinning = ds.idle_rounds >= IDLE_ROUNDS_MAX && !explained(ds, Some(&local.doc));
        self.dirty_peer_states.insert((peer, doc));
        if changed {
            self.dirty_docs.insert(doc);
            self.want_everywhere(doc, Some(peer));
        }
        if spinning {
            self.restart_session(peer, "sync messages without progress");
        } else if dropped_queue {
            self.restart_session(peer, "too many changes with missing dependencies");
        }
        result.map_err(|e| SyncError::Apply {
            doc,
            why: e.to_string(),
        })?;
        Ok(if changed { vec![doc] } else { Vec::new() })
    }

    /// Compares a peer's summary with ours, marks the documents that differ for sync, and
    /// returns whether the session looks stuck: a document differs, was synced in this
    /// session, neither side is working on it, and the authority rule does not explain it.
    fn handle_summary(
        &mut self,
        peer: Role,
        reply: bool,
        theirs: BTreeMap<DocId, ([u8; 32], bool)>,
        now: u64,
    ) -> bool {
        let me = self.me;
        let window = self.config.stall_timeout_ms;
        let interval = self.config.anti_entropy_interval_ms;
        let mut union: BTreeSet<DocId> = self.shared_docs(peer).into_iter().collect();
        union.extend(theirs.keys().copied());
        // The policies are always shared: seed them even while neither side has any, so
        // that the first lockdown goes out in one message.
        union.insert(DocId::Policy);
        if let (Role::Hub, Role::Node(c)) | (Role::Node(c), Role::Hub) = (me, peer) {
            union.insert(DocId::CommunityPolicy { community: c });
        }
        let slot = self.peers.get_mut(&peer).expect("connected");
        let session = slot.session.as_mut().expect("connected");
        let mut differing = 0usize;
        let mut stuck = false;
        for doc in union {
            let local = self.docs.get(&doc).map(|s| &s.doc);
            let cold = self.cold.get(&doc);
            let ours = match local {
                Some(d) => heads_hash(d),
                None => cold.and_then(|c| hash_of_heads(&c.heads)),
            };
            let t = theirs.get(&doc);
            if ours == t.map(|(h, _)| *h) {
                let heads = match local {
                    Some(d) => d.get_heads(),
                    None => cold.map(|c| c.heads.clone()).unwrap_or_default(),
                };
                let ds = ensure_ds(session, me, peer, doc, &slot.saved, local);
                if ds.fresh() && !ds.state.in_flight {
                    seed_equal(ds, heads);
                }
                continue;
            }
            differing += 1;
            let ds = ensure_ds(session, me, peer, doc, &slot.saved, local);
            let busy_here = ds.wanted || expecting(ds, local) || ds.recently_active(now, window);
            let busy_there = t.is_some_and(|(_, b)| *b);
            // A difference the authority rule explains, judged on the peer's heads as the
            // summary shows them now (our sync state's view of them may be stale).
            let their_view_current = ds
                .state
                .their_heads
                .as_deref()
                .map(hash_of_heads)
                .is_some_and(|h| h == t.map(|(h, _)| *h));
            let explained_now = their_view_current && explained(ds, local);
            if !ds.fresh() && !busy_here && !busy_there && !explained_now {
                debug!(peer = %peer, doc = %doc, "document differs with no sync in progress");
                stuck = true;
            }
            // We hold nothing of it and the peer does: the peer opens the exchange (its
            // summary comparison shows we lack the document) and we answer. Opening it from
            // both sides makes two "I have nothing" messages cross the peer's whole document,
            // and the second one makes it send the whole document again.
            if ours.is_none() && t.is_some() {
                continue;
            }
            ds.wanted = true;
        }
        if differing == 0 {
            session.failed_restarts = 0;
        }
        if reply {
            session.probe_sent_ms = None;
        } else {
            session.reply_due = true;
            // The peer's probe and our reply compare everything: skip our own probe this
            // period, so an idle link costs one probe and one reply per period, not two each.
            if session.probe_sent_ms.is_none() {
                session.next_probe_ms = now.saturating_add(interval);
            }
        }
        stuck
    }

    /// The connected peers [`Replica::poll_transmit`] has something for (a summary or a
    /// reply due, a document wanted): the driver wakes those links only.
    pub fn peers_with_output(&self) -> Vec<Role> {
        self.peers
            .iter()
            .filter_map(|(peer, slot)| {
                let s = slot.session.as_ref()?;
                (s.reply_due || s.probe_due || s.docs.values().any(|ds| ds.wanted)).then_some(*peer)
            })
            .collect()
    }

    /// The next frame for `peer`, if any: a summary reply, a summary probe, or one
    /// Automerge sync message. Call until it returns `None` after every event (connect,
    /// message, timeout, local write), and send the frames in order on the connection.
    pub fn poll_transmit(&mut self, peer: Role, now_ms: u64) -> Option<Vec<u8>> {
        let session = self.peers.get(&peer)?.session.as_ref()?;
        let body = if session.reply_due || session.probe_due {
            let reply = session.reply_due;
            let docs = self.summary(peer, session, now_ms);
            let session = self.peers.get_mut(&peer)?.session.as_mut()?;
            if reply {
                session.reply_due = false;
            } else {
                session.probe_due = false;
                session.probe_sent_ms = Some(now_ms);
            }
            SyncBody::Summary { reply, docs }
        } else {
            self.next_doc_message(peer, now_ms)?
        };
        let session = self.peers.get(&peer)?.session.as_ref()?;
        let frame = SyncFrame {
            session: session.id,
            body,
        }
        .encode();
        self.stats.frames_sent += 1;
        self.stats.bytes_sent += frame.len() as u64;
        Some(frame)
    }

    fn next_doc_message(&mut self, peer: Role, now: u64) -> Option<SyncBody> {
        let me = self.me;
        let max = self.config.docs_in_flight_max;
        let stall = self.config.stall_timeout_ms;
        let slot = self.peers.get_mut(&peer)?;
        let session = slot.session.as_mut()?;
        if !session.docs.values().any(|ds| ds.wanted) {
            return None;
        }
        let waiting = session
            .docs
            .iter()
            .filter(|(d, ds)| expecting(ds, self.docs.get(d).map(|s| &s.doc)))
            .count();
        let wanted: Vec<DocId> = session
            .docs
            .iter()
            .filter(|(_, ds)| ds.wanted)
            .map(|(d, _)| *d)
            .collect();
        let start = session
            .cursor
            .map_or(0, |c| wanted.partition_point(|d| *d <= c));
        let order = wanted[start..].iter().chain(&wanted[..start]).copied();
        for doc in order.collect::<Vec<_>>() {
            let ds = session.docs.get_mut(&doc).expect("listed");
            if waiting >= max && !ds.answer_due {
                continue;
            }
            if self.cold.contains_key(&doc) {
                // `handle_message` has the driver load a shard before it can become wanted.
                warn!(peer = %peer, doc = %doc, "a cold document was wanted: not sent");
                ds.wanted = false;
                continue;
            }
            ds.wanted = false;
            ds.answer_due = false;
            let local = self
                .docs
                .entry(doc)
                .or_insert_with(|| DocSlot::empty(&self.actor));
            let Some(mut msg) = local.doc.generate_sync_message(&mut ds.state) else {
                continue;
            };
            if !accepts_changes(peer, me, doc) {
                // The peer would refuse them (a node holding hub-written policy changes that
                // the hub lacks, e.g. after the hub lost its disk): send heads only.
                msg.changes = sync::ChunkList::empty();
            }
            let msg = msg.encode();
            // Frame overhead: session, tags, the document id and length prefixes.
            if msg.len() + 64 > SYNC_MESSAGE_LEN_MAX {
                self.stats.oversized_messages += 1;
                warn!(peer = %peer, doc = %doc, len = msg.len(), "sync message over the frame limit: shard too big");
                continue;
            }
            ds.last_tx_ms = Some(now);
            ds.deadline_ms = Some(now.saturating_add(stall));
            session.cursor = Some(doc);
            self.dirty_peer_states.insert((peer, doc));
            return Some(SyncBody::Doc {
                doc: doc.to_string(),
                msg,
            });
        }
        None
    }

    /// Advances timers: anti-entropy summaries and stall detection. Call when
    /// [`Replica::poll_timeout`]'s deadline has passed (calling more often is harmless),
    /// then drain [`Replica::poll_transmit`] for every peer.
    pub fn handle_timeout(&mut self, now_ms: u64) {
        let stall = self.config.stall_timeout_ms;
        let interval = self.config.anti_entropy_interval_ms;
        let mut restart = Vec::new();
        for (peer, slot) in self.peers.iter_mut() {
            let Some(s) = slot.session.as_mut() else {
                continue;
            };
            if now_ms >= s.next_probe_ms {
                if s.probe_sent_ms.is_none() {
                    s.probe_due = true;
                }
                s.next_probe_ms = now_ms.saturating_add(interval);
            }
            if s.probe_sent_ms
                .is_some_and(|t| now_ms >= t.saturating_add(stall))
            {
                restart.push((*peer, "no summary reply"));
                continue;
            }
            let mut stalled = false;
            for (d, ds) in s.docs.iter_mut() {
                if ds.deadline_ms.is_some_and(|t| now_ms >= t) {
                    ds.deadline_ms = None;
                    stalled |= expecting(ds, self.docs.get(d).map(|s| &s.doc));
                }
            }
            if stalled {
                restart.push((*peer, "no answer to a sync message"));
            }
        }
        for (peer, why) in restart {
            self.restart_session(peer, why);
        }
    }

    /// The earliest time at which [`Replica::handle_timeout`] has something to do.
    pub fn poll_timeout(&self) -> Option<u64> {
        let stall = self.config.stall_timeout_ms;
        let mut next: Option<u64> = None;
        let mut at = |t: u64| next = Some(next.map_or(t, |n| n.min(t)));
        for slot in self.peers.values() {
            let Some(s) = slot.session.as_ref() else {
                continue;
            };
            at(s.next_probe_ms);
            if let Some(t) = s.probe_sent_ms {
                at(t.saturating_add(stall));
            }
            for ds in s.docs.values() {
                if let Some(t) = ds.deadline_ms {
                    at(t);
                }
            }
        }
        next
    }

    // ---- persistence -------------------------------------------------------------------

    /// The next thing to store. Drain it after every event and write everything to disk
    /// (flushed) before sending what [`Replica::poll_transmit`] yields.
    pub fn poll_persist(&mut self) -> Option<Persist> {
        while let Some(doc) = self.dirty_docs.pop_first() {
            if let Some(p) = self.persist_doc(doc) {
                return Some(p);
            }
        }
        if let Some(p) = self.pending.pop_front() {
            return Some(p);
        }
        while let Some((peer, doc)) = self.dirty_peer_states.pop_first() {
            let Some(slot) = self.peers.get_mut(&peer) else {
                continue;
            };
            let Some(ds) = slot.session.as_ref().and_then(|s| s.docs.get(&doc)) else {
                continue;
            };
            let bytes = ds.state.encode();
            if slot.saved.get(&doc) != Some(&bytes) {
                slot.saved.insert(doc, bytes.clone());
                return Some(Persist::PeerState { peer, doc, bytes });
            }
        }
        None
    }

    fn persist_doc(&mut self, doc: DocId) -> Option<Persist> {
        let cfg = &self.config;
        let slot = self.docs.get_mut(&doc)?;
        let heads = slot.doc.get_heads();
        if heads == slot.saved_heads {
            return None;
        }
        let chunk = slot.doc.save_after(&slot.saved_heads);
        slot.saved_heads = heads;
        let bytes_limit = cfg.snapshot_after_bytes.max(slot.snapshot_bytes / 2);
        let compact = slot.snapshot_bytes == 0
            || slot.chunks + 1 > cfg.snapshot_after_chunks
            || slot.chunk_bytes + chunk.len() > bytes_limit;
        if compact {
            let bytes = slot.doc.save();
            slot.chunks = 0;
            slot.chunk_bytes = 0;
            slot.snapshot_bytes = bytes.len();
            Some(Persist::Snapshot {
                doc,
                bytes,
                heads: slot.saved_heads.clone(),
            })
        } else {
            slot.chunks += 1;
            slot.chunk_bytes += chunk.len();
            Some(Persist::Chunk {
                doc,
                bytes: chunk,
                heads: slot.saved_heads.clone(),
            })
        }
    }
}

/// Every community policy document, in order.
fn community_policy_range() -> std::ops::RangeInclusive<DocId> {
    DocId::CommunityPolicy { community: 0 }..=DocId::CommunityPolicy {
        community: CommunityId::MAX,
    }
}

fn roster_range(community: CommunityId) -> std::ops::RangeInclusive<DocId> {
    DocId::Roster {
        community,
        shard: 0,
    }..=DocId::Roster {
        community,
        shard: u8::MAX,
    }
}

struct ParsedFrame {
    session: u64,
    body: Parsed,
}

enum Parsed {
    Summary {
        reply: bool,
        docs: BTreeMap<DocId, ([u8; 32], bool)>,
    },
    Doc {
        doc: DocId,
        msg: sync::Message,
    },
}

/// Decodes and checks a whole frame before anything is touched.
fn parse_frame(me: Role, peer: Role, bytes: &[u8]) -> Result<ParsedFrame, SyncError> {
    let frame = SyncFrame::decode(bytes)?;
    let check = |doc: &str| -> Result<DocId, SyncError> {
        let doc: DocId = doc.parse()?;
        if !shared(me, peer, doc) {
            return Err(SyncError::NotShared { me, peer, doc });
        }
        Ok(doc)
    };
    let body = match frame.body {
        SyncBody::Summary { reply, docs } => {
            let mut out = BTreeMap::new();
            for d in docs {
                out.insert(check(&d.doc)?, (d.heads_hash, d.busy));
            }
            Parsed::Summary { reply, docs: out }
        }
        SyncBody::Doc { doc, msg } => {
            let doc = check(&doc)?;
            let msg = sync::Message::decode(&msg).map_err(|e| SyncError::Automerge {
                doc,
                why: e.to_string(),
            })?;
            // Automerge decodes messages it cannot process (a Bloom filter with entries and
            // no bits divides by zero when it builds the reply): every message is checked,
            // with changes or not.
            check_message(doc, &msg)?;
            crate::chunk_check::check_chunks(doc, &msg.changes)?;
            if !msg.changes.is_empty() && !accepts_changes(me, peer, doc) {
                return Err(SyncError::NotWriter {
                    peer,
                    doc,
                    writer: doc.writer(),
                });
            }
            Parsed::Doc { doc, msg }
        }
    };
    Ok(ParsedFrame {
        session: frame.session,
        body,
    })
}

impl Replica {
    /// A one-line-per-document description of the session with `peer`, for logs and test
    /// failures.
    pub fn describe_session(&self, peer: Role) -> String {
        let Some(s) = self.peers.get(&peer).and_then(|p| p.session.as_ref()) else {
            return format!("{} ↔ {peer}: no session\n", self.me);
        };
        let short = |h: &[ChangeHash]| {
            let mut v: Vec<String> = h.iter().map(|h| hex::encode(&h.0[..3])).collect();
            v.sort();
            v.join(",")
        };
        let mut out = format!(
            "{} ↔ {peer}: session {:x} peer session {:x} probe due {} reply due {} probe sent {:?} failed restarts {}\n",
            self.me,
            s.id,
            s.peer_session,
            s.probe_due,
            s.reply_due,
            s.probe_sent_ms,
            s.failed_restarts
        );
        for (d, ds) in &s.docs {
            let local = self.docs.get(d).map(|s| &s.doc);
            out += &format!(
                "  {d}: wanted {} answer due {} in flight {} expecting {} tx {:?} rx {:?} theirs [{}] ours [{}] shared [{}] sent {} read-only {} peer read-only {}\n",
                ds.wanted,
                ds.answer_due,
                ds.state.in_flight,
                expecting(ds, local),
                ds.last_tx_ms,
                ds.last_rx_ms,
                ds.state
                    .their_heads
                    .as_deref()
                    .map(short)
                    .unwrap_or_else(|| "?".into()),
                short(&local.map(Automerge::get_heads).unwrap_or_default()),
                short(&ds.state.shared_heads),
                ds.state.sent_hashes.len(),
                ds.state.read_only,
                ds.state.peer_read_only
            );
        }
        out
    }
}
