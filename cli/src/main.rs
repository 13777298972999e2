//! `menjin`: one binary for the district operator, the community workstation, the gate and
//! the engineer (demo and benchmarks).
//!
//! Exit codes: 0 done (or, for `gate check`, allowed); 1 failure (files, network); 2 usage
//! error; 3 refused by the node (invalid input or a rule); 4 a gate check that denied entry.

mod bench;
mod bench_lockdown;
mod bench_sync;
mod demo;
mod form;
mod gate;
mod health;
mod household;
mod output;
mod web;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use menjin_net::client::NodeClient;
use menjin_net::clock::now_ms;
use menjin_proto::credential::{CredId, HolderId};
use menjin_proto::wire::{CheckRequest, Direction, LogQuery, Request, Response};
use menjin_store::files::{
    DistrictDir, GateDir, MdnsConfig, NodeDir, read_public_key, read_signing_key,
};
use menjin_store::provision::{self, NodeSpec};

use crate::form::{FormArgs, parse_temperature, parse_time};

pub const EXIT_REFUSED: u8 = 3;
pub const EXIT_DENIED: u8 = 4;

#[derive(Parser)]
#[command(
    name = "menjin",
    version,
    about = "Pass-based entry control for residential communities"
)]
struct Cli {
    /// Print JSON instead of text (for scripts and turnstile controllers).
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

// Parsed once per process: the size of its largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// District root keys.
    District {
        #[command(subcommand)]
        cmd: DistrictCmd,
    },
    /// The district hub: create, run, enrol nodes, status, district log.
    Hub {
        #[command(subcommand)]
        cmd: HubCmd,
    },
    /// Community nodes: create, run, status.
    Node {
        #[command(subcommand)]
        cmd: NodeCmd,
    },
    /// Gates: enrol, check a code.
    Gate {
        #[command(subcommand)]
        cmd: GateCmd,
    },
    /// Declare a person (online; --by for a relative; --offline with --photo and --staff).
    Declare {
        #[arg(long)]
        node_dir: PathBuf,
        /// Proxy declaration: the holder id of the adult relative of the same home.
        #[arg(long, conflicts_with = "offline")]
        by: Option<String>,
        /// A paper declaration typed in by staff: needs --photo and --staff.
        #[arg(long, requires_all = ["photo", "staff"])]
        offline: bool,
        #[arg(long)]
        photo: Option<PathBuf>,
        #[arg(long)]
        staff: Option<String>,
        #[command(flatten)]
        qr: QrArgs,
        #[command(flatten)]
        form: FormArgs,
    },
    /// "My declarations": a person's status and code again.
    Show {
        #[arg(long)]
        node_dir: PathBuf,
        #[arg(long)]
        holder: String,
        #[command(flatten)]
        qr: QrArgs,
    },
    /// Printed passes.
    Pass {
        #[command(subcommand)]
        cmd: PassCmd,
    },
    /// Visitor consents.
    Visitor {
        #[command(subcommand)]
        cmd: VisitorCmd,
    },
    /// Query the gate log.
    Log {
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
    },
    /// Declaration progress per building (the 5-day deadline).
    Roster {
        #[arg(long)]
        node_dir: PathBuf,
    },
    /// Run a hub-less demonstration on loopback: a node, gates and twenty residents.
    Demo,
    /// Benchmarks that print figures.
    Bench {
        #[command(subcommand)]
        cmd: bench::BenchCmd,
    },
}

#[derive(clap::Args, Debug, Clone, Default)]
struct QrArgs {
    /// Show the code as a QR in the terminal.
    #[arg(long)]
    qr: bool,
    /// Write the code as a PNG QR image.
    #[arg(long)]
    qr_png: Option<PathBuf>,
    /// Write the code as an SVG QR image.
    #[arg(long)]
    qr_svg: Option<PathBuf>,
}

#[derive(Subcommand)]
enum DistrictCmd {
    /// Create the district root key and the ID-hash key (kept secret, mode 0600).
    Init {
        #[arg(long)]
        dir: PathBuf,
    },
}

#[derive(Subcommand)]
enum HubCmd {
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

#[derive(Subcommand)]
enum NodeCmd {
    /// Household codes for the resident pages: issue, revoke.
    Household {
        #[command(subcommand)]
        cmd: household::HouseholdCmd,
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
        #[arg(long, default_value_t = 30)]
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
    /// Counts and enrolled gates of a running node.
    Status {
        #[arg(long)]
        dir: PathBuf,
    },
}

#[derive(Subcommand)]
enum GateCmd {
    /// Create a gate's key and configuration and enrol it at the running node.
    Enrol {
        #[arg(long)]
        node_dir: PathBuf,
        #[arg(long)]
        gate_id: String,
        /// The gate's own directory (gate.key, gate.toml).
        #[arg(long)]
        dir: PathBuf,
        /// Find the node by mDNS on these interfaces (as `node create --mdns`); the node's
        /// current address stays the fallback.
        #[arg(long, value_name = "INTERFACES")]
        discover: Option<String>,
    },
    /// Find the community's node by mDNS as `gate run` would: every node seen, whether its
    /// certificate chain verified, its round trip, and the node chosen (exit 1 if none).
    Discover {
        #[arg(long)]
        dir: PathBuf,
        /// Browse on these interfaces instead of gate.toml's `[discovery]` (turns it on).
        #[arg(long, value_name = "INTERFACES")]
        interfaces: Option<String>,
        /// Listen for advertisements this long instead of gate.toml's `browse_ms`.
        #[arg(long)]
        browse_ms: Option<u64>,
    },
    /// Run the gate: read `<temperature> <code>` lines from a scanner on standard input (and
    /// `CAR <plate>` ... `END` for a vehicle), print one decision per person.
    Run {
        #[arg(long)]
        dir: PathBuf,
    },
    /// Check one person at the gate through the node.
    Check {
        #[arg(long)]
        dir: PathBuf,
        /// The scanned code text (MJ:...), or - to read one line from standard input.
        #[arg(long)]
        code: String,
        /// Body temperature in °C.
        #[arg(long)]
        temp: String,
        /// in or out (default: the gate's configured direction).
        #[arg(long, value_parser = ["in", "out"])]
        direction: Option<String>,
        /// Set when the person is in a vehicle.
        #[arg(long)]
        plate: Option<String>,
    },
}

#[derive(Subcommand)]
enum PassCmd {
    /// Attach a photo (JPEG or PNG, at most 1 MB) for a printed pass.
    Photo {
        #[arg(long)]
        node_dir: PathBuf,
        #[arg(long)]
        holder: String,
        #[arg(long)]
        photo: PathBuf,
    },
    /// Write the printable pass (HTML with print CSS) of a cleared person.
    Print {
        #[arg(long)]
        node_dir: PathBuf,
        #[arg(long)]
        holder: String,
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Subcommand)]
enum VisitorCmd {
    /// A resident consents to a named visitor for a time window.
    Invite {
        #[arg(long)]
        node_dir: PathBuf,
        /// Holder id of the consenting resident.
        #[arg(long)]
        host: String,
        #[arg(long)]
        name: String,
        #[arg(long)]
        phone: String,
        /// now, +30m, +4h, +2d or Unix seconds.
        #[arg(long, default_value = "now")]
        from: String,
        #[arg(long, default_value = "+4h")]
        until: String,
        #[command(flatten)]
        qr: QrArgs,
    },
    /// Withdraw a consent: the visitor's code is refused from then on.
    Withdraw {
        #[arg(long)]
        node_dir: PathBuf,
        /// The visitor code's id (from `visitor invite`).
        #[arg(long)]
        code_id: String,
    },
}

/// mimalloc rather than glibc's malloc: a gate check allocates a few dozen small buffers
/// (QUIC frames, the request, the event, the answer) on one thread and frees many on another;
/// glibc's allocator took ~8 % of the CPU of `menjin bench gate`, mimalloc about half that
/// (15.6k → 19k checks/s).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Daemons log what they do; one-shot commands only what went wrong.
    let default_level = match cli.command {
        Command::Node {
            cmd: NodeCmd::Run { .. },
        }
        | Command::Hub {
            cmd: HubCmd::Run { .. },
        } => "info",
        // The demo tells its own story; its daemons' warnings (a fever, a lockdown) are part
        // of it already.
        // So do benchmarks: their in-process daemons' lockdown and revocation warnings are
        // the load, not news.
        Command::Demo | Command::Bench { .. } => "error",
        _ => "warn",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| default_level.into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            if e.downcast_ref::<Usage>().is_some() {
                ExitCode::from(2)
            } else if e.downcast_ref::<Refused>().is_some() {
                ExitCode::from(EXIT_REFUSED)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

pub fn now_secs() -> u64 {
    now_ms() / 1000
}

/// A bad argument value found after clap's own parsing: exit 2 like clap's errors.
#[derive(Debug)]
struct Usage(String);

impl std::fmt::Display for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for Usage {}

/// Input refused before it reaches the node (a photo file too large): exit 3.
#[derive(Debug)]
struct Refused(String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for Refused {}

fn usage(e: impl std::fmt::Display) -> anyhow::Error {
    Usage(e.to_string()).into()
}

/// `eth0,wlan0`, `all` or `lo`: interface names for mDNS, checked as the config files are.
fn parse_interfaces(s: &str) -> Result<Vec<String>> {
    let names: Vec<String> = s
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(str::to_string)
        .collect();
    menjin_store::files::check_interfaces("interfaces", true, &names).map_err(usage)?;
    Ok(names)
}

fn parse_holder(s: &str) -> Result<HolderId> {
    s.parse()
        .map_err(|e: String| usage(format!("--holder: {e}")))
}

/// Connects to the running node of a node directory with its console key.
async fn console(node_dir: &Path) -> Result<NodeClient> {
    let dir = NodeDir(node_dir.to_path_buf());
    let cfg = dir.read_config()?;
    let addr = dir.read_addr().unwrap_or(cfg.listen);
    connect_console(&dir, addr, cfg.community, "node").await
}

async fn connect_console(
    dir: &NodeDir,
    addr: SocketAddr,
    community: u32,
    what: &str,
) -> Result<NodeClient> {
    let key = read_signing_key(&dir.console_key())?;
    let root = read_public_key(&dir.root_pub())?;
    NodeClient::connect(addr, &key, root, Some(community))
        .await
        .with_context(|| {
            format!(
                "is the {what} running? start it with: menjin {what} run --dir {}",
                dir.0.display()
            )
        })
}

async fn ask_hub(hub_dir: &Path, req: Request) -> Result<Response> {
    let dir = NodeDir(hub_dir.to_path_buf());
    let cfg = dir.read_hub_config()?;
    let addr = dir.read_addr().unwrap_or(cfg.listen);
    let client = connect_console(&dir, addr, menjin_proto::cert::HUB_COMMUNITY, "hub").await?;
    let resp = client.request(&req).await?;
    client.close().await;
    Ok(resp)
}

async fn ask(node_dir: &Path, req: Request) -> Result<Response> {
    let client = console(node_dir).await?;
    let resp = client.request(&req).await?;
    client.close().await;
    Ok(resp)
}

async fn run(cli: Cli) -> Result<ExitCode> {
    let json = cli.json;
    let now = now_ms() / 1000;
    let resp = match cli.command {
        Command::District {
            cmd: DistrictCmd::Init { dir },
        } => {
            let root = provision::create_district(&DistrictDir(dir.clone()))?;
            output::created_district(json, &dir, &root);
            return Ok(ExitCode::SUCCESS);
        }
        Command::Hub {
            cmd:
                HubCmd::Create {
                    district,
                    dir,
                    name,
                    listen,
                },
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
        Command::Hub {
            cmd: HubCmd::Run { dir, listen },
        } => {
            menjin_hub::run_hub(&NodeDir(dir), listen, shutdown_signal()).await?;
            return Ok(ExitCode::SUCCESS);
        }
        Command::Hub {
            cmd: HubCmd::Enrol { dir, cert },
        } => {
            let cert =
                std::fs::read(&cert).with_context(|| format!("reading {}", cert.display()))?;
            ask_hub(&dir, Request::EnrolNode { cert }).await?
        }
        Command::Hub {
            cmd: HubCmd::Status { dir },
        } => ask_hub(&dir, Request::Status).await?,
        Command::Hub {
            cmd:
                HubCmd::Lockdown {
                    dir,
                    community,
                    reason,
                    by,
                },
        } => {
            ask_hub(
                &dir,
                Request::SetLockdown {
                    community,
                    locked: true,
                    reason,
                    by,
                },
            )
            .await?
        }
        Command::Gate {
            cmd: GateCmd::Run { dir },
        } => return gate::run(GateDir(dir), json).await,
        Command::Gate {
            cmd:
                GateCmd::Discover {
                    dir,
                    interfaces,
                    browse_ms,
                },
        } => {
            let interfaces = interfaces.as_deref().map(parse_interfaces).transpose()?;
            return gate::discover(GateDir(dir), interfaces, browse_ms, json).await;
        }
        Command::Node {
            cmd: NodeCmd::Lockdown { dir, reason, by },
        } => {
            ask(
                &dir,
                Request::LocalLockdown {
                    locked: true,
                    reason,
                    by,
                },
            )
            .await?
        }
        Command::Node {
            cmd: NodeCmd::Lift { dir, by, reason },
        } => {
            ask(
                &dir,
                Request::LocalLockdown {
                    locked: false,
                    reason,
                    by,
                },
            )
            .await?
        }
        Command::Hub {
            cmd: HubCmd::ImportHealth { dir, file },
        } => {
            return import_health(&dir, &file, json).await;
        }
        Command::Hub {
            cmd:
                HubCmd::Lift {
                    dir,
                    community,
                    by,
                    reason,
                },
        } => {
            ask_hub(
                &dir,
                Request::SetLockdown {
                    community,
                    locked: false,
                    reason,
                    by,
                },
            )
            .await?
        }
        Command::Hub {
            cmd:
                HubCmd::Log {
                    dir,
                    community,
                    gate,
                    after_seq,
                    limit,
                },
        } => {
            let query = LogQuery {
                gate,
                after_seq,
                limit,
                ..LogQuery::default()
            };
            ask_hub(&dir, Request::QueryDistrictLog { community, query }).await?
        }
        Command::Node {
            cmd:
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
                },
        } => {
            let mdns = mdns.as_deref().map(parse_interfaces).transpose()?;
            let spec = NodeSpec {
                community,
                community_name: name,
                listen,
                campaign_start: parse_time(&campaign_start, now)
                    .map_err(usage)
                    .context("--campaign-start")?,
                code_validity_days: code_days,
                hub,
            };
            let nd = NodeDir(dir.clone());
            let cert = provision::create_node(&DistrictDir(district), &nd, &spec)?;
            if let Some(interfaces) = mdns {
                let mut cfg = nd.read_config()?;
                cfg.mdns = MdnsConfig {
                    enabled: true,
                    interfaces,
                };
                nd.write_config(&cfg)?;
            }
            output::created_node(json, &dir, &cert);
            return Ok(ExitCode::SUCCESS);
        }
        Command::Node {
            cmd: NodeCmd::Run { dir, listen },
        } => {
            let start_web = web::start(NodeDir(dir.clone()));
            menjin_community::run_node_with(
                &NodeDir(dir),
                listen,
                shutdown_signal(),
                Some(start_web),
            )
            .await?;
            return Ok(ExitCode::SUCCESS);
        }
        Command::Node {
            cmd: NodeCmd::Status { dir },
        } => ask(&dir, Request::Status).await?,
        Command::Node {
            cmd: NodeCmd::Household { cmd },
        } => {
            let (dir, req) = household::request(cmd);
            ask(&dir, req).await?
        }
        Command::Node {
            cmd: NodeCmd::Rekey { district, dir },
        } => {
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
            return Ok(ExitCode::SUCCESS);
        }
        Command::Gate {
            cmd:
                GateCmd::Enrol {
                    node_dir,
                    gate_id,
                    dir,
                    discover,
                },
        } => {
            let discover = discover.as_deref().map(parse_interfaces).transpose()?;
            let nd = NodeDir(node_dir.clone());
            let addr = nd
                .read_addr()
                .or_else(|_| nd.read_config().map(|c| c.listen))?;
            let existed = dir.exists();
            let gd = GateDir(dir.clone());
            let public_key = provision::create_gate(&gd, &gate_id, &nd, addr)?;
            if let Some(interfaces) = discover {
                let mut cfg = gd.read_config()?;
                cfg.discovery.enabled = true;
                cfg.discovery.interfaces = interfaces;
                gd.write_config(&cfg)?;
            }
            let resp = ask(
                &node_dir,
                Request::EnrolGate {
                    gate_id,
                    public_key,
                },
            )
            .await;
            // A gate the node did not take keeps no key or configuration behind.
            if !existed && !matches!(resp, Ok(Response::Done(_))) {
                let _ = std::fs::remove_dir_all(&dir);
            }
            resp?
        }
        Command::Gate {
            cmd:
                GateCmd::Check {
                    dir,
                    code,
                    temp,
                    direction,
                    plate,
                },
        } => {
            let gd = GateDir(dir);
            let cfg = gd.read_config()?;
            let key = read_signing_key(&gd.key())?;
            let root = menjin_proto::keys::parse_public_key_hex(&cfg.root_public_key)
                .map_err(anyhow::Error::msg)?;
            let code = if code == "-" {
                let mut line = String::new();
                std::io::stdin()
                    .read_line(&mut line)
                    .context("reading the code from standard input")?;
                line.trim().to_string()
            } else {
                code
            };
            let req = Request::Check(CheckRequest {
                code,
                gate_id: cfg.gate_id.clone(),
                direction: match direction.as_deref() {
                    Some("out") => Direction::Out,
                    Some(_) => Direction::In,
                    None => cfg.direction,
                },
                temperature_dc: parse_temperature(&temp).map_err(usage)?,
                plate,
            });
            let client = NodeClient::connect(cfg.node, &key, root, Some(cfg.community)).await?;
            let resp = client.request(&req).await?;
            client.close().await;
            resp
        }
        Command::Declare {
            node_dir,
            by,
            offline,
            photo,
            staff,
            qr,
            form,
        } => {
            let form = form.to_declaration()?;
            let req = match (by, offline) {
                (Some(by), _) => Request::DeclareProxy {
                    by: parse_holder(&by)?,
                    form,
                },
                (None, true) => {
                    let path = photo.expect("clap requires --photo");
                    let photo = read_photo(&path)?;
                    Request::DeclareOffline {
                        form,
                        photo,
                        staff: staff.expect("clap requires --staff"),
                    }
                }
                (None, false) => Request::Declare { form },
            };
            let resp = ask(&node_dir, req).await?;
            write_qr(&resp, &qr, json)?;
            resp
        }
        Command::Show {
            node_dir,
            holder,
            qr,
        } => {
            let resp = ask(
                &node_dir,
                Request::ShowHolder {
                    holder: parse_holder(&holder)?,
                },
            )
            .await?;
            write_qr(&resp, &qr, json)?;
            resp
        }
        Command::Pass {
            cmd:
                PassCmd::Photo {
                    node_dir,
                    holder,
                    photo,
                },
        } => {
            let photo = read_photo(&photo)?;
            ask(
                &node_dir,
                Request::AttachPhoto {
                    holder: parse_holder(&holder)?,
                    photo,
                },
            )
            .await?
        }
        Command::Pass {
            cmd:
                PassCmd::Print {
                    node_dir,
                    holder,
                    out,
                },
        } => {
            let resp = ask(
                &node_dir,
                Request::PrintPass {
                    holder: parse_holder(&holder)?,
                },
            )
            .await?;
            if let Response::Pass { html, .. } = &resp {
                std::fs::write(&out, html).with_context(|| format!("writing {}", out.display()))?;
            }
            resp
        }
        Command::Visitor {
            cmd:
                VisitorCmd::Invite {
                    node_dir,
                    host,
                    name,
                    phone,
                    from,
                    until,
                    qr,
                },
        } => {
            let req = Request::InviteVisitor {
                host: parse_holder(&host)?,
                visitor_name: name,
                visitor_phone: phone,
                from: parse_time(&from, now).map_err(usage).context("--from")?,
                until: parse_time(&until, now).map_err(usage).context("--until")?,
            };
            let resp = ask(&node_dir, req).await?;
            write_qr(&resp, &qr, json)?;
            resp
        }
        Command::Visitor {
            cmd: VisitorCmd::Withdraw { node_dir, code_id },
        } => {
            let id: CredId = code_id
                .parse()
                .map_err(|e: String| usage(format!("--code-id: {e}")))?;
            ask(&node_dir, Request::WithdrawConsent { visitor_code: id }).await?
        }
        Command::Log {
            node_dir,
            from,
            since_minutes,
            until,
            gate,
            holder,
            after_seq,
            limit,
        } => {
            let from_ms = from
                .map(|s| s * 1000)
                .or(since_minutes.map(|m| now_ms().saturating_sub(m * 60_000)));
            let q = LogQuery {
                from_ms,
                until_ms: until.map(|s| s * 1000),
                gate,
                holder: holder.as_deref().map(parse_holder).transpose()?,
                after_seq,
                limit,
            };
            ask(&node_dir, Request::QueryLog(q)).await?
        }
        Command::Roster { node_dir } => ask(&node_dir, Request::RosterSummary).await?,
        Command::Demo => return demo::run(json).await,
        Command::Bench { cmd } => return bench::run(cmd, json).await,
    };
    Ok(output::response(json, &resp))
}

async fn import_health(hub_dir: &Path, file: &Path, json: bool) -> Result<ExitCode> {
    let dir = NodeDir(hub_dir.to_path_buf());
    let key = menjin_proto::idnum::IdHashKey(menjin_store::files::read_secret(&dir.idhash_key())?);
    let text = health::read(file)?;
    let (good, bad) = health::parse(
        &text,
        &key,
        menjin_proto::civil::Date::from_unix(now_secs()),
    );
    let cfg = dir.read_hub_config()?;
    let addr = dir.read_addr().unwrap_or(cfg.listen);
    let client = connect_console(&dir, addr, menjin_proto::cert::HUB_COMMUNITY, "hub").await?;
    let bar = indicatif::ProgressBar::new(good.len() as u64);
    if json {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} rows {per_sec} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let mut applied = 0usize;
    for chunk in good.chunks(menjin_proto::wire::HEALTH_BATCH_MAX) {
        match client
            .request(&Request::SetHealth {
                flags: chunk.to_vec(),
            })
            .await?
        {
            Response::Done(_) => applied += chunk.len(),
            other => {
                bar.abandon();
                output::response(json, &other);
                anyhow::bail!("the hub refused a batch after {applied} rows were applied");
            }
        }
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    client.close().await;
    if json {
        println!(
            "{}",
            serde_json::json!({ "rows": good.len() + bad.len(), "applied": applied, "refused": bad.len(), "errors": bad })
        );
    } else {
        for e in bad.iter().take(50) {
            eprintln!("{}:{}: {}", file.display(), e.line, e.why);
        }
        if bad.len() > 50 {
            eprintln!("... and {} more bad rows", bad.len() - 50);
        }
        println!(
            "{} rows: {applied} applied, {} refused",
            good.len() + bad.len(),
            bad.len()
        );
    }
    Ok(if bad.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_REFUSED)
    })
}

fn read_photo(path: &PathBuf) -> Result<Vec<u8>> {
    let meta = std::fs::metadata(path).with_context(|| format!("photo {}", path.display()))?;
    if meta.len() > menjin_proto::wire::PHOTO_LEN_MAX as u64 {
        return Err(Refused(format!(
            "photo {} is {:.1} MB; the limit is {:.1} MB",
            path.display(),
            meta.len() as f64 / 1e6,
            menjin_proto::wire::PHOTO_LEN_MAX as f64 / 1e6
        ))
        .into());
    }
    std::fs::read(path).with_context(|| format!("photo {}", path.display()))
}

fn write_qr(resp: &Response, qr: &QrArgs, json: bool) -> Result<()> {
    let code = match resp {
        Response::Declared(r) => r.code.clone(),
        Response::Visitor(v) => Some(v.code.clone()),
        _ => None,
    };
    let Some(code) = code else { return Ok(()) };
    if let Some(path) = &qr.qr_png {
        std::fs::write(path, menjin_render::qr::qr_png(&code, 8)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = &qr.qr_svg {
        std::fs::write(path, menjin_render::qr::qr_svg(&code)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if qr.qr && !json {
        println!("{}", menjin_render::qr::qr_terminal(&code)?);
    }
    Ok(())
}

async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot watch SIGTERM; stop with Ctrl-C");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down");
}
