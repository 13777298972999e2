//! Figures, not assertions about speed: run in release with
//! `cargo test --release -p menjin-sync --test measure -- --ignored --nocapture`.

mod common;

use std::time::Instant;

use common::*;
use menjin_sync::{
    CodeEntry, Config, Replica, Role, RosterBatch, RosterEntry, decode_doc, roster_docs_for,
};

const T0: u64 = 1_700_000_000;

fn community(n: u64) -> (Vec<RosterEntry>, Vec<CodeEntry>) {
    let mut persons = Vec::with_capacity(n as usize);
    let mut codes = Vec::with_capacity(n as usize);
    for i in 0..n {
        let c = code(i, holder(i));
        persons.push(person(i, Some(c.id)));
        codes.push(c);
    }
    (persons, codes)
}

fn node_with(n: u64) -> (Replica, Store, usize) {
    let (persons, codes) = community(n);
    let t = Instant::now();
    let docs = roster_docs_for(7, 16, &persons, &codes, T0).unwrap();
    let bytes: usize = docs.iter().map(|(_, b, _)| b.len()).sum();
    println!(
        "{n} residents: built 16 shards in {:.0} ms, {bytes} bytes saved ({:.1} B per resident with a code)",
        t.elapsed().as_secs_f64() * 1e3,
        bytes as f64 / n as f64
    );
    let mut node = Replica::new(Role::Node(7), 1, Config::default());
    let mut store = Store::default();
    for (doc, b, _) in docs {
        node.load_doc(doc, Some(&b), &[]).unwrap();
        store.snapshots.insert(doc, b);
    }
    (node, store, bytes)
}

#[test]
#[ignore = "measurement: run in release"]
fn initial_sync_of_30000_residents() {
    let (mut node, mut sn, _) = node_with(30_000);
    let mut hub = Replica::new(Role::Hub, 1, Config::default());
    let mut sh = Store::default();
    node.connect(Role::Hub, 0).unwrap();
    hub.connect(Role::Node(7), 0).unwrap();
    let t = Instant::now();
    let traffic = pump(&mut node, &mut sn, &mut hub, &mut sh, 0);
    let took = t.elapsed();
    assert_same_roster(&hub.roster(7), &node.roster(7));
    println!(
        "initial sync of 30,000 residents to an empty hub: {:.0} ms, {} frames, {} bytes (including persisting both sides)",
        took.as_secs_f64() * 1e3,
        traffic.frames,
        traffic.bytes
    );

    // One revocation afterwards.
    let c = code(1234, holder(1234));
    node.apply_roster(
        7,
        &RosterBatch {
            persons: vec![],
            codes: vec![revoked(c, T0 + 60)],
        },
        T0 + 60,
    )
    .unwrap();
    let t = Instant::now();
    let traffic = pump(&mut node, &mut sn, &mut hub, &mut sh, 1);
    println!(
        "one revocation at 30,000 residents: {:.2} ms, {} frames, {} bytes",
        t.elapsed().as_secs_f64() * 1e3,
        traffic.frames,
        traffic.bytes
    );

    // An idle anti-entropy round: one side's probe and the other's reply.
    node.handle_timeout(60_000);
    let traffic = pump(&mut node, &mut sn, &mut hub, &mut sh, 60_000);
    println!(
        "idle anti-entropy round: {} frames, {} bytes",
        traffic.frames, traffic.bytes
    );
}

#[test]
#[ignore = "measurement: run in release"]
fn cold_start_of_a_100000_resident_node() {
    let (_, store, bytes) = node_with(100_000);
    let t = Instant::now();
    let mut node = Replica::new(Role::Node(7), 2, Config::default());
    for (doc, snapshot) in &store.snapshots {
        node.insert_doc(*doc, decode_doc(Some(snapshot), &[]).unwrap())
            .unwrap();
    }
    let load = t.elapsed();
    // The same, one thread per shard, as a driver may do.
    let t = Instant::now();
    let loaded: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = store
            .snapshots
            .iter()
            .map(|(doc, snap)| s.spawn(move || (*doc, decode_doc(Some(snap), &[]).unwrap())))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut node2 = Replica::new(Role::Node(7), 3, Config::default());
    for (doc, l) in loaded {
        node2.insert_doc(doc, l).unwrap();
    }
    let parallel = t.elapsed();
    let t = Instant::now();
    let view = node.roster(7);
    let read = t.elapsed();
    assert_eq!(view.persons.len(), 100_000);
    println!(
        "100,000 residents in 16 shards ({bytes} bytes): load {:.0} ms on one thread, {:.0} ms on one thread per shard; materialising the whole roster {:.0} ms",
        load.as_secs_f64() * 1e3,
        parallel.as_secs_f64() * 1e3,
        read.as_secs_f64() * 1e3
    );
}
