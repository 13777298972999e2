//! Messages on the link between a community node and its district hub: one long-lived QUIC
//! bidirectional stream per connection carrying length-prefixed frames (u32 big-endian length,
//! then a postcard [`LinkFrame`]).
//!
//! Gate logs travel as an append-only stream: the hub tells the node where to resume
//! (`LogCursor`), the node sends batches in sequence order, the hub stores them keyed by
//! (community, sequence) — so a resent batch is harmless — and acknowledges after its flush.
//! A resent event must be the same as the one held under its number: a node restored from an
//! older backup that numbered new events again is told so (`LogConflict`) and renumbers them.

use serde::{Deserialize, Serialize};

use crate::wire::GateEvent;

/// The largest frame either side accepts. A log batch holds at most [`LOG_BATCH_MAX`] events
/// of at most ~200 bytes; an Automerge sync message of a 16-way sharded 100,000-resident roster
/// stays well under this. Bigger frames are refused and the connection is closed.
pub const LINK_FRAME_LEN_MAX: usize = 8 * 1024 * 1024;
/// Events per log batch: big enough to catch up quickly after an outage, small enough that one
/// batch is flushed in a few milliseconds at the hub.
pub const LOG_BATCH_MAX: usize = 2_000;
/// Encoded bytes of the events of one log batch: a batch is cut at [`LOG_BATCH_MAX`] events or
/// at this, whichever comes first, so that it always fits a frame (events logged before
/// uploads were checked can be 60 KiB each).
pub const LOG_BATCH_BYTES_MAX: usize = LINK_FRAME_LEN_MAX / 2;

/// The largest sync message a link frame carries: the frame's limit less its envelope (the
/// variant tag and the length of the bytes).
pub const LINK_SYNC_LEN_MAX: usize = LINK_FRAME_LEN_MAX - 64;

/// One frame on the node–hub link; each variant says which side sends it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LinkFrame {
    /// Node → hub, first frame (a QUIC stream exists for the peer only once data is sent).
    Hello {
        /// Gate events in the node's log so far, for the hub's log line.
        events_logged: u64,
    },
    /// Hub → node, first frame: the next gate-log sequence number the hub needs.
    LogCursor {
        /// The lowest sequence number the hub does not have for this community.
        next_seq: u64,
    },
    /// Node → hub: consecutive events starting at `events[0].seq`.
    LogBatch {
        /// At most [`LOG_BATCH_MAX`] events with consecutive sequence numbers; the hub
        /// refuses a batch that skips one or is out of order.
        events: Vec<GateEvent>,
    },
    /// Hub → node: everything up to and including `upto_seq` is on the hub's disk.
    LogAck {
        /// The highest sequence number flushed at the hub.
        upto_seq: u64,
    },
    /// Either way: a replication message (see `menjin_sync`), opaque here.
    Sync(Vec<u8>),
    /// Node → hub: a lockdown decided at the node (see `record::effective_lockdown`); the
    /// hub adopts it into the district policy unless it has decided later itself.
    LocalLockdown(crate::record::LocalLockdown),
    /// Node → hub: its gates' state (connection, applied lockdown epoch, last contact),
    /// sent when it changes, at most every few hundred milliseconds.
    GateLinks(Vec<crate::wire::GateLink>),
    /// Hub → node: the batch held an event under a number the hub holds another event
    /// under (a node restored from an older backup numbered new events again from there).
    /// Nothing of that batch or of later ones on this stream is stored; the node renumbers
    /// its events from `seq` on to start at `next_seq` and links again.
    LogConflict {
        /// The first sequence number whose event differs from the hub's.
        seq: u64,
        /// The lowest sequence number the hub does not have for this community.
        next_seq: u64,
    },
}
