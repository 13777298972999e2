//! `menjin roster`: declaration progress per building against the 5-day deadline.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use menjin_proto::wire::ConsoleRequest;

use crate::console::ask;
use crate::output;

/// The arguments of `menjin roster` (its help text is that variant's doc in `main.rs`).
#[derive(Args)]
pub struct Roster {
    #[arg(long)]
    node_dir: PathBuf,
}

pub async fn run(cmd: Roster, json: bool) -> Result<ExitCode> {
    let resp = ask(&cmd.node_dir, ConsoleRequest::RosterSummary).await?;
    Ok(output::response(json, &resp))
}
