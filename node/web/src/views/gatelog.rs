//! The gate log at the office (`/staff/gatelog`): filters kept in the URL's query (time
//! from and until in China Standard Time, gate, holder id, decision), a page at a time;
//! and the same filter as CSV (`/staff/gatelog.csv`) for a spreadsheet.
//!
//! The CSV has no ID numbers (the log has none) and every cell that a spreadsheet would
//! read as a formula (`=`, `+`, `-`, `@`, tab, carriage return first) is prefixed with `'`.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use menjin_proto::credential::HolderId;
use menjin_proto::staff::StaffRole;
use menjin_proto::wire::{GateEvent, LogQuery};
use serde::Deserialize;

use super::staff::{StaffPage, staff};
use super::{cst, internal, lang};
use crate::App;
use crate::i18n::Text;

/// Events on one page.
const PAGE_EVENTS: u32 = 50;
/// Rows of one CSV export: a day of a busy compound's gates.
pub(crate) const CSV_ROWS_MAX: u32 = 10_000;
/// China Standard Time, the gates' zone, ahead of UTC.
const CST_OFFSET_SECS: u64 = 8 * 3600;

/// The filters as the URL carries them (and the form shows them again).
#[derive(Clone, Default, Deserialize)]
pub(crate) struct Filter {
    /// `YYYY-MM-DDTHH:MM`, China Standard Time (what `datetime-local` sends).
    #[serde(default)]
    pub(crate) from: String,
    #[serde(default)]
    pub(crate) until: String,
    #[serde(default)]
    pub(crate) gate: String,
    /// A holder id (never an ID number).
    #[serde(default)]
    pub(crate) holder: String,
    /// ``, `allow` or `deny`.
    #[serde(default)]
    pub(crate) decision: String,
    /// Go on after this event (paging).
    #[serde(default)]
    pub(crate) after: String,
}

impl Filter {
    /// The query string of this filter (for the CSV link and the next page), URL-encoded.
    pub(crate) fn query(&self, after: &str) -> String {
        let mut s = String::new();
        for (k, v) in [
            ("from", self.from.as_str()),
            ("until", self.until.as_str()),
            ("gate", self.gate.as_str()),
            ("holder", self.holder.as_str()),
            ("decision", self.decision.as_str()),
            ("after", after),
        ] {
            if !v.is_empty() {
                if !s.is_empty() {
                    s.push('&');
                }
                s.push_str(k);
                s.push('=');
                s.push_str(&urlencode(v));
            }
        }
        s
    }
}

fn urlencode(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b':' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `YYYY-MM-DDTHH:MM[:SS]` in China Standard Time, as Unix milliseconds.
fn parse_cst(s: &str) -> Option<u64> {
    let (date, time) = s.split_once('T').or_else(|| s.split_once(' '))?;
    let date = menjin_proto::civil::parse_date(date)?;
    let mut parts = time.split(':');
    let h: u64 = parts.next()?.parse().ok()?;
    let m: u64 = parts.next()?.parse().ok()?;
    let sec: u64 = parts.next().map_or(Some(0), |x| x.parse().ok())?;
    if parts.next().is_some() || h > 23 || m > 59 || sec > 59 || date.year < 1970 {
        return None;
    }
    let local = date.to_unix()? + h * 3600 + m * 60 + sec;
    Some(local.checked_sub(CST_OFFSET_SECS)? * 1000)
}

/// The node's query and decision filter for `f`, or the field that is wrong.
fn query_of(
    t: &'static Text,
    f: &Filter,
    limit: u32,
) -> Result<(LogQuery, Option<bool>), (&'static str, &'static str)> {
    let time = |field: &'static str, v: &str| {
        let v = v.trim();
        if v.is_empty() {
            return Ok(None);
        }
        parse_cst(v).map(Some).ok_or((field, t.log_e_time))
    };
    let from_ms = time("from", &f.from)?;
    let until_ms = time("until", &f.until)?;
    if let (Some(a), Some(b)) = (from_ms, until_ms)
        && a > b
    {
        return Err(("until", t.log_e_order));
    }
    let gate = f.gate.trim();
    if !gate.is_empty() && menjin_proto::wire::check_gate_id(gate).is_err() {
        return Err(("gate", t.log_e_gate));
    }
    let holder = match f.holder.trim() {
        "" => None,
        h => Some(
            h.parse::<HolderId>()
                .map_err(|_| ("holder", t.pass_no_holder))?,
        ),
    };
    let allowed = match f.decision.as_str() {
        "" => None,
        "allow" => Some(true),
        "deny" => Some(false),
        _ => return Err(("decision", t.log_e_decision)),
    };
    let q = LogQuery {
        from_ms,
        until_ms,
        gate: (!gate.is_empty()).then(|| gate.to_string()),
        holder,
        after_seq: f.after.trim().parse().ok(),
        limit,
    };
    Ok((q, allowed))
}

/// An event in words.
pub(crate) struct Event {
    pub(crate) seq: u64,
    pub(crate) time: String,
    pub(crate) gate: String,
    pub(crate) direction: &'static str,
    pub(crate) allowed: bool,
    /// In the page's language.
    pub(crate) reason: &'static str,
    /// The stable code (`fever`), for the CSV and the row's `data-reason`.
    pub(crate) reason_code: &'static str,
    pub(crate) temperature: String,
    pub(crate) holder: String,
    pub(crate) name: String,
    pub(crate) kind: &'static str,
    pub(crate) plate: String,
    pub(crate) offline: bool,
}

fn event(app: &App, t: &'static Text, ev: &GateEvent) -> Event {
    Event {
        seq: ev.seq,
        time: cst(ev.time_ms / 1000, true),
        gate: ev.gate.clone(),
        direction: t.direction(ev.direction),
        allowed: ev.allowed,
        reason: t.gate_reason(ev.reason),
        reason_code: ev.reason.as_str(),
        temperature: format!("{:.1}", f64::from(ev.temperature_dc) / 10.0),
        holder: ev.holder.map(|h| h.to_string()).unwrap_or_default(),
        name: app.node.event_name(ev),
        kind: ev.kind.map_or("", |k| t.kind(k)),
        plate: ev.plate.clone().unwrap_or_default(),
        offline: ev.offline.is_some(),
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "staff_gatelog.html")]
pub(crate) struct GateLogPage {
    pub(crate) p: StaffPage,
    pub(crate) f: Filter,
    pub(crate) error: Option<(&'static str, &'static str)>,
    pub(crate) events: Vec<Event>,
    /// The next page's query string (empty: no more).
    pub(crate) next: String,
    /// The CSV export's query string.
    pub(crate) csv: String,
}

impl GateLogPage {
    pub(crate) fn err(&self, field: &str) -> Option<&'static str> {
        self.error.filter(|(f, _)| *f == field).map(|(_, m)| m)
    }
}

/// (The error is the response itself, made once per request: its size does not matter.)
#[allow(clippy::result_large_err)]
async fn read(
    app: &App,
    q: LogQuery,
    allowed: Option<bool>,
) -> Result<(Vec<GateEvent>, Option<u64>), Response> {
    let node = app.node.clone();
    match tokio::task::spawn_blocking(move || node.gate_log_page(&q, allowed)).await {
        Ok(Ok(r)) => Ok(r),
        Ok(Err(r)) => Err(internal(&r.message)),
        Err(e) => Err(internal(&e.to_string())),
    }
}

pub(crate) async fn page(
    State(app): State<App>,
    headers: HeaderMap,
    Query(f): Query<Filter>,
) -> Response {
    let s = match staff(&app, &headers, StaffRole::Clerk) {
        Ok(s) => s,
        Err(resp) => return resp,
    };
    let t = lang(&headers).text();
    let mut page = GateLogPage {
        p: StaffPage::of(t, &s, "/staff/gatelog"),
        csv: f.query(""),
        f,
        error: None,
        events: Vec::new(),
        next: String::new(),
    };
    let (q, allowed) = match query_of(t, &page.f, PAGE_EVENTS) {
        Ok(q) => q,
        Err(e) => {
            page.error = Some(e);
            return (StatusCode::UNPROCESSABLE_ENTITY, page).into_response();
        }
    };
    let (events, next) = match read(&app, q, allowed).await {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    page.events = events.iter().map(|ev| event(&app, t, ev)).collect();
    page.next = next
        .map(|n| page.f.query(&n.to_string()))
        .unwrap_or_default();
    page.into_response()
}

/// A CSV cell: quoted, quotes doubled, and a leading formula character neutralised.
fn cell(out: &mut String, v: &str) {
    out.push('"');
    if v.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        out.push('\'');
    }
    out.push_str(&v.replace('"', "\"\""));
    out.push('"');
}

fn csv_line(out: &mut String, cells: &[&str]) {
    for (i, v) in cells.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        cell(out, v);
    }
    out.push_str("\r\n");
}

pub(crate) async fn csv(
    State(app): State<App>,
    headers: HeaderMap,
    Query(f): Query<Filter>,
) -> Response {
    let s = match staff(&app, &headers, StaffRole::Clerk) {
        Ok(s) => s,
        Err(resp) => return resp,
    };
    let t = lang(&headers).text();
    let Ok((q, allowed)) = query_of(t, &f, CSV_ROWS_MAX) else {
        return (StatusCode::UNPROCESSABLE_ENTITY, t.log_e_filter).into_response();
    };
    let (events, _) = match read(&app, q, allowed).await {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    // A byte-order mark: spreadsheet programs then read the Chinese as UTF-8.
    let mut out = String::from("\u{feff}");
    csv_line(&mut out, &t.log_csv_head);
    for ev in &events {
        let e = event(&app, t, ev);
        let seq = e.seq.to_string();
        csv_line(
            &mut out,
            &[
                seq.as_str(),
                e.time.as_str(),
                e.gate.as_str(),
                e.direction,
                if e.allowed { t.log_allow } else { t.log_deny },
                e.reason,
                e.reason_code,
                e.temperature.as_str(),
                e.holder.as_str(),
                e.name.as_str(),
                e.kind,
                e.plate.as_str(),
                if e.offline { t.log_offline } else { "" },
            ],
        );
    }
    tracing::info!(staff = %s.name(), rows = events.len(), "gate log exported");
    let name = format!(
        "attachment; filename=\"gatelog-{}.csv\"",
        cst(menjin_net::clock::now_ms() / 1000, false).replace([' ', ':'], "-")
    );
    let mut resp = (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
            (header::CONTENT_DISPOSITION, name),
        ],
        out,
    )
        .into_response();
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formula_cells_are_neutralised_and_quotes_doubled() {
        let mut out = String::new();
        csv_line(&mut out, &["=1+2", "+86", "-3", "@SUM", "a\"b", "王芳"]);
        assert_eq!(
            out,
            "\"'=1+2\",\"'+86\",\"'-3\",\"'@SUM\",\"a\"\"b\",\"王芳\"\r\n"
        );
    }

    #[test]
    fn times_are_read_in_china_standard_time() {
        // 2026-12-01 08:00 in Shenzhen is midnight UTC.
        assert_eq!(parse_cst("2026-12-01T08:00"), Some(1_796_083_200_000));
        assert_eq!(parse_cst("2026-12-01T08:00:30"), Some(1_796_083_230_000));
        assert_eq!(parse_cst("2026-12-01T24:00"), None);
        assert_eq!(parse_cst("yesterday"), None);
    }
}
