//! Bad input gets a clear error and changes nothing: the roster, the counts and (except for
//! refused scans, which are gate events) the gate log stay as they were, and the node keeps
//! serving.

use serde_json::Value;

use crate::support::*;

/// A community with one gate and one cleared resident.
struct Fixture {
    c: Community,
    gate: std::path::PathBuf,
    code: String,
}

fn fixture() -> Fixture {
    let c = Community::start();
    let gate = c.enrol_gate("north-1");
    let (_, code) = c.declare_cleared(&Person::new("李伟", true, "19800312", 1, "12", "1203"));
    Fixture { c, gate, code }
}

/// What the node holds: the roster summary and the status counts.
fn snapshot(c: &Community) -> (Value, Value) {
    let mut status = c.status();
    status
        .as_object_mut()
        .expect("status object")
        .remove("node_time_ms");
    (c.roster(), status)
}

impl Fixture {
    /// The node still decides: a valid check is allowed.
    #[track_caller]
    fn still_serving(&self) {
        let a = self.c.check(&self.gate, &self.code, "36.6", &[]).ok();
        assert_eq!(a["allowed"], true, "{a}");
    }

    /// Runs a declaration that must be refused by the node with a message containing `says`,
    /// and checks that nothing was stored.
    #[track_caller]
    fn declaration_refused(&self, person: &Person, extra: &[&str], says: &str) {
        let before = snapshot(&self.c);
        let out = self.c.declare(person, extra);
        let j = out.expect(EXIT_REFUSED);
        assert_eq!(j["error"], "bad_request", "{j}");
        let message = j["message"].as_str().expect("message");
        assert!(
            message.contains(says),
            "message {message:?} should say {says:?}"
        );
        assert!(out.stderr.contains(says), "stderr: {}", out.stderr);
        assert_eq!(
            snapshot(&self.c),
            before,
            "a refused declaration stored something"
        );
        self.still_serving();
    }
}

#[test]
fn malformed_and_truncated_codes_are_denied_and_logged_without_touching_the_roster() {
    let f = fixture();
    let (roster_before, status_before) = snapshot(&f.c);
    let events_before = status_before["events_logged"].as_u64().expect("events");

    let truncated = &f.code[..f.code.len() - 9];
    let mut altered: Vec<char> = f.code.chars().collect();
    let last = altered.len() - 1;
    altered[last] = if altered[last] == 'A' { 'B' } else { 'A' };
    let altered: String = altered.into_iter().collect();
    let cases = [
        ("HTTPS://EXAMPLE.COM/123", "malformed"),
        ("MJ:", "malformed"),
        ("MJ:!!!!", "malformed"),
        (truncated, "malformed"),
    ];
    for (code, reason) in cases {
        let a = f.c.check(&f.gate, code, "36.6", &[]).expect(EXIT_DENIED);
        assert_eq!(a["allowed"], false, "{code}: {a}");
        assert_eq!(a["reason"], reason, "{code}: {a}");
        assert!(a["holder"].is_null(), "{code}: {a}");
    }
    // One character changed in the signature: well-formed, but not what the node issued.
    let a =
        f.c.check(&f.gate, &altered, "36.6", &[])
            .expect(EXIT_DENIED);
    assert_ne!(a["reason"], "ok", "{a}");

    let (roster_after, status_after) = snapshot(&f.c);
    assert_eq!(
        roster_after, roster_before,
        "scans do not change the roster"
    );
    assert_eq!(
        status_after["events_logged"].as_u64(),
        Some(events_before + cases.len() as u64 + 1),
        "every refused scan is a gate event"
    );
    assert_eq!(status_after["residents"], status_before["residents"]);
    assert_eq!(status_after["codes_active"], status_before["codes_active"]);
    let log = f.c.log();
    for e in &log[log.len() - cases.len() - 1..log.len() - 1] {
        assert_eq!(e["reason"], "malformed", "{e}");
        assert_eq!(e["allowed"], false, "{e}");
        assert!(e["holder"].is_null(), "{e}");
    }
    f.still_serving();
}

#[test]
fn id_number_with_a_wrong_check_digit_is_refused() {
    let f = fixture();
    let person = Person::new("王芳", false, "19830521", 2, "12", "1204");
    let good = person.id_number();
    let wrong = if good.ends_with('1') { '2' } else { '1' };
    let bad = format!("{}{wrong}", &good[..17]);
    let args = person.args_replacing("--doc-number", &bad);
    let before = snapshot(&f.c);
    let mut cmd = vec!["declare", "--node-dir", f.c.nd()];
    cmd.extend(args.iter().map(String::as_str));
    let j = menjin(&cmd).expect(EXIT_REFUSED);
    assert!(
        j["message"]
            .as_str()
            .is_some_and(|m| m.contains("check digit")),
        "{j}"
    );
    assert_eq!(snapshot(&f.c), before);
    f.still_serving();
}

#[test]
fn id_number_with_an_impossible_birth_date_is_refused() {
    let f = fixture();
    // 30 February 1990, with a correct check digit.
    let person = Person::new("王芳", false, "19900230", 2, "12", "1204");
    f.declaration_refused(&person, &[], "impossible birth date 1990-02-30");
}

#[test]
fn id_number_with_a_birth_date_in_the_future_is_refused() {
    let f = fixture();
    let person = Person::new("王芳", false, "20990101", 2, "12", "1204");
    f.declaration_refused(&person, &[], "future");
}

#[test]
fn declaration_missing_a_field_is_refused_naming_it() {
    let f = fixture();
    let mut nameless = Person::new("王芳", false, "19830521", 2, "12", "1204");
    nameless.name = "  ".into();
    f.declaration_refused(&nameless, &[], "missing field: name");
    let mut homeless = Person::new("王芳", false, "19830521", 2, "12", "1204");
    homeless.door = String::new();
    f.declaration_refused(&homeless, &[], "missing field: door");
    let wrong_gender = Person::new("王芳", true, "19830521", 2, "12", "1204");
    let args = wrong_gender.args_replacing("--gender", "female");
    let before = snapshot(&f.c);
    let mut cmd = vec!["declare", "--node-dir", f.c.nd()];
    cmd.extend(args.iter().map(String::as_str));
    let j = menjin(&cmd).expect(EXIT_REFUSED);
    assert!(
        j["message"].as_str().is_some_and(|m| m.contains("gender")),
        "{j}"
    );
    assert_eq!(snapshot(&f.c), before);
}

#[test]
fn offline_declaration_with_a_text_file_as_photo_is_refused() {
    let f = fixture();
    let photo = f.c.file("photo.txt");
    std::fs::write(&photo, "this is not a photo, it is a note\n".repeat(10)).expect("write");
    let person = Person::new("马桂兰", false, "19450315", 3, "3", "102");
    f.declaration_refused(
        &person,
        &["--offline", "--photo", p(&photo), "--staff", "陈主任"],
        "not a JPEG or PNG",
    );
}

#[test]
fn offline_declaration_with_a_photo_over_1_mb_is_refused() {
    let f = fixture();
    let photo = f.c.file("big.png");
    let mut bytes = png_photo();
    bytes.resize(1024 * 1024 + 1, 0);
    std::fs::write(&photo, bytes).expect("write");
    let before = snapshot(&f.c);
    let person = Person::new("马桂兰", false, "19450315", 3, "3", "102");
    let out = f.c.declare(
        &person,
        &["--offline", "--photo", p(&photo), "--staff", "陈主任"],
    );
    assert_ne!(out.code(), EXIT_OK, "{out:?}");
    assert!(out.stderr.contains("limit is 1.0 MB"), "{out:?}");
    assert!(out.stderr.contains("big.png"), "names the file: {out:?}");
    assert_eq!(snapshot(&f.c), before);
    f.still_serving();
}

#[test]
fn temperature_out_of_range_is_refused_and_not_logged() {
    let f = fixture();
    let before = snapshot(&f.c);
    for temp in ["25", "45.1", "hot", "NaN"] {
        let out = f.c.check(&f.gate, &f.code, temp, &[]);
        assert_ne!(out.code(), EXIT_OK, "{temp}: {out:?}");
        assert_ne!(
            out.code(),
            EXIT_DENIED,
            "{temp}: not a gate decision: {out:?}"
        );
        assert!(out.stderr.contains("temperature"), "{temp}: {out:?}");
    }
    assert_eq!(
        snapshot(&f.c),
        before,
        "nothing logged for an unmeasured person"
    );
    f.still_serving();
}

#[test]
fn bad_command_line_arguments_exit_2() {
    let f = fixture();
    let g = p(&f.gate).to_string();
    let nd = f.c.nd().to_string();
    let fresh = format!("{nd}-never-made");
    let before = snapshot(&f.c);
    let person = Person::new("王芳", false, "19830521", 2, "12", "1204");
    let declare = |form: Vec<String>, extra: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = vec!["declare".into(), "--node-dir".into(), nd.clone()];
        v.extend(form);
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let owned = |a: &[&str]| -> Vec<String> { a.iter().map(|s| s.to_string()).collect() };
    let cases: Vec<Vec<String>> = vec![
        owned(&["frobnicate"]),
        owned(&["gate", "check", "--dir", &g, "--temp", "36.6"]),
        owned(&[
            "gate",
            "check",
            "--dir",
            &g,
            "--code",
            &f.code,
            "--temp",
            "36.6",
            "--direction",
            "sideways",
        ]),
        owned(&["log", "--node-dir", &nd, "--limit", "many"]),
        owned(&[
            "log",
            "--node-dir",
            &nd,
            "--from",
            "1",
            "--since-minutes",
            "5",
        ]),
        owned(&[
            "node",
            "create",
            "--district",
            &nd,
            "--dir",
            &nd,
            "--community",
            "1",
            "--name",
            "x",
            "--listen",
            "not-an-address",
        ]),
        // Refused here, not at the node's first start (node.toml allows 1 to 366).
        owned(&[
            "node",
            "create",
            "--district",
            &nd,
            "--dir",
            &fresh,
            "--community",
            "1",
            "--name",
            "x",
            "--code-days",
            "0",
        ]),
        owned(&["declare", "--node-dir", &nd, "--name", "王芳"]),
        declare(person.args_replacing("--gender", "other"), &[]),
        declare(person.args(), &["--offline"]),
        declare(
            person.args(),
            &[
                "--by",
                "0123456789abcdef",
                "--offline",
                "--photo",
                "x",
                "--staff",
                "y",
            ],
        ),
        declare(person.args(), &["--quarantine", "maybe"]),
    ];
    for args in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = menjin_raw(&args);
        assert_eq!(out.code(), EXIT_USAGE, "{args:?}: {out:?}");
        assert!(
            !out.stderr.trim().is_empty(),
            "{args:?}: says what is wrong"
        );
        assert!(out.stdout.trim().is_empty(), "{args:?}: {out:?}");
    }
    assert_eq!(snapshot(&f.c), before);
    assert!(!std::path::Path::new(&fresh).exists(), "nothing created");
    f.still_serving();
}

#[test]
fn unknown_holder_is_not_found_and_a_malformed_one_is_refused() {
    let f = fixture();
    let j = menjin(&[
        "show",
        "--node-dir",
        f.c.nd(),
        "--holder",
        "0123456789abcdef",
    ])
    .expect(EXIT_REFUSED);
    assert_eq!(j["error"], "not_found", "{j}");
    let out = menjin(&["show", "--node-dir", f.c.nd(), "--holder", "nobody"]);
    assert_ne!(out.code(), EXIT_OK, "{out:?}");
    assert!(out.stderr.contains("16 hex characters"), "{out:?}");
    f.still_serving();
}

#[test]
fn visitor_invitation_with_a_bad_window_or_contact_is_refused() {
    let f = fixture();
    let (host, _) =
        f.c.declare_cleared(&Person::new("杨磊", true, "19790405", 2, "3", "202"));
    let before = snapshot(&f.c);
    let invite = |name: &str, phone: &str, extra: &[&str]| {
        let mut args = vec!["visitor", "invite", "--node-dir", f.c.nd(), "--host", &host];
        args.extend_from_slice(&["--name", name, "--phone", phone]);
        args.extend_from_slice(extra);
        menjin(&args)
    };
    let (name, phone) = ("访客 钱先生", "13900139000");
    for (name, phone, extra, says) in [
        (
            name,
            phone,
            &["--from", "now", "--until", "+8d"][..],
            "at most 7 days",
        ),
        (
            name,
            phone,
            &["--from", "1000", "--until", "2000"][..],
            "already over",
        ),
        (
            name,
            phone,
            &["--from", "+2h", "--until", "+1h"][..],
            "after the start",
        ),
        (name, "call me", &[][..], "phone"),
        (" ", phone, &[][..], "name"),
    ] {
        let j = invite(name, phone, extra).expect(EXIT_REFUSED);
        assert_eq!(j["error"], "bad_request", "{extra:?}: {j}");
        assert!(
            j["message"].as_str().is_some_and(|m| m.contains(says)),
            "{extra:?}: {j}"
        );
    }
    let out = invite(name, phone, &["--until", "tomorrow"]);
    assert_ne!(out.code(), EXIT_OK, "{out:?}");
    assert!(out.stderr.contains("--until"), "{out:?}");
    assert_eq!(snapshot(&f.c), before, "no visitor code was issued");
    f.still_serving();
}

/// A lockdown decided at the node goes into the district policy when the hub adopts it: a
/// reason the policy cannot hold is refused at the node, not accepted there and lost later.
#[test]
fn a_lockdown_reason_longer_than_the_district_policy_holds_is_refused_at_the_node() {
    let f = fixture();
    let before = snapshot(&f.c);
    let too_long = "例".repeat(67); // 201 bytes
    let out = menjin_raw(&[
        "--json",
        "node",
        "lockdown",
        "--dir",
        p(&f.c.node_dir),
        "--reason",
        &too_long,
        "--by",
        "staff",
    ]);
    assert_eq!(out.code(), EXIT_REFUSED, "{out:?}");
    assert!(out.stderr.contains("200"), "names the limit: {out:?}");
    assert_eq!(snapshot(&f.c), before);
    assert_eq!(f.c.status()["locked"], false);
    f.still_serving();
}
