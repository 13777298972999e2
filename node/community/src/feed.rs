//! The node's side of the gate feed (see `menjin_proto::feed`): the trust data its gates
//! cache (revoked codes of people, visitor codes with consent in force, the lockdown, the
//! community's node keys the district revoked), kept up to date from roster commits, lockdown
//! changes and the district policy, versioned, and broadcast to every
//! subscribed gate the moment it changes; and each gate's link as the node sees it
//! (connected, applied version and lockdown epoch, last contact), for `menjin status`.
//!
//! The lists are kept incrementally: a roster commit names the codes it touched, and the
//! visitors in force are recomputed from the (few) visitor codes whose consent stands, since
//! a host losing their own code suspends their visitors' consents.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use menjin_proto::UnixTime;
use menjin_proto::credential::{CredId, HolderId, HolderKind};
use menjin_proto::feed::{GateAck, GateLockdown, TrustSnapshot, TrustUpdate};
use menjin_proto::record::{CredRecord, CredStatus};
use menjin_proto::wire::GateLink;
use tokio::sync::{Notify, broadcast};

use crate::roster::Roster;

/// Updates a slow subscriber may fall behind by before it is sent a fresh snapshot instead.
const BACKLOG_MAX: usize = 256;
/// How long past its expiry a revoked code stays on the list gates get (seconds). An expired
/// code is refused for that alone, so the list need not name it; the margin covers a node
/// clock a little behind, and keeps the snapshot within `FEED_FRAME_LEN_MAX` as codes are
/// revoked year after year.
pub const REVOKED_KEEP_S: u64 = 86_400;

/// What a roster commit did to one code, as far as gates care.
#[derive(Clone, Copy, Debug)]
pub struct CodeTouch {
    /// The code.
    pub id: CredId,
    /// Its holder's kind: visitor codes go to the gates' consent list, others to revocations.
    pub kind: HolderKind,
    /// Active (true) or revoked/withdrawn.
    pub active: bool,
    /// The end of the code's validity (Unix seconds): past it (and [`REVOKED_KEEP_S`]) a
    /// revoked code leaves the list.
    pub valid_until: UnixTime,
    /// For a visitor code, the consenting resident (whose own code must stay in force).
    pub host: Option<HolderId>,
}

impl CodeTouch {
    /// A code known only from the district copy (`roster::AdoptedCode`).
    pub fn of_adopted(a: &crate::roster::AdoptedCode) -> CodeTouch {
        CodeTouch {
            id: a.id,
            kind: a.kind,
            active: a.status == CredStatus::Active,
            valid_until: a.valid_until,
            host: None,
        }
    }

    /// What `c` means for gates after the commit that wrote it.
    pub fn of(c: &CredRecord) -> CodeTouch {
        CodeTouch {
            id: c.id,
            kind: c.kind,
            active: c.status == CredStatus::Active,
            valid_until: menjin_proto::SignedCode::decode(&c.code)
                .map_or(0, |s| u64::from(s.credential.valid_until)),
            host: c.visit.as_ref().map(|v| v.host),
        }
    }
}

struct State {
    version: u64,
    lockdown: GateLockdown,
    /// Revoked codes of people and the end of their validity (Unix seconds).
    revoked: HashMap<CredId, UnixTime>,
    /// Every active visitor code and its host.
    visitor_codes: HashMap<CredId, HolderId>,
    /// Those whose host holds a code in force: what gates get.
    visitors: HashSet<CredId>,
    /// The community's node keys the district revoked, in the order they were heard of.
    revoked_node_keys: Vec<[u8; 32]>,
}

/// Drops revoked codes that expired more than [`REVOKED_KEEP_S`] before `now` (Unix
/// seconds): gates refuse them as expired.
fn prune_revoked(revoked: &mut HashMap<CredId, UnixTime>, now: UnixTime) {
    revoked.retain(|_, until| until.saturating_add(REVOKED_KEEP_S) >= now);
}

/// The trust feed and the gates' links.
pub struct Feed {
    incarnation: u64,
    roster: Roster,
    state: Mutex<State>,
    tx: broadcast::Sender<Arc<TrustUpdate>>,
    links: Mutex<BTreeMap<String, GateLink>>,
    /// Wakes whoever reports gate links (the uplink to the hub).
    pub links_changed: Notify,
}

impl Feed {
    /// Builds the lists from the roster view. `incarnation` must differ between processes
    /// of the same node (gates compare it with what they hold).
    pub fn new(roster: Roster, lockdown: GateLockdown, incarnation: u64) -> Feed {
        let (revoked, visitor_codes) = roster.trust_lists();
        let mut state = State {
            version: 1,
            lockdown,
            revoked: revoked.into_iter().collect(),
            visitor_codes: visitor_codes.into_iter().collect(),
            visitors: HashSet::new(),
            revoked_node_keys: Vec::new(),
        };
        state.visitors = in_force(&roster, &state.visitor_codes);
        let (tx, _) = broadcast::channel(BACKLOG_MAX);
        Feed {
            incarnation,
            roster,
            state: Mutex::new(state),
            tx,
            links: Mutex::new(BTreeMap::new()),
            links_changed: Notify::new(),
        }
    }

    /// The incarnation this process's feed carries (gates compare it with what they hold).
    pub fn incarnation(&self) -> u64 {
        self.incarnation
    }

    /// The latest version sent, rising by one per update.
    pub fn version(&self) -> u64 {
        self.state.lock().expect("feed lock").version
    }

    /// Subscribe first, then take the snapshot: updates at or below the snapshot's version
    /// are already in it.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<TrustUpdate>> {
        self.tx.subscribe()
    }

    /// Everything a gate needs to decide alone, as of the current version. `node_cert` is the
    /// encoded node certificate, `now_ms` the node's clock (Unix milliseconds).
    pub fn snapshot(
        &self,
        node_cert: Vec<u8>,
        community: menjin_proto::CommunityId,
        residents_may_leave: bool,
        now_ms: u64,
    ) -> TrustSnapshot {
        let mut s = self.state.lock().expect("feed lock");
        prune_revoked(&mut s.revoked, now_ms / 1000);
        let mut revoked: Vec<CredId> = s.revoked.keys().copied().collect();
        let mut visitors: Vec<CredId> = s.visitors.iter().copied().collect();
        revoked.sort_unstable();
        visitors.sort_unstable();
        TrustSnapshot {
            incarnation: self.incarnation,
            version: s.version,
            node_time_ms: now_ms,
            community,
            node_cert,
            previous_node_cert: None,
            lockdown: s.lockdown.clone(),
            revoked_node_keys: s.revoked_node_keys.clone(),
            residents_may_leave,
            revoked,
            visitors,
        }
    }

    /// After a roster commit (already applied to the view): the codes it touched.
    pub fn on_commit(&self, touched: &[CodeTouch], now_ms: u64) {
        if touched.is_empty() {
            return;
        }
        let mut s = self.state.lock().expect("feed lock");
        let mut update = TrustUpdate {
            incarnation: self.incarnation,
            node_time_ms: now_ms,
            ..Default::default()
        };
        for t in touched {
            match (t.kind, t.active) {
                (HolderKind::Visitor, true) => {
                    if let Some(host) = t.host {
                        s.visitor_codes.insert(t.id, host);
                    }
                }
                (HolderKind::Visitor, false) => {
                    s.visitor_codes.remove(&t.id);
                }
                (_, false) => {
                    if s.revoked.insert(t.id, t.valid_until).is_none() {
                        update.revoked.push(t.id);
                    }
                }
                (_, true) => {}
            }
        }
        let now = in_force(&self.roster, &s.visitor_codes);
        update.visitors_added = now.difference(&s.visitors).copied().collect();
        update.visitors_removed = s.visitors.difference(&now).copied().collect();
        s.visitors = now;
        if update.revoked.is_empty()
            && update.visitors_added.is_empty()
            && update.visitors_removed.is_empty()
        {
            return;
        }
        s.version += 1;
        update.version = s.version;
        let _ = self.tx.send(Arc::new(update));
    }

    /// The lockdown the node now enforces; gates get it if it changed (then `true`).
    pub fn on_lockdown(&self, lockdown: GateLockdown, now_ms: u64) -> bool {
        let mut s = self.state.lock().expect("feed lock");
        if s.lockdown == lockdown {
            return false;
        }
        s.lockdown = lockdown.clone();
        s.version += 1;
        let update = TrustUpdate {
            incarnation: self.incarnation,
            version: s.version,
            node_time_ms: now_ms,
            lockdown: Some(lockdown),
            ..Default::default()
        };
        let _ = self.tx.send(Arc::new(update));
        true
    }

    /// The community's node keys the district revoked, as the policy lists them now (they
    /// are never removed there); gates get those they have not had yet. Returns whether any
    /// was new.
    pub fn on_node_keys_revoked(&self, keys: &[[u8; 32]], now_ms: u64) -> bool {
        let mut s = self.state.lock().expect("feed lock");
        let new: Vec<[u8; 32]> = keys
            .iter()
            .filter(|k| !s.revoked_node_keys.contains(*k))
            .copied()
            .collect();
        if new.is_empty() {
            return false;
        }
        s.revoked_node_keys.extend(&new);
        s.version += 1;
        let update = TrustUpdate {
            incarnation: self.incarnation,
            version: s.version,
            node_time_ms: now_ms,
            revoked_node_keys: new,
            ..Default::default()
        };
        let _ = self.tx.send(Arc::new(update));
        true
    }

    /// Whether the district revoked `key` (as far as the policy applied says).
    pub fn node_key_revoked(&self, key: &[u8; 32]) -> bool {
        self.state
            .lock()
            .expect("feed lock")
            .revoked_node_keys
            .contains(key)
    }

    /// Enrolled gates that have never been in touch still show, as never seen.
    pub fn links(&self, enrolled: &[String]) -> Vec<GateLink> {
        let links = self.links.lock().expect("links lock");
        let mut out: BTreeMap<String, GateLink> = enrolled
            .iter()
            .map(|g| {
                (
                    g.clone(),
                    GateLink {
                        gate: g.clone(),
                        ..Default::default()
                    },
                )
            })
            .collect();
        for (g, l) in links.iter() {
            if out.contains_key(g) {
                out.insert(g.clone(), l.clone());
            }
        }
        out.into_values().collect()
    }

    fn with_link(&self, gate: &str, f: impl FnOnce(&mut GateLink), notify: bool) {
        {
            let mut links = self.links.lock().expect("links lock");
            let link = links.entry(gate.to_string()).or_insert_with(|| GateLink {
                gate: gate.to_string(),
                ..Default::default()
            });
            f(link);
        }
        if notify {
            self.links_changed.notify_one();
        }
    }

    /// Any request from the gate.
    pub fn contact(&self, gate: &str, now_ms: u64) {
        self.with_link(gate, |l| l.last_contact_ms = now_ms, false);
    }

    /// A gate's feed subscription opened (`true`) or ended.
    pub fn connected(&self, gate: &str, connected: bool, now_ms: u64) {
        self.with_link(
            gate,
            |l| {
                l.connected = connected;
                l.last_contact_ms = now_ms;
            },
            true,
        );
    }

    /// A gate's acknowledgment: what it applied and flushed, its buffer and clock skew. A version
    /// of another incarnation (the gate has not yet the new snapshot) is not recorded.
    pub fn acked(&self, gate: &str, ack: &GateAck, now_ms: u64) {
        let current = ack.incarnation == self.incarnation;
        self.with_link(
            gate,
            |l| {
                if current {
                    l.applied_version = ack.version;
                }
                l.lockdown_epoch = ack.lockdown_epoch;
                l.locked = ack.locked;
                l.pending_events = ack.pending_events;
                l.skew_ms = ack.skew_ms;
                l.last_contact_ms = now_ms;
            },
            true,
        );
    }

    /// An upload from the gate was stored up to `upto` (its `gate_seq` cursor here).
    pub fn uploaded(&self, gate: &str, upto: u64, now_ms: u64) {
        self.with_link(
            gate,
            |l| {
                l.uploaded_upto = upto;
                l.last_contact_ms = now_ms;
            },
            true,
        );
    }
}

/// The visitor codes whose host holds a code in force now. (A host's code that runs out
/// between two roster commits leaves its visitors in gates' caches until the next commit;
/// the node itself refuses them at once.)
fn in_force(roster: &Roster, visitor_codes: &HashMap<CredId, HolderId>) -> HashSet<CredId> {
    let now = menjin_net::clock::now_ms() / 1000;
    visitor_codes
        .iter()
        .filter(|(_, host)| roster.holder_active(host, now))
        .map(|(id, _)| *id)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn revoked(id: u8, valid_until: UnixTime) -> CodeTouch {
        CodeTouch {
            id: CredId([id; 8]),
            kind: HolderKind::Resident,
            active: false,
            host: None,
            valid_until,
        }
    }

    /// Issue 12, defect 8: revoked node keys reach subscribed gates in one update each time
    /// the policy names a new one, and every later snapshot.
    #[test]
    fn revoked_node_keys_go_out_once_and_stay_in_snapshots() {
        let dir = tempfile::tempdir().unwrap();
        let db = menjin_store::db::open(dir.path()).unwrap();
        let feed = Feed::new(Roster::open(&db).unwrap(), GateLockdown::default(), 1);
        let mut updates = feed.subscribe();
        assert!(feed.on_node_keys_revoked(&[[1; 32]], 5));
        assert!(!feed.on_node_keys_revoked(&[[1; 32]], 6), "nothing new");
        assert!(feed.on_node_keys_revoked(&[[1; 32], [2; 32]], 7));
        let first = updates.try_recv().unwrap();
        let second = updates.try_recv().unwrap();
        assert_eq!(
            (first.version, first.revoked_node_keys.clone()),
            (2, vec![[1; 32]])
        );
        assert_eq!(
            (second.version, second.revoked_node_keys.clone()),
            (3, vec![[2; 32]])
        );
        assert!(updates.try_recv().is_err());
        assert!(feed.node_key_revoked(&[2; 32]) && !feed.node_key_revoked(&[3; 32]));
        let snap = feed.snapshot(Vec::new(), 1, false, 8);
        assert_eq!(snap.revoked_node_keys, vec![[1; 32], [2; 32]]);
    }

    /// Defect 10 of the hardening issue: the revoked list only grew, and the snapshot with
    /// it, towards the feed's frame limit.
    #[test]
    fn revoked_codes_long_expired_leave_the_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let db = menjin_store::db::open(dir.path()).unwrap();
        let feed = Feed::new(Roster::open(&db).unwrap(), GateLockdown::default(), 1);
        let now: UnixTime = 1_800_000_000;
        feed.on_commit(
            &[
                revoked(1, now - REVOKED_KEEP_S - 1),
                revoked(2, now - 10),
                revoked(3, now + 86_400),
            ],
            now * 1000,
        );
        let snap = feed.snapshot(Vec::new(), 1, false, now * 1000);
        assert_eq!(snap.revoked, vec![CredId([2; 8]), CredId([3; 8])]);
        // Later, the second one has been expired long enough too.
        let later = now + REVOKED_KEEP_S;
        let snap = feed.snapshot(Vec::new(), 1, false, later * 1000);
        assert_eq!(snap.revoked, vec![CredId([3; 8])]);
    }
}
