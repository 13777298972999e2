//! The node's gate log reaches the hub whatever its events weigh: the uplink batches by bytes
//! as well as by count, so no batch outgrows the link's frame limit.

use std::time::Duration;

use menjin_community::Node;
use menjin_community::testing::{COMMUNITY, district, gate_event, node_in};
use menjin_hub::Hub;
use menjin_proto::link::{LINK_FRAME_LEN_MAX, LOG_BATCH_MAX};
use menjin_proto::wire::{HubRequest, Response};
use menjin_store::files::NodeDir;
use menjin_store::provision::create_hub;

/// A functional bound, never a timing.
const STEP_TIMEOUT_MS: u64 = 60_000;

/// Events a version before upload checks could have stored: 60 KiB plates. A count-sized
/// batch of them is far over [`LINK_FRAME_LEN_MAX`].
const HEAVY_EVENTS: u64 = 200;
const PLATE_LEN: usize = 60 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heavy_events_in_a_nodes_log_all_reach_the_hub() {
    assert!(HEAVY_EVENTS as usize * PLATE_LEN > LINK_FRAME_LEN_MAX);
    assert!(
        HEAVY_EVENTS as usize <= LOG_BATCH_MAX,
        "one count-sized batch"
    );
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
    let node = Node::open(&dir).unwrap();
    for i in 0..HEAVY_EVENTS {
        let mut e = gate_event("g1", 1_000 + i);
        e.plate = Some("A".repeat(PLATE_LEN));
        node.gate_log().append(e).await.unwrap();
    }
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let uplink = tokio::spawn(menjin_community::uplink::run_uplink(
        node.clone(),
        hub_addr,
        stopped,
    ));
    let deadline = tokio::time::Instant::now() + Duration::from_millis(STEP_TIMEOUT_MS);
    loop {
        let at_hub = hub
            .status()
            .communities
            .iter()
            .find(|c| c.community == COMMUNITY)
            .map_or(0, |c| c.events);
        if at_hub == HEAVY_EVENTS {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{at_hub} of {HEAVY_EVENTS} events at the hub within {STEP_TIMEOUT_MS} ms"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.send(true).unwrap();
    uplink.await.unwrap();
    stop_hub.send(()).unwrap();
    hub_task.await.unwrap();
}
