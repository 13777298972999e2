//! Sessions of homes opened with a household code, and of staff logged in with their
//! password (`Sessions<StaffMember>`, shorter idle time): a random id in an `HttpOnly`,
//! `SameSite=Strict` cookie, a CSRF token per session, bounded in number, ending after an
//! idle time, a lifetime, a "log out", or when the home's code is revoked or reissued (the
//! session keeps the code's hash and the node is asked again on every request).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Sessions held at once: every household of the largest community on one phone each would
/// need more, but not all at the same moment; past it the least recently used one ends.
pub(crate) const SESSIONS_MAX: usize = 20_000;
/// A phone left alone this long logs out.
pub(crate) const SESSION_IDLE: Duration = Duration::from_secs(30 * 60);
/// A session ends this long after it opened, however busy.
pub(crate) const SESSION_LIFETIME: Duration = Duration::from_secs(12 * 3600);

/// The session cookie, the login form's token cookie and the language cookie.
pub(crate) const SESSION_COOKIE: &str = "mj_s";
pub(crate) const LOGIN_COOKIE: &str = "mj_pre";
pub(crate) const LANG_COOKIE: &str = "mj_lang";

/// Staff sessions held at once: an office's PCs, many times over.
pub(crate) const STAFF_SESSIONS_MAX: usize = 1_000;
/// A workstation left alone this long logs its clerk out: shorter than a home's, as an
/// office PC is shared and a clerk sees other people's records.
pub(crate) const STAFF_SESSION_IDLE: Duration = Duration::from_secs(15 * 60);
/// A staff session ends after a working day, however busy.
pub(crate) const STAFF_SESSION_LIFETIME: Duration = Duration::from_secs(10 * 3600);
/// The staff session cookie and the staff login form's token cookie.
pub(crate) const STAFF_COOKIE: &str = "mj_staff";
pub(crate) const STAFF_LOGIN_COOKIE: &str = "mj_spre";

/// A session's who (a home's code hash, a staff member), its CSRF token and its times.
#[derive(Clone, Debug)]
pub(crate) struct Session<T> {
    pub(crate) who: T,
    pub(crate) csrf: String,
    opened: Instant,
    seen: Instant,
}

/// The sessions of one kind (homes, staff), each kind with its own bounds.
pub(crate) struct Sessions<T> {
    map: Mutex<HashMap<String, Session<T>>>,
    idle: Duration,
    lifetime: Duration,
    max: usize,
}

impl Default for Sessions<[u8; 32]> {
    /// The homes' sessions.
    fn default() -> Self {
        Sessions::new(SESSION_IDLE, SESSION_LIFETIME, SESSIONS_MAX)
    }
}

impl<T: Clone> Sessions<T> {
    pub(crate) fn new(idle: Duration, lifetime: Duration, max: usize) -> Sessions<T> {
        Sessions {
            map: Mutex::new(HashMap::new()),
            idle,
            lifetime,
            max,
        }
    }

    fn live(&self, s: &Session<T>, now: Instant) -> bool {
        live(s.opened, s.seen, self.idle, self.lifetime, now)
    }

    /// Opens a session; returns its id.
    pub(crate) fn open(&self, who: T, now: Instant) -> String {
        let id = crate::security::token();
        let mut map = self.map.lock().expect("sessions lock");
        if map.len() >= self.max {
            map.retain(|_, s| live(s.opened, s.seen, self.idle, self.lifetime, now));
        }
        if map.len() >= self.max
            && let Some(oldest) = map
                .iter()
                .min_by_key(|(_, s)| s.seen)
                .map(|(k, _)| k.clone())
        {
            map.remove(&oldest);
        }
        map.insert(
            id.clone(),
            Session {
                who,
                csrf: crate::security::token(),
                opened: now,
                seen: now,
            },
        );
        assert!(map.len() <= self.max);
        id
    }

    /// The live session of an id (and it counts as seen now).
    pub(crate) fn get(&self, id: &str, now: Instant) -> Option<Session<T>> {
        let mut map = self.map.lock().expect("sessions lock");
        let s = map.get(id)?;
        if !self.live(s, now) {
            map.remove(id);
            return None;
        }
        let s = map.get_mut(id)?;
        s.seen = now;
        Some(s.clone())
    }

    /// The live session of an id, without counting as seen: a live stream is not the
    /// resident using the page, so an open page still goes idle.
    pub(crate) fn peek(&self, id: &str, now: Instant) -> Option<Session<T>> {
        let map = self.map.lock().expect("sessions lock");
        map.get(id).filter(|s| self.live(s, now)).cloned()
    }

    pub(crate) fn end(&self, id: &str) {
        self.map.lock().expect("sessions lock").remove(id);
    }
}

fn live(opened: Instant, seen: Instant, idle: Duration, lifetime: Duration, now: Instant) -> bool {
    now.saturating_duration_since(seen) < idle && now.saturating_duration_since(opened) < lifetime
}

/// A cookie's value from a request's `Cookie` headers.
pub(crate) fn cookie<'h>(headers: &'h axum::http::HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// A `Set-Cookie` value: `HttpOnly` unless it is the language (harmless), always
/// `SameSite=Strict` and `Path=/`, `Secure` under HTTPS; `max_age` 0 deletes it.
pub(crate) fn set_cookie(name: &str, value: &str, max_age: Option<u64>, secure: bool) -> String {
    let mut c = format!("{name}={value}; Path=/; SameSite=Strict");
    if name != LANG_COOKIE {
        c.push_str("; HttpOnly");
    }
    if let Some(age) = max_age {
        c.push_str(&format!("; Max-Age={age}"));
    }
    if secure {
        c.push_str("; Secure");
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_end_idle_after_their_lifetime_and_on_logout() {
        let s: Sessions<[u8; 32]> = Sessions::default();
        let t0 = Instant::now();
        let id = s.open([1; 32], t0);
        assert!(s.get(&id, t0 + Duration::from_secs(60)).is_some());
        assert!(
            s.get(&id, t0 + Duration::from_secs(60) + SESSION_IDLE)
                .is_none()
        );
        let id = s.open([1; 32], t0);
        let mut t = t0;
        while t < t0 + SESSION_LIFETIME - Duration::from_secs(600) {
            t += Duration::from_secs(600);
            assert!(s.get(&id, t).is_some());
        }
        assert!(s.get(&id, t0 + SESSION_LIFETIME).is_none());
        let id = s.open([1; 32], t0);
        s.end(&id);
        assert!(s.get(&id, t0).is_none());
    }

    #[test]
    fn cookies_are_read_by_name() {
        let mut h = axum::http::HeaderMap::new();
        h.insert("cookie", "a=1; mj_s=abc; mj_lang=en".parse().unwrap());
        assert_eq!(cookie(&h, "mj_s"), Some("abc"));
        assert_eq!(cookie(&h, "mj_lang"), Some("en"));
        assert_eq!(cookie(&h, "mj"), None);
        assert!(set_cookie(SESSION_COOKIE, "x", None, false).contains("HttpOnly"));
        assert!(set_cookie(SESSION_COOKIE, "x", None, true).ends_with("Secure"));
    }
}
