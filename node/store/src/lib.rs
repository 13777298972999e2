//! What a Menjin daemon or device keeps on disk besides its databases' contents: the
//! directory layouts of a district, a node, a hub and a gate (`files`), their key files
//! (0600, refused when others may read them) and configurations (`node.toml`, `hub.toml`,
//! `gate.toml`, every key checked), creating those directories (`provision`), and opening
//! sled (`db`).
//!
//! What it must never do: open a socket; read a key file that others may read.

#![warn(unreachable_pub, missing_docs, unused_crate_dependencies)]

pub mod db;
pub mod files;
pub mod provision;
