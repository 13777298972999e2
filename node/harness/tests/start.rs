//! A node serves gates before its replica is loaded (`Node::open_loading`): what it must
//! already know then (codes, the lockdown), and what it must not lose (changes committed
//! meanwhile reach the hub once the replica is loaded).

use std::time::Duration;

use menjin_community::Node;
use menjin_community::testing::{COMMUNITY, declare, district, gate_check, node_in};
use menjin_hub::Hub;
use menjin_proto::wire::{HubRequest, Response};
use menjin_store::files::NodeDir;
use menjin_store::provision::create_hub;

/// A functional bound for each step, never a timing.
const STEP_TIMEOUT_MS: u64 = 20_000;

/// Polls `done` until it holds; panics after [`STEP_TIMEOUT_MS`].
async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_millis(STEP_TIMEOUT_MS);
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within {STEP_TIMEOUT_MS} ms"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_serves_gates_while_its_replica_loads_and_mirrors_to_the_hub_after() {
    let tmp = tempfile::tempdir().unwrap();
    let district = district(tmp.path());
    let hub_dir = NodeDir(tmp.path().join("hub"));
    create_hub(&district, &hub_dir, "hub", "127.0.0.1:0".parse().unwrap()).unwrap();
    let hub = Hub::open(&hub_dir).unwrap();
    let server = hub.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let hub_addr = server.local_addr().unwrap();
    let (stop_hub, hub_stopped) = tokio::sync::oneshot::channel::<()>();
    let hub_task = tokio::spawn(server.run(async move {
        let _ = hub_stopped.await;
    }));
    let dir = node_in(&district, tmp.path());
    let cert = std::fs::read(dir.cert()).unwrap();
    assert!(matches!(
        hub.console(HubRequest::EnrolNode { cert }),
        Response::Done(_)
    ));
    let lockdown = HubRequest::SetLockdown {
        community: COMMUNITY,
        locked: true,
        reason: "a case in building 1".into(),
        by: "district".into(),
    };
    assert!(!matches!(hub.console(lockdown), Response::Error { .. }));

    // A first run: one resident, and the district's lockdown received over the link.
    let first = {
        let node = Node::open(&dir).unwrap();
        let r = declare(&node, 1);
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let uplink = tokio::spawn(menjin_community::uplink::run_uplink(
            node.clone(),
            hub_addr,
            stopped,
        ));
        until("the lockdown reaches the node", || node.lockdown().locked).await;
        stop.send(true).unwrap();
        uplink.await.unwrap();
        r
    };

    // The second run serves before its replica is loaded.
    let (node, loader) = Node::open_deferred(&dir).unwrap();
    assert!(node.replica().is_none(), "the replica is held back");
    assert!(
        node.lockdown().locked,
        "the lockdown is in force before the first check, from the stored policy"
    );
    let a = gate_check(&node, "g1", first.code.clone().unwrap()).await;
    assert!(a.allowed, "a resident comes in during a lockdown: {a:?}");
    // A declaration while the replica loads is acknowledged (it is in sled) and queued.
    let second = declare(&node, 2);
    let a = gate_check(&node, "g1", second.code.clone().unwrap()).await;
    assert!(a.allowed, "{a:?}");
    assert!(node.mirror_pending().unwrap());
    // The uplink waits for the replica; the hub does not know the second resident yet.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let uplink = tokio::spawn(menjin_community::uplink::run_uplink(
        node.clone(),
        hub_addr,
        stopped,
    ));
    let at_hub = |holder| {
        hub.replication()
            .read(|r| r.roster(COMMUNITY).persons.contains_key(&holder))
    };
    assert!(at_hub(first.holder) && !at_hub(second.holder));

    tokio::task::spawn_blocking(move || loader.run())
        .await
        .unwrap();
    let replica = node.replica().expect("loaded");
    let mirrored = replica.read(|r| r.roster(COMMUNITY));
    assert!(mirrored.persons.contains_key(&second.holder));
    assert!(mirrored.codes.contains_key(&second.cred.unwrap()));
    assert!(!node.mirror_pending().unwrap(), "the backlog is mirrored");
    until("the declaration reaches the hub", || at_hub(second.holder)).await;
    // Later changes go straight to the replica.
    let third = declare(&node, 3);
    until("a later declaration reaches the hub", || {
        at_hub(third.holder)
    })
    .await;
    assert!(!node.mirror_pending().unwrap());

    stop.send(true).unwrap();
    uplink.await.unwrap();
    stop_hub.send(()).unwrap();
    hub_task.await.unwrap();
}
