//! `menjin log`: the node's gate log, by time range, gate or holder.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use menjin_net::clock::now_ms;
use menjin_proto::wire::{ConsoleRequest, LogQuery};

use crate::console::ask;
use crate::form::parse_holder;
use crate::output;

/// The arguments of `menjin log` (its help text is that variant's doc in `main.rs`).
#[derive(Args)]
pub struct Log {
    #[arg(long)]
    node_dir: PathBuf,
    /// Start of the time range, Unix seconds.
    #[arg(long)]
    from: Option<u64>,
    /// Events in the last N minutes.
    #[arg(long, conflicts_with = "from")]
    since_minutes: Option<u64>,
    /// End of the time range, Unix seconds.
    #[arg(long)]
    until: Option<u64>,
    #[arg(long)]
    gate: Option<String>,
    #[arg(long)]
    holder: Option<String>,
    #[arg(long)]
    after_seq: Option<u64>,
    #[arg(long, default_value_t = 100)]
    limit: u32,
}

pub async fn run(cmd: Log, json: bool) -> Result<ExitCode> {
    let from_ms = cmd.from.map(|s| s * 1000).or(cmd
        .since_minutes
        .map(|m| now_ms().saturating_sub(m * 60_000)));
    let q = LogQuery {
        from_ms,
        until_ms: cmd.until.map(|s| s * 1000),
        gate: cmd.gate,
        holder: cmd.holder.as_deref().map(parse_holder).transpose()?,
        after_seq: cmd.after_seq,
        limit: cmd.limit,
    };
    let resp = ask(&cmd.node_dir, ConsoleRequest::QueryLog(q)).await?;
    Ok(output::response(json, &resp))
}
