//! Integration tests: the real `menjin` binary and real node processes on loopback, each test
//! in its own temporary directory with its own node on port 0. One test binary (modules below)
//! keeps link time down.
//!
//! - `node_cli`: the flows of the order through the CLI (declare, proxy, offline pass,
//!   revocation, visitors, fever, start-up refusals).
//! - `bad_input`: invalid input is refused with a clear message and changes nothing.
//! - `quic`: the node's QUIC endpoint below the CLI (unenrolled keys, garbage, limits, roles).
//! - `config`: configuration files refused at start with file and line; deploy/examples.
//! - `crash`: SIGKILL loses nothing that was acknowledged.
//! - `check_parity`: the node and a gate deciding alone answer every demo case alike.
//! - `gate`: the gate daemon reading a scanner on standard input.
//! - `json_output`: the field names of the `--json` objects and `gate run --json` lines.
//! - `operations`: the runbook's key rotation and backup/restore.
//! - `hub`: gate logs reach the district hub exactly once, through outages.
//! - `discovery`: gates find their node by mDNS inside network namespaces the test creates.
//! - `web`: the pages in headless Chromium through the system chromedriver (`web/mod.rs` the
//!   harness, one file per group of pages).
//! - `architecture`: the walls between the crates, from `cargo metadata`.
//! - `bench`: `bench hub` and `bench lockdown` at a small size, their figures' sanity.

// The 100-line limit on functions holds outside tests (STYLE.md); a test reads top to
// bottom as one story.
#![allow(clippy::too_many_lines)]

mod architecture;
mod bad_input;
mod bench;
mod check_parity;
mod config;
mod crash;
mod demo;
mod discovery;
mod gate;
mod gate_offline;
mod hub;
mod json_output;
mod node_cli;
mod operations;
mod quic;
mod support;
mod web;
