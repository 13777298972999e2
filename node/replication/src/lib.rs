//! The daemons' side of replication: the sans-IO `menjin_sync::Replica` behind a lock, its
//! documents and per-peer states persisted in sled (`syncstore`, tree `sync`) before anything
//! it produced is sent, and the helpers a link task uses to move `SyncFrame`s over a QUIC
//! stream (`driver`). Used alike by the community node and the district hub.
//!
//! What it must never do: send what it has not persisted; know which program runs it.

#![warn(unreachable_pub, missing_docs, unused_crate_dependencies)]

pub mod driver;
pub mod syncstore;

pub use driver::{
    LinkStepError, PeerPanicked, PolicyLoaded, Replication, ReplicationError, code_entry,
    next_timer, receive_frame, roster_entry, send_frames,
};
pub use syncstore::{StoreError, SyncStore};
