//! Issue 15: each community's lockdown and health flags live in its own policy document,
//! synced to its own node alone. A lockdown of A sends nothing to B; a health list reaches
//! each node with only its own flags, a person declared in two homes is flagged in both, and
//! a flag for someone not declared anywhere waits at the hub until they declare.

use std::time::Duration;

use menjin_harness::{LocalDistrict, LocalNode, person};
use menjin_proto::idnum::{DocumentType, IdHashKey};
use menjin_proto::wire::{ConsoleRequest, HealthEntry, HubRequest, Response};
use menjin_store::files::read_secret;

const A: u32 = 440_306_001;
const B: u32 = 440_306_002;
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

/// Declares person `serial` at `node`; returns their document number.
async fn declare(node: &LocalNode, serial: u32) -> String {
    let form = person("住户", true, "19800101", serial, "1", "101");
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

fn active(node: &LocalNode) -> u64 {
    node.node.status().codes_active
}

/// Frames node `n` has received from the hub so far.
fn frames_in(n: &LocalNode) -> u64 {
    n.node
        .replica()
        .unwrap()
        .read(|r| r.stats().frames_received)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_community_gets_its_own_policy_and_nothing_of_another() {
    let d = LocalDistrict::new().unwrap();
    let hub = d.start_hub("hub").unwrap();
    let a = d.start_linked_node(A, "a", &hub).await.unwrap();
    let b = d.start_linked_node(B, "b", &hub).await.unwrap();
    let both = declare(&a, 1).await;
    assert_eq!(
        declare(&b, 1).await,
        both,
        "one person, a home in each community"
    );
    let only_a = declare(&a, 2).await;
    let later_b = person("住户", true, "19800101", 3, "1", "101").document_number;
    let key = IdHashKey(read_secret(&hub.dir.idhash_key()).unwrap());
    let entry = |n: &str| HealthEntry {
        id_hash: key.hash(DocumentType::ResidentId, n),
        status: "hospital".into(),
    };
    until("both rosters at the hub", || {
        hub.hub
            .replication()
            .read(|r| r.roster(A).persons.len() == 2 && r.roster(B).persons.len() == 1)
    })
    .await;

    // A lockdown of A: B receives nothing (not one frame) while A applies it.
    until("B's link settled", || b.node.status().hub_connected).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let b_before = frames_in(&b);
    let console = hub.console().await.unwrap();
    let r = console
        .request(&HubRequest::SetLockdown {
            community: A,
            locked: true,
            reason: "a case".into(),
            by: "op".into(),
        })
        .await
        .unwrap();
    assert!(matches!(r, Response::Done(_)), "{r:?}");
    until("A locked down", || a.node.status().locked).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(frames_in(&b), b_before, "A's lockdown sent B nothing");
    assert!(!b.node.status().locked);

    // One health list: the person of both homes is flagged in both, the one of A in A only,
    // the one declared nowhere waits.
    let r = console
        .request(&HubRequest::SetHealth {
            flags: vec![entry(&both), entry(&only_a), entry(&later_b)],
        })
        .await
        .unwrap();
    let Response::Done(text) = r else {
        panic!("{r:?}")
    };
    assert!(text.contains("1 match no declared resident"), "{text}");
    until("A revokes both of its codes", || active(&a) == 0).await;
    until("B revokes its code", || active(&b) == 0).await;
    let b_docs: Vec<String> = b
        .node
        .replica()
        .unwrap()
        .read(|r| r.docs().map(|d| d.to_string()).collect());
    assert!(
        b_docs.contains(&format!("policy/{B}")) && !b_docs.contains(&format!("policy/{A}")),
        "B holds its own policy and none of A: {b_docs:?}"
    );
    let b_flags = b.node.replica().unwrap().read(|r| r.policy().health);
    assert_eq!(b_flags.len(), 1, "B has its own flag only");

    // The third person declares at B: the waiting flag is placed there and revokes the code.
    declare(&b, 3).await;
    until("B's new code in force", || active(&b) == 1).await;
    until("the hub has B's new resident", || {
        hub.hub
            .replication()
            .read(|r| r.roster(B).persons.len() == 2)
    })
    .await;
    assert_eq!(hub.hub.place_pending_health().unwrap(), 1);
    until("B revokes the new code", || active(&b) == 0).await;
    assert_eq!(
        hub.hub.place_pending_health().unwrap(),
        0,
        "nothing waits now"
    );
    console.close().await;
    a.stop().await;
    b.stop().await;
    hub.stop().await;
}
