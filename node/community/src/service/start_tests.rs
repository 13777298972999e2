//! A node whose replica loads late: changes past the queue are reconciled from sled. (The
//! whole start with a hub is `node/harness/tests/start.rs`.)

use super::*;
use crate::testing::{COMMUNITY, declare, district, node_in};

#[test]
fn changes_past_the_queue_are_reconciled_from_sled() {
    let tmp = tempfile::tempdir().unwrap();
    let district = district(tmp.path());
    let dir = node_in(&district, tmp.path());
    let (node, loader) = Node::open_deferred(&dir).unwrap();
    // Overflow the queue with cheap changes: attaching nothing new still commits.
    let first = declare(&node, 1);
    for _ in 0..crate::mirror::QUEUED_CHANGES_MAX {
        let _guard = node.write.lock().unwrap();
        node.commit(Change::default()).unwrap();
    }
    let last = declare(&node, 2);
    loader.run();
    let view = node.replica().unwrap().read(|r| r.roster(COMMUNITY));
    assert!(view.persons.contains_key(&first.holder));
    assert!(view.persons.contains_key(&last.holder));
    assert!(!node.roster.mirror_pending().unwrap());
}

/// A node restored from an older backup holds a code in force that its replica (from the
/// hub) holds revoked, and a change that never reached the replica: at the next start the
/// revocation wins for that code, the rest of the batch applies, the marker clears.
#[test]
fn reconcile_keeps_a_final_status_and_applies_the_rest() {
    let tmp = tempfile::tempdir().unwrap();
    let district = district(tmp.path());
    let dir = node_in(&district, tmp.path());
    let (revoked, added) = {
        let node = Node::open(&dir).unwrap();
        node.wait_replica().unwrap();
        let first = declare(&node, 1);
        let cred = node.roster.cred(&first.cred.unwrap()).unwrap().unwrap();
        let moved = crate::testing::resident("R1", "19800101", 1, "99");
        let again = match node.console(ConsoleRequest::Declare { form: moved }, now_ms() / 1000) {
            Response::Declared(r) => r,
            other => panic!("{other:?}"),
        };
        assert_eq!(again.revoked, Some(cred.id));
        // Sled goes back to the code in force (as the older backup had it), and holds a
        // person the replica never got; the marker is set as after a crash.
        let person = node.roster.person(&first.holder).unwrap().unwrap();
        let mut stranger = person.clone();
        stranger.holder = HolderId([7; 8]);
        stranger.id_hash = IdHash([7; 16]);
        stranger.cred = None;
        node.roster
            .commit(Change {
                persons: vec![stranger.clone()],
                creds: vec![cred.clone()],
                ..Change::default()
            })
            .unwrap();
        assert!(node.roster.mirror_pending().unwrap());
        (cred.id, stranger.holder)
    };
    let node = Node::open(&dir).unwrap();
    let replica = node.wait_replica().unwrap();
    assert!(!node.roster.mirror_pending().unwrap(), "the marker clears");
    assert!(
        matches!(
            node.roster.lookup(&revoked).unwrap().status,
            CredStatus::Revoked { .. }
        ),
        "the revocation wins in sled too"
    );
    let view = replica.read(|r| r.roster(COMMUNITY));
    assert!(view.codes[&revoked].status.is_final());
    assert!(
        view.persons.contains_key(&added),
        "the rest of the batch applied"
    );
}
