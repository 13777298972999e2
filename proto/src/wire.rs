//! Messages between a node and its gates and consoles: one request and one answer per QUIC
//! bidirectional stream, each encoded with postcard and closed by finishing the stream.
//!
//! Architecture invariant: these are the only types a node reads from the network, and
//! [`decode`] is the only way it reads them: size-checked, fully consumed, typed errors.

use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::credential::{CredId, HolderId, HolderKind};
use crate::declaration::{Declaration, Outcome};
use crate::rule::Reason;
use crate::{CommunityId, UnixTime};

/// A gate's check request is a code (≤ 210 characters) and a plate; its largest
/// request is an upload of [`crate::feed::UPLOAD_BATCH_MAX`] offline events (about 150 bytes
/// each). A small limit keeps a misbehaving gate from tying up memory.
pub const GATE_REQUEST_LEN_MAX: usize = 64 * 1024;
/// Photos for printed passes are at most [`PHOTO_LEN_MAX`]; console requests carry one.
pub const CONSOLE_REQUEST_LEN_MAX: usize = PHOTO_LEN_MAX + 64 * 1024;
/// A printed pass embeds its photo; a log page holds at most [`LOG_PAGE_MAX`] events.
pub const RESPONSE_LEN_MAX: usize = 4 * 1024 * 1024;
/// A passport photo needs far less than this; more is a wrong file.
pub const PHOTO_LEN_MAX: usize = 1024 * 1024;
/// Events per log answer; page on with `after_seq`.
pub const LOG_PAGE_MAX: u32 = 10_000;
/// Health statuses per request: an import of 100,000 rows goes in 20 requests, each well
/// under [`CONSOLE_REQUEST_LEN_MAX`].
pub const HEALTH_BATCH_MAX: usize = 5_000;
/// The statuses a district health list may give.
pub const HEALTH_STATUSES: [&str; 4] = [
    "home_quarantine",
    "central_quarantine",
    "hospital",
    "cleared",
];
/// Gate ids are short names set by staff ("north-1").
pub const GATE_ID_LEN_MAX: usize = 32;

/// A gate id that is not 1 to [`GATE_ID_LEN_MAX`] letters, digits, `-` or `_`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("gate id {0:?}: 1 to 32 letters, digits, - or _")]
pub struct BadGateId(pub String);

/// Checks a gate id (it names files, log fields and TLS peers).
///
/// # Errors
/// [`BadGateId`] naming the id.
pub fn check_gate_id(id: &str) -> Result<(), BadGateId> {
    if id.is_empty()
        || id.len() > GATE_ID_LEN_MAX
        || !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(BadGateId(id.to_string()));
    }
    Ok(())
}
pub const PLATE_LEN_MAX: usize = 16;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    #[error("message of {0} bytes exceeds the limit of {1}")]
    TooLong(usize, usize),
    #[error("malformed message: {0}")]
    Malformed(String),
    #[error("malformed message: {0} trailing bytes")]
    Trailing(usize),
}

/// Encodes a message.
///
/// # Panics
/// Never for these types: postcard only fails on maps without known length.
pub fn encode<T: Serialize>(msg: &T) -> Vec<u8> {
    postcard::to_stdvec(msg).expect("postcard encodes every wire type")
}

/// Decodes a message, refusing oversized input and trailing bytes.
///
/// # Errors
/// [`WireError`] saying what is wrong.
pub fn decode<T: DeserializeOwned>(bytes: &[u8], limit: usize) -> Result<T, WireError> {
    if bytes.len() > limit {
        return Err(WireError::TooLong(bytes.len(), limit));
    }
    let (msg, rest) =
        postcard::take_from_bytes::<T>(bytes).map_err(|e| WireError::Malformed(e.to_string()))?;
    if !rest.is_empty() {
        return Err(WireError::Trailing(rest.len()));
    }
    Ok(msg)
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    #[default]
    In,
    Out,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::In => "in",
            Direction::Out => "out",
        }
    }
}

/// One person at one gate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckRequest {
    /// The scanned text (`MJ:...`).
    pub code: String,
    pub direction: Direction,
    /// Body temperature in tenths of a degree Celsius.
    pub temperature_dc: i16,
    /// Set when the person is in a vehicle.
    pub plate: Option<String>,
}

/// What the guard must see.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HolderDisplay {
    pub name: String,
    pub building: String,
    pub door: String,
    pub kind: HolderKind,
    /// Set for printed-pass holders: the guard compares the face with this photo.
    pub photo: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckAnswer {
    pub allowed: bool,
    pub reason: Reason,
    pub fever: bool,
    pub holder: Option<HolderDisplay>,
    /// The gate-log sequence number under which the node stored this check (flushed).
    pub seq: u64,
    pub node_time_ms: u64,
    /// Anti-passback: this resident went in before and has not gone out since. The guard
    /// must look (a lent code?); the rule itself does not refuse.
    pub passback: bool,
}

/// One line of the gate log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GateEvent {
    pub seq: u64,
    pub time_ms: u64,
    pub gate: String,
    pub direction: Direction,
    pub allowed: bool,
    pub reason: Reason,
    pub fever: bool,
    pub temperature_dc: i16,
    pub cred: Option<CredId>,
    pub holder: Option<HolderId>,
    pub kind: Option<HolderKind>,
    pub plate: Option<String>,
    /// Decided by the gate alone while its node was unreachable.
    pub offline: Option<OfflineMark>,
    /// Anti-passback flag (see [`CheckAnswer::passback`]).
    pub passback: bool,
}

/// How an event decided by a gate alone came to the node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OfflineMark {
    /// The gate's own event number (one per event, rising).
    pub gate_seq: u64,
    /// When the gate decided, on its best estimate of the node's clock. `time_ms` is when
    /// the node stored it.
    pub decided_ms: u64,
    /// The gate had not heard from its node for longer than its bound (visitors refused).
    pub degraded: bool,
}

/// Filters for a log query; all optional, combined with "and".
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogQuery {
    pub from_ms: Option<u64>,
    pub until_ms: Option<u64>,
    pub gate: Option<String>,
    pub holder: Option<HolderId>,
    /// Only events after this sequence number (paging).
    pub after_seq: Option<u64>,
    pub limit: u32,
}

/// Which declaration channel a form came through.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    Online,
    /// Online by an adult relative of the same household.
    Proxy,
    /// On paper at the office, typed in by staff, with a photo: gets a printed pass.
    Offline,
}

/// The request types, one per role of peer: [`GateRequest`], [`ConsoleRequest`],
/// [`HubRequest`]. A client sends only these; a server decodes the one its peer's role
/// allows (sealed: nothing else is a request).
pub trait RoleRequest: Serialize + DeserializeOwned + sealed::Sealed {}

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::GateRequest {}
    impl Sealed for super::ConsoleRequest {}
    impl Sealed for super::HubRequest {}
}

impl RoleRequest for GateRequest {}
impl RoleRequest for ConsoleRequest {}
impl RoleRequest for HubRequest {}

/// What a gate may ask its node, one request per stream. Which gate asks is the key that
/// authenticated the connection: no request names a gate, so none can speak for another.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum GateRequest {
    /// Decide on one scanned person; answered with [`Response::Check`] once logged.
    Check(CheckRequest),
    /// Subscribe to the trust feed (see [`crate::feed`]); answered with feed frames on the
    /// same stream for as long as the connection lives.
    Subscribe,
    /// The feed version the gate has applied and flushed, and its state.
    Ack(crate::feed::GateAck),
    /// Events the gate decided alone, in `gate_seq` order. Answered with
    /// [`Response::Uploaded`]; events at or below the node's cursor for that gate are
    /// skipped, so a resent upload is harmless.
    Upload {
        /// At most [`crate::feed::UPLOAD_BATCH_MAX`].
        events: Vec<crate::feed::OfflineEvent>,
    },
}

/// What the community workstation (the node's console key) may ask its node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConsoleRequest {
    /// A resident's own declaration.
    Declare {
        /// The five groups of fields.
        form: Declaration,
    },
    /// A declaration by an adult relative of the same household (`by`).
    DeclareProxy {
        /// The declaring relative, who must hold a valid code at the same door.
        by: HolderId,
        /// The dependent's form.
        form: Declaration,
    },
    /// A paper declaration typed in at the office, with its photo: gets a printed pass.
    DeclareOffline {
        /// The form as written on paper.
        form: Declaration,
        /// PNG or JPEG, at most [`PHOTO_LEN_MAX`] bytes.
        photo: Vec<u8>,
        /// The staff member who typed it in (written to the record).
        staff: String,
    },
    /// A person declared by a relative asks for a printed pass with a photo.
    AttachPhoto {
        /// The person the photo shows.
        holder: HolderId,
        /// PNG or JPEG, at most [`PHOTO_LEN_MAX`] bytes.
        photo: Vec<u8>,
    },
    /// The printable pass of a person with a photo.
    PrintPass {
        /// Whose pass.
        holder: HolderId,
    },
    /// "My declarations": the current status and the code again.
    ShowHolder {
        /// Whose status.
        holder: HolderId,
    },
    /// A resident's consent for a visitor within a time window.
    InviteVisitor {
        /// The consenting resident, who must hold a valid code.
        host: HolderId,
        /// As the visitor gives it.
        visitor_name: String,
        /// As the visitor gives it.
        visitor_phone: String,
        /// Start of the window (Unix seconds).
        from: UnixTime,
        /// End of the window (Unix seconds), at most a week after `from`.
        until: UnixTime,
    },
    /// Withdraws a visitor's consent: the code is refused from then on.
    WithdrawConsent {
        /// The visitor's code.
        visitor_code: CredId,
    },
    /// A page of the gate log.
    QueryLog(LogQuery),
    /// Progress per building against the deadline.
    RosterSummary,
    /// Admits a gate by its public key.
    EnrolGate {
        /// 1 to [`GATE_ID_LEN_MAX`] letters, digits, `-` or `_`.
        gate_id: String,
        /// Its ed25519 public key.
        public_key: [u8; 32],
    },
    /// The node's status.
    Status,
    /// A lockdown decided at the node (staff on a phone call, hub unreachable).
    LocalLockdown {
        /// Start (`true`) or lift.
        locked: bool,
        /// Why, for the log and the guard.
        reason: String,
        /// Who decided.
        by: String,
    },
    /// A new household code for a home (replaces the one in force, if any). Answered with
    /// [`Response::HouseholdCode`]: the only time the code is seen.
    IssueHouseholdCode {
        /// The home's building.
        building: String,
        /// The home's door.
        door: String,
    },
    /// The home's household code stops working (its sessions end).
    RevokeHouseholdCode {
        /// The home's building.
        building: String,
        /// The home's door.
        door: String,
    },
}

/// What the district operator's console (the hub's console key) may ask the hub.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum HubRequest {
    /// Admit a community node by its certificate (from the district root).
    EnrolNode {
        /// The encoded [`crate::NodeCert`].
        cert: Vec<u8>,
    },
    /// Gate events across the district, or of one community.
    QueryDistrictLog {
        /// One community, or all.
        community: Option<CommunityId>,
        /// Time, gate, holder and paging.
        query: LogQuery,
    },
    /// Health statuses by keyed ID hash (hashed by the operator's console, so plain ID
    /// numbers never travel), at most [`HEALTH_BATCH_MAX`] per request.
    SetHealth {
        /// The statuses.
        flags: Vec<HealthEntry>,
    },
    /// Start (`locked`) or lift a community's lockdown.
    SetLockdown {
        /// Which community.
        community: CommunityId,
        /// Start (`true`) or lift.
        locked: bool,
        /// Why, for the log and the guard.
        reason: String,
        /// Who decided.
        by: String,
    },
    /// The hub's status: each community's link, its gates, the district's log.
    Status,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    pub holder: HolderId,
    pub name: String,
    pub kind: HolderKind,
    pub channel: Channel,
    pub outcome: Outcome,
    pub why: String,
    /// The code text, when the outcome is cleared.
    pub code: Option<String>,
    pub cred: Option<CredId>,
    /// The earlier code this declaration revoked.
    pub revoked: Option<CredId>,
    pub declared_by: Option<HolderId>,
    pub has_photo: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VisitorReceipt {
    pub cred: CredId,
    pub code: String,
    pub host: HolderId,
    pub visitor_name: String,
    pub from: UnixTime,
    pub until: UnixTime,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildingProgress {
    pub building: String,
    pub households: u32,
    pub residents: u32,
    pub cleared: u32,
    pub not_cleared: u32,
    pub codes_active: u32,
    pub passes_printed: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RosterSummary {
    pub community: u32,
    pub community_name: String,
    pub campaign_start: UnixTime,
    /// Every resident declared and every pass out by then (5 days after the start).
    pub deadline: UnixTime,
    pub buildings: Vec<BuildingProgress>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatus {
    pub community: u32,
    pub community_name: String,
    pub node_key_id: String,
    pub residents: u64,
    pub codes_active: u64,
    pub codes_revoked: u64,
    pub gates: Vec<String>,
    pub events_logged: u64,
    pub node_time_ms: u64,
    /// Whether the link to the district hub is up (always false without a hub).
    pub hub_connected: bool,
    /// Gate events the hub has acknowledged (stored and flushed there).
    pub hub_acked_seq: u64,
    /// The lockdown this node enforces, as the district policy last said.
    pub locked: bool,
    pub lockdown_epoch: u64,
    pub lockdown_reason: String,
    /// Every enrolled gate: connection, applied feed version and lockdown epoch, last contact.
    pub gate_links: Vec<GateLink>,
}

/// One gate as its node sees it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GateLink {
    pub gate: String,
    /// A feed subscription is open now.
    pub connected: bool,
    /// Last request or acknowledgment from the gate, node clock (0: never).
    pub last_contact_ms: u64,
    /// The feed version and lockdown epoch the gate last acknowledged as applied.
    pub applied_version: u64,
    pub lockdown_epoch: u64,
    pub locked: bool,
    /// Offline events the gate reported still waiting in its buffer.
    pub pending_events: u64,
    /// Offline events of this gate stored here (its upload cursor).
    pub uploaded_upto: u64,
    /// The gate's clock minus the node's (milliseconds), as the gate measured it.
    pub skew_ms: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The request is malformed or a field is invalid: fix it and send again.
    BadRequest,
    NotFound,
    /// This peer may not do this (a gate asking for console operations, ...).
    Forbidden,
    /// A rule refuses it (a proxy who is not an adult of the household, ...).
    Refused,
    Internal,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    Check(CheckAnswer),
    Declared(Receipt),
    Pass {
        holder: HolderId,
        html: String,
    },
    Visitor(VisitorReceipt),
    Log(Vec<GateEvent>),
    Summary(RosterSummary),
    Status(NodeStatus),
    Done(String),
    HubStatus(HubStatus),
    DistrictLog(Vec<DistrictEvent>),
    /// Every offline event of this gate up to `upto_gate_seq` is stored (flushed).
    Uploaded {
        upto_gate_seq: u64,
        stored: u32,
    },
    Error {
        kind: ErrorKind,
        message: String,
    },
    /// A household code just issued (grouped for reading: `ABCD-EFGH-JKMN-PQRS`).
    HouseholdCode {
        building: String,
        door: String,
        code: String,
    },
}

/// A gate event at the hub, with the community it came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DistrictEvent {
    pub community: CommunityId,
    pub event: GateEvent,
}

/// One row of a health list, as the hub receives it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthEntry {
    pub id_hash: crate::idnum::IdHash,
    pub status: String,
}

/// One community as the hub sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommunityLink {
    pub community: CommunityId,
    pub name: String,
    pub connected: bool,
    /// Last frame received from the node, hub clock (0: never).
    pub last_contact_ms: u64,
    /// Gate events of this community stored at the hub.
    pub events: u64,
    /// People in this community's replicated roster at the hub.
    pub residents: u64,
    /// Codes in force in that roster.
    pub codes_active: u64,
    pub locked: bool,
    pub lockdown_epoch: u64,
    /// The community's gates as its node last reported them.
    pub gates: Vec<GateLink>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HubStatus {
    pub name: String,
    pub communities: Vec<CommunityLink>,
    pub events: u64,
    pub hub_time_ms: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_round_trips() {
        let req = GateRequest::Check(CheckRequest {
            code: "MJ:ABC".into(),
            direction: Direction::In,
            temperature_dc: 365,
            plate: Some("粤B12345".into()),
        });
        let bytes = encode(&req);
        assert_eq!(
            decode::<GateRequest>(&bytes, GATE_REQUEST_LEN_MAX).unwrap(),
            req
        );
    }

    #[test]
    fn truncated_oversized_and_trailing_messages_are_refused() {
        let req = GateRequest::Subscribe;
        let mut bytes = encode(&GateRequest::Check(CheckRequest {
            code: "MJ:ABC".into(),
            direction: Direction::Out,
            temperature_dc: 360,
            plate: None,
        }));
        assert!(matches!(
            decode::<GateRequest>(&bytes[..bytes.len() - 2], 100),
            Err(WireError::Malformed(_))
        ));
        assert!(matches!(
            decode::<GateRequest>(&bytes, 3),
            Err(WireError::TooLong(_, 3))
        ));
        bytes.push(0);
        assert_eq!(
            decode::<GateRequest>(&bytes, 100),
            Err(WireError::Trailing(1))
        );
        assert_eq!(decode::<GateRequest>(&encode(&req), 100).unwrap(), req);
    }

    proptest::proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..600)) {
            let _ = decode::<GateRequest>(&bytes, GATE_REQUEST_LEN_MAX);
            let _ = decode::<ConsoleRequest>(&bytes, CONSOLE_REQUEST_LEN_MAX);
            let _ = decode::<HubRequest>(&bytes, CONSOLE_REQUEST_LEN_MAX);
            let _ = decode::<Response>(&bytes, RESPONSE_LEN_MAX);
            let _ = decode::<GateEvent>(&bytes, RESPONSE_LEN_MAX);
        }
    }
}
