//! The guard's screen at the gate device: a kiosk page on loopback (`menjin gate run
//! --screen`) showing each decision as the gate takes it: ALLOW or DENY very large, with
//! colour, an icon and the word (Chinese, English below), the reason in words, the holder's
//! kind, home and temperature; banners for the gate's conditions (offline, degraded mode,
//! clock skew, a filling buffer, a lockdown); the last few decisions below. Live through
//! server-sent events (`GET /live`, event `screen`): the whole partial again at each change.
//!
//! What it must never do: slow or stop a decision. The gate decides, prints, then calls
//! [`Screen::show`], which renders once and hands the markup to a `broadcast` channel that
//! never waits; a browser that reads too slowly misses intermediate states and is sent the
//! latest one. It knows nothing of the node: everything it shows is the gate's own, so it
//! keeps working while the node is down. The page holds no secret and no URL carries
//! personal data.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use askama::Template;
use askama_web::WebTemplate;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use menjin_proto::wire::CheckAnswer;
use tokio::sync::broadcast;

use crate::i18n::{EN, Text, ZH};

/// Decisions listed under the current one: what a guard glances back at.
pub const RECENT_MAX: usize = 5;
/// Browsers showing the screen at once: the kiosk and a few more (a supervisor's tab);
/// past it, 429.
const STREAMS_MAX: usize = 8;
/// States waiting for a slow browser before it is skipped to the latest.
const CHANNEL_LEN: usize = 16;
/// An idle stream sends a comment this often (a dead browser is found out).
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// A request that takes longer than this is stuck (the page is rendered from memory).
const REQUEST_TIMEOUT_MS: u64 = 10_000;

/// One decision as the gate took it, for the screen.
#[derive(Clone, Debug)]
pub struct Shown {
    /// The answer, the node's or the gate's own.
    pub answer: CheckAnswer,
    /// The temperature measured, in tenths of a degree Celsius.
    pub temperature_dc: i16,
    /// Decided by the gate alone.
    pub offline: bool,
    /// Alone, in degraded mode.
    pub degraded: bool,
    /// The vehicle's plate when the person is in one.
    pub plate: Option<String>,
}

/// The gate's conditions the guard must see, each a banner while it holds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Conditions {
    /// The node cannot be reached: the gate decides alone.
    pub offline: bool,
    /// Degraded mode: seconds since the node was last heard.
    pub degraded_s: Option<u64>,
    /// The gate's clock is this far off the node's (milliseconds).
    pub clock_skew_ms: Option<i64>,
    /// The offline buffer is filling: events waiting, capacity.
    pub buffer: Option<(u64, u64)>,
    /// The community is locked down.
    pub lockdown: bool,
    /// A problem found in the gate's cache, in words (English, as the gate says it).
    pub problem: Option<String>,
}

/// Something said in both languages: Chinese first, English below.
#[derive(Clone, Debug)]
struct Said {
    zh: String,
    en: String,
}

impl Said {
    fn by(f: impl Fn(&'static Text) -> String) -> Said {
        Said {
            zh: f(&ZH),
            en: f(&EN),
        }
    }
}

/// A decision as the page draws it.
struct Card {
    allowed: bool,
    time: String,
    verdict: Said,
    reason: Said,
    kind: Option<Said>,
    home: Option<Said>,
    name: Option<String>,
    temperature: String,
    fever: bool,
    passback: bool,
    photo: bool,
    plate: Option<String>,
    alone: Option<Said>,
}

struct Banner {
    /// `offline`, `degraded`, `clock`, `buffer`, `lockdown`, `problem`: the banner's id and
    /// class.
    id: &'static str,
    text: Said,
}

#[derive(Template)]
#[template(path = "partials/screen_now.html")]
struct Now<'a> {
    gate: &'a str,
    banners: Vec<Banner>,
    current: Option<&'a Card>,
    recent: Vec<&'a Card>,
    waiting: Said,
    recent_title: Said,
    words: Words,
}

#[derive(Template, WebTemplate)]
#[template(path = "screen.html")]
struct Page {
    title: Said,
    now: String,
}

/// The fixed words of a card, in both languages.
struct Words {
    temperature: Said,
    fever: Said,
    passback: Said,
    photo: Said,
    vehicle: Said,
}

struct ScreenState {
    cards: VecDeque<Card>,
    conditions: Conditions,
    /// The partial as last rendered: what a browser that connects (or lags) is sent.
    html: Arc<str>,
}

struct Inner {
    gate: String,
    state: Mutex<ScreenState>,
    tx: broadcast::Sender<Arc<str>>,
    streams: AtomicUsize,
}

/// The screen's state and its live channel. Cheap to clone; the gate keeps one and calls
/// [`Screen::show`] after each decision, [`Screen::conditions`] at each notice.
#[derive(Clone)]
pub struct Screen {
    inner: Arc<Inner>,
}

impl Screen {
    /// An empty screen for gate `gate` ("waiting for a scan").
    pub fn new(gate: &str) -> Screen {
        let (tx, _) = broadcast::channel(CHANNEL_LEN);
        let screen = Screen {
            inner: Arc::new(Inner {
                gate: gate.to_string(),
                state: Mutex::new(ScreenState {
                    cards: VecDeque::with_capacity(RECENT_MAX + 1),
                    conditions: Conditions::default(),
                    html: Arc::from(""),
                }),
                tx,
                streams: AtomicUsize::new(0),
            }),
        };
        screen.publish(&mut screen.inner.state.lock().expect("screen lock"));
        screen
    }

    /// Shows a decision (taken already: this only draws it). Also sets the offline banner
    /// from how it was taken: a decision alone means no node, one by the node means a node.
    pub fn show(&self, shown: &Shown) {
        let card = card(shown);
        let mut state = self.inner.state.lock().expect("screen lock");
        state.cards.push_front(card);
        state.cards.truncate(RECENT_MAX + 1);
        state.conditions.offline = shown.offline;
        if !shown.offline {
            state.conditions.degraded_s = None;
        }
        self.publish(&mut state);
    }

    /// Changes the conditions shown as banners (at each of the gate's notices).
    pub fn conditions(&self, change: impl FnOnce(&mut Conditions)) {
        let mut state = self.inner.state.lock().expect("screen lock");
        let before = state.conditions.clone();
        change(&mut state.conditions);
        if state.conditions != before {
            self.publish(&mut state);
        }
    }

    /// Renders the partial and sends it to every open page; never waits.
    fn publish(&self, state: &mut ScreenState) {
        let now = Now {
            gate: &self.inner.gate,
            banners: banners(&state.conditions),
            current: state.cards.front(),
            recent: state.cards.iter().skip(1).collect(),
            waiting: Said::by(|t| t.screen.waiting.into()),
            recent_title: Said::by(|t| t.screen.recent.into()),
            words: Words {
                temperature: Said::by(|t| t.screen.temperature.into()),
                fever: Said::by(|t| t.screen.fever.into()),
                passback: Said::by(|t| t.screen.passback.into()),
                photo: Said::by(|t| t.screen.photo.into()),
                vehicle: Said::by(|t| t.screen.vehicle.into()),
            },
        };
        let html: Arc<str> = match now.render() {
            Ok(html) => Arc::from(html),
            Err(e) => {
                tracing::error!(error = %e, "gate screen not rendered");
                return;
            }
        };
        state.html = html.clone();
        // No receiver (no page open) is not an error.
        let _ = self.inner.tx.send(html);
    }

    fn current(&self) -> Arc<str> {
        self.inner.state.lock().expect("screen lock").html.clone()
    }
}

/// A decision drawn: the words the pages use for reasons, kinds and homes.
fn card(s: &Shown) -> Card {
    let a = &s.answer;
    let holder = a.holder.as_ref();
    let known = holder.filter(|h| !h.building.is_empty());
    let reason = Said::by(|t| t.gate_reason(a.reason).into());
    let secs = a.node_time_ms / 1000;
    let time = crate::views::cst(secs, true);
    Card {
        allowed: a.allowed,
        time: time.rsplit(' ').next().unwrap_or_default().to_string(),
        verdict: Said::by(|t| {
            if a.allowed {
                t.screen.allow
            } else {
                t.screen.deny
            }
            .into()
        }),
        reason,
        kind: holder.map(|h| Said::by(|t| t.kind(h.kind).into())),
        home: known.map(|h| Said::by(|t| t.home_of(&h.building, &h.door))),
        // The node names the holder; alone the gate knows none ("(offline)").
        name: holder
            .filter(|h| !s.offline && !h.name.is_empty())
            .map(|h| h.name.clone()),
        temperature: format!(
            "{}.{} °C",
            s.temperature_dc / 10,
            (s.temperature_dc % 10).abs()
        ),
        fever: a.fever,
        passback: a.passback,
        photo: holder.is_some_and(|h| h.photo.is_some()),
        plate: s.plate.clone(),
        alone: s.offline.then(|| {
            Said::by(|t| {
                if s.degraded {
                    t.screen.alone_degraded
                } else {
                    t.screen.alone
                }
                .into()
            })
        }),
    }
}

fn banners(c: &Conditions) -> Vec<Banner> {
    let mut out = Vec::new();
    if c.lockdown {
        out.push(Banner {
            id: "lockdown",
            text: Said::by(|t| t.screen.lockdown.into()),
        });
    }
    if c.offline {
        out.push(Banner {
            id: "offline",
            text: Said::by(|t| t.screen.offline.into()),
        });
    }
    if let Some(s) = c.degraded_s {
        out.push(Banner {
            id: "degraded",
            text: Said::by(|t| t.screen.degraded.replace("{s}", &s.to_string())),
        });
    }
    if let Some(ms) = c.clock_skew_ms {
        let s = format!("{:.1}", ms as f64 / 1000.0);
        out.push(Banner {
            id: "clock",
            text: Said::by(|t| t.screen.clock.replace("{s}", &s)),
        });
    }
    if let Some((n, cap)) = c.buffer {
        out.push(Banner {
            id: "buffer",
            text: Said::by(|t| {
                t.screen
                    .buffer
                    .replace("{n}", &n.to_string())
                    .replace("{c}", &cap.to_string())
            }),
        });
    }
    if let Some(what) = &c.problem {
        out.push(Banner {
            id: "problem",
            text: Said::by(|t| format!("{}: {what}", t.screen.problem)),
        });
    }
    out
}

/// `GET /`: the page with the current state; the stream keeps it up to date.
async fn page(State(app): State<App>) -> Response {
    let screen = app.screen;
    Page {
        title: Said::by(|t| format!("{} {}", t.screen.title, screen.inner.gate)),
        now: screen.current().to_string(),
    }
    .into_response()
}

/// One open stream's place, given back when the stream is dropped.
struct Slot(Screen);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.inner.streams.fetch_sub(1, Ordering::Relaxed);
    }
}

/// `GET /live`: the partial now, then again at each change; a browser that lags behind
/// [`CHANNEL_LEN`] states is sent the latest.
async fn live(State(app): State<App>) -> Response {
    let screen = app.screen;
    let open = screen.inner.streams.fetch_add(1, Ordering::Relaxed);
    let slot = Slot(screen.clone());
    if open >= STREAMS_MAX {
        return (StatusCode::TOO_MANY_REQUESTS, "too many screens open").into_response();
    }
    // Subscribed before the first look: a change after it is not missed.
    let rx = screen.inner.tx.subscribe();
    let first = Some(screen.current());
    let events = futures_util::stream::unfold(
        (slot, rx, first, app.stopping),
        |(slot, mut rx, first, mut stop)| async move {
            let html = match first {
                Some(html) => html,
                None => tokio::select! {
                    _ = stop.wait_for(|s| *s) => return None,
                    got = rx.recv() => match got {
                        Ok(html) => html,
                        // Behind: skip to the latest state.
                        Err(broadcast::error::RecvError::Lagged(_)) => slot.0.current(),
                        Err(broadcast::error::RecvError::Closed) => return None,
                    },
                },
            };
            let event = Event::default().event("screen").data(html.as_ref());
            Some((Ok::<Event, Infallible>(event), (slot, rx, None, stop)))
        },
    );
    Sse::new(events)
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
        .into_response()
}

/// What the screen's handlers share.
#[derive(Clone)]
struct App {
    screen: Screen,
    /// Becomes `true` when the server stops: the streams end so the drain finishes.
    stopping: tokio::sync::watch::Receiver<bool>,
}

/// The screen's listener, bound, ready to serve.
pub struct ScreenServer {
    listener: tokio::net::TcpListener,
    router: Router,
    stop: tokio::sync::watch::Sender<bool>,
}

impl ScreenServer {
    /// Binds the screen's address (inside a tokio runtime), with a warning when it is not
    /// loopback (the page names who passed, over plain HTTP).
    ///
    /// # Errors
    /// If the address cannot be bound.
    pub fn bind(screen: Screen, listen: SocketAddr) -> std::io::Result<ScreenServer> {
        let std_listener = std::net::TcpListener::bind(listen)?;
        std_listener.set_nonblocking(true)?;
        let listener = tokio::net::TcpListener::from_std(std_listener)?;
        if !listen.ip().is_loopback() {
            tracing::warn!(
                %listen,
                "gate screen served beyond loopback over plain HTTP: who passes is visible \
                 on the network"
            );
        }
        let (stop, stopping) = tokio::sync::watch::channel(false);
        let app = App { screen, stopping };
        let router = Router::new()
            .route("/", get(page))
            .route("/live", get(live))
            .merge(crate::assets::routes())
            .layer(axum::middleware::from_fn(crate::security::cross_site))
            .layer(axum::middleware::from_fn(
                |req: axum::extract::Request, next: axum::middleware::Next| {
                    crate::security::headers(req, next, false)
                },
            ))
            .layer(axum::extract::DefaultBodyLimit::max(1024))
            .layer(tower_http::timeout::TimeoutLayer::with_status_code(
                StatusCode::REQUEST_TIMEOUT,
                Duration::from_millis(REQUEST_TIMEOUT_MS),
            ))
            .with_state(app);
        Ok(ScreenServer {
            listener,
            router,
            stop,
        })
    }

    /// # Errors
    /// If the socket has no address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown`, then ends the live streams and waits for the requests in
    /// flight.
    pub async fn serve(self, shutdown: impl Future<Output = ()> + Send + 'static) {
        let stop = self.stop;
        let shutdown = async move {
            shutdown.await;
            let _ = stop.send(true);
        };
        let service = self
            .router
            .into_make_service_with_connect_info::<SocketAddr>();
        if let Err(e) = axum::serve(self.listener, service)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::error!(error = %e, "gate screen stopped");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use menjin_proto::credential::HolderKind;
    use menjin_proto::rule::Reason;
    use menjin_proto::wire::HolderDisplay;

    fn shown(allowed: bool, reason: Reason, offline: bool) -> Shown {
        Shown {
            answer: CheckAnswer {
                allowed,
                reason,
                fever: reason == Reason::Fever,
                holder: Some(HolderDisplay {
                    name: "王芳".into(),
                    building: "12".into(),
                    door: "1203".into(),
                    kind: HolderKind::Resident,
                    photo: None,
                }),
                seq: 1,
                node_time_ms: 1_764_633_600_000,
                passback: false,
            },
            temperature_dc: 385,
            offline,
            degraded: false,
            plate: None,
        }
    }

    #[test]
    fn a_decision_is_drawn_in_both_languages_and_the_list_is_bounded() {
        let screen = Screen::new("north-1");
        assert!(screen.current().contains("等待扫码"));
        let mut rx = screen.inner.tx.subscribe();
        for _ in 0..CHANNEL_LEN + RECENT_MAX {
            screen.show(&shown(true, Reason::Ok, false));
        }
        screen.show(&shown(false, Reason::Fever, true));
        let html = screen.current();
        assert!(html.contains("禁止通行") && html.contains("DENY"), "{html}");
        assert!(html.contains("38.5 °C"), "{html}");
        assert!(html.contains("体温 37.3 °C 或以上"), "{html}");
        assert!(html.contains("id=\"offline\""), "{html}");
        // Alone, the gate has no name to show.
        assert!(!html.contains("王芳"), "{html}");
        assert_eq!(html.matches("class=\"recent-row").count(), RECENT_MAX);
        // Far more states than the channel holds: the reader lags, never the gate.
        assert!(matches!(
            rx.try_recv(),
            Err(broadcast::error::TryRecvError::Lagged(_))
        ));
    }

    #[test]
    fn conditions_become_banners_and_go_away() {
        let screen = Screen::new("north-1");
        screen.conditions(|c| {
            c.degraded_s = Some(70);
            c.buffer = Some((950, 1000));
            c.clock_skew_ms = Some(-12_300);
        });
        let html = screen.current();
        assert!(html.contains("已 70 秒未收到节点消息"), "{html}");
        assert!(html.contains("950 of 1000"), "{html}");
        assert!(html.contains("-12.3 s"), "{html}");
        screen.conditions(|c| *c = Conditions::default());
        assert!(!screen.current().contains("class=\"banner"));
    }
}
