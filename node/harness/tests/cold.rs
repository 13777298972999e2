//! Issue 15: a hub holds its rosters cold. After a restart no roster shard is decoded: a
//! status counts from the roster index, a health flag finds its community through the ID
//! route index, and a summary whose heads match costs nothing; the shard a node's new change
//! lands in is decoded then, and only it.

use std::time::Duration;

use menjin_harness::{LocalDistrict, LocalHub, LocalNode, person};
use menjin_proto::idnum::{DocumentType, IdHashKey};
use menjin_proto::wire::{ConsoleRequest, HealthEntry, HubRequest, Response};
use menjin_store::files::read_secret;

const A: u32 = 440_307_001;
/// A functional bound for each step, never a timing.
const STEP_TIMEOUT: Duration = Duration::from_secs(30);

async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + STEP_TIMEOUT;
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within {STEP_TIMEOUT:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn declare(node: &LocalNode, serial: u32) -> String {
    let form = person(
        "住户",
        serial.is_multiple_of(2),
        "19800101",
        serial,
        "1",
        "101",
    );
    let number = form.document_number.clone();
    let console = node.console().await.unwrap();
    let r = console
        .request(&ConsoleRequest::Declare { form })
        .await
        .unwrap();
    assert!(
        matches!(r, Response::Declared(ref d) if d.code.is_some()),
        "{r:?}"
    );
    console.close().await;
    number
}

fn same_heads(hub: &LocalHub, node: &LocalNode) -> bool {
    let at_node = node.node.replica().unwrap().heads();
    let at_hub = hub.hub.replication().heads();
    at_node.iter().all(|(d, h)| {
        !d.to_string().starts_with("roster/")
            || at_hub.iter().any(|(hd, hh)| {
                hd == d
                    && hh.iter().collect::<std::collections::BTreeSet<_>>() == h.iter().collect()
            })
    })
}

fn cold(hub: &LocalHub) -> Vec<String> {
    hub.hub.replication().read(|r| {
        r.cold_docs(Some(A))
            .iter()
            .map(ToString::to_string)
            .collect()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_hub_answers_from_cold_rosters_and_decodes_only_what_changes() {
    let d = LocalDistrict::new().unwrap();
    let hub = d.start_hub("hub").unwrap();
    let a = d.start_linked_node(A, "a", &hub).await.unwrap();
    let mut numbers = Vec::new();
    for serial in 1..=6 {
        numbers.push(declare(&a, serial).await);
    }
    until("the roster at the hub", || same_heads(&hub, &a)).await;
    let shards = hub.hub.replication().read(|r| {
        r.docs()
            .filter(|d| d.to_string().starts_with("roster/"))
            .count()
    });
    assert!(shards >= 2, "six residents over several shards: {shards}");

    let hub = hub.restart().await.unwrap();
    assert_eq!(
        cold(&hub).len(),
        shards,
        "every roster shard is cold after the restart"
    );
    let status = hub.hub.status();
    let link = status
        .communities
        .iter()
        .find(|c| c.community == A)
        .unwrap();
    assert_eq!((link.residents, link.codes_active), (6, 6), "{link:?}");
    assert_eq!(cold(&hub).len(), shards, "the status decoded nothing");

    // The node links again; their summaries match: nothing is decoded.
    until("the node linked again", || {
        hub.hub
            .status()
            .communities
            .iter()
            .any(|c| c.community == A && c.connected)
    })
    .await;
    // A health flag of a declared resident goes to their community, through the index.
    let key = IdHashKey(read_secret(&hub.dir.idhash_key()).unwrap());
    let console = hub.console().await.unwrap();
    let r = console
        .request(&HubRequest::SetHealth {
            flags: vec![HealthEntry {
                id_hash: key.hash(DocumentType::ResidentId, &numbers[0]),
                status: "hospital".into(),
            }],
        })
        .await
        .unwrap();
    assert!(
        matches!(&r, Response::Done(t) if t.starts_with("1 health statuses applied") && !t.contains("wait")),
        "{r:?}"
    );
    assert_eq!(
        cold(&hub).len(),
        shards,
        "routing the flag decoded no roster"
    );
    until("the flag revokes the code at the node", || {
        a.node.status().codes_active == 5
    })
    .await;

    // The node's revocation and one new declaration reach the hub: only the shards they
    // touch are decoded.
    declare(&a, 7).await;
    until("the changes at the hub", || same_heads(&hub, &a)).await;
    let still_cold = cold(&hub).len();
    assert!(
        still_cold < shards && still_cold + 2 >= shards,
        "one or two shards decoded of {shards}, {still_cold} still cold"
    );
    let link = hub
        .hub
        .status()
        .communities
        .into_iter()
        .find(|c| c.community == A)
        .unwrap();
    assert_eq!((link.residents, link.codes_active), (7, 6), "{link:?}");
    console.close().await;
    a.stop().await;
    hub.stop().await;
}
