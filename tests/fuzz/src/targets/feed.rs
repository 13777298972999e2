//! The trust feed a gate reads from its node: length-prefixed `GateFeed` frames, decoded as
//! `FeedStream::next` does and applied to a real `GateCache` (sled on disk) as the gate's
//! link task does.

use std::sync::{Mutex, OnceLock};

use menjin_gate::cache::GateCache;
use menjin_proto::feed::{FEED_FRAME_LEN_MAX, GateFeed, GateLockdown, TrustSnapshot};
use menjin_proto::wire;

use crate::fixtures::{self, COMMUNITY, NOW};

/// Frames one input may carry.
const FRAMES_MAX: usize = 16;

struct Gate {
    cache: GateCache,
    // Kept for the life of the process (the cache's folder).
    _dir: tempfile::TempDir,
}

/// One cache per process (opening sled takes milliseconds); each input starts from
/// [`base_snapshot`], so what an input leaves behind does not carry over.
fn gate() -> &'static Mutex<Gate> {
    static GATE: OnceLock<Mutex<Gate>> = OnceLock::new();
    GATE.get_or_init(|| {
        let dir = tempfile::tempdir().expect("a temporary folder for the gate cache");
        let (cache, _) = GateCache::open(
            &dir.path().join("cache"),
            &[9; 32],
            fixtures::root().verifying_key(),
            COMMUNITY,
            1_000,
        )
        .expect("gate cache opens");
        Mutex::new(Gate { cache, _dir: dir })
    })
}

/// A valid snapshot from the fixture node: incarnation 1, version 1.
pub fn base_snapshot() -> TrustSnapshot {
    TrustSnapshot {
        incarnation: 1,
        version: 1,
        node_time_ms: NOW * 1_000,
        community: COMMUNITY,
        node_cert: fixtures::node_cert().encode(),
        previous_node_cert: None,
        lockdown: GateLockdown::default(),
        revoked_node_keys: Vec::new(),
        residents_may_leave: false,
        revoked: vec![menjin_proto::credential::CredId([5; 8])],
        visitors: Vec::new(),
    }
}

/// Length-prefixed feed frames after the base snapshot.
pub fn feed_frames(data: &[u8]) {
    let mut gate = gate().lock().unwrap_or_else(|p| p.into_inner());
    gate.cache
        .apply_snapshot(base_snapshot())
        .expect("the base snapshot applies");
    for body in crate::frames(data, FRAMES_MAX) {
        if body.len() > FEED_FRAME_LEN_MAX {
            return;
        }
        let Ok(frame) = wire::decode::<GateFeed>(body, FEED_FRAME_LEN_MAX) else {
            return;
        };
        let applied = match frame {
            GateFeed::Snapshot(s) => gate.cache.apply_snapshot(s),
            GateFeed::Update(u) => gate.cache.apply_update(&u),
            GateFeed::Heartbeat { .. } | GateFeed::Refused(_) => Ok(()),
        };
        let trust = gate.cache.trust();
        assert_eq!(trust.community, COMMUNITY, "trust for another community");
        assert!(!trust.certs.is_empty(), "trust without a node certificate");
        if applied.is_err() {
            return;
        }
    }
}
