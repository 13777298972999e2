//! The QUIC endpoint shared by the node and the hub: accept connections (the TLS layer has
//! already refused unenrolled keys), find the peer's role from its key, and hand the
//! connection to the service. Request/response peers (gates, consoles) send one request per
//! bidirectional stream; [`serve_requests`] runs that loop.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use menjin_proto::wire::{self, ErrorKind, Response, RoleRequest};
use tokio::sync::Semaphore;
use tracing::Instrument;

use crate::tls::{self, PeerRole, PeerTable};

/// Gates, consoles and nodes connected at once; a community has at most a few dozen gates, a
/// district hub at most a few hundred nodes.
pub const CONNECTIONS_MAX: usize = 1024;
/// How long shutdown waits for requests in flight.
const DRAIN_MS: u64 = 3_000;

/// What a daemon does with an authenticated connection.
pub trait Service: Send + Sync + 'static {
    /// The keys admitted and their roles, looked up once per connection after the handshake.
    fn peers(&self) -> PeerTable;
    /// Runs one authenticated connection until it ends; `role` comes from the key the peer
    /// proved in the handshake, never from anything the peer sends.
    fn on_connection(
        self: Arc<Self>,
        role: PeerRole,
        conn: quinn::Connection,
    ) -> impl Future<Output = ()> + Send;
}

/// A bound endpoint, ready to serve.
pub struct Server<S> {
    endpoint: quinn::Endpoint,
    service: Arc<S>,
}

impl<S: Service> Server<S> {
    /// Serves an endpoint bound with [`tls::server_endpoint`].
    pub fn new(service: Arc<S>, endpoint: quinn::Endpoint) -> Server<S> {
        Server { endpoint, service }
    }

    /// The address the endpoint is bound to (with the port the OS chose for port 0).
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
            let service = self.service.clone();
            let remote = incoming.remote_address();
            tokio::spawn(
                async move {
                    let _permit = permit;
                    let conn = match incoming.await {
                        Ok(conn) => conn,
                        Err(e) => {
                            tracing::info!(error = %e, "handshake failed");
                            return;
                        }
                    };
                    let role =
                        tls::peer_key(&conn).and_then(|k| service.peers().role(k.as_bytes()));
                    match role {
                        Some(role) => {
                            tracing::debug!(?role, "peer connected");
                            service.on_connection(role, conn).await;
                        }
                        None => conn.close(1u32.into(), b"not enrolled"),
                    }
                }
                .instrument(tracing::info_span!("peer", %remote)),
            );
        }
        self.endpoint.close(0u32.into(), b"shutting down");
        let _ =
            tokio::time::timeout(Duration::from_millis(DRAIN_MS), self.endpoint.wait_idle()).await;
    }
}

/// What a request is answered with.
pub enum Reply {
    /// One answer, then the stream is finished.
    Once(Response),
    /// Frames (already length-prefixed), written in order as they come, until the sender
    /// is dropped or the peer goes away (a gate's feed subscription).
    Frames(tokio::sync::mpsc::Receiver<Vec<u8>>),
}

impl From<Response> for Reply {
    fn from(r: Response) -> Reply {
        Reply::Once(r)
    }
}

/// Answers requests of one type `R` (the peer's role decides which: a gate's, a console's),
/// one per bidirectional stream, until the peer goes away. A stream longer than `limit` or
/// that does not decode as `R` is answered with `BadRequest` and never reaches `handler`.
pub async fn serve_requests<R, F, Fut>(conn: quinn::Connection, limit: usize, handler: F)
where
    R: RoleRequest + Send + 'static,
    F: Fn(R) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Reply> + Send,
{
    let role = std::any::type_name::<R>()
        .rsplit("::")
        .next()
        .unwrap_or("request");
    loop {
        let (mut send, mut recv) = match conn.accept_bi().await {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(reason = %e, "peer gone");
                return;
            }
        };
        let handler = handler.clone();
        tokio::spawn(async move {
            let reply = match recv.read_to_end(limit).await {
                Err(quinn::ReadToEndError::TooLong) => {
                    tracing::warn!(role, limit, "oversized request refused");
                    Reply::Once(Response::Error {
                        kind: ErrorKind::BadRequest,
                        message: format!("request exceeds {limit} bytes"),
                    })
                }
                Err(e) => {
                    tracing::info!(error = %e, "request stream failed");
                    return;
                }
                Ok(bytes) => match wire::decode::<R>(&bytes, limit) {
                    Err(e) => {
                        tracing::warn!(role, error = %e, "malformed request refused");
                        Reply::Once(Response::Error {
                            kind: ErrorKind::BadRequest,
                            message: e.to_string(),
                        })
                    }
                    Ok(req) => handler(req).await,
                },
            };
            match reply {
                Reply::Once(response) => {
                    if let Err(e) = send.write_all(&wire::encode(&response)).await {
                        tracing::info!(error = %e, "answer not delivered");
                        return;
                    }
                    let _ = send.finish();
                }
                Reply::Frames(mut frames) => {
                    while let Some(frame) = frames.recv().await {
                        if let Err(e) = send.write_all(&frame).await {
                            tracing::info!(error = %e, "feed ended");
                            return;
                        }
                    }
                    let _ = send.finish();
                }
            }
        });
    }
}
