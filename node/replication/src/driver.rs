//! The tokio side of replication: one [`Replica`] per daemon behind a mutex, its documents in
//! sled ([`SyncStore`]), and the per-link loop that moves its frames over a hub link.
//!
//! Architecture invariant: after every replica event the driver drains `poll_persist` into
//! sled and flushes *before* draining `poll_transmit`, so nothing is sent (and so nothing is
//! acknowledged to a peer) that is not on disk. Gate checks never read the replica.

use std::sync::{Arc, Mutex};

use menjin_proto::record::{CredRecord, CredStatus, PersonRecord};
use menjin_proto::{CommunityId, SignedCode, UnixTime};
use menjin_sync::{
    CodeEntry, CodeStatus, Config, DocId, Replica, Role, RosterBatch, RosterEntry, SyncError,
};
use tokio::sync::watch;

use crate::syncstore::{StoreError, SyncStore};

/// Why a replica operation failed. Nothing was sent; a write may be retried.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReplicationError {
    /// sled failed or a stored sync record is corrupt.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The replica refused the change (a document this role does not write, a stale epoch, ...).
    #[error("replica write refused: {0}")]
    Write(#[from] menjin_sync::WriteError),
}

/// A daemon's replica (node or hub) with its sled store, shared by the links and the code that
/// writes documents. Every change through it is flushed before the links may send it.
pub struct Replication {
    me: Role,
    replica: Mutex<Replica>,
    store: SyncStore,
    /// Bumped after every event that may have given the replica something to send.
    changed: watch::Sender<u64>,
}

/// A replica opened from sled with only its district policy loaded: what a node needs
/// before it answers gates (the lockdown), in a fraction of the time the rosters take.
/// [`PolicyLoaded::finish`] loads the rest.
pub struct PolicyLoaded {
    me: Role,
    store: SyncStore,
    replica: Replica,
}

impl PolicyLoaded {
    /// The district policy as stored (empty if none was).
    pub fn policy(&self) -> menjin_sync::PolicyView {
        self.replica.policy()
    }

    /// Loads every other stored document and peer state: the slow part of a start (about
    /// 2 s of CPU for 100,000 residents).
    ///
    /// # Errors
    /// [`ReplicationError`] if sled fails or a record is corrupt.
    pub fn finish(self) -> Result<Arc<Replication>, ReplicationError> {
        let PolicyLoaded {
            me,
            store,
            mut replica,
        } = self;
        let docs = store.load_into(&mut replica)?;
        tracing::debug!(%me, docs, "replica loaded");
        let (changed, _) = watch::channel(0);
        Ok(Arc::new(Replication {
            me,
            replica: Mutex::new(replica),
            store,
            changed,
        }))
    }
}

impl Replication {
    /// Opens the replica of `me` from sled: a new incarnation, every stored document and
    /// sync state.
    ///
    /// # Errors
    /// [`ReplicationError`] if sled fails.
    pub fn open(db: &sled::Db, me: Role) -> Result<Arc<Replication>, ReplicationError> {
        Replication::open_policy(db, me)?.finish()
    }

    /// First step of [`Replication::open`]: a new incarnation (flushed) and the stored
    /// district policy, nothing else.
    ///
    /// # Errors
    /// [`ReplicationError`] if sled fails.
    pub fn open_policy(db: &sled::Db, me: Role) -> Result<PolicyLoaded, ReplicationError> {
        let store = SyncStore::open(db)?;
        let incarnation = store.next_incarnation()?;
        let mut replica = Replica::new(me, incarnation, Config::default());
        let policy = store.load_policy_into(&mut replica)?;
        tracing::debug!(%me, incarnation, policy, "replica opened, district policy loaded");
        Ok(PolicyLoaded { me, store, replica })
    }

    /// Whose replica this is: a node of its community, or the hub.
    pub fn me(&self) -> Role {
        self.me
    }

    /// Runs `f` on the replica, then persists what it asked for (flushed) and wakes the
    /// links.
    fn with<T>(&self, f: impl FnOnce(&mut Replica) -> T) -> Result<T, StoreError> {
        let mut r = self.replica.lock().expect("replica lock");
        let out = f(&mut r);
        let ops: Vec<_> = std::iter::from_fn(|| r.poll_persist()).collect();
        self.store.write(ops)?;
        drop(r);
        self.changed.send_modify(|n| *n += 1);
        Ok(out)
    }

    /// Reads the replica without writing (views, diagnostics).
    pub fn read<T>(&self, f: impl FnOnce(&Replica) -> T) -> T {
        f(&self.replica.lock().expect("replica lock"))
    }

    /// Mirrors a roster change of this node into its replicated roster.
    ///
    /// # Errors
    /// [`ReplicationError`]; the node's own roster (sled) is already committed and stays the
    /// source of truth: the next start reconciles.
    pub fn apply_roster(
        &self,
        community: CommunityId,
        batch: &RosterBatch,
        now: UnixTime,
    ) -> Result<(), ReplicationError> {
        if batch.is_empty() {
            return Ok(());
        }
        self.with(|r| r.apply_roster(community, batch, now))??;
        Ok(())
    }

    /// Writes a district policy change (hub only).
    ///
    /// # Errors
    /// [`ReplicationError`] if the replica refuses it or sled fails.
    pub fn apply_policy(
        &self,
        batch: &menjin_sync::PolicyBatch,
        now: UnixTime,
    ) -> Result<(), ReplicationError> {
        self.with(|r| r.apply_policy(batch, now))??;
        Ok(())
    }

    /// Starts or lifts a community's lockdown in the district policy (hub only); returns the
    /// record written, with its new epoch.
    ///
    /// # Errors
    /// [`ReplicationError`] if the replica refuses it or sled fails.
    pub fn set_lockdown(
        &self,
        community: CommunityId,
        locked: bool,
        reason: &str,
        by: &str,
        now: UnixTime,
    ) -> Result<menjin_sync::Lockdown, ReplicationError> {
        Ok(self.with(|r| r.set_lockdown(community, locked, reason, by, now))??)
    }

    /// Bumped after every change that may have given the replica something to send: a link
    /// waits on it instead of polling.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Starts a session with `peer`; returns its id, for [`Replication::disconnect`].
    pub fn connect(&self, peer: Role, now_ms: u64) -> Result<Option<u64>, StoreError> {
        self.with(|r| {
            if let Err(e) = r.connect(peer, now_ms) {
                tracing::warn!(%peer, error = %e, "no replication with this peer");
            }
            r.session_id(peer)
        })
    }

    /// Ends the session `session` with `peer`, unless a newer link has replaced it (an old
    /// connection that times out after the peer reconnected must not end the new session).
    pub fn disconnect(&self, peer: Role, session: Option<u64>) -> Result<(), StoreError> {
        self.with(|r| {
            if r.session_id(peer) == session {
                r.disconnect(peer);
            }
        })
    }

    /// Applies a frame from `peer`; returns the documents that changed.
    pub fn handle(
        &self,
        peer: Role,
        bytes: &[u8],
        now_ms: u64,
    ) -> Result<Result<Vec<DocId>, SyncError>, StoreError> {
        self.with(|r| r.handle_message(peer, bytes, now_ms))
    }

    /// Advances the replica's timers (summaries, stall detection) at `now_ms` (Unix
    /// milliseconds); call when [`Replication::next_timeout`] has passed.
    ///
    /// # Errors
    /// [`StoreError`] if what the timers produced could not be flushed.
    pub fn timeout(&self, now_ms: u64) -> Result<(), StoreError> {
        self.with(|r| r.handle_timeout(now_ms))
    }

    /// When [`Replication::timeout`] next has something to do (Unix milliseconds); `None`
    /// when no timer is set.
    pub fn next_timeout(&self) -> Option<u64> {
        self.read(Replica::poll_timeout)
    }

    /// Everything the replica has to send `peer` now.
    pub fn transmit(&self, peer: Role, now_ms: u64) -> Vec<Vec<u8>> {
        let mut r = self.replica.lock().expect("replica lock");
        std::iter::from_fn(|| r.poll_transmit(peer, now_ms)).collect()
    }

    /// Heads of every document this replica holds, for convergence checks.
    pub fn heads(&self) -> Vec<(DocId, Vec<menjin_sync::automerge::ChangeHash>)> {
        self.read(|r| {
            let mut docs: Vec<DocId> = r.docs().collect();
            docs.sort();
            docs.into_iter().map(|d| (d, r.heads(d))).collect()
        })
    }
}

/// The roster entry a person record stands for (no ID number: only its keyed hash).
pub fn roster_entry(p: &PersonRecord) -> RosterEntry {
    RosterEntry {
        holder: p.holder,
        id_hash: p.id_hash,
        building: p.form.building.clone(),
        door: p.form.door.clone(),
        kind: p.kind,
        outcome: p.review.outcome,
        cred: p.cred,
        declared_at: p.declared_at,
    }
}

/// The code entry a credential record stands for.
pub fn code_entry(c: &CredRecord) -> CodeEntry {
    let (valid_from, valid_until) = SignedCode::decode(&c.code)
        .map(|s| {
            (
                u64::from(s.credential.valid_from),
                u64::from(s.credential.valid_until),
            )
        })
        .unwrap_or_default();
    let (status, revoked_at) = match &c.status {
        CredStatus::Active => (CodeStatus::Active, None),
        CredStatus::Revoked { at, .. } => (CodeStatus::Revoked, Some(*at)),
        CredStatus::ConsentWithdrawn { at } => (CodeStatus::ConsentWithdrawn, Some(*at)),
    };
    CodeEntry {
        id: c.id,
        holder: c.holder,
        kind: c.kind,
        status,
        valid_from,
        valid_until,
        host: c.visit.as_ref().map(|v| v.host),
        revoked_at,
    }
}

/// Sends `peer` every frame the replica has for it.
///
/// # Errors
/// The link's [`FrameError`](menjin_net::frame::FrameError).
pub async fn send_frames(
    repl: &Replication,
    peer: Role,
    send: &mut quinn::SendStream,
) -> Result<(), menjin_net::frame::FrameError> {
    for frame in repl.transmit(peer, menjin_net::clock::now_ms()) {
        menjin_net::frame::write_frame(send, &menjin_proto::link::LinkFrame::Sync(frame)).await?;
    }
    Ok(())
}

/// Completes when the replica's next timer is due (never, if it has none).
pub async fn next_timer(repl: &Replication) {
    match repl.next_timeout() {
        Some(at) => {
            let wait = at.saturating_sub(menjin_net::clock::now_ms());
            tokio::time::sleep(std::time::Duration::from_millis(wait)).await;
        }
        None => std::future::pending().await,
    }
}

/// Applies a replication frame from `peer`, logging (not merging) refused ones.
///
/// # Errors
/// Only storage failures; a refused frame is logged and the link goes on.
pub fn receive_frame(
    repl: &Replication,
    peer: Role,
    bytes: &[u8],
) -> Result<Vec<DocId>, StoreError> {
    match repl.handle(peer, bytes, menjin_net::clock::now_ms())? {
        Ok(docs) => Ok(docs),
        Err(e) => {
            tracing::warn!(%peer, error = %e, "replication frame refused; nothing merged");
            Ok(Vec::new())
        }
    }
}
