//! The node's QUIC endpoint: one connection per gate or console, one bidirectional stream
//! per request. The TLS layer has already refused unenrolled keys; here the peer's role
//! decides what it may ask.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use menjin_proto::wire::{
    self, CONSOLE_REQUEST_LEN_MAX, ErrorKind, GATE_REQUEST_LEN_MAX, Request, Response,
};
use tokio::sync::Semaphore;
use tracing::Instrument;

use crate::service::{Node, now_ms};
use crate::tls::{self, PeerRole};

/// Gates and consoles connected at once; a community has at most a few dozen gates.
pub const CONNECTIONS_MAX: usize = 1024;
/// How long shutdown waits for requests in flight.
const DRAIN_MS: u64 = 3_000;

/// A bound endpoint, ready to serve.
pub struct Server {
    endpoint: quinn::Endpoint,
    node: Arc<Node>,
}

impl Server {
    /// Binds the node's QUIC endpoint.
    ///
    /// # Errors
    /// If the TLS configuration cannot be built or the address cannot be bound.
    pub fn bind(node: Arc<Node>, addr: SocketAddr) -> std::io::Result<Server> {
        let cfg = tls::server_config(node.signing_key(), node.cert(), node.peers())
            .map_err(std::io::Error::other)?;
        let endpoint = quinn::Endpoint::server(cfg, addr)?;
        Ok(Server { endpoint, node })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.endpoint.local_addr()
    }

    /// Serves until `shutdown` completes, then closes connections and waits (bounded) for
    /// them to drain.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let limit = Arc::new(Semaphore::new(CONNECTIONS_MAX));
        tokio::pin!(shutdown);
        loop {
            let incoming = tokio::select! {
                () = &mut shutdown => break,
                incoming = self.endpoint.accept() => match incoming {
                    Some(i) => i,
                    None => break,
                },
            };
            let Ok(permit) = limit.clone().try_acquire_owned() else {
                tracing::warn!(remote = %incoming.remote_address(), "connection limit reached; refusing");
                incoming.refuse();
                continue;
            };
            let node = self.node.clone();
            let remote = incoming.remote_address();
            tokio::spawn(
                async move {
                    let _permit = permit;
                    match incoming.await {
                        Ok(conn) => serve_connection(node, conn).await,
                        Err(e) => tracing::info!(error = %e, "handshake failed"),
                    }
                }
                .instrument(tracing::info_span!("peer", %remote)),
            );
        }
        self.endpoint.close(0u32.into(), b"node shutting down");
        let _ =
            tokio::time::timeout(Duration::from_millis(DRAIN_MS), self.endpoint.wait_idle()).await;
    }
}

async fn serve_connection(node: Arc<Node>, conn: quinn::Connection) {
    let role = tls::peer_key(&conn).and_then(|k| node.peers().role(k.as_bytes()));
    let Some(role) = role else {
        conn.close(1u32.into(), b"not enrolled");
        return;
    };
    tracing::debug!(?role, "peer connected");
    loop {
        let (send, recv) = match conn.accept_bi().await {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(reason = %e, "peer gone");
                return;
            }
        };
        let node = node.clone();
        let role = role.clone();
        tokio::spawn(async move {
            if let Err(e) = serve_stream(node, &role, send, recv).await {
                tracing::info!(error = %e, "request stream failed");
            }
        });
    }
}

async fn serve_stream(
    node: Arc<Node>,
    role: &PeerRole,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
) -> Result<(), String> {
    let limit = match role {
        PeerRole::Gate(_) => GATE_REQUEST_LEN_MAX,
        PeerRole::Console => CONSOLE_REQUEST_LEN_MAX,
    };
    let response = match recv.read_to_end(limit).await {
        Err(quinn::ReadToEndError::TooLong) => {
            tracing::warn!(?role, limit, "oversized request refused");
            Response::Error {
                kind: ErrorKind::BadRequest,
                message: format!("request exceeds {limit} bytes"),
            }
        }
        Err(e) => return Err(e.to_string()),
        Ok(bytes) => match wire::decode::<Request>(&bytes, limit) {
            Err(e) => {
                tracing::warn!(?role, error = %e, "malformed request refused");
                Response::Error {
                    kind: ErrorKind::BadRequest,
                    message: e.to_string(),
                }
            }
            Ok(req) => dispatch(node, role, req).await,
        },
    };
    send.write_all(&wire::encode(&response))
        .await
        .map_err(|e| e.to_string())?;
    send.finish().map_err(|e| e.to_string())?;
    Ok(())
}

async fn dispatch(node: Arc<Node>, role: &PeerRole, req: Request) -> Response {
    match (role, req) {
        (PeerRole::Gate(gate), Request::Check(check)) => match node.check(gate, check).await {
            Ok(answer) => Response::Check(answer),
            Err(r) => Response::Error {
                kind: r.kind,
                message: r.message,
            },
        },
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
    }
}
