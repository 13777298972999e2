//! `menjin show`: "my declarations", a person's status and code again.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use menjin_proto::wire::ConsoleRequest;

use crate::console::ask;
use crate::form::parse_holder;
use crate::output::{self, QrArgs, write_qr};

/// The arguments of `menjin show` (its help text is that variant's doc in `main.rs`).
#[derive(Args)]
pub struct Show {
    #[arg(long)]
    node_dir: PathBuf,
    #[arg(long)]
    holder: String,
    #[command(flatten)]
    qr: QrArgs,
}

pub async fn run(cmd: Show, json: bool) -> Result<ExitCode> {
    let req = ConsoleRequest::ShowHolder {
        holder: parse_holder(&cmd.holder)?,
    };
    let resp = ask(&cmd.node_dir, req).await?;
    write_qr(&resp, &cmd.qr, json)?;
    Ok(output::response(json, &resp))
}
