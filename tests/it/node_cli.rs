//! The flows of the order, through the `menjin` CLI against a real node process.

use std::os::unix::fs::PermissionsExt;

use crate::support::*;

#[test]
fn declared_resident_is_allowed_at_the_gate_and_the_event_is_logged() {
    let c = Community::start();
    let gate = c.enrol_gate("north-1");
    let (holder, code) = c.declare_cleared(&Person::new("李伟", true, "19800312", 1, "12", "1203"));
    assert!(code.starts_with("MJ:"), "{code}");

    let a = c.check(&gate, &code, "36.6", &[]).ok();
    assert_eq!(a["allowed"], true, "{a}");
    assert_eq!(a["reason"], "ok");
    assert_eq!(a["fever"], false);
    assert_eq!(a["holder"]["name"], "李伟");
    assert_eq!(a["holder"]["building"], "12");
    assert_eq!(a["holder"]["door"], "1203");
    assert_eq!(a["holder"]["kind"], "resident");
    let seq = a["seq"].as_u64().expect("seq");

    let log = c.log();
    assert_eq!(log.len(), 1, "{log:?}");
    let e = &log[0];
    assert_eq!(e["seq"].as_u64(), Some(seq));
    assert_eq!(e["gate"], "north-1");
    assert_eq!(e["direction"], "in");
    assert_eq!(e["allowed"], true);
    assert_eq!(e["reason"], "ok");
    assert_eq!(e["temperature_dc"], 366);
    assert_eq!(e["holder"].as_str(), Some(holder.as_str()));
    assert_eq!(e["offline"], serde_json::Value::Null);
    assert_eq!(e["passback"], false);

    let r = c.roster();
    assert_eq!(r["community"], COMMUNITY);
    assert!(r["deadline"].as_u64() > r["campaign_start"].as_u64(), "{r}");
    let b = &r["buildings"];
    assert_eq!(b.as_array().map(Vec::len), Some(1), "{r}");
    assert_eq!(b[0]["building"], "12");
    assert_eq!(b[0]["households"], 1);
    assert_eq!(b[0]["residents"], 1);
    assert_eq!(b[0]["cleared"], 1);
    assert_eq!(b[0]["not_cleared"], 0);
    assert_eq!(b[0]["codes_active"], 1);

    let s = c.status();
    assert_eq!(s["community"], COMMUNITY);
    assert_eq!(s["community_name"], "香蜜湖社区");
    assert_eq!(s["residents"], 1);
    assert_eq!(s["codes_active"], 1);
    assert_eq!(s["codes_revoked"], 0);
    assert_eq!(s["events_logged"], 1);
    assert_eq!(s["gates"], serde_json::json!(["north-1"]));

    // The human-readable form says the same.
    let text = menjin_raw(&[
        "gate",
        "check",
        "--dir",
        p(&gate),
        "--code",
        &code,
        "--temp",
        "36.5",
        "--direction",
        "out",
    ]);
    assert_eq!(text.code(), EXIT_OK, "{text:?}");
    assert!(text.stdout.starts_with("ALLOW"), "{text:?}");
    assert!(text.stdout.contains("李伟"), "{text:?}");
    let log = c.log();
    assert_eq!(log.len(), 2);
    assert_eq!(log[1]["direction"], "out");
    assert!(log[1]["seq"].as_u64() > Some(seq));
}

#[test]
fn roster_progress_counts_households_and_uncleared_people() {
    let c = Community::start();
    c.declare_cleared(&Person::new("李伟", true, "19800312", 1, "1", "101"));
    c.declare_cleared(&Person::new("王芳", false, "19830521", 2, "1", "101"));
    c.declare_cleared(&Person::new("张敏", false, "19751102", 3, "1", "102"));
    let home = Person::new("郑浩", true, "19910202", 4, "2", "301").with(&["--travel-high-risk"]);
    let r = c.declare(&home, &[]).ok();
    assert_eq!(r["outcome"], "home_quarantine", "{r}");
    assert!(r["code"].is_null(), "{r}");

    let roster = c.roster();
    let b = roster["buildings"].as_array().expect("buildings");
    assert_eq!(b.len(), 2, "{roster}");
    assert_eq!(
        (
            &b[0]["building"],
            &b[0]["households"],
            &b[0]["residents"],
            &b[0]["cleared"],
            &b[0]["codes_active"]
        ),
        (&"1".into(), &2.into(), &3.into(), &3.into(), &3.into()),
        "{roster}"
    );
    assert_eq!(
        (
            &b[1]["building"],
            &b[1]["residents"],
            &b[1]["cleared"],
            &b[1]["not_cleared"],
            &b[1]["codes_active"]
        ),
        (&"2".into(), &1.into(), &0.into(), &1.into(), &0.into()),
        "{roster}"
    );
    let s = c.status();
    assert_eq!(s["residents"], 4);
    assert_eq!(s["codes_active"], 3);
}

#[test]
fn relative_declares_for_a_dependent_of_the_same_home() {
    let c = Community::start();
    let gate = c.enrol_gate("north-1");
    let (adult, _) = c.declare_cleared(&Person::new("李伟", true, "19800312", 1, "1", "101"));
    let grandma = Person::new("李秀英", false, "19400101", 2, "1", "101")
        .with(&["--person-type", "household"]);
    let r = c.declare(&grandma, &["--by", &adult]).ok();
    assert_eq!(r["outcome"], "cleared", "{r}");
    assert_eq!(r["kind"], "dependent");
    assert_eq!(r["channel"], "proxy");
    assert_eq!(r["declared_by"].as_str(), Some(adult.as_str()));
    let code = r["code"].as_str().expect("code");
    assert_ne!(r["holder"].as_str(), Some(adult.as_str()));

    let a = c.check(&gate, code, "36.4", &[]).ok();
    assert_eq!(a["allowed"], true, "{a}");
    assert_eq!(a["holder"]["name"], "李秀英");
    assert_eq!(a["holder"]["kind"], "dependent");
}

#[test]
fn proxy_declaration_from_another_home_or_by_a_child_is_refused() {
    let c = Community::start();
    let (neighbour, _) = c.declare_cleared(&Person::new("李伟", true, "19800312", 1, "1", "102"));
    let (child, _) = c.declare_cleared(&Person::new("李小宝", true, "20160808", 2, "1", "101"));
    let before = c.status();

    let grandma = Person::new("李秀英", false, "19400101", 3, "1", "101")
        .with(&["--person-type", "household"]);
    let out = c.declare(&grandma, &["--by", &neighbour]);
    let j = out.expect(EXIT_REFUSED);
    assert_eq!(j["error"], "refused", "{j}");
    assert!(
        j["message"]
            .as_str()
            .is_some_and(|m| m.contains("same home")),
        "{j}"
    );
    assert!(out.stderr.contains("same home"), "{out:?}");

    let out = c.declare(&grandma, &["--by", &child]);
    let j = out.expect(EXIT_REFUSED);
    assert!(
        j["message"].as_str().is_some_and(|m| m.contains("adult")),
        "{j}"
    );

    // An unknown relative.
    let j = c
        .declare(&grandma, &["--by", "0123456789abcdef"])
        .expect(EXIT_REFUSED);
    assert_eq!(j["error"], "not_found", "{j}");

    let after = c.status();
    assert_eq!(before["residents"], after["residents"]);
    assert_eq!(after["residents"], 2);
    assert_eq!(before["codes_active"], after["codes_active"]);
}

#[test]
fn offline_declaration_gets_a_printed_pass_with_photo_and_code() {
    let c = Community::start();
    let gate = c.enrol_gate("north-1");
    let photo = c.file("photo.png");
    std::fs::write(&photo, png_photo()).expect("write photo");
    let qr = c.file("code.png");
    let person = Person::new("马桂兰", false, "19450315", 1, "3", "102");
    let r = c
        .declare(
            &person,
            &[
                "--offline",
                "--photo",
                p(&photo),
                "--staff",
                "工作站 陈主任",
                "--qr-png",
                p(&qr),
            ],
        )
        .ok();
    assert_eq!(r["outcome"], "cleared", "{r}");
    assert_eq!(r["channel"], "offline");
    assert_eq!(r["has_photo"], true);
    let holder = r["holder"].as_str().expect("holder").to_string();
    let code = r["code"].as_str().expect("code").to_string();
    let png = std::fs::read(&qr).expect("--qr-png wrote the code");
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    assert_eq!(
        mode(&qr),
        0o600,
        "a code is a credential: only its owner reads the file"
    );

    let html_path = c.file("pass.html");
    let out = menjin(&[
        "pass",
        "print",
        "--node-dir",
        c.nd(),
        "--holder",
        &holder,
        "--out",
        p(&html_path),
    ])
    .ok();
    assert_eq!(out["written"], true, "{out}");
    let html = std::fs::read_to_string(&html_path).expect("pass written");
    assert!(html.contains("马桂兰"), "the pass names its holder");
    assert!(
        html.contains(&person.id_number()),
        "the pass carries the ID number"
    );
    assert!(html.contains("<svg"), "the pass carries the code as a QR");
    assert!(html.contains("102"), "the pass carries the door");
    assert_eq!(
        mode(&html_path),
        0o600,
        "a pass holds an ID number and a photo: only its owner reads the file"
    );

    // "My declarations": the same code again, and the QR image again.
    let qr2 = c.file("code-again.png");
    let shown = menjin(&[
        "show",
        "--node-dir",
        c.nd(),
        "--holder",
        &holder,
        "--qr-png",
        p(&qr2),
    ])
    .ok();
    assert_eq!(shown["code"].as_str(), Some(code.as_str()), "{shown}");
    assert_eq!(shown["outcome"], "cleared");
    assert_eq!(std::fs::read(&qr2).expect("qr again"), png);

    let a = c.check(&gate, &code, "36.6", &[]).ok();
    assert_eq!(a["allowed"], true, "{a}");
    assert!(
        a["holder"]["photo"].is_string(),
        "guard is told to compare the photo: {a}"
    );

    let roster = c.roster();
    assert_eq!(roster["buildings"][0]["passes_printed"], 1, "{roster}");
}

#[test]
fn pass_is_refused_without_a_photo_until_one_is_attached() {
    let c = Community::start();
    let (holder, _) = c.declare_cleared(&Person::new("李伟", true, "19800312", 1, "1", "101"));
    let html_path = c.file("pass.html");
    let print = || {
        menjin(&[
            "pass",
            "print",
            "--node-dir",
            c.nd(),
            "--holder",
            &holder,
            "--out",
            p(&html_path),
        ])
    };
    let j = print().expect(EXIT_REFUSED);
    assert!(
        j["message"].as_str().is_some_and(|m| m.contains("photo")),
        "{j}"
    );
    assert!(!html_path.exists(), "no pass file for a refused print");

    let photo = c.file("photo.png");
    std::fs::write(&photo, png_photo()).expect("write photo");
    let r = menjin(&[
        "pass",
        "photo",
        "--node-dir",
        c.nd(),
        "--holder",
        &holder,
        "--photo",
        p(&photo),
    ])
    .ok();
    assert_eq!(r["has_photo"], true, "{r}");
    print().ok();
    assert!(
        std::fs::read_to_string(&html_path)
            .expect("pass")
            .contains("李伟")
    );
}

#[test]
fn redeclaring_with_symptoms_revokes_the_earlier_code() {
    let c = Community::start();
    let gate = c.enrol_gate("north-1");
    let person = Person::new("陈静", false, "19881230", 1, "2", "202");
    let first = c.declare(&person, &[]).ok();
    let old_code = first["code"].as_str().expect("code").to_string();
    let old_cred = first["cred"].as_str().expect("cred").to_string();
    c.check(&gate, &old_code, "36.6", &[]).ok();

    let sick = person.clone().with(&["--symptoms"]);
    let second = c.declare(&sick, &[]).ok();
    assert_eq!(
        second["holder"], first["holder"],
        "same person, same holder id"
    );
    assert_eq!(second["outcome"], "hospital", "{second}");
    assert!(second["code"].is_null(), "{second}");
    assert_eq!(
        second["revoked"].as_str(),
        Some(old_cred.as_str()),
        "{second}"
    );

    let denied = c.check(&gate, &old_code, "36.6", &[]);
    let a = denied.expect(EXIT_DENIED);
    assert_eq!(a["allowed"], false, "{a}");
    assert_eq!(a["reason"], "revoked");

    let s = c.status();
    assert_eq!(s["codes_active"], 0, "{s}");
    assert_eq!(s["codes_revoked"], 1, "{s}");
    let shown = c.show(first["holder"].as_str().expect("holder"));
    assert!(shown["code"].is_null(), "{shown}");
    assert_eq!(shown["outcome"], "hospital");
}

#[test]
fn redeclaring_unchanged_keeps_the_code_in_force() {
    let c = Community::start();
    let gate = c.enrol_gate("north-1");
    let person = Person::new("陈静", false, "19881230", 1, "2", "202");
    let first = c.declare(&person, &[]).ok();
    let second = c.declare(&person, &[]).ok();
    assert_eq!(second["code"], first["code"], "{second}");
    assert!(second["revoked"].is_null(), "{second}");
    c.check(&gate, first["code"].as_str().expect("code"), "36.6", &[])
        .ok();
    assert_eq!(c.status()["residents"], 1);
}

fn invite(c: &Community, host: &str, name: &str) -> serde_json::Value {
    menjin(&[
        "visitor",
        "invite",
        "--node-dir",
        c.nd(),
        "--host",
        host,
        "--name",
        name,
        "--phone",
        "13900139000",
    ])
    .ok()
}

#[test]
fn visitor_with_consent_is_allowed_until_consent_is_withdrawn() {
    let c = Community::start();
    let gate = c.enrol_gate("north-1");
    let (host, _) = c.declare_cleared(&Person::new("杨磊", true, "19790405", 1, "3", "202"));
    let v = invite(&c, &host, "访客 钱先生");
    assert_eq!(v["host"].as_str(), Some(host.as_str()));
    let code = v["code"].as_str().expect("visitor code").to_string();
    let code_id = v["cred"].as_str().expect("code id").to_string();

    let a = c.check(&gate, &code, "36.5", &[]).ok();
    assert_eq!(a["allowed"], true, "{a}");
    assert_eq!(a["holder"]["kind"], "visitor");
    assert_eq!(a["holder"]["name"], "访客 钱先生");
    assert_eq!(
        a["holder"]["building"], "3",
        "the visitor is shown with the host's home"
    );

    let w = menjin(&[
        "visitor",
        "withdraw",
        "--node-dir",
        c.nd(),
        "--code-id",
        &code_id,
    ])
    .ok();
    assert!(
        w["done"].as_str().is_some_and(|m| m.contains(&code_id)),
        "{w}"
    );
    let a = c.check(&gate, &code, "36.5", &[]).expect(EXIT_DENIED);
    assert_eq!(a["reason"], "no_consent", "{a}");

    // Withdrawing twice is refused, not silently accepted.
    let again = menjin(&[
        "visitor",
        "withdraw",
        "--node-dir",
        c.nd(),
        "--code-id",
        &code_id,
    ]);
    again.expect(EXIT_REFUSED);
}

#[test]
fn visitor_in_a_vehicle_is_barred() {
    let c = Community::start();
    let gate = c.enrol_gate("north-1");
    let (host, host_code) =
        c.declare_cleared(&Person::new("杨磊", true, "19790405", 1, "3", "202"));
    let v = invite(&c, &host, "访客 周先生");
    let code = v["code"].as_str().expect("visitor code");
    let a = c
        .check(&gate, code, "36.5", &["--plate", "粤B99999"])
        .expect(EXIT_DENIED);
    assert_eq!(a["reason"], "vehicle_barred", "{a}");
    let log = c.log();
    assert_eq!(log.last().expect("event")["plate"], "粤B99999");
    // A resident in a car is checked as a person.
    let a = c
        .check(&gate, &host_code, "36.5", &["--plate", "粤B12345"])
        .ok();
    assert_eq!(a["allowed"], true, "{a}");
}

#[test]
fn visitor_of_a_host_who_lost_the_code_is_refused() {
    let c = Community::start();
    let gate = c.enrol_gate("north-1");
    let host = Person::new("杨磊", true, "19790405", 1, "3", "202");
    let (host_id, _) = c.declare_cleared(&host);
    let v = invite(&c, &host_id, "访客 孙女士");
    let code = v["code"].as_str().expect("visitor code");
    c.check(&gate, code, "36.5", &[]).ok();
    c.declare(&host.clone().with(&["--contact-with-case"]), &[])
        .ok();
    let a = c.check(&gate, code, "36.5", &[]).expect(EXIT_DENIED);
    assert_eq!(a["reason"], "no_consent", "{a}");
    // Nor can that host invite anyone else.
    let j = menjin(&[
        "visitor",
        "invite",
        "--node-dir",
        c.nd(),
        "--host",
        &host_id,
        "--name",
        "访客 赵先生",
        "--phone",
        "13900139001",
    ])
    .expect(EXIT_REFUSED);
    assert_eq!(j["error"], "refused", "{j}");
}

#[test]
fn fever_is_denied_and_flagged() {
    let c = Community::start();
    let gate = c.enrol_gate("north-1");
    let (_, code) = c.declare_cleared(&Person::new("张敏", false, "19751102", 1, "3", "101"));
    let a = c.check(&gate, &code, "37.3", &[]).expect(EXIT_DENIED);
    assert_eq!(a["allowed"], false, "{a}");
    assert_eq!(a["reason"], "fever");
    assert_eq!(a["fever"], true);
    let e = c.log().pop().expect("event");
    assert_eq!(e["fever"], true, "{e}");
    assert_eq!(e["reason"], "fever");
    assert_eq!(e["temperature_dc"], 373);
    // Just under the line passes and is not flagged.
    let a = c.check(&gate, &code, "37.2", &[]).ok();
    assert_eq!(a["fever"], false, "{a}");
}

#[test]
fn world_readable_node_key_stops_node_run_naming_the_file() {
    let tmp = tempfile::tempdir().expect("tmp");
    let district = tmp.path().join("district");
    let node_dir = tmp.path().join("node");
    menjin(&["district", "init", "--dir", p(&district)]).ok();
    menjin(&[
        "node",
        "create",
        "--district",
        p(&district),
        "--dir",
        p(&node_dir),
        "--community",
        "7",
        "--name",
        "景田",
        "--listen",
        "127.0.0.1:0",
    ])
    .ok();
    let key = node_dir.join("node.key");
    let mode = std::fs::metadata(&key)
        .expect("node.key")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600, "node create writes the key private");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).expect("chmod");

    let out = menjin_raw(&[
        "node",
        "run",
        "--dir",
        p(&node_dir),
        "--listen",
        "127.0.0.1:0",
    ]);
    assert_eq!(out.code(), EXIT_FAILURE, "{out:?}");
    assert!(out.stderr.contains(p(&key)), "names the file: {out:?}");
    assert!(
        out.stderr.contains("chmod 600"),
        "says how to fix it: {out:?}"
    );
    assert!(
        !node_dir.join("node.addr").exists(),
        "the node never served"
    );
}

#[test]
fn creating_a_node_over_an_existing_one_keeps_its_key() {
    let c = Community::start();
    let key = c.node_dir.join("node.key");
    let before = std::fs::read(&key).expect("node.key");
    let out = menjin(&[
        "node",
        "create",
        "--district",
        p(&c.district),
        "--dir",
        c.nd(),
        "--community",
        "9",
        "--name",
        "另一个",
    ]);
    assert_eq!(out.code(), EXIT_FAILURE, "{out:?}");
    assert!(out.stderr.contains("refusing to overwrite"), "{out:?}");
    assert_eq!(std::fs::read(&key).expect("node.key"), before);
    assert_eq!(
        c.status()["community"],
        COMMUNITY,
        "the running node is untouched"
    );
}

#[test]
fn node_stops_cleanly_on_sigterm_and_keeps_its_data() {
    let mut c = Community::start();
    let (holder, code) = c.declare_cleared(&Person::new("李伟", true, "19800312", 1, "12", "1203"));
    let addr_file = c.node_dir.join("node.addr");
    assert!(addr_file.exists());
    let status = c.node.terminate();
    assert_eq!(status.code(), Some(EXIT_OK), "{}", c.node.log_text());
    assert!(!addr_file.exists(), "a stopped node removes node.addr");
    let out = menjin(&["node", "status", "--dir", c.nd()]);
    assert_eq!(out.code(), EXIT_FAILURE, "no node to ask: {out:?}");
    assert!(
        out.stderr.contains("menjin node run"),
        "says how to start it: {out:?}"
    );

    let log = c.file("node.log");
    c.node = NodeProc::start(&c.node_dir, "127.0.0.1:0", &log);
    assert_eq!(c.show(&holder)["code"].as_str(), Some(code.as_str()));
}

#[test]
fn gate_id_already_enrolled_is_refused_and_the_first_gate_keeps_working() {
    let c = Community::start();
    let gate = c.enrol_gate("north-1");
    let (_, code) = c.declare_cleared(&Person::new("李伟", true, "19800312", 1, "12", "1203"));
    let second = c.file("gate-impostor");
    let j = menjin(&[
        "gate",
        "enrol",
        "--node-dir",
        c.nd(),
        "--gate-id",
        "north-1",
        "--dir",
        p(&second),
    ])
    .expect(EXIT_REFUSED);
    assert!(
        j["message"]
            .as_str()
            .is_some_and(|m| m.contains("already enrolled")),
        "{j}"
    );
    assert_eq!(c.status()["gates"], serde_json::json!(["north-1"]));
    c.check(&gate, &code, "36.6", &[]).ok();
    let out = c.check(&second, &code, "36.6", &[]);
    assert_eq!(
        out.code(),
        EXIT_FAILURE,
        "the refused key is not let in: {out:?}"
    );
}

#[test]
fn gate_check_reads_the_scanned_code_from_standard_input() {
    let c = Community::start();
    let gate = c.enrol_gate("north-1");
    let (_, code) = c.declare_cleared(&Person::new("李伟", true, "19800312", 1, "12", "1203"));
    let out = menjin_with_stdin(
        &[
            "--json",
            "gate",
            "check",
            "--dir",
            p(&gate),
            "--code",
            "-",
            "--temp",
            "36.6",
        ],
        Some(&format!("{code}\n")),
    );
    let a = out.ok();
    assert_eq!(a["allowed"], true, "{a}");
    assert_eq!(a["holder"]["name"], "李伟");
}

#[test]
fn log_filters_by_gate_holder_time_and_sequence() {
    let c = Community::start();
    let north = c.enrol_gate("north-1");
    let south = c.enrol_gate("south-1");
    let (li, li_code) = c.declare_cleared(&Person::new("李伟", true, "19800312", 1, "1", "101"));
    let (_, wang_code) = c.declare_cleared(&Person::new("王芳", false, "19830521", 2, "1", "102"));
    c.check(&north, &li_code, "36.6", &[]).ok();
    c.check(&south, &wang_code, "36.6", &[]).ok();
    c.check(&south, &li_code, "36.6", &["--direction", "out"])
        .ok();
    c.check(&north, &wang_code, "36.6", &[]).ok();
    let log = |extra: &[&str]| {
        let mut args = vec!["log", "--node-dir", c.nd()];
        args.extend_from_slice(extra);
        seqs(menjin(&args).ok().as_array().expect("array"))
    };
    assert_eq!(log(&[]), vec![1, 2, 3, 4]);
    assert_eq!(log(&["--gate", "south-1"]), vec![2, 3]);
    assert_eq!(log(&["--holder", &li]), vec![1, 3]);
    assert_eq!(log(&["--after-seq", "1", "--limit", "2"]), vec![2, 3]);
    assert_eq!(log(&["--since-minutes", "10"]), vec![1, 2, 3, 4]);
    let tomorrow = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
        + 86_400)
        .to_string();
    assert_eq!(log(&["--from", &tomorrow]), Vec::<u64>::new());
    assert_eq!(log(&["--until", "1000"]), Vec::<u64>::new());
}

#[test]
fn concurrent_declarations_of_one_person_issue_one_code() {
    let c = Community::start();
    let person = Person::new("李伟", true, "19800312", 1, "12", "1203");
    let receipts: Vec<serde_json::Value> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..6)
            .map(|_| s.spawn(|| c.declare(&person, &[]).ok()))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("declare thread"))
            .collect()
    });
    let first = &receipts[0];
    for r in &receipts {
        assert_eq!(r["holder"], first["holder"], "{r}");
        assert_eq!(r["code"], first["code"], "one code for one person: {r}");
    }
    let s = c.status();
    assert_eq!(s["residents"], 1, "{s}");
    assert_eq!(s["codes_active"], 1, "{s}");
    assert_eq!(s["codes_revoked"], 0, "{s}");
}

/// The permission bits of a file.
fn mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .expect("metadata")
        .permissions()
        .mode()
        & 0o777
}
