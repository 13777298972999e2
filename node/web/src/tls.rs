//! HTTPS for the pages: the certificate and key from `[web] tls_cert` / `tls_key` (PEM),
//! checked to belong together at start, and a listener that does each TLS handshake in its
//! own task (bounded in number and time) so a slow or silent client holds up nobody.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_rustls::TlsAcceptor;
pub use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::server::TlsStream;

/// A PEM file bigger than this is not a certificate chain or a key (a chain of a few
/// certificates is a few KB).
const PEM_LEN_MAX: u64 = 64 * 1024;
/// Handshakes in progress at once; past it new connections wait in the kernel's backlog.
const HANDSHAKES_MAX: usize = 64;
/// A client that has not finished its handshake by then is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshaken connections waiting for the HTTP server to take them.
const READY_MAX: usize = 64;

/// Why the certificate or the key was refused; [`TlsError::key`] names the `node.toml` key to
/// point at.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// The certificate file: unreadable, too big, or no PEM certificate in it.
    #[error("{0}")]
    Cert(String),
    /// The key file: unreadable, too big, no PEM private key in it, or a key rustls cannot use.
    #[error("{0}")]
    Key(String),
    /// The key is not the certificate's.
    #[error("this key does not belong to the certificate in tls_cert")]
    Mismatch,
    /// A certificate of the node's own could not be made ([`self_signed`]).
    #[error("cannot make the certificate: {0}")]
    Make(String),
}

impl TlsError {
    /// The `[web]` key whose value is at fault.
    pub fn key(&self) -> &'static str {
        match self {
            TlsError::Cert(_) | TlsError::Make(_) => "tls_cert",
            TlsError::Key(_) | TlsError::Mismatch => "tls_key",
        }
    }
}

fn read_pem(path: &Path) -> Result<Vec<u8>, String> {
    let len = std::fs::metadata(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?
        .len();
    if len > PEM_LEN_MAX {
        return Err(format!(
            "{} is {len} bytes: a PEM file of at most {PEM_LEN_MAX} bytes is expected",
            path.display()
        ));
    }
    std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

/// Loads and checks a certificate chain and its key (PEM files).
///
/// # Errors
/// [`TlsError`] saying which file and why.
pub fn load(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, TlsError> {
    let cert_pem = read_pem(cert).map_err(TlsError::Cert)?;
    let key_pem = read_pem(key).map_err(TlsError::Key)?;
    server_config(&cert_pem, &key_pem)
}

/// A server configuration from PEM bytes: HTTP/1.1, TLS 1.2 and 1.3, ring.
///
/// # Errors
/// [`TlsError`] if either does not parse or they do not belong together.
pub fn server_config(cert_pem: &[u8], key_pem: &[u8]) -> Result<Arc<ServerConfig>, TlsError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Cert(format!("not a PEM certificate chain: {e}")))?;
    if chain.is_empty() {
        return Err(TlsError::Cert(
            "no certificate in it (expected -----BEGIN CERTIFICATE-----)".into(),
        ));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem)
        .map_err(|e| TlsError::Key(format!("no PEM private key in it: {e}")))?;
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Key(e.to_string()))?
        .with_no_client_auth();
    let mut config = builder.with_single_cert(chain, key).map_err(|e| {
        use tokio_rustls::rustls::{Error, InconsistentKeys};
        match e {
            Error::InconsistentKeys(InconsistentKeys::KeyMismatch) => TlsError::Mismatch,
            Error::InvalidCertificate(e) => {
                TlsError::Cert(format!("not a usable certificate: {e}"))
            }
            other => TlsError::Key(format!("not a usable key for this certificate: {other}")),
        }
    })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A listener that hands the HTTP server connections whose TLS handshake is done.
pub(crate) struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl TlsListener {
    /// Starts accepting on `tcp` (inside a tokio runtime); stops when the listener is dropped.
    pub(crate) fn new(tcp: TcpListener, config: Arc<ServerConfig>) -> std::io::Result<Self> {
        let local = tcp.local_addr()?;
        let (tx, ready) = mpsc::channel(READY_MAX);
        tokio::spawn(accept_loop(tcp, TlsAcceptor::from(config), tx));
        Ok(TlsListener { ready, local })
    }
}

async fn accept_loop(
    tcp: TcpListener,
    acceptor: TlsAcceptor,
    tx: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
) {
    let handshakes = Arc::new(Semaphore::new(HANDSHAKES_MAX));
    loop {
        let Ok(permit) = handshakes.clone().acquire_owned().await else {
            return;
        };
        let accepted = tokio::select! {
            _ = tx.closed() => return,
            a = tcp.accept() => a,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // As axum's own listener: too many open files and the like pass.
                tracing::debug!(error = %e, "web accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let (acceptor, tx) = (acceptor.clone(), tx.clone());
        tokio::spawn(async move {
            let _permit = permit;
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => {
                    let _ = tx.send((tls, peer)).await;
                }
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "web TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "web TLS handshake timed out"),
            }
        });
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(conn) => conn,
            // The accept loop ended (it only does when this listener is dropped).
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.local)
    }
}

/// A certificate of the pages' own for `names` (DNS names or IP addresses, the first one is
/// the subject), valid from `now` for `days`, self-signed with a new ECDSA P-256 key: the
/// certificate and the key as PEM. (`menjin node web-cert`.)
///
/// # Errors
/// [`TlsError::Make`]: no name, or a name rcgen refuses.
pub fn self_signed(names: &[String], now: u64, days: u32) -> Result<(String, String), TlsError> {
    use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair};
    let make = |e: rcgen::Error| TlsError::Make(e.to_string());
    let Some(first) = names.first() else {
        return Err(TlsError::Make("no name given".into()));
    };
    let mut params = CertificateParams::new(names.to_vec()).map_err(make)?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, first.as_str());
    dn.push(DnType::OrganizationName, "Menjin community node");
    params.distinguished_name = dn;
    let ymd = |secs: u64| {
        let d = menjin_proto::civil::Date::from_unix(secs);
        let small = |n: u32| u8::try_from(n).unwrap_or(1);
        rcgen::date_time_ymd(d.year, small(d.month), small(d.day))
    };
    // From yesterday: a phone whose clock is a little behind still accepts it.
    params.not_before = ymd(now.saturating_sub(86_400));
    params.not_after = ymd(now + u64::from(days) * 86_400);
    let key = KeyPair::generate().map_err(make)?;
    let cert = params.self_signed(&key).map_err(make)?;
    Ok((
        pem("CERTIFICATE", cert.der()),
        pem("PRIVATE KEY", &key.serialize_der()),
    ))
}

fn pem(label: &str, der: &[u8]) -> String {
    let b64 = data_encoding::BASE64.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_certificate_loads_with_its_key_and_not_with_another() {
        let names = vec!["192.168.10.2".to_string(), "node.example".to_string()];
        let (cert, key) = self_signed(&names, 1_796_083_200, 730).unwrap();
        assert!(cert.starts_with("-----BEGIN CERTIFICATE-----\n"));
        assert!(server_config(cert.as_bytes(), key.as_bytes()).is_ok());
        let (_, other) = self_signed(&names, 1_796_083_200, 730).unwrap();
        let e = server_config(cert.as_bytes(), other.as_bytes()).unwrap_err();
        assert!(matches!(e, TlsError::Mismatch), "{e:?}");
        assert_eq!(e.key(), "tls_key");
        let e = server_config(key.as_bytes(), key.as_bytes()).unwrap_err();
        assert_eq!(e.key(), "tls_cert", "{e:?}");
        let e = server_config(cert.as_bytes(), cert.as_bytes()).unwrap_err();
        assert_eq!(e.key(), "tls_key", "{e:?}");
        assert!(self_signed(&[], 0, 1).is_err());
    }
}
