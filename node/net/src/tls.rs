//! TLS for QUIC, made from Menjin's own ed25519 keys.
//!
//! Every peer presents a self-signed X.509 certificate whose key is its enrolled ed25519 key.
//! A node's certificate also carries its [`NodeCert`] (signed by the district root) in a
//! private extension, so a gate that holds only the district root key can check, during the
//! handshake, that it is talking to a node of its own community. Nodes accept a client only if
//! its key is enrolled (a gate, or the node's own console). Both sides verify the handshake
//! signature with the presented key: nothing here ever skips verification.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use ed25519_dalek::pkcs8::EncodePrivateKey;
use ed25519_dalek::{SigningKey, VerifyingKey};
use menjin_proto::{CommunityId, NodeCert};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};

/// ALPN of Menjin's gate and console protocol. 2: requests by role (`GateRequest`,
/// `ConsoleRequest`, `HubRequest`); a peer of protocol 1 fails the handshake, not a decode.
pub const ALPN: &[u8] = b"menjin/2";
/// The name clients put in the handshake; identity comes from keys, not names.
pub const SERVER_NAME: &str = "menjin-node";
/// 1.3.6.1.4.1.59151.1.1: a private arc for the node certificate extension.
const NODE_CERT_OID: &[u64] = &[1, 3, 6, 1, 4, 1, 59151, 1, 1];
const NODE_CERT_OID_STR: &str = "1.3.6.1.4.1.59151.1.1";
/// A dead peer (a gate unplugged, a hub killed) is noticed within this time, and the node
/// reconnects; keep-alives every [`KEEP_ALIVE_MS`] keep healthy links open, and a second of
/// keep-alive traffic per link is nothing next to the gate checks.
pub const IDLE_TIMEOUT_MS: u64 = 6_000;
/// Keep-alive interval, well under [`IDLE_TIMEOUT_MS`] so that a healthy idle link never
/// times out.
pub const KEEP_ALIVE_MS: u64 = 1_000;
/// Concurrent checks one gate may have in flight; more wait (backpressure).
pub const STREAMS_PER_CONNECTION_MAX: u32 = 256;
/// Handshakes quinn queues before the accept loop sees them.
const INCOMING_MAX: usize = 1024;
/// Datagrams one queued handshake may buffer, in bytes (a ClientHello with its certificate).
const INCOMING_BUFFER_LEN_MAX: u64 = 64 * 1024;
/// Datagrams all queued handshakes may buffer, in bytes.
const INCOMING_BUFFER_TOTAL_LEN_MAX: u64 = 8 * 1024 * 1024;

/// Why a TLS configuration could not be built from our key (a bad key file, not a peer).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// The ed25519 key would not encode as PKCS#8.
    #[error("cannot build certificate: {0}")]
    Key(ed25519_dalek::pkcs8::Error),
    /// rcgen could not make the self-signed certificate.
    #[error("cannot build certificate: {0}")]
    Cert(rcgen::Error),
    /// rustls refused the configuration.
    #[error("tls configuration: {0}")]
    Config(rustls::Error),
    /// The configuration offers no TLS 1.3 suite QUIC can use.
    #[error("tls configuration: {0}")]
    Suite(quinn::crypto::rustls::NoInitialCipherSuite),
}

/// Why a peer's X.509 certificate is not one of Menjin's.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PeerCertError {
    /// The certificate does not parse as X.509.
    #[error("not X.509: {0}")]
    NotX509(x509_parser::nom::Err<x509_parser::error::X509Error>),
    /// The certificate's key is of another algorithm.
    #[error("certificate key is not ed25519")]
    NotEd25519,
    /// The certificate's key is not 32 bytes.
    #[error("ed25519 key is not 32 bytes")]
    KeyLength,
    /// The 32 bytes are not a valid ed25519 point.
    #[error("invalid ed25519 key")]
    InvalidKey,
    /// The node certificate extension is there but not an octet string.
    #[error("node certificate extension is not an octet string")]
    ExtensionNotOctetString,
    /// The node certificate extension's value does not parse.
    #[error("bad node certificate extension")]
    BadExtension,
    /// The node certificate inside does not verify (see [`menjin_proto::cert::CertError`]).
    #[error(transparent)]
    NodeCert(#[from] menjin_proto::cert::CertError),
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// What a client key may do at this node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeerRole {
    /// The community workstation: declarations, passes, queries, enrolment.
    Console,
    /// An enrolled gate, by its gate id.
    Gate(String),
    /// A community node, at the district hub.
    Node(CommunityId),
}

/// The keys a node accepts, shared between the TLS verifier and the node, which enrols and
/// revokes gates while running; and the live connections of each admitted key (registered by
/// the server after the handshake), so that a key taken out is cut off at once.
#[derive(Clone, Default)]
pub struct PeerTable(Arc<RwLock<Peers>>);

#[derive(Default)]
struct Peers {
    roles: HashMap<[u8; 32], PeerRole>,
    /// Connections by key, by quinn's stable id. Only connections that hold one of the
    /// server's `CONNECTIONS_MAX` places are here, so it is bounded by that.
    live: HashMap<[u8; 32], HashMap<usize, quinn::Connection>>,
}

/// The QUIC application close code of a connection whose key was taken out of the table.
pub const CLOSE_REVOKED: u32 = 4;

/// A connection registered in a [`PeerTable`]; dropping it (when the connection's task ends)
/// takes it out.
#[must_use = "the connection stays registered only while this is held"]
pub struct LiveConnection {
    table: PeerTable,
    key: [u8; 32],
    id: usize,
}

impl Drop for LiveConnection {
    fn drop(&mut self) {
        let mut peers = self.table.write();
        if let Some(conns) = peers.live.get_mut(&self.key) {
            conns.remove(&self.id);
            if conns.is_empty() {
                peers.live.remove(&self.key);
            }
        }
    }
}

impl PeerTable {
    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Peers> {
        self.0
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
    fn read(&self) -> std::sync::RwLockReadGuard<'_, Peers> {
        self.0
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
    /// Admits `key` with `role`, replacing any role it had; new connections see it at once.
    pub fn insert(&self, key: [u8; 32], role: PeerRole) {
        self.write().roles.insert(key, role);
    }
    /// Forgets `key`: new connections with it are refused, and its open connections are
    /// closed now ([`CLOSE_REVOKED`]). Returns how many were closed.
    pub fn remove(&self, key: &[u8; 32]) -> usize {
        let conns = {
            let mut peers = self.write();
            peers.roles.remove(key);
            peers.live.remove(key).unwrap_or_default()
        };
        for conn in conns.values() {
            conn.close(CLOSE_REVOKED.into(), b"key revoked");
        }
        conns.len()
    }
    /// What `key` may do here; `None` for a key that is not admitted.
    pub fn role(&self, key: &[u8; 32]) -> Option<PeerRole> {
        self.read().roles.get(key).cloned()
    }
    /// The role of `key` and the registration of `conn` under it, in one step with respect
    /// to [`PeerTable::remove`]: a connection is either refused here or closed by a removal,
    /// never left open after its key is out. `None` (nothing registered) for a key that is
    /// not admitted.
    pub fn admit(
        &self,
        key: [u8; 32],
        conn: &quinn::Connection,
    ) -> Option<(PeerRole, LiveConnection)> {
        let mut peers = self.write();
        let role = peers.roles.get(&key).cloned()?;
        let id = conn.stable_id();
        peers.live.entry(key).or_default().insert(id, conn.clone());
        drop(peers);
        Some((
            role,
            LiveConnection {
                table: self.clone(),
                key,
                id,
            },
        ))
    }
    /// The ids of the admitted gates, sorted.
    pub fn gates(&self) -> Vec<String> {
        let mut gates: Vec<String> = self
            .read()
            .roles
            .values()
            .filter_map(|r| match r {
                PeerRole::Gate(id) => Some(id.clone()),
                PeerRole::Console | PeerRole::Node(_) => None,
            })
            .collect();
        gates.sort();
        gates
    }
}

fn wrap_octet_string(bytes: &[u8]) -> Vec<u8> {
    let mut out = vec![0x04];
    match bytes.len() {
        n if n < 0x80 => out.push(n as u8),
        n if n <= 0xff => out.extend_from_slice(&[0x81, n as u8]),
        n => out.extend_from_slice(&[0x82, (n >> 8) as u8, n as u8]),
    }
    out.extend_from_slice(bytes);
    out
}

/// A self-signed certificate for `key`, carrying `node_cert` if given.
///
/// # Errors
/// [`TlsError`] if rcgen refuses the key (it should not for ed25519).
pub fn self_signed(
    key: &SigningKey,
    node_cert: Option<&NodeCert>,
) -> Result<(CertificateDer<'static>, PrivateKeyDer<'static>), TlsError> {
    let pkcs8 = key.to_pkcs8_der().map_err(TlsError::Key)?;
    let pkcs8 = PrivatePkcs8KeyDer::from(pkcs8.as_bytes().to_vec());
    let pair = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(&pkcs8, &rcgen::PKCS_ED25519)
        .map_err(TlsError::Cert)?;
    let mut params =
        rcgen::CertificateParams::new(vec![SERVER_NAME.to_string()]).map_err(TlsError::Cert)?;
    if let Some(nc) = node_cert {
        params
            .custom_extensions
            .push(rcgen::CustomExtension::from_oid_content(
                NODE_CERT_OID,
                wrap_octet_string(&nc.encode()),
            ));
    }
    let cert = params.self_signed(&pair).map_err(TlsError::Cert)?;
    Ok((cert.der().clone(), PrivateKeyDer::Pkcs8(pkcs8)))
}

/// The ed25519 key and (for nodes) the node certificate inside a peer's X.509 certificate.
///
/// # Errors
/// [`PeerCertError`]: not X.509, not ed25519, bad extension.
pub fn parse_peer_cert(der: &[u8]) -> Result<(VerifyingKey, Option<NodeCert>), PeerCertError> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(PeerCertError::NotX509)?;
    let spki = cert.public_key();
    if spki.algorithm.algorithm.to_id_string() != "1.3.101.112" {
        return Err(PeerCertError::NotEd25519);
    }
    let raw: [u8; 32] = spki
        .subject_public_key
        .data
        .as_ref()
        .try_into()
        .map_err(|_| PeerCertError::KeyLength)?;
    let key = VerifyingKey::from_bytes(&raw).map_err(|_| PeerCertError::InvalidKey)?;
    let mut node_cert = None;
    for ext in cert.extensions() {
        if ext.oid.to_id_string() == NODE_CERT_OID_STR {
            let (_, inner) = x509_parser::der_parser::der::parse_der_octetstring(ext.value)
                .map_err(|_| PeerCertError::ExtensionNotOctetString)?;
            let bytes = inner.as_slice().map_err(|_| PeerCertError::BadExtension)?;
            node_cert = Some(NodeCert::decode(bytes)?);
        }
    }
    Ok((key, node_cert))
}

fn general(msg: impl Into<String>) -> rustls::Error {
    rustls::Error::General(msg.into())
}

fn algorithms() -> WebPkiSupportedAlgorithms {
    rustls::crypto::ring::default_provider().signature_verification_algorithms
}

/// Node side: accepts enrolled keys only.
#[derive(Debug)]
struct EnrolledClients {
    peers: PeerTableDebug,
    algs: WebPkiSupportedAlgorithms,
}

#[derive(Clone)]
struct PeerTableDebug(PeerTable);

impl std::fmt::Debug for PeerTableDebug {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PeerTable")
    }
}

impl ClientCertVerifier for EnrolledClients {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let (key, _) = parse_peer_cert(end_entity).map_err(|e| general(e.to_string()))?;
        if self.peers.0.role(key.as_bytes()).is_none() {
            tracing::warn!(key = %menjin_proto::keys::fingerprint(&key), "refused unenrolled client key");
            return Err(general("client key is not enrolled at this node"));
        }
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(general("TLS 1.2 is not used by Menjin"))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }
}

/// Gate and console side: the server must present a node certificate from the district root
/// for the expected community, bound to the key that signs the handshake.
#[derive(Debug)]
struct DistrictNodes {
    root: VerifyingKey,
    community: Option<CommunityId>,
    /// A node certificate issued (`not_before`) before this is superseded: refused.
    not_before_min: u64,
    /// Node keys the district revoked: a certificate for one is refused.
    revoked: Vec<[u8; 32]>,
    algs: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for DistrictNodes {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let (key, node_cert) = parse_peer_cert(end_entity).map_err(|e| general(e.to_string()))?;
        let node_cert = node_cert.ok_or_else(|| general("server presents no node certificate"))?;
        node_cert
            .verify(&self.root, now.as_secs())
            .map_err(|e| general(format!("server node certificate: {e}")))?;
        if node_cert.node_key != key {
            return Err(general("node certificate is for another key"));
        }
        if let Some(community) = self.community
            && node_cert.community != community
        {
            return Err(general(format!(
                "server is the node of community {}, expected {community}",
                node_cert.community
            )));
        }
        if node_cert.not_before < self.not_before_min {
            return Err(general(format!(
                "server node certificate superseded: issued at {}, before the one trusted (issued at {})",
                node_cert.not_before, self.not_before_min
            )));
        }
        if self.revoked.contains(node_cert.node_key.as_bytes()) {
            return Err(general(format!(
                "server node certificate revoked: key {} is on the district's revocation list",
                node_cert.key_id()
            )));
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(general("TLS 1.2 is not used by Menjin"))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }
}

fn transport() -> Arc<quinn::TransportConfig> {
    let mut t = quinn::TransportConfig::default();
    t.max_idle_timeout(Some(
        quinn::IdleTimeout::try_from(Duration::from_millis(IDLE_TIMEOUT_MS))
            .expect("small timeout"),
    ));
    t.keep_alive_interval(Some(Duration::from_millis(KEEP_ALIVE_MS)));
    t.max_concurrent_bidi_streams(STREAMS_PER_CONNECTION_MAX.into());
    t.max_concurrent_uni_streams(0u32.into());
    Arc::new(t)
}

/// The node's QUIC server configuration.
///
/// # Errors
/// [`TlsError`] if the certificate cannot be made.
pub fn server_config(
    node_key: &SigningKey,
    node_cert: &NodeCert,
    peers: PeerTable,
) -> Result<quinn::ServerConfig, TlsError> {
    let (cert, key) = self_signed(node_key, Some(node_cert))?;
    let verifier = Arc::new(EnrolledClients {
        peers: PeerTableDebug(peers),
        algs: algorithms(),
    });
    let mut tls = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(TlsError::Config)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![cert], key)
        .map_err(TlsError::Config)?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls).map_err(TlsError::Suite)?;
    let mut cfg = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    cfg.transport_config(transport());
    // Handshakes not yet taken by the accept loop (which admits or refuses them at once), and
    // the datagrams each may buffer meanwhile: bounded far below quinn's defaults (65,536 and
    // 100 MiB).
    cfg.max_incoming(INCOMING_MAX);
    cfg.incoming_buffer_size(INCOMING_BUFFER_LEN_MAX);
    cfg.incoming_buffer_size_total(INCOMING_BUFFER_TOTAL_LEN_MAX);
    Ok(cfg)
}

/// A gate's or console's QUIC client configuration. The server must present a node
/// certificate of `community` signed by `root`, issued no earlier than `not_before_min`
/// (a gate's current node certificate: one issued before it was replaced at a rekey is
/// superseded, whoever holds its key; 0 accepts any), and for none of the `revoked` keys
/// (those the district revoked, as a gate's trust feed names them).
///
/// # Errors
/// [`TlsError`] if the certificate cannot be made.
pub fn client_config(
    own_key: &SigningKey,
    root: VerifyingKey,
    community: Option<CommunityId>,
    not_before_min: u64,
    revoked: &[[u8; 32]],
) -> Result<quinn::ClientConfig, TlsError> {
    let (cert, key) = self_signed(own_key, None)?;
    let verifier = Arc::new(DistrictNodes {
        root,
        community,
        not_before_min,
        revoked: revoked.to_vec(),
        algs: algorithms(),
    });
    let mut tls = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(TlsError::Config)?
        .dangerous() // a custom verifier, which verifies: see DistrictNodes
        .with_custom_certificate_verifier(verifier)
        .with_client_auth_cert(vec![cert], key)
        .map_err(TlsError::Config)?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls).map_err(TlsError::Suite)?;
    let mut cfg = quinn::ClientConfig::new(Arc::new(crypto));
    cfg.transport_config(transport());
    Ok(cfg)
}

/// Stateless-reset key derived from the daemon's own secret key: after a restart (kill -9
/// included) the endpoint answers packets of connections it no longer knows with a reset its
/// peers accept, so they reconnect at once instead of waiting for the idle timeout.
struct ResetKey([u8; 32]);

impl quinn::crypto::HmacKey for ResetKey {
    fn sign(&self, data: &[u8], out: &mut [u8]) {
        use hmac::{KeyInit, Mac};
        let mut mac =
            <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(&self.0).expect("any key length");
        mac.update(data);
        out.copy_from_slice(&mac.finalize().into_bytes()[..out.len()]);
    }

    fn signature_len(&self) -> usize {
        32
    }

    fn verify(&self, data: &[u8], signature: &[u8]) -> Result<(), quinn::crypto::CryptoError> {
        let mut expected = [0u8; 32];
        self.sign(data, &mut expected);
        let n = signature.len().min(32);
        // Compare without an early exit.
        let diff = expected[..n]
            .iter()
            .zip(signature)
            .fold(u8::from(signature.len() != 32), |acc, (a, b)| acc | (a ^ b));
        if diff == 0 {
            Ok(())
        } else {
            Err(quinn::crypto::CryptoError)
        }
    }
}

/// Binds a server endpoint whose stateless resets survive restarts (see [`ResetKey`]).
///
/// # Errors
/// If the address cannot be bound.
pub fn server_endpoint(
    own_key: &SigningKey,
    cfg: quinn::ServerConfig,
    addr: std::net::SocketAddr,
) -> std::io::Result<quinn::Endpoint> {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update(b"menjin stateless reset v1");
    h.update(own_key.to_bytes());
    let reset = ResetKey(h.finalize().into());
    let endpoint_cfg = quinn::EndpointConfig::new(Arc::new(reset));
    let socket = std::net::UdpSocket::bind(addr)?;
    let runtime =
        quinn::default_runtime().ok_or_else(|| std::io::Error::other("no async runtime"))?;
    quinn::Endpoint::new(endpoint_cfg, Some(cfg), socket, runtime)
}

/// The key a connected peer authenticated with.
pub fn peer_key(conn: &quinn::Connection) -> Option<VerifyingKey> {
    let identity = conn.peer_identity()?;
    let certs = identity.downcast_ref::<Vec<CertificateDer<'static>>>()?;
    parse_peer_cert(certs.first()?).ok().map(|(key, _)| key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use menjin_proto::keys::signing_key_from_seed;

    #[test]
    fn node_certificate_travels_inside_x509() {
        let root = signing_key_from_seed([1; 32]);
        let node = signing_key_from_seed([2; 32]);
        let nc = NodeCert::issue(&root, 9, "九", node.verifying_key(), 0, u64::MAX);
        let (der, _) = self_signed(&node, Some(&nc)).unwrap();
        let (key, back) = parse_peer_cert(&der).unwrap();
        assert_eq!(key, node.verifying_key());
        assert_eq!(back, Some(nc));
        let (der, _) = self_signed(&node, None).unwrap();
        assert_eq!(parse_peer_cert(&der).unwrap().1, None);
        assert!(parse_peer_cert(b"garbage").is_err());
    }
}
