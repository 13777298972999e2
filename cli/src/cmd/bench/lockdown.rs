//! `menjin bench lockdown`: a hub, N nodes and N×G gate agents (the real gate device: QUIC
//! connection, feed subscription, sled cache) on loopback, each node dialling the hub through
//! a UDP relay this bench can cut. Lockdowns and revocations are issued at the hub's console,
//! over and over, and each gate's latency is measured from the command to the moment that gate
//! has applied the change to its cache and flushed it (its acknowledgment leaves then).
//! Then one node is cut off from the hub, a lockdown is issued, the link is restored, and the
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

use menjin_harness::{LocalDistrict, LocalHub, LocalNode};

use super::relay::Relay;

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

/// Waits until every gate's applied state satisfies `done`; returns each gate's latency
/// from `since` (None: not within [`ROUND_TIMEOUT`]).
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
                Ok(Ok(a)) => Some(ms_since(since, a.at)),
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

pub async fn run(
    nodes: usize,
    gates_per_node: usize,
    rounds: usize,
    json: bool,
) -> Result<ExitCode> {
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
    let hub = district.start_hub("bench district")?;
    let idhash = IdHashKey(read_secret(&hub.dir.idhash_key())?);
    let mut communities = Vec::new();
    for n in 0..nodes {
        communities.push(Community::start(&district, &hub, n, gates_per_node, rounds).await?);
    }
    let total_gates = nodes * gates_per_node;
    for c in &communities {
        for (agent, _) in &c.gates {
            if !agent.wait_online(Duration::from_secs(10)).await {
                bail!("a gate of community {} did not come online", c.id);
            }
        }
    }
    say(format!(
        "lockdown bench: a hub, {nodes} nodes, {total_gates} gate agents (real QUIC, feed, sled cache) on loopback; setup {:.1} s",
        t_setup.elapsed().as_secs_f64()
    ));
    let hub_console = hub.console().await?;
    let mut samples = Samples::default();
    for round in 0..rounds {
        // Lockdown (even rounds) or lift (odd), for every community at once.
        let locked = round % 2 == 0;
        let applied_now = samples
            .lockdown_round(&hub_console, &communities, round, locked)
            .await?;
        samples.last_applied = applied_now;
        samples
            .revocation_round(&hub_console, &communities, &idhash, round)
            .await?;
        say(format!(
            "round {round}: {} {applied_now}/{total_gates} gates; revocation applied",
            if locked { "lockdown" } else { "lift" }
        ));
    }
    let after_partition = partition(&hub_console, &mut communities[0]).await?;
    hub_console.close().await;
    let figures = Figures::of(samples, after_partition);
    figures.print(json, nodes, gates_per_node, rounds);
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

impl Community {
    /// Community `n`: its node dialling the hub through a relay, `rounds` residents with a
    /// code (one revoked per round), `gates` gate agents.
    async fn start(
        district: &LocalDistrict,
        hub: &LocalHub,
        n: usize,
        gates: usize,
        rounds: usize,
    ) -> Result<Community> {
        let id = FIRST_COMMUNITY + n as u32;
        let relay = Relay::start(hub.addr).await?;
        let node = district
            .start_linked_node_via(id, &format!("bench community {n}"), hub, relay.addr)
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

async fn set_lockdown(
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
}

impl Figures {
    fn of(mut s: Samples, after_partition: Option<f64>) -> Figures {
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
            missing: s.missing,
            last_applied: s.last_applied,
            after_partition,
        }
    }

    fn print(&self, json: bool, nodes: usize, gates_per_node: usize, rounds: usize) {
        let p50 = percentile(&self.all, 0.5);
        let p99 = percentile(&self.all, 0.99);
        let max = self.all.last().copied().unwrap_or(f64::NAN);
        let total_gates = nodes * gates_per_node;
        if json {
            crate::json::print(&crate::json::figures::BenchLockdown {
                after_partition_ms: self.after_partition,
                applied: self.last_applied,
                gates: total_gates,
                gates_per_node,
                hub_answer_p50_ms: percentile(&self.answered_ms, 0.5),
                lockdown_p50_ms: percentile(&self.lockdown_ms, 0.5),
                lockdown_p99_ms: percentile(&self.lockdown_ms, 0.99),
                max_ms: max,
                missing: self.missing,
                node_has_it_p50_ms: percentile(&self.node_ms, 0.5),
                nodes,
                p50_ms: p50,
                p99_ms: p99,
                partition_ms: PARTITION.as_millis() as u64,
                revocation_p50_ms: percentile(&self.revocation_ms, 0.5),
                revocation_p99_ms: percentile(&self.revocation_ms, 0.99),
                rounds,
                samples: self.all.len(),
            });
            return;
        }
        println!(
            "command → gate applied, {} samples over {rounds} rounds ({} lockdown/lift, {} revocation): p50 {p50:.1} ms, p99 {p99:.1} ms, max {max:.1} ms [target p99 ≤ 300 ms: {}]",
            self.all.len(),
            self.lockdown_ms.len(),
            self.revocation_ms.len(),
            if p99 <= 300.0 { "met" } else { "NOT met" }
        );
        println!(
            "  lockdown p50 {:.1} ms p99 {:.1} ms; revocation (hub health list → node revokes → gates) p50 {:.1} ms p99 {:.1} ms",
            percentile(&self.lockdown_ms, 0.5),
            percentile(&self.lockdown_ms, 0.99),
            percentile(&self.revocation_ms, 0.5),
            percentile(&self.revocation_ms, 0.99)
        );
        println!(
            "  where a lockdown's time goes: hub answers the command p50 {:.1} ms p99 {:.1} ms; the node has it p50 {:.1} ms p99 {:.1} ms",
            percentile(&self.answered_ms, 0.5),
            percentile(&self.answered_ms, 0.99),
            percentile(&self.node_ms, 0.5),
            percentile(&self.node_ms, 0.99)
        );
        println!(
            "applied: {} of {total_gates} gates in the last lockdown round; {} changes missed in all",
            self.last_applied, self.missing
        );
        match self.after_partition {
            Some(ms) => println!(
                "after a {} s partition: the lockdown issued during it reached all {} gates of the cut node {ms:.0} ms after the link returned [target ≤ 2000 ms: {}]",
                PARTITION.as_secs(),
                gates_per_node,
                if ms <= 2000.0 { "met" } else { "NOT met" }
            ),
            None => println!(
                "after the partition: the lockdown did NOT reach every gate within {ROUND_TIMEOUT:?}"
            ),
        }
    }
}
