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
