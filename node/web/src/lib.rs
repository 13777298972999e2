//! The community node's web pages. Residents open their home with the printed household
//! code, declare (the same validation and review as the console), and show their codes as QR
//! under "my declarations". Server-rendered (askama templates in `templates/`), every asset
//! embedded in the binary (`assets`), a little htmx for the live parts; Chinese first.
//!
//! What it must never do: put an ID number in a URL, a log line or an error message; accept
//! a state-changing request without its CSRF token or from another site; load anything from
//! the internet; show a home anything of another home; reach the node other than through
//! `menjin_community::Node`'s operations.

#![warn(unreachable_pub, missing_docs, unused_crate_dependencies)]

mod assets;
mod i18n;
mod limit;
mod security;
mod session;
mod views;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use menjin_community::Node;

/// A request that takes longer than this is stuck (a declaration is one sled flush).
const REQUEST_TIMEOUT_MS: u64 = 10_000;
/// Forms are a few hundred bytes; only the routes that take a photo allow more.
const BODY_LEN_MAX: usize = 64 * 1024;
/// A paper declaration with its photo: the photo (`PHOTO_LEN_MAX`, 1 MiB) and the form's
/// fields and multipart framing.
const PHOTO_BODY_LEN_MAX: usize = menjin_proto::wire::PHOTO_LEN_MAX + 64 * 1024;

/// What every handler shares.
pub(crate) struct Web {
    pub(crate) node: Arc<Node>,
    pub(crate) sessions: session::Sessions<[u8; 32]>,
    /// Staff logged in at the office (see `views::staff`).
    pub(crate) staff_sessions: session::Sessions<menjin_community::staff::StaffMember>,
    pub(crate) limits: limit::Limits,
    /// Cookies carry `Secure` (only when served over HTTPS, which is not built yet).
    pub(crate) secure: bool,
}

pub(crate) type App = Arc<Web>;

/// The pages' routes and middleware, for the node's `Node`.
pub fn router(node: Arc<Node>) -> Router {
    let app: App = Arc::new(Web {
        node,
        sessions: session::Sessions::default(),
        staff_sessions: session::Sessions::new(
            session::STAFF_SESSION_IDLE,
            session::STAFF_SESSION_LIFETIME,
            session::STAFF_SESSIONS_MAX,
        ),
        limits: limit::Limits::default(),
        secure: false,
    });
    // The body limit is per route: the small one everywhere but where a photo is uploaded.
    views::routes()
        .merge(assets::routes())
        .layer(tower_http::limit::RequestBodyLimitLayer::new(BODY_LEN_MAX))
        .merge(
            views::photo_routes().layer(tower_http::limit::RequestBodyLimitLayer::new(
                PHOTO_BODY_LEN_MAX,
            )),
        )
        .layer(axum::middleware::from_fn(security::cross_site))
        .layer(axum::middleware::from_fn(security::headers))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            Duration::from_millis(REQUEST_TIMEOUT_MS),
        ))
        .with_state(app)
}

/// A bound web listener, ready to serve.
pub struct WebServer {
    listener: tokio::net::TcpListener,
    router: Router,
}

impl WebServer {
    /// Binds the pages' address (inside a tokio runtime). Warns when it listens beyond
    /// loopback: the pages are plain HTTP, so household codes and declarations cross the LAN
    /// unencrypted.
    ///
    /// # Errors
    /// If the address cannot be bound.
    pub fn bind(node: Arc<Node>, listen: SocketAddr) -> std::io::Result<WebServer> {
        let std_listener = std::net::TcpListener::bind(listen)?;
        std_listener.set_nonblocking(true)?;
        let listener = tokio::net::TcpListener::from_std(std_listener)?;
        if !listen.ip().is_loopback() {
            tracing::warn!(
                %listen,
                "web pages served over plain HTTP beyond loopback: household codes and \
                 declarations cross the network unencrypted (HTTPS is not built yet)"
            );
        }
        Ok(WebServer {
            listener,
            router: router(node),
        })
    }

    /// # Errors
    /// If the socket has no address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown`, then waits for the requests in flight.
    pub async fn serve(self, shutdown: impl Future<Output = ()> + Send + 'static) {
        let addr = self.listener.local_addr().ok();
        tracing::info!(addr = ?addr, "web pages serving");
        let service = self
            .router
            .into_make_service_with_connect_info::<SocketAddr>();
        if let Err(e) = axum::serve(self.listener, service)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::error!(error = %e, "web pages stopped");
        }
        tracing::info!("web pages stopped");
    }
}
