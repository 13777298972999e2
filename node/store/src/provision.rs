//! Creating districts, nodes and gates on disk, and running a node.

use std::future::Future;
use std::net::SocketAddr;
use std::os::unix::fs::DirBuilderExt;
use std::path::Path;

use menjin_proto::cert::HUB_COMMUNITY;
use menjin_proto::{CommunityId, NodeCert};

use crate::files::{
    DiscoveryConfig, DistrictDir, FileError, GateConfig, GateDir, HubConfig, MdnsConfig,
    NodeConfig, NodeDir, random32, read_public_key, read_secret, read_signing_key, write_public,
    write_public_key, write_secret,
};
use crate::server::Server;
use crate::service::{Node, NodeError, now_ms};

/// How long a node certificate is valid; renewal is a district operator's yearly task.
pub const NODE_CERT_DAYS: u64 = 365;

fn private_dir(path: &Path) -> Result<(), FileError> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .map_err(|source| FileError::Io {
            path: path.to_path_buf(),
            source,
        })
}

/// Creates a district: the root key pair and the ID-hash key.
///
/// # Errors
/// [`FileError`]; refuses to overwrite existing keys.
pub fn create_district(dir: &DistrictDir) -> Result<ed25519_dalek::VerifyingKey, FileError> {
    private_dir(&dir.0)?;
    let seed = random32();
    write_secret(&dir.root_key(), &seed)?;
    write_secret(&dir.idhash_key(), &random32())?;
    let root = ed25519_dalek::SigningKey::from_bytes(&seed).verifying_key();
    write_public_key(&dir.root_pub(), &root)?;
    Ok(root)
}

/// What a new node is for.
pub struct NodeSpec {
    pub community: CommunityId,
    pub community_name: String,
    pub listen: SocketAddr,
    pub campaign_start: u64,
    pub code_validity_days: u32,
    pub hub: Option<SocketAddr>,
}

/// Creates a node directory with its own key, a certificate signed by the district root, the
/// district's ID-hash key and a console key for the workstation.
///
/// # Errors
/// [`FileError`] or an invalid name; refuses to overwrite existing keys.
pub fn create_node(
    district: &DistrictDir,
    dir: &NodeDir,
    spec: &NodeSpec,
) -> Result<NodeCert, NodeError> {
    if spec.community == HUB_COMMUNITY {
        return Err(NodeError::Invalid(format!(
            "community {HUB_COMMUNITY} is reserved for the district hub"
        )));
    }
    let cert = create_daemon_dir(district, dir, spec.community, &spec.community_name)?;
    dir.write_config(&NodeConfig {
        community: spec.community,
        community_name: spec.community_name.clone(),
        listen: spec.listen,
        campaign_start: spec.campaign_start,
        code_validity_days: spec.code_validity_days,
        hub: spec.hub,
        residents_may_leave_in_lockdown: false,
        anti_passback: false,
        mdns: MdnsConfig::default(),
    })?;
    Ok(cert)
}

/// Creates a district hub directory: a hub key certified by the root as community 0.
///
/// # Errors
/// As [`create_node`].
pub fn create_hub(
    district: &DistrictDir,
    dir: &NodeDir,
    name: &str,
    listen: SocketAddr,
) -> Result<NodeCert, NodeError> {
    let cert = create_daemon_dir(district, dir, HUB_COMMUNITY, name)?;
    dir.write_hub_config(&HubConfig {
        name: name.to_string(),
        listen,
    })?;
    Ok(cert)
}

/// The files a node and a hub share: own key, certificate from the root, root public key,
/// ID-hash key, console key.
fn create_daemon_dir(
    district: &DistrictDir,
    dir: &NodeDir,
    community: CommunityId,
    name: &str,
) -> Result<NodeCert, NodeError> {
    if name.is_empty() || name.len() > menjin_proto::cert::COMMUNITY_NAME_LEN_MAX {
        return Err(NodeError::Invalid("name must be 1 to 64 bytes".into()));
    }
    let root = read_signing_key(&district.root_key())?;
    let idhash = read_secret(&district.idhash_key())?;
    private_dir(&dir.0)?;
    let seed = random32();
    write_secret(&dir.key(), &seed)?;
    let key = ed25519_dalek::SigningKey::from_bytes(&seed).verifying_key();
    let now = now_ms() / 1000;
    // A day of slack for clocks behind the district's.
    let cert = NodeCert::issue(
        &root,
        community,
        name,
        key,
        now - 86_400,
        now + NODE_CERT_DAYS * 86_400,
    );
    write_public(&dir.cert(), &cert.encode())?;
    write_public_key(&dir.root_pub(), &root.verifying_key())?;
    write_secret(&dir.idhash_key(), &idhash)?;
    write_secret(&dir.console_key(), &random32())?;
    Ok(cert)
}

/// Gives a node (or the hub) a new key, certified by the district root for the same
/// community and name, and renews the certificate's validity. The old key is overwritten:
/// rotation is for a key that may have leaked, or a certificate close to its end.
///
/// What still works afterwards: codes the old key signed (the node recognises its own codes
/// by their bytes), gates (they trust the root, not a node key), the hub's log cursor and the
/// roster (both keyed by community). What the operator must do: restart the node, and enrol
/// the new `node.cert` at the hub (which drops the old key). What this cannot do: the old
/// certificate stays valid for gates until it expires (no revocation list for node
/// certificates yet).
///
/// Crash-safe in the sense that matters: the new key and certificate are written beside the
/// old ones and renamed over them; a crash between the two renames leaves a pair the node
/// refuses at start ("does not match"), and running this again repairs it.
///
/// # Errors
/// [`FileError`], or a directory that is neither a node's nor a hub's.
pub fn rekey(district: &DistrictDir, dir: &NodeDir) -> Result<NodeCert, NodeError> {
    let (community, name) = if dir.config().exists() {
        let cfg = dir.read_config()?;
        (cfg.community, cfg.community_name)
    } else if dir.hub_config().exists() {
        (HUB_COMMUNITY, dir.read_hub_config()?.name)
    } else {
        return Err(NodeError::Invalid(format!(
            "{} has neither node.toml nor hub.toml",
            dir.0.display()
        )));
    };
    let root = read_signing_key(&district.root_key())?;
    let root_pub = read_public_key(&dir.root_pub())?;
    if root.verifying_key() != root_pub {
        return Err(NodeError::Invalid(format!(
            "{} is not the district root of {}",
            district.root_key().display(),
            dir.root_pub().display()
        )));
    }
    let seed = random32();
    let key = ed25519_dalek::SigningKey::from_bytes(&seed).verifying_key();
    let now = now_ms() / 1000;
    let cert = NodeCert::issue(
        &root,
        community,
        &name,
        key,
        now - 86_400,
        now + NODE_CERT_DAYS * 86_400,
    );
    let new_key = dir.key().with_extension("key.new");
    let _ = std::fs::remove_file(&new_key);
    write_secret(&new_key, &seed)?;
    let rename = |from: &Path, to: &Path| {
        std::fs::rename(from, to).map_err(|source| FileError::Io {
            path: to.to_path_buf(),
            source,
        })
    };
    rename(&new_key, &dir.key())?;
    write_public(&dir.cert(), &cert.encode())?;
    Ok(cert)
}

/// Creates a gate directory with a new key; returns the public key to enrol at the node.
///
/// # Errors
/// [`FileError`]; refuses to overwrite an existing key.
pub fn create_gate(
    dir: &GateDir,
    gate_id: &str,
    node_dir: &NodeDir,
    node_addr: SocketAddr,
) -> Result<[u8; 32], NodeError> {
    crate::service::check_gate_id(gate_id).map_err(NodeError::Invalid)?;
    let node_cfg = node_dir.read_config()?;
    let root = read_public_key(&node_dir.root_pub())?;
    private_dir(&dir.0)?;
    let seed = random32();
    write_secret(&dir.key(), &seed)?;
    dir.write_config(&GateConfig {
        gate_id: gate_id.to_string(),
        community: node_cfg.community,
        node: node_addr,
        root_public_key: menjin_proto::keys::public_key_hex(&root),
        direction: menjin_proto::wire::Direction::In,
        stale_after_s: 60,
        clock_skew_max_s: 30,
        buffer_capacity: 100_000,
        anti_passback: false,
        discovery: DiscoveryConfig::default(),
    })?;
    Ok(ed25519_dalek::SigningKey::from_bytes(&seed)
        .verifying_key()
        .to_bytes())
}

/// Opens the node, binds its endpoint, writes `node.addr`, and serves until `shutdown`.
///
/// # Errors
/// [`NodeError`] if the node cannot be opened or bound.
pub async fn run_node(
    dir: &NodeDir,
    listen: Option<SocketAddr>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), NodeError> {
    // Serves gates while the replica loads (the uplink waits for it).
    let node = Node::open_loading(dir)?;
    let addr = listen.unwrap_or(node.config.listen);
    let server = Server::bind(node.clone(), addr)
        .map_err(|e| NodeError::Invalid(format!("cannot listen on {addr}: {e}")))?;
    let bound = server
        .local_addr()
        .map_err(|e| NodeError::Invalid(e.to_string()))?;
    // Advertised before node.addr is written: node.addr means "serving", mDNS included.
    let advertiser = advertise(&node, bound);
    write_public(&dir.addr(), format!("{bound}\n").as_bytes())?;
    // Counters from memory: `status()` counts residents in sled (150 ms at 100,000).
    let (codes_active, codes_revoked) = node.roster_code_counts();
    tracing::info!(
        community = node.config.community,
        name = %node.config.community_name,
        %bound,
        codes_active,
        codes_revoked,
        events = node.events_logged(),
        gates = node.peers().gates().len(),
        "node serving"
    );
    let (stop_uplink, uplink_stopped) = tokio::sync::watch::channel(false);
    let uplink = node
        .config
        .hub
        .map(|hub| tokio::spawn(crate::uplink::run_uplink(node.clone(), hub, uplink_stopped)));
    // A replica that cannot be loaded stops the node, as it stopped a start before the
    // replica loaded in the background: a node must not run unlinked without saying so.
    let replica_failed = std::sync::Mutex::new(None);
    server
        .run(async {
            let failed = async {
                match node.replica_loaded().await {
                    Ok(_) => std::future::pending().await,
                    Err(e) => e,
                }
            };
            tokio::select! {
                () = shutdown => {}
                e = failed => {
                    tracing::error!(error = %e, "the node stops");
                    *replica_failed.lock().expect("lock") = Some(e);
                }
            }
        })
        .await;
    if let Some(advertiser) = advertiser {
        advertiser.stop().await;
    }
    let _ = stop_uplink.send(true);
    if let Some(uplink) = uplink {
        let _ = uplink.await;
    }
    let _ = std::fs::remove_file(dir.addr());
    if let Some(e) = replica_failed.into_inner().expect("lock") {
        return Err(e);
    }
    tracing::info!("node stopped");
    Ok(())
}

/// Starts the node's mDNS advertisement if `[mdns]` is on. A failure is logged and the node
/// serves without it: gates configured with its address still reach it.
fn advertise(node: &Node, bound: SocketAddr) -> Option<crate::discovery::Advertiser> {
    let cfg = &node.config.mdns;
    if !cfg.enabled {
        tracing::info!("mDNS advertisement off ([mdns] enabled = false in node.toml)");
        return None;
    }
    let key = node.cert().node_key;
    match crate::discovery::Advertiser::start(cfg, node.config.community, &key, bound) {
        Ok(a) => {
            tracing::info!(
                instance = %a.instance,
                service = crate::discovery::SERVICE_TYPE,
                configured = ?cfg.interfaces,
                interfaces = ?crate::discovery::selected_interfaces(&cfg.interfaces),
                "advertising by mDNS"
            );
            Some(a)
        }
        Err(e) => {
            tracing::warn!(error = %e, "mDNS advertisement failed; serving without it");
            None
        }
    }
}
