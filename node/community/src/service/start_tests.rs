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
