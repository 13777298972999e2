//! The printed pass at the office (`/staff/pass/{holder}`): the existing A6 pass
//! (`menjin_render::pass::pass_body`), alone on the printed sheet, with a Print button.
//!
//! The pass's markup carries no `style` attribute: its print CSS is `PASS_CSS`, served as
//! `/assets/pass.css`, and the page's own toolbar is in `/assets/pass-page.css` (hidden when
//! printing). The photo is a `data:` image inside the pass: this one page's CSP allows
//! `img-src data:` (`security::PASS_CSP`), no other page does. The button's script is
//! `/assets/print.js`: it POSTs the button's form (`/staff/pass/{holder}/printed`, with the
//! CSRF token), which counts the print, then opens the print dialog. A view is not a print:
//! only the button counts (a print from the browser's own menu goes uncounted). A holder is
//! named by their opaque holder id, never an ID number.

use askama::Template;
use askama_web::WebTemplate;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use menjin_proto::credential::HolderId;
use menjin_proto::staff::StaffRole;
use menjin_proto::wire::Response as NodeResponse;
use serde::Deserialize;

use super::lang;
use super::staff::{StaffMessage, StaffPage, staff, staff_posting};
use crate::App;

#[derive(Template, WebTemplate)]
#[template(path = "staff_pass.html")]
pub(crate) struct PassPage {
    pub(crate) p: StaffPage,
    /// The pass's markup from `pass_body` (escaped there).
    pub(crate) body: String,
    pub(crate) holder: String,
}

pub(crate) async fn page(
    State(app): State<App>,
    headers: HeaderMap,
    Path(holder): Path<String>,
) -> Response {
    let s = match staff(&app, &headers, StaffRole::Clerk) {
        Ok(s) => s,
        Err(resp) => return resp,
    };
    let t = lang(&headers).text();
    let refuse = |status: StatusCode, message: String| {
        let page = StaffRefusal {
            p: StaffPage::of(t, &s, "/staff/home"),
            message,
        };
        (status, page).into_response()
    };
    let Ok(holder) = holder.parse::<HolderId>() else {
        return refuse(StatusCode::NOT_FOUND, t.pass_no_holder.to_string());
    };
    let node = app.node.clone();
    let now = menjin_net::clock::now_ms() / 1000;
    let answer = tokio::task::spawn_blocking(move || node.print_pass_body(holder, now)).await;
    let body = match answer {
        Ok(NodeResponse::Pass { html, .. }) => html,
        Ok(NodeResponse::Error { message, .. }) => {
            return refuse(StatusCode::UNPROCESSABLE_ENTITY, message);
        }
        Ok(_) => return super::internal("unexpected answer to a pass"),
        Err(e) => return super::internal(&e.to_string()),
    };
    tracing::info!(staff = %s.name(), %holder, "pass shown");
    let mut resp = PassPage {
        p: StaffPage::of(t, &s, "/staff/home"),
        body,
        holder: holder.to_string(),
    }
    .into_response();
    resp.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(crate::security::PASS_CSP),
    );
    resp
}

/// A refusal with the node's own words (not cleared, no photo, ...).
#[derive(Template, WebTemplate)]
#[template(path = "staff_refusal.html")]
pub(crate) struct StaffRefusal {
    pub(crate) p: StaffPage,
    pub(crate) message: String,
}

#[derive(Deserialize)]
pub(crate) struct Find {
    #[serde(default)]
    holder: String,
}

/// The home page's "print a pass" box: a holder id typed in, to that holder's pass.
pub(crate) async fn find(
    State(app): State<App>,
    headers: HeaderMap,
    Query(q): Query<Find>,
) -> Response {
    let s = match staff(&app, &headers, StaffRole::Clerk) {
        Ok(s) => s,
        Err(resp) => return resp,
    };
    match q.holder.trim().parse::<HolderId>() {
        Ok(h) => Redirect::to(&format!("/staff/pass/{h}")).into_response(),
        Err(_) => {
            let t = lang(&headers).text();
            let page = StaffMessage {
                p: StaffPage::of(t, &s, "/staff/home"),
                message: t.pass_no_holder,
            };
            (StatusCode::NOT_FOUND, page).into_response()
        }
    }
}

/// The Print button: one pass printed, counted at the node; `204 No Content` (a form sent
/// without the script leaves the page as it is).
pub(crate) async fn printed(
    State(app): State<App>,
    headers: HeaderMap,
    Path(holder): Path<String>,
    Form(form): Form<super::staff::CsrfForm>,
) -> Response {
    let (s, t) = match staff_posting(&app, &headers, StaffRole::Clerk, &form.csrf) {
        Ok(v) => v,
        Err(resp) => return resp,
    };
    let Ok(holder) = holder.parse::<HolderId>() else {
        return (StatusCode::NOT_FOUND, t.pass_no_holder).into_response();
    };
    let node = app.node.clone();
    match tokio::task::spawn_blocking(move || node.pass_printed(holder)).await {
        Ok(NodeResponse::Done(_)) => {
            tracing::info!(staff = %s.name(), %holder, "pass printed");
            StatusCode::NO_CONTENT.into_response()
        }
        Ok(NodeResponse::Error { message, .. }) => {
            (StatusCode::UNPROCESSABLE_ENTITY, message).into_response()
        }
        Ok(_) => super::internal("unexpected answer to a printed pass"),
        Err(e) => super::internal(&e.to_string()),
    }
}
