//! The soak's district: a hub, nodes and gates as real `menjin` processes on loopback, each
//! node dialling the hub and each gate its node through a relay the soak can cut, and each
//! process's wall clock behind libfaketime (when installed) so the soak can step it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use menjin_proto::idnum::complete_resident_id;
use menjin_store::files::GateDir;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;

use super::super::relay::Relay;

/// The first community number; node `k` serves `FIRST_COMMUNITY + k`.
const FIRST_COMMUNITY: u32 = 440_304_201;
/// A `menjin` command the soak runs (declare, lockdown, status, log) gives up after this.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(20);
/// A gate that has not answered a scan by then is taken as hung for that scan.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(8);
/// A daemon that has not written `node.addr` by then did not start.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// Where Debian's libfaketime is (the multi-threaded build: every daemon runs threads).
const FAKETIME_LIBS: [&str; 2] = [
    "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1",
    "/usr/lib/aarch64-linux-gnu/faketime/libfaketimeMT.so.1",
];

/// Runs `menjin --json ARGS` and returns its JSON answer; an error with its output if it
/// failed or printed no JSON.
pub async fn menjin(exe: &Path, args: &[&str]) -> Result<Value> {
    let mut cmd = Command::new(exe);
    cmd.arg("--json")
        .args(args)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let out = tokio::time::timeout(COMMAND_TIMEOUT, cmd.output())
        .await
        .with_context(|| format!("menjin {} did not finish", args[0]))??;
    let text = String::from_utf8_lossy(&out.stdout);
    let value: Value = text
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .with_context(|| format!("menjin {} printed no JSON: {text}", args[..2].join(" ")))?;
    if !out.status.success() || value.get("error").is_some() {
        bail!("menjin {}: {value}", args[..2].join(" "));
    }
    Ok(value)
}

/// A free UDP port on loopback (bound, read, released: the daemon binds it next).
fn free_port() -> Result<u16> {
    Ok(std::net::UdpSocket::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// The wall-clock offset file libfaketime reads (`+0`, `+120`, `-30`: seconds).
pub struct Clock(pub Option<PathBuf>);

impl Clock {
    pub fn step(&self, offset_s: i64) -> Result<()> {
        if let Some(p) = &self.0 {
            std::fs::write(p, format!("{offset_s:+}\n"))?;
        }
        Ok(())
    }

    fn env(&self, cmd: &mut Command, lib: Option<&Path>) {
        if let (Some(file), Some(lib)) = (&self.0, lib) {
            cmd.env("LD_PRELOAD", lib)
                .env("FAKETIME_TIMESTAMP_FILE", file)
                .env("FAKETIME_CACHE_DURATION", "1")
                .env("DONT_FAKE_MONOTONIC", "1");
        }
    }
}

/// Hub or node daemon.
pub struct Daemon {
    pub name: String,
    role: &'static str,
    pub dir: PathBuf,
    /// Where it listens (kept across restarts).
    pub addr: SocketAddr,
    pub clock: Clock,
    child: tokio::sync::Mutex<Option<Child>>,
}

impl Daemon {
    pub async fn start(&self, soak: &Env) -> Result<()> {
        let mut slot = self.child.lock().await;
        if slot.is_some() {
            return Ok(());
        }
        let addr_file = self.dir.join("node.addr");
        let _ = std::fs::remove_file(&addr_file);
        let mut cmd = Command::new(&soak.exe);
        cmd.args([self.role, "run", "--dir"])
            .arg(&self.dir)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(soak.log(&self.name)?)
            .stderr(soak.log(&self.name)?)
            .kill_on_drop(true);
        self.clock.env(&mut cmd, soak.faketime.as_deref());
        *slot = Some(
            cmd.spawn()
                .with_context(|| format!("starting {}", self.name))?,
        );
        drop(slot);
        let deadline = Instant::now() + START_TIMEOUT;
        while !addr_file.exists() {
            if Instant::now() > deadline {
                bail!("{} did not start: see its log", self.name);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    /// SIGKILL, as a power cut would, and waits for it to be gone.
    pub async fn kill(&self) {
        if let Some(mut child) = self.child.lock().await.take() {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
    }
}

/// What the soak needs to start processes.
pub struct Env {
    pub exe: PathBuf,
    pub dir: PathBuf,
    pub faketime: Option<PathBuf>,
}

impl Env {
    fn log(&self, name: &str) -> Result<std::fs::File> {
        Ok(std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("logs").join(format!("{name}.log")))?)
    }
}

/// An event a gate printed as decided: acknowledged to the guard.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Acked {
    pub gate: String,
    pub community: u32,
    pub offline: bool,
    /// The node's sequence number (online), 0 offline.
    pub seq: u64,
    pub gate_seq: u64,
    pub node_time_ms: u64,
    pub allowed: bool,
    pub reason: String,
    pub temperature_dc: Option<i16>,
}

/// A gate's answer to the line the soak wrote.
#[derive(Clone, Debug)]
pub enum Reply {
    Decided {
        line: usize,
        allowed: bool,
        offline: bool,
    },
    Problem {
        line: usize,
    },
    Vehicle {
        allowed: bool,
    },
}

/// A lockdown notice a gate printed: locked, epoch, reason, when.
pub type Applied = (bool, u64, String, Instant);

/// What the soak learned from a gate's output, across its restarts.
#[derive(Default)]
pub struct GateState {
    pub acked: Mutex<Vec<Acked>>,
    /// Highest `gate_seq` decided offline in the current cache, and the highest the node
    /// confirmed (`uploaded`): the buffer is empty when the second reaches the first.
    pub offline_max: AtomicU64,
    pub uploaded_upto: AtomicU64,
    pub online: AtomicBool,
    pub lockdowns: Mutex<Vec<Applied>>,
}

impl GateState {
    pub fn buffer_empty(&self) -> bool {
        self.offline_max.load(Ordering::SeqCst) <= self.uploaded_upto.load(Ordering::SeqCst)
    }
}

/// One `menjin gate run --json` process: its scanner is our pipe.
#[derive(Default)]
pub struct GateRun {
    child: Option<Child>,
    stdin: Option<ChildStdin>,
    line: usize,
    temps: Arc<Mutex<HashMap<usize, i16>>>,
    replies: Option<mpsc::UnboundedReceiver<Reply>>,
}

pub struct Gate {
    pub name: String,
    pub community: u32,
    pub dir: PathBuf,
    /// Its link to its node.
    pub relay: Relay,
    pub clock: Clock,
    pub state: Arc<GateState>,
    pub run: tokio::sync::Mutex<GateRun>,
}

impl GateRun {
    /// No process, or one that has exited (a crash the soak did not cause shows in its log).
    pub fn is_down(&mut self) -> bool {
        self.child
            .as_mut()
            .is_none_or(|c| !matches!(c.try_wait(), Ok(None)))
    }
}

impl Gate {
    /// Starts the daemon (the caller holds `run`).
    pub fn start(&self, run: &mut GateRun, env: &Env) -> Result<()> {
        let mut cmd = Command::new(&env.exe);
        cmd.args(["--json", "gate", "run", "--dir"])
            .arg(&self.dir)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(env.log(&self.name)?)
            .kill_on_drop(true);
        self.clock.env(&mut cmd, env.faketime.as_deref());
        let mut child = cmd
            .spawn()
            .with_context(|| format!("starting {}", self.name))?;
        let stdout = child.stdout.take().context("gate stdout")?;
        let (tx, rx) = mpsc::unbounded_channel();
        let temps = Arc::new(Mutex::new(HashMap::new()));
        tokio::spawn(read_gate(
            stdout,
            tx,
            self.state.clone(),
            temps.clone(),
            (self.name.clone(), self.community),
        ));
        *run = GateRun {
            stdin: child.stdin.take(),
            child: Some(child),
            line: 0,
            temps,
            replies: Some(rx),
        };
        self.state.online.store(false, Ordering::SeqCst);
        Ok(())
    }

    pub async fn kill(run: &mut GateRun) {
        if let Some(mut child) = run.child.take() {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
        *run = GateRun::default();
    }

    /// Writes `lines` to the gate's scanner and waits for the answer to the last one (a
    /// vehicle's when `vehicle`). None: the gate is down or did not answer in time.
    pub async fn scan(run: &mut GateRun, lines: &[(String, i16)], vehicle: bool) -> Option<Reply> {
        let stdin = run.stdin.as_mut()?;
        let mut text = String::new();
        for (l, t) in lines {
            run.line += 1;
            run.temps.lock().ok()?.insert(run.line, *t);
            text.push_str(l);
            text.push('\n');
        }
        stdin.write_all(text.as_bytes()).await.ok()?;
        stdin.flush().await.ok()?;
        let want = run.line;
        let replies = run.replies.as_mut()?;
        let deadline = tokio::time::Instant::now() + ANSWER_TIMEOUT;
        loop {
            let r = tokio::time::timeout_at(deadline, replies.recv())
                .await
                .ok()??;
            match r {
                Reply::Vehicle { .. } if vehicle => return Some(r),
                Reply::Decided { line, .. } | Reply::Problem { line }
                    if !vehicle && line >= want =>
                {
                    return Some(r);
                }
                _ => {}
            }
        }
    }
}

/// Reads a gate's JSON lines: decisions become [`Acked`] events and replies, notices update
/// its state.
async fn read_gate(
    stdout: tokio::process::ChildStdout,
    tx: mpsc::UnboundedSender<Reply>,
    state: Arc<GateState>,
    temps: Arc<Mutex<HashMap<usize, i16>>>,
    (gate, community): (String, u32),
) {
    let mut lines = BufReader::new(stdout).lines();
    while let Ok(Some(l)) = lines.next_line().await {
        let Ok(v) = serde_json::from_str::<Value>(&l) else {
            continue;
        };
        let line = v["line"].as_u64().unwrap_or(0) as usize;
        if let Some(a) = v.get("answer") {
            let offline = v["offline"].as_bool().unwrap_or(false);
            let seq = a["seq"].as_u64().unwrap_or(0);
            let gate_seq = v["gate_seq"].as_u64().unwrap_or(0);
            let allowed = a["allowed"].as_bool().unwrap_or(false);
            if offline {
                state.offline_max.fetch_max(gate_seq, Ordering::SeqCst);
            }
            if offline || seq > 0 {
                let temperature_dc = temps.lock().ok().and_then(|t| t.get(&line).copied());
                if let Ok(mut acked) = state.acked.lock() {
                    acked.push(Acked {
                        gate: gate.clone(),
                        community,
                        offline,
                        seq,
                        gate_seq,
                        node_time_ms: a["node_time_ms"].as_u64().unwrap_or(0),
                        allowed,
                        reason: a["reason"].as_str().unwrap_or("").to_string(),
                        temperature_dc,
                    });
                }
            }
            let _ = tx.send(Reply::Decided {
                line,
                allowed,
                offline,
            });
        } else if v.get("error").is_some() {
            let _ = tx.send(Reply::Problem { line });
        } else if v.get("vehicle").is_some() {
            let allowed = v["allowed"].as_bool().unwrap_or(true);
            let _ = tx.send(Reply::Vehicle { allowed });
        } else if let Some(n) = v["notice"].as_str() {
            notice(&state, n, &v);
        }
    }
}

fn notice(state: &GateState, kind: &str, v: &Value) {
    match kind {
        "online" => state.online.store(true, Ordering::SeqCst),
        "offline" => state.online.store(false, Ordering::SeqCst),
        "uploaded" => {
            let upto = v["upto_gate_seq"].as_u64().unwrap_or(0);
            state.uploaded_upto.fetch_max(upto, Ordering::SeqCst);
        }
        "lockdown" => {
            if let Ok(mut l) = state.lockdowns.lock() {
                l.push((
                    v["locked"].as_bool().unwrap_or(false),
                    v["epoch"].as_u64().unwrap_or(0),
                    v["reason"].as_str().unwrap_or("").to_string(),
                    Instant::now(),
                ));
            }
        }
        _ => {}
    }
}

/// A resident's code as the soak knows it.
#[derive(Clone, Debug)]
pub struct Code {
    pub text: String,
    pub serial: u32,
    /// When the node confirmed its revocation, and how many restores its node had had then.
    pub revoked: Option<(Instant, u32)>,
}

pub struct Community {
    pub id: u32,
    pub node: Daemon,
    /// The node's link to the hub.
    pub uplink: Relay,
    pub gates: Vec<Arc<Gate>>,
    pub codes: Mutex<Vec<Code>>,
    pub next_serial: AtomicU32,
    /// Restores from a backup so far.
    pub restores: AtomicU32,
    pub backup: PathBuf,
    pub has_backup: AtomicBool,
    /// The lockdown the soak last set at the hub.
    pub locked: AtomicBool,
}

impl Community {
    /// Declares resident `serial` (`--symptoms`: a re-declaration that revokes the earlier
    /// code and gets none); the code text, if one was issued.
    pub async fn declare(&self, exe: &Path, serial: u32, symptoms: bool) -> Result<Option<String>> {
        let id = complete_resident_id(&format!(
            "44030419{:02}0101{:03}",
            50 + serial / 500,
            serial % 500 * 2
        ))
        .context("ID digits")?;
        let node_dir = self.node.dir.display().to_string();
        let (name, door) = (format!("居民{serial}"), format!("{}", 101 + serial % 50));
        let mut args = vec![
            "declare",
            "--node-dir",
            &node_dir,
            "--name",
            &name,
            "--gender",
            "female",
            "--doc-number",
            &id,
            "--phone",
            "13800138000",
            "--building",
            "1",
            "--door",
            &door,
        ];
        if symptoms {
            args.push("--symptoms");
        }
        let v = menjin(exe, &args).await?;
        Ok(v["code"].as_str().map(str::to_string))
    }
}

/// The whole district, set up and running.
pub struct District {
    pub env: Env,
    pub hub: Daemon,
    pub communities: Vec<Community>,
}

impl District {
    pub async fn set_up(env: Env, nodes: usize, gates: usize, residents: u32) -> Result<District> {
        for sub in ["logs", "clocks", "backups"] {
            std::fs::create_dir_all(env.dir.join(sub))?;
        }
        let d = |s: &str| env.dir.join(s).display().to_string();
        menjin(&env.exe, &["district", "init", "--dir", &d("district")]).await?;
        let hub_addr: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
        let hub_listen = hub_addr.to_string();
        let hub_dir = d("hub");
        menjin(
            &env.exe,
            &[
                "hub",
                "create",
                "--district",
                &d("district"),
                "--dir",
                &hub_dir,
            ]
            .into_iter()
            .chain(["--name", "soak district", "--listen", &hub_listen])
            .collect::<Vec<_>>(),
        )
        .await?;
        let hub = Daemon {
            name: "hub".into(),
            role: "hub",
            dir: env.dir.join("hub"),
            addr: hub_addr,
            clock: env.clock("hub")?,
            child: tokio::sync::Mutex::default(),
        };
        hub.start(&env).await?;
        let mut communities = Vec::new();
        for k in 0..nodes {
            communities.push(community(&env, &hub, k, gates, residents).await?);
        }
        Ok(District {
            env,
            hub,
            communities,
        })
    }

    pub fn gates(&self) -> impl Iterator<Item = &Arc<Gate>> {
        self.communities.iter().flat_map(|c| c.gates.iter())
    }
}

impl Env {
    fn clock(&self, name: &str) -> Result<Clock> {
        if self.faketime.is_none() {
            return Ok(Clock(None));
        }
        let file = self.dir.join("clocks").join(name);
        std::fs::write(&file, "+0\n")?;
        Ok(Clock(Some(file)))
    }
}

/// libfaketime's library, if installed (clock steps need it).
pub fn faketime() -> Option<PathBuf> {
    std::env::var_os("MENJIN_SOAK_FAKETIME")
        .map(PathBuf::from)
        .into_iter()
        .chain(FAKETIME_LIBS.iter().map(PathBuf::from))
        .find(|p| p.is_file())
}

/// Community `k`: its node created, enrolled at the hub and started behind a relay, its
/// gates enrolled and started behind theirs, `residents` declared.
async fn community(
    env: &Env,
    hub: &Daemon,
    k: usize,
    gates: usize,
    residents: u32,
) -> Result<Community> {
    let id = FIRST_COMMUNITY + k as u32;
    let name = format!("n{}", k + 1);
    let dir = env.dir.join(&name);
    let uplink = Relay::start(hub.addr).await?;
    let listen = format!("127.0.0.1:{}", free_port()?);
    let (dir_s, district) = (
        dir.display().to_string(),
        env.dir.join("district").display().to_string(),
    );
    let (id_s, hub_via) = (id.to_string(), uplink.addr.to_string());
    menjin(
        &env.exe,
        &[
            "node",
            "create",
            "--district",
            &district,
            "--dir",
            &dir_s,
            "--community",
            &id_s,
        ]
        .into_iter()
        .chain(["--name", &name, "--listen", &listen, "--hub", &hub_via])
        .collect::<Vec<_>>(),
    )
    .await?;
    let cert = dir.join("node.cert").display().to_string();
    let hub_dir = hub.dir.display().to_string();
    menjin(
        &env.exe,
        &["hub", "enrol", "--dir", &hub_dir, "--cert", &cert],
    )
    .await?;
    let node = Daemon {
        name: name.clone(),
        role: "node",
        dir: dir.clone(),
        addr: listen.parse()?,
        clock: env.clock(&name)?,
        child: tokio::sync::Mutex::default(),
    };
    node.start(env).await?;
    let mut list = Vec::new();
    for g in 0..gates {
        list.push(Arc::new(gate(env, &node, &name, id, g).await?));
    }
    let c = Community {
        id,
        node,
        uplink,
        gates: list,
        codes: Mutex::new(Vec::new()),
        next_serial: AtomicU32::new(residents),
        restores: AtomicU32::new(0),
        backup: env.dir.join("backups").join(&name),
        has_backup: AtomicBool::new(false),
        locked: AtomicBool::new(false),
    };
    for serial in 0..residents {
        let text = c
            .declare(&env.exe, serial, false)
            .await?
            .context("resident not cleared")?;
        c.codes.lock().expect("codes").push(Code {
            text,
            serial,
            revoked: None,
        });
    }
    Ok(c)
}

async fn gate(env: &Env, node: &Daemon, node_name: &str, community: u32, g: usize) -> Result<Gate> {
    let name = format!("g{}{}", &node_name[1..], (b'a' + g as u8) as char);
    let dir = env.dir.join(&name);
    let (node_dir, gate_dir) = (node.dir.display().to_string(), dir.display().to_string());
    menjin(
        &env.exe,
        &[
            "gate",
            "enrol",
            "--node-dir",
            &node_dir,
            "--gate-id",
            &name,
            "--dir",
            &gate_dir,
        ],
    )
    .await?;
    let relay = Relay::start(node.addr).await?;
    let gd = GateDir(dir.clone());
    let mut cfg = gd.read_config()?;
    cfg.node = relay.addr;
    gd.write_config(&cfg)?;
    let gate = Gate {
        clock: env.clock(&name)?,
        name,
        community,
        dir,
        relay,
        state: Arc::new(GateState::default()),
        run: tokio::sync::Mutex::default(),
    };
    let mut run = gate.run.lock().await;
    gate.start(&mut run, env)?;
    drop(run);
    Ok(gate)
}

/// Copies a directory tree (a stopped node's: its keys, config and sled database).
pub fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}
