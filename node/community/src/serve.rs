//! The node's side of its QUIC endpoint: what each peer role may ask, and a gate's feed.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use menjin_net::clock::now_ms;
use menjin_net::server::{Reply, Server, Service, serve_requests};
use menjin_net::tls::{self, PeerRole, PeerTable};
use menjin_proto::feed::{GateFeed, HEARTBEAT_MS, frame};
use menjin_proto::wire::{
    CONSOLE_REQUEST_LEN_MAX, ConsoleRequest, ErrorKind, GATE_REQUEST_LEN_MAX, GateRequest, Response,
};

use crate::service::{Node, Refusal};

/// Binds a node's QUIC endpoint.
///
/// # Errors
/// If the TLS configuration cannot be built or the address cannot be bound.
pub fn bind(node: Arc<Node>, addr: SocketAddr) -> std::io::Result<Server<Node>> {
    let cfg = tls::server_config(node.signing_key(), node.cert(), node.peers())
        .map_err(std::io::Error::other)?;
    let endpoint = tls::server_endpoint(node.signing_key(), cfg, addr)?;
    Ok(Server::new(node, endpoint))
}

impl Service for Node {
    fn peers(&self) -> PeerTable {
        Node::peers(self)
    }

    async fn on_connection(self: Arc<Self>, role: PeerRole, conn: quinn::Connection) {
        match role {
            PeerRole::Gate(gate) => {
                let gate: Arc<str> = gate.into();
                serve_requests(conn, GATE_REQUEST_LEN_MAX, move |req| {
                    gate_request(self.clone(), gate.clone(), req)
                })
                .await;
            }
            PeerRole::Console => {
                serve_requests(conn, CONSOLE_REQUEST_LEN_MAX, move |req| {
                    console_request(self.clone(), req)
                })
                .await;
            }
            PeerRole::Node(_) => conn.close(3u32.into(), b"nodes talk to hubs"),
        }
    }
}

/// A gate's request, as the gate its connection authenticated.
async fn gate_request(node: Arc<Node>, gate: Arc<str>, req: GateRequest) -> Reply {
    let refused = |r: Refusal| Response::Error {
        kind: r.kind,
        message: r.message,
    };
    let response = match req {
        GateRequest::Check(check) => match node.check(&gate, check).await {
            Ok(answer) => Response::Check(answer),
            Err(r) => refused(r),
        },
        GateRequest::Subscribe => return Reply::Frames(subscribe(node, gate.to_string())),
        GateRequest::Ack(ack) => node.gate_ack(&gate, &ack),
        GateRequest::Upload { events } => node.upload(&gate, events).await.unwrap_or_else(refused),
    };
    Reply::Once(response)
}

async fn console_request(node: Arc<Node>, req: ConsoleRequest) -> Reply {
    // Console operations flush sled and render pages: keep them off the event loop.
    tokio::task::spawn_blocking(move || node.console(req, now_ms() / 1000))
        .await
        .unwrap_or_else(|e| Response::Error {
            kind: ErrorKind::Internal,
            message: e.to_string(),
        })
        .into()
}

/// Frames a subscriber may have waiting before the feed stops producing for it.
const FEED_QUEUE_MAX: usize = 64;

/// A gate's feed: the snapshot, then every update as it is made, heartbeats in between.
/// The gate's link shows connected while it runs.
fn subscribe(node: Arc<Node>, gate: String) -> tokio::sync::mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = tokio::sync::mpsc::channel(FEED_QUEUE_MAX);
    tokio::spawn(async move {
        let mut updates = node.feed.subscribe();
        let snapshot = node.feed_snapshot();
        let mut version = snapshot.version;
        tracing::info!(%gate, version, revoked = snapshot.revoked.len(), visitors = snapshot.visitors.len(), "gate subscribed");
        if tx.send(frame(&GateFeed::Snapshot(snapshot))).await.is_err() {
            return;
        }
        node.feed.connected(&gate, true, now_ms());
        let heartbeat = Duration::from_millis(HEARTBEAT_MS);
        loop {
            let next = tokio::select! {
                u = updates.recv() => match u {
                    Ok(u) if u.version <= version => continue,
                    Ok(u) => {
                        version = u.version;
                        GateFeed::Update((*u).clone())
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(%gate, missed = n, "gate fell behind its feed; sending a fresh snapshot");
                        let s = node.feed_snapshot();
                        version = s.version;
                        GateFeed::Snapshot(s)
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                },
                () = tokio::time::sleep(heartbeat) => GateFeed::Heartbeat { version, node_time_ms: now_ms() },
                () = tx.closed() => break,
            };
            if tx.send(frame(&next)).await.is_err() {
                break;
            }
        }
        node.feed.connected(&gate, false, now_ms());
        tracing::info!(%gate, "gate feed ended");
    });
    rx
}
