//! The node's gate log reaches the hub whatever its events weigh: the uplink batches by bytes
//! as well as by count, so no batch outgrows the link's frame limit.

use std::time::Duration;

use menjin_community::Node;
use menjin_community::testing::{COMMUNITY, gate_event};
use menjin_harness::LocalDistrict;
use menjin_proto::link::{LINK_FRAME_LEN_MAX, LOG_BATCH_MAX};
use menjin_proto::wire::{HubRequest, Response};

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
    let d = LocalDistrict::new().unwrap();
    let hub = d.start_hub("hub").unwrap();
    let dir = d.create_node(COMMUNITY, "seven").unwrap();
    let cert = std::fs::read(dir.cert()).unwrap();
    assert!(matches!(
        hub.hub.console(HubRequest::EnrolNode { cert }),
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
        hub.addr,
        stopped,
    ));
    let deadline = tokio::time::Instant::now() + Duration::from_millis(STEP_TIMEOUT_MS);
    loop {
        let at_hub = hub
            .hub
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
    hub.stop().await;
}
