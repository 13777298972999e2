//! The node's side of its QUIC endpoint: what each peer role may ask, and a gate's feed.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use menjin_net::clock::now_ms;
use menjin_net::server::{Reply, Server, Service, serve_requests};
use menjin_net::tls::{self, PeerRole, PeerTable};
use menjin_proto::feed::{GateFeed, HEARTBEAT_MS, frame};
use menjin_proto::wire::{ErrorKind, Request, Response};

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
        serve_requests(conn, role, move |role, req| {
            dispatch(self.clone(), role, req)
        })
        .await;
    }
}

async fn dispatch(node: Arc<Node>, role: PeerRole, req: Request) -> Reply {
    let refused = |r: Refusal| Response::Error {
        kind: r.kind,
        message: r.message,
    };
    let response = match (role, req) {
        (PeerRole::Gate(gate), Request::Check(check)) => match node.check(&gate, check).await {
            Ok(answer) => Response::Check(answer),
            Err(r) => refused(r),
        },
        (PeerRole::Gate(gate), Request::Subscribe { gate_id }) => {
            return Reply::Frames(subscribe(node, gate, gate_id));
        }
        (PeerRole::Gate(gate), Request::GateAck { gate_id, ack }) => {
            node.gate_ack(&gate, &gate_id, &ack)
        }
        (PeerRole::Gate(gate), Request::UploadEvents { gate_id, events }) => node
            .upload(&gate, &gate_id, events)
            .await
            .unwrap_or_else(refused),
        (PeerRole::Gate(gate), _) => {
            tracing::warn!(%gate, "gate asked for a console operation");
            Response::Error {
                kind: ErrorKind::Forbidden,
                message: "gates may only check codes".into(),
            }
        }
        (PeerRole::Console, req) => {
            // Console operations flush sled and render pages: keep them off the event loop.
            tokio::task::spawn_blocking(move || node.console(req, now_ms() / 1000))
                .await
                .unwrap_or_else(|e| Response::Error {
                    kind: ErrorKind::Internal,
                    message: e.to_string(),
                })
        }
        (PeerRole::Node(_), _) => Response::Error {
            kind: ErrorKind::Forbidden,
            message: "nodes talk to hubs".into(),
        },
    };
    Reply::Once(response)
}

/// Frames a subscriber may have waiting before the feed stops producing for it.
const FEED_QUEUE_MAX: usize = 64;

/// A gate's feed: the snapshot, then every update as it is made, heartbeats in between.
/// The gate's link shows connected while it runs.
fn subscribe(
    node: Arc<Node>,
    gate: String,
    asked_as: String,
) -> tokio::sync::mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = tokio::sync::mpsc::channel(FEED_QUEUE_MAX);
    tokio::spawn(async move {
        if asked_as != gate {
            tracing::warn!(%gate, %asked_as, "gate subscribed under another gate's name");
            let _ = tx
                .send(frame(&GateFeed::Refused(format!(
                    "this connection is gate {gate}, the subscription says {asked_as}"
                ))))
                .await;
            return;
        }
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
