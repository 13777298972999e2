//! `menjin district`: the district root keys.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Subcommand;
use menjin_store::files::DistrictDir;
use menjin_store::provision;

use crate::output;

#[derive(Subcommand)]
pub enum DistrictCmd {
    /// Create the district root key and the ID-hash key (kept secret, mode 0600).
    Init {
        #[arg(long)]
        dir: PathBuf,
    },
}

pub fn run(cmd: DistrictCmd, json: bool) -> Result<ExitCode> {
    match cmd {
        DistrictCmd::Init { dir } => {
            let root = provision::create_district(&DistrictDir(dir.clone()))?;
            output::created_district(json, &dir, &root);
            Ok(ExitCode::SUCCESS)
        }
    }
}
