//! A QUIC client for gates and consoles: connect to a node with one's own enrolled key,
//! verify the node against the district root, send requests.

use std::net::SocketAddr;
use std::time::Duration;

use ed25519_dalek::{SigningKey, VerifyingKey};
use menjin_proto::CommunityId;
use menjin_proto::feed::{FEED_FRAME_LEN_MAX, GateFeed};
use menjin_proto::wire::{self, GateRequest, RESPONSE_LEN_MAX, Response, RoleRequest};

use crate::tls;

/// A connection attempt that has not completed by then fails.
pub const CONNECT_TIMEOUT_MS: u64 = 5_000;
/// A request that has had no answer by then fails (a node flushes within milliseconds).
pub const REQUEST_TIMEOUT_MS: u64 = 30_000;

/// Why a request to a node (or hub) got no answer. A refusal by the node is not one of these:
/// it is an `Ok(Response::Error { .. })`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// Our own key or the district root could not make a TLS configuration (a bad key file).
    #[error("cannot set up TLS: {0}")]
    Tls(#[from] tls::TlsError),
    /// No local UDP socket could be bound.
    #[error("cannot open a UDP socket: {0}")]
    Socket(std::io::Error),
    /// No connection to the node: unreachable, no handshake within [`CONNECT_TIMEOUT_MS`], or
    /// the handshake refused (an unenrolled key, a node of another community or district).
    #[error("cannot reach the node at {addr}: {why}")]
    Connect {
        /// Where we dialled.
        addr: SocketAddr,
        /// What failed.
        why: ConnectFailure,
    },
    /// No answer within this many milliseconds ([`REQUEST_TIMEOUT_MS`]).
    #[error("no answer from the node within {0} ms")]
    Timeout(u64),
    /// The connection or the request's stream failed after it was set up.
    #[error("connection to the node failed: {0}")]
    Stream(StreamError),
    /// The answer did not decode, or was over [`RESPONSE_LEN_MAX`] (a node of another version?).
    #[error("the node sent a malformed answer: {0}")]
    Malformed(#[from] wire::WireError),
}

/// Why a connection attempt failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectFailure {
    /// quinn refused to start the attempt (an unusable address, the endpoint closing).
    #[error(transparent)]
    Endpoint(#[from] quinn::ConnectError),
    /// No completed handshake within this many milliseconds ([`CONNECT_TIMEOUT_MS`]).
    #[error("no handshake within {0} ms")]
    Timeout(u64),
    /// The handshake failed: the TLS alert or close reason says which side refused what.
    #[error(transparent)]
    Handshake(#[from] quinn::ConnectionError),
}

/// A stream operation that failed on a connection to a node.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StreamError {
    /// The connection was lost before the stream could be opened.
    #[error(transparent)]
    Open(#[from] quinn::ConnectionError),
    /// Writing the request failed.
    #[error(transparent)]
    Write(#[from] quinn::WriteError),
    /// The stream was already finished or reset when the request was finished.
    #[error(transparent)]
    Finish(#[from] quinn::ClosedStream),
    /// Reading the whole answer failed, or it was over [`RESPONSE_LEN_MAX`].
    #[error(transparent)]
    Read(#[from] quinn::ReadToEndError),
    /// The stream ended or failed inside a feed frame.
    #[error(transparent)]
    ReadExact(#[from] quinn::ReadExactError),
    /// A stream error often says only "connection lost"; the connection's close reason says
    /// why (for example a node refusing an unenrolled key during the handshake).
    #[error("{failed}: {reason}")]
    Closed {
        /// The stream error as quinn reported it.
        failed: Box<StreamError>,
        /// The connection's close reason.
        reason: quinn::ConnectionError,
    },
}

/// One authenticated connection to a node.
#[derive(Clone)]
pub struct NodeClient {
    endpoint: quinn::Endpoint,
    conn: quinn::Connection,
}

impl NodeClient {
    /// Connects as `key` to the node at `addr`, which must prove it is a node of `community`
    /// (or of any community of the district, if `None`) certified by `root`.
    ///
    /// # Errors
    /// [`ClientError`] saying why.
    pub async fn connect(
        addr: SocketAddr,
        key: &SigningKey,
        root: VerifyingKey,
        community: Option<CommunityId>,
    ) -> Result<NodeClient, ClientError> {
        NodeClient::connect_pinned(addr, key, root, community, 0, &[]).await
    }

    /// As [`NodeClient::connect`], refusing a node certificate issued before
    /// `not_before_min` or for a `revoked` key (see [`tls::client_config`]): a gate passes
    /// its current one's and the revoked keys its trust feed names.
    ///
    /// # Errors
    /// [`ClientError`] saying why.
    pub async fn connect_pinned(
        addr: SocketAddr,
        key: &SigningKey,
        root: VerifyingKey,
        community: Option<CommunityId>,
        not_before_min: u64,
        revoked: &[[u8; 32]],
    ) -> Result<NodeClient, ClientError> {
        let cfg = tls::client_config(key, root, community, not_before_min, revoked)?;
        let bind: SocketAddr = if addr.is_ipv6() {
            "[::]:0"
        } else {
            "0.0.0.0:0"
        }
        .parse()
        .expect("literal");
        let mut endpoint = quinn::Endpoint::client(bind).map_err(ClientError::Socket)?;
        endpoint.set_default_client_config(cfg);
        let connecting =
            endpoint
                .connect(addr, tls::SERVER_NAME)
                .map_err(|e| ClientError::Connect {
                    addr,
                    why: e.into(),
                })?;
        let conn = tokio::time::timeout(Duration::from_millis(CONNECT_TIMEOUT_MS), connecting)
            .await
            .map_err(|_| ClientError::Connect {
                addr,
                why: ConnectFailure::Timeout(CONNECT_TIMEOUT_MS),
            })?
            .map_err(|e| ClientError::Connect {
                addr,
                why: e.into(),
            })?;
        Ok(NodeClient { endpoint, conn })
    }

    /// Sends one request and waits for its answer.
    ///
    /// # Errors
    /// [`ClientError`] on transport failure, timeout or a malformed answer. A refusal by the
    /// node is an `Ok(Response::Error { .. })`.
    pub async fn request<R: RoleRequest>(&self, req: &R) -> Result<Response, ClientError> {
        self.request_raw(&wire::encode(req)).await
    }

    /// Sends bytes as a request; [`NodeClient::request`] encodes them, tests of the node's
    /// decoder send garbage.
    ///
    /// # Errors
    /// As [`NodeClient::request`].
    pub async fn request_raw(&self, bytes: &[u8]) -> Result<Response, ClientError> {
        // A stream error often says only "connection lost"; the connection's close reason says
        // why (for example a node refusing an unenrolled key during the handshake).
        let stream = |e: StreamError| match self.conn.close_reason() {
            Some(reason) => ClientError::Stream(StreamError::Closed {
                failed: Box::new(e),
                reason,
            }),
            None => ClientError::Stream(e),
        };
        let exchange = async {
            let (mut send, mut recv) = self.conn.open_bi().await.map_err(|e| stream(e.into()))?;
            send.write_all(bytes).await.map_err(|e| stream(e.into()))?;
            send.finish().map_err(|e| stream(e.into()))?;
            let answer = recv
                .read_to_end(RESPONSE_LEN_MAX)
                .await
                .map_err(|e| stream(e.into()))?;
            Ok(wire::decode::<Response>(&answer, RESPONSE_LEN_MAX)?)
        };
        tokio::time::timeout(Duration::from_millis(REQUEST_TIMEOUT_MS), exchange)
            .await
            .map_err(|_| ClientError::Timeout(REQUEST_TIMEOUT_MS))?
    }

    /// Opens the trust feed (see `menjin_proto::feed`): frames arrive on the returned
    /// stream for as long as the connection lives.
    ///
    /// # Errors
    /// [`ClientError`] if the stream cannot be opened.
    pub async fn subscribe(&self) -> Result<FeedStream, ClientError> {
        let stream = |e: StreamError| ClientError::Stream(e);
        let (mut send, recv) = self.conn.open_bi().await.map_err(|e| stream(e.into()))?;
        send.write_all(&wire::encode(&GateRequest::Subscribe))
            .await
            .map_err(|e| stream(e.into()))?;
        send.finish().map_err(|e| stream(e.into()))?;
        Ok(FeedStream { recv })
    }

    /// The key the node authenticated with (verified against the district root at connect).
    pub fn node_key(&self) -> Option<VerifyingKey> {
        tls::peer_key(&self.conn)
    }

    /// The connection's round-trip estimate (from the handshake's packets at first).
    pub fn rtt(&self) -> Duration {
        self.conn.rtt()
    }

    /// Both handles are on the same QUIC connection.
    pub fn same_connection(&self, other: &NodeClient) -> bool {
        self.conn.stable_id() == other.conn.stable_id()
    }

    /// The connection has been closed (by either side, or by the idle timeout).
    pub fn is_closed(&self) -> bool {
        self.conn.close_reason().is_some()
    }

    /// Closes the connection at once (a peer that stopped answering); every stream on it
    /// fails.
    pub fn abort(&self, why: &str) {
        self.conn.close(1u32.into(), why.as_bytes());
    }

    /// Closes the connection politely and waits up to a second for the peer to acknowledge, so
    /// the node sees a clean close instead of an idle timeout.
    pub async fn close(self) {
        self.conn.close(0u32.into(), b"bye");
        let _ = tokio::time::timeout(Duration::from_millis(1_000), self.endpoint.wait_idle()).await;
    }
}

/// The node's side of a feed subscription.
pub struct FeedStream {
    recv: quinn::RecvStream,
}

impl FeedStream {
    /// The next frame; `Ok(None)` when the node finished the stream.
    ///
    /// # Errors
    /// [`ClientError`] on a transport failure or a malformed or oversized frame.
    pub async fn next(&mut self) -> Result<Option<GateFeed>, ClientError> {
        let mut len = [0u8; 4];
        match self.recv.read_exact(&mut len).await {
            Ok(()) => {}
            Err(quinn::ReadExactError::FinishedEarly(0)) => return Ok(None),
            Err(e) => return Err(ClientError::Stream(e.into())),
        }
        let len = u32::from_be_bytes(len) as usize;
        if len > FEED_FRAME_LEN_MAX {
            return Err(ClientError::Malformed(wire::WireError::TooLong(
                len,
                FEED_FRAME_LEN_MAX,
            )));
        }
        let mut body = vec![0u8; len];
        self.recv
            .read_exact(&mut body)
            .await
            .map_err(|e| ClientError::Stream(e.into()))?;
        Ok(Some(wire::decode(&body, FEED_FRAME_LEN_MAX)?))
    }
}
