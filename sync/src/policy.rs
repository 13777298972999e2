//! The policy documents, written by the hub only: the district document (`policy`:
//! enrolled nodes, revoked node keys), which every node receives, and one document per
//! community (`policy/<community>`: its lockdown, its residents' health flags), which only
//! that community's node receives. A lockdown or health list of one community therefore
//! costs every other node nothing. Before the split the district document held every
//! lockdown and flag; the hub moves them out at start ([`crate::Replica::migrate_policy`]),
//! and a reader merges whatever documents it holds.
//!
//! Layout, the same keys in both kinds of document: flat keys in the document root. `n/<community>` → a map per enrolled node
//! (fields updated in place; deleted when its key is revoked); `l/<community>` → a lockdown
//! record and `h/<id hash hex>` → a health flag, both written as a new map object at every
//! update, so that conflicting writes (see the crate doc) are whole records that the reader
//! can order, never a mix of fields from two updates; `r/<node key hex>` → a node key's
//! revocation, written once and never removed (of conflicting ones the earliest counts).

use std::collections::BTreeMap;

use automerge::transaction::Transactable;
use automerge::{Automerge, ObjType, ROOT, ReadDoc, ScalarValue};

use menjin_proto::idnum::IdHash;
use menjin_proto::{CommunityId, UnixTime};

use crate::error::WriteError;
use crate::roster::{Existing, Record, existing, parse_hex, put_record, root_objects};

const NODE_PREFIX: &str = "n/";
const LOCKDOWN_PREFIX: &str = "l/";
const HEALTH_PREFIX: &str = "h/";
const REVOKED_PREFIX: &str = "r/";
pub use menjin_proto::cert::NODE_REVOCATIONS_MAX;

/// Node and operator names, lockdown reasons and health statuses are short labels typed
/// by staff; a bound keeps the policy document (which every node loads) small. The same
/// bound refuses a lockdown reason where it is typed (`LOCKDOWN_REASON_LEN_MAX`).
pub const POLICY_TEXT_LEN_MAX: usize = menjin_proto::record::LOCKDOWN_REASON_LEN_MAX;

/// A community node the hub replicates with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeEnrolment {
    /// The community the node serves; one enrolment per community (a new one replaces it).
    pub community: CommunityId,
    /// The node's ed25519 public key.
    pub node_key: [u8; 32],
    /// The operator's label for the node, at most [`POLICY_TEXT_LEN_MAX`] bytes.
    pub name: String,
}

/// A community's lockdown state. Ordered by `epoch`, which the hub raises at every change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lockdown {
    /// The community the record is for.
    pub community: CommunityId,
    /// True while the community is locked down (a confirmed case: outsiders and vehicles
    /// refused at every gate); false once it is lifted.
    pub locked: bool,
    /// Starts at 1 and rises by one at every change ([`PolicyView::next_epoch`]); a write
    /// that does not rise is refused. Of two concurrent records the higher epoch wins, and
    /// `locked` at equal epochs.
    pub epoch: u64,
    /// Why, as the operator typed it, at most [`POLICY_TEXT_LEN_MAX`] bytes.
    pub reason: String,
    /// The operator who decided it, at most [`POLICY_TEXT_LEN_MAX`] bytes.
    pub by: String,
    /// When the hub wrote it (the hub's clock); for display and audit, not for ordering.
    pub at: UnixTime,
}

/// A health status set by the district for one person, by keyed ID hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthFlag {
    /// The person's keyed ID hash, as in the roster's [`crate::RosterEntry::id_hash`].
    pub id_hash: IdHash,
    /// The community whose roster holds the person: the flag goes into that community's
    /// policy document only. 0 where read from the district document (before the split).
    pub community: CommunityId,
    /// A short status label ("red", "yellow", "green", "central_quarantine", ...), not
    /// empty, at most [`POLICY_TEXT_LEN_MAX`] bytes.
    pub status: String,
    /// When the district set it (the hub's clock). Of two concurrent flags for one person
    /// the later `at` wins.
    pub at: UnixTime,
}

/// A node key the district revoked (`menjin hub revoke-node`): gates of its community refuse
/// it, and the hub never enrols it again. Never removed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeRevocation {
    /// The community the key was certified for.
    pub community: CommunityId,
    /// The node's ed25519 public key.
    pub node_key: [u8; 32],
    /// When the hub wrote it (the hub's clock).
    pub at: UnixTime,
    /// The operator who decided it: not empty, at most [`POLICY_TEXT_LEN_MAX`] bytes.
    pub by: String,
    /// Why, as the operator typed it (may be empty), at most [`POLICY_TEXT_LEN_MAX`] bytes.
    pub reason: String,
}

/// One logical policy change, committed as one Automerge change.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PolicyBatch {
    /// Enrolments to add or update; of several for one community the last counts.
    pub enrol: Vec<NodeEnrolment>,
    /// Lockdown records, each with an epoch above the one before it for its community.
    pub lockdowns: Vec<Lockdown>,
    /// Health flags to set, each replacing the person's previous flag.
    pub health: Vec<HealthFlag>,
    /// Node keys to revoke, each not revoked before; a community's enrolment whose key is
    /// revoked here is deleted in the same change. At most [`NODE_REVOCATIONS_MAX`] in the
    /// document.
    pub revoke: Vec<NodeRevocation>,
}

impl PolicyBatch {
    /// The part for the district document (enrolments, revocations), and each community's
    /// part (its lockdowns and health flags), in the batch's order.
    pub fn split(&self) -> (PolicyBatch, BTreeMap<CommunityId, PolicyBatch>) {
        let district = PolicyBatch {
            enrol: self.enrol.clone(),
            revoke: self.revoke.clone(),
            ..PolicyBatch::default()
        };
        let mut per: BTreeMap<CommunityId, PolicyBatch> = BTreeMap::new();
        for l in &self.lockdowns {
            per.entry(l.community)
                .or_default()
                .lockdowns
                .push(l.clone());
        }
        for h in &self.health {
            per.entry(h.community).or_default().health.push(h.clone());
        }
        (district, per)
    }

    /// Whether the batch changes nothing.
    pub fn is_empty(&self) -> bool {
        self.enrol.is_empty()
            && self.lockdowns.is_empty()
            && self.health.is_empty()
            && self.revoke.is_empty()
    }
}

/// The policy as plain data.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PolicyView {
    /// Enrolled nodes by community.
    pub nodes: BTreeMap<CommunityId, NodeEnrolment>,
    /// The lockdown record in force per community (conflicts resolved); a community never
    /// locked down has none.
    pub lockdowns: BTreeMap<CommunityId, Lockdown>,
    /// The flag in force per person (conflicts resolved).
    pub health: BTreeMap<IdHash, HealthFlag>,
    /// Revoked node keys, by key.
    pub revoked_nodes: BTreeMap<[u8; 32], NodeRevocation>,
    /// Entries skipped because a field was missing or malformed.
    pub malformed: usize,
}

impl PolicyView {
    /// Adds what another policy document holds: of two lockdown records of a community the
    /// higher epoch (and "locked" at equal epochs), of two flags of a person the later.
    pub fn merge(&mut self, other: PolicyView) {
        self.nodes.extend(other.nodes);
        self.revoked_nodes.extend(other.revoked_nodes);
        for (c, l) in other.lockdowns {
            match self.lockdowns.get(&c) {
                Some(have) if (have.epoch, have.locked) >= (l.epoch, l.locked) => {}
                _ => {
                    self.lockdowns.insert(c, l);
                }
            }
        }
        for (h, f) in other.health {
            match self.health.get(&h) {
                Some(have) if have.at > f.at => {}
                _ => {
                    self.health.insert(h, f);
                }
            }
        }
        self.malformed += other.malformed;
    }

    /// The epoch the next lockdown change of `community` must carry.
    pub fn next_epoch(&self, community: CommunityId) -> u64 {
        self.lockdowns.get(&community).map_or(1, |l| l.epoch + 1)
    }

    /// Whether `community` is locked down now.
    pub fn is_locked(&self, community: CommunityId) -> bool {
        self.lockdowns.get(&community).is_some_and(|l| l.locked)
    }

    /// The revoked node keys of `community`, oldest revocation first.
    pub fn revoked_keys_of(&self, community: CommunityId) -> Vec<[u8; 32]> {
        let mut of: Vec<&NodeRevocation> = self
            .revoked_nodes
            .values()
            .filter(|r| r.community == community)
            .collect();
        of.sort_by_key(|r| (r.at, r.node_key));
        of.into_iter().map(|r| r.node_key).collect()
    }
}

pub(crate) fn check_batch(doc: &Automerge, batch: &PolicyBatch) -> Result<(), WriteError> {
    let long = |what: &str, v: &str| {
        (v.len() > POLICY_TEXT_LEN_MAX).then(|| {
            WriteError::Invalid(format!(
                "{what} is {} bytes (at most {POLICY_TEXT_LEN_MAX})",
                v.len()
            ))
        })
    };
    for n in &batch.enrol {
        if let Some(e) = long("node name", &n.name) {
            return Err(e);
        }
    }
    let current = read_policy(doc);
    let mut seen = BTreeMap::new();
    for l in &batch.lockdowns {
        if let Some(e) = long("lockdown reason", &l.reason).or_else(|| long("operator", &l.by)) {
            return Err(e);
        }
        let floor = seen
            .get(&l.community)
            .copied()
            .or_else(|| current.lockdowns.get(&l.community).map(|c| c.epoch))
            .unwrap_or(0);
        if l.epoch <= floor {
            return Err(WriteError::StaleEpoch {
                community: l.community,
                epoch: l.epoch,
                current: floor,
            });
        }
        seen.insert(l.community, l.epoch);
    }
    for h in &batch.health {
        if h.status.is_empty() {
            return Err(WriteError::Invalid("empty health status".into()));
        }
        if let Some(e) = long("health status", &h.status) {
            return Err(e);
        }
    }
    check_revocations(&current, &batch.revoke)
}

fn check_revocations(current: &PolicyView, revoke: &[NodeRevocation]) -> Result<(), WriteError> {
    let mut keys = std::collections::BTreeSet::new();
    for r in revoke {
        if r.by.trim().is_empty() {
            return Err(WriteError::Invalid(
                "a revocation names the operator who decided it".into(),
            ));
        }
        for (what, v) in [("operator", &r.by), ("revocation reason", &r.reason)] {
            if v.len() > POLICY_TEXT_LEN_MAX {
                return Err(WriteError::Invalid(format!(
                    "{what} is {} bytes (at most {POLICY_TEXT_LEN_MAX})",
                    v.len()
                )));
            }
        }
        if current.revoked_nodes.contains_key(&r.node_key) || !keys.insert(r.node_key) {
            return Err(WriteError::Invalid(format!(
                "node key {} is revoked already",
                menjin_proto::KeyId::of_bytes(&r.node_key)
            )));
        }
    }
    if current.revoked_nodes.len() + keys.len() > NODE_REVOCATIONS_MAX {
        return Err(WriteError::Invalid(format!(
            "the district holds {} revoked node keys, at most {NODE_REVOCATIONS_MAX}",
            current.revoked_nodes.len()
        )));
    }
    Ok(())
}

fn node_key(community: CommunityId) -> String {
    format!("{NODE_PREFIX}{community}")
}

/// The enrolment records a batch updates, read before the transaction opens.
pub(crate) fn existing_enrolments(
    doc: &Automerge,
    batch: &PolicyBatch,
) -> BTreeMap<CommunityId, Existing> {
    batch
        .enrol
        .iter()
        .filter_map(|n| Some((n.community, existing(doc, &node_key(n.community))?)))
        .collect()
}

pub(crate) fn put_batch(
    tx: &mut impl Transactable,
    batch: &PolicyBatch,
    enrolled: &BTreeMap<CommunityId, Existing>,
) -> Result<(), automerge::AutomergeError> {
    let mut last_enrolment = BTreeMap::new();
    for n in &batch.enrol {
        last_enrolment.insert(n.community, n);
    }
    for n in last_enrolment.into_values() {
        let fields: [(&str, Option<ScalarValue>); 2] = [
            ("key", Some(hex::encode(n.node_key).into())),
            ("name", Some(n.name.as_str().into())),
        ];
        put_record(
            tx,
            &node_key(n.community),
            enrolled.get(&n.community),
            &fields,
        )?;
    }
    for l in &batch.lockdowns {
        let obj = tx.put_object(
            ROOT,
            format!("{LOCKDOWN_PREFIX}{}", l.community),
            ObjType::Map,
        )?;
        tx.put(&obj, "locked", l.locked)?;
        tx.put(&obj, "epoch", l.epoch)?;
        tx.put(&obj, "reason", l.reason.as_str())?;
        tx.put(&obj, "by", l.by.as_str())?;
        tx.put(&obj, "at", l.at)?;
    }
    for h in &batch.health {
        let obj = tx.put_object(
            ROOT,
            format!("{HEALTH_PREFIX}{}", hex::encode(h.id_hash.0)),
            ObjType::Map,
        )?;
        tx.put(&obj, "status", h.status.as_str())?;
        tx.put(&obj, "at", h.at)?;
    }
    for r in &batch.revoke {
        let obj = tx.put_object(
            ROOT,
            format!("{REVOKED_PREFIX}{}", hex::encode(r.node_key)),
            ObjType::Map,
        )?;
        tx.put(&obj, "community", u64::from(r.community))?;
        tx.put(&obj, "at", r.at)?;
        tx.put(&obj, "by", r.by.as_str())?;
        tx.put(&obj, "reason", r.reason.as_str())?;
        if enrolled_key(tx, r.community) == Some(r.node_key) {
            tx.delete(ROOT, node_key(r.community))?;
        }
    }
    Ok(())
}

/// The key enrolled for `community`, as the document says now.
fn enrolled_key(doc: &impl ReadDoc, community: CommunityId) -> Option<[u8; 32]> {
    let obj = root_objects(doc, &node_key(community), false)
        .into_iter()
        .next()?;
    parse_hex(Record::read(doc, &obj).str("key")?)
}

fn parse_community(s: &str) -> Option<CommunityId> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) || (s.len() > 1 && s.starts_with('0'))
    {
        return None;
    }
    s.parse().ok()
}

/// The keys of the district document that belong in community documents since the split
/// (lockdowns and health flags written before it).
pub(crate) fn legacy_keys(doc: &impl ReadDoc) -> Vec<String> {
    doc.map_range(ROOT, ..)
        .map(|item| item.key.to_string())
        .filter(|k| k.starts_with(LOCKDOWN_PREFIX) || k.starts_with(HEALTH_PREFIX))
        .collect()
}

/// Deletes `keys` from the document root.
pub(crate) fn delete_keys(
    tx: &mut impl Transactable,
    keys: &[String],
) -> Result<(), automerge::AutomergeError> {
    for k in keys {
        tx.delete(ROOT, k.as_str())?;
    }
    Ok(())
}

/// Materialises a policy document of `community` (its health flags are that community's).
pub(crate) fn read_policy_of(doc: &impl ReadDoc, community: CommunityId) -> PolicyView {
    let mut view = read_policy(doc);
    for f in view.health.values_mut() {
        f.community = community;
    }
    view
}

/// Materialises a policy document. Conflicting lockdown records (two hub incarnations
/// wrote concurrently) resolve to the highest epoch, and at equal epochs to "locked";
/// conflicting health flags to the latest `at`.
pub fn read_policy(doc: &impl ReadDoc) -> PolicyView {
    let mut view = PolicyView::default();
    for item in doc.map_range(ROOT, ..) {
        let key = item.key.as_ref();
        let ok = if let Some(c) = key.strip_prefix(NODE_PREFIX) {
            (|| {
                let community = parse_community(c)?;
                let obj = root_objects(doc, key, false).into_iter().next()?;
                let r = Record::read(doc, &obj);
                view.nodes.insert(
                    community,
                    NodeEnrolment {
                        community,
                        node_key: parse_hex(r.str("key")?)?,
                        name: r.str("name")?.to_owned(),
                    },
                );
                Some(())
            })()
        } else if let Some(c) = key.strip_prefix(LOCKDOWN_PREFIX) {
            read_lockdown(doc, key, c, item.conflict).map(|l| {
                view.lockdowns.insert(l.community, l);
            })
        } else if let Some(k) = key.strip_prefix(REVOKED_PREFIX) {
            read_revocation(doc, key, k, item.conflict).map(|r| {
                view.revoked_nodes.insert(r.node_key, r);
            })
        } else if let Some(h) = key.strip_prefix(HEALTH_PREFIX) {
            (|| {
                let id_hash = IdHash(parse_hex(h)?);
                let best = root_objects(doc, key, item.conflict)
                    .iter()
                    .filter_map(|obj| {
                        let r = Record::read(doc, obj);
                        Some(HealthFlag {
                            id_hash,
                            community: 0,
                            status: r.str("status")?.to_owned(),
                            at: r.u64("at")?,
                        })
                    })
                    .reduce(|a, b| if b.at > a.at { b } else { a })?;
                view.health.insert(id_hash, best);
                Some(())
            })()
        } else {
            None
        };
        if ok.is_none() {
            view.malformed += 1;
        }
    }
    view
}

/// A lockdown record; of conflicting ones (two hub incarnations) the highest epoch, and
/// "locked" at equal epochs.
fn read_lockdown(doc: &impl ReadDoc, key: &str, c: &str, conflict: bool) -> Option<Lockdown> {
    let community = parse_community(c)?;
    root_objects(doc, key, conflict)
        .iter()
        .filter_map(|obj| {
            let r = Record::read(doc, obj);
            Some(Lockdown {
                community,
                locked: r.bool("locked")?,
                epoch: r.u64("epoch")?,
                reason: r.str("reason")?.to_owned(),
                by: r.str("by")?.to_owned(),
                at: r.u64("at")?,
            })
        })
        .reduce(|a, b| {
            if (b.epoch, b.locked) > (a.epoch, a.locked) {
                b
            } else {
                a
            }
        })
}

/// The lockdown records of a policy document alone (no health flag is read).
pub(crate) fn read_lockdowns(doc: &impl ReadDoc) -> BTreeMap<CommunityId, Lockdown> {
    // "l/" up to "l0": '0' follows '/' in ASCII.
    let range = LOCKDOWN_PREFIX.to_string().."l0".to_string();
    doc.map_range(ROOT, range)
        .filter_map(|item| {
            let key = item.key.as_ref();
            let c = key.strip_prefix(LOCKDOWN_PREFIX)?;
            read_lockdown(doc, key, c, item.conflict).map(|l| (l.community, l))
        })
        .collect()
}

/// A revocation record; of conflicting ones (two hub incarnations) the earliest.
fn read_revocation(
    doc: &impl ReadDoc,
    key: &str,
    hex_key: &str,
    conflict: bool,
) -> Option<NodeRevocation> {
    let node_key = parse_hex(hex_key)?;
    root_objects(doc, key, conflict)
        .iter()
        .filter_map(|obj| {
            let r = Record::read(doc, obj);
            Some(NodeRevocation {
                community: CommunityId::try_from(r.u64("community")?).ok()?,
                node_key,
                at: r.u64("at")?,
                by: r.str("by")?.to_owned(),
                reason: r.str("reason")?.to_owned(),
            })
        })
        .reduce(|a, b| if b.at < a.at { b } else { a })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Config, Replica, Role};

    fn revocation(community: CommunityId, key: u8) -> NodeRevocation {
        NodeRevocation {
            community,
            node_key: [key; 32],
            at: 1_800_000_000,
            by: "district operator".into(),
            reason: "laptop stolen".into(),
        }
    }

    fn revoke(hub: &mut Replica, r: Vec<NodeRevocation>) -> Result<bool, WriteError> {
        hub.apply_policy(
            &PolicyBatch {
                revoke: r,
                ..PolicyBatch::default()
            },
            1_800_000_000,
        )
    }

    /// A district document as a hub wrote it before the per-community split: one lockdown
    /// of community 7 and flags of two people, one in community 7's roster, one in none.
    fn legacy_district() -> Vec<u8> {
        let mut doc = Automerge::new();
        let batch = PolicyBatch {
            lockdowns: vec![Lockdown {
                community: 7,
                locked: true,
                epoch: 3,
                reason: "case".into(),
                by: "op".into(),
                at: 1,
            }],
            health: [1u8, 2]
                .map(|b| HealthFlag {
                    id_hash: IdHash([b; 16]),
                    community: 0,
                    status: "hospital".into(),
                    at: 1,
                })
                .to_vec(),
            ..PolicyBatch::default()
        };
        doc.transact::<_, _, automerge::AutomergeError>(|tx| {
            put_batch(tx, &batch, &BTreeMap::new())
        })
        .unwrap();
        doc.save()
    }

    /// Issue 15: what an older hub wrote into the district document moves into community 7's
    /// policy (the flag of a person in no roster comes back to the caller), the district
    /// document is left with none of it, and epochs go on from the moved lockdown.
    #[test]
    fn migration_moves_lockdowns_and_flags_into_community_documents() {
        let mut hub = Replica::new(Role::Hub, 1, Config::default());
        hub.load_doc(crate::DocId::Policy, Some(&legacy_district()), &[])
            .unwrap();
        assert!(
            hub.community_policy(7).is_locked(7),
            "read before the move too"
        );
        let (moved, unplaced) = hub
            .migrate_policy(|h| if h.0[0] == 1 { vec![7] } else { vec![] }, 2)
            .unwrap();
        assert_eq!(moved, 2);
        assert_eq!(unplaced.len(), 1);
        assert_eq!(unplaced[0].id_hash, IdHash([2; 16]));
        let district = hub.district_policy();
        assert!(district.lockdowns.is_empty() && district.health.is_empty());
        let own = hub.community_policy(7);
        assert_eq!(own.lockdowns[&7].epoch, 3);
        assert_eq!(own.health[&IdHash([1; 16])].community, 7);
        let next = hub.set_lockdown(7, false, "lifted", "op", 3).unwrap();
        assert_eq!(next.epoch, 4);
        assert_eq!(hub.migrate_policy(|_| vec![], 4).unwrap().0, 0, "once only");
    }

    /// One health list for two communities: each community's document gets its own flag.
    #[test]
    fn a_health_list_is_split_by_community() {
        let mut hub = Replica::new(Role::Hub, 1, Config::default());
        let flag = |b: u8, community| HealthFlag {
            id_hash: IdHash([b; 16]),
            community,
            status: "hospital".into(),
            at: 5,
        };
        hub.apply_policy(
            &PolicyBatch {
                health: vec![flag(1, 7), flag(2, 8)],
                ..PolicyBatch::default()
            },
            5,
        )
        .unwrap();
        assert_eq!(
            hub.community_policy(7).health.keys().collect::<Vec<_>>(),
            [&IdHash([1; 16])]
        );
        assert_eq!(
            hub.community_policy(8).health.keys().collect::<Vec<_>>(),
            [&IdHash([2; 16])]
        );
        assert!(hub.district_policy().health.is_empty());
    }

    /// Issue 12, defect 8: a revoked node key is recorded for good, its community's
    /// enrolment goes with it, and a bad revocation changes nothing.
    #[test]
    fn a_revocation_is_kept_takes_the_enrolment_and_bad_ones_change_nothing() {
        let mut hub = Replica::new(Role::Hub, 1, Config::default());
        let enrol = |key: u8| NodeEnrolment {
            community: 7,
            node_key: [key; 32],
            name: "seven".into(),
        };
        hub.apply_policy(
            &PolicyBatch {
                enrol: vec![enrol(1)],
                ..PolicyBatch::default()
            },
            1,
        )
        .unwrap();
        // A key that is not the enrolled one (replaced at a rekey) leaves the enrolment.
        revoke(&mut hub, vec![revocation(7, 9)]).unwrap();
        assert!(hub.policy().nodes.contains_key(&7));
        let later = NodeRevocation {
            at: 1_800_000_060,
            ..revocation(7, 1)
        };
        revoke(&mut hub, vec![later.clone()]).unwrap();
        let view = hub.policy();
        assert!(!view.nodes.contains_key(&7), "the enrolment is gone");
        assert_eq!(view.revoked_keys_of(7), vec![[9; 32], [1; 32]]);
        assert_eq!(view.revoked_nodes[&[1; 32]], later);
        assert!(view.revoked_keys_of(8).is_empty());
        assert_eq!(view.malformed, 0);

        let heads = hub.heads(crate::DocId::Policy);
        let mut no_one = revocation(7, 2);
        no_one.by = " ".into();
        let mut long = revocation(7, 3);
        long.reason = "x".repeat(POLICY_TEXT_LEN_MAX + 1);
        for bad in [
            vec![revocation(7, 1)],
            vec![revocation(7, 4), revocation(7, 4)],
            vec![no_one],
            vec![long],
        ] {
            assert!(matches!(revoke(&mut hub, bad), Err(WriteError::Invalid(_))));
        }
        assert_eq!(hub.heads(crate::DocId::Policy), heads, "nothing written");
    }

    #[test]
    fn revocations_are_bounded_in_the_district() {
        let mut hub = Replica::new(Role::Hub, 1, Config::default());
        let many = |from: usize, n: usize| -> Vec<NodeRevocation> {
            (from..from + n)
                .map(|i| {
                    let mut key = [0u8; 32];
                    key[..8].copy_from_slice(&(i as u64).to_be_bytes());
                    NodeRevocation {
                        node_key: key,
                        ..revocation(7, 0)
                    }
                })
                .collect()
        };
        revoke(&mut hub, many(0, NODE_REVOCATIONS_MAX)).unwrap();
        assert!(matches!(
            revoke(&mut hub, many(NODE_REVOCATIONS_MAX, 1)),
            Err(WriteError::Invalid(why)) if why.contains("at most")
        ));
        assert_eq!(hub.policy().revoked_nodes.len(), NODE_REVOCATIONS_MAX);
    }
}
