//! Fuzz targets for every decoder that reads input from a peer, a scanner, a file or a
//! person: each target calls the real decoder and, where it is cheap, checks an invariant
//! (what decodes encodes back to the same value). A target must never panic: a panic is a
//! crash that libFuzzer reports (README "Fuzzing").
//!
//! The libFuzzer binary (`src/main.rs`) picks the target named by `MENJIN_FUZZ_TARGET`;
//! [`seeds`] makes each target's starting corpus from real encoders (keys are fixed, so
//! the seeds are the same on every run). This crate is test code: it must never be a
//! dependency of anything.

pub mod fixtures;
pub mod seeds;
pub mod targets;

/// A target: a name (the corpus folder's) and the function libFuzzer calls per input.
pub struct Target {
    /// Stable name, `[a-z_]+`.
    pub name: &'static str,
    /// What it feeds, for `run.sh`'s table.
    pub what: &'static str,
    /// Runs one input.
    pub run: fn(&[u8]),
}

/// Every target, in the order `run.sh` runs them.
pub const TARGETS: &[Target] = &[
    Target {
        name: "code_text",
        what: "SignedCode::from_text (MJ: + base45), verify",
        run: targets::codes::code_text,
    },
    Target {
        name: "code_bytes",
        what: "SignedCode::decode (binary layout)",
        run: targets::codes::code_bytes,
    },
    Target {
        name: "household_code",
        what: "HouseholdCode::parse",
        run: targets::codes::household_code,
    },
    Target {
        name: "node_cert",
        what: "NodeCert::decode, verify",
        run: targets::codes::node_cert,
    },
    Target {
        name: "peer_cert",
        what: "tls::parse_peer_cert (X.509 DER)",
        run: targets::codes::peer_cert,
    },
    Target {
        name: "gate_request",
        what: "wire::decode::<GateRequest>",
        run: targets::wire::gate_request,
    },
    Target {
        name: "console_request",
        what: "wire::decode::<ConsoleRequest>",
        run: targets::wire::console_request,
    },
    Target {
        name: "hub_request",
        what: "wire::decode::<HubRequest>",
        run: targets::wire::hub_request,
    },
    Target {
        name: "response",
        what: "wire::decode::<Response>",
        run: targets::wire::response,
    },
    Target {
        name: "link_frames",
        what: "net::frame: length-prefixed LinkFrames",
        run: targets::wire::link_frames,
    },
    Target {
        name: "sync_frames",
        what: "Replica::handle_message (SyncFrame), poll_transmit",
        run: targets::sync::sync_frames,
    },
    Target {
        name: "sync_message",
        what: "an Automerge sync message in a SyncFrame, to hub and node",
        run: targets::sync::sync_message,
    },
    Target {
        name: "feed_frames",
        what: "GateFeed frames applied to a gate's GateCache",
        run: targets::feed::feed_frames,
    },
    Target {
        name: "node_toml",
        what: "NodeDir::read_config",
        run: targets::config::node_toml,
    },
    Target {
        name: "hub_toml",
        what: "NodeDir::read_hub_config",
        run: targets::config::hub_toml,
    },
    Target {
        name: "gate_toml",
        what: "GateDir::read_config",
        run: targets::config::gate_toml,
    },
    Target {
        name: "qr_png",
        what: "qrimage::decode_png",
        run: targets::images::qr_png,
    },
    Target {
        name: "photo",
        what: "photo::check_photo",
        run: targets::images::photo,
    },
];

/// The target called `name`.
pub fn target(name: &str) -> Option<&'static Target> {
    TARGETS.iter().find(|t| t.name == name)
}

/// Splits `data` into frames the way the streams do: a 4-byte big-endian length, then that
/// many bytes. A length past the end takes what is left (the stream would have failed; the
/// decoder still sees the bytes). At most `max` frames.
pub fn frames(data: &[u8], max: usize) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut rest = data;
    while rest.len() >= 4 && out.len() < max {
        let len = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        rest = &rest[4..];
        let take = len.min(rest.len());
        out.push(&rest[..take]);
        rest = &rest[take..];
    }
    out
}

/// The inverse of [`frames`].
pub fn join_frames<B: AsRef<[u8]>>(frames: &[B]) -> Vec<u8> {
    let mut out = Vec::new();
    for f in frames {
        let f = f.as_ref();
        out.extend_from_slice(&(f.len() as u32).to_be_bytes());
        out.extend_from_slice(f);
    }
    out
}
