//! Progress per building against the 5-day deadline (`/staff/progress`, rule 9): a bar per
//! building (homes with someone declared against homes known: declared, or holding a
//! household code), residents declared and cleared, the deadline and the days left, and the
//! homes with a household code where nobody is declared yet. The bars are `<progress>`
//! elements styled by CSS: no script, no inline style. Read only: the node's roster summary
//! (`ConsoleRequest::RosterSummary`) and `Node::homes_not_declared`.

use std::collections::BTreeMap;

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use menjin_proto::staff::StaffRole;
use menjin_proto::wire::{ConsoleRequest, Response as NodeResponse, RosterSummary};

use super::staff::{StaffPage, staff};
use super::{cst, lang};
use crate::App;
use crate::i18n::Text;

/// Undeclared doors listed per building; the rest are counted ("and N more").
const DOORS_LISTED_MAX: usize = 100;
const DAY_SECS: u64 = 86_400;

pub(crate) struct BuildingRow {
    pub(crate) building: String,
    /// The building in words: `5 栋`.
    pub(crate) title: String,
    /// Homes with someone declared.
    pub(crate) declared: u32,
    /// Homes known: declared, or with a household code and nobody declared.
    pub(crate) homes: u32,
    pub(crate) percent: u32,
    pub(crate) residents: u32,
    pub(crate) cleared: u32,
    /// Homes with a code and nobody declared, the first [`DOORS_LISTED_MAX`].
    pub(crate) undeclared: Vec<String>,
    /// Beyond those listed.
    pub(crate) more: usize,
}

#[derive(Template, WebTemplate)]
#[template(path = "staff_progress.html")]
pub(crate) struct ProgressPage {
    pub(crate) p: StaffPage,
    pub(crate) community: String,
    pub(crate) deadline: String,
    /// Whole days left, rounded up; `None` past the deadline.
    pub(crate) days_left: Option<u64>,
    pub(crate) rows: Vec<BuildingRow>,
    pub(crate) total_declared: u32,
    pub(crate) total_homes: u32,
}

fn rows(
    t: &Text,
    summary: &RosterSummary,
    undeclared: Vec<(String, Vec<String>)>,
) -> Vec<BuildingRow> {
    let mut by: BTreeMap<String, BuildingRow> = BTreeMap::new();
    let blank = |building: &str| BuildingRow {
        building: building.to_string(),
        title: t.building_of(building),
        declared: 0,
        homes: 0,
        percent: 0,
        residents: 0,
        cleared: 0,
        undeclared: Vec::new(),
        more: 0,
    };
    for b in &summary.buildings {
        let row = by
            .entry(b.building.clone())
            .or_insert_with(|| blank(&b.building));
        row.declared = b.households;
        row.residents = b.residents;
        row.cleared = b.cleared;
    }
    for (building, doors) in undeclared {
        let row = by
            .entry(building.clone())
            .or_insert_with(|| blank(&building));
        row.more = doors.len().saturating_sub(DOORS_LISTED_MAX);
        row.homes = u32::try_from(doors.len()).unwrap_or(u32::MAX);
        row.undeclared = doors.into_iter().take(DOORS_LISTED_MAX).collect();
    }
    by.into_values()
        .map(|mut r| {
            r.homes = r.homes.saturating_add(r.declared);
            r.percent = (u64::from(r.declared) * 100 / u64::from(r.homes.max(1))) as u32;
            r
        })
        .collect()
}

pub(crate) async fn page(State(app): State<App>, headers: HeaderMap) -> Response {
    let s = match staff(&app, &headers, StaffRole::Clerk) {
        Ok(s) => s,
        Err(resp) => return resp,
    };
    let t = lang(&headers).text();
    let node = app.node.clone();
    let now = menjin_net::clock::now_ms() / 1000;
    let answer = tokio::task::spawn_blocking(move || {
        let summary = match node.console(ConsoleRequest::RosterSummary, now) {
            NodeResponse::Summary(s) => s,
            NodeResponse::Error { message, .. } => return Err(message),
            _ => return Err("unexpected answer to a roster summary".to_string()),
        };
        let undeclared = node.homes_not_declared().map_err(|r| r.message)?;
        Ok((summary, undeclared))
    })
    .await;
    let (summary, undeclared) = match answer {
        Ok(Ok(v)) => v,
        Ok(Err(m)) => return super::internal(&m),
        Err(e) => return super::internal(&e.to_string()),
    };
    let rows = rows(t, &summary, undeclared);
    ProgressPage {
        p: StaffPage::of(t, &s, "/staff/progress"),
        community: summary.community_name.clone(),
        deadline: cst(summary.deadline, false),
        days_left: (now < summary.deadline).then(|| (summary.deadline - now).div_ceil(DAY_SECS)),
        total_declared: rows.iter().map(|r| r.declared).sum(),
        total_homes: rows.iter().map(|r| r.homes).sum(),
        rows,
    }
    .into_response()
}
