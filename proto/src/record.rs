//! What a node stores about people and codes (sled tree `roster`). These records stay on
//! the node: they hold the plain document number, which is needed to print a person's own
//! pass. Anything that leaves the node uses [`crate::idnum::IdHash`] instead.

use serde::{Deserialize, Serialize};

use crate::UnixTime;
use crate::credential::{CredId, HolderId, HolderKind};
use crate::declaration::{Declaration, Review};
use crate::idnum::IdHash;
use crate::wire::Channel;

/// A declared person and their latest declaration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersonRecord {
    /// The person's id in this node, kept across declarations (the record's key).
    pub holder: HolderId,
    /// The latest declaration as filled in, plain document number included.
    pub form: Declaration,
    /// Keyed hash of the form's document type and number: what leaves the node.
    pub id_hash: IdHash,
    /// The holder kind of the person's codes (`Dependent` when declared by proxy).
    pub kind: HolderKind,
    /// Online, by proxy or on paper.
    pub channel: Channel,
    /// The automatic review of `form`.
    pub review: Review,
    /// When the latest declaration was recorded (node clock, Unix seconds).
    pub declared_at: UnixTime,
    /// The adult relative who declared for this person.
    pub declared_by: Option<HolderId>,
    /// The staff member who typed in a paper declaration.
    pub staff: Option<String>,
    /// The code now in force, if the person is cleared.
    pub cred: Option<CredId>,
    /// A photo is stored for the printed pass (tree `roster`, key `f` + holder).
    pub has_photo: bool,
    /// Printed passes handed out, kept across declarations (a reprint is visible).
    pub passes_printed: u32,
}

/// [`CredStatus::Revoked`]'s `why` for a code replaced by a new, cleared declaration. These
/// `WHY_` words are English for the CLI and the roster; the pages recognise them and say them
/// in their own language.
pub const WHY_REPLACED: &str = "replaced by a new declaration";
/// The start of `why` for a code revoked by a new declaration not cleared (the review's `why`
/// follows).
pub const WHY_NEW_DECLARATION: &str = "new declaration: ";
/// The start of `why` for a code revoked, or a review set, by the district's health list (the
/// status follows).
pub const WHY_HEALTH_LIST: &str = "district health list: ";
/// The `why` shown for a visitor code whose host withdrew consent.
pub const WHY_CONSENT_WITHDRAWN: &str = "consent withdrawn";

/// Where an issued code stands at its node. Only `Active` ever changes: the other two are
/// final.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CredStatus {
    /// In force.
    Active,
    /// Revoked for good.
    Revoked {
        /// When (node clock, Unix seconds).
        at: UnixTime,
        /// For staff and logs: "replaced by a new declaration", "district health list: ...".
        why: String,
    },
    /// A visitor code whose host withdrew consent.
    ConsentWithdrawn {
        /// When (node clock, Unix seconds).
        at: UnixTime,
    },
}

/// An issued code: the exact signed bytes, who holds it and whether it still stands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CredRecord {
    /// The code's id (the record's key).
    pub id: CredId,
    /// The person it was issued to.
    pub holder: HolderId,
    /// The holder kind it was issued for.
    pub kind: HolderKind,
    /// The exact signed bytes ([`crate::SignedCode::as_bytes`]): a scanned code with the
    /// same bytes skips the signature check.
    pub code: Vec<u8>,
    /// When it was signed (node clock, Unix seconds).
    pub issued_at: UnixTime,
    /// In force, revoked or withdrawn.
    pub status: CredStatus,
    /// For visitor codes: the resident who consented, and who the visitor is.
    pub visit: Option<Visit>,
}

/// A resident's consent to one visitor (order item 6).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Visit {
    /// The consenting resident; the consent lapses when they no longer hold a valid code.
    pub host: HolderId,
    /// The visitor's name, as the host gave it.
    pub visitor_name: String,
    /// The visitor's phone, as the host gave it.
    pub visitor_phone: String,
}

/// A household's entry code for the resident pages (sled tree `households` at the node). The
/// office hands the household the printed code; only a keyed hash of it is kept, so the
/// node's disk cannot give a code back.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HouseholdRecord {
    /// The home's building, as on its residents' codes.
    pub building: String,
    /// The home's door, as on its residents' codes.
    pub door: String,
    /// Keyed hash of the code in force; `None` once revoked (until reissued).
    pub code_hash: Option<[u8; 32]>,
    /// When the code in force was issued (Unix seconds).
    pub issued_at: UnixTime,
    /// When the code was revoked (Unix seconds), if it was.
    pub revoked_at: Option<UnixTime>,
    /// People declared online through this household's sessions (what "my declarations"
    /// shows).
    pub members: Vec<HolderId>,
}

/// The longest lockdown reason (bytes), wherever it is typed (the node's console, the hub's):
/// the district policy that carries every lockdown holds at most this much.
pub const LOCKDOWN_REASON_LEN_MAX: usize = 200;

/// A lockdown decided at the community node itself (staff acting on a phone call while the
/// hub is unreachable). Stored at the node, reported to the hub when the link is up.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalLockdown {
    /// Locked down, or lifted.
    pub locked: bool,
    /// Why, as staff typed it.
    pub reason: String,
    /// The staff member who decided it.
    pub by: String,
    /// When staff decided it (node clock, Unix seconds).
    pub at: UnixTime,
}

/// The lockdown a node enforces, from the hub's latest decision (`hub`: locked, decided at)
/// and the node's own (`local`): the later decision wins, whoever made it; at equal times the
/// hub's. So a node can lock down at once while cut off, a later district decision (a lift,
/// say) overrides it, and a later local decision overrides an earlier district one until the
/// hub adopts it.
pub fn effective_lockdown(hub: Option<(bool, UnixTime)>, local: Option<&LocalLockdown>) -> bool {
    match (hub, local) {
        (Some((locked, hub_at)), Some(l)) => {
            if l.at > hub_at {
                l.locked
            } else {
                locked
            }
        }
        (Some((locked, _)), None) => locked,
        (None, Some(l)) => l.locked,
        (None, None) => false,
    }
}

/// How the district names who decided a lockdown it adopted from a node.
pub fn adopted_by(by: &str) -> String {
    format!("{by} (at the node)")
}

/// The time the hub files a node's local decision under: the node's, but never later than
/// when the hub received it (its own clock), so a node clock ahead of the hub's cannot date a
/// decision after district decisions that come later.
pub fn adopted_at(local: &LocalLockdown, received: UnixTime) -> UnixTime {
    local.at.min(received)
}

/// Whether a district decision (`locked`, `reason`, `by`) is the hub's adoption of `local`.
/// The node then drops its local decision: it is the district's, and the node's clock (ahead
/// of the hub's, perhaps) no longer competes with later district decisions.
pub fn adopts(locked: bool, reason: &str, by: &str, local: &LocalLockdown) -> bool {
    locked == local.locked && reason == local.reason && by == adopted_by(&local.by)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Defect 10 of the hardening issue: a local decision dated by a node clock ahead of the
    /// hub's won over every district decision made within that lead.
    #[test]
    fn a_node_clock_ahead_of_the_hub_does_not_outlast_a_later_district_lift() {
        let t: UnixTime = 1_800_000_000;
        // Locked at the node, whose clock is an hour ahead; the hub receives it at t + 5.
        let mut at_node = Some(local(true, t + 3_600));
        let l = at_node.clone().unwrap();
        let (at, by) = (adopted_at(&l, t + 5), adopted_by(&l.by));
        assert_eq!(at, t + 5);
        // The node sees its decision in the district policy: no longer its own.
        if adopts(true, &l.reason, &by, &l) {
            at_node = None;
        }
        assert!(effective_lockdown(Some((true, at)), at_node.as_ref()));
        // The district lifts a minute later (hub clock): lifted at the node.
        assert!(!effective_lockdown(Some((false, t + 60)), at_node.as_ref()));
        // A district decision of its own is not an adoption.
        assert!(!adopts(true, &l.reason, "operator", &l));
        assert!(!adopts(false, &l.reason, &by, &l));
    }

    fn local(locked: bool, at: UnixTime) -> LocalLockdown {
        LocalLockdown {
            locked,
            reason: "call".into(),
            by: "staff".into(),
            at,
        }
    }

    #[test]
    fn the_later_decision_wins() {
        assert!(!effective_lockdown(None, None));
        assert!(effective_lockdown(None, Some(&local(true, 10))));
        // Locked locally after the hub's last word: locked.
        assert!(effective_lockdown(Some((false, 5)), Some(&local(true, 10))));
        // The hub lifts after the local lockdown: lifted.
        assert!(!effective_lockdown(
            Some((false, 20)),
            Some(&local(true, 10))
        ));
        // Concurrent start at the hub and lift at the node: the later one.
        assert!(effective_lockdown(
            Some((true, 30)),
            Some(&local(false, 29))
        ));
        assert!(!effective_lockdown(
            Some((true, 30)),
            Some(&local(false, 31))
        ));
        // The hub adopting the node's decision (same time) changes nothing.
        assert!(effective_lockdown(Some((true, 10)), Some(&local(true, 10))));
    }
}

/// A staff account at the node (sled tree `staff`, keyed by name): the password only as an
/// argon2id hash in PHC form (`$argon2id$v=19$m=...$salt$hash`), never the password.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StaffRecord {
    /// As given to `menjin staff add` (checked by [`crate::staff::check_name`]).
    pub name: String,
    /// Clerk or head.
    pub role: crate::staff::StaffRole,
    /// The argon2id hash of the password, PHC string.
    pub password_hash: String,
    /// Random, new at every add and password change: a page session holds the stamp it was
    /// opened with, so a changed password or a removed account ends it.
    pub stamp: u64,
    /// When the account was added (Unix seconds).
    pub created_at: UnixTime,
    /// When the password was last set (Unix seconds).
    pub password_set_at: UnixTime,
}

impl std::fmt::Debug for StaffRecord {
    // The hash is not a secret as such, but it has no business in a log line either.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StaffRecord")
            .field("name", &self.name)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

/// One entry of the node's audit log (sled tree `audit`, keyed by a rising sequence number):
/// a staff member searched the roster or opened a person's record. Never an ID number: a
/// name search whose text has a digit in it is kept as [`AuditAction::NameSearch`] with no
/// text.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// When (node clock, Unix seconds).
    pub at: UnixTime,
    /// The staff member, as logged in.
    pub staff: String,
    /// What they did.
    pub action: AuditAction,
}

/// What a staff member did with the roster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AuditAction {
    /// A search by name.
    NameSearch {
        /// The text searched, `None` when it had a digit in it (perhaps an ID number).
        text: Option<String>,
        /// People found (at most one page).
        found: u32,
    },
    /// A search by home.
    DoorSearch {
        /// The building searched.
        building: String,
        /// The door searched (empty: the whole building).
        door: String,
        /// People found (at most one page).
        found: u32,
    },
    /// A search by holder id.
    HolderSearch {
        /// The holder id searched.
        holder: HolderId,
        /// Whether that person is declared here.
        found: bool,
    },
    /// A person's record opened.
    RecordView {
        /// Whose record.
        holder: HolderId,
    },
}
