//! The gate log: every check a node answers, in sled tree `gate_log`, keyed by sequence
//! number (big-endian, so sled's order is the log's order).
//!
//! Architecture invariant: an event is flushed to disk before the check that made it is
//! answered. Many gates wait at once at peak hours, so a single writer thread group-commits:
//! it takes every event waiting (up to [`BATCH_MAX`]), writes them in one batch, flushes
//! once, then releases all their answers.
//!
//! Times are made non-decreasing in sequence order, so a time range is found by binary search
//! over sequence numbers instead of a second index.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use menjin_proto::feed::OfflineEvent;
use menjin_proto::wire::{self, GateEvent, LOG_PAGE_MAX, LogQuery};
use sled::Transactional;
use tokio::sync::{mpsc, oneshot};

/// Events written by one flush. Bounds the latency one flush adds to the last event in it.
pub const BATCH_MAX: usize = 1024;
/// Events waiting for the writer; past this, checks wait to enqueue (backpressure).
pub const QUEUE_MAX: usize = 8192;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LogError {
    #[error("gate log storage: {0}")]
    Storage(#[from] sled::Error),
    #[error("gate log writer has stopped")]
    Stopped,
    #[error("gate log record {seq} is corrupt: {why}")]
    Corrupt { seq: u64, why: String },
}

type Ack = oneshot::Sender<Result<(u64, u64), String>>;
type UploadAck = oneshot::Sender<Result<(u64, u32), String>>;

/// What the writer thread is asked to do.
enum Job {
    /// One check, group-committed with the others waiting.
    Event(GateEvent, Ack),
    /// Events a gate decided alone: stored with that gate's cursor in one transaction.
    Upload {
        gate: String,
        events: Vec<OfflineEvent>,
        now_ms: u64,
        ack: UploadAck,
    },
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UploadError {
    #[error("offline events must come in rising gate_seq order ({0} after {1})")]
    Order(u64, u64),
    #[error("offline event {0} is not marked offline")]
    NotOffline(u64),
    #[error(transparent)]
    Log(#[from] LogError),
}

/// The owner of tree `gate_log`.
#[derive(Clone)]
pub struct GateLog {
    tree: sled::Tree,
    /// Gate id → the highest `gate_seq` of its offline events stored (big-endian u64).
    cursors: sled::Tree,
    // Declared before `writer`: when the last clone drops, the last sender goes first, the
    // writer thread sees its queue closed and ends, then `WriterThread::drop` joins it. So
    // once every `GateLog` is gone, no thread holds the database (a node can be reopened
    // in the same process).
    tx: mpsc::Sender<Job>,
    count: Arc<AtomicU64>,
    _writer: Arc<WriterThread>,
}

struct WriterThread(Option<std::thread::JoinHandle<()>>);

impl Drop for WriterThread {
    fn drop(&mut self) {
        if let Some(handle) = self.0.take() {
            let _ = handle.join();
        }
    }
}

impl GateLog {
    /// Opens the log and starts its writer thread, which ends when every `GateLog` clone is
    /// dropped.
    ///
    /// # Errors
    /// [`LogError`] if sled cannot be read or the last record is corrupt.
    pub fn open(db: &sled::Db) -> Result<GateLog, LogError> {
        let tree = db.open_tree("gate_log")?;
        let cursors = db.open_tree("gate_upload_cursor")?;
        let (next_seq, last_time) = match tree.last()? {
            Some((k, v)) => {
                let seq = seq_of(&k);
                let ev = decode_event(seq, &v)?;
                (seq + 1, ev.time_ms)
            }
            None => (1, 0),
        };
        let count = Arc::new(AtomicU64::new(next_seq - 1));
        let (tx, rx) = mpsc::channel(QUEUE_MAX);
        let writer = Writer {
            db: db.clone(),
            tree: tree.clone(),
            cursors: cursors.clone(),
            next_seq,
            last_time,
            count: count.clone(),
        };
        let handle = std::thread::Builder::new()
            .name("gate-log-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| LogError::Storage(sled::Error::Io(e)))?;
        let writer = Arc::new(WriterThread(Some(handle)));
        Ok(GateLog {
            tree,
            cursors,
            tx,
            count,
            _writer: writer,
        })
    }

    /// Appends an event (its `seq` is assigned here) and returns `(seq, time_ms)` once the
    /// event is on disk.
    ///
    /// # Errors
    /// [`LogError`] if the write or the flush failed: the check must then not be answered as
    /// logged.
    pub async fn append(&self, event: GateEvent) -> Result<(u64, u64), LogError> {
        let (ack, done) = oneshot::channel();
        self.tx
            .send(Job::Event(event, ack))
            .await
            .map_err(|_| LogError::Stopped)?;
        match done.await {
            Ok(Ok(seq_time)) => Ok(seq_time),
            Ok(Err(why)) => Err(LogError::Storage(sled::Error::Unsupported(why))),
            Err(_) => Err(LogError::Stopped),
        }
    }

    /// Stores events a gate decided alone, exactly once per (gate, `gate_seq`): those at or
    /// below the gate's cursor are skipped (a resent upload), the rest get sequence numbers,
    /// the gate's name from the authenticated connection, and the node's time of storing
    /// (the decision time stays in their `OfflineMark`). Returns the gate's new cursor and
    /// how many were stored, once on disk.
    ///
    /// # Errors
    /// [`UploadError`]: out of order or unmarked events refuse the whole upload.
    pub async fn append_offline(
        &self,
        gate: &str,
        events: Vec<OfflineEvent>,
        now_ms: u64,
    ) -> Result<(u64, u32), UploadError> {
        let mut last = 0;
        for e in &events {
            if e.gate_seq <= last {
                return Err(UploadError::Order(e.gate_seq, last));
            }
            if e.event.offline.is_none() {
                return Err(UploadError::NotOffline(e.gate_seq));
            }
            last = e.gate_seq;
        }
        let (ack, done) = oneshot::channel();
        self.tx
            .send(Job::Upload {
                gate: gate.to_string(),
                events,
                now_ms,
                ack,
            })
            .await
            .map_err(|_| LogError::Stopped)?;
        match done.await {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(why)) => Err(LogError::Storage(sled::Error::Unsupported(why)).into()),
            Err(_) => Err(LogError::Stopped.into()),
        }
    }

    /// The highest `gate_seq` of this gate's offline events stored here (0: none).
    ///
    /// # Errors
    /// [`LogError`] on a storage error.
    pub fn upload_cursor(&self, gate: &str) -> Result<u64, LogError> {
        Ok(cursor_of(self.cursors.get(gate.as_bytes())?.as_deref()))
    }

    /// Events stored so far (the highest sequence number).
    pub fn len(&self) -> u64 {
        self.count.load(Ordering::Acquire)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn get(&self, seq: u64) -> Result<Option<GateEvent>, LogError> {
        match self.tree.get(seq.to_be_bytes())? {
            Some(v) => decode_event(seq, &v).map(Some),
            None => Ok(None),
        }
    }

    /// The first sequence number whose time is at least `from_ms`.
    fn first_at_or_after(&self, from_ms: u64) -> Result<u64, LogError> {
        let (mut lo, mut hi) = (1u64, self.len() + 1);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.get(mid)? {
                Some(ev) if ev.time_ms < from_ms => lo = mid + 1,
                _ => hi = mid,
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
        let mut out = Vec::new();
        for item in self.tree.range(start.to_be_bytes()..) {
            let (k, v) = item?;
            let ev = decode_event(seq_of(&k), &v)?;
            if q.until_ms.is_some_and(|until| ev.time_ms > until) {
                break;
            }
            if q.gate.as_ref().is_some_and(|g| *g != ev.gate)
                || q.holder.is_some_and(|h| Some(h) != ev.holder)
            {
                continue;
            }
            out.push(ev);
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }
}

fn cursor_of(v: Option<&[u8]>) -> u64 {
    v.and_then(|v| v.try_into().ok())
        .map(u64::from_be_bytes)
        .unwrap_or(0)
}

fn seq_of(key: &[u8]) -> u64 {
    u64::from_be_bytes(key.try_into().expect("gate log keys are 8 bytes"))
}

fn decode_event(seq: u64, bytes: &[u8]) -> Result<GateEvent, LogError> {
    let ev: GateEvent =
        wire::decode(bytes, wire::GATE_REQUEST_LEN_MAX).map_err(|e| LogError::Corrupt {
            seq,
            why: e.to_string(),
        })?;
    if ev.seq != seq {
        return Err(LogError::Corrupt {
            seq,
            why: format!("holds sequence {}", ev.seq),
        });
    }
    Ok(ev)
}

struct Writer {
    db: sled::Db,
    tree: sled::Tree,
    cursors: sled::Tree,
    next_seq: u64,
    last_time: u64,
    count: Arc<AtomicU64>,
}

impl Writer {
    fn run(mut self, mut rx: mpsc::Receiver<Job>) {
        let mut batch = Vec::with_capacity(BATCH_MAX);
        while let Some(first) = rx.blocking_recv() {
            let mut next = Some(first);
            while let Some(job) = next.take() {
                match job {
                    Job::Event(ev, ack) => batch.push((ev, ack)),
                    Job::Upload {
                        gate,
                        events,
                        now_ms,
                        ack,
                    } => {
                        // Keep sequence order: what was queued before goes first.
                        if !batch.is_empty() {
                            self.commit(&mut batch);
                        }
                        let _ = ack.send(self.upload(&gate, events, now_ms));
                    }
                }
                if batch.len() < BATCH_MAX {
                    next = rx.try_recv().ok();
                }
            }
            if !batch.is_empty() {
                self.commit(&mut batch);
            }
        }
    }

    fn upload(
        &mut self,
        gate: &str,
        events: Vec<OfflineEvent>,
        now_ms: u64,
    ) -> Result<(u64, u32), String> {
        let cursor = cursor_of(
            self.cursors
                .get(gate.as_bytes())
                .map_err(|e| e.to_string())?
                .as_deref(),
        );
        let mut fresh: Vec<GateEvent> = Vec::new();
        let mut upto = cursor;
        let (mut seq, mut last_time) = (self.next_seq, self.last_time);
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
            return Ok((cursor, 0));
        }
        let encoded: Vec<(u64, Vec<u8>)> = fresh.iter().map(|e| (e.seq, wire::encode(e))).collect();
        let result: sled::transaction::TransactionResult<(), ()> = (&self.tree, &self.cursors)
            .transaction(|(log, cursors)| {
                for (seq, bytes) in &encoded {
                    log.insert(&seq.to_be_bytes(), bytes.as_slice())?;
                }
                cursors.insert(gate.as_bytes(), &upto.to_be_bytes())?;
                Ok(())
            });
        result
            .map_err(|e| format!("{e:?}"))
            .and_then(|()| self.db.flush().map(|_| ()).map_err(|e| e.to_string()))
            .inspect_err(|e| tracing::error!(error = %e, gate, "offline events not stored"))?;
        self.next_seq = seq;
        self.last_time = last_time;
        self.count.store(seq - 1, Ordering::Release);
        Ok((upto, fresh.len() as u32))
    }

    fn commit(&mut self, batch: &mut Vec<(GateEvent, Ack)>) {
        let mut sled_batch = sled::Batch::default();
        let mut assigned = Vec::with_capacity(batch.len());
        let (mut seq, mut last_time) = (self.next_seq, self.last_time);
        for (ev, _) in batch.iter_mut() {
            ev.seq = seq;
            ev.time_ms = ev.time_ms.max(last_time);
            last_time = ev.time_ms;
            sled_batch.insert(&seq.to_be_bytes(), wire::encode(ev));
            assigned.push((seq, ev.time_ms));
            seq += 1;
        }
        let result = self
            .tree
            .apply_batch(sled_batch)
            .and_then(|()| self.db.flush().map(|_| ()));
        match result {
            Ok(()) => {
                self.next_seq = seq;
                self.last_time = last_time;
                self.count.store(seq - 1, Ordering::Release);
                for ((_, ack), st) in batch.drain(..).zip(assigned) {
                    let _ = ack.send(Ok(st));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, events = batch.len(), "gate log write failed; checks refused as unlogged");
                for (_, ack) in batch.drain(..) {
                    let _ = ack.send(Err(e.to_string()));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use menjin_proto::rule::Reason;
    use menjin_proto::wire::Direction;

    fn event(gate: &str, time_ms: u64) -> GateEvent {
        GateEvent {
            seq: 0,
            time_ms,
            gate: gate.into(),
            direction: Direction::In,
            allowed: true,
            reason: Reason::Ok,
            fever: false,
            temperature_dc: 365,
            cred: None,
            holder: None,
            kind: None,
            plate: None,
            offline: None,
            passback: false,
        }
    }

    #[tokio::test]
    async fn events_get_sequence_numbers_and_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = sled::open(dir.path()).unwrap();
            let log = GateLog::open(&db).unwrap();
            assert_eq!(log.append(event("a", 100)).await.unwrap(), (1, 100));
            // A clock that steps back does not break time order.
            assert_eq!(log.append(event("b", 90)).await.unwrap(), (2, 100));
            assert_eq!(log.append(event("a", 300)).await.unwrap(), (3, 300));
        }
        let db = sled::open(dir.path()).unwrap();
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
        OfflineEvent { gate_seq, event: e }
    }

    #[tokio::test]
    async fn offline_uploads_are_stored_once_per_gate_seq_and_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = sled::open(dir.path()).unwrap();
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
        let db = sled::open(dir.path()).unwrap();
        let log = GateLog::open(&db).unwrap();
        assert_eq!(log.len(), 5);
        assert_eq!(log.upload_cursor("g1").unwrap(), 3);
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
        assert_eq!(all.iter().filter(|e| e.gate == "g1").count(), 3);
        assert!(all.iter().all(|e| e.gate != "forged-name"));
        assert!(all.windows(2).all(|w| w[0].time_ms <= w[1].time_ms));
    }

    #[tokio::test]
    async fn concurrent_appends_get_distinct_sequence_numbers() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
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
    }
}
