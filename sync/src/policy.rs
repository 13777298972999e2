//! The district policy document (`policy`), written by the hub only: enrolled nodes,
//! lockdown state per community, health flags per ID hash.
//!
//! Layout: flat keys in the document root. `n/<community>` → a map per enrolled node
//! (fields updated in place); `l/<community>` → a lockdown record and `h/<id hash hex>` → a
//! health flag, both written as a new map object at every update, so that conflicting
//! writes (see the crate doc) are whole records that the reader can order, never a mix of
//! fields from two updates.

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
    /// A short status label ("red", "yellow", "green", "central_quarantine", ...), not
    /// empty, at most [`POLICY_TEXT_LEN_MAX`] bytes.
    pub status: String,
    /// When the district set it (the hub's clock). Of two concurrent flags for one person
    /// the later `at` wins.
    pub at: UnixTime,
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
}

impl PolicyBatch {
    /// Whether the batch changes nothing.
    pub fn is_empty(&self) -> bool {
        self.enrol.is_empty() && self.lockdowns.is_empty() && self.health.is_empty()
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
    /// Entries skipped because a field was missing or malformed.
    pub malformed: usize,
}

impl PolicyView {
    /// The epoch the next lockdown change of `community` must carry.
    pub fn next_epoch(&self, community: CommunityId) -> u64 {
        self.lockdowns.get(&community).map_or(1, |l| l.epoch + 1)
    }

    /// Whether `community` is locked down now.
    pub fn is_locked(&self, community: CommunityId) -> bool {
        self.lockdowns.get(&community).is_some_and(|l| l.locked)
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
    Ok(())
}

fn parse_community(s: &str) -> Option<CommunityId> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) || (s.len() > 1 && s.starts_with('0'))
    {
        return None;
    }
    s.parse().ok()
}

/// Materialises the policy document. Conflicting lockdown records (two hub incarnations
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
            (|| {
                let community = parse_community(c)?;
                let best = root_objects(doc, key, item.conflict)
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
                    })?;
                view.lockdowns.insert(community, best);
                Some(())
            })()
        } else if let Some(h) = key.strip_prefix(HEALTH_PREFIX) {
            (|| {
                let id_hash = IdHash(parse_hex(h)?);
                let best = root_objects(doc, key, item.conflict)
                    .iter()
                    .filter_map(|obj| {
                        let r = Record::read(doc, obj);
                        Some(HealthFlag {
                            id_hash,
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
