//! The roster: declared people, issued codes, visitor consents and pass photos, in sled tree
//! `roster`, plus the in-memory view that gate checks read.
//!
//! Keys: `p` + holder id → [`PersonRecord`]; `c` + credential id → [`CredRecord`];
//! `h` + keyed ID hash → holder id; `f` + holder id → photo bytes; `a` + credential id →
//! [`AdoptedCode`] (a code this node issued that it knows only from the district's copy of
//! its roster: restored from an older backup, it lost the declaration behind it).
//!
//! Architecture invariant: this module is the only reader and writer of tree `roster`. A
//! change is one atomic sled batch, flushed before [`Roster::commit`] returns, and only then
//! applied to the in-memory view: nothing is acknowledged or enforced that is not on disk.
//! Gate checks read the view ([`Roster::lookup`]), never sled.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};

use menjin_proto::UnixTime;
use menjin_proto::credential::{CredId, HolderId, HolderKind};
use menjin_proto::idnum::IdHash;
use menjin_proto::record::{CredRecord, CredStatus, PersonRecord};
use menjin_proto::wire::{self, HolderDisplay};

/// Marker key (prefix `m`, apart from the record prefixes): see [`Roster::mirror_pending`].
const MIRROR_PENDING: &[u8] = b"mirror-pending";
/// Records are small; anything bigger than this read back from disk is corruption.
const RECORD_LEN_MAX: usize = 64 * 1024;

/// Why the roster could not be read or written. A failed commit changed nothing, in sled or
/// in memory.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RosterError {
    /// sled failed (disk full, IO error).
    #[error("roster storage: {0}")]
    Storage(#[from] sled::Error),
    /// A stored record does not decode.
    #[error("roster record {key} is corrupt: {why}")]
    Corrupt {
        /// The record's key (lossy UTF-8).
        key: String,
        /// What does not decode.
        why: String,
    },
}

/// What a gate check needs to know about one code, kept in memory.
#[derive(Clone, Debug)]
pub struct CredView {
    /// The code's bytes as issued: a scanned code with identical bytes skips the signature
    /// check. Empty for an [`AdoptedCode`]: every scan of it is verified.
    pub code: Vec<u8>,
    /// Resident, dependent, staff or visitor.
    pub kind: HolderKind,
    /// Whose code it is.
    pub holder: HolderId,
    /// In force, revoked, or (visitors) consent withdrawn.
    pub status: CredStatus,
    /// What the guard is shown for this code.
    pub display: HolderDisplay,
    /// For visitor codes: the consenting resident.
    pub host: Option<HolderId>,
    /// The end of its validity (Unix seconds), as signed.
    pub valid_until: UnixTime,
}

#[derive(Default)]
struct View {
    creds: HashMap<CredId, Arc<CredView>>,
    /// Each cleared person's code in force, and the end of its validity (Unix seconds).
    active: HashMap<HolderId, (CredId, UnixTime)>,
    /// Each host's visitor codes, whatever their state (a home's list of invitations).
    visits: HashMap<HolderId, Vec<CredId>>,
}

/// A code this node issued, known here only from the district's copy of the roster (the
/// node was restored from a backup older than the declaration): no signed bytes, no name,
/// no ID number, only what the district copy holds. Gate checks verify its signature and
/// honour its status; the person must declare again (`node status`
/// `residents_to_redeclare`), which revokes it as any new declaration revokes the code before.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AdoptedCode {
    /// The code's id.
    pub id: CredId,
    /// Whose code it is.
    pub holder: HolderId,
    /// The holder's keyed ID hash: a new declaration of that person finds the code.
    pub id_hash: IdHash,
    /// The holder kind it was issued for (never a visitor: their invitations are not adopted).
    pub kind: HolderKind,
    /// In force, or revoked (final).
    pub status: CredStatus,
    /// Validity window, as signed in the code (Unix seconds).
    pub valid_from: UnixTime,
    /// End of the validity window.
    pub valid_until: UnixTime,
    /// The home, as the district copy holds it (shown to the guard).
    pub building: String,
    /// The door, as the district copy holds it.
    pub door: String,
}

/// One atomic change to the roster.
#[derive(Default)]
pub struct Change {
    /// People added or replaced (keyed by holder).
    pub persons: Vec<PersonRecord>,
    /// Codes added or replaced (keyed by code id).
    pub creds: Vec<CredRecord>,
    /// Photos stored for printed passes (PNG or JPEG, at most `PHOTO_LEN_MAX` bytes).
    pub photos: Vec<(HolderId, Vec<u8>)>,
    /// Codes known only from the district copy, added or revoked.
    pub adopted: Vec<AdoptedCode>,
}

/// The owner of sled tree `roster` (people, codes, ID-hash index, photos) and of the
/// in-memory view gate checks read. Cheap to clone.
#[derive(Clone)]
pub struct Roster {
    db: sled::Db,
    tree: sled::Tree,
    view: Arc<RwLock<View>>,
}

fn key(prefix: u8, id: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + id.len());
    k.push(prefix);
    k.extend_from_slice(id);
    k
}

fn corrupt(key: &[u8], why: impl ToString) -> RosterError {
    RosterError::Corrupt {
        key: hex::encode(key),
        why: why.to_string(),
    }
}

fn decode<T: serde::de::DeserializeOwned>(key: &[u8], bytes: &[u8]) -> Result<T, RosterError> {
    wire::decode(bytes, RECORD_LEN_MAX).map_err(|e| corrupt(key, e))
}

impl Roster {
    /// Opens the roster and builds the in-memory view from disk.
    ///
    /// # Errors
    /// [`RosterError`] on storage errors or corrupt records.
    pub fn open(db: &sled::Db) -> Result<Roster, RosterError> {
        let tree = db.open_tree("roster")?;
        let roster = Roster {
            db: db.clone(),
            tree,
            view: Arc::default(),
        };
        let mut persons = HashMap::new();
        for item in roster.tree.scan_prefix([b'p']) {
            let (k, v) = item?;
            let p: PersonRecord = decode(&k, &v)?;
            persons.insert(p.holder, p);
        }
        let mut view = View::default();
        for item in roster.tree.scan_prefix([b'c']) {
            let (k, v) = item?;
            let c: CredRecord = decode(&k, &v)?;
            roster.apply_cred(&mut view, &c, |h| persons.get(h).map(Cow::Borrowed));
        }
        for item in roster.tree.scan_prefix([b'a']) {
            let (k, v) = item?;
            apply_adopted(&mut view, &decode(&k, &v)?);
        }
        *roster.view.write().expect("roster view lock") = view;
        Ok(roster)
    }

    fn apply_cred<'p>(
        &self,
        view: &mut View,
        c: &CredRecord,
        person: impl Fn(&HolderId) -> Option<Cow<'p, PersonRecord>>,
    ) {
        let (display, host) = match &c.visit {
            Some(visit) => {
                let host = person(&visit.host);
                let (building, door) = host
                    .map(|h| (h.form.building.clone(), h.form.door.clone()))
                    .unwrap_or_default();
                let display = HolderDisplay {
                    name: visit.visitor_name.clone(),
                    building,
                    door,
                    kind: c.kind,
                    photo: None,
                };
                (display, Some(visit.host))
            }
            None => {
                let p = person(&c.holder);
                let display = match p {
                    Some(p) => HolderDisplay {
                        name: p.form.name.clone(),
                        building: p.form.building.clone(),
                        door: p.form.door.clone(),
                        kind: c.kind,
                        photo: p.has_photo.then(|| format!("photo:{}", p.holder)),
                    },
                    None => HolderDisplay {
                        name: String::new(),
                        building: String::new(),
                        door: String::new(),
                        kind: c.kind,
                        photo: None,
                    },
                };
                (display, None)
            }
        };
        if let Some(host) = host {
            let ids = view.visits.entry(host).or_default();
            if !ids.contains(&c.id) {
                ids.push(c.id);
            }
        }
        if c.visit.is_none() {
            match c.status {
                CredStatus::Active => {
                    view.active.insert(c.holder, (c.id, valid_until(&c.code)));
                }
                _ => {
                    if view.active.get(&c.holder).map(|a| a.0) == Some(c.id) {
                        view.active.remove(&c.holder);
                    }
                }
            }
        }
        let v = CredView {
            code: c.code.clone(),
            kind: c.kind,
            holder: c.holder,
            status: c.status.clone(),
            display,
            host,
            valid_until: valid_until(&c.code),
        };
        view.creds.insert(c.id, Arc::new(v));
    }

    /// Writes a change atomically, flushes it, then applies it to the in-memory view.
    ///
    /// # Errors
    /// [`RosterError`]; on error nothing of the change is visible.
    pub fn commit(&self, change: Change) -> Result<(), RosterError> {
        let mut batch = sled::Batch::default();
        for p in &change.persons {
            batch.insert(key(b'p', &p.holder.0), wire::encode(p));
            batch.insert(key(b'h', &p.id_hash.0), &p.holder.0[..]);
        }
        for c in &change.creds {
            batch.insert(key(b'c', &c.id.0), wire::encode(c));
        }
        for (holder, photo) in &change.photos {
            batch.insert(key(b'f', &holder.0), photo.as_slice());
        }
        for a in &change.adopted {
            batch.insert(key(b'a', &a.id.0), wire::encode(a));
            batch.insert(key(b'h', &a.id_hash.0), &a.holder.0[..]);
        }
        // Set until the change is also in the replicated roster (see `mirror_done`): a crash
        // in between is repaired at the next start.
        batch.insert(MIRROR_PENDING, &[]);
        self.tree.apply_batch(batch)?;
        self.db.flush()?;
        // Indexed, not searched: a bulk import is one change of 100,000 persons and codes.
        let persons: HashMap<HolderId, &PersonRecord> =
            change.persons.iter().map(|p| (p.holder, p)).collect();
        let creds: HashSet<CredId> = change.creds.iter().map(|c| c.id).collect();
        let mut view = self.view.write().expect("roster view lock");
        for c in &change.creds {
            self.apply_cred(&mut view, c, |h| {
                persons
                    .get(h)
                    .map(|p| Cow::Borrowed(*p))
                    .or_else(|| self.person(h).ok().flatten().map(Cow::Owned))
            });
        }
        for a in &change.adopted {
            apply_adopted(&mut view, a);
        }
        // A person's new details (a photo, a new name) change what the guard sees on codes
        // that are already out.
        for p in &change.persons {
            if let Some(id) = view.active.get(&p.holder).map(|a| a.0)
                && !creds.contains(&id)
                && let Ok(Some(c)) = self.cred(&id)
            {
                self.apply_cred(&mut view, &c, |_| Some(Cow::Borrowed(p)));
            }
        }
        Ok(())
    }

    /// The replicated roster has every committed change.
    pub fn mirror_done(&self) -> Result<(), RosterError> {
        self.tree.remove(MIRROR_PENDING)?;
        self.db.flush()?;
        Ok(())
    }

    /// A committed change may be missing from the replicated roster (a crash in between).
    pub fn mirror_pending(&self) -> Result<bool, RosterError> {
        Ok(self.tree.contains_key(MIRROR_PENDING)?)
    }

    /// Every code record (reconciliation after a crash; not a hot path).
    pub fn creds(&self) -> impl Iterator<Item = Result<CredRecord, RosterError>> + '_ {
        self.tree.scan_prefix([b'c']).map(|item| {
            let (k, v) = item?;
            decode(&k, &v)
        })
    }

    /// The hot path: one hash-map read under a read lock.
    pub fn lookup(&self, id: &CredId) -> Option<Arc<CredView>> {
        self.view
            .read()
            .expect("roster view lock")
            .creds
            .get(id)
            .cloned()
    }

    /// The person holds a code in force at `now`: active and not expired (a visitor's consent
    /// stands only while its host's code does).
    pub fn holder_active(&self, holder: &HolderId, now: UnixTime) -> bool {
        self.view
            .read()
            .expect("roster view lock")
            .active
            .get(holder)
            .is_some_and(|(_, until)| *until > now)
    }

    /// The visitor codes `host` consented to, whatever their state, from the view (the
    /// resident pages' list of a home's invitations; no sled read).
    pub fn visits_of(&self, host: &HolderId) -> Vec<(CredId, Arc<CredView>)> {
        let view = self.view.read().expect("roster view lock");
        view.visits
            .get(host)
            .into_iter()
            .flatten()
            .filter_map(|id| view.creds.get(id).map(|c| (*id, c.clone())))
            .collect()
    }

    /// A person's record, read from sled.
    ///
    /// # Errors
    /// [`RosterError`] if sled fails or the record is corrupt.
    pub fn person(&self, holder: &HolderId) -> Result<Option<PersonRecord>, RosterError> {
        let k = key(b'p', &holder.0);
        self.tree.get(&k)?.map(|v| decode(&k, &v)).transpose()
    }

    /// The person with this keyed ID hash, if declared here.
    ///
    /// # Errors
    /// [`RosterError`] if sled fails or a record is corrupt.
    pub fn person_by_hash(&self, id_hash: &IdHash) -> Result<Option<PersonRecord>, RosterError> {
        match self.holder_by_hash(id_hash)? {
            Some(holder) => self.person(&holder),
            None => Ok(None),
        }
    }

    /// The holder id this keyed ID hash was given here: a declared person's, or one known
    /// only from an [`AdoptedCode`].
    ///
    /// # Errors
    /// [`RosterError`] if sled fails or the index entry is corrupt.
    pub fn holder_by_hash(&self, id_hash: &IdHash) -> Result<Option<HolderId>, RosterError> {
        let k = key(b'h', &id_hash.0);
        let Some(v) = self.tree.get(&k)? else {
            return Ok(None);
        };
        let holder = v
            .as_ref()
            .try_into()
            .map_err(|_| corrupt(&k, "holder id is not 8 bytes"))?;
        Ok(Some(HolderId(holder)))
    }

    /// The person's code in force (from the view), if any.
    pub fn active_cred(&self, holder: &HolderId) -> Option<CredId> {
        self.view
            .read()
            .expect("roster view lock")
            .active
            .get(holder)
            .map(|a| a.0)
    }

    /// A code known only from the district copy, read from sled.
    ///
    /// # Errors
    /// [`RosterError`] if sled fails or the record is corrupt.
    pub fn adopted(&self, id: &CredId) -> Result<Option<AdoptedCode>, RosterError> {
        let k = key(b'a', &id.0);
        self.tree.get(&k)?.map(|v| decode(&k, &v)).transpose()
    }

    /// People known here only by an adopted code (no declaration on this node): they must
    /// declare again. Walks the adopted codes (few; `node status` only).
    ///
    /// # Errors
    /// [`RosterError`] if sled fails or a record is corrupt.
    pub fn residents_to_redeclare(&self) -> Result<u64, RosterError> {
        let mut holders = HashSet::new();
        for item in self.tree.scan_prefix([b'a']) {
            let (k, v) = item?;
            let a: AdoptedCode = decode(&k, &v)?;
            if self.person(&a.holder)?.is_none() {
                holders.insert(a.holder);
            }
        }
        Ok(holders.len() as u64)
    }

    /// A code's record, read from sled.
    ///
    /// # Errors
    /// [`RosterError`] if sled fails or the record is corrupt.
    pub fn cred(&self, id: &CredId) -> Result<Option<CredRecord>, RosterError> {
        let k = key(b'c', &id.0);
        self.tree.get(&k)?.map(|v| decode(&k, &v)).transpose()
    }

    /// A person's photo (PNG or JPEG), if one was attached.
    ///
    /// # Errors
    /// [`RosterError::Storage`] if sled fails.
    pub fn photo(&self, holder: &HolderId) -> Result<Option<Vec<u8>>, RosterError> {
        Ok(self.tree.get(key(b'f', &holder.0))?.map(|v| v.to_vec()))
    }

    /// Every person, for the progress summary (an operator command, not a hot path).
    pub fn persons(&self) -> impl Iterator<Item = Result<PersonRecord, RosterError>> + '_ {
        self.tree.scan_prefix([b'p']).map(|item| {
            let (k, v) = item?;
            decode(&k, &v)
        })
    }

    /// People for whom `matches` holds, in holder-id order after `after` (from the first
    /// when `None`), at most `limit`; and whether more match beyond them. Reads the person
    /// records from sled in key order (an office search, not a hot path: the roster is
    /// bounded by the community's size).
    ///
    /// # Errors
    /// [`RosterError`] if sled fails or a record is corrupt.
    pub fn find(
        &self,
        matches: impl Fn(&PersonRecord) -> bool,
        after: Option<HolderId>,
        limit: usize,
    ) -> Result<(Vec<PersonRecord>, bool), RosterError> {
        let start = match after {
            // The key just past `after`'s: `p` + holder + one zero byte.
            Some(h) => {
                let mut k = key(b'p', &h.0);
                k.push(0);
                k
            }
            None => vec![b'p'],
        };
        let mut out = Vec::new();
        for item in self.tree.range(start..) {
            let (k, v) = item?;
            if k.first() != Some(&b'p') {
                break;
            }
            let p: PersonRecord = decode(&k, &v)?;
            if matches(&p) {
                if out.len() >= limit {
                    return Ok((out, true));
                }
                out.push(p);
            }
        }
        Ok((out, false))
    }

    /// What gates cache (see `feed`): revoked codes of people, and active visitor codes
    /// with their hosts.
    pub fn trust_lists(&self) -> (Vec<RevokedCode>, Vec<(CredId, HolderId)>) {
        let view = self.view.read().expect("roster view lock");
        let mut revoked = Vec::new();
        let mut visitors = Vec::new();
        for (id, c) in &view.creds {
            match (c.kind, &c.status, c.host) {
                (HolderKind::Visitor, CredStatus::Active, Some(host)) => visitors.push((*id, host)),
                (HolderKind::Visitor, _, _) | (_, CredStatus::Active, _) => {}
                _ => revoked.push((*id, c.valid_until)),
            }
        }
        (revoked, visitors)
    }

    /// Counts of codes in force and revoked, from the view.
    pub fn code_counts(&self) -> (u64, u64) {
        let view = self.view.read().expect("roster view lock");
        let active = view
            .creds
            .values()
            .filter(|c| c.status == CredStatus::Active)
            .count() as u64;
        (active, view.creds.len() as u64 - active)
    }
}

/// An adopted code in the view: no bytes (a scan of it is always verified by signature),
/// no name for the guard.
fn apply_adopted(view: &mut View, a: &AdoptedCode) {
    match a.status {
        CredStatus::Active => {
            view.active.insert(a.holder, (a.id, a.valid_until));
        }
        _ => {
            if view.active.get(&a.holder).map(|x| x.0) == Some(a.id) {
                view.active.remove(&a.holder);
            }
        }
    }
    let v = CredView {
        code: Vec::new(),
        kind: a.kind,
        holder: a.holder,
        status: a.status.clone(),
        display: HolderDisplay {
            name: String::new(),
            building: a.building.clone(),
            door: a.door.clone(),
            kind: a.kind,
            photo: None,
        },
        host: None,
        valid_until: a.valid_until,
    };
    view.creds.insert(a.id, Arc::new(v));
}

/// A revoked code of a person and the end of its validity (Unix seconds).
pub type RevokedCode = (CredId, UnixTime);

/// The end of a stored code's validity (Unix seconds); 0 for bytes that do not decode (the
/// node wrote them, so that is corruption: such a code is in force for no one).
fn valid_until(code: &[u8]) -> UnixTime {
    menjin_proto::SignedCode::decode(code).map_or(0, |c| u64::from(c.credential.valid_until))
}
