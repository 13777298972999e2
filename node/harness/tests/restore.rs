//! A node restored from an older backup (deploy/README.md, "Back up and restore a node"): its
//! new events must not be lost under numbers the hub already holds, a code revoked after the
//! backup must stay revoked at its gates, and its roster must not stay `mirror-pending`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use menjin_community::Node;
use menjin_community::testing::{COMMUNITY, declare, district, gate_check, node_in, now, resident};
use menjin_hub::Hub;
use menjin_proto::idnum::IdHashKey;
use menjin_proto::wire::{ConsoleRequest, HealthEntry, HubRequest, LogQuery, Response};
use menjin_store::files::NodeDir;
use menjin_store::provision::create_hub;

/// A functional bound for each step, never a timing.
const STEP_TIMEOUT_MS: u64 = 30_000;

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

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// Every event of the community at the hub, by gate id (each check here has its own gate).
fn hub_events_by_gate(hub: &Hub) -> BTreeMap<String, usize> {
    let mut by_gate = BTreeMap::new();
    let mut after = 0;
    loop {
        let page = hub
            .log()
            .query(
                Some(COMMUNITY),
                &LogQuery {
                    after_seq: Some(after),
                    limit: 500,
                    ..LogQuery::default()
                },
            )
            .unwrap();
        let Some(last) = page.last() else {
            return by_gate;
        };
        after = last.event.seq;
        for e in page {
            *by_gate.entry(e.event.gate).or_insert(0) += 1;
        }
    }
}

fn hub_events(hub: &Hub) -> u64 {
    hub.status()
        .communities
        .iter()
        .find(|c| c.community == COMMUNITY)
        .map_or(0, |c| c.events)
}

/// The codes issued after the backup are taken from the district's copy: their holders are
/// let in as gates deciding alone let them in, and resident 3, whose declaration the node
/// lost, must declare again, which revokes the adopted code.
async fn codes_issued_after_the_backup_are_adopted(
    node: &Node,
    made: &mut Vec<String>,
    code_a2: &str,
    code_c: &str,
    cred_c: menjin_proto::credential::CredId,
) {
    until("codes issued after the backup adopted", || {
        node.status().codes_active == 3
    })
    .await;
    check(node, made, code_a2, true).await;
    check(node, made, code_c, true).await;
    assert_eq!(node.status().residents_to_redeclare, 1);
    let mut sick = resident("R3", "19800101", 3, "3");
    sick.symptoms = true;
    let Response::Declared(again_c) = node.console(ConsoleRequest::Declare { form: sick }, now())
    else {
        panic!("declaring resident 3 again refused");
    };
    assert_eq!(
        again_c.revoked,
        Some(cred_c),
        "the new declaration revokes the adopted code"
    );
    check(node, made, code_c, false).await;
    assert_eq!(node.status().residents_to_redeclare, 0);
    assert!(
        node.feed_snapshot().revoked.contains(&cred_c),
        "gates are told"
    );
}

/// Declares resident `serial` and waits until the hub's roster holds the code.
async fn declare_to_hub(
    node: &Node,
    hub: &Hub,
    serial: u32,
) -> (String, menjin_proto::credential::CredId) {
    let r = declare(node, serial);
    let (code, cred) = (r.code.unwrap(), r.cred.unwrap());
    until("the code in the hub's roster", || {
        hub.replication()
            .read(|r| r.roster(COMMUNITY))
            .codes
            .contains_key(&cred)
    })
    .await;
    (code, cred)
}

/// A hub serving on loopback: stop it by sending on the sender, then await the task.
fn start_hub(
    district: &menjin_store::files::DistrictDir,
    base: &Path,
) -> (
    Arc<Hub>,
    std::net::SocketAddr,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let hub_dir = NodeDir(base.join("hub"));
    create_hub(district, &hub_dir, "hub", "127.0.0.1:0".parse().unwrap()).unwrap();
    let hub = Hub::open(&hub_dir).unwrap();
    let server = hub.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let hub_addr = server.local_addr().unwrap();
    let (stop_hub, hub_stopped) = tokio::sync::oneshot::channel::<()>();
    let hub_task = tokio::spawn(server.run(async move {
        let _ = hub_stopped.await;
    }));
    (hub, hub_addr, stop_hub, hub_task)
}

/// The district's health list finds the adopted code of a person whose record on the node
/// (from the backup) still names the code before it.
async fn health_flag_revokes_an_adopted_code(
    node: &Node,
    hub: &Hub,
    base: &Path,
    made: &mut Vec<String>,
    code_a2: &str,
) {
    let key = menjin_store::files::read_secret(&NodeDir(base.join("hub")).idhash_key()).unwrap();
    let r1 = resident("R1", "19800101", 1, "99");
    let flag = HealthEntry {
        id_hash: IdHashKey(key).hash(r1.document_type, &r1.document_number),
        status: "hospital".into(),
    };
    assert!(matches!(
        hub.console(HubRequest::SetHealth { flags: vec![flag] }),
        Response::Done(_)
    ));
    until("the health flag revokes the adopted code", || {
        node.status().codes_active == 1
    })
    .await;
    check(node, made, code_a2, false).await;
}

/// A node run linked to the hub until `stop` is sent.
struct Run {
    node: Arc<Node>,
    stop: tokio::sync::watch::Sender<bool>,
    uplink: tokio::task::JoinHandle<()>,
}

fn link(node: &Arc<Node>, hub: std::net::SocketAddr) -> Run {
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let uplink = tokio::spawn(menjin_community::uplink::run_uplink(
        node.clone(),
        hub,
        stopped,
    ));
    Run {
        node: node.clone(),
        stop,
        uplink,
    }
}

impl Run {
    /// Stops the uplink and waits until nothing holds the node's database.
    async fn stop(self) {
        self.stop.send(true).unwrap();
        self.uplink.await.unwrap();
        let weak = Arc::downgrade(&self.node);
        drop(self.node);
        until("the node lets go of its database", || {
            weak.strong_count() == 0
        })
        .await;
    }
}

/// Checks `code` at a gate of its own (`t<n>`, the next number), which must answer `allowed`.
async fn check(node: &Node, made: &mut Vec<String>, code: &str, allowed: bool) {
    let gate = format!("t{}", made.len());
    let a = gate_check(node, &gate, code.to_string()).await;
    assert_eq!(a.allowed, allowed, "{gate}: {a:?}");
    made.push(gate);
}

/// Starts a hub on loopback with the node of `dir` enrolled: the hub, its address, and
/// what stops it.
async fn hub_with(
    district: &menjin_store::files::DistrictDir,
    base: &Path,
    dir: &NodeDir,
) -> (
    Arc<Hub>,
    std::net::SocketAddr,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let (hub, addr, stop, task) = start_hub(district, base);
    let cert = std::fs::read(dir.cert()).unwrap();
    assert!(matches!(
        hub.console(HubRequest::EnrolNode { cert }),
        Response::Done(_)
    ));
    (hub, addr, stop, task)
}

/// The node's replica incarnation (the Automerge actor it writes under is made of it).
fn incarnation(node: &Node) -> u32 {
    node.wait_replica().unwrap().read(|r| r.incarnation())
}

/// Persons in the hub's copy of the community's roster.
fn hub_persons(hub: &Hub) -> usize {
    hub.replication()
        .read(|r| r.roster(COMMUNITY))
        .persons
        .len()
}

/// Issue 12, part B: the writer id must never repeat. The incarnation was a counter in
/// the node's store, so a node restored from an older backup counted again through the
/// numbers of the run the backup missed and wrote under that run's Automerge actor, forking
/// its sequence of changes (which Automerge requires never to fork).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restored_node_writes_under_an_actor_no_earlier_run_used() {
    let tmp = tempfile::tempdir().unwrap();
    let district = district(tmp.path());
    let dir = node_in(&district, tmp.path());
    let (hub, hub_addr, stop_hub, hub_task) = hub_with(&district, tmp.path(), &dir).await;
    let mut used = BTreeSet::new();

    // Run 1 declares a resident, which reaches the hub; then the backup.
    let node = Node::open(&dir).unwrap();
    used.insert(incarnation(&node));
    declare(&node, 1);
    let run = link(&node, hub_addr);
    until("resident 1 at the hub", || hub_persons(&hub) == 1).await;
    drop(node);
    run.stop().await;
    let backup = tmp.path().join("backup");
    copy_dir(&dir.0, &backup);

    // Runs 2 and 3, which the backup misses, write under their own actors.
    for serial in [2, 3] {
        let node = Node::open(&dir).unwrap();
        assert!(
            used.insert(incarnation(&node)),
            "a new incarnation per start"
        );
        declare(&node, serial);
        let run = link(&node, hub_addr);
        until("the resident at the hub", || {
            hub_persons(&hub) == serial as usize
        })
        .await;
        drop(node);
        run.stop().await;
    }

    // The older backup goes back: the restored process must not write under any of them.
    std::fs::remove_dir_all(&dir.0).unwrap();
    copy_dir(&backup, &dir.0);
    let node = Node::open(&dir).unwrap();
    let restored = incarnation(&node);
    assert!(
        !used.contains(&restored),
        "the restored node writes under incarnation {restored}, already used by {used:?}"
    );
    declare(&node, 4);
    let run = link(&node, hub_addr);
    until("the restored node's resident at the hub", || {
        hub_persons(&hub) == 4
    })
    .await;
    let repl = node.wait_replica().unwrap();
    until("node and hub hold the same documents", || {
        let theirs: BTreeMap<_, _> = hub.replication().heads().into_iter().collect();
        repl.heads()
            .into_iter()
            .all(|(doc, heads)| theirs.get(&doc) == Some(&heads))
    })
    .await;
    assert_eq!(
        repl.read(|r| r.roster(COMMUNITY)).persons.len(),
        4,
        "the node has the lost run's residents back from the hub"
    );
    drop(repl);
    drop(node);
    run.stop().await;
    let _ = stop_hub.send(());
    hub_task.await.unwrap();
}

/// Three events before the backup, three after it (and a revocation); the restored node
/// logs `offline` events before it reaches the hub: fewer than the hub holds beyond the
/// backup (its log is behind the hub's) or more (its numbers run past the hub's).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restored_node_behind_the_hub_loses_no_event_and_revives_no_code() {
    restored_node_loses_no_event_and_revives_no_code(1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restored_node_past_the_hub_loses_no_event_and_revives_no_code() {
    restored_node_loses_no_event_and_revives_no_code(4).await;
}

async fn restored_node_loses_no_event_and_revives_no_code(offline: usize) {
    let tmp = tempfile::tempdir().unwrap();
    let district = district(tmp.path());
    let (hub, hub_addr, stop_hub, hub_task) = start_hub(&district, tmp.path());
    let dir = node_in(&district, tmp.path());
    let cert = std::fs::read(dir.cert()).unwrap();
    assert!(matches!(
        hub.console(HubRequest::EnrolNode { cert }),
        Response::Done(_)
    ));
    let mut made = Vec::new();

    // Before the backup: two residents, three checks, all at the hub.
    let node = Node::open(&dir).unwrap();
    let a = declare(&node, 1);
    let b = declare(&node, 2);
    let (code_a, code_b) = (a.code.unwrap(), b.code.unwrap());
    for _ in 0..3 {
        check(&node, &mut made, &code_b, true).await;
    }
    let run = link(&node, hub_addr);
    until("the first events reach the hub", || hub_events(&hub) == 3).await;
    drop(node);
    run.stop().await;
    let backup = tmp.path().join("backup");
    copy_dir(&dir.0, &backup);

    // After the backup: three more checks, and resident 1 moves home (code A revoked).
    let node = Node::open(&dir).unwrap();
    let run = link(&node, hub_addr);
    for _ in 0..3 {
        check(&node, &mut made, &code_b, true).await;
    }
    let moved = resident("R1", "19800101", 1, "99");
    let Response::Declared(again) = node.console(ConsoleRequest::Declare { form: moved }, now())
    else {
        panic!("declaring again refused");
    };
    assert_eq!(again.revoked, a.cred, "moving home revokes code A");
    let cred_a = a.cred.unwrap();
    // Issued after the backup: resident 1's new code, and resident 3's first.
    let code_a2 = again.code.unwrap();
    let (code_c, cred_c) = declare_to_hub(&node, &hub, 3).await;
    until("code A revoked in the hub's roster", || {
        hub.replication()
            .read(|r| r.roster(COMMUNITY))
            .codes
            .get(&cred_a)
            .is_some_and(|c| c.status.is_final())
    })
    .await;
    until("the later events reach the hub", || hub_events(&hub) == 6).await;
    drop(node);
    run.stop().await;

    // The disk is lost; the older backup goes back, and the node logs before it links.
    std::fs::remove_dir_all(&dir.0).unwrap();
    copy_dir(&backup, &dir.0);
    let node = Node::open(&dir).unwrap();
    assert_eq!(node.events_logged(), 3, "the backup's log");
    for _ in 0..offline {
        check(&node, &mut made, &code_b, true).await;
    }
    let run = link(&node, hub_addr);
    let expected = |made: &[String]| -> BTreeMap<String, usize> {
        made.iter().map(|g| (g.clone(), 1)).collect()
    };
    let total = made.len() as u64;
    until("every event at the hub", || hub_events(&hub) >= total).await;
    assert_eq!(
        hub_events_by_gate(&hub),
        expected(&made),
        "every event reaches the hub exactly once"
    );
    until("code A revoked at the gates' view", || {
        node.feed_snapshot().revoked.contains(&cred_a)
    })
    .await;
    check(&node, &mut made, &code_a, false).await;
    check(&node, &mut made, &code_b, true).await;
    codes_issued_after_the_backup_are_adopted(&node, &mut made, &code_a2, &code_c, cred_c).await;
    health_flag_revokes_an_adopted_code(&node, &hub, tmp.path(), &mut made, &code_a2).await;
    let total = made.len() as u64;
    until("the last events at the hub", || hub_events(&hub) >= total).await;
    assert_eq!(hub_events_by_gate(&hub), expected(&made));
    assert!(!node.mirror_pending().unwrap());
    assert!(
        !node.status().mirror_pending,
        "node status shows nothing pending"
    );
    drop(node);
    run.stop().await;

    // And it stays so: a restart without the hub refuses code A and has nothing pending.
    let node = Node::open(&dir).unwrap();
    node.wait_replica().unwrap();
    assert!(
        !node.mirror_pending().unwrap(),
        "no mirror-pending after a restart"
    );
    check(&node, &mut made, &code_a, false).await;
    drop(node);

    let _ = stop_hub.send(());
    hub_task.await.unwrap();
}
