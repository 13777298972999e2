//! Checks a photo for a printed pass before it is stored: JPEG or PNG, bounded size and
//! sensible dimensions.
//!
//! Only the headers are read (no decoding): this is a gatekeeper against wrong files (a PDF,
//! a HEIC straight from a phone, a screenshot of a text), not a validator of every pixel. The
//! browser that prints the pass decodes the image, and it only ever gets one of two types.

use std::fmt;

use menjin_proto::wire::PHOTO_LEN_MAX;

/// A passport-style photo narrower than this is too coarse to recognize a face at the gate.
pub const PHOTO_SIDE_PX_MIN: u32 = 64;
/// Larger than any phone camera's output after the size limit; beyond it is a wrong file (or a
/// header claiming huge dimensions to make the printing browser allocate gigabytes).
pub const PHOTO_SIDE_PX_MAX: u32 = 6000;

const PNG_SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";

/// An accepted photo.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Photo {
    /// `image/jpeg` or `image/png`.
    pub mime: &'static str,
    /// In pixels, within [`PHOTO_SIDE_PX_MIN`] to [`PHOTO_SIDE_PX_MAX`].
    pub width: u32,
    /// In pixels, within [`PHOTO_SIDE_PX_MIN`] to [`PHOTO_SIDE_PX_MAX`].
    pub height: u32,
}

/// Why a photo was refused, worded for the staff member who uploaded it: nothing is stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PhotoError {
    /// No bytes at all (an empty upload).
    #[error("photo is empty")]
    Empty,
    /// Over [`PHOTO_LEN_MAX`]: ask for a smaller export from the camera or phone.
    #[error("photo is {}, the limit is {}", Size(*.len, *.max), Size(*.max, *.len))]
    TooLarge {
        /// Bytes uploaded.
        len: usize,
        /// The limit, in bytes.
        max: usize,
    },
    /// Another kind of file (GIF, WebP, HEIC, a PDF, text, ...).
    #[error("photo is not a JPEG or PNG image (looks like {looks_like})")]
    NotJpegOrPng {
        /// What the bytes look like ("GIF", "text", ...).
        looks_like: &'static str,
    },
    /// Starts like a JPEG or PNG but its header does not parse (a cut-off upload?).
    #[error("photo looks like a {format} but its header is truncated or corrupt")]
    Corrupt {
        /// `JPEG` or `PNG`.
        format: &'static str,
    },
    /// A side outside [`PHOTO_SIDE_PX_MIN`] to [`PHOTO_SIDE_PX_MAX`] pixels.
    #[error(
        "photo is {width}×{height} px, each side must be between \
         {PHOTO_SIDE_PX_MIN} and {PHOTO_SIDE_PX_MAX} px"
    )]
    Dimensions {
        /// In pixels.
        width: usize,
        /// In pixels.
        height: usize,
    },
}

/// Checks that `bytes` are a JPEG or PNG photo of acceptable size and dimensions.
///
/// # Errors
///
/// A [`PhotoError`] saying what is wrong, worded for the staff member who uploaded it.
pub fn check_photo(bytes: &[u8]) -> Result<Photo, PhotoError> {
    if bytes.is_empty() {
        return Err(PhotoError::Empty);
    }
    if bytes.len() > PHOTO_LEN_MAX {
        return Err(PhotoError::TooLarge {
            len: bytes.len(),
            max: PHOTO_LEN_MAX,
        });
    }

    let (mime, format) = match imagesize::image_type(bytes) {
        Ok(imagesize::ImageType::Jpeg) => ("image/jpeg", "JPEG"),
        Ok(imagesize::ImageType::Png) => ("image/png", "PNG"),
        Ok(other) => {
            return Err(PhotoError::NotJpegOrPng {
                looks_like: image_type_name(other),
            });
        }
        // Fewer than the 12 bytes imagesize needs to tell formats apart, or unknown magic.
        Err(_) => return Err(sniff_failure(bytes)),
    };

    // imagesize recognizes PNG by its first 4 bytes only; a real PNG has the full 8-byte
    // signature followed by the IHDR chunk, whose width and height imagesize then reads.
    if mime == "image/png"
        && !(bytes.starts_with(PNG_SIGNATURE) && bytes.get(12..16) == Some(b"IHDR"))
    {
        return Err(PhotoError::Corrupt { format });
    }

    let size = imagesize::blob_size(bytes).map_err(|_| PhotoError::Corrupt { format })?;
    let (width, height) = match (side_ok(size.width), side_ok(size.height)) {
        (Some(width), Some(height)) => (width, height),
        _ => {
            return Err(PhotoError::Dimensions {
                width: size.width,
                height: size.height,
            });
        }
    };
    Ok(Photo {
        mime,
        width,
        height,
    })
}

fn side_ok(px: usize) -> Option<u32> {
    u32::try_from(px)
        .ok()
        .filter(|px| (PHOTO_SIDE_PX_MIN..=PHOTO_SIDE_PX_MAX).contains(px))
}

/// Explains bytes that imagesize could not classify.
fn sniff_failure(bytes: &[u8]) -> PhotoError {
    if bytes.starts_with(b"\xFF\xD8") {
        return PhotoError::Corrupt { format: "JPEG" };
    }
    // A prefix of the signature: a PNG cut off inside its header.
    let n = bytes.len().min(PNG_SIGNATURE.len());
    if bytes.len() >= 2 && bytes[..n] == PNG_SIGNATURE[..n] {
        return PhotoError::Corrupt { format: "PNG" };
    }
    let looks_like = if bytes.starts_with(b"%PDF") {
        "a PDF document"
    } else if bytes.starts_with(b"PK\x03\x04") {
        "a ZIP archive or office document"
    } else if looks_like_text(bytes) {
        "text"
    } else {
        "an unknown format"
    };
    PhotoError::NotJpegOrPng { looks_like }
}

/// Valid UTF-8 (allowing a character cut off at the end of the sample) without control
/// characters other than whitespace.
fn looks_like_text(bytes: &[u8]) -> bool {
    let sample = &bytes[..bytes.len().min(512)];
    let valid = match std::str::from_utf8(sample) {
        Ok(text) => text,
        // Up to 3 bytes of a multi-byte character may be cut off by the sample window.
        Err(e) if e.error_len().is_none() && sample.len() - e.valid_up_to() < 4 => {
            // The prefix up to valid_up_to is valid UTF-8 by definition.
            std::str::from_utf8(&sample[..e.valid_up_to()]).unwrap_or_default()
        }
        Err(_) => return false,
    };
    !valid.is_empty()
        && valid
            .chars()
            .all(|c| !c.is_control() || matches!(c, '\n' | '\r' | '\t'))
}

fn image_type_name(t: imagesize::ImageType) -> &'static str {
    use imagesize::ImageType as T;
    match t {
        T::Gif => "a GIF image",
        T::Webp => "a WebP image",
        // What iPhones save by default: the most likely wrong upload.
        T::Heif(_) => "a HEIF/HEIC image; export it as JPEG",
        T::Bmp => "a BMP image",
        T::Tiff => "a TIFF image",
        T::Jxl => "a JPEG XL image",
        T::Psd => "a Photoshop document",
        T::Ico => "an icon file",
        _ => "another image format",
    }
}

/// A byte count shown as megabytes with one decimal, or exactly when the other size it is
/// compared with would round to the same figure ("1.0 MB, the limit is 1.0 MB" helps nobody).
struct Size(usize, usize);

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Tenths of a MiB; the limit itself is 1 MiB, which staff know as "1 MB".
        let tenths = |n: usize| (n as f64 / (1024.0 * 1024.0) * 10.0).round() as u64;
        let Size(n, other) = *self;
        if tenths(n) == tenths(other) {
            write!(f, "{n} bytes")
        } else {
            let t = tenths(n);
            write!(f, "{}.{} MB", t / 10, t % 10)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png_bytes(width: u32, height: u32) -> Vec<u8> {
        let mut out = Vec::new();
        let mut encoder = png::Encoder::new(&mut out, width, height);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header().expect("png header");
        let pixels = vec![0x80; (width * height * 3) as usize];
        writer.write_image_data(&pixels).expect("png data");
        writer.finish().expect("png finish");
        out
    }

    /// SOI, an APP0/JFIF segment and a baseline SOF0 frame header: all imagesize reads.
    fn jpeg_header(width: u16, height: u16) -> Vec<u8> {
        let mut b = vec![0xFF, 0xD8]; // SOI
        b.extend_from_slice(&[0xFF, 0xE0, 0x00, 0x10]); // APP0, length 16
        b.extend_from_slice(b"JFIF\0");
        b.extend_from_slice(&[0x01, 0x01, 0x00, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00]);
        b.extend_from_slice(&[0xFF, 0xC0, 0x00, 0x11, 0x08]); // SOF0, length 17, 8-bit
        b.extend_from_slice(&height.to_be_bytes());
        b.extend_from_slice(&width.to_be_bytes());
        b.extend_from_slice(&[0x03, 0x01, 0x22, 0x00, 0x02, 0x11, 0x01, 0x03, 0x11, 0x01]);
        b.extend_from_slice(&[0xFF, 0xD9]); // EOI
        b
    }

    #[test]
    fn small_png_is_accepted() {
        let photo = check_photo(&png_bytes(120, 160)).expect("accepted");
        assert_eq!(
            photo,
            Photo {
                mime: "image/png",
                width: 120,
                height: 160
            }
        );
    }

    #[test]
    fn minimal_jpeg_header_is_accepted() {
        let photo = check_photo(&jpeg_header(358, 441)).expect("accepted");
        assert_eq!(
            photo,
            Photo {
                mime: "image/jpeg",
                width: 358,
                height: 441
            }
        );
    }

    #[test]
    fn empty_photo_is_refused() {
        assert_eq!(check_photo(&[]), Err(PhotoError::Empty));
        assert_eq!(PhotoError::Empty.to_string(), "photo is empty");
    }

    #[test]
    fn oversized_photo_is_refused_with_sizes_in_mb() {
        let mut bytes = png_bytes(100, 100);
        bytes.resize(2_411_725, 0); // 2.3 MiB
        let err = check_photo(&bytes).unwrap_err();
        assert_eq!(err.to_string(), "photo is 2.3 MB, the limit is 1.0 MB");

        let mut bytes = png_bytes(100, 100);
        bytes.resize(PHOTO_LEN_MAX + 1, 0);
        let err = check_photo(&bytes).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "photo is {} bytes, the limit is {PHOTO_LEN_MAX} bytes",
                PHOTO_LEN_MAX + 1
            )
        );

        let mut bytes = png_bytes(100, 100);
        bytes.resize(PHOTO_LEN_MAX, 0);
        assert!(check_photo(&bytes).is_ok(), "exactly the limit is fine");
    }

    #[test]
    fn text_file_is_refused_as_text() {
        let err = check_photo("姓名,证件号码\n张三,110101199003077777\n".as_bytes()).unwrap_err();
        assert_eq!(err, PhotoError::NotJpegOrPng { looks_like: "text" });
        assert_eq!(
            err.to_string(),
            "photo is not a JPEG or PNG image (looks like text)"
        );
        // Shorter than imagesize's 12-byte header window.
        assert_eq!(
            check_photo(b"hi"),
            Err(PhotoError::NotJpegOrPng { looks_like: "text" })
        );
    }

    #[test]
    fn other_formats_are_named() {
        let gif = b"GIF89a\x80\x00\x80\x00\x00\x00\x00\x00\x00\x00";
        let err = check_photo(gif).unwrap_err();
        assert_eq!(
            err.to_string(),
            "photo is not a JPEG or PNG image (looks like a GIF image)"
        );
        let pdf = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj";
        assert_eq!(
            check_photo(pdf),
            Err(PhotoError::NotJpegOrPng {
                looks_like: "a PDF document"
            })
        );
    }

    #[test]
    fn truncated_png_header_is_refused() {
        let png = png_bytes(100, 100);
        for cut in [2, 8, 11, 12, 16, 20, 23] {
            assert_eq!(
                check_photo(&png[..cut]),
                Err(PhotoError::Corrupt { format: "PNG" }),
                "cut at {cut}"
            );
        }
        // The 4 bytes imagesize looks at, followed by garbage instead of the signature.
        let mut fake = b"\x89PNG".to_vec();
        fake.extend_from_slice(&[0x41; 40]);
        assert_eq!(
            check_photo(&fake),
            Err(PhotoError::Corrupt { format: "PNG" })
        );
    }

    #[test]
    fn truncated_jpeg_header_is_refused() {
        let jpeg = jpeg_header(300, 400);
        for cut in [2, 3, 12, 20, 25] {
            assert_eq!(
                check_photo(&jpeg[..cut]),
                Err(PhotoError::Corrupt { format: "JPEG" }),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn dimensions_out_of_range_are_refused() {
        for (w, h) in [(63, 100), (100, 63), (6001, 100), (100, 6001)] {
            let err = check_photo(&jpeg_header(w, h)).unwrap_err();
            assert_eq!(
                err,
                PhotoError::Dimensions {
                    width: w.into(),
                    height: h.into()
                }
            );
        }
        assert_eq!(
            check_photo(&png_bytes(32, 200)).unwrap_err().to_string(),
            "photo is 32×200 px, each side must be between 64 and 6000 px"
        );
        // A PNG header may claim up to 2^32 - 1 px a side.
        let mut huge = png_bytes(100, 100);
        huge[16..20].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(
            check_photo(&huge),
            Err(PhotoError::Dimensions { .. })
        ));
        assert!(check_photo(&jpeg_header(64, 6000)).is_ok());
    }

    #[test]
    fn random_bytes_are_refused() {
        // Fixed bytes that start like nothing in particular.
        let noise: Vec<u8> = (0u32..4096)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        assert!(matches!(
            check_photo(&noise),
            Err(PhotoError::NotJpegOrPng { .. })
        ));
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..2048)) {
            // Whatever comes back, it must come back.
            let _ = check_photo(&bytes);
        }

        #[test]
        fn arbitrary_bytes_after_a_jpeg_or_png_magic_never_panic(
            png in proptest::bool::ANY,
            rest in proptest::collection::vec(proptest::num::u8::ANY, 0..512),
        ) {
            let mut bytes = if png { PNG_SIGNATURE.to_vec() } else { vec![0xFF, 0xD8, 0xFF] };
            bytes.extend_from_slice(&rest);
            if let Ok(photo) = check_photo(&bytes) {
                proptest::prop_assert!((PHOTO_SIDE_PX_MIN..=PHOTO_SIDE_PX_MAX).contains(&photo.width));
                proptest::prop_assert!((PHOTO_SIDE_PX_MIN..=PHOTO_SIDE_PX_MAX).contains(&photo.height));
            }
        }
    }
}
