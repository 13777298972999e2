//! `menjin bench sync`: the replicated roster between a community node and its district hub
//! on loopback (real sled, real QUIC, enrolled keys).
//!
//! 1. Setup, not measured: a node in this process holding `residents` residents, each with
//!    a signed code (imported with [`Node::import_roster`]: one roster change), and an empty
//!    hub in this process.
//! 2. Initial sync: from starting the node's uplink until every replicated document has the
//!    same heads at node and hub. Bytes are the `Sync` frames of both directions as the
//!    replicas count them (`SyncStats`: the replication payload, without the link's length
//!    prefixes, TLS and QUIC), read once the exchange has settled and both sides' counts
//!    agree.
//! 3. One revocation: a re-declaration with symptoms through the console, from the request
//!    until the hub's heads equal the node's again.
//! 4. Restart: the node is stopped and started again as its own process (`menjin node run`
//!    on the same directory, now configured with the hub), so that its start and its memory
//!    are its own. The cold start is from spawning the process until a gate check (over
//!    QUIC) is answered; the node's memory is that process's resident set. Its link to the
//!    hub must resume with summaries only (its replica came back from disk).
//!
//! Figures only: a run fails when something is functionally wrong (no convergence within
//! [`CONVERGE_TIMEOUT_MS`], a code not revoked at the hub, a check answered wrongly after
//! the restart, a replica that did not come back from disk), never on a timing.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use menjin_net::client::NodeClient;
use menjin_replication::Replication;
use menjin_store::files::{GateDir, NodeDir, read_public_key, read_signing_key};
use menjin_store::provision::create_gate;

use menjin_community::service::{IMPORT_PERSONS_MAX, Imported, Node};
use menjin_net::clock::now_ms;
use menjin_proto::credential::CredId;
use menjin_proto::declaration::{Declaration, Outcome};
use menjin_proto::rule::Reason;
use menjin_proto::wire::{
    CheckRequest, ConsoleRequest, Direction, GateRequest, HubRequest, Response,
};
use tokio::sync::{oneshot, watch};

use menjin_harness::person;
use menjin_harness::{LocalDistrict, LocalHub};

const COMMUNITY: u32 = 440_304_010;
pub const RESIDENTS_DEFAULT: usize = 30_000;
/// A functional bound, not a target: a link that has not converged by then is broken.
const CONVERGE_TIMEOUT_MS: u64 = 120_000;
/// After convergence, how long the last acknowledgements may take to arrive.
const SETTLE_TIMEOUT_MS: u64 = 10_000;
/// Convergence is checked at every replica event; this only bounds a missed wake-up.
const POLL_MS: u64 = 5;
/// How long the stopped node may take to release its sled database.
const RELEASE_TIMEOUT_MS: u64 = 10_000;
const GATE_ID: &str = "bench-sync-1";
/// 36.5 °C: no fever.
const TEMPERATURE_DC: i16 = 365;
/// Targets from the issue, printed next to the figures.
const TARGET_INITIAL_SYNC_MS: f64 = 3_000.0;
const TARGET_INITIAL_SYNC_RESIDENTS: usize = 30_000;
const TARGET_REVOCATION_MS: f64 = 50.0;
const TARGET_REVOCATION_BYTES: u64 = 2_048;
const TARGET_COLD_START_MS: f64 = 2_000.0;
const TARGET_COLD_START_RESIDENTS: usize = 100_000;

/// A birth date (YYYYMMDD) and serial per resident so that every ID number differs:
/// [`person`] keeps only `serial % 500`.
fn resident(i: usize) -> Declaration {
    let block = i / 500;
    let birth = format!(
        "{:04}{:02}{:02}",
        1950 + block % 50,
        1 + (block / 50) % 12,
        1 + (block / 600) % 28
    );
    let building = format!("{}", 1 + i % 20);
    let door = format!("{}{:02}", 1 + (i / 20) % 30, 1 + (i / 600) % 4);
    person(
        &format!("居民{i}"),
        i % 2 == 1,
        &birth,
        (i % 500) as u32,
        &building,
        &door,
    )
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 10_000.0).round() / 10.0
}

/// The counters of both replicas' link traffic (frames and bytes each way).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Traffic {
    node_frames_sent: u64,
    node_bytes_sent: u64,
    node_bytes_received: u64,
    hub_frames_sent: u64,
    hub_bytes_sent: u64,
    hub_bytes_received: u64,
    restarts: u64,
}

impl Traffic {
    fn read(node: &Replication, hub: &Replication) -> Traffic {
        let n = node.read(|r| r.stats().clone());
        let h = hub.read(|r| r.stats().clone());
        Traffic {
            node_frames_sent: n.frames_sent,
            node_bytes_sent: n.bytes_sent,
            node_bytes_received: n.bytes_received,
            hub_frames_sent: h.frames_sent,
            hub_bytes_sent: h.bytes_sent,
            hub_bytes_received: h.bytes_received,
            restarts: n.session_restarts + h.session_restarts,
        }
    }

    /// Everything each side sent has arrived at the other.
    fn delivered(&self) -> bool {
        self.node_bytes_sent == self.hub_bytes_received
            && self.hub_bytes_sent == self.node_bytes_received
    }

    fn frames(&self) -> u64 {
        self.node_frames_sent + self.hub_frames_sent
    }

    fn bytes(&self) -> u64 {
        self.node_bytes_sent + self.hub_bytes_sent
    }

    fn since(&self, before: &Traffic) -> Traffic {
        Traffic {
            node_frames_sent: self.node_frames_sent - before.node_frames_sent,
            node_bytes_sent: self.node_bytes_sent - before.node_bytes_sent,
            node_bytes_received: self.node_bytes_received - before.node_bytes_received,
            hub_frames_sent: self.hub_frames_sent - before.hub_frames_sent,
            hub_bytes_sent: self.hub_bytes_sent - before.hub_bytes_sent,
            hub_bytes_received: self.hub_bytes_received - before.hub_bytes_received,
            restarts: self.restarts - before.restarts,
        }
    }
}

type Heads = BTreeMap<String, Vec<String>>;

/// Heads of every non-empty document, comparable between two replicas.
fn heads(r: &Replication) -> Heads {
    r.heads()
        .into_iter()
        .filter(|(_, h)| !h.is_empty())
        .map(|(d, h)| (d.to_string(), h.iter().map(ToString::to_string).collect()))
        .collect()
}

/// Waits until `done` holds, re-checking at every event of either replica (pass the same
/// one twice to watch one).
async fn wait_until(
    a: &Replication,
    b: &Replication,
    timeout_ms: u64,
    mut done: impl FnMut() -> bool,
) -> bool {
    let mut node_events = a.subscribe();
    let mut hub_events = b.subscribe();
    let deadline = tokio::time::Instant::now() + Duration::from_millis(timeout_ms);
    loop {
        node_events.borrow_and_update();
        hub_events.borrow_and_update();
        if done() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::select! {
            _ = node_events.changed() => {}
            _ = hub_events.changed() => {}
            () = tokio::time::sleep(Duration::from_millis(POLL_MS)) => {}
            () = tokio::time::sleep_until(deadline) => {}
        }
    }
}

/// Waits until both sides have nothing left to send or to wait for and every frame sent
/// has arrived; returns the traffic counters then.
async fn settle(node: &Replication, hub: &Replication) -> Result<Traffic> {
    let hub_role = hub.me();
    let node_role = node.me();
    let mut last = Traffic::read(node, hub);
    let settled = wait_until(node, hub, SETTLE_TIMEOUT_MS, || {
        last = Traffic::read(node, hub);
        last.delivered()
            && node.read(|r| r.is_settled(hub_role))
            && hub.read(|r| r.is_settled(node_role))
    })
    .await;
    ensure!(
        settled,
        "the link did not settle within {SETTLE_TIMEOUT_MS} ms after converging: {last:?}"
    );
    Ok(last)
}

/// A node process's pieces that the bench starts and stops itself: the QUIC server and the
/// uplink to the hub.
struct Running {
    node: Arc<Node>,
    addr: SocketAddr,
    server: Option<(oneshot::Sender<()>, tokio::task::JoinHandle<()>)>,
    uplink: Option<(watch::Sender<bool>, tokio::task::JoinHandle<()>)>,
}

impl Running {
    fn serve(node: Arc<Node>) -> Result<Running> {
        let server = menjin_community::bind(node.clone(), "127.0.0.1:0".parse().expect("literal"))?;
        let addr = server.local_addr()?;
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(server.run(async move {
            let _ = stopped.await;
        }));
        Ok(Running {
            node,
            addr,
            server: Some((stop, task)),
            uplink: None,
        })
    }

    fn link(&mut self, hub: SocketAddr) {
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(menjin_community::uplink::run_uplink(
            self.node.clone(),
            hub,
            stopped,
        ));
        self.uplink = Some((stop, task));
    }

    /// Stops the uplink and the server and waits until the node's database is released.
    async fn stop(mut self) -> Result<()> {
        if let Some((stop, task)) = self.uplink.take() {
            let _ = stop.send(true);
            let _ = task.await;
        }
        if let Some((stop, task)) = self.server.take() {
            let _ = stop.send(());
            let _ = task.await;
        }
        let weak = Arc::downgrade(&self.node);
        drop(self);
        let deadline = Instant::now() + Duration::from_millis(RELEASE_TIMEOUT_MS);
        while weak.strong_count() > 0 {
            ensure!(
                Instant::now() < deadline,
                "the stopped node is still in use after {RELEASE_TIMEOUT_MS} ms"
            );
            tokio::time::sleep(Duration::from_millis(POLL_MS)).await;
        }
        Ok(())
    }
}

async fn console(dir: &NodeDir, addr: SocketAddr) -> Result<NodeClient> {
    let key = read_signing_key(&dir.console_key())?;
    let root = read_public_key(&dir.root_pub())?;
    Ok(NodeClient::connect(addr, &key, root, Some(COMMUNITY)).await?)
}

async fn gate_client(gate: &GateDir, dir: &NodeDir, addr: SocketAddr) -> Result<NodeClient> {
    let key = read_signing_key(&gate.key())?;
    let root = read_public_key(&dir.root_pub())?;
    Ok(NodeClient::connect(addr, &key, root, Some(COMMUNITY)).await?)
}

async fn check(gate: &NodeClient, code: &str) -> Result<(bool, Reason)> {
    let req = GateRequest::Check(CheckRequest {
        code: code.to_string(),
        direction: Direction::In,
        temperature_dc: TEMPERATURE_DC,
        plate: None,
    });
    match gate.request(&req).await? {
        Response::Check(a) => Ok((a.allowed, a.reason)),
        other => bail!("gate check: unexpected answer {other:?}"),
    }
}

async fn code_of(
    console: &NodeClient,
    holder: menjin_proto::credential::HolderId,
) -> Result<String> {
    match console
        .request(&ConsoleRequest::ShowHolder { holder })
        .await?
    {
        Response::Declared(r) => r.code.context("resident without a code"),
        other => bail!("showing {holder}: {other:?}"),
    }
}

/// The restarted node: `menjin node run` on the node's directory, as its own process.
struct NodeProcess {
    child: std::process::Child,
    addr: SocketAddr,
    /// When the process was spawned.
    started: Instant,
    log: PathBuf,
}

impl NodeProcess {
    /// Starts the node and waits until it has bound its endpoint (it writes `node.addr`
    /// then). Returns how long that took from the spawn.
    async fn start(dir: &NodeDir, log: &Path) -> Result<(NodeProcess, Duration)> {
        let _ = std::fs::remove_file(dir.addr());
        let exe = std::env::current_exe().context("this program's path")?;
        let out = std::fs::File::create(log).with_context(|| format!("{}", log.display()))?;
        let started = Instant::now();
        let mut child = std::process::Command::new(exe)
            .args(["node", "run", "--listen", "127.0.0.1:0", "--dir"])
            .arg(&dir.0)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .context("starting `menjin node run`")?;
        let deadline = started + Duration::from_millis(CONVERGE_TIMEOUT_MS);
        let addr = loop {
            let written = std::fs::read_to_string(dir.addr()).ok();
            if let Some(addr) = written.as_deref().and_then(|t| t.strip_suffix('\n')) {
                break addr.parse().context("node.addr")?;
            }
            if let Some(status) = child.try_wait()? {
                bail!("the node exited ({status}): {}", tail(log));
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!(
                    "the node did not bind within {CONVERGE_TIMEOUT_MS} ms: {}",
                    tail(log)
                );
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        };
        let bound = started.elapsed();
        Ok((
            NodeProcess {
                child,
                addr,
                started,
                log: log.to_path_buf(),
            },
            bound,
        ))
    }

    /// The node process's resident memory (`VmRSS`), in MB; `None` off Linux.
    fn rss_mb(&self) -> Option<f64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        vm_mb(&status, "VmRSS:")
    }

    /// Stops the node as an operator would (SIGTERM) and waits for it to exit.
    async fn stop(mut self) -> Result<()> {
        let pid = self.child.id().to_string();
        let asked = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .is_ok_and(|s| s.success());
        if !asked {
            self.child.kill()?;
        }
        let deadline = Instant::now() + Duration::from_millis(RELEASE_TIMEOUT_MS);
        loop {
            if self.child.try_wait()?.is_some() {
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                bail!(
                    "the node did not stop within {RELEASE_TIMEOUT_MS} ms: {}",
                    tail(&self.log)
                );
            }
            tokio::time::sleep(Duration::from_millis(POLL_MS)).await;
        }
    }
}

/// A node left running by a failed run is stopped with the bench.
impl Drop for NodeProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The end of a daemon's log, for an error message.
fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(5)..].join("\n")
}

/// Connects as the gate and checks `code`, retrying until the node accepts connections (it
/// binds before it serves).
async fn first_check(
    gate: &GateDir,
    dir: &NodeDir,
    addr: SocketAddr,
    code: &str,
) -> Result<(NodeClient, (bool, Reason))> {
    let deadline = Instant::now() + Duration::from_millis(CONVERGE_TIMEOUT_MS);
    loop {
        let attempt = async {
            let client = gate_client(gate, dir, addr).await?;
            let answer = check(&client, code).await?;
            anyhow::Ok((client, answer))
        }
        .await;
        match attempt {
            Ok(done) => return Ok(done),
            Err(e) if Instant::now() > deadline => {
                return Err(e.context(format!(
                    "no gate check answered within {CONVERGE_TIMEOUT_MS} ms"
                )));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(POLL_MS)).await,
        }
    }
}

/// Runs `f` on a blocking thread and times it there (the figure excludes waiting for a
/// thread).
async fn timed_blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<(T, Duration)> {
    tokio::task::spawn_blocking(move || {
        let t = Instant::now();
        let out = f();
        (out, t.elapsed())
    })
    .await
    .context("blocking task")
}

/// A `VmRSS:`-style field of a `/proc/<pid>/status` text, in MB.
fn vm_mb(status: &str, field: &str) -> Option<f64> {
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some((kb / 1024.0 * 10.0).round() / 10.0)
}

/// Resident memory of this whole process (`VmRSS`, `VmHWM`), in MB; `None` off Linux.
fn rss_mb() -> Option<(f64, f64)> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    Some((vm_mb(&status, "VmRSS:")?, vm_mb(&status, "VmHWM:")?))
}

fn target(met: bool) -> &'static str {
    if met { "met" } else { "MISSED" }
}

/// Runs `fut` and fails with `what` if it has not finished within the convergence bound.
async fn bounded<T>(what: &str, fut: impl Future<Output = Result<T>>) -> Result<T> {
    tokio::time::timeout(Duration::from_millis(CONVERGE_TIMEOUT_MS), fut)
        .await
        .with_context(|| format!("{what}: no answer within {CONVERGE_TIMEOUT_MS} ms"))?
}

pub async fn run(residents: usize, json: bool) -> Result<ExitCode> {
    // Two at least: one keeps a valid code, another is revoked.
    if !(2..=IMPORT_PERSONS_MAX).contains(&residents) {
        bail!("--residents: 2 to {IMPORT_PERSONS_MAX}");
    }
    let started = Instant::now();
    let district = LocalDistrict::new()?;
    let hub = district.start_hub("基准区 Bench district")?;
    let mut bench = Bench::setup(&district, &hub, residents, json, started).await?;
    let initial = bench.initial_sync(&hub).await?;
    let revocation = bench.revocation().await?;
    let restarts = initial.restarts + revocation.traffic.restarts;
    if restarts > 0 {
        bench.say(format!(
            "note: {restarts} sync session restarts on a healthy link (expected none)"
        ));
    }
    let import_time = bench.import_time;
    let restart = bench
        .restart(&district, &hub, initial.traffic.bytes())
        .await?;
    hub.stop().await;
    let (bench_rss, bench_peak_rss) = restart.bench_rss;
    if !json {
        println!("bench finished in {:.1} s", started.elapsed().as_secs_f64());
    }
    if json {
        crate::json::print(&crate::json::figures::BenchSync {
            bench_process_peak_rss_mb: bench_peak_rss,
            bench_process_rss_mb: bench_rss,
            elapsed_s: (started.elapsed().as_secs_f64() * 10.0).round() / 10.0,
            import_ms: ms(import_time),
            initial_sync_bytes: initial.traffic.bytes(),
            initial_sync_frames: initial.traffic.frames(),
            initial_sync_ms: ms(initial.elapsed),
            node_cold_start_ms: ms(restart.cold_start),
            node_open_ms: ms(restart.open_time),
            node_rss_mb: restart.rss,
            residents,
            restart_resync_bytes: restart.resync_bytes,
            revocation_bytes: revocation.traffic.bytes(),
            revocation_declare_ms: ms(revocation.declared),
            revocation_frames: revocation.traffic.frames(),
            revocation_sync_ms: ms(revocation.elapsed),
            session_restarts: restarts,
        });
    }
    Ok(ExitCode::SUCCESS)
}

/// The node (in this process, serving, not linked yet) and what the phases need of it.
struct Bench {
    residents: usize,
    json: bool,
    dir: NodeDir,
    running: Running,
    console: NodeClient,
    gate_dir: GateDir,
    node_repl: Arc<Replication>,
    hub_repl: Arc<Replication>,
    /// The resident whose code is revoked, and the index of their form.
    victim: Imported,
    victim_index: usize,
    /// The code of a resident who keeps it, and the victim's.
    kept_code: String,
    victim_code: String,
    import_time: Duration,
}

/// The initial sync: how long it took and the Sync traffic it cost.
struct Phase {
    elapsed: Duration,
    traffic: Traffic,
    /// Sync session restarts counted by its end.
    restarts: u64,
}

struct Revocation {
    elapsed: Duration,
    /// Until the console's declaration was answered.
    declared: Duration,
    traffic: Traffic,
}

struct Restart {
    cold_start: Duration,
    open_time: Duration,
    resync_bytes: u64,
    /// The restarted node process's resident memory, MB.
    rss: Option<f64>,
    /// This process's resident memory and its peak, MB.
    bench_rss: (f64, f64),
}

impl Bench {
    fn say(&self, line: String) {
        if !self.json {
            println!("{line}");
        }
    }

    /// Phase 1, setup: an empty hub, and a node holding the roster before any link exists; the
    /// gate enrolled at the node, the node at the hub.
    async fn setup(
        district: &LocalDistrict,
        hub: &LocalHub,
        residents: usize,
        json: bool,
        started: Instant,
    ) -> Result<Bench> {
        let dir = district.create_node(COMMUNITY, "基准社区 Bench")?;
        let node = Node::open(&dir)?;
        let forms: Vec<Declaration> = (0..residents).map(resident).collect();
        let importer = node.clone();
        let (imported, import_time) =
            timed_blocking(move || importer.import_roster(forms, "bench", now_ms() / 1000)).await?;
        let imported = imported?;
        ensure!(
            imported.len() == residents
                && imported
                    .iter()
                    .all(|p| p.outcome == Outcome::Cleared && p.cred.is_some()),
            "every imported resident should be cleared with a code"
        );
        let running = Running::serve(node)?;
        let console_client = console(&dir, running.addr).await?;
        let gate_dir = GateDir(district.base.join(format!("gate-{COMMUNITY}-{GATE_ID}")));
        let public_key = create_gate(&gate_dir, GATE_ID, &dir, running.addr)?;
        let enrol = ConsoleRequest::EnrolGate {
            gate_id: GATE_ID.to_string(),
            public_key,
        };
        match console_client.request(&enrol).await? {
            Response::Done(_) => {}
            other => bail!("enrolling the gate: {other:?}"),
        }
        // Who keeps a valid code, and who is revoked later.
        let victim_index = residents / 2;
        let victim = imported[victim_index].clone();
        let kept_code = code_of(&console_client, imported[0].holder).await?;
        let victim_code = code_of(&console_client, victim.holder).await?;
        enrol_node(hub, &dir).await?;
        let bench = Bench {
            residents,
            json,
            node_repl: running.node.wait_replica()?,
            hub_repl: hub.hub.replication().clone(),
            dir,
            running,
            console: console_client,
            gate_dir,
            victim,
            victim_index,
            kept_code,
            victim_code,
            import_time,
        };
        bench.say(format!(
            "sync bench: {residents} residents with a code each in {} roster shards; the node and an empty hub in this process, QUIC on loopback, sled in {}",
            heads(&bench.node_repl).len(),
            district.base.display()
        ));
        bench.say(format!(
            "setup (not measured): roster imported in {:.0} ms (validated, reviewed, {residents} codes signed, one flushed sled batch, one Automerge change per shard); setup total {:.1} s",
            ms(import_time),
            started.elapsed().as_secs_f64()
        ));
        Ok(bench)
    }

    /// Phase 2: the initial sync to the empty hub.
    async fn initial_sync(&mut self, hub: &LocalHub) -> Result<Phase> {
        let before = Traffic::read(&self.node_repl, &self.hub_repl);
        let t = Instant::now();
        self.running.link(hub.addr);
        let (node_repl, hub_repl) = (&self.node_repl, &self.hub_repl);
        let converged = wait_until(node_repl, hub_repl, CONVERGE_TIMEOUT_MS, || {
            heads(node_repl) == heads(hub_repl)
        })
        .await;
        let elapsed = t.elapsed();
        ensure!(
            converged,
            "node and hub did not converge within {CONVERGE_TIMEOUT_MS} ms"
        );
        let after = settle(node_repl, hub_repl).await?;
        let traffic = after.since(&before);
        let residents = self.residents;
        let hub_persons = hub_repl.read(|r| r.roster(COMMUNITY).persons.len());
        ensure!(
            hub_persons == residents,
            "the hub holds {hub_persons} residents of {residents}"
        );
        self.say(format!(
            "initial sync to an empty hub: {:.0} ms, {} bytes of Sync frames in {} frames (node → hub {} B, hub → node {} B) [target ≤ {:.0} ms at {TARGET_INITIAL_SYNC_RESIDENTS}: {}]",
            ms(elapsed),
            traffic.bytes(),
            traffic.frames(),
            traffic.node_bytes_sent,
            traffic.hub_bytes_sent,
            TARGET_INITIAL_SYNC_MS,
            if residents == TARGET_INITIAL_SYNC_RESIDENTS {
                target(ms(elapsed) <= TARGET_INITIAL_SYNC_MS)
            } else {
                "not this size"
            }
        ));
        Ok(Phase {
            elapsed,
            traffic,
            restarts: after.restarts,
        })
    }

    /// Phase 3, one revocation: the resident declares symptoms again.
    async fn revocation(&self) -> Result<Revocation> {
        let (node_repl, hub_repl) = (&self.node_repl, &self.hub_repl);
        let hub_heads_before = hub_repl.heads();
        let before = Traffic::read(node_repl, hub_repl);
        let mut form = resident(self.victim_index);
        form.symptoms = true;
        let t = Instant::now();
        let receipt = match bounded("the revoking declaration", async {
            Ok(self
                .console
                .request(&ConsoleRequest::Declare { form })
                .await?)
        })
        .await?
        {
            Response::Declared(r) => r,
            other => bail!("re-declaring resident {}: {other:?}", self.victim_index),
        };
        let declared = t.elapsed();
        let victim = &self.victim;
        ensure!(
            receipt.revoked == victim.cred && receipt.cred.is_none(),
            "the re-declaration should revoke {:?}, it revoked {:?}",
            victim.cred,
            receipt.revoked
        );
        let converged = wait_until(node_repl, hub_repl, CONVERGE_TIMEOUT_MS, || {
            heads(node_repl) == heads(hub_repl)
        })
        .await;
        let elapsed = t.elapsed();
        ensure!(
            converged,
            "the revocation did not reach the hub within {CONVERGE_TIMEOUT_MS} ms"
        );
        let traffic = settle(node_repl, hub_repl).await?.since(&before);
        let revoked_cred: CredId = victim.cred.expect("checked above");
        let at_hub = hub_repl.read(|r| {
            hub_heads_before.iter().find_map(|(doc, heads)| {
                r.roster_changes_since(*doc, heads)
                    .codes
                    .get(&revoked_cred)
                    .map(|c| c.status.as_str())
            })
        });
        ensure!(
            at_hub == Some("revoked"),
            "the hub shows code {revoked_cred} as {at_hub:?}, not revoked"
        );
        self.say(format!(
            "one revocation: {:.1} ms from the console's request until the hub holds it (declaration answered in {:.1} ms), {} bytes of Sync frames in {} frames [targets ≤ {TARGET_REVOCATION_MS:.0} ms: {}, ≤ {TARGET_REVOCATION_BYTES} B: {}]",
            ms(elapsed),
            ms(declared),
            traffic.bytes(),
            traffic.frames(),
            target(ms(elapsed) <= TARGET_REVOCATION_MS),
            target(traffic.bytes() <= TARGET_REVOCATION_BYTES)
        ));
        Ok(Revocation {
            elapsed,
            declared,
            traffic,
        })
    }

    /// Phase 4, restart: the node comes back as its own process (`menjin node run`) on the same
    /// directory, so that its start and its memory are its own. (Timed in this process,
    /// which holds the hub and the heap the first node left to the allocator, the same start
    /// took twice as long at 100,000 residents.) It links to the hub as a configured node
    /// does. `initial_bytes`: the initial sync's, which the resync must stay far below.
    async fn restart(
        self,
        district: &LocalDistrict,
        hub: &LocalHub,
        initial_bytes: u64,
    ) -> Result<Restart> {
        let hub_heads = heads(&self.hub_repl);
        self.console.close().await;
        let node_role = self.node_repl.me();
        // The replica holds the node's sled database too: release it with the node.
        drop(self.node_repl);
        self.running.stop().await?;
        let dir = &self.dir;
        let mut config = dir.read_config()?;
        config.hub = Some(hub.addr);
        dir.write_config(&config)?;
        let hub_repl = &self.hub_repl;
        let hub_before = hub_repl.read(|r| r.stats().clone());
        let log = district.base.join("node-restart.log");
        let (process, open_time) = NodeProcess::start(dir, &log).await?;
        let (gate, first) = first_check(&self.gate_dir, dir, process.addr, &self.kept_code).await?;
        let cold_start = process.started.elapsed();
        let rss = process.rss_mb();
        let revoked = check(&gate, &self.victim_code).await?;
        gate.close().await;
        ensure!(
            first == (true, Reason::Ok),
            "after the restart a valid code got {first:?}"
        );
        ensure!(
            revoked == (false, Reason::Revoked),
            "after the restart the revoked code got {revoked:?}"
        );
        // The restarted node's replica came back from disk: its summary matches the hub's,
        // so the hub has nothing to send (it would send the whole roster back to a node that
        // lost it) and nothing changes at the hub.
        let resynced = wait_until(hub_repl, hub_repl, CONVERGE_TIMEOUT_MS, || {
            hub_repl.read(|r| {
                r.is_connected(node_role)
                    && r.stats().frames_received > hub_before.frames_received
                    && r.stats().frames_sent > hub_before.frames_sent
                    && r.is_settled(node_role)
            })
        })
        .await;
        let hub_after = hub_repl.read(|r| r.stats().clone());
        process.stop().await?;
        ensure!(
            resynced,
            "the restarted node did not resume its link with the hub within {CONVERGE_TIMEOUT_MS} ms"
        );
        let resync_sent = hub_after.bytes_sent - hub_before.bytes_sent;
        let resync_bytes = resync_sent + hub_after.bytes_received - hub_before.bytes_received;
        let resync_frames = hub_after.frames_sent + hub_after.frames_received
            - hub_before.frames_sent
            - hub_before.frames_received;
        ensure!(
            heads(hub_repl) == hub_heads && resync_sent < initial_bytes / 10,
            "after the restart the hub sent the node {resync_sent} bytes of Sync frames: the node's replica did not come back from disk"
        );
        let restart = Restart {
            cold_start,
            open_time,
            resync_bytes,
            rss,
            bench_rss: rss_mb().unwrap_or_default(),
        };
        restart.print(self.json, self.residents, resync_frames);
        Ok(restart)
    }
}

impl Restart {
    fn print(&self, json: bool, residents: usize, resync_frames: u64) {
        if json {
            return;
        }
        println!(
            "node restart: answers its first gate check {:.0} ms after its process starts [target ≤ {TARGET_COLD_START_MS:.0} ms at {TARGET_COLD_START_RESIDENTS}: {}]; Node::open and the QUIC endpoint bound after {:.0} ms; holding {residents} residents; the revoked code denied",
            ms(self.cold_start),
            if residents == TARGET_COLD_START_RESIDENTS {
                target(ms(self.cold_start) <= TARGET_COLD_START_MS)
            } else {
                "not this size"
            },
            ms(self.open_time)
        );
        println!(
            "link resumed after the restart: {} bytes of Sync frames in {resync_frames} frames, as the hub counts them (nothing to resend)",
            self.resync_bytes
        );
        let (bench_rss, bench_peak_rss) = self.bench_rss;
        println!(
            "memory: the restarted node process {} MB resident; this bench process (hub, and the first node's leftovers) {bench_rss:.0} MB, peak {bench_peak_rss:.0} MB",
            self.rss
                .map_or_else(|| "?".to_string(), |r| format!("{r:.0}"))
        );
    }
}

async fn enrol_node(hub: &LocalHub, dir: &NodeDir) -> Result<()> {
    let hub_console = hub.console().await?;
    let cert = std::fs::read(dir.cert())?;
    match hub_console.request(&HubRequest::EnrolNode { cert }).await? {
        Response::Done(_) => {}
        other => bail!("enrolling the node at the hub: {other:?}"),
    }
    hub_console.close().await;
    Ok(())
}
