//! A photo posted as `multipart/form-data` beside a few small text fields (the CSRF token,
//! whose photo it is): every part bounded, the photo at most `PHOTO_LEN_MAX`. The photo's
//! content is checked by the caller (`menjin_render::photo::check_photo`) so its error is
//! shown beside the field.

use axum::extract::DefaultBodyLimit;
use axum::extract::multipart::{Field, Multipart};
use menjin_proto::wire::PHOTO_LEN_MAX;

/// A whole upload: the photo and its form's small fields with their multipart headers.
pub(crate) const UPLOAD_LEN_MAX: usize = PHOTO_LEN_MAX + 64 * 1024;
/// How many parts a form has and how long its text fields are, a few times over: more is
/// not one of our forms.
#[derive(Clone, Copy)]
pub(crate) struct Bounds {
    pub(crate) parts: usize,
    pub(crate) text_len: usize,
}

/// The resident's photo form: a token, whose photo it is, the photo.
pub(crate) const PHOTO_FORM: Bounds = Bounds {
    parts: 8,
    text_len: 256,
};

/// The body limit of a route that takes a photo.
pub(crate) fn limit() -> DefaultBodyLimit {
    DefaultBodyLimit::max(UPLOAD_LEN_MAX)
}

/// What an upload form carried.
#[derive(Default)]
pub(crate) struct Upload {
    /// The text fields by name, in order.
    pub(crate) fields: Vec<(String, String)>,
    /// The file part named as asked, if one came (maybe empty: nothing chosen).
    pub(crate) photo: Option<Vec<u8>>,
    /// The photo was over `PHOTO_LEN_MAX` (its bytes were not kept).
    pub(crate) too_large: bool,
}

impl Upload {
    pub(crate) fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Why an upload could not be read at all (not one of our forms, or cut off).
#[derive(Debug)]
pub(crate) struct Unreadable;

/// Reads an upload form whose file part is `photo_field`, within `bounds`.
///
/// # Errors
/// [`Unreadable`] for a body that is not well-formed multipart, too many parts, or a text
/// field over its limit. An oversized photo is not an error: `too_large` says so (the page
/// shows it beside the field).
pub(crate) async fn read(
    mut mp: Multipart,
    photo_field: &str,
    bounds: Bounds,
) -> Result<Upload, Unreadable> {
    let mut up = Upload::default();
    for _ in 0..bounds.parts {
        let field = match mp.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => return Ok(up),
            // The body limit cut a photo off: the fields before it are read.
            Err(e) if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE => {
                up.too_large = true;
                return Ok(up);
            }
            Err(_) => return Err(Unreadable),
        };
        let name = field.name().unwrap_or_default().to_string();
        if name == photo_field {
            // Past the limit, or broken off by the body limit: too large either way.
            if let Ok(Some(bytes)) = bounded(field, PHOTO_LEN_MAX).await {
                up.photo = Some(bytes);
            } else {
                up.too_large = true;
                return Ok(up);
            }
        } else {
            let bytes = bounded(field, bounds.text_len)
                .await
                .map_err(|()| Unreadable)?
                .ok_or(Unreadable)?;
            let text = String::from_utf8(bytes).map_err(|_| Unreadable)?;
            up.fields.push((name, text));
        }
    }
    Err(Unreadable)
}

/// A part's bytes if at most `max`; `Ok(None)` past it (the rest read and dropped, up to the
/// body limit, so the browser gets the answer rather than a reset connection); `Err` if the
/// body broke off.
async fn bounded(mut field: Field<'_>, max: usize) -> Result<Option<Vec<u8>>, ()> {
    let mut out = Vec::new();
    loop {
        match field.chunk().await {
            Ok(Some(chunk)) => {
                if out.len() + chunk.len() > max {
                    while let Ok(Some(_)) = field.chunk().await {}
                    return Ok(None);
                }
                out.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(Some(out)),
            Err(_) => return Err(()),
        }
    }
}
