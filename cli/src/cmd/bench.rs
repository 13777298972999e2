//! `menjin bench ...`: figures, never pass/fail on a timing. A run fails only when something
//! is functionally wrong (a check errors, a valid code is denied, the gate log misses events).

mod hub;
mod hub_process;
mod lockdown;
mod relay;
mod soak;
mod sync;
mod web;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use menjin_proto::wire::{ConsoleRequest, Direction, Response};
use tokio::sync::Barrier;
use tokio::task::JoinSet;

use menjin_harness::person;
use menjin_harness::{LocalDistrict, LocalGate};

const COMMUNITY: u32 = 440_304_009;
/// Residents declared before the run: enough that codes are spread over the roster view.
const RESIDENTS: usize = 2_000;
/// Declarations in flight at once during setup (the node serialises them anyway; this only
/// hides the round trips).
const DECLARE_CONCURRENCY: usize = 8;
/// Checks per gate before the measured phase: connections, caches and the log writer warm up.
const WARMUP_CHECKS_PER_GATE: usize = 50;
/// 36.5 °C: no fever.
const TEMPERATURE_DC: i16 = 365;
/// Bounds that keep a mistyped command from running for hours or exhausting memory.
const GATES_MAX: usize = 1_000;
const CHECKS_MAX: usize = 10_000_000;

#[derive(Subcommand)]
pub enum BenchCmd {
    /// Concurrent gates against a node on loopback over QUIC.
    Gate {
        #[arg(long, default_value_t = 16)]
        gates: usize,
        #[arg(long, default_value_t = 100_000)]
        checks: usize,
        /// Time the gate deciding alone (its node gone): signature, cache, flushed buffer.
        #[arg(long)]
        offline: bool,
    },
    /// Lockdowns and revocations from the hub's console (the hub in its own process) to
    /// every gate; what one community's lockdown costs the other nodes; after a partition.
    Lockdown {
        #[arg(long, default_value_t = 20)]
        nodes: usize,
        #[arg(long, default_value_t = 4)]
        gates_per_node: usize,
        #[arg(long, default_value_t = 10)]
        rounds: usize,
    },
    /// A district hub at size in its own process: 200 communities' rosters, cold start,
    /// memory, and gate-log ingest from many node links.
    Hub(hub::Args),
    /// Concurrent phones declaring through the resident pages (HTTP on loopback).
    Web {
        /// Phones submitting at once, each waiting for its answer before the next: 8 keep
        /// both cores busy; more only lengthen the queue (latency = clients / rate).
        #[arg(long, default_value_t = 8)]
        clients: usize,
        #[arg(long, default_value_t = 10_000)]
        declarations: usize,
        /// Run this long instead of a number of declarations.
        #[arg(long)]
        seconds: Option<u64>,
    },
    /// A district of real processes under random faults (kill -9, cut links, wiped gate
    /// caches, restores from backup, clock steps, garbage), then checks: one JSON line.
    Soak(soak::Args),
    /// Initial sync of one community to an empty hub, one revocation, a node restart.
    Sync {
        #[arg(long, default_value_t = sync::RESIDENTS_DEFAULT)]
        residents: usize,
    },
}

pub async fn run(cmd: BenchCmd, json: bool) -> Result<ExitCode> {
    match cmd {
        BenchCmd::Gate {
            checks,
            offline: true,
            ..
        } => gate_offline(checks.min(OFFLINE_CHECKS_MAX), json).await,
        BenchCmd::Gate { gates, checks, .. } => gate(gates, checks, json).await,
        BenchCmd::Lockdown {
            nodes,
            gates_per_node,
            rounds,
        } => {
            let shape = lockdown::Shape {
                nodes,
                gates_per_node,
                rounds,
            };
            lockdown::run(shape, json).await
        }
        BenchCmd::Hub(args) => hub::run(args, json).await,
        BenchCmd::Sync { residents } => sync::run(residents, json).await,
        BenchCmd::Soak(args) => soak::run(args, json).await,
        BenchCmd::Web {
            clients,
            declarations,
            seconds,
        } => {
            if clients == 0 || clients > web::CLIENTS_MAX {
                bail!("--clients: 1 to {}", web::CLIENTS_MAX);
            }
            if declarations == 0 || declarations > web::DECLARATIONS_MAX {
                bail!("--declarations: 1 to {}", web::DECLARATIONS_MAX);
            }
            if seconds.is_some_and(|s| s == 0 || s > web::SECONDS_MAX) {
                bail!("--seconds: 1 to {}", web::SECONDS_MAX);
            }
            web::run(clients, declarations, seconds, json).await
        }
    }
}

/// A small seeded generator (xorshift64*): which code a gate scans next need not be secure,
/// only spread out and the same from run to run.
struct Pick(u64);

impl Pick {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 32) as usize % n
    }
}

/// A birth date (YYYYMMDD) and serial per resident so that every ID number differs:
/// `person` keeps only `serial % 500`.
fn identity(i: usize) -> (String, u32) {
    let block = i / 500;
    let birth = format!(
        "{:04}{:02}{:02}",
        1950 + block % 50,
        1 + (block / 50) % 12,
        1 + (block / 600) % 28
    );
    (birth, (i % 500) as u32)
}

async fn declare_roster(console: &menjin_net::client::NodeClient) -> Result<Vec<String>> {
    let mut set = JoinSet::new();
    for worker in 0..DECLARE_CONCURRENCY {
        let console = console.clone();
        set.spawn(async move {
            let mut codes = Vec::new();
            for i in (worker..RESIDENTS).step_by(DECLARE_CONCURRENCY) {
                let (birth, serial) = identity(i);
                let building = format!("{}", 1 + i % 20);
                let door = format!("{}{:02}", 1 + (i / 20) % 30, 1 + (i / 600) % 4);
                let form = person(
                    &format!("居民{i}"),
                    i % 2 == 0,
                    &birth,
                    serial,
                    &building,
                    &door,
                );
                match console.request(&ConsoleRequest::Declare { form }).await? {
                    Response::Declared(r) => match r.code {
                        Some(code) => codes.push(code),
                        None => bail!("resident {i} was not cleared: {}", r.why),
                    },
                    other => bail!("declaring resident {i}: {other:?}"),
                }
            }
            Ok(codes)
        });
    }
    let mut codes = Vec::with_capacity(RESIDENTS);
    while let Some(done) = set.join_next().await {
        codes.extend(done.context("declaration task")??);
    }
    Ok(codes)
}

/// Runs `count` checks back to back and returns each one's latency in nanoseconds and how
/// many were allowed.
async fn closed_loop(
    gate: &LocalGate,
    codes: &[String],
    pick: &mut Pick,
    count: usize,
) -> Result<(Vec<u64>, u64)> {
    let mut latencies = Vec::with_capacity(count);
    let mut allowed = 0;
    for _ in 0..count {
        let code = &codes[pick.below(codes.len())];
        let start = Instant::now();
        let answer = gate
            .check(code, Direction::In, TEMPERATURE_DC, None)
            .await?;
        latencies.push(start.elapsed().as_nanos() as u64);
        allowed += u64::from(answer.allowed);
    }
    Ok((latencies, allowed))
}

/// The nearest-rank percentile of sorted latencies, in microseconds.
fn percentile_us(sorted_ns: &[u64], p: f64) -> f64 {
    if sorted_ns.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted_ns.len() as f64).ceil() as usize;
    sorted_ns[rank.clamp(1, sorted_ns.len()) - 1] as f64 / 1_000.0
}

/// CPU time used by this process so far (user and system, all threads), in milliseconds, from
/// `/proc/self/stat` (Linux; `None` elsewhere).
fn process_cpu_ms() -> Option<u64> {
    hub_process::cpu_ms("/proc/self/stat")
}

async fn events_logged(console: &menjin_net::client::NodeClient) -> Result<u64> {
    match console.request(&ConsoleRequest::Status).await? {
        Response::Status(s) => Ok(s.events_logged),
        other => bail!("status: {other:?}"),
    }
}

/// Offline decisions each flush one event into the gate's buffer; more than this would fill
/// the default buffer (100,000) and stop the gate, as it should.
const OFFLINE_CHECKS_MAX: usize = 50_000;

/// One gate agent, its node stopped, deciding alone over and over: what a gate does while the
/// network is down. Every decision verifies the code's signature against the cached node
/// certificate, reads the cached lists and flushes its event to the buffer before returning.
async fn gate_offline(checks: usize, json: bool) -> Result<ExitCode> {
    let setup = Instant::now();
    let district = LocalDistrict::new()?;
    let node = district.start_node(COMMUNITY, "基准社区 Bench")?;
    let console = node.console().await?;
    let codes = declare_roster(&console).await?;
    let (agent, _notices) = node.gate_agent(&console, "offline-bench").await?;
    if !agent.wait_online(std::time::Duration::from_secs(10)).await {
        bail!("the gate did not get its trust data from the node");
    }
    console.close().await;
    node.stop().await;
    if !json {
        println!(
            "offline gate: {} residents' codes, trust data cached, node stopped; setup {:.1} s",
            codes.len(),
            setup.elapsed().as_secs_f64()
        );
    }
    let mut pick = Pick(0x9E37_79B9_7F4A_7C15);
    let agent2 = agent.clone();
    let (latencies, allowed, elapsed) = tokio::task::spawn_blocking(move || {
        let mut latencies = Vec::with_capacity(checks);
        let mut allowed = 0u64;
        for _ in 0..WARMUP_CHECKS_PER_GATE {
            let _ = agent2.decide_alone(&codes[pick.below(codes.len())], TEMPERATURE_DC, None);
        }
        let started = Instant::now();
        for _ in 0..checks {
            let code = &codes[pick.below(codes.len())];
            let t = Instant::now();
            let d = agent2.decide_alone(code, TEMPERATURE_DC, None)?;
            latencies.push(t.elapsed().as_nanos() as u64);
            allowed += u64::from(d.answer.allowed);
        }
        Ok::<_, anyhow::Error>((latencies, allowed, started.elapsed()))
    })
    .await??;
    let mut sorted = latencies;
    sorted.sort_unstable();
    let per_s = checks as f64 / elapsed.as_secs_f64();
    let (p50, p99, max) = (
        percentile_us(&sorted, 50.0),
        percentile_us(&sorted, 99.0),
        sorted.last().map_or(0.0, |n| *n as f64 / 1e3),
    );
    let buffered = agent.pending();
    if json {
        crate::json::print(&crate::json::figures::BenchGateOffline {
            allowed,
            buffered,
            checks,
            checks_per_s: per_s.round(),
            max_us: max,
            p50_us: p50,
            p99_us: p99,
        });
    } else {
        println!(
            "{checks} offline decisions: {per_s:.0} per s, p50 {p50:.0} µs, p99 {p99:.0} µs, max {max:.0} µs [target p99 ≤ 1000 µs: {}]",
            if p99 <= 1000.0 { "met" } else { "NOT met" }
        );
        println!(
            "{allowed} allowed; {buffered} events buffered for upload (each flushed before its answer)"
        );
    }
    let all_ok = allowed == checks as u64 && buffered >= checks as u64;
    Ok(if all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

async fn gate(gates: usize, checks: usize, json: bool) -> Result<ExitCode> {
    if !(1..=GATES_MAX).contains(&gates) {
        bail!("--gates: 1 to {GATES_MAX}");
    }
    if !(gates..=CHECKS_MAX).contains(&checks) {
        bail!("--checks: at least one per gate, at most {CHECKS_MAX}");
    }
    let setup = Instant::now();
    let district = LocalDistrict::new()?;
    let node = district.start_node(COMMUNITY, "基准社区 Bench")?;
    let console = node.console().await?;
    let codes = Arc::new(declare_roster(&console).await?);
    let mut enrolled = Vec::with_capacity(gates);
    for g in 0..gates {
        enrolled.push(node.gate(&console, &format!("bench-{g}")).await?);
    }
    if !json {
        println!(
            "node on {} (QUIC, loopback), {} residents declared, {gates} gates enrolled in {:.1} s",
            node.addr,
            codes.len(),
            setup.elapsed().as_secs_f64()
        );
    }

    // Every gate warms up; the log is counted while all wait; then all run their share in a
    // closed loop. Closing connections comes after the clock stops.
    let warmed = Arc::new(Barrier::new(gates + 1));
    let go = Arc::new(Barrier::new(gates + 1));
    let mut set = JoinSet::new();
    for (g, gate) in enrolled.into_iter().enumerate() {
        let share = checks / gates + usize::from(g < checks % gates);
        let (codes, warmed, go) = (codes.clone(), warmed.clone(), go.clone());
        set.spawn(async move {
            let mut pick = Pick(0x9E37_79B9_7F4A_7C15 ^ (g as u64 + 1));
            let warm = closed_loop(&gate, &codes, &mut pick, WARMUP_CHECKS_PER_GATE).await;
            warmed.wait().await;
            go.wait().await;
            warm?;
            let measured = closed_loop(&gate, &codes, &mut pick, share).await;
            let finished = Instant::now();
            gate.client.close().await;
            measured.map(|(l, a)| (l, a, finished))
        });
    }
    warmed.wait().await;
    let logged_before = events_logged(&console).await?;
    let cpu_before = process_cpu_ms();
    let started = Instant::now();
    go.wait().await;
    let mut latencies = Vec::with_capacity(checks);
    let mut allowed = 0u64;
    let mut finished = started;
    let mut failure = None;
    while let Some(done) = set.join_next().await {
        match done.context("gate task") {
            Ok(Ok((l, a, f))) => {
                latencies.extend(l);
                allowed += a;
                finished = finished.max(f);
            }
            Ok(Err(e)) | Err(e) => {
                failure.get_or_insert(e);
            }
        }
    }
    let elapsed = finished - started;
    let cpu_ms = process_cpu_ms()
        .zip(cpu_before)
        .map(|(after, before)| after - before);
    if let Some(e) = failure {
        node.stop().await;
        return Err(e.context("a gate check failed"));
    }
    let logged = events_logged(&console).await? - logged_before;
    console.close().await;
    node.stop().await;

    latencies.sort_unstable();
    let done = latencies.len() as u64;
    let run = GateRun {
        gates,
        done,
        allowed,
        elapsed,
        logged,
        cpu_ms,
    };
    run.print(json, &latencies);
    if done != checks as u64 {
        bail!("{done} checks answered of {checks}");
    }
    if logged != done {
        bail!("the gate log holds {logged} new events for {done} checks");
    }
    if allowed != done {
        bail!("{} checks of valid codes were denied", done - allowed);
    }
    Ok(ExitCode::SUCCESS)
}

/// What `bench gate` measured: checks answered, allowed and logged, over `elapsed`.
struct GateRun {
    gates: usize,
    done: u64,
    allowed: u64,
    elapsed: std::time::Duration,
    logged: u64,
    /// CPU time of this process (client and node) during the run.
    cpu_ms: Option<u64>,
}

impl GateRun {
    fn print(&self, json: bool, sorted_ns: &[u64]) {
        let (gates, done, allowed, logged) = (self.gates, self.done, self.allowed, self.logged);
        let checks_per_s = done as f64 / self.elapsed.as_secs_f64();
        let p50 = percentile_us(sorted_ns, 50.0);
        let p99 = percentile_us(sorted_ns, 99.0);
        let p999 = percentile_us(sorted_ns, 99.9);
        let max = sorted_ns.last().map_or(0.0, |&ns| ns as f64 / 1_000.0);
        if json {
            crate::json::print(&crate::json::figures::BenchGate {
                allowed,
                checks: done,
                checks_per_s: checks_per_s.round(),
                cpu_us_per_check: self
                    .cpu_ms
                    .map(|ms| (ms as f64 * 1_000.0 / done as f64).round()),
                elapsed_ms: self.elapsed.as_millis() as u64,
                events_logged: logged,
                gates,
                max_us: max.round(),
                p50_us: p50.round(),
                p999_us: p999.round(),
                p99_us: p99.round(),
            });
            return;
        }
        println!(
            "{done} checks from {gates} gates in {:.2} s: {checks_per_s:.0} checks/s, {allowed} allowed",
            self.elapsed.as_secs_f64()
        );
        println!("latency: p50 {p50:.0} µs, p99 {p99:.0} µs, p99.9 {p999:.0} µs, max {max:.0} µs");
        println!("gate log: {logged} events logged (flushed) during the run");
        if let Some(ms) = self.cpu_ms {
            println!(
                "cpu: {:.0} µs per check (client and node together, all threads)",
                ms as f64 * 1_000.0 / done as f64
            );
        }
    }
}
