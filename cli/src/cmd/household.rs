//! `menjin node household issue|revoke`: the printed codes that open the resident pages for
//! one home (building and door). The node must be running; the console key signs in.

use std::path::PathBuf;

use clap::Subcommand;
use menjin_proto::wire::ConsoleRequest;

#[derive(Subcommand)]
pub enum HouseholdCmd {
    /// A new household code for a home (printed once; replaces the code in force).
    Issue {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        building: String,
        #[arg(long)]
        door: String,
    },
    /// The home's code stops working and its open sessions end.
    Revoke {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        building: String,
        #[arg(long)]
        door: String,
    },
}

/// The node directory to ask and the request to send.
pub fn request(cmd: HouseholdCmd) -> (PathBuf, ConsoleRequest) {
    match cmd {
        HouseholdCmd::Issue {
            dir,
            building,
            door,
        } => (dir, ConsoleRequest::IssueHouseholdCode { building, door }),
        HouseholdCmd::Revoke {
            dir,
            building,
            door,
        } => (dir, ConsoleRequest::RevokeHouseholdCode { building, door }),
    }
}
