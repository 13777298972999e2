//! The pages' static files, embedded in the binary: nothing is loaded from anywhere else.

use axum::Router;
use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// htmx 2.0.11 as published on npm (`npm pack htmx.org@2`, `dist/htmx.min.js`).
const HTMX: &[u8] = include_bytes!("../assets/htmx-2.0.11.min.js");
/// htmx's SSE extension 2.2.4 as published on npm (`npm pack htmx-ext-sse@2`,
/// `dist/sse.min.js`, 0BSD): the live part of "my declarations".
const SSE: &[u8] = include_bytes!("../assets/htmx-ext-sse-2.2.4.min.js");
const STYLE: &[u8] = include_bytes!("../assets/style.css");
const CLOCK: &[u8] = include_bytes!("../assets/clock.js");
/// The printed pass's page: its toolbar and the Print button (views/pass.rs).
const PASS_PAGE: &[u8] = include_bytes!("../assets/pass-page.css");
/// The household code slips' sheet: toolbar on screen, A4 pages of slips on paper
/// (views/homes.rs).
const SLIPS: &[u8] = include_bytes!("../assets/slips.css");
const PRINT: &[u8] = include_bytes!("../assets/print.js");
/// The guard's screen at the gate (`screen.rs`): kiosk-sized, readable from two metres.
const SCREEN: &[u8] = include_bytes!("../assets/screen.css");

/// The assets' route, for the node's pages (`App`) and the gate's screen alike.
pub(crate) fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new().route("/assets/{name}", get(asset).layer(crate::compress()))
}

async fn asset(Path(name): Path<String>) -> Response {
    let (body, mime) = match name.as_str() {
        "htmx.min.js" => (HTMX, "text/javascript; charset=utf-8"),
        "sse.min.js" => (SSE, "text/javascript; charset=utf-8"),
        "style.css" => (STYLE, "text/css; charset=utf-8"),
        "clock.js" => (CLOCK, "text/javascript; charset=utf-8"),
        // The pass's own print CSS, from the renderer that makes the pass.
        "pass.css" => (
            menjin_render::pass::PASS_CSS.as_bytes(),
            "text/css; charset=utf-8",
        ),
        "pass-page.css" => (PASS_PAGE, "text/css; charset=utf-8"),
        "slips.css" => (SLIPS, "text/css; charset=utf-8"),
        "print.js" => (PRINT, "text/javascript; charset=utf-8"),
        "screen.css" => (SCREEN, "text/css; charset=utf-8"),
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    (
        [
            (header::CONTENT_TYPE, mime),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        body,
    )
        .into_response()
}
