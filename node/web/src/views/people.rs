//! Finding a person at the office (`/staff/people`): by name, by home (building and door)
//! or by holder id, a page of results at a time; a person's record
//! (`/staff/people/{holder}`); and the audit log (`/staff/audit`, the head of the office
//! only). Every search and every record view is written to the node's audit log with the
//! staff member before the page answers (`Node::find_people`, `Node::person_file`).
//!
//! The search is a POST with the form's token: what is typed (perhaps an ID number typed
//! into the name field) never goes into a URL, and another site cannot make a clerk's
//! browser search. A record is named by its holder id; its ID number is shown masked.

use askama::Template;
use askama_web::WebTemplate;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use menjin_community::service::{PersonCard, PersonFile, PersonSearch, RecordCode};
use menjin_proto::credential::HolderId;
use menjin_proto::record::{AuditAction, AuditEntry};
use menjin_proto::staff::StaffRole;
use serde::Deserialize;

use super::staff::{StaffOpen, StaffPage, staff, staff_posting};
use super::{cst, internal, lang};
use crate::App;
use crate::i18n::Text;

/// The search form as typed, kept to show again (and to page on).
#[derive(Clone, Default, Deserialize)]
pub(crate) struct SearchForm {
    #[serde(default)]
    csrf: String,
    /// `name`, `door` or `holder`.
    #[serde(default)]
    pub(crate) by: String,
    #[serde(default)]
    pub(crate) name: String,
    #[serde(default)]
    pub(crate) building: String,
    #[serde(default)]
    pub(crate) door: String,
    #[serde(default)]
    pub(crate) holder: String,
    /// The last holder of the page before (paging).
    #[serde(default)]
    pub(crate) after: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "staff_people.html")]
pub(crate) struct PeoplePage {
    pub(crate) p: StaffPage,
    pub(crate) form: SearchForm,
    /// `(field, message)`: beside its field.
    pub(crate) error: Option<(&'static str, &'static str)>,
    /// `None`: nothing searched yet.
    pub(crate) found: Option<Vec<Row>>,
    /// The holder to go on after, when there are more.
    pub(crate) next: String,
}

impl PeoplePage {
    pub(crate) fn err(&self, field: &str) -> Option<&'static str> {
        self.error.filter(|(f, _)| *f == field).map(|(_, m)| m)
    }
}

/// A result row, in words.
pub(crate) struct Row {
    pub(crate) holder: String,
    pub(crate) name: String,
    pub(crate) home: String,
    pub(crate) kind: &'static str,
    pub(crate) outcome: &'static str,
    pub(crate) outcome_code: &'static str,
}

fn row(t: &'static Text, c: &PersonCard) -> Row {
    Row {
        holder: c.holder.to_string(),
        name: c.name.clone(),
        home: t.home_of(&c.building, &c.door),
        kind: t.kind(c.kind),
        outcome: t.outcome(c.outcome),
        outcome_code: c.outcome.as_str(),
    }
}

pub(crate) async fn page(State(app): State<App>, headers: HeaderMap) -> Response {
    let s = match staff(&app, &headers, StaffRole::Clerk) {
        Ok(s) => s,
        Err(resp) => return resp,
    };
    let t = lang(&headers).text();
    PeoplePage {
        p: StaffPage::of(t, &s, "/staff/people"),
        form: SearchForm {
            by: "name".into(),
            ..SearchForm::default()
        },
        error: None,
        found: None,
        next: String::new(),
    }
    .into_response()
}

/// The search the form asks for, or the field that is wrong and why.
fn search_of(
    t: &'static Text,
    f: &SearchForm,
) -> Result<PersonSearch, (&'static str, &'static str)> {
    let bad_text = |v: &str| v.chars().any(char::is_control);
    match f.by.as_str() {
        "door" => {
            let (building, door) = (f.building.trim(), f.door.trim());
            if building.is_empty() {
                return Err(("building", t.e_required));
            }
            if bad_text(building) || building.len() > menjin_proto::credential::LABEL_LEN_MAX {
                return Err(("building", t.e_home));
            }
            if bad_text(door) || door.len() > menjin_proto::credential::LABEL_LEN_MAX {
                return Err(("door", t.e_home));
            }
            Ok(PersonSearch::Door {
                building: building.into(),
                door: door.into(),
            })
        }
        "holder" => f
            .holder
            .trim()
            .parse::<HolderId>()
            .map(PersonSearch::Holder)
            .map_err(|_| ("holder", t.pass_no_holder)),
        _ => {
            let name = f.name.trim();
            if name.is_empty() {
                return Err(("name", t.e_required));
            }
            if bad_text(name) || name.len() > menjin_proto::declaration::NAME_LEN_MAX {
                return Err(("name", t.people_e_name));
            }
            Ok(PersonSearch::Name(name.into()))
        }
    }
}

pub(crate) async fn search(
    State(app): State<App>,
    headers: HeaderMap,
    Form(form): Form<SearchForm>,
) -> Response {
    let (s, t) = match staff_posting(&app, &headers, StaffRole::Clerk, &form.csrf) {
        Ok(v) => v,
        Err(resp) => return resp,
    };
    let shown = |s: &StaffOpen, form: SearchForm, error, found, next| PeoplePage {
        p: StaffPage::of(t, s, "/staff/people"),
        form,
        error,
        found,
        next,
    };
    let search = match search_of(t, &form) {
        Ok(q) => q,
        Err(e) => {
            let page = shown(&s, form, Some(e), None, String::new());
            return (StatusCode::UNPROCESSABLE_ENTITY, page).into_response();
        }
    };
    let after = form.after.trim().parse::<HolderId>().ok();
    let node = app.node.clone();
    let who = s.name().to_string();
    let now = menjin_net::clock::now_ms() / 1000;
    let answer =
        tokio::task::spawn_blocking(move || node.find_people(&search, after, &who, now)).await;
    let (found, next) = match answer {
        Ok(Ok(r)) => r,
        Ok(Err(r)) => return internal(&r.message),
        Err(e) => return internal(&e.to_string()),
    };
    tracing::info!(staff = %s.name(), by = form.by.as_str(), found = found.len(), "roster searched");
    let rows = found.iter().map(|c| row(t, c)).collect();
    let next = next.map(|h| h.to_string()).unwrap_or_default();
    shown(&s, form, None, Some(rows), next).into_response()
}

#[derive(Template, WebTemplate)]
#[template(path = "staff_person.html")]
pub(crate) struct PersonPage {
    pub(crate) p: StaffPage,
    pub(crate) row: Row,
    pub(crate) number: String,
    pub(crate) channel: &'static str,
    pub(crate) why: String,
    pub(crate) declared_at: String,
    /// The relative who declared: holder id (empty: none) and name.
    pub(crate) declared_by: String,
    pub(crate) declared_by_name: String,
    pub(crate) staff: String,
    /// `active`, `expired`, `revoked` or `none`, and the words for it.
    pub(crate) code_state: &'static str,
    pub(crate) code_words: String,
    pub(crate) has_photo: bool,
    pub(crate) passes_printed: u32,
}

fn person_page(t: &'static Text, s: &StaffOpen, f: PersonFile, now: u64) -> PersonPage {
    let (code_state, code_words) = match &f.code {
        RecordCode::None => ("none", t.no_code.to_string()),
        RecordCode::Active { until } if *until <= now => (
            "expired",
            format!("{} {}", t.code_expired, cst(*until, false)),
        ),
        RecordCode::Active { until } => (
            "active",
            format!(
                "{} · {} {}",
                t.code_active,
                t.valid_until,
                cst(*until, false)
            ),
        ),
        RecordCode::Revoked { at, why } => (
            "revoked",
            format!("{} {} ({})", t.code_revoked, cst(*at, false), t.why(why)),
        ),
    };
    PersonPage {
        p: StaffPage::of(t, s, "/staff/people"),
        row: row(t, &f.card),
        number: f.number_masked,
        channel: t.channel(f.channel),
        why: t.why(&f.why),
        declared_at: cst(f.declared_at, false),
        declared_by: f
            .declared_by
            .as_ref()
            .map(|(h, _)| h.to_string())
            .unwrap_or_default(),
        declared_by_name: f.declared_by.map(|(_, n)| n).unwrap_or_default(),
        staff: f.staff.unwrap_or_default(),
        code_state,
        code_words,
        has_photo: f.has_photo,
        passes_printed: f.passes_printed,
    }
}

pub(crate) async fn person(
    State(app): State<App>,
    headers: HeaderMap,
    Path(holder): Path<String>,
) -> Response {
    let s = match staff(&app, &headers, StaffRole::Clerk) {
        Ok(s) => s,
        Err(resp) => return resp,
    };
    let t = lang(&headers).text();
    let not_found = |s: &StaffOpen| {
        let page = super::staff::StaffMessage {
            p: StaffPage::of(t, s, "/staff/people"),
            message: t.pass_no_holder,
        };
        (StatusCode::NOT_FOUND, page).into_response()
    };
    let Ok(holder) = holder.parse::<HolderId>() else {
        return not_found(&s);
    };
    let node = app.node.clone();
    let who = s.name().to_string();
    let now = menjin_net::clock::now_ms() / 1000;
    let answer = tokio::task::spawn_blocking(move || node.person_file(holder, &who, now)).await;
    match answer {
        Ok(Ok(Some(f))) => {
            tracing::info!(staff = %s.name(), %holder, "person's record viewed");
            person_page(t, &s, f, now).into_response()
        }
        Ok(Ok(None)) => not_found(&s),
        Ok(Err(r)) => internal(&r.message),
        Err(e) => internal(&e.to_string()),
    }
}

/// One page of the audit log.
const AUDIT_PAGE: usize = 100;

#[derive(Template, WebTemplate)]
#[template(path = "staff_audit.html")]
pub(crate) struct AuditPage {
    pub(crate) p: StaffPage,
    pub(crate) entries: Vec<AuditRow>,
    /// The sequence number to page on before (empty: the last page).
    pub(crate) before: String,
}

pub(crate) struct AuditRow {
    pub(crate) seq: u64,
    pub(crate) at: String,
    pub(crate) staff: String,
    pub(crate) what: &'static str,
    pub(crate) detail: String,
    /// The record named, if any.
    pub(crate) holder: String,
}

fn audit_row(t: &'static Text, seq: u64, e: AuditEntry) -> AuditRow {
    let (what, detail, holder) = match e.action {
        AuditAction::NameSearch { text, found } => (
            t.audit_name,
            format!(
                "{} · {found}",
                text.unwrap_or_else(|| t.audit_withheld.to_string())
            ),
            String::new(),
        ),
        AuditAction::DoorSearch {
            building,
            door,
            found,
        } => (
            t.audit_door,
            if door.is_empty() {
                format!("{} {building} · {found}", t.building)
            } else {
                format!("{} · {found}", t.home_of(&building, &door))
            },
            String::new(),
        ),
        AuditAction::HolderSearch { holder, found } => (
            t.audit_holder,
            format!("{} · {}", holder, u8::from(found)),
            holder.to_string(),
        ),
        AuditAction::RecordView { holder } => (t.audit_view, String::new(), holder.to_string()),
    };
    AuditRow {
        seq,
        at: cst(e.at, true),
        staff: e.staff,
        what,
        detail,
        holder,
    }
}

#[derive(Deserialize)]
pub(crate) struct AuditQuery {
    #[serde(default)]
    before: String,
}

pub(crate) async fn audit(
    State(app): State<App>,
    headers: HeaderMap,
    Query(q): Query<AuditQuery>,
) -> Response {
    let s = match staff(&app, &headers, StaffRole::Head) {
        Ok(s) => s,
        Err(resp) => return resp,
    };
    let t = lang(&headers).text();
    let before = q.before.parse::<u64>().ok();
    let entries = match app.node.audit_page(before, AUDIT_PAGE) {
        Ok(e) => e,
        Err(r) => return internal(&r.message),
    };
    let before = if entries.len() == AUDIT_PAGE {
        entries.last().map(|e| e.0.to_string()).unwrap_or_default()
    } else {
        String::new()
    };
    AuditPage {
        p: StaffPage::of(t, &s, "/staff/audit"),
        entries: entries
            .into_iter()
            .map(|(seq, e)| audit_row(t, seq, e))
            .collect(),
        before,
    }
    .into_response()
}
