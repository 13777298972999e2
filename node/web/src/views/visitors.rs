//! Visitors: a member of the home holding a code in force consents to a named visitor for a
//! window of at most a week (`Node::invite_from_household`); the visitor's code is shown at
//! once as a QR with its window; the home's invitations are listed with their state, each
//! in force with a button that withdraws the consent (`Node::withdraw_in_household`). Only
//! this home's members may be hosts and only this home's invitations are listed or
//! withdrawn, checked by the node.

use askama::Template;
use askama_web::WebTemplate;
use axum::Form;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use menjin_community::households::Household;
use menjin_community::service::{HomeRefusal, Invitation, InvitationState};
use menjin_proto::civil::parse_date;
use menjin_proto::credential::{CredId, HolderId};
use menjin_proto::declaration::{NAME_LEN_MAX, PHONE_LEN_MAX};
use serde::Deserialize;

use super::declare::Errors;
use super::dependent::active_members;
use super::{Page, cst, lang, open, posting};
use crate::App;
use crate::i18n::Text;

/// China Standard Time is UTC+8 (the time people read on the gate's screen).
const CST_OFFSET_S: u64 = 8 * 3600;
/// The window a new form suggests: the next four hours, as `menjin visitor invite` does.
const DEFAULT_WINDOW_S: u64 = 4 * 3600;

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct InviteForm {
    pub(crate) csrf: String,
    pub(crate) host: String,
    pub(crate) name: String,
    pub(crate) phone: String,
    pub(crate) from: String,
    pub(crate) until: String,
}

/// One invitation as the list shows it.
pub(crate) struct InvitationView {
    pub(crate) cred: String,
    pub(crate) visitor_name: String,
    pub(crate) host_name: String,
    pub(crate) window: String,
    /// `upcoming`, `active`, `expired`, `withdrawn`, `host_lapsed`.
    pub(crate) state: &'static str,
    pub(crate) state_text: &'static str,
    pub(crate) class: &'static str,
    /// In force: its QR (to show again) and the withdraw button.
    pub(crate) qr: Option<std::sync::Arc<str>>,
    pub(crate) code: String,
    pub(crate) can_withdraw: bool,
}

#[derive(Template, WebTemplate)]
#[template(path = "visitors.html")]
pub(crate) struct VisitorsPage {
    pub(crate) p: Page,
    pub(crate) f: InviteForm,
    pub(crate) errors: Errors,
    pub(crate) banner: String,
    pub(crate) banner_good: bool,
    pub(crate) hosts: Vec<(String, String)>,
    pub(crate) invitations: Vec<InvitationView>,
}

#[derive(Template, WebTemplate)]
#[template(path = "visitor.html")]
pub(crate) struct VisitorPage {
    pub(crate) p: Page,
    pub(crate) visitor_name: String,
    pub(crate) window: String,
    pub(crate) qr: Option<std::sync::Arc<str>>,
    pub(crate) code: String,
    pub(crate) now_ms: u64,
    pub(crate) now_text: String,
}

/// `YYYY-MM-DDTHH:MM[:SS]` (a `datetime-local` field) in China Standard Time, as Unix seconds.
fn parse_local(s: &str) -> Option<u64> {
    let (date, time) = s.trim().split_once('T')?;
    let day = parse_date(date)?.to_unix()?;
    let mut parts = time.split(':');
    let h: u64 = parts.next().filter(|p| p.len() == 2)?.parse().ok()?;
    let m: u64 = parts.next().filter(|p| p.len() == 2)?.parse().ok()?;
    let s: u64 = match parts.next() {
        Some(p) if p.len() == 2 => p.parse().ok()?,
        Some(_) => return None,
        None => 0,
    };
    if parts.next().is_some() || h > 23 || m > 59 || s > 59 {
        return None;
    }
    (day + h * 3600 + m * 60 + s).checked_sub(CST_OFFSET_S)
}

/// Unix seconds as a `datetime-local` value in China Standard Time.
fn local_value(secs: u64) -> String {
    cst(secs, false).replacen(' ', "T", 1)
}

/// A window as people read it: `2026-12-01 08:00 – 12:00`, the second date only if another.
fn window_text(from: u64, until: u64) -> String {
    let (a, b) = (cst(from, false), cst(until, false));
    match (a.split_once(' '), b.split_once(' ')) {
        (Some((da, _)), Some((db, tb))) if da == db => format!("{a} – {tb}"),
        _ => format!("{a} – {b}"),
    }
}

/// What the host, visitor and window fields say, or the errors beside each.
type Invite = (HolderId, String, String, u64, u64);

fn check(
    f: &InviteForm,
    hosts: &[(String, String)],
    t: &'static Text,
    now: u64,
) -> Result<Invite, Errors> {
    let mut errors = Errors::default();
    let host = hosts
        .iter()
        .find(|(h, _)| *h == f.host)
        .and_then(|(h, _)| h.parse::<HolderId>().ok());
    if host.is_none() {
        errors.add("host", t.e_by_member);
    }
    let (name, phone) = (f.name.trim(), f.phone.trim());
    for (field, value) in [("name", &f.name), ("phone", &f.phone)] {
        if value.chars().any(char::is_control) {
            errors.add(field, t.e_control);
        }
    }
    if name.is_empty() {
        errors.add("name", t.e_required);
    } else if name.len() > NAME_LEN_MAX {
        errors.add("name", t.e_too_long);
    }
    if phone.is_empty() {
        errors.add("phone", t.e_required);
    } else if !phone
        .bytes()
        .all(|b| b.is_ascii_digit() || b"+- ".contains(&b))
    {
        errors.add("phone", t.e_phone);
    } else if phone.len() > PHONE_LEN_MAX {
        errors.add("phone", t.e_too_long);
    }
    let from = parse_local(&f.from);
    let until = parse_local(&f.until);
    if from.is_none() {
        errors.add("from", t.e_time);
    }
    if until.is_none() {
        errors.add("until", t.e_time);
    }
    if let (Some(from), Some(until)) = (from, until) {
        if until <= from {
            errors.add("until", t.e_window_order);
        } else if until - from > menjin_community::service::VISIT_SECS_MAX {
            errors.add("until", t.e_window_long);
        } else if until <= now {
            errors.add("until", t.e_window_over);
        }
    }
    match (host, from, until) {
        (Some(host), Some(from), Some(until)) if errors.is_empty() => {
            Ok((host, name.to_string(), phone.to_string(), from, until))
        }
        _ => Err(errors),
    }
}

fn view(app: &App, t: &'static Text, i: Invitation) -> InvitationView {
    let (state, state_text, class) = match i.state {
        InvitationState::Upcoming => ("upcoming", t.inv_upcoming, "warn"),
        InvitationState::Active => ("active", t.inv_active, "ok"),
        InvitationState::Expired => ("expired", t.inv_expired, "warn"),
        InvitationState::Withdrawn => ("withdrawn", t.inv_withdrawn, "bad"),
        InvitationState::HostLapsed => ("host_lapsed", t.inv_host_lapsed, "bad"),
    };
    let in_force = matches!(i.state, InvitationState::Active | InvitationState::Upcoming);
    InvitationView {
        cred: i.cred.to_string(),
        visitor_name: i.visitor_name,
        host_name: i.host_name,
        window: window_text(i.from, i.until),
        state,
        state_text,
        class,
        qr: in_force.then(|| app.qr.svg(&i.code)).flatten(),
        code: if in_force { i.code } else { String::new() },
        can_withdraw: in_force || i.state == InvitationState::HostLapsed,
    }
}

/// The page with the form `f` (its errors beside it) and the home's invitations.
#[allow(clippy::too_many_arguments)]
fn visitors_page(
    app: &App,
    t: &'static Text,
    csrf: String,
    home: &Household,
    f: InviteForm,
    errors: Errors,
    banner: (String, bool),
    status: StatusCode,
) -> Response {
    let now = menjin_net::clock::now_ms() / 1000;
    let hosts = match active_members(app, home, now) {
        Ok(h) => h,
        Err(resp) => return resp,
    };
    let invitations = match app.node.household_invitations(home, now) {
        Ok(list) => list.into_iter().map(|i| view(app, t, i)).collect(),
        Err(r) => return super::internal(&r.message),
    };
    let f = InviteForm {
        csrf: String::new(),
        host: if f.host.is_empty() {
            hosts.first().map(|h| h.0.clone()).unwrap_or_default()
        } else {
            f.host
        },
        ..f
    };
    let page = VisitorsPage {
        p: Page {
            t,
            csrf,
            back: "/my/visitors",
        },
        f,
        errors,
        banner: banner.0,
        banner_good: banner.1,
        hosts,
        invitations,
    };
    (status, page).into_response()
}

pub(crate) async fn page(State(app): State<App>, headers: HeaderMap) -> Response {
    let o = match open(&app, &headers) {
        Ok(o) => o,
        Err(resp) => return resp,
    };
    let t = lang(&headers).text();
    let now = menjin_net::clock::now_ms() / 1000;
    let start = now - now % 60;
    let f = InviteForm {
        from: local_value(start),
        until: local_value(start + DEFAULT_WINDOW_S),
        ..InviteForm::default()
    };
    let none = (String::new(), false);
    visitors_page(
        &app,
        t,
        o.session.csrf,
        &o.home,
        f,
        Errors::default(),
        none,
        StatusCode::OK,
    )
}

pub(crate) async fn invite(
    State(app): State<App>,
    headers: HeaderMap,
    Form(f): Form<InviteForm>,
) -> Response {
    let (o, t) = match posting(&app, &headers, &f.csrf) {
        Ok(posted) => posted,
        Err(resp) => return resp,
    };
    let now_ms = menjin_net::clock::now_ms();
    let now = now_ms / 1000;
    let hosts = match active_members(&app, &o.home, now) {
        Ok(h) => h,
        Err(resp) => return resp,
    };
    let unprocessable = StatusCode::UNPROCESSABLE_ENTITY;
    let (host, name, phone, from, until) = match check(&f, &hosts, t, now) {
        Ok(v) => v,
        Err(errors) => {
            let none = (String::new(), false);
            return visitors_page(
                &app,
                t,
                o.session.csrf,
                &o.home,
                f,
                errors,
                none,
                unprocessable,
            );
        }
    };
    let node = app.node.clone();
    let home = o.home.clone();
    let answer = tokio::task::spawn_blocking(move || {
        node.invite_from_household(&home, host, name, phone, from, until, now)
    })
    .await;
    let mut errors = Errors::default();
    let banner = match answer {
        Ok(Ok(v)) => {
            return VisitorPage {
                p: Page {
                    t,
                    csrf: o.session.csrf,
                    back: "/my/visitors",
                },
                visitor_name: v.visitor_name,
                window: window_text(v.from, v.until),
                qr: app.qr.svg(&v.code),
                code: v.code,
                now_ms,
                now_text: cst(now, true),
            }
            .into_response();
        }
        Ok(Err(HomeRefusal::NotMember | HomeRefusal::NoValidCode)) => {
            errors.add("host", t.e_by_member);
            String::new()
        }
        Ok(Err(HomeRefusal::TooManyInvitations)) => t.too_many_invitations.to_string(),
        Ok(Err(HomeRefusal::Node(r))) => r.message,
        Ok(Err(other)) => format!("{other:?}"),
        Err(e) => return super::internal(&e.to_string()),
    };
    visitors_page(
        &app,
        t,
        o.session.csrf,
        &o.home,
        f,
        errors,
        (banner, false),
        unprocessable,
    )
}

#[derive(Deserialize)]
pub(crate) struct WithdrawForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    code: String,
}

pub(crate) async fn withdraw(
    State(app): State<App>,
    headers: HeaderMap,
    Form(w): Form<WithdrawForm>,
) -> Response {
    let (o, t) = match posting(&app, &headers, &w.csrf) {
        Ok(posted) => posted,
        Err(resp) => return resp,
    };
    let now = menjin_net::clock::now_ms() / 1000;
    let answer = match w.code.parse::<CredId>() {
        Ok(id) => {
            let node = app.node.clone();
            let home = o.home.clone();
            tokio::task::spawn_blocking(move || node.withdraw_in_household(&home, id, now)).await
        }
        Err(_) => Ok(Err(HomeRefusal::NoInvitation)),
    };
    let (banner, status) = match answer {
        Ok(Ok(())) => {
            tracing::info!("visitor consent withdrawn from the resident pages");
            ((t.withdrawn_done.to_string(), true), StatusCode::OK)
        }
        Ok(Err(HomeRefusal::NoInvitation)) => {
            tracing::warn!("withdrawal of no invitation of this home refused");
            ((t.no_invitation.to_string(), false), StatusCode::NOT_FOUND)
        }
        Ok(Err(HomeRefusal::NotInForce)) => {
            ((t.not_in_force.to_string(), false), StatusCode::CONFLICT)
        }
        Ok(Err(HomeRefusal::Node(r))) => ((r.message, false), StatusCode::UNPROCESSABLE_ENTITY),
        Ok(Err(other)) => (
            (format!("{other:?}"), false),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        Err(e) => return super::internal(&e.to_string()),
    };
    let start = now - now % 60;
    let f = InviteForm {
        from: local_value(start),
        until: local_value(start + DEFAULT_WINDOW_S),
        ..InviteForm::default()
    };
    visitors_page(
        &app,
        t,
        o.session.csrf,
        &o.home,
        f,
        Errors::default(),
        banner,
        status,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_times_are_china_standard_time() {
        // 2026-12-01 08:00 in Shenzhen is 00:00 UTC.
        assert_eq!(parse_local("2026-12-01T08:00"), Some(1_796_083_200));
        assert_eq!(parse_local("2026-12-01T08:00:30"), Some(1_796_083_230));
        assert_eq!(local_value(1_796_083_200), "2026-12-01T08:00");
        for bad in [
            "",
            "2026-12-01",
            "2026-12-01T24:00",
            "2026-02-30T08:00",
            "2026-12-01T8:00",
        ] {
            assert_eq!(parse_local(bad), None, "{bad}");
        }
        assert_eq!(
            window_text(1_796_083_200, 1_796_083_200 + 4 * 3600),
            "2026-12-01 08:00 – 12:00"
        );
    }
}
