//! The files of a district, a node and a gate: secret keys (mode 0600, never printed),
//! certificates and TOML configurations.
//!
//! A district directory holds `root.key`, `root.pub` and `idhash.key`. A node directory holds
//! `node.toml`, `node.key`, `node.cert`, `root.pub`, `idhash.key`, `console.key` (the
//! workstation's identity towards its own node), `db/` (sled) and, while it runs, `node.addr`.
//! A gate directory holds `gate.toml` and `gate.key`.

use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use ed25519_dalek::{SigningKey, VerifyingKey};
use menjin_proto::keys::{parse_public_key_hex, public_key_hex};
use menjin_proto::wire::Direction;
use menjin_proto::{CommunityId, NodeCert};
use serde::{Deserialize, Serialize};

/// Why a key, certificate or configuration file could not be read or written. Each names the
/// file, so the operator knows which one to fix.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FileError {
    /// The operating system refused to read or write the file (missing, permissions, disk full).
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// The file is there but its contents are not what it should hold (not hex, wrong length,
    /// not a certificate, no socket address).
    #[error("{path}: {why}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What it should hold.
        why: String,
    },
    /// A configuration file refused at start: where, and why.
    #[error("{path}:{line}:{column}: {why}")]
    Config {
        /// The configuration file.
        path: PathBuf,
        /// 1-based line of the refused value.
        line: usize,
        /// 1-based column, in characters.
        column: usize,
        /// What is wrong and, where it helps, what is expected.
        why: String,
    },
    /// A secret key file that group or others may read: refused until `chmod 600`.
    #[error(
        "{path}: secret key file is readable by group or others (mode {mode:o}); run chmod 600"
    )]
    TooOpen {
        /// The key file.
        path: PathBuf,
        /// Its permission bits (octal in the message).
        mode: u32,
    },
    /// A key file that already exists: keys are never overwritten (only `rekey` replaces one).
    #[error("{0} already exists: refusing to overwrite a key")]
    Exists(PathBuf),
    /// An interface list in the configuration is refused.
    #[error("{path}: {source}")]
    Interfaces {
        /// The configuration file.
        path: PathBuf,
        /// What is wrong with the list.
        source: InterfacesError,
    },
}

/// An interface list that [`check_interfaces`] refuses; `what` names the list.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InterfacesError {
    /// `enabled` without any interface.
    #[error("{what} is empty: list interface names (e.g. eth0), or all")]
    Empty {
        /// The list's name in the configuration or on the command line (`mdns.interfaces`).
        what: &'static str,
    },
    /// More than `INTERFACES_MAX` (16) names.
    #[error("{what} lists {count} names, at most {max}", max = INTERFACES_MAX)]
    TooMany {
        /// The list's name in the configuration or on the command line (`mdns.interfaces`).
        what: &'static str,
        /// How many names it lists.
        count: usize,
    },
    /// A name that is empty, longer than 15 bytes, or holds a space, a control byte or `/`.
    #[error("{what}: {name:?} is not an interface name (1 to 15 characters, no spaces or /)")]
    BadName {
        /// The list's name in the configuration or on the command line (`mdns.interfaces`).
        what: &'static str,
        /// The refused name.
        name: String,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> FileError + '_ {
    move |source| FileError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn invalid(path: &Path, why: impl Into<String>) -> FileError {
    FileError::Invalid {
        path: path.to_path_buf(),
        why: why.into(),
    }
}

/// 32 bytes from the operating system's generator.
pub fn random32() -> [u8; 32] {
    let mut seed = [0u8; 32];
    rand::fill(&mut seed);
    seed
}

/// 8 bytes from the operating system's generator (holder and code ids).
pub fn random8() -> [u8; 8] {
    let mut b = [0u8; 8];
    rand::fill(&mut b);
    b
}

/// Writes a new secret (hex) readable by the owner only; never overwrites.
///
/// # Errors
/// [`FileError::Exists`] if the file is there, or the IO error.
pub fn write_secret(path: &Path, secret: &[u8; 32]) -> Result<(), FileError> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                FileError::Exists(path.to_path_buf())
            } else {
                FileError::Io {
                    path: path.to_path_buf(),
                    source: e,
                }
            }
        })?;
    writeln!(file, "{}", hex::encode(secret)).map_err(io(path))?;
    file.sync_all().map_err(io(path))
}

/// Reads a secret written by [`write_secret`], refusing a file others can read.
///
/// # Errors
/// [`FileError`] naming the file and what is wrong.
pub fn read_secret(path: &Path) -> Result<[u8; 32], FileError> {
    let meta = std::fs::metadata(path).map_err(io(path))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(FileError::TooOpen {
            path: path.to_path_buf(),
            mode,
        });
    }
    let text = std::fs::read_to_string(path).map_err(io(path))?;
    let bytes = hex::decode(text.trim()).map_err(|_| invalid(path, "not hex"))?;
    bytes
        .try_into()
        .map_err(|_| invalid(path, "a secret is 32 bytes"))
}

/// Reads a secret key file ([`read_secret`]) as an ed25519 key.
///
/// # Errors
/// As [`read_secret`].
pub fn read_signing_key(path: &Path) -> Result<SigningKey, FileError> {
    read_secret(path).map(|seed| SigningKey::from_bytes(&seed))
}

/// Writes a file atomically (temporary file, fsync, rename).
///
/// # Errors
/// [`FileError::Io`] naming the temporary file or the target.
pub fn write_public(path: &Path, contents: &[u8]) -> Result<(), FileError> {
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::File::create(&tmp).map_err(io(&tmp))?;
    file.write_all(contents).map_err(io(&tmp))?;
    file.sync_all().map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}

/// Writes a file only its owner may read (mode 0600), atomically (a temporary file beside it,
/// renamed over it): printed passes and code images, which hold ID numbers, photos and codes.
/// An existing file is replaced; the temporary file is made 0600 before anything is written.
///
/// # Errors
/// [`FileError::Io`] naming the file.
pub fn write_private(path: &Path, contents: &[u8]) -> Result<(), FileError> {
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io(&tmp))?;
    file.write_all(contents).map_err(io(&tmp))?;
    file.sync_all().map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}

/// Writes a public key as hex, atomically ([`write_public`]).
///
/// # Errors
/// [`FileError::Io`] naming the file.
pub fn write_public_key(path: &Path, key: &VerifyingKey) -> Result<(), FileError> {
    write_public(path, format!("{}\n", public_key_hex(key)).as_bytes())
}

/// Reads a public key written by [`write_public_key`] (`root.pub`).
///
/// # Errors
/// [`FileError::Io`], or [`FileError::Invalid`] if it is not 32 bytes of hex of a valid
/// ed25519 key.
pub fn read_public_key(path: &Path) -> Result<VerifyingKey, FileError> {
    let text = std::fs::read_to_string(path).map_err(io(path))?;
    parse_public_key_hex(&text).map_err(|why| invalid(path, why.to_string()))
}

/// Reads `node.cert` as issued by the district root (the signature is checked by whoever
/// trusts it, not here).
///
/// # Errors
/// [`FileError::Io`], or [`FileError::Invalid`] if the bytes are not a node certificate.
pub fn read_node_cert(path: &Path) -> Result<NodeCert, FileError> {
    let bytes = std::fs::read(path).map_err(io(path))?;
    NodeCert::decode(&bytes).map_err(|e| invalid(path, e.to_string()))
}

/// A configuration file: the parsed value and the text, kept to point at the line of a
/// value that parses but is refused.
fn read_toml<T: serde::de::DeserializeOwned>(path: &Path) -> Result<(T, String), FileError> {
    let text = std::fs::read_to_string(path).map_err(io(path))?;
    match toml::from_str(&text) {
        Ok(value) => Ok((value, text)),
        Err(e) => {
            let offset = e.span().map_or(0, |span| span.start);
            let mut why = e.message().trim_end().to_string();
            // toml names an unknown key but not the key of a bad value: name it.
            if !why.starts_with("unknown field")
                && let Some(key) = key_at(&text, offset)
            {
                why = format!("{key}: {why}");
            }
            if why.contains("socket address") {
                why.push_str(" (expected IP:port, such as 192.168.10.2:7300 or [::1]:7300)");
            }
            Err(config_error(path, &text, offset, &why))
        }
    }
}

/// The top-level key assigned on the line holding byte `offset`, if any.
fn key_at(text: &str, offset: usize) -> Option<&str> {
    let start = text.get(..offset)?.rfind('\n').map_or(0, |i| i + 1);
    let line = text[start..].lines().next()?;
    let (key, _) = line.split_once('=')?;
    let key = key.trim();
    let plain = !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    plain.then_some(key)
}

/// `path:line:column: why`, the line and column (1-based, in characters) of byte `offset`.
fn config_error(path: &Path, text: &str, offset: usize, why: &str) -> FileError {
    let mut end = offset.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let before = &text[..end];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    FileError::Config {
        path: path.to_path_buf(),
        line,
        column,
        why: why.to_string(),
    }
}

/// A refused value of top-level `key`: the error points at the value (or, if the key is
/// absent and a default was refused, at the start of the file).
fn refuse_key(path: &Path, text: &str, key: &str, why: &str) -> FileError {
    let mut offset = 0;
    let mut at = 0;
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim_start();
        let rest = trimmed.strip_prefix(key).map(str::trim_start);
        if let Some(rest) = rest.filter(|rest| rest.starts_with('=')) {
            let eq = line.len() - rest.len();
            let value = &line[eq + 1..];
            at = offset + eq + 1 + (value.len() - value.trim_start().len());
            break;
        }
        offset += line.len();
    }
    config_error(path, text, at, &format!("{key}: {why}"))
}

fn write_toml<T: Serialize>(path: &Path, value: &T, header: &str) -> Result<(), FileError> {
    let body = toml::to_string(value).map_err(|e| invalid(path, e.to_string()))?;
    write_public(path, format!("{header}{body}").as_bytes())
}

/// `node.toml`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// The community's number in its district, 1 or more (0 is the hub's); must match `node.cert`.
    pub community: CommunityId,
    /// 1 to 64 bytes (`COMMUNITY_NAME_LEN_MAX`); shown on passes and at the hub.
    pub community_name: String,
    /// UDP address of the QUIC endpoint for gates and the console.
    pub listen: SocketAddr,
    /// Unix seconds when declarations opened; the deadline is 5 days later.
    pub campaign_start: u64,
    /// How long a resident's code stays valid before they must declare again.
    #[serde(default = "default_code_validity_days")]
    pub code_validity_days: u32,
    /// The district hub's QUIC address; without it the node runs alone.
    #[serde(default)]
    pub hub: Option<SocketAddr>,
    /// During a lockdown, may residents go out? (Staff always may; visitors and vehicles
    /// never enter.) The order's default: no.
    #[serde(default)]
    pub residents_may_leave_in_lockdown: bool,
    /// Flag a resident let in twice without going out in between (a lent code?). The guard
    /// sees the flag; the person is not refused for it.
    #[serde(default)]
    pub anti_passback: bool,
    /// Advertising on the LAN (`[mdns]`); off unless configured.
    #[serde(default)]
    pub mdns: MdnsConfig,
    /// The resident pages over HTTP (`[web]`); off unless configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub web: Option<WebConfig>,
}

/// `[web]` in `node.toml`: serve the resident pages. HTTPS with `tls_cert` and `tls_key`;
/// plain HTTP without them, and then the node warns at start when it listens beyond
/// loopback.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebConfig {
    /// TCP address of the pages, e.g. `127.0.0.1:8080` (port 0 picks a free one; the bound
    /// address is written to `web.addr`).
    pub listen: SocketAddr,
    /// The pages' TLS certificate chain, PEM (leaf first); relative to the node directory.
    /// Given together with `tls_key`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of `tls_cert`, PEM (PKCS#8, PKCS#1 or SEC1); relative to the node
    /// directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,
    /// The pages' address as residents type it (`https://menjin.example.cn/`), printed on
    /// the household-code slips. Without it the slips print the Host header of the clerk's
    /// browser (checked, but a forged Host would be printed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_url: Option<String>,
}

/// A TLS file path longer than this is a configuration mistake (as `SPOOL_PATH_LEN_MAX`).
const TLS_PATH_LEN_MAX: usize = 1024;
/// `public_url` is printed on a slip: a short address, in bytes.
pub const PUBLIC_URL_LEN_MAX: usize = 100;

/// Whether `url` is an address fit to print for residents: `http://` or `https://`, a host
/// (letters, digits, `.`, `-`, or `[...]`), an optional `:port`, an optional path of plain
/// characters; at most [`PUBLIC_URL_LEN_MAX`] bytes.
pub fn public_url_ok(url: &str) -> bool {
    let Some(rest) = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
    else {
        return false;
    };
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let host = match authority.rsplit_once(':') {
        Some((h, port)) if !h.ends_with(':') && !port.contains(']') => {
            if !port.parse::<u16>().is_ok_and(|p| p > 0) {
                return false;
            }
            h
        }
        _ => authority,
    };
    let host_ok = if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        !v6.is_empty() && v6.chars().all(|c| c.is_ascii_hexdigit() || c == ':')
    } else {
        !host.is_empty()
            && !host.starts_with(['.', '-'])
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-'))
    };
    url.len() <= PUBLIC_URL_LEN_MAX
        && host_ok
        && path
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '.' | '-' | '_' | '~'))
}

/// `[mdns]` in `node.toml`: advertise `_menjin._udp.local.` so gates find the node.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MdnsConfig {
    /// Advertise the node; `interfaces` is then required.
    #[serde(default)]
    pub enabled: bool,
    /// Interface names, or `all` (every interface except loopback and container bridges).
    /// Loopback only when `lo` is listed.
    #[serde(default)]
    pub interfaces: Vec<String>,
}

/// `[discovery]` in `gate.toml`: find the community's node by mDNS; `node` stays the
/// fallback.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiscoveryConfig {
    /// Browse for the node at each (re)connection; `interfaces` is then required.
    #[serde(default)]
    pub enabled: bool,
    /// As [`MdnsConfig::interfaces`].
    #[serde(default)]
    pub interfaces: Vec<String>,
    /// How long a gate listens for advertisements.
    #[serde(default = "default_browse_ms")]
    pub browse_ms: u64,
}

impl Default for DiscoveryConfig {
    fn default() -> Self {
        DiscoveryConfig {
            enabled: false,
            interfaces: Vec::new(),
            browse_ms: default_browse_ms(),
        }
    }
}

fn default_browse_ms() -> u64 {
    BROWSE_MS_DEFAULT
}

/// How long a gate listens for advertisements by default: mDNS responders answer within
/// 20 to 120 ms, plus the queries to resolve each instance.
pub const BROWSE_MS_DEFAULT: u64 = 1_500;
/// Bounds of `browse_ms` in `gate.toml`.
pub const BROWSE_MS_MIN: u64 = 100;
/// The upper bound of `browse_ms`: every (re)connection waits this long at most.
pub const BROWSE_MS_MAX: u64 = 10_000;

/// Interface names as `ip link` knows them (IFNAMSIZ is 16 with the terminating NUL).
const INTERFACE_NAME_LEN_MAX: usize = 15;
/// More interfaces than a gate or node has; a longer list is a configuration mistake.
const INTERFACES_MAX: usize = 16;

/// Checks an interface list (`what` names it in messages: `mdns.interfaces`, `--mdns`):
/// names of 1 to 15 printable bytes without `/`, or `all`; required when `enabled`.
///
/// # Errors
/// [`InterfacesError`] naming the list and the offending name.
pub fn check_interfaces(
    what: &'static str,
    enabled: bool,
    names: &[String],
) -> Result<(), InterfacesError> {
    if enabled && names.is_empty() {
        return Err(InterfacesError::Empty { what });
    }
    if names.len() > INTERFACES_MAX {
        return Err(InterfacesError::TooMany {
            what,
            count: names.len(),
        });
    }
    for name in names {
        let ok = !name.is_empty()
            && name.len() <= INTERFACE_NAME_LEN_MAX
            && name.bytes().all(|b| b.is_ascii_graphic() && b != b'/');
        if !ok {
            return Err(InterfacesError::BadName {
                what,
                name: name.clone(),
            });
        }
    }
    Ok(())
}

/// `hub.toml`: a district hub. Its other files have the node's names (`node.key`,
/// `node.cert` with community 0, `root.pub`, `idhash.key`, `console.key`, `db/`), since the
/// hub is the same daemon in another role.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HubConfig {
    /// The hub's name, 1 to 64 bytes; shown in `menjin hub status`.
    pub name: String,
    /// UDP address for nodes and the hub console.
    pub listen: SocketAddr,
}

fn default_code_validity_days() -> u32 {
    30
}

/// `gate.toml`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GateConfig {
    /// 1 to 32 bytes; the name the node enrolled the gate's key under (see `check_gate_id`).
    pub gate_id: String,
    /// The community the gate belongs to; a node of another community is refused at the
    /// handshake.
    pub community: CommunityId,
    /// The node's QUIC address.
    pub node: SocketAddr,
    /// The district root public key (hex): the only trust anchor a gate needs.
    pub root_public_key: String,
    /// Which way this lane lets people through: `in` or `out`.
    #[serde(default)]
    pub direction: Direction,
    /// Seconds without a word from the node (its feed sends a heartbeat every 2 s) after
    /// which the gate goes into degraded mode: visitors refused, residents decided from the
    /// cache.
    #[serde(default = "default_stale_after_s")]
    pub stale_after_s: u64,
    /// A gate clock further than this from the node's is shown to the guard and logged.
    #[serde(default = "default_clock_skew_max_s")]
    pub clock_skew_max_s: u64,
    /// Events decided offline the gate buffers before it stops letting people through
    /// unlogged; an alarm is raised at 90%.
    #[serde(default = "default_buffer_capacity")]
    pub buffer_capacity: u64,
    /// Flag a resident let in twice at this gate without going out in between, while offline
    /// (online, the node's own `anti_passback` setting decides).
    #[serde(default)]
    pub anti_passback: bool,
    /// Finding the node by mDNS (`[discovery]`); off unless configured.
    #[serde(default)]
    pub discovery: DiscoveryConfig,
    /// What the scanner may hand the gate besides code texts (`[scanner]`).
    #[serde(default, skip_serializing_if = "ScannerConfig::is_unset")]
    pub scanner: ScannerConfig,
}

/// `[scanner]` in `gate.toml`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScannerConfig {
    /// The directory a picture-taking scanner saves its PNG images in: a scan that is not a
    /// code text names a file here, and nothing elsewhere is ever opened. Without it, such a
    /// scan is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spool: Option<PathBuf>,
}

impl ScannerConfig {
    fn is_unset(&self) -> bool {
        *self == ScannerConfig::default()
    }
}

/// A spool path longer than this is a configuration mistake (Linux's PATH_MAX is 4096).
const SPOOL_PATH_LEN_MAX: usize = 1024;

fn default_stale_after_s() -> u64 {
    60
}

fn default_clock_skew_max_s() -> u64 {
    30
}

fn default_buffer_capacity() -> u64 {
    100_000
}

/// Paths inside a node directory.
#[derive(Clone, Debug)]
pub struct NodeDir(pub PathBuf);

impl NodeDir {
    /// `node.toml` (or `hub.toml` for a hub: [`NodeDir::hub_config`]).
    pub fn config(&self) -> PathBuf {
        self.0.join("node.toml")
    }
    /// `node.key`: the daemon's ed25519 secret key, mode 0600.
    pub fn key(&self) -> PathBuf {
        self.0.join("node.key")
    }
    /// `node.cert`: the district root's certificate for `node.key`.
    pub fn cert(&self) -> PathBuf {
        self.0.join("node.cert")
    }
    /// `node.cert.previous`: the certificate before the last rekey; gates deciding alone
    /// need it for the codes its key signed (the trust feed carries it while they may be in
    /// force).
    pub fn previous_cert(&self) -> PathBuf {
        self.0.join("node.cert.previous")
    }
    /// `root.pub`: the district root public key, the trust anchor.
    pub fn root_pub(&self) -> PathBuf {
        self.0.join("root.pub")
    }
    /// `idhash.key`: the district's key for hashing ID numbers (the same at every node).
    pub fn idhash_key(&self) -> PathBuf {
        self.0.join("idhash.key")
    }
    /// `console.key`: the workstation's key towards its own node.
    pub fn console_key(&self) -> PathBuf {
        self.0.join("console.key")
    }
    /// `db/`: the sled database.
    pub fn db(&self) -> PathBuf {
        self.0.join("db")
    }
    /// Written by a running node: the address it actually bound (tests bind port 0).
    pub fn addr(&self) -> PathBuf {
        self.0.join("node.addr")
    }
    /// Written by a running node with `[web]`: the address its pages listen on.
    pub fn web_addr(&self) -> PathBuf {
        self.0.join("web.addr")
    }
    /// `hub.toml`, present only in a hub's directory.
    pub fn hub_config(&self) -> PathBuf {
        self.0.join("hub.toml")
    }

    /// Reads and checks `hub.toml`.
    ///
    /// # Errors
    /// [`FileError::Config`] pointing at the refused value, or the IO error.
    pub fn read_hub_config(&self) -> Result<HubConfig, FileError> {
        let path = self.hub_config();
        let (cfg, text): (HubConfig, _) = read_toml(&path)?;
        if cfg.name.is_empty() || cfg.name.len() > menjin_proto::cert::COMMUNITY_NAME_LEN_MAX {
            return Err(refuse_key(&path, &text, "name", "must be 1 to 64 bytes"));
        }
        Ok(cfg)
    }

    /// Writes `hub.toml` atomically.
    ///
    /// # Errors
    /// [`FileError`] naming the file.
    pub fn write_hub_config(&self, cfg: &HubConfig) -> Result<(), FileError> {
        write_toml(
            &self.hub_config(),
            cfg,
            "# Menjin district hub. See deploy/README.md.\n",
        )
    }

    /// Reads and checks `node.toml`: every value in range before the node starts.
    ///
    /// # Errors
    /// [`FileError::Config`] pointing at the refused value, [`FileError::Interfaces`], or the
    /// IO error.
    pub fn read_config(&self) -> Result<NodeConfig, FileError> {
        let path = self.config();
        let (cfg, text): (NodeConfig, _) = read_toml(&path)?;
        let refuse = |key, why| Err(refuse_key(&path, &text, key, why));
        if cfg.community_name.is_empty()
            || cfg.community_name.len() > menjin_proto::cert::COMMUNITY_NAME_LEN_MAX
        {
            return refuse("community_name", "must be 1 to 64 bytes");
        }
        if cfg.code_validity_days == 0 || cfg.code_validity_days > 366 {
            return refuse("code_validity_days", "must be 1 to 366");
        }
        if cfg.community == menjin_proto::cert::HUB_COMMUNITY {
            return refuse(
                "community",
                "0 is the district hub's; a community is 1 or more",
            );
        }
        check_interfaces("mdns.interfaces", cfg.mdns.enabled, &cfg.mdns.interfaces).map_err(
            |source| FileError::Interfaces {
                path: self.config(),
                source,
            },
        )?;
        if let Some(web) = &cfg.web {
            self.check_web_tls(web, &text)?;
            if web.public_url.as_deref().is_some_and(|u| !public_url_ok(u)) {
                let why = format!(
                    "must be an http:// or https:// address of at most {PUBLIC_URL_LEN_MAX} \
                     bytes: a host name or address, an optional :port and path"
                );
                return Err(refuse_key(&path, &text, "public_url", &why));
            }
        }
        Ok(cfg)
    }

    /// `tls_cert` and `tls_key`: both or neither, plain paths, readable files. (Whether
    /// they hold a certificate and its key is for the pages to check when they load them:
    /// [`NodeDir::refuse_config`].)
    fn check_web_tls(&self, web: &WebConfig, text: &str) -> Result<(), FileError> {
        let path = self.config();
        let refuse = |key, why: &str| Err(refuse_key(&path, text, key, why));
        match (&web.tls_cert, &web.tls_key) {
            (None, None) => return Ok(()),
            (Some(_), None) => {
                return refuse(
                    "tls_cert",
                    "give tls_key with it (the certificate's private key)",
                );
            }
            (None, Some(_)) => {
                return refuse("tls_key", "give tls_cert with it (the key's certificate)");
            }
            (Some(_), Some(_)) => {}
        }
        for (key, file) in [("tls_cert", &web.tls_cert), ("tls_key", &web.tls_key)] {
            let Some(file) = file else { continue };
            let plain = !file.as_os_str().is_empty()
                && file.as_os_str().len() <= TLS_PATH_LEN_MAX
                && file
                    .to_str()
                    .is_some_and(|s| !s.chars().any(char::is_control));
            if !plain {
                let why = format!(
                    "must be a file path of 1 to {TLS_PATH_LEN_MAX} bytes, without control characters"
                );
                return refuse(key, &why);
            }
            let full = self.resolve(file);
            if let Err(e) = std::fs::File::open(&full) {
                return refuse(key, &format!("cannot read {}: {e}", full.display()));
            }
        }
        Ok(())
    }

    /// A path of `node.toml`: relative paths are inside the node directory.
    pub fn resolve(&self, path: &Path) -> PathBuf {
        self.0.join(path)
    }

    /// A refusal of `key`'s value in `node.toml`, found after reading it (a certificate that
    /// does not parse, a key that is not the certificate's): `node.toml:LINE:COLUMN: key:
    /// why`, as [`NodeDir::read_config`] reports its own refusals.
    pub fn refuse_config(&self, key: &str, why: &str) -> FileError {
        let path = self.config();
        match std::fs::read_to_string(&path) {
            Ok(text) => refuse_key(&path, &text, key, why),
            Err(e) => FileError::Io { path, source: e },
        }
    }

    /// Writes `node.toml` atomically.
    ///
    /// # Errors
    /// [`FileError`] naming the file.
    pub fn write_config(&self, cfg: &NodeConfig) -> Result<(), FileError> {
        write_toml(
            &self.config(),
            cfg,
            "# Menjin community node. See deploy/README.md.\n",
        )
    }

    /// The address of the running node, as it wrote it at start.
    pub fn read_addr(&self) -> Result<SocketAddr, FileError> {
        let path = self.addr();
        let text = std::fs::read_to_string(&path).map_err(io(&path))?;
        text.trim()
            .parse()
            .map_err(|_| invalid(&path, "not a socket address"))
    }
}

/// Paths inside a gate directory.
#[derive(Clone, Debug)]
pub struct GateDir(pub PathBuf);

impl GateDir {
    /// `gate.toml`.
    pub fn config(&self) -> PathBuf {
        self.0.join("gate.toml")
    }
    /// `gate.key`: the gate's ed25519 secret key, mode 0600, enrolled at the node.
    pub fn key(&self) -> PathBuf {
        self.0.join("gate.key")
    }
    /// The gate's own sled cache (trust data, clock, offline event buffer).
    pub fn cache(&self) -> PathBuf {
        self.0.join("cache")
    }
    /// Written by `gate run --screen` while it runs: the address the guard's screen
    /// listens on.
    pub fn screen_addr(&self) -> PathBuf {
        self.0.join("screen.addr")
    }
    /// Reads and checks `gate.toml`: every value in range before the gate starts.
    ///
    /// # Errors
    /// [`FileError::Config`] pointing at the refused value, [`FileError::Interfaces`],
    /// [`FileError::Invalid`] for `discovery.browse_ms`, [`FileError::Config`] for a
    /// `scanner.spool` that is not an absolute path, or the IO error.
    pub fn read_config(&self) -> Result<GateConfig, FileError> {
        let path = self.config();
        let (cfg, text): (GateConfig, _) = read_toml(&path)?;
        parse_public_key_hex(&cfg.root_public_key)
            .map_err(|why| refuse_key(&path, &text, "root_public_key", &why.to_string()))?;
        // The id the node enrolled (`check_gate_id`, as at enrolment): it is printed to the
        // guard's terminal and written in every log line.
        if menjin_proto::wire::check_gate_id(&cfg.gate_id).is_err() {
            return Err(refuse_key(
                &path,
                &text,
                "gate_id",
                "must be 1 to 32 letters, digits, '-' or '_'",
            ));
        }
        let ranges = [
            ("stale_after_s", cfg.stale_after_s, 3, 86_400),
            ("clock_skew_max_s", cfg.clock_skew_max_s, 1, 86_400),
            ("buffer_capacity", cfg.buffer_capacity, 100, 10_000_000),
        ];
        for (key, value, min, max) in ranges {
            if !(min..=max).contains(&value) {
                return Err(refuse_key(
                    &path,
                    &text,
                    key,
                    &format!("must be {min} to {max}"),
                ));
            }
        }
        let d = &cfg.discovery;
        check_interfaces("discovery.interfaces", d.enabled, &d.interfaces).map_err(|source| {
            FileError::Interfaces {
                path: self.config(),
                source,
            }
        })?;
        if !(BROWSE_MS_MIN..=BROWSE_MS_MAX).contains(&d.browse_ms) {
            return Err(invalid(
                &self.config(),
                format!(
                    "discovery.browse_ms must be {} to {}",
                    BROWSE_MS_MIN, BROWSE_MS_MAX
                ),
            ));
        }
        if let Some(spool) = &cfg.scanner.spool {
            let ok = spool.is_absolute()
                && spool.as_os_str().len() <= SPOOL_PATH_LEN_MAX
                && spool
                    .to_str()
                    .is_some_and(|s| !s.chars().any(char::is_control));
            if !ok {
                let why = format!(
                    "must be an absolute directory path of at most {SPOOL_PATH_LEN_MAX} bytes, without control characters"
                );
                return Err(refuse_key(&path, &text, "spool", &why));
            }
        }
        Ok(cfg)
    }
    /// Writes `gate.toml` atomically.
    ///
    /// # Errors
    /// [`FileError`] naming the file.
    pub fn write_config(&self, cfg: &GateConfig) -> Result<(), FileError> {
        write_toml(
            &self.config(),
            cfg,
            "# Menjin gate. See deploy/README.md.\n",
        )
    }
}

/// Paths inside a district directory.
#[derive(Clone, Debug)]
pub struct DistrictDir(pub PathBuf);

impl DistrictDir {
    /// `root.key`: the district root's secret key. Keep it offline; it signs node certificates.
    pub fn root_key(&self) -> PathBuf {
        self.0.join("root.key")
    }
    /// `root.pub`: copied into every node, hub and gate.
    pub fn root_pub(&self) -> PathBuf {
        self.0.join("root.pub")
    }
    /// `idhash.key`: copied into every node and hub.
    pub fn idhash_key(&self) -> PathBuf {
        self.0.join("idhash.key")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_url_is_a_plain_printable_address() {
        for ok in [
            "https://menjin.example.cn/",
            "http://192.168.10.2:8080/",
            "https://[fd00::2]:8443/menjin/",
            "https://menjin.example.cn",
        ] {
            assert!(public_url_ok(ok), "{ok}");
        }
        for bad in [
            "",
            "menjin.example.cn",
            "ftp://menjin.example.cn/",
            "https://",
            "https://evil.example/\"><script>",
            "https://a b/",
            "https://host:0/",
            "https://host:99999/",
            "https://user@host/",
            "https://host/?q=1",
            "javascript:alert(1)",
            &format!("https://{}.cn/", "a".repeat(PUBLIC_URL_LEN_MAX)),
        ] {
            assert!(!public_url_ok(bad), "{bad}");
        }
    }

    #[test]
    fn secret_is_private_and_not_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.key");
        write_secret(&path, &[7; 32]).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(read_secret(&path).unwrap(), [7; 32]);
        assert!(matches!(
            write_secret(&path, &[8; 32]),
            Err(FileError::Exists(_))
        ));
        assert_eq!(read_secret(&path).unwrap(), [7; 32]);
    }

    #[test]
    fn readable_secret_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.key");
        write_secret(&path, &[7; 32]).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(read_secret(&path), Err(FileError::TooOpen { .. })));
    }

    #[test]
    fn unknown_config_key_is_refused_with_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let nd = NodeDir(dir.path().to_path_buf());
        std::fs::write(
            nd.config(),
            "community = 1\ncommunity_name = \"x\"\nlisten = \"127.0.0.1:0\"\ncampaign_start = 0\ncolour = \"red\"\n",
        )
        .unwrap();
        let err = nd.read_config().unwrap_err().to_string();
        assert!(err.contains("node.toml"), "{err}");
        assert!(err.contains("colour"), "{err}");
        assert!(
            err.contains("node.toml:5:1: unknown field `colour`"),
            "{err}"
        );
    }
}
