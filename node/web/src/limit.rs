//! Rate limits on household-code attempts, per source address and per code, and on staff
//! logins, wrong passwords per source address and per name, in a bounded table in memory (a
//! restart forgets them; 80-bit codes and argon2-hashed passwords do not need more).

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

/// Wrong staff logins from one address in a window.
pub(crate) const STAFF_FAILURES_PER_SOURCE_MAX: u32 = 10;
/// Wrong passwords for one name in a window, from anywhere: guessing one clerk's password
/// from many addresses. (Someone can lock a name out for a window this way: the head can
/// still log in, and a LAN is a small place to hide in.)
pub(crate) const STAFF_FAILURES_PER_NAME_MAX: u32 = 5;
/// Characters of a typed name the table keeps (names are at most 32).
const STAFF_NAME_KEY_CHARS: usize = 64;

#[derive(Clone, PartialEq, Eq, Hash)]
enum Key {
    Source(IpAddr),
    Code(String),
    StaffSource(IpAddr),
    StaffName(String),
}

fn staff_name_key(name: &str) -> Key {
    Key::StaffName(name.chars().take(STAFF_NAME_KEY_CHARS).collect())
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

    /// Whether `source` may try to log in as `name` now (too many wrong passwords from the
    /// source, or for the name, in the window: refused, whatever the password).
    pub(crate) fn staff_attempt(
        &self,
        source: IpAddr,
        name: &str,
        now: Instant,
    ) -> Result<(), Limited> {
        let mut map = self.map.lock().expect("limits lock");
        for (key, max) in [
            (Key::StaffSource(source), STAFF_FAILURES_PER_SOURCE_MAX),
            (staff_name_key(name), STAFF_FAILURES_PER_NAME_MAX),
        ] {
            let (start, n) = current(&mut map, key, now);
            if n >= max {
                return Err(Limited(
                    WINDOW.saturating_sub(now.saturating_duration_since(start)),
                ));
            }
        }
        Ok(())
    }

    /// Counts a wrong staff login against its source and the name tried. Past
    /// [`ENTRIES_MAX`] entries, old windows are dropped first; a full table counts nothing
    /// new (and `staff_attempt` refuses everything until windows pass).
    pub(crate) fn staff_failed(&self, source: IpAddr, name: &str, now: Instant) {
        let mut map = self.map.lock().expect("limits lock");
        if map.len() + 2 > ENTRIES_MAX {
            map.retain(|_, (start, _)| now.saturating_duration_since(*start) < WINDOW);
        }
        if map.len() + 2 > ENTRIES_MAX {
            tracing::warn!(entries = map.len(), "rate-limit table full");
            return;
        }
        bump(&mut map, Key::StaffSource(source), now);
        bump(&mut map, staff_name_key(name), now);
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
    fn wrong_staff_passwords_are_limited_per_source_and_per_name() {
        let l = Limits::default();
        let t0 = Instant::now();
        let ip: IpAddr = "192.168.1.9".parse().unwrap();
        for _ in 0..STAFF_FAILURES_PER_NAME_MAX {
            assert!(l.staff_attempt(ip, "李文", t0).is_ok());
            l.staff_failed(ip, "李文", t0);
        }
        // The name, from anywhere; other names from this source still may.
        let other: IpAddr = "192.168.1.10".parse().unwrap();
        assert!(l.staff_attempt(other, "李文", t0).is_err());
        assert!(l.staff_attempt(ip, "王五", t0).is_ok());
        for i in STAFF_FAILURES_PER_NAME_MAX..STAFF_FAILURES_PER_SOURCE_MAX {
            l.staff_failed(ip, &format!("n{i}"), t0);
        }
        assert!(l.staff_attempt(ip, "王五", t0).is_err());
        assert!(l.staff_attempt(other, "王五", t0).is_ok());
        assert!(l.staff_attempt(ip, "李文", t0 + WINDOW).is_ok());
        // Household codes are counted apart.
        assert!(l.attempt(ip, "CODE", t0).is_ok());
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
