//! The district hub with real processes: a hub and three community nodes on loopback. Gate
//! logs reach the hub exactly once, through a hub outage and a node killed with SIGKILL.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde_json::Value;

use crate::support::{
    DEADLINE, NodeProc, Person, create_hub, create_node, declare_resident, enrol_at_hub,
    enrol_gate, init_district, menjin, p,
};

struct District {
    // Processes first: they die before their directories are removed.
    hub: NodeProc,
    nodes: Vec<(u32, NodeProc, PathBuf)>,
    hub_dir: PathBuf,
    tmp: tempfile::TempDir,
}

const COMMUNITIES: [u32; 3] = [440_304_011, 440_304_012, 440_304_013];

impl District {
    fn start() -> District {
        let tmp = tempfile::Builder::new()
            .prefix("menjin-hub-")
            .tempdir()
            .expect("temporary directory");
        let district = init_district(tmp.path());
        let hub_dir = tmp.path().join("hub");
        create_hub(&district, &hub_dir);
        let hub = NodeProc::start_hub(&hub_dir, "127.0.0.1:0", &tmp.path().join("hub.log"));
        let hub_addr = hub.addr.to_string();
        let mut nodes = Vec::new();
        for c in COMMUNITIES {
            let dir = tmp.path().join(format!("node-{c}"));
            let cs = c.to_string();
            create_node(&district, &dir, c, &cs, Some(&hub_addr));
            let enrolled = enrol_at_hub(&hub_dir, &dir);
            assert!(
                enrolled["done"].as_str().is_some_and(|m| m.contains(&cs)),
                "{enrolled}"
            );
            let node = NodeProc::start(
                &dir,
                "127.0.0.1:0",
                &tmp.path().join(format!("node-{c}.log")),
            );
            enrol_gate(&dir, "g1", &tmp.path().join(format!("gate-{c}")));
            nodes.push((c, node, dir));
        }
        District {
            hub,
            nodes,
            hub_dir,
            tmp,
        }
    }

    fn gate(&self, c: u32) -> PathBuf {
        self.tmp.path().join(format!("gate-{c}"))
    }

    fn declare(&self, node_dir: &Path, serial: u32) -> String {
        declare_resident(node_dir, serial)
    }

    /// Checks `code` at community `c`'s gate; the check must be allowed.
    fn check(&self, c: u32, code: &str) -> u64 {
        let a = menjin(&[
            "gate",
            "check",
            "--dir",
            p(&self.gate(c)),
            "--code",
            code,
            "--temp",
            "36.5",
        ])
        .ok();
        assert_eq!(a["allowed"], true, "{a}");
        a["seq"].as_u64().expect("seq")
    }

    fn node_events(&self, dir: &Path) -> u64 {
        menjin(&["node", "status", "--dir", p(dir)]).ok()["events_logged"]
            .as_u64()
            .expect("events_logged")
    }

    fn hub_status(&self) -> Value {
        menjin(&["hub", "status", "--dir", p(&self.hub_dir)]).ok()
    }

    /// Polls until the hub holds every node's events and roster (bounded).
    fn wait_converged(&self) -> Value {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let status = self.hub_status();
            let want: BTreeMap<u64, u64> = self
                .nodes
                .iter()
                .map(|(c, _, dir)| (u64::from(*c), self.node_events(dir)))
                .collect();
            let have: BTreeMap<u64, u64> = status["communities"]
                .as_array()
                .expect("communities")
                .iter()
                .map(|c| {
                    (
                        c["community"].as_u64().expect("community"),
                        c["events"].as_u64().expect("events"),
                    )
                })
                .collect();
            if want == have {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "hub did not converge: want {want:?}, hub has {have:?}"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    /// Every (community, seq) at the hub exactly once, and exactly the nodes' sequences.
    fn assert_exactly_once(&self) {
        let log = menjin(&["hub", "log", "--dir", p(&self.hub_dir), "--limit", "10000"]).ok();
        let events = log.as_array().expect("district log is an array");
        let mut seen = BTreeSet::new();
        for e in events {
            let key = (
                e["community"].as_u64().expect("community"),
                e["event"]["seq"].as_u64().expect("seq"),
            );
            assert!(seen.insert(key), "event {key:?} stored twice at the hub");
        }
        for (c, _, dir) in &self.nodes {
            let n = self.node_events(dir);
            let got: Vec<u64> = seen
                .iter()
                .filter(|(cc, _)| *cc == u64::from(*c))
                .map(|(_, s)| *s)
                .collect();
            assert_eq!(got, (1..=n).collect::<Vec<_>>(), "community {c}");
        }
    }
}

#[test]
fn gate_events_reach_the_hub_exactly_once_through_a_hub_outage() {
    let mut d = District::start();
    let codes: Vec<(u32, String)> = d
        .nodes
        .iter()
        .enumerate()
        .map(|(i, (c, _, dir))| (*c, d.declare(dir, i as u32 + 1)))
        .collect();
    for (c, code) in &codes {
        for _ in 0..3 {
            d.check(*c, code);
        }
    }
    let status = d.wait_converged();
    assert!(
        status["communities"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["connected"] == true),
        "{status}"
    );

    // The hub goes down: gates keep working, nodes keep logging.
    let hub_addr = d.hub.addr.to_string();
    d.hub.kill9();
    for (c, code) in &codes {
        for _ in 0..4 {
            d.check(*c, code);
        }
    }
    let (_, _, dir0) = &d.nodes[0];
    let st = menjin(&["node", "status", "--dir", p(dir0)]).ok();
    assert_eq!(st["events_logged"], 7, "{st}");
    // A declaration during the outage reaches the hub's copy of the roster afterwards.
    d.declare(dir0, 50);

    // It comes back on the same address; the nodes find it and resume from its cursor.
    d.hub = NodeProc::start_hub(&d.hub_dir, &hub_addr, &d.tmp.path().join("hub.log"));
    let status = d.wait_converged();
    let first = &status["communities"][0];
    assert_eq!(
        (first["residents"].as_u64(), first["codes_active"].as_u64()),
        (Some(2), Some(2)),
        "{status}"
    );
    d.assert_exactly_once();
    let st = menjin(&["node", "status", "--dir", p(dir0)]).ok();
    assert_eq!(st["hub_acked_seq"], 7, "{st}");

    // The hub's counts follow a change made after it last counted (it keeps them per shard).
    d.declare(dir0, 51);
    let deadline = Instant::now() + DEADLINE;
    loop {
        let status = d.hub_status();
        let first = &status["communities"][0];
        if (first["residents"].as_u64(), first["codes_active"].as_u64()) == (Some(3), Some(3)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "hub never counted the new resident: {status}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn node_killed_while_streaming_to_the_hub_recovers_without_duplicates() {
    let mut d = District::start();
    let (c, _, dir) = &d.nodes[0];
    let (c, dir) = (*c, dir.clone());
    let code = d.declare(&dir, 7);
    let hub_addr = d.hub.addr.to_string();
    d.hub.kill9();
    for _ in 0..40 {
        d.check(c, &code);
    }
    // The hub returns and the node starts catching up; the node dies at once, mid-stream.
    d.hub = NodeProc::start_hub(&d.hub_dir, &hub_addr, &d.tmp.path().join("hub.log"));
    d.nodes[0].1.restart_after_kill9();
    for _ in 0..5 {
        d.check(c, &code);
    }
    d.wait_converged();
    d.assert_exactly_once();
}

fn invite(node_dir: &Path, host: &str) -> String {
    let v = menjin(&[
        "visitor",
        "invite",
        "--node-dir",
        p(node_dir),
        "--host",
        host,
        "--name",
        "访客",
        "--phone",
        "13900139000",
        "--until",
        "+2h",
    ])
    .ok();
    v["code"].as_str().expect("visitor code").to_string()
}

fn gate_check(gate: &Path, code: &str, extra: &[&str]) -> Value {
    let mut args = vec![
        "--json",
        "gate",
        "check",
        "--dir",
        p(gate),
        "--code",
        code,
        "--temp",
        "36.5",
    ];
    args.extend_from_slice(extra);
    crate::support::menjin_raw(&args).json()
}

fn wait_locked(node_dir: &Path, locked: bool) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let st = menjin(&["node", "status", "--dir", p(node_dir)]).ok();
        if st["locked"] == locked && st["lockdown_epoch"].as_u64() > Some(0) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "node did not apply locked={locked}: {st}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn lockdown_refuses_visitors_at_that_community_only_and_lifting_restores_consents() {
    let d = District::start();
    let (c0, c1) = (d.nodes[0].0, d.nodes[1].0);
    let (dir0, dir1) = (d.nodes[0].2.clone(), d.nodes[1].2.clone());
    let host_code = |dir: &Path, serial| {
        let person = Person::new("住户", true, "19800101", serial, "1", "101");
        let mut args = vec!["declare".to_string(), "--node-dir".into(), p(dir).into()];
        args.extend(person.args());
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let r = menjin(&argv).ok();
        (
            r["holder"].as_str().unwrap().to_string(),
            r["code"].as_str().unwrap().to_string(),
        )
    };
    let (host0, resident0) = host_code(&dir0, 1);
    let (host1, _) = host_code(&dir1, 2);
    let visitor0 = invite(&dir0, &host0);
    let visitor1 = invite(&dir1, &host1);
    assert_eq!(gate_check(&d.gate(c0), &visitor0, &[])["allowed"], true);

    let done = menjin(&[
        "hub",
        "lockdown",
        "--dir",
        p(&d.hub_dir),
        "--community",
        &c0.to_string(),
        "--reason",
        "confirmed case",
        "--by",
        "operator",
    ])
    .ok();
    assert!(
        done["done"].as_str().is_some_and(|m| m.contains("started")),
        "{done}"
    );
    wait_locked(&dir0, true);

    let refused = gate_check(&d.gate(c0), &visitor0, &[]);
    assert_eq!(
        (refused["allowed"].as_bool(), refused["reason"].as_str()),
        (Some(false), Some("lockdown")),
        "{refused}"
    );
    let home = gate_check(&d.gate(c0), &resident0, &[]);
    assert_eq!(home["allowed"], true, "residents come home: {home}");
    let out = gate_check(&d.gate(c0), &resident0, &["--direction", "out"]);
    assert_eq!(
        out["reason"], "lockdown",
        "residents stay in by default: {out}"
    );
    let car = gate_check(&d.gate(c0), &resident0, &["--plate", "粤B12345"]);
    assert_eq!(car["reason"], "lockdown", "no vehicles: {car}");
    let elsewhere = gate_check(&d.gate(c1), &visitor1, &[]);
    assert_eq!(
        elsewhere["allowed"], true,
        "another community is not locked down: {elsewhere}"
    );
    let st = d.hub_status();
    let locked: Vec<bool> = st["communities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["locked"] == true)
        .collect();
    assert_eq!(locked, vec![true, false, false], "{st}");

    menjin(&[
        "hub",
        "lift",
        "--dir",
        p(&d.hub_dir),
        "--community",
        &c0.to_string(),
        "--by",
        "operator",
    ])
    .ok();
    wait_locked(&dir0, false);
    let again = gate_check(&d.gate(c0), &visitor0, &[]);
    assert_eq!(
        again["allowed"], true,
        "consent inside its window comes back: {again}"
    );
}

#[test]
fn lockdown_issued_while_a_node_is_down_applies_when_it_returns() {
    let mut d = District::start();
    let (c0, dir0) = (d.nodes[0].0, d.nodes[0].2.clone());
    let (host0, _) = {
        let person = Person::new("住户", true, "19800101", 3, "1", "101");
        let mut args = vec!["declare".to_string(), "--node-dir".into(), p(&dir0).into()];
        args.extend(person.args());
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let r = menjin(&argv).ok();
        (r["holder"].as_str().unwrap().to_string(), ())
    };
    let visitor = invite(&dir0, &host0);
    d.nodes[0].1.kill9();
    menjin(&[
        "hub",
        "lockdown",
        "--dir",
        p(&d.hub_dir),
        "--community",
        &c0.to_string(),
        "--reason",
        "case",
        "--by",
        "op",
    ])
    .ok();
    let listen = d.nodes[0].1.addr.to_string();
    d.nodes[0].1 = NodeProc::start(&dir0, &listen, &d.tmp.path().join("node-again.log"));
    wait_locked(&dir0, true);
    let refused = gate_check(&d.gate(c0), &visitor, &[]);
    assert_eq!(refused["reason"], "lockdown", "{refused}");
}

#[test]
fn health_list_revokes_flagged_codes_and_clearing_allows_a_new_one() {
    let d = District::start();
    let (c0, dir0) = (d.nodes[0].0, d.nodes[0].2.clone());
    let person = Person::new("确诊者", true, "19800101", 9, "2", "201");
    let declare = || {
        let mut args = vec!["declare".to_string(), "--node-dir".into(), p(&dir0).into()];
        args.extend(person.args());
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        menjin(&argv).ok()
    };
    let first = declare();
    let code = first["code"]
        .as_str()
        .expect("cleared at first")
        .to_string();
    assert_eq!(gate_check(&d.gate(c0), &code, &[])["allowed"], true);

    let csv = d.tmp.path().join("health.csv");
    let id = person.id_number();
    std::fs::write(
        &csv,
        format!(
            "document_type,document_number,status\nresident_id,{id},central_quarantine\nresident_id,110105194912310021,hospital\npassport,E7654321,sick\n"
        ),
    )
    .unwrap();
    let out = crate::support::menjin_raw(&[
        "--json",
        "hub",
        "import-health",
        "--dir",
        p(&d.hub_dir),
        "--file",
        p(&csv),
    ]);
    let summary = out.expect(crate::support::EXIT_REFUSED);
    assert_eq!(
        (summary["applied"].as_u64(), summary["refused"].as_u64()),
        (Some(1), Some(2)),
        "{summary}"
    );
    let lines: Vec<u64> = summary["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["line"].as_u64().unwrap())
        .collect();
    assert_eq!(lines, vec![3, 4]);

    // The flag reaches the node, which revokes the code: refused at the gate.
    let deadline = Instant::now() + DEADLINE;
    loop {
        let a = gate_check(&d.gate(c0), &code, &[]);
        if a["reason"] == "revoked" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "flagged code still accepted: {a}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let again = declare();
    assert_eq!(again["outcome"], "central_quarantine", "{again}");
    assert!(again["code"].is_null(), "{again}");

    std::fs::write(&csv, format!("resident_id,{id},cleared\n")).unwrap();
    menjin(&[
        "hub",
        "import-health",
        "--dir",
        p(&d.hub_dir),
        "--file",
        p(&csv),
    ])
    .ok();
    let deadline = Instant::now() + DEADLINE;
    let cleared = loop {
        let r = declare();
        if r["outcome"] == "cleared" {
            break r;
        }
        assert!(Instant::now() < deadline, "clearing never arrived: {r}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let new_code = cleared["code"].as_str().expect("a new code").to_string();
    assert_ne!(new_code, code);
    assert_eq!(gate_check(&d.gate(c0), &new_code, &[])["allowed"], true);
    assert_eq!(gate_check(&d.gate(c0), &code, &[])["reason"], "revoked");
}

#[test]
fn lockdown_decided_at_a_cut_off_node_holds_and_the_hub_adopts_it() {
    let mut d = District::start();
    let (c0, dir0) = (d.nodes[0].0, d.nodes[0].2.clone());
    let person = Person::new("住户", true, "19800101", 4, "1", "101");
    let mut args = vec!["declare".to_string(), "--node-dir".into(), p(&dir0).into()];
    args.extend(person.args());
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let host = menjin(&argv).ok()["holder"].as_str().unwrap().to_string();
    let visitor = invite(&dir0, &host);

    // The hub is away; staff lock down on a phone call.
    let hub_addr = d.hub.addr.to_string();
    d.hub.kill9();
    menjin(&[
        "node",
        "lockdown",
        "--dir",
        p(&dir0),
        "--reason",
        "phone call: case in building 1",
        "--by",
        "staff",
    ])
    .ok();
    assert_eq!(gate_check(&d.gate(c0), &visitor, &[])["reason"], "lockdown");

    // The hub returns and adopts the node's decision into the district policy.
    d.hub = NodeProc::start_hub(&d.hub_dir, &hub_addr, &d.tmp.path().join("hub.log"));
    let deadline = Instant::now() + DEADLINE;
    loop {
        let st = d.hub_status();
        if st["communities"][0]["locked"] == true {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "hub never adopted the local lockdown: {st}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // A later lift at the hub wins over the earlier local decision (at equal times too).
    menjin(&[
        "hub",
        "lift",
        "--dir",
        p(&d.hub_dir),
        "--community",
        &c0.to_string(),
        "--by",
        "operator",
    ])
    .ok();
    wait_locked(&dir0, false);
    assert_eq!(gate_check(&d.gate(c0), &visitor, &[])["allowed"], true);
}
