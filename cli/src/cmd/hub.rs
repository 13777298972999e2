//! `menjin hub`: the district hub: create, run, enrol nodes, revoke node keys, lockdowns,
//! health lists, status, the district log.

pub mod health;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Subcommand;
use menjin_proto::wire::{HubRequest, LogQuery};
use menjin_store::files::{DistrictDir, NodeDir};
use menjin_store::provision;

use crate::console::ask_hub;
use crate::output;

#[derive(Subcommand)]
pub enum HubCmd {
    /// Create the hub: its key, a certificate from the district root (community 0).
    Create {
        #[arg(long)]
        district: PathBuf,
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        name: String,
        #[arg(long, default_value = "127.0.0.1:7400")]
        listen: SocketAddr,
    },
    /// Run the hub until interrupted (Ctrl-C or SIGTERM).
    Run {
        #[arg(long)]
        dir: PathBuf,
        /// Overrides `listen` in hub.toml (127.0.0.1:0 picks a free port; see node.addr).
        #[arg(long)]
        listen: Option<SocketAddr>,
    },
    /// Admit a community node by its certificate file (node.cert of the node directory).
    Enrol {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        cert: PathBuf,
    },
    /// Revoke a community's node key for good (a leaked key, a stolen node laptop): its
    /// gates refuse it, and it can never be enrolled again. Without --cert, the key enrolled
    /// now (its link closes at once); with it, the key of that certificate (one replaced at a
    /// rekey: node.cert.previous). A new key comes from `node rekey`.
    RevokeNode {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        community: u32,
        /// The operator who decides it.
        #[arg(long)]
        by: String,
        #[arg(long, default_value = "")]
        reason: String,
        /// The certificate of the key to revoke, if not the enrolled one.
        #[arg(long)]
        cert: Option<PathBuf>,
    },
    /// Communities, their links, lockdowns and event counts.
    Status {
        #[arg(long)]
        dir: PathBuf,
    },
    /// Lock a community down (a confirmed case): no visitors, no vehicles, residents stay in.
    Lockdown {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        community: u32,
        #[arg(long)]
        reason: String,
        /// The operator who decides it.
        #[arg(long)]
        by: String,
    },
    /// Import a health-status list (CSV: document_type,document_number,status with status
    /// home_quarantine, central_quarantine, hospital or cleared). Numbers are hashed here with
    /// the district's ID-hash key; bad rows are reported, good rows applied.
    ImportHealth {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        file: PathBuf,
    },
    /// Lift a community's lockdown.
    Lift {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        community: u32,
        #[arg(long)]
        by: String,
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Gate events across the district.
    Log {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        community: Option<u32>,
        #[arg(long)]
        gate: Option<String>,
        #[arg(long)]
        after_seq: Option<u64>,
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
}

pub async fn run(cmd: HubCmd, json: bool) -> Result<ExitCode> {
    let resp = match cmd {
        HubCmd::Create {
            district,
            dir,
            name,
            listen,
        } => {
            let cert = provision::create_hub(
                &DistrictDir(district),
                &NodeDir(dir.clone()),
                &name,
                listen,
            )?;
            output::created_node(json, &dir, &cert);
            return Ok(ExitCode::SUCCESS);
        }
        HubCmd::Run { dir, listen } => {
            menjin_hub::run_hub(&NodeDir(dir), listen, super::shutdown_signal()).await?;
            return Ok(ExitCode::SUCCESS);
        }
        HubCmd::Enrol { dir, cert } => {
            let cert =
                std::fs::read(&cert).with_context(|| format!("reading {}", cert.display()))?;
            ask_hub(&dir, HubRequest::EnrolNode { cert }).await?
        }
        HubCmd::RevokeNode {
            dir,
            community,
            by,
            reason,
            cert,
        } => {
            let cert = match cert {
                Some(path) => Some(
                    std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?,
                ),
                None => None,
            };
            let req = HubRequest::RevokeNode {
                community,
                cert,
                by,
                reason,
            };
            ask_hub(&dir, req).await?
        }
        HubCmd::Status { dir } => ask_hub(&dir, HubRequest::Status).await?,
        HubCmd::Lockdown {
            dir,
            community,
            reason,
            by,
        } => set_lockdown(dir, community, true, reason, by).await?,
        HubCmd::ImportHealth { dir, file } => return health::import(&dir, &file, json).await,
        HubCmd::Lift {
            dir,
            community,
            by,
            reason,
        } => set_lockdown(dir, community, false, reason, by).await?,
        HubCmd::Log {
            dir,
            community,
            gate,
            after_seq,
            limit,
        } => {
            let query = LogQuery {
                gate,
                after_seq,
                limit,
                ..LogQuery::default()
            };
            ask_hub(&dir, HubRequest::QueryDistrictLog { community, query }).await?
        }
    };
    Ok(output::response(json, &resp))
}

async fn set_lockdown(
    dir: PathBuf,
    community: u32,
    locked: bool,
    reason: String,
    by: String,
) -> Result<menjin_proto::wire::Response> {
    let req = HubRequest::SetLockdown {
        community,
        locked,
        reason,
        by,
    };
    ask_hub(&dir, req).await
}
