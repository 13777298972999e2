//! The roster documents (`roster/<community>/<shard>`): typed entries, how they are written
//! into an Automerge document and how a document is read back ("materialised").
//!
//! Layout: flat keys in the document root, `p/<holder hex>` → a map per person and
//! `c/<code hex>` → a map per code, each code in the shard of its holder. No container
//! objects are ever created, so two incarnations of a writer that both start from an empty
//! document cannot hide each other's entries behind conflicting containers.

use std::collections::{BTreeMap, HashMap};

use automerge::transaction::Transactable;
use automerge::{
    Automerge, ChangeHash, ObjId, ObjType, ROOT, ReadDoc, ScalarValue, Value, hydrate,
};

use menjin_proto::credential::{CredId, HolderId, HolderKind, LABEL_LEN_MAX};
use menjin_proto::declaration::Outcome;
use menjin_proto::idnum::IdHash;
use menjin_proto::{CommunityId, UnixTime};

use crate::doc_id::DocId;
use crate::error::WriteError;

pub(crate) const PERSON_PREFIX: &str = "p/";
pub(crate) const CODE_PREFIX: &str = "c/";

/// A person as the district sees them: no name, no ID number (only its keyed hash).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RosterEntry {
    /// The person's holder id: what their codes name, and what places them in a shard.
    pub holder: HolderId,
    /// Keyed hash of the person's document (type and number); matches the hub's health
    /// lists.
    pub id_hash: IdHash,
    /// The building of the person's home, at most [`LABEL_LEN_MAX`] bytes.
    pub building: String,
    /// The door (flat) number, at most [`LABEL_LEN_MAX`] bytes.
    pub door: String,
    /// Resident, dependent, visitor or staff: what the gate rule lets them do.
    pub kind: HolderKind,
    /// Outcome of the person's latest declaration.
    pub outcome: Outcome,
    /// The code now in force, if any.
    pub cred: Option<CredId>,
    /// When the node recorded the latest declaration (its own clock).
    pub declared_at: UnixTime,
}

/// Where a code stands. `Revoked` and `ConsentWithdrawn` are final: see the crate doc.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CodeStatus {
    /// In force: gates let it through if the rule does.
    Active,
    /// Replaced by a new declaration or withdrawn by staff; refused for good.
    Revoked,
    /// A visitor code whose host withdrew consent.
    ConsentWithdrawn,
}

impl CodeStatus {
    /// The stored form in the roster document (`active`, `revoked`, `consent_withdrawn`).
    pub fn as_str(self) -> &'static str {
        match self {
            CodeStatus::Active => "active",
            CodeStatus::Revoked => "revoked",
            CodeStatus::ConsentWithdrawn => "consent_withdrawn",
        }
    }

    /// Parses the stored form written by [`CodeStatus::as_str`]; `None` for anything else.
    pub fn parse(s: &str) -> Option<CodeStatus> {
        Some(match s {
            "active" => CodeStatus::Active,
            "revoked" => CodeStatus::Revoked,
            "consent_withdrawn" => CodeStatus::ConsentWithdrawn,
            _ => return None,
        })
    }

    /// A final status never changes again.
    pub fn is_final(self) -> bool {
        self != CodeStatus::Active
    }

    /// Which of two conflicting values wins: revoked over withdrawn over active.
    fn rank(self) -> u8 {
        match self {
            CodeStatus::Active => 0,
            CodeStatus::ConsentWithdrawn => 1,
            CodeStatus::Revoked => 2,
        }
    }
}

/// An issued code.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CodeEntry {
    /// The code's id, as carried in the signed credential.
    pub id: CredId,
    /// The person it was issued to; the code lives in that person's shard.
    pub holder: HolderId,
    /// The holder kind the code was issued for.
    pub kind: HolderKind,
    /// Once final, it never changes (see the crate doc's merge rules).
    pub status: CodeStatus,
    /// Start of the validity window, as in the signed credential.
    pub valid_from: UnixTime,
    /// End of the validity window; not before `valid_from`.
    pub valid_until: UnixTime,
    /// For visitor codes: the resident who consented.
    pub host: Option<HolderId>,
    /// Set with a final status.
    pub revoked_at: Option<UnixTime>,
}

/// One logical roster change (a declaration, a revocation, a visitor invitation, a bulk
/// import): committed as one Automerge change per shard it touches.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RosterBatch {
    /// Persons to add or update; of several entries for one holder the last counts.
    pub persons: Vec<RosterEntry>,
    /// Codes to add or update; of several entries for one code the last counts.
    pub codes: Vec<CodeEntry>,
}

impl RosterBatch {
    /// Adds a person entry (a new person, or a new version of one).
    pub fn put_person(&mut self, entry: RosterEntry) -> &mut Self {
        self.persons.push(entry);
        self
    }

    /// Adds a code entry (a new code, or a status change of one).
    pub fn put_code(&mut self, entry: CodeEntry) -> &mut Self {
        self.codes.push(entry);
        self
    }

    /// Whether the batch changes nothing.
    pub fn is_empty(&self) -> bool {
        self.persons.is_empty() && self.codes.is_empty()
    }
}

/// A roster (one shard, or a whole community when shards are merged) as plain data.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RosterView {
    /// Persons by holder id.
    pub persons: BTreeMap<HolderId, RosterEntry>,
    /// Codes by id, with the conflict rule for `status` and `revoked_at` applied.
    pub codes: BTreeMap<CredId, CodeEntry>,
    /// Entries skipped because a field was missing or malformed (none in documents written
    /// through this crate).
    pub malformed: usize,
}

impl RosterView {
    /// Adds another shard's entries.
    pub fn merge(&mut self, other: RosterView) {
        self.persons.extend(other.persons);
        self.codes.extend(other.codes);
        self.malformed += other.malformed;
    }
}

pub(crate) fn check_batch(batch: &RosterBatch) -> Result<(), WriteError> {
    for p in &batch.persons {
        for (what, v) in [("building", &p.building), ("door", &p.door)] {
            if v.len() > LABEL_LEN_MAX {
                return Err(WriteError::Invalid(format!(
                    "{what} of {} is {} bytes (at most {LABEL_LEN_MAX})",
                    p.holder,
                    v.len()
                )));
            }
        }
    }
    for c in &batch.codes {
        if c.status.is_final() != c.revoked_at.is_some() {
            return Err(WriteError::Invalid(format!(
                "code {}: revoked_at is set exactly when the status is final",
                c.id
            )));
        }
        if c.valid_until < c.valid_from {
            return Err(WriteError::Invalid(format!(
                "code {}: valid until before valid from",
                c.id
            )));
        }
    }
    Ok(())
}

/// Refuses a code write that would move a final status anywhere else.
pub(crate) fn check_code_transition(doc: &Automerge, code: &CodeEntry) -> Result<(), WriteError> {
    match read_code(doc, code.id) {
        Some(current) if current.status.is_final() && code.status != current.status => {
            Err(WriteError::StatusFinal {
                code: code.id,
                status: current.status,
            })
        }
        _ => Ok(()),
    }
}

pub(crate) fn person_key(holder: HolderId) -> String {
    format!("{PERSON_PREFIX}{holder}")
}

pub(crate) fn code_key(id: CredId) -> String {
    format!("{CODE_PREFIX}{id}")
}

/// A record as it stands before a write: its map object and fields. Read from the
/// committed document before the transaction opens (reads inside a large transaction are
/// slow), so that a write touches only the fields that change.
pub(crate) struct Existing {
    obj: ObjId,
    fields: Record,
}

/// The winning record stored under a root key, if any.
pub(crate) fn existing(doc: &impl ReadDoc, key: &str) -> Option<Existing> {
    let obj = root_objects(doc, key, false).into_iter().next()?;
    let fields = Record::read(doc, &obj);
    Some(Existing { obj, fields })
}

/// Writes one person, touching only the fields that differ from `existing` (read with
/// [`existing`] under [`person_key`]).
pub(crate) fn put_person(
    tx: &mut impl Transactable,
    e: &RosterEntry,
    existing: Option<&Existing>,
) -> Result<(), automerge::AutomergeError> {
    put_record(tx, &person_key(e.holder), existing, &person_fields(e))
}

/// Writes one code, touching only the fields that differ from `existing`. The caller has
/// checked the status transition ([`check_code_transition`]).
pub(crate) fn put_code(
    tx: &mut impl Transactable,
    e: &CodeEntry,
    existing: Option<&Existing>,
) -> Result<(), automerge::AutomergeError> {
    put_record(tx, &code_key(e.id), existing, &code_fields(e))
}

/// Writes a flat record under `key` in the root: creates the map if absent, else puts only
/// the fields whose value differs and deletes those that became absent.
pub(crate) fn put_record(
    tx: &mut impl Transactable,
    key: &str,
    existing: Option<&Existing>,
    fields: &[(&str, Option<ScalarValue>)],
) -> Result<(), automerge::AutomergeError> {
    match existing {
        None => {
            // One batch insertion instead of one operation per field: Automerge 0.12 spends
            // tens of microseconds per single operation.
            tx.batch_create_object(ROOT, key, &hydrate_record(fields), false)?;
        }
        Some(Existing {
            obj,
            fields: current,
        }) => {
            for (name, value) in fields {
                let now = current.0.get(*name).and_then(|v| v.first());
                match value {
                    Some(v) if now != Some(v) => tx.put(obj, *name, v.clone())?,
                    None if now.is_some() => tx.delete(obj, *name)?,
                    _ => {}
                }
            }
        }
    }
    Ok(())
}

/// A new record as one hydrate value (absent fields left out).
pub(crate) fn hydrate_record(fields: &[(&str, Option<ScalarValue>)]) -> hydrate::Value {
    let map: HashMap<String, hydrate::Value> = fields
        .iter()
        .filter_map(|(name, v)| Some(((*name).to_owned(), hydrate::Value::from(v.clone()?))))
        .collect();
    hydrate::Value::Map(hydrate::Map::from(map))
}

pub(crate) fn person_fields(e: &RosterEntry) -> [(&'static str, Option<ScalarValue>); 7] {
    [
        ("id_hash", Some(hex::encode(e.id_hash.0).into())),
        ("building", Some(e.building.as_str().into())),
        ("door", Some(e.door.as_str().into())),
        ("kind", Some(e.kind.as_str().into())),
        ("outcome", Some(e.outcome.as_str().into())),
        ("cred", e.cred.map(|c| c.to_string().into())),
        ("declared_at", Some(e.declared_at.into())),
    ]
}

pub(crate) fn code_fields(e: &CodeEntry) -> [(&'static str, Option<ScalarValue>); 7] {
    [
        ("holder", Some(e.holder.to_string().into())),
        ("kind", Some(e.kind.as_str().into())),
        ("status", Some(e.status.as_str().into())),
        ("valid_from", Some(e.valid_from.into())),
        ("valid_until", Some(e.valid_until.into())),
        ("host", e.host.map(|h| h.to_string().into())),
        ("revoked_at", e.revoked_at.map(Into::into)),
    ]
}

/// The fields of one record: for each key the winning value first, then any conflicting
/// values (present only when Automerge reports a conflict).
pub(crate) struct Record(BTreeMap<String, Vec<ScalarValue>>);

impl Record {
    pub(crate) fn read(doc: &impl ReadDoc, obj: &ObjId) -> Record {
        let mut fields = BTreeMap::new();
        for item in doc.map_range(obj, ..) {
            let mut values = Vec::with_capacity(1);
            if let Value::Scalar(s) = Value::from(item.value.clone()) {
                values.push(s.into_owned());
            }
            let conflicting = match item.conflict {
                true => doc.get_all(obj, item.key.as_ref()).unwrap_or_default(),
                false => Vec::new(),
            };
            for (v, _) in conflicting {
                if let Value::Scalar(s) = v {
                    values.push(s.into_owned());
                }
            }
            fields.insert(item.key.into_owned(), values);
        }
        Record(fields)
    }

    pub(crate) fn str(&self, key: &str) -> Option<&str> {
        match self.0.get(key)?.first()? {
            ScalarValue::Str(s) => Some(s.as_str()),
            _ => None,
        }
    }

    pub(crate) fn all_str(&self, key: &str) -> impl Iterator<Item = &str> {
        self.0
            .get(key)
            .into_iter()
            .flatten()
            .filter_map(|v| match v {
                ScalarValue::Str(s) => Some(s.as_str()),
                _ => None,
            })
    }

    pub(crate) fn u64(&self, key: &str) -> Option<u64> {
        match self.0.get(key)?.first()? {
            ScalarValue::Uint(n) => Some(*n),
            ScalarValue::Int(n) => u64::try_from(*n).ok(),
            _ => None,
        }
    }

    pub(crate) fn all_u64(&self, key: &str) -> impl Iterator<Item = u64> {
        self.0
            .get(key)
            .into_iter()
            .flatten()
            .filter_map(|v| match v {
                ScalarValue::Uint(n) => Some(*n),
                _ => None,
            })
    }

    pub(crate) fn bool(&self, key: &str) -> Option<bool> {
        match self.0.get(key)?.first()? {
            ScalarValue::Boolean(b) => Some(*b),
            _ => None,
        }
    }
}

/// The map objects stored under a root key: the winner first, then conflicting ones.
pub(crate) fn root_objects(doc: &impl ReadDoc, key: &str, conflict: bool) -> Vec<ObjId> {
    let mut out = Vec::new();
    if let Ok(Some((Value::Object(ObjType::Map), id))) = doc.get(ROOT, key) {
        out.push(id);
    }
    let conflicting = match conflict {
        true => doc.get_all(ROOT, key).unwrap_or_default(),
        false => Vec::new(),
    };
    for (v, id) in conflicting {
        if matches!(v, Value::Object(ObjType::Map)) && !out.contains(&id) {
            out.push(id);
        }
    }
    out
}

pub(crate) fn parse_kind(s: &str) -> Option<HolderKind> {
    Some(match s {
        "resident" => HolderKind::Resident,
        "dependent" => HolderKind::Dependent,
        "visitor" => HolderKind::Visitor,
        "staff" => HolderKind::Staff,
        _ => return None,
    })
}

fn parse_outcome(s: &str) -> Option<Outcome> {
    Some(match s {
        "cleared" => Outcome::Cleared,
        "home_quarantine" => Outcome::HomeQuarantine,
        "central_quarantine" => Outcome::CentralQuarantine,
        "hospital" => Outcome::Hospital,
        _ => return None,
    })
}

pub(crate) fn parse_hex<const N: usize>(s: &str) -> Option<[u8; N]> {
    let mut out = [0u8; N];
    hex::decode_to_slice(s, &mut out).ok()?;
    Some(out)
}

fn read_person(doc: &impl ReadDoc, holder: HolderId, obj: &ObjId) -> Option<RosterEntry> {
    let r = Record::read(doc, obj);
    let cred = match r.str("cred") {
        Some(s) => Some(CredId(parse_hex(s)?)),
        None => None,
    };
    Some(RosterEntry {
        holder,
        id_hash: IdHash(parse_hex(r.str("id_hash")?)?),
        building: r.str("building")?.to_owned(),
        door: r.str("door")?.to_owned(),
        kind: parse_kind(r.str("kind")?)?,
        outcome: parse_outcome(r.str("outcome")?)?,
        cred,
        declared_at: r.u64("declared_at")?,
    })
}

/// Reads one code. Every conflicting value is looked at for the status: a final status
/// present anywhere wins (revoked over withdrawn), with the earliest `revoked_at` seen.
fn read_code_objects(doc: &impl ReadDoc, id: CredId, objs: &[ObjId]) -> Option<CodeEntry> {
    let winner = objs.first()?;
    let r = Record::read(doc, winner);
    let host = match r.str("host") {
        Some(s) => Some(HolderId(parse_hex(s)?)),
        None => None,
    };
    let mut entry = CodeEntry {
        id,
        holder: HolderId(parse_hex(r.str("holder")?)?),
        kind: parse_kind(r.str("kind")?)?,
        status: CodeStatus::parse(r.str("status")?)?,
        valid_from: r.u64("valid_from")?,
        valid_until: r.u64("valid_until")?,
        host,
        revoked_at: r.u64("revoked_at"),
    };
    let mut status = entry.status;
    let mut revoked_at: Option<u64> = None;
    let mut look = |r: &Record| {
        for s in r.all_str("status").filter_map(CodeStatus::parse) {
            if s.rank() > status.rank() {
                status = s;
            }
        }
        for t in r.all_u64("revoked_at") {
            revoked_at = Some(revoked_at.map_or(t, |x| x.min(t)));
        }
    };
    look(&r);
    for other in &objs[1..] {
        look(&Record::read(doc, other));
    }
    entry.status = status;
    entry.revoked_at = if status.is_final() {
        // A final status always comes with its time; fall back to the validity start if a
        // conflicting writer left it out.
        Some(revoked_at.unwrap_or(entry.valid_from))
    } else {
        None
    };
    Some(entry)
}

/// Reads one code from a roster document.
pub fn read_code(doc: &impl ReadDoc, id: CredId) -> Option<CodeEntry> {
    let key = format!("{CODE_PREFIX}{id}");
    let objs = root_objects(doc, &key, true);
    read_code_objects(doc, id, &objs)
}

/// Reads one person from a roster document.
pub fn read_person_entry(doc: &impl ReadDoc, holder: HolderId) -> Option<RosterEntry> {
    let key = format!("{PERSON_PREFIX}{holder}");
    let objs = root_objects(doc, &key, false);
    read_person(doc, holder, objs.first()?)
}

/// Materialises a whole roster document.
pub fn read_roster(doc: &impl ReadDoc) -> RosterView {
    let mut view = RosterView::default();
    for item in doc.map_range(ROOT, ..) {
        let key = item.key.as_ref();
        if let Some(h) = key.strip_prefix(PERSON_PREFIX) {
            let Some(holder) = parse_hex(h).map(HolderId) else {
                view.malformed += 1;
                continue;
            };
            let objs = root_objects(doc, key, false);
            match objs.first().and_then(|o| read_person(doc, holder, o)) {
                Some(e) => {
                    view.persons.insert(holder, e);
                }
                None => view.malformed += 1,
            }
        } else if let Some(c) = key.strip_prefix(CODE_PREFIX) {
            let Some(id) = parse_hex(c).map(CredId) else {
                view.malformed += 1;
                continue;
            };
            let objs = if item.conflict {
                root_objects(doc, key, true)
            } else {
                vec![item.id()]
            };
            match read_code_objects(doc, id, &objs) {
                Some(e) => {
                    view.codes.insert(id, e);
                }
                None => view.malformed += 1,
            }
        } else {
            view.malformed += 1;
        }
    }
    view
}

/// The persons and codes of a roster document that changed between `before` and the
/// document's current heads, as they stand now. This is what a driver feeds into its
/// in-memory and sled views after [`crate::Replica::handle_message`] reports the document
/// changed, instead of re-reading the whole shard.
///
/// Heads the document does not know (a view built elsewhere) make everything news: the
/// whole shard is returned.
pub fn read_roster_changes(doc: &Automerge, before: &[ChangeHash]) -> RosterView {
    if !before
        .iter()
        .all(|h| doc.get_change_meta_by_hash(h).is_some())
    {
        return read_roster(doc);
    }
    let mut keys = std::collections::BTreeSet::new();
    for patch in doc.diff(before, &doc.get_heads()) {
        let key = match patch.path.first() {
            Some((_, automerge::Prop::Map(k))) => k.clone(),
            _ => match &patch.action {
                automerge::PatchAction::PutMap { key, .. } => key.clone(),
                automerge::PatchAction::DeleteMap { key } => key.clone(),
                automerge::PatchAction::Conflict {
                    prop: automerge::Prop::Map(key),
                } => key.clone(),
                _ => continue,
            },
        };
        keys.insert(key);
    }
    let mut view = RosterView::default();
    for key in keys {
        if let Some(h) = key.strip_prefix(PERSON_PREFIX) {
            match parse_hex(h)
                .map(HolderId)
                .and_then(|holder| read_person_entry(doc, holder))
            {
                Some(e) => {
                    view.persons.insert(e.holder, e);
                }
                None => view.malformed += 1,
            }
        } else if let Some(c) = key.strip_prefix(CODE_PREFIX) {
            match parse_hex(c).map(CredId).and_then(|id| read_code(doc, id)) {
                Some(e) => {
                    view.codes.insert(e.id, e);
                }
                None => view.malformed += 1,
            }
        }
    }
    view
}

/// A shard built by [`roster_docs_for`]: its id, its compressed document, its heads.
pub type SavedShard = (DocId, Vec<u8>, Vec<automerge::ChangeHash>);

/// Builds a community's roster documents from scratch, one commit per shard, and returns
/// each shard's compressed document (what [`crate::Replica::load_doc`] takes as a snapshot)
/// with its heads (what a store keeps beside it, see [`crate::Persist::Snapshot`]).
/// For benchmarks and bulk imports: 30,000 residents take a fraction of a second in a
/// release build, where one commit per resident would take seconds.
///
/// # Errors
/// [`WriteError::Invalid`] for an entry that fails the same checks as
/// [`crate::Replica::apply_roster`].
pub fn roster_docs_for(
    community: CommunityId,
    shards: u8,
    persons: &[RosterEntry],
    codes: &[CodeEntry],
    time: UnixTime,
) -> Result<Vec<SavedShard>, WriteError> {
    let mut by_shard: BTreeMap<DocId, RosterBatch> = BTreeMap::new();
    for p in persons {
        by_shard
            .entry(DocId::roster_shard(community, p.holder, shards))
            .or_default()
            .persons
            .push(p.clone());
    }
    for c in codes {
        by_shard
            .entry(DocId::roster_shard(community, c.holder, shards))
            .or_default()
            .codes
            .push(c.clone());
    }
    let actor = crate::replica::actor_for(crate::Role::Node(community), 0);
    let mut out = Vec::with_capacity(by_shard.len());
    for (doc_id, batch) in by_shard {
        check_batch(&batch)?;
        let mut doc = Automerge::new().with_actor(actor.clone());
        doc.transact_with(
            |_| automerge::transaction::CommitOptions::default().with_time(time as i64),
            |tx| {
                // A fresh document: the whole root in one batch insertion.
                let mut root: HashMap<String, hydrate::Value> = HashMap::new();
                for p in &batch.persons {
                    root.insert(person_key(p.holder), hydrate_record(&person_fields(p)));
                }
                for c in &batch.codes {
                    root.insert(code_key(c.id), hydrate_record(&code_fields(c)));
                }
                tx.init_root_from_hydrate(&hydrate::Map::from(root))
            },
        )
        .map_err(|f| WriteError::Automerge(f.error.to_string()))?;
        out.push((doc_id, doc.save(), doc.get_heads()));
    }
    Ok(out)
}
