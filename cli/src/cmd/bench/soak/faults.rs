//! The run: every gate scans residents' codes (some revoked) while one task injects a fault
//! or a district action at random, seeded, and later heals what it broke.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Result;
use tokio::net::UdpSocket;

use super::super::Pick;
use super::super::relay::{Line, Relay};
use super::district::{Code, Community, District, Gate, Reply, copy_tree, menjin};

/// Restoring a node waits this long at most for the hub to hold all it acknowledged.
const RESTORE_CONVERGE: Duration = Duration::from_secs(20);

/// The first faults of every run, as rolls of [`Injector::one`]: backup, revocation, cut,
/// kill of a gate, clock step, lockdown, garbage, kill of a node, noisy link, wipe, restore,
/// kill of the hub, declaration.
const FIRST_ROUND: [usize; 13] = [56, 74, 19, 0, 43, 64, 37, 10, 31, 51, 60, 16, 88];

/// What is broken now and how to mend it.
enum Heal {
    StartHub,
    StartNode(usize),
    StartGate(usize, usize),
    Uplink(usize),
    GateLink(usize, usize),
    HubClock,
    NodeClock(usize),
    GateClock(usize, usize),
}

impl Heal {
    /// The thing it mends, so that no second fault hits it meanwhile.
    fn target(&self) -> String {
        match self {
            Heal::StartHub | Heal::HubClock => "hub".into(),
            Heal::StartNode(k) | Heal::NodeClock(k) => format!("n{k}"),
            Heal::StartGate(k, g) | Heal::GateClock(k, g) => format!("g{k}.{g}"),
            Heal::Uplink(k) => format!("up{k}"),
            Heal::GateLink(k, g) => format!("gl{k}.{g}"),
        }
    }
}

/// Counts of faults injected and district actions, by kind.
#[derive(Default)]
pub struct Tally(pub BTreeMap<&'static str, u64>);

impl Tally {
    fn add(&mut self, kind: &'static str) {
        *self.0.entry(kind).or_default() += 1;
    }
}

/// Revoked codes a gate let in during the run: online by a node that had confirmed the
/// revocation and not been restored since (a defect), and offline (the gate may not have
/// heard yet: for information).
#[derive(Default)]
pub struct DuringRun {
    pub revoked_allowed_online: AtomicU64,
    pub revoked_allowed_offline: AtomicU64,
    pub scans: AtomicU64,
}

/// One gate's scanner until `stop`: a code every 150–600 ms, at a random temperature.
pub async fn scanner(
    d: Arc<District>,
    (k, g): (usize, usize),
    seed: u64,
    stop: Arc<AtomicBool>,
    during: Arc<DuringRun>,
) {
    let mut pick = Pick(seed | 1);
    let c = &d.communities[k];
    let gate = &c.gates[g];
    while !stop.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_millis(150 + pick.below(450) as u64)).await;
        let code = {
            let codes = c.codes.lock().expect("codes");
            if codes.is_empty() {
                continue;
            }
            codes[pick.below(codes.len())].clone()
        };
        let t = 358 + pick.below(20) as i16;
        let started = Instant::now();
        let mut run = gate.run.lock().await;
        let reply = Gate::scan(&mut run, &[(scan_line(t, &code.text), t)], false).await;
        drop(run);
        during.scans.fetch_add(1, Ordering::Relaxed);
        let Some(Reply::Decided {
            allowed: true,
            offline,
            ..
        }) = reply
        else {
            continue;
        };
        if let Some((at, restores)) = code.revoked {
            if offline {
                during
                    .revoked_allowed_offline
                    .fetch_add(1, Ordering::Relaxed);
            } else if started > at && restores == c.restores.load(Ordering::SeqCst) {
                during
                    .revoked_allowed_online
                    .fetch_add(1, Ordering::Relaxed);
                tracing::error!(
                    gate = gate.name,
                    serial = code.serial,
                    "revoked code let in online"
                );
            }
        }
    }
}

pub fn scan_line(t: i16, code: &str) -> String {
    format!("{}.{} {code}", t / 10, t % 10)
}

/// The fault injector.
pub struct Injector {
    pub d: Arc<District>,
    pick: Pick,
    heals: Vec<(Instant, Heal)>,
    busy: HashSet<String>,
    pub tally: Tally,
    seed: u64,
    round: usize,
}

impl Injector {
    pub fn new(d: Arc<District>, seed: u64) -> Injector {
        Injector {
            d,
            pick: Pick(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1),
            heals: Vec::new(),
            busy: HashSet::new(),
            tally: Tally::default(),
            seed,
            round: 0,
        }
    }

    /// Injects until `until`, then heals everything.
    pub async fn run(&mut self, until: Instant) -> Result<()> {
        while Instant::now() < until {
            self.heal_due(false).await?;
            let pause = 300 + self.pick.below(1_200) as u64;
            tokio::time::sleep(Duration::from_millis(pause)).await;
            self.one().await?;
        }
        self.heal_due(true).await
    }

    fn later(&mut self, after_ms: (u64, u64), heal: Heal) {
        let ms = after_ms.0 + self.pick.below((after_ms.1 - after_ms.0) as usize) as u64;
        self.busy.insert(heal.target());
        self.heals
            .push((Instant::now() + Duration::from_millis(ms), heal));
    }

    async fn heal_due(&mut self, all: bool) -> Result<()> {
        let now = Instant::now();
        let (due, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut self.heals)
            .into_iter()
            .partition(|(at, _)| all || *at <= now);
        self.heals = keep;
        for (_, heal) in due {
            self.busy.remove(&heal.target());
            self.heal(heal).await?;
        }
        Ok(())
    }

    /// Mends at once whatever is broken of `targets`.
    async fn heal_now(&mut self, targets: &[String]) -> Result<()> {
        let (now, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut self.heals)
            .into_iter()
            .partition(|(_, h)| targets.contains(&h.target()));
        self.heals = keep;
        for (_, heal) in now {
            self.busy.remove(&heal.target());
            self.heal(heal).await?;
        }
        Ok(())
    }

    async fn heal(&mut self, heal: Heal) -> Result<()> {
        let d = self.d.clone();
        match heal {
            Heal::StartHub => d.hub.start(&d.env).await?,
            Heal::StartNode(k) => d.communities[k].node.start(&d.env).await?,
            Heal::StartGate(k, g) => {
                let gate = &d.communities[k].gates[g];
                let mut run = gate.run.lock().await;
                gate.start(&mut run, &d.env)?;
            }
            Heal::Uplink(k) => d.communities[k].uplink.set(Line::Pass),
            Heal::GateLink(k, g) => d.communities[k].gates[g].relay.set(Line::Pass),
            Heal::HubClock => d.hub.clock.step(0)?,
            Heal::NodeClock(k) => d.communities[k].node.clock.step(0)?,
            Heal::GateClock(k, g) => d.communities[k].gates[g].clock.step(0)?,
        }
        Ok(())
    }

    fn free(&self, target: &str) -> bool {
        !self.busy.contains(target)
    }

    /// One fault or district action, chosen by weight; skipped (and counted so) when its
    /// target is still broken by an earlier one.
    async fn one(&mut self) -> Result<()> {
        let k = self.pick.below(self.d.communities.len());
        let g = self.pick.below(self.d.communities[k].gates.len());
        // Each kind once first (a backup before its restore), so that a short run has them
        // all; then by weight.
        let roll = match FIRST_ROUND.get(self.round) {
            Some(&r) => r,
            None => self.pick.below(100),
        };
        self.round += 1;
        let done = match roll {
            0..=9 => self.kill_gate(k, g).await,
            10..=15 => self.kill_node(k).await,
            16..=18 => self.kill_hub().await,
            19..=30 => self.cut(k, g),
            31..=36 => self.noisy(k, g),
            37..=42 => self.garbage(k).await?,
            43..=50 => self.clock(k, g)?,
            51..=55 => self.wipe(k, g).await?,
            56..=59 => self.backup(k).await?,
            60..=63 => self.restore(k).await?,
            64..=73 => self.lockdown(k).await,
            74..=87 => self.revoke(k).await,
            _ => self.declare(k).await,
        };
        if !done {
            self.tally.add("skipped");
        }
        Ok(())
    }

    async fn kill_gate(&mut self, k: usize, g: usize) -> bool {
        let name = format!("g{k}.{g}");
        if !self.free(&name) {
            return false;
        }
        let gate = &self.d.communities[k].gates[g];
        Gate::kill(&mut *gate.run.lock().await).await;
        self.tally.add("kill_gate");
        self.later((300, 3_000), Heal::StartGate(k, g));
        true
    }

    async fn kill_node(&mut self, k: usize) -> bool {
        if !self.free(&format!("n{k}")) {
            return false;
        }
        self.d.communities[k].node.kill().await;
        self.tally.add("kill_node");
        self.later((300, 4_000), Heal::StartNode(k));
        true
    }

    async fn kill_hub(&mut self) -> bool {
        if !self.free("hub") {
            return false;
        }
        self.d.hub.kill().await;
        self.tally.add("kill_hub");
        self.later((300, 4_000), Heal::StartHub);
        true
    }

    /// Cuts a node's link to the hub or a gate's to its node, for 1 to 9 s (past the QUIC
    /// idle timeout sometimes, so the connection dies and is dialled again).
    fn cut(&mut self, k: usize, g: usize) -> bool {
        self.line(k, g, Line::Cut, (1_000, 9_000), "link_cut")
    }

    fn noisy(&mut self, k: usize, g: usize) -> bool {
        self.line(k, g, Line::Noisy, (1_000, 4_000), "noisy_link")
    }

    /// The uplink of node `k` or the link of its gate `g`, half and half, set to `line`
    /// for a while.
    fn line(&mut self, k: usize, g: usize, line: Line, ms: (u64, u64), kind: &'static str) -> bool {
        let d = self.d.clone();
        let c = &d.communities[k];
        let (relay, heal): (&Relay, _) = if self.pick.below(2) == 0 {
            (&c.uplink, Heal::Uplink(k))
        } else {
            (&c.gates[g].relay, Heal::GateLink(k, g))
        };
        if !self.free(&heal.target()) {
            return false;
        }
        relay.set(line);
        self.tally.add(kind);
        self.later(ms, heal);
        true
    }

    /// 50 to 300 datagrams of random bytes, some shaped like QUIC Initial packets, straight
    /// at the hub's or a node's port.
    async fn garbage(&mut self, k: usize) -> Result<bool> {
        let to = if self.pick.below(2) == 0 {
            self.d.hub.addr
        } else {
            self.d.communities[k].node.addr
        };
        let sock = UdpSocket::bind("127.0.0.1:0").await?;
        for _ in 0..50 + self.pick.below(250) {
            let len = 1 + self.pick.below(1_400);
            let mut p: Vec<u8> = (0..len).map(|_| self.pick.below(256) as u8).collect();
            if self.pick.below(2) == 0 && len > 5 {
                p[0] = 0xc0 | (p[0] & 0x0f);
                p[1..5].copy_from_slice(&1u32.to_be_bytes());
            }
            let _ = sock.send_to(&p, to).await;
        }
        self.tally.add("garbage_burst");
        Ok(true)
    }

    /// Steps a process's wall clock by −60 s to +10 min for 3 to 15 s (libfaketime).
    fn clock(&mut self, k: usize, g: usize) -> Result<bool> {
        if self.d.env.faketime.is_none() {
            return Ok(false);
        }
        const STEPS: [i64; 6] = [-60, -20, 30, 90, 300, 600];
        let step = STEPS[self.pick.below(STEPS.len())];
        let c = &self.d.communities[k];
        let (clock, heal) = match self.pick.below(5) {
            0 => (&self.d.hub.clock, Heal::HubClock),
            1 | 2 => (&c.node.clock, Heal::NodeClock(k)),
            _ => (&c.gates[g].clock, Heal::GateClock(k, g)),
        };
        if !self.free(&heal.target()) {
            return Ok(false);
        }
        clock.step(step)?;
        self.tally.add("clock_step");
        self.later((3_000, 15_000), heal);
        Ok(true)
    }

    /// Deletes a gate's cache while it is down, only when the node confirmed every offline
    /// event of it (the cache is the only copy of the others: wiping them would be losing a
    /// disk, not a fault the system could survive).
    async fn wipe(&mut self, k: usize, g: usize) -> Result<bool> {
        let gate = self.d.communities[k].gates[g].clone();
        if !self.free(&format!("g{k}.{g}")) {
            return Ok(false);
        }
        let mut run = gate.run.lock().await;
        if !gate.state.buffer_empty() {
            return Ok(false);
        }
        Gate::kill(&mut run).await;
        std::fs::remove_dir_all(gate.dir.join("cache"))?;
        gate.state.offline_max.store(0, Ordering::SeqCst);
        gate.state.uploaded_upto.store(0, Ordering::SeqCst);
        gate.start(&mut run, &self.d.env)?;
        self.tally.add("cache_wipe");
        Ok(true)
    }

    /// Last night's backup: the node stopped hard, its directory copied, started again.
    async fn backup(&mut self, k: usize) -> Result<bool> {
        let c = &self.d.communities[k];
        if !self.free(&format!("n{k}")) {
            return Ok(false);
        }
        c.node.kill().await;
        let _ = std::fs::remove_dir_all(&c.backup);
        copy_tree(&c.node.dir, &c.backup)?;
        c.has_backup.store(true, Ordering::SeqCst);
        c.node.start(&self.d.env).await?;
        self.tally.add("backup_taken");
        Ok(true)
    }

    /// The node's disk replaced by its older backup. Only once the hub holds all the node
    /// acknowledged (events and roster): what the node alone held would be lost with its
    /// disk, whatever the software did. Its gates are held meanwhile.
    async fn restore(&mut self, k: usize) -> Result<bool> {
        let d = self.d.clone();
        // The community drawn, or else one that has a backup.
        let Some(k) = (k..d.communities.len())
            .chain(0..k)
            .find(|&i| d.communities[i].has_backup.load(Ordering::SeqCst))
        else {
            return Ok(false);
        };
        let c = &d.communities[k];
        // What is still broken around the node is mended first (the restore needs the hub
        // to catch up).
        let gates = (0..c.gates.len()).flat_map(|g| [format!("g{k}.{g}"), format!("gl{k}.{g}")]);
        let around: Vec<String> = ["hub".to_string(), format!("n{k}"), format!("up{k}")]
            .into_iter()
            .chain(gates)
            .collect();
        self.heal_now(&around).await?;
        // Held and cut off: no scan, and no offline upload the hub could miss, reaches the
        // node between the check below and the restore.
        let mut held = Vec::new();
        for gate in &c.gates {
            held.push(gate.run.lock().await);
            gate.relay.set(Line::Cut);
        }
        let ready = converged_within(&d, c, RESTORE_CONVERGE).await;
        if ready {
            c.node.kill().await;
            std::fs::remove_dir_all(&c.node.dir)?;
            copy_tree(&c.backup, &c.node.dir)?;
            c.restores.fetch_add(1, Ordering::SeqCst);
            c.node.start(&d.env).await?;
        }
        for gate in &c.gates {
            gate.relay.set(Line::Pass);
        }
        drop(held);
        if !ready {
            return Ok(false);
        }
        self.tally.add("restore_backup");
        Ok(true)
    }

    async fn lockdown(&mut self, k: usize) -> bool {
        let c = &self.d.communities[k];
        let lock = !c.locked.load(Ordering::SeqCst);
        let reason = format!(
            "soak {} #{}",
            self.seed,
            self.tally.0.get("lockdown").unwrap_or(&0)
        );
        if set_lockdown(&self.d, c, lock, &reason).await.is_err() {
            return false;
        }
        self.tally.add(if lock { "lockdown" } else { "lift" });
        true
    }

    /// A resident re-declares with symptoms: the node revokes the earlier code.
    async fn revoke(&mut self, k: usize) -> bool {
        let c = &self.d.communities[k];
        let Some(serial) = ({
            let codes = c.codes.lock().expect("codes");
            let active: Vec<_> = codes.iter().filter(|x| x.revoked.is_none()).collect();
            (active.len() > 2).then(|| active[self.pick.below(active.len())].serial)
        }) else {
            return false;
        };
        if c.declare(&self.d.env.exe, serial, true).await.is_err() {
            return false;
        }
        let at = (Instant::now(), c.restores.load(Ordering::SeqCst));
        for code in c.codes.lock().expect("codes").iter_mut() {
            if code.serial == serial && code.revoked.is_none() {
                code.revoked = Some(at);
            }
        }
        self.tally.add("revocation");
        true
    }

    async fn declare(&mut self, k: usize) -> bool {
        let c = &self.d.communities[k];
        let serial = c.next_serial.fetch_add(1, Ordering::SeqCst);
        match c.declare(&self.d.env.exe, serial, false).await {
            Ok(Some(text)) => {
                c.codes.lock().expect("codes").push(Code {
                    text,
                    serial,
                    revoked: None,
                });
                self.tally.add("declaration");
                true
            }
            _ => false,
        }
    }
}

pub async fn set_lockdown(d: &District, c: &Community, lock: bool, reason: &str) -> Result<()> {
    let (hub, id) = (d.hub.dir.display().to_string(), c.id.to_string());
    let verb = if lock { "lockdown" } else { "lift" };
    menjin(
        &d.env.exe,
        &[
            "hub",
            verb,
            "--dir",
            &hub,
            "--community",
            &id,
            "--reason",
            reason,
            "--by",
            "soak",
        ],
    )
    .await?;
    c.locked.store(lock, Ordering::SeqCst);
    Ok(())
}

/// The hub holds every event the node logged, and its roster counts match the node's.
pub async fn converged(d: &District, c: &Community) -> bool {
    let (hub, node) = (
        d.hub.dir.display().to_string(),
        c.node.dir.display().to_string(),
    );
    let (Ok(h), Ok(n)) = (
        menjin(&d.env.exe, &["hub", "status", "--dir", &hub]).await,
        menjin(&d.env.exe, &["node", "status", "--dir", &node]).await,
    ) else {
        return false;
    };
    let Some(at_hub) = h["communities"].as_array().and_then(|a| {
        a.iter()
            .find(|x| x["community"].as_u64() == Some(u64::from(c.id)))
    }) else {
        return false;
    };
    // People the node knows only by an adopted code (restored from an older backup) are
    // residents at the hub.
    let residents =
        n["residents"].as_u64().unwrap_or(0) + n["residents_to_redeclare"].as_u64().unwrap_or(0);
    at_hub["events"] == n["events_logged"]
        && at_hub["residents"].as_u64() == Some(residents)
        && at_hub["codes_active"] == n["codes_active"]
        && n["hub_connected"].as_bool() == Some(true)
}

pub async fn converged_within(d: &District, c: &Community, bound: Duration) -> bool {
    let deadline = Instant::now() + bound;
    while Instant::now() < deadline {
        if converged(d, c).await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}
