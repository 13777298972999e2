//! The household code page, opening and ending a session, the language switch.

use std::net::SocketAddr;
use std::time::Instant;

use askama::Template;
use askama_web::WebTemplate;
use axum::Form;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use menjin_community::households::HouseholdCode;
use serde::Deserialize;

use super::{Page, forbidden, lang, open, redirect_with};
use crate::App;
use crate::security::{token, token_matches};
use crate::session::{LANG_COOKIE, LOGIN_COOKIE, SESSION_COOKIE, cookie, set_cookie};

#[derive(Template, WebTemplate)]
#[template(path = "login.html")]
pub(crate) struct Login {
    pub(crate) p: Page,
    /// The login form's own token (no session yet): a cookie and the same value in the form.
    pub(crate) token: String,
    pub(crate) error: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "message.html")]
pub(crate) struct Message {
    pub(crate) p: Page,
    pub(crate) message: &'static str,
}

fn login_page(app: &App, headers: &HeaderMap, status: StatusCode, error: String) -> Response {
    let t = lang(headers).text();
    let existing = cookie(headers, LOGIN_COOKIE).filter(|v| v.len() == 32);
    let token = existing.map_or_else(token, str::to_string);
    let page = Login {
        p: Page {
            t,
            csrf: String::new(),
            back: "/",
        },
        token: token.clone(),
        error,
    };
    let mut resp = (status, page).into_response();
    if existing.is_none()
        && let Ok(v) = set_cookie(LOGIN_COOKIE, &token, None, app.secure).parse()
    {
        resp.headers_mut().append(axum::http::header::SET_COOKIE, v);
    }
    resp
}

pub(crate) async fn page(State(app): State<App>, headers: HeaderMap) -> Response {
    if open(&app, &headers).is_ok() {
        return axum::response::Redirect::to("/my").into_response();
    }
    login_page(&app, &headers, StatusCode::OK, String::new())
}

#[derive(Deserialize)]
pub(crate) struct LoginForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    code: String,
}

pub(crate) async fn submit(
    State(app): State<App>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    let t = lang(&headers).text();
    let expected = cookie(&headers, LOGIN_COOKIE).unwrap_or_default();
    if !token_matches(expected, Some(&form.csrf)) {
        return forbidden(t, String::new());
    }
    let now = Instant::now();
    let parsed = HouseholdCode::parse(&form.code);
    // The limiter's key for a code: its canonical form, or what was typed (bounded).
    let key = parsed.as_ref().map_or_else(
        || {
            form.code
                .chars()
                .take(40)
                .collect::<String>()
                .to_uppercase()
        },
        HouseholdCode::to_text,
    );
    if let Err(limited) = app.limits.attempt(peer.ip(), &key, now) {
        tracing::warn!(source = %peer.ip(), "household code attempts rate-limited");
        return login_page(
            &app,
            &headers,
            StatusCode::TOO_MANY_REQUESTS,
            t.limited_for(limited.0),
        );
    }
    let home = match parsed.map(|c| app.node.open_household(&c)) {
        Some(Ok(Some(home))) => home,
        Some(Err(r)) => return super::internal(&r.message),
        Some(Ok(None)) | None => {
            app.limits.failed(peer.ip(), now);
            tracing::info!(source = %peer.ip(), "wrong household code");
            return login_page(
                &app,
                &headers,
                StatusCode::UNAUTHORIZED,
                t.wrong_code.to_string(),
            );
        }
    };
    let id = app.sessions.open(home.code_hash, now);
    tracing::info!(building = %home.building, door = %home.door, "household session opened");
    redirect_with(
        "/my",
        &[
            set_cookie(SESSION_COOKIE, &id, None, app.secure),
            set_cookie(LOGIN_COOKIE, "", Some(0), app.secure),
        ],
    )
}

pub(crate) async fn logout(
    State(app): State<App>,
    headers: HeaderMap,
    Form(form): Form<super::staff::CsrfForm>,
) -> Response {
    let t = lang(&headers).text();
    let Ok(o) = open(&app, &headers) else {
        return redirect_with("/", &[set_cookie(SESSION_COOKIE, "", Some(0), app.secure)]);
    };
    if !token_matches(&o.session.csrf, Some(&form.csrf)) {
        return forbidden(t, o.session.csrf);
    }
    app.sessions.end(&o.id);
    redirect_with("/", &[set_cookie(SESSION_COOKIE, "", Some(0), app.secure)])
}

#[derive(Deserialize)]
pub(crate) struct Back {
    back: Option<String>,
}

/// The language switch: remembered for a year; comes back only to one of the pages.
pub(crate) async fn switch_lang(
    State(app): State<App>,
    Path(to): Path<String>,
    Query(q): Query<Back>,
) -> Response {
    let value = if to == "en" { "en" } else { "zh" };
    let back = match q.back.as_deref() {
        Some("/my") => "/my",
        Some("/declare") => "/declare",
        Some("/my/dependent") => "/my/dependent",
        Some("/my/visitors") => "/my/visitors",
        Some("/staff") => "/staff",
        Some("/staff/home") => "/staff/home",
        Some("/staff/declare") => "/staff/declare",
        Some("/staff/homes") => "/staff/homes",
        Some("/staff/progress") => "/staff/progress",
        Some("/staff/people") => "/staff/people",
        Some("/staff/audit") => "/staff/audit",
        Some("/staff/gatelog") => "/staff/gatelog",
        Some("/staff/lockdown") => "/staff/lockdown",
        _ => "/",
    };
    redirect_with(
        back,
        &[set_cookie(
            LANG_COOKIE,
            value,
            Some(365 * 86_400),
            app.secure,
        )],
    )
}
