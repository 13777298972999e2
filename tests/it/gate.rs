//! `menjin gate run`: a scanner's lines on standard input, one decision per line out.

use std::path::Path;

use crate::support::{Community, Person, gate_run_lines, menjin, menjin_with_stdin, p};

/// Sets `[scanner] spool` in a gate's gate.toml (enrolment writes no `[scanner]` table).
fn set_spool(gate: &Path, spool: &Path) {
    let path = gate.join("gate.toml");
    let mut text = std::fs::read_to_string(&path).expect("gate.toml");
    text.push_str(&format!("\n[scanner]\nspool = {:?}\n", p(spool)));
    std::fs::write(&path, text).expect("write gate.toml");
}

/// A spool directory in the community's temporary directory.
fn spool_dir(c: &Community) -> std::path::PathBuf {
    let spool = c.file("spool");
    std::fs::create_dir_all(&spool).expect("spool directory");
    spool
}

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
    let spool = spool_dir(&c);
    set_spool(&gate, &spool);
    let png = spool.join("code.png");
    let person = Person::new("李娜", false, "19900101", 2, "5", "502");
    c.declare(&person, &["--qr-png", p(&png)]).ok();
    let garbage = spool.join("garbage.png");
    std::fs::write(&garbage, b"\x89PNG\r\n\x1a\nnot really").unwrap();
    // The scanner may type the image's full path or its name in the spool.
    let input = format!(
        "36.6 {}\n36.6 garbage.png\n36.6 {}\n36.7 code.png\n",
        png.display(),
        spool.join("missing.png").display(),
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

#[test]
fn scan_naming_a_fifo_is_refused_without_hanging_and_the_next_scan_is_decided() {
    let c = Community::start();
    let gate = c.enrol_gate("lane-fifo");
    let (_, resident) = c.declare_cleared(&Person::new("张伟", true, "19850312", 3, "2", "201"));
    let spool = spool_dir(&c);
    let fifo = spool.join("scan.png");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("run mkfifo");
    assert!(made.success(), "mkfifo failed");
    let args = ["--json", "gate", "run", "--dir", p(&gate)];
    // No spool configured: a line that is not a code is refused, never opened.
    let input = format!("36.6 {}\n36.6 {resident}\n", fifo.display());
    let out = menjin_with_stdin(&args, Some(&input));
    assert_eq!(out.code(), 0, "{out:?}");
    let lines = gate_run_lines(&out.stdout);
    assert_eq!(lines.len(), 2, "{}", out.stdout);
    let why = lines[0]["error"].as_str().unwrap();
    assert!(why.contains("no [scanner] spool is configured"), "{why}");
    assert_eq!(lines[1]["answer"]["allowed"], true, "{}", lines[1]);
    // With the spool: a FIFO in it, by name or by path, is not a regular file.
    set_spool(&gate, &spool);
    let input = format!("36.6 scan.png\n36.6 {}\n36.6 {resident}\n", fifo.display());
    let out = menjin_with_stdin(&args, Some(&input));
    assert_eq!(out.code(), 0, "{out:?}");
    let lines = gate_run_lines(&out.stdout);
    assert_eq!(lines.len(), 3, "{}", out.stdout);
    for l in &lines[..2] {
        let why = l["error"].as_str().unwrap();
        assert!(why.contains("not a regular file"), "{why}");
    }
    assert_eq!(lines[2]["answer"]["allowed"], true, "{}", lines[2]);
}

#[test]
fn scan_naming_a_path_outside_the_spool_is_refused_and_later_scans_are_decided() {
    let c = Community::start();
    let gate = c.enrol_gate("lane-proc");
    let (_, resident) = c.declare_cleared(&Person::new("刘洋", true, "19780101", 4, "6", "602"));
    let args = ["--json", "gate", "run", "--dir", p(&gate)];
    // No spool: /proc/self/fd/0 (the scanner's own input) is refused, not read.
    let input = format!("36.6 /proc/self/fd/0\n36.6 {resident}\n36.7 {resident}\n");
    let out = menjin_with_stdin(&args, Some(&input));
    assert_eq!(out.code(), 0, "{out:?}");
    let lines = gate_run_lines(&out.stdout);
    assert_eq!(lines.len(), 3, "{}", out.stdout);
    let why = lines[0]["error"].as_str().unwrap();
    assert!(why.contains("no [scanner] spool is configured"), "{why}");
    assert_eq!(lines[1]["answer"]["allowed"], true, "{}", lines[1]);
    assert_eq!(lines[2]["answer"]["allowed"], true, "{}", lines[2]);
    // With a spool: only files inside it, however the path is spelled.
    let spool = spool_dir(&c);
    set_spool(&gate, &spool);
    let outside = c.file("outside.png");
    let other = Person::new("陈静", false, "19950707", 5, "6", "603");
    c.declare(&other, &["--qr-png", p(&outside)]).ok();
    std::fs::copy(&outside, spool.join("inside.png")).expect("copy the code image");
    std::os::unix::fs::symlink(&outside, spool.join("link.png")).expect("symlink");
    let input = format!(
        "36.6 /proc/self/fd/0\n36.6 ../outside.png\n36.6 {}\n36.6 link.png\n\
         36.6 {}/../outside.png\n36.6 inside.png\n36.7 {resident}\n",
        outside.display(),
        spool.display(),
    );
    let out = menjin_with_stdin(&args, Some(&input));
    assert_eq!(out.code(), 0, "{out:?}");
    let lines = gate_run_lines(&out.stdout);
    assert_eq!(lines.len(), 7, "{}", out.stdout);
    for l in &lines[..5] {
        let why = l["error"].as_str().unwrap_or_else(|| panic!("{l}"));
        assert!(why.contains("outside the spool"), "{why}");
    }
    assert_eq!(lines[5]["answer"]["allowed"], true, "{}", lines[5]);
    assert_eq!(lines[6]["answer"]["allowed"], true, "{}", lines[6]);
}

#[test]
fn scans_are_echoed_to_the_guard_without_control_characters() {
    let c = Community::start();
    let gate = c.enrol_gate("lane-esc");
    let (_, resident) = c.declare_cleared(&Person::new("赵磊", true, "19880808", 6, "1", "101"));
    let hostile = "36.6 \x1b[2J\x1b]0;owned\x07scan\x1b[31m.png\n\
                   36.6 MJ:\x1b[2J\x1b[31mRED\n\
                   CAR \x1b[2Jx\nEND\n\
                   \x1b[2J\x1b[H\n";
    let input = format!("{hostile}36.6 {resident}\n");
    let spool = spool_dir(&c);
    for with_spool in [false, true] {
        if with_spool {
            set_spool(&gate, &spool);
        }
        // The guard's terminal: text output, logs on standard error.
        let out = menjin_with_stdin(&["gate", "run", "--dir", p(&gate)], Some(&input));
        assert_eq!(out.code(), 0, "{out:?}");
        for (name, text) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
            assert!(
                !text.chars().any(|ch| ch.is_control() && ch != '\n'),
                "{name} (spool: {with_spool}) holds control characters: {text:?}"
            );
        }
        assert!(out.stdout.contains("?? line 1"), "{}", out.stdout);
        assert!(out.stdout.contains("ALLOW"), "{}", out.stdout);
    }
}
