//! The community node: declarations, codes, printed passes and visitor consents in sled
//! (`roster`), gate checks answered over QUIC and written to the gate log (`gatelog`) before
//! they are answered (`serve`), each gate's trust feed (`feed`), and the link to the district
//! hub that streams the log and replicates the roster (`uplink`). `run` is the daemon.
//!
//! What it must never do: answer a check or acknowledge a declaration before it is flushed;
//! accept a peer whose key is not enrolled; let an ID number leave in plain text (only the
//! holder's own printed pass shows it); depend on the hub's or the gate's code.

#![warn(unreachable_pub, missing_docs, unused_crate_dependencies)]

pub mod audit;
pub mod feed;
pub mod gatelog;
pub mod gates;
pub mod households;
pub mod local_policy;
pub mod mirror;
pub mod roster;
pub mod run;
pub mod serve;
pub mod service;
pub mod staff;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod uplink;

pub use run::{ExtraService, StartExtra, run_node, run_node_with};
pub use serve::bind;
pub use service::{Node, NodeError};
