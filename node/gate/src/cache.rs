//! The gate's own sled cache (`<gate dir>/cache`): the trust data its node pushed (node
//! certificate, revoked codes and node keys, visitors in force, lockdown), its knowledge of the node's
//! clock, and the buffer of events it decided alone until they are uploaded.
//!
//! Every record carries a keyed MAC (HMAC-SHA256, key derived from the gate's secret key),
//! and the head record names the snapshot and the number of updates on top of it, so that a
//! record changed, added or removed on disk is detected at start: tampered trust data is
//! discarded (the gate then decides offline only once its node has sent it again), tampered
//! events are reported and dropped. Nothing is acknowledged or shown before it is flushed.

use std::collections::{BTreeSet, HashSet};
use std::path::Path;

use ed25519_dalek::VerifyingKey;
use hmac::{Hmac, KeyInit, Mac};
use menjin_proto::cert::NODE_REVOCATIONS_MAX;
use menjin_proto::credential::CredId;
use menjin_proto::feed::{
    CacheHead, GateClock, GateLockdown, OfflineEvent, TrustSnapshot, TrustUpdate,
};
use menjin_proto::wire::{self, GateEvent};
use menjin_proto::{CommunityId, KeyId, NodeCert};
use sha2::{Digest, Sha256};

const MAC_LEN: usize = 16;
/// Updates kept on top of a snapshot before the cache is rewritten as one snapshot.
const UPDATES_MAX: u64 = 256;
const RECORD_LEN_MAX: usize = menjin_proto::feed::FEED_FRAME_LEN_MAX;

const HEAD: &[u8] = b"head";
const SNAPSHOT: &[u8] = b"snapshot";
const CLOCK: &[u8] = b"clock";
const NEXT_SEQ: &[u8] = b"next_seq";
const INCARNATION: &[u8] = b"incarnation";

/// Why the gate's cache refused an operation. Nothing of a refused change is stored.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CacheError {
    /// sled failed (disk full, IO error).
    #[error("gate cache storage: {0}")]
    Storage(#[from] sled::Error),
    /// Trust data from the node that is not for this gate: refused, the cache keeps what it had.
    #[error("the node's certificate does not check out: {0}")]
    Cert(#[from] TrustError),
    /// An update that does not follow the version held, or is of another incarnation (the node
    /// restarted): the gate resubscribes for a fresh snapshot.
    #[error(
        "feed update {got} does not follow version {have} of incarnation {incarnation}: resubscribe"
    )]
    Gap {
        /// The feed version the cache holds.
        have: u64,
        /// The update's version.
        got: u64,
        /// The update's incarnation.
        incarnation: u64,
    },
    /// The offline buffer holds `buffer_capacity` events: no more offline decisions until the
    /// node takes some.
    #[error(
        "the gate's event buffer is full ({0} events waiting): reconnect the node or raise buffer_capacity"
    )]
    Full(u64),
}

/// Why trust data (from the node, or read back from the cache) is not for this gate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrustError {
    /// The node's certificate does not verify against the district root.
    #[error(transparent)]
    Cert(#[from] menjin_proto::CertError),
    /// The trust data or certificate is for another community.
    #[error("trust data for community {data}, this gate is of community {gate}")]
    Community {
        /// The data's community.
        data: CommunityId,
        /// The gate's community, from `gate.toml`.
        gate: CommunityId,
    },
    /// More revoked node keys than a district may hold.
    #[error("{0} revoked node keys, at most {NODE_REVOCATIONS_MAX}")]
    RevokedNodeKeys(usize),
}

/// Why a sealed record of the cache cannot be read back.
#[derive(Debug, thiserror::Error)]
enum RecordError {
    #[error(transparent)]
    Storage(#[from] sled::Error),
    #[error("record too short")]
    Short,
    #[error("record {} fails its MAC", String::from_utf8_lossy(.0))]
    Mac(Vec<u8>),
    #[error(transparent)]
    Decode(#[from] wire::WireError),
}

/// Why the cached trust data is not intact (it is then discarded).
#[derive(Debug, thiserror::Error)]
enum TrustLoadError {
    #[error(transparent)]
    Storage(#[from] sled::Error),
    #[error(transparent)]
    Record(#[from] RecordError),
    #[error("records without a head")]
    NoHead,
    #[error("the snapshot is missing")]
    NoSnapshot,
    #[error("the snapshot is not the one the head names")]
    NotNamed,
    #[error("update {0} out of sequence")]
    OutOfSequence(u64),
    #[error("the head says version {head}, the records make {records}")]
    Versions { head: u64, records: u64 },
    #[error("{0} unexpected records")]
    Extra(u64),
    #[error(transparent)]
    Trust(#[from] TrustError),
}

/// The trust data in force.
#[derive(Clone, Debug, Default)]
pub struct Trust {
    /// The node process whose feed this came from ([`TrustSnapshot::incarnation`]).
    pub incarnation: u64,
    /// The feed version applied, rising by one per update.
    pub version: u64,
    /// The community the trust data is for: the gate's own (data for another is refused).
    pub community: CommunityId,
    /// The node's certificates, checked against the district root: the current one first,
    /// then the one before its last rekey if the node sent it; empty before the first
    /// snapshot.
    pub certs: Vec<NodeCert>,
    /// The lockdown the node last sent.
    pub lockdown: GateLockdown,
    /// Whether residents may go out in a lockdown (`residents_may_leave_in_lockdown` of the
    /// node).
    pub residents_may_leave: bool,
    /// Codes revoked, refused offline.
    pub revoked: HashSet<CredId>,
    /// Visitor codes whose consent is in force; any other visitor code is refused offline.
    pub visitors: HashSet<CredId>,
    /// Node keys of the community the district revoked: refused at the handshake, and
    /// offline the codes they signed (at most [`NODE_REVOCATIONS_MAX`]).
    pub revoked_node_keys: BTreeSet<[u8; 32]>,
    /// Their key ids, as codes name their issuer.
    pub revoked_issuers: Vec<KeyId>,
}

impl Trust {
    fn apply(&mut self, u: &TrustUpdate) -> Result<(), TrustError> {
        self.revoke_node_keys(&u.revoked_node_keys)?;
        self.version = u.version;
        if let Some(l) = &u.lockdown {
            self.lockdown = l.clone();
        }
        self.revoked.extend(u.revoked.iter().copied());
        for v in &u.visitors_removed {
            self.visitors.remove(v);
        }
        self.visitors.extend(u.visitors_added.iter().copied());
        Ok(())
    }

    /// Adds revoked node keys; past [`NODE_REVOCATIONS_MAX`] in all, nothing is added.
    fn revoke_node_keys(&mut self, keys: &[[u8; 32]]) -> Result<(), TrustError> {
        let new: BTreeSet<[u8; 32]> = keys
            .iter()
            .filter(|k| !self.revoked_node_keys.contains(*k))
            .copied()
            .collect();
        let total = self.revoked_node_keys.len() + new.len();
        if total > NODE_REVOCATIONS_MAX {
            return Err(TrustError::RevokedNodeKeys(total));
        }
        self.revoked_issuers.extend(new.iter().map(KeyId::of_bytes));
        self.revoked_node_keys.extend(new);
        Ok(())
    }
}

/// The gate's own sled cache: owner of trees `trust`, `events` and `meta`. Every value is
/// sealed with an HMAC keyed from the gate's secret key, so changes on disk are found at open.
pub struct GateCache {
    db: sled::Db,
    trust_tree: sled::Tree,
    events: sled::Tree,
    meta: sled::Tree,
    key: [u8; 32],
    root: VerifyingKey,
    community: CommunityId,
    trust: Trust,
    head: CacheHead,
    clock: GateClock,
    next_seq: u64,
    /// This cache's incarnation (see [`OfflineEvent::cache`]).
    incarnation: u64,
    capacity: u64,
    /// Events in the buffer (sled's `len` walks the whole tree: counted once at open).
    pending: u64,
}

/// What opening the cache found wrong (shown to the guard and logged).
#[derive(Debug, Default)]
pub struct OpenReport {
    /// One line per problem, in words for the guard (the data concerned was discarded).
    pub problems: Vec<String>,
}

impl GateCache {
    /// Opens (or creates) the cache. `secret` is the gate's secret key: the MAC key is
    /// derived from it.
    ///
    /// # Errors
    /// [`CacheError::Storage`] if sled cannot open the directory at all.
    pub fn open(
        dir: &Path,
        secret: &[u8; 32],
        root: VerifyingKey,
        community: CommunityId,
        capacity: u64,
    ) -> Result<(GateCache, OpenReport), CacheError> {
        let db = menjin_store::db::open(dir)?;
        let mut key = [0u8; 32];
        key.copy_from_slice(
            &Sha256::new()
                .chain_update(b"menjin gate cache v1")
                .chain_update(secret)
                .finalize(),
        );
        let mut cache = GateCache {
            trust_tree: db.open_tree("trust")?,
            events: db.open_tree("events")?,
            meta: db.open_tree("meta")?,
            db,
            key,
            root,
            community,
            trust: Trust::default(),
            head: CacheHead::default(),
            clock: GateClock::default(),
            next_seq: 1,
            incarnation: 0,
            capacity: capacity.max(1),
            pending: 0,
        };
        let mut report = OpenReport::default();
        if let Err(why) = cache.load_trust() {
            report.problems.push(format!(
                "trust data in the gate cache is not intact ({why}): discarded; offline decisions resume once the node has sent it again"
            ));
            cache.trust = Trust::default();
            cache.head = CacheHead::default();
            cache.trust_tree.clear()?;
        }
        match cache.read_meta::<GateClock>(CLOCK) {
            Ok(Some(c)) => cache.clock = c,
            Ok(None) => {}
            Err(why) => report.problems.push(format!(
                "clock record in the gate cache is not intact ({why}): reset"
            )),
        }
        // A counter that is missing or not intact may count again from numbers the node
        // holds: such a cache gets a new incarnation (see `OfflineEvent::cache`).
        let counter = match cache.read_meta::<u64>(NEXT_SEQ) {
            Ok(Some(n)) => {
                cache.next_seq = n;
                true
            }
            Ok(None) => false,
            Err(why) => {
                report.problems.push(format!(
                    "event counter in the gate cache is not intact ({why})"
                ));
                false
            }
        };
        cache.incarnation = match cache.read_meta::<u64>(INCARNATION) {
            Ok(Some(n)) if counter => n,
            // A cache counting events from before incarnations: the node's cursor for it is
            // the one of incarnation 0.
            Ok(None) if counter => 0,
            Ok(_) => new_incarnation(),
            Err(why) => {
                report.problems.push(format!(
                    "cache incarnation in the gate cache is not intact ({why}): a new one"
                ));
                new_incarnation()
            }
        };
        cache
            .meta
            .insert(INCARNATION, cache.seal(INCARNATION, &cache.incarnation))?;
        // Events: each must carry a good MAC and a sequence number below the counter.
        let mut bad = Vec::new();
        let mut highest = 0;
        for item in cache.events.iter() {
            let (k, v) = item?;
            let seq = k.as_ref().try_into().map(u64::from_be_bytes).unwrap_or(0);
            match cache.open_record::<OfflineEvent>(&k, &v) {
                Ok(e) if e.gate_seq == seq => highest = highest.max(seq),
                Ok(_) => bad.push(k),
                Err(_) => bad.push(k),
            }
        }
        if !bad.is_empty() {
            report.problems.push(format!(
                "{} buffered events in the gate cache were modified on disk: dropped",
                bad.len()
            ));
            for k in bad {
                cache.events.remove(k)?;
            }
        }
        cache.next_seq = cache.next_seq.max(highest + 1);
        cache.pending = cache.events.len() as u64;
        cache.db.flush()?;
        for p in &report.problems {
            tracing::error!(problem = %p, "gate cache");
        }
        Ok((cache, report))
    }

    fn mac(&self, key: &[u8], body: &[u8]) -> [u8; MAC_LEN] {
        let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.key).expect("any key length");
        m.update(&(key.len() as u32).to_be_bytes());
        m.update(key);
        m.update(body);
        let full = m.finalize().into_bytes();
        let mut out = [0u8; MAC_LEN];
        out.copy_from_slice(&full[..MAC_LEN]);
        out
    }

    fn seal<T: serde::Serialize>(&self, key: &[u8], value: &T) -> Vec<u8> {
        let mut body = wire::encode(value);
        let mac = self.mac(key, &body);
        body.extend_from_slice(&mac);
        body
    }

    fn open_record<T: serde::de::DeserializeOwned>(
        &self,
        key: &[u8],
        bytes: &[u8],
    ) -> Result<T, RecordError> {
        if bytes.len() < MAC_LEN {
            return Err(RecordError::Short);
        }
        let (body, mac) = bytes.split_at(bytes.len() - MAC_LEN);
        if self.mac(key, body) != mac {
            return Err(RecordError::Mac(key.to_vec()));
        }
        Ok(wire::decode(body, RECORD_LEN_MAX)?)
    }

    fn read_meta<T: serde::de::DeserializeOwned>(
        &self,
        key: &[u8],
    ) -> Result<Option<T>, RecordError> {
        match self.meta.get(key)? {
            None => Ok(None),
            Some(v) => self.open_record(key, &v).map(Some),
        }
    }

    fn update_key(version: u64) -> Vec<u8> {
        let mut k = b"u".to_vec();
        k.extend_from_slice(&version.to_be_bytes());
        k
    }

    fn load_trust(&mut self) -> Result<(), TrustLoadError> {
        let Some(head) = self.trust_tree.get(HEAD)? else {
            return if self.trust_tree.is_empty() {
                Ok(())
            } else {
                Err(TrustLoadError::NoHead)
            };
        };
        let head: CacheHead = self.open_record(HEAD, &head)?;
        let snap = self
            .trust_tree
            .get(SNAPSHOT)?
            .ok_or(TrustLoadError::NoSnapshot)?;
        let snap: TrustSnapshot = self.open_record(SNAPSHOT, &snap)?;
        if snap.incarnation != head.incarnation || snap.version != head.snapshot_version {
            return Err(TrustLoadError::NotNamed);
        }
        let mut trust = self.trust_of(snap)?;
        let mut count = 0;
        for item in self.trust_tree.scan_prefix(b"u") {
            let (k, v) = item?;
            let u: TrustUpdate = self.open_record(&k, &v)?;
            if u.version != trust.version + 1 || k.as_ref() != Self::update_key(u.version) {
                return Err(TrustLoadError::OutOfSequence(u.version));
            }
            trust.apply(&u)?;
            count += 1;
        }
        if trust.version != head.version || count != head.version - head.snapshot_version {
            return Err(TrustLoadError::Versions {
                head: head.version,
                records: trust.version,
            });
        }
        let extra = self.trust_tree.len() as u64 - 2 - count;
        if extra != 0 {
            return Err(TrustLoadError::Extra(extra));
        }
        self.trust = trust;
        self.head = head;
        Ok(())
    }

    /// A node certificate of the snapshot, checked: signed by our root, for us.
    fn cert_of(&self, bytes: &[u8], community: CommunityId) -> Result<NodeCert, TrustError> {
        let cert = NodeCert::decode(bytes)?;
        // Validity is judged at use (with the node's time).
        cert.verify(&self.root, cert.not_before)?;
        if cert.community != self.community || community != self.community {
            return Err(TrustError::Community {
                data: community,
                gate: self.community,
            });
        }
        Ok(cert)
    }

    fn trust_of(&self, s: TrustSnapshot) -> Result<Trust, TrustError> {
        let mut certs = vec![self.cert_of(&s.node_cert, s.community)?];
        if let Some(previous) = &s.previous_node_cert {
            certs.push(self.cert_of(previous, s.community)?);
        }
        let mut trust = Trust {
            incarnation: s.incarnation,
            version: s.version,
            community: s.community,
            certs,
            lockdown: s.lockdown,
            residents_may_leave: s.residents_may_leave,
            revoked: s.revoked.into_iter().collect(),
            visitors: s.visitors.into_iter().collect(),
            revoked_node_keys: BTreeSet::new(),
            revoked_issuers: Vec::new(),
        };
        trust.revoke_node_keys(&s.revoked_node_keys)?;
        Ok(trust)
    }

    /// The trust data in force.
    pub fn trust(&self) -> &Trust {
        &self.trust
    }

    /// The node's clock as last measured (offset, floor, last heard).
    pub fn clock(&self) -> GateClock {
        self.clock
    }

    /// Replaces the trust data with a snapshot from the node (flushed before it returns).
    ///
    /// # Errors
    /// [`CacheError::Cert`] if the node's certificate is not from this district and
    /// community: nothing is changed.
    pub fn apply_snapshot(&mut self, s: TrustSnapshot) -> Result<(), CacheError> {
        let trust = self.trust_of(s.clone())?;
        let head = CacheHead {
            incarnation: s.incarnation,
            snapshot_version: s.version,
            version: s.version,
        };
        let mut batch = sled::Batch::default();
        for item in self.trust_tree.scan_prefix(b"u") {
            batch.remove(item?.0);
        }
        batch.insert(SNAPSHOT, self.seal(SNAPSHOT, &s));
        batch.insert(HEAD, self.seal(HEAD, &head));
        self.trust_tree.apply_batch(batch)?;
        self.db.flush()?;
        self.trust = trust;
        self.head = head;
        Ok(())
    }

    /// Applies an update on top of the current version (flushed before it returns).
    ///
    /// # Errors
    /// [`CacheError::Gap`] if it does not follow the version held: the caller resubscribes.
    pub fn apply_update(&mut self, u: &TrustUpdate) -> Result<(), CacheError> {
        if u.incarnation != self.trust.incarnation
            || Some(u.version) != self.trust.version.checked_add(1)
        {
            return Err(CacheError::Gap {
                have: self.trust.version,
                got: u.version,
                incarnation: u.incarnation,
            });
        }
        let mut trust = self.trust.clone();
        trust.apply(u)?;
        if u.version - self.head.snapshot_version > UPDATES_MAX {
            // Rewrite as one snapshot.
            let snap = TrustSnapshot {
                incarnation: trust.incarnation,
                version: trust.version,
                node_time_ms: u.node_time_ms,
                community: trust.community,
                node_cert: trust
                    .certs
                    .first()
                    .map(NodeCert::encode)
                    .unwrap_or_default(),
                previous_node_cert: trust.certs.get(1).map(NodeCert::encode),
                lockdown: trust.lockdown.clone(),
                revoked_node_keys: trust.revoked_node_keys.iter().copied().collect(),
                residents_may_leave: trust.residents_may_leave,
                revoked: trust.revoked.iter().copied().collect(),
                visitors: trust.visitors.iter().copied().collect(),
            };
            return self.apply_snapshot(snap);
        }
        let head = CacheHead {
            version: u.version,
            ..self.head.clone()
        };
        let key = Self::update_key(u.version);
        let mut batch = sled::Batch::default();
        batch.insert(key.clone(), self.seal(&key, u));
        batch.insert(HEAD, self.seal(HEAD, &head));
        self.trust_tree.apply_batch(batch)?;
        self.db.flush()?;
        self.trust = trust;
        self.head = head;
        Ok(())
    }

    /// Records what the gate learnt of the node's clock (written with the next flush).
    ///
    /// # Errors
    /// [`CacheError::Storage`].
    pub fn set_clock(&mut self, clock: GateClock) -> Result<(), CacheError> {
        self.clock = clock;
        self.meta.insert(CLOCK, self.seal(CLOCK, &clock))?;
        Ok(())
    }

    /// Buffers an event decided alone and flushes it; returns its `gate_seq`.
    ///
    /// # Errors
    /// [`CacheError::Full`] when the buffer holds `capacity` events: the decision must not
    /// be acted on unlogged.
    pub fn record(&mut self, mut event: GateEvent) -> Result<u64, CacheError> {
        if self.pending >= self.capacity {
            return Err(CacheError::Full(self.pending));
        }
        let seq = self.next_seq;
        if let Some(mark) = event.offline.as_mut() {
            mark.gate_seq = seq;
        }
        let key = seq.to_be_bytes();
        let rec = OfflineEvent {
            cache: self.incarnation,
            gate_seq: seq,
            event,
        };
        self.events.insert(key, self.seal(&key, &rec))?;
        self.meta
            .insert(NEXT_SEQ, self.seal(NEXT_SEQ, &(seq + 1)))?;
        self.db.flush()?;
        self.next_seq = seq + 1;
        self.pending += 1;
        Ok(seq)
    }

    /// Events waiting for upload.
    pub fn pending(&self) -> u64 {
        self.pending
    }

    /// The buffer is at or above 90% of its capacity.
    pub fn alarm(&self) -> bool {
        self.pending() * 10 >= self.capacity * 9
    }

    /// `buffer_capacity` from `gate.toml`.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// This cache's incarnation (see [`OfflineEvent::cache`]).
    pub fn incarnation(&self) -> u64 {
        self.incarnation
    }

    /// The oldest `n` events waiting, all of one cache incarnation (the node keeps a cursor
    /// per incarnation; one upload is for one cursor).
    ///
    /// # Errors
    /// [`CacheError::Storage`].
    pub fn oldest(&self, n: usize) -> Result<Vec<OfflineEvent>, CacheError> {
        let mut out: Vec<OfflineEvent> = Vec::new();
        for item in self.events.iter().take(n) {
            let (k, v) = item?;
            match self.open_record::<OfflineEvent>(&k, &v) {
                Ok(e) if out.first().is_some_and(|f| f.cache != e.cache) => break,
                Ok(e) => out.push(e),
                Err(why) => tracing::error!(%why, "buffered event modified on disk; not uploaded"),
            }
        }
        Ok(out)
    }

    /// The node has stored everything up to `upto`: drop it from the buffer.
    ///
    /// # Errors
    /// [`CacheError::Storage`].
    pub fn uploaded(&mut self, upto: u64) -> Result<(), CacheError> {
        let mut batch = sled::Batch::default();
        let mut removed = 0;
        for item in self.events.range(..=upto.to_be_bytes()) {
            batch.remove(item?.0);
            removed += 1;
        }
        self.events.apply_batch(batch)?;
        self.db.flush()?;
        self.pending = self.pending.saturating_sub(removed);
        Ok(())
    }
}

/// A random incarnation, never 0 (the incarnation of caches made before incarnations).
fn new_incarnation() -> u64 {
    let bytes = menjin_store::files::random32();
    u64::from_be_bytes(bytes[..8].try_into().expect("8 bytes")).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use menjin_proto::keys::signing_key_from_seed;

    const COMMUNITY: CommunityId = 7;

    fn snapshot(root: &ed25519_dalek::SigningKey, community: CommunityId) -> TrustSnapshot {
        let node = signing_key_from_seed([2; 32]);
        let cert = NodeCert::issue(
            root,
            community,
            "香蜜湖",
            node.verifying_key(),
            0,
            u64::MAX / 2,
        );
        TrustSnapshot {
            incarnation: 9,
            version: 1,
            node_time_ms: 1_000,
            community,
            node_cert: cert.encode(),
            previous_node_cert: None,
            lockdown: GateLockdown::default(),
            revoked_node_keys: Vec::new(),
            residents_may_leave: false,
            revoked: vec![CredId([1; 8])],
            visitors: vec![CredId([2; 8])],
        }
    }

    fn update(version: u64, revoked: u8) -> TrustUpdate {
        TrustUpdate {
            incarnation: 9,
            version,
            node_time_ms: 2_000,
            revoked: vec![CredId([revoked; 8])],
            ..Default::default()
        }
    }

    fn open(
        dir: &Path,
        root: &ed25519_dalek::SigningKey,
        capacity: u64,
    ) -> (GateCache, OpenReport) {
        GateCache::open(dir, &[5; 32], root.verifying_key(), COMMUNITY, capacity).unwrap()
    }

    /// Issue 12, defect 8: the revoked node keys a node sends stay in the cache (snapshot,
    /// updates, a reopen), with their key ids; past the district's bound an update is
    /// refused whole.
    #[test]
    fn revoked_node_keys_are_kept_across_a_reopen_and_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let root = signing_key_from_seed([1; 32]);
        {
            let (mut c, _) = open(dir.path(), &root, 1_000);
            let mut s = snapshot(&root, COMMUNITY);
            s.revoked_node_keys = vec![[7; 32]];
            c.apply_snapshot(s).unwrap();
            c.apply_update(&TrustUpdate {
                revoked_node_keys: vec![[8; 32], [7; 32]],
                ..update(2, 3)
            })
            .unwrap();
            let too_many: Vec<[u8; 32]> = (0..NODE_REVOCATIONS_MAX as u32)
                .map(|i| {
                    let mut k = [0; 32];
                    k[..4].copy_from_slice(&i.to_be_bytes());
                    k
                })
                .collect();
            assert!(matches!(
                c.apply_update(&TrustUpdate {
                    revoked_node_keys: too_many,
                    ..update(3, 4)
                }),
                Err(CacheError::Cert(TrustError::RevokedNodeKeys(_)))
            ));
            assert_eq!(
                c.trust().version,
                2,
                "nothing of the refused update applied"
            );
        }
        let (c, report) = open(dir.path(), &root, 1_000);
        assert!(report.problems.is_empty(), "{:?}", report.problems);
        let t = c.trust();
        assert_eq!(
            t.revoked_node_keys.iter().copied().collect::<Vec<_>>(),
            vec![[7; 32], [8; 32]]
        );
        let mut ids = t.revoked_issuers.clone();
        ids.sort();
        let mut want = vec![KeyId::of_bytes(&[7; 32]), KeyId::of_bytes(&[8; 32])];
        want.sort();
        assert_eq!(ids, want);
    }

    /// A snapshot cached by a gate before `revoked_node_keys` existed does not decode: the
    /// gate discards it (and says so) rather than reading its fields shifted.
    #[test]
    fn a_snapshot_cached_before_revoked_node_keys_is_discarded() {
        #[derive(serde::Serialize)]
        struct Before {
            incarnation: u64,
            version: u64,
            node_time_ms: u64,
            community: CommunityId,
            node_cert: Vec<u8>,
            previous_node_cert: Option<Vec<u8>>,
            lockdown: GateLockdown,
            residents_may_leave: bool,
            revoked: Vec<CredId>,
            visitors: Vec<CredId>,
        }
        let dir = tempfile::tempdir().unwrap();
        let root = signing_key_from_seed([1; 32]);
        {
            let (mut c, _) = open(dir.path(), &root, 1_000);
            let s = snapshot(&root, COMMUNITY);
            c.apply_snapshot(s.clone()).unwrap();
            let before = Before {
                incarnation: s.incarnation,
                version: s.version,
                node_time_ms: s.node_time_ms,
                community: s.community,
                node_cert: s.node_cert,
                previous_node_cert: None,
                lockdown: s.lockdown,
                residents_may_leave: true,
                revoked: s.revoked,
                visitors: s.visitors,
            };
            let sealed = c.seal(SNAPSHOT, &before);
            c.trust_tree.insert(SNAPSHOT, sealed).unwrap();
            c.db.flush().unwrap();
        }
        let (c, report) = open(dir.path(), &root, 1_000);
        assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
        assert!(
            c.trust().certs.is_empty(),
            "no trust data until the node sends it"
        );
    }

    #[test]
    fn trust_survives_reopening_and_gaps_and_foreign_nodes_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let root = signing_key_from_seed([1; 32]);
        {
            let (mut c, report) = open(dir.path(), &root, 1_000);
            assert!(report.problems.is_empty());
            c.apply_snapshot(snapshot(&root, COMMUNITY)).unwrap();
            c.apply_update(&update(2, 3)).unwrap();
            assert!(matches!(
                c.apply_update(&update(4, 4)),
                Err(CacheError::Gap {
                    have: 2,
                    got: 4,
                    ..
                })
            ));
            // A node certified by another district, or for another community: refused, and
            // what the cache held stays.
            let other = signing_key_from_seed([3; 32]);
            assert!(matches!(
                c.apply_snapshot(snapshot(&other, COMMUNITY)),
                Err(CacheError::Cert(_))
            ));
            assert!(matches!(
                c.apply_snapshot(snapshot(&root, 8)),
                Err(CacheError::Cert(_))
            ));
        }
        let (c, report) = open(dir.path(), &root, 1_000);
        assert!(report.problems.is_empty(), "{:?}", report.problems);
        assert_eq!(c.trust().version, 2);
        assert!(c.trust().revoked.contains(&CredId([3; 8])));
        assert!(c.trust().visitors.contains(&CredId([2; 8])));
    }

    #[test]
    fn records_removed_or_changed_on_disk_are_detected() {
        let root = signing_key_from_seed([1; 32]);
        #[allow(clippy::type_complexity)] // (what is tampered with, how)
        let tamperings: [(&str, fn(&sled::Tree)); 3] = [
            ("an update removed (un-revoking a code)", |t| {
                t.remove(GateCache::update_key(2)).unwrap();
            }),
            ("a record's byte changed", |t| {
                let mut v = t.get(SNAPSHOT).unwrap().unwrap().to_vec();
                v[10] ^= 1;
                t.insert(SNAPSHOT, v).unwrap();
            }),
            ("the head rolled back to the snapshot", |t| {
                let snap_head = t.get(b"old-head").unwrap().unwrap();
                t.insert(HEAD, snap_head).unwrap();
                t.remove(b"old-head").unwrap();
            }),
        ];
        for (what, tamper) in tamperings {
            let dir = tempfile::tempdir().unwrap();
            {
                let (mut c, _) = open(dir.path(), &root, 1_000);
                c.apply_snapshot(snapshot(&root, COMMUNITY)).unwrap();
                let old_head = c.trust_tree.get(HEAD).unwrap().unwrap();
                c.apply_update(&update(2, 3)).unwrap();
                c.trust_tree.insert(b"old-head", old_head).unwrap();
                if what != "the head rolled back to the snapshot" {
                    c.trust_tree.remove(b"old-head").unwrap();
                }
                tamper(&c.trust_tree);
                c.db.flush().unwrap();
            }
            let (c, report) = open(dir.path(), &root, 1_000);
            assert_eq!(report.problems.len(), 1, "{what}: {:?}", report.problems);
            assert!(report.problems[0].contains("not intact"), "{what}");
            assert!(c.trust().certs.is_empty(), "{what}: trust discarded");
        }
    }

    #[test]
    fn the_buffer_alarms_at_90_percent_refuses_when_full_and_counts_uploads() {
        let dir = tempfile::tempdir().unwrap();
        let root = signing_key_from_seed([1; 32]);
        let (mut c, _) = open(dir.path(), &root, 100);
        let event = GateEvent {
            seq: 0,
            time_ms: 1,
            gate: "g".into(),
            direction: menjin_proto::wire::Direction::In,
            allowed: true,
            reason: menjin_proto::rule::Reason::Ok,
            fever: false,
            temperature_dc: 365,
            cred: None,
            holder: None,
            kind: None,
            plate: None,
            offline: Some(menjin_proto::wire::OfflineMark {
                gate_seq: 0,
                decided_ms: 1,
                degraded: false,
            }),
            passback: false,
        };
        for i in 1..=89 {
            assert_eq!(c.record(event.clone()).unwrap(), i);
        }
        assert!(!c.alarm());
        c.record(event.clone()).unwrap();
        assert!(c.alarm());
        for _ in 90..100 {
            c.record(event.clone()).unwrap();
        }
        assert!(matches!(
            c.record(event.clone()),
            Err(CacheError::Full(100))
        ));
        let oldest = c.oldest(5).unwrap();
        assert_eq!(
            oldest.iter().map(|e| e.gate_seq).collect::<Vec<_>>(),
            vec![1, 2, 3, 4, 5]
        );
        assert_eq!(oldest[0].event.offline.unwrap().gate_seq, 1);
        c.uploaded(50).unwrap();
        assert_eq!(c.pending(), 50);
        drop(c);
        // Numbering goes on after a restart; the count is read back.
        let (mut c, report) = open(dir.path(), &root, 100);
        assert!(report.problems.is_empty());
        assert_eq!(c.pending(), 50);
        assert_eq!(c.record(event).unwrap(), 101);
    }

    /// Seen while writing the `feed_frames` fuzz target and reproduced through it (the fuzzer
    /// itself had not reached it in 56,000 runs): a snapshot at the last version, then an update,
    /// overflowed `version + 1` (a panic under the cache lock in a debug build; a wrap to
    /// version 0 in a release build).
    #[test]
    fn update_after_a_snapshot_at_the_last_version_is_a_gap_not_an_overflow() {
        let dir = tempfile::tempdir().unwrap();
        let root = signing_key_from_seed([1; 32]);
        let (mut c, _) = open(dir.path(), &root, 1_000);
        let mut last = snapshot(&root, COMMUNITY);
        last.version = u64::MAX;
        c.apply_snapshot(last).unwrap();
        for version in [0, u64::MAX] {
            assert!(matches!(
                c.apply_update(&update(version, 3)),
                Err(CacheError::Gap { have: u64::MAX, .. })
            ));
        }
        assert_eq!(c.trust().version, u64::MAX);
        assert!(!c.trust().revoked.contains(&CredId([3; 8])));
    }
}
