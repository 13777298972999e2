//! Anti-passback at the node.

use super::*;
use crate::testing::{new_node, resident};

fn form() -> Declaration {
    resident("王芳", "19830521", 2, "301")
}

/// Anti-passback at the node: a resident let in twice without going out is flagged (and
/// still let in); going out clears it.
#[tokio::test]
async fn the_node_flags_a_resident_let_in_twice_without_going_out() {
    let tmp = tempfile::tempdir().unwrap();
    let node_dir = new_node(tmp.path());
    let mut cfg = node_dir.read_config().unwrap();
    cfg.anti_passback = true;
    node_dir.write_config(&cfg).unwrap();
    let node = Node::open(&node_dir).unwrap();
    let now = now_ms() / 1000;
    let Response::Declared(receipt) = node.console(ConsoleRequest::Declare { form: form() }, now)
    else {
        panic!("declaration refused")
    };
    let code = receipt.code.expect("cleared");
    let check = |direction| CheckRequest {
        code: code.clone(),
        direction,
        temperature_dc: 365,
        plate: None,
    };
    let mut flags = Vec::new();
    for direction in [Direction::In, Direction::In, Direction::Out, Direction::In] {
        let a = node.check("lane-1", check(direction)).await.unwrap();
        assert!(a.allowed, "{a:?}");
        flags.push(a.passback);
    }
    assert_eq!(flags, [false, true, false, false]);
    let log = node
        .gate_log()
        .query(&menjin_proto::wire::LogQuery {
            limit: 10,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(log.iter().map(|e| e.passback).collect::<Vec<_>>(), flags);
}
