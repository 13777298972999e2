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
/// Bytes of a number plate in a check request (Chinese plates are 7 or 8 characters).
pub const PLATE_LEN_MAX: usize = 16;

/// Why a message could not be decoded (see [`decode`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// The message's length and the limit it exceeds, in bytes.
    #[error("message of {0} bytes exceeds the limit of {1}")]
    TooLong(usize, usize),
    /// postcard could not decode it (truncated, wrong type, bad variant); postcard's reason.
    #[error("malformed message: {0}")]
    Malformed(String),
    /// A whole message decoded and this many bytes were left over.
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

/// Which way a person passes the gate; the rule treats going out in a lockdown differently.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Into the compound (the default: a gate that does not say checks people coming in).
    #[default]
    In,
    /// Out of the compound.
    Out,
}

impl Direction {
    /// The stable name used in logs and JSON (`in`, `out`).
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
    /// In or out (anti-passback and the lockdown rule depend on it).
    pub direction: Direction,
    /// Body temperature in tenths of a degree Celsius.
    pub temperature_dc: i16,
    /// Set when the person is in a vehicle.
    pub plate: Option<String>,
}

/// What the guard must see.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HolderDisplay {
    /// As declared; empty when the code is known but its holder is not in the roster.
    pub name: String,
    /// The building as declared.
    pub building: String,
    /// The door number as declared.
    pub door: String,
    /// Resident, dependent, staff or visitor, as the code says.
    pub kind: HolderKind,
    /// Set for printed-pass holders: the guard compares the face with this photo.
    pub photo: Option<String>,
}

/// The node's answer to a [`CheckRequest`]: given only once the event is flushed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckAnswer {
    /// Whether the gate opens.
    pub allowed: bool,
    /// Why: `Reason::Ok` when allowed, otherwise the first rule that refused.
    pub reason: Reason,
    /// 37.3 °C or more: flagged even when the person is refused for another reason.
    pub fever: bool,
    /// Who the code belongs to, when the code decoded and is known; `None` for a malformed or
    /// unknown code.
    pub holder: Option<HolderDisplay>,
    /// The gate-log sequence number under which the node stored this check (flushed).
    pub seq: u64,
    /// The node's clock when it decided (Unix milliseconds); the gate measures its skew from it.
    pub node_time_ms: u64,
    /// Anti-passback: this resident went in before and has not gone out since. The guard
    /// must look (a lent code?); the rule itself does not refuse.
    pub passback: bool,
}

/// One line of the gate log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GateEvent {
    /// Position in the node's gate log, from 1, without gaps (except where a node restored
    /// from an older backup renumbered its events after the hub's: `GateLog::rebase`).
    pub seq: u64,
    /// When the node stored it (Unix milliseconds), non-decreasing in `seq` order; an offline
    /// event's decision time is in [`OfflineMark::decided_ms`].
    pub time_ms: u64,
    /// The gate's id ([`check_gate_id`]), from the key its connection authenticated.
    pub gate: String,
    /// In or out.
    pub direction: Direction,
    /// Whether the gate opened.
    pub allowed: bool,
    /// Why it opened or did not.
    pub reason: Reason,
    /// 37.3 °C or more.
    pub fever: bool,
    /// The reading in tenths of a degree Celsius, within [`crate::rule::TEMPERATURE_DC_MIN`] to
    /// [`crate::rule::TEMPERATURE_DC_MAX`] unless the check was refused for it.
    pub temperature_dc: i16,
    /// The code's id; `None` when the code did not decode.
    pub cred: Option<CredId>,
    /// The code's holder; `None` when the code did not decode.
    pub holder: Option<HolderId>,
    /// The holder's kind as the code says; `None` when the code did not decode.
    pub kind: Option<HolderKind>,
    /// The vehicle's plate (at most [`PLATE_LEN_MAX`] bytes), when the person was in one.
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
    /// Events stored at or after this time (Unix milliseconds).
    pub from_ms: Option<u64>,
    /// Events stored at or before this time (Unix milliseconds).
    pub until_ms: Option<u64>,
    /// Events of this gate only.
    pub gate: Option<String>,
    /// Events of this holder only.
    pub holder: Option<HolderId>,
    /// Only events after this sequence number (paging).
    pub after_seq: Option<u64>,
    /// Most events to return, within 1 to [`LOG_PAGE_MAX`] (0 is taken as 1).
    pub limit: u32,
}

/// Which declaration channel a form came through.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    /// By the resident on their own phone.
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
    /// A new staff account for the node's pages (`menjin staff add`).
    AddStaff {
        /// Checked by [`crate::staff::check_name`]; unique at the node.
        name: String,
        /// Clerk or head.
        role: crate::staff::StaffRole,
        /// Hashed at the node (argon2id); only the hash is kept.
        password: crate::staff::Password,
    },
    /// A staff member's new password; their open sessions end.
    SetStaffPassword {
        /// An existing account.
        name: String,
        /// Hashed at the node (argon2id); only the hash is kept.
        password: crate::staff::Password,
    },
    /// Removes a staff account; its open sessions end.
    RemoveStaff {
        /// An existing account.
        name: String,
    },
    /// Takes an enrolled gate out (a stolen or retired device): its key is refused from now
    /// on and its open connections are closed.
    RevokeGate {
        /// The gate's id, as enrolled.
        gate_id: String,
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
    /// Revokes a node key of `community` for good (a leaked key, a stolen node): written
    /// into the district policy, carried to the community's gates; the community's enrolled
    /// key is also taken out (its link closes at once) and can never be enrolled again.
    RevokeNode {
        /// Which community.
        community: CommunityId,
        /// The certificate (`NodeCert::encode`) of the key to revoke (a key replaced at a
        /// rekey, say); `None`: the key enrolled for the community now.
        cert: Option<Vec<u8>>,
        /// Who decided.
        by: String,
        /// Why, for the record (may be empty).
        reason: String,
    },
    /// The hub's replication counters since it started ([`SyncCounters`]): what the
    /// benches read to tell what a change cost the hub on the wire.
    SyncStats,
}

/// Replication frames and bytes a daemon sent and received since it started (the payload,
/// without the link's framing). Its own message, so the status reply stays as it was.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncCounters {
    /// Frames sent to every peer.
    pub frames_sent: u64,
    /// Their bytes.
    pub bytes_sent: u64,
    /// Frames received and accepted from every peer.
    pub frames_received: u64,
    /// Their bytes.
    pub bytes_received: u64,
}

/// What a declaration produced, for the console and the resident's "my declarations".
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    /// The declared person.
    pub holder: HolderId,
    /// As declared.
    pub name: String,
    /// The kind the review gave (resident, dependent, staff, ...).
    pub kind: HolderKind,
    /// How the form came in.
    pub channel: Channel,
    /// The automatic (or staff) review's result.
    pub outcome: Outcome,
    /// The review's reason in words, shown to the resident and the staff.
    pub why: String,
    /// The code text, when the outcome is cleared.
    pub code: Option<String>,
    /// The code's id, when the outcome is cleared.
    pub cred: Option<CredId>,
    /// The earlier code this declaration revoked.
    pub revoked: Option<CredId>,
    /// The relative who declared, for proxy declarations.
    pub declared_by: Option<HolderId>,
    /// A photo is on file, so a printed pass can be made.
    pub has_photo: bool,
}

/// A visitor's code, issued on a resident's consent ([`ConsoleRequest::InviteVisitor`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VisitorReceipt {
    /// The visitor code's id (to withdraw the consent).
    pub cred: CredId,
    /// The code text (`MJ:...`) to send to the visitor.
    pub code: String,
    /// The consenting resident.
    pub host: HolderId,
    /// As the visitor gave it.
    pub visitor_name: String,
    /// Start of the consent window (Unix seconds).
    pub from: UnixTime,
    /// End of the consent window (Unix seconds).
    pub until: UnixTime,
}

/// One building's progress towards the declaration deadline.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildingProgress {
    /// The building as residents declared it.
    pub building: String,
    /// Distinct door numbers declared in it.
    pub households: u32,
    /// People declared in it.
    pub residents: u32,
    /// Of those, cleared by the review.
    pub cleared: u32,
    /// Of those, needing quarantine or treatment (no code).
    pub not_cleared: u32,
    /// Of those, holding a current code.
    pub codes_active: u32,
    /// Of those, with at least one printed pass.
    pub passes_printed: u32,
}

/// Progress of a community's declarations, per building (rule 9: 5 days).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RosterSummary {
    /// The community's number in its district.
    pub community: u32,
    /// The community's name, from `node.toml`.
    pub community_name: String,
    /// When the declaration campaign started (Unix seconds), from `node.toml`.
    pub campaign_start: UnixTime,
    /// Every resident declared and every pass out by then (5 days after the start).
    pub deadline: UnixTime,
    /// Sorted by building.
    pub buildings: Vec<BuildingProgress>,
}

/// A node's state, for `menjin node status` and the console.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatus {
    /// The community's number in its district.
    pub community: u32,
    /// The community's name, from `node.toml`.
    pub community_name: String,
    /// The node key's id, as in its certificate.
    pub node_key_id: String,
    /// People in the roster (counted in sled: about 150 ms at 100,000).
    pub residents: u64,
    /// People known here only by a code adopted from the district's copy of the roster
    /// (declared after the backup this node was restored from): they must declare again.
    pub residents_to_redeclare: u64,
    /// Codes in force.
    pub codes_active: u64,
    /// Codes revoked (by a later declaration or a health flag).
    pub codes_revoked: u64,
    /// Ids of the enrolled gates.
    pub gates: Vec<String>,
    /// Gate events in the log (the last sequence number).
    pub events_logged: u64,
    /// The node's clock (Unix milliseconds).
    pub node_time_ms: u64,
    /// Whether the link to the district hub is up (always false without a hub).
    pub hub_connected: bool,
    /// Gate events the hub has acknowledged (stored and flushed there).
    pub hub_acked_seq: u64,
    /// The lockdown this node enforces, as the district policy last said.
    pub locked: bool,
    /// The epoch of that lockdown decision (rises with each one).
    pub lockdown_epoch: u64,
    /// Why, as its decider gave it.
    pub lockdown_reason: String,
    /// Every enrolled gate: connection, applied feed version and lockdown epoch, last contact.
    pub gate_links: Vec<GateLink>,
    /// Roster changes wait to be mirrored into the replicated roster (the `mirror-pending`
    /// marker; the next start reconciles them).
    pub mirror_pending: bool,
    /// The district revoked this node's current key: it keeps running, but its gates refuse
    /// it (at the handshake, and offline its codes) and the hub does not let it link.
    pub revoked: bool,
}

/// One gate as its node sees it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GateLink {
    /// The gate's id.
    pub gate: String,
    /// A feed subscription is open now.
    pub connected: bool,
    /// Last request or acknowledgment from the gate, node clock (0: never).
    pub last_contact_ms: u64,
    /// The feed version and lockdown epoch the gate last acknowledged as applied.
    pub applied_version: u64,
    /// The lockdown epoch the gate last acknowledged as applied.
    pub lockdown_epoch: u64,
    /// Whether the gate's applied lockdown is in force.
    pub locked: bool,
    /// Offline events the gate reported still waiting in its buffer.
    pub pending_events: u64,
    /// Offline events of this gate stored here (its upload cursor).
    pub uploaded_upto: u64,
    /// The gate's clock minus the node's (milliseconds), as the gate measured it.
    pub skew_ms: i64,
}

/// The kind of failure in [`Response::Error`], so a client can tell its own mistake from the
/// node's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The request is malformed or a field is invalid: fix it and send again.
    BadRequest,
    /// The person, code, photo or gate named does not exist here.
    NotFound,
    /// This peer may not do this (a gate asking for console operations, ...).
    Forbidden,
    /// A rule refuses it (a proxy who is not an adult of the household, ...).
    Refused,
    /// A storage failure at the node (logged there): the request may succeed later; tell the
    /// node's operator if it persists.
    Internal,
}

/// The one answer to a request, on the same stream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// A gate check, logged.
    Check(CheckAnswer),
    /// A declaration stored.
    Declared(Receipt),
    /// A printed pass.
    Pass {
        /// The person on the pass.
        holder: HolderId,
        /// A self-contained HTML page (photo embedded) to print.
        html: String,
    },
    /// A visitor's consent stored and their code issued.
    Visitor(VisitorReceipt),
    /// A page of the gate log, in sequence order (at most [`LOG_PAGE_MAX`] events).
    Log(Vec<GateEvent>),
    /// The roster's progress per building.
    Summary(RosterSummary),
    /// The node's state.
    Status(NodeStatus),
    /// The request was carried out; a sentence for the operator.
    Done(String),
    /// The hub's state.
    HubStatus(HubStatus),
    /// A page of the district's gate log.
    DistrictLog(Vec<DistrictEvent>),
    /// Every offline event of this gate up to `upto_gate_seq` is stored (flushed).
    Uploaded {
        /// The gate's offline events stored up to this `gate_seq` (its cursor at the node).
        upto_gate_seq: u64,
        /// Events of this upload newly stored (resent ones are not counted).
        stored: u32,
    },
    /// The request was refused; nothing changed.
    Error {
        /// Whose fault and what to do.
        kind: ErrorKind,
        /// What went wrong, in words for the operator.
        message: String,
    },
    /// A household code just issued (grouped for reading: `ABCD-EFGH-JKMN-PQRS`).
    HouseholdCode {
        /// The home's building.
        building: String,
        /// The home's door.
        door: String,
        /// The code, shown this once: only its keyed hash is kept.
        code: String,
    },
    /// The hub's replication counters (answer to [`HubRequest::SyncStats`]).
    SyncStats(SyncCounters),
}

/// A gate event at the hub, with the community it came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DistrictEvent {
    /// The community whose node uploaded it (from the node's authenticated key).
    pub community: CommunityId,
    /// The event as its node logged it.
    pub event: GateEvent,
}

/// One row of a health list, as the hub receives it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthEntry {
    /// The person's keyed ID hash (hashed by the operator's console).
    pub id_hash: crate::idnum::IdHash,
    /// One of [`HEALTH_STATUSES`].
    pub status: String,
}

/// One community as the hub sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommunityLink {
    /// The community's number in the district.
    pub community: CommunityId,
    /// The community's name, from its node certificate.
    pub name: String,
    /// The node's link to the hub is up now.
    pub connected: bool,
    /// Last frame received from the node, hub clock (0: never).
    pub last_contact_ms: u64,
    /// Gate events of this community stored at the hub.
    pub events: u64,
    /// People in this community's replicated roster at the hub.
    pub residents: u64,
    /// Codes in force in that roster.
    pub codes_active: u64,
    /// The community is locked down in the district policy.
    pub locked: bool,
    /// The epoch of the district's latest lockdown decision for it (0: none).
    pub lockdown_epoch: u64,
    /// The community's gates as its node last reported them.
    pub gates: Vec<GateLink>,
    /// Key ids of the community's node keys the district revoked, oldest first.
    pub revoked_node_keys: Vec<String>,
}

/// A hub's state, for `menjin hub status`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HubStatus {
    /// The hub's name, from `hub.toml`.
    pub name: String,
    /// Every enrolled community, sorted by number.
    pub communities: Vec<CommunityLink>,
    /// Gate events stored at the hub, all communities.
    pub events: u64,
    /// The hub's clock (Unix milliseconds).
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
