//! Reading a code from a QR image (PNG) for gates whose scanner saves pictures instead of
//! typing the text: PNG decoded with `png` to 8-bit luma, QR found and decoded with `rqrr`.
//!
//! What it must never do: panic or allocate without bound on a hostile file. The file length
//! and the pixel count are checked before decoding; every failure is a [`QrImageError`].

use std::io::Read;
use std::path::Path;

/// A PNG of a code is a few kilobytes; a photo of one a few megabytes.
pub const FILE_LEN_MAX: u64 = 32 * 1024 * 1024;
/// 16 megapixels: more than any scanner camera; bounds the luma buffer (16 MiB) and
/// rqrr's work.
pub const PIXELS_MAX: u64 = 16 * 1024 * 1024;
/// What the png decoder may allocate: the expanded RGBA frame at the pixel limit, plus room.
const DECODER_BYTES_MAX: usize = 80 * 1024 * 1024;

/// Why no code text could be read from an image (a scan or screenshot of a code).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QrImageError {
    /// The file could not be read.
    #[error("cannot read image {path}: {source}")]
    Read {
        /// The file as given.
        path: String,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// The file is over [`FILE_LEN_MAX`] bytes.
    #[error("image file is {0} bytes, more than {FILE_LEN_MAX}")]
    FileTooLarge(u64),
    /// Not a PNG, or a PNG the decoder refused (png's reason).
    #[error("not a readable PNG image: {0}")]
    NotPng(String),
    /// More than [`PIXELS_MAX`] pixels.
    #[error("image is {width}x{height} pixels, more than {PIXELS_MAX}")]
    TooLarge {
        /// In pixels.
        width: u32,
        /// In pixels.
        height: u32,
    },
    /// No QR code in the image.
    #[error("no QR code found in the image")]
    NoCode,
    /// More than one QR code: crop to one.
    #[error("{0} QR codes in the image: show one code at a time")]
    SeveralCodes(usize),
    /// A QR code is there but does not decode (blurred, cut off, damaged); rqrr's reason.
    #[error("QR code found but unreadable: {0}")]
    Unreadable(String),
}

/// Reads the PNG file at `path` and returns the text of the one QR code in it.
///
/// # Errors
/// [`QrImageError`]: the file cannot be read, is too large, is not a PNG, holds no code,
/// several codes, or a code that does not decode.
pub fn decode_file(path: &Path) -> Result<String, QrImageError> {
    let read_err = |source| QrImageError::Read {
        path: path.display().to_string(),
        source,
    };
    let file = std::fs::File::open(path).map_err(read_err)?;
    let len = file.metadata().map_err(read_err)?.len();
    if len > FILE_LEN_MAX {
        return Err(QrImageError::FileTooLarge(len));
    }
    let mut bytes = Vec::new();
    // `take`: the file may grow after the length check.
    file.take(FILE_LEN_MAX + 1)
        .read_to_end(&mut bytes)
        .map_err(read_err)?;
    if bytes.len() as u64 > FILE_LEN_MAX {
        return Err(QrImageError::FileTooLarge(bytes.len() as u64));
    }
    decode_png(&bytes)
}

/// The text of the one QR code in a PNG image.
///
/// # Errors
/// As [`decode_file`], without the file errors.
pub fn decode_png(bytes: &[u8]) -> Result<String, QrImageError> {
    let (width, height, luma) = png_to_luma(bytes)?;
    let mut prepared =
        rqrr::PreparedImage::prepare_from_greyscale(width, height, |x, y| luma[y * width + x]);
    let grids = prepared.detect_grids();
    match grids.len() {
        0 => Err(QrImageError::NoCode),
        1 => grids[0]
            .decode()
            .map(|(_, text)| text)
            .map_err(|e| QrImageError::Unreadable(e.to_string())),
        n => Err(QrImageError::SeveralCodes(n)),
    }
}

/// Decodes any PNG (gray, gray+alpha, RGB, RGBA, palette; 1 to 16 bits) to 8-bit luma,
/// transparent pixels over white (a code on a transparent background stays readable).
fn png_to_luma(bytes: &[u8]) -> Result<(usize, usize, Vec<u8>), QrImageError> {
    let not_png = |e: png::DecodingError| QrImageError::NotPng(e.to_string());
    let mut decoder = png::Decoder::new_with_limits(
        std::io::Cursor::new(bytes),
        png::Limits {
            bytes: DECODER_BYTES_MAX,
        },
    );
    // Palette and low bit depths to 8 bits, tRNS to alpha, 16 bits to 8.
    decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut reader = decoder.read_info().map_err(not_png)?;
    let (width, height) = {
        let info = reader.info();
        (info.width, info.height)
    };
    if u64::from(width) * u64::from(height) > PIXELS_MAX {
        return Err(QrImageError::TooLarge { width, height });
    }
    let size = reader
        .output_buffer_size()
        .ok_or_else(|| QrImageError::NotPng("image size overflows".into()))?;
    let mut buf = vec![0u8; size];
    let frame = reader.next_frame(&mut buf).map_err(not_png)?;
    let (w, h) = (frame.width as usize, frame.height as usize);
    let channels = match frame.color_type {
        png::ColorType::Grayscale => 1,
        png::ColorType::GrayscaleAlpha => 2,
        png::ColorType::Rgb => 3,
        png::ColorType::Rgba => 4,
        png::ColorType::Indexed => {
            return Err(QrImageError::NotPng("palette was not expanded".into()));
        }
    };
    if frame.bit_depth != png::BitDepth::Eight {
        return Err(QrImageError::NotPng(format!(
            "unexpected bit depth {:?} after expansion",
            frame.bit_depth
        )));
    }
    let line = frame.line_size;
    if line < w * channels || buf.len() < line * h {
        return Err(QrImageError::NotPng("short image data".into()));
    }
    let mut luma = Vec::with_capacity(w * h);
    for row in buf.chunks_exact(line).take(h) {
        for px in row[..w * channels].chunks_exact(channels) {
            luma.push(pixel_luma(px));
        }
    }
    Ok((w, h, luma))
}

/// Rec. 601 luma in integers; alpha composited over white.
fn pixel_luma(px: &[u8]) -> u8 {
    let (gray, alpha) = match *px {
        [g] => (u32::from(g), 255),
        [g, a] => (u32::from(g), u32::from(a)),
        [r, g, b] => (rgb_luma(r, g, b), 255),
        [r, g, b, a] => (rgb_luma(r, g, b), u32::from(a)),
        _ => (255, 255),
    };
    let over_white = (gray * alpha + 255 * (255 - alpha)) / 255;
    u8::try_from(over_white).unwrap_or(u8::MAX)
}

fn rgb_luma(r: u8, g: u8, b: u8) -> u32 {
    (299 * u32::from(r) + 587 * u32::from(g) + 114 * u32::from(b)) / 1000
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::qr::qr_png;

    const CODE: &str = "MJ:6BFA%O8P29*5ZB3I9PXY4+RN4-YF.S*F9D:U3";

    /// Re-encodes a grayscale PNG in another color type, for the decoder's conversions.
    fn reencode(gray_png: &[u8], color: png::ColorType) -> Vec<u8> {
        let mut dec = png::Decoder::new(std::io::Cursor::new(gray_png));
        dec.set_transformations(png::Transformations::EXPAND);
        let mut r = dec.read_info().unwrap();
        let mut buf = vec![0; r.output_buffer_size().unwrap()];
        let info = r.next_frame(&mut buf).unwrap();
        let gray = &buf[..info.buffer_size()];
        let mut out = Vec::new();
        let mut enc = png::Encoder::new(&mut out, info.width, info.height);
        enc.set_depth(png::BitDepth::Eight);
        let data: Vec<u8> = match color {
            png::ColorType::Rgb => gray.iter().flat_map(|&g| [g, g, g]).collect(),
            png::ColorType::Rgba => gray.iter().flat_map(|&g| [g, g, g, 255]).collect(),
            // Dark modules opaque black, light ones fully transparent.
            png::ColorType::GrayscaleAlpha => gray
                .iter()
                .flat_map(|&g| if g < 128 { [0, 255] } else { [0, 0] })
                .collect(),
            png::ColorType::Indexed => {
                enc.set_palette(vec![0, 0, 0, 255, 255, 255]);
                gray.iter().map(|&g| u8::from(g >= 128)).collect()
            }
            png::ColorType::Grayscale => gray.to_vec(),
        };
        enc.set_color(color);
        let mut w = enc.write_header().unwrap();
        w.write_image_data(&data).unwrap();
        w.finish().unwrap();
        out
    }

    #[test]
    fn rendered_code_decodes_back_in_every_color_type() {
        let png = qr_png(CODE, 4).unwrap();
        assert_eq!(decode_png(&png).unwrap(), CODE);
        for color in [
            png::ColorType::Rgb,
            png::ColorType::Rgba,
            png::ColorType::GrayscaleAlpha,
            png::ColorType::Indexed,
        ] {
            let other = reencode(&png, color);
            assert_eq!(decode_png(&other).unwrap(), CODE, "{color:?}");
        }
    }

    #[test]
    fn code_file_decodes_and_missing_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("code.png");
        std::fs::write(&path, qr_png(CODE, 3).unwrap()).unwrap();
        assert_eq!(decode_file(&path).unwrap(), CODE);
        let missing = dir.path().join("nope.png");
        let err = decode_file(&missing).unwrap_err();
        assert!(matches!(err, QrImageError::Read { .. }), "{err}");
        assert!(err.to_string().contains("nope.png"), "{err}");
    }

    #[test]
    fn garbage_truncated_and_blank_images_are_refused_with_the_reason() {
        assert!(matches!(
            decode_png(b"this is not a picture"),
            Err(QrImageError::NotPng(_))
        ));
        assert!(matches!(decode_png(b""), Err(QrImageError::NotPng(_))));
        let png = qr_png(CODE, 4).unwrap();
        for cut in [8, 30, png.len() / 2, png.len() - 13] {
            assert!(
                matches!(decode_png(&png[..cut]), Err(QrImageError::NotPng(_))),
                "cut at {cut}"
            );
        }
        let mut out = Vec::new();
        let mut enc = png::Encoder::new(&mut out, 200, 200);
        enc.set_color(png::ColorType::Grayscale);
        enc.set_depth(png::BitDepth::Eight);
        let mut w = enc.write_header().unwrap();
        w.write_image_data(&[255u8; 200 * 200]).unwrap();
        w.finish().unwrap();
        assert!(matches!(decode_png(&out), Err(QrImageError::NoCode)));
    }

    #[test]
    fn two_codes_side_by_side_are_refused() {
        let one = qr_png(CODE, 3).unwrap();
        let mut dec = png::Decoder::new(std::io::Cursor::new(&one[..]));
        dec.set_transformations(png::Transformations::EXPAND);
        let mut r = dec.read_info().unwrap();
        let mut buf = vec![0; r.output_buffer_size().unwrap()];
        let info = r.next_frame(&mut buf).unwrap();
        let (w, h) = (info.width as usize, info.height as usize);
        let mut pixels = Vec::with_capacity(2 * w * h);
        for y in 0..h {
            pixels.extend_from_slice(&buf[y * w..(y + 1) * w]);
            pixels.extend_from_slice(&buf[y * w..(y + 1) * w]);
        }
        let mut out = Vec::new();
        let mut enc = png::Encoder::new(&mut out, 2 * w as u32, h as u32);
        enc.set_color(png::ColorType::Grayscale);
        enc.set_depth(png::BitDepth::Eight);
        let mut wr = enc.write_header().unwrap();
        wr.write_image_data(&pixels).unwrap();
        wr.finish().unwrap();
        assert!(matches!(
            decode_png(&out),
            Err(QrImageError::SeveralCodes(2))
        ));
    }

    #[test]
    fn oversized_image_is_refused_before_decoding() {
        // A header claiming 8192x8192 pixels: refused from the header, no 64 MiB buffer.
        let mut out = Vec::new();
        let mut enc = png::Encoder::new(&mut out, 8192, 8192);
        enc.set_color(png::ColorType::Grayscale);
        enc.set_depth(png::BitDepth::One);
        let mut w = enc.write_header().unwrap();
        w.write_image_data(&vec![0xffu8; 8192 / 8 * 8192]).unwrap();
        w.finish().unwrap();
        assert!(matches!(
            decode_png(&out),
            Err(QrImageError::TooLarge {
                width: 8192,
                height: 8192
            })
        ));
    }
}
