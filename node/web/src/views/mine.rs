//! "My declarations": each member of the home with the review's outcome and their code as a
//! QR, a running clock under it (a screenshot shows its time), the lockdown in force; kept
//! up to date without a reload by the live stream (`crate::live`).

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use menjin_community::households::Household;
use menjin_community::service::{CodeState, Member};
use menjin_proto::credential::HolderKind;
use menjin_proto::declaration::Outcome;

use super::{Page, cst, lang, open};
use crate::App;
use crate::i18n::Text;

/// One member as the page shows them.
pub(crate) struct MemberView {
    pub(crate) holder: String,
    pub(crate) name: String,
    pub(crate) status: &'static str,
    /// `ok`, `warn` or `bad`: the colour of the status.
    pub(crate) class: &'static str,
    pub(crate) why: String,
    pub(crate) qr: Option<std::sync::Arc<str>>,
    pub(crate) code: String,
    /// The code may be shown at the gate (active, not expired).
    pub(crate) live: bool,
    pub(crate) until: String,
    /// Declared by a relative (the proxy rule): may ask for a printed pass here.
    pub(crate) dependent: bool,
    /// A photo is on file: the printed pass can be collected at the office.
    pub(crate) has_photo: bool,
}

#[derive(Template, WebTemplate)]
#[template(path = "mine.html")]
pub(crate) struct Mine {
    pub(crate) p: Page,
    pub(crate) building: String,
    pub(crate) door: String,
    pub(crate) members: Vec<MemberView>,
    pub(crate) now_ms: u64,
    pub(crate) now_text: String,
    pub(crate) lockdown: Option<&'static str>,
    pub(crate) ended: bool,
}

#[derive(Template, WebTemplate)]
#[template(path = "partials/members.html")]
pub(crate) struct Members {
    pub(crate) p: Page,
    pub(crate) members: Vec<MemberView>,
    pub(crate) now_ms: u64,
    pub(crate) now_text: String,
    /// In a lockdown: whether residents may go out, in words.
    pub(crate) lockdown: Option<&'static str>,
    /// The home's session is over (the live stream's last word).
    pub(crate) ended: bool,
}

pub(crate) fn view(app: &App, t: &'static Text, m: Member) -> MemberView {
    let (status, class, live, code) = match &m.code {
        Some((_, _, CodeState::Active)) => (t.code_active, "ok", true, m.code.clone()),
        Some((_, _, CodeState::Expired)) => (t.code_expired, "warn", false, m.code.clone()),
        Some((_, _, CodeState::Revoked { .. })) => (t.code_revoked, "bad", false, m.code.clone()),
        None if m.outcome == Outcome::Cleared => (t.no_code, "warn", false, None),
        None => (t.outcome(m.outcome), "bad", false, None),
    };
    let why = match &m.code {
        Some((_, _, CodeState::Revoked { why })) => t.why(why),
        _ if m.outcome != Outcome::Cleared => t.why(&m.why),
        _ => String::new(),
    };
    let qr = code.as_ref().and_then(|(text, _, _)| app.qr.svg(text));
    MemberView {
        holder: m.holder.to_string(),
        name: m.name,
        status,
        class,
        why,
        qr,
        live,
        code: code.as_ref().map(|c| c.0.clone()).unwrap_or_default(),
        until: code
            .map(|(_, until, _)| cst(until, false))
            .unwrap_or_default(),
        dependent: m.kind == HolderKind::Dependent,
        has_photo: m.has_photo,
    }
}

#[allow(clippy::result_large_err)] // the error is the page's answer, once per request
fn members_of(
    app: &App,
    t: &'static Text,
    home: &Household,
    now: u64,
) -> Result<Vec<MemberView>, Response> {
    let members = app
        .node
        .household_members(home, now)
        .map_err(|r| super::internal(&r.message))?;
    Ok(members.into_iter().map(|m| view(app, t, m)).collect())
}

/// The lockdown banner's second sentence, if the community is locked down.
pub(crate) fn lockdown(app: &App, t: &'static Text) -> Option<&'static str> {
    app.node.lockdown().locked.then(|| {
        if app.node.config.residents_may_leave_in_lockdown {
            t.lockdown_may_leave
        } else {
            t.lockdown_stay_in
        }
    })
}

/// What the members partial shows of a home at `now_ms`, before anything is drawn: the
/// live stream compares it with what it last sent and draws only when it differs. `None` if
/// the node failed (logged).
pub(crate) fn home_state(
    app: &App,
    t: &'static Text,
    home: &Household,
    now_ms: u64,
) -> Option<HomeState> {
    match app.node.household_members(home, now_ms / 1000) {
        Ok(members) => Some(HomeState {
            members,
            lockdown: lockdown(app, t),
        }),
        Err(r) => {
            tracing::error!(error = %r.message, "members of a home not read");
            None
        }
    }
}

/// A home's members and the lockdown banner: everything the members partial shows but the
/// clock.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct HomeState {
    members: Vec<Member>,
    lockdown: Option<&'static str>,
}

/// The members partial of `state` (the live stream's event).
pub(crate) fn render_members(
    app: &App,
    t: &'static Text,
    state: HomeState,
    now_ms: u64,
) -> Members {
    Members {
        p: Page {
            t,
            csrf: String::new(),
            back: "/my",
        },
        members: state.members.into_iter().map(|m| view(app, t, m)).collect(),
        now_ms,
        now_text: cst(now_ms / 1000, true),
        lockdown: state.lockdown,
        ended: false,
    }
}

pub(crate) async fn page(State(app): State<App>, headers: HeaderMap) -> Response {
    let o = match open(&app, &headers) {
        Ok(o) => o,
        Err(resp) => return resp,
    };
    let t = lang(&headers).text();
    let now_ms = menjin_net::clock::now_ms();
    let members = match members_of(&app, t, &o.home, now_ms / 1000) {
        Ok(m) => m,
        Err(resp) => return resp,
    };
    Mine {
        lockdown: lockdown(&app, t),
        ended: false,
        p: Page {
            t,
            csrf: o.session.csrf,
            back: "/my",
        },
        building: o.home.building,
        door: o.home.door,
        members,
        now_ms,
        now_text: cst(now_ms / 1000, true),
    }
    .into_response()
}
