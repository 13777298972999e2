//! Replication frames from a peer, and the Automerge sync messages inside them, into a real
//! `Replica` (the hub's, or a node's), which then answers and persists: nothing a peer sends
//! may panic it (a panic under the driver's replica lock ends every link of the district).

use menjin_proto::credential::{CredId, HolderId, HolderKind};
use menjin_proto::declaration::Outcome;
use menjin_proto::idnum::IdHash;
use menjin_sync::{
    CodeEntry, CodeStatus, Config, DocId, HealthFlag, NodeEnrolment, NodeRevocation, PolicyBatch,
    Replica, Role, RosterBatch, RosterEntry, SyncBody, SyncFrame,
};

use crate::fixtures::{COMMUNITY, NOW, node_key};

/// Frames one input may carry (each is answered before the next).
const FRAMES_MAX: usize = 32;
/// Frames taken from a replica after each input frame: more than a real exchange needs.
const TRANSMITS_MAX: usize = 64;
/// The clock of the replicas, in milliseconds.
const NOW_MS: u64 = NOW * 1_000;

/// The hub as the targets meet it: the policy (the node enrolled, a lockdown, a health flag)
/// and a session open to the node.
pub fn hub() -> Replica {
    hub_with_frames().0
}

/// [`hub`] and the frames it sent when the session opened.
pub fn hub_with_frames() -> (Replica, Vec<Vec<u8>>) {
    let mut hub = Replica::new(Role::Hub, 1, Config::default());
    let batch = PolicyBatch {
        enrol: vec![NodeEnrolment {
            community: COMMUNITY,
            node_key: node_key().verifying_key().to_bytes(),
            name: "Fuzz Garden".into(),
        }],
        lockdowns: Vec::new(),
        health: vec![HealthFlag {
            id_hash: IdHash([3; 16]),
            community: COMMUNITY,
            status: "home_quarantine".into(),
            at: NOW,
        }],
        revoke: vec![NodeRevocation {
            community: COMMUNITY,
            node_key: [9; 32],
            at: NOW,
            by: "fuzz".into(),
            reason: "a leaked key".into(),
        }],
    };
    hub.apply_policy(&batch, NOW).expect("fixture policy");
    hub.set_lockdown(COMMUNITY, true, "a case", "fuzz", NOW)
        .expect("fixture lockdown");
    hub.connect(Role::Node(COMMUNITY), NOW_MS)
        .expect("hub syncs with nodes");
    let sent = drain(&mut hub, Role::Node(COMMUNITY), NOW_MS);
    (hub, sent)
}

/// A node of [`COMMUNITY`] with a few residents and codes (one revoked), a session open to
/// the hub.
pub fn node() -> Replica {
    node_with_frames().0
}

/// [`node`] and the frames it sent when the session opened.
pub fn node_with_frames() -> (Replica, Vec<Vec<u8>>) {
    let mut node = Replica::new(Role::Node(COMMUNITY), 1, Config::default());
    let mut batch = RosterBatch::default();
    for n in 0..6u8 {
        let holder = HolderId([n.wrapping_mul(37); 8]);
        let cred = CredId([n; 8]);
        batch.put_person(RosterEntry {
            holder,
            id_hash: IdHash([n; 16]),
            building: format!("{}", n % 3),
            door: format!("{}", 100 + u32::from(n)),
            kind: HolderKind::Resident,
            outcome: Outcome::Cleared,
            cred: Some(cred),
            declared_at: NOW,
        });
        batch.put_code(CodeEntry {
            id: cred,
            holder,
            kind: HolderKind::Resident,
            status: if n == 5 {
                CodeStatus::Revoked
            } else {
                CodeStatus::Active
            },
            valid_from: NOW,
            valid_until: NOW + 30 * 86_400,
            host: None,
            revoked_at: (n == 5).then_some(NOW),
        });
    }
    node.apply_roster(COMMUNITY, &batch, NOW)
        .expect("fixture roster");
    node.connect(Role::Hub, NOW_MS)
        .expect("node syncs with hub");
    let sent = drain(&mut node, Role::Hub, NOW_MS);
    (node, sent)
}

/// Takes what the replica would send and persist, as a driver does after every event.
/// Returns the frames sent.
pub fn drain(r: &mut Replica, peer: Role, now_ms: u64) -> Vec<Vec<u8>> {
    let mut sent = Vec::new();
    while sent.len() < TRANSMITS_MAX {
        while r.poll_persist().is_some() {}
        match r.poll_transmit(peer, now_ms) {
            Some(f) => sent.push(f),
            None => break,
        }
    }
    while r.poll_persist().is_some() {}
    sent
}

/// The receiving side named by an input's first byte: even → the hub, hearing its node;
/// odd → the node, hearing its hub.
fn receiver(selector: u8) -> (Replica, Role) {
    if selector.is_multiple_of(2) {
        (hub(), Role::Node(COMMUNITY))
    } else {
        (node(), Role::Hub)
    }
}

/// Feeds one frame, answers it, and lets time pass (stall and anti-entropy timers fire).
/// Returns what the replica sent back.
pub fn deliver(r: &mut Replica, peer: Role, frame: &[u8], now_ms: &mut u64) -> Vec<Vec<u8>> {
    let _ = r.handle_message(peer, frame, *now_ms);
    let mut sent = drain(r, peer, *now_ms);
    *now_ms += 7_000;
    r.handle_timeout(*now_ms);
    sent.extend(drain(r, peer, *now_ms));
    sent
}

/// First byte: who receives; then length-prefixed `SyncFrame`s from the peer.
pub fn sync_frames(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let (mut r, peer) = receiver(selector);
    let mut now_ms = NOW_MS;
    for frame in crate::frames(rest, FRAMES_MAX) {
        deliver(&mut r, peer, frame, &mut now_ms);
    }
}

/// First byte: who receives (bit 0) and which document (the rest: a roster shard or the
/// policy); then one Automerge sync message, put in a `SyncFrame` of a new peer session.
pub fn sync_message(data: &[u8]) {
    let Some((&selector, msg)) = data.split_first() else {
        return;
    };
    let (mut r, peer) = receiver(selector);
    let doc = doc_for(selector >> 1);
    let frame = SyncFrame {
        session: 1 << 40,
        body: SyncBody::Doc {
            doc: doc.to_string(),
            msg: msg.to_vec(),
        },
    }
    .encode();
    let mut now_ms = NOW_MS;
    deliver(&mut r, peer, &frame, &mut now_ms);
    // The same message again: a peer that repeats itself (Automerge's duplicate paths).
    deliver(&mut r, peer, &frame, &mut now_ms);
}

/// Document number `n` of the selector: 0 the policy, else roster shard `n - 1` (16 shards;
/// numbers past them name shards the community does not have).
pub fn doc_for(n: u8) -> DocId {
    match n {
        0 => DocId::Policy,
        n => DocId::Roster {
            community: COMMUNITY,
            shard: n - 1,
        },
    }
}
