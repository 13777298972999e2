//! Rate limits on household-code attempts, per source address and per code, in a bounded
//! table in memory (a restart forgets them; 80-bit codes do not need more).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The window over which attempts are counted.
pub(crate) const WINDOW: Duration = Duration::from_secs(10 * 60);
/// Wrong codes from one address in a window: a resident mistyping a few times gets in.
pub(crate) const FAILURES_PER_SOURCE_MAX: u32 = 10;
/// Attempts with one code in a window, right or wrong: a family's phones, not a botnet.
pub(crate) const ATTEMPTS_PER_CODE_MAX: u32 = 20;
/// Entries held; past it (after dropping those out of their window) attempts are refused
/// rather than forgotten.
pub(crate) const ENTRIES_MAX: usize = 16_384;

#[derive(Clone, PartialEq, Eq, Hash)]
enum Key {
    Source(IpAddr),
    Code(String),
}

#[derive(Default)]
pub(crate) struct Limits {
    map: Mutex<HashMap<Key, (Instant, u32)>>,
}

/// Refused: try again after this long.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Limited(pub(crate) Duration);

impl Limits {
    /// Whether `source` may try `code` (normalised) now; counts the attempt against the code.
    pub(crate) fn attempt(&self, source: IpAddr, code: &str, now: Instant) -> Result<(), Limited> {
        let mut map = self.map.lock().expect("limits lock");
        if map.len() + 2 > ENTRIES_MAX {
            map.retain(|_, (start, _)| now.saturating_duration_since(*start) < WINDOW);
            if map.len() + 2 > ENTRIES_MAX {
                tracing::warn!(
                    entries = map.len(),
                    "rate-limit table full: refusing attempts"
                );
                return Err(Limited(WINDOW));
            }
        }
        let over = |map: &mut HashMap<Key, (Instant, u32)>, key: Key, max: u32| {
            let (start, n) = current(map, key, now);
            (n >= max).then(|| Limited(WINDOW.saturating_sub(now.saturating_duration_since(start))))
        };
        if let Some(l) = over(&mut map, Key::Source(source), FAILURES_PER_SOURCE_MAX) {
            return Err(l);
        }
        if let Some(l) = over(&mut map, Key::Code(code.to_string()), ATTEMPTS_PER_CODE_MAX) {
            return Err(l);
        }
        bump(&mut map, Key::Code(code.to_string()), now);
        Ok(())
    }

    /// Counts a wrong code against its source.
    pub(crate) fn failed(&self, source: IpAddr, now: Instant) {
        let mut map = self.map.lock().expect("limits lock");
        bump(&mut map, Key::Source(source), now);
    }
}

fn current(map: &mut HashMap<Key, (Instant, u32)>, key: Key, now: Instant) -> (Instant, u32) {
    let e = map.entry(key).or_insert((now, 0));
    if now.saturating_duration_since(e.0) >= WINDOW {
        *e = (now, 0);
    }
    *e
}

fn bump(map: &mut HashMap<Key, (Instant, u32)>, key: Key, now: Instant) {
    let e = map.entry(key).or_insert((now, 0));
    if now.saturating_duration_since(e.0) >= WINDOW {
        *e = (now, 0);
    }
    e.1 = e.1.saturating_add(1);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrong_codes_from_one_source_are_limited_until_the_window_passes() {
        let l = Limits::default();
        let ip: IpAddr = "192.168.1.9".parse().unwrap();
        let t0 = Instant::now();
        for i in 0..FAILURES_PER_SOURCE_MAX {
            assert!(l.attempt(ip, &format!("C{i}"), t0).is_ok());
            l.failed(ip, t0);
        }
        assert!(l.attempt(ip, "CX", t0).is_err());
        let other: IpAddr = "192.168.1.10".parse().unwrap();
        assert!(l.attempt(other, "CX", t0).is_ok());
        assert!(l.attempt(ip, "CX", t0 + WINDOW).is_ok());
    }

    #[test]
    fn one_code_is_limited_across_sources() {
        let l = Limits::default();
        let t0 = Instant::now();
        for i in 0..ATTEMPTS_PER_CODE_MAX {
            let ip = IpAddr::from([10, 0, (i / 256) as u8, (i % 256) as u8]);
            assert!(l.attempt(ip, "SAME", t0).is_ok());
        }
        assert!(l.attempt(IpAddr::from([10, 1, 0, 0]), "SAME", t0).is_err());
    }
}
