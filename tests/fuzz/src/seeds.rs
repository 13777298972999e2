//! Each target's starting corpus, made by the real encoders from the fixtures: valid
//! inputs the fuzzer mutates from. Small (a few KiB per target), deterministic.

use menjin_community::households::HouseholdCode;
use menjin_community::testing;
use menjin_net::tls;
use menjin_proto::credential::{CredId, HolderId, HolderKind};
use menjin_proto::feed::{GateAck, GateFeed, GateLockdown, OfflineEvent, TrustUpdate};
use menjin_proto::idnum::IdHash;
use menjin_proto::link::LinkFrame;
use menjin_proto::record::LocalLockdown;
use menjin_proto::rule::Reason;
use menjin_proto::wire::{
    self, CheckAnswer, CheckRequest, ConsoleRequest, Direction, ErrorKind, GateLink, GateRequest,
    HealthEntry, HolderDisplay, HubRequest, LogQuery, Response,
};
use menjin_render::qr;
use menjin_sync::{Role, SyncBody, SyncFrame};

use crate::fixtures::{self, COMMUNITY, NOW};
use crate::targets::{feed, sync};
use crate::{TARGETS, join_frames};

/// The seeds of target `name` (empty for an unknown name).
pub fn seeds(name: &str) -> Vec<Vec<u8>> {
    match name {
        "code_text" => kinds()
            .map(|k| fixtures::code(k, 1).to_text().into())
            .collect(),
        "code_bytes" => kinds()
            .map(|k| fixtures::code(k, 2).as_bytes().to_vec())
            .collect(),
        "household_code" => household_codes(),
        "node_cert" => vec![fixtures::node_cert().encode()],
        "peer_cert" => peer_certs(),
        "gate_request" => gate_requests().iter().map(wire::encode).collect(),
        "console_request" => console_requests().iter().map(wire::encode).collect(),
        "hub_request" => hub_requests().iter().map(wire::encode).collect(),
        "response" => responses().iter().map(wire::encode).collect(),
        "link_frames" => vec![join_frames(
            &link_frames().iter().map(wire::encode).collect::<Vec<_>>(),
        )],
        "sync_frames" => sync_exchange().0,
        "sync_message" => sync_exchange().1,
        "feed_frames" => feed_streams(),
        "node_toml" => vec![include_bytes!("../../../deploy/examples/node.toml").to_vec()],
        "hub_toml" => vec![include_bytes!("../../../deploy/examples/hub.toml").to_vec()],
        "gate_toml" => vec![include_bytes!("../../../deploy/examples/gate.toml").to_vec()],
        "qr_png" => qr_pngs(),
        "photo" => photos(),
        _ => Vec::new(),
    }
}

/// Every target has seeds (`run.sh` relies on it).
pub fn all() -> Vec<(&'static str, Vec<Vec<u8>>)> {
    TARGETS.iter().map(|t| (t.name, seeds(t.name))).collect()
}

fn kinds() -> impl Iterator<Item = HolderKind> {
    [
        HolderKind::Resident,
        HolderKind::Dependent,
        HolderKind::Visitor,
        HolderKind::Staff,
    ]
    .into_iter()
}

fn household_codes() -> Vec<Vec<u8>> {
    let code = HouseholdCode::parse("ABCDEFGHIJKLMNOP").expect("16 base32 letters");
    let text = code.to_text();
    vec![
        text.clone().into(),
        text.to_lowercase().into(),
        text.replace('-', " ").into(),
    ]
}

fn peer_certs() -> Vec<Vec<u8>> {
    let node = tls::self_signed(&fixtures::node_key(), Some(&fixtures::node_cert()))
        .expect("node certificate");
    let gate = tls::self_signed(&ed25519_dalek::SigningKey::from_bytes(&[4; 32]), None)
        .expect("gate certificate");
    vec![node.0.to_vec(), gate.0.to_vec()]
}

fn gate_requests() -> Vec<GateRequest> {
    let mut event = testing::gate_event("north-1", NOW * 1_000);
    event.offline = Some(wire::OfflineMark {
        gate_seq: 1,
        decided_ms: NOW * 1_000,
        degraded: false,
    });
    vec![
        GateRequest::Check(CheckRequest {
            code: fixtures::code(HolderKind::Resident, 1).to_text(),
            direction: Direction::In,
            temperature_dc: 365,
            plate: Some("粤B12345".into()),
        }),
        GateRequest::Subscribe,
        GateRequest::Ack(GateAck {
            incarnation: 1,
            version: 3,
            lockdown_epoch: 1,
            locked: true,
            pending_events: 2,
            skew_ms: -40,
        }),
        GateRequest::Upload {
            events: vec![OfflineEvent {
                gate_seq: 1,
                cache: 0,
                event,
            }],
        },
    ]
}

fn console_requests() -> Vec<ConsoleRequest> {
    let form = testing::resident("张三", "19900307", 17, "1203");
    let holder = HolderId([8; 8]);
    vec![
        ConsoleRequest::Declare { form: form.clone() },
        ConsoleRequest::DeclareProxy {
            by: holder,
            form: form.clone(),
        },
        ConsoleRequest::DeclareOffline {
            form,
            photo: photos().swap_remove(0),
            staff: "clerk".into(),
        },
        ConsoleRequest::PrintPass { holder },
        ConsoleRequest::InviteVisitor {
            host: holder,
            visitor_name: "李四".into(),
            visitor_phone: "13800138000".into(),
            from: NOW,
            until: NOW + 3_600,
        },
        ConsoleRequest::WithdrawConsent {
            visitor_code: CredId([3; 8]),
        },
        ConsoleRequest::QueryLog(LogQuery::default()),
        ConsoleRequest::EnrolGate {
            gate_id: "north-1".into(),
            public_key: [4; 32],
        },
        ConsoleRequest::LocalLockdown {
            locked: true,
            reason: "a case".into(),
            by: "clerk".into(),
        },
        ConsoleRequest::IssueHouseholdCode {
            building: "3".into(),
            door: "1203".into(),
        },
        ConsoleRequest::Status,
    ]
}

fn hub_requests() -> Vec<HubRequest> {
    vec![
        HubRequest::EnrolNode {
            cert: fixtures::node_cert().encode(),
        },
        HubRequest::QueryDistrictLog {
            community: Some(COMMUNITY),
            query: LogQuery::default(),
        },
        HubRequest::SetHealth {
            flags: vec![HealthEntry {
                id_hash: IdHash([3; 16]),
                status: "hospital".into(),
            }],
        },
        HubRequest::SetLockdown {
            community: COMMUNITY,
            locked: true,
            reason: "a case".into(),
            by: "district".into(),
        },
        HubRequest::Status,
        HubRequest::RevokeNode {
            community: COMMUNITY,
            cert: Some(fixtures::node_cert().encode()),
            by: "district".into(),
            reason: "laptop stolen".into(),
        },
        HubRequest::SyncStats,
    ]
}

fn responses() -> Vec<Response> {
    vec![
        Response::Check(CheckAnswer {
            allowed: true,
            reason: Reason::Ok,
            fever: false,
            holder: Some(HolderDisplay {
                name: "张三".into(),
                building: "3".into(),
                door: "1203".into(),
                kind: HolderKind::Resident,
                photo: None,
            }),
            seq: 9,
            node_time_ms: NOW * 1_000,
            passback: false,
        }),
        Response::Log(vec![testing::gate_event("north-1", NOW * 1_000)]),
        Response::Uploaded {
            upto_gate_seq: 4,
            stored: 2,
        },
        Response::Error {
            kind: ErrorKind::Refused,
            message: "no".into(),
        },
        Response::Done("ok".into()),
    ]
}

fn link_frames() -> Vec<LinkFrame> {
    let sync = SyncFrame {
        session: 1 << 32 | 1,
        body: SyncBody::Summary {
            reply: false,
            docs: Vec::new(),
        },
    };
    vec![
        LinkFrame::Hello { events_logged: 3 },
        LinkFrame::LogCursor { next_seq: 1 },
        LinkFrame::LogBatch {
            events: vec![testing::gate_event("north-1", NOW * 1_000)],
        },
        LinkFrame::LogAck { upto_seq: 1 },
        LinkFrame::Sync(sync.encode()),
        LinkFrame::LocalLockdown(LocalLockdown {
            locked: true,
            reason: "a case".into(),
            by: "clerk".into(),
            at: NOW,
        }),
        LinkFrame::GateLinks(vec![GateLink::default()]),
    ]
}

/// A hub and a node sync as the targets build them: what each received, as inputs of
/// `sync_frames` (whole exchanges and their first frames), and every Automerge message in
/// them as inputs of `sync_message`.
fn sync_exchange() -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let (mut hub, mut to_node) = sync::hub_with_frames();
    let (mut node, mut to_hub) = sync::node_with_frames();
    let mut hub_heard = Vec::new();
    let mut node_heard = Vec::new();
    let mut now_ms = NOW * 1_000;
    for _ in 0..16 {
        if to_hub.is_empty() && to_node.is_empty() {
            break;
        }
        let (mut next_to_hub, mut next_to_node) = (Vec::new(), Vec::new());
        for f in to_hub.drain(..) {
            next_to_node.extend(sync::deliver(
                &mut hub,
                Role::Node(COMMUNITY),
                &f,
                &mut now_ms,
            ));
            hub_heard.push(f);
        }
        for f in to_node.drain(..) {
            next_to_hub.extend(sync::deliver(&mut node, Role::Hub, &f, &mut now_ms));
            node_heard.push(f);
        }
        (to_hub, to_node) = (next_to_hub, next_to_node);
    }
    let stream = |selector: u8, frames: &[Vec<u8>]| {
        let mut out = vec![selector];
        out.extend(join_frames(frames));
        out
    };
    let mut frames = vec![stream(0, &hub_heard), stream(1, &node_heard)];
    for n in 1..4 {
        frames.push(stream(0, &hub_heard[..n.min(hub_heard.len())]));
        frames.push(stream(1, &node_heard[..n.min(node_heard.len())]));
    }
    let mut messages = Vec::new();
    for (selector, heard) in [(0u8, &hub_heard), (1, &node_heard)] {
        messages.extend(heard.iter().filter_map(|f| message_seed(selector, f)));
    }
    (frames, messages)
}

/// A `sync_message` input from a frame that carries an Automerge message.
fn message_seed(receiver: u8, frame: &[u8]) -> Option<Vec<u8>> {
    let SyncBody::Doc { doc, msg } = SyncFrame::decode(frame).ok()?.body else {
        return None;
    };
    let n = (0..=16u8).find(|&n| sync::doc_for(n).to_string() == doc)?;
    let mut out = vec![receiver | n << 1];
    out.extend(msg);
    Some(out)
}

fn feed_streams() -> Vec<Vec<u8>> {
    let update = |version, revoked: u8| {
        GateFeed::Update(TrustUpdate {
            incarnation: 1,
            version,
            node_time_ms: NOW * 1_000 + version,
            lockdown: (version == 3).then(|| GateLockdown {
                locked: true,
                epoch: 2,
                reason: "a case".into(),
                at: NOW,
            }),
            revoked: vec![CredId([revoked; 8])],
            visitors_added: vec![CredId([revoked.wrapping_add(1); 8])],
            visitors_removed: Vec::new(),
            revoked_node_keys: vec![[revoked; 32]],
        })
    };
    let mut snapshot = feed::base_snapshot();
    snapshot.version = 10;
    snapshot.incarnation = 2;
    let streams = [
        vec![update(2, 6), update(3, 7)],
        vec![GateFeed::Heartbeat {
            version: 1,
            node_time_ms: NOW * 1_000,
        }],
        vec![GateFeed::Snapshot(snapshot)],
        vec![GateFeed::Refused("not enrolled".into())],
    ];
    streams
        .iter()
        .map(|s| join_frames(&s.iter().map(wire::encode).collect::<Vec<_>>()))
        .collect()
}

fn qr_pngs() -> Vec<Vec<u8>> {
    let text = fixtures::code(HolderKind::Resident, 1).to_text();
    vec![
        qr::qr_png(&text, 2).expect("a code fits a QR"),
        qr::qr_png("MJ:short", 1).expect("a short text fits a QR"),
    ]
}

fn photos() -> Vec<Vec<u8>> {
    // A JPEG's start (SOI, APP0 JFIF, SOF0 of 480×640) and a PNG (a QR of 4 px modules).
    let jpeg = vec![
        0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10, b'J', b'F', b'I', b'F', 0x00, 0x01, 0x01, 0x00, 0x00,
        0x01, 0x00, 0x01, 0x00, 0x00, 0xFF, 0xC0, 0x00, 0x11, 0x08, 0x02, 0x80, 0x01, 0xE0, 0x03,
        0x01, 0x22, 0x00, 0x02, 0x11, 0x01, 0x03, 0x11, 0x01, 0xFF, 0xD9,
    ];
    vec![
        jpeg,
        qr::qr_png("MJ:photo", 4).expect("a short text fits a QR"),
    ]
}
