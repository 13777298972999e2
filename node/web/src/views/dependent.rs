//! Declaring a dependent of the home (an elderly parent, a child) by proxy: the same form
//! and validation as one's own declaration (`views::declare`), plus who declares (`by`),
//! one of this home's members holding a code in force. The node checks the proxy rule and
//! that `by` is this home's (`Node::declare_for_dependent`); a forged `by` is refused there
//! as well as here.

use axum::Form;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use menjin_community::households::Household;
use menjin_community::service::{CodeState, HomeRefusal};
use menjin_proto::civil::Date;
use menjin_proto::credential::HolderId;

use super::declare::{DeclareForm, Errors, Kind, form_page, parse, result_page};
use super::{Page, lang, open, posting};
use crate::App;
use crate::i18n::Text;

/// The home's members who hold a code in force (holder id, name): who may declare for
/// others and consent to visitors.
#[allow(clippy::result_large_err)] // the error is the page's answer, once per request
pub(crate) fn active_members(
    app: &App,
    home: &Household,
    now: u64,
) -> Result<Vec<(String, String)>, Response> {
    let members = app
        .node
        .household_members(home, now)
        .map_err(|r| super::internal(&r.message))?;
    Ok(members
        .into_iter()
        .filter(|m| matches!(m.code, Some((_, _, CodeState::Active))))
        .map(|m| (m.holder.to_string(), m.name))
        .collect())
}

/// The page that says a home needs one member with a valid code first.
pub(crate) fn need_member(t: &'static Text, csrf: String) -> Response {
    let page = super::login::Message {
        p: Page {
            t,
            csrf,
            back: "/my",
        },
        message: t.need_proxy,
    };
    (StatusCode::CONFLICT, page).into_response()
}

pub(crate) async fn page(State(app): State<App>, headers: HeaderMap) -> Response {
    let o = match open(&app, &headers) {
        Ok(o) => o,
        Err(resp) => return resp,
    };
    let t = lang(&headers).text();
    let now = menjin_net::clock::now_ms() / 1000;
    let proxies = match active_members(&app, &o.home, now) {
        Ok(p) => p,
        Err(resp) => return resp,
    };
    let Some(first) = proxies.first() else {
        return need_member(t, o.session.csrf);
    };
    let f = DeclareForm {
        by: first.0.clone(),
        person_type: "household".into(),
        ..DeclareForm::blank()
    };
    let kind = Kind::Dependent(proxies);
    form_page(
        t,
        o.session.csrf,
        &o.home,
        f,
        Errors::default(),
        String::new(),
        kind,
    )
    .into_response()
}

pub(crate) async fn submit(
    State(app): State<App>,
    headers: HeaderMap,
    Form(f): Form<DeclareForm>,
) -> Response {
    let (o, t) = match posting(&app, &headers, &f.csrf) {
        Ok(posted) => posted,
        Err(resp) => return resp,
    };
    let now_ms = menjin_net::clock::now_ms();
    let now = now_ms / 1000;
    let proxies = match active_members(&app, &o.home, now) {
        Ok(p) => p,
        Err(resp) => return resp,
    };
    let by = proxies
        .iter()
        .find(|(h, _)| *h == f.by)
        .and_then(|(h, _)| h.parse::<HolderId>().ok());
    let parsed = parse(
        &f,
        (o.home.building.as_str(), o.home.door.as_str()),
        t,
        Date::from_unix(now),
    );
    let refuse = |f: DeclareForm, errors: Errors, refusal: String| {
        let kind = Kind::Dependent(proxies.clone());
        let page = form_page(t, o.session.csrf.clone(), &o.home, f, errors, refusal, kind);
        (StatusCode::UNPROCESSABLE_ENTITY, page).into_response()
    };
    let (form, by) = match (parsed, by) {
        (Ok(form), Some(by)) => (form, by),
        (parsed, _) => {
            let mut errors = parsed.err().unwrap_or_default();
            if by.is_none() {
                tracing::warn!("dependent's form names no active member of this home");
                errors.add("by", t.e_by_member);
            }
            return refuse(f, errors, String::new());
        }
    };
    let node = app.node.clone();
    let home = o.home.clone();
    let answer =
        tokio::task::spawn_blocking(move || node.declare_for_dependent(&home, by, form, now)).await;
    let mut errors = Errors::default();
    let refusal = match answer {
        Ok(Ok(receipt)) => return result_page(&app, t, o.session.csrf, receipt, now_ms),
        Ok(Err(HomeRefusal::NotMember | HomeRefusal::NoValidCode)) => {
            errors.add("by", t.e_by_member);
            String::new()
        }
        Ok(Err(HomeRefusal::NotAdult)) => {
            errors.add("by", t.e_by_adult);
            String::new()
        }
        Ok(Err(HomeRefusal::Themself)) => {
            errors.add("document_number", t.e_themself);
            String::new()
        }
        Ok(Err(HomeRefusal::OtherHome)) => t.other_home.to_string(),
        Ok(Err(HomeRefusal::Node(r))) => r.message,
        Ok(Err(other)) => format!("{other:?}"),
        Err(e) => return super::internal(&e.to_string()),
    };
    refuse(f, errors, refusal)
}
