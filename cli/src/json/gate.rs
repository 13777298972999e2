//! `gate run --json`: one JSON object per line for a turnstile controller (a decision, a
//! vehicle, a problem with a line, a notice), and `gate discover --json`.
//!
//! A line's keys are in alphabetical order at every level, including the `answer` inside a
//! decision and the `notice` tag among a notice's fields: that is the order these lines have
//! had since the first controller read them ([`print_line`] sorts them).

use menjin_discovery::{Discovery, ProbeOutcome, Via};
use menjin_gate::{Decision, Notice};
use menjin_store::files::GateConfig;
use serde::Serialize;

use super::Check;

/// Prints one `gate run` line, its keys sorted at every level.
pub fn print_line(line: &impl Serialize) {
    // `serde_json::Value` keeps objects in a sorted map: going through it sorts the keys.
    let value = serde_json::to_value(line).expect("JSON counterparts serialize");
    println!("{value}");
}

/// A person decided.
#[derive(Serialize)]
pub struct DecisionLine {
    /// The decision, as `gate check --json` prints it.
    pub answer: Check,
    /// Offline, in degraded mode: the node silent too long, visitors refused.
    pub degraded: bool,
    /// Offline: the event's number in the gate's buffer; `null` online.
    pub gate_seq: Option<u64>,
    /// The line of standard input (from 1).
    pub line: usize,
    /// Decided by the gate alone (the node unreachable).
    pub offline: bool,
    /// The vehicle's plate for an occupant (`CAR <plate>` ... `END`), else `null`.
    pub plate: Option<String>,
}

impl DecisionLine {
    pub fn new(line: usize, d: &Decision, plate: Option<&str>) -> DecisionLine {
        DecisionLine {
            answer: Check::from(&d.answer),
            degraded: d.degraded,
            gate_seq: d.gate_seq,
            line,
            offline: d.offline,
            plate: plate.map(str::to_string),
        }
    }
}

/// A line that was not decided (garbage, an unreadable image, a refused scan), or the
/// offline events left at the end.
#[derive(Serialize)]
pub struct ProblemLine {
    /// What is wrong, for the guard.
    pub error: String,
    /// The line of standard input (from 1; the last line for what is left at the end).
    pub line: usize,
}

/// A vehicle at `END`: it passes only if every occupant does.
#[derive(Serialize)]
pub struct VehicleLine {
    pub allowed: bool,
    /// Occupants checked.
    pub occupants: usize,
    /// The plate.
    pub vehicle: String,
}

/// Something the guard must see, tagged by `notice`.
#[derive(Serialize)]
#[serde(tag = "notice", rename_all = "snake_case")]
pub enum NoticeLine {
    /// Connected to the node and subscribed (`node`: its address and how it was found).
    Online {
        node: String,
    },
    /// The node cannot be reached: the gate decides alone.
    Offline {
        why: String,
    },
    /// No word from the node for `silent_s` seconds: visitors refused.
    Degraded {
        silent_s: u64,
    },
    /// Back in touch after degraded mode.
    Recovered,
    /// The gate's clock minus the node's, milliseconds.
    ClockSkew {
        skew_ms: i64,
    },
    ClockAgrees,
    /// The offline buffer holds `pending` of `capacity` events (90 % or more).
    BufferAlarm {
        pending: u64,
        capacity: u64,
    },
    /// `stored` buffered events reached the node, every one up to `upto_gate_seq`.
    Uploaded {
        stored: u32,
        upto_gate_seq: u64,
    },
    /// A problem found in the cache (tampering, a node of another district, ...).
    Problem {
        what: String,
    },
    /// The lockdown the gate enforces changed.
    Lockdown {
        locked: bool,
        epoch: u64,
        reason: String,
    },
}

impl From<&Notice> for NoticeLine {
    fn from(n: &Notice) -> NoticeLine {
        match n.clone() {
            Notice::Online { node } => NoticeLine::Online { node },
            Notice::Offline { why } => NoticeLine::Offline { why },
            Notice::Degraded { silent_s } => NoticeLine::Degraded { silent_s },
            Notice::Recovered => NoticeLine::Recovered,
            Notice::ClockSkew { skew_ms } => NoticeLine::ClockSkew { skew_ms },
            Notice::ClockAgrees => NoticeLine::ClockAgrees,
            Notice::BufferAlarm { pending, capacity } => {
                NoticeLine::BufferAlarm { pending, capacity }
            }
            Notice::Uploaded {
                stored,
                upto_gate_seq,
            } => NoticeLine::Uploaded {
                stored,
                upto_gate_seq,
            },
            Notice::Problem { what } => NoticeLine::Problem { what },
            Notice::Lockdown {
                locked,
                epoch,
                reason,
            } => NoticeLine::Lockdown {
                locked,
                epoch,
                reason,
            },
        }
    }
}

/// `gate discover --json` (keys in alphabetical order at every level, as always).
#[derive(Serialize)]
pub struct DiscoverReport {
    /// Nodes of the gate's community advertised by mDNS; `null` if discovery is off or
    /// mDNS failed.
    pub advertised: Option<usize>,
    /// Every node tried, in order: the advertised ones, then the static address.
    pub candidates: Vec<Candidate>,
    /// The node chosen, `null` if none could be used (exit 1).
    pub chosen: Option<Chosen>,
    pub community: u32,
    /// The discovery settings used (gate.toml, or the command line).
    pub discovery: Settings,
    /// Why mDNS could not start, else `null`.
    pub mdns_error: Option<String>,
}

/// One node tried.
#[derive(Serialize)]
pub struct Candidate {
    /// The address that answered, or the last one tried.
    pub addr: String,
    /// `refused: ...` (the certificate chain or fingerprint did not check) or
    /// `unreachable: ...`; `null` when verified.
    pub error: Option<String>,
    /// The advertised fingerprint (hex); `null` for the static address.
    pub fingerprint: Option<String>,
    /// How long the whole connect took, microseconds (verified only).
    pub handshake_us: Option<u64>,
    /// The advertised instance name; `null` for the static address.
    pub instance: Option<String>,
    /// Round trip measured by QUIC during the handshake, microseconds (verified only).
    pub rtt_us: Option<u64>,
    pub verified: bool,
    /// `mdns` or `static`.
    pub via: &'static str,
}

/// The node chosen.
#[derive(Serialize)]
pub struct Chosen {
    pub addr: String,
    /// The certified key's fingerprint (hex).
    pub fingerprint: String,
    /// Microseconds.
    pub rtt_us: u64,
    /// `mdns` or `static`.
    pub via: &'static str,
}

/// The discovery settings.
#[derive(Serialize)]
pub struct Settings {
    /// Milliseconds of listening for advertisements.
    pub browse_ms: u64,
    pub enabled: bool,
    pub interfaces: Vec<String>,
}

fn via(v: Via) -> &'static str {
    match v {
        Via::Mdns => "mdns",
        Via::Static => "static",
    }
}

impl DiscoverReport {
    pub fn new(cfg: &GateConfig, d: &Discovery) -> DiscoverReport {
        let candidates = d
            .probes
            .iter()
            .map(|p| {
                let (verified, rtt_us, handshake_us, error) = match &p.outcome {
                    ProbeOutcome::Verified {
                        rtt_us,
                        handshake_us,
                    } => (true, Some(*rtt_us), Some(*handshake_us), None),
                    ProbeOutcome::Refused(why) => {
                        (false, None, None, Some(format!("refused: {why}")))
                    }
                    ProbeOutcome::Unreachable(why) => {
                        (false, None, None, Some(format!("unreachable: {why}")))
                    }
                };
                Candidate {
                    addr: p.addr.to_string(),
                    error,
                    fingerprint: p.fingerprint.clone(),
                    handshake_us,
                    instance: p.instance.clone(),
                    rtt_us,
                    verified,
                    via: via(p.via),
                }
            })
            .collect();
        let (advertised, mdns_error) = match &d.browsed {
            Some(Ok(n)) => (Some(*n), None),
            Some(Err(e)) => (None, Some(e.to_string())),
            None => (None, None),
        };
        DiscoverReport {
            advertised,
            candidates,
            chosen: d.found.as_ref().map(|f| Chosen {
                addr: f.addr.to_string(),
                fingerprint: f.fingerprint.clone(),
                rtt_us: f.rtt_us,
                via: via(f.via),
            }),
            community: cfg.community,
            discovery: Settings {
                browse_ms: cfg.discovery.browse_ms,
                enabled: cfg.discovery.enabled,
                interfaces: cfg.discovery.interfaces.clone(),
            },
            mdns_error,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(v: &impl Serialize) -> String {
        serde_json::to_value(v).unwrap().to_string()
    }

    /// The bytes a controller sees: the tag sorted among the fields, as it always was.
    #[test]
    fn notice_lines_are_tagged_and_sorted() {
        let n = Notice::Lockdown {
            locked: true,
            epoch: 3,
            reason: "case".into(),
        };
        assert_eq!(
            line(&NoticeLine::from(&n)),
            r#"{"epoch":3,"locked":true,"notice":"lockdown","reason":"case"}"#
        );
        assert_eq!(
            line(&NoticeLine::from(&Notice::Recovered)),
            r#"{"notice":"recovered"}"#
        );
        let n = Notice::BufferAlarm {
            pending: 90,
            capacity: 100,
        };
        assert_eq!(
            line(&NoticeLine::from(&n)),
            r#"{"capacity":100,"notice":"buffer_alarm","pending":90}"#
        );
        let n = Notice::ClockSkew { skew_ms: -1500 };
        assert_eq!(
            line(&NoticeLine::from(&n)),
            r#"{"notice":"clock_skew","skew_ms":-1500}"#
        );
    }
}
