//! The printed pass (人员通行证): one self-contained HTML page that staff print on A6 and hand
//! to residents who have no smartphone.
//!
//! Self-contained means nothing is fetched when the page is opened or printed: the photo is a
//! data URI, the QR code inline SVG, the fonts whatever the printing computer has, and a
//! Content-Security-Policy forbids everything else, so a page saved to a USB stick prints the
//! same in a site office with no network. Every text field goes through [`escape`].

use std::fmt::Write as _;

use crate::photo::check_photo;
use crate::qr::{RenderError, qr_svg};

/// What a pass shows. All strings are shown as given (after HTML escaping).
///
/// Deliberately not `Debug`: it holds an ID number and up to a megabyte of photo, neither of
/// which belongs in a log line.
#[derive(Clone, Copy)]
pub struct PassData<'a> {
    /// Printed at the top, as in `node.toml`.
    pub community_name: &'a str,
    /// As declared.
    pub name: &'a str,
    /// "男"/"女" or "male"/"female"; these four are shown bilingually, anything else as given.
    pub gender: &'a str,
    /// The document's kind as declared (resident ID card, travel permit, passport, ...).
    pub document_type: &'a str,
    /// Printed in full: the one place an ID number leaves the node (the holder's own pass).
    pub document_number: &'a str,
    /// As declared.
    pub building: &'a str,
    /// As declared.
    pub door: &'a str,
    /// The opaque holder id, printed small so staff can look the holder up.
    pub holder_id: &'a str,
    /// MIME type and bytes; checked again with [`check_photo`] before embedding.
    pub photo: Option<(&'a str, &'a [u8])>,
    /// The signed code text (`MJ:...`), rendered as the QR code.
    pub code_text: &'a str,
    /// Last day the code is valid, as a date (`YYYY-MM-DD`).
    pub valid_until: &'a str,
    /// Day the pass was printed, as a date (`YYYY-MM-DD`).
    pub issued: &'a str,
}

/// No network, no scripts: only inline styles and data-URI images may load.
const CSP: &str = "default-src 'none'; img-src data:; style-src 'unsafe-inline'";

/// Print CSS (also served as its own stylesheet by the node's pages, which print the pass
/// from [`pass_body`] under a Content-Security-Policy without inline styles). Black on white only, and no CSS backgrounds: browsers drop those when printing
/// unless told otherwise. The QR code's own white square is SVG content and always prints.
/// A6 is 105 × 148 mm; less 6 mm margins that leaves 93 × 136 mm, and the pass stays a few
/// millimetres short of it so rounding never spills onto a second sheet.
pub const PASS_CSS: &str = r#"
@page { size: A6; margin: 6mm }
* { box-sizing: border-box }
html, body { margin: 0; padding: 0; color: #000; background: #fff }
body {
  font-family: "Noto Sans CJK SC", "Source Han Sans SC", "PingFang SC", "Microsoft YaHei",
    "WenQuanYi Micro Hei", "SimHei", sans-serif;
  font-size: 9pt; line-height: 1.25;
}
small { font-size: 6.5pt; font-weight: normal }
.pass {
  width: 93mm; height: 133mm; padding: 3mm; border: 0.4mm solid #000;
  display: flex; flex-direction: column; align-items: stretch;
  break-inside: avoid; page-break-inside: avoid; overflow: hidden;
}
header { text-align: center; border-bottom: 0.3mm solid #000; padding-bottom: 1.5mm }
.community { font-size: 10pt; font-weight: bold }
h1 { margin: 0.5mm 0 0; font-size: 16pt; letter-spacing: 0.3em }
h1 small { display: block; letter-spacing: normal }
.person { display: flex; gap: 3mm; margin-top: 2.5mm }
.photo { flex: none; width: 26mm; height: 34mm; border: 0.3mm solid #000; object-fit: contain }
.nophoto { display: flex; flex-direction: column; justify-content: center; text-align: center }
table { border-collapse: collapse; flex: 1; align-self: flex-start }
th { text-align: left; vertical-align: top; white-space: nowrap; padding: 0 2mm 1.2mm 0 }
th small { display: block }
td { vertical-align: top; padding: 0 0 1.2mm; font-weight: bold; word-break: break-all }
.code { flex: 1; display: flex; align-items: center; justify-content: center; min-height: 0 }
.code svg { width: 48mm; height: 48mm }
.valid { text-align: center; font-size: 12pt; font-weight: bold }
.valid small { display: block }
footer { margin-top: 1.5mm; font-size: 6.5pt; display: flex; justify-content: space-between; gap: 2mm }
footer .holder { word-break: break-all }
@media screen { body { padding: 6mm } }
"#;

/// Renders the pass as a complete HTML document.
///
/// # Errors
///
/// [`RenderError::TooLong`] if the code text does not fit in a QR code;
/// [`RenderError::Photo`] if the photo bytes are not an acceptable photo, and
/// [`RenderError::PhotoType`] if they are not of the declared type.
pub fn pass_html(p: &PassData) -> Result<String, RenderError> {
    let body = pass_body(p)?;
    let mut html = String::with_capacity(4 * 1024 + body.len());
    // Writing to a String cannot fail; the results are ignored below for that reason.
    let _ = write!(
        html,
        concat!(
            "<!DOCTYPE html>\n",
            "<html lang=\"zh-CN\">\n<head>\n<meta charset=\"utf-8\">\n",
            "<meta http-equiv=\"Content-Security-Policy\" content=\"{csp}\">\n",
            "<title>人员通行证 Entry pass · {name}</title>\n",
            "<style>{style}</style>\n</head>\n<body>\n{body}</body>\n</html>\n",
        ),
        csp = CSP,
        name = escape(p.name),
        style = PASS_CSS,
        body = body,
    );
    Ok(html)
}

/// The pass itself, `<div class="pass">...</div>`, styled by the classes of [`PASS_CSS`]
/// (no `style` attribute): the photo as a data URI, the QR code inline SVG.
///
/// # Errors
///
/// As [`pass_html`].
pub fn pass_body(p: &PassData) -> Result<String, RenderError> {
    let qr = qr_svg(p.code_text)?;
    let photo = photo_html(p.photo)?;
    let name = escape(p.name);

    let mut html = String::with_capacity(4 * 1024 + qr.len() + photo.len());
    let _ = write!(
        html,
        concat!(
            "<div class=\"pass\">\n",
            "<header><div class=\"community\">{community}</div>",
            "<h1>人员通行证<small>Entry pass</small></h1></header>\n",
            "<div class=\"person\">\n{photo}\n<table>\n",
        ),
        community = escape(p.community_name),
        photo = photo,
    );
    let building_door = format!("{} / {}", or_dash(p.building), or_dash(p.door));
    let rows: [(&str, &str, String); 5] = [
        ("姓名", "Name", name),
        ("性别", "Gender", gender_html(p.gender)),
        ("证件类型", "ID type", escape(or_dash(p.document_type))),
        ("证件号码", "ID number", escape(or_dash(p.document_number))),
        ("楼栋房号", "Building/Door", escape(&building_door)),
    ];
    for (zh, en, value) in rows {
        let _ = writeln!(
            html,
            "<tr><th>{zh}<small>{en}</small></th><td>{value}</td></tr>"
        );
    }
    let _ = write!(
        html,
        concat!(
            "</table>\n</div>\n",
            "<div class=\"code\">{qr}</div>\n",
            "<div class=\"valid\">有效期至 {valid_until}<small>Valid until</small></div>\n",
            "<footer><span>签发 <small>Issued</small> {issued}</span>",
            "<span class=\"holder\">持证人编号 <small>Holder ID</small> {holder_id}</span>",
            "</footer>\n</div>\n",
        ),
        qr = qr,
        valid_until = escape(or_dash(p.valid_until)),
        issued = escape(or_dash(p.issued)),
        holder_id = escape(or_dash(p.holder_id)),
    );
    Ok(html)
}

/// The photo as an `<img>` with a data URI, or a box saying there is none, so a guard sees at
/// once that the missing photo is deliberate and not a printing fault.
fn photo_html(photo: Option<(&str, &[u8])>) -> Result<String, RenderError> {
    let Some((declared, bytes)) = photo else {
        return Ok("<div class=\"photo nophoto\">无照片<small>No photo</small></div>".to_string());
    };
    // Checked again here because the bytes go straight into the page: a wrong declared type
    // would print as a broken image, and the check bounds the page size.
    let checked = check_photo(bytes)?;
    if !declared.eq_ignore_ascii_case(checked.mime) {
        return Err(RenderError::PhotoType {
            declared: declared.to_string(),
            actual: checked.mime,
        });
    }
    let mut html = String::with_capacity(64 + data_encoding::BASE64.encode_len(bytes.len()));
    let _ = write!(
        html,
        "<img class=\"photo\" alt=\"照片 Photo\" src=\"data:{};base64,",
        checked.mime
    );
    data_encoding::BASE64.encode_append(bytes, &mut html);
    html.push_str("\">");
    Ok(html)
}

fn gender_html(gender: &str) -> String {
    let bilingual = match gender.trim() {
        "男" => Some("男 <small>Male</small>"),
        "女" => Some("女 <small>Female</small>"),
        g if g.eq_ignore_ascii_case("male") => Some("男 <small>Male</small>"),
        g if g.eq_ignore_ascii_case("female") => Some("女 <small>Female</small>"),
        _ => None,
    };
    match bilingual {
        Some(html) => html.to_string(),
        None => escape(or_dash(gender)),
    }
}

/// An empty field prints as a dash so it reads as "none", not as a printing fault.
fn or_dash(s: &str) -> &str {
    if s.trim().is_empty() { "—" } else { s }
}

/// Escapes text for HTML element content and quoted attribute values.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const CODE_TEXT: &str = "MJ:NCFOXN%TS3DH3ZSUZK+.V0ETD%65NL-AH-R6IKHM*Q8JIBNLYIBM9O:RN69N8";

    fn sample<'a>(photo: Option<(&'a str, &'a [u8])>) -> PassData<'a> {
        PassData {
            community_name: "幸福里小区",
            name: "张三",
            gender: "男",
            document_type: "居民身份证",
            document_number: "11010519491231002X",
            building: "12",
            door: "1203",
            holder_id: "9f3a6c01d2e4b5a7",
            photo,
            code_text: CODE_TEXT,
            valid_until: "2022-05-31",
            issued: "2022-04-01",
        }
    }

    fn png_photo() -> Vec<u8> {
        let mut out = Vec::new();
        let mut encoder = png::Encoder::new(&mut out, 90, 120);
        encoder.set_color(png::ColorType::Grayscale);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header().expect("png header");
        writer
            .write_image_data(&[0x99; 90 * 120])
            .expect("png data");
        writer.finish().expect("png finish");
        out
    }

    #[test]
    fn pass_shows_fields_qr_and_print_css() {
        let html = pass_html(&sample(None)).expect("renders");
        assert!(html.starts_with("<!DOCTYPE html>"));
        assert!(html.contains("张三"));
        assert!(html.contains("11010519491231002X"));
        assert!(html.contains("幸福里小区"));
        assert!(html.contains("12 / 1203"));
        assert!(html.contains("2022-05-31"));
        assert!(html.contains("9f3a6c01d2e4b5a7"));
        assert!(html.contains("男 <small>Male</small>"));
        for label in ["姓名", "Name", "性别", "Gender", "证件号码", "ID number"] {
            assert!(html.contains(label), "{label}");
        }
        for label in ["楼栋房号", "Building/Door", "有效期至", "Valid until"] {
            assert!(html.contains(label), "{label}");
        }
        assert!(html.contains("<svg"));
        assert!(html.contains("@page { size: A6; margin: 6mm }"));
        assert!(html.contains("无照片"));
        assert!(!html.contains("data:image"));
    }

    #[test]
    fn photo_is_embedded_as_data_uri() {
        let photo = png_photo();
        let html = pass_html(&sample(Some(("image/png", &photo)))).expect("renders");
        let uri = format!(
            "src=\"data:image/png;base64,{}\"",
            data_encoding::BASE64.encode(&photo)
        );
        assert!(html.contains(&uri));
        assert!(!html.contains("无照片"));
    }

    #[test]
    fn photo_of_another_type_than_declared_is_refused() {
        let photo = png_photo();
        let err = pass_html(&sample(Some(("image/jpeg", &photo)))).unwrap_err();
        assert!(matches!(
            err,
            RenderError::PhotoType {
                actual: "image/png",
                ..
            }
        ));
        let err = pass_html(&sample(Some(("image/png", b"not a photo")))).unwrap_err();
        assert!(matches!(err, RenderError::Photo(_)));
    }

    #[test]
    fn script_in_a_name_is_escaped() {
        let mut p = sample(None);
        p.name = "<script>alert('x')</script>";
        p.community_name = "A & B \"Garden\"";
        p.gender = "<b>";
        let html = pass_html(&p).expect("renders");
        assert!(!html.contains("<script"));
        assert!(!html.contains("<b>"));
        assert!(html.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"));
        assert!(html.contains("A &amp; B &quot;Garden&quot;"));
    }

    #[test]
    fn nothing_is_loaded_from_outside_the_page() {
        let photo = png_photo();
        let html = pass_html(&sample(Some(("image/png", &photo)))).expect("renders");
        for needle in ["<script", "<link", "@import", "url(", "src=\"http", "href="] {
            assert!(!html.contains(needle), "{needle}");
        }
        // The only URL is the SVG namespace name, which is an identifier and never fetched.
        assert_eq!(
            html.matches("http").count(),
            2,
            "CSP http-equiv and xmlns only"
        );
        assert!(html.contains("default-src 'none'"));
    }

    #[test]
    fn the_body_is_the_document_without_inline_style() {
        let photo = png_photo();
        let data = sample(Some(("image/png", &photo)));
        let body = pass_body(&data).expect("renders");
        assert!(body.starts_with("<div class=\"pass\">"));
        assert!(pass_html(&data).unwrap().contains(&body));
        for needle in ["<style", "style=", "<script", "<html"] {
            assert!(!body.contains(needle), "{needle}");
        }
        assert!(PASS_CSS.contains("@page { size: A6; margin: 6mm }"));
    }

    #[test]
    fn too_long_code_text_is_an_error() {
        let long = format!("MJ:{}", "A".repeat(5000));
        let mut p = sample(None);
        p.code_text = &long;
        assert!(matches!(pass_html(&p), Err(RenderError::TooLong { .. })));
    }

    #[test]
    fn escape_covers_html_specials() {
        assert_eq!(
            escape(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
        assert_eq!(escape("张三"), "张三");
    }
}
