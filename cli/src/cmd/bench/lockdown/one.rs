//! The `one` phase of `menjin bench lockdown`: one community locked down (or lifted) per
//! round, and what that cost every *other* node: replication frames and bytes it received
//! from the hub, time it spent taking them in (`LinkStatus::sync_busy_ns`: merging,
//! flushing, refreshing views; the nodes share this process, so `/proc` cannot split them),
//! and feed updates its gates applied. The replica's periodic summaries reach every node
//! whatever happens, so the same counters over an idle window of the same length are
//! reported beside them: what the change itself cost is the difference.

use std::time::{Duration, Instant};

use anyhow::Result;
use menjin_net::client::NodeClient;

use super::{Community, HubCost, HubSpent, percentile, set_lockdown, wait_gates};
use crate::cmd::bench::hub_process::HubProcess;

/// After the locked community's gates have it, how long the others are watched for
/// whatever the change may still send them (their links run beside the locked one's).
const SETTLE: Duration = Duration::from_millis(300);

/// One node's counters, or their sum over nodes and rounds.
#[derive(Clone, Copy, Default)]
pub(super) struct NodeCost {
    pub(super) frames: u64,
    pub(super) bytes: u64,
    busy_ns: u64,
    /// Feed versions its gates applied (summed over its gates).
    gate_updates: u64,
}

impl NodeCost {
    fn of(c: &Community) -> NodeCost {
        let link = c.node.node.hub_link();
        let (frames, bytes) = link.sync_received();
        NodeCost {
            frames,
            bytes,
            busy_ns: link.sync_busy_ns(),
            gate_updates: c.gates.iter().map(|(_, rx)| rx.borrow().version).sum(),
        }
    }

    fn since(self, before: NodeCost) -> NodeCost {
        NodeCost {
            frames: self.frames.saturating_sub(before.frames),
            bytes: self.bytes.saturating_sub(before.bytes),
            busy_ns: self.busy_ns.saturating_sub(before.busy_ns),
            gate_updates: self.gate_updates.saturating_sub(before.gate_updates),
        }
    }

    fn add(&mut self, d: NodeCost) {
        self.frames += d.frames;
        self.bytes += d.bytes;
        self.busy_ns += d.busy_ns;
        self.gate_updates += d.gate_updates;
    }

    /// Per node, for a sum over `n` nodes.
    fn per(self, n: usize) -> (f64, f64, f64) {
        let n = n.max(1) as f64;
        (
            self.frames as f64 / n,
            self.bytes as f64 / n,
            self.busy_ns as f64 / 1e3 / n,
        )
    }
}

/// What the phase measured.
pub(super) struct OneFigures {
    rounds: usize,
    /// Command → each gate of the locked community first applied it, sorted, ms.
    lockdown_ms: Vec<f64>,
    /// Changes a gate of the locked community did not apply in time.
    pub(super) missing: usize,
    hub: HubSpent,
    /// The locked community's node, summed over the rounds.
    locked: NodeCost,
    /// Every other node, summed over the rounds.
    pub(super) others: NodeCost,
    other_nodes: usize,
    /// Every node over an idle window as long as the phase.
    idle: NodeCost,
    nodes: usize,
    window: Duration,
}

/// Runs `rounds` single-community lockdowns (community `round % n`), then the idle window.
pub(super) async fn run(
    hub: &HubProcess,
    console: &NodeClient,
    communities: &[Community],
    rounds: usize,
) -> Result<OneFigures> {
    let mut f = OneFigures {
        rounds,
        lockdown_ms: Vec::with_capacity(rounds),
        missing: 0,
        hub: HubSpent::default(),
        locked: NodeCost::default(),
        others: NodeCost::default(),
        other_nodes: communities.len() - 1,
        idle: NodeCost::default(),
        nodes: communities.len(),
        window: Duration::ZERO,
    };
    let started = Instant::now();
    for round in 0..rounds {
        let k = round % communities.len();
        let c = &communities[k];
        let locked = !c.gates[0].1.borrow().lockdown.locked;
        let before: Vec<NodeCost> = communities.iter().map(NodeCost::of).collect();
        let hub_before = HubCost::now(hub, console).await?;
        let since = Instant::now();
        set_lockdown(
            console,
            c.id,
            locked,
            format!("bench: one community, round {round}"),
        )
        .await?;
        let lat = wait_gates(&c.gates, since, move |a| a.lockdown.locked == locked).await;
        f.missing += lat.iter().filter(|l| l.is_none()).count();
        f.lockdown_ms.extend(lat.into_iter().flatten());
        tokio::time::sleep(SETTLE).await;
        f.hub
            .add(&hub_before, &HubCost::now(hub, console).await?, 1);
        for (i, (c, b)) in communities.iter().zip(before).enumerate() {
            let d = NodeCost::of(c).since(b);
            if i == k {
                f.locked.add(d);
            } else {
                f.others.add(d);
            }
        }
    }
    f.window = started.elapsed();
    let before: Vec<NodeCost> = communities.iter().map(NodeCost::of).collect();
    tokio::time::sleep(f.window).await;
    for (c, b) in communities.iter().zip(before) {
        f.idle.add(NodeCost::of(c).since(b));
    }
    f.lockdown_ms.sort_by(f64::total_cmp);
    Ok(f)
}

impl OneFigures {
    pub(super) fn json(&self) -> crate::json::figures::BenchLockdownOne {
        let (hub_cpu, hub_frames, hub_bytes) = self.hub.per_change();
        let (o_frames, o_bytes, o_busy) = self.others.per(self.other_nodes);
        let (i_frames, i_bytes, i_busy) = self.idle.per(self.nodes);
        let n = self.rounds.max(1) as u64;
        crate::json::figures::BenchLockdownOne {
            hub_cpu_ms_per_lockdown: hub_cpu,
            hub_sync_bytes_per_lockdown: hub_bytes,
            hub_sync_frames_per_lockdown: hub_frames,
            idle_node_busy_us: i_busy,
            idle_node_bytes: i_bytes,
            idle_node_frames: i_frames,
            locked_node_bytes_per_lockdown: self.locked.bytes / n,
            locked_node_frames_per_lockdown: self.locked.frames / n,
            lockdown_p50_ms: percentile(&self.lockdown_ms, 0.5),
            lockdown_p99_ms: percentile(&self.lockdown_ms, 0.99),
            missing: self.missing,
            other_gate_updates: self.others.gate_updates,
            other_node_busy_us: o_busy,
            other_node_bytes: o_bytes,
            other_node_frames: o_frames,
            other_nodes: self.other_nodes,
            others_bytes: self.others.bytes,
            others_frames: self.others.frames,
            rounds: self.rounds,
            window_ms: self.window.as_millis() as u64,
        }
    }

    pub(super) fn print(&self) {
        let (hub_cpu, hub_frames, hub_bytes) = self.hub.per_change();
        let (o_frames, o_bytes, o_busy) = self.others.per(self.other_nodes);
        let (i_frames, i_bytes, i_busy) = self.idle.per(self.nodes);
        let n = self.rounds.max(1) as u64;
        println!(
            "one community at a time, {} lockdowns: its gates p50 {:.1} ms p99 {:.1} ms; its node received {} frames, {} bytes per lockdown; the hub {} CPU, {hub_frames:.1} frames, {hub_bytes:.0} bytes sent per lockdown",
            self.rounds,
            percentile(&self.lockdown_ms, 0.5),
            percentile(&self.lockdown_ms, 0.99),
            self.locked.frames / n,
            self.locked.bytes / n,
            hub_cpu.map_or("n/a".into(), |ms| format!("{ms:.2} ms"))
        );
        println!(
            "  each of the {} other nodes over the {:.1} s phase: {o_frames:.1} frames, {o_bytes:.0} bytes, {o_busy:.0} µs taking them in; {} feed updates at their gates in all [target: 0 bytes of policy, no work]",
            self.other_nodes,
            self.window.as_secs_f64(),
            self.others.gate_updates
        );
        println!(
            "  each node over an idle window as long (summaries only): {i_frames:.1} frames, {i_bytes:.0} bytes, {i_busy:.0} µs"
        );
    }
}
