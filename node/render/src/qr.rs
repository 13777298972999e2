//! QR images of a code text: inline SVG for the printed pass, PNG for download, and Unicode
//! half blocks for a terminal.
//!
//! Code texts are `MJ:` followed by base45, which is exactly the QR alphanumeric alphabet, so
//! the encoder keeps the whole text in alphanumeric mode (5.5 bits a character instead of 8)
//! and the longest code text fits version 10 at error correction level M. Level M is the
//! usual trade-off for codes shown on a cracked phone screen or a creased paper pass.
//!
//! All three renderers draw from the same module matrix with the same quiet zone, so what a
//! gate scanner sees does not depend on where the code was shown.

use std::fmt::Write as _;

use qrcode::types::{Color, QrError};
use qrcode::{EcLevel, QrCode};

/// The QR specification asks for a light border of 4 modules; scanners fail to find the
/// finder patterns without it, especially on a dark page or a dark terminal.
pub const QUIET_ZONE_MODULES: u32 = 4;
/// Largest module size for [`qr_png`]. At 16 px even the largest QR code (177 modules) stays
/// under 3,000 px a side (about 9 MB of raw pixels), and a version 10 code is 1,040 px wide:
/// more than enough to print at 300 dpi.
pub const MODULE_PX_MAX: u32 = 16;

/// SVG user units per module in the `width`/`height` attributes: only the default size when
/// the SVG is opened on its own; the printed pass sets its size in millimetres with CSS.
const SVG_DEFAULT_PX_PER_MODULE: u32 = 4;

/// Why a code or a pass could not be rendered.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RenderError {
    /// The text does not fit in the largest QR code (a code text is at most about 210 bytes,
    /// so this means it is not a code).
    #[error("text of {len} bytes is too long for a QR code")]
    TooLong {
        /// The text's length in bytes.
        len: usize,
    },
    /// `module_px` is 0 or over [`MODULE_PX_MAX`].
    #[error("module size of {0} px is outside 1..={MODULE_PX_MAX}")]
    ModuleSize(u32),
    /// Any other refusal from the QR encoder; not expected for text input.
    #[error("qr encoder refused the text: {0}")]
    Encoder(#[source] QrError),
    /// The png crate failed to write the image.
    #[error("png encoding failed: {0}")]
    Png(#[from] png::EncodingError),
    /// The pass photo failed [`check_photo`](crate::photo::check_photo).
    #[error("pass photo refused: {0}")]
    Photo(#[from] crate::photo::PhotoError),
    /// The pass photo's bytes are of another type than the MIME type stored with it.
    #[error("pass photo is declared as {declared:?} but its bytes are {actual}")]
    PhotoType {
        /// The stored MIME type.
        declared: String,
        /// What the bytes are (`image/jpeg` or `image/png`).
        actual: &'static str,
    },
}

/// The module matrix of a code text with its quiet zone, the one thing every renderer draws.
struct Matrix {
    code: QrCode,
}

impl Matrix {
    fn new(text: &str) -> Result<Self, RenderError> {
        let code =
            QrCode::with_error_correction_level(text.as_bytes(), EcLevel::M).map_err(|error| {
                match error {
                    QrError::DataTooLong => RenderError::TooLong { len: text.len() },
                    other => RenderError::Encoder(other),
                }
            })?;
        Ok(Self { code })
    }

    /// Modules a side without the quiet zone.
    fn modules(&self) -> u32 {
        // At most 177 (version 40), so the conversion cannot fail.
        u32::try_from(self.code.width()).expect("qr width fits u32")
    }

    /// Modules a side including the quiet zone on both sides.
    fn side(&self) -> u32 {
        self.modules() + 2 * QUIET_ZONE_MODULES
    }

    /// Whether the module at (x, y) is dark, in coordinates that include the quiet zone;
    /// anything outside the code (quiet zone and beyond) is light.
    fn is_dark(&self, x: u32, y: u32) -> bool {
        let (Some(x), Some(y)) = (
            x.checked_sub(QUIET_ZONE_MODULES),
            y.checked_sub(QUIET_ZONE_MODULES),
        ) else {
            return false;
        };
        let modules = self.modules();
        if x >= modules || y >= modules {
            return false;
        }
        self.code[(x as usize, y as usize)] == Color::Dark
    }
}

/// Renders `text` as a standalone SVG document (no XML declaration, so it can be inlined in
/// HTML as is), black modules on a white square that includes the quiet zone. Coordinates are
/// in modules; set the displayed size with CSS `width`/`height`.
///
/// # Errors
///
/// [`RenderError::TooLong`] if the text does not fit in a QR code.
pub fn qr_svg(text: &str) -> Result<String, RenderError> {
    let matrix = Matrix::new(text)?;
    let side = matrix.side();
    let px = side * SVG_DEFAULT_PX_PER_MODULE;
    let mut svg = format!(
        concat!(
            r#"<svg xmlns="http://www.w3.org/2000/svg" version="1.1" "#,
            r#"width="{px}" height="{px}" viewBox="0 0 {side} {side}" "#,
            r#"shape-rendering="crispEdges" role="img" aria-label="QR code">"#,
            r##"<rect x="0" y="0" width="{side}" height="{side}" fill="#fff"/>"##,
            r##"<path stroke="#000" stroke-width="1" fill="none" d=""##,
        ),
        px = px,
        side = side,
    );
    // Each horizontal run of dark modules is a line through the middle of its row, one
    // module thick: with butt caps it covers exactly the run's modules. A row starts with an
    // absolute move, each later run moves by the gap after the last one ("m2 0h3"): about
    // 4 KB for a version 10 code, half what a rectangle per run takes, the same pixels.
    for y in 0..side {
        let mut x = 0;
        let mut end = None;
        while x < side {
            if !matrix.is_dark(x, y) {
                x += 1;
                continue;
            }
            let start = x;
            while x < side && matrix.is_dark(x, y) {
                x += 1;
            }
            // Writing to a String cannot fail.
            let _ = match end {
                None => write!(svg, "M{start} {y}.5h{}", x - start),
                Some(end) => write!(svg, "m{} 0h{}", start - end, x - start),
            };
            end = Some(x);
        }
    }
    svg.push_str(r#""/></svg>"#);
    Ok(svg)
}

/// Renders `text` as an 8-bit grayscale PNG, `module_px` pixels a module, with a 4-module
/// quiet zone: the image is `(modules + 8) * module_px` pixels a side.
///
/// # Errors
///
/// [`RenderError::TooLong`] if the text does not fit in a QR code,
/// [`RenderError::ModuleSize`] if `module_px` is 0 or above [`MODULE_PX_MAX`].
pub fn qr_png(text: &str, module_px: u32) -> Result<Vec<u8>, RenderError> {
    if !(1..=MODULE_PX_MAX).contains(&module_px) {
        return Err(RenderError::ModuleSize(module_px));
    }
    let matrix = Matrix::new(text)?;
    let side_px = matrix.side() * module_px;

    let mut pixels = Vec::with_capacity((side_px as usize) * (side_px as usize));
    for py in 0..side_px {
        for px in 0..side_px {
            let dark = matrix.is_dark(px / module_px, py / module_px);
            pixels.push(if dark { 0x00 } else { 0xff });
        }
    }

    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, side_px, side_px);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header()?;
    writer.write_image_data(&pixels)?;
    writer.finish()?;
    Ok(out)
}

/// Renders `text` for a terminal with Unicode half blocks, two modules a character cell
/// vertically (cells are about twice as tall as wide, so modules come out square).
///
/// The light modules and the quiet zone are drawn with block characters in the terminal's
/// foreground colour and the dark modules are left as background. On the usual dark-themed
/// terminal (light text on a dark background) that prints dark modules on an explicitly
/// light square, which is what scanners expect; a bare dark-theme rendering of "dark =
/// block" would come out inverted, which many phone scanners refuse. On a light-themed
/// terminal this output is inverted instead. Every line ends with `\n`.
///
/// # Errors
///
/// [`RenderError::TooLong`] if the text does not fit in a QR code.
pub fn qr_terminal(text: &str) -> Result<String, RenderError> {
    let matrix = Matrix::new(text)?;
    let side = matrix.side();
    // The side is odd (4 * version + 17 + 8), so the last cell row has only a top half in
    // the code; its bottom half counts as light, i.e. half a row more quiet zone.
    let light = |x: u32, y: u32| y >= side || !matrix.is_dark(x, y);
    let mut out = String::with_capacity(((side as usize) * 3 + 1) * (side as usize).div_ceil(2));
    for row in 0..side.div_ceil(2) {
        let (top, bottom) = (2 * row, 2 * row + 1);
        for x in 0..side {
            out.push(match (light(x, top), light(x, bottom)) {
                (true, true) => '█',
                (true, false) => '▀',
                (false, true) => '▄',
                (false, false) => ' ',
            });
        }
        out.push('\n');
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The longest code text: `MJ:` and 204 base45 characters, using the whole alphabet
    /// (base45 is the QR alphanumeric set).
    fn longest_code_text() -> String {
        const BASE45: &str = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:";
        let body: String = BASE45.chars().cycle().take(204).collect();
        format!("MJ:{body}")
    }

    fn version_number(text: &str) -> i16 {
        match Matrix::new(text).expect("encodes").code.version() {
            qrcode::Version::Normal(v) => v,
            qrcode::Version::Micro(v) => panic!("unexpected micro QR version {v}"),
        }
    }

    #[test]
    fn longest_code_text_fits_version_10_at_level_m() {
        let text = longest_code_text();
        assert_eq!(text.len(), 207);
        assert!(
            text.len() <= menjin_proto::credential::TEXT_LEN_MAX,
            "test text is longer than any real code text"
        );
        let version = version_number(&text);
        assert!(version <= 10, "version {version}");
        // Byte mode would need version 10 for 207 characters; alphanumeric mode needs 8.
        // Checking for 8 proves the encoder kept the text alphanumeric.
        assert!(
            version <= 8,
            "text was not encoded in alphanumeric mode: version {version}"
        );
        let matrix = Matrix::new(&text).expect("encodes");
        assert_eq!(matrix.code.error_correction_level(), EcLevel::M);
    }

    #[test]
    fn png_decodes_to_expected_size_and_colours() {
        let text = longest_code_text();
        let modules = Matrix::new(&text).expect("encodes").modules();
        for module_px in [1, 3, MODULE_PX_MAX] {
            let bytes = qr_png(&text, module_px).expect("renders");
            assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"));

            let decoder = png::Decoder::new(std::io::Cursor::new(&bytes));
            let mut reader = decoder.read_info().expect("png header");
            let size = reader.output_buffer_size().expect("buffer size");
            let mut buf = vec![0; size];
            let info = reader.next_frame(&mut buf).expect("png frame");
            let side = (modules + 2 * QUIET_ZONE_MODULES) * module_px;
            assert_eq!((info.width, info.height), (side, side));
            assert_eq!(info.color_type, png::ColorType::Grayscale);
            assert_eq!(info.bit_depth, png::BitDepth::Eight);
            // Quiet zone is white; the top-left finder pattern starts black right after it.
            assert_eq!(buf[0], 0xff);
            let first_dark = (QUIET_ZONE_MODULES * module_px) as usize;
            let row = first_dark * info.line_size;
            assert_eq!(buf[row + first_dark], 0x00);
            assert_eq!(buf[row + first_dark - 1], 0xff);
        }
    }

    #[test]
    fn png_refuses_bad_module_size() {
        assert!(matches!(qr_png("MJ:1", 0), Err(RenderError::ModuleSize(0))));
        assert!(matches!(
            qr_png("MJ:1", MODULE_PX_MAX + 1),
            Err(RenderError::ModuleSize(_))
        ));
    }

    #[test]
    fn svg_is_standalone_with_view_box_and_quiet_zone() {
        let text = longest_code_text();
        let side = Matrix::new(&text).expect("encodes").side();
        let svg = qr_svg(&text).expect("renders");
        assert!(svg.starts_with("<svg "));
        assert!(svg.contains(r#"xmlns="http://www.w3.org/2000/svg""#));
        assert!(svg.contains(&format!(r#"viewBox="0 0 {side} {side}""#)));
        assert!(svg.ends_with("</svg>"));
        assert!(!svg.contains("<?xml"));
        // The first dark run starts at the quiet zone's inner corner (the finder pattern).
        assert!(svg.contains(&format!(r#"d="M{q} {q}.5h7m"#, q = QUIET_ZONE_MODULES)));
    }

    /// The modules the SVG's path paints: each `M x y.5` / `m dx 0` then `h w` is a run of
    /// `w` modules in row `y`.
    fn painted(svg: &str) -> std::collections::BTreeSet<(u32, u32)> {
        let d = svg
            .split(" d=\"")
            .nth(1)
            .expect("a path")
            .split('"')
            .next()
            .unwrap();
        let mut out = std::collections::BTreeSet::new();
        let (mut x, mut y) = (0u32, 0u32);
        let mut rest = d;
        while !rest.is_empty() {
            let cmd = rest.as_bytes()[0];
            let next = rest[1..]
                .find(['M', 'm', 'h'])
                .map_or(rest.len(), |i| i + 1);
            let args = &rest[1..next];
            match cmd {
                b'M' => {
                    let (a, b) = args.split_once(' ').expect("M x y");
                    x = a.parse().unwrap();
                    y = b
                        .strip_suffix(".5")
                        .expect("the row's middle")
                        .parse()
                        .unwrap();
                }
                b'm' => {
                    let (a, b) = args.split_once(' ').expect("m dx 0");
                    assert_eq!(b, "0", "a move stays in its row");
                    x += a.parse::<u32>().unwrap();
                }
                b'h' => {
                    let w: u32 = args.parse().unwrap();
                    assert!(w > 0);
                    for i in x..x + w {
                        assert!(out.insert((i, y)), "module ({i}, {y}) painted twice");
                    }
                    x += w;
                }
                other => panic!("unexpected path command {}", other as char),
            }
            rest = &rest[next..];
        }
        out
    }

    #[test]
    fn svg_paints_exactly_the_dark_modules() {
        for text in [longest_code_text(), "MJ:1".to_string(), String::new()] {
            let matrix = Matrix::new(&text).expect("encodes");
            let side = matrix.side();
            let dark: std::collections::BTreeSet<(u32, u32)> = (0..side)
                .flat_map(|y| (0..side).map(move |x| (x, y)))
                .filter(|&(x, y)| matrix.is_dark(x, y))
                .collect();
            let svg = qr_svg(&text).expect("renders");
            assert_eq!(painted(&svg), dark, "text {text:?}");
            assert!(svg.contains(r#"stroke-width="1""#));
        }
    }

    #[test]
    fn terminal_has_half_as_many_rows_as_modules() {
        let text = longest_code_text();
        let side = Matrix::new(&text).expect("encodes").side() as usize;
        let out = qr_terminal(&text).expect("renders");
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), side.div_ceil(2));
        for line in &lines {
            assert_eq!(line.chars().count(), side);
        }
        // The quiet zone is drawn explicitly as light (full blocks) on every side.
        assert!(lines[0].chars().all(|c| c == '█'));
        assert!(lines[1].chars().all(|c| c == '█'));
        assert!(
            lines
                .iter()
                .all(|l| l.starts_with("████") && l.ends_with("████"))
        );
        // Cell row 2 holds module rows 4 and 5: the finder pattern's dark top edge over its
        // light ring, framed by its dark left and right edges (dark is left blank).
        let finder: String = lines[2].chars().skip(4).take(7).collect();
        assert_eq!(finder, " ▄▄▄▄▄ ");
    }

    #[test]
    fn too_long_text_is_an_error_not_a_panic() {
        let long = "A".repeat(5000);
        assert!(matches!(
            qr_svg(&long),
            Err(RenderError::TooLong { len: 5000 })
        ));
        assert!(matches!(qr_png(&long, 4), Err(RenderError::TooLong { .. })));
        assert!(matches!(
            qr_terminal(&long),
            Err(RenderError::TooLong { .. })
        ));
        // Bytes that are neither alphanumeric nor ASCII go to byte mode and still just fail.
        let binary = "门".repeat(2000);
        assert!(matches!(qr_svg(&binary), Err(RenderError::TooLong { .. })));
    }

    #[test]
    fn empty_and_non_ascii_text_render() {
        assert!(qr_svg("").is_ok());
        assert!(qr_terminal("通行证").is_ok());
    }
}
