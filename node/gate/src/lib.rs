//! The gate device: keeps one QUIC connection to its node, subscribes to the node's trust
//! feed (applied to its own sled cache and acknowledged), asks the node to decide while the
//! node answers, decides alone from the cache when it does not, buffers those events and
//! uploads them when the node is back (exactly once at the node, by `gate_seq`).
//!
//! What the guard must know comes out as [`Notice`]s: degraded mode entered and left, clock
//! skew, the buffer alarm, a cache found modified on disk.
//!
//! Time: decisions taken alone use the node's clock as the gate last measured it (offset),
//! never earlier than the latest node time seen, so a wound-back device clock does not make
//! an expired code valid again.

#![warn(unreachable_pub, missing_docs, unused_crate_dependencies)]

pub mod cache;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ed25519_dalek::{SigningKey, VerifyingKey};
use menjin_proto::check;
use menjin_proto::credential::{CredId, HolderId};
use menjin_proto::feed::{GateAck, GateClock, GateFeed, GateLockdown, UPLOAD_BATCH_MAX};
use menjin_proto::wire::{
    CheckAnswer, CheckRequest, Direction, GateRequest, HolderDisplay, Response,
};
use tokio::sync::{mpsc, watch};

use cache::{CacheError, GateCache};
use menjin_net::client::{ClientError, NodeClient};
use menjin_net::clock::now_ms;
use menjin_store::files::GateConfig;

/// A check the node has not answered by then is decided by the gate alone.
pub const ONLINE_CHECK_TIMEOUT_MS: u64 = 1_500;
/// Reconnection back-off after a failure: doubles from the first to the last.
pub const RECONNECT_MIN_MS: u64 = 100;
/// The back-off's cap: a gate whose node is back connects again within about 2 s.
pub const RECONNECT_MAX_MS: u64 = 2_000;

/// Something the guard must see. Not serializable: `menjin gate run --json` prints its own
/// counterpart of it (cli `json::gate::NoticeLine`), so this type can change freely.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Notice {
    /// Connected to the node and subscribed.
    Online {
        /// The node's address and how it was found (`192.168.10.2:7300 (via mdns)`).
        node: String,
    },
    /// The node cannot be reached: the gate decides alone.
    Offline {
        /// The connection's failure, as the client reported it.
        why: String,
    },
    /// No word from the node for longer than the bound: visitors refused.
    Degraded {
        /// Seconds since the node was last heard, on the node's clock.
        silent_s: u64,
    },
    /// Back in touch after degraded mode.
    Recovered,
    /// The gate's clock is this far from the node's.
    ClockSkew {
        /// Gate clock minus node clock, in milliseconds; shown when its size is over
        /// `clock_skew_max_s` in `gate.toml`.
        skew_ms: i64,
    },
    /// The gate's clock is back within `clock_skew_max_s` of the node's.
    ClockAgrees,
    /// The offline buffer is at or above 90% of its capacity.
    BufferAlarm {
        /// Events waiting in the buffer.
        pending: u64,
        /// `buffer_capacity` from `gate.toml`: at that many, offline decisions stop.
        capacity: u64,
    },
    /// Buffered events reached the node.
    Uploaded {
        /// Events of this upload newly stored at the node.
        stored: u32,
        /// Every buffered event up to this `gate_seq` is stored at the node (and dropped here).
        upto_gate_seq: u64,
    },
    /// A problem found in the cache (tampering, a node of another district, ...).
    Problem {
        /// What is wrong, in words for the guard and the log.
        what: String,
    },
    /// The lockdown the gate enforces changed.
    Lockdown {
        /// Whether the community is locked down now.
        locked: bool,
        /// The lockdown decision's epoch (rises with each decision).
        epoch: u64,
        /// Why, as its decider gave it.
        reason: String,
    },
}

/// What the feed task last applied, for tests and benchmarks.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// The feed version applied (flushed to the cache).
    pub version: u64,
    /// The lockdown as that version says.
    pub lockdown: GateLockdown,
    /// When this version was first applied (flushed to the cache): a heartbeat or a
    /// snapshot of the same version later leaves it as it was. `None` for what the cache
    /// held at start.
    pub at: Option<std::time::Instant>,
    /// When this lockdown (state and epoch) was first applied, whatever versions followed;
    /// `None` for what the cache held at start.
    pub lockdown_at: Option<std::time::Instant>,
}

impl Applied {
    /// Keeps `last`'s instants for what this repeats (the first time counts, not a
    /// heartbeat's or a snapshot's of the same state); returns whether the version changed.
    fn keep_first(&mut self, last: &Applied) -> bool {
        if self.version == last.version && last.at.is_some() {
            self.at = last.at;
        }
        if self.lockdown == last.lockdown && last.lockdown_at.is_some() {
            self.lockdown_at = last.lockdown_at;
        }
        self.version != last.version
    }
}

/// A decision, with how it was reached. Not serializable, as [`Notice`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// What the guard sees, the same whether the node or the gate decided.
    pub answer: CheckAnswer,
    /// Decided by the gate alone (the node was unreachable).
    pub offline: bool,
    /// Offline, in degraded mode.
    pub degraded: bool,
    /// Offline: the event's number in the gate's buffer.
    pub gate_seq: Option<u64>,
}

/// Why a scan got no decision. Nothing was logged and nothing opened: the guard scans or
/// measures again.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GateError {
    /// The node refused the request itself (a bad temperature, ...): nothing logged. The
    /// node's own message, as it sent it.
    #[error("{0}")]
    Refused(String),
    /// A scan refused before deciding (a temperature outside the thermometer's range, a bad
    /// plate): nothing logged, the guard measures or types again.
    #[error(transparent)]
    Input(#[from] check::InputError),
    /// The task that decides alone panicked or was cancelled (a bug; see the log).
    #[error("gate decision task failed: {0}")]
    Task(tokio::task::JoinError),
    /// A failure talking to the node that left no decision ([`GateAgent::check`] decides
    /// alone instead of returning it).
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The gate's cache failed: a full buffer ([`CacheError::Full`]) stops offline decisions
    /// rather than letting people through unlogged.
    #[error(transparent)]
    Cache(#[from] CacheError),
}

/// Why the link to the node ended (the gate looks for the node again).
#[derive(Debug, thiserror::Error)]
enum LinkError {
    #[error(transparent)]
    Discovery(#[from] menjin_discovery::DiscoveryError),
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("the node ended the feed")]
    Ended,
    #[error("the node refused the feed: {0}")]
    FeedRefused(String),
    #[error("the district revoked this node's key")]
    NodeRevoked,
    #[error(transparent)]
    Task(#[from] tokio::task::JoinError),
    #[error(transparent)]
    Trust(cache::TrustError),
    #[error(transparent)]
    Cache(#[from] CacheError),
    #[error("the node refused the upload: {0}")]
    UploadRefused(String),
    #[error("unexpected answer to an upload: {0:?}")]
    Unexpected(Box<Response>),
}

struct Link {
    client: Option<NodeClient>,
    degraded: bool,
    skewed: bool,
    alarmed: bool,
}

struct Inner {
    cfg: GateConfig,
    key: SigningKey,
    root: VerifyingKey,
    cache: Mutex<GateCache>,
    link: Mutex<Link>,
    notices: mpsc::Sender<Notice>,
    /// Notices dropped because nobody read them ([`NOTICES_MAX`] were waiting).
    notices_dropped: std::sync::atomic::AtomicU64,
    applied: watch::Sender<Applied>,
    /// Offline anti-passback: each resident's last direction here.
    last_direction: Mutex<HashMap<HolderId, Direction>>,
    /// Wakes the link task to upload.
    upload: tokio::sync::Notify,
    online: watch::Sender<bool>,
    /// This device's clock (milliseconds since the Unix epoch).
    clock: Clock,
    /// The monotonic clock's origin, and the last node time given (see [`node_time`]).
    started: std::time::Instant,
    last_time: Mutex<Option<(u64, u64)>>,
}

/// A device clock: the system's, or in tests one that is wrong on purpose.
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// Notices waiting to be read at most: a reader that stops reading (a stuck screen, a test
/// that never reads) loses the newest, and the gate's memory stays bounded.
pub const NOTICES_MAX: usize = 256;

/// Where a gate's [`Notice`]s come out, at most [`NOTICES_MAX`] waiting.
pub type Notices = mpsc::Receiver<Notice>;

/// A running gate. Cheap to clone.
#[derive(Clone)]
pub struct GateAgent {
    inner: Arc<Inner>,
}

impl GateAgent {
    /// Opens the cache and starts the link task (connect, subscribe, upload, reconnect).
    /// Notices come out of the returned receiver.
    ///
    /// # Errors
    /// [`CacheError`] if the cache directory cannot be opened at all.
    pub fn start(
        cfg: GateConfig,
        key: SigningKey,
        root: VerifyingKey,
        cache_dir: &std::path::Path,
    ) -> Result<(GateAgent, Notices), CacheError> {
        GateAgent::start_with_clock(cfg, key, root, cache_dir, Arc::new(now_ms))
    }

    /// As [`GateAgent::start`], with the device clock given (tests wind it back).
    ///
    /// # Errors
    /// As [`GateAgent::start`].
    pub fn start_with_clock(
        cfg: GateConfig,
        key: SigningKey,
        root: VerifyingKey,
        cache_dir: &std::path::Path,
        clock: Clock,
    ) -> Result<(GateAgent, Notices), CacheError> {
        let (cache, report) = GateCache::open(
            cache_dir,
            &key.to_bytes(),
            root,
            cfg.community,
            cfg.buffer_capacity,
        )?;
        let (tx, rx) = mpsc::channel(NOTICES_MAX);
        for what in report.problems {
            let _ = tx.try_send(Notice::Problem { what });
        }
        let applied = Applied {
            version: cache.trust().version,
            lockdown: cache.trust().lockdown.clone(),
            at: None,
            lockdown_at: None,
        };
        let inner = Arc::new(Inner {
            cfg,
            key,
            root,
            cache: Mutex::new(cache),
            link: Mutex::new(Link {
                client: None,
                degraded: false,
                skewed: false,
                alarmed: false,
            }),
            notices: tx,
            notices_dropped: std::sync::atomic::AtomicU64::new(0),
            applied: watch::channel(applied).0,
            last_direction: Mutex::default(),
            upload: tokio::sync::Notify::new(),
            online: watch::channel(false).0,
            clock,
            started: std::time::Instant::now(),
            last_time: Mutex::new(None),
        });
        let agent = GateAgent { inner };
        tokio::spawn(agent.clone().run_link());
        tokio::spawn(agent.clone().watch_staleness());
        Ok((agent, rx))
    }

    /// Follows what the feed has applied (version, lockdown).
    pub fn applied(&self) -> watch::Receiver<Applied> {
        self.inner.applied.subscribe()
    }

    /// Offline events waiting for upload.
    pub fn pending(&self) -> u64 {
        self.inner.cache.lock().expect("cache lock").pending()
    }

    /// Waits (at most `timeout`) until the gate is connected and has its trust data; at
    /// start, so that the first person is not decided alone for want of a moment.
    pub async fn wait_online(&self, timeout: Duration) -> bool {
        let mut rx = self.inner.online.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|online| *online))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Connected to the node right now.
    pub fn online(&self) -> bool {
        self.inner.link.lock().expect("link lock").client.is_some()
    }

    /// What a node must prove at the handshake, from the trust cache: a certificate issued
    /// no earlier than the current one there (0 before the first snapshot: any certificate of
    /// the community is taken then), for none of the node keys the district revoked.
    fn trusted(&self) -> menjin_discovery::Trusted {
        let cache = self.inner.cache.lock().expect("cache lock");
        let trust = cache.trust();
        menjin_discovery::Trusted {
            root: self.inner.root,
            not_before_min: trust.certs.first().map_or(0, |c| c.not_before),
            revoked: trust.revoked_node_keys.iter().copied().collect(),
        }
    }

    /// Whether the trust cache names `key` as revoked by the district.
    fn revoked(&self, key: &[u8; 32]) -> bool {
        let cache = self.inner.cache.lock().expect("cache lock");
        cache.trust().revoked_node_keys.contains(key)
    }

    fn notice(&self, n: Notice) {
        match &n {
            Notice::Problem { what } => tracing::error!(%what, "gate"),
            Notice::Degraded { .. } | Notice::ClockSkew { .. } | Notice::BufferAlarm { .. } => {
                tracing::warn!(?n, "gate")
            }
            _ => tracing::info!(?n, "gate"),
        }
        // Never waits: a guard's screen that stopped reading costs notices (each is also in
        // the log above), never a decision.
        if let Err(mpsc::error::TrySendError::Full(_)) = self.inner.notices.try_send(n) {
            let dropped = 1 + self
                .inner
                .notices_dropped
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if dropped == 1 || dropped.is_multiple_of(1_000) {
                tracing::warn!(dropped, "gate notices not read: dropped");
            }
        }
    }

    /// The node's time as this gate best knows it (milliseconds).
    pub fn node_now_ms(&self) -> u64 {
        let c = self.inner.cache.lock().expect("cache lock").clock();
        self.node_now(c)
    }

    /// Checks one person: by the node while it answers, alone otherwise.
    ///
    /// # Errors
    /// [`GateError::Refused`] for a request the node refuses as malformed; a full buffer.
    pub async fn check(
        &self,
        code: &str,
        temperature_dc: i16,
        plate: Option<&str>,
    ) -> Result<Decision, GateError> {
        let client = self.inner.link.lock().expect("link lock").client.clone();
        if let Some(client) = client {
            let req = GateRequest::Check(CheckRequest {
                code: code.to_string(),
                direction: self.inner.cfg.direction,
                temperature_dc,
                plate: plate.map(str::to_string),
            });
            let asked = tokio::time::timeout(
                Duration::from_millis(ONLINE_CHECK_TIMEOUT_MS),
                client.request(&req),
            )
            .await;
            match asked {
                Ok(Ok(Response::Check(answer))) => {
                    self.heard(answer.node_time_ms);
                    return Ok(Decision {
                        answer,
                        offline: false,
                        degraded: false,
                        gate_seq: None,
                    });
                }
                Ok(Ok(Response::Error { message, .. })) => return Err(GateError::Refused(message)),
                Ok(Ok(other)) => tracing::warn!(?other, "unexpected answer to a check"),
                Ok(Err(e)) => self.lost(&client, &e.to_string()),
                Err(_) => self.lost(&client, "no answer within 1.5 s"),
            }
        }
        // Deciding alone flushes the event to the cache: off the event loop.
        let (agent, code, plate) = (self.clone(), code.to_string(), plate.map(str::to_string));
        tokio::task::spawn_blocking(move || {
            agent.decide_alone(&code, temperature_dc, plate.as_deref())
        })
        .await
        .map_err(GateError::Task)?
    }

    fn lost(&self, client: &NodeClient, why: &str) {
        let mut link = self.inner.link.lock().expect("link lock");
        if link
            .client
            .as_ref()
            .is_some_and(|c| c.same_connection(client))
        {
            link.client = None;
            drop(link);
            // Close it, so the link task stops waiting on it and looks for the node again at
            // once (instead of after the idle timeout).
            client.abort("the node stopped answering checks");
            self.inner.online.send_replace(false);
            self.notice(Notice::Offline {
                why: why.to_string(),
            });
        }
    }

    /// The offline decision (`menjin_proto::check`, as at the node): signature and window
    /// against the cached node certificate and the node's time, then the cached revocations,
    /// visitors and lockdown, then the rule. The event is flushed to the buffer before the
    /// decision is returned.
    ///
    /// # Errors
    /// [`GateError::Input`] for a temperature or plate refused before deciding (nothing
    /// buffered); [`GateError::Cache`] if the buffer is full or cannot be written.
    pub fn decide_alone(
        &self,
        code: &str,
        temperature_dc: i16,
        plate: Option<&str>,
    ) -> Result<Decision, GateError> {
        let cfg = &self.inner.cfg;
        let mut cache = self.inner.cache.lock().expect("cache lock");
        let clock = cache.clock();
        let node_ms = self.node_now(clock);
        let degraded = is_degraded(clock, node_ms, cfg.stale_after_s);
        let trust = cache.trust();
        let scan = check::Scan {
            code,
            temperature_dc,
            plate,
            direction: cfg.direction,
            gate_id: &cfg.gate_id,
        };
        let ctx = check::Context {
            community: cfg.community,
            issuer: check::Issuer::Cached {
                certs: &trust.certs,
                revoked: &trust.revoked_issuers,
            },
            mode: check::Mode::Offline { degraded },
            lockdown: trust.lockdown.locked,
            residents_may_leave: trust.residents_may_leave,
            anti_passback: cfg.anti_passback,
        };
        let mut lists = CachedTrust {
            trust,
            last_direction: &self.inner.last_direction,
        };
        let checked = check::check(&scan, node_ms, &ctx, &mut lists)?;
        let display = checked.credential.as_ref().map(|c| HolderDisplay {
            // The name stays on the node; offline the guard sees building, door and kind.
            name: "(offline)".into(),
            building: c.building.clone(),
            door: c.door.clone(),
            kind: c.kind,
            photo: None,
        });
        let (verdict, passback) = (checked.verdict, checked.passback);
        let gate_seq = cache.record(checked.event)?;
        let alarm = cache.alarm();
        let (pending, capacity) = (cache.pending(), cache.capacity());
        drop(cache);
        if alarm {
            let mut link = self.inner.link.lock().expect("link lock");
            if !link.alarmed {
                link.alarmed = true;
                drop(link);
                self.notice(Notice::BufferAlarm { pending, capacity });
            }
        }
        if verdict.fever {
            tracing::warn!(gate_seq, temperature_dc, "fever at the gate (offline)");
        }
        Ok(Decision {
            answer: CheckAnswer {
                allowed: verdict.allowed,
                reason: verdict.reason,
                fever: verdict.fever,
                holder: display,
                seq: 0,
                node_time_ms: node_ms,
                passback,
            },
            offline: true,
            degraded,
            gate_seq: Some(gate_seq),
        })
    }

    /// A word from the node: its clock, and the end of degraded mode.
    fn heard(&self, node_time_ms: u64) {
        let local = (self.inner.clock)();
        let offset = node_time_ms as i64 - local as i64;
        let skew_max = (self.inner.cfg.clock_skew_max_s * 1000) as i64;
        {
            let mut cache = self.inner.cache.lock().expect("cache lock");
            let old = cache.clock();
            let clock = GateClock {
                offset_ms: offset,
                node_time_floor_ms: old.node_time_floor_ms.max(node_time_ms),
                last_heard_node_ms: node_time_ms,
            };
            if let Err(e) = cache.set_clock(clock) {
                tracing::error!(error = %e, "gate clock not stored");
            }
        }
        let mut notices = Vec::new();
        {
            let mut link = self.inner.link.lock().expect("link lock");
            if link.degraded {
                link.degraded = false;
                notices.push(Notice::Recovered);
            }
            let skewed = offset.abs() > skew_max;
            if skewed != link.skewed {
                link.skewed = skewed;
                notices.push(if skewed {
                    Notice::ClockSkew { skew_ms: -offset }
                } else {
                    Notice::ClockAgrees
                });
            }
        }
        for n in notices {
            self.notice(n);
        }
    }

    /// Enters degraded mode when the node has been silent too long (checked every second).
    async fn watch_staleness(self) {
        let weak = Arc::downgrade(&self.inner);
        drop(self);
        loop {
            tokio::time::sleep(Duration::from_millis(1_000)).await;
            let Some(inner) = weak.upgrade() else { return };
            let agent = GateAgent { inner };
            let clock = agent.inner.cache.lock().expect("cache lock").clock();
            let node_ms = agent.node_now(clock);
            // Never heard from a node at all: nothing to be stale about (and no trust data).
            if clock.last_heard_node_ms > 0
                && is_degraded(clock, node_ms, agent.inner.cfg.stale_after_s)
            {
                let mut link = agent.inner.link.lock().expect("link lock");
                if !link.degraded {
                    link.degraded = true;
                    drop(link);
                    agent.notice(Notice::Degraded {
                        silent_s: node_ms.saturating_sub(clock.last_heard_node_ms) / 1000,
                    });
                }
            }
        }
    }

    /// Connect, subscribe, apply and acknowledge the feed, upload the buffer; on any failure
    /// reconnect with back-off. Ends when every other handle on the agent is gone.
    async fn run_link(self) {
        let weak = Arc::downgrade(&self.inner);
        drop(self);
        let mut backoff = RECONNECT_MIN_MS;
        loop {
            let Some(inner) = weak.upgrade() else { return };
            let agent = GateAgent { inner };
            // mDNS (if configured) at every (re)connection: a node that failed is replaced by
            // another of the community, checked against the district root; else the static
            // address.
            // A node certificate issued before the one the gate trusts now was replaced at a
            // rekey, and a key the district revoked is out: whoever still holds such a key is
            // refused at the handshake.
            let trusted = agent.trusted();
            let result = match menjin_discovery::find_node(
                &agent.inner.cfg,
                &agent.inner.key,
                trusted,
            )
            .await
            {
                Ok(found) => {
                    backoff = RECONNECT_MIN_MS;
                    let node = format!("{} (via {})", found.addr, found.via.as_str());
                    agent.serve_link(found.client, &node).await
                }
                Err(e) => Err(e.into()),
            };
            if let Err(why) = result {
                let why = why.to_string();
                let was_online = {
                    let mut link = agent.inner.link.lock().expect("link lock");
                    link.client.take().is_some()
                };
                agent.inner.online.send_replace(false);
                if was_online {
                    agent.notice(Notice::Offline { why });
                } else {
                    tracing::debug!(%why, "node not reached");
                }
            }
            drop(agent);
            let wait = backoff / 2 + rand::random_range(0..=backoff / 2);
            backoff = (backoff * 2).min(RECONNECT_MAX_MS);
            tokio::time::sleep(Duration::from_millis(wait)).await;
        }
    }

    async fn serve_link(&self, client: NodeClient, node: &str) -> Result<(), LinkError> {
        let mut feed = client.subscribe().await?;
        // Reading a frame is not cancel-safe: a task of its own reads them.
        let (tx, mut frames) = mpsc::channel(16);
        let reader = tokio::spawn(async move {
            loop {
                let f = feed.next().await;
                let end = !matches!(f, Ok(Some(_)));
                if tx.send(f).await.is_err() || end {
                    return;
                }
            }
        });
        let _abort = AbortOnDrop(reader);
        let mut announced = false;
        loop {
            let frame = tokio::select! {
                f = frames.recv() => match f {
                    Some(f) => f?,
                    None => None,
                },
                () = self.inner.upload.notified() => {
                    self.upload(&client).await?;
                    continue;
                }
            };
            let Some(frame) = frame else {
                return Err(LinkError::Ended);
            };
            let node_time = match &frame {
                GateFeed::Snapshot(s) => s.node_time_ms,
                GateFeed::Update(u) => u.node_time_ms,
                GateFeed::Heartbeat { node_time_ms, .. } => *node_time_ms,
                GateFeed::Refused(why) => return Err(LinkError::FeedRefused(why.clone())),
            };
            let before = self.inner.applied.borrow().lockdown.clone();
            // Applying flushes sled: off the event loop.
            let inner = self.inner.clone();
            let applied = tokio::task::spawn_blocking(move || {
                let mut cache = inner.cache.lock().expect("cache lock");
                match frame {
                    GateFeed::Snapshot(s) => cache.apply_snapshot(s),
                    GateFeed::Update(u) => cache.apply_update(&u),
                    _ => Ok(()),
                }
                .map(|()| Applied {
                    version: cache.trust().version,
                    lockdown: cache.trust().lockdown.clone(),
                    at: Some(std::time::Instant::now()),
                    lockdown_at: Some(std::time::Instant::now()),
                })
            })
            .await?;
            let mut applied = match applied {
                Ok(a) => a,
                Err(CacheError::Cert(why)) => {
                    self.notice(Notice::Problem {
                        what: format!("node {node} sent trust data that does not check out: {why}"),
                    });
                    return Err(LinkError::Trust(why));
                }
                Err(e) => return Err(e.into()),
            };
            // The node passed on the revocation of its own key: it is out from now on.
            if let Some(key) = client.node_key()
                && self.revoked(key.as_bytes())
            {
                self.notice(Notice::Problem {
                    what: format!("the district revoked the key of node {node}: not used any more"),
                });
                client.abort("node key revoked");
                return Err(LinkError::NodeRevoked);
            }
            self.heard(node_time);
            let first = !announced;
            if !announced {
                announced = true;
                self.inner.link.lock().expect("link lock").client = Some(client.clone());
                self.inner.online.send_replace(true);
                self.notice(Notice::Online {
                    node: node.to_string(),
                });
                self.inner.upload.notify_one();
            }
            if applied.lockdown != before {
                self.notice(Notice::Lockdown {
                    locked: applied.lockdown.locked,
                    epoch: applied.lockdown.epoch,
                    reason: applied.lockdown.reason.clone(),
                });
            }
            let version_changed = applied.keep_first(&self.inner.applied.borrow());
            self.inner.applied.send_replace(applied.clone());
            if version_changed || first {
                self.ack(&client, &applied).await?;
            }
        }
    }

    async fn ack(&self, client: &NodeClient, applied: &Applied) -> Result<(), LinkError> {
        let (incarnation, pending, offset) = {
            let cache = self.inner.cache.lock().expect("cache lock");
            (
                cache.trust().incarnation,
                cache.pending(),
                cache.clock().offset_ms,
            )
        };
        let req = GateRequest::Ack(GateAck {
            incarnation,
            version: applied.version,
            lockdown_epoch: applied.lockdown.epoch,
            locked: applied.lockdown.locked,
            pending_events: pending,
            skew_ms: -offset,
        });
        // Acknowledge without holding up the feed.
        let client = client.clone();
        tokio::spawn(async move {
            if let Err(e) = client.request(&req).await {
                tracing::debug!(error = %e, "ack not delivered");
            }
        });
        Ok(())
    }

    /// Uploads the buffer in batches; the node's cursor makes resending harmless.
    async fn upload(&self, client: &NodeClient) -> Result<(), LinkError> {
        let mut sent = false;
        loop {
            let batch = self
                .inner
                .cache
                .lock()
                .expect("cache lock")
                .oldest(UPLOAD_BATCH_MAX)?;
            let Some(last) = batch.last().map(|e| e.gate_seq) else {
                if sent {
                    // The node shows what still waits at each gate: tell it the buffer is empty.
                    let applied = self.inner.applied.borrow().clone();
                    self.ack(client, &applied).await?;
                }
                return Ok(());
            };
            sent = true;
            let req = GateRequest::Upload { events: batch };
            match client.request(&req).await {
                Ok(Response::Uploaded {
                    upto_gate_seq,
                    stored,
                }) => {
                    // The node holds this cache's events up to its cursor; drop only those
                    // sent here, never ones it did not confirm.
                    if upto_gate_seq < last {
                        return Err(LinkError::UploadRefused(format!(
                            "the node confirmed events up to {upto_gate_seq} of {last} sent"
                        )));
                    }
                    let mut cache = self.inner.cache.lock().expect("cache lock");
                    cache.uploaded(last)?;
                    if !cache.alarm() {
                        self.inner.link.lock().expect("link lock").alarmed = false;
                    }
                    drop(cache);
                    self.notice(Notice::Uploaded {
                        stored,
                        upto_gate_seq,
                    });
                }
                Ok(Response::Error { message, .. }) => {
                    return Err(LinkError::UploadRefused(message));
                }
                Ok(other) => return Err(LinkError::Unexpected(Box::new(other))),
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// The node's time now, as this gate best knows it (see [`node_time`]).
    fn node_now(&self, clock: GateClock) -> u64 {
        let mono_ms = self.inner.started.elapsed().as_millis() as u64;
        let mut last = self.inner.last_time.lock().expect("time lock");
        node_time(&mut last, clock, (self.inner.clock)(), mono_ms)
    }

    /// Asks the link task to upload now (after offline decisions, when the node is back).
    pub fn kick_upload(&self) {
        self.inner.upload.notify_one();
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The node's time from the gate's clock: offset applied, never before the latest node time
/// seen.
fn estimate(clock: GateClock, local_ms: u64) -> u64 {
    let est = (local_ms as i64).saturating_add(clock.offset_ms).max(0) as u64;
    est.max(clock.node_time_floor_ms)
}

/// The node time now, never behind the last one this process gave plus the time elapsed
/// since on the monotonic clock (`mono_ms`): a device clock wound back neither stops the
/// gate's time at its last contact (expired codes would pass, degraded mode never start) nor
/// turns it back. `last` is this process's memory: (node time given, `mono_ms` then).
fn node_time(last: &mut Option<(u64, u64)>, clock: GateClock, local_ms: u64, mono_ms: u64) -> u64 {
    let est = estimate(clock, local_ms);
    let t = match *last {
        Some((at, mono)) => est.max(at.saturating_add(mono_ms.saturating_sub(mono))),
        None => est,
    };
    *last = Some((t, mono_ms));
    t
}

fn is_degraded(clock: GateClock, node_ms: u64, stale_after_s: u64) -> bool {
    node_ms.saturating_sub(clock.last_heard_node_ms) > stale_after_s * 1000
}

/// What a gate deciding alone knows of codes: its cached lists (no records of single codes),
/// and its anti-passback memory.
struct CachedTrust<'a> {
    trust: &'a cache::Trust,
    last_direction: &'a Mutex<HashMap<HolderId, Direction>>,
}

impl check::Trust for CachedTrust<'_> {
    fn lookup(&mut self, id: &CredId) -> check::Known<'_> {
        check::Known::Unrecorded {
            revoked: self.trust.revoked.contains(id),
            consent: self.trust.visitors.contains(id),
        }
    }

    fn swap_direction(&mut self, holder: HolderId, direction: Direction) -> Option<Direction> {
        let mut last = self.last_direction.lock().expect("passback lock");
        last.insert(holder, direction)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_device_clock_wound_back_does_not_stop_the_gates_time() {
        let stale_after_s = 60;
        let c = GateClock {
            offset_ms: 0,
            node_time_floor_ms: 10_000_000,
            last_heard_node_ms: 10_000_000,
        };
        let mut last = None;
        // Ten seconds after the last contact, on both clocks.
        assert_eq!(node_time(&mut last, c, 10_010_000, 10_000), 10_010_000);
        // The device clock is set back an hour; two minutes pass on the monotonic clock.
        let t = node_time(&mut last, c, 10_010_000 - 3_600_000 + 120_000, 130_000);
        assert_eq!(t, 10_130_000, "time runs on from the last estimate");
        assert!(is_degraded(c, t, stale_after_s), "silent past the bound");
        // And never goes back.
        assert!(node_time(&mut last, c, 0, 130_001) >= t);
    }

    #[test]
    fn the_node_time_estimate_never_goes_back() {
        let c = GateClock {
            offset_ms: 5_000,
            node_time_floor_ms: 1_000_000,
            last_heard_node_ms: 1_000_000,
        };
        assert_eq!(estimate(c, 2_000_000), 2_005_000);
        // The device clock wound back below what the node said last: the floor holds.
        assert_eq!(estimate(c, 10), 1_000_000);
        assert!(!is_degraded(c, 1_050_000, 60));
        assert!(is_degraded(c, 1_061_000, 60));
    }
}
