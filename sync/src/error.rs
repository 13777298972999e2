//! One error enum per operation of [`crate::Replica`].

use menjin_proto::CommunityId;
use menjin_proto::credential::CredId;
use menjin_proto::wire::WireError;

use crate::doc_id::{DocId, DocIdError, Role};
use crate::roster::CodeStatus;

/// Why an incoming sync message was refused. Nothing was merged and no state changed,
/// except for [`SyncError::Apply`] (see there). The driver logs it with the peer; a peer
/// that keeps sending refused messages is misbehaving or misconfigured.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SyncError {
    /// A frame from a peer with no session: the driver did not call
    /// [`crate::Replica::connect`] for this connection, or called
    /// [`crate::Replica::disconnect`] already (a driver bug, not the peer's fault).
    #[error("no session with {0}: call connect first")]
    NotConnected(Role),
    /// The frame itself does not decode: truncated, trailing bytes, over
    /// [`crate::SYNC_MESSAGE_LEN_MAX`], a summary over
    /// [`menjin_proto::sync_wire::SUMMARY_DOCS_MAX`] documents, an empty sync message.
    /// A broken or foreign peer.
    #[error("malformed sync frame: {0}")]
    Wire(#[from] WireError),
    /// The frame names a document in a form that is not canonical (see [`DocId`]).
    #[error("malformed document id: {0}")]
    DocId(#[from] DocIdError),
    /// The frame names a document that this pair does not replicate, such as a node
    /// asking about another community's roster ([`crate::shared`]). Refused whole.
    #[error("{peer} and {me} do not replicate {doc}")]
    NotShared {
        /// This replica.
        me: Role,
        /// The authenticated peer that sent the frame.
        peer: Role,
        /// The document it named.
        doc: DocId,
    },
    /// The frame carries changes to a document that `peer` may not change (the authority
    /// rule, [`crate::accepts_changes`]): a node sending policy, or another community's
    /// roster. Refused whole; an honest peer never does this, so log it loudly.
    #[error("{peer} sent changes to {doc}, which only {writer} writes: refused")]
    NotWriter {
        /// The authenticated peer that sent the changes.
        peer: Role,
        /// The document they were for.
        doc: DocId,
        /// The only role that writes `doc`.
        writer: Role,
    },
    /// The Automerge sync message inside a well-formed frame does not decode.
    #[error("malformed automerge sync message for {doc}: {why}")]
    Automerge {
        /// The document the message was for.
        doc: DocId,
        /// Automerge's decode error.
        why: String,
    },
    /// A Bloom filter in the message is inconsistent: entries with no bits per entry (which
    /// makes Automerge 0.12 divide by zero), no or too many probes, bits that do not match
    /// what its entry count and bits per entry imply, or more entries than
    /// [`crate::BLOOM_ENTRIES_MAX`]. Refused whole, before Automerge sees it.
    #[error("bad bloom filter in the sync message for {doc}: {why}")]
    Bloom {
        /// The document the message was for.
        doc: DocId,
        /// Which parameter is wrong.
        why: String,
    },
    /// A change chunk in the message is malformed, names more actors, hashes or columns than
    /// its limits, or would inflate to more than [`crate::SYNC_INFLATED_MAX`]. Refused whole,
    /// before Automerge sees it.
    #[error("sync message for {doc} refused before loading: {why}")]
    Chunk {
        /// The document the message was for.
        doc: DocId,
        /// What is wrong, in words.
        why: String,
    },
    /// The frame needs documents this replica holds cold ([`crate::Replica::insert_cold`]):
    /// nothing was read or changed. The driver loads them from its store
    /// ([`crate::Replica::insert_doc`]) and gives the same frame again. Not the peer's fault.
    #[error("documents to load first: {0:?}")]
    NeedsLoad(Vec<DocId>),
    /// The frame is for a roster shard past the community's shard count, or brings changes
    /// to a community whose roster is over its quota ([`crate::Config::community_bytes_max`]).
    /// Refused whole; the peer's other documents go on.
    #[error("{peer}'s sync message for {doc} is over quota: {why}")]
    Quota {
        /// The peer that sent it.
        peer: Role,
        /// The document it named.
        doc: DocId,
        /// Which quota, in words.
        why: String,
    },
    /// A list in the message is longer than its limit ([`crate::SYNC_HEADS_MAX`],
    /// [`crate::SYNC_NEEDS_MAX`], [`crate::SYNC_HAVES_MAX`], [`crate::SYNC_CHANGES_MAX`]).
    /// Refused whole, before Automerge sees it.
    #[error("sync message for {doc} has {len} {what}: over the limit")]
    OverLimit {
        /// The document the message was for.
        doc: DocId,
        /// Which list.
        what: MessageLimit,
        /// Its length.
        len: usize,
    },
    /// Automerge refused the changes after decoding them (a change that does not parse or
    /// apply). Changes applied before the failing one may have been merged; the replica
    /// reports the document as changed through the usual persistence if so.
    #[error("applying the sync message for {doc} failed: {why}")]
    Apply {
        /// The document the changes were for.
        doc: DocId,
        /// Automerge's error.
        why: String,
    },
}

/// Which list of a sync message broke its limit ([`SyncError::OverLimit`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum MessageLimit {
    /// `heads`, or a `have`'s `last_sync`.
    Heads,
    /// `need`.
    Needs,
    /// `have`.
    Haves,
    /// Change chunks.
    Changes,
}

impl std::fmt::Display for MessageLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            MessageLimit::Heads => "heads",
            MessageLimit::Needs => "needs",
            MessageLimit::Haves => "haves",
            MessageLimit::Changes => "change chunks",
        })
    }
}

/// Why [`crate::Replica::connect`] refused a peer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The two roles share no document: node to node or hub to hub. A driver that gets
    /// this authenticated the wrong kind of peer.
    #[error("{me} does not replicate with {peer}: hubs sync with nodes, nodes with their hub")]
    NoSharedDocs {
        /// This replica.
        me: Role,
        /// The peer it was asked to connect to.
        peer: Role,
    },
}

/// Why stored state could not be loaded. Nothing was loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The store has a document this role does not keep ([`crate::holds`]): a node's
    /// store with another community's roster, or a store from another role.
    #[error("{me} does not hold {doc}")]
    NotHeld {
        /// This replica.
        me: Role,
        /// The stored document.
        doc: DocId,
    },
    /// Only roster shards start cold ([`crate::Replica::insert_cold`]): the policies are
    /// written here and read at every change.
    #[error("{0} cannot be held cold")]
    NotCold(DocId),
    /// The driver loaded the same document twice (a driver bug).
    #[error("{0} is already loaded")]
    AlreadyLoaded(DocId),
    /// Automerge refused the stored snapshot or one of its chunks: the store is damaged.
    /// The document can be recovered from the peer that holds it (the hub, or the node
    /// that writes it) once the damaged copy is removed.
    #[error("stored document is corrupt: {0}")]
    Corrupt(String),
    /// A stored per-peer sync state ([`crate::Persist::PeerState`]) does not decode, or is
    /// for a document not shared with that peer. Dropping it costs one full exchange.
    #[error("stored sync state for {peer} / {doc} is corrupt: {why}")]
    PeerState {
        /// The peer the state is for.
        peer: Role,
        /// The document it is for.
        doc: DocId,
        /// What is wrong with it.
        why: String,
    },
}

/// Why a local write was refused. Nothing was written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WriteError {
    /// This replica may not write the document: a node writing policy or another
    /// community's roster, the hub writing a roster.
    #[error("{me} does not write {doc}; only {writer} does")]
    NotWriter {
        /// This replica.
        me: Role,
        /// The document the write was for.
        doc: DocId,
        /// The only role that writes `doc`.
        writer: Role,
    },
    /// The code is already revoked or withdrawn (in the replica, or earlier in the same
    /// batch) and the write would give it another status: a revoked code never comes back.
    #[error("code {code} is {} for good: its status cannot change", .status.as_str())]
    StatusFinal {
        /// The code.
        code: CredId,
        /// Its final status as it stands.
        status: CodeStatus,
    },
    /// A lockdown change whose epoch does not rise: another change for that community
    /// came first. Read the policy again and use [`crate::PolicyView::next_epoch`].
    #[error("lockdown epoch {epoch} for community {community} is not above {current}")]
    StaleEpoch {
        /// The community of the lockdown record.
        community: CommunityId,
        /// The epoch the write carried.
        epoch: u64,
        /// The highest epoch already in force for it (in the document or earlier in the
        /// batch).
        current: u64,
    },
    /// An entry breaks a bound or a consistency rule: a building or door longer than
    /// [`menjin_proto::credential::LABEL_LEN_MAX`], a policy label longer than
    /// [`crate::POLICY_TEXT_LEN_MAX`], an empty health status, `revoked_at` set without a
    /// final status (or missing with one), a validity window that ends before it starts.
    /// The text names the entry.
    #[error("invalid entry: {0}")]
    Invalid(String),
    /// Automerge failed inside the transaction (not expected for entries that passed the
    /// checks above).
    #[error("automerge refused the change: {0}")]
    Automerge(String),
}
