//! What `--json` prints: one serializable counterpart per JSON object, never a wire or
//! internal type (`menjin_proto::wire`, `menjin_gate`) serialized as it is. A field renamed or
//! added in proto changes nothing here until this module says so; README "JSON output" lists
//! every field.
//!
//! Names of enums (reasons, kinds, outcomes, ...) are spelled here or taken from their
//! documented stable `as_str`; the tests below pin every one of them.
//!
//! Key order: objects that come from wire answers keep the order of their fields here;
//! objects that were built with `serde_json::json!` before these types existed had their keys
//! in alphabetical order, and their fields are declared in that order so the bytes stay the
//! same. `gate run --json` lines are sorted at every level (see [`gate::print_line`]).

pub mod figures;
pub mod gate;

use std::path::PathBuf;

use menjin_proto::wire::{self, Channel, ErrorKind};
use serde::Serialize;

/// Prints one JSON object on its own line.
pub fn print(value: &impl Serialize) {
    println!(
        "{}",
        serde_json::to_string(value).expect("JSON counterparts serialize")
    );
}

/// `district init`.
#[derive(Serialize)]
pub struct DistrictCreated {
    /// The district directory.
    pub dir: PathBuf,
    /// The district root public key (hex, 64 characters): gates and nodes trust this.
    pub root_public_key: String,
}

/// `node create`, `hub create`, `node rekey`: the directory and its new certificate.
#[derive(Serialize)]
pub struct NodeCreated {
    /// Community number (0 for the hub).
    pub community: u32,
    pub community_name: String,
    pub dir: PathBuf,
    /// The node key's id (hex).
    pub node_key_id: String,
    /// Last second of the certificate's validity, Unix seconds.
    pub not_after: u64,
}

/// `node web-cert`: the files written for the pages' HTTPS.
#[derive(Serialize)]
pub struct WebCert {
    pub cert: PathBuf,
    pub days: u32,
    pub key: PathBuf,
    /// The names (IP addresses, DNS names) the certificate is for.
    pub names: Vec<String>,
}

/// Any command the node or hub refused (exit 3).
#[derive(Serialize)]
pub struct Refusal {
    /// `bad_request`, `not_found`, `forbidden`, `refused` or `internal`.
    pub error: &'static str,
    /// What is wrong, for people.
    pub message: String,
}

/// The stable name of a refusal's kind (also on standard error in text mode).
pub fn error_kind(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::BadRequest => "bad_request",
        ErrorKind::NotFound => "not_found",
        ErrorKind::Forbidden => "forbidden",
        ErrorKind::Refused => "refused",
        ErrorKind::Internal => "internal",
    }
}

impl Refusal {
    pub fn new(kind: ErrorKind, message: &str) -> Refusal {
        Refusal {
            error: error_kind(kind),
            message: message.to_string(),
        }
    }
}

/// `gate check`, and the `answer` of a `gate run` decision: one person at one gate.
#[derive(Serialize)]
pub struct Check {
    pub allowed: bool,
    /// Why: `ok`, or one of the refusal reasons (README, "The rule").
    pub reason: &'static str,
    /// 37.3 °C or more: send the person to the health post.
    pub fever: bool,
    /// Who the code names (`null` for a code that could not be read).
    pub holder: Option<Holder>,
    /// The node's gate-log sequence number (0 when the gate decided alone).
    pub seq: u64,
    /// The node's clock at the decision, Unix milliseconds.
    pub node_time_ms: u64,
    /// Went in before and never came out: the guard should look.
    pub passback: bool,
}

/// What the guard sees of the person.
#[derive(Serialize)]
pub struct Holder {
    pub name: String,
    pub building: String,
    pub door: String,
    /// `resident`, `dependent`, `visitor` or `staff`.
    pub kind: &'static str,
    /// The pass photo to compare the face with (printed-pass holders), else `null`.
    pub photo: Option<String>,
}

impl From<&wire::CheckAnswer> for Check {
    fn from(a: &wire::CheckAnswer) -> Check {
        Check {
            allowed: a.allowed,
            reason: a.reason.as_str(),
            fever: a.fever,
            holder: a.holder.as_ref().map(|h| Holder {
                name: h.name.clone(),
                building: h.building.clone(),
                door: h.door.clone(),
                kind: h.kind.as_str(),
                photo: h.photo.clone(),
            }),
            seq: a.seq,
            node_time_ms: a.node_time_ms,
            passback: a.passback,
        }
    }
}

/// The stable name of a declaration channel.
fn channel(c: Channel) -> &'static str {
    match c {
        Channel::Online => "online",
        Channel::Proxy => "proxy",
        Channel::Offline => "offline",
    }
}

/// `declare` and `show`: a person's declaration and code.
#[derive(Serialize)]
pub struct Receipt {
    /// The person's holder id (16 hex characters).
    pub holder: String,
    pub name: String,
    /// `resident`, `dependent`, `visitor` or `staff`.
    pub kind: &'static str,
    /// `online`, `proxy` or `offline`.
    pub channel: &'static str,
    /// `cleared`, `home_quarantine`, `central_quarantine` or `hospital`.
    pub outcome: &'static str,
    /// The review's reason, for people.
    pub why: String,
    /// The code text (`MJ:...`) when cleared, else `null`.
    pub code: Option<String>,
    /// The code's id (16 hex characters) when cleared.
    pub cred: Option<String>,
    /// The earlier code this declaration revoked.
    pub revoked: Option<String>,
    /// The adult relative who declared (proxy declarations).
    pub declared_by: Option<String>,
    /// A photo is on file (a printed pass can be made).
    pub has_photo: bool,
}

impl From<&wire::Receipt> for Receipt {
    fn from(r: &wire::Receipt) -> Receipt {
        Receipt {
            holder: r.holder.to_string(),
            name: r.name.clone(),
            kind: r.kind.as_str(),
            channel: channel(r.channel),
            outcome: r.outcome.as_str(),
            why: r.why.clone(),
            code: r.code.clone(),
            cred: r.cred.map(|c| c.to_string()),
            revoked: r.revoked.map(|c| c.to_string()),
            declared_by: r.declared_by.map(|h| h.to_string()),
            has_photo: r.has_photo,
        }
    }
}

/// `pass print`: the pass file was written.
#[derive(Serialize)]
pub struct PassWritten {
    /// Holder id (16 hex characters).
    pub holder: String,
    /// Always `true`.
    pub written: bool,
}

/// `visitor invite`: the visitor's code.
#[derive(Serialize)]
pub struct Visitor {
    /// The code's id (16 hex characters; `visitor withdraw --cred`).
    pub cred: String,
    /// The code text (`MJ:...`).
    pub code: String,
    /// The consenting resident's holder id.
    pub host: String,
    pub visitor_name: String,
    /// The window, Unix seconds.
    pub from: u64,
    pub until: u64,
}

impl From<&wire::VisitorReceipt> for Visitor {
    fn from(v: &wire::VisitorReceipt) -> Visitor {
        Visitor {
            cred: v.cred.to_string(),
            code: v.code.clone(),
            host: v.host.to_string(),
            visitor_name: v.visitor_name.clone(),
            from: v.from,
            until: v.until,
        }
    }
}

/// One line of the gate log (`log` prints an array of them).
#[derive(Serialize)]
pub struct Event {
    /// The node's sequence number.
    pub seq: u64,
    /// When the node stored it, Unix milliseconds.
    pub time_ms: u64,
    /// The gate's id.
    pub gate: String,
    /// `in` or `out`.
    pub direction: &'static str,
    pub allowed: bool,
    /// As [`Check::reason`].
    pub reason: &'static str,
    pub fever: bool,
    /// Body temperature, tenths of a degree Celsius.
    pub temperature_dc: i16,
    /// The code's id, the holder id and kind (`null` for an unreadable code).
    pub cred: Option<String>,
    pub holder: Option<String>,
    pub kind: Option<&'static str>,
    /// The vehicle's plate, if the person was in one.
    pub plate: Option<String>,
    /// Set when the gate decided alone.
    pub offline: Option<OfflineMark>,
    pub passback: bool,
}

/// How an event decided by a gate alone came to the node.
#[derive(Serialize)]
pub struct OfflineMark {
    /// The gate's own event number.
    pub gate_seq: u64,
    /// When the gate decided, on its estimate of the node's clock, Unix milliseconds.
    pub decided_ms: u64,
    /// The gate had not heard from its node for too long (visitors refused).
    pub degraded: bool,
}

impl From<&wire::GateEvent> for Event {
    fn from(e: &wire::GateEvent) -> Event {
        Event {
            seq: e.seq,
            time_ms: e.time_ms,
            gate: e.gate.clone(),
            direction: e.direction.as_str(),
            allowed: e.allowed,
            reason: e.reason.as_str(),
            fever: e.fever,
            temperature_dc: e.temperature_dc,
            cred: e.cred.map(|c| c.to_string()),
            holder: e.holder.map(|h| h.to_string()),
            kind: e.kind.map(|k| k.as_str()),
            plate: e.plate.clone(),
            offline: e.offline.map(|m| OfflineMark {
                gate_seq: m.gate_seq,
                decided_ms: m.decided_ms,
                degraded: m.degraded,
            }),
            passback: e.passback,
        }
    }
}

/// One event of `hub log` (an array of them).
#[derive(Serialize)]
pub struct DistrictEvent {
    pub community: u32,
    pub event: Event,
}

impl From<&wire::DistrictEvent> for DistrictEvent {
    fn from(e: &wire::DistrictEvent) -> DistrictEvent {
        DistrictEvent {
            community: e.community,
            event: Event::from(&e.event),
        }
    }
}

/// `roster`: declaration progress per building.
#[derive(Serialize)]
pub struct RosterSummary {
    pub community: u32,
    pub community_name: String,
    /// Unix seconds.
    pub campaign_start: u64,
    /// Every resident declared and every pass out by then, Unix seconds.
    pub deadline: u64,
    pub buildings: Vec<Building>,
}

/// One building's counts.
#[derive(Serialize)]
pub struct Building {
    pub building: String,
    pub households: u32,
    pub residents: u32,
    pub cleared: u32,
    pub not_cleared: u32,
    pub codes_active: u32,
    pub passes_printed: u32,
}

impl From<&wire::RosterSummary> for RosterSummary {
    fn from(s: &wire::RosterSummary) -> RosterSummary {
        RosterSummary {
            community: s.community,
            community_name: s.community_name.clone(),
            campaign_start: s.campaign_start,
            deadline: s.deadline,
            buildings: s
                .buildings
                .iter()
                .map(|b| Building {
                    building: b.building.clone(),
                    households: b.households,
                    residents: b.residents,
                    cleared: b.cleared,
                    not_cleared: b.not_cleared,
                    codes_active: b.codes_active,
                    passes_printed: b.passes_printed,
                })
                .collect(),
        }
    }
}

/// `node status`.
#[derive(Serialize)]
pub struct NodeStatus {
    pub community: u32,
    pub community_name: String,
    /// The node key's id (hex).
    pub node_key_id: String,
    pub residents: u64,
    /// People known only by a code adopted from the district's copy (the node was restored
    /// from an older backup): they must declare again.
    pub residents_to_redeclare: u64,
    pub codes_active: u64,
    pub codes_revoked: u64,
    /// Enrolled gate ids.
    pub gates: Vec<String>,
    pub events_logged: u64,
    /// The node's clock, Unix milliseconds.
    pub node_time_ms: u64,
    /// The link to the hub is up (always false without a hub).
    pub hub_connected: bool,
    /// Gate events the hub has acknowledged (stored and flushed there).
    pub hub_acked_seq: u64,
    /// The lockdown this node enforces.
    pub locked: bool,
    pub lockdown_epoch: u64,
    pub lockdown_reason: String,
    pub gate_links: Vec<GateLink>,
    /// Roster changes wait to be mirrored into the replicated roster.
    pub mirror_pending: bool,
    /// The district revoked this node's key: gates refuse it.
    pub revoked: bool,
}

impl From<&wire::NodeStatus> for NodeStatus {
    fn from(s: &wire::NodeStatus) -> NodeStatus {
        NodeStatus {
            community: s.community,
            community_name: s.community_name.clone(),
            node_key_id: s.node_key_id.clone(),
            residents: s.residents,
            residents_to_redeclare: s.residents_to_redeclare,
            codes_active: s.codes_active,
            codes_revoked: s.codes_revoked,
            gates: s.gates.clone(),
            events_logged: s.events_logged,
            node_time_ms: s.node_time_ms,
            hub_connected: s.hub_connected,
            hub_acked_seq: s.hub_acked_seq,
            locked: s.locked,
            lockdown_epoch: s.lockdown_epoch,
            lockdown_reason: s.lockdown_reason.clone(),
            gate_links: s.gate_links.iter().map(GateLink::from).collect(),
            mirror_pending: s.mirror_pending,
            revoked: s.revoked,
        }
    }
}

/// One gate as its node sees it (`node status`, and per community in `hub status`).
#[derive(Serialize)]
pub struct GateLink {
    pub gate: String,
    /// A feed subscription is open now.
    pub connected: bool,
    /// Last request or acknowledgment from the gate, node clock, Unix milliseconds (0: never).
    pub last_contact_ms: u64,
    /// The feed version the gate last acknowledged as applied.
    pub applied_version: u64,
    /// The lockdown epoch and state the gate last acknowledged.
    pub lockdown_epoch: u64,
    pub locked: bool,
    /// Offline events waiting in the gate's buffer, as it reported.
    pub pending_events: u64,
    /// The gate's offline events stored at the node (its upload cursor, a `gate_seq`).
    pub uploaded_upto: u64,
    /// The gate's clock minus the node's, milliseconds.
    pub skew_ms: i64,
}

impl From<&wire::GateLink> for GateLink {
    fn from(g: &wire::GateLink) -> GateLink {
        GateLink {
            gate: g.gate.clone(),
            connected: g.connected,
            last_contact_ms: g.last_contact_ms,
            applied_version: g.applied_version,
            lockdown_epoch: g.lockdown_epoch,
            locked: g.locked,
            pending_events: g.pending_events,
            uploaded_upto: g.uploaded_upto,
            skew_ms: g.skew_ms,
        }
    }
}

/// `hub status`.
#[derive(Serialize)]
pub struct HubStatus {
    pub name: String,
    pub communities: Vec<Community>,
    /// Gate events stored at the hub, all communities.
    pub events: u64,
    /// The hub's clock, Unix milliseconds.
    pub hub_time_ms: u64,
}

/// One community as the hub sees it.
#[derive(Serialize)]
pub struct Community {
    pub community: u32,
    pub name: String,
    /// The node's link is up.
    pub connected: bool,
    /// Last frame from the node, hub clock, Unix milliseconds (0: never).
    pub last_contact_ms: u64,
    /// Gate events of this community stored at the hub.
    pub events: u64,
    /// People and codes in force in the community's roster as replicated at the hub.
    pub residents: u64,
    pub codes_active: u64,
    pub locked: bool,
    pub lockdown_epoch: u64,
    /// The community's gates as its node last reported them.
    pub gates: Vec<GateLink>,
    /// Key ids of the community's node keys the district revoked, oldest first.
    pub revoked_node_keys: Vec<String>,
}

impl From<&wire::HubStatus> for HubStatus {
    fn from(s: &wire::HubStatus) -> HubStatus {
        HubStatus {
            name: s.name.clone(),
            communities: s
                .communities
                .iter()
                .map(|c| Community {
                    community: c.community,
                    name: c.name.clone(),
                    connected: c.connected,
                    last_contact_ms: c.last_contact_ms,
                    events: c.events,
                    residents: c.residents,
                    codes_active: c.codes_active,
                    locked: c.locked,
                    lockdown_epoch: c.lockdown_epoch,
                    gates: c.gates.iter().map(GateLink::from).collect(),
                    revoked_node_keys: c.revoked_node_keys.clone(),
                })
                .collect(),
            events: s.events,
            hub_time_ms: s.hub_time_ms,
        }
    }
}

/// Commands whose answer is a sentence (`gate enrol`, `hub enrol`, lockdowns, ...).
#[derive(Serialize)]
pub struct Done {
    pub done: String,
}

/// Offline events stored at the node (a gate's upload). Keys in alphabetical order.
#[derive(Serialize)]
pub struct Uploaded {
    /// Events of this upload stored.
    pub stored: u32,
    /// Every offline event of the gate up to this `gate_seq` is stored.
    pub upto_gate_seq: u64,
}

/// `hub import-health`. Keys in alphabetical order.
#[derive(Serialize)]
pub struct HealthImport {
    /// Good rows the hub applied.
    pub applied: usize,
    /// The bad rows, each with its line number.
    pub errors: Vec<RowError>,
    /// Bad rows.
    pub refused: usize,
    /// Rows read (header and blank lines not counted).
    pub rows: usize,
}

/// A refused row of a health list.
#[derive(Serialize)]
pub struct RowError {
    /// Line number in the file, from 1.
    pub line: usize,
    pub why: String,
}

/// The answer of a node or hub as its JSON counterpart (an error is a [`Refusal`]).
pub fn print_response(resp: &wire::Response) {
    use wire::Response as R;
    match resp {
        R::Check(a) => print(&Check::from(a)),
        R::Declared(r) => print(&Receipt::from(r)),
        R::Pass { holder, .. } => print(&PassWritten {
            holder: holder.to_string(),
            written: true,
        }),
        R::Visitor(v) => print(&Visitor::from(v)),
        R::Log(events) => print(&events.iter().map(Event::from).collect::<Vec<_>>()),
        R::Summary(s) => print(&RosterSummary::from(s)),
        R::Status(s) => print(&NodeStatus::from(s)),
        R::Done(m) => print(&Done { done: m.clone() }),
        R::HubStatus(s) => print(&HubStatus::from(s)),
        R::DistrictLog(events) => {
            print(&events.iter().map(DistrictEvent::from).collect::<Vec<_>>())
        }
        R::Uploaded {
            upto_gate_seq,
            stored,
        } => print(&Uploaded {
            stored: *stored,
            upto_gate_seq: *upto_gate_seq,
        }),
        R::HouseholdCode {
            building,
            door,
            code,
        } => print(&HouseholdCode {
            building: building.clone(),
            code: code.clone(),
            door: door.clone(),
        }),
        R::SyncStats(c) => print(&SyncCounters {
            bytes_received: c.bytes_received,
            bytes_sent: c.bytes_sent,
            frames_received: c.frames_received,
            frames_sent: c.frames_sent,
        }),
        R::Error { kind, message } => print(&Refusal::new(*kind, message)),
    }
}

/// A hub's replication counters since it started (keys in alphabetical order).
#[derive(Serialize)]
pub struct SyncCounters {
    pub bytes_received: u64,
    pub bytes_sent: u64,
    pub frames_received: u64,
    pub frames_sent: u64,
}

/// `node household issue --json`: the household code, shown this once (keys in alphabetical
/// order, as before).
#[derive(Serialize)]
pub struct HouseholdCode {
    /// The home's building.
    pub building: String,
    /// The code to print for the household (16 base32 characters in four groups).
    pub code: String,
    /// The home's door.
    pub door: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use menjin_proto::HolderKind;
    use menjin_proto::declaration::Outcome;
    use menjin_proto::rule::Reason;
    use menjin_proto::wire::Direction;

    /// The names scripts match on. A change here is a change of the JSON format: the README
    /// and every consumer change with it.
    #[test]
    fn enum_names_in_json_are_pinned() {
        let reasons: Vec<&str> = Reason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(
            reasons,
            [
                "ok",
                "malformed",
                "unknown_version",
                "bad_signature",
                "unknown_issuer",
                "expired",
                "not_yet_valid",
                "wrong_community",
                "revoked",
                "unknown_code",
                "fever",
                "no_consent",
                "vehicle_barred",
                "lockdown",
                "issuer_revoked"
            ]
        );
        let kinds = [
            HolderKind::Resident,
            HolderKind::Dependent,
            HolderKind::Visitor,
            HolderKind::Staff,
        ]
        .map(HolderKind::as_str);
        assert_eq!(kinds, ["resident", "dependent", "visitor", "staff"]);
        let outcomes = [
            Outcome::Cleared,
            Outcome::HomeQuarantine,
            Outcome::CentralQuarantine,
            Outcome::Hospital,
        ]
        .map(Outcome::as_str);
        assert_eq!(
            outcomes,
            [
                "cleared",
                "home_quarantine",
                "central_quarantine",
                "hospital"
            ]
        );
        assert_eq!(
            [Direction::In, Direction::Out].map(Direction::as_str),
            ["in", "out"]
        );
        assert_eq!(
            [Channel::Online, Channel::Proxy, Channel::Offline].map(channel),
            ["online", "proxy", "offline"]
        );
        assert_eq!(
            [
                ErrorKind::BadRequest,
                ErrorKind::NotFound,
                ErrorKind::Forbidden,
                ErrorKind::Refused,
                ErrorKind::Internal
            ]
            .map(error_kind),
            [
                "bad_request",
                "not_found",
                "forbidden",
                "refused",
                "internal"
            ]
        );
    }
}
