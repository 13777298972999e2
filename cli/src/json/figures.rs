//! The figures of `demo --json` and of the benches' `--json`: one object each, printed at the
//! end. Keys in alphabetical order (the order these objects have always had). Latencies are
//! `null` where there were no samples.

use std::collections::BTreeMap;

use serde::Serialize;

/// `demo --json`: what the demonstration did, and whether it held together.
#[derive(Serialize)]
pub struct Demo {
    /// Checks that allowed, at every gate of every community.
    pub allowed: u64,
    /// Gate checks made (online and offline).
    pub checks: u64,
    /// Codes issued by cleared declarations.
    pub codes_issued: u64,
    /// Communities in the district.
    pub communities: usize,
    /// The hub holds every community's log and roster as the nodes do.
    pub converged: bool,
    /// Declarations accepted (any outcome).
    pub declared: u64,
    /// Checks that denied.
    pub denied: u64,
    /// Denials per reason name (`fever`, `lockdown`, ...; absent: none).
    pub denied_by_reason: BTreeMap<String, u64>,
    /// The whole demo, milliseconds.
    pub elapsed_ms: u64,
    /// Gate events the nodes logged (equals `checks`).
    pub events_logged: u64,
    /// Checks flagged for fever.
    pub fever_flagged: u64,
    /// Gate events stored at the hub.
    pub hub_events: u64,
    /// People in the rosters replicated at the hub.
    pub hub_residents: usize,
    /// From the hub's lockdown command to the node enforcing it, milliseconds.
    pub lockdown_propagation_ms: u64,
    /// Declarations whose outcome gave no code (quarantine, hospital).
    pub not_cleared: u64,
    /// Decisions a gate made alone while its node was stopped.
    pub offline_decisions: u64,
    /// Printed passes made.
    pub passes_printed: u64,
    /// Declarations the node refused (invalid forms).
    pub refused_declarations: u64,
    /// Offline decisions the node stored once it was back (equals `offline_decisions`).
    pub uploaded_after_reconnect: u64,
}

/// `bench gate --offline --json`: a gate deciding alone, its node stopped.
#[derive(Serialize)]
pub struct BenchGateOffline {
    /// Decisions that allowed (every code is valid: equals `checks`).
    pub allowed: u64,
    /// Events in the gate's buffer afterwards.
    pub buffered: u64,
    pub checks: usize,
    /// Decisions per second, rounded.
    pub checks_per_s: f64,
    /// Latency of one decision, microseconds.
    pub max_us: f64,
    pub p50_us: f64,
    pub p99_us: f64,
}

/// `bench gate --json`: concurrent gates against one node over QUIC.
#[derive(Serialize)]
pub struct BenchGate {
    pub allowed: u64,
    /// Checks answered.
    pub checks: u64,
    /// Checks per second, rounded.
    pub checks_per_s: f64,
    /// CPU time of the process (client and node) per check, microseconds, rounded; `null`
    /// where it cannot be read.
    pub cpu_us_per_check: Option<f64>,
    pub elapsed_ms: u64,
    /// Gate events logged (flushed) during the run.
    pub events_logged: u64,
    pub gates: usize,
    /// Latency of one check, microseconds, rounded.
    pub max_us: f64,
    pub p50_us: f64,
    pub p999_us: f64,
    pub p99_us: f64,
}

/// `bench lockdown --json`: from the hub's console to every gate applying it.
#[derive(Serialize)]
pub struct BenchLockdown {
    /// After the partition healed, until the lockdown issued during it reached every gate
    /// of the cut node, milliseconds; `null` if it did not in time.
    pub after_partition_ms: Option<f64>,
    /// Gates that applied the last lockdown round.
    pub applied: usize,
    /// Gates in all (`nodes` × `gates_per_node`).
    pub gates: usize,
    pub gates_per_node: usize,
    /// Command to the hub's answer, milliseconds (median).
    pub hub_answer_p50_ms: f64,
    pub hub_answer_p99_ms: f64,
    /// The hub process's CPU time (user and system) over the all-community rounds, per
    /// lockdown, milliseconds; `null` without `/proc`.
    pub hub_cpu_ms_per_lockdown: Option<f64>,
    /// The hub process's peak resident memory (VmHWM), MB.
    pub hub_peak_rss_mb: Option<f64>,
    /// The hub process's resident memory at the end (VmRSS), MB.
    pub hub_rss_mb: Option<f64>,
    /// Replication bytes and frames the hub sent over the all-community rounds, per lockdown.
    pub hub_sync_bytes_per_lockdown: f64,
    pub hub_sync_frames_per_lockdown: f64,
    /// Lockdowns and lifts, command to gate first applied, milliseconds.
    pub lockdown_p50_ms: f64,
    pub lockdown_p99_ms: f64,
    /// All samples (lockdowns and revocations), command to gate applied, milliseconds.
    pub max_ms: f64,
    /// Changes a gate missed (not applied within the round's timeout).
    pub missing: usize,
    /// Command to the node having it, milliseconds (median).
    pub node_has_it_p50_ms: f64,
    pub nodes: usize,
    /// One community locked down per round, and what the other nodes got of it.
    pub one_community: BenchLockdownOne,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// How long the node's link was cut, milliseconds.
    pub partition_ms: u64,
    /// Health-list revocations, hub to every gate, milliseconds.
    pub revocation_p50_ms: f64,
    pub revocation_p99_ms: f64,
    pub rounds: usize,
    /// Samples in all.
    pub samples: usize,
}

/// The `one_community` phase of `bench lockdown --json`: one community locked down per
/// round; what it cost the hub, that community's node, and every other node.
#[derive(Serialize)]
pub struct BenchLockdownOne {
    pub hub_cpu_ms_per_lockdown: Option<f64>,
    pub hub_sync_bytes_per_lockdown: f64,
    pub hub_sync_frames_per_lockdown: f64,
    /// Per node over an idle window as long as the phase (`window_ms`): the replica's
    /// periodic summaries, which reach every node whatever happens.
    pub idle_node_busy_us: f64,
    pub idle_node_bytes: f64,
    pub idle_node_frames: f64,
    /// What the locked community's node received, per lockdown.
    pub locked_node_bytes_per_lockdown: u64,
    pub locked_node_frames_per_lockdown: u64,
    /// Command to each of its gates first applying it, milliseconds.
    pub lockdown_p50_ms: f64,
    pub lockdown_p99_ms: f64,
    pub missing: usize,
    /// Feed updates that the other nodes' gates applied during the phase, in all.
    pub other_gate_updates: u64,
    /// Per other node over the phase: time taking in the hub's frames (µs), bytes, frames.
    pub other_node_busy_us: f64,
    pub other_node_bytes: f64,
    pub other_node_frames: f64,
    pub other_nodes: usize,
    /// Over every other node and the whole phase.
    pub others_bytes: u64,
    pub others_frames: u64,
    pub rounds: usize,
    /// How long the phase lasted (and the idle window after it), milliseconds.
    pub window_ms: u64,
}

/// `bench sync --json`: one community's roster to an empty hub, a revocation, a restart.
#[derive(Serialize)]
pub struct BenchSync {
    /// This process's peak resident memory, MB.
    pub bench_process_peak_rss_mb: f64,
    /// This process's resident memory at the end, MB.
    pub bench_process_rss_mb: f64,
    /// The whole bench, seconds (one decimal).
    pub elapsed_s: f64,
    /// Importing the residents, milliseconds.
    pub import_ms: f64,
    /// The first sync to the empty hub: bytes and frames both ways, milliseconds.
    pub initial_sync_bytes: u64,
    pub initial_sync_frames: u64,
    pub initial_sync_ms: f64,
    /// A restarted node process: until it answers its first gate check, milliseconds.
    pub node_cold_start_ms: f64,
    /// Until `Node::open` returned and the endpoint was bound, milliseconds.
    pub node_open_ms: f64,
    /// The restarted node's resident memory, MB; `null` where it cannot be read.
    pub node_rss_mb: Option<f64>,
    pub residents: usize,
    /// Sync bytes after the restart (nothing to resend: small).
    pub restart_resync_bytes: u64,
    /// One revocation: bytes and frames both ways, until the hub has it, milliseconds.
    pub revocation_bytes: u64,
    /// The declaration that revokes, milliseconds.
    pub revocation_declare_ms: f64,
    pub revocation_frames: u64,
    pub revocation_sync_ms: f64,
    /// Sync sessions restarted (expected 0 on a healthy link).
    pub session_restarts: u64,
}

/// `bench web --json`: concurrent phones declaring through the resident pages over HTTP on
/// loopback.
#[derive(Serialize)]
pub struct BenchWeb {
    pub clients: usize,
    /// Declarations answered (each one cleared, each one a resident of the node afterwards).
    pub declarations: u64,
    /// Declarations per second, rounded.
    pub declarations_per_s: f64,
    /// Latency of one submit (POST /declare until its result page), microseconds, rounded.
    pub max_us: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    /// The largest answer of each page over the wire (head and body), bytes: `code`,
    /// `form`, `result`, `mine`, then each asset.
    pub pages: Vec<PageBytes>,
    /// The measured phase, seconds.
    pub seconds: f64,
    /// District, node, pages, the first home of every client: milliseconds.
    pub setup_ms: u64,
}

/// One page's size in `bench web`.
#[derive(Serialize)]
pub struct PageBytes {
    pub bytes: u64,
    pub page: String,
}

/// `bench hub --json`: a district hub at size, in its own process.
#[derive(Serialize)]
pub struct BenchHub {
    /// Building the district, seconds; `null` when it was reused.
    pub build_s: Option<f64>,
    /// From the spawn to `node.addr` written (every document loaded), milliseconds.
    pub cold_start_addr_ms: f64,
    /// From the spawn to the console's status answered, milliseconds.
    pub cold_start_status_ms: f64,
    pub communities: usize,
    /// Communities the hub's status lists.
    pub communities_held: usize,
    /// The hub process's peak resident memory (VmHWM) at the end, MB.
    pub hub_peak_rss_mb: Option<f64>,
    /// Its resident memory (VmRSS) right after the status answer, MB.
    pub hub_rss_after_start_mb: Option<f64>,
    /// Its resident memory at the end, MB.
    pub hub_rss_mb: Option<f64>,
    /// Gate-log ingest, batches of 1 then of 100.
    pub ingest: Vec<BenchHubIngest>,
    /// Residents per community.
    pub residents: usize,
    /// Residents the hub's status counts, all communities.
    pub residents_held: u64,
}

/// One ingest phase of `bench hub --json`.
#[derive(Serialize)]
pub struct BenchHubIngest {
    /// Events per `LogBatch`.
    pub batch: usize,
    /// From the start to the last acknowledgment, milliseconds.
    pub elapsed_ms: u64,
    /// Events acknowledged (each after the hub's flush).
    pub events_acked: u64,
    pub events_per_s: f64,
    pub events_sent: u64,
    /// The hub process's CPU time per acknowledged event (link set-up included), µs.
    pub hub_cpu_us_per_event: Option<f64>,
    /// Node links at once.
    pub links: usize,
}
