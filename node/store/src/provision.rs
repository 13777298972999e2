//! Creating districts, nodes, hubs and gates on disk, and giving a daemon a new key.

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

/// Why a district, node, hub or gate directory could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProvisionError {
    /// Reading or writing a key, certificate or configuration file failed.
    #[error(transparent)]
    File(#[from] FileError),
    /// Community 0 is the hub's certificate; a node needs 1 or more.
    #[error("community {0} is reserved for the district hub")]
    ReservedCommunity(CommunityId),
    /// The community or hub name is empty or longer than 64 bytes (`COMMUNITY_NAME_LEN_MAX`).
    #[error("name must be 1 to 64 bytes")]
    BadName,
    /// `rekey` was pointed at a directory that is neither a node's nor a hub's.
    #[error("{} has neither node.toml nor hub.toml", .0.display())]
    NotADaemon(std::path::PathBuf),
    /// `rekey` was given another district's root key than the one the daemon trusts: it would
    /// certify a key no peer of this daemon accepts.
    #[error("{} is not the district root of {}", .key.display(), .root_pub.display())]
    OtherDistrict {
        /// The root key given.
        key: std::path::PathBuf,
        /// The daemon's `root.pub`.
        root_pub: std::path::PathBuf,
    },
    /// The gate id is not 1 to 32 letters, digits, `-` or `_`.
    #[error(transparent)]
    GateId(#[from] menjin_proto::wire::BadGateId),
}

/// Seconds since the Unix epoch: certificates are dated from the workstation's clock.
fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// How long a node certificate is valid; renewal is a district operator's yearly task.
pub const NODE_CERT_DAYS: u64 = 365;
/// How far before its issue a node certificate's validity starts (clocks of gates a little
/// behind the workstation's still accept it). A certificate's `not_before` plus this is when
/// it was made: for a rekeyed node, when its previous key stopped signing codes.
pub const NODE_CERT_BACKDATE_S: u64 = 86_400;

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
    /// 1 or more (0 is the hub's).
    pub community: CommunityId,
    /// 1 to 64 bytes.
    pub community_name: String,
    /// UDP address of the node's QUIC endpoint.
    pub listen: SocketAddr,
    /// Unix seconds when declarations opened (the deadline is 5 days later).
    pub campaign_start: u64,
    /// How long a resident's code stays valid, 1 to 366 (checked when `node.toml` is read, not
    /// here).
    pub code_validity_days: u32,
    /// The district hub's address; `None` for a node that runs alone.
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
) -> Result<NodeCert, ProvisionError> {
    if spec.community == HUB_COMMUNITY {
        return Err(ProvisionError::ReservedCommunity(HUB_COMMUNITY));
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
        web: None,
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
) -> Result<NodeCert, ProvisionError> {
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
) -> Result<NodeCert, ProvisionError> {
    if name.is_empty() || name.len() > menjin_proto::cert::COMMUNITY_NAME_LEN_MAX {
        return Err(ProvisionError::BadName);
    }
    let root = read_signing_key(&district.root_key())?;
    let idhash = read_secret(&district.idhash_key())?;
    private_dir(&dir.0)?;
    let seed = random32();
    write_secret(&dir.key(), &seed)?;
    let key = ed25519_dalek::SigningKey::from_bytes(&seed).verifying_key();
    let now = now();
    // A day of slack for clocks behind the district's.
    let cert = NodeCert::issue(
        &root,
        community,
        name,
        key,
        now - NODE_CERT_BACKDATE_S,
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
/// by their bytes; gates deciding alone check them against the old certificate, kept as
/// `node.cert.previous` and carried in the trust feed), gates (they trust the root, not a node key), the hub's log cursor and the
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
pub fn rekey(district: &DistrictDir, dir: &NodeDir) -> Result<NodeCert, ProvisionError> {
    let (community, name) = if dir.config().exists() {
        let cfg = dir.read_config()?;
        (cfg.community, cfg.community_name)
    } else if dir.hub_config().exists() {
        (HUB_COMMUNITY, dir.read_hub_config()?.name)
    } else {
        return Err(ProvisionError::NotADaemon(dir.0.clone()));
    };
    let root = read_signing_key(&district.root_key())?;
    let root_pub = read_public_key(&dir.root_pub())?;
    if root.verifying_key() != root_pub {
        return Err(ProvisionError::OtherDistrict {
            key: district.root_key(),
            root_pub: dir.root_pub(),
        });
    }
    let seed = random32();
    let key = ed25519_dalek::SigningKey::from_bytes(&seed).verifying_key();
    let now = now();
    let cert = NodeCert::issue(
        &root,
        community,
        &name,
        key,
        now - NODE_CERT_BACKDATE_S,
        now + NODE_CERT_DAYS * 86_400,
    );
    // The certificate being replaced: its codes stay in force (see `NodeDir::previous_cert`).
    // Kept before anything is replaced, so a rekey run again after a crash keeps the same.
    if let Ok(old) = std::fs::read(dir.cert()) {
        write_public(&dir.previous_cert(), &old)?;
    }
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
) -> Result<[u8; 32], ProvisionError> {
    menjin_proto::wire::check_gate_id(gate_id)?;
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
        scanner: crate::files::ScannerConfig::default(),
    })?;
    Ok(ed25519_dalek::SigningKey::from_bytes(&seed)
        .verifying_key()
        .to_bytes())
}
