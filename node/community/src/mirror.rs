//! The node's replica while it comes up. A node answers gates as soon as its roster view
//! (sled) and the district policy are loaded; its replicated roster (Automerge, about 2 s of
//! CPU at 100,000 residents) loads behind the barrier kept here. Until it is loaded, roster
//! changes committed to sled wait here to be mirrored; the hub link waits for it too.
//!
//! Nothing here weakens "nothing is acknowledged before it is on disk": a queued change is
//! already in sled, with the roster's `mirror-pending` marker set (`Roster::commit`), so a
//! crash before the replica is loaded is repaired at the next start like any other crash
//! between the two. Gate checks never read the replica, loaded or not.

use std::sync::{Arc, Condvar, Mutex};

use menjin_sync::RosterBatch;
use tokio::sync::watch;

use menjin_replication::{Replication, ReplicationError};

/// Roster changes that may wait for the replica to load (each is one console operation,
/// and loading takes seconds). Past this the queue is dropped and the replica is reconciled
/// with sled once loaded, as after a crash: slower, never wrong.
pub const QUEUED_CHANGES_MAX: usize = 1_024;

/// Whether the replica is loaded yet.
enum State {
    Loading {
        queued: Vec<RosterBatch>,
        /// More than [`QUEUED_CHANGES_MAX`] changes came: reconcile from sled instead.
        overflowed: bool,
    },
    Ready(Arc<Replication>),
    /// Shared by every waiter that asks.
    Failed(Arc<ReplicationError>),
}

/// What the loader must bring into the replica before it is declared loaded.
pub enum Backlog {
    /// Nothing committed meanwhile needs mirroring.
    None,
    /// These changes, in commit order.
    Changes(Vec<RosterBatch>),
    /// Too many to keep: compare the whole replica with sled.
    Reconcile,
}

/// The barrier between a node that serves gates and its replica.
pub struct Mirror {
    state: Mutex<State>,
    /// Wakes blocking waiters when the state leaves `Loading`.
    settled: Condvar,
    /// The same for async waiters: `true` once the state left `Loading`.
    settled_async: watch::Sender<bool>,
}

impl Mirror {
    /// A replica still loading.
    pub fn loading() -> Mirror {
        Mirror {
            state: Mutex::new(State::Loading {
                queued: Vec::new(),
                overflowed: false,
            }),
            settled: Condvar::new(),
            settled_async: watch::channel(false).0,
        }
    }

    /// The replica to mirror `batch` into now, with the batch, or `None` if it is still
    /// loading (the batch is queued for the loader) or failed to load (the next start
    /// reconciles from sled).
    pub fn ready_or_queue(&self, batch: RosterBatch) -> Option<(Arc<Replication>, RosterBatch)> {
        let mut state = self.state.lock().expect("mirror lock");
        match &mut *state {
            State::Ready(r) => Some((r.clone(), batch)),
            State::Loading { queued, overflowed } => {
                if !*overflowed {
                    if queued.len() < QUEUED_CHANGES_MAX {
                        queued.push(batch);
                    } else {
                        queued.clear();
                        *overflowed = true;
                        tracing::warn!(
                            changes = QUEUED_CHANGES_MAX,
                            "too many roster changes while the replica loads; it will be reconciled with sled"
                        );
                    }
                }
                None
            }
            State::Failed(_) => None,
        }
    }

    /// The replica if it is loaded; never waits.
    pub fn get(&self) -> Option<Arc<Replication>> {
        match &*self.state.lock().expect("mirror lock") {
            State::Ready(r) => Some(r.clone()),
            _ => None,
        }
    }

    /// Declares the replica loaded (or failed). With the queue locked, `settle` brings the
    /// changes committed meanwhile into it: no commit can mirror into the replica before
    /// those, nor be forgotten between the two.
    pub fn finish(
        &self,
        loaded: Result<Arc<Replication>, ReplicationError>,
        settle: impl FnOnce(&Replication, Backlog),
    ) {
        let mut state = self.state.lock().expect("mirror lock");
        let State::Loading { queued, overflowed } = &mut *state else {
            panic!("replica loaded twice");
        };
        let backlog = match (std::mem::take(queued), *overflowed) {
            (_, true) => Backlog::Reconcile,
            (q, false) if q.is_empty() => Backlog::None,
            (q, false) => Backlog::Changes(q),
        };
        *state = match loaded {
            Ok(r) => {
                settle(&r, backlog);
                State::Ready(r)
            }
            Err(e) => State::Failed(Arc::new(e)),
        };
        drop(state);
        self.settled.notify_all();
        self.settled_async.send_replace(true);
    }

    /// Waits (blocking) until the replica is loaded.
    ///
    /// # Errors
    /// Why it failed to load.
    pub fn wait(&self) -> Result<Arc<Replication>, Arc<ReplicationError>> {
        let state = self.state.lock().expect("mirror lock");
        let state = self
            .settled
            .wait_while(state, |s| matches!(s, State::Loading { .. }))
            .expect("mirror lock");
        match &*state {
            State::Ready(r) => Ok(r.clone()),
            State::Failed(e) => Err(e.clone()),
            State::Loading { .. } => unreachable!("waited while loading"),
        }
    }

    /// Waits until the replica is loaded.
    ///
    /// # Errors
    /// Why it failed to load.
    pub async fn loaded(&self) -> Result<Arc<Replication>, Arc<ReplicationError>> {
        let mut rx = self.settled_async.subscribe();
        // The sender lives in `self`, so the channel cannot close while we wait.
        let _ = rx.wait_for(|settled| *settled).await;
        match &*self.state.lock().expect("mirror lock") {
            State::Ready(r) => Ok(r.clone()),
            State::Failed(e) => Err(e.clone()),
            State::Loading { .. } => unreachable!("settled while loading"),
        }
    }
}
