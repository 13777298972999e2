//! Household codes at the office (`/staff/homes`): a sheet of cut-out slips per building
//! (the clerk types a building and its doors, a list or ranges; the node issues a code per
//! door) and revoking one home's code.
//!
//! A code exists in clear only in the answer to the POST that issued it: never in a URL, a
//! log line or a cache (`Cache-Control: no-store`). A door whose code is in force gets a new
//! one only when the clerk ticked "reissue" and then confirmed (the old slip stops working
//! and the home's sessions end); otherwise it is left alone and the sheet says so.
//! Revoking needs the head of the office: it leaves a home with no way in at all, so a
//! mistyped door would lock a family out until the next issue, while a lost slip is the
//! clerk's everyday case and is handled by reissuing (which ends the old code too).
//! Every field is checked before anything is issued: an error changes nothing.

use askama::Template;
use askama_web::WebTemplate;
use axum::Form;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use menjin_proto::credential::LABEL_LEN_MAX;
use menjin_proto::staff::StaffRole;
use menjin_proto::wire::{ConsoleRequest, ErrorKind, Response as NodeResponse};
use serde::Deserialize;

use super::declare::Errors;
use super::lang;
use super::staff::{StaffOpen, StaffPage, staff, staff_posting};
use crate::App;
use crate::i18n::Text;

/// Doors on one sheet: a large building's floor plan at most (25 A4 pages); the node
/// flushes each code, so a sheet stays well under a second.
pub(crate) const DOORS_MAX: usize = 200;
/// The doors field as typed: [`DOORS_MAX`] doors with separators, and some slack.
const DOORS_TEXT_LEN_MAX: usize = 4 * 1024;
/// Slips on one A4 page: two columns of four.
const SLIPS_PER_PAGE: usize = 8;
/// The Host header shown on the slips as the pages' address: a host name and port.
const HOST_LEN_MAX: usize = 100;

#[derive(Deserialize, Default)]
pub(crate) struct SlipsForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    pub(crate) building: String,
    #[serde(default)]
    pub(crate) doors: String,
    #[serde(default)]
    pub(crate) reissue: Option<String>,
    #[serde(default)]
    confirm: Option<String>,
}

#[derive(Deserialize, Default)]
pub(crate) struct RevokeForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    pub(crate) building: String,
    #[serde(default)]
    pub(crate) door: String,
    #[serde(default)]
    confirm: Option<String>,
}

#[derive(Template, WebTemplate)]
#[template(path = "staff_homes.html")]
pub(crate) struct HomesPage {
    pub(crate) p: StaffPage,
    pub(crate) head: bool,
    pub(crate) slips: SlipsForm,
    pub(crate) revoke: RevokeForm,
    pub(crate) errors: Errors,
    /// A revoke just done: the home, in words.
    pub(crate) revoked: String,
}

/// The confirmation step before a reissue or a revoke: the form again, hidden, with
/// `confirm`.
#[derive(Template, WebTemplate)]
#[template(path = "staff_homes_confirm.html")]
pub(crate) struct ConfirmPage {
    pub(crate) p: StaffPage,
    pub(crate) action: &'static str,
    pub(crate) message: String,
    /// The homes it concerns, in words.
    pub(crate) homes: Vec<String>,
    pub(crate) fields: Vec<(&'static str, String)>,
}

pub(crate) struct Slip {
    pub(crate) door: String,
    /// The home in words: `9 栋 101 室`.
    pub(crate) home: String,
    /// The code's four groups of four characters.
    pub(crate) groups: Vec<String>,
    pub(crate) reissued: bool,
}

#[derive(Template, WebTemplate)]
#[template(path = "staff_slips.html")]
pub(crate) struct SlipsPage {
    pub(crate) p: StaffPage,
    /// The building in words: `9 栋`.
    pub(crate) building: String,
    pub(crate) sheets: Vec<Vec<Slip>>,
    pub(crate) issued: usize,
    pub(crate) reissued: usize,
    /// Doors with a code in force, left alone (no reissue asked).
    pub(crate) kept: Vec<String>,
    /// Where residents open the pages, as the clerk's browser reached the node.
    pub(crate) address: String,
}

fn homes_page(t: &'static Text, s: &StaffOpen, slips: SlipsForm, revoke: RevokeForm) -> HomesPage {
    HomesPage {
        p: StaffPage::of(t, s, "/staff/homes"),
        head: s.session.who.role >= StaffRole::Head,
        slips: SlipsForm {
            csrf: String::new(),
            confirm: None,
            ..slips
        },
        revoke: RevokeForm {
            csrf: String::new(),
            confirm: None,
            ..revoke
        },
        errors: Errors::default(),
        revoked: String::new(),
    }
}

pub(crate) async fn page(State(app): State<App>, headers: HeaderMap) -> Response {
    let s = match staff(&app, &headers, StaffRole::Clerk) {
        Ok(s) => s,
        Err(resp) => return resp,
    };
    let t = lang(&headers).text();
    homes_page(t, &s, SlipsForm::default(), RevokeForm::default()).into_response()
}

/// A building or door as the console checks it: trimmed, no control character, 1 to
/// [`LABEL_LEN_MAX`] bytes.
fn label(text: &str, t: &Text) -> Result<String, &'static str> {
    let v = text.trim();
    if v.chars().any(char::is_control) {
        return Err(t.e_control);
    }
    if v.is_empty() {
        return Err(t.e_required);
    }
    if v.len() > LABEL_LEN_MAX {
        return Err(t.e_too_long);
    }
    Ok(v.to_string())
}

/// The doors as typed: separated by commas (also `，` and `、`), semicolons or spaces; a
/// range `101-110` (both ends digits of the same width) stands for each door between. At
/// most [`DOORS_MAX`], duplicates dropped, in the order typed.
pub(crate) fn parse_doors(text: &str, t: &Text) -> Result<Vec<String>, &'static str> {
    if text.len() > DOORS_TEXT_LEN_MAX {
        return Err(t.e_doors_many);
    }
    if text
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
    {
        return Err(t.e_control);
    }
    let mut out: Vec<String> = Vec::new();
    let mut push = |door: String| -> Result<(), &'static str> {
        if !out.contains(&door) {
            if out.len() == DOORS_MAX {
                return Err(t.e_doors_many);
            }
            out.push(door);
        }
        Ok(())
    };
    let tokens = text
        .split(|c: char| c.is_whitespace() || matches!(c, ',' | '，' | '、' | ';' | '；'))
        .filter(|s| !s.is_empty());
    for token in tokens {
        match token.split_once(['-', '~']) {
            Some((a, b)) => {
                let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
                if !digits(a) || !digits(b) || a.len() != b.len() || a.len() > LABEL_LEN_MAX {
                    return Err(t.e_doors);
                }
                let (Ok(lo), Ok(hi)) = (a.parse::<u64>(), b.parse::<u64>()) else {
                    return Err(t.e_doors);
                };
                if lo > hi {
                    return Err(t.e_doors);
                }
                if hi - lo >= DOORS_MAX as u64 {
                    return Err(t.e_doors_many);
                }
                for d in lo..=hi {
                    push(format!("{d:0width$}", width = a.len()))?;
                }
            }
            None => push(label(token, t).map_err(|_| t.e_doors)?)?,
        }
    }
    if out.is_empty() {
        return Err(t.e_required);
    }
    Ok(out)
}

/// The pages' address for the slips: `[web] public_url` when set (checked at start);
/// otherwise the Host the clerk's browser used (a name or address and port, checked: it is
/// printed, though a forged one would pass), or nothing.
fn address(app: &App, headers: &HeaderMap) -> String {
    if let Some(url) = app
        .node
        .config
        .web
        .as_ref()
        .and_then(|w| w.public_url.as_ref())
    {
        return url.clone();
    }
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let fine = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']');
    if host.is_empty() || host.len() > HOST_LEN_MAX || !host.chars().all(fine) {
        return String::new();
    }
    let scheme = if app.secure { "https" } else { "http" };
    format!("{scheme}://{host}/")
}

pub(crate) async fn slips(
    State(app): State<App>,
    headers: HeaderMap,
    Form(form): Form<SlipsForm>,
) -> Response {
    let (s, t) = match staff_posting(&app, &headers, StaffRole::Clerk, &form.csrf) {
        Ok(v) => v,
        Err(resp) => return resp,
    };
    let mut errors = Errors::default();
    let building = label(&form.building, t).map_err(|e| errors.add("building", e));
    let doors = parse_doors(&form.doors, t).map_err(|e| errors.add("doors", e));
    let (Ok(building), Ok(doors)) = (building, doors) else {
        let mut page = homes_page(t, &s, form, RevokeForm::default());
        page.errors = errors;
        return (StatusCode::UNPROCESSABLE_ENTITY, page).into_response();
    };
    let reissue = form.reissue.is_some();
    let node = app.node.clone();
    let (b, d) = (building.clone(), doors.clone());
    let in_force = tokio::task::spawn_blocking(move || {
        d.iter()
            .map(|door| node.household_in_force(&b, door))
            .collect::<Result<Vec<bool>, _>>()
    })
    .await;
    let in_force = match in_force {
        Ok(Ok(v)) => v,
        Ok(Err(r)) => return super::internal(&r.message),
        Err(e) => return super::internal(&e.to_string()),
    };
    if reissue && form.confirm.is_none() && in_force.iter().any(|f| *f) {
        let homes = doors
            .iter()
            .zip(&in_force)
            .filter(|(_, f)| **f)
            .map(|(d, _)| t.home_of(&building, d))
            .collect();
        let page = ConfirmPage {
            p: StaffPage::of(t, &s, "/staff/homes"),
            action: "/staff/homes/slips",
            message: t.slips_confirm.to_string(),
            homes,
            fields: vec![
                ("building", building),
                ("doors", form.doors),
                ("reissue", "1".into()),
            ],
        };
        return page.into_response();
    }
    issue_sheet(&app, &headers, t, &s, building, doors, &in_force, reissue).await
}

/// Issues a code for each door to be issued and renders the sheet.
#[allow(clippy::too_many_arguments)]
async fn issue_sheet(
    app: &App,
    headers: &HeaderMap,
    t: &'static Text,
    s: &StaffOpen,
    building: String,
    doors: Vec<String>,
    in_force: &[bool],
    reissue: bool,
) -> Response {
    let (mut todo, mut kept) = (Vec::new(), Vec::new());
    for (door, f) in doors.into_iter().zip(in_force) {
        match (*f, reissue) {
            (true, false) => kept.push(door),
            (f, _) => todo.push((door, f)),
        }
    }
    let node = app.node.clone();
    let b = building.clone();
    let now = menjin_net::clock::now_ms() / 1000;
    let answer = tokio::task::spawn_blocking(move || {
        let mut slips = Vec::with_capacity(todo.len());
        for (door, reissued) in todo {
            let req = ConsoleRequest::IssueHouseholdCode {
                building: b.clone(),
                door: door.clone(),
            };
            match node.console(req, now) {
                NodeResponse::HouseholdCode { code, .. } => slips.push(Slip {
                    home: t.home_of(&b, &door),
                    door,
                    groups: code.split('-').map(str::to_string).collect(),
                    reissued,
                }),
                NodeResponse::Error { message, .. } => return Err(message),
                _ => return Err("unexpected answer to a household code".to_string()),
            }
        }
        Ok(slips)
    })
    .await;
    let slips = match answer {
        Ok(Ok(v)) => v,
        Ok(Err(m)) => return super::internal(&m),
        Err(e) => return super::internal(&e.to_string()),
    };
    let reissued = slips.iter().filter(|s| s.reissued).count();
    tracing::info!(
        staff = %s.name(),
        %building,
        issued = slips.len(),
        reissued,
        kept = kept.len(),
        "household slips issued"
    );
    let issued = slips.len();
    let mut sheets: Vec<Vec<Slip>> = Vec::new();
    for slip in slips {
        match sheets.last_mut() {
            Some(page) if page.len() < SLIPS_PER_PAGE => page.push(slip),
            _ => sheets.push(vec![slip]),
        }
    }
    let page = SlipsPage {
        p: StaffPage::of(t, s, "/staff/homes"),
        building: t.building_of(&building),
        sheets,
        issued,
        reissued,
        kept,
        address: address(app, headers),
    };
    let mut resp = page.into_response();
    // The codes are on this answer only.
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

pub(crate) async fn revoke(
    State(app): State<App>,
    headers: HeaderMap,
    Form(form): Form<RevokeForm>,
) -> Response {
    let (s, t) = match staff_posting(&app, &headers, StaffRole::Head, &form.csrf) {
        Ok(v) => v,
        Err(resp) => return resp,
    };
    let mut errors = Errors::default();
    let building = label(&form.building, t).map_err(|e| errors.add("r_building", e));
    let door = label(&form.door, t).map_err(|e| errors.add("r_door", e));
    let refuse = |form: RevokeForm, errors: Errors| {
        let mut page = homes_page(t, &s, SlipsForm::default(), form);
        page.errors = errors;
        (StatusCode::UNPROCESSABLE_ENTITY, page).into_response()
    };
    let (Ok(building), Ok(door)) = (building, door) else {
        return refuse(form, errors);
    };
    let node = app.node.clone();
    let (b, d) = (building.clone(), door.clone());
    match tokio::task::spawn_blocking(move || node.household_in_force(&b, &d)).await {
        Ok(Ok(true)) => {}
        Ok(Ok(false)) => {
            errors.add("r_door", t.e_no_household_code);
            return refuse(form, errors);
        }
        Ok(Err(r)) => return super::internal(&r.message),
        Err(e) => return super::internal(&e.to_string()),
    }
    if form.confirm.is_none() {
        let page = ConfirmPage {
            p: StaffPage::of(t, &s, "/staff/homes"),
            action: "/staff/homes/revoke",
            message: t.revoke_confirm.to_string(),
            homes: vec![t.home_of(&building, &door)],
            fields: vec![("building", building), ("door", door)],
        };
        return page.into_response();
    }
    let node = app.node.clone();
    let req = ConsoleRequest::RevokeHouseholdCode {
        building: building.clone(),
        door: door.clone(),
    };
    let now = menjin_net::clock::now_ms() / 1000;
    match tokio::task::spawn_blocking(move || node.console(req, now)).await {
        Ok(NodeResponse::Done(_)) => {}
        Ok(NodeResponse::Error {
            kind: ErrorKind::NotFound,
            ..
        }) => {
            errors.add("r_door", t.e_no_household_code);
            return refuse(form, errors);
        }
        Ok(NodeResponse::Error { message, .. }) => return super::internal(&message),
        Ok(_) => return super::internal("unexpected answer to a revoke"),
        Err(e) => return super::internal(&e.to_string()),
    }
    tracing::info!(staff = %s.name(), %building, %door, "household code revoked at the office");
    let mut page = homes_page(t, &s, SlipsForm::default(), RevokeForm::default());
    page.revoked = t.home_of(&building, &door);
    page.into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::i18n::Lang;

    #[test]
    fn doors_are_read_as_lists_and_bounded_ranges() {
        let t = Lang::En.text();
        assert_eq!(
            parse_doors("101, 102，0103、201-203 102", t).unwrap(),
            ["101", "102", "0103", "201", "202", "203"]
        );
        assert_eq!(parse_doors("01-03", t).unwrap(), ["01", "02", "03"]);
        assert_eq!(parse_doors("B-2", t).unwrap_err(), t.e_doors);
        assert_eq!(parse_doors("110-101", t).unwrap_err(), t.e_doors);
        assert_eq!(parse_doors("9-10", t).unwrap_err(), t.e_doors);
        assert_eq!(parse_doors("1000-1200", t).unwrap_err(), t.e_doors_many);
        assert_eq!(parse_doors("1000-1199", t).unwrap().len(), DOORS_MAX);
        assert_eq!(parse_doors("1000-1199 7", t).unwrap_err(), t.e_doors_many);
        assert_eq!(parse_doors("  ", t).unwrap_err(), t.e_required);
        assert_eq!(parse_doors("1\u{0}2", t).unwrap_err(), t.e_control);
        assert_eq!(parse_doors("12345678901234567", t).unwrap_err(), t.e_doors);
    }
}
