//! The runbook's procedures (deploy/README.md) with real processes: rotating a node's key,
//! and backing a node up and restoring it on another machine (another directory here).

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde_json::Value;

use crate::support::{
    DEADLINE, EXIT_REFUSED, GateProc, NodeProc, create_hub, create_node, declare_resident,
    enrol_at_hub, enrol_gate, init_district, menjin, p,
};

const C: u32 = 440_304_021;

/// A hub and one node with a gate, all running, in one temporary directory.
struct Site {
    node: NodeProc,
    hub: NodeProc,
    district: PathBuf,
    hub_dir: PathBuf,
    node_dir: PathBuf,
    gate: PathBuf,
    tmp: tempfile::TempDir,
}

impl Site {
    fn start() -> Site {
        let tmp = tempfile::Builder::new()
            .prefix("menjin-ops-")
            .tempdir()
            .expect("temporary directory");
        let district = init_district(tmp.path());
        let hub_dir = tmp.path().join("hub");
        let node_dir = tmp.path().join("node");
        let gate = tmp.path().join("gate");
        create_hub(&district, &hub_dir);
        let hub = NodeProc::start_hub(&hub_dir, "127.0.0.1:0", &tmp.path().join("hub.log"));
        create_node(&district, &node_dir, C, "ops", Some(&hub.addr.to_string()));
        enrol_at_hub(&hub_dir, &node_dir);
        let node = NodeProc::start(&node_dir, "127.0.0.1:0", &tmp.path().join("node.log"));
        enrol_gate(&node_dir, "g1", &gate);
        Site {
            node,
            hub,
            district,
            hub_dir,
            node_dir,
            gate,
            tmp,
        }
    }

    fn declare(&self, serial: u32) -> String {
        declare_resident(&self.node_dir, serial)
    }

    fn check_allowed(&self, code: &str) {
        let a = menjin(&[
            "gate",
            "check",
            "--dir",
            p(&self.gate),
            "--code",
            code,
            "--temp",
            "36.5",
        ])
        .ok();
        assert_eq!(a["allowed"], true, "{a}");
    }

    fn node_status(&self) -> Value {
        menjin(&["node", "status", "--dir", p(&self.node_dir)]).ok()
    }

    /// Polls until the hub holds exactly `n` events of the community, numbered 1..=n.
    fn wait_hub_events(&self, n: u64) {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let log = menjin(&["hub", "log", "--dir", p(&self.hub_dir), "--limit", "1000"]).ok();
            let seqs: Vec<u64> = log
                .as_array()
                .expect("district log")
                .iter()
                .map(|e| e["event"]["seq"].as_u64().expect("seq"))
                .collect();
            if seqs == (1..=n).collect::<Vec<_>>() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "hub has seqs {seqs:?}, want 1..={n}"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
}

impl Site {
    /// The runbook's rotation: stop, rekey, start again on the same address.
    fn rekey(&mut self) {
        let addr = self.node.addr.to_string();
        assert!(self.node.terminate().success());
        menjin(&[
            "node",
            "rekey",
            "--district",
            p(&self.district),
            "--dir",
            p(&self.node_dir),
        ])
        .ok();
        self.node = NodeProc::start(&self.node_dir, &addr, &self.tmp.path().join("node.log"));
    }
}

/// Defect 9 of the hardening issue: the trust feed carried only the node's current
/// certificate, so after a rekey a gate deciding alone refused every code issued before it
/// (`unknown_issuer`). It carries the previous one too (until the codes it signed have
/// expired), and none older.
#[test]
fn after_a_rekey_an_offline_gate_still_allows_codes_of_the_previous_key_only() {
    let mut s = Site::start();
    let first = s.declare(1);
    s.rekey();
    let previous = s.declare(2);
    s.rekey();
    let current = s.declare(3);
    let mut g = GateProc::start(&s.gate, &s.tmp.path().join("gate.log"));
    g.notice("online");
    s.node.kill9();
    for (code, allowed) in [(&current, true), (&previous, true), (&first, false)] {
        let d = g.scan("36.6", code);
        assert_eq!(d["offline"], true, "{d}");
        assert_eq!(d["answer"]["allowed"], allowed, "{d}");
        if !allowed {
            assert_eq!(d["answer"]["reason"], "unknown_issuer", "{d}");
        }
    }
    assert_eq!(g.finish().code(), Some(0));
    let _ = &s.hub;
}

/// `cp -a`: files with their modes (keys must stay 0600).
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    std::fs::set_permissions(to, std::fs::metadata(from).expect("meta").permissions())
        .expect("chmod");
    for entry in std::fs::read_dir(from).expect("read_dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

#[test]
fn rotated_node_key_keeps_codes_gates_and_the_hub_stream() {
    let mut s = Site::start();
    let old_code = s.declare(1);
    s.check_allowed(&old_code);
    s.wait_hub_events(1);
    let old_cert = std::fs::read(s.node_dir.join("node.cert")).expect("node.cert");

    // The runbook: stop, rekey, enrol the new certificate at the hub, start.
    let addr = s.node.addr.to_string();
    assert!(s.node.terminate().success());
    let r = menjin(&[
        "node",
        "rekey",
        "--district",
        p(&s.district),
        "--dir",
        p(&s.node_dir),
    ])
    .ok();
    assert_eq!(r["community"], C, "{r}");
    assert_ne!(
        std::fs::read(s.node_dir.join("node.cert")).expect("cert"),
        old_cert
    );
    menjin(&[
        "hub",
        "enrol",
        "--dir",
        p(&s.hub_dir),
        "--cert",
        p(&s.node_dir.join("node.cert")),
    ])
    .ok();
    s.node = NodeProc::start(&s.node_dir, &addr, &s.tmp.path().join("node.log"));

    // The gate did not change; the code the old key signed still opens it; new codes too.
    s.check_allowed(&old_code);
    let new_code = s.declare(2);
    s.check_allowed(&new_code);
    s.wait_hub_events(3);
    let st = s.node_status();
    assert_eq!(
        (st["hub_connected"].as_bool(), st["hub_acked_seq"].as_u64()),
        (Some(true), Some(3)),
        "{st}"
    );
    let _ = &s.hub;
}

impl Site {
    /// Polls `node status` until `hub_connected` is `want`.
    fn wait_hub_connected(&self, want: bool) {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let st = self.node_status();
            if st["hub_connected"].as_bool() == Some(want) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "hub_connected is not {want} within {DEADLINE:?}: {st}"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
}

/// Defect 8 of the hardening issue: enrolling a node's new certificate at the hub refused
/// only new connections of the old key; a node (or a thief) still holding the old key kept
/// its live link. The hub now closes it at once, and it cannot come back.
#[test]
fn enrolling_a_new_node_certificate_closes_the_old_keys_live_link_at_the_hub() {
    let s = Site::start();
    s.wait_hub_connected(true);
    // The new key is made in a copy of the node's directory: the running node keeps the old.
    let rekeyed = s.tmp.path().join("node-rekeyed");
    copy_tree(&s.node_dir, &rekeyed);
    menjin(&[
        "node",
        "rekey",
        "--district",
        p(&s.district),
        "--dir",
        p(&rekeyed),
    ])
    .ok();
    menjin(&[
        "hub",
        "enrol",
        "--dir",
        p(&s.hub_dir),
        "--cert",
        p(&rekeyed.join("node.cert")),
    ])
    .ok();
    s.wait_hub_connected(false);
    // The uplink retries within its back-off (under a second at first): still refused.
    std::thread::sleep(std::time::Duration::from_secs(3));
    let st = s.node_status();
    assert_eq!(st["hub_connected"].as_bool(), Some(false), "{st}");
    let _ = (&s.node, &s.hub, &s.gate);
}

#[test]
fn node_restored_from_a_backup_on_another_machine_resumes_the_hub_stream() {
    let mut s = Site::start();
    let code = s.declare(1);
    s.check_allowed(&code);
    s.check_allowed(&code);
    s.wait_hub_events(2);

    // Backup: the node stopped, its whole directory copied (keys keep mode 0600).
    let addr = s.node.addr.to_string();
    assert!(s.node.terminate().success());
    let backup = s.tmp.path().join("backup");
    copy_tree(&s.node_dir, &backup);

    // The machine is lost; the backup is restored elsewhere and started on the same address
    // (gates keep the node's address in gate.toml).
    std::fs::remove_dir_all(&s.node_dir).expect("lose the node");
    let restored = s.tmp.path().join("restored");
    copy_tree(&backup, &restored);
    s.node = NodeProc::start(&restored, &addr, &s.tmp.path().join("node.log"));
    s.node_dir = restored;

    let st = s.node_status();
    assert_eq!(
        (st["events_logged"].as_u64(), st["residents"].as_u64()),
        (Some(2), Some(1)),
        "{st}"
    );
    s.check_allowed(&code);
    s.wait_hub_events(3);
    let _ = &s.hub;
}

#[test]
fn node_restored_from_an_older_backup_says_so() {
    let mut s = Site::start();
    let code = s.declare(1);
    s.check_allowed(&code);
    s.wait_hub_events(1);
    let addr = s.node.addr.to_string();
    assert!(s.node.terminate().success());
    let backup = s.tmp.path().join("backup");
    copy_tree(&s.node_dir, &backup);
    s.node = NodeProc::start(&s.node_dir, &addr, &s.tmp.path().join("node.log"));
    s.check_allowed(&code);
    s.check_allowed(&code);
    s.wait_hub_events(3);

    // The disk dies; last night's backup (1 event) comes back while the hub holds 3.
    s.node.kill9();
    std::fs::remove_dir_all(&s.node_dir).expect("lose the node");
    copy_tree(&backup, &s.node_dir);
    s.node = NodeProc::start(&s.node_dir, &addr, &s.tmp.path().join("node.log"));
    let deadline = Instant::now() + DEADLINE;
    while !s.node.log_text().contains("restored from an older backup") {
        assert!(
            Instant::now() < deadline,
            "the node did not report its stale log:\n{}",
            s.node.log_text()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let _ = &s.hub;
}

/// Defect 8 of the hardening issue: a rekeyed node's old certificate stayed valid for its
/// whole year, so whoever held the old key (a stolen laptop, an old backup) could answer
/// "allow" to every gate that reached it. A gate that has its node's new certificate
/// refuses, at the handshake, any certificate issued before it, and decides alone meanwhile.
#[test]
fn a_gate_refuses_a_node_presenting_the_certificate_its_rekey_replaced() {
    let mut s = Site::start();
    let code = s.declare(1);
    // The old key and certificate, as a thief's copy of the node's directory would hold them.
    let addr = s.node.addr.to_string();
    assert!(s.node.terminate().success());
    let rogue = s.tmp.path().join("rogue");
    copy_tree(&s.node_dir, &rogue);
    // Certificates are dated to the second: the new one is issued strictly later.
    std::thread::sleep(std::time::Duration::from_millis(1_100));
    menjin(&[
        "node",
        "rekey",
        "--district",
        p(&s.district),
        "--dir",
        p(&s.node_dir),
    ])
    .ok();
    s.node = NodeProc::start(&s.node_dir, &addr, &s.tmp.path().join("node.log"));
    let log = s.tmp.path().join("gate.log");
    let mut g = GateProc::start(&s.gate, &log);
    g.notice("online");
    let d = g.scan("36.6", &code);
    assert_eq!(
        (d["offline"].as_bool(), d["answer"]["allowed"].as_bool()),
        (Some(false), Some(true)),
        "{d}"
    );

    // The real node goes down; the old key's holder answers on its address.
    assert!(s.node.terminate().success());
    let mut fake = NodeProc::start(&rogue, &addr, &s.tmp.path().join("rogue.log"));
    g.notice("offline");
    let deadline = Instant::now() + DEADLINE;
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("superseded")
    {
        assert!(
            Instant::now() < deadline,
            "the gate never refused the old certificate:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    // The gate decides alone, on its own trust data: it never took the rogue's word.
    let d = g.scan("36.6", &code);
    assert_eq!(d["offline"], true, "{d}");
    let online = g.seen.iter().filter(|l| l["notice"] == "online").count();
    assert_eq!(
        online, 1,
        "the gate went online with the old key's holder: {:#?}",
        g.seen
    );
    assert!(fake.terminate().success());

    // The real node comes back: the gate is online with it again.
    s.node = NodeProc::start(&s.node_dir, &addr, &s.tmp.path().join("node.log"));
    g.notice("online");
    assert_eq!(g.finish().code(), Some(0));
    let _ = &s.hub;
}

impl Site {
    /// `menjin hub revoke-node` for this community with `extra` arguments.
    fn revoke_node(&self, extra: &[&str]) -> crate::support::Out {
        let community = C.to_string();
        let mut args = vec![
            "hub",
            "revoke-node",
            "--dir",
            p(&self.hub_dir),
            "--community",
            &community,
        ];
        args.extend_from_slice(extra);
        menjin(&args)
    }

    /// This community as `hub status` shows it.
    fn hub_community(&self) -> Value {
        let st = menjin(&["hub", "status", "--dir", p(&self.hub_dir)]).ok();
        st["communities"]
            .as_array()
            .expect("communities")
            .iter()
            .find(|c| c["community"] == C)
            .cloned()
            .unwrap_or_else(|| panic!("community {C} not in {st}"))
    }
}

/// Defect 8 of the hardening issue, the node part: a node key could be retired only by a
/// rekey, never revoked (a leaked current key, a stolen node laptop). `hub revoke-node`
/// refuses bad input and changes nothing then; a good one cuts the node's link within a
/// bound, the key never links again nor is enrolled again, and `hub status` shows it.
#[test]
fn hub_revoke_node_refuses_bad_input_and_cuts_the_revoked_node_for_good() {
    let s = Site::start();
    s.wait_hub_connected(true);
    let key_id = s.node_status()["node_key_id"]
        .as_str()
        .expect("key id")
        .to_string();

    // Bad input: each refused with its reason, nothing revoked, the link stays up.
    let other = (C + 1).to_string();
    let unknown = menjin(&[
        "hub",
        "revoke-node",
        "--dir",
        p(&s.hub_dir),
        "--community",
        &other,
        "--by",
        "op",
    ])
    .expect(EXIT_REFUSED);
    assert_eq!(unknown["error"], "not_found", "{unknown}");
    let nobody = s.revoke_node(&["--by", " "]).expect(EXIT_REFUSED);
    assert_eq!(nobody["error"], "bad_request", "{nobody}");
    assert!(nobody["message"].as_str().expect("message").contains("by"));
    let long = "x".repeat(300);
    let wordy = s.revoke_node(&["--by", "op", "--reason", &long]);
    assert_eq!(wordy.expect(EXIT_REFUSED)["error"], "bad_request");
    // A certificate of another community is not this community's key.
    let stranger = s.tmp.path().join("stranger");
    create_node(&s.district, &stranger, C + 2, "stranger", None);
    let foreign = s.revoke_node(&["--by", "op", "--cert", p(&stranger.join("node.cert"))]);
    let foreign = foreign.expect(EXIT_REFUSED);
    assert!(
        foreign["message"]
            .as_str()
            .expect("message")
            .contains("community"),
        "{foreign}"
    );
    let c = s.hub_community();
    assert_eq!(c["revoked_node_keys"], serde_json::json!([]), "{c}");
    assert_eq!(c["connected"], true, "{c}");
    assert_eq!(s.node_status()["revoked"], false);

    // The revocation: the link closes, and the node heard why before it did.
    let done = s
        .revoke_node(&["--by", "district operator", "--reason", "laptop stolen"])
        .ok();
    assert!(
        done["done"].as_str().expect("done").contains(&key_id),
        "{done}"
    );
    s.wait_hub_connected(false);
    let st = s.node_status();
    assert_eq!(st["revoked"], true, "the node says it is revoked: {st}");
    let c = s.hub_community();
    assert_eq!(c["revoked_node_keys"], serde_json::json!([key_id]), "{c}");

    // It never comes back: the uplink retries within its back-off (under a second at
    // first) and is refused; enrolling the key again is refused; revoking again too.
    std::thread::sleep(std::time::Duration::from_secs(3));
    assert_eq!(s.node_status()["hub_connected"], false);
    assert_eq!(s.hub_community()["connected"], false);
    let again = menjin(&[
        "hub",
        "enrol",
        "--dir",
        p(&s.hub_dir),
        "--cert",
        p(&s.node_dir.join("node.cert")),
    ])
    .expect(EXIT_REFUSED);
    let why = again["message"].as_str().expect("message");
    assert!(why.contains("revoked") && why.contains("rekey"), "{again}");
    let twice = s
        .revoke_node(&["--by", "op", "--cert", p(&s.node_dir.join("node.cert"))])
        .expect(EXIT_REFUSED);
    assert!(
        twice["message"]
            .as_str()
            .expect("message")
            .contains("already")
    );
    assert_eq!(
        s.hub_community()["revoked_node_keys"],
        serde_json::json!([key_id]),
        "nothing changed"
    );
    let _ = (&s.node, &s.hub, &s.gate);
}

/// Defect 8, at the gate: a gate that heard of the revocation (from its own node, which
/// passes on the revocation of its own key before the hub cuts it) refuses to connect to
/// a process presenting the revoked certificate (here a copy of the node's directory,
/// as a thief would run it) and, deciding alone, refuses the codes that key signed.
#[test]
fn a_gate_refuses_a_revoked_node_at_the_handshake_and_its_codes_offline() {
    let mut s = Site::start();
    let code = s.declare(1);
    let mut g = GateProc::start(&s.gate, &s.tmp.path().join("gate.log"));
    g.notice("online");
    let d = g.scan("36.6", &code);
    assert_eq!(
        (d["offline"].as_bool(), d["answer"]["allowed"].as_bool()),
        (Some(false), Some(true)),
        "{d}"
    );

    // The thief's copy of the node directory, taken while the node was stopped.
    let addr = s.node.addr.to_string();
    assert!(s.node.terminate().success());
    let stolen = s.tmp.path().join("stolen");
    copy_tree(&s.node_dir, &stolen);
    s.node = NodeProc::start(&s.node_dir, &addr, &s.tmp.path().join("node.log"));
    g.notice("online");

    s.revoke_node(&["--by", "district operator", "--reason", "laptop stolen"])
        .ok();
    let problem = g.notice("problem");
    assert!(
        problem["what"].as_str().expect("what").contains("revoked"),
        "{problem}"
    );
    let d = g.scan("36.6", &code);
    assert_eq!(d["offline"], true, "{d}");
    assert_eq!(d["answer"]["allowed"], false, "{d}");
    assert_eq!(d["answer"]["reason"], "issuer_revoked", "{d}");

    // The thief's node on the node's address: the gate's handshake refuses it, so the gate
    // goes on deciding alone (it retries every 2 s at most) and the thief never hears it.
    s.node.kill9();
    let thief = NodeProc::start(&stolen, &addr, &s.tmp.path().join("thief.log"));
    std::thread::sleep(std::time::Duration::from_secs(4));
    let d = g.scan("36.6", &code);
    assert_eq!(
        d["offline"], true,
        "the gate did not take the thief's node: {d}"
    );
    assert_eq!(d["answer"]["reason"], "issuer_revoked", "{d}");
    let st = menjin(&["node", "status", "--dir", p(&stolen)]).ok();
    let g1 = st["gate_links"]
        .as_array()
        .expect("gate links")
        .iter()
        .find(|l| l["gate"] == "g1")
        .cloned()
        .expect("g1");
    assert_eq!(
        g1["last_contact_ms"], 0,
        "the gate never talked to the thief: {st}"
    );
    assert_eq!(g.finish().code(), Some(0));
    drop(thief);
    let _ = &s.hub;
}

/// Defect 8 with a rekey: the key a rekey replaced leaked. Revoking it (its certificate,
/// `node.cert.previous`) leaves the node's new key enrolled and linked; the node passes the
/// revocation on to its gates, which then refuse alone the codes the old key signed, and go
/// on allowing the new key's.
#[test]
fn revoking_the_key_a_rekey_replaced_refuses_its_codes_offline_and_keeps_the_node() {
    let mut s = Site::start();
    let old_code = s.declare(1);
    s.rekey();
    enrol_at_hub(&s.hub_dir, &s.node_dir);
    s.wait_hub_connected(true);
    let new_code = s.declare(2);
    let mut g = GateProc::start(&s.gate, &s.tmp.path().join("gate.log"));
    g.notice("online");
    let applied = |s: &Site| -> u64 {
        let st = s.node_status();
        st["gate_links"]
            .as_array()
            .expect("gate links")
            .iter()
            .find(|l| l["gate"] == "g1")
            .and_then(|l| l["applied_version"].as_u64())
            .unwrap_or(0)
    };
    let before = applied(&s);

    let previous = s.node_dir.join("node.cert.previous");
    s.revoke_node(&["--by", "district operator", "--cert", p(&previous)])
        .ok();
    let deadline = Instant::now() + DEADLINE;
    while applied(&s) <= before {
        assert!(
            Instant::now() < deadline,
            "the gate never applied the revocation"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let st = s.node_status();
    assert_eq!(
        (st["revoked"].as_bool(), st["hub_connected"].as_bool()),
        (Some(false), Some(true)),
        "the node's own key is not the revoked one: {st}"
    );
    assert_eq!(
        s.hub_community()["revoked_node_keys"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );

    s.node.kill9();
    for (code, allowed, reason) in [
        (&new_code, true, "ok"),
        (&old_code, false, "issuer_revoked"),
    ] {
        let d = g.scan("36.6", code);
        assert_eq!(d["offline"], true, "{d}");
        assert_eq!(d["answer"]["allowed"], allowed, "{d}");
        assert_eq!(d["answer"]["reason"], reason, "{d}");
    }
    assert_eq!(g.finish().code(), Some(0));
}
