//! The community node: declarations, codes, printed passes and visitor consents in sled
//! (`roster`), gate checks answered over QUIC and written to the gate log (`gatelog`) before
//! they are answered, and the QUIC client that gates and the workstation console use.
//!
//! What it must never do: answer a check or acknowledge a declaration before it is flushed;
//! accept a peer whose key is not enrolled; let an ID number leave in plain text (only the
//! holder's own printed pass shows it).

pub mod client;
pub mod discovery;
pub mod feed;
pub mod files;
pub mod gate;
pub mod gatelog;
pub mod gates;
pub mod hub;
pub mod link;
pub mod local_policy;
pub mod mirror;
pub mod pass;
pub mod photo;
pub mod provision;
pub mod qrimage;
pub mod render;
pub mod replication;
pub mod roster;
pub mod server;
pub mod service;
pub mod store;
pub mod syncstore;
#[cfg(test)]
mod testing;
pub mod tls;
pub mod uplink;
