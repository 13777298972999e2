//! `menjin gate run`: a scanner's lines on standard input, one decision per line out.

use crate::support::{Community, Person, gate_run_lines, menjin, menjin_with_stdin, p};

#[test]
fn gate_daemon_decides_each_scanned_line_and_checks_vehicles_person_by_person() {
    let c = Community::start();
    let gate = c.enrol_gate("lane-1");
    let (host, resident) =
        c.declare_cleared(&Person::new("王芳", false, "19830521", 1, "3", "301"));
    let visitor = menjin(&[
        "visitor",
        "invite",
        "--node-dir",
        c.nd(),
        "--host",
        &host,
        "--name",
        "访客",
        "--phone",
        "13900139000",
    ])
    .ok()["code"]
        .as_str()
        .unwrap()
        .to_string();
    let input = format!(
        "36.6 {resident}\n\
         garbage from the scanner\n\
         38.2 {resident}\n\
         CAR 粤B12345\n36.5 {resident}\nEND\n\
         CAR 粤B99999\n36.5 {resident}\n36.4 {visitor}\nEND\n"
    );
    let out = menjin_with_stdin(&["--json", "gate", "run", "--dir", p(&gate)], Some(&input));
    assert_eq!(out.code(), 0, "{out:?}");
    let lines = gate_run_lines(&out.stdout);
    assert_eq!(lines.len(), 8, "{}", out.stdout);
    assert_eq!(lines[0]["answer"]["allowed"], true);
    assert_eq!(lines[1]["line"], 2);
    assert!(
        lines[1]["error"].as_str().unwrap().contains("temperature"),
        "{}",
        lines[1]
    );
    assert_eq!(lines[2]["answer"]["reason"], "fever");
    assert_eq!(lines[3]["answer"]["allowed"], true);
    assert_eq!(
        lines[4],
        serde_json::json!({ "vehicle": "粤B12345", "occupants": 1, "allowed": true })
    );
    assert_eq!(lines[5]["answer"]["allowed"], true);
    assert_eq!(lines[6]["answer"]["reason"], "vehicle_barred");
    assert_eq!(
        lines[7],
        serde_json::json!({ "vehicle": "粤B99999", "occupants": 2, "allowed": false })
    );
    // Every occupant is logged, with the plate.
    let log = c.log();
    assert_eq!(log.len(), 5);
    assert_eq!(log.iter().filter(|e| e["plate"] == "粤B99999").count(), 2);
}

#[test]
fn gate_daemon_reads_codes_from_qr_images_and_refuses_unreadable_ones() {
    let c = Community::start();
    let gate = c.enrol_gate("lane-img");
    let png = c.file("code.png");
    let person = Person::new("李娜", false, "19900101", 2, "5", "502");
    c.declare(&person, &["--qr-png", p(&png)]).ok();
    let garbage = c.file("garbage.png");
    std::fs::write(&garbage, b"\x89PNG\r\n\x1a\nnot really").unwrap();
    let input = format!(
        "36.6 {}\n36.6 {}\n36.6 {}\n36.7 {}\n",
        png.display(),
        garbage.display(),
        c.file("missing.png").display(),
        png.display()
    );
    let out = menjin_with_stdin(&["--json", "gate", "run", "--dir", p(&gate)], Some(&input));
    assert_eq!(out.code(), 0, "{out:?}");
    // Decisions and problems only: the daemon's notices (online, ...) come in between.
    let lines = gate_run_lines(&out.stdout);
    assert_eq!(lines.len(), 4, "{}", out.stdout);
    assert_eq!(lines[0]["answer"]["allowed"], true, "{}", lines[0]);
    let why = lines[1]["error"].as_str().unwrap();
    assert!(why.contains("not a readable PNG"), "{why}");
    let why = lines[2]["error"].as_str().unwrap();
    assert!(why.contains("missing.png"), "{why}");
    // The gate kept working after the bad images.
    assert_eq!(lines[3]["answer"]["allowed"], true, "{}", lines[3]);
    // Only the two decided persons are logged.
    assert_eq!(c.log().len(), 2);
}
