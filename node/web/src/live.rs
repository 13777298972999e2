//! The live part of "my declarations": a server-sent event stream (`GET /my/live`) that
//! sends the home's members again (the `members` partial, event `members`) whenever the node
//! says something changed (`Node::changes`: a roster commit, a household code issued or
//! revoked, the lockdown started or lifted) and what the page would show differs from what
//! was last sent. When the home's code is revoked or reissued, or the session ends, it sends
//! a last `members` saying so and `ended` (the page closes the stream, `sse-close`).
//!
//! Bounded: `STREAMS_PER_SESSION_MAX` per session, `STREAMS_MAX` in all (past either: 429
//! and the page keeps what it shows); changes within `COALESCE` go out as one; a comment
//! every `KEEP_ALIVE` keeps idle connections through NATs and tells a dead one; every stream
//! ends when the server stops. Without the stream (an old browser, a proxy) the page is the
//! one served on load.

use std::collections::HashMap;
use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use askama::Template;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};

use crate::App;
use crate::i18n::Text;
use crate::session::{SESSION_COOKIE, cookie};
use crate::views::{Page, lang, mine};

/// Live streams open at once in all: each holds a connection and a task; a community's
/// phones showing their page at the same moment stay well under it.
pub(crate) const STREAMS_MAX: usize = 2_000;
/// Live streams per session: a few tabs of one phone.
pub(crate) const STREAMS_PER_SESSION_MAX: u32 = 4;
/// An idle stream sends a comment this often.
const KEEP_ALIVE: Duration = Duration::from_secs(20);
/// After a change, wait this long for more before looking (a burst of commits is one send).
const COALESCE: Duration = Duration::from_millis(200);
/// Look again at least this often without a change: a session that went idle or a code that
/// expired shows without one.
const RECHECK: Duration = Duration::from_secs(60);

/// The open streams, counted per session and in all.
#[derive(Default)]
pub(crate) struct Streams {
    open: Mutex<(usize, HashMap<String, u32>)>,
}

/// One open stream's place; given back when the stream is dropped.
struct Slot {
    app: App,
    session: String,
}

impl Streams {
    fn enter(&self, session: &str) -> bool {
        let mut open = self.open.lock().expect("streams lock");
        let (total, per) = &mut *open;
        let n = per.get(session).copied().unwrap_or(0);
        if *total >= STREAMS_MAX || n >= STREAMS_PER_SESSION_MAX {
            return false;
        }
        *total += 1;
        per.insert(session.to_string(), n + 1);
        true
    }

    fn leave(&self, session: &str) {
        let mut open = self.open.lock().expect("streams lock");
        let (total, per) = &mut *open;
        *total = total.saturating_sub(1);
        if let Some(n) = per.get_mut(session) {
            *n -= 1;
            if *n == 0 {
                per.remove(session);
            }
        }
    }

    /// Streams open in all (for tests).
    #[cfg(test)]
    fn total(&self) -> usize {
        self.open.lock().expect("streams lock").0
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.app.live.leave(&self.session);
    }
}

struct Stream {
    slot: Slot,
    code_hash: [u8; 32],
    t: &'static Text,
    changes: tokio::sync::watch::Receiver<u64>,
    stopping: tokio::sync::watch::Receiver<bool>,
    /// What the partial last sent showed, to draw and send only what differs.
    last: Option<mine::HomeState>,
    queued: VecDeque<Event>,
    first: bool,
    done: bool,
}

/// `GET /my/live`.
pub(crate) async fn page(State(app): State<App>, headers: HeaderMap) -> Response {
    let t = lang(&headers).text();
    let Some(id) = cookie(&headers, SESSION_COOKIE) else {
        return ended_now(t);
    };
    let Some(session) = app.sessions.get(id, Instant::now()) else {
        return ended_now(t);
    };
    if !app.live.enter(id) {
        tracing::debug!("live stream refused: too many open");
        return (StatusCode::TOO_MANY_REQUESTS, "too many live pages open").into_response();
    }
    let stream = Stream {
        slot: Slot {
            app: app.clone(),
            session: id.to_string(),
        },
        code_hash: session.who,
        t,
        // Subscribed before the first look: a change after it is not missed.
        changes: app.node.changes(),
        stopping: app.stopping.clone(),
        last: None,
        queued: VecDeque::new(),
        first: true,
        done: false,
    };
    let events = futures_util::stream::unfold(stream, |mut s| async move {
        let event = s.next().await?;
        Some((Ok::<Event, Infallible>(event), s))
    });
    Sse::new(events)
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
        .into_response()
}

/// A stream for a page whose session is gone: say so and end.
fn ended_now(t: &'static Text) -> Response {
    let events = ended_events(t);
    let stream = futures_util::stream::iter(events.into_iter().map(Ok::<Event, Infallible>));
    Sse::new(stream).into_response()
}

fn ended_events(t: &'static Text) -> Vec<Event> {
    let html = mine::Members {
        p: Page {
            t,
            csrf: String::new(),
            back: "/my",
        },
        members: Vec::new(),
        now_ms: 0,
        now_text: String::new(),
        lockdown: None,
        ended: true,
    }
    .render()
    .unwrap_or_default();
    vec![
        Event::default().event("members").data(html),
        Event::default().event("ended").data("ended"),
    ]
}

impl Stream {
    /// The next event to send, waiting for a change; `None` ends the stream.
    async fn next(&mut self) -> Option<Event> {
        loop {
            if let Some(e) = self.queued.pop_front() {
                return Some(e);
            }
            if self.done || *self.stopping.borrow() {
                return None;
            }
            if !self.first {
                self.wait().await?;
            }
            self.first = false;
            match self.look() {
                Look::Same => {}
                Look::Show(html) => return Some(Event::default().event("members").data(html)),
                Look::Ended => {
                    self.done = true;
                    self.queued.extend(ended_events(self.t));
                }
            }
        }
    }

    /// Until a change (and `COALESCE` after it), or `RECHECK`; `None` when the server stops.
    async fn wait(&mut self) -> Option<()> {
        let changed = tokio::select! {
            _ = self.stopping.wait_for(|stop| *stop) => return None,
            // An error: the node is gone, nothing more will change.
            changed = self.changes.changed() => {
                changed.ok()?;
                true
            }
            () = tokio::time::sleep(RECHECK) => false,
        };
        if changed {
            tokio::time::sleep(COALESCE).await;
            self.changes.borrow_and_update();
        }
        (!*self.stopping.borrow()).then_some(())
    }

    fn look(&mut self) -> Look {
        let app = &self.slot.app;
        if app
            .sessions
            .peek(&self.slot.session, Instant::now())
            .is_none()
        {
            return Look::Ended;
        }
        let home = match app.node.household(&self.code_hash) {
            Ok(Some(home)) => home,
            Ok(None) => {
                app.sessions.end(&self.slot.session);
                return Look::Ended;
            }
            Err(r) => {
                tracing::error!(error = %r.message, "live page: household not read");
                return Look::Same;
            }
        };
        let now_ms = menjin_net::clock::now_ms();
        let Some(state) = mine::home_state(app, self.t, &home, now_ms) else {
            return Look::Same;
        };
        // Compared before anything is drawn: a change elsewhere in the community (most
        // changes) costs a few reads, not a page with its QR images.
        if self.last.as_ref() == Some(&state) {
            return Look::Same;
        }
        let html = mine::render_members(app, self.t, state.clone(), now_ms)
            .render()
            .unwrap_or_default();
        self.last = Some(state);
        Look::Show(html)
    }
}

enum Look {
    Same,
    Show(String),
    Ended,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_bounded_per_session_and_given_back() {
        let s = Streams::default();
        for _ in 0..STREAMS_PER_SESSION_MAX {
            assert!(s.enter("a"));
        }
        assert!(!s.enter("a"));
        assert!(s.enter("b"));
        s.leave("a");
        assert!(s.enter("a"));
        assert_eq!(s.total(), STREAMS_PER_SESSION_MAX as usize + 1);
    }

    #[test]
    fn streams_are_bounded_in_all() {
        let s = Streams::default();
        for i in 0..STREAMS_MAX {
            assert!(s.enter(&format!("s{i}")));
        }
        assert!(!s.enter("one more"));
        s.leave("s0");
        assert!(s.enter("one more"));
    }
}
