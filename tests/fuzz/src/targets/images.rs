//! Images: a QR code scanned from a PNG file, a photo uploaded for a printed pass.

use menjin_render::photo::{PHOTO_SIDE_PX_MAX, PHOTO_SIDE_PX_MIN, check_photo};
use menjin_render::{qr, qrimage};

/// `qrimage::decode_png`; a text it reads is drawn again and read back the same.
pub fn qr_png(data: &[u8]) {
    let Ok(text) = qrimage::decode_png(data) else {
        return;
    };
    if let Ok(png) = qr::qr_png(&text, 4) {
        assert_eq!(
            qrimage::decode_png(&png).ok().as_deref(),
            Some(text.as_str()),
            "QR round trip"
        );
    }
}

/// `photo::check_photo`; what it accepts is within its limits.
pub fn photo(data: &[u8]) {
    if let Ok(p) = check_photo(data) {
        let sides = PHOTO_SIDE_PX_MIN..=PHOTO_SIDE_PX_MAX;
        assert!(sides.contains(&p.width) && sides.contains(&p.height));
    }
}
