//! The staff side's door: the login form (`/staff`), logging out, the staff home page that
//! lists the staff pages, and [`staff`], what every staff page calls first ("a session of
//! a member whose role is at least ...").
//!
//! A wrong name and a wrong password get the same answer in the same time (the node runs one
//! argon2 verification either way); wrong logins are rate-limited per source and per name.
//! Every request asks the node for the member again: a removed account, or a changed
//! password (a new stamp), ends the session at once.

use std::net::SocketAddr;
use std::time::Instant;

use askama::Template;
use askama_web::WebTemplate;
use axum::Form;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use menjin_community::staff::StaffMember;
use menjin_proto::staff::StaffRole;
use serde::Deserialize;

use super::{internal, lang, redirect_with};
use crate::App;
use crate::i18n::Text;
use crate::security::{token, token_matches};
use crate::session::{STAFF_COOKIE, STAFF_LOGIN_COOKIE, Session, cookie, set_cookie};

/// What the staff layout (`staff_base.html`) needs.
pub(crate) struct StaffPage {
    pub(crate) t: &'static Text,
    /// The session's CSRF token (empty on the login page: no log-out button).
    pub(crate) csrf: String,
    /// Where the language switch comes back to.
    pub(crate) back: &'static str,
    /// The member logged in (empty on the login page).
    pub(crate) who: String,
    /// `clerk` or `head`, in words.
    pub(crate) role: &'static str,
}

impl StaffPage {
    pub(crate) fn of(t: &'static Text, s: &StaffOpen, back: &'static str) -> StaffPage {
        StaffPage {
            t,
            csrf: s.session.csrf.clone(),
            back,
            who: s.session.who.name.clone(),
            role: t.role(s.session.who.role),
        }
    }
}

/// A staff member's open session, checked with the node on this request.
pub(crate) struct StaffOpen {
    pub(crate) id: String,
    pub(crate) session: Session<StaffMember>,
}

impl StaffOpen {
    /// The member's name, as recorded with what they do (`staff` of a paper declaration).
    pub(crate) fn name(&self) -> &str {
        &self.session.who.name
    }
}

/// The request's staff session if its member's role is at least `role`; otherwise the
/// answer to give instead: the login page for no session (or one that has ended), a
/// refusal page for a clerk on a head's page. (The error is the response itself, made once
/// per request: its size does not matter.)
#[allow(clippy::result_large_err)]
pub(crate) fn staff(
    app: &App,
    headers: &HeaderMap,
    role: StaffRole,
) -> Result<StaffOpen, Response> {
    let to_login = || Redirect::to("/staff").into_response();
    let id = cookie(headers, STAFF_COOKIE).ok_or_else(to_login)?;
    let session = app
        .staff_sessions
        .get(id, Instant::now())
        .ok_or_else(to_login)?;
    match app.node.staff_member(&session.who.name) {
        Ok(Some(m)) if m.stamp == session.who.stamp => {}
        Ok(_) => {
            app.staff_sessions.end(id);
            return Err(to_login());
        }
        Err(r) => return Err(internal(&r.message)),
    }
    let open = StaffOpen {
        id: id.to_string(),
        session,
    };
    if open.session.who.role < role {
        let t = lang(headers).text();
        let page = StaffMessage {
            p: StaffPage::of(t, &open, "/staff/home"),
            message: t.staff_forbidden,
        };
        return Err((StatusCode::FORBIDDEN, page).into_response());
    }
    Ok(open)
}

/// A state-changing staff request: the session of at least `role` (as [`staff`]) whose form
/// carried its token `csrf`, and the page's language; or the answer refusing it.
#[allow(clippy::result_large_err)]
pub(crate) fn staff_posting(
    app: &App,
    headers: &HeaderMap,
    role: StaffRole,
    csrf: &str,
) -> Result<(StaffOpen, &'static Text), Response> {
    let s = staff(app, headers, role)?;
    let t = lang(headers).text();
    if !token_matches(&s.session.csrf, Some(csrf)) {
        return Err(staff_forbidden(t, &s));
    }
    Ok((s, t))
}

/// A staff page whose form token did not match (stale page, or a forged request).
pub(crate) fn staff_forbidden(t: &'static Text, s: &StaffOpen) -> Response {
    let page = StaffMessage {
        p: StaffPage::of(t, s, "/staff/home"),
        message: t.expired_form,
    };
    (StatusCode::FORBIDDEN, page).into_response()
}

#[derive(Template, WebTemplate)]
#[template(path = "staff_message.html")]
pub(crate) struct StaffMessage {
    pub(crate) p: StaffPage,
    pub(crate) message: &'static str,
}

#[derive(Template, WebTemplate)]
#[template(path = "staff_login.html")]
pub(crate) struct StaffLogin {
    pub(crate) p: StaffPage,
    /// The login form's own token (no session yet): a cookie and the same value in the form.
    pub(crate) token: String,
    pub(crate) name: String,
    pub(crate) error: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "staff_home.html")]
pub(crate) struct StaffHome {
    pub(crate) p: StaffPage,
    pub(crate) head: bool,
}

/// The login form; its token cookie is `Secure` under HTTPS (`secure`).
fn login_page(
    headers: &HeaderMap,
    secure: bool,
    status: StatusCode,
    name: String,
    error: String,
) -> Response {
    let t = lang(headers).text();
    let existing = cookie(headers, STAFF_LOGIN_COOKIE).filter(|v| v.len() == 32);
    let token = existing.map_or_else(token, str::to_string);
    let page = StaffLogin {
        p: StaffPage {
            t,
            csrf: String::new(),
            back: "/staff",
            who: String::new(),
            role: "",
        },
        token: token.clone(),
        name,
        error,
    };
    let mut resp = (status, page).into_response();
    if existing.is_none()
        && let Ok(v) = set_cookie(STAFF_LOGIN_COOKIE, &token, None, secure).parse()
    {
        resp.headers_mut().append(axum::http::header::SET_COOKIE, v);
    }
    resp
}

pub(crate) async fn page(State(app): State<App>, headers: HeaderMap) -> Response {
    if staff(&app, &headers, StaffRole::Clerk).is_ok() {
        return Redirect::to("/staff/home").into_response();
    }
    login_page(
        &headers,
        app.secure,
        StatusCode::OK,
        String::new(),
        String::new(),
    )
}

#[derive(Deserialize)]
pub(crate) struct LoginForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    password: String,
}

pub(crate) async fn submit(
    State(app): State<App>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    let t = lang(&headers).text();
    let expected = cookie(&headers, STAFF_LOGIN_COOKIE).unwrap_or_default();
    if !token_matches(expected, Some(&form.csrf)) {
        return super::forbidden(t, String::new());
    }
    let now = Instant::now();
    // Shown again in the form: bounded, and without control characters.
    let typed: String = form
        .name
        .chars()
        .filter(|c| !c.is_control())
        .take(64)
        .collect();
    if let Err(limited) = app.limits.staff_attempt(peer.ip(), &form.name, now) {
        tracing::warn!(source = %peer.ip(), "staff logins rate-limited");
        return login_page(
            &headers,
            app.secure,
            StatusCode::TOO_MANY_REQUESTS,
            typed,
            t.limited_for(limited.0),
        );
    }
    let node = app.node.clone();
    let (name, password) = (form.name.clone(), form.password);
    let answer = tokio::task::spawn_blocking(move || node.staff_login(&name, &password)).await;
    let member = match answer {
        Ok(Ok(Some(m))) => m,
        Ok(Ok(None)) => {
            app.limits.staff_failed(peer.ip(), &form.name, now);
            tracing::info!(source = %peer.ip(), "wrong staff name or password");
            return login_page(
                &headers,
                app.secure,
                StatusCode::UNAUTHORIZED,
                typed,
                t.staff_wrong.to_string(),
            );
        }
        Ok(Err(r)) => return internal(&r.message),
        Err(e) => return internal(&e.to_string()),
    };
    tracing::info!(staff = %member.name, role = member.role.as_str(), "staff logged in");
    let id = app.staff_sessions.open(member, now);
    redirect_with(
        "/staff/home",
        &[
            set_cookie(STAFF_COOKIE, &id, None, app.secure),
            set_cookie(STAFF_LOGIN_COOKIE, "", Some(0), app.secure),
        ],
    )
}

/// A form that carries nothing but its CSRF token (a logout, the pass's Print).
#[derive(Deserialize)]
pub(crate) struct CsrfForm {
    #[serde(default)]
    pub(crate) csrf: String,
}

pub(crate) async fn logout(
    State(app): State<App>,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Response {
    let t = lang(&headers).text();
    let gone = || {
        redirect_with(
            "/staff",
            &[set_cookie(STAFF_COOKIE, "", Some(0), app.secure)],
        )
    };
    let Ok(s) = staff(&app, &headers, StaffRole::Clerk) else {
        return gone();
    };
    if !token_matches(&s.session.csrf, Some(&form.csrf)) {
        return staff_forbidden(t, &s);
    }
    app.staff_sessions.end(&s.id);
    tracing::info!(staff = %s.name(), "staff logged out");
    gone()
}

pub(crate) async fn home(State(app): State<App>, headers: HeaderMap) -> Response {
    let s = match staff(&app, &headers, StaffRole::Clerk) {
        Ok(s) => s,
        Err(resp) => return resp,
    };
    let t = lang(&headers).text();
    StaffHome {
        p: StaffPage::of(t, &s, "/staff/home"),
        head: s.session.who.role >= StaffRole::Head,
    }
    .into_response()
}
