//! The pages: `login` (the household code, log out, the language switch), `mine` ("my
//! declarations": members, codes as QR, the running clock; its live stream is `crate::live`),
//! `declare` (the form and the review's outcome), `dependent` (a dependent declared by proxy,
//! on the same form), `photo` (a photo for a printed pass), `visitors` (invite, list,
//! withdraw), `staff` (the staff login, home, and the session check every staff page starts
//! with), `paper` (a paper declaration with its photo), `pass` (the printed pass), `homes` (household codes and
//! their slip sheets), `progress` (per building against the deadline). Every handler that changes state checks the CSRF token of its form;
//! the cross-site check runs before all of them (`security`).

mod declare;
mod dependent;
mod gatelog;
mod homes;
mod lockdown;
mod login;
pub(crate) mod mine;
mod paper;
mod pass;
mod people;
mod photo;
mod progress;
pub(crate) mod staff;
mod visitors;

use std::time::Instant;

use axum::Router;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use menjin_community::households::Household;

use crate::App;
use crate::i18n::{Lang, Text};
use crate::security::token_matches;
use crate::session::{LANG_COOKIE, SESSION_COOKIE, Session, cookie};

pub(crate) fn routes() -> Router<App> {
    Router::new()
        .route("/", get(login::page))
        .route("/login", post(login::submit))
        .route("/logout", post(login::logout))
        .route("/lang/{to}", get(login::switch_lang))
        .route("/my", get(mine::page).layer(crate::compress()))
        .route("/my/live", get(crate::live::page))
        .route("/declare", get(declare::page).post(declare::submit))
        .route(
            "/my/dependent",
            get(dependent::page).post(dependent::submit),
        )
        .route(
            "/my/photo",
            get(photo::page)
                .post(photo::submit)
                .layer(crate::upload::limit()),
        )
        .route("/my/visitors", get(visitors::page).post(visitors::invite))
        .route("/my/visitors/withdraw", post(visitors::withdraw))
        .route("/staff", get(staff::page))
        .route("/staff/login", post(staff::submit))
        .route("/staff/logout", post(staff::logout))
        .route("/staff/home", get(staff::home))
        .route(
            "/staff/declare",
            get(paper::page)
                .post(paper::submit)
                .layer(crate::upload::limit()),
        )
        .route("/staff/pass", get(pass::find))
        .route("/staff/pass/{holder}", get(pass::page))
        .route("/staff/pass/{holder}/printed", post(pass::printed))
        .route("/staff/homes", get(homes::page))
        .route("/staff/homes/slips", post(homes::slips))
        .route("/staff/homes/revoke", post(homes::revoke))
        .route("/staff/progress", get(progress::page))
        // Find a person, audit log, gate log, local lockdown (people, gatelog, lockdown).
        .route("/staff/people", get(people::page).post(people::search))
        .route("/staff/people/{holder}", get(people::person))
        .route("/staff/audit", get(people::audit))
        .route("/staff/gatelog", get(gatelog::page))
        .route("/staff/gatelog.csv", get(gatelog::csv))
        .route(
            "/staff/lockdown",
            get(lockdown::page).post(lockdown::submit),
        )
}

/// What the base layout needs.
pub(crate) struct Page {
    pub(crate) t: &'static Text,
    /// The session's CSRF token (empty when no home is open: no log-out button).
    pub(crate) csrf: String,
    /// Where the language switch comes back to.
    pub(crate) back: &'static str,
}

pub(crate) fn lang(headers: &HeaderMap) -> Lang {
    Lang::from_cookie(cookie(headers, LANG_COOKIE))
}

/// An open home: the session and the household, checked with the node on every request (a
/// revoked or reissued code ends its sessions at once).
pub(crate) struct Open {
    pub(crate) id: String,
    pub(crate) session: Session<[u8; 32]>,
    pub(crate) home: Household,
}

/// The request's open home, or the answer to give instead (back to the code page). (The
/// error is the response itself, made once per request: its size does not matter.)
#[allow(clippy::result_large_err)]
pub(crate) fn open(app: &App, headers: &HeaderMap) -> Result<Open, Response> {
    let to_login = || Redirect::to("/").into_response();
    let id = cookie(headers, SESSION_COOKIE).ok_or_else(to_login)?;
    let session = app.sessions.get(id, Instant::now()).ok_or_else(to_login)?;
    match app.node.household(&session.who) {
        Ok(Some(home)) => Ok(Open {
            id: id.to_string(),
            session,
            home,
        }),
        Ok(None) => {
            app.sessions.end(id);
            Err(to_login())
        }
        Err(r) => Err(internal(&r.message)),
    }
}

pub(crate) fn internal(what: &str) -> Response {
    tracing::error!(error = what, "web page failed");
    (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
}

/// A page whose form token did not match (stale page, or a forged request).
/// A state-changing resident request: the open home (as [`open`]) and its form's CSRF
/// token checked against the session's, with the page's words; the refusal otherwise.
#[allow(clippy::result_large_err)] // the error is the page's answer, once per request
pub(crate) fn posting(
    app: &App,
    headers: &HeaderMap,
    csrf: &str,
) -> Result<(Open, &'static Text), Response> {
    let o = open(app, headers)?;
    let t = lang(headers).text();
    if !token_matches(&o.session.csrf, Some(csrf)) {
        return Err(forbidden(t, o.session.csrf));
    }
    Ok((o, t))
}

pub(crate) fn forbidden(t: &'static Text, csrf: String) -> Response {
    let page = login::Message {
        p: Page { t, csrf, back: "/" },
        message: t.expired_form,
    };
    (StatusCode::FORBIDDEN, page).into_response()
}

/// A response that sets cookies and redirects.
pub(crate) fn redirect_with(to: &str, cookies: &[String]) -> Response {
    let mut resp = Redirect::to(to).into_response();
    for c in cookies {
        if let Ok(v) = c.parse() {
            resp.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    resp
}

/// Unix seconds as China Standard Time (UTC+8), `YYYY-MM-DD HH:MM[:SS]`: the time on the
/// gate's screen, whatever the node's own zone.
pub(crate) fn cst(secs: u64, seconds: bool) -> String {
    let local = secs + 8 * 3600;
    let date = menjin_proto::civil::Date::from_unix(local);
    let s = local % 86_400;
    if seconds {
        format!("{date} {:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
    } else {
        format!("{date} {:02}:{:02}", s / 3600, s / 60 % 60)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn times_are_shown_in_china_standard_time() {
        // 2026-12-01 00:00:00 UTC is 08:00 in Shenzhen.
        assert_eq!(super::cst(1_796_083_200, true), "2026-12-01 08:00:00");
        assert_eq!(
            super::cst(1_796_083_200 + 16 * 3600, false),
            "2026-12-02 00:00"
        );
    }
}
