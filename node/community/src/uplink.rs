//! The node's link to its district hub: connect (mutual TLS; the hub must hold a root
//! certificate for community 0), then stream the gate log from the hub's cursor, pushing each
//! event as soon as it is stored. On any failure: reconnect with capped exponential back-off
//! and jitter. Gates are never affected: checks do not wait for the hub.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use menjin_proto::cert::HUB_COMMUNITY;
use menjin_proto::link::{LOG_BATCH_BYTES_MAX, LOG_BATCH_MAX, LinkFrame};
use menjin_proto::wire::{GateEvent, LogQuery};
use tokio::sync::{mpsc, watch};

use crate::gatelog::LogError;
use crate::service::Node;
use menjin_net::frame::{FrameError, read_frame, write_frame};
use menjin_net::tls;
use menjin_replication::syncstore::StoreError;
use menjin_replication::{next_timer, receive_frame, send_frames};
use menjin_sync::Role;

/// First retry after a failure; doubles up to [`BACKOFF_MAX_MS`].
pub const BACKOFF_MIN_MS: u64 = 100;
/// Attempts start at most this often (with jitter), counted from the start of the previous
/// one: a hub, or a cut path to it, that comes back is found within about a second, so a
/// lockdown issued meanwhile reaches the node's gates within 2 s of the link returning
/// (deploy/lab/scenario.sh measures it). A hundred nodes retrying each second cost a hub
/// nothing.
pub const BACKOFF_MAX_MS: u64 = 1_000;
/// Batches sent ahead of the hub's acknowledgements.
pub const LOG_WINDOW_BATCHES: u64 = 4;
/// A handshake that has not completed by then is abandoned, on a path never measured.
const CONNECT_TIMEOUT_MS: u64 = 5_000;
/// Once a link has measured the path: abandon a handshake after this many round trips (at
/// least [`CONNECT_TIMEOUT_MIN_MS`]). Within one attempt QUIC retransmits its first packet
/// with a doubling delay (1 s, 2 s, 4 s...), so short attempts probe a path that comes back
/// sooner than one long attempt would.
const CONNECT_TIMEOUT_RTTS: u32 = 8;
const CONNECT_TIMEOUT_MIN_MS: u64 = 1_500;
/// Even without a wake-up, look for unsent events this often (safety net, not the push path).
const RESCAN_MS: u64 = 1_000;

/// Why an attempt to reach the hub failed (it is retried).
#[derive(Debug, thiserror::Error)]
enum ConnectError {
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error(transparent)]
    Socket(#[from] std::io::Error),
    #[error(transparent)]
    Endpoint(#[from] quinn::ConnectError),
    #[error("handshake timed out")]
    Timeout,
    #[error(transparent)]
    Handshake(#[from] quinn::ConnectionError),
}

/// Why a link to the hub ended (it is reconnected).
#[derive(Debug, thiserror::Error)]
enum UplinkError {
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error("link stream: {0}")]
    Open(#[from] quinn::ConnectionError),
    #[error("link stream: hub did not send its log cursor")]
    NoCursor,
    #[error("link stream: {0}")]
    Store(#[from] StoreError),
    /// The replica panicked on this peer's frames and ended its session.
    #[error("link stream: {0}")]
    Panicked(#[from] menjin_replication::PeerPanicked),
    #[error("link stream: {0}")]
    Log(#[from] LogError),
    #[error("link stream: {0}")]
    Task(#[from] tokio::task::JoinError),
    #[error("link stream: unexpected frame {0:?}")]
    Unexpected(Box<LinkFrame>),
    /// The hub holds other events under numbers this log used again; renumbered, link again.
    #[error("gate log renumbered after the hub's events from {0} on; linking again")]
    Renumbered(u64),
}

impl From<menjin_replication::LinkStepError> for UplinkError {
    fn from(e: menjin_replication::LinkStepError) -> UplinkError {
        use menjin_replication::LinkStepError as E;
        match e {
            E::Store(e) => UplinkError::Store(e),
            E::Frame(e) => UplinkError::Frame(e),
            E::Panicked(e) => UplinkError::Panicked(e),
        }
    }
}

/// What `node status` shows about the hub link.
#[derive(Default)]
pub struct LinkStatus {
    connected: AtomicBool,
    acked: AtomicU64,
    sync_frames: AtomicU64,
    sync_bytes: AtomicU64,
    sync_busy_ns: AtomicU64,
}

impl LinkStatus {
    /// The link to the hub is up now (false without a hub).
    pub fn connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }
    /// The highest gate-log sequence number the hub has acknowledged (stored and flushed there).
    pub fn acked(&self) -> u64 {
        self.acked.load(Ordering::Relaxed)
    }
    /// Replication frames received from the hub since the node started, and their bytes.
    pub fn sync_received(&self) -> (u64, u64) {
        (
            self.sync_frames.load(Ordering::Relaxed),
            self.sync_bytes.load(Ordering::Relaxed),
        )
    }
    /// Time spent taking in the hub's replication frames since the node started (merging,
    /// flushing, refreshing the views they changed), nanoseconds: what a district change
    /// costs this node.
    pub fn sync_busy_ns(&self) -> u64 {
        self.sync_busy_ns.load(Ordering::Relaxed)
    }
}

/// Keeps the link to the hub up until `shutdown` turns true.
pub async fn run_uplink(node: Arc<Node>, hub: SocketAddr, mut shutdown: watch::Receiver<bool>) {
    // The link carries the replica: it starts once the replica is loaded (a node serves its
    // gates before that, see `Node::open_loading`). Gate events wait in the log meanwhile.
    let repl = tokio::select! {
        loaded = node.replica_loaded() => match loaded {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "no hub link without the replica");
                return;
            }
        },
        _ = shutdown.wait_for(|stop| *stop) => return,
    };
    let mut backoff = BACKOFF_MIN_MS;
    let mut connect_timeout = Duration::from_millis(CONNECT_TIMEOUT_MS);
    while !*shutdown.borrow() {
        // The back-off counts from the start of an attempt (or the end of a session).
        let mut started = tokio::time::Instant::now();
        match connect(&node, hub, connect_timeout).await {
            Ok((endpoint, conn)) => {
                backoff = BACKOFF_MIN_MS;
                node.hub_link.connected.store(true, Ordering::Relaxed);
                tracing::info!(%hub, "linked to the district hub");
                let result = serve(&node, &repl, &conn, &mut shutdown).await;
                started = tokio::time::Instant::now();
                connect_timeout = (conn.rtt() * CONNECT_TIMEOUT_RTTS).clamp(
                    Duration::from_millis(CONNECT_TIMEOUT_MIN_MS),
                    Duration::from_millis(CONNECT_TIMEOUT_MS),
                );
                node.hub_link.connected.store(false, Ordering::Relaxed);
                conn.close(0u32.into(), b"bye");
                endpoint.close(0u32.into(), b"bye");
                match result {
                    Ok(()) => break,
                    Err(e) => tracing::warn!(%hub, error = %e, "hub link lost; gates keep working"),
                }
            }
            Err(e) => tracing::debug!(%hub, error = %e, "hub unreachable"),
        }
        // Full jitter keeps a hundred nodes from reconnecting in step after a hub restart.
        let wait = backoff / 2 + rand::random_range(0..=backoff / 2);
        backoff = (backoff * 2).min(BACKOFF_MAX_MS);
        tokio::select! {
            () = tokio::time::sleep_until(started + Duration::from_millis(wait)) => {}
            _ = shutdown.changed() => {}
        }
    }
}

async fn connect(
    node: &Node,
    hub: SocketAddr,
    timeout: Duration,
) -> Result<(quinn::Endpoint, quinn::Connection), ConnectError> {
    let cfg = tls::client_config(
        node.signing_key(),
        *node.root(),
        Some(HUB_COMMUNITY),
        0,
        &[],
    )?;
    let bind: SocketAddr = if hub.is_ipv6() { "[::]:0" } else { "0.0.0.0:0" }
        .parse()
        .expect("literal");
    let mut endpoint = quinn::Endpoint::client(bind)?;
    endpoint.set_default_client_config(cfg);
    let connecting = endpoint.connect(hub, tls::SERVER_NAME)?;
    let conn = tokio::time::timeout(timeout, connecting)
        .await
        .map_err(|_| ConnectError::Timeout)??;
    Ok((endpoint, conn))
}

/// Says hello with the log's length and reads the hub's cursor. Returns where to stream
/// from: the hub's verified mark (so that it compares what it may hold from another history),
/// at most its cursor.
async fn hello(
    node: &Node,
    send: &mut quinn::SendStream,
    recv: &mut quinn::RecvStream,
) -> Result<u64, UplinkError> {
    let logged = node.events_logged();
    write_frame(
        send,
        &LinkFrame::Hello {
            events_logged: logged,
        },
    )
    .await?;
    let LinkFrame::LogCursor { next_seq } = read_frame(recv).await? else {
        return Err(UplinkError::NoCursor);
    };
    if next_seq > logged + 1 {
        // Only a node whose log went back in time gets here (restored from an older backup):
        // the hub holds events under the numbers this log would give its next events, so
        // those go after the hub's (with any logged since the hello).
        tracing::error!(
            hub_next_seq = next_seq,
            events_logged = logged,
            "the hub holds gate events this node does not have: was it restored from an older \
             backup? new events are numbered after the hub's (deploy/README.md, backup and restore)"
        );
        node.gate_log().rebase(logged + 1, next_seq).await?;
    }
    let hub_last = next_seq.saturating_sub(1);
    Ok(match node.gate_log().hub_verified()? {
        Some(verified) => verified.min(hub_last),
        // A log from before the mark was kept: trust the cursor, as then.
        None => hub_last.min(logged),
    })
}

/// Streams log batches after `sent` while the window of unacknowledged batches has room;
/// returns the last sequence number sent.
async fn send_log(
    node: &Node,
    send: &mut quinn::SendStream,
    mut sent: u64,
    acked: u64,
) -> Result<u64, UplinkError> {
    while sent < node.events_logged() && sent - acked < LOG_WINDOW_BATCHES * LOG_BATCH_MAX as u64 {
        let q = LogQuery {
            after_seq: Some(sent),
            limit: LOG_BATCH_MAX as u32,
            ..LogQuery::default()
        };
        let log = node.gate_log().clone();
        let mut events = tokio::task::spawn_blocking(move || log.query(&q)).await??;
        cut_at_gap(&mut events);
        cut_to_bytes(&mut events, LOG_BATCH_BYTES_MAX);
        let Some(last) = events.last().map(|e| e.seq) else {
            break;
        };
        write_frame(send, &LinkFrame::LogBatch { events }).await?;
        sent = last;
    }
    Ok(sent)
}

/// Cuts a batch before its first gap in numbering (a renumbered log has gaps where the hub
/// holds events it does not, see `GateLog::rebase`): the hub takes consecutive batches only.
fn cut_at_gap(events: &mut Vec<GateEvent>) {
    if let Some(gap) = events.windows(2).position(|w| w[1].seq != w[0].seq + 1) {
        events.truncate(gap + 1);
    }
}

/// Cuts a batch to the longest prefix whose encoded events take at most `max` bytes, keeping
/// at least one event (a single event is far below the frame's limit: a gate request is at
/// most `GATE_REQUEST_LEN_MAX`).
fn cut_to_bytes(events: &mut Vec<GateEvent>, max: usize) {
    let mut total = 0;
    let keep = events
        .iter()
        .position(|e| {
            total += menjin_proto::wire::encode(e).len();
            total > max
        })
        .unwrap_or(events.len());
    events.truncate(keep.max(1));
}

/// A sync frame from the hub. Policy changes (lockdowns, health flags) go straight into the
/// node's views; health flags may revoke codes, which writes sled: off the event loop.
async fn receive_sync(
    node: &Arc<Node>,
    repl: &Arc<menjin_replication::Replication>,
    bytes: Vec<u8>,
) -> Result<(), UplinkError> {
    let (repl, node) = (repl.clone(), node.clone());
    tokio::task::spawn_blocking(move || {
        let t = std::time::Instant::now();
        let changed = receive_frame(&repl, Role::Hub, &bytes)?;
        let t_recv = t.elapsed();
        let own = menjin_sync::DocId::CommunityPolicy {
            community: node.config.community,
        };
        if changed.contains(&menjin_sync::DocId::Policy) || changed.contains(&own) {
            node.refresh_policy();
        }
        // Own roster changes come back only to a node that lost them (an older backup).
        if let Err(e) = node.adopt_from_sync(&repl, &changed) {
            tracing::error!(error = %e, "revocations from the district's roster not taken in");
        }
        let busy = t.elapsed();
        let stats = &node.hub_link;
        stats.sync_frames.fetch_add(1, Ordering::Relaxed);
        stats
            .sync_bytes
            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        stats
            .sync_busy_ns
            .fetch_add(busy.as_nanos() as u64, Ordering::Relaxed);
        tracing::debug!(
            len = bytes.len(),
            ?changed,
            recv_us = t_recv.as_micros() as u64,
            total_us = busy.as_micros() as u64,
            "sync frame from the hub"
        );
        Ok::<_, menjin_replication::LinkStepError>(())
    })
    .await??;
    Ok(())
}

async fn serve(
    node: &Arc<Node>,
    repl: &Arc<menjin_replication::Replication>,
    conn: &quinn::Connection,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<(), UplinkError> {
    let (mut send, mut recv) = conn.open_bi().await?;
    let verified = hello(node, &mut send, &mut recv).await?;
    let (tx, mut frames) = mpsc::channel(16);
    let reader = tokio::spawn(async move {
        loop {
            let frame = read_frame(&mut recv).await;
            let end = frame.is_err();
            if tx.send(frame).await.is_err() || end {
                return;
            }
        }
    });
    let session = repl.connect(Role::Hub, menjin_net::clock::now_ms())?;
    let mut changes = repl.subscribe();
    let mut sent = verified;
    let mut acked = sent;
    node.hub_link.acked.store(acked, Ordering::Relaxed);
    // Report a lockdown decided here while the hub was away (the hub keeps the later
    // decision; resending is harmless).
    let mut report_local = node.local_lockdown().is_some();
    // The gates' links (applied lockdown epoch, last contact), for the hub's status.
    let mut report_gates = true;
    let result = async {
        loop {
            if std::mem::take(&mut report_local)
                && let Some(l) = node.local_lockdown()
            {
                write_frame(&mut send, &LinkFrame::LocalLockdown(l)).await?;
            }
            if std::mem::take(&mut report_gates) {
                write_frame(&mut send, &LinkFrame::GateLinks(node.gate_links())).await?;
            }
            send_frames(repl, Role::Hub, &mut send).await?;
            sent = send_log(node, &mut send, sent, acked).await?;
            tokio::select! {
                frame = frames.recv() => match frame {
                    Some(Ok(LinkFrame::LogAck { upto_seq })) => {
                        acked = upto_seq.min(sent).max(acked);
                        node.hub_link.acked.store(acked, Ordering::Relaxed);
                        node.gate_log().set_hub_verified(acked)?;
                    }
                    Some(Ok(LinkFrame::LogConflict { seq, next_seq })) => {
                        node.gate_log().rebase(seq, next_seq).await?;
                        return Err(UplinkError::Renumbered(seq));
                    }
                    Some(Ok(LinkFrame::Sync(bytes))) => receive_sync(node, repl, bytes).await?,
                    Some(Ok(other)) => return Err(UplinkError::Unexpected(Box::new(other))),
                    Some(Err(e)) => return Err(e.into()),
                    None => return Err(FrameError::Closed.into()),
                },
                _ = changes.changed() => {}
                () = next_timer(repl) => repl.timeout(menjin_net::clock::now_ms())?,
                () = node.log_appended.notified() => {}
                () = node.local_changed.notified() => report_local = true,
                () = node.feed.links_changed.notified() => report_gates = true,
                () = tokio::time::sleep(Duration::from_millis(RESCAN_MS)) => {}
                _ = shutdown.changed() => return Ok(()),
            }
        }
    }
    .await;
    reader.abort();
    if let Err(e) = repl.disconnect(Role::Hub, session) {
        tracing::error!(error = %e, "persisting replication state");
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::gate_event;

    #[test]
    fn a_batch_is_cut_by_bytes_and_keeps_at_least_one_event() {
        let heavy = |seq| {
            let mut e = gate_event("g", seq);
            e.plate = Some("A".repeat(1_000));
            e
        };
        let one = menjin_proto::wire::encode(&heavy(1)).len();
        let mut events: Vec<GateEvent> = (1..=10).map(heavy).collect();
        cut_to_bytes(&mut events, 3 * one + one / 2);
        assert_eq!(events.len(), 3);
        cut_to_bytes(&mut events, 1);
        assert_eq!(events.len(), 1, "one event always goes");
        let mut light: Vec<GateEvent> = (1..=10).map(|s| gate_event("g", s)).collect();
        cut_to_bytes(&mut light, LOG_BATCH_BYTES_MAX);
        assert_eq!(light.len(), 10);
    }
}
