//! Who is who on the replication link, which documents exist, and the authority rule: who
//! writes each document and from whom a replica accepts changes to it.

use std::fmt;
use std::str::FromStr;

use menjin_proto::CommunityId;
use menjin_proto::credential::HolderId;

/// Default number of roster shards per community. 100,000 residents in one Automerge
/// document take 1.36 s to load; in 16 shards of ~6,000 a node's cold start stays well
/// under 2 s and one change touches a small document.
pub const ROSTER_SHARDS_DEFAULT: u8 = 16;

/// A replica's role in its district. The driver derives a peer's role from its
/// authenticated key (the hub from the district root's node certificates, a node from the
/// hub's certificate); roles never travel in sync messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// The district hub: syncs with every enrolled node, writes the policy.
    Hub,
    /// A community node: syncs with its hub only, writes its community's roster.
    Node(CommunityId),
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Role::Hub => write!(f, "hub"),
            Role::Node(c) => write!(f, "node/{c}"),
        }
    }
}

/// A replicated document. Its string form (`policy`, `roster/<community>/<shard>`) is what
/// goes on the wire and what the driver uses as its storage key; it is canonical (no
/// leading zeros, no spaces), so parsing and formatting round-trip exactly.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DocId {
    /// One shard of a community's roster: persons and their codes whose holder id's first
    /// byte modulo the community's shard count is `shard`.
    Roster {
        /// The community whose node writes this shard.
        community: CommunityId,
        /// Below the community's shard count (`Config::roster_shards`,
        /// [`ROSTER_SHARDS_DEFAULT`]).
        shard: u8,
    },
    /// The district document: enrolled nodes and revoked node keys, what every node needs.
    /// (Before the per-community split it also held every lockdown and health flag; the hub
    /// moves those out at start.)
    Policy,
    /// One community's policy: its lockdown and its residents' health flags. Shared between
    /// the hub and that community's node only.
    CommunityPolicy {
        /// The community it is for.
        community: CommunityId,
    },
}

impl DocId {
    /// The only role whose changes to this document are legitimate.
    pub fn writer(self) -> Role {
        match self {
            DocId::Roster { community, .. } => Role::Node(community),
            DocId::Policy | DocId::CommunityPolicy { .. } => Role::Hub,
        }
    }

    /// The roster shard holding `holder`'s person entry and codes.
    ///
    /// # Panics
    /// If `shards` is 0.
    pub fn roster_shard(community: CommunityId, holder: HolderId, shards: u8) -> DocId {
        assert!(shards > 0, "a community has at least one roster shard");
        DocId::Roster {
            community,
            shard: holder.0[0] % shards,
        }
    }
}

impl fmt::Display for DocId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DocId::Roster { community, shard } => write!(f, "roster/{community}/{shard}"),
            DocId::Policy => write!(f, "policy"),
            DocId::CommunityPolicy { community } => write!(f, "policy/{community}"),
        }
    }
}

/// A document id that is not one of the forms above.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("not a document id: {0:?}")]
pub struct DocIdError(pub String);

impl FromStr for DocId {
    type Err = DocIdError;

    fn from_str(s: &str) -> Result<DocId, DocIdError> {
        let bad = || DocIdError(s.chars().take(40).collect());
        if s == "policy" {
            return Ok(DocId::Policy);
        }
        let canonical = |t: &str| {
            !t.is_empty()
                && t.bytes().all(|b| b.is_ascii_digit())
                && (t == "0" || !t.starts_with('0'))
        };
        if let Some(c) = s.strip_prefix("policy/") {
            if !canonical(c) {
                return Err(bad());
            }
            let community = c.parse().map_err(|_| bad())?;
            return Ok(DocId::CommunityPolicy { community });
        }
        let rest = s.strip_prefix("roster/").ok_or_else(bad)?;
        let (c, sh) = rest.split_once('/').ok_or_else(bad)?;
        if !canonical(c) || !canonical(sh) {
            return Err(bad());
        }
        let community = c.parse().map_err(|_| bad())?;
        let shard = sh.parse().map_err(|_| bad())?;
        Ok(DocId::Roster { community, shard })
    }
}

/// Whether `me` and `peer` replicate `doc` with each other. A hub and node `c` share the
/// district document, `c`'s policy and `c`'s roster; nothing else is shared with anyone (a
/// lockdown or health flag of one community never reaches another's node).
pub fn shared(me: Role, peer: Role, doc: DocId) -> bool {
    let community = match (me, peer) {
        (Role::Hub, Role::Node(c)) | (Role::Node(c), Role::Hub) => c,
        _ => return false,
    };
    match doc {
        DocId::Policy => true,
        DocId::Roster { community: d, .. } | DocId::CommunityPolicy { community: d } => {
            d == community
        }
    }
}

/// Whether `me` applies changes to `doc` that arrive from `peer` (the authority rule).
///
/// Changes are accepted only from the document's writer; in addition a node takes its own
/// roster back from its hub, which holds a copy of exactly what that node wrote (the hub
/// accepts roster changes from no one else), so a node whose disk was lost recovers its
/// roster. The hub never takes the policy back from a node: a node could forge it.
pub fn accepts_changes(me: Role, peer: Role, doc: DocId) -> bool {
    shared(me, peer, doc) && (peer == doc.writer() || (me == doc.writer() && peer == Role::Hub))
}

/// Whether `me` holds `doc` at all (for loading from storage): a node holds the district
/// document, its own policy and its own roster; the hub holds every document.
pub fn holds(me: Role, doc: DocId) -> bool {
    match (me, doc) {
        (_, DocId::Policy) | (Role::Hub, _) => true,
        (Role::Node(c), DocId::Roster { community, .. } | DocId::CommunityPolicy { community }) => {
            c == community
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doc_ids_round_trip_and_refuse_non_canonical_forms() {
        for d in [
            DocId::Policy,
            DocId::Roster {
                community: 0,
                shard: 0,
            },
            DocId::Roster {
                community: u32::MAX,
                shard: 255,
            },
            DocId::CommunityPolicy { community: 0 },
            DocId::CommunityPolicy {
                community: 440_304_001,
            },
        ] {
            assert_eq!(d.to_string().parse::<DocId>().unwrap(), d);
        }
        for bad in [
            "",
            "Policy",
            "roster",
            "roster/1",
            "roster/01/2",
            "roster/1/02",
            "roster/1/256",
            "roster/4294967296/1",
            "roster/-1/2",
            "roster/1/2/3",
            "roster/ 1/2",
            "roster/+1/2",
            "policy/",
            "policy/01",
            "policy/1/2",
            "policy/4294967296",
            "policy/x",
        ] {
            assert!(bad.parse::<DocId>().is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn authority_rule() {
        let roster = |c| DocId::Roster {
            community: c,
            shard: 3,
        };
        let (hub, n1, n2) = (Role::Hub, Role::Node(1), Role::Node(2));
        assert!(accepts_changes(hub, n1, roster(1)));
        assert!(!accepts_changes(hub, n2, roster(1)));
        assert!(!accepts_changes(hub, n1, DocId::Policy));
        assert!(accepts_changes(n1, hub, DocId::Policy));
        assert!(accepts_changes(n1, hub, roster(1)));
        assert!(!accepts_changes(n1, hub, roster(2)));
        assert!(!accepts_changes(n1, n1, roster(1)));
        assert!(!shared(n1, n2, DocId::Policy));
        assert!(!shared(hub, hub, DocId::Policy));
        // A community's policy goes to its own node only, and comes only from the hub.
        let own = DocId::CommunityPolicy { community: 1 };
        assert!(shared(hub, n1, own) && accepts_changes(n1, hub, own));
        assert!(!shared(hub, n2, own) && !accepts_changes(n2, hub, own));
        assert!(!accepts_changes(hub, n1, own));
    }
}
