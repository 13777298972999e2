//! What every Menjin daemon and device shares on the network: X.509 certificates made from
//! ed25519 keys and the verifiers that admit peers by key (`tls`), the QUIC endpoint and its
//! accept loop (`server`), the client that gates and consoles use (`client`), one
//! length-prefixed framing for long-lived streams (`frame`), and the wall clock (`clock`).
//!
//! What it must never do: know about rosters, gate logs, the hub or the gate; skip a
//! certificate check.

#![warn(unreachable_pub, missing_docs, unused_crate_dependencies)]

pub mod client;
pub mod clock;
pub mod frame;
pub mod server;
pub mod tls;
