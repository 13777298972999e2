//! After the faults: everything mended, then the checks the soak reports: every
//! acknowledged event at the hub exactly once, no revoked code let in, no gate that missed
//! the lockdown.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::Serialize;
use serde_json::Value;

use super::district::{Acked, District, Gate, Reply, menjin};
use super::faults::{converged_within, scan_line, set_lockdown};
use crate::cmd::bench::relay::Line;

/// Every process back and every gate online by then, and the hub caught up after that.
const SETTLE: Duration = Duration::from_secs(60);
/// A gate that has not applied the final lockdown by then missed it.
const LOCKDOWN_BOUND: Duration = Duration::from_secs(10);
/// Revoked codes tried at each gate at the end (the latest ones).
const REVOKED_TRIED_MAX: usize = 16;

#[derive(Default, Serialize)]
pub struct Outcome {
    pub converged: bool,
    pub acknowledged: u64,
    pub acknowledged_offline: u64,
    pub at_hub_once: u64,
    pub missing: u64,
    pub duplicated: u64,
    pub mismatched: u64,
    /// Online events the hub holds under another number than the guard saw: logged by a
    /// node restored from a backup before it reached the hub, renumbered after the hub's.
    pub renumbered: u64,
    pub hub_events: u64,
    /// Events the hub holds that no guard saw (a gate killed before it printed, an online
    /// check that timed out into an offline decision): allowed, for information.
    pub hub_events_unacknowledged: u64,
    pub revoked_codes: u64,
    pub revoked_checks: u64,
    pub revoked_allowed: u64,
    pub gates_missed_lockdown: u64,
    pub final_lockdown_ms_max: u64,
}

/// Starts whatever is down, waits until every gate is online and the hub holds what every
/// node holds.
pub async fn settle(d: &District) -> Result<bool> {
    d.hub.start(&d.env).await?;
    for c in &d.communities {
        c.node.start(&d.env).await?;
        c.uplink.set(Line::Pass);
        for gate in &c.gates {
            gate.relay.set(Line::Pass);
            let mut run = gate.run.lock().await;
            if run.is_down() {
                gate.start(&mut run, &d.env)?;
            }
        }
    }
    let deadline = Instant::now() + SETTLE;
    while !d
        .gates()
        .all(|g| g.state.online.load(Ordering::SeqCst) && g.state.buffer_empty())
    {
        if Instant::now() > deadline {
            return Ok(false);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for c in &d.communities {
        let left = deadline.saturating_duration_since(Instant::now());
        if !converged_within(d, c, left.max(Duration::from_secs(5))).await {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Every revoked code at every gate of its community, first through the node, then with
/// the gates cut off (from their caches): how many were tried and how many let in.
pub async fn revoked(d: &District) -> (u64, u64, u64) {
    let (mut codes, mut checks, mut allowed) = (0, 0, 0);
    for offline in [false, true] {
        for c in &d.communities {
            let revoked: Vec<String> = c
                .codes
                .lock()
                .expect("codes")
                .iter()
                .filter(|x| x.revoked.is_some())
                .map(|x| x.text.clone())
                .collect();
            if !offline {
                codes += revoked.len() as u64;
            }
            let tried = &revoked[revoked.len().saturating_sub(REVOKED_TRIED_MAX)..];
            for gate in &c.gates {
                gate.relay.set(if offline { Line::Cut } else { Line::Pass });
            }
            let mut set = tokio::task::JoinSet::new();
            for gate in c.gates.clone() {
                let tried = tried.to_vec();
                set.spawn(async move {
                    let mut run = gate.run.lock().await;
                    let mut n = (0, 0);
                    for code in &tried {
                        let r = Gate::scan(&mut run, &[(scan_line(365, code), 365)], false).await;
                        n.0 += 1;
                        if let Some(Reply::Decided { allowed: true, .. }) = r {
                            tracing::error!(
                                gate = gate.name,
                                offline,
                                "revoked code let in at the end"
                            );
                            n.1 += 1;
                        }
                    }
                    n
                });
            }
            while let Some(Ok((tried, let_in))) = set.join_next().await {
                checks += tried;
                allowed += let_in;
            }
            for gate in &c.gates {
                gate.relay.set(Line::Pass);
            }
        }
    }
    (codes, checks, allowed)
}

/// Locks every community down (lifting first where the soak left it locked), then waits
/// for each gate's notice of it and tries a vehicle there: the gates that did not apply it,
/// and the slowest gate's delay.
pub async fn final_lockdown(d: &District, seed: u64) -> Result<(u64, u64)> {
    let reason = format!("soak {seed} final");
    let (mut missed, mut slowest) = (0u64, 0u64);
    for c in &d.communities {
        if c.locked.load(Ordering::SeqCst) {
            set_lockdown(d, c, false, "soak final lift").await?;
        }
        let start = Instant::now();
        set_lockdown(d, c, true, &reason).await?;
        let code = c
            .codes
            .lock()
            .expect("codes")
            .iter()
            .find(|x| x.revoked.is_none())
            .map(|x| x.text.clone())
            .context("no active code left")?;
        for gate in &c.gates {
            let at = applied(gate, &reason, start + LOCKDOWN_BOUND).await;
            let mut run = gate.run.lock().await;
            let lines = [
                ("CAR SOAK1".to_string(), 0),
                (scan_line(365, &code), 365),
                ("END".to_string(), 0),
            ];
            let vehicle = Gate::scan(&mut run, &lines, true).await;
            let refused = matches!(vehicle, Some(Reply::Vehicle { allowed: false }));
            match at {
                Some(ms) if refused => slowest = slowest.max(ms),
                _ => {
                    tracing::error!(
                        gate = gate.name,
                        ?at,
                        refused,
                        "gate missed the final lockdown"
                    );
                    missed += 1;
                }
            }
        }
    }
    Ok((missed, slowest))
}

/// Milliseconds from the command until the gate printed the lockdown with `reason`.
async fn applied(gate: &Gate, reason: &str, deadline: Instant) -> Option<u64> {
    let start = deadline - LOCKDOWN_BOUND;
    loop {
        let seen = gate
            .state
            .lockdowns
            .lock()
            .ok()?
            .iter()
            .find(|(locked, _, r, at)| *locked && r == reason && *at >= start)
            .map(|(.., at)| at.duration_since(start).as_millis() as u64);
        if seen.is_some() {
            return seen;
        }
        if Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The hub's log of community `c`, every page.
async fn hub_log(d: &District, c: u32) -> Result<Vec<Value>> {
    let (hub, id) = (d.hub.dir.display().to_string(), c.to_string());
    let mut out = Vec::new();
    let mut after = 0u64;
    loop {
        let after_s = after.to_string();
        let page = menjin(
            &d.env.exe,
            &[
                "hub",
                "log",
                "--dir",
                &hub,
                "--community",
                &id,
                "--after-seq",
                &after_s,
            ]
            .into_iter()
            .chain(["--limit", "10000"])
            .collect::<Vec<_>>(),
        )
        .await?;
        let page = page.as_array().cloned().unwrap_or_default();
        let Some(last) = page.last() else {
            return Ok(out);
        };
        after = last["event"]["seq"].as_u64().context("event without seq")?;
        out.extend(page.into_iter().map(|e| e["event"].clone()));
    }
}

/// Matches every acknowledged event against the hub's log.
pub async fn exactly_once(d: &District, out: &mut Outcome) -> Result<()> {
    let acked: Vec<Acked> = d
        .gates()
        .flat_map(|g| g.state.acked.lock().expect("acked").clone())
        .collect();
    // Online events by (community, number); offline ones by gate, gate_seq and decision time.
    let mut online: HashMap<(u32, u64), Value> = HashMap::new();
    let mut offline: HashMap<(String, u64, u64), u64> = HashMap::new();
    for c in &d.communities {
        for e in hub_log(d, c.id).await? {
            out.hub_events += 1;
            if e["offline"].is_object() {
                let key = (
                    e["gate"].as_str().unwrap_or("").to_string(),
                    e["offline"]["gate_seq"].as_u64().unwrap_or(0),
                    e["offline"]["decided_ms"].as_u64().unwrap_or(0),
                );
                *offline.entry(key).or_default() += 1;
            } else {
                online.insert((c.id, e["seq"].as_u64().unwrap_or(0)), e);
            }
        }
    }
    out.acknowledged = acked.len() as u64;
    // For a failed run's post-mortem, beside the logs: what the guards saw.
    let lines: Vec<String> = acked
        .iter()
        .filter_map(|a| serde_json::to_string(a).ok())
        .collect();
    let _ = std::fs::write(d.env.dir.join("acknowledged.jsonl"), lines.join("\n"));
    for a in acked.iter().filter(|a| a.offline) {
        out.acknowledged_offline += 1;
        match offline.get(&(a.gate.clone(), a.gate_seq, a.node_time_ms)) {
            None => missing(out, a),
            Some(1) => out.at_hub_once += 1,
            Some(_) => out.duplicated += 1,
        }
    }
    match_online(&acked, &mut online, out);
    out.hub_events_unacknowledged = out
        .hub_events
        .saturating_sub(out.at_hub_once + out.duplicated);
    Ok(())
}

/// An online event is found under the number the guard saw, or else (a node restored from a
/// backup renumbers the events it logged before it reached the hub, `GateLog::rebase`,
/// keeping their times) as the one event of its gate, time and content left unclaimed.
/// Left over: a twin of a found event is a duplicate; the rest no guard saw.
fn match_online(acked: &[Acked], online: &mut HashMap<(u32, u64), Value>, out: &mut Outcome) {
    let content = |e: &Value| {
        (
            e["gate"].as_str().unwrap_or("").to_string(),
            e["time_ms"].as_u64().unwrap_or(0),
            e["temperature_dc"].as_i64().unwrap_or(0),
            e["reason"].as_str().unwrap_or("").to_string(),
            e["cred"].as_str().unwrap_or("").to_string(),
        )
    };
    let mut found = Vec::new();
    let mut later = Vec::new();
    for a in acked.iter().filter(|a| !a.offline) {
        match online.get(&(a.community, a.seq)) {
            Some(e) if same(a, e) && e["time_ms"].as_u64() == Some(a.node_time_ms) => {
                found.push((a.community, content(e)));
                online.remove(&(a.community, a.seq));
                out.at_hub_once += 1;
            }
            _ => later.push(a),
        }
    }
    for a in later {
        let twin = online
            .iter()
            .find(|((c, _), e)| {
                *c == a.community && same(a, e) && e["time_ms"].as_u64() == Some(a.node_time_ms)
            })
            .map(|(k, _)| *k);
        match twin {
            Some(k) => {
                let e = online.remove(&k).expect("found");
                found.push((a.community, content(&e)));
                out.at_hub_once += 1;
                out.renumbered += 1;
            }
            None if online.contains_key(&(a.community, a.seq)) => {
                tracing::error!(?a, hub = %online[&(a.community, a.seq)], "the hub holds another event under this number");
                out.mismatched += 1;
            }
            None => missing(out, a),
        }
    }
    let found: std::collections::HashSet<_> = found.into_iter().collect();
    for ((c, seq), e) in online.iter() {
        if found.contains(&(*c, content(e))) {
            tracing::error!(
                community = c,
                seq,
                "an acknowledged event is at the hub twice"
            );
            out.duplicated += 1;
        }
    }
}

fn missing(out: &mut Outcome, a: &Acked) {
    tracing::error!(?a, "acknowledged event missing at the hub");
    out.missing += 1;
}

fn same(a: &Acked, e: &Value) -> bool {
    e["gate"].as_str() == Some(a.gate.as_str())
        && e["allowed"].as_bool() == Some(a.allowed)
        && e["reason"].as_str() == Some(a.reason.as_str())
        && a.temperature_dc
            .is_none_or(|t| e["temperature_dc"].as_i64() == Some(i64::from(t)))
}
