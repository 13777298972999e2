//! The local lockdown at the office (`/staff/lockdown`): the lockdown in force shown, and a
//! form to start or lift one decided at this node (`ConsoleRequest::LocalLockdown`), with a
//! reason and a confirmation checkbox the server checks. `by` is the staff member logged in.
//!
//! For the head of the office only: a lockdown shuts every gate of the compound to every
//! outsider and vehicle (rule 7), the decision of whoever answers for the compound, not of
//! the clerk at the desk; a clerk sees the refusal page.

use askama::Template;
use askama_web::WebTemplate;
use axum::Form;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use menjin_proto::record::LOCKDOWN_REASON_LEN_MAX;
use menjin_proto::staff::StaffRole;
use menjin_proto::wire::{ConsoleRequest, Response as NodeResponse};
use serde::Deserialize;

use super::staff::{StaffOpen, StaffPage, staff, staff_posting};
use super::{cst, internal, lang};
use crate::App;
use crate::i18n::Text;

#[derive(Template, WebTemplate)]
#[template(path = "staff_lockdown.html")]
pub(crate) struct LockdownPage {
    pub(crate) p: StaffPage,
    pub(crate) locked: bool,
    /// Why, as staff (or the district) typed it: of the lockdown in force, or of the last lift.
    pub(crate) reason: String,
    /// Who decided it (empty: nobody yet).
    pub(crate) by: String,
    pub(crate) since: String,
    /// The form again after an error.
    pub(crate) typed: String,
    pub(crate) error: Option<(&'static str, &'static str)>,
    pub(crate) reason_max: usize,
}

impl LockdownPage {
    pub(crate) fn err(&self, field: &str) -> Option<&'static str> {
        self.error.filter(|(f, _)| *f == field).map(|(_, m)| m)
    }
}

fn state_page(
    app: &App,
    t: &'static Text,
    s: &StaffOpen,
    typed: String,
    error: Option<(&'static str, &'static str)>,
) -> LockdownPage {
    let l = app.node.lockdown();
    // The node's own decision in force: its reason and who decided, apart, so the page words
    // them in its language (the node's `reason` adds English words for the CLI).
    let (reason, by) = match app.node.local_lockdown() {
        Some(d) if d.at == l.at && d.by == l.by => (d.reason, d.by),
        _ => (l.reason, l.by),
    };
    LockdownPage {
        p: StaffPage::of(t, s, "/staff/lockdown"),
        locked: l.locked,
        reason,
        by,
        since: if l.at > 0 {
            cst(l.at, false)
        } else {
            String::new()
        },
        typed,
        error,
        reason_max: LOCKDOWN_REASON_LEN_MAX,
    }
}

pub(crate) async fn page(State(app): State<App>, headers: HeaderMap) -> Response {
    let s = match staff(&app, &headers, StaffRole::Head) {
        Ok(s) => s,
        Err(resp) => return resp,
    };
    let t = lang(&headers).text();
    state_page(&app, t, &s, String::new(), None).into_response()
}

#[derive(Deserialize)]
pub(crate) struct LockdownForm {
    #[serde(default)]
    csrf: String,
    /// `start` or `lift`.
    #[serde(default)]
    action: String,
    #[serde(default)]
    reason: String,
    /// The checkbox: `yes` when ticked, absent otherwise.
    #[serde(default)]
    confirm: String,
}

/// Start (`true`) or lift, and the reason; or the field that is wrong.
fn checked(
    t: &'static Text,
    f: &LockdownForm,
) -> Result<(bool, String), (&'static str, &'static str)> {
    let locked = match f.action.as_str() {
        "start" => true,
        "lift" => false,
        _ => return Err(("action", t.lock_e_action)),
    };
    let reason = f.reason.trim();
    if reason.chars().any(char::is_control) {
        return Err(("reason", t.lock_e_control));
    }
    if reason.len() > LOCKDOWN_REASON_LEN_MAX {
        return Err(("reason", t.lock_e_long));
    }
    if reason.is_empty() {
        return Err(("reason", t.e_required));
    }
    if f.confirm != "yes" {
        return Err(("confirm", t.lock_e_confirm));
    }
    Ok((locked, reason.to_string()))
}

pub(crate) async fn submit(
    State(app): State<App>,
    headers: HeaderMap,
    Form(form): Form<LockdownForm>,
) -> Response {
    let (s, t) = match staff_posting(&app, &headers, StaffRole::Head, &form.csrf) {
        Ok(v) => v,
        Err(resp) => return resp,
    };
    // Shown again: bounded, without control characters.
    let typed: String = form
        .reason
        .chars()
        .filter(|c| !c.is_control())
        .take(LOCKDOWN_REASON_LEN_MAX)
        .collect();
    let (locked, reason) = match checked(t, &form) {
        Ok(v) => v,
        Err(e) => {
            let page = state_page(&app, t, &s, typed, Some(e));
            return (StatusCode::UNPROCESSABLE_ENTITY, page).into_response();
        }
    };
    let node = app.node.clone();
    let by = s.name().to_string();
    let now = menjin_net::clock::now_ms() / 1000;
    let req = ConsoleRequest::LocalLockdown { locked, reason, by };
    match tokio::task::spawn_blocking(move || node.console(req, now)).await {
        Ok(NodeResponse::Done(_)) => {
            tracing::warn!(staff = %s.name(), locked, "local lockdown decided on the staff page");
            Redirect::to("/staff/lockdown").into_response()
        }
        Ok(NodeResponse::Error { message, .. }) => internal(&message),
        Ok(_) => internal("unexpected answer to a lockdown"),
        Err(e) => internal(&e.to_string()),
    }
}
