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
    pub holder: HolderId,
    pub form: Declaration,
    pub id_hash: IdHash,
    pub kind: HolderKind,
    pub channel: Channel,
    pub review: Review,
    pub declared_at: UnixTime,
    /// The adult relative who declared for this person.
    pub declared_by: Option<HolderId>,
    /// The staff member who typed in a paper declaration.
    pub staff: Option<String>,
    /// The code now in force, if the person is cleared.
    pub cred: Option<CredId>,
    pub has_photo: bool,
    pub passes_printed: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CredStatus {
    Active,
    Revoked {
        at: UnixTime,
        why: String,
    },
    /// A visitor code whose host withdrew consent.
    ConsentWithdrawn {
        at: UnixTime,
    },
}

/// An issued code: the exact signed bytes, who holds it and whether it still stands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CredRecord {
    pub id: CredId,
    pub holder: HolderId,
    pub kind: HolderKind,
    pub code: Vec<u8>,
    pub issued_at: UnixTime,
    pub status: CredStatus,
    /// For visitor codes: the resident who consented, and who the visitor is.
    pub visit: Option<Visit>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Visit {
    pub host: HolderId,
    pub visitor_name: String,
    pub visitor_phone: String,
}

/// A household's entry code for the resident pages (sled tree `households` at the node). The
/// office hands the household the printed code; only a keyed hash of it is kept, so the
/// node's disk cannot give a code back.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HouseholdRecord {
    pub building: String,
    pub door: String,
    /// Keyed hash of the code in force; `None` once revoked (until reissued).
    pub code_hash: Option<[u8; 32]>,
    pub issued_at: UnixTime,
    pub revoked_at: Option<UnixTime>,
    /// People declared online through this household's sessions (what "my declarations"
    /// shows).
    pub members: Vec<HolderId>,
}

/// A lockdown decided at the community node itself (staff acting on a phone call while the
/// hub is unreachable). Stored at the node, reported to the hub when the link is up.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalLockdown {
    pub locked: bool,
    pub reason: String,
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

#[cfg(test)]
mod tests {
    use super::*;

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
