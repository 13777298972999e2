//! Gate-log ingest at the hub: K node links at once, each authenticated with its
//! community's node key, speaking a node uplink's protocol (Hello, LogCursor, then LogBatch
//! frames with at most `LOG_WINDOW_BATCHES` unacknowledged, as the uplink streams them). The
//! hub acknowledges a batch only after its flush, so an acknowledged event is on disk.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use ed25519_dalek::{SigningKey, VerifyingKey};
use menjin_community::uplink::LOG_WINDOW_BATCHES;
use menjin_net::clock::now_ms;
use menjin_net::frame::{read_frame, write_frame};
use menjin_net::tls;
use menjin_proto::CommunityId;
use menjin_proto::cert::HUB_COMMUNITY;
use menjin_proto::link::LinkFrame;
use menjin_proto::rule::Reason;
use menjin_proto::wire::{Direction, GateEvent};
use menjin_store::files::{NodeDir, read_public_key, read_signing_key};
use tokio::sync::{Barrier, watch};

use super::node_dir;
use crate::cmd::bench::hub_process::HubProcess;

/// A link that has not connected, or a batch not acknowledged, by then: the hub is stuck.
const LINK_TIMEOUT: Duration = Duration::from_secs(20);

/// One ingest phase: every link sending batches of `batch` events for the phase's length.
pub(super) struct Phase {
    batch: usize,
    links: usize,
    /// Events sent, and those acknowledged (flushed at the hub), over every link.
    pub(super) sent: u64,
    pub(super) acked: u64,
    /// From the start to the last link's last acknowledgment.
    elapsed: Duration,
    /// The hub process's CPU time over the phase (link set-up included), ms.
    hub_cpu_ms: Option<u64>,
}

/// Runs one phase: `links` links of communities `first..`, batches of `batch`, for `length`.
///
/// # Errors
/// A link that cannot connect, a refused batch, the hub's link ending.
pub(super) async fn run(
    hub: &HubProcess,
    dir: &Path,
    first: CommunityId,
    links: usize,
    batch: usize,
    length: Duration,
) -> Result<Phase> {
    let root = read_public_key(&NodeDir(dir.join("hub")).root_pub())?;
    let cpu_before = hub.cpu_ms();
    // The clock starts once every link has connected and said hello.
    let go = Arc::new(Barrier::new(links + 1));
    let mut set = tokio::task::JoinSet::new();
    for k in 0..links {
        let key = read_signing_key(&node_dir(dir, first + k as u32).key())?;
        let (go, addr) = (go.clone(), hub.addr);
        set.spawn(async move { link(addr, key, root, batch, length, go).await });
    }
    go.wait().await;
    let started = Instant::now();
    let (mut sent, mut acked, mut finished) = (0, 0, started);
    let mut failure = None;
    while let Some(done) = set.join_next().await {
        match done.context("link task") {
            Ok(Ok((s, a, f))) => {
                sent += s;
                acked += a;
                finished = finished.max(f);
            }
            Ok(Err(e)) | Err(e) => {
                failure.get_or_insert(e);
            }
        }
    }
    if let Some(e) = failure {
        return Err(e.context(format!("ingest with batches of {batch}")));
    }
    Ok(Phase {
        batch,
        links,
        sent,
        acked,
        elapsed: finished - started,
        hub_cpu_ms: hub
            .cpu_ms()
            .zip(cpu_before)
            .map(|(a, b)| a.saturating_sub(b)),
    })
}

/// The open link: the connection (kept open while it is used), its stream, the hub's cursor.
type Open = (
    quinn::Endpoint,
    quinn::Connection,
    quinn::SendStream,
    quinn::RecvStream,
    u64,
);

/// Connects as the node of `key`, says hello and reads the hub's cursor.
async fn connect(addr: std::net::SocketAddr, key: &SigningKey, root: VerifyingKey) -> Result<Open> {
    let cfg = tls::client_config(key, root, Some(HUB_COMMUNITY), 0, &[])?;
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().expect("literal"))?;
    endpoint.set_default_client_config(cfg);
    let conn = tokio::time::timeout(LINK_TIMEOUT, endpoint.connect(addr, tls::SERVER_NAME)?)
        .await
        .context("connecting to the hub")??;
    let (mut send, mut recv) = conn.open_bi().await?;
    write_frame(&mut send, &LinkFrame::Hello { events_logged: 0 }).await?;
    match tokio::time::timeout(LINK_TIMEOUT, read_frame(&mut recv))
        .await
        .context("the hub's cursor")??
    {
        LinkFrame::LogCursor { next_seq } => Ok((endpoint, conn, send, recv, next_seq)),
        other => bail!("the hub answered the hello with {other:?}"),
    }
}

/// One link: batches for `length`, then waits for the last acknowledgment. Returns events
/// sent, events acknowledged, and when the last acknowledgment came.
async fn link(
    addr: std::net::SocketAddr,
    key: SigningKey,
    root: VerifyingKey,
    batch: usize,
    length: Duration,
    go: Arc<Barrier>,
) -> Result<(u64, u64, Instant)> {
    let open = connect(addr, &key, root).await;
    go.wait().await;
    let (endpoint, conn, mut send, recv, first) = open?;
    let (tx, mut acks) = watch::channel(first - 1);
    let reader = tokio::spawn(read_acks(recv, tx));
    let window = LOG_WINDOW_BATCHES * batch as u64;
    let started = Instant::now();
    let mut next = first;
    let result = async {
        while started.elapsed() < length {
            if next - 1 - *acks.borrow() < window {
                let events = (next..next + batch as u64).map(event).collect();
                write_frame(&mut send, &LinkFrame::LogBatch { events }).await?;
                next += batch as u64;
            } else {
                tokio::time::timeout(LINK_TIMEOUT, acks.changed())
                    .await
                    .context("a batch was not acknowledged in time")?
                    .context("the hub's link ended")?;
            }
        }
        let last = next - 1;
        tokio::time::timeout(LINK_TIMEOUT, acks.wait_for(|a| *a >= last))
            .await
            .context("the last batch was not acknowledged in time")?
            .context("the hub's link ended")?;
        Ok::<_, anyhow::Error>(())
    }
    .await;
    let finished = Instant::now();
    let acked = (*acks.borrow()).min(next - 1) + 1 - first;
    conn.close(0u32.into(), b"bench done");
    if result.is_err() && reader.is_finished() {
        // The reader's error says why the link ended.
        if let Ok(Err(e)) = reader.await {
            return Err(e);
        }
    } else {
        reader.abort();
    }
    result?;
    drop(endpoint);
    Ok((next - first, acked, finished))
}

/// Reads the hub's frames: acknowledgments move `acks`; sync frames are skipped (this
/// client keeps no replica); a conflict ends the link.
async fn read_acks(mut recv: quinn::RecvStream, acks: watch::Sender<u64>) -> Result<()> {
    loop {
        match read_frame(&mut recv).await? {
            LinkFrame::LogAck { upto_seq } => {
                acks.send_replace(upto_seq);
            }
            LinkFrame::LogConflict { seq, next_seq } => {
                bail!("the hub refused event {seq} as a conflict (its next is {next_seq})")
            }
            _ => {}
        }
    }
}

/// An allowed entry at gate `g1`, as a node logs it.
fn event(seq: u64) -> GateEvent {
    GateEvent {
        seq,
        time_ms: now_ms(),
        gate: "g1".into(),
        direction: Direction::In,
        allowed: true,
        reason: Reason::Ok,
        fever: false,
        temperature_dc: 365,
        cred: None,
        holder: None,
        kind: None,
        plate: None,
        offline: None,
        passback: false,
    }
}

impl Phase {
    fn per_s(&self) -> f64 {
        self.acked as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    fn cpu_us_per_event(&self) -> Option<f64> {
        self.hub_cpu_ms
            .map(|ms| ms as f64 * 1e3 / self.acked.max(1) as f64)
    }

    pub(super) fn print(&self, target: f64) {
        println!(
            "ingest, {} links, batches of {}: {} events sent, {} acknowledged (flushed) in {:.1} s: {:.0} events/s{}; hub CPU {} per event",
            self.links,
            self.batch,
            self.sent,
            self.acked,
            self.elapsed.as_secs_f64(),
            self.per_s(),
            if self.batch == 1 {
                format!(
                    " [target ≥ {target:.0}/s: {}]",
                    crate::cmd::bench::lockdown::met(self.per_s() >= target)
                )
            } else {
                String::new()
            },
            self.cpu_us_per_event()
                .map_or("n/a".into(), |us| format!("{us:.1} µs"))
        );
    }

    pub(super) fn json(&self) -> crate::json::figures::BenchHubIngest {
        crate::json::figures::BenchHubIngest {
            batch: self.batch,
            elapsed_ms: self.elapsed.as_millis() as u64,
            events_acked: self.acked,
            events_per_s: self.per_s().round(),
            events_sent: self.sent,
            hub_cpu_us_per_event: self.cpu_us_per_event(),
            links: self.links,
        }
    }
}
