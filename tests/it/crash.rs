//! SIGKILL: nothing a node acknowledged is lost. A check's answer carries the sequence number
//! the node flushed it under; a declaration's receipt comes after the roster is flushed. Kill
//! the node without warning, start it again on the same directory, and everything acknowledged
//! must be there, unchanged, with new events numbered after it.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use menjin_net::client::NodeClient;
use menjin_proto::wire::{CheckRequest, Direction, GateRequest, Response};
use serde_json::Value;

use crate::support::*;

/// What the node acknowledged for one check: its time and the temperature sent with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Acked {
    time_ms: u64,
    temperature_dc: i16,
}

fn check(code: &str, temperature_dc: i16) -> GateRequest {
    GateRequest::Check(CheckRequest {
        code: code.to_string(),
        direction: Direction::In,
        temperature_dc,
        plate: None,
    })
}

/// Every acknowledged check is in the log under its sequence number, as acknowledged (a lost
/// event whose number was reused after the restart would show another time).
#[track_caller]
fn assert_log_holds(log: &[Value], acked: &BTreeMap<u64, Acked>) {
    let by_seq: BTreeMap<u64, &Value> = log
        .iter()
        .map(|e| (e["seq"].as_u64().expect("seq"), e))
        .collect();
    for (seq, a) in acked {
        let e = by_seq
            .get(seq)
            .unwrap_or_else(|| panic!("acknowledged check #{seq} is missing from the log"));
        assert_eq!(e["time_ms"].as_u64(), Some(a.time_ms), "#{seq}: {e}");
        assert_eq!(
            e["temperature_dc"].as_i64(),
            Some(i64::from(a.temperature_dc)),
            "#{seq}: {e}"
        );
        assert_eq!(e["reason"], "ok", "#{seq}: {e}");
        assert_eq!(e["gate"], "north-1", "#{seq}: {e}");
    }
}

#[test]
fn acknowledged_checks_survive_kill_9_and_numbering_continues() {
    const CHECKS: usize = 50;
    const KILL_BEFORE: [usize; 2] = [17, 34];
    let mut c = Community::start();
    let gate = c.enrol_gate("north-1");
    let (_, code) = c.declare_cleared(&Person::new("李伟", true, "19800312", 1, "12", "1203"));
    let rt = runtime();
    let mut acked: BTreeMap<u64, Acked> = BTreeMap::new();
    let mut client = rt.block_on(gate_client(&gate, c.node.addr));
    for i in 0..CHECKS {
        if KILL_BEFORE.contains(&i) {
            c.node.restart_after_kill9();
            client = rt.block_on(gate_client(&gate, c.node.addr));
        }
        let t = 360 + (i % 10) as i16;
        let resp = rt
            .block_on(within("check", client.request(&check(&code, t))))
            .expect("the node answers");
        let Response::Check(a) = resp else {
            panic!("check {i}: {resp:?}")
        };
        assert!(a.allowed, "check {i}: {a:?}");
        if let Some((&last, _)) = acked.last_key_value() {
            assert!(a.seq > last, "check {i}: seq {} after {last}", a.seq);
        }
        acked.insert(
            a.seq,
            Acked {
                time_ms: a.node_time_ms,
                temperature_dc: t,
            },
        );
    }
    drop(client);
    // Killed right after the last acknowledgement.
    c.node.restart_after_kill9();

    let log = c.log();
    assert_log_holds(&log, &acked);
    // Checks one at a time leave nothing unacknowledged: the log is exactly what was acked.
    assert_eq!(seqs(&log), acked.keys().copied().collect::<Vec<_>>());
    assert_eq!(c.status()["events_logged"].as_u64(), Some(CHECKS as u64));

    // The gate goes on, through the CLI, with higher numbers.
    let max = *acked.keys().last().expect("acked");
    let a = c.check(&gate, &code, "36.6", &[]).ok();
    assert_eq!(a["seq"].as_u64(), Some(max + 1), "{a}");
    let a = c.check(&gate, &code, "36.7", &[]).ok();
    assert_eq!(a["seq"].as_u64(), Some(max + 2), "{a}");
    assert_log_holds(&c.log(), &acked);
}

#[test]
fn checks_acknowledged_while_the_node_is_killed_are_kept() {
    const TASKS: usize = 4;
    const KILL_AFTER: usize = 60;
    let mut c = Community::start();
    let gate = c.enrol_gate("north-1");
    let (_, code) = c.declare_cleared(&Person::new("李伟", true, "19800312", 1, "12", "1203"));
    let rt = runtime();
    let client: NodeClient = rt.block_on(gate_client(&gate, c.node.addr));
    let acked = Arc::new(Mutex::new(BTreeMap::<u64, Acked>::new()));
    let count = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..TASKS)
        .map(|task| {
            let (client, acked, count, code) =
                (client.clone(), acked.clone(), count.clone(), code.clone());
            rt.spawn(async move {
                // Bounded: the node is killed long before this many.
                for i in 0..10_000usize {
                    let t = 360 + ((task * 3 + i) % 10) as i16;
                    match client.request(&check(&code, t)).await {
                        Ok(Response::Check(a)) => {
                            assert!(a.allowed, "{a:?}");
                            let prev = acked.lock().expect("acked").insert(
                                a.seq,
                                Acked {
                                    time_ms: a.node_time_ms,
                                    temperature_dc: t,
                                },
                            );
                            assert!(prev.is_none(), "seq {} acknowledged twice", a.seq);
                            count.fetch_add(1, Ordering::Release);
                        }
                        Ok(other) => panic!("unexpected answer {other:?}"),
                        Err(_) => return, // the node is gone
                    }
                }
            })
        })
        .collect();
    let deadline = Instant::now() + DEADLINE;
    while count.load(Ordering::Acquire) < KILL_AFTER {
        assert!(
            Instant::now() < deadline,
            "the node stopped answering checks"
        );
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    // Checks are in flight on several streams now.
    c.node.kill9();
    // Fail the requests still waiting for the dead node now rather than at their timeout.
    rt.block_on(within("close", client.close()));
    rt.block_on(within("tasks", async {
        for t in tasks {
            t.await.expect("check task");
        }
    }));
    let acked = acked.lock().expect("acked").clone();
    assert!(acked.len() >= KILL_AFTER);

    let listen = c.node.addr.to_string();
    c.node = NodeProc::start(&c.node_dir, &listen, &c.file("node.log"));
    let log = c.log();
    assert_log_holds(&log, &acked);
    let max_logged = *seqs(&log).last().expect("events");
    let a = c.check(&gate, &code, "36.6", &[]).ok();
    assert_eq!(a["seq"].as_u64(), Some(max_logged + 1), "{a}");
}

#[test]
fn acknowledged_declaration_survives_kill_9() {
    let mut c = Community::start();
    let gate = c.enrol_gate("north-1");
    let r = c
        .declare(&Person::new("李伟", true, "19800312", 1, "12", "1203"), &[])
        .ok();
    c.node.restart_after_kill9();
    let holder = r["holder"].as_str().expect("holder");
    let shown = c.show(holder);
    assert_eq!(shown["code"], r["code"], "{shown}");
    assert_eq!(shown["cred"], r["cred"], "{shown}");
    assert_eq!(shown["outcome"], "cleared");
    let a = c
        .check(&gate, r["code"].as_str().expect("code"), "36.6", &[])
        .ok();
    assert_eq!(a["holder"]["name"], "李伟", "{a}");
}

#[test]
fn acknowledged_revocation_survives_kill_9() {
    let mut c = Community::start();
    let gate = c.enrol_gate("north-1");
    let person = Person::new("陈静", false, "19881230", 1, "2", "202");
    let (_, old_code) = c.declare_cleared(&person);
    let r = c.declare(&person.clone().with(&["--symptoms"]), &[]).ok();
    assert!(r["revoked"].is_string(), "{r}");
    c.node.restart_after_kill9();
    let a = c.check(&gate, &old_code, "36.6", &[]).expect(EXIT_DENIED);
    assert_eq!(a["reason"], "revoked", "{a}");
    let s = c.status();
    assert_eq!(
        (s["codes_active"].as_u64(), s["codes_revoked"].as_u64()),
        (Some(0), Some(1)),
        "{s}"
    );
}

#[test]
fn gate_enrolled_just_before_kill_9_can_still_connect() {
    let mut c = Community::start();
    let (_, code) = c.declare_cleared(&Person::new("李伟", true, "19800312", 1, "12", "1203"));
    let gate = c.enrol_gate("north-1");
    c.node.restart_after_kill9();
    let a = c.check(&gate, &code, "36.6", &[]).ok();
    assert_eq!(a["allowed"], true, "{a}");
    assert_eq!(c.status()["gates"], serde_json::json!(["north-1"]));
}

#[test]
fn withdrawn_consent_survives_kill_9() {
    let mut c = Community::start();
    let gate = c.enrol_gate("north-1");
    let (host, _) = c.declare_cleared(&Person::new("杨磊", true, "19790405", 1, "3", "202"));
    let v = menjin(&[
        "visitor",
        "invite",
        "--node-dir",
        c.nd(),
        "--host",
        &host,
        "--name",
        "访客 钱先生",
        "--phone",
        "13900139000",
    ])
    .ok();
    let code = v["code"].as_str().expect("visitor code").to_string();
    c.check(&gate, &code, "36.5", &[]).ok();
    menjin(&[
        "visitor",
        "withdraw",
        "--node-dir",
        c.nd(),
        "--code-id",
        v["cred"].as_str().expect("code id"),
    ])
    .ok();
    c.node.restart_after_kill9();
    let a = c.check(&gate, &code, "36.5", &[]).expect(EXIT_DENIED);
    assert_eq!(a["reason"], "no_consent", "{a}");
}
