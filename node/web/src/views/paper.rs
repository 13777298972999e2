//! The clerk's paper declaration (`/staff/declare`): the same five groups and the same
//! checks as the resident's form (`declare::parse`, `partials/declare_fields.html`), plus the
//! building and door as written on the paper and the photo (a file, or the workstation's
//! camera where the browser offers it). Posted as multipart, the one route with the larger
//! body limit. Every field and the photo are checked before anything goes to the node; an
//! error anywhere stores nothing. The clerk's name is recorded as the declaration's `staff`.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Multipart, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use menjin_proto::civil::Date;
use menjin_proto::declaration::Outcome;
use menjin_proto::staff::StaffRole;
use menjin_proto::wire::{ConsoleRequest, Receipt, Response as NodeResponse};
use menjin_render::photo::{PhotoError, check_photo};

use super::declare::{DeclareForm, Errors, parse};
use super::lang;
use super::staff::{StaffOpen, StaffPage, staff, staff_forbidden};
use crate::i18n::Text;
use crate::security::token_matches;
use crate::{App, upload};

/// A text part longer than this is not a field of the form (the longest field is 256).
const FIELD_LEN_MAX: usize = 4 * 1024;
/// Parts in one form: its fields, a few times over.
const PARTS_MAX: usize = 64;

#[derive(Template, WebTemplate)]
#[template(path = "staff_declare.html")]
pub(crate) struct PaperPage {
    pub(crate) p: StaffPage,
    pub(crate) f: DeclareForm,
    pub(crate) errors: Errors,
    pub(crate) refusal: String,
    pub(crate) building: String,
    pub(crate) door: String,
    pub(crate) typed_home: bool,
}

#[derive(Template, WebTemplate)]
#[template(path = "staff_result.html")]
pub(crate) struct PaperResult {
    pub(crate) p: StaffPage,
    pub(crate) r: Receipt,
    pub(crate) outcome: &'static str,
    pub(crate) outcome_text: &'static str,
    pub(crate) class: &'static str,
    pub(crate) holder: String,
    /// The review's reason in the page's language.
    pub(crate) why: String,
    /// A pass can be printed: cleared, and the photo is on file.
    pub(crate) printable: bool,
}

fn form_page(
    t: &'static Text,
    s: &StaffOpen,
    f: DeclareForm,
    errors: Errors,
    refusal: String,
) -> PaperPage {
    PaperPage {
        p: StaffPage::of(t, s, "/staff/declare"),
        building: f.building.clone(),
        door: f.door.clone(),
        f: DeclareForm {
            csrf: String::new(),
            ..f
        },
        errors,
        refusal,
        typed_home: true,
    }
}

pub(crate) async fn page(State(app): State<App>, headers: HeaderMap) -> Response {
    let s = match staff(&app, &headers, StaffRole::Clerk) {
        Ok(s) => s,
        Err(resp) => return resp,
    };
    let t = lang(&headers).text();
    form_page(
        t,
        &s,
        DeclareForm::blank(),
        Errors::default(),
        String::new(),
    )
    .into_response()
}

/// What the multipart body held: the fields, the photo's bytes (empty: none chosen), and
/// whether the photo was over its bound.
struct Posted {
    form: DeclareForm,
    photo: Vec<u8>,
    photo_too_large: bool,
}

/// Reads the parts, each bounded (`upload::read`; the body as a whole is bounded by the
/// route's limit).
async fn read_parts(mp: Multipart) -> Result<Posted, StatusCode> {
    let bounds = upload::Bounds {
        parts: PARTS_MAX,
        text_len: FIELD_LEN_MAX,
    };
    let up = upload::read(mp, "photo", bounds)
        .await
        .map_err(|_| StatusCode::BAD_REQUEST)?;
    let mut form = DeclareForm::default();
    for (name, text) in up.fields {
        form.set(&name, text);
    }
    Ok(Posted {
        form,
        photo: up.photo.unwrap_or_default(),
        photo_too_large: up.too_large,
    })
}

/// The photo's error in the page's language (the check's own message is for the console).
fn photo_error(e: &PhotoError, t: &Text) -> &'static str {
    match e {
        PhotoError::Empty => t.e_photo_missing,
        PhotoError::TooLarge { .. } => t.e_photo_large,
        PhotoError::Dimensions { .. } => t.e_photo_size,
        _ => t.e_photo_type,
    }
}

pub(crate) async fn submit(State(app): State<App>, headers: HeaderMap, mp: Multipart) -> Response {
    let s = match staff(&app, &headers, StaffRole::Clerk) {
        Ok(s) => s,
        Err(resp) => return resp,
    };
    let t = lang(&headers).text();
    let posted = match read_parts(mp).await {
        Ok(p) => p,
        Err(status) => return (status, t.e_upload).into_response(),
    };
    if !token_matches(&s.session.csrf, Some(&posted.form.csrf)) {
        return staff_forbidden(t, &s);
    }
    let now = menjin_net::clock::now_ms() / 1000;
    let f = posted.form;
    let home = (f.building.as_str(), f.door.as_str());
    let parsed = parse(&f, home, t, Date::from_unix(now));
    let photo = if posted.photo_too_large {
        Err(t.e_photo_large)
    } else {
        check_photo(&posted.photo).map_err(|e| photo_error(&e, t))
    };
    let form = match (parsed, photo) {
        (Ok(form), Ok(_)) => form,
        (parsed, photo) => {
            let mut errors = parsed.err().unwrap_or_default();
            if let Err(e) = photo {
                errors.add("photo", e);
            }
            let page = form_page(t, &s, f, errors, String::new());
            return (StatusCode::UNPROCESSABLE_ENTITY, page).into_response();
        }
    };
    let node = app.node.clone();
    let req = ConsoleRequest::DeclareOffline {
        form,
        photo: posted.photo,
        staff: s.name().to_string(),
    };
    let answer = tokio::task::spawn_blocking(move || node.console(req, now)).await;
    let receipt = match answer {
        Ok(NodeResponse::Declared(r)) => r,
        Ok(NodeResponse::Error { message, .. }) => {
            let page = form_page(t, &s, f, Errors::default(), message);
            return (StatusCode::UNPROCESSABLE_ENTITY, page).into_response();
        }
        Ok(_) => return super::internal("unexpected answer to a paper declaration"),
        Err(e) => return super::internal(&e.to_string()),
    };
    tracing::info!(staff = %s.name(), holder = %receipt.holder, "paper declaration stored");
    result_page(t, &s, receipt).into_response()
}

fn result_page(t: &'static Text, s: &StaffOpen, r: Receipt) -> PaperResult {
    let cleared = r.outcome == Outcome::Cleared;
    PaperResult {
        p: StaffPage::of(t, s, "/staff/home"),
        outcome: if cleared {
            "cleared"
        } else {
            r.outcome.as_str()
        },
        outcome_text: t.outcome(r.outcome),
        class: if cleared { "ok" } else { "bad" },
        holder: r.holder.to_string(),
        why: t.why(&r.why),
        printable: cleared && r.has_photo,
        r,
    }
}
