//! The `--json` objects and `gate run --json` lines keep their field names (README, "JSON
//! output"): scripts and turnstile controllers read them. Each test runs real commands against
//! a real node and compares the exact set of keys of every object, so a field renamed, added
//! or dropped fails here first.

use serde_json::Value;

use crate::support::{Community, EXIT_REFUSED, Person, menjin, menjin_with_stdin, p};

/// The keys of a JSON object, sorted.
#[track_caller]
fn keys(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v
        .as_object()
        .unwrap_or_else(|| panic!("not a JSON object: {v}"))
        .keys()
        .cloned()
        .collect();
    k.sort();
    k
}

#[track_caller]
fn assert_keys(what: &str, v: &Value, expected: &[&str]) {
    let mut expected: Vec<String> = expected.iter().map(|s| s.to_string()).collect();
    expected.sort();
    assert_eq!(keys(v), expected, "{what}: {v}");
}

const HOLDER: &[&str] = &["name", "building", "door", "kind", "photo"];
const CHECK: &[&str] = &[
    "allowed",
    "reason",
    "fever",
    "holder",
    "seq",
    "node_time_ms",
    "passback",
];
const GATE_LINK: &[&str] = &[
    "gate",
    "connected",
    "last_contact_ms",
    "applied_version",
    "lockdown_epoch",
    "locked",
    "pending_events",
    "uploaded_upto",
    "skew_ms",
];

#[test]
fn node_answers_in_json_keep_their_field_names() {
    let c = Community::start();
    let gate = c.enrol_gate("lane-json");
    let receipt = c
        .declare(&Person::new("王芳", false, "19830521", 1, "3", "301"), &[])
        .ok();
    assert_keys(
        "declare",
        &receipt,
        &[
            "holder",
            "name",
            "kind",
            "channel",
            "outcome",
            "why",
            "code",
            "cred",
            "revoked",
            "declared_by",
            "has_photo",
        ],
    );
    assert_eq!(receipt["channel"], "online");
    let (host, code) = (
        receipt["holder"].as_str().unwrap(),
        receipt["code"].as_str().unwrap(),
    );
    assert_keys("show", &c.show(host), &keys_of(&receipt));

    let check = c.check(&gate, code, "36.6", &[]).ok();
    assert_keys("gate check", &check, CHECK);
    assert_keys("gate check holder", &check["holder"], HOLDER);

    let status = c.status();
    assert_keys(
        "node status",
        &status,
        &[
            "community",
            "community_name",
            "node_key_id",
            "residents",
            "residents_to_redeclare",
            "codes_active",
            "codes_revoked",
            "gates",
            "events_logged",
            "node_time_ms",
            "hub_connected",
            "hub_acked_seq",
            "locked",
            "lockdown_epoch",
            "lockdown_reason",
            "gate_links",
            "mirror_pending",
            "revoked",
        ],
    );
    assert_keys("node status gate link", &status["gate_links"][0], GATE_LINK);

    let log = c.log();
    assert_eq!(log.len(), 1);
    assert_keys(
        "log event",
        &log[0],
        &[
            "seq",
            "time_ms",
            "gate",
            "direction",
            "allowed",
            "reason",
            "fever",
            "temperature_dc",
            "cred",
            "holder",
            "kind",
            "plate",
            "offline",
            "passback",
        ],
    );

    let roster = c.roster();
    assert_keys(
        "roster",
        &roster,
        &[
            "community",
            "community_name",
            "campaign_start",
            "deadline",
            "buildings",
        ],
    );
    assert_keys(
        "roster building",
        &roster["buildings"][0],
        &[
            "building",
            "households",
            "residents",
            "cleared",
            "not_cleared",
            "codes_active",
            "passes_printed",
        ],
    );

    let visitor = menjin(&[
        "visitor",
        "invite",
        "--node-dir",
        c.nd(),
        "--host",
        host,
        "--name",
        "访客",
        "--phone",
        "13900139000",
    ])
    .ok();
    assert_keys(
        "visitor invite",
        &visitor,
        &["cred", "code", "host", "visitor_name", "from", "until"],
    );

    let refused = menjin(&["show", "--node-dir", c.nd(), "--holder", "0000000000000000"])
        .expect(EXIT_REFUSED);
    assert_keys("refusal", &refused, &["error", "message"]);
    assert_eq!(refused["error"], "not_found");
}

fn keys_of(v: &Value) -> Vec<&str> {
    v.as_object().unwrap().keys().map(String::as_str).collect()
}

#[test]
fn gate_run_json_lines_keep_their_field_names_in_alphabetical_order() {
    let c = Community::start();
    let gate = c.enrol_gate("lane-json");
    let (_, code) = c.declare_cleared(&Person::new("李娜", false, "19900101", 2, "5", "502"));
    let input = format!("36.6 {code}\ngarbage\nCAR 粤B12345\n36.5 {code}\nEND\n");
    let out = menjin_with_stdin(&["--json", "gate", "run", "--dir", p(&gate)], Some(&input));
    assert_eq!(out.code(), 0, "{out:?}");
    let raw: Vec<&str> = out.stdout.lines().collect();
    let lines: Vec<Value> = raw
        .iter()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();

    let online = lines
        .iter()
        .find(|v| v["notice"] == "online")
        .unwrap_or_else(|| panic!("no online notice: {}", out.stdout));
    assert_keys("online notice", online, &["node", "notice"]);

    let decisions: Vec<(&str, &Value)> = raw
        .iter()
        .zip(&lines)
        .filter(|(_, v)| v.get("notice").is_none())
        .map(|(r, v)| (*r, v))
        .collect();
    assert_eq!(decisions.len(), 4, "{}", out.stdout);
    let decision_keys = ["answer", "degraded", "gate_seq", "line", "offline", "plate"];
    let (raw_first, first) = decisions[0];
    assert_keys("decision line", first, &decision_keys);
    assert_keys("decision answer", &first["answer"], CHECK);
    assert_keys("decision holder", &first["answer"]["holder"], HOLDER);
    // Sorted at every level, the answer's own keys too.
    assert!(
        raw_first.starts_with(r#"{"answer":{"allowed":true,"fever":false,"holder":{"building":"5","door":"502","kind":"resident""#),
        "{raw_first}"
    );
    assert_keys("problem line", decisions[1].1, &["error", "line"]);
    assert_eq!(decisions[1].1["line"], 2);
    assert_keys("occupant line", decisions[2].1, &decision_keys);
    assert_eq!(decisions[2].1["plate"], "粤B12345");
    assert_keys(
        "vehicle line",
        decisions[3].1,
        &["allowed", "occupants", "vehicle"],
    );
    assert_eq!(
        decisions[3].0,
        r#"{"allowed":true,"occupants":1,"vehicle":"粤B12345"}"#
    );
}

#[test]
fn bench_web_reports_rate_latencies_and_the_size_of_every_page() {
    // A short run through the real binary: the shape of its figures, never their values.
    let out = menjin(&["bench", "web", "--clients", "3", "--declarations", "150"]).ok();
    assert_keys(
        "bench web",
        &out,
        &[
            "clients",
            "declarations",
            "declarations_per_s",
            "max_us",
            "p50_us",
            "p99_us",
            "pages",
            "seconds",
            "setup_ms",
        ],
    );
    assert_eq!(out["clients"], 3);
    assert_eq!(out["declarations"], 150, "{out}");
    for key in [
        "declarations_per_s",
        "p50_us",
        "p99_us",
        "max_us",
        "seconds",
    ] {
        assert!(out[key].as_f64().is_some_and(|v| v > 0.0), "{key}: {out}");
    }
    let pages = out["pages"].as_array().expect("pages");
    let names: Vec<&str> = pages.iter().map(|p| p["page"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "code",
            "form",
            "result",
            "mine",
            "mine (64 members)",
            "assets/style.css",
            "assets/htmx.min.js",
            "assets/sse.min.js",
            "assets/clock.js"
        ]
    );
    for page in pages {
        assert_keys("bench web page", page, &["bytes", "page"]);
        assert!(page["bytes"].as_u64().is_some_and(|b| b > 100), "{page}");
    }
    let bytes = |name: &str| {
        pages.iter().find(|p| p["page"] == name).unwrap()["bytes"]
            .as_u64()
            .unwrap()
    };
    // The bench asks for gzip as a browser does: htmx (52,182 bytes embedded) comes
    // compressed; a full home's page, 64 QR codes, stays under the 100 KB a page may weigh.
    assert!(
        (10_000..52_182).contains(&bytes("assets/htmx.min.js")),
        "{out}"
    );
    assert!(bytes("mine (64 members)") > bytes("mine"), "{out}");
    assert!(bytes("mine (64 members)") < 100 * 1024, "{out}");
}
