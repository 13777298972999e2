//! Behaviour of one hub–node pair: summaries, authority, the revocation rule, refusal of
//! bad frames, persistence.

mod common;

use automerge::sync::{ChunkList, Message, MessageVersion, State, SyncDoc};
use common::*;
use menjin_sync::automerge;
use menjin_sync::{
    CodeStatus, Config, DocId, PolicyBatch, Replica, Role, RosterBatch, SyncBody, SyncError,
    SyncFrame, WriteError,
};

const T0: u64 = 1_700_000_000;

fn batch_of(range: std::ops::Range<u64>) -> RosterBatch {
    let mut b = RosterBatch::default();
    for n in range {
        let c = code(n, holder(n));
        b.put_person(person(n, Some(c.id)));
        b.put_code(c);
    }
    b
}

/// A node of community 7 with `persons` residents and a hub, connected and in sync.
fn synced_pair(persons: u64, config: Config) -> (Replica, Store, Replica, Store) {
    let mut node = Replica::new(Role::Node(7), 1, config.clone());
    let mut hub = Replica::new(Role::Hub, 1, config);
    let (mut sn, mut sh) = (Store::default(), Store::default());
    node.apply_roster(7, &batch_of(0..persons), T0).unwrap();
    hub.apply_policy(
        &PolicyBatch {
            enrol: vec![menjin_sync::NodeEnrolment {
                community: 7,
                node_key: [7; 32],
                name: "Futian 7".into(),
            }],
            ..PolicyBatch::default()
        },
        T0,
    )
    .unwrap();
    node.connect(Role::Hub, 0).unwrap();
    hub.connect(Role::Node(7), 0).unwrap();
    pump(&mut node, &mut sn, &mut hub, &mut sh, 0);
    assert_same_roster(&hub.roster(7), &node.roster(7));
    assert_eq!(hub.policy(), node.policy());
    (node, sn, hub, sh)
}

fn reconnect(node: &mut Replica, hub: &mut Replica, now: u64) {
    node.disconnect(Role::Hub);
    hub.disconnect(Role::Node(7));
    node.connect(Role::Hub, now).unwrap();
    hub.connect(Role::Node(7), now).unwrap();
}

#[test]
fn only_documents_whose_summaries_differ_are_synced() {
    let (mut node, mut sn, mut hub, mut sh) = synced_pair(200, Config::default());

    // Nothing changed: the reconnect costs the two summaries each way and nothing else.
    reconnect(&mut node, &mut hub, 10);
    let t = pump(&mut node, &mut sn, &mut hub, &mut sh, 10);
    assert!(t.doc_frames.is_empty(), "{:?}", t.doc_frames);
    assert_eq!(t.frames, 4);

    // One person changes while disconnected: only that shard is synced.
    node.disconnect(Role::Hub);
    hub.disconnect(Role::Node(7));
    let mut p = person(3, None);
    p.door = "999".into();
    let changed = node
        .apply_roster(
            7,
            &RosterBatch {
                persons: vec![p],
                codes: vec![],
            },
            T0 + 5,
        )
        .unwrap();
    assert_eq!(changed.len(), 1);
    node.connect(Role::Hub, 20).unwrap();
    hub.connect(Role::Node(7), 20).unwrap();
    let t = pump(&mut node, &mut sn, &mut hub, &mut sh, 20);
    let shard = changed[0].to_string();
    assert!(!t.doc_frames.is_empty());
    assert!(
        t.doc_frames.iter().all(|(_, d, _)| *d == shard),
        "{:?}",
        t.doc_frames
    );
    assert_same_roster(&hub.roster(7), &node.roster(7));
    assert_eq!(
        hub.stats().session_restarts + node.stats().session_restarts,
        0
    );
}

#[test]
fn revocation_is_pushed_at_once_in_one_round_trip() {
    let (mut node, mut sn, mut hub, mut sh) = synced_pair(2_000, Config::default());
    let c = code(42, holder(42));
    let changed = node
        .apply_roster(
            7,
            &RosterBatch {
                persons: vec![],
                codes: vec![revoked(c.clone(), T0 + 60)],
            },
            T0 + 60,
        )
        .unwrap();
    assert_eq!(changed.len(), 1);
    let t = pump(&mut node, &mut sn, &mut hub, &mut sh, 100);
    // The change, then the hub's acknowledgement with its new heads.
    assert_eq!(t.doc_frames.len(), 2, "{:?}", t.doc_frames);
    println!(
        "one revocation, 2,000 residents in 16 shards: {} frames, {} bytes ({:?})",
        t.frames, t.bytes, t.doc_frames
    );
    let at_hub = hub.roster(7).codes[&c.id].clone();
    assert_eq!(at_hub.status, CodeStatus::Revoked);
}

#[test]
fn a_view_is_updated_from_what_changed_alone() {
    let (mut node, mut sn, mut hub, mut sh) = synced_pair(300, Config::default());
    let c = code(42, holder(42));
    let doc = DocId::roster_shard(7, c.holder, 16);
    let before = hub.heads(doc);
    let mut moved = person(42, Some(c.id));
    moved.building = "B-9".into();
    node.apply_roster(
        7,
        &RosterBatch {
            persons: vec![moved.clone()],
            codes: vec![revoked(c.clone(), T0 + 60)],
        },
        T0 + 60,
    )
    .unwrap();
    node.handle_timeout(1);
    pump(&mut node, &mut sn, &mut hub, &mut sh, 1);
    let delta = hub.roster_changes_since(doc, &before);
    assert_eq!(delta.persons.values().collect::<Vec<_>>(), vec![&moved]);
    assert_eq!(delta.codes.len(), 1);
    assert_eq!(delta.codes[&c.id].status, CodeStatus::Revoked);
    // Heads the document does not know (a view from elsewhere): the whole shard.
    let unknown = vec![menjin_sync::automerge::ChangeHash([7; 32])];
    assert_eq!(
        hub.roster_changes_since(doc, &unknown),
        hub.roster_shard(doc).unwrap()
    );
}

#[test]
fn a_node_that_lost_its_disk_gets_its_roster_back_from_the_hub() {
    let (node, _sn, mut hub, mut sh) = synced_pair(500, Config::default());
    let before = node.roster(7);
    drop(node);
    hub.disconnect(Role::Node(7));
    let mut node = Replica::new(Role::Node(7), 2, Config::default());
    let mut sn = Store::default();
    node.connect(Role::Hub, 0).unwrap();
    hub.connect(Role::Node(7), 0).unwrap();
    pump(&mut node, &mut sn, &mut hub, &mut sh, 0);
    assert_same_roster(&node.roster(7), &before);
    assert_eq!(node.policy(), hub.policy());
    // And it writes on from there.
    node.apply_roster(7, &batch_of(900..901), T0).unwrap();
    pump(&mut node, &mut sn, &mut hub, &mut sh, 1);
    assert_same_roster(&hub.roster(7), &node.roster(7));
    assert_eq!(hub.stats().frames_refused, 0);
}

#[test]
fn a_hub_that_lost_its_disk_takes_rosters_back_but_never_the_policy() {
    let config = fast_config();
    let (mut node, mut sn, hub, _sh) = synced_pair(50, config.clone());
    let lost_policy = node.policy();
    assert_eq!(lost_policy.nodes.len(), 1);
    drop(hub);
    node.disconnect(Role::Hub);
    let mut hub = Replica::new(Role::Hub, 2, config);
    let mut sh = Store::default();
    hub.set_lockdown(7, true, "new case", "op", T0).unwrap();
    node.connect(Role::Hub, 0).unwrap();
    hub.connect(Role::Node(7), 0).unwrap();
    let mut now = 0;
    for _ in 0..20 {
        pump(&mut node, &mut sn, &mut hub, &mut sh, now);
        now += 400;
        node.handle_timeout(now);
        hub.handle_timeout(now);
    }
    assert_same_roster(&hub.roster(7), &node.roster(7));
    // The new policy reached the node; the old one never went back to the hub.
    assert!(node.policy().is_locked(7));
    assert!(hub.policy().nodes.is_empty());
    assert_eq!(hub.stats().frames_refused, 0, "the node did not even try");
    // The divergence is explained by the authority rule, not a stall: no restart loop.
    let restarts = hub.stats().session_restarts + node.stats().session_restarts;
    assert_eq!(
        restarts,
        0,
        "{}{}",
        hub.describe_session(Role::Node(7)),
        node.describe_session(Role::Hub)
    );
}

/// A lockdown goes to the locked community's node and to no other: its policy document is
/// shared with that node alone.
#[test]
fn lockdown_reaches_its_own_node_and_costs_the_others_nothing() {
    let mut hub = Replica::new(Role::Hub, 1, Config::default());
    let mut sh = Store::default();
    let mut nodes: Vec<(Replica, Store)> = (1..=3)
        .map(|c| {
            (
                Replica::new(Role::Node(c), 1, Config::default()),
                Store::default(),
            )
        })
        .collect();
    for (n, _) in &mut nodes {
        n.connect(Role::Hub, 0).unwrap();
        hub.connect(n.me(), 0).unwrap();
    }
    for (n, s) in &mut nodes {
        pump(n, s, &mut hub, &mut sh, 0);
    }
    let l = hub
        .set_lockdown(2, true, "confirmed case", "op-1", T0)
        .unwrap();
    assert_eq!(l.epoch, 1);
    for (n, s) in &mut nodes {
        let t = pump(n, s, &mut hub, &mut sh, 5);
        if n.me() == Role::Node(2) {
            assert_eq!(t.doc_frames.len(), 2, "{:?}", t.doc_frames);
            assert!(n.policy().is_locked(2));
        } else {
            assert!(t.doc_frames.is_empty(), "{:?}", t.doc_frames);
            assert!(!n.policy().is_locked(2), "another community's lockdown");
            assert!(n.doc(DocId::CommunityPolicy { community: 2 }).is_none());
        }
    }
    // Epochs only rise.
    let stale = hub.apply_policy(
        &PolicyBatch {
            lockdowns: vec![l.clone()],
            ..PolicyBatch::default()
        },
        T0,
    );
    assert!(matches!(stale, Err(WriteError::StaleEpoch { .. })));
}

/// A sync message that carries `doc`'s whole history as changes.
fn message_with_changes(doc: &automerge::Automerge) -> Vec<u8> {
    Message {
        heads: doc.get_heads(),
        need: vec![],
        have: vec![],
        changes: ChunkList::from(
            doc.get_changes(&[])
                .into_iter()
                .map(|c| c.raw_bytes().to_vec())
                .collect::<Vec<_>>(),
        ),
        flags: None,
        version: MessageVersion::V1,
    }
    .encode()
}

fn frame(session: u64, doc: &str, msg: Vec<u8>) -> Vec<u8> {
    SyncFrame {
        session,
        body: SyncBody::Doc {
            doc: doc.into(),
            msg,
        },
    }
    .encode()
}

#[test]
fn changes_from_the_wrong_peer_are_refused_and_never_merged() {
    let (mut node, mut sn, mut hub, mut sh) = synced_pair(20, Config::default());
    // Community 8 is enrolled too, and malicious.
    let evil = Role::Node(8);
    hub.connect(evil, 0).unwrap();
    let session = 8 << 32 | 1;

    // Its own forged edit of community 7's roster.
    let mut forger = Replica::new(Role::Node(7), 99, Config::default());
    forger.apply_roster(7, &batch_of(1_000..1_001), T0).unwrap();
    let target = *forger.docs().collect::<Vec<_>>().first().unwrap();
    let forged_roster = message_with_changes(forger.doc(target).unwrap());
    // And a forged lockdown lift in the policy.
    let mut fake_hub = Replica::new(Role::Hub, 99, Config::default());
    fake_hub
        .set_lockdown(7, false, "forged", "evil", T0)
        .unwrap();
    let forged_policy = message_with_changes(
        fake_hub
            .doc(DocId::CommunityPolicy { community: 7 })
            .unwrap(),
    );
    fake_hub
        .set_lockdown(8, false, "forged", "evil", T0)
        .unwrap();
    let forged_own = message_with_changes(
        fake_hub
            .doc(DocId::CommunityPolicy { community: 8 })
            .unwrap(),
    );

    let heads_before: Vec<_> = hub.docs().map(|d| (d, hub.heads(d))).collect();
    let refused = hub.stats().frames_refused;
    let r = hub.handle_message(
        evil,
        &frame(session, &target.to_string(), forged_roster.clone()),
        1,
    );
    assert!(matches!(r, Err(SyncError::NotShared { .. })), "{r:?}");
    // Another community's policy is not even shared with it.
    let r = hub.handle_message(evil, &frame(session, "policy/7", forged_policy.clone()), 1);
    assert!(matches!(r, Err(SyncError::NotShared { .. })), "{r:?}");
    // Its own community's policy is shared, but only the hub writes it.
    let r = hub.handle_message(evil, &frame(session, "policy/8", forged_own), 1);
    assert!(
        matches!(
            r,
            Err(SyncError::NotWriter {
                writer: Role::Hub,
                ..
            })
        ),
        "{r:?}"
    );
    // The rightful node may not change its policy either.
    let r = hub.handle_message(
        Role::Node(7),
        &frame(7 << 32 | 1, "policy/7", forged_policy),
        1,
    );
    assert!(matches!(r, Err(SyncError::NotWriter { .. })), "{r:?}");
    // A message without changes is part of the protocol and accepted.
    let mut st = State::new();
    let empty = automerge::Automerge::new();
    let hello = empty.generate_sync_message(&mut st).unwrap().encode();
    hub.handle_message(evil, &frame(session, "policy", hello), 1)
        .unwrap();

    let heads_after: Vec<_> = hub.docs().map(|d| (d, hub.heads(d))).collect();
    assert_eq!(heads_before, heads_after, "nothing was merged");
    assert_eq!(hub.stats().frames_refused, refused + 4);
    assert!(!hub.roster(7).persons.contains_key(&holder(1_000)));

    // A node refuses another community's roster from the hub, changes or not.
    let r = node.handle_message(
        Role::Hub,
        &frame(1 << 32 | 1, "roster/8/0", forged_roster),
        1,
    );
    assert!(matches!(r, Err(SyncError::NotShared { .. })), "{r:?}");
    // And the pair still syncs normally.
    node.apply_roster(7, &batch_of(50..52), T0).unwrap();
    pump(&mut node, &mut sn, &mut hub, &mut sh, 2);
    assert_same_roster(&hub.roster(7), &node.roster(7));
}

#[test]
fn revoked_code_never_comes_back_to_life() {
    let config = Config::default();
    let mut node = Replica::new(Role::Node(5), 1, config.clone());
    let mut store = Store::default();
    let c = code(1, holder(1));
    node.apply_roster(
        5,
        &RosterBatch {
            persons: vec![person(1, Some(c.id))],
            codes: vec![c.clone()],
        },
        T0,
    )
    .unwrap();
    store.drain(&mut node);

    // Through the typed API.
    let revoke = RosterBatch {
        persons: vec![],
        codes: vec![revoked(c.clone(), T0 + 10)],
    };
    node.apply_roster(5, &revoke, T0 + 10).unwrap();
    let again = RosterBatch {
        persons: vec![],
        codes: vec![c.clone()],
    };
    assert!(matches!(
        node.apply_roster(5, &again, T0 + 20),
        Err(WriteError::StatusFinal {
            status: CodeStatus::Revoked,
            ..
        })
    ));
    let mut withdraw = revoked(c.clone(), T0 + 30);
    withdraw.status = CodeStatus::ConsentWithdrawn;
    assert!(
        node.apply_roster(
            5,
            &RosterBatch {
                persons: vec![],
                codes: vec![withdraw]
            },
            T0 + 30
        )
        .is_err()
    );
    // Within one batch too.
    let mut both = revoked(code(2, holder(2)), T0);
    let c2 = code(2, holder(2));
    both.holder = c2.holder;
    assert!(
        node.apply_roster(
            5,
            &RosterBatch {
                persons: vec![],
                codes: vec![both, c2]
            },
            T0
        )
        .is_err()
    );
    assert_eq!(node.roster(5).codes[&c.id].status, CodeStatus::Revoked);

    // Through a conflict: an older incarnation, restored from the store before the
    // revocation, rewrites the code as active without knowing of the revocation.
    let mut old = store.rebuild(Role::Node(5), 2, config);
    let mut longer = c.clone();
    longer.valid_until += 86_400;
    old.apply_roster(
        5,
        &RosterBatch {
            persons: vec![],
            codes: vec![longer],
        },
        T0 + 40,
    )
    .unwrap();
    let doc = DocId::roster_shard(5, c.holder, 16);
    let mut merged = node.doc(doc).unwrap().clone();
    merged.merge(&mut old.doc(doc).unwrap().clone()).unwrap();
    let view = menjin_sync::read_roster(&merged);
    assert_eq!(view.codes[&c.id].status, CodeStatus::Revoked);
    assert_eq!(view.codes[&c.id].revoked_at, Some(T0 + 10));
    assert_eq!(view.codes[&c.id].valid_until, c.valid_until + 86_400);
    // The typed API reads the conflict the same way.
    let mut s = Store::default();
    s.snapshots.insert(doc, merged.save());
    let mut r = s.rebuild(Role::Node(5), 3, Config::default());
    assert!(matches!(
        r.apply_roster(5, &again, T0 + 50),
        Err(WriteError::StatusFinal { .. })
    ));
}

#[test]
fn malformed_and_oversized_frames_are_refused_and_change_nothing() {
    let (_node, _sn, mut hub, _sh) = synced_pair(10, Config::default());
    let peer = Role::Node(7);
    let heads: Vec<_> = hub.docs().map(|d| (d, hub.heads(d))).collect();
    let session = hub.session_id(peer).unwrap();
    let mut x = 0x1234_5678_9abc_def0u64;
    let mut cases: Vec<Vec<u8>> = vec![
        vec![],
        vec![0xff; 3],
        vec![0; menjin_sync::SYNC_MESSAGE_LEN_MAX + 1],
        frame(1, "roster/x/1", vec![0x42]),
        frame(1, "roster/07/1", vec![0x42]),
        frame(1, "roster/7/1", vec![0x42, 0xff, 0xff]),
        frame(1, "roster/7/1", vec![]),
    ];
    let mut trailing = frame(1, "roster/7/1", vec![0x42]);
    trailing.push(0);
    cases.push(trailing);
    for _ in 0..300 {
        let len = (x % 200) as usize;
        let bytes: Vec<u8> = (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        cases.push(bytes.clone());
        // Random bytes as the Automerge part of a well-formed frame, too.
        let mut msg = bytes;
        msg.insert(0, 0x42);
        cases.push(frame(1, "roster/7/0", msg));
    }
    for bytes in &cases {
        assert!(hub.handle_message(peer, bytes, 5).is_err());
    }
    let after: Vec<_> = hub.docs().map(|d| (d, hub.heads(d))).collect();
    assert_eq!(heads, after);
    assert_eq!(hub.session_id(peer), Some(session));
    assert!(matches!(
        hub.handle_message(Role::Node(9), &frame(1, "policy", vec![0x42]), 5),
        Err(SyncError::NotConnected(_))
    ));
}

#[test]
fn stored_snapshot_and_chunks_load_back_to_the_same_documents() {
    let config = Config {
        snapshot_after_chunks: 5,
        roster_shards: 2,
        ..Config::default()
    };
    let mut node = Replica::new(Role::Node(3), 1, config.clone());
    let mut store = Store::default();
    let mut saw_chunks = false;
    for n in 0..40 {
        node.apply_roster(3, &batch_of(n..n + 1), T0 + n).unwrap();
        if n % 3 == 0 {
            let c = code(n, holder(n));
            node.apply_roster(
                3,
                &RosterBatch {
                    persons: vec![],
                    codes: vec![revoked(c, T0 + n)],
                },
                T0 + n,
            )
            .unwrap();
        }
        store.drain(&mut node);
        saw_chunks |= !store.chunks.is_empty();
        // Every state of the store loads back to the same documents.
        let back = store.rebuild(Role::Node(3), 2, config.clone());
        for d in node.docs() {
            assert_eq!(back.heads(d), node.heads(d), "{d} after {n}");
        }
    }
    assert!(saw_chunks && !store.snapshots.is_empty());
    assert!(store.chunks.values().all(|c| c.len() <= 5));
    let back = store.rebuild(Role::Node(3), 2, config);
    assert_same_roster(&back.roster(3), &node.roster(3));
    assert_eq!(back.roster(3).persons.len(), 40);
    assert_eq!(back.roster(3).malformed, 0);
}

#[test]
fn persisted_peer_state_makes_a_restart_cheaper() {
    // A roster written one declaration at a time: many changes per shard, which is what
    // makes Bloom filters (and so a sync from nothing) grow.
    let mut node = Replica::new(Role::Node(7), 1, Config::default());
    let mut hub = Replica::new(Role::Hub, 1, Config::default());
    let (mut sn, mut sh) = (Store::default(), Store::default());
    for n in 0..800 {
        node.apply_roster(7, &batch_of(n..n + 1), T0 + n).unwrap();
    }
    node.connect(Role::Hub, 0).unwrap();
    hub.connect(Role::Node(7), 0).unwrap();
    pump(&mut node, &mut sn, &mut hub, &mut sh, 0);
    node.disconnect(Role::Hub);
    hub.disconnect(Role::Node(7));
    sn.drain(&mut node);
    sh.drain(&mut hub);

    let restart = |keep_states: bool| {
        let (mut sn, mut sh) = (sn.clone(), sh.clone());
        if !keep_states {
            sn.peer_states.clear();
            sh.peer_states.clear();
        }
        let mut node = sn.rebuild(Role::Node(7), 2, Config::default());
        let mut hub = sh.rebuild(Role::Hub, 2, Config::default());
        // Both change something while apart.
        for n in 0..16 {
            let mut p = person(n * 50, None);
            p.door = "1".into();
            node.apply_roster(
                7,
                &RosterBatch {
                    persons: vec![p],
                    codes: vec![],
                },
                T0 + 1_000,
            )
            .unwrap();
        }
        hub.set_lockdown(7, true, "case", "op", T0).unwrap();
        node.connect(Role::Hub, 0).unwrap();
        hub.connect(Role::Node(7), 0).unwrap();
        let t = pump(&mut node, &mut sn, &mut hub, &mut sh, 0);
        assert_same_roster(&hub.roster(7), &node.roster(7));
        assert!(node.policy().is_locked(7));
        t.bytes
    };
    let warm = restart(true);
    let cold = restart(false);
    println!(
        "restart of an 800-resident pair (800 changes), 17 changes while apart: {warm} bytes with stored sync states, {cold} without"
    );
    assert!(warm < cold);
}

#[test]
fn a_healthy_link_never_restarts_a_session() {
    let (mut node, mut sn, mut hub, mut sh) = synced_pair(100, fast_config());
    let mut now = 0;
    for round in 0..50u64 {
        now += 300;
        if round % 2 == 0 {
            node.apply_roster(7, &batch_of(1_000 + round..1_001 + round), T0)
                .unwrap();
        } else {
            hub.apply_policy(
                &PolicyBatch {
                    health: vec![menjin_sync::HealthFlag {
                        id_hash: menjin_proto::idnum::IdHash([round as u8; 16]),
                        community: 7,
                        status: "red".into(),
                        at: T0 + round,
                    }],
                    ..PolicyBatch::default()
                },
                T0,
            )
            .unwrap();
        }
        node.handle_timeout(now);
        hub.handle_timeout(now);
        pump(&mut node, &mut sn, &mut hub, &mut sh, now);
    }
    assert_same_roster(&hub.roster(7), &node.roster(7));
    assert_eq!(hub.policy(), node.policy());
    assert_eq!(node.stats().session_restarts, 0);
    assert_eq!(hub.stats().session_restarts, 0);
    assert!(node.is_settled(Role::Hub) && hub.is_settled(Role::Node(7)));
    assert!(hub.poll_timeout().unwrap() > now);
}

#[test]
fn writes_outside_ones_authority_are_refused() {
    let mut hub = Replica::new(Role::Hub, 1, Config::default());
    let mut node = Replica::new(Role::Node(1), 1, Config::default());
    assert!(matches!(
        hub.apply_roster(1, &batch_of(0..1), T0),
        Err(WriteError::NotWriter { .. })
    ));
    assert!(matches!(
        node.apply_roster(2, &batch_of(0..1), T0),
        Err(WriteError::NotWriter { .. })
    ));
    assert!(matches!(
        node.set_lockdown(1, true, "x", "y", T0),
        Err(WriteError::NotWriter { .. })
    ));
    assert!(node.connect(Role::Node(2), 0).is_err());
    assert!(node.docs().next().is_none() && hub.docs().next().is_none());
}

/// A sync message with no changes whose one `have` carries `bloom` (Automerge's encoding of
/// a Bloom filter: LEB128 entries, bits per entry, probes, then the bits).
fn message_with_bloom(bloom: &[u8]) -> Vec<u8> {
    Message {
        heads: vec![],
        need: vec![],
        have: vec![automerge::sync::Have {
            last_sync: vec![],
            bloom: automerge::sync::BloomFilter::try_from(bloom).unwrap(),
        }],
        changes: ChunkList::empty(),
        flags: None,
        version: MessageVersion::V1,
    }
    .encode()
}

#[test]
fn a_bloom_filter_without_bits_is_refused_and_the_hub_replies_on() {
    let (mut node, mut sn, mut hub, mut sh) = synced_pair(20, Config::default());
    let peer = Role::Node(7);
    let session = node.session_id(Role::Hub).unwrap();
    // One entry, zero bits per entry, seven probes: Automerge 0.12 decodes it, takes
    // `ceil(1 * 0 / 8)` = 0 bytes of bits, and divides by `8 * bits.len()` when it builds
    // the reply.
    let crafted = frame(session, "policy", message_with_bloom(&[1, 0, 7]));
    let heads: Vec<_> = hub.docs().map(|d| (d, hub.heads(d))).collect();
    let r = hub.handle_message(peer, &crafted, 5);
    assert!(matches!(r, Err(SyncError::Bloom { .. })), "{r:?}");
    // Building the reply is where Automerge would panic.
    while hub.poll_transmit(peer, 5).is_some() {}
    let after: Vec<_> = hub.docs().map(|d| (d, hub.heads(d))).collect();
    assert_eq!(heads, after);
    // And the pair still syncs.
    node.apply_roster(7, &batch_of(50..52), T0).unwrap();
    pump(&mut node, &mut sn, &mut hub, &mut sh, 6);
    assert_same_roster(&hub.roster(7), &node.roster(7));
}

/// `n` as unsigned LEB128, as Automerge writes a Bloom filter's header.
fn leb128(mut n: u32, out: &mut Vec<u8>) {
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn bloom(entries: u32, bits_per_entry: u32, probes: u32) -> Vec<u8> {
    let mut b = Vec::new();
    for n in [entries, bits_per_entry, probes] {
        leb128(n, &mut b);
    }
    let bits = (u64::from(entries) * u64::from(bits_per_entry)).div_ceil(8);
    b.resize(b.len() + bits as usize, 0xff);
    b
}

#[test]
fn inconsistent_bloom_filters_and_oversized_lists_are_refused_before_automerge() {
    let (_node, _sn, mut hub, _sh) = synced_pair(10, Config::default());
    let peer = Role::Node(7);
    let session = 7 << 32 | 1;
    let bad_blooms = [
        bloom(1, 0, 7),
        bloom(3, 10, 0),
        bloom(1, 10, menjin_sync::BLOOM_PROBES_MAX + 1),
        bloom(1, menjin_sync::BLOOM_BITS_PER_ENTRY_MAX + 1, 7),
        bloom(menjin_sync::BLOOM_ENTRIES_MAX + 1, 1, 7),
    ];
    for b in &bad_blooms {
        let r = hub.handle_message(peer, &frame(session, "policy", message_with_bloom(b)), 5);
        assert!(matches!(r, Err(SyncError::Bloom { .. })), "{b:?}: {r:?}");
    }
    let hash = automerge::ChangeHash([7; 32]);
    let too_many = |heads: usize, need: usize, haves: usize| {
        Message {
            heads: vec![hash; heads],
            need: vec![hash; need],
            have: vec![automerge::sync::Have::default(); haves],
            changes: ChunkList::empty(),
            flags: None,
            version: MessageVersion::V1,
        }
        .encode()
    };
    for msg in [
        too_many(menjin_sync::SYNC_HEADS_MAX + 1, 0, 1),
        too_many(0, menjin_sync::SYNC_NEEDS_MAX + 1, 1),
        too_many(0, 0, menjin_sync::SYNC_HAVES_MAX + 1),
    ] {
        let r = hub.handle_message(peer, &frame(session, "policy", msg), 5);
        assert!(matches!(r, Err(SyncError::OverLimit { .. })), "{r:?}");
    }
    // What an honest Automerge writes passes: a filter of its own making.
    let good = bloom(3, 10, 7);
    hub.handle_message(
        peer,
        &frame(session, "policy", message_with_bloom(&good)),
        5,
    )
    .unwrap();
    while hub.poll_transmit(peer, 5).is_some() {}
}

/// A V1 sync message carrying `chunks` as its changes.
fn message_of_chunks(chunks: Vec<Vec<u8>>) -> Vec<u8> {
    Message {
        heads: vec![],
        need: vec![],
        have: vec![],
        changes: ChunkList::from(chunks),
        flags: None,
        version: MessageVersion::V1,
    }
    .encode()
}

/// A compressed change chunk (type 2) whose DEFLATE stream inflates to `inflated` zero bytes.
fn compression_bomb(inflated: usize) -> Vec<u8> {
    let mut z = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
    let block = vec![0u8; 1 << 20];
    let mut left = inflated;
    while left > 0 {
        let n = left.min(block.len());
        std::io::Write::write_all(&mut z, &block[..n]).unwrap();
        left -= n;
    }
    let data = z.finish().unwrap();
    let mut out = vec![0x85, 0x6f, 0x4a, 0x83, 0, 0, 0, 0, 2];
    let mut len = data.len() as u64;
    loop {
        let b = (len & 0x7f) as u8;
        len >>= 7;
        out.push(if len == 0 { b } else { b | 0x80 });
        if len == 0 {
            break;
        }
    }
    out.extend(data);
    out
}

#[test]
fn a_compression_bomb_from_a_node_is_refused_before_it_inflates_and_the_pair_syncs_on() {
    let (mut node, mut sn, mut hub, mut sh) = synced_pair(20, Config::default());
    let session = node.session_id(Role::Hub).unwrap();
    // 1 GiB of zeros in about 1 MB: Automerge 0.12 would inflate all of it into memory.
    let bomb = compression_bomb(1 << 30);
    assert!(bomb.len() < 2 << 20, "{} bytes", bomb.len());
    let crafted = frame(session, "roster/7/0", message_of_chunks(vec![bomb]));
    let heads: Vec<_> = hub.docs().map(|d| (d, hub.heads(d))).collect();
    let r = hub.handle_message(Role::Node(7), &crafted, 5);
    assert!(matches!(r, Err(SyncError::Chunk { .. })), "{r:?}");
    assert!(r.unwrap_err().to_string().contains("inflate"));
    let after: Vec<_> = hub.docs().map(|d| (d, hub.heads(d))).collect();
    assert_eq!(heads, after);
    node.apply_roster(7, &batch_of(50..52), T0).unwrap();
    pump(&mut node, &mut sn, &mut hub, &mut sh, 6);
    assert_same_roster(&hub.roster(7), &node.roster(7));
}

#[test]
fn a_shard_past_the_communitys_count_and_a_roster_over_quota_are_refused() {
    let config = Config {
        community_bytes_max: 64 * 1024,
        ..Config::default()
    };
    let (mut node, mut sn, mut hub, mut sh) = synced_pair(20, config.clone());
    let session = node.session_id(Role::Hub).unwrap();
    let change = {
        let mut other = automerge::AutoCommit::new();
        automerge::transaction::Transactable::put(&mut other, automerge::ROOT, "x", 1).unwrap();
        other.commit();
        other.get_changes(&[])[0].raw_bytes().to_vec()
    };
    let shard = format!("roster/7/{}", config.roster_shards);
    let r = hub.handle_message(
        Role::Node(7),
        &frame(session, &shard, message_of_chunks(vec![change])),
        5,
    );
    assert!(matches!(r, Err(SyncError::Quota { .. })), "{r:?}");
    assert!(
        !hub.docs().any(|d| d.to_string() == shard),
        "no document made for it"
    );
    // The node writes until its roster at the hub passes 64 KB: later changes are refused
    // there, and the hub's other work goes on.
    let mut refused = 0;
    'rounds: for round in 0..40u64 {
        node.apply_roster(7, &batch_of(1_000 + round * 50..1_050 + round * 50), T0)
            .unwrap();
        // Both ways until quiet, as `pump` does, but a refusal is what this waits for.
        for _ in 0..1_000 {
            let mut moved = false;
            sn.drain(&mut node);
            while let Some(f) = node.poll_transmit(Role::Hub, 10 + round) {
                moved = true;
                match hub.handle_message(Role::Node(7), &f, 10 + round) {
                    Err(SyncError::Quota { .. }) => refused += 1,
                    other => {
                        other.unwrap();
                    }
                }
                sh.drain(&mut hub);
            }
            while let Some(f) = hub.poll_transmit(Role::Node(7), 10 + round) {
                moved = true;
                node.handle_message(Role::Hub, &f, 10 + round).unwrap();
                sn.drain(&mut node);
            }
            if refused > 0 {
                break 'rounds;
            }
            if !moved {
                break;
            }
        }
    }
    assert!(refused > 0, "the hub took everything");
    // The hub still serves the node what it writes itself.
    hub.set_lockdown(7, true, "quota test", "hub", T0).unwrap();
    for _ in 0..100 {
        sh.drain(&mut hub);
        let Some(f) = hub.poll_transmit(Role::Node(7), 99) else {
            break;
        };
        let _ = node.handle_message(Role::Hub, &f, 99);
        sn.drain(&mut node);
        while let Some(f) = node.poll_transmit(Role::Hub, 99) {
            let _ = hub.handle_message(Role::Node(7), &f, 99);
        }
    }
    assert!(node.policy().is_locked(7));
    let stored: usize = sh
        .snapshots
        .iter()
        .filter(|(d, _)| matches!(d, DocId::Roster { community: 7, .. }))
        .map(|(_, b)| b.len())
        .chain(
            sh.chunks
                .iter()
                .filter(|(d, _)| matches!(d, DocId::Roster { community: 7, .. }))
                .flat_map(|(_, c)| c.iter().map(Vec::len)),
        )
        .sum();
    assert!(
        stored < 64 * 1024 + 256 * 1024,
        "{stored} bytes stored at the hub"
    );
}

#[test]
fn changes_waiting_for_missing_dependencies_are_bounded() {
    let config = Config {
        pending_bytes_max: 64 * 1024,
        ..Config::default()
    };
    let (mut node, mut sn, mut hub, mut sh) = synced_pair(20, config);
    let session = node.session_id(Role::Hub).unwrap();
    // A chain of changes by another actor whose first is never sent: every other one waits
    // in the hub's queue for it.
    let mut other = automerge::AutoCommit::new();
    let mut chain = Vec::new();
    for i in 0..40u64 {
        let noise: String = (0..4_000)
            .map(|j| char::from(b'a' + ((i * 7 + j * 13) % 26) as u8))
            .collect();
        automerge::transaction::Transactable::put(
            &mut other,
            automerge::ROOT,
            format!("k{i}"),
            noise,
        )
        .unwrap();
        other.commit();
    }
    for c in other.get_changes(&[]).iter().skip(1) {
        chain.push(c.raw_bytes().to_vec());
    }
    let restarts = hub.stats().session_restarts;
    for (i, c) in chain.into_iter().enumerate() {
        let r = hub.handle_message(
            Role::Node(7),
            &frame(session, "roster/7/0", message_of_chunks(vec![c])),
            5 + i as u64,
        );
        if hub.stats().queues_dropped > 0 {
            break;
        }
        r.unwrap();
    }
    assert_eq!(hub.stats().queues_dropped, 1);
    assert!(hub.stats().session_restarts > restarts);
    // The pair syncs on after the new session.
    node.apply_roster(7, &batch_of(60..62), T0).unwrap();
    pump(&mut node, &mut sn, &mut hub, &mut sh, 100);
    assert_same_roster(&hub.roster(7), &node.roster(7));
}
