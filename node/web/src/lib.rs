//! The community node's web pages. Residents open their home with the printed household
//! code, declare (the same validation and review as the console), and show their codes as QR
//! under "my declarations". Server-rendered (askama templates in `templates/`), every asset
//! embedded in the binary (`assets`), a little htmx for the live parts; Chinese first.
//!
//! What it must never do: put an ID number in a URL, a log line or an error message; accept
//! a state-changing request without its CSRF token or from another site; load anything from
//! the internet; show a home anything of another home; reach the node other than through
//! `menjin_community::Node`'s operations.
//!
//! The gate device's screen for the guard (`screen`) is served from here too, with the same
//! assets, words and headers; it knows nothing of the node (the CLI feeds it the gate's
//! decisions).

#![warn(unreachable_pub, missing_docs, unused_crate_dependencies)]

mod assets;
mod i18n;
mod limit;
mod live;
mod qr;
pub mod screen;
mod security;
mod session;
pub mod tls;
mod upload;
mod views;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use menjin_community::Node;
use tokio_rustls::rustls::ServerConfig;

/// A request that takes longer than this is stuck (a declaration is one sled flush). (It
/// bounds the time to an answer's head: a live stream's body runs on.)
const REQUEST_TIMEOUT_MS: u64 = 10_000;
/// Forms are a few hundred bytes: every route but a photo upload reads at most this.
const BODY_LEN_MAX: usize = 64 * 1024;

/// Answers at least this big are sent gzip-compressed to a browser that accepts it.
const COMPRESS_ABOVE: u64 = 8 * 1024;

/// gzip for the big answers of the routes it is layered on: "my declarations" (about 4 KB
/// of QR per member; a home of 64 members is ~260 KB, 83 KB compressed, where a page may
/// weigh 100 KB) and the embedded assets (htmx is 53 KB, 24 KB compressed). Only there: a page that echoes what a request
/// chose (the gate log's filters) beside a secret (the CSRF token) must not be compressed
/// under HTTPS (BREACH); "my declarations" echoes nothing of the request, the assets hold
/// no secret.
pub(crate) fn compress() -> tower_http::compression::CompressionLayer<
    tower_http::compression::predicate::And<
        tower_http::compression::DefaultPredicate,
        tower_http::compression::predicate::SizeAbove,
    >,
> {
    use tower_http::compression::predicate::{Predicate, SizeAbove};
    tower_http::compression::CompressionLayer::new()
        .quality(tower_http::CompressionLevel::Fastest)
        .compress_when(
            tower_http::compression::DefaultPredicate::new().and(SizeAbove::new(COMPRESS_ABOVE)),
        )
}

/// What every handler shares.
pub(crate) struct Web {
    pub(crate) node: Arc<Node>,
    pub(crate) sessions: session::Sessions<[u8; 32]>,
    /// Staff logged in at the office (see `views::staff`).
    pub(crate) staff_sessions: session::Sessions<menjin_community::staff::StaffMember>,
    pub(crate) limits: limit::Limits,
    /// Served over HTTPS: cookies carry `Secure`, answers `Strict-Transport-Security`.
    pub(crate) secure: bool,
    /// The open live streams (bounded per session and in all).
    pub(crate) live: live::Streams,
    /// Codes' QR images, drawn once per code text.
    pub(crate) qr: qr::QrCache,
    /// Becomes `true` when the server stops: live streams end so the drain finishes.
    pub(crate) stopping: tokio::sync::watch::Receiver<bool>,
}

pub(crate) type App = Arc<Web>;

/// The pages' routes and middleware over `app`.
fn router(app: App) -> Router {
    let secure = app.secure;
    views::routes()
        .merge(assets::routes())
        .layer(axum::middleware::from_fn(security::cross_site))
        .layer(axum::middleware::from_fn(
            move |req: axum::extract::Request, next: axum::middleware::Next| {
                security::headers(req, next, secure)
            },
        ))
        // Extractors read at most BODY_LEN_MAX, photo uploads (`upload::limit`) more; no
        // request, whatever reads it, carries more than an upload may.
        .layer(axum::extract::DefaultBodyLimit::max(BODY_LEN_MAX))
        .layer(tower_http::limit::RequestBodyLimitLayer::new(
            upload::UPLOAD_LEN_MAX,
        ))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            Duration::from_millis(REQUEST_TIMEOUT_MS),
        ))
        .with_state(app)
}

/// A bound web listener, ready to serve.
pub struct WebServer {
    listener: tokio::net::TcpListener,
    tls: Option<Arc<ServerConfig>>,
    router: Router,
    stop: tokio::sync::watch::Sender<bool>,
}

impl WebServer {
    /// Binds the pages' address (inside a tokio runtime): HTTPS with `tls` (see
    /// [`tls::load`]), plain HTTP without, and then a warning when it listens beyond
    /// loopback (household codes and declarations would cross the LAN unencrypted).
    ///
    /// # Errors
    /// If the address cannot be bound.
    pub fn bind(
        node: Arc<Node>,
        listen: SocketAddr,
        tls: Option<Arc<ServerConfig>>,
    ) -> std::io::Result<WebServer> {
        let std_listener = std::net::TcpListener::bind(listen)?;
        std_listener.set_nonblocking(true)?;
        let listener = tokio::net::TcpListener::from_std(std_listener)?;
        if tls.is_none() && !listen.ip().is_loopback() {
            tracing::warn!(
                %listen,
                "web pages served over plain HTTP beyond loopback: household codes and \
                 declarations cross the network unencrypted (set tls_cert and tls_key in [web])"
            );
        }
        let (stop, stopping) = tokio::sync::watch::channel(false);
        let app = Arc::new(Web {
            node,
            sessions: session::Sessions::default(),
            staff_sessions: session::Sessions::new(
                session::STAFF_SESSION_IDLE,
                session::STAFF_SESSION_LIFETIME,
                session::STAFF_SESSIONS_MAX,
            ),
            limits: limit::Limits::default(),
            secure: tls.is_some(),
            live: live::Streams::default(),
            qr: qr::QrCache::default(),
            stopping,
        });
        Ok(WebServer {
            listener,
            tls,
            router: router(app),
            stop,
        })
    }

    /// # Errors
    /// If the socket has no address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// `https` or `http`.
    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() { "https" } else { "http" }
    }

    /// Serves until `shutdown`, then ends the live streams and waits for the requests in
    /// flight.
    pub async fn serve(self, shutdown: impl Future<Output = ()> + Send + 'static) {
        use axum::serve::ListenerExt;
        let addr = self.listener.local_addr().ok();
        tracing::info!(addr = ?addr, scheme = self.scheme(), "web pages serving");
        let stop = self.stop;
        let shutdown = async move {
            shutdown.await;
            let _ = stop.send(true);
        };
        let service = self
            .router
            .into_make_service_with_connect_info::<SocketAddr>();
        let result = match self.tls {
            Some(config) => match tls::TlsListener::new(self.listener, config) {
                Ok(listener) => {
                    axum::serve(listener.tap_io(|_| {}), service)
                        .with_graceful_shutdown(shutdown)
                        .await
                }
                Err(e) => Err(e),
            },
            None => {
                let listener = self.listener.tap_io(|tcp| {
                    let _ = tcp.set_nodelay(true);
                });
                axum::serve(listener, service)
                    .with_graceful_shutdown(shutdown)
                    .await
            }
        };
        if let Err(e) = result {
            tracing::error!(error = %e, "web pages stopped");
        }
        tracing::info!("web pages stopped");
    }
}
