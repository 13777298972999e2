//! The gate log: every check a node answers, in sled tree `gate_log_batches`. Each record
//! holds the events of one commit, consecutive in sequence number, keyed by the first one
//! (big-endian, so sled's order is the log's order).
//!
//! Architecture invariant: an event is flushed to disk before the check that made it is
//! answered. Many gates wait at once at peak hours, so the log group-commits: the first
//! check to find the log idle spawns a commit task on the runtime; it takes every event
//! waiting (up to [`BATCH_MAX`]), writes them as one record, flushes once, answers them all,
//! and goes on while more are waiting. One record per commit rather than one per event,
//! and no thread of our own between the checks and sled, is what `menjin bench gate`
//! measured to matter (ARCHITECTURE.md, "Gate log").
//!
//! Times are made non-decreasing in sequence order, so a time range is found by binary search
//! over records instead of a second index.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use menjin_proto::feed::OfflineEvent;
use menjin_proto::wire::{self, GateEvent, LOG_PAGE_MAX, LogQuery};
use sled::Transactional;
use tokio::sync::{Semaphore, oneshot};

/// Events written by one commit. Bounds the latency one flush adds to the last event in it.
pub const BATCH_MAX: usize = 1024;
/// Events waiting for the commit task; past this, checks wait to enqueue (backpressure).
pub const QUEUE_MAX: usize = 8192;
/// A stored record is at most this long (a commit of [`BATCH_MAX`] events of at most a few
/// hundred bytes each); longer is corruption.
const RECORD_LEN_MAX: usize = 16 << 20;
/// Times the commit task lets the runtime run other tasks before it takes what is queued:
/// checks whose requests have already arrived (a packet read by the connection's task, then
/// the request's own task) get to join this commit rather than wait for the next flush.
/// `menjin bench gate`, 16 gates: 0 → ~7 events per commit, 17.8–19.2k checks/s; 2 → ~12
/// per commit, 20.1–21.3k checks/s and a lower p99. A lone check pays two empty yields.
const JOIN_YIELDS: usize = 2;
/// The tree of one record per event that earlier versions wrote; migrated at open.
const LEGACY_TREE: &str = "gate_log";
const TREE: &str = "gate_log_batches";
/// The key of the hub's verified mark in tree `gate_log_hub`.
const HUB_VERIFIED: &[u8] = b"verified";

/// Why the gate log could not store or read events. A check whose event was not stored is
/// refused as unlogged; nothing is answered that is not on disk.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LogError {
    /// sled failed (disk full, IO error): the record is written again under the same key by the
    /// next commit.
    #[error("gate log storage: {0}")]
    Storage(#[from] sled::Error),
    /// The commit task went away without an answer (the runtime shutting down, or a panic):
    /// the event may not be stored, so it is not acknowledged.
    #[error("gate log writer has stopped")]
    Stopped,
    /// A stored record does not decode, or its events are not consecutive from its key.
    #[error("gate log record {seq} is corrupt: {why}")]
    Corrupt {
        /// The first sequence number of the record.
        seq: u64,
        /// What does not decode or does not follow.
        why: String,
    },
}

type Ack = oneshot::Sender<Result<(u64, u64), sled::Error>>;
type UploadAck = oneshot::Sender<Result<(u64, u32), sled::Error>>;
type RebaseAck = oneshot::Sender<Result<u64, sled::Error>>;

/// What the commit task is asked to do.
enum Job {
    /// One check, group-committed with the others waiting.
    Event(GateEvent, Ack),
    /// Events a gate decided alone: stored with that gate's cursor in one transaction.
    Upload(Upload),
    /// Renumber the events from `from` on to start at `hub_next` (see [`GateLog::rebase`]).
    Rebase {
        from: u64,
        hub_next: u64,
        ack: RebaseAck,
    },
}

struct Upload {
    gate: String,
    events: Vec<OfflineEvent>,
    now_ms: u64,
    ack: UploadAck,
}

/// Why a gate's upload of offline events was refused. Nothing of it is stored; the gate keeps
/// the events and sends them again.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UploadError {
    /// A `gate_seq` not above the one before it in the upload: the whole upload is refused.
    #[error("offline events must come in rising gate_seq order ({0} after {1})")]
    Order(u64, u64),
    /// An upload with events of more than one cache incarnation of the gate (each has its
    /// own cursor): the whole upload is refused.
    #[error("offline event {0} is of another gate cache than the first of the upload")]
    MixedCaches(u64),
    /// An uploaded event without its offline mark.
    #[error("offline event {0} is not marked offline")]
    NotOffline(u64),
    /// An uploaded event that no gate check could have written (a 60 KiB plate, a fever
    /// not flagged, ...): the whole upload is refused.
    #[error("offline {1} (gate_seq {0})")]
    Invalid(u64, menjin_proto::check::EventError),
    /// Storing the upload failed.
    #[error(transparent)]
    Log(#[from] LogError),
}

/// The owner of tree `gate_log_batches`.
#[derive(Clone)]
pub struct GateLog {
    shared: Arc<Shared>,
}

/// What the log's handles and its commit task share. The commit task holds it only while it
/// runs, and lets go before it answers the last events it wrote: once every `GateLog` is gone
/// and its last check answered, nothing of the log holds the database (a node can be
/// reopened in the same process).
struct Shared {
    db: sled::Db,
    tree: sled::Tree,
    /// (Gate id, cache incarnation) → the highest `gate_seq` of the offline events of that
    /// cache stored (big-endian u64); see [`cursor_key`].
    cursors: sled::Tree,
    /// [`HUB_VERIFIED`] → the highest sequence number the hub acknowledged as holding this
    /// log's own event under it (big-endian u64); see [`GateLog::hub_verified`].
    hub: sled::Tree,
    /// Events stored so far (the highest sequence number).
    count: AtomicU64,
    /// Places in the queue; see [`QUEUE_MAX`].
    room: Semaphore,
    state: Mutex<State>,
}

struct State {
    queue: VecDeque<Job>,
    /// A commit task is running; a check that queues a job while none is starts one.
    committing: bool,
    next_seq: u64,
    last_time: u64,
}

impl GateLog {
    /// Opens the log (migrating a log of the one-record-per-event layout, if there is one).
    /// Its commit task is started by the first append.
    ///
    /// # Errors
    /// [`LogError`] if sled cannot be read or the last record is corrupt.
    pub fn open(db: &sled::Db) -> Result<GateLog, LogError> {
        let tree = db.open_tree(TREE)?;
        let cursors = db.open_tree("gate_upload_cursor")?;
        let hub = db.open_tree("gate_log_hub")?;
        migrate_legacy(db, &tree)?;
        let (next_seq, last_time) = match tree.last()? {
            Some((k, v)) => {
                let events = decode_record(seq_of(&k)?, &v)?;
                let last = events.last().expect("decode_record refuses empty records");
                (last.seq + 1, last.time_ms)
            }
            None => (1, 0),
        };
        // A new log's mark is 0, so that "no mark" means only a log from before marks were
        // kept. Without it a log backed up before its first acknowledgement was kept would,
        // restored, be taken for one of those and trust the hub's cursor. Flushed with the
        // first event (one database).
        if next_seq == 1 && hub.get(HUB_VERIFIED)?.is_none() {
            hub.insert(HUB_VERIFIED, &0u64.to_be_bytes())?;
        }
        Ok(GateLog {
            shared: Arc::new(Shared {
                db: db.clone(),
                tree,
                cursors,
                hub,
                count: AtomicU64::new(next_seq - 1),
                room: Semaphore::new(QUEUE_MAX),
                state: Mutex::new(State {
                    queue: VecDeque::new(),
                    committing: false,
                    next_seq,
                    last_time,
                }),
            }),
        })
    }

    /// Queues a job once there is room, and starts the commit task if none is running.
    async fn submit(&self, job: Job) -> Result<(), LogError> {
        self.shared
            .room
            .acquire()
            .await
            .map_err(|_| LogError::Stopped)?
            .forget();
        let start = {
            let mut st = self.shared.state.lock().expect("gate log state lock");
            st.queue.push_back(job);
            !std::mem::replace(&mut st.committing, true)
        };
        if start {
            tokio::spawn(commit_task(self.shared.clone()));
        }
        Ok(())
    }

    /// Appends an event (its `seq` is assigned here) and returns `(seq, time_ms)` once the
    /// event is on disk.
    ///
    /// # Errors
    /// [`LogError`] if the write or the flush failed: the check must then not be answered as
    /// logged.
    pub async fn append(&self, event: GateEvent) -> Result<(u64, u64), LogError> {
        let (ack, done) = oneshot::channel();
        self.submit(Job::Event(event, ack)).await?;
        match done.await {
            Ok(Ok(seq_time)) => Ok(seq_time),
            Ok(Err(e)) => Err(LogError::Storage(e)),
            Err(_) => Err(LogError::Stopped),
        }
    }

    /// Stores events a gate decided alone, exactly once per (gate, cache, `gate_seq`): those
    /// at or below the cursor of that gate's cache are skipped (a resent upload: only what
    /// was stored is ever skipped), the rest get sequence numbers,
    /// the gate's name from the authenticated connection, and the node's time of storing
    /// (the decision time stays in their `OfflineMark`). Returns the gate's new cursor and
    /// how many were stored, once on disk.
    ///
    /// # Errors
    /// [`UploadError`]: out of order, unmarked or invalid events refuse the whole upload.
    pub async fn append_offline(
        &self,
        gate: &str,
        events: Vec<OfflineEvent>,
        now_ms: u64,
    ) -> Result<(u64, u32), UploadError> {
        let mut last = 0;
        let cache = events.first().map_or(0, |e| e.cache);
        for e in &events {
            if e.cache != cache {
                return Err(UploadError::MixedCaches(e.gate_seq));
            }
            if e.gate_seq <= last {
                return Err(UploadError::Order(e.gate_seq, last));
            }
            if e.event.offline.is_none() {
                return Err(UploadError::NotOffline(e.gate_seq));
            }
            menjin_proto::check::check_event(&e.event)
                .map_err(|why| UploadError::Invalid(e.gate_seq, why))?;
            last = e.gate_seq;
        }
        let (ack, done) = oneshot::channel();
        self.submit(Job::Upload(Upload {
            gate: gate.to_string(),
            events,
            now_ms,
            ack,
        }))
        .await?;
        match done.await {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) => Err(LogError::Storage(e).into()),
            Err(_) => Err(LogError::Stopped.into()),
        }
    }

    /// The highest `gate_seq` of the offline events of this gate's cache `cache` stored here
    /// (0: none).
    ///
    /// # Errors
    /// [`LogError`] on a storage error.
    pub fn upload_cursor(&self, gate: &str, cache: u64) -> Result<u64, LogError> {
        Ok(cursor_of(
            self.shared.cursors.get(cursor_key(gate, cache))?.as_deref(),
        ))
    }

    /// Renumbers this log's events from `from` on consecutively from `hub_next` (in order),
    /// and numbers later events after them; returns how many events moved. For a node restored
    /// from an older backup: the hub holds other events (the ones logged after the backup)
    /// under the numbers from `from` to `hub_next - 1`, so this node's events logged since
    /// the restore go after them, and the numbers in between stay a gap in this log. Nothing
    /// happens unless `from < hub_next` and `from` is at most the next number to assign.
    /// Crash-safe: one sled transaction, flushed before the answer.
    ///
    /// # Errors
    /// [`LogError`] if sled fails (nothing moved) or the commit task stopped.
    pub async fn rebase(&self, from: u64, hub_next: u64) -> Result<u64, LogError> {
        let (ack, done) = oneshot::channel();
        self.submit(Job::Rebase {
            from,
            hub_next,
            ack,
        })
        .await?;
        match done.await {
            Ok(Ok(moved)) => Ok(moved),
            Ok(Err(e)) => Err(LogError::Storage(e)),
            Err(_) => Err(LogError::Stopped),
        }
    }

    /// The highest sequence number up to which the hub has confirmed holding this log's own
    /// events (compared or stored); 0 for a log made with none, `None` only for a log from
    /// before marks were kept. The
    /// uplink streams from here at link start so that the hub compares what it may hold
    /// from another history (a restored backup keeps an older, smaller mark: safe).
    ///
    /// # Errors
    /// [`LogError`] on a storage error.
    pub fn hub_verified(&self) -> Result<Option<u64>, LogError> {
        Ok(self
            .shared
            .hub
            .get(HUB_VERIFIED)?
            .map(|v| cursor_of(Some(&v))))
    }

    /// Keeps the hub's verified mark (not flushed: a mark lost in a crash is an older one,
    /// which only makes the hub compare more).
    ///
    /// # Errors
    /// [`LogError`] on a storage error.
    pub fn set_hub_verified(&self, seq: u64) -> Result<(), LogError> {
        self.shared.hub.insert(HUB_VERIFIED, &seq.to_be_bytes())?;
        Ok(())
    }

    /// Events stored so far (the highest sequence number).
    pub fn len(&self) -> u64 {
        self.shared.count.load(Ordering::Acquire)
    }

    /// No event stored yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The key of the record that holds `seq`, if any record starts at or before it.
    fn record_key_at_or_before(&self, seq: u64) -> Result<Option<u64>, LogError> {
        match self.shared.tree.range(..=seq.to_be_bytes()).next_back() {
            Some(item) => Ok(Some(seq_of(&item?.0)?)),
            None => Ok(None),
        }
    }

    /// The first sequence number whose time is at least `from_ms`: a binary search over
    /// sequence numbers that settles a whole record per probe.
    fn first_at_or_after(&self, from_ms: u64) -> Result<u64, LogError> {
        let (mut lo, mut hi) = (1u64, self.len() + 1);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let Some(first) = self.record_key_at_or_before(mid)? else {
                // Nothing stored at or before `mid`.
                lo = mid + 1;
                continue;
            };
            let Some(bytes) = self.shared.tree.get(first.to_be_bytes())? else {
                return Err(LogError::Corrupt {
                    seq: first,
                    why: "record vanished while reading".into(),
                });
            };
            let events = decode_record(first, &bytes)?;
            let last = events.last().expect("decode_record refuses empty records");
            if last.time_ms < from_ms {
                // `mid` may lie in a gap after the record (a renumbered log, see `rebase`).
                lo = last.seq.max(mid) + 1;
            } else if events[0].time_ms >= from_ms {
                hi = first;
            } else {
                return Ok(first + events.partition_point(|e| e.time_ms < from_ms) as u64);
            }
        }
        Ok(lo)
    }

    /// Events matching every filter of `q`, in sequence order, at most `q.limit` (capped at
    /// [`LOG_PAGE_MAX`]).
    ///
    /// # Errors
    /// [`LogError`] on a storage error or a corrupt record.
    pub fn query(&self, q: &LogQuery) -> Result<Vec<GateEvent>, LogError> {
        let limit = q.limit.clamp(1, LOG_PAGE_MAX) as usize;
        let mut start = q.after_seq.map_or(1, |s| s.saturating_add(1));
        if let Some(from) = q.from_ms {
            start = start.max(self.first_at_or_after(from)?);
        }
        let from_key = self.record_key_at_or_before(start)?.unwrap_or(start);
        let mut out = Vec::new();
        for item in self.shared.tree.range(from_key.to_be_bytes()..) {
            let (k, v) = item?;
            for ev in decode_record(seq_of(&k)?, &v)? {
                if ev.seq < start {
                    continue;
                }
                if q.until_ms.is_some_and(|until| ev.time_ms > until) {
                    return Ok(out);
                }
                if q.gate.as_ref().is_some_and(|g| *g != ev.gate)
                    || q.holder.is_some_and(|h| Some(h) != ev.holder)
                {
                    continue;
                }
                out.push(ev);
                if out.len() >= limit {
                    return Ok(out);
                }
            }
        }
        Ok(out)
    }
}

/// The key of a gate cache's upload cursor: the gate id alone for incarnation 0 (the layout
/// before incarnations, so those cursors stay valid), else the id, a 0 byte (never in a gate
/// id) and the incarnation. One key per reset of a gate's cache: a handful per gate.
fn cursor_key(gate: &str, cache: u64) -> Vec<u8> {
    let mut k = gate.as_bytes().to_vec();
    if cache != 0 {
        k.push(0);
        k.extend_from_slice(&cache.to_be_bytes());
    }
    k
}

fn cursor_of(v: Option<&[u8]>) -> u64 {
    v.and_then(|v| v.try_into().ok())
        .map(u64::from_be_bytes)
        .unwrap_or(0)
}

fn seq_of(key: &[u8]) -> Result<u64, LogError> {
    key.try_into()
        .map(u64::from_be_bytes)
        .map_err(|_| LogError::Corrupt {
            seq: 0,
            why: format!("a key of {} bytes (keys are 8)", key.len()),
        })
}

/// A record: the events of one commit, numbered from its key on.
fn decode_record(first: u64, bytes: &[u8]) -> Result<Vec<GateEvent>, LogError> {
    let corrupt = |why: String| LogError::Corrupt { seq: first, why };
    let events: Vec<GateEvent> =
        wire::decode(bytes, RECORD_LEN_MAX).map_err(|e| corrupt(e.to_string()))?;
    if events.is_empty() {
        return Err(corrupt("holds no event".into()));
    }
    for (i, ev) in events.iter().enumerate() {
        if ev.seq != first + i as u64 {
            return Err(corrupt(format!(
                "event {i} holds sequence {}, not {}",
                ev.seq,
                first + i as u64
            )));
        }
    }
    Ok(events)
}

/// Moves a log of the one-record-per-event layout (tree `gate_log`, seq → event) into
/// records of at most [`BATCH_MAX`] events, each chunk in one transaction (a crash midway
/// leaves the rest to the next open), then drops the old tree.
fn migrate_legacy(db: &sled::Db, tree: &sled::Tree) -> Result<(), LogError> {
    if !db
        .tree_names()
        .iter()
        .any(|n| n.as_ref() == LEGACY_TREE.as_bytes())
    {
        return Ok(());
    }
    let legacy = db.open_tree(LEGACY_TREE)?;
    let mut moved = 0u64;
    loop {
        let mut chunk: Vec<GateEvent> = Vec::new();
        for item in legacy.iter().take(BATCH_MAX) {
            let (k, v) = item?;
            let seq = seq_of(&k)?;
            let ev: GateEvent =
                wire::decode(&v, wire::GATE_REQUEST_LEN_MAX).map_err(|e| LogError::Corrupt {
                    seq,
                    why: e.to_string(),
                })?;
            let expected = chunk.last().map_or(seq, |l| l.seq + 1);
            if ev.seq != seq || seq != expected {
                return Err(LogError::Corrupt {
                    seq,
                    why: format!("old-layout event holds sequence {}", ev.seq),
                });
            }
            chunk.push(ev);
        }
        let Some(first) = chunk.first().map(|e| e.seq) else {
            break;
        };
        let record = wire::encode(&chunk);
        let result: sled::transaction::TransactionResult<(), ()> =
            (tree, &legacy).transaction(|(new, old)| {
                new.insert(&first.to_be_bytes(), record.as_slice())?;
                for ev in &chunk {
                    old.remove(&ev.seq.to_be_bytes())?;
                }
                Ok(())
            });
        result.map_err(|e| LogError::Storage(sled::Error::Unsupported(format!("{e:?}"))))?;
        db.flush()?;
        moved += chunk.len() as u64;
    }
    db.drop_tree(LEGACY_TREE)?;
    db.flush()?;
    if moved > 0 {
        tracing::info!(events = moved, "gate log moved to one record per commit");
    }
    Ok(())
}

/// One write: the events waiting at the head of the queue, or one upload.
enum Unit {
    Events(Vec<GateEvent>, Vec<Ack>),
    Upload(Upload),
    Rebase(u64, u64, RebaseAck),
}

impl Unit {
    fn take(queue: &mut VecDeque<Job>) -> Option<Unit> {
        match queue.front()? {
            Job::Upload(_) | Job::Rebase { .. } => match queue.pop_front() {
                Some(Job::Upload(upload)) => Some(Unit::Upload(upload)),
                Some(Job::Rebase {
                    from,
                    hub_next,
                    ack,
                }) => Some(Unit::Rebase(from, hub_next, ack)),
                _ => None,
            },
            Job::Event(..) => {
                let (mut events, mut acks) = (Vec::new(), Vec::new());
                while events.len() < BATCH_MAX && matches!(queue.front(), Some(Job::Event(..))) {
                    if let Some(Job::Event(ev, ack)) = queue.pop_front() {
                        events.push(ev);
                        acks.push(ack);
                    }
                }
                Some(Unit::Events(events, acks))
            }
        }
    }

    /// How many queue places it held.
    fn jobs(&self) -> usize {
        match self {
            Unit::Events(_, acks) => acks.len(),
            Unit::Upload(_) | Unit::Rebase(..) => 1,
        }
    }
}

/// The answers a unit's callers get once it is written (or has failed).
enum Answers {
    Events(Vec<Ack>, Result<Vec<(u64, u64)>, sled::Error>),
    Upload(UploadAck, Result<(u64, u32), sled::Error>),
    Rebase(RebaseAck, Result<u64, sled::Error>),
}

impl Answers {
    fn send(self) {
        match self {
            Answers::Events(acks, Ok(assigned)) => {
                for (ack, st) in acks.into_iter().zip(assigned) {
                    let _ = ack.send(Ok(st));
                }
            }
            Answers::Events(acks, Err(why)) => {
                for ack in acks {
                    let _ = ack.send(Err(why.clone()));
                }
            }
            Answers::Upload(ack, r) => {
                let _ = ack.send(r);
            }
            Answers::Rebase(ack, r) => {
                let _ = ack.send(r);
            }
        }
    }
}

/// Writes units until the queue is empty. Sequence numbers advance only when a write and
/// its flush succeeded, so a failed write's record is replaced by the next one (same key).
async fn commit_task(shared: Arc<Shared>) {
    let mut held = Some(shared);
    while let Some(shared) = held.take() {
        for _ in 0..JOIN_YIELDS {
            tokio::task::yield_now().await;
        }
        let (unit, next_seq, last_time) = {
            let mut st = shared.state.lock().expect("gate log state lock");
            match Unit::take(&mut st.queue) {
                Some(unit) => (unit, st.next_seq, st.last_time),
                None => {
                    st.committing = false;
                    return;
                }
            }
        };
        let jobs = unit.jobs();
        let (answers, advanced) = match unit {
            Unit::Events(events, acks) => {
                match shared.write_events(events, next_seq, last_time).await {
                    Ok((assigned, next)) => (Answers::Events(acks, Ok(assigned)), Some(next)),
                    Err(why) => (Answers::Events(acks, Err(why)), None),
                }
            }
            Unit::Upload(Upload {
                gate,
                events,
                now_ms,
                ack,
            }) => match shared
                .write_upload(&gate, events, now_ms, next_seq, last_time)
                .await
            {
                Ok((r, advanced)) => (Answers::Upload(ack, Ok(r)), advanced),
                Err(why) => (Answers::Upload(ack, Err(why)), None),
            },
            Unit::Rebase(from, hub_next, ack) => {
                match shared.write_rebase(from, hub_next, next_seq).await {
                    Ok((moved, next)) => (
                        Answers::Rebase(ack, Ok(moved)),
                        next.map(|n| (n, last_time)),
                    ),
                    Err(why) => (Answers::Rebase(ack, Err(why)), None),
                }
            }
        };
        let idle = {
            let mut st = shared.state.lock().expect("gate log state lock");
            if let Some((seq, time)) = advanced {
                st.next_seq = seq;
                st.last_time = time;
                shared.count.store(seq - 1, Ordering::Release);
            }
            st.committing = !st.queue.is_empty();
            !st.committing
        };
        shared.room.add_permits(jobs);
        if !idle {
            held = Some(shared);
        }
        // Let go of the database (when idle) before anyone learns their event is stored.
        answers.send();
    }
}

impl Shared {
    /// Numbers the events, writes them as one record and flushes. Returns each one's
    /// `(seq, time_ms)` and the next `(seq, last time)`.
    async fn write_events(
        &self,
        mut events: Vec<GateEvent>,
        first: u64,
        mut last_time: u64,
    ) -> Result<(Vec<(u64, u64)>, (u64, u64)), sled::Error> {
        let mut assigned = Vec::with_capacity(events.len());
        for (ev, seq) in events.iter_mut().zip(first..) {
            ev.seq = seq;
            ev.time_ms = ev.time_ms.max(last_time);
            last_time = ev.time_ms;
            assigned.push((seq, ev.time_ms));
        }
        let next = first + events.len() as u64;
        let written = match self.tree.insert(first.to_be_bytes(), wire::encode(&events)) {
            Ok(_) => self.tree.flush_async().await.map(|_| ()),
            Err(e) => Err(e),
        };
        written.inspect_err(|e| {
            tracing::error!(error = %e, events = events.len(), "gate log write failed; checks refused as unlogged");
        })?;
        Ok((assigned, (next, last_time)))
    }

    /// Renumbers the events from `from` on consecutively from `hub_next` in one
    /// transaction, then flushes. Returns how many moved and the next sequence number to assign, if it changed.
    async fn write_rebase(
        &self,
        from: u64,
        hub_next: u64,
        next_seq: u64,
    ) -> Result<(u64, Option<u64>), sled::Error> {
        if from >= hub_next || from > next_seq {
            return Ok((0, None));
        }
        let start = match self.tree.range(..=from.to_be_bytes()).next_back() {
            Some(item) => item?.0,
            None => sled::IVec::from(&from.to_be_bytes()),
        };
        // (old key, events kept under it, events moved)
        let mut records: Vec<(sled::IVec, Vec<GateEvent>, Vec<GateEvent>)> = Vec::new();
        // Consecutive from `hub_next`, closing any gap an earlier renumbering left.
        let mut seq = hub_next;
        for item in self.tree.range(start..) {
            let (k, v) = item?;
            let first = seq_of(&k).map_err(|e| sled::Error::Unsupported(e.to_string()))?;
            let events =
                decode_record(first, &v).map_err(|e| sled::Error::Unsupported(e.to_string()))?;
            let (keep, mut moved): (Vec<_>, Vec<_>) =
                events.into_iter().partition(|e| e.seq < from);
            for e in &mut moved {
                e.seq = seq;
                seq += 1;
            }
            records.push((k, keep, moved));
        }
        let moved: u64 = records.iter().map(|r| r.2.len() as u64).sum();
        let result: sled::transaction::TransactionResult<(), ()> = self.tree.transaction(|t| {
            // Every old key goes first: a new key may be an old one (the numbers overlap).
            for (k, _, _) in &records {
                t.remove(k)?;
            }
            for (k, keep, mv) in &records {
                if !keep.is_empty() {
                    t.insert(k, wire::encode(keep))?;
                }
                if let Some(first) = mv.first() {
                    t.insert(&first.seq.to_be_bytes(), wire::encode(mv))?;
                }
            }
            Ok(())
        });
        match result {
            Ok(()) => {}
            Err(sled::transaction::TransactionError::Storage(e)) => return Err(e),
            Err(sled::transaction::TransactionError::Abort(())) => {
                unreachable!("the rebase transaction never aborts")
            }
        }
        self.tree.flush_async().await?;
        tracing::warn!(
            from,
            to = hub_next,
            events = moved,
            "gate log renumbered after the hub's events: this node was restored from an older backup"
        );
        Ok((moved, Some(seq)))
    }

    /// Stores an upload's new events and the gate's cursor in one transaction, then flushes.
    async fn write_upload(
        &self,
        gate: &str,
        events: Vec<OfflineEvent>,
        now_ms: u64,
        first: u64,
        last_time: u64,
    ) -> Result<((u64, u32), Option<(u64, u64)>), sled::Error> {
        let key = cursor_key(gate, events.first().map_or(0, |e| e.cache));
        let cursor = cursor_of(self.cursors.get(&key)?.as_deref());
        let mut fresh: Vec<GateEvent> = Vec::new();
        let mut upto = cursor;
        let (mut seq, mut last_time) = (first, last_time);
        for e in events.into_iter().filter(|e| e.gate_seq > cursor) {
            let mut ev = e.event;
            ev.seq = seq;
            ev.gate = gate.to_string();
            ev.time_ms = now_ms.max(last_time);
            last_time = ev.time_ms;
            seq += 1;
            upto = e.gate_seq;
            fresh.push(ev);
        }
        if fresh.is_empty() {
            return Ok(((cursor, 0), None));
        }
        let record = wire::encode(&fresh);
        let result: sled::transaction::TransactionResult<(), ()> = (&self.tree, &self.cursors)
            .transaction(|(log, cursors)| {
                log.insert(&first.to_be_bytes(), record.as_slice())?;
                cursors.insert(key.as_slice(), &upto.to_be_bytes())?;
                Ok(())
            });
        let written = match result {
            Ok(()) => self.db.flush_async().await.map(|_| ()),
            Err(sled::transaction::TransactionError::Storage(e)) => Err(e),
            Err(sled::transaction::TransactionError::Abort(())) => {
                unreachable!("the upload transaction never aborts")
            }
        };
        written.inspect_err(|e| tracing::error!(error = %e, gate, "offline events not stored"))?;
        Ok(((upto, fresh.len() as u32), Some((seq, last_time))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::gate_event as event;

    fn seqs(log: &GateLog, q: LogQuery) -> Vec<u64> {
        let q = LogQuery {
            limit: if q.limit == 0 { 100 } else { q.limit },
            ..q
        };
        log.query(&q).unwrap().iter().map(|e| e.seq).collect()
    }

    /// A log made before its first acknowledgement from the hub was kept (a backup taken
    /// just then) had no mark at all, which the uplink took for a log from before marks
    /// were kept and trusted the hub's cursor: the hub then compared none of the events a
    /// restored node logged under numbers it held, and they were lost (seen as
    /// `every event at the hub` timing out in node/harness/tests/restore.rs under load).
    /// A new log's mark is 0 from the start.
    #[tokio::test]
    async fn a_new_log_has_a_verified_mark_of_zero_before_any_acknowledgement() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = menjin_store::db::open(dir.path()).unwrap();
            let log = GateLog::open(&db).unwrap();
            assert_eq!(log.hub_verified().unwrap(), Some(0));
            log.append(event("a", 10)).await.unwrap();
        }
        let db = menjin_store::db::open(dir.path()).unwrap();
        let log = GateLog::open(&db).unwrap();
        assert_eq!(
            log.hub_verified().unwrap(),
            Some(0),
            "kept with the first event's flush"
        );
    }

    #[tokio::test]
    async fn a_rebase_numbers_events_after_the_hubs_and_later_ones_after_them() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = menjin_store::db::open(dir.path()).unwrap();
            let log = GateLog::open(&db).unwrap();
            for t in 1..=5 {
                log.append(event("a", t * 10)).await.unwrap();
            }
            // The hub holds other events under 3 to 7: this log's from 3 on go after them.
            assert_eq!(log.rebase(3, 8).await.unwrap(), 3);
            assert_eq!(log.len(), 10);
            assert_eq!(seqs(&log, LogQuery::default()), vec![1, 2, 8, 9, 10]);
            assert_eq!(log.append(event("a", 60)).await.unwrap(), (11, 60));
            // A second conflict, inside the moved ones: 9 and after go after the hub's 12.
            assert_eq!(log.rebase(9, 13).await.unwrap(), 3);
            assert_eq!(seqs(&log, LogQuery::default()), vec![1, 2, 8, 13, 14, 15]);
            // Nothing to move, only numbers to skip; and nothing at all.
            assert_eq!(log.rebase(16, 20).await.unwrap(), 0);
            assert_eq!(log.rebase(30, 20).await.unwrap(), 0);
            assert_eq!(log.append(event("a", 70)).await.unwrap(), (20, 70));
        }
        let db = menjin_store::db::open(dir.path()).unwrap();
        let log = GateLog::open(&db).unwrap();
        assert_eq!(log.len(), 20, "the numbering survives reopening");
        assert_eq!(
            seqs(&log, LogQuery::default()),
            vec![1, 2, 8, 13, 14, 15, 20]
        );
        let from_30 = LogQuery {
            from_ms: Some(30),
            ..LogQuery::default()
        };
        assert_eq!(
            seqs(&log, from_30),
            vec![8, 13, 14, 15, 20],
            "times over gaps"
        );
        let after_2 = LogQuery {
            after_seq: Some(2),
            limit: 1,
            ..LogQuery::default()
        };
        assert_eq!(seqs(&log, after_2), vec![8]);
    }

    #[tokio::test]
    async fn events_get_sequence_numbers_and_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = menjin_store::db::open(dir.path()).unwrap();
            let log = GateLog::open(&db).unwrap();
            assert_eq!(log.append(event("a", 100)).await.unwrap(), (1, 100));
            // A clock that steps back does not break time order.
            assert_eq!(log.append(event("b", 90)).await.unwrap(), (2, 100));
            assert_eq!(log.append(event("a", 300)).await.unwrap(), (3, 300));
        }
        let db = menjin_store::db::open(dir.path()).unwrap();
        let log = GateLog::open(&db).unwrap();
        assert_eq!(log.len(), 3);
        assert_eq!(log.append(event("c", 400)).await.unwrap(), (4, 400));
        let all = log
            .query(&LogQuery {
                limit: 100,
                ..Default::default()
            })
            .unwrap();
        assert_eq!(
            all.iter().map(|e| e.seq).collect::<Vec<_>>(),
            vec![1, 2, 3, 4]
        );
        let by_time = log
            .query(&LogQuery {
                from_ms: Some(101),
                until_ms: Some(300),
                limit: 100,
                ..Default::default()
            })
            .unwrap();
        assert_eq!(by_time.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![3]);
        let by_gate = log
            .query(&LogQuery {
                gate: Some("a".into()),
                limit: 100,
                ..Default::default()
            })
            .unwrap();
        assert_eq!(
            by_gate.iter().map(|e| e.seq).collect::<Vec<_>>(),
            vec![1, 3]
        );
        let paged = log
            .query(&LogQuery {
                after_seq: Some(2),
                limit: 1,
                ..Default::default()
            })
            .unwrap();
        assert_eq!(paged.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![3]);
    }

    fn offline(gate_seq: u64) -> OfflineEvent {
        let mut e = event("forged-name", 5);
        e.offline = Some(menjin_proto::wire::OfflineMark {
            gate_seq,
            decided_ms: 5,
            degraded: false,
        });
        OfflineEvent {
            cache: 0,
            gate_seq,
            event: e,
        }
    }

    fn offline_of(cache: u64, gate_seq: u64) -> OfflineEvent {
        OfflineEvent {
            cache,
            ..offline(gate_seq)
        }
    }

    #[tokio::test]
    async fn offline_uploads_are_stored_once_per_gate_seq_and_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = menjin_store::db::open(dir.path()).unwrap();
            let log = GateLog::open(&db).unwrap();
            log.append(event("a", 100)).await.unwrap();
            let up = log
                .append_offline("g1", vec![offline(1), offline(2)], 200)
                .await;
            assert_eq!(up.unwrap(), (2, 2));
            // Resent (the answer was lost), with one more: only the new one is stored.
            let up = log.append_offline("g1", vec![offline(1), offline(2), offline(3)], 300);
            assert_eq!(up.await.unwrap(), (3, 1));
            // Another gate has its own cursor.
            assert_eq!(
                log.append_offline("g2", vec![offline(1)], 300)
                    .await
                    .unwrap(),
                (1, 1)
            );
            // Out of order or unmarked: refused whole.
            assert!(matches!(
                log.append_offline("g1", vec![offline(5), offline(4)], 300)
                    .await,
                Err(UploadError::Order(4, 5))
            ));
            let mut unmarked = offline(9);
            unmarked.event.offline = None;
            assert!(matches!(
                log.append_offline("g1", vec![unmarked], 300).await,
                Err(UploadError::NotOffline(9))
            ));
        }
        let db = menjin_store::db::open(dir.path()).unwrap();
        let log = GateLog::open(&db).unwrap();
        assert_eq!(log.len(), 5);
        assert_eq!(log.upload_cursor("g1", 0).unwrap(), 3);
        // The gate's cache was reset: its new incarnation counts from 1 again and has its own
        // cursor, so nothing of it is taken for what is stored.
        assert_eq!(
            log.append_offline("g1", vec![offline_of(7, 1), offline_of(7, 2)], 400)
                .await
                .unwrap(),
            (2, 2)
        );
        assert!(matches!(
            log.append_offline("g1", vec![offline_of(7, 3), offline_of(8, 4)], 400)
                .await,
            Err(UploadError::MixedCaches(4))
        ));
        assert_eq!(log.upload_cursor("g1", 0).unwrap(), 3);
        assert_eq!(log.upload_cursor("g1", 7).unwrap(), 2);
        assert_eq!(
            log.append_offline("g1", vec![offline(3)], 400)
                .await
                .unwrap(),
            (3, 0)
        );
        let all = log
            .query(&LogQuery {
                limit: 100,
                ..Default::default()
            })
            .unwrap();
        // The gate's name comes from the connection, not the event; times stay in order.
        assert_eq!(all.iter().filter(|e| e.gate == "g1").count(), 5);
        assert!(all.iter().all(|e| e.gate != "forged-name"));
        assert!(all.windows(2).all(|w| w[0].time_ms <= w[1].time_ms));
    }

    #[tokio::test]
    async fn concurrent_appends_get_distinct_sequence_numbers() {
        let dir = tempfile::tempdir().unwrap();
        let db = menjin_store::db::open(dir.path()).unwrap();
        let log = GateLog::open(&db).unwrap();
        let tasks: Vec<_> = (0..200)
            .map(|i| {
                let log = log.clone();
                tokio::spawn(async move { log.append(event("g", i)).await.unwrap().0 })
            })
            .collect();
        let mut seqs = Vec::new();
        for t in tasks {
            seqs.push(t.await.unwrap());
        }
        seqs.sort_unstable();
        assert_eq!(seqs, (1..=200).collect::<Vec<_>>());
        // Group commit: the events waiting together went into a few records, not 200.
        let records = db.open_tree(TREE).unwrap().len();
        assert!(records < 20, "{records} records for 200 events");
    }

    /// Appends events with these times at once, so that they share records.
    async fn append_together(log: &GateLog, times: &[u64]) {
        let tasks: Vec<_> = times
            .iter()
            .map(|&t| {
                let log = log.clone();
                tokio::spawn(async move { log.append(event(&format!("g{}", t % 3), t)).await })
            })
            .collect();
        for t in tasks {
            t.await.unwrap().unwrap();
        }
    }

    #[tokio::test]
    async fn queries_find_events_inside_records() {
        let dir = tempfile::tempdir().unwrap();
        let db = menjin_store::db::open(dir.path()).unwrap();
        let log = GateLog::open(&db).unwrap();
        append_together(&log, &(0..50).map(|i| 1_000 + i * 10).collect::<Vec<_>>()).await;
        log.append(event("g0", 2_000)).await.unwrap();
        append_together(&log, &(0..50).map(|i| 3_000 + i * 10).collect::<Vec<_>>()).await;
        assert_eq!(log.len(), 101);
        let q = |q: LogQuery| {
            log.query(&LogQuery { limit: 500, ..q })
                .unwrap()
                .iter()
                .map(|e| e.seq)
                .collect::<Vec<_>>()
        };
        // A time range that starts and ends inside records.
        assert_eq!(
            q(LogQuery {
                from_ms: Some(1_205),
                until_ms: Some(3_020),
                ..Default::default()
            }),
            (22..=54).collect::<Vec<_>>()
        );
        // Paging from the middle of a record, and a page limit that ends inside one.
        let page = log
            .query(&LogQuery {
                after_seq: Some(10),
                limit: 3,
                ..Default::default()
            })
            .unwrap();
        assert_eq!(
            page.iter().map(|e| e.seq).collect::<Vec<_>>(),
            vec![11, 12, 13]
        );
        // A gate filter across records (17 of each 50 are g1); times before everything and after everything.
        assert_eq!(
            q(LogQuery {
                gate: Some("g1".into()),
                ..Default::default()
            })
            .len(),
            34
        );
        assert_eq!(
            q(LogQuery {
                from_ms: Some(0),
                ..Default::default()
            })
            .len(),
            101
        );
        assert!(
            q(LogQuery {
                from_ms: Some(9_999),
                ..Default::default()
            })
            .is_empty()
        );
        assert_eq!(
            q(LogQuery {
                from_ms: Some(2_000),
                until_ms: Some(2_000),
                ..Default::default()
            }),
            vec![51]
        );
    }

    #[tokio::test]
    async fn a_log_of_the_old_layout_is_moved_into_records() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = menjin_store::db::open(dir.path()).unwrap();
            let old = db.open_tree(LEGACY_TREE).unwrap();
            for seq in 1..=2_500u64 {
                let mut e = event(if seq % 2 == 0 { "a" } else { "b" }, 100 + seq);
                e.seq = seq;
                old.insert(seq.to_be_bytes(), wire::encode(&e)).unwrap();
            }
            db.flush().unwrap();
        }
        let db = menjin_store::db::open(dir.path()).unwrap();
        let log = GateLog::open(&db).unwrap();
        assert!(
            !db.tree_names()
                .iter()
                .any(|n| n.as_ref() == LEGACY_TREE.as_bytes())
        );
        assert_eq!(log.len(), 2_500);
        assert_eq!(
            db.open_tree(TREE).unwrap().len(),
            3,
            "chunks of at most {BATCH_MAX}"
        );
        let from = log
            .query(&LogQuery {
                from_ms: Some(100 + 1_500),
                limit: 2,
                ..Default::default()
            })
            .unwrap();
        assert_eq!(
            from.iter().map(|e| e.seq).collect::<Vec<_>>(),
            vec![1_500, 1_501]
        );
        assert_eq!(log.append(event("c", 5_000)).await.unwrap(), (2_501, 5_000));
    }

    #[tokio::test]
    async fn a_corrupt_record_is_reported_not_served() {
        let dir = tempfile::tempdir().unwrap();
        let db = menjin_store::db::open(dir.path()).unwrap();
        {
            let log = GateLog::open(&db).unwrap();
            log.append(event("a", 100)).await.unwrap();
        }
        // A record whose event does not carry the record's sequence number.
        let mut e = event("a", 200);
        e.seq = 7;
        db.open_tree(TREE)
            .unwrap()
            .insert(2u64.to_be_bytes(), wire::encode(&vec![e]))
            .unwrap();
        match GateLog::open(&db) {
            Err(LogError::Corrupt { seq: 2, why }) => assert!(why.contains("sequence 7"), "{why}"),
            Err(e) => panic!("unexpected error {e}"),
            Ok(_) => panic!("opened a log whose last record is corrupt"),
        }
        db.open_tree(TREE)
            .unwrap()
            .insert(2u64.to_be_bytes(), b"garbage".as_slice())
            .unwrap();
        assert!(matches!(
            GateLog::open(&db),
            Err(LogError::Corrupt { seq: 2, .. })
        ));
    }
}
