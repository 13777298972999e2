//! `menjin demo`, the README's first command: the whole district on loopback, the JSON
//! summary scripts read, and `demo --serve` keeping the pages up until interrupted.

use crate::support::menjin;

#[test]
fn demo_converges_and_its_summary_adds_up() {
    let s = menjin(&["demo"]).ok();
    assert_eq!(s["communities"], 3, "{s}");
    assert_eq!(s["converged"], true, "{s}");
    assert_eq!(s["hub_events"], s["events_logged"], "{s}");
    assert_eq!(
        s["events_logged"], s["checks"],
        "every check logged once: {s}"
    );
    let (allowed, denied) = (s["allowed"].as_u64(), s["denied"].as_u64());
    assert_eq!(
        allowed.zip(denied).map(|(a, d)| a + d),
        s["checks"].as_u64()
    );
    assert!(s["denied_by_reason"]["lockdown"].as_u64() >= Some(1), "{s}");
    assert!(s["lockdown_propagation_ms"].is_u64(), "{s}");
    let offline = s["offline_decisions"].as_u64().expect("offline_decisions");
    assert!(offline >= 1, "{s}");
    assert_eq!(s["uploaded_after_reconnect"].as_u64(), Some(offline), "{s}");
}

/// `menjin demo --serve`: after the story the main community's pages answer on the address
/// printed, with the household codes and staff logins printed beside it, and a gate's
/// screen for the guard; Ctrl-C (SIGINT) stops the district cleanly.
#[test]
fn demo_serve_keeps_the_pages_up_until_interrupted() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    let mut child = Command::new(env!("CARGO_BIN_EXE_menjin"))
        .args(["demo", "--serve", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("menjin demo --serve starts");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut lines = Vec::new();
    while !lines.iter().any(|l: &String| l.starts_with("Ctrl-C")) {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(l) => lines.push(l),
            Err(_) => {
                let _ = child.kill();
                panic!("demo --serve printed no URL in time: {lines:#?}");
            }
        }
    }
    let url = lines
        .iter()
        .find_map(|l| {
            l.split_once("served on http://")
                .map(|(_, u)| u.trim_end_matches('/'))
        })
        .expect("the pages' URL")
        .to_string();
    assert!(
        lines.iter().any(|l| l.contains("door 1205:")),
        "a household code is printed: {lines:#?}"
    );
    assert!(
        lines.iter().any(|l| l.contains("clerk: name 李文")),
        "a clerk login is printed: {lines:#?}"
    );
    let page = crate::web::http_get(&url, "/").expect("the code page answers");
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(page.contains("住户码"), "{page}");
    let staff = crate::web::http_get(&url, "/staff").expect("the staff login answers");
    assert!(staff.starts_with("HTTP/1.1 200"), "{staff}");
    // The guard's screen of the kiosk gate, with its two scans (36.5 and 38.5 °C) on it.
    let screen = lines
        .iter()
        .find_map(|l| {
            l.split_once("guard screen of gate kiosk-1")
                .and_then(|(_, rest)| rest.split_once("http://"))
                .map(|(_, u)| u.trim_end_matches('/').to_string())
        })
        .expect("the guard screen's URL");
    let kiosk = crate::web::http_get(&screen, "/").expect("the guard screen answers");
    assert!(kiosk.starts_with("HTTP/1.1 200"), "{kiosk}");
    assert!(
        kiosk.contains("禁止通行") && kiosk.contains("准许通行"),
        "{kiosk}"
    );
    let pid = child.id().to_string();
    let sent = Command::new("kill").args(["-INT", &pid]).status();
    assert!(sent.is_ok_and(|s| s.success()), "SIGINT sent");
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("demo --serve did not stop after SIGINT");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        status.success(),
        "demo --serve exits 0 after SIGINT: {status}"
    );
}
