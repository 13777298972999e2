//! Asking for a printed pass: a photo of one of this home's members (a dependent without a
//! phone, usually) uploaded as `multipart/form-data` (`upload`), checked by
//! `menjin_render::photo::check_photo` with its error beside the field, and stored through
//! `Node::attach_photo_in_household` (members of this home only). The pass itself is printed
//! at the office.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Multipart, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use menjin_community::households::Household;
use menjin_community::service::HomeRefusal;
use menjin_proto::credential::HolderId;
use menjin_render::photo::{PhotoError, check_photo};
use serde::Deserialize;

use super::{Page, forbidden, lang, open};
use crate::App;
use crate::i18n::Text;
use crate::security::token_matches;
use crate::upload;

#[derive(Template, WebTemplate)]
#[template(path = "photo.html")]
pub(crate) struct PhotoPage {
    pub(crate) p: Page,
    pub(crate) holder: String,
    pub(crate) name: String,
    pub(crate) error: &'static str,
    pub(crate) done: bool,
}

#[derive(Deserialize)]
pub(crate) struct For {
    #[serde(default, rename = "for")]
    holder: String,
}

/// The member's name, if `holder` is one of this home's members.
#[allow(clippy::result_large_err)] // the error is the page's answer, once per request
fn member_name(app: &App, home: &Household, holder: &str) -> Result<Option<String>, Response> {
    let now = menjin_net::clock::now_ms() / 1000;
    let members = app
        .node
        .household_members(home, now)
        .map_err(|r| super::internal(&r.message))?;
    Ok(members
        .into_iter()
        .find(|m| m.holder.to_string() == holder)
        .map(|m| m.name))
}

fn not_member(t: &'static Text, csrf: String) -> Response {
    let page = super::login::Message {
        p: Page {
            t,
            csrf,
            back: "/my",
        },
        message: t.not_member,
    };
    (StatusCode::NOT_FOUND, page).into_response()
}

fn photo_error(e: &PhotoError, t: &'static Text) -> &'static str {
    match e {
        PhotoError::Empty => t.e_photo_none,
        PhotoError::TooLarge { .. } => t.e_photo_large,
        PhotoError::NotJpegOrPng { .. } => t.e_photo_type,
        PhotoError::Dimensions { .. } => t.e_photo_size,
        _ => t.e_photo_corrupt,
    }
}

pub(crate) async fn page(
    State(app): State<App>,
    headers: HeaderMap,
    Query(q): Query<For>,
) -> Response {
    let o = match open(&app, &headers) {
        Ok(o) => o,
        Err(resp) => return resp,
    };
    let t = lang(&headers).text();
    match member_name(&app, &o.home, &q.holder) {
        Ok(Some(name)) => PhotoPage {
            p: Page {
                t,
                csrf: o.session.csrf,
                back: "/my",
            },
            holder: q.holder,
            name,
            error: "",
            done: false,
        }
        .into_response(),
        Ok(None) => not_member(t, o.session.csrf),
        Err(resp) => resp,
    }
}

pub(crate) async fn submit(State(app): State<App>, headers: HeaderMap, mp: Multipart) -> Response {
    let o = match open(&app, &headers) {
        Ok(o) => o,
        Err(resp) => return resp,
    };
    let t = lang(&headers).text();
    let Ok(up) = upload::read(mp, "photo", upload::PHOTO_FORM).await else {
        return (StatusCode::BAD_REQUEST, "not an upload form").into_response();
    };
    if !token_matches(&o.session.csrf, up.field("csrf")) {
        return forbidden(t, o.session.csrf);
    }
    let holder_text = up.field("for").unwrap_or_default().to_string();
    let name = match member_name(&app, &o.home, &holder_text) {
        Ok(Some(name)) => name,
        Ok(None) => {
            tracing::warn!("photo for no member of this home refused");
            return not_member(t, o.session.csrf);
        }
        Err(resp) => return resp,
    };
    let page = |error: &'static str, done: bool, csrf: String| PhotoPage {
        p: Page {
            t,
            csrf,
            back: "/my",
        },
        holder: holder_text.clone(),
        name: name.clone(),
        error,
        done,
    };
    let checked = match (&up.photo, up.too_large) {
        (_, true) => Err(t.e_photo_large),
        (None, _) => Err(t.e_photo_none),
        (Some(bytes), _) => check_photo(bytes).map_err(|e| photo_error(&e, t)),
    };
    let holder = holder_text.parse::<HolderId>();
    let (Ok(_), Some(photo), Ok(holder)) = (&checked, up.photo, holder) else {
        let error = checked.err().unwrap_or(t.e_photo_none);
        return (
            StatusCode::UNPROCESSABLE_ENTITY,
            page(error, false, o.session.csrf),
        )
            .into_response();
    };
    let node = app.node.clone();
    let home = o.home.clone();
    let now = menjin_net::clock::now_ms() / 1000;
    let answer = tokio::task::spawn_blocking(move || {
        node.attach_photo_in_household(&home, holder, photo, now)
    })
    .await;
    match answer {
        Ok(Ok(_)) => {
            tracing::info!(holder = %holder, "photo attached for a printed pass");
            page("", true, o.session.csrf).into_response()
        }
        Ok(Err(HomeRefusal::NotMember)) => not_member(t, o.session.csrf),
        Ok(Err(HomeRefusal::Node(r))) => super::internal(&r.message),
        Ok(Err(other)) => super::internal(&format!("{other:?}")),
        Err(e) => super::internal(&e.to_string()),
    }
}
