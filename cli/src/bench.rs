//! `menjin bench ...`: figures, never pass/fail.

use std::process::ExitCode;

use anyhow::Result;
use clap::Subcommand;

#[derive(Subcommand)]
pub enum BenchCmd {
    /// Concurrent gates against a node on loopback over QUIC.
    Gate {
        #[arg(long, default_value_t = 16)]
        gates: usize,
        #[arg(long, default_value_t = 100_000)]
        checks: usize,
    },
}

pub async fn run(cmd: BenchCmd, json: bool) -> Result<ExitCode> {
    let _ = (cmd, json);
    anyhow::bail!("not built yet")
}
