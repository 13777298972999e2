//! `Node::changes`: what the resident pages' live stream waits on.

use super::*;
use crate::testing::{new_node, resident};

/// A declaration, a household code issued, a lockdown started and lifted each move the
/// version.
#[tokio::test]
async fn roster_household_and_lockdown_changes_move_the_version() {
    let tmp = tempfile::tempdir().unwrap();
    let node = Node::open(&new_node(tmp.path())).unwrap();
    let mut rx = node.changes();
    let now = now_ms() / 1000;
    let mut moved = |what: &str| {
        assert!(rx.has_changed().unwrap(), "{what} did not move the version");
        rx.borrow_and_update();
    };
    let form = resident("王芳", "19830521", 2, "301");
    let resp = node.console(ConsoleRequest::Declare { form }, now);
    assert!(matches!(resp, Response::Declared(_)), "{resp:?}");
    moved("a declaration");
    let issue = ConsoleRequest::IssueHouseholdCode {
        building: "1".into(),
        door: "301".into(),
    };
    assert!(matches!(
        node.console(issue, now),
        Response::HouseholdCode { .. }
    ));
    moved("a household code");
    let lock = |locked| ConsoleRequest::LocalLockdown {
        locked,
        reason: "确诊病例".into(),
        by: "张三".into(),
    };
    assert!(matches!(node.console(lock(true), now), Response::Done(_)));
    moved("a lockdown");
    assert!(matches!(
        node.console(lock(false), now + 1),
        Response::Done(_)
    ));
    moved("a lift");
    assert!(!rx.has_changed().unwrap());
}
