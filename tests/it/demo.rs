//! `menjin demo`, the README's first command: the whole district on loopback, and the JSON
//! summary scripts read.

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
