//! Finding the community's node on the LAN by mDNS. A node advertises `_menjin._udp.local.`
//! ([`Advertiser`]); a gate browses for the nodes of its community ([`browse`]), connects to
//! each one, which verifies the node's certificate chain against the district root and the
//! community (the QUIC handshake of [`NodeClient::connect`]), keeps the one with the lowest
//! round trip, and without any falls back to the static `node` address of `gate.toml`
//! ([`find_node`]).
//!
//! What it must never do: trust an advertisement. TXT records only say where to knock; trust
//! comes from the handshake. A malformed advertisement is skipped with a log line.
//!
//! Interfaces are chosen deliberately ([`interface_matches`]): the names listed, or `all` for
//! every interface except loopback and container or VM bridges; loopback only when `lo` is
//! listed. mdns-sd joins its multicast group on every interface while its daemon starts,
//! before a selection can be applied (no mDNS packet is sent there, but the kernel sends a
//! group membership report), so tests run mDNS only inside network namespaces they create.
//!
//! A node may start before its LAN is up (a link without carrier, an address not there yet).
//! mdns-sd looks at the interfaces again every [`IP_CHECK_S`] and serves the ones that came
//! up, but announces there only the services that follow the interfaces' addresses; a node
//! bound to one address would stay silent on such an interface. So the [`Advertiser`]
//! registers its service again whenever the daemon starts serving a new address on a
//! selected interface (see [`readvertise`]).

#![warn(unreachable_pub, missing_docs, unused_crate_dependencies)]

use std::net::{IpAddr, SocketAddr, SocketAddrV6};
use std::time::{Duration, Instant};

use ed25519_dalek::{SigningKey, VerifyingKey};
use mdns_sd::{
    DaemonEvent, IfKind, IfPredicate, Receiver, ResolvedService, ScopedIp, ServiceDaemon,
    ServiceEvent, ServiceInfo,
};
use menjin_proto::CommunityId;
use menjin_proto::keys::KeyId;

use menjin_net::client::{ClientError, NodeClient};
use menjin_store::files::{GateConfig, MdnsConfig};

/// The DNS-SD service type nodes advertise.
pub const SERVICE_TYPE: &str = "_menjin._udp.local.";
/// TXT `v`: the advertisement's layout and the QUIC protocol behind it. A gate skips other
/// versions rather than guessing.
pub const PROTOCOL_VERSION: &str = "1";
const TXT_VERSION: &str = "v";
const TXT_COMMUNITY: &str = "community";
const TXT_FINGERPRINT: &str = "fp";
const TXT_PORT: &str = "port";
/// Hex characters of a key fingerprint: the first 8 bytes of SHA-256 of the public key
/// ([`KeyId`]), enough to tell nodes apart in logs; trust never rests on it.
const FINGERPRINT_HEX_LEN: usize = 16;

/// `interfaces = ["all"]`: every interface except loopback and virtual bridges.
pub const ALL_INTERFACES: &str = "all";
/// Interfaces `all` leaves out: container and VM bridges and their veth ends, tunnels. A gate
/// is not behind them, and advertising there leaks the node into every container.
const VIRTUAL_INTERFACE_PREFIXES: &[&str] = &[
    "docker", "br-", "veth", "virbr", "vnet", "cni", "flannel", "cali", "weave", "podman", "lxcbr",
    "lxdbr", "kube", "tun", "tap", "wg", "zt",
];

pub use menjin_store::files::{BROWSE_MS_DEFAULT, BROWSE_MS_MAX, BROWSE_MS_MIN};
/// After the last new node, browsing stops once nothing new arrived for this long (nodes
/// answer the same query, so they arrive together).
pub const BROWSE_QUIET_MS: u64 = 500;
/// Nodes considered per browse; more advertising one community is a flood or a mistake.
pub const CANDIDATES_MAX: usize = 16;
/// Addresses tried per advertised node (IPv4 first).
pub const ADDRESSES_PER_CANDIDATE_MAX: usize = 4;
/// One handshake during discovery; a node on the LAN answers within milliseconds.
pub const PROBE_TIMEOUT_MS: u64 = 3_000;
/// Waiting for the mDNS daemon thread to unregister (goodbye packets) and to stop.
pub const DAEMON_STOP_MS: u64 = 1_000;
/// How often a node's mDNS daemon looks for links that came up and addresses that appeared or
/// went (mdns-sd's IP check, 5 s by default). A node answers on a link that came up after it
/// started within this long plus its probe (about 750 ms). A check lists the host's
/// addresses (one netlink dump): cheap.
pub const IP_CHECK_S: u32 = 2;
/// The addresses one check finds arrive as separate events: a re-advertisement waits this
/// long for the rest.
const READVERTISE_GATHER_MS: u64 = 100;
/// At most one re-advertisement per this long, whatever a flapping link does (each costs a
/// probe or an announcement per interface).
pub const READVERTISE_INTERVAL_MS_MIN: u64 = 1_000;
/// Addresses named in one re-advertisement's log line (a host with more is unusual).
const READVERTISE_ADDRESSES_LOGGED_MAX: usize = 16;
/// Interfaces listed from /sys/class/net for the log line.
const SYSFS_INTERFACES_MAX: usize = 256;

/// Why mDNS could not be used, or no node was found. A node that cannot advertise logs it and
/// serves anyway; a gate falls back to its static `node` address.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DiscoveryError {
    /// The mDNS daemon did not start (no multicast-capable interface, socket refused, ...).
    #[error("cannot start mDNS: {0}")]
    Mdns(#[from] mdns_sd::Error),
    /// Called outside a tokio runtime, which watches the interfaces.
    #[error("cannot start mDNS: no runtime to watch the interfaces from: {0}")]
    NoRuntime(tokio::runtime::TryCurrentError),
    /// Neither an advertised node nor the static address gave a verified connection.
    #[error("no node of community {community} could be used: {tried}")]
    NoNode {
        /// The gate's community.
        community: CommunityId,
        /// Each address tried and why it failed, for the log and `menjin gate discover`.
        tried: String,
    },
}

/// Why an advertisement was skipped.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AdvertError {
    /// A TXT record (`v`, `community`, `fp`, `port`) is absent.
    #[error("TXT record has no {0}")]
    Missing(&'static str),
    /// A TXT record that does not parse.
    #[error("TXT {field}={value:?} is not valid")]
    Bad {
        /// The record's name.
        field: &'static str,
        /// Its value.
        value: String,
    },
    /// Another protocol version than [`PROTOCOL_VERSION`].
    #[error("protocol version {0:?}, this gate speaks {PROTOCOL_VERSION}")]
    Version(String),
    /// The TXT `port` differs from the SRV record's port.
    #[error("TXT port {txt} differs from the service's port {srv}")]
    PortMismatch {
        /// The TXT `port`.
        txt: u16,
        /// The SRV record's port.
        srv: u16,
    },
    /// The advertisement resolved to no address.
    #[error("no address")]
    NoAddress,
}

/// The fingerprint a node advertises: hex of the first 8 bytes of SHA-256 of its key.
pub fn fingerprint(key: &VerifyingKey) -> String {
    KeyId::of(key).to_string()
}

/// `menjin-<community>-<fingerprint>`: unique per node, readable in `avahi-browse`.
pub fn instance_name(community: CommunityId, fingerprint: &str) -> String {
    format!("menjin-{community}-{fingerprint}")
}

/// The TXT properties of a node's advertisement.
pub fn txt_properties(
    community: CommunityId,
    fingerprint: &str,
    port: u16,
) -> Vec<(&'static str, String)> {
    vec![
        (TXT_VERSION, PROTOCOL_VERSION.to_string()),
        (TXT_COMMUNITY, community.to_string()),
        (TXT_FINGERPRINT, fingerprint.to_string()),
        (TXT_PORT, port.to_string()),
    ]
}

/// Does the interface `name` belong to the selection `names`? Listed names always do;
/// `all` takes everything but loopback and virtual bridges.
pub fn interface_matches(names: &[String], name: &str, loopback: bool) -> bool {
    names.iter().any(|n| {
        n == name
            || (n == ALL_INTERFACES
                && !loopback
                && !VIRTUAL_INTERFACE_PREFIXES
                    .iter()
                    .any(|p| name.starts_with(p)))
    })
}

/// The selection as mdns-sd's interface filter, re-applied by mdns-sd to interfaces that
/// appear later. `ipv4_only` for a node bound to `0.0.0.0`, which IPv6 gates cannot reach.
fn if_kind(names: &[String], ipv4_only: bool) -> IfKind {
    let names = names.to_vec();
    IfKind::Predicate(IfPredicate::new(move |i| {
        interface_matches(&names, &i.name, i.is_loopback()) && (!ipv4_only || i.ip().is_ipv4())
    }))
}

/// The interfaces of this host the selection takes now (for the log line).
pub fn selected_interfaces(names: &[String]) -> Vec<String> {
    let Ok(dir) = std::fs::read_dir("/sys/class/net") else {
        return Vec::new();
    };
    let mut out: Vec<String> = dir
        .take(SYSFS_INTERFACES_MAX)
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            // ARPHRD_LOOPBACK.
            let loopback =
                std::fs::read_to_string(e.path().join("type")).is_ok_and(|t| t.trim() == "772");
            interface_matches(names, &name, loopback).then_some(name)
        })
        .collect();
    out.sort();
    out
}

/// An mDNS daemon restricted to the selected interfaces.
fn start_daemon(names: &[String]) -> Result<ServiceDaemon, DiscoveryError> {
    let daemon = ServiceDaemon::new().map_err(DiscoveryError::Mdns)?;
    // Commands run in order: everything off, then the selection on.
    let selected = daemon
        .disable_interface(IfKind::All)
        .and_then(|()| daemon.enable_interface(if_kind(names, false)));
    if let Err(e) = selected {
        let _ = daemon.shutdown();
        return Err(DiscoveryError::Mdns(e));
    }
    Ok(daemon)
}

/// Stops the daemon thread, waiting at most [`DAEMON_STOP_MS`].
async fn stop_daemon(daemon: ServiceDaemon) {
    if let Ok(status) = daemon.shutdown() {
        let wait = Duration::from_millis(DAEMON_STOP_MS);
        if tokio::time::timeout(wait, status.recv_async())
            .await
            .is_err()
        {
            tracing::warn!(wait_ms = DAEMON_STOP_MS, "mDNS daemon did not stop in time");
        }
    }
}

/// A node's advertisement; withdrawn by [`Advertiser::stop`] (goodbye packets, so gates
/// forget the node at once), or abruptly when dropped.
pub struct Advertiser {
    daemon: Option<ServiceDaemon>,
    /// The [`readvertise`] task; stopped before the service is withdrawn, so that it cannot
    /// register the service again after the goodbye.
    watch: Option<tokio::task::JoinHandle<()>>,
    fullname: String,
    /// The instance name, e.g. `menjin-440304001-1a2b3c4d5e6f7081`.
    pub instance: String,
}

impl Advertiser {
    /// Advertises the node of `community` with key `node_key`, serving at `bound`, on the
    /// interfaces of `cfg`. A node bound to an unspecified address advertises the addresses
    /// of the selected interfaces (IPv4 only for `0.0.0.0`); otherwise exactly its address.
    ///
    /// The service is registered again whenever the daemon starts serving a new address on a
    /// selected interface ([`readvertise`], a task on the current tokio runtime).
    ///
    /// # Errors
    /// [`DiscoveryError::Mdns`] if the daemon cannot start or refuses the service, or if there
    /// is no tokio runtime to watch the interfaces from.
    pub fn start(
        cfg: &MdnsConfig,
        community: CommunityId,
        node_key: &VerifyingKey,
        bound: SocketAddr,
    ) -> Result<Advertiser, DiscoveryError> {
        let fp = fingerprint(node_key);
        let instance = instance_name(community, &fp);
        let host = format!("menjin-{fp}.local.");
        let props = txt_properties(community, &fp, bound.port());
        let info = if bound.ip().is_unspecified() {
            let mut info =
                ServiceInfo::new(SERVICE_TYPE, &instance, &host, (), bound.port(), &props[..])
                    .map_err(DiscoveryError::Mdns)?
                    .enable_addr_auto();
            info.set_interfaces(vec![if_kind(&cfg.interfaces, bound.is_ipv4())]);
            info
        } else {
            ServiceInfo::new(
                SERVICE_TYPE,
                &instance,
                &host,
                bound.ip(),
                bound.port(),
                &props[..],
            )
            .map_err(DiscoveryError::Mdns)?
        };
        let fullname = info.get_fullname().to_string();
        let runtime = tokio::runtime::Handle::try_current().map_err(DiscoveryError::NoRuntime)?;
        let daemon = start_daemon(&cfg.interfaces)?;
        // Commands run in order: the addresses the selection found at start are not events
        // here (the registration below announces on them); later ones are.
        let started = daemon
            .set_ip_check_interval(IP_CHECK_S)
            .and_then(|()| daemon.monitor())
            .and_then(|events| daemon.register(info.clone()).map(|()| events));
        let events = match started {
            Ok(events) => events,
            Err(e) => {
                let _ = daemon.shutdown();
                return Err(DiscoveryError::Mdns(e));
            }
        };
        let watch = runtime.spawn(readvertise(daemon.clone(), info, events, instance.clone()));
        Ok(Advertiser {
            daemon: Some(daemon),
            watch: Some(watch),
            fullname,
            instance,
        })
    }

    /// Withdraws the advertisement and stops the daemon, waiting at most twice
    /// [`DAEMON_STOP_MS`].
    pub async fn stop(mut self) {
        if let Some(watch) = self.watch.take() {
            watch.abort();
            // Ends at its next await point; it never blocks.
            let _ = watch.await;
        }
        let Some(daemon) = self.daemon.take() else {
            return;
        };
        if let Ok(done) = daemon.unregister(&self.fullname) {
            let wait = Duration::from_millis(DAEMON_STOP_MS);
            if tokio::time::timeout(wait, done.recv_async()).await.is_err() {
                tracing::warn!(
                    wait_ms = DAEMON_STOP_MS,
                    "mDNS goodbye not confirmed in time"
                );
            }
        }
        stop_daemon(daemon).await;
    }
}

impl Drop for Advertiser {
    fn drop(&mut self) {
        if let Some(watch) = self.watch.take() {
            watch.abort();
        }
        if let Some(daemon) = self.daemon.take() {
            let _ = daemon.shutdown();
        }
    }
}

/// Registers `info` again each time the daemon starts serving a new address on a selected
/// interface (`DaemonEvent::IpAdd`: a link came up, an address appeared, or mdns-sd dropped
/// and re-added an interface after a send error), at most once per
/// [`READVERTISE_INTERVAL_MS_MIN`]. Ends when the daemon stops (its events close) or the
/// advertiser is stopped (aborted).
///
/// Why: mdns-sd 0.21 answers a query on an interface only for services it has probed and
/// announced there, and on an interface it finds after the registration it does that only for
/// services that follow the interfaces' addresses (`enable_addr_auto`, a node bound to
/// `0.0.0.0`). A node bound to its LAN address that started while that link had no carrier
/// yet, or was still settling, stayed silent on it until restarted. Registering again probes
/// and announces the service on every interface the daemon serves now (where it is announced
/// already, it is announced once more).
async fn readvertise(
    daemon: ServiceDaemon,
    info: ServiceInfo,
    events: Receiver<DaemonEvent>,
    instance: String,
) {
    let gather = Duration::from_millis(READVERTISE_GATHER_MS);
    let interval = Duration::from_millis(READVERTISE_INTERVAL_MS_MIN);
    // Addresses not re-advertised yet, and when to do it. Events are read all the time, also
    // while a re-advertisement waits: mdns-sd drops events when the channel is full.
    let mut added: Vec<IpAddr> = Vec::new();
    let mut due = tokio::time::Instant::now();
    let mut next_allowed = due;
    loop {
        let event = if added.is_empty() {
            match events.recv_async().await {
                Ok(event) => Some(event),
                Err(_) => return,
            }
        } else {
            match tokio::time::timeout_at(due, events.recv_async()).await {
                Ok(Ok(event)) => Some(event),
                Ok(Err(_)) => return,
                Err(_) => None,
            }
        };
        if let Some(event) = event {
            let waiting = !added.is_empty();
            note_event(event, &mut added);
            if !waiting && !added.is_empty() {
                due = next_allowed.max(tokio::time::Instant::now() + gather);
            }
            continue;
        }
        added.sort();
        tracing::info!(
            %instance,
            addresses = ?added,
            "re-advertising by mDNS: a selected interface came up or got an address after the advertisement started"
        );
        added.clear();
        if let Err(e) = daemon.register(info.clone()) {
            tracing::warn!(error = %e, "mDNS re-advertisement failed");
        }
        next_allowed = tokio::time::Instant::now() + interval;
    }
}

/// Logs what deserves it; collects the addresses the daemon began serving.
fn note_event(event: DaemonEvent, added: &mut Vec<IpAddr>) {
    match event {
        DaemonEvent::IpAdd(ip)
            if added.len() < READVERTISE_ADDRESSES_LOGGED_MAX && !added.contains(&ip) =>
        {
            added.push(ip);
        }
        DaemonEvent::IpDel(ip) => tracing::info!(
            address = %ip,
            "mDNS: no longer advertising on an address (its link went down or it was removed)"
        ),
        DaemonEvent::NameChange(c) => tracing::warn!(
            original = %c.original,
            renamed = %c.new_name,
            interface = %c.intf_name,
            "mDNS name conflict: another host uses this node's name"
        ),
        DaemonEvent::Error(e) => tracing::warn!(error = %e, "mDNS daemon error"),
        _ => {}
    }
}

/// A node seen on the LAN: not verified yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    /// The mDNS instance name (`menjin-<community>-<fingerprint>`).
    pub instance: String,
    /// The community the TXT record claims (only the handshake proves it).
    pub community: CommunityId,
    /// The `fp` TXT record: hex of the first 8 bytes of SHA-256 of the node's key.
    pub fingerprint: String,
    /// IPv4 first, at most [`ADDRESSES_PER_CANDIDATE_MAX`].
    pub addrs: Vec<SocketAddr>,
}

/// Reads an advertisement: version, community, fingerprint, port (equal to the SRV port),
/// addresses.
///
/// # Errors
/// [`AdvertError`] saying what is wrong; the caller skips the advertisement.
pub fn parse_advert(r: &ResolvedService) -> Result<Candidate, AdvertError> {
    let field = |k: &'static str| r.get_property_val_str(k).ok_or(AdvertError::Missing(k));
    let bad = |field: &'static str, value: &str| AdvertError::Bad {
        field,
        value: value.chars().take(64).collect(),
    };
    let version = field(TXT_VERSION)?;
    if version != PROTOCOL_VERSION {
        return Err(AdvertError::Version(version.chars().take(16).collect()));
    }
    let text = field(TXT_COMMUNITY)?;
    let community: CommunityId = text.parse().map_err(|_| bad(TXT_COMMUNITY, text))?;
    let fp = field(TXT_FINGERPRINT)?;
    if fp.len() != FINGERPRINT_HEX_LEN
        || !fp
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(bad(TXT_FINGERPRINT, fp));
    }
    let text = field(TXT_PORT)?;
    let port: u16 = text
        .parse()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| bad(TXT_PORT, text))?;
    if port != r.port {
        return Err(AdvertError::PortMismatch {
            txt: port,
            srv: r.port,
        });
    }
    let mut addrs: Vec<SocketAddr> = r
        .addresses
        .iter()
        .filter_map(|ip| match ip {
            ScopedIp::V6(v6) if v6.addr().is_unicast_link_local() => Some(SocketAddr::V6(
                SocketAddrV6::new(*v6.addr(), port, 0, v6.scope_id().index),
            )),
            other => {
                let ip = other.to_ip_addr();
                (!ip.is_unspecified() && !ip.is_multicast()).then_some(SocketAddr::new(ip, port))
            }
        })
        .collect();
    addrs.sort_by_key(|a| (a.is_ipv6(), *a));
    addrs.dedup();
    addrs.truncate(ADDRESSES_PER_CANDIDATE_MAX);
    if addrs.is_empty() {
        return Err(AdvertError::NoAddress);
    }
    Ok(Candidate {
        instance: r.fullname.clone(),
        community,
        fingerprint: fp.to_string(),
        addrs,
    })
}

/// Listens for `browse_ms` on the selected interfaces (less once advertisements stop coming)
/// and returns the nodes advertising `community`. Malformed advertisements are logged and
/// skipped; other communities are skipped.
///
/// # Errors
/// [`DiscoveryError::Mdns`] if the mDNS daemon cannot start.
pub async fn browse(
    community: CommunityId,
    interfaces: &[String],
    browse_ms: u64,
) -> Result<Vec<Candidate>, DiscoveryError> {
    let daemon = start_daemon(interfaces)?;
    let events = match daemon.browse(SERVICE_TYPE) {
        Ok(rx) => rx,
        Err(e) => {
            stop_daemon(daemon).await;
            return Err(DiscoveryError::Mdns(e));
        }
    };
    let deadline = Instant::now() + Duration::from_millis(browse_ms.min(BROWSE_MS_MAX));
    let quiet = Duration::from_millis(BROWSE_QUIET_MS);
    let mut found: Vec<Candidate> = Vec::new();
    let mut last_new: Option<Instant> = None;
    // Bounded by the deadline: each wait ends by then at the latest.
    loop {
        let until = last_new.map_or(deadline, |t| deadline.min(t + quiet));
        let event = match tokio::time::timeout_at(until.into(), events.recv_async()).await {
            Ok(Ok(event)) => event,
            Ok(Err(_)) | Err(_) => break,
        };
        let ServiceEvent::ServiceResolved(resolved) = event else {
            continue;
        };
        let c = match parse_advert(&resolved) {
            Ok(c) => c,
            Err(why) => {
                tracing::warn!(instance = %resolved.fullname, %why, "skipped a malformed menjin advertisement");
                continue;
            }
        };
        if c.community != community {
            tracing::debug!(instance = %c.instance, community = c.community, "skipped: another community");
            continue;
        }
        if let Some(seen) = found.iter_mut().find(|s| s.instance == c.instance) {
            *seen = c;
        } else if found.len() < CANDIDATES_MAX {
            tracing::debug!(instance = %c.instance, addrs = ?c.addrs, "advertised node");
            found.push(c);
            last_new = Some(Instant::now());
        } else {
            tracing::warn!(instance = %c.instance, max = CANDIDATES_MAX, "skipped: too many nodes advertise this community");
        }
    }
    let _ = daemon.stop_browse(SERVICE_TYPE);
    stop_daemon(daemon).await;
    found.sort_by(|a, b| a.instance.cmp(&b.instance));
    Ok(found)
}

/// How a gate found its node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Via {
    /// Found by mDNS browsing.
    Mdns,
    /// The `node` address in `gate.toml`.
    Static,
}

impl Via {
    /// The stable name used in logs and `menjin gate discover` (`mdns`, `static`).
    pub fn as_str(self) -> &'static str {
        match self {
            Via::Mdns => "mdns",
            Via::Static => "static",
        }
    }
}

/// What connecting to one address gave.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProbeOutcome {
    /// The chain verified; round trip as QUIC measured it during the handshake, and how long
    /// the whole connect took.
    Verified {
        /// Round trip in microseconds.
        rtt_us: u64,
        /// The whole connect in microseconds.
        handshake_us: u64,
    },
    /// The node answered but is not to be trusted: its certificate does not verify against
    /// the district root, is for another community, or does not match the advertisement.
    Refused(String),
    /// No usable answer (timeout, nothing listening, or the node refused this gate's key).
    Unreachable(String),
}

/// One node tried: an advertised one or the static address.
#[derive(Clone, Debug)]
pub struct Probe {
    /// Advertised, or the static address.
    pub via: Via,
    /// The advertised instance and fingerprint (`None` for the static address).
    pub instance: Option<String>,
    /// The advertised `fp`; for the static address, the verified key's, once the handshake
    /// succeeded.
    pub fingerprint: Option<String>,
    /// The address that answered, or the last one tried.
    pub addr: SocketAddr,
    /// Verified, refused, or unreachable.
    pub outcome: ProbeOutcome,
}

/// The node chosen, connected.
pub struct Found {
    /// The address connected to.
    pub addr: SocketAddr,
    /// Advertised or static.
    pub via: Via,
    /// The handshake's round trip (microseconds), as QUIC measured it.
    pub rtt_us: u64,
    /// Hex of the first 8 bytes of SHA-256 of the node's verified key.
    pub fingerprint: String,
    /// The connection, ready for the gate's feed and requests.
    pub client: NodeClient,
}

/// Everything [`discover`] saw, for `menjin gate discover`.
pub struct Discovery {
    /// Nodes advertising the gate's community; `None` if discovery is off, `Err` if mDNS
    /// could not start.
    pub browsed: Option<Result<usize, DiscoveryError>>,
    /// Every node and address tried, in order.
    pub probes: Vec<Probe>,
    /// The node chosen (lowest round trip among the verified), if any.
    pub found: Option<Found>,
}

/// What a node must prove in its handshake: a certificate of the district `root`, issued no
/// earlier than `not_before_min` (the gate's current node certificate; 0 before it has one),
/// for none of the `revoked` keys. A certificate replaced at a rekey is superseded even while
/// its key still works; a revoked key is refused whatever its certificate.
#[derive(Clone, Debug)]
pub struct Trusted {
    /// The district root.
    pub root: VerifyingKey,
    /// `not_before` of the node certificate the gate trusts now.
    pub not_before_min: u64,
    /// Node keys of the community the district revoked, as the gate's trust cache holds them.
    pub revoked: std::sync::Arc<[[u8; 32]]>,
}

impl From<VerifyingKey> for Trusted {
    fn from(root: VerifyingKey) -> Trusted {
        Trusted {
            root,
            not_before_min: 0,
            revoked: std::sync::Arc::new([]),
        }
    }
}

/// A refusal by the gate's own server verifier (`tls::DistrictNodes`): its messages all name
/// the certificate, and quinn passes rustls' message through.
fn classify(e: &ClientError) -> ProbeOutcome {
    match e {
        // Not "cannot reach the node": it answered, and was found wanting.
        ClientError::Connect { why, .. } if why.to_string().contains("certificate") => {
            ProbeOutcome::Refused(why.to_string())
        }
        other => ProbeOutcome::Unreachable(other.to_string()),
    }
}

/// Connects to `addr` as the gate; the handshake verifies the node's chain and community.
async fn probe(
    addr: SocketAddr,
    key: &SigningKey,
    root: &Trusted,
    community: CommunityId,
    advertised: Option<&str>,
    timeout_ms: u64,
) -> (ProbeOutcome, Option<(NodeClient, String)>) {
    let started = Instant::now();
    let connect = NodeClient::connect_pinned(
        addr,
        key,
        root.root,
        Some(community),
        root.not_before_min,
        &root.revoked,
    );
    let client = match tokio::time::timeout(Duration::from_millis(timeout_ms), connect).await {
        Err(_) => {
            let why = format!("no handshake within {timeout_ms} ms");
            return (ProbeOutcome::Unreachable(why), None);
        }
        Ok(Err(e)) => return (classify(&e), None),
        Ok(Ok(client)) => client,
    };
    let handshake_us = micros(started.elapsed());
    let Some(node_key) = client.node_key() else {
        return (
            ProbeOutcome::Unreachable("connection closed during the handshake".into()),
            None,
        );
    };
    let fp = fingerprint(&node_key);
    if let Some(advertised) = advertised
        && advertised != fp
    {
        return (
            ProbeOutcome::Refused(format!(
                "advertised key fingerprint {advertised} but the node's certified key is {fp}"
            )),
            None,
        );
    }
    let rtt_us = micros(client.rtt());
    (
        ProbeOutcome::Verified {
            rtt_us,
            handshake_us,
        },
        Some((client, fp)),
    )
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// Tries a candidate's addresses in order until one answers.
async fn probe_candidate(
    c: Candidate,
    key: SigningKey,
    root: Trusted,
) -> (Probe, Option<(NodeClient, String)>) {
    let mut last = None;
    for addr in c.addrs.iter().copied() {
        let (outcome, client) = probe(
            addr,
            &key,
            &root,
            c.community,
            Some(&c.fingerprint),
            PROBE_TIMEOUT_MS,
        )
        .await;
        let done = !matches!(outcome, ProbeOutcome::Unreachable(_));
        last = Some((addr, outcome, client));
        if done {
            break;
        }
    }
    let (addr, outcome, client) = last.expect("parse_advert keeps candidates with an address");
    let p = Probe {
        via: Via::Mdns,
        instance: Some(c.instance),
        fingerprint: Some(c.fingerprint),
        addr,
        outcome,
    };
    (p, client)
}

fn log_probe(p: &Probe) {
    let instance = p.instance.as_deref().unwrap_or("static node address");
    match &p.outcome {
        ProbeOutcome::Verified { rtt_us, .. } => {
            tracing::debug!(instance, addr = %p.addr, rtt_us, "node verified");
        }
        ProbeOutcome::Refused(why) => tracing::warn!(
            instance,
            addr = %p.addr,
            %why,
            "refused a node: its certificate does not verify against this gate's district root and community, or was superseded at a rekey"
        ),
        ProbeOutcome::Unreachable(why) => {
            tracing::info!(instance, addr = %p.addr, %why, "node unreachable");
        }
    }
}

/// Browses (if `[discovery]` is on), verifies and measures every node of the gate's community,
/// keeps the one with the lowest round trip; without one, tries the static `node` address.
/// Never fails: everything is in the report.
pub async fn discover(cfg: &GateConfig, key: &SigningKey, root: Trusted) -> Discovery {
    let mut probes = Vec::new();
    let mut best: Option<(usize, NodeClient, String, u64)> = None;
    let mut browsed = None;
    if cfg.discovery.enabled {
        let d = &cfg.discovery;
        match browse(cfg.community, &d.interfaces, d.browse_ms).await {
            Err(e) => {
                tracing::warn!(error = %e, "mDNS discovery failed; trying the static node address");
                browsed = Some(Err(e));
            }
            Ok(candidates) => {
                browsed = Some(Ok(candidates.len()));
                let mut tasks = tokio::task::JoinSet::new();
                for c in candidates {
                    tasks.spawn(probe_candidate(c, key.clone(), root.clone()));
                }
                // Bounded: at most CANDIDATES_MAX tasks, each bounded by its probes' timeouts.
                while let Some(joined) = tasks.join_next().await {
                    let Ok((p, client)) = joined else { continue };
                    log_probe(&p);
                    if let (ProbeOutcome::Verified { rtt_us, .. }, Some((client, fp))) =
                        (&p.outcome, client)
                        && best.as_ref().is_none_or(|b| *rtt_us < b.3)
                    {
                        best = Some((probes.len(), client, fp, *rtt_us));
                    }
                    probes.push(p);
                }
            }
        }
    }
    if let Some((at, client, fingerprint, rtt_us)) = best {
        let p = &probes[at];
        tracing::info!(instance = p.instance.as_deref().unwrap_or(""), addr = %p.addr, rtt_us, "chose a node found by mDNS");
        let found = Found {
            addr: p.addr,
            via: Via::Mdns,
            rtt_us,
            fingerprint,
            client,
        };
        return Discovery {
            browsed,
            probes,
            found: Some(found),
        };
    }
    // The static address may be across a WAN: the client's own connect timeout.
    let timeout_ms = menjin_net::client::CONNECT_TIMEOUT_MS + 1_000;
    let (outcome, client) = probe(cfg.node, key, &root, cfg.community, None, timeout_ms).await;
    let p = Probe {
        via: Via::Static,
        instance: None,
        fingerprint: client.as_ref().map(|(_, fp)| fp.clone()),
        addr: cfg.node,
        outcome,
    };
    log_probe(&p);
    let found = match (&p.outcome, client) {
        (ProbeOutcome::Verified { rtt_us, .. }, Some((client, fingerprint))) => Some(Found {
            addr: cfg.node,
            via: Via::Static,
            rtt_us: *rtt_us,
            fingerprint,
            client,
        }),
        _ => None,
    };
    probes.push(p);
    Discovery {
        browsed,
        probes,
        found,
    }
}

/// The gate's node, connected: the lowest round trip among the verified nodes of its
/// community found by mDNS, else the static `node` address. The gate daemon calls it at each
/// (re)connection, so a failed node is replaced by another one advertising.
///
/// # Errors
/// [`DiscoveryError::NoNode`] listing what was tried and why each failed.
pub async fn find_node(
    cfg: &GateConfig,
    key: &SigningKey,
    root: Trusted,
) -> Result<Found, DiscoveryError> {
    let d = discover(cfg, key, root).await;
    d.found.ok_or_else(|| DiscoveryError::NoNode {
        community: cfg.community,
        tried: d
            .probes
            .iter()
            .map(|p| match &p.outcome {
                ProbeOutcome::Refused(why) | ProbeOutcome::Unreachable(why) => {
                    format!("{} ({}): {why}", p.addr, p.via.as_str())
                }
                ProbeOutcome::Verified { .. } => {
                    format!("{} ({}): verified", p.addr, p.via.as_str())
                }
            })
            .collect::<Vec<_>>()
            .join("; "),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn advert(props: &[(&str, &str)], port: u16, ip: &str) -> ResolvedService {
        ServiceInfo::new(SERVICE_TYPE, "menjin-test", "h.local.", ip, port, props)
            .expect("service info")
            .as_resolved_service()
    }

    const FP: &str = "0123456789abcdef";

    fn good() -> Vec<(&'static str, &'static str)> {
        vec![
            ("v", "1"),
            ("community", "440304001"),
            ("fp", FP),
            ("port", "7300"),
        ]
    }

    fn with(field: &str, value: Option<&'static str>) -> Vec<(&'static str, &'static str)> {
        let mut p: Vec<_> = good().into_iter().filter(|(k, _)| *k != field).collect();
        if let Some(v) = value {
            let k = good().into_iter().find(|(k, _)| *k == field).unwrap().0;
            p.push((k, v));
        }
        p
    }

    #[test]
    fn advertisement_of_a_node_parses_into_a_candidate() {
        let c = parse_advert(&advert(&good(), 7300, "10.0.0.2,10.0.0.1,fd00::1")).unwrap();
        assert_eq!(c.community, 440_304_001);
        assert_eq!(c.fingerprint, FP);
        let addrs: Vec<String> = c.addrs.iter().map(ToString::to_string).collect();
        assert_eq!(addrs, ["10.0.0.1:7300", "10.0.0.2:7300", "[fd00::1]:7300"]);
        assert!(c.instance.starts_with("menjin-test."), "{}", c.instance);
    }

    #[test]
    fn node_advertisement_round_trips_through_its_own_txt() {
        let key = menjin_proto::keys::signing_key_from_seed([3; 32]).verifying_key();
        let fp = fingerprint(&key);
        assert_eq!(fp.len(), FINGERPRINT_HEX_LEN);
        let props = txt_properties(9, &fp, 4433);
        let r = ServiceInfo::new(
            SERVICE_TYPE,
            &instance_name(9, &fp),
            "h.local.",
            "192.0.2.7",
            4433,
            &props[..],
        )
        .unwrap()
        .as_resolved_service();
        let c = parse_advert(&r).unwrap();
        assert_eq!((c.community, c.fingerprint.as_str()), (9, fp.as_str()));
        assert_eq!(c.addrs, ["192.0.2.7:4433".parse::<SocketAddr>().unwrap()]);
    }

    #[test]
    fn malformed_advertisements_are_refused_with_the_reason() {
        let ip = "10.0.0.1";
        #[allow(clippy::type_complexity)] // (TXT properties, port, the error expected)
        let cases: Vec<(Vec<(&str, &str)>, u16, AdvertError)> = vec![
            (with("v", None), 7300, AdvertError::Missing("v")),
            (with("v", Some("2")), 7300, AdvertError::Version("2".into())),
            (
                with("community", None),
                7300,
                AdvertError::Missing("community"),
            ),
            (
                with("community", Some("-1")),
                7300,
                AdvertError::Bad {
                    field: "community",
                    value: "-1".into(),
                },
            ),
            (
                with("community", Some("99999999999")),
                7300,
                AdvertError::Bad {
                    field: "community",
                    value: "99999999999".into(),
                },
            ),
            (
                with("fp", Some("0123")),
                7300,
                AdvertError::Bad {
                    field: "fp",
                    value: "0123".into(),
                },
            ),
            (
                with("fp", Some("0123456789ABCDEF")),
                7300,
                AdvertError::Bad {
                    field: "fp",
                    value: "0123456789ABCDEF".into(),
                },
            ),
            (
                with("port", Some("0")),
                7300,
                AdvertError::Bad {
                    field: "port",
                    value: "0".into(),
                },
            ),
            (
                with("port", Some("seventy")),
                7300,
                AdvertError::Bad {
                    field: "port",
                    value: "seventy".into(),
                },
            ),
            (
                good(),
                7301,
                AdvertError::PortMismatch {
                    txt: 7300,
                    srv: 7301,
                },
            ),
        ];
        for (props, port, want) in cases {
            assert_eq!(
                parse_advert(&advert(&props, port, ip)),
                Err(want),
                "{props:?}"
            );
        }
        assert_eq!(
            parse_advert(&advert(&good(), 7300, "")),
            Err(AdvertError::NoAddress)
        );
        assert_eq!(
            parse_advert(&advert(&good(), 7300, "0.0.0.0,224.0.0.251")),
            Err(AdvertError::NoAddress)
        );
        // A value that is not UTF-8 reads as empty: refused, not a panic.
        let r = ServiceInfo::new(
            SERVICE_TYPE,
            "x",
            "h.local.",
            ip,
            7300,
            &[
                ("v", "1"),
                ("community", "\u{0}"),
                ("fp", FP),
                ("port", "7300"),
            ][..],
        )
        .unwrap()
        .as_resolved_service();
        assert!(parse_advert(&r).is_err());
    }

    #[test]
    fn interfaces_are_taken_only_when_chosen() {
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let all = names(&["all"]);
        assert!(interface_matches(&all, "eth0", false));
        assert!(interface_matches(&all, "enp3s0", false));
        assert!(!interface_matches(&all, "lo", true));
        for virt in [
            "docker0",
            "br-1a2b",
            "veth12ab",
            "virbr0",
            "cni0",
            "flannel.1",
            "tun0",
        ] {
            assert!(!interface_matches(&all, virt, false), "{virt}");
        }
        assert!(interface_matches(&names(&["all", "lo"]), "lo", true));
        assert!(interface_matches(&names(&["lo"]), "lo", true));
        assert!(!interface_matches(&names(&["lo"]), "eth0", false));
        // An interface named explicitly is taken even if `all` would leave it out.
        assert!(interface_matches(&names(&["veth-lab"]), "veth-lab", false));
        assert!(!interface_matches(&[], "eth0", false));
    }
}
