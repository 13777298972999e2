//! `menjin bench soak`: a district of real processes (hub, nodes, gates: this binary) on
//! loopback for a given time and seed, with faults injected at random: kill -9 of any
//! process, cut and noisy links (UDP relays), a gate's cache wiped, a node restored from an
//! older backup, wall-clock steps (libfaketime, where installed), garbage datagrams. Then it
//! mends everything and checks, printing one JSON line: every event acknowledged to a guard
//! is at the hub exactly once, no revoked code is let in, no gate missed the lockdown.
//!
//! The exit status is non-zero when a check fails; the processes' logs stay in the run's
//! directory (`--keep DIR`, or printed on failure).

mod district;
mod faults;
mod verify;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::Serialize;

use district::{District, Env, faketime};
use faults::{DuringRun, Injector, scanner};
use verify::Outcome;

pub const SECONDS_MAX: u64 = 24 * 3_600;
pub const NODES_MAX: usize = 8;
pub const GATES_MAX: usize = 4;

#[derive(clap::Args)]
pub struct Args {
    #[arg(long, default_value_t = 60)]
    pub seconds: u64,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    #[arg(long, default_value_t = 2)]
    pub nodes: usize,
    #[arg(long, default_value_t = 2)]
    pub gates_per_node: usize,
    /// Residents declared per community before the run.
    #[arg(long, default_value_t = 12)]
    pub residents: u32,
    /// Keep the run's directory (data and every process's log) here; it must not exist.
    #[arg(long)]
    pub keep: Option<PathBuf>,
}

#[derive(Serialize)]
struct Report {
    soak_seconds: u64,
    seed: u64,
    nodes: usize,
    gates: usize,
    scans: u64,
    #[serde(flatten)]
    outcome: Outcome,
    revoked_allowed_online_during_run: u64,
    revoked_allowed_offline_during_run: u64,
    clock_steps_possible: bool,
    faults: std::collections::BTreeMap<&'static str, u64>,
    passed: bool,
}

pub async fn run(a: Args, json: bool) -> Result<ExitCode> {
    if a.seconds == 0 || a.seconds > SECONDS_MAX {
        bail!("--seconds: 1 to {SECONDS_MAX}");
    }
    if a.nodes == 0 || a.nodes > NODES_MAX || a.gates_per_node == 0 || a.gates_per_node > GATES_MAX
    {
        bail!("--nodes: 1 to {NODES_MAX}, --gates-per-node: 1 to {GATES_MAX}");
    }
    if !(4..=1_000).contains(&a.residents) {
        bail!("--residents: 4 to 1000");
    }
    let (tmp, dir) = match &a.keep {
        Some(d) => {
            if d.exists() {
                bail!("--keep {}: already exists", d.display());
            }
            std::fs::create_dir_all(d)?;
            (None, d.clone())
        }
        None => {
            let t = tempfile::Builder::new().prefix("menjin-soak-").tempdir()?;
            let p = t.path().to_path_buf();
            (Some(t), p)
        }
    };
    let env = Env {
        exe: std::env::current_exe().context("this binary's path")?,
        dir: dir.clone(),
        faketime: faketime(),
    };
    if env.faketime.is_none() {
        eprintln!("soak: libfaketime not found (Debian: libfaketime): no clock steps this run");
    }
    eprintln!(
        "soak: {} nodes x {} gates, {} s, seed {}, in {}",
        a.nodes,
        a.gates_per_node,
        a.seconds,
        a.seed,
        dir.display()
    );
    let clock_steps_possible = env.faketime.is_some();
    let d = Arc::new(District::set_up(env, a.nodes, a.gates_per_node, a.residents).await?);
    let report = soak(&d, &a, clock_steps_possible).await;
    let passed = report.as_ref().is_ok_and(|r| r.passed);
    for c in &d.communities {
        c.node.kill().await;
    }
    d.hub.kill().await;
    if !passed {
        let kept = tmp.map(tempfile::TempDir::keep);
        eprintln!(
            "soak FAILED: logs in {}/logs",
            kept.unwrap_or(dir).display()
        );
    }
    let report = report?;
    if json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!("{}", serde_json::to_string_pretty(&report)?);
    }
    Ok(if passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

async fn soak(d: &Arc<District>, a: &Args, clock_steps_possible: bool) -> Result<Report> {
    let stop = Arc::new(AtomicBool::new(false));
    let during = Arc::new(DuringRun::default());
    let mut scanners = tokio::task::JoinSet::new();
    for (k, c) in d.communities.iter().enumerate() {
        for g in 0..c.gates.len() {
            let seed = a.seed ^ ((k as u64) << 32 | g as u64).wrapping_mul(0x2545_F491);
            scanners.spawn(scanner(
                d.clone(),
                (k, g),
                seed,
                stop.clone(),
                during.clone(),
            ));
        }
    }
    let mut injector = Injector::new(d.clone(), a.seed);
    injector
        .run(Instant::now() + Duration::from_secs(a.seconds))
        .await?;
    stop.store(true, Ordering::Relaxed);
    while scanners.join_next().await.is_some() {}
    eprintln!("soak: faults over, mending and checking");
    let mut outcome = Outcome {
        converged: verify::settle(d).await?,
        ..Outcome::default()
    };
    if outcome.converged {
        (
            outcome.revoked_codes,
            outcome.revoked_checks,
            outcome.revoked_allowed,
        ) = verify::revoked(d).await;
        (outcome.gates_missed_lockdown, outcome.final_lockdown_ms_max) =
            verify::final_lockdown(d, a.seed).await?;
        outcome.converged = verify::settle(d).await?;
    }
    verify::exactly_once(d, &mut outcome).await?;
    let online = during.revoked_allowed_online.load(Ordering::Relaxed);
    let passed = outcome.converged
        && outcome.missing == 0
        && outcome.duplicated == 0
        && outcome.mismatched == 0
        && outcome.revoked_allowed == 0
        && outcome.gates_missed_lockdown == 0
        && online == 0;
    Ok(Report {
        soak_seconds: a.seconds,
        seed: a.seed,
        nodes: a.nodes,
        gates: a.nodes * a.gates_per_node,
        scans: during.scans.load(Ordering::Relaxed),
        outcome,
        revoked_allowed_online_during_run: online,
        revoked_allowed_offline_during_run: during.revoked_allowed_offline.load(Ordering::Relaxed),
        clock_steps_possible,
        faults: std::mem::take(&mut injector.tally.0),
        passed,
    })
}
