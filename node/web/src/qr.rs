//! The QR images the pages show, drawn once per code text and kept.
//!
//! Drawing a code's QR is the most expensive thing a page does: the encoder scores all eight
//! mask patterns of a version 10 symbol, about 1 ms of CPU here, half the CPU of a whole
//! declaration (`menjin bench web`, profiled). A code text does not change until the person
//! declares again, and the same code is drawn on the result page, on every view of "my
//! declarations" and on every live update of it, so the SVG is kept by its text.
//!
//! Bounded: at most [`CACHED_MAX`] images (about 4 KB each), the oldest forgotten first. The
//! lock is held only to look up and to insert, never while drawing.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

/// Images kept at once: about 4 MB, the codes of the homes using the pages at a busy hour.
pub(crate) const CACHED_MAX: usize = 1_024;

/// Rendered SVGs by code text.
#[derive(Default)]
pub(crate) struct QrCache {
    inner: Mutex<Kept>,
}

#[derive(Default)]
struct Kept {
    by_text: HashMap<Arc<str>, Arc<str>>,
    /// Insertion order, oldest first: what is forgotten when full.
    order: VecDeque<Arc<str>>,
}

impl QrCache {
    /// The SVG of `text`'s QR; `None` if the text cannot be drawn (longer than a QR holds).
    pub(crate) fn svg(&self, text: &str) -> Option<Arc<str>> {
        if let Some(svg) = self.inner.lock().expect("qr lock").by_text.get(text) {
            return Some(svg.clone());
        }
        let svg: Arc<str> = menjin_render::qr::qr_svg(text).ok()?.into();
        let mut kept = self.inner.lock().expect("qr lock");
        if !kept.by_text.contains_key(text) {
            if kept.order.len() >= CACHED_MAX
                && let Some(old) = kept.order.pop_front()
            {
                kept.by_text.remove(&old);
            }
            let key: Arc<str> = text.into();
            kept.order.push_back(key.clone());
            kept.by_text.insert(key, svg.clone());
        }
        Some(svg)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.inner.lock().expect("qr lock").by_text.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_text_is_drawn_once_and_the_cache_stays_bounded() {
        let cache = QrCache::default();
        let a = cache.svg("MJ:ABC").expect("drawn");
        let again = cache.svg("MJ:ABC").expect("kept");
        assert!(Arc::ptr_eq(&a, &again), "the second look is the kept image");
        assert_eq!(
            &*a,
            menjin_render::qr::qr_svg("MJ:ABC").expect("drawn").as_str()
        );
        for i in 0..CACHED_MAX + 10 {
            cache.svg(&format!("MJ:{i}")).expect("drawn");
        }
        assert_eq!(cache.len(), CACHED_MAX);
        let redrawn = cache.svg("MJ:ABC").expect("drawn again");
        assert!(!Arc::ptr_eq(&a, &redrawn), "the oldest was forgotten");
        assert_eq!(a, redrawn);
    }

    #[test]
    fn text_too_long_for_a_qr_is_none_and_not_kept() {
        let cache = QrCache::default();
        assert!(cache.svg(&"9".repeat(10_000)).is_none());
        assert_eq!(cache.len(), 0);
    }
}
