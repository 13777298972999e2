//! Menjin's replication core: the community rosters and the district policy as Automerge
//! documents, and the protocol that keeps a district hub and its community nodes in sync.
//!
//! It is a sans-IO state machine ([`Replica`]): messages, the current time and stored bytes
//! are arguments, frames to send and bytes to store are results. It never touches sockets,
//! disk, threads or the clock, so the deterministic simulation in `tests/sim.rs` drives a
//! hub and its nodes through loss, duplication, reordering, partitions and restarts in one
//! thread. A driver (tokio, quinn, sled) sits on top.
//!
//! # Documents
//!
//! - `roster/<community>/<shard>` ([`DocId::Roster`]): a community's persons and codes,
//!   sharded by holder id (shard = first byte of the holder id modulo the shard count, 16
//!   by default) so that no document grows past a few thousand persons: 100,000 residents
//!   in one document take 1.36 s to load, in 16 shards a node's cold start stays under 2 s.
//!   Written by `Node(community)` only. Typed access: [`RosterEntry`], [`CodeEntry`],
//!   [`RosterBatch`], [`Replica::apply_roster`], [`Replica::roster`].
//! - `policy` ([`DocId::Policy`]), the district document: enrolled nodes and revoked node
//!   keys, what every node needs. Written by the hub only, shared with every node.
//! - `policy/<community>` ([`DocId::CommunityPolicy`]): that community's lockdown and its
//!   residents' health flags. Written by the hub only, shared with that community's node
//!   alone: a change for one community costs every other node nothing. [`PolicyBatch`]
//!   (split by [`PolicyBatch::split`]), [`Replica::apply_policy`], [`Replica::set_lockdown`],
//!   [`Replica::policy`] (every policy document held, merged), [`Replica::community_policy`],
//!   [`Replica::lockdowns`], [`Replica::migrate_policy`] (an older district document's
//!   lockdowns and flags moved out).
//!
//! Each logical change (a declaration with its new code and the revocation of the old
//! one, a lockdown) is one Automerge change per document it touches: few, larger changes
//! keep sync messages and Bloom filters small.
//!
//! # Authority (the security rule)
//!
//! A replica applies changes to a document only from the peer that writes it
//! ([`accepts_changes`]): the hub takes `roster/X/*` only from `Node(X)`, a node takes
//! `policy` only from the hub. The one addition: a node takes its own roster back from the
//! hub, which holds exactly what that node wrote, so a node that lost its disk recovers it.
//! Nobody accepts anything about a document it does not share with that peer. A frame
//! that breaks this is refused whole with a typed [`SyncError`] (nothing merged, no state
//! changed); sync messages without changes (heads, have, need) are fine in both directions,
//! the protocol needs them. Every message, with changes or not, is first checked against
//! the limits of [`SYNC_HEADS_MAX`] and its siblings and its Bloom filters against what an
//! honest Automerge writes ([`SyncError::Bloom`]): Automerge 0.12 decodes filters that make
//! it panic when it builds the reply. Sync states for a peer whose changes are refused are Automerge
//! "read-only" states, which also tell an honest peer not to send changes at all.
//!
//! The peer's role comes from the driver, which authenticates the connection (node
//! certificates signed by the district root); roles never travel in frames.
//!
//! # Merge rules
//!
//! Under the authority rule every field has exactly one writer process: roster fields the
//! community's node, policy fields the hub. Concurrent writes to one field therefore happen
//! only between two *incarnations* of that writer: a node that lost changes it had already
//! sent (a restored disk, a crash before a flush) writes again before its hub gives the lost
//! changes back. Every incarnation writes under its own actor id ([`Replica::new`]'s
//! `incarnation`), so Automerge keeps both writes and the rules below decide:
//!
//! | field | writer | on concurrent writes |
//! |---|---|---|
//! | person: `id_hash`, `building`, `door`, `kind`, `outcome`, `cred`, `declared_at` | node | last writer wins per field (Automerge's order: Lamport clock, then actor) |
//! | person record created twice | node | the winning record (same order); the other stays in history |
//! | code: `holder`, `kind`, `valid_from`, `valid_until`, `host` | node | last writer wins per field |
//! | code: `status` | node | a final status present in *any* conflicting value wins: `revoked` over `consent_withdrawn` over `active`. A revoked code never comes back to life |
//! | code: `revoked_at` | node | the earliest value present when the status is final |
//! | enrolment: `key`, `name` | hub | last writer wins per field |
//! | lockdown record (`locked`, `epoch`, `reason`, `by`, `at`, written whole, in `policy/<c>`) | hub | highest `epoch`; at equal epochs `locked` wins; a record an older hub left in `policy` is merged the same way until it is moved |
//! | health flag (`status`, `at`, written whole, in `policy/<c>` of each community whose roster holds the person) | hub | latest `at`, then Automerge's order |
//! | node key revocation (`community`, `at`, `by`, `reason`, written whole, never removed) | hub | earliest `at`; the enrolment whose key it revokes is deleted in the same change |
//!
//! The writer side enforces the code rule too: [`Replica::apply_roster`] refuses to move a
//! final status anywhere ([`WriteError::StatusFinal`]), reading the status with the same
//! conflict rule, and [`Replica::apply_policy`] refuses a lockdown epoch that does not
//! rise. Entries are never deleted (a withdrawn person stays with their codes revoked), except
//! the lockdowns and flags the hub moves out of the district document once, at the split.
//!
//! # Protocol
//!
//! Per peer connection a session ([`Replica::connect`]). Each frame ([`SyncFrame`]) carries
//! the sender's session id; frames from an older session of the peer are dropped, a newer
//! one makes the receiver reset its per-document states (the peer lost what was in flight).
//!
//! 1. **Find what differs first.** On connect, and every `anti_entropy_interval_ms` (30 s),
//!    a side sends a summary probe: per shared document, SHA-256 of its sorted heads. The
//!    peer answers with its own summary. Only documents whose hashes differ enter
//!    Automerge's sync protocol. An idle link costs one small summary each way per period.
//! 2. **Push at once.** A local write or a merged change marks the document for every
//!    connected peer that shares it; the next [`Replica::poll_transmit`] yields the sync
//!    message (one round trip: the change, then the peer's acknowledgement with its heads).
//! 3. **Per document**, Automerge's sync protocol with one `sync::State` per (peer,
//!    document). Its persistent part (shared heads) is yielded as [`Persist::PeerState`] and
//!    loaded back with [`Replica::load_peer_state`], so a reconnect or a restart sends only
//!    what changed since. At most one message per (peer, document) is unanswered (the
//!    protocol's own rule) and at most `docs_in_flight_max` documents per peer.
//! 4. **Repair.** A session that waits longer than `stall_timeout_ms` for an answer it
//!    expects (a summary reply, or a sync message while the peer's heads differ), that
//!    exchanges [`IDLE_ROUNDS_MAX`] messages for a document without either side's heads
//!    moving, or whose summary shows a difference for a document that nobody is syncing and
//!    that the authority rule does not explain, is given up: a new session id, states reset
//!    to the persisted shared heads (to nothing after [`FRESH_STATE_AFTER_RESTARTS`] failed
//!    restarts in a row), a new summary. QUIC never loses, duplicates or reorders within a
//!    connection, so on a healthy link this does not happen (a test checks it); the
//!    simulation exercises it with all three.
//!
//! Four adjustments to Automerge 0.12's sync protocol, each for a case the simulation or
//! the tests hit:
//! - a peer that asks for a change by hash (`need`) gets it again, even if this session
//!   already sent it once (Automerge never resends in a session: a lost frame would leave
//!   the peer asking forever);
//! - Automerge's "reset" answer (the peer does not know our shared heads: it lost data)
//!   clears our shared heads, or both sides repeat themselves forever;
//! - the whole compressed document is sent only to a peer that has nothing (an initial
//!   sync); otherwise changes, even when they are more than a third of the document's
//!   changes (Automerge's rule, which turned a one-field revocation of a roster written in
//!   a few large changes into a whole shard);
//! - when a summary shows a document equal on both sides, its sync state starts as a
//!   finished exchange would have left it, so the next change goes out in the first
//!   message (one round trip: the change and its acknowledgement) instead of after a
//!   round trip of heads and Bloom filters.
//!
//! # Driver contract
//!
//! - Roles come from authenticated keys. `incarnation` is new at every process start and
//!   never repeats, not even after the store is restored from an older backup (so not a
//!   counter kept in that store: the driver draws a random non-zero number, other than the
//!   last one, and flushes it before use). Nothing relies on incarnations growing: session
//!   ids are compared only within one connection, which one process makes.
//! - At start: [`decode_doc`] / [`Replica::load_doc`] every stored document (snapshot plus
//!   chunks in order), [`Replica::load_peer_state`] every stored peer state. Or, for roster
//!   shards (a hub holding every community's), [`Replica::insert_cold`] with the heads
//!   stored beside each ([`Persist::Chunk`]'s `heads`): nothing decoded. A frame that needs
//!   a cold shard is answered [`SyncError::NeedsLoad`] with nothing changed: decode those
//!   shards ([`Replica::insert_doc`]) and give the same frame again. [`Replica::cool`]
//!   turns an idle shard cold again.
//! - After every event ([`Replica::connect`], [`Replica::handle_message`],
//!   [`Replica::handle_timeout`], a local write): drain [`Replica::poll_persist`] into the
//!   store and flush, then drain [`Replica::poll_transmit`] for each peer and send the
//!   frames in order. Wake at [`Replica::poll_timeout`].
//! - [`Persist::Snapshot`] replaces the document's snapshot and deletes its older chunks.
//! - On a lost connection call [`Replica::disconnect`], then drain `poll_persist` again.
//! - A refused frame ([`SyncError`]) is logged with the peer; the session goes on.
//! - Views: `handle_message` returns the documents that changed; keep their heads
//!   ([`Replica::heads`]) with the view and read only what changed
//!   ([`Replica::roster_changes_since`]). Never read Automerge on a gate check.
//! - Framing: frames must arrive in order within a connection (one QUIC stream per
//!   connection with a length prefix, each frame at most [`SYNC_MESSAGE_LEN_MAX`]). The
//!   replica survives loss, duplication and reordering, but pays for them with restarts.
//! - A local write costs Automerge a fraction of a millisecond per change: write the roster
//!   after the node's own sled commit, off the gate path, one [`RosterBatch`] per logical
//!   change. Decoding stored shards is the slow part of a start: decode them on several
//!   threads ([`decode_doc`] is `Send`), and serve gates from sled meanwhile.
//!
//! This crate must never do IO, read the clock, or merge a change that breaks the
//! authority rule.

#![warn(unreachable_pub, missing_docs, unused_crate_dependencies)]

mod chunk_check;
mod doc_id;
mod error;
mod message_check;
mod policy;
mod replica;
mod roster;

pub use automerge;
pub use chunk_check::{
    CHUNK_ACTOR_LEN_MAX, CHUNK_ACTORS_MAX, CHUNK_COLUMNS_MAX, CHUNK_HASHES_MAX, SYNC_INFLATED_MAX,
};
pub use doc_id::{DocId, DocIdError, ROSTER_SHARDS_DEFAULT, Role, accepts_changes, holds, shared};
pub use error::{ConnectError, LoadError, MessageLimit, SyncError, WriteError};
pub use menjin_proto::sync_wire::{SYNC_MESSAGE_LEN_MAX, SyncBody, SyncFrame};
pub use message_check::{
    BLOOM_BITS_PER_ENTRY_MAX, BLOOM_ENTRIES_MAX, BLOOM_PROBES_MAX, SYNC_CHANGES_MAX,
    SYNC_HAVES_MAX, SYNC_HEADS_MAX, SYNC_NEEDS_MAX,
};
pub use policy::{
    HealthFlag, Lockdown, NODE_REVOCATIONS_MAX, NodeEnrolment, NodeRevocation, POLICY_TEXT_LEN_MAX,
    PolicyBatch, PolicyView, read_policy,
};
pub use replica::{
    ANTI_ENTROPY_INTERVAL_MS_DEFAULT, COMMUNITY_BYTES_MAX_DEFAULT, Config,
    DOCS_IN_FLIGHT_MAX_DEFAULT, FRESH_STATE_AFTER_RESTARTS, IDLE_ROUNDS_MAX, LoadedDoc,
    PENDING_BYTES_MAX_DEFAULT, Persist, Replica, SNAPSHOT_AFTER_BYTES_DEFAULT,
    SNAPSHOT_AFTER_CHUNKS_DEFAULT, STALL_TIMEOUT_MS_DEFAULT, SyncStats, decode_doc,
};
pub use roster::{
    CodeEntry, CodeStatus, RosterBatch, RosterEntry, RosterView, SavedShard, read_code,
    read_person_entry, read_roster, read_roster_changes, roster_docs_for,
};
