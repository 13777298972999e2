//! `menjin node`: community nodes: create, run, rekey, local lockdowns, status.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use menjin_proto::wire::ConsoleRequest;
use menjin_store::files::{DistrictDir, MdnsConfig, NodeDir};
use menjin_store::provision::{self, NodeSpec};

use crate::console::ask;
use crate::exit::usage;
use crate::form::{now_secs, parse_interfaces, parse_time};
use crate::output;

#[derive(Subcommand)]
pub enum NodeCmd {
    /// Household codes for the resident pages: issue, revoke.
    Household {
        #[command(subcommand)]
        cmd: super::household::HouseholdCmd,
    },
    /// Create a node: its key, a certificate from the district root, a console key.
    Create {
        #[arg(long)]
        district: PathBuf,
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        community: u32,
        #[arg(long)]
        name: String,
        #[arg(long, default_value = "127.0.0.1:7300")]
        listen: SocketAddr,
        /// When declarations opened (now, or Unix seconds): the deadline is 5 days later.
        #[arg(long, default_value = "now")]
        campaign_start: String,
        /// Days a code is valid (1 to 366, as `code_validity_days` in node.toml).
        #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..=366))]
        code_days: u32,
        /// The district hub's address; without it the node runs alone.
        #[arg(long)]
        hub: Option<SocketAddr>,
        /// Advertise the node by mDNS on these interfaces (comma-separated names, or `all`:
        /// every interface but loopback and container bridges; `lo` only when listed).
        #[arg(long, value_name = "INTERFACES")]
        mdns: Option<String>,
    },
    /// Run the node until interrupted (Ctrl-C or SIGTERM).
    Run {
        #[arg(long)]
        dir: PathBuf,
        /// Overrides `listen` in node.toml (127.0.0.1:0 picks a free port; see node.addr).
        #[arg(long)]
        listen: Option<SocketAddr>,
    },
    /// Give the node (or, with a hub directory, the hub) a new key and a fresh certificate
    /// from the district root. Then restart it, and enrol the new node.cert at the hub.
    Rekey {
        #[arg(long)]
        district: PathBuf,
        #[arg(long)]
        dir: PathBuf,
    },
    /// Lock the community down from the node itself (staff acting on a phone call while the
    /// hub is unreachable); reported to the hub when the link is up.
    Lockdown {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        reason: String,
        #[arg(long)]
        by: String,
    },
    /// Lift a lockdown from the node itself.
    Lift {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        by: String,
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// A certificate for the resident pages' HTTPS (self-signed, ECDSA P-256): writes
    /// `web.crt` and `web.key` (mode 0600) into the node directory; then set
    /// `tls_cert = "web.crt"` and `tls_key = "web.key"` in `[web]` and restart the node.
    WebCert {
        #[arg(long)]
        dir: PathBuf,
        /// The names phones reach the pages by: IP addresses or DNS names (repeat it).
        #[arg(long = "name", required = true)]
        names: Vec<String>,
        /// How long the certificate is valid.
        #[arg(long, default_value_t = 730)]
        days: u32,
    },
    /// Counts and enrolled gates of a running node.
    Status {
        #[arg(long)]
        dir: PathBuf,
    },
}

pub async fn run(cmd: NodeCmd, json: bool) -> Result<ExitCode> {
    let resp = match cmd {
        NodeCmd::Create {
            district,
            dir,
            community,
            name,
            listen,
            campaign_start,
            code_days,
            hub,
            mdns,
        } => {
            let mdns = mdns.as_deref().map(parse_interfaces).transpose()?;
            let spec = NodeSpec {
                community,
                community_name: name,
                listen,
                campaign_start: parse_time(&campaign_start, now_secs())
                    .map_err(usage)
                    .context("--campaign-start")?,
                code_validity_days: code_days,
                hub,
            };
            return create(district, dir, &spec, mdns, json);
        }
        NodeCmd::Run { dir, listen } => {
            let start_web = crate::web::start(NodeDir(dir.clone()))?;
            menjin_community::run_node_with(
                &NodeDir(dir),
                listen,
                super::shutdown_signal(),
                Some(start_web),
            )
            .await?;
            return Ok(ExitCode::SUCCESS);
        }
        NodeCmd::Household { cmd } => {
            let (dir, req) = super::household::request(cmd);
            ask(&dir, req).await?
        }
        NodeCmd::Rekey { district, dir } => return rekey(district, dir, json),
        NodeCmd::Lockdown { dir, reason, by } => {
            let req = ConsoleRequest::LocalLockdown {
                locked: true,
                reason,
                by,
            };
            ask(&dir, req).await?
        }
        NodeCmd::Lift { dir, by, reason } => {
            let req = ConsoleRequest::LocalLockdown {
                locked: false,
                reason,
                by,
            };
            ask(&dir, req).await?
        }
        NodeCmd::WebCert { dir, names, days } => return web_cert(&dir, &names, days, json),
        NodeCmd::Status { dir } => ask(&dir, ConsoleRequest::Status).await?,
    };
    Ok(output::response(json, &resp))
}

fn create(
    district: PathBuf,
    dir: PathBuf,
    spec: &NodeSpec,
    mdns: Option<Vec<String>>,
    json: bool,
) -> Result<ExitCode> {
    let nd = NodeDir(dir.clone());
    let cert = provision::create_node(&DistrictDir(district), &nd, spec)?;
    if let Some(interfaces) = mdns {
        let mut cfg = nd.read_config()?;
        cfg.mdns = MdnsConfig {
            enabled: true,
            interfaces,
        };
        nd.write_config(&cfg)?;
    }
    output::created_node(json, &dir, &cert);
    Ok(ExitCode::SUCCESS)
}

fn rekey(district: PathBuf, dir: PathBuf, json: bool) -> Result<ExitCode> {
    let cert = provision::rekey(&DistrictDir(district), &NodeDir(dir.clone()))?;
    if json {
        output::created_node(json, &dir, &cert);
    } else {
        println!(
            "new key {} for community {}; restart the daemon, then enrol {} at the hub",
            cert.key_id(),
            cert.community,
            NodeDir(dir).cert().display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Certificates longer than this are a mistake (and some browsers refuse them).
const WEB_CERT_DAYS_MAX: u32 = 3650;

fn web_cert(dir: &std::path::Path, names: &[String], days: u32, json: bool) -> Result<ExitCode> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if days == 0 || days > WEB_CERT_DAYS_MAX {
        return Err(usage(anyhow::anyhow!("--days: 1 to {WEB_CERT_DAYS_MAX}")));
    }
    if let Some(bad) = names.iter().find(|n| {
        n.is_empty() || n.len() > 253 || n.chars().any(|c| c.is_control() || c.is_whitespace())
    }) {
        return Err(usage(anyhow::anyhow!(
            "--name {bad:?}: an IP address or a DNS name"
        )));
    }
    // Not `read_config`: it refuses a [web] that names these files before they exist.
    if !NodeDir(dir.to_path_buf()).config().exists() {
        bail!("{}: not a node directory (no node.toml)", dir.display());
    }
    let (cert, key) = menjin_web::tls::self_signed(names, now_secs(), days)?;
    let (cert_path, key_path) = (dir.join("web.crt"), dir.join("web.key"));
    // Never over an existing key: a running node's certificate stays as it is.
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&key_path)
        .with_context(|| format!("{} (remove it first to make a new one)", key_path.display()))?;
    file.write_all(key.as_bytes())?;
    file.sync_all()?;
    menjin_store::files::write_public(&cert_path, cert.as_bytes())?;
    if json {
        crate::json::print(&crate::json::WebCert {
            cert: cert_path,
            days,
            key: key_path,
            names: names.to_vec(),
        });
    } else {
        println!(
            "wrote {} and {}; in [web] of node.toml set\n  tls_cert = \"web.crt\"\n  tls_key = \"web.key\"\nthen restart the node",
            cert_path.display(),
            key_path.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}
