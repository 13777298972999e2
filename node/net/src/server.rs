//! The QUIC endpoint shared by the node and the hub: accept connections (the TLS layer has
//! already refused unenrolled keys), find the peer's role from its key, and hand the
//! connection to the service. Request/response peers (gates, consoles) send one request per
//! bidirectional stream; [`serve_requests`] runs that loop.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use menjin_proto::wire::{self, ErrorKind, Response, RoleRequest};
use tokio::sync::Semaphore;
use tracing::Instrument;

use crate::tls::{self, PeerRole, PeerTable};

/// Authenticated gates, consoles and nodes connected at once; a community has at most a few
/// dozen gates, a district hub at most a few hundred nodes. Only a peer that finished the
/// handshake with an enrolled key takes a place: a handshake that never completes never holds
/// one.
pub const CONNECTIONS_MAX: usize = 1024;
/// Handshakes in progress at once; beyond it new ones are refused until some finish or time
/// out ([`HANDSHAKE_TIMEOUT_MS`]), which bounds what half-open handshakes cost.
pub const HANDSHAKES_MAX: usize = 256;
/// Handshakes in progress beyond which a peer whose address is not yet validated is sent a
/// Retry (a stateless token it must echo): a flood from spoofed addresses then costs one
/// packet each and holds no state, while real peers (quinn clients follow a Retry) pay one
/// round trip.
pub const HANDSHAKES_UNVALIDATED_MAX: usize = 64;
/// Handshakes in progress from one source (an IPv4 address, an IPv6 /64): one host cannot
/// take every handshake place; a community's gates each have their own address.
pub const HANDSHAKES_PER_SOURCE_MAX: usize = 16;
/// How long a handshake may take: a few round trips on the worst link a gate or node uses,
/// far shorter than the idle timeout that bounded it before.
pub const HANDSHAKE_TIMEOUT_MS: u64 = 4_000;
/// How long shutdown waits for requests in flight.
const DRAIN_MS: u64 = 3_000;

/// Handshakes in progress, in total and by source; its entries exist only while a handshake
/// does, so it is bounded by [`HANDSHAKES_MAX`].
#[derive(Default)]
struct Handshakes {
    total: usize,
    by_source: HashMap<IpAddr, usize>,
    /// Whether the last admission sent a Retry (logged once per episode, not per packet).
    under_load: bool,
}

/// What the accept loop does with a new handshake.
enum Admission {
    Accept(HandshakeSlot),
    Retry,
    Refuse,
}

/// The source a per-source limit counts: the address, or the /64 of an IPv6 one.
fn source(addr: SocketAddr) -> IpAddr {
    match addr.ip().to_canonical() {
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        v4 => v4,
    }
}

/// Admits a handshake or says why not (see the limits above).
fn admit(table: &Arc<Mutex<Handshakes>>, incoming: &quinn::Incoming) -> Admission {
    let src = source(incoming.remote_address());
    let mut t = table.lock().unwrap_or_else(PoisonError::into_inner);
    if !incoming.remote_address_validated() && t.total >= HANDSHAKES_UNVALIDATED_MAX {
        if !t.under_load {
            t.under_load = true;
            tracing::warn!(
                handshakes = t.total,
                "many handshakes in progress; new peers must validate their address"
            );
        }
        return Admission::Retry;
    }
    if t.under_load && t.total < HANDSHAKES_UNVALIDATED_MAX / 2 {
        t.under_load = false;
        tracing::info!(handshakes = t.total, "handshake load back to normal");
    }
    let from_source = t.by_source.get(&src).copied().unwrap_or(0);
    if t.total >= HANDSHAKES_MAX || from_source >= HANDSHAKES_PER_SOURCE_MAX {
        return Admission::Refuse;
    }
    t.total += 1;
    *t.by_source.entry(src).or_insert(0) += 1;
    Admission::Accept(HandshakeSlot {
        table: table.clone(),
        source: src,
    })
}

/// One place among the handshakes in progress, given back when dropped.
struct HandshakeSlot {
    table: Arc<Mutex<Handshakes>>,
    source: IpAddr,
}

impl Drop for HandshakeSlot {
    fn drop(&mut self) {
        let mut t = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        t.total -= 1;
        if let Some(n) = t.by_source.get_mut(&self.source) {
            *n -= 1;
            if *n == 0 {
                t.by_source.remove(&self.source);
            }
        }
    }
}

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
        let connections = Arc::new(Semaphore::new(CONNECTIONS_MAX));
        let handshakes = Arc::new(Mutex::new(Handshakes::default()));
        tokio::pin!(shutdown);
        loop {
            let incoming = tokio::select! {
                () = &mut shutdown => break,
                incoming = self.endpoint.accept() => match incoming {
                    Some(i) => i,
                    None => break,
                },
            };
            let remote = incoming.remote_address();
            let slot = match admit(&handshakes, &incoming) {
                Admission::Accept(slot) => slot,
                Admission::Retry if incoming.may_retry() => {
                    if let Err(e) = incoming.retry() {
                        e.into_incoming().ignore();
                    }
                    continue;
                }
                // An unvalidated peer that cannot be sent a Retry: no answer at all.
                Admission::Retry => {
                    incoming.ignore();
                    continue;
                }
                Admission::Refuse => {
                    tracing::debug!(%remote, "too many handshakes in progress; refusing");
                    incoming.refuse();
                    continue;
                }
            };
            let service = self.service.clone();
            let connections = connections.clone();
            tokio::spawn(
                async move {
                    if let Some((role, conn, _live)) = handshake(&*service, incoming, slot).await {
                        let Ok(_permit) = connections.try_acquire_owned() else {
                            tracing::warn!("connection limit reached; closing");
                            conn.close(2u32.into(), b"connection limit reached");
                            return;
                        };
                        tracing::debug!(?role, "peer connected");
                        service.on_connection(role, conn).await;
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

/// Runs the handshake (bounded by [`HANDSHAKE_TIMEOUT_MS`]) holding `slot`, finds the
/// peer's role and registers the connection under its key (so that revoking the key closes
/// it); a peer whose key is not enrolled (or was revoked during the handshake) is closed here.
async fn handshake<S: Service>(
    service: &S,
    incoming: quinn::Incoming,
    slot: HandshakeSlot,
) -> Option<(PeerRole, quinn::Connection, tls::LiveConnection)> {
    let timeout = Duration::from_millis(HANDSHAKE_TIMEOUT_MS);
    // Dropping the unfinished handshake on timeout closes it.
    let conn = match tokio::time::timeout(timeout, incoming).await {
        Ok(Ok(conn)) => conn,
        Ok(Err(e)) => {
            tracing::info!(error = %e, "handshake failed");
            return None;
        }
        Err(_) => {
            tracing::info!("handshake timed out");
            return None;
        }
    };
    drop(slot);
    let admitted = tls::peer_key(&conn).and_then(|k| service.peers().admit(k.to_bytes(), &conn));
    let Some((role, live)) = admitted else {
        conn.close(1u32.into(), b"not enrolled");
        return None;
    };
    Some((role, conn, live))
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
