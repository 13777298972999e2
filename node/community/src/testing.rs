//! What the node crate's unit tests share: a district and a node directory in a temporary
//! folder, a valid resident's declaration, a gate check.

use std::path::Path;

use menjin_proto::declaration::{Declaration, Gender, PersonType, Quarantine, Tenure};
use menjin_proto::idnum::{DocumentType, complete_resident_id};
use menjin_proto::rule::Reason;
use menjin_proto::wire::{CheckAnswer, CheckRequest, Direction, GateEvent};
use menjin_proto::{CommunityId, UnixTime};

use crate::service::Node;
use menjin_net::clock::now_ms;
use menjin_store::files::{DistrictDir, NodeDir};
use menjin_store::provision::{NodeSpec, create_district, create_node};

/// The community of [`node_in`] and [`new_node`].
pub const COMMUNITY: CommunityId = 7;

/// The wall clock in Unix seconds, as the node reads it.
pub fn now() -> UnixTime {
    now_ms() / 1000
}

/// A new district in `base/d`.
pub fn district(base: &Path) -> DistrictDir {
    let district = DistrictDir(base.join("d"));
    create_district(&district).unwrap();
    district
}

/// A node of [`COMMUNITY`] in `base/n`, certified by `district` (not running).
pub fn node_in(district: &DistrictDir, base: &Path) -> NodeDir {
    let dir = NodeDir(base.join("n"));
    let spec = NodeSpec {
        community: COMMUNITY,
        community_name: "seven".into(),
        listen: "127.0.0.1:0".parse().unwrap(),
        campaign_start: 0,
        code_validity_days: 30,
        hub: None,
    };
    create_node(district, &dir, &spec).unwrap();
    dir
}

/// A district and a node of [`COMMUNITY`] under `base`.
pub fn new_node(base: &Path) -> NodeDir {
    node_in(&district(base), base)
}

/// A resident of building 1 who is cleared at once; `serial` keeps ID numbers apart.
pub fn resident(name: &str, birth: &str, serial: u32, door: &str) -> Declaration {
    Declaration {
        name: name.into(),
        gender: if serial % 2 == 1 {
            Gender::Male
        } else {
            Gender::Female
        },
        document_type: DocumentType::ResidentId,
        document_number: complete_resident_id(&format!("440304{birth}{serial:03}")).unwrap(),
        birth_date: None,
        nationality: "CN".into(),
        phone: "13800138000".into(),
        person_type: PersonType::Owner,
        quarantine: Quarantine::None,
        building: "1".into(),
        door: door.into(),
        tenure: Tenure::Owned,
        travel_high_risk: false,
        contact_with_case: false,
        symptoms: false,
        underlying_conditions: String::new(),
    }
}

/// Resident number `serial` of building 1, declared online at door `serial`: the receipt.
///
/// # Panics
/// If the node refuses the declaration.
pub fn declare(node: &Node, serial: u32) -> menjin_proto::wire::Receipt {
    let form = resident(
        &format!("R{serial}"),
        "19800101",
        serial,
        &serial.to_string(),
    );
    match node.console(menjin_proto::wire::ConsoleRequest::Declare { form }, now()) {
        menjin_proto::wire::Response::Declared(r) => r,
        other => panic!("{other:?}"),
    }
}

/// One person going in at gate `gate`, 36.5 °C, on foot.
pub async fn gate_check(node: &Node, gate: &str, code: String) -> CheckAnswer {
    node.check(
        gate,
        CheckRequest {
            code,
            direction: Direction::In,
            temperature_dc: 365,
            plate: None,
        },
    )
    .await
    .unwrap()
}

/// An allowed entry at `gate`, not yet numbered, made online.
pub fn gate_event(gate: &str, time_ms: u64) -> GateEvent {
    GateEvent {
        seq: 0,
        time_ms,
        gate: gate.into(),
        direction: Direction::In,
        allowed: true,
        reason: Reason::Ok,
        fever: false,
        temperature_dc: 365,
        cred: None,
        holder: None,
        kind: None,
        plate: None,
        offline: None,
        passback: false,
    }
}
