//! `menjin gate`: enrol a gate at its node (or revoke it), check one code through the node, find the node
//! (`discover`), and run the gate.
//!
//! `menjin gate run` is the gate daemon for a keyboard-wedge scanner. One line per person on
//! standard input: the body temperature, a space, the scanned code (`36.6 MJ:...`). A vehicle
//! is checked person by person: `CAR <plate>` starts it, each occupant's line follows, `END`
//! closes it; the vehicle passes only if every occupant does. One line per decision on
//! standard output for the guard (or, with `--json`, one JSON object per line for a turnstile
//! controller). Garbage lines get a clear message and the gate keeps working; a lost node
//! connection is re-established on the next person.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Subcommand;
use menjin_discovery::{self as discovery, ProbeOutcome};
use menjin_gate::{Decision, GateAgent, GateError, Notice};
use menjin_net::client::NodeClient;
use menjin_proto::wire::{CheckRequest, ConsoleRequest, Direction, GateRequest, Response};
use menjin_store::files::{GateDir, NodeDir, read_secret, read_signing_key};
use menjin_store::provision;
use tokio::io::AsyncBufReadExt;

use crate::console::ask;
use crate::exit::usage;
use crate::form::{parse_interfaces, parse_temperature};
use crate::json::gate::{
    DecisionLine, DiscoverReport, NoticeLine, ProblemLine, VehicleLine, print_line,
};
use crate::output;
use crate::scanner::{Spool, printable};

/// Code texts start with this; anything else on a line names an image in the spool.
const CODE_PREFIX: &str = "MJ:";
/// A scanner line longer than this is not a code (the longest code text is 207 characters).
const LINE_LEN_MAX: usize = 1024;
/// Occupants of one vehicle; more is a typing error.
const OCCUPANTS_MAX: usize = 9;
/// At start, how long to wait for the node before deciding alone.
const START_WAIT_MS: u64 = 3_000;
/// At the end of input, how long to wait for buffered events to reach the node.
const EXIT_UPLOAD_WAIT_MS: u64 = 3_000;
/// `--screen` without an address: loopback only (the page names who passes).
const SCREEN_DEFAULT: &str = "127.0.0.1:8090";

#[derive(Subcommand)]
pub enum GateCmd {
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
    /// Take an enrolled gate out at the running node (a stolen or retired device): its key is
    /// refused from now on, its open connection is closed, and it stays out after a restart.
    Revoke {
        #[arg(long)]
        node_dir: PathBuf,
        #[arg(long)]
        gate_id: String,
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
        /// Also serve the guard's screen (a kiosk page: each decision as it happens, the
        /// gate's conditions) on ADDR, loopback port 8090 if none is given; the bound address
        /// goes to `screen.addr` in the gate's directory.
        #[arg(long, value_name = "ADDR", num_args = 0..=1, default_missing_value = SCREEN_DEFAULT)]
        screen: Option<std::net::SocketAddr>,
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

pub async fn run(cmd: GateCmd, json: bool) -> Result<ExitCode> {
    let resp = match cmd {
        GateCmd::Enrol {
            node_dir,
            gate_id,
            dir,
            discover,
        } => {
            let discover = discover.as_deref().map(parse_interfaces).transpose()?;
            enrol(node_dir, gate_id, dir, discover).await?
        }
        GateCmd::Revoke { node_dir, gate_id } => {
            ask(&node_dir, ConsoleRequest::RevokeGate { gate_id }).await?
        }
        GateCmd::Discover {
            dir,
            interfaces,
            browse_ms,
        } => {
            let interfaces = interfaces.as_deref().map(parse_interfaces).transpose()?;
            return discover(GateDir(dir), interfaces, browse_ms, json).await;
        }
        GateCmd::Run { dir, screen } => return run_daemon(GateDir(dir), json, screen).await,
        GateCmd::Check {
            dir,
            code,
            temp,
            direction,
            plate,
        } => check(GateDir(dir), code, &temp, direction.as_deref(), plate).await?,
    };
    Ok(output::response(json, &resp))
}

/// Creates the gate's directory and enrols its key at the running node; a gate the node did
/// not take keeps no key or configuration behind.
async fn enrol(
    node_dir: PathBuf,
    gate_id: String,
    dir: PathBuf,
    discover: Option<Vec<String>>,
) -> Result<Response> {
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
        ConsoleRequest::EnrolGate {
            gate_id,
            public_key,
        },
    )
    .await;
    if !existed && !matches!(resp, Ok(Response::Done(_))) {
        let _ = std::fs::remove_dir_all(&dir);
    }
    resp
}

/// `gate check`: one person checked through the node, with the gate's own key.
async fn check(
    gd: GateDir,
    code: String,
    temp: &str,
    direction: Option<&str>,
    plate: Option<String>,
) -> Result<Response> {
    let cfg = gd.read_config()?;
    let key = read_signing_key(&gd.key())?;
    let root = menjin_proto::keys::parse_public_key_hex(&cfg.root_public_key)?;
    let code = if code == "-" {
        let mut line = String::new();
        std::io::stdin()
            .read_line(&mut line)
            .context("reading the code from standard input")?;
        line.trim().to_string()
    } else {
        code
    };
    let req = GateRequest::Check(CheckRequest {
        code,
        direction: match direction {
            Some("out") => Direction::Out,
            Some(_) => Direction::In,
            None => cfg.direction,
        },
        temperature_dc: parse_temperature(temp).map_err(usage)?,
        plate,
    });
    let client = NodeClient::connect(cfg.node, &key, root, Some(cfg.community)).await?;
    let resp = client.request(&req).await?;
    client.close().await;
    Ok(resp)
}

struct Gate {
    agent: GateAgent,
    json: bool,
    /// The guard's screen (`--screen`), told after each decision is printed.
    screen: Option<menjin_web::screen::Screen>,
    /// Where the scanner's images are (`[scanner] spool`); none: only code texts.
    spool: Option<Spool>,
}

impl Gate {
    async fn check(
        &mut self,
        code: &str,
        temperature_dc: i16,
        plate: Option<&str>,
    ) -> Result<Decision, String> {
        self.agent
            .check(code, temperature_dc, plate)
            .await
            .map_err(|e| match e {
                GateError::Refused(why) => why,
                other => other.to_string(),
            })
    }

    /// Prints the decision, then draws it on the screen: the guard's terminal and the
    /// turnstile's line first, the screen after.
    fn show(&self, line: usize, d: &Decision, temperature_dc: i16, plate: Option<&str>) {
        self.print(line, d, plate);
        if let Some(screen) = &self.screen {
            screen.show(&menjin_web::screen::Shown {
                answer: d.answer.clone(),
                temperature_dc,
                offline: d.offline,
                degraded: d.degraded,
                plate: plate.map(str::to_string),
            });
        }
    }

    fn print(&self, line: usize, d: &Decision, plate: Option<&str>) {
        if self.json {
            print_line(&DecisionLine::new(line, d, plate));
            return;
        }
        print!("{}", output::check_text(&d.answer));
        if d.offline {
            println!(
                "   decided by this gate alone{} (buffered as #{})",
                if d.degraded {
                    ", DEGRADED: no word from the node"
                } else {
                    ""
                },
                d.gate_seq.unwrap_or_default()
            );
        }
    }

    /// `why` often quotes the scan: printed through [`printable`], like every echo of input.
    fn problem(&self, line: usize, why: &str) {
        let why = printable(why);
        if self.json {
            print_line(&ProblemLine {
                error: why.to_string(),
                line,
            });
        } else {
            println!("?? line {line}: {why}");
        }
    }

    /// A vehicle at `END`: each occupant checked; it passes only if every one does.
    async fn vehicle(&mut self, plate: &str, occupants: &[(usize, i16, String)]) {
        let mut all_allowed = !occupants.is_empty();
        for (l, t, code) in occupants {
            match self.check(code, *t, Some(plate)).await {
                Ok(d) => {
                    all_allowed &= d.answer.allowed;
                    self.show(*l, &d, *t, Some(plate));
                }
                Err(why) => {
                    all_allowed = false;
                    self.problem(*l, &why);
                }
            }
        }
        if self.json {
            print_line(&VehicleLine {
                allowed: all_allowed,
                occupants: occupants.len(),
                vehicle: plate.to_string(),
            });
        } else {
            println!(
                "{} VEHICLE {plate} ({} occupants)",
                if all_allowed { "ALLOW" } else { "DENY " },
                occupants.len()
            );
        }
    }

    /// Standard input ended (after line `n`): give the link a moment to upload what waits,
    /// then report it.
    async fn finish(&self, n: usize, notices: &mut menjin_gate::Notices) {
        let deadline =
            tokio::time::Instant::now() + std::time::Duration::from_millis(EXIT_UPLOAD_WAIT_MS);
        while self.agent.pending() > 0
            && self.agent.online()
            && tokio::time::Instant::now() < deadline
        {
            self.agent.kick_upload();
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        while let Ok(notice) = notices.try_recv() {
            self.notice(&notice);
        }
        let pending = self.agent.pending();
        if pending > 0 {
            self.problem(n, &format!("{pending} offline events still wait for upload in this gate's cache; they go when the gate runs again and reaches its node"));
        }
    }

    fn notice(&self, n: &Notice) {
        if let Some(screen) = &self.screen {
            screen.conditions(|c| screen_conditions(c, n));
        }
        if self.json {
            print_line(&NoticeLine::from(n));
            return;
        }
        let text = match n {
            Notice::Online { node } => format!("-- online: node {node}"),
            Notice::Offline { why } => {
                format!("!! OFFLINE: node unreachable ({why}); this gate decides alone")
            }
            Notice::Degraded { silent_s } => format!(
                "!! DEGRADED: no word from the node for {silent_s} s: visitors refused, residents from this gate's cache"
            ),
            Notice::Recovered => "-- node heard again: degraded mode ended".into(),
            Notice::ClockSkew { skew_ms } => format!(
                "!! CLOCK: this gate's clock is {:.1} s off the node's; decisions use the node's time",
                *skew_ms as f64 / 1000.0
            ),
            Notice::ClockAgrees => "-- clock agrees with the node again".into(),
            Notice::BufferAlarm { pending, capacity } => format!(
                "!! BUFFER: {pending} of {capacity} offline events waiting: get the node back"
            ),
            Notice::Uploaded {
                stored,
                upto_gate_seq,
            } => format!("-- {stored} offline events uploaded (up to #{upto_gate_seq})"),
            Notice::Problem { what } => format!("!! PROBLEM: {what}"),
            Notice::Lockdown {
                locked: true,
                epoch,
                reason,
            } => format!("!! LOCKDOWN (epoch {epoch}): {reason}"),
            Notice::Lockdown { epoch, .. } => format!("-- lockdown lifted (epoch {epoch})"),
        };
        println!("{}", printable(&text));
    }

    /// Splits `36.6 MJ:...` into the temperature and the code; a second field that is not a
    /// code text names a PNG image of the code in the spool (`36.6 0001.png`, or its full
    /// path), read off the event loop; without a spool it is refused, never opened.
    async fn person(&self, line: &str) -> Result<(i16, String), String> {
        let (t, code) = split_person(line)?;
        if code.starts_with(CODE_PREFIX) {
            return Ok((t, code.to_string()));
        }
        let Some(spool) = &self.spool else {
            return Err(format!(
                "not a code ({CODE_PREFIX}...) and no [scanner] spool is configured: {}",
                printable(code)
            ));
        };
        let text = spool
            .read_code(code)
            .await
            .map_err(|e| format!("not a code ({CODE_PREFIX}...) nor a readable code image: {e}"))?;
        Ok((t, text))
    }
}

/// What a notice changes on the guard's screen.
pub(crate) fn screen_conditions(c: &mut menjin_web::screen::Conditions, n: &Notice) {
    match n {
        Notice::Online { .. } => c.offline = false,
        Notice::Offline { .. } => c.offline = true,
        Notice::Degraded { silent_s } => c.degraded_s = Some(*silent_s),
        Notice::Recovered => c.degraded_s = None,
        Notice::ClockSkew { skew_ms } => c.clock_skew_ms = Some(*skew_ms),
        Notice::ClockAgrees => c.clock_skew_ms = None,
        Notice::BufferAlarm { pending, capacity } => c.buffer = Some((*pending, *capacity)),
        Notice::Uploaded { .. } => c.buffer = None,
        Notice::Problem { what } => c.problem = Some(printable(what).to_string()),
        Notice::Lockdown { locked, .. } => c.lockdown = *locked,
    }
}

/// `--screen`: the guard's screen served on `listen` until the gate stops; its address is
/// written to `screen.addr` and logged. Without `--screen`, none.
async fn start_screen(
    dir: &GateDir,
    gate_id: &str,
    listen: Option<std::net::SocketAddr>,
) -> Result<Option<(menjin_web::screen::Screen, ScreenTask)>> {
    let Some(listen) = listen else {
        return Ok(None);
    };
    let screen = menjin_web::screen::Screen::new(gate_id);
    let server = menjin_web::screen::ScreenServer::bind(screen.clone(), listen)
        .with_context(|| format!("gate screen: cannot listen on {listen}"))?;
    let bound = server.local_addr()?;
    menjin_store::files::write_public(&dir.screen_addr(), format!("{bound}\n").as_bytes())?;
    tracing::info!(url = %format!("http://{bound}/"), "gate screen");
    eprintln!("gate screen on http://{bound}/");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server.serve(async move {
        let _ = stopped.await;
    }));
    Ok(Some((screen, ScreenTask { stop, task })))
}

/// The screen's server, stopped and drained at the gate's end.
struct ScreenTask {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl ScreenTask {
    async fn stop(self, dir: &GateDir) {
        let _ = self.stop.send(());
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), self.task).await;
        let _ = std::fs::remove_file(dir.screen_addr());
    }
}

/// `36.6 <scan>`: the temperature and the scanned field, trimmed.
fn split_person(line: &str) -> Result<(i16, &str), String> {
    let (t, code) = line
        .split_once(' ')
        .ok_or("expected: <temperature> <code>, e.g. 36.6 MJ:... or 36.6 scan.png")?;
    let t = parse_temperature(t).map_err(|e| e.to_string())?;
    Ok((t, code.trim()))
}

/// `gate run`: decisions for the lines of a scanner until standard input ends.
async fn run_daemon(
    dir: GateDir,
    json: bool,
    screen: Option<std::net::SocketAddr>,
) -> Result<ExitCode> {
    let cfg = dir.read_config()?;
    let key = ed25519_dalek::SigningKey::from_bytes(&read_secret(&dir.key())?);
    let root = menjin_proto::keys::parse_public_key_hex(&cfg.root_public_key)?;
    let spool = cfg.scanner.spool.as_deref().map(Spool::open).transpose();
    let spool = spool.map_err(|why| anyhow::anyhow!("{}: {why}", dir.config().display()))?;
    let screen = start_screen(&dir, &cfg.gate_id, screen).await?;
    let (agent, mut notices) = GateAgent::start(cfg, key, root, &dir.cache())?;
    let (screen, screen_task) = screen.unzip();
    let mut gate = Gate {
        agent,
        json,
        screen,
        spool,
    };
    gate.agent
        .wait_online(std::time::Duration::from_millis(START_WAIT_MS))
        .await;
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    // A vehicle being checked: its plate and, per occupant, (line number, temperature, code).
    #[allow(clippy::type_complexity)]
    let mut vehicle: Option<(String, Vec<(usize, i16, String)>)> = None;
    let mut n = 0usize;
    loop {
        let raw = tokio::select! {
            line = lines.next_line() => match line? {
                Some(l) => l,
                None => break,
            },
            Some(notice) = notices.recv() => {
                gate.notice(&notice);
                continue;
            }
        };
        n += 1;
        let line = raw.trim();
        if line.is_empty() {
            continue;
        }
        if line.len() > LINE_LEN_MAX {
            gate.problem(n, "line too long for a code: scan again");
            continue;
        }
        if let Some(plate) = line.strip_prefix("CAR ") {
            let plate = plate.trim();
            let bad = plate.is_empty()
                || plate.len() > menjin_proto::wire::PLATE_LEN_MAX
                || printable(plate) != plate;
            if bad {
                gate.problem(
                    n,
                    "CAR needs a plate of 1 to 16 bytes, no control characters",
                );
            } else {
                vehicle = Some((plate.to_string(), Vec::new()));
            }
            continue;
        }
        if line == "END" {
            match vehicle.take() {
                Some((plate, occupants)) => gate.vehicle(&plate, &occupants).await,
                None => gate.problem(n, "END without CAR"),
            }
            continue;
        }
        let (t, code) = match gate.person(line).await {
            Ok(p) => p,
            Err(why) => {
                gate.problem(n, &why);
                continue;
            }
        };
        if let Some((_, occupants)) = vehicle.as_mut() {
            if occupants.len() >= OCCUPANTS_MAX {
                gate.problem(
                    n,
                    "too many occupants for one vehicle: END it and start again",
                );
            } else {
                occupants.push((n, t, code));
            }
            continue;
        }
        match gate.check(&code, t, None).await {
            Ok(a) => gate.show(n, &a, t, None),
            Err(why) => gate.problem(n, &why),
        }
    }
    gate.finish(n, &mut notices).await;
    if let Some(task) = screen_task {
        task.stop(&dir).await;
    }
    Ok(ExitCode::SUCCESS)
}

/// `menjin gate discover`: what `gate run` would find, shown.
async fn discover(
    dir: GateDir,
    interfaces: Option<Vec<String>>,
    browse_ms: Option<u64>,
    json: bool,
) -> Result<ExitCode> {
    let mut cfg = dir.read_config()?;
    if let Some(interfaces) = interfaces {
        cfg.discovery.enabled = true;
        cfg.discovery.interfaces = interfaces;
    }
    if let Some(ms) = browse_ms {
        let range = discovery::BROWSE_MS_MIN..=discovery::BROWSE_MS_MAX;
        if !range.contains(&ms) {
            return Err(usage(format!(
                "--browse-ms must be {} to {}",
                range.start(),
                range.end()
            )));
        }
        cfg.discovery.browse_ms = ms;
    }
    let key = read_signing_key(&dir.key())?;
    let root = menjin_proto::keys::parse_public_key_hex(&cfg.root_public_key)?;
    // A diagnosis run beside the daemon, which holds the cache: no pin to its certificate.
    let d = discovery::discover(&cfg, &key, root.into()).await;
    if json {
        crate::json::print(&DiscoverReport::new(&cfg, &d));
    } else {
        discovery_text(&cfg, &d);
    }
    match d.found {
        Some(found) => {
            found.client.close().await;
            Ok(ExitCode::SUCCESS)
        }
        None => Ok(ExitCode::FAILURE),
    }
}

/// `gate discover`: one line for mDNS, one per candidate, one for the node chosen.
fn discovery_text(cfg: &menjin_store::files::GateConfig, d: &discovery::Discovery) {
    match &d.browsed {
        None => println!("mDNS discovery is off in gate.toml ([discovery] enabled = false)"),
        Some(Err(e)) => println!("mDNS failed: {e}"),
        Some(Ok(n)) => println!(
            "mDNS on {:?}: {n} node(s) of community {} advertised",
            cfg.discovery.interfaces, cfg.community
        ),
    }
    for p in &d.probes {
        let what = p
            .instance
            .as_deref()
            .unwrap_or("static address from gate.toml");
        let result = match &p.outcome {
            ProbeOutcome::Verified { rtt_us, .. } => {
                format!("verified, rtt {:.2} ms", *rtt_us as f64 / 1000.0)
            }
            ProbeOutcome::Refused(why) => format!("REFUSED: {why}"),
            ProbeOutcome::Unreachable(why) => format!("unreachable: {why}"),
        };
        println!("  {what} at {}: {result}", p.addr);
    }
    match &d.found {
        Some(f) => println!(
            "chosen: {} ({}, rtt {:.2} ms, key {})",
            f.addr,
            f.via.as_str(),
            f.rtt_us as f64 / 1000.0,
            f.fingerprint
        ),
        None => println!("no node of community {} could be used", cfg.community),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn person_lines_parse_and_garbage_is_explained() {
        assert_eq!(
            split_person("36.6 MJ:ABC DEF").unwrap(),
            (366, "MJ:ABC DEF")
        );
        assert_eq!(split_person("36.6  scan.png ").unwrap(), (366, "scan.png"));
        assert!(split_person("MJ:ABC").is_err());
        assert!(split_person("hot MJ:ABC").is_err());
        assert!(split_person("25 MJ:ABC").is_err());
    }
}
