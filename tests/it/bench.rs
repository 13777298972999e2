//! The district benches through the real binary, at a size that runs in seconds: the shape
//! and sanity of their figures, never their values as targets.

use serde_json::Value;

use crate::support::menjin;

#[track_caller]
fn positive(v: &Value, key: &str) -> f64 {
    let x = v[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} is not a number: {v}"));
    assert!(x > 0.0, "{key}: {v}");
    x
}

#[test]
fn bench_hub_acknowledges_every_event_it_was_sent_and_holds_every_roster() {
    let out = menjin(&[
        "bench",
        "hub",
        "--communities",
        "3",
        "--residents",
        "50",
        "--links",
        "3",
        "--seconds",
        "1",
    ])
    .ok();
    assert_eq!(out["communities_held"], 3, "{out}");
    assert_eq!(out["residents_held"], 150, "{out}");
    positive(&out, "build_s");
    let addr = positive(&out, "cold_start_addr_ms");
    assert!(positive(&out, "cold_start_status_ms") >= addr, "{out}");
    let (rss, peak) = (
        positive(&out, "hub_rss_mb"),
        positive(&out, "hub_peak_rss_mb"),
    );
    assert!(peak >= rss, "{out}");
    let phases = out["ingest"].as_array().expect("ingest phases");
    let batches: Vec<u64> = phases
        .iter()
        .map(|p| p["batch"].as_u64().unwrap())
        .collect();
    assert_eq!(batches, [1, 100]);
    for p in phases {
        assert_eq!(p["links"], 3, "{p}");
        let sent = p["events_sent"].as_u64().expect("events_sent");
        assert!(sent > 0, "{p}");
        assert_eq!(
            p["events_acked"].as_u64(),
            Some(sent),
            "every event acknowledged: {p}"
        );
        positive(p, "events_per_s");
    }
}

#[test]
fn bench_lockdown_reports_the_hub_process_and_what_other_nodes_got() {
    let out = menjin(&[
        "bench",
        "lockdown",
        "--nodes",
        "2",
        "--gates-per-node",
        "1",
        "--rounds",
        "2",
    ])
    .ok();
    assert_eq!(out["missing"], 0, "{out}");
    assert_eq!(out["applied"], 2, "{out}");
    assert!(out["after_partition_ms"].as_f64().is_some(), "{out}");
    for key in [
        "lockdown_p99_ms",
        "revocation_p99_ms",
        "hub_answer_p99_ms",
        "hub_rss_mb",
    ] {
        positive(&out, key);
    }
    assert!(
        out["hub_peak_rss_mb"].as_f64() >= out["hub_rss_mb"].as_f64(),
        "{out}"
    );
    // A lockdown goes out from the hub: it sends something for every one.
    positive(&out, "hub_sync_bytes_per_lockdown");
    assert!(out["hub_cpu_ms_per_lockdown"].as_f64().is_some(), "{out}");
    let one = &out["one_community"];
    assert_eq!(one["rounds"], 2, "{one}");
    assert_eq!(one["other_nodes"], 1, "{one}");
    assert_eq!(one["missing"], 0, "{one}");
    positive(one, "lockdown_p99_ms");
    positive(one, "locked_node_bytes_per_lockdown");
    // Nothing of another community's lockdown reaches a node's gates.
    assert_eq!(one["other_gate_updates"], 0, "{one}");
    for key in ["other_node_bytes", "idle_node_bytes", "window_ms"] {
        assert!(one[key].as_f64().is_some_and(|x| x >= 0.0), "{key}: {one}");
    }
}
