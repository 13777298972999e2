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
    #[error("no session with {0}: call connect first")]
    NotConnected(Role),
    #[error("malformed sync frame: {0}")]
    Wire(#[from] WireError),
    #[error("malformed document id: {0}")]
    DocId(#[from] DocIdError),
    #[error("{peer} and {me} do not replicate {doc}")]
    NotShared { me: Role, peer: Role, doc: DocId },
    #[error("{peer} sent changes to {doc}, which only {writer} writes: refused")]
    NotWriter {
        peer: Role,
        doc: DocId,
        writer: Role,
    },
    #[error("malformed automerge sync message for {doc}: {why}")]
    Automerge { doc: DocId, why: String },
    /// Automerge refused the changes after decoding them (a change that does not parse or
    /// apply). Changes applied before the failing one may have been merged; the replica
    /// reports the document as changed through the usual persistence if so.
    #[error("applying the sync message for {doc} failed: {why}")]
    Apply { doc: DocId, why: String },
}

/// Why [`crate::Replica::connect`] refused a peer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    #[error("{me} does not replicate with {peer}: hubs sync with nodes, nodes with their hub")]
    NoSharedDocs { me: Role, peer: Role },
}

/// Why stored state could not be loaded. Nothing was loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    #[error("{me} does not hold {doc}")]
    NotHeld { me: Role, doc: DocId },
    #[error("{0} is already loaded")]
    AlreadyLoaded(DocId),
    #[error("stored document is corrupt: {0}")]
    Corrupt(String),
    #[error("stored sync state for {peer} / {doc} is corrupt: {why}")]
    PeerState { peer: Role, doc: DocId, why: String },
}

/// Why a local write was refused. Nothing was written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WriteError {
    #[error("{me} does not write {doc}; only {writer} does")]
    NotWriter { me: Role, doc: DocId, writer: Role },
    #[error("code {code} is {} for good: its status cannot change", .status.as_str())]
    StatusFinal { code: CredId, status: CodeStatus },
    #[error("lockdown epoch {epoch} for community {community} is not above {current}")]
    StaleEpoch {
        community: CommunityId,
        epoch: u64,
        current: u64,
    },
    #[error("invalid entry: {0}")]
    Invalid(String),
    #[error("automerge refused the change: {0}")]
    Automerge(String),
}
