//! `menjin bench hub`: a district hub at size, run as its own process. The bench builds a hub
//! directory whose replica holds C enrolled communities' rosters of N synthetic residents
//! each, in the format the hub loads (each roster's shards as `roster_docs_for` saves them,
//! stored as a node's snapshots would be), or reuses one kept from an earlier run. Then:
//! cold start (spawn → `node.addr` written → the console's status answered), the hub's
//! memory, and gate-log ingest: K node links (real QUIC with each community's node key, the
//! link protocol of a node's uplink: Hello, LogCursor, LogBatch, LogAck) sending batches of
//! one event and of 100, as fast as the acknowledgments (each after a flush) come back.

mod ingest;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use menjin_hub::Hub;
use menjin_net::clock::now_ms;
use menjin_proto::CommunityId;
use menjin_proto::credential::{CredId, HolderId, HolderKind};
use menjin_proto::declaration::Outcome;
use menjin_proto::idnum::IdHash;
use menjin_proto::wire::{HubRequest, Response};
use menjin_replication::SyncStore;
use menjin_store::files::{DistrictDir, NodeDir};
use menjin_store::provision::{NodeSpec, create_district, create_hub, create_node};
use menjin_sync::{CodeEntry, CodeStatus, Persist, RosterEntry, roster_docs_for};

use super::hub_process::HubProcess;

/// The first community number; community `k` is `FIRST_COMMUNITY + k`.
const FIRST_COMMUNITY: CommunityId = 440_306_001;
/// What describes a kept district (`--keep`), read back by `--reuse`.
const MANIFEST: &str = "bench-hub.json";
/// Bounds that keep a mistyped command from filling the disk or running for hours.
const COMMUNITIES_MAX: usize = 1_000;
const RESIDENTS_MAX: usize = 200_000;
const LINKS_MAX: usize = 256;
const SECONDS_MAX: u64 = 600;
/// Targets of issue 15, printed beside the figures.
const TARGET_COLD_START_S: f64 = 5.0;
const TARGET_RSS_MB: f64 = 4_096.0;
const TARGET_EVENTS_PER_S: f64 = 20_000.0;

/// Options of `menjin bench hub`.
#[derive(clap::Args)]
pub struct Args {
    /// Communities enrolled at the hub, each with its roster.
    #[arg(long, default_value_t = 200)]
    communities: usize,
    /// Residents (each with an active code) per community.
    #[arg(long, default_value_t = 30_000)]
    residents: usize,
    /// Build the district in DIR and keep it there, to be measured again with `--reuse`.
    #[arg(long, value_name = "DIR", conflicts_with = "reuse")]
    keep: Option<PathBuf>,
    /// Measure the district an earlier `--keep DIR` built (no building; `--communities`
    /// and `--residents` come from it).
    #[arg(long, value_name = "DIR")]
    reuse: Option<PathBuf>,
    /// Node links sending gate events at once (at most one per community).
    #[arg(long, default_value_t = 16)]
    links: usize,
    /// Seconds of each ingest phase (batches of 1, then of 100).
    #[arg(long, default_value_t = 10)]
    seconds: u64,
}

/// What a kept district holds.
#[derive(serde::Serialize, serde::Deserialize)]
struct Manifest {
    communities: usize,
    residents: usize,
}

pub async fn run(args: Args, json: bool) -> Result<ExitCode> {
    if !(1..=SECONDS_MAX).contains(&args.seconds) {
        bail!("--seconds: 1 to {SECONDS_MAX}");
    }
    if !(1..=LINKS_MAX).contains(&args.links) {
        bail!("--links: 1 to {LINKS_MAX}");
    }
    let say = |line: String| {
        if !json {
            println!("{line}");
        }
    };
    // A temporary directory unless one is kept or reused; removed when this ends.
    let tmp;
    let (dir, manifest, build_s) = if let Some(dir) = &args.reuse {
        let text = std::fs::read_to_string(dir.join(MANIFEST)).with_context(|| {
            format!("{} holds no district of `bench hub --keep`", dir.display())
        })?;
        let m: Manifest = serde_json::from_str(&text).context(MANIFEST)?;
        say(format!(
            "reusing {}: {} communities × {} residents",
            dir.display(),
            m.communities,
            m.residents
        ));
        (dir.clone(), m, None)
    } else {
        check_size(args.communities, args.residents)?;
        let dir = match &args.keep {
            Some(d) => d.clone(),
            None => {
                tmp = tempfile::Builder::new()
                    .prefix("menjin-bench-hub-")
                    .tempdir()?;
                tmp.path().to_path_buf()
            }
        };
        let m = Manifest {
            communities: args.communities,
            residents: args.residents,
        };
        say(format!(
            "building {} communities × {} residents in {}",
            m.communities,
            m.residents,
            dir.display()
        ));
        let t = Instant::now();
        let d = dir.clone();
        let (c, r) = (m.communities, m.residents);
        tokio::task::spawn_blocking(move || build(&d, c, r)).await??;
        std::fs::write(dir.join(MANIFEST), serde_json::to_vec(&m)?)?;
        let s = t.elapsed().as_secs_f64();
        say(format!("built in {s:.1} s"));
        (dir, m, Some(s))
    };
    measure(&dir, &manifest, build_s, &args, json).await
}

fn check_size(communities: usize, residents: usize) -> Result<()> {
    if !(1..=COMMUNITIES_MAX).contains(&communities) {
        bail!("--communities: 1 to {COMMUNITIES_MAX}");
    }
    if !(1..=RESIDENTS_MAX).contains(&residents) {
        bail!("--residents: 1 to {RESIDENTS_MAX}");
    }
    Ok(())
}

fn node_dir(dir: &Path, community: CommunityId) -> NodeDir {
    NodeDir(dir.join("nodes").join(format!("node-{community}")))
}

/// Creates the district, the hub and `communities` node directories in `dir`, enrols every
/// node at the hub (its console, called directly), then stores each community's roster in
/// the hub's replica as the snapshots a node's sync would have left there.
fn build(dir: &Path, communities: usize, residents: usize) -> Result<()> {
    if dir.join("hub").exists() {
        bail!(
            "{} already holds a hub: measure it with --reuse",
            dir.display()
        );
    }
    std::fs::create_dir_all(dir.join("nodes"))?;
    let district = DistrictDir(dir.join("district"));
    create_district(&district)?;
    let hub_dir = NodeDir(dir.join("hub"));
    let loopback = "127.0.0.1:0".parse().expect("literal");
    create_hub(&district, &hub_dir, "bench district", loopback)?;
    {
        let hub = Hub::open(&hub_dir)?;
        for k in 0..communities {
            let community = FIRST_COMMUNITY + k as u32;
            let node = node_dir(dir, community);
            create_node(
                &district,
                &node,
                &NodeSpec {
                    community,
                    community_name: format!("bench community {k}"),
                    listen: loopback,
                    campaign_start: now_ms() / 1000,
                    code_validity_days: 30,
                    hub: None,
                },
            )?;
            let cert = std::fs::read(node.cert())?;
            match hub.console(HubRequest::EnrolNode { cert }) {
                Response::Done(_) => {}
                other => bail!("enrolling community {community}: {other:?}"),
            }
        }
    }
    let db = menjin_store::db::open(&hub_dir.db())?;
    let store = SyncStore::open(&db)?;
    let shards = menjin_sync::Config::default().roster_shards;
    let now = now_ms() / 1000;
    for k in 0..communities {
        let community = FIRST_COMMUNITY + k as u32;
        let (persons, codes) = roster(community, residents, now);
        let docs = roster_docs_for(community, shards, &persons, &codes, now)?;
        store.write(
            docs.into_iter()
                .map(|(doc, bytes, heads)| Persist::Snapshot { doc, bytes, heads })
                .collect(),
        )?;
    }
    db.flush()?;
    Ok(())
}

/// `residents` synthetic residents of `community`, each cleared and holding an active code.
fn roster(
    community: CommunityId,
    residents: usize,
    now: u64,
) -> (Vec<RosterEntry>, Vec<CodeEntry>) {
    let mut persons = Vec::with_capacity(residents);
    let mut codes = Vec::with_capacity(residents);
    for i in 0..residents as u64 {
        let n = (u64::from(community) << 32) | i;
        let holder = HolderId(n.wrapping_mul(0x9e37_79b9_7f4a_7c15).to_be_bytes());
        let cred = CredId(
            (n ^ 0xc0de)
                .wrapping_mul(0xbf58_476d_1ce4_e5b9)
                .to_be_bytes(),
        );
        let mut id_hash = [0u8; 16];
        id_hash[..8].copy_from_slice(&n.to_be_bytes());
        id_hash[8..].copy_from_slice(&n.wrapping_mul(0x2545_f491_4f6c_dd1d).to_be_bytes());
        persons.push(RosterEntry {
            holder,
            id_hash: IdHash(id_hash),
            building: format!("{}", 1 + i % 40),
            door: format!("{}", 101 + i % 900),
            kind: HolderKind::Resident,
            outcome: Outcome::Cleared,
            cred: Some(cred),
            declared_at: now,
        });
        codes.push(CodeEntry {
            id: cred,
            holder,
            kind: HolderKind::Resident,
            status: CodeStatus::Active,
            valid_from: now,
            valid_until: now + 30 * 86_400,
            host: None,
            revoked_at: None,
        });
    }
    (persons, codes)
}

/// Cold start, memory, then the two ingest phases; prints the figures.
async fn measure(
    dir: &Path,
    m: &Manifest,
    build_s: Option<f64>,
    args: &Args,
    json: bool,
) -> Result<ExitCode> {
    let hub_dir = NodeDir(dir.join("hub"));
    let hub = HubProcess::start(&hub_dir, &dir.join("hub.log")).await?;
    let addr_ms = hub.started_in.as_secs_f64() * 1e3;
    let console = hub.console().await?;
    let status = match console.request(&HubRequest::Status).await? {
        Response::HubStatus(s) => s,
        other => bail!("hub status: {other:?}"),
    };
    let status_ms = hub.spawned.elapsed().as_secs_f64() * 1e3;
    let memory = hub.memory_mb();
    let held: u64 = status.communities.iter().map(|c| c.residents).sum();
    if !json {
        println!(
            "cold start: node.addr written {addr_ms:.0} ms after the spawn, status answered after {status_ms:.0} ms [target ≤ {TARGET_COLD_START_S:.0} s: {}]; {} communities, {held} residents",
            super::lockdown::met(status_ms <= TARGET_COLD_START_S * 1e3),
            status.communities.len()
        );
        if let Some((rss, peak)) = memory {
            println!(
                "hub memory after start: RSS {rss:.0} MB, peak {peak:.0} MB [target ≤ {TARGET_RSS_MB:.0} MB: {}]",
                super::lockdown::met(peak <= TARGET_RSS_MB)
            );
        }
    }
    let links = args.links.min(m.communities);
    let mut phases = Vec::new();
    for batch in [1, 100] {
        let p = ingest::run(
            &hub,
            dir,
            FIRST_COMMUNITY,
            links,
            batch,
            Duration::from_secs(args.seconds),
        )
        .await;
        let p = match p {
            Ok(p) => p,
            Err(e) => {
                hub.stop().await;
                return Err(e);
            }
        };
        if !json {
            p.print(TARGET_EVENTS_PER_S);
        }
        phases.push(p);
    }
    let end_memory = hub.memory_mb();
    console.close().await;
    hub.stop().await;
    let expected = (m.communities * m.residents) as u64;
    let all_acked = phases.iter().all(|p| p.acked == p.sent && p.sent > 0);
    if json {
        crate::json::print(&crate::json::figures::BenchHub {
            build_s,
            cold_start_addr_ms: addr_ms.round(),
            cold_start_status_ms: status_ms.round(),
            communities: m.communities,
            communities_held: status.communities.len(),
            hub_peak_rss_mb: end_memory.map(|m| m.1),
            hub_rss_after_start_mb: memory.map(|m| m.0),
            hub_rss_mb: end_memory.map(|m| m.0),
            ingest: phases.iter().map(ingest::Phase::json).collect(),
            residents: m.residents,
            residents_held: held,
        });
    }
    if held != expected || status.communities.len() != m.communities {
        bail!(
            "the hub holds {} communities and {held} residents; {} and {expected} were built",
            status.communities.len(),
            m.communities
        );
    }
    Ok(if all_acked {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
