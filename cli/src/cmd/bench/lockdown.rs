//! `menjin bench lockdown`: a hub in its own process (`menjin hub run`, so the nodes cannot
//! starve it), N nodes and N×G gate agents (the real gate device: QUIC connection, feed
//! subscription, sled cache) in this process on loopback, each node dialling the hub through
//! a UDP relay this bench can cut. Lockdowns and revocations are issued at the hub's console,
//! over and over, and each gate's latency is measured from the command to the first moment
//! that gate had applied the change to its cache and flushed it (its acknowledgment leaves
//! then). Beside the latencies: the hub's CPU time (from `/proc`) and replication bytes per
//! lockdown, and its memory.
//! Then one community at a time is locked down (`one`): what every *other* node received
//! and spent on it (frames, bytes, time taking them in) against an idle window of the same
//! length (the replica's periodic summaries).
//! Last, one node is cut off from the hub, a lockdown is issued, the link is restored, and the
//! time from the restore to the last of its gates applying it is `after_partition_ms`.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use menjin_gate::{Applied, GateAgent};
use menjin_net::client::NodeClient;
use menjin_proto::CommunityId;
use menjin_proto::idnum::{DocumentType, IdHashKey};
use menjin_proto::wire::{ConsoleRequest, HealthEntry, HubRequest, Response};
use menjin_store::files::read_secret;
use tokio::sync::watch;

use menjin_harness::{LocalDistrict, LocalNode};

use super::hub_process::{HubProcess, sync_counters};
use super::relay::Relay;

mod one;

const FIRST_COMMUNITY: CommunityId = 440_305_001;
/// A change not applied by every gate by then counts as missing (`applied` < `gates`).
const ROUND_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the partitioned node stays cut off: longer than the QUIC idle timeout (6 s), so
/// the node's link to the hub dies and must be dialled again, as after a real outage.
const PARTITION: Duration = Duration::from_millis(7_000);

struct Community {
    id: CommunityId,
    node: LocalNode,
    relay: Relay,
    gates: Vec<(GateAgent, watch::Receiver<Applied>)>,
    /// Document numbers of residents still holding a code, revoked one per round.
    residents: Vec<String>,
}

/// Waits until every gate's applied lockdown satisfies `done`; returns each gate's latency
/// from `since` to the first time it applied that lockdown (None: not within
/// [`ROUND_TIMEOUT`]).
async fn wait_gates(
    gates: &[(GateAgent, watch::Receiver<Applied>)],
    since: Instant,
    done: impl Fn(&Applied) -> bool + Copy + Send + Sync + 'static,
) -> Vec<Option<f64>> {
    let mut set = tokio::task::JoinSet::new();
    for (_, rx) in gates {
        let mut rx = rx.clone();
        set.spawn(async move {
            let deadline = since + ROUND_TIMEOUT;
            match tokio::time::timeout_at(deadline.into(), rx.wait_for(done)).await {
                Ok(Ok(a)) => Some(ms_since(since, a.lockdown_at)),
                _ => None,
            }
        });
    }
    set.join_all().await
}

/// From `since` to when the gate applied it (its own timestamp, not when this bench looked).
fn ms_since(since: Instant, at: Option<Instant>) -> f64 {
    at.map_or(0.0, |at| {
        at.saturating_duration_since(since).as_secs_f64() * 1e3
    })
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// What the bench runs: nodes, gates per node, rounds.
#[derive(Clone, Copy)]
pub struct Shape {
    pub nodes: usize,
    pub gates_per_node: usize,
    pub rounds: usize,
}

pub async fn run(shape: Shape, json: bool) -> Result<ExitCode> {
    let Shape {
        nodes,
        gates_per_node,
        rounds,
    } = shape;
    if nodes == 0 || gates_per_node == 0 || rounds == 0 {
        bail!("--nodes, --gates-per-node and --rounds must be at least 1");
    }
    let say = |line: String| {
        if !json {
            println!("{line}");
        }
    };
    let t_setup = Instant::now();
    let district = LocalDistrict::new()?;
    let hub_dir = district.create_hub("bench district")?;
    let hub = HubProcess::start(&hub_dir, &district.base.join("hub.log")).await?;
    let idhash = IdHashKey(read_secret(&hub_dir.idhash_key())?);
    let enrol_console = hub.console().await?;
    let mut communities = Vec::new();
    for n in 0..nodes {
        communities.push(
            Community::start(
                &district,
                &enrol_console,
                hub.addr,
                n,
                gates_per_node,
                rounds,
            )
            .await?,
        );
    }
    // A console left idle through a long setup on a loaded machine may have timed out (a
    // 200-node run lost it): the rounds get a fresh one.
    enrol_console.close().await;
    let total_gates = nodes * gates_per_node;
    for c in &communities {
        for (agent, _) in &c.gates {
            if !agent.wait_online(Duration::from_secs(10)).await {
                bail!("a gate of community {} did not come online", c.id);
            }
        }
    }
    say(format!(
        "lockdown bench: a hub (its own process, pid {}), {nodes} nodes, {total_gates} gate agents (real QUIC, feed, sled cache) on loopback; setup {:.1} s",
        hub.pid,
        t_setup.elapsed().as_secs_f64()
    ));
    let hub_console = hub.console().await?;
    let mut samples = Samples::default();
    for round in 0..rounds {
        // Lockdown (even rounds) or lift (odd), for every community at once.
        let locked = round % 2 == 0;
        let before = HubCost::now(&hub, &hub_console).await?;
        let applied_now = samples
            .lockdown_round(&hub_console, &communities, round, locked)
            .await?;
        samples
            .hub
            .add(&before, &HubCost::now(&hub, &hub_console).await?, nodes);
        samples.last_applied = applied_now;
        samples
            .revocation_round(&hub_console, &communities, &idhash, round)
            .await?;
        say(format!(
            "round {round}: {} {applied_now}/{total_gates} gates; revocation applied",
            if locked { "lockdown" } else { "lift" }
        ));
    }
    let one = one::run(&hub, &hub_console, &communities, rounds).await?;
    say(format!(
        "one community at a time: {rounds} lockdowns, other nodes received {} frames, {} bytes",
        one.others.frames, one.others.bytes
    ));
    let after_partition = partition(&hub_console, &mut communities[0]).await?;
    hub_console.close().await;
    let memory = hub.memory_mb();
    let figures = Figures::of(samples, one, memory, after_partition);
    figures.print(json, shape);
    for c in communities {
        drop(c.gates);
        c.node.stop().await;
    }
    hub.stop().await;
    Ok(if figures.missing == 0 && after_partition.is_some() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The hub's CPU time and replication counters at one moment.
pub(super) struct HubCost {
    cpu_ms: Option<u64>,
    frames_sent: u64,
    bytes_sent: u64,
}

impl HubCost {
    pub(super) async fn now(hub: &HubProcess, console: &NodeClient) -> Result<HubCost> {
        let sync = sync_counters(console).await?;
        Ok(HubCost {
            cpu_ms: hub.cpu_ms(),
            frames_sent: sync.frames_sent,
            bytes_sent: sync.bytes_sent,
        })
    }
}

/// What the hub spent on lockdowns, summed over rounds.
#[derive(Default)]
pub(super) struct HubSpent {
    /// Lockdowns (or lifts) issued.
    pub(super) changes: usize,
    /// CPU time; `None` when `/proc` could not be read.
    pub(super) cpu_ms: Option<u64>,
    pub(super) frames_sent: u64,
    pub(super) bytes_sent: u64,
}

impl HubSpent {
    /// Adds what the hub spent between `before` and `after`, for `changes` lockdowns.
    pub(super) fn add(&mut self, before: &HubCost, after: &HubCost, changes: usize) {
        self.changes += changes;
        self.cpu_ms = match (before.cpu_ms, after.cpu_ms) {
            (Some(b), Some(a)) => Some(self.cpu_ms.unwrap_or(0) + a.saturating_sub(b)),
            _ => None,
        };
        self.frames_sent += after.frames_sent.saturating_sub(before.frames_sent);
        self.bytes_sent += after.bytes_sent.saturating_sub(before.bytes_sent);
    }

    /// Per lockdown: CPU milliseconds, frames and bytes sent.
    pub(super) fn per_change(&self) -> (Option<f64>, f64, f64) {
        let n = self.changes.max(1) as f64;
        (
            self.cpu_ms.map(|ms| ms as f64 / n),
            self.frames_sent as f64 / n,
            self.bytes_sent as f64 / n,
        )
    }
}

impl Community {
    /// Community `n`: its node enrolled through `hub_console` and dialling the hub at
    /// `hub_addr` through a relay, `rounds` residents with a code (one revoked per round),
    /// `gates` gate agents.
    async fn start(
        district: &LocalDistrict,
        hub_console: &NodeClient,
        hub_addr: std::net::SocketAddr,
        n: usize,
        gates: usize,
        rounds: usize,
    ) -> Result<Community> {
        let id = FIRST_COMMUNITY + n as u32;
        let relay = Relay::start(hub_addr).await?;
        let node = district
            .start_enrolled_node(id, &format!("bench community {n}"), hub_console, relay.addr)
            .await?;
        let console = node.console().await?;
        let mut residents = Vec::new();
        for r in 0..rounds {
            let form = menjin_harness::person(
                "住户",
                r % 2 == 0,
                "19800101",
                (n * 1000 + r) as u32,
                "1",
                &format!("{}", 100 + r),
            );
            let number = form.document_number.clone();
            match console.request(&ConsoleRequest::Declare { form }).await? {
                Response::Declared(rcpt) if rcpt.code.is_some() => residents.push(number),
                other => bail!("declaring a bench resident: {other:?}"),
            }
        }
        let mut agents = Vec::new();
        for g in 0..gates {
            let (agent, _notices) = node.gate_agent(&console, &format!("g{g}")).await?;
            let rx = agent.applied();
            agents.push((agent, rx));
        }
        console.close().await;
        Ok(Community {
            id,
            node,
            relay,
            gates: agents,
            residents,
        })
    }
}

/// Latencies gathered over the rounds, in ms.
#[derive(Default)]
struct Samples {
    lockdown_ms: Vec<f64>,
    // Where the time goes: the hub's answer to the command, the node's feed update.
    answered_ms: Vec<f64>,
    node_ms: Vec<f64>,
    revocation_ms: Vec<f64>,
    /// Changes some gate did not apply within [`ROUND_TIMEOUT`].
    missing: usize,
    /// Gates that applied the last lockdown round's change.
    last_applied: usize,
    /// What the hub spent on the lockdown rounds.
    hub: HubSpent,
}

impl Samples {
    /// Locks every community down (or lifts it) at the hub's console; returns how many gates
    /// applied it.
    async fn lockdown_round(
        &mut self,
        hub_console: &NodeClient,
        communities: &[Community],
        round: usize,
        locked: bool,
    ) -> Result<usize> {
        // Each community's latency counts from its own command.
        let mut issued = Vec::with_capacity(communities.len());
        // Each node's feed update, timestamped by a task already waiting for it.
        let node_feeds: Vec<_> = communities
            .iter()
            .map(|c| {
                let mut rx = c.node.node.feed.subscribe();
                tokio::spawn(async move {
                    tokio::time::timeout(ROUND_TIMEOUT, rx.recv())
                        .await
                        .ok()
                        .and_then(Result::ok)
                        .map(|_| Instant::now())
                })
            })
            .collect();
        for c in communities {
            issued.push(Instant::now());
            set_lockdown(hub_console, c.id, locked, format!("bench round {round}")).await?;
            self.answered_ms
                .push(issued.last().expect("pushed").elapsed().as_secs_f64() * 1e3);
        }
        for (task, since) in node_feeds.into_iter().zip(&issued) {
            if let Ok(Some(at)) = task.await {
                self.node_ms.push(ms_since(*since, Some(at)));
            }
        }
        let mut applied_now = 0;
        for (c, since) in communities.iter().zip(issued) {
            let lat = wait_gates(&c.gates, since, move |a| a.lockdown.locked == locked).await;
            self.missing += lat.iter().filter(|l| l.is_none()).count();
            applied_now += lat.iter().filter(|l| l.is_some()).count();
            self.lockdown_ms.extend(lat.into_iter().flatten());
        }
        Ok(applied_now)
    }

    /// A revocation at every community: the district health list flags one resident each.
    async fn revocation_round(
        &mut self,
        hub_console: &NodeClient,
        communities: &[Community],
        idhash: &IdHashKey,
        round: usize,
    ) -> Result<()> {
        let before: Vec<Vec<u64>> = communities
            .iter()
            .map(|c| c.gates.iter().map(|(_, rx)| rx.borrow().version).collect())
            .collect();
        let flags: Vec<HealthEntry> = communities
            .iter()
            .map(|c| HealthEntry {
                id_hash: idhash.hash(DocumentType::ResidentId, &c.residents[round]),
                status: "central_quarantine".into(),
            })
            .collect();
        let since = Instant::now();
        match hub_console
            .request(&HubRequest::SetHealth { flags })
            .await?
        {
            Response::Done(_) => {}
            other => bail!("hub health list: {other:?}"),
        }
        for (c, before) in communities.iter().zip(before) {
            for ((_, rx), v0) in c.gates.iter().zip(before) {
                let mut rx = rx.clone();
                let deadline = since + ROUND_TIMEOUT;
                match tokio::time::timeout_at(deadline.into(), rx.wait_for(|a| a.version > v0))
                    .await
                {
                    Ok(Ok(a)) => self.revocation_ms.push(ms_since(since, a.at)),
                    _ => self.missing += 1,
                }
            }
        }
        Ok(())
    }
}

pub(super) async fn set_lockdown(
    hub_console: &NodeClient,
    community: CommunityId,
    locked: bool,
    reason: String,
) -> Result<()> {
    match hub_console
        .request(&HubRequest::SetLockdown {
            community,
            locked,
            reason,
            by: "bench".into(),
        })
        .await?
    {
        Response::Done(_) => Ok(()),
        other => bail!("hub lockdown: {other:?}"),
    }
}

/// Partition: the node is cut off from the hub while its community's lockdown changes.
/// Returns how long after the link's return the last of its gates applied it (None: not
/// within [`ROUND_TIMEOUT`]).
async fn partition(hub_console: &NodeClient, cut: &mut Community) -> Result<Option<f64>> {
    let locked = !cut.gates[0].1.borrow().lockdown.locked;
    cut.relay.set_cut(true);
    let cut_at = Instant::now();
    set_lockdown(
        hub_console,
        cut.id,
        locked,
        "issued during the partition".into(),
    )
    .await?;
    tokio::time::sleep(PARTITION.saturating_sub(cut_at.elapsed())).await;
    let reached_early = cut
        .gates
        .iter()
        .filter(|(_, rx)| rx.borrow().lockdown.locked == locked)
        .count();
    cut.relay.set_cut(false);
    let restored = Instant::now();
    let lat = wait_gates(&cut.gates, restored, move |a| a.lockdown.locked == locked).await;
    let after_partition = lat
        .iter()
        .copied()
        .collect::<Option<Vec<f64>>>()
        .map(|v| v.into_iter().fold(0.0, f64::max));
    if reached_early > 0 {
        bail!(
            "{reached_early} gates applied a lockdown while their node was cut off: the relay did not cut"
        );
    }
    Ok(after_partition)
}

/// The samples, sorted, and the figures printed from them.
struct Figures {
    lockdown_ms: Vec<f64>,
    answered_ms: Vec<f64>,
    node_ms: Vec<f64>,
    revocation_ms: Vec<f64>,
    /// Lockdown and revocation samples together.
    all: Vec<f64>,
    missing: usize,
    last_applied: usize,
    after_partition: Option<f64>,
    hub: HubSpent,
    /// The hub's resident memory at the end and at its peak, MB.
    memory: Option<(f64, f64)>,
    one: one::OneFigures,
}

/// The targets of issue 15 at 200 nodes × 2 gates, printed beside the figures.
const TARGET_P99_MS: f64 = 300.0;
const TARGET_HUB_ANSWER_P99_MS: f64 = 20.0;
const TARGET_AFTER_PARTITION_MS: f64 = 2_000.0;

pub(super) fn met(ok: bool) -> &'static str {
    if ok { "met" } else { "NOT met" }
}

impl Figures {
    fn of(
        mut s: Samples,
        one: one::OneFigures,
        memory: Option<(f64, f64)>,
        after_partition: Option<f64>,
    ) -> Figures {
        s.lockdown_ms.sort_by(f64::total_cmp);
        s.answered_ms.sort_by(f64::total_cmp);
        s.node_ms.sort_by(f64::total_cmp);
        s.revocation_ms.sort_by(f64::total_cmp);
        let mut all = s.lockdown_ms.clone();
        all.extend(&s.revocation_ms);
        all.sort_by(f64::total_cmp);
        Figures {
            lockdown_ms: s.lockdown_ms,
            answered_ms: s.answered_ms,
            node_ms: s.node_ms,
            revocation_ms: s.revocation_ms,
            all,
            missing: s.missing + one.missing,
            last_applied: s.last_applied,
            after_partition,
            hub: s.hub,
            memory,
            one,
        }
    }

    fn print(&self, json: bool, shape: Shape) {
        if json {
            self.print_json(shape);
        } else {
            self.print_text(shape);
        }
    }

    fn print_json(&self, shape: Shape) {
        let (hub_cpu, hub_frames, hub_bytes) = self.hub.per_change();
        crate::json::print(&crate::json::figures::BenchLockdown {
            after_partition_ms: self.after_partition,
            applied: self.last_applied,
            gates: shape.nodes * shape.gates_per_node,
            gates_per_node: shape.gates_per_node,
            hub_answer_p50_ms: percentile(&self.answered_ms, 0.5),
            hub_answer_p99_ms: percentile(&self.answered_ms, 0.99),
            hub_cpu_ms_per_lockdown: hub_cpu,
            hub_peak_rss_mb: self.memory.map(|m| m.1),
            hub_rss_mb: self.memory.map(|m| m.0),
            hub_sync_bytes_per_lockdown: hub_bytes,
            hub_sync_frames_per_lockdown: hub_frames,
            lockdown_p50_ms: percentile(&self.lockdown_ms, 0.5),
            lockdown_p99_ms: percentile(&self.lockdown_ms, 0.99),
            max_ms: self.all.last().copied().unwrap_or(f64::NAN),
            missing: self.missing,
            node_has_it_p50_ms: percentile(&self.node_ms, 0.5),
            nodes: shape.nodes,
            one_community: self.one.json(),
            p50_ms: percentile(&self.all, 0.5),
            p99_ms: percentile(&self.all, 0.99),
            partition_ms: PARTITION.as_millis() as u64,
            revocation_p50_ms: percentile(&self.revocation_ms, 0.5),
            revocation_p99_ms: percentile(&self.revocation_ms, 0.99),
            rounds: shape.rounds,
            samples: self.all.len(),
        });
    }

    fn print_text(&self, shape: Shape) {
        let Shape {
            nodes,
            gates_per_node,
            rounds,
        } = shape;
        let (p50, p99) = (percentile(&self.all, 0.5), percentile(&self.all, 0.99));
        let max = self.all.last().copied().unwrap_or(f64::NAN);
        let total_gates = nodes * gates_per_node;
        println!(
            "command → gate first applied, {} samples over {rounds} rounds ({} lockdown/lift, {} revocation): p50 {p50:.1} ms, p99 {p99:.1} ms, max {max:.1} ms",
            self.all.len(),
            self.lockdown_ms.len(),
            self.revocation_ms.len(),
        );
        println!("  {:<44} {:>9} {:>9}   target", "", "p50", "p99");
        let row = |what: &str, v: &[f64], target: f64| {
            let p99 = percentile(v, 0.99);
            println!(
                "  {what:<44} {:>6.1} ms {:>6.1} ms   p99 ≤ {target:.0} ms: {}",
                percentile(v, 0.5),
                p99,
                met(p99 <= target)
            );
        };
        row(
            "lockdown, command → every gate",
            &self.lockdown_ms,
            TARGET_P99_MS,
        );
        row(
            "revocation, health list → every gate",
            &self.revocation_ms,
            TARGET_P99_MS,
        );
        row(
            "the hub answers the command",
            &self.answered_ms,
            TARGET_HUB_ANSWER_P99_MS,
        );
        println!(
            "  {:<44} {:>6.1} ms {:>6.1} ms",
            "the node has the lockdown",
            percentile(&self.node_ms, 0.5),
            percentile(&self.node_ms, 0.99)
        );
        self.print_hub();
        self.one.print();
        println!(
            "applied: {} of {total_gates} gates in the last lockdown round; {} changes missed in all",
            self.last_applied, self.missing
        );
        match self.after_partition {
            Some(ms) => println!(
                "after a {} s partition: the lockdown issued during it reached all {gates_per_node} gates of the cut node {ms:.0} ms after the link returned [target ≤ {TARGET_AFTER_PARTITION_MS:.0} ms: {}]",
                PARTITION.as_secs(),
                met(ms <= TARGET_AFTER_PARTITION_MS)
            ),
            None => println!(
                "after the partition: the lockdown did NOT reach every gate within {ROUND_TIMEOUT:?}"
            ),
        }
    }

    fn print_hub(&self) {
        let (cpu, frames, bytes) = self.hub.per_change();
        println!(
            "hub (own process), per lockdown of all communities at once: CPU {}, {frames:.1} replication frames, {bytes:.0} bytes sent",
            cpu.map_or("n/a".into(), |ms| format!("{ms:.2} ms"))
        );
        if let Some((rss, peak)) = self.memory {
            println!("hub memory: RSS {rss:.0} MB, peak {peak:.0} MB");
        }
    }
}
