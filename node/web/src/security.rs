//! Headers on every answer (a strict Content-Security-Policy: scripts and styles only from
//! this node's embedded files, no inline script or style, no framing, no referrer; HSTS
//! under HTTPS), the
//! cross-site check on every state-changing request, and the CSRF token comparison.

use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

/// Everything comes from the node itself; htmx's requests and the live stream go back to it
/// (`connect-src`);
/// QR codes are inline SVG (markup, not images).
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                   connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

/// Under HTTPS: browsers come back over HTTPS only, for a year (a browser ignores it on a
/// connection with a certificate error, so a self-signed certificate still lets a resident
/// accept it).
const HSTS: &str = "max-age=31536000";

/// The printed pass's page (`views::pass`) only: the same, and the pass's photo as a `data:`
/// image (it is part of the pass's markup, made by `menjin_render::pass`).
pub(crate) const PASS_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
                   img-src 'self' data:; connect-src 'self'; form-action 'self'; base-uri 'none'; \
                   frame-ancestors 'none'";

/// Sets the headers of every answer; a page that set its own CSP (the pass) keeps it.
pub(crate) async fn headers(req: Request, next: Next, secure: bool) -> Response {
    let assets = req.uri().path().starts_with("/assets/");
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    if secure {
        h.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static(HSTS),
        );
    }
    if !h.contains_key(header::CONTENT_SECURITY_POLICY) {
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        );
    }
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if !assets {
        // Pages carry codes and personal data: never kept by a shared phone's cache.
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    resp
}

/// Whether a state-changing request comes from another site. Browsers since 2023 send
/// `Sec-Fetch-Site`; before that, `Origin` must name this host. (With `Referrer-Policy:
/// no-referrer` a browser may send `Origin: null` for its own forms: then the CSRF token and
/// the `SameSite=Strict` cookie decide.)
pub(crate) fn is_cross_site(method: &Method, headers: &HeaderMap) -> bool {
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return false;
    }
    if let Some(site) = headers.get("sec-fetch-site") {
        return !matches!(site.as_bytes(), b"same-origin" | b"none");
    }
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    if origin == "null" {
        return false;
    }
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    let origin_host = origin.split_once("://").map(|(_, rest)| rest);
    origin_host.is_none() || origin_host != host
}

pub(crate) async fn cross_site(req: Request, next: Next) -> Response {
    if is_cross_site(req.method(), req.headers()) {
        tracing::warn!(path = req.uri().path(), "cross-site request refused");
        return (StatusCode::FORBIDDEN, "cross-site request refused").into_response();
    }
    next.run(req).await
}

/// A fresh random token (session ids, CSRF tokens): 128 bits, hex.
pub(crate) fn token() -> String {
    let mut b = [0u8; 16];
    rand::fill(&mut b);
    hex::encode(b)
}

/// Compares a submitted CSRF token with the expected one in constant time.
pub(crate) fn token_matches(expected: &str, given: Option<&str>) -> bool {
    let Some(given) = given else {
        return false;
    };
    !expected.is_empty() && bool::from(expected.as_bytes().ct_eq(given.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.insert(*k, HeaderValue::from_static(v));
        }
        m
    }

    #[test]
    fn posts_from_other_sites_are_cross_site() {
        let post = Method::POST;
        assert!(!is_cross_site(
            &post,
            &h(&[("sec-fetch-site", "same-origin")])
        ));
        assert!(is_cross_site(
            &post,
            &h(&[("sec-fetch-site", "cross-site")])
        ));
        assert!(is_cross_site(&post, &h(&[("sec-fetch-site", "same-site")])));
        let evil = h(&[("origin", "http://evil.example"), ("host", "10.0.0.2:8080")]);
        assert!(is_cross_site(&post, &evil));
        let own = h(&[
            ("origin", "http://10.0.0.2:8080"),
            ("host", "10.0.0.2:8080"),
        ]);
        assert!(!is_cross_site(&post, &own));
        assert!(!is_cross_site(
            &Method::GET,
            &h(&[("sec-fetch-site", "cross-site")])
        ));
    }

    #[test]
    fn tokens_compare_whole() {
        let t = token();
        assert_eq!(t.len(), 32);
        assert!(token_matches(&t, Some(&t)));
        assert!(!token_matches(&t, Some(&t[..31])));
        assert!(!token_matches(&t, None));
        assert!(!token_matches("", Some("")));
    }
}
