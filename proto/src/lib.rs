//! Menjin's formats and rules: the trust chain (district root → node certificate →
//! credential), the signed code and its text form, declarations and their automatic review,
//! resident ID numbers and their keyed hashes, the messages gates and consoles exchange with a
//! node, and the gate rule itself.
//!
//! Architecture invariant: this crate does no IO. No sockets, no files, no clock reads, no
//! randomness: time and random bytes are arguments. That keeps every decoder and the gate
//! rule testable with property tests and usable unchanged by the node and the offline gate.
//!
//! Architecture invariant: every type that is written to the wire or to disk is defined here,
//! and every decoder returns a typed error instead of panicking.

#![warn(unreachable_pub, missing_docs, unused_crate_dependencies)]

pub mod cert;
pub mod check;
pub mod civil;
pub mod credential;
pub mod declaration;
pub mod feed;
pub mod idnum;
pub mod keys;
pub mod link;
pub mod record;
pub mod rule;
pub mod staff;
pub mod sync_wire;
pub mod wire;

pub use cert::{CertError, NodeCert};
pub use credential::{CodeError, Credential, HolderKind, SignedCode};
pub use keys::KeyId;

/// A community's number in its district (Shenzhen's community codes are numeric).
pub type CommunityId = u32;

/// Seconds since the Unix epoch, UTC. Always passed in, never read here.
pub type UnixTime = u64;
