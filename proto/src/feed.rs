//! The gate feed: what a node pushes to each connected gate so that the gate can decide alone
//! when the node is unreachable, and what the gate answers.
//!
//! A gate subscribes with [`crate::wire::GateRequest::Subscribe`] on one bidirectional stream of
//! its QUIC connection; the node answers on that stream with length-prefixed [`GateFeed`]
//! frames (4-byte big-endian length, then postcard) for as long as the connection lives: one
//! [`TrustSnapshot`] first, then a [`TrustUpdate`] for every change (a revoked code, a visitor
//! consent given or withdrawn, a lockdown started or lifted) the moment it is committed, and a
//! heartbeat every [`HEARTBEAT_MS`] so that the gate knows the node is alive and learns the
//! node's clock. The gate acknowledges every version it has applied (and flushed to its own
//! cache) with [`crate::wire::GateRequest::Ack`], one short request each.
//!
//! The trust data is a *deny* list for people and an *allow* list for visitors: a resident's
//! or staff code is good offline if its signature, community and window check out and it is
//! not in `revoked`; a visitor's code only if it is in `visitors` (a consent in force whose
//! host still holds a code) and the gate is not degraded.

use serde::{Deserialize, Serialize};

use crate::credential::CredId;
use crate::{CommunityId, UnixTime};

/// A feed frame holds at most this many bytes. A snapshot of a 100,000-resident community
/// with 100,000 revoked codes is about 0.9 MB.
pub const FEED_FRAME_LEN_MAX: usize = 8 * 1024 * 1024;
/// The node sends a heartbeat this often when nothing else happens.
pub const HEARTBEAT_MS: u64 = 2_000;

/// A lockdown as a gate applies it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GateLockdown {
    /// Refuse visitors and vehicles, and residents going out unless allowed.
    pub locked: bool,
    /// The district policy's epoch for this community (0: never locked by the district).
    pub epoch: u64,
    /// Why, for the guard's screen.
    pub reason: String,
    /// When it was decided (Unix seconds, deciding clock).
    pub at: UnixTime,
}

/// Everything a gate needs to decide alone, as of `version`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustSnapshot {
    /// The node process that sends the feed: differs between processes of one node, so a
    /// gate never applies one process's updates on top of another's versions.
    pub incarnation: u64,
    /// Rises by one with every change the node makes to what it sends, from 1 at each
    /// process start.
    pub version: u64,
    /// The node's clock when it made the snapshot (Unix milliseconds): the gate measures
    /// its offset from it.
    pub node_time_ms: u64,
    /// The node's community; the gate decides only for this one.
    pub community: CommunityId,
    /// The node's certificate (`NodeCert::encode`), signed by the district root: the gate
    /// checks it, then trusts codes signed by that node key.
    pub node_cert: Vec<u8>,
    /// The node's certificate before its last rekey (`NodeCert::encode`), while codes its key
    /// signed may still be in force; checked as `node_cert` is. None older is ever sent.
    pub previous_node_cert: Option<Vec<u8>>,
    /// The lockdown the node enforces now.
    pub lockdown: GateLockdown,
    /// During a lockdown, may residents go out (staff always may)?
    pub residents_may_leave: bool,
    /// Codes of people (not visitors) that are revoked.
    pub revoked: Vec<CredId>,
    /// Visitor codes whose consent is in force.
    pub visitors: Vec<CredId>,
    /// Node keys of this community the district revoked (`menjin hub revoke-node`), at most
    /// [`crate::cert::NODE_REVOCATIONS_MAX`]: a gate refuses a node presenting one at the
    /// handshake, and offline a code one of them signed (`issuer_revoked`). Last, so that a
    /// snapshot cached before it existed fails to decode (the gate discards it and waits for
    /// its node) instead of decoding shifted.
    pub revoked_node_keys: Vec<[u8; 32]>,
}

/// A change on top of the previous version.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustUpdate {
    /// As in [`TrustSnapshot::incarnation`]; an update of another incarnation is not
    /// applied (the gate resubscribes).
    pub incarnation: u64,
    /// Exactly one more than the version it applies to.
    pub version: u64,
    /// The node's clock when it made the update (Unix milliseconds).
    pub node_time_ms: u64,
    /// The new lockdown state, when it changed.
    pub lockdown: Option<GateLockdown>,
    /// Codes of people newly revoked: add to the deny list.
    pub revoked: Vec<CredId>,
    /// Visitor codes whose consent is now in force.
    pub visitors_added: Vec<CredId>,
    /// Visitor codes whose consent ended (withdrawn, or the host lost their code).
    pub visitors_removed: Vec<CredId>,
    /// Node keys newly revoked by the district: add to [`TrustSnapshot::revoked_node_keys`].
    pub revoked_node_keys: Vec<[u8; 32]>,
}

/// One frame of the feed, node → gate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum GateFeed {
    /// The first frame of a subscription: replaces whatever the gate holds.
    Snapshot(TrustSnapshot),
    /// A change committed at the node, in version order.
    Update(TrustUpdate),
    /// Sent every [`HEARTBEAT_MS`] when nothing else is: the node is alive.
    Heartbeat {
        /// The last version sent on this subscription.
        version: u64,
        /// The node's clock (Unix milliseconds).
        node_time_ms: u64,
    },
    /// The subscription is refused (a gate subscribing as another gate, ...).
    Refused(String),
}

/// What a gate reports with each acknowledgment; the node shows it per gate.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GateAck {
    /// The incarnation of the trust data the gate holds.
    pub incarnation: u64,
    /// The version the gate has applied and flushed.
    pub version: u64,
    /// The lockdown epoch the gate enforces now.
    pub lockdown_epoch: u64,
    /// Whether the gate enforces a lockdown now.
    pub locked: bool,
    /// Offline events waiting in the gate's buffer.
    pub pending_events: u64,
    /// The gate's clock minus the node's, as the gate measured it (milliseconds).
    pub skew_ms: i64,
}

/// One event the gate decided alone, uploaded later. `gate_seq` rises by one per event in
/// one cache of that gate; the node stores each (gate, cache, gate_seq) once.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OfflineEvent {
    /// The incarnation of the gate's cache that recorded it: a random number made when the
    /// cache is created (0 for a cache made before incarnations). A reset cache counts
    /// `gate_seq` from 1 again under a new incarnation, so its events are never taken for
    /// ones the node already holds.
    pub cache: u64,
    /// The gate's own sequence number for the event.
    pub gate_seq: u64,
    /// The event as decided, with its offline mark.
    pub event: crate::wire::GateEvent,
}

/// Events per upload request.
pub const UPLOAD_BATCH_MAX: usize = 200;

/// The head record of a gate's trust cache: which snapshot and how many updates on top of
/// it make the current version (each record carries a keyed MAC; see the gate's cache).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheHead {
    /// The node incarnation the cached trust data came from.
    pub incarnation: u64,
    /// The version of the stored snapshot.
    pub snapshot_version: u64,
    /// The current version: `version - snapshot_version` updates are stored on top.
    pub version: u64,
}

/// A gate's knowledge of its node's clock, kept across restarts: decisions use the node's
/// time where it is known, and never a time before the latest node time seen (a device clock
/// wound back does not make an expired code valid again).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GateClock {
    /// Node clock minus gate clock, as last measured (milliseconds).
    pub offset_ms: i64,
    /// The latest node time seen.
    pub node_time_floor_ms: u64,
    /// When, on the node's clock, the gate last heard from its node.
    pub last_heard_node_ms: u64,
}

/// Encodes a feed frame with its length prefix.
pub fn frame(feed: &GateFeed) -> Vec<u8> {
    let body = crate::wire::encode(feed);
    let mut out = Vec::with_capacity(4 + body.len());
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{WireError, decode};

    #[test]
    fn frames_round_trip_and_garbage_is_refused() {
        let f = GateFeed::Update(TrustUpdate {
            incarnation: 7,
            version: 3,
            node_time_ms: 9,
            lockdown: Some(GateLockdown {
                locked: true,
                epoch: 2,
                reason: "case".into(),
                at: 5,
            }),
            revoked: vec![CredId([1; 8])],
            ..Default::default()
        });
        let bytes = frame(&f);
        let len = u32::from_be_bytes(bytes[..4].try_into().unwrap()) as usize;
        assert_eq!(len, bytes.len() - 4);
        assert_eq!(
            decode::<GateFeed>(&bytes[4..], FEED_FRAME_LEN_MAX).unwrap(),
            f
        );
        assert!(matches!(
            decode::<GateFeed>(&bytes[4..bytes.len() - 1], FEED_FRAME_LEN_MAX),
            Err(WireError::Malformed(_))
        ));
        assert!(matches!(
            decode::<GateFeed>(&[200, 1, 2], FEED_FRAME_LEN_MAX),
            Err(WireError::Malformed(_))
        ));
    }
}
