//! A district hub run as its own process (`menjin hub run --dir`, this very binary), for the
//! benches that must tell the hub's cost apart from what else runs in the bench process: its
//! address, its console, its CPU time and memory from `/proc`, and its replication counters.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use menjin_net::client::NodeClient;
use menjin_proto::cert::HUB_COMMUNITY;
use menjin_proto::wire::{HubRequest, Response, SyncCounters};
use menjin_store::files::{NodeDir, read_public_key, read_signing_key};
use tokio::process::{Child, Command};

/// A hub that has not written `node.addr` by then did not start (it loads every roster
/// before it binds: a district of 200 × 30,000 residents takes a while on two cores).
const START_TIMEOUT: Duration = Duration::from_secs(600);
/// How long a killed hub may take to be reaped.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// Clock ticks per second of `/proc/<pid>/stat` (`USER_HZ`, 100 on Linux).
const TICKS_PER_S: u64 = 100;

/// The hub child. Dropping it kills the process (`kill_on_drop`), so no exit path of a
/// bench leaves a hub running; [`HubProcess::stop`] also waits for it, bounded.
pub struct HubProcess {
    child: Child,
    /// Its process id, for `/proc`.
    pub pid: u32,
    /// Where it listens (from `node.addr`).
    pub addr: std::net::SocketAddr,
    /// Its directory.
    pub dir: NodeDir,
    /// When it was spawned.
    pub spawned: Instant,
    /// From the spawn to `node.addr` written (every document loaded, endpoint bound).
    pub started_in: Duration,
}

impl HubProcess {
    /// Spawns `menjin hub run --dir DIR` (its output appended to `log`) and waits for it to
    /// write `node.addr`.
    ///
    /// # Errors
    /// If it cannot be spawned, exits, or has not started within [`START_TIMEOUT`].
    pub async fn start(dir: &NodeDir, log: &Path) -> Result<HubProcess> {
        let addr_file = dir.addr();
        let _ = std::fs::remove_file(&addr_file);
        let out = || {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(log)
                .with_context(|| format!("hub log {}", log.display()))
        };
        let exe = std::env::current_exe().context("this binary's path")?;
        let spawned = Instant::now();
        let mut child = Command::new(exe)
            .args(["hub", "run", "--dir"])
            .arg(&dir.0)
            .env("RUST_LOG", "warn")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(out()?)
            .stderr(out()?)
            .kill_on_drop(true)
            .spawn()
            .context("starting the hub process")?;
        let pid = child.id().context("the hub process has no id")?;
        let deadline = spawned + START_TIMEOUT;
        let addr = loop {
            if let Ok(text) = std::fs::read_to_string(&addr_file)
                && let Ok(addr) = text.trim().parse()
            {
                break addr;
            }
            if let Some(status) = child.try_wait()? {
                bail!(
                    "the hub exited ({status}) before it served: see {}",
                    log.display()
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "the hub did not start within {START_TIMEOUT:?}: see {}",
                    log.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        Ok(HubProcess {
            child,
            pid,
            addr,
            dir: dir.clone(),
            spawned,
            started_in: spawned.elapsed(),
        })
    }

    /// Connects with the hub's console key.
    ///
    /// # Errors
    /// If the keys cannot be read or the connection fails.
    pub async fn console(&self) -> Result<NodeClient> {
        let key = read_signing_key(&self.dir.console_key())?;
        let root = read_public_key(&self.dir.root_pub())?;
        Ok(NodeClient::connect(self.addr, &key, root, Some(HUB_COMMUNITY)).await?)
    }

    /// CPU time the hub has used (user and system, all threads), milliseconds.
    pub fn cpu_ms(&self) -> Option<u64> {
        cpu_ms(&format!("/proc/{}/stat", self.pid))
    }

    /// The hub's resident memory now and at its peak (`VmRSS`, `VmHWM`), in MB.
    pub fn memory_mb(&self) -> Option<(f64, f64)> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid)).ok()?;
        let kb = |field: &str| -> Option<f64> {
            let line = status.lines().find(|l| l.starts_with(field))?;
            let n: f64 = line[field.len()..]
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse()
                .ok()?;
            Some(n / 1024.0)
        };
        Some((kb("VmRSS:")?, kb("VmHWM:")?))
    }

    /// Kills the hub (SIGKILL: sled is crash-safe, and a bench has nothing left to lose)
    /// and waits for it, at most [`STOP_TIMEOUT`].
    pub async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = tokio::time::timeout(STOP_TIMEOUT, self.child.wait()).await;
    }
}

/// The hub's replication counters since it started.
///
/// # Errors
/// If the request fails or the hub answers something else (an older hub).
pub async fn sync_counters(console: &NodeClient) -> Result<SyncCounters> {
    match console.request(&HubRequest::SyncStats).await? {
        Response::SyncStats(c) => Ok(c),
        other => bail!("hub sync stats: {other:?}"),
    }
}

/// CPU time (user and system, all threads) from a `/proc/<pid>/stat` file, milliseconds.
pub fn cpu_ms(stat_path: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(stat_path).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split(' ').skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) * 1000 / TICKS_PER_S)
}
