//! The tokio side of replication: one [`Replica`] per daemon behind a mutex, its documents in
//! sled ([`SyncStore`]), and the per-link loop that moves its frames over a hub link.
//!
//! Architecture invariant: after every replica event the driver drains `poll_persist` into
//! sled and flushes *before* draining `poll_transmit`, so nothing is sent (and so nothing is
//! acknowledged to a peer) that is not on disk. Gate checks never read the replica.
//!
//! Architecture invariant: a panic inside the replica never poisons its lock. Every call
//! catches it under the guard (`Replication::run`); one that came from a peer's frames
//! ends that peer's session and link ([`PeerPanicked`]), the other links go on.

use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
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

/// A call into the replica panicked while it processed `peer`'s frame or built frames for
/// it. The panic was caught with the replica lock still held (the lock is not poisoned),
/// that peer's session was ended, and its link must close: the peer reconnects to a fresh
/// session. Every other peer goes on.
#[derive(Debug, thiserror::Error)]
#[error("replication with {peer} panicked while {during}: {panic}; its session was ended")]
pub struct PeerPanicked {
    /// The peer whose session was ended.
    pub peer: Role,
    /// What the replica was doing: `"handling a frame"` or `"building frames"`.
    pub during: &'static str,
    /// The panic's message.
    pub panic: String,
}

/// Why one step of a link (a frame in, frames out) failed; the link closes. Exhaustive on
/// purpose: the daemons map each case onto their own link error.
#[derive(Debug, thiserror::Error)]
pub enum LinkStepError {
    /// sled failed or a stored sync record is corrupt.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The connection failed while frames were sent.
    #[error(transparent)]
    Frame(#[from] menjin_net::frame::FrameError),
    /// The replica panicked on this peer's input or output; its session was ended.
    #[error(transparent)]
    Panicked(#[from] PeerPanicked),
}

/// A daemon's replica (node or hub) with its sled store, shared by the links and the code that
/// writes documents. Every change through it is flushed before the links may send it.
pub struct Replication {
    me: Role,
    replica: Mutex<Replica>,
    store: SyncStore,
    /// Bumped after every event that may have given the replica something to send.
    changed: watch::Sender<u64>,
    /// Per peer, bumped only when that peer has something to be sent: a hub's change for
    /// one community wakes that community's link alone, not all of the district's.
    peer_changed: Mutex<std::collections::HashMap<Role, watch::Sender<u64>>>,
    /// When each warm roster shard was last needed (decoded for a frame or a reader, or
    /// changed): [`Replication::cool_idle`] drops the decoded form of those idle longest.
    used: Mutex<std::collections::HashMap<DocId, std::time::Instant>>,
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
        // A hub holds every community's roster: cold until a node's frame needs one (200
        // communities of 30,000 residents would take minutes to decode and gigabytes to hold).
        if me == Role::Hub {
            let (cold, docs) = store.load_cold_into(&mut replica)?;
            tracing::debug!(%me, cold, docs, "replica loaded, roster shards cold");
        } else {
            let docs = store.load_into(&mut replica)?;
            tracing::debug!(%me, docs, "replica loaded");
        }
        let (changed, _) = watch::channel(0);
        Ok(Arc::new(Replication {
            me,
            replica: Mutex::new(replica),
            store,
            changed,
            peer_changed: Mutex::default(),
            used: Mutex::default(),
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

    /// Runs `f` on the replica under its lock and catches a panic in it *before* the guard
    /// drops, so a panic never poisons the lock and never takes every link down with it.
    ///
    /// Why catch under the guard rather than recover a poisoned lock later
    /// (`PoisonError::into_inner`): a poisoned lock says nothing about what the panic left
    /// half done, while here we still know whose input or output it was. For a `peer` call,
    /// the replica's per-peer state for that peer is thrown away ([`Replica::disconnect`]
    /// keeps only the shared heads, which Automerge sets after a successful merge), which is
    /// all that Automerge's message building (`&Automerge`, `&mut State`) can have touched;
    /// the other peers' sessions and the documents are as before. Without a peer (local
    /// writes, views, timers: our own code, not a peer's bytes) the panic is re-raised after
    /// the guard was released normally: the caller's task fails, the lock stays usable.
    fn run<T>(
        &self,
        peer: Option<(Role, &'static str)>,
        f: impl FnOnce(&mut Replica) -> T,
    ) -> Result<T, PeerPanicked> {
        let mut r = self
            .replica
            .lock()
            .expect("replica lock: never poisoned, every call catches panics under the guard");
        let panic = match catch_unwind(AssertUnwindSafe(|| f(&mut r))) {
            Ok(out) => return Ok(out),
            Err(panic) => panic,
        };
        let Some((peer, during)) = peer else {
            drop(r);
            resume_unwind(panic);
        };
        let panic = panic_text(panic.as_ref());
        tracing::error!(%peer, during, panic, "replica panicked on a peer's frames; ending that peer's session");
        if catch_unwind(AssertUnwindSafe(|| r.disconnect(peer))).is_err() {
            // Not even the session can be dropped: nothing is known to be coherent any more.
            drop(r);
            panic!("replica panicked twice on {peer}'s frames: {panic}");
        }
        drop(r);
        self.changed.send_modify(|n| *n += 1);
        self.wake(&[peer]);
        Err(PeerPanicked {
            peer,
            during,
            panic,
        })
    }

    /// Runs `f` on the replica (see [`Replication::run`]), then persists what it asked for
    /// (flushed) and wakes the links.
    fn with_peer<T>(
        &self,
        peer: Option<(Role, &'static str)>,
        f: impl FnOnce(&mut Replica) -> T,
    ) -> Result<Result<T, StoreError>, PeerPanicked> {
        // sled is written under the lock: no other link may send what is not yet on disk.
        let (out, woken) = self.run(peer, |r| {
            let out = f(r);
            let ops: Vec<_> = std::iter::from_fn(|| r.poll_persist()).collect();
            (self.store.write(ops).map(|()| out), r.peers_with_output())
        })?;
        self.changed.send_modify(|n| *n += 1);
        self.wake(&woken);
        Ok(out)
    }

    /// Wakes the links of `peers` (those subscribed with [`Replication::subscribe_peer`]).
    fn wake(&self, peers: &[Role]) {
        if peers.is_empty() {
            return;
        }
        let wakers = self.peer_changed.lock().expect("peer wakers lock");
        for p in peers {
            if let Some(w) = wakers.get(p) {
                w.send_modify(|n| *n += 1);
            }
        }
    }

    /// Bumped only when `peer` has something to be sent (a change of a document it shares,
    /// a reply, a probe): what a hub's link to one node waits on.
    pub fn subscribe_peer(&self, peer: Role) -> watch::Receiver<u64> {
        self.peer_changed
            .lock()
            .expect("peer wakers lock")
            .entry(peer)
            .or_insert_with(|| watch::channel(0).0)
            .subscribe()
    }

    /// [`Replication::with_peer`] for our own calls, whose panics are re-raised.
    fn with<T>(&self, f: impl FnOnce(&mut Replica) -> T) -> Result<T, StoreError> {
        match self.with_peer(None, f) {
            Ok(out) => out,
            Err(e) => unreachable!("a call without a peer re-raises its panic: {e}"),
        }
    }

    /// Reads the replica without writing (views, diagnostics).
    pub fn read<T>(&self, f: impl FnOnce(&Replica) -> T) -> T {
        match self.run(None, |r| f(r)) {
            Ok(out) => out,
            Err(e) => unreachable!("a call without a peer re-raises its panic: {e}"),
        }
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

    /// Moves lockdowns and health flags written before the per-community split from the
    /// district document into the community documents (hub only, at start); returns how
    /// many moved and the flags `route` could place nowhere.
    ///
    /// # Errors
    /// [`ReplicationError`] if the replica refuses it or sled fails.
    pub fn migrate_policy(
        &self,
        route: impl Fn(&menjin_proto::idnum::IdHash) -> Vec<CommunityId>,
        now: UnixTime,
    ) -> Result<(usize, Vec<menjin_sync::HealthFlag>), ReplicationError> {
        Ok(self.with(|r| r.migrate_policy(route, now))??)
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
    ///
    /// # Errors
    /// [`LinkStepError::Store`] if sled fails, [`LinkStepError::Panicked`] if the replica
    /// panicked on the frame (that peer's session is ended; close its link). The inner
    /// [`SyncError`] is a refused frame: nothing merged, the link goes on.
    pub fn handle(
        &self,
        peer: Role,
        bytes: &[u8],
        now_ms: u64,
    ) -> Result<Result<Vec<DocId>, SyncError>, LinkStepError> {
        // At most twice: a frame needs its cold shards decoded once (decoded outside the
        // lock, so other links go on meanwhile); a shard cooled again in between is rare.
        for _ in 0..3 {
            let out = self.with_peer(Some((peer, "handling a frame")), |r| {
                r.handle_message(peer, bytes, now_ms)
            })??;
            match out {
                Err(SyncError::NeedsLoad(docs)) => self.warm(&docs)?,
                Ok(changed) => {
                    self.touch_used(&changed);
                    return Ok(Ok(changed));
                }
                other => return Ok(other),
            }
        }
        Ok(Err(SyncError::NeedsLoad(Vec::new())))
    }

    /// Decodes cold roster shards (outside the replica's lock) and puts them in. Shards
    /// that fail to decode stay cold and are reported.
    ///
    /// # Errors
    /// [`StoreError`] if sled fails.
    pub fn warm(&self, docs: &[DocId]) -> Result<(), StoreError> {
        if docs.is_empty() {
            return Ok(());
        }
        let decoded = self.store.decode(docs)?;
        self.run(None, |r| {
            for (doc, d) in decoded {
                if !r.is_cold(doc) {
                    continue;
                }
                match d.and_then(|d| r.insert_doc(doc, d)) {
                    Ok(()) => tracing::debug!(%doc, "cold roster shard decoded"),
                    Err(e) => tracing::error!(%doc, error = %e, "cold roster shard not decoded"),
                }
            }
        })
        .unwrap_or_else(|e| unreachable!("a call without a peer re-raises its panic: {e}"));
        self.touch_used(docs);
        Ok(())
    }

    /// Decodes the cold shards of `community` (or of every community), for a reader that
    /// needs the roster whole.
    ///
    /// # Errors
    /// [`StoreError`] if sled fails.
    pub fn warm_roster(&self, community: Option<CommunityId>) -> Result<(), StoreError> {
        let cold = self.read(|r| r.cold_docs(community));
        self.warm(&cold)
    }

    fn touch_used(&self, docs: &[DocId]) {
        let now = std::time::Instant::now();
        let mut used = self.used.lock().expect("used lock");
        for d in docs {
            if matches!(d, DocId::Roster { .. }) {
                used.insert(*d, now);
            }
        }
    }

    /// Turns `docs` cold now where [`Replica::cool`] allows it (a pass that decoded many
    /// shards to read them once); returns how many.
    pub fn cool(&self, docs: &[DocId]) -> usize {
        self.run(None, |r| docs.iter().filter(|d| r.cool(**d)).count())
            .unwrap_or_else(|e| unreachable!("a call without a peer re-raises its panic: {e}"))
    }

    /// Turns cold the warm roster shards not needed for `idle` (see [`Replica::cool`]: only
    /// those saved and not under way); returns how many. A shard warm since the start counts
    /// from the first call.
    pub fn cool_idle(&self, idle: std::time::Duration) -> usize {
        let now = std::time::Instant::now();
        let warm: Vec<DocId> = self.read(|r| {
            r.docs()
                .filter(|d| matches!(d, DocId::Roster { .. }) && !r.is_cold(*d))
                .collect()
        });
        let idle_ones: Vec<DocId> = {
            let mut used = self.used.lock().expect("used lock");
            used.retain(|d, _| warm.contains(d));
            warm.into_iter()
                .filter(|d| now.duration_since(*used.entry(*d).or_insert(now)) >= idle)
                .collect()
        };
        if idle_ones.is_empty() {
            return 0;
        }
        let cooled = self
            .run(None, |r| idle_ones.iter().filter(|d| r.cool(**d)).count())
            .unwrap_or_else(|e| unreachable!("a call without a peer re-raises its panic: {e}"));
        if cooled > 0 {
            tracing::info!(cooled, "idle roster shards dropped from memory (held cold)");
        }
        cooled
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
    ///
    /// # Errors
    /// [`PeerPanicked`] if building a frame panicked (a peer's crafted sync state, say):
    /// that peer's session is ended; close its link.
    pub fn transmit(&self, peer: Role, now_ms: u64) -> Result<Vec<Vec<u8>>, PeerPanicked> {
        self.run(Some((peer, "building frames")), |r| {
            std::iter::from_fn(|| r.poll_transmit(peer, now_ms)).collect()
        })
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
/// [`LinkStepError::Frame`] from the link, [`LinkStepError::Panicked`] from the replica.
pub async fn send_frames(
    repl: &Replication,
    peer: Role,
    send: &mut quinn::SendStream,
) -> Result<(), LinkStepError> {
    for frame in repl.transmit(peer, menjin_net::clock::now_ms())? {
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
/// Storage failures and a replica that panicked on the frame ([`LinkStepError`]: close the
/// link); a refused frame is logged and the link goes on.
pub fn receive_frame(
    repl: &Replication,
    peer: Role,
    bytes: &[u8],
) -> Result<Vec<DocId>, LinkStepError> {
    match repl.handle(peer, bytes, menjin_net::clock::now_ms())? {
        Ok(docs) => Ok(docs),
        Err(e) => {
            tracing::warn!(%peer, error = %e, "replication frame refused; nothing merged");
            Ok(Vec::new())
        }
    }
}

/// The message of a caught panic (`panic!` with a literal or with formatting).
fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned())
}

#[cfg(test)]
mod tests {
    use menjin_sync::automerge::sync::{BloomFilter, ChunkList, Have, Message, MessageVersion};
    use menjin_sync::{SyncBody, SyncFrame};

    use super::*;

    const NOW: u64 = 1_700_000_000_000;

    /// A hub's real driver over a temporary sled, and two nodes' sans-IO replicas, linked.
    fn district() -> (Arc<Replication>, Vec<Replica>) {
        let db = sled::Config::new().temporary(true).open().unwrap();
        let hub = Replication::open(&db, Role::Hub).unwrap();
        let mut nodes = Vec::new();
        for community in [7, 8] {
            let mut node = Replica::new(Role::Node(community), 1, Config::default());
            node.connect(Role::Hub, NOW).unwrap();
            hub.connect(Role::Node(community), NOW).unwrap();
            nodes.push(node);
        }
        pump(&hub, &mut nodes);
        (hub, nodes)
    }

    /// Moves frames both ways until neither side has any; panics in the hub fail the test.
    fn pump(hub: &Replication, nodes: &mut [Replica]) {
        for _ in 0..50 {
            let mut moved = false;
            for node in nodes.iter_mut() {
                let peer = node.me();
                for f in hub.transmit(peer, NOW).unwrap() {
                    node.handle_message(Role::Hub, &f, NOW).unwrap();
                    moved = true;
                }
                while let Some(f) = node.poll_transmit(Role::Hub, NOW) {
                    hub.handle(peer, &f, NOW).unwrap().unwrap();
                    moved = true;
                }
                while node.poll_persist().is_some() {}
            }
            if !moved {
                return;
            }
        }
        panic!("no quiescence after 50 rounds");
    }

    fn lockdown_reaches(hub: &Replication, nodes: &mut [Replica], community: u32) -> bool {
        hub.set_lockdown(community, true, "drill", "ops", NOW / 1000)
            .unwrap();
        pump(hub, nodes);
        let node = nodes.iter().find(|n| n.me() == Role::Node(community));
        node.unwrap().policy().lockdowns[&community].locked
    }

    #[test]
    fn a_crafted_bloom_filter_is_refused_and_the_hub_replicates_on() {
        let (hub, mut nodes) = district();
        // One entry, zero bits per entry: Automerge 0.12 divides by zero building the reply.
        let msg = Message {
            heads: vec![],
            need: vec![],
            have: vec![Have {
                last_sync: vec![],
                bloom: BloomFilter::try_from(&[1u8, 0, 7][..]).unwrap(),
            }],
            changes: ChunkList::empty(),
            flags: None,
            version: MessageVersion::V1,
        };
        let frame = SyncFrame {
            session: nodes[0].session_id(Role::Hub).unwrap(),
            body: SyncBody::Doc {
                doc: "policy".into(),
                msg: msg.encode(),
            },
        }
        .encode();
        let r = receive_frame(&hub, Role::Node(7), &frame).unwrap();
        assert!(r.is_empty());
        assert!(hub.transmit(Role::Node(7), NOW).is_ok());
        assert!(lockdown_reaches(&hub, &mut nodes, 8));
        assert!(lockdown_reaches(&hub, &mut nodes, 7));
    }

    #[test]
    fn a_panic_on_one_peers_frames_ends_only_that_peers_session() {
        let (hub, mut nodes) = district();
        let peer = Role::Node(7);
        let r = hub.run(Some((peer, "handling a frame")), |_| -> () {
            panic!("automerge blew up")
        });
        let e = r.unwrap_err();
        assert_eq!(e.peer, peer);
        assert!(e.panic.contains("automerge blew up"), "{e}");
        // Not poisoned: the other node's session is intact and replicates.
        assert!(!hub.read(|r| r.is_connected(peer)));
        assert!(hub.read(|r| r.is_connected(Role::Node(8))));
        assert!(lockdown_reaches(&hub, &mut nodes[1..], 8));
        // Our own code's panics reach the caller, and still leave the lock usable.
        let own = std::panic::catch_unwind(AssertUnwindSafe(|| {
            hub.read(|_| -> () { panic!("a view blew up") })
        }));
        assert!(own.is_err());
        // The failed peer reconnects to a fresh session and replicates again.
        hub.connect(peer, NOW).unwrap();
        nodes[0].connect(Role::Hub, NOW).unwrap();
        assert!(lockdown_reaches(&hub, &mut nodes, 7));
    }
}
