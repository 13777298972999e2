//! The district hub: the same daemon in another role. It admits community nodes by their
//! certificates, receives each node's gate log as an append-only stream (stored in sled tree
//! `hub_log`, keyed by community and sequence number, so a batch sent twice is stored once),
//! and answers the district operator's console.
//!
//! Architecture invariant: a node's link frames are accepted only on a connection
//! authenticated with the key the hub enrolled for that community; the community of every
//! stored event is the connection's, never a field the node sends.

#![warn(unreachable_pub, missing_docs, unused_crate_dependencies)]

use std::collections::{HashMap, HashSet};

use menjin_proto::idnum::IdHash;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use ed25519_dalek::{SigningKey, VerifyingKey};
use menjin_proto::cert::HUB_COMMUNITY;
use menjin_proto::link::{LOG_BATCH_MAX, LinkFrame};
use menjin_proto::wire::{
    self, CONSOLE_REQUEST_LEN_MAX, CommunityLink, DistrictEvent, ErrorKind, GateEvent, HubRequest,
    HubStatus, LOG_PAGE_MAX, LogQuery, Response,
};
use menjin_proto::{CommunityId, NodeCert};

use menjin_net::clock::now_ms;
use menjin_net::frame::{FrameError, read_frame, write_frame};
use menjin_net::server::{Server, Service, serve_requests};
use menjin_net::tls::{self, PeerRole, PeerTable};
use menjin_replication::{Replication, receive_frame, send_frames};
use menjin_store::files::{
    FileError, HubConfig, NodeDir, read_node_cert, read_public_key, read_signing_key,
};
use menjin_sync::{DocId, NodeEnrolment, NodeRevocation, PolicyBatch, Role};

pub mod index;

/// An operator's name on a lockdown or a revocation, in bytes.
const OPERATOR_LEN_MAX: usize = 64;
/// How long a revocation of a linked node's key waits for that node to have it before its
/// link is cut (milliseconds): an honest node then tells its gates to refuse it; a rogue one
/// gains nothing it did not have.
pub const REVOKED_NOTICE_MS: u64 = 1_000;

/// Why a hub could not be opened or started.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HubError {
    /// A file of the hub directory could not be read (see [`FileError`]).
    #[error(transparent)]
    File(#[from] FileError),
    /// sled failed opening `db/` or reading its trees (held by another process, corrupt).
    #[error("opening the database: {0}")]
    Db(#[from] sled::Error),
    /// `node.cert` does not verify against `root.pub` (another district's, or expired: renew it
    /// with `rekey`).
    #[error("{}: {source}", .path.display())]
    Cert {
        /// The certificate file.
        path: PathBuf,
        /// Why it does not verify.
        source: menjin_proto::CertError,
    },
    /// `node.cert` is not for this hub: another key than `node.key`, or a community other than 0.
    #[error("{} is not this hub's certificate", .0.display())]
    NotThisHub(PathBuf),
    /// The hub's gate log could not be opened.
    #[error(transparent)]
    Log(#[from] HubLogError),
    /// A stored enrolled node certificate does not decode (tree `nodes` is corrupt).
    #[error("enrolled node certificate: {0}")]
    Enrolled(menjin_proto::CertError),
    /// The replicated documents could not be loaded.
    #[error(transparent)]
    Replication(#[from] menjin_replication::ReplicationError),
    /// The QUIC endpoint could not bind its address (in use, or not this host's).
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address in `hub.toml` (or given on the command line).
        addr: std::net::SocketAddr,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// The gate log's writer thread could not be started.
    #[error("cannot start the hub log writer: {0}")]
    Thread(std::io::Error),
}

/// Why a node's log batch was refused or the hub log could not be read. A refused batch
/// stores nothing; the node's link ends and it resends from the hub's cursor.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HubLogError {
    /// sled failed (disk full, IO error).
    #[error("hub log storage: {0}")]
    Storage(#[from] sled::Error),
    /// The batch starts after the next sequence number the hub needs: events would be missing.
    #[error("log batch from community {community} starts at {first}, the hub needs {next} first")]
    Gap {
        /// The community whose node sent it (from its authenticated key).
        community: CommunityId,
        /// The batch's first sequence number.
        first: u64,
        /// The sequence number the hub needs next.
        next: u64,
    },
    /// The batch's sequence numbers are not consecutive.
    #[error("log batch from community {0} is not in consecutive sequence order")]
    Disorder(CommunityId),
    /// More than [`LOG_BATCH_MAX`] events in one batch.
    #[error("log batch of {0} events exceeds the limit")]
    TooBig(usize),
    /// A key in `hub_log` is not community (4 bytes) ++ sequence (8 bytes).
    #[error("hub log record is corrupt: {}", hex::encode(.0))]
    CorruptKey(Vec<u8>),
    /// A stored event does not decode.
    #[error("hub log record is corrupt: {0}")]
    Corrupt(menjin_proto::wire::WireError),
    /// The batch holds an event under a number the hub holds another event under: the
    /// node's log went back (restored from an older backup) and numbered new events again.
    /// Nothing of the batch is stored; the node is told to renumber (`LogConflict`).
    #[error(
        "community {community} sent gate event {seq} unlike the one the hub holds under that \
         number (a node restored from an older backup?); the node is told to renumber after {next}"
    )]
    Conflict {
        /// The community.
        community: CommunityId,
        /// The first differing sequence number.
        seq: u64,
        /// The hub's next sequence number for the community.
        next: u64,
    },
}

/// Why a node's link ended (the node reconnects).
#[derive(Debug, thiserror::Error)]
enum LinkError {
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error("link stream: {0}")]
    Accept(#[from] quinn::ConnectionError),
    #[error("link stream: expected Hello, got {0:?}")]
    NoHello(Box<LinkFrame>),
    #[error("link stream: unexpected frame")]
    Unexpected,
    #[error("link stream: {0}")]
    Store(#[from] menjin_replication::syncstore::StoreError),
    /// The replica panicked on this peer's frames and ended its session.
    #[error("link stream: {0}")]
    Panicked(#[from] menjin_replication::PeerPanicked),
    #[error("link stream: {0}")]
    Log(#[from] HubLogError),
    #[error("link stream: {0}")]
    Task(#[from] tokio::task::JoinError),
}

impl From<menjin_replication::LinkStepError> for LinkError {
    fn from(e: menjin_replication::LinkStepError) -> LinkError {
        use menjin_replication::LinkStepError as E;
        match e {
            E::Store(e) => LinkError::Store(e),
            E::Frame(e) => LinkError::Frame(e),
            E::Panicked(e) => LinkError::Panicked(e),
        }
    }
}

/// Owner of sled tree `hub_log`: community (u32 BE) ++ sequence (u64 BE) → [`GateEvent`].
#[derive(Clone)]
pub struct HubLog {
    db: sled::Db,
    tree: sled::Tree,
}

fn log_key(community: CommunityId, seq: u64) -> [u8; 12] {
    let mut k = [0u8; 12];
    k[..4].copy_from_slice(&community.to_be_bytes());
    k[4..].copy_from_slice(&seq.to_be_bytes());
    k
}

impl HubLog {
    /// Opens (or creates) sled tree `hub_log`.
    ///
    /// # Errors
    /// [`HubLogError::Storage`] if sled fails.
    pub fn open(db: &sled::Db) -> Result<HubLog, HubLogError> {
        Ok(HubLog {
            db: db.clone(),
            tree: db.open_tree("hub_log")?,
        })
    }

    /// The next sequence number the hub needs from `community`.
    pub fn next_seq(&self, community: CommunityId) -> Result<u64, HubLogError> {
        let prefix = community.to_be_bytes();
        Ok(match self.tree.scan_prefix(prefix).next_back() {
            Some(item) => {
                let (k, _) = item?;
                u64::from_be_bytes(
                    k[4..12]
                        .try_into()
                        .map_err(|_| HubLogError::CorruptKey(k.to_vec()))?,
                ) + 1
            }
            None => 1,
        })
    }

    /// Stores a batch (skipping events already held, once compared with the held ones),
    /// flushes, and returns the batch's last sequence number (the hub's last one for an empty
    /// batch): everything up to it is held, as the node sent it.
    ///
    /// # Errors
    /// [`HubLogError`] for a gap, disorder, an oversized batch, an event unlike the one held
    /// under its number ([`HubLogError::Conflict`]) or storage failure; nothing of a refused
    /// batch is stored.
    pub fn store(&self, community: CommunityId, events: &[GateEvent]) -> Result<u64, HubLogError> {
        let upto = self.stage(community, events)?;
        self.db.flush()?;
        Ok(upto)
    }

    /// [`HubLog::store`] without the flush: what [`LogCommitter`] does for each batch of a
    /// group before it flushes the group once.
    fn stage(&self, community: CommunityId, events: &[GateEvent]) -> Result<u64, HubLogError> {
        if events.len() > LOG_BATCH_MAX {
            return Err(HubLogError::TooBig(events.len()));
        }
        let next = self.next_seq(community)?;
        let Some(first) = events.first() else {
            return Ok(next - 1);
        };
        if first.seq > next {
            return Err(HubLogError::Gap {
                community,
                first: first.seq,
                next,
            });
        }
        if events.windows(2).any(|w| w[1].seq != w[0].seq + 1) {
            return Err(HubLogError::Disorder(community));
        }
        let mut batch = sled::Batch::default();
        let mut upto = next - 1;
        for ev in events {
            let bytes = wire::encode(ev);
            if ev.seq < next {
                // Held already: a resent batch is harmless only if it is the same event.
                let held = self.tree.get(log_key(community, ev.seq))?;
                if held.as_deref() != Some(bytes.as_slice()) {
                    return Err(HubLogError::Conflict {
                        community,
                        seq: ev.seq,
                        next,
                    });
                }
            } else {
                batch.insert(&log_key(community, ev.seq), bytes);
            }
            upto = ev.seq;
        }
        self.tree.apply_batch(batch)?;
        Ok(upto)
    }

    /// Events of one community or of all, filtered like a node's log query.
    pub fn query(
        &self,
        community: Option<CommunityId>,
        q: &LogQuery,
    ) -> Result<Vec<DistrictEvent>, HubLogError> {
        let limit = q.limit.clamp(1, LOG_PAGE_MAX) as usize;
        let iter = match community {
            Some(c) => self
                .tree
                .range(log_key(c, q.after_seq.map_or(1, |s| s + 1))..log_key(c, u64::MAX)),
            None => self.tree.iter(),
        };
        let mut out = Vec::new();
        for item in iter {
            let (k, v) = item?;
            let c = CommunityId::from_be_bytes(
                k[..4]
                    .try_into()
                    .map_err(|_| HubLogError::CorruptKey(k.to_vec()))?,
            );
            let ev: GateEvent =
                wire::decode(&v, wire::GATE_REQUEST_LEN_MAX).map_err(HubLogError::Corrupt)?;
            let keep = q.from_ms.is_none_or(|f| ev.time_ms >= f)
                && q.until_ms.is_none_or(|u| ev.time_ms <= u)
                && q.gate.as_ref().is_none_or(|g| *g == ev.gate)
                && q.holder.is_none_or(|h| Some(h) == ev.holder)
                && (community.is_some() || q.after_seq.is_none_or(|a| ev.seq > a));
            if keep {
                out.push(DistrictEvent {
                    community: c,
                    event: ev,
                });
                if out.len() >= limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// Events stored, all communities. Counts by walking the whole tree (sled's `len` is a scan),
    /// so it costs time in proportion to the district's log.
    pub fn len(&self) -> u64 {
        self.tree.len() as u64
    }

    /// No event stored from any community.
    pub fn is_empty(&self) -> bool {
        self.tree.is_empty()
    }
}

/// Batches one commit takes at most: a group of waiting batches is staged, flushed once, and
/// every batch of it acknowledged after that flush.
const LOG_GROUP_MAX: usize = 256;

/// A stored batch's answer: the last sequence number held, or why it was refused.
type LogReply = tokio::sync::oneshot::Sender<Result<u64, HubLogError>>;

/// The hub's one writer of the gate log: a thread that takes every batch waiting from every
/// link, stages them in order, flushes once and then answers each (group commit). With 200
/// nodes uploading at once the disk flushes once per group instead of once per batch, and no
/// batch is acknowledged before its flush. It ends when the hub (its sender) is dropped.
#[derive(Clone)]
pub struct LogCommitter {
    tx: tokio::sync::mpsc::Sender<(CommunityId, Vec<GateEvent>, LogReply)>,
}

impl LogCommitter {
    /// Starts the writer thread for `log`.
    ///
    /// # Errors
    /// If the thread cannot be started.
    pub fn start(log: HubLog) -> std::io::Result<LogCommitter> {
        let (tx, mut rx) =
            tokio::sync::mpsc::channel::<(CommunityId, Vec<GateEvent>, LogReply)>(LOG_GROUP_MAX);
        std::thread::Builder::new()
            .name("hub-log-commit".into())
            .spawn(move || {
                while let Some(first) = rx.blocking_recv() {
                    let mut group = vec![first];
                    while group.len() < LOG_GROUP_MAX {
                        match rx.try_recv() {
                            Ok(job) => group.push(job),
                            Err(_) => break,
                        }
                    }
                    let staged: Vec<_> = group
                        .iter()
                        .map(|(community, events, _)| log.stage(*community, events))
                        .collect();
                    let flushed = log.db.flush();
                    for ((_, _, reply), result) in group.into_iter().zip(staged) {
                        let result = match (&flushed, result) {
                            (Err(e), Ok(_)) => Err(HubLogError::Storage(sled::Error::Io(
                                std::io::Error::other(format!("flush: {e}")),
                            ))),
                            (_, r) => r,
                        };
                        // A link that went away meanwhile no longer waits for its answer.
                        let _ = reply.send(result);
                    }
                }
            })?;
        Ok(LogCommitter { tx })
    }

    /// Stores a batch (see [`HubLog::store`]) in the next group; answers after its flush.
    ///
    /// # Errors
    /// As [`HubLog::store`]; [`HubLogError::Storage`] if the writer thread is gone.
    pub async fn store(
        &self,
        community: CommunityId,
        events: Vec<GateEvent>,
    ) -> Result<u64, HubLogError> {
        let gone = || {
            HubLogError::Storage(sled::Error::Io(std::io::Error::other(
                "the hub log writer has stopped",
            )))
        };
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.tx
            .send((community, events, reply))
            .await
            .map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }
}

#[derive(Clone, Debug, Default)]
struct LinkState {
    name: String,
    connected: bool,
    last_contact_ms: u64,
    /// The node's current link.
    conn: Option<quinn::Connection>,
    /// The community's gates as the node last reported them.
    gates: Vec<menjin_proto::wire::GateLink>,
}

/// A running district hub.
pub struct Hub {
    /// `hub.toml` as read at open.
    pub config: HubConfig,
    key: SigningKey,
    cert: NodeCert,
    root: VerifyingKey,
    log: HubLog,
    /// The gate log's writer (group commit).
    committer: LogCommitter,
    /// Owner of sled tree `nodes`: community (u32 BE) → enrolled node certificate.
    nodes: sled::Tree,
    db: sled::Db,
    peers: PeerTable,
    links: Mutex<HashMap<CommunityId, LinkState>>,
    replication: Arc<Replication>,
    /// Routes of ID hashes to communities and each shard's counts, kept beside the cold
    /// roster shards (see [`index`]).
    index: index::RosterIndex,
    /// Owner of sled tree `health_pending`: keyed ID hash → (status, at) of health flags
    /// that match no declared resident yet. A flag goes into the policy document of the
    /// community whose roster holds the person, so until someone declares it waits here
    /// ([`Hub::place_pending_health`]).
    health_pending: sled::Tree,
    /// The replica's timer task is running ([`Hub::start_timers`]).
    timers: std::sync::atomic::AtomicBool,
    /// Communities whose roster changed since waiting health flags were last placed: only
    /// those are searched again ([`Hub::place_pending_health`]).
    rosters_changed: Mutex<HashSet<CommunityId>>,
}

/// How often the hub tries to place waiting health flags (`health_pending`).
pub const HEALTH_PENDING_RETRY_S: u64 = 30;

/// How long a decoded roster shard may go unused before the hub drops it from memory (it
/// stays on disk, cold, and is decoded again when a frame needs it).
pub const ROSTER_IDLE_S: u64 = 600;

impl Hub {
    /// Opens a hub directory.
    ///
    /// # Errors
    /// [`HubError`] naming what is wrong.
    pub fn open(dir: &NodeDir) -> Result<Arc<Hub>, HubError> {
        let config = dir.read_hub_config()?;
        let key = read_signing_key(&dir.key())?;
        let cert = read_node_cert(&dir.cert())?;
        let root = read_public_key(&dir.root_pub())?;
        let console = read_signing_key(&dir.console_key())?.verifying_key();
        cert.verify(&root, now_ms() / 1000)
            .map_err(|source| HubError::Cert {
                path: dir.cert(),
                source,
            })?;
        if cert.node_key != key.verifying_key() || cert.community != HUB_COMMUNITY {
            return Err(HubError::NotThisHub(dir.cert()));
        }
        let db = menjin_store::db::open(&dir.db())?;
        let log = HubLog::open(&db)?;
        let committer = LogCommitter::start(log.clone()).map_err(HubError::Thread)?;
        let nodes = db.open_tree("nodes")?;
        let peers = PeerTable::default();
        peers.insert(console.to_bytes(), PeerRole::Console);
        let mut links = HashMap::new();
        let replication = Replication::open(&db, Role::Hub)?;
        let index = index::RosterIndex::open(&db)?;
        let behind = index.catch_up(&replication)?;
        if behind > 0 {
            tracing::warn!(
                shards = behind,
                "roster shards indexed (ID routes and counts)"
            );
        }
        let health_pending = db.open_tree("health_pending")?;
        let revoked = replication.read(|r| r.district_policy().revoked_nodes);
        for item in nodes.iter() {
            let (k, v) = item?;
            let nc = NodeCert::decode(&v).map_err(HubError::Enrolled)?;
            if revoked.contains_key(nc.node_key.as_bytes()) {
                // Revoked, and the hub stopped before it took the enrolment out.
                tracing::warn!(community = nc.community, key = %nc.key_id(), "enrolled node key is revoked: taken out");
                nodes.remove(k)?;
                db.flush()?;
            } else {
                peers.insert(nc.node_key.to_bytes(), PeerRole::Node(nc.community));
            }
            links.insert(
                nc.community,
                LinkState {
                    name: nc.community_name.clone(),
                    ..LinkState::default()
                },
            );
        }
        (Hub {
            config,
            key,
            cert,
            root,
            log,
            committer,
            nodes,
            db,
            peers,
            links: Mutex::new(links),
            replication,
            index,
            health_pending,
            timers: std::sync::atomic::AtomicBool::new(false),
            rosters_changed: Mutex::default(),
        })
        .migrated()
    }

    /// The per-community split of the policy: lockdowns and health flags that an older hub
    /// wrote into the district document move into the community documents (once; nothing
    /// to do afterwards). Flags of people in no roster wait in `health_pending`.
    fn migrated(self) -> Result<Arc<Hub>, HubError> {
        let legacy: Vec<IdHash> = self
            .replication
            .read(menjin_sync::Replica::legacy_health_hashes);
        let routes = self.routes(&legacy.iter().copied().collect());
        let (moved, unplaced) = self.replication.migrate_policy(
            |h| routes.get(h).cloned().unwrap_or_default(),
            now_ms() / 1000,
        )?;
        if moved > 0 || !unplaced.is_empty() {
            tracing::warn!(
                moved,
                waiting = unplaced.len(),
                "district policy split per community"
            );
        }
        self.keep_pending(&unplaced)?;
        Ok(Arc::new(self))
    }

    /// The communities whose rosters hold each of `wanted` (one person may be declared in
    /// two homes), from the hub's ID route index: no roster is read.
    fn routes(&self, wanted: &HashSet<IdHash>) -> HashMap<IdHash, Vec<CommunityId>> {
        self.index.routes(wanted)
    }

    /// Each flag once for every community whose roster holds its person, and the flags of
    /// no declared resident.
    fn placed(
        &self,
        flags: Vec<menjin_sync::HealthFlag>,
    ) -> (Vec<menjin_sync::HealthFlag>, Vec<menjin_sync::HealthFlag>) {
        let wanted = flags.iter().map(|f| f.id_hash).collect();
        let routes = self.routes(&wanted);
        let (mut placed, mut waiting) = (Vec::new(), Vec::new());
        for f in flags {
            match routes.get(&f.id_hash) {
                Some(cs) => placed.extend(cs.iter().map(|&community| menjin_sync::HealthFlag {
                    community,
                    ..f.clone()
                })),
                None => waiting.push(f),
            }
        }
        (placed, waiting)
    }

    /// Stores flags that match no declared resident yet (flushed).
    fn keep_pending(&self, flags: &[menjin_sync::HealthFlag]) -> Result<(), sled::Error> {
        if flags.is_empty() {
            return Ok(());
        }
        let mut batch = sled::Batch::default();
        for f in flags {
            batch.insert(&f.id_hash.0[..], wire::encode(&(f.status.as_str(), f.at)));
        }
        self.health_pending.apply_batch(batch)?;
        self.db.flush()?;
        Ok(())
    }

    /// Places the waiting health flags whose person has declared since: into their
    /// community's policy, and out of `health_pending`. Searches only the rosters that
    /// changed since the last call (none changed: nothing is read). Returns how many were
    /// placed.
    ///
    /// # Errors
    /// If sled fails or the replica refuses the change.
    pub fn place_pending_health(&self) -> Result<usize, HubError> {
        let mut waiting = Vec::new();
        for item in self.health_pending.iter() {
            let (k, v) = item?;
            let (Ok(id), Ok((status, at))) = (
                <[u8; 16]>::try_from(k.as_ref()),
                wire::decode::<(String, u64)>(&v, 1_024),
            ) else {
                tracing::error!("corrupt waiting health flag removed");
                self.health_pending.remove(k)?;
                continue;
            };
            waiting.push((IdHash(id), status, at));
        }
        // Only a roster that changed since the last attempt can hold them now.
        let changed =
            std::mem::take(&mut *self.rosters_changed.lock().expect("rosters changed lock"));
        if waiting.is_empty() || changed.is_empty() {
            return Ok(0);
        }
        let flags = waiting
            .into_iter()
            .map(|(id_hash, status, at)| menjin_sync::HealthFlag {
                id_hash,
                community: 0,
                status,
                at,
            })
            .collect();
        let (health, _) = self.placed(flags);
        if health.is_empty() {
            return Ok(0);
        }
        let batch = PolicyBatch {
            health: health.clone(),
            ..PolicyBatch::default()
        };
        self.replication.apply_policy(&batch, now_ms() / 1000)?;
        for f in &health {
            self.health_pending.remove(f.id_hash.0)?;
        }
        self.db.flush()?;
        tracing::warn!(
            placed = health.len(),
            "waiting health flags placed: their people declared"
        );
        Ok(health.len())
    }

    /// Binds the hub's QUIC endpoint.
    ///
    /// # Errors
    /// If TLS cannot be set up or the address bound.
    pub fn bind(self: &Arc<Self>, addr: std::net::SocketAddr) -> std::io::Result<Server<Hub>> {
        let cfg = tls::server_config(&self.key, &self.cert, self.peers.clone())
            .map_err(std::io::Error::other)?;
        Ok(Server::new(
            self.clone(),
            tls::server_endpoint(&self.key, cfg, addr)?,
        ))
    }

    /// The hub's gate log (tree `hub_log`), to read it without a console request.
    pub fn log(&self) -> &HubLog {
        &self.log
    }

    /// Answers one request of the district operator's console.
    pub fn console(&self, req: HubRequest) -> Response {
        let result = match req {
            HubRequest::EnrolNode { cert } => self.enrol(&cert),
            HubRequest::QueryDistrictLog { community, query } => self
                .log
                .query(community, &query)
                .map(Response::DistrictLog)
                .map_err(|e| (ErrorKind::Internal, e.to_string())),
            HubRequest::Status => Ok(Response::HubStatus(self.status())),
            HubRequest::SetHealth { flags } => self.set_health(flags),
            HubRequest::SetLockdown {
                community,
                locked,
                reason,
                by,
            } => self.set_lockdown(community, locked, &reason, &by),
            HubRequest::RevokeNode {
                community,
                cert,
                by,
                reason,
            } => self.revoke_node(community, cert.as_deref(), &by, &reason),
            HubRequest::SyncStats => Ok(Response::SyncStats(self.replication.read(|r| {
                let s = r.stats();
                wire::SyncCounters {
                    frames_sent: s.frames_sent,
                    bytes_sent: s.bytes_sent,
                    frames_received: s.frames_received,
                    bytes_received: s.bytes_received,
                }
            }))),
        };
        result.unwrap_or_else(|(kind, message)| Response::Error { kind, message })
    }

    fn enrol(&self, bytes: &[u8]) -> Result<Response, (ErrorKind, String)> {
        let bad = |m: String| (ErrorKind::BadRequest, m);
        let nc = NodeCert::decode(bytes).map_err(|e| bad(e.to_string()))?;
        nc.verify(&self.root, now_ms() / 1000)
            .map_err(|e| bad(e.to_string()))?;
        if nc.community == HUB_COMMUNITY {
            return Err(bad("that is a hub certificate".into()));
        }
        if let Some(r) = self.revocation(nc.node_key.as_bytes()) {
            return Err(bad(format!(
                "node key {} was revoked by {} at {}: it is never enrolled again; make a new key \
                 with `menjin node rekey` and enrol its certificate",
                nc.key_id(),
                r.by,
                r.at
            )));
        }
        let old = self
            .nodes
            .insert(nc.community.to_be_bytes(), bytes)
            .map_err(|e| (ErrorKind::Internal, e.to_string()))?;
        self.db
            .flush()
            .map_err(|e| (ErrorKind::Internal, e.to_string()))?;
        // A new key for a community replaces the old one (key rotation): the old key is out.
        if let Some(old) = old.and_then(|o| NodeCert::decode(&o).ok()) {
            self.peers.remove(old.node_key.as_bytes());
        }
        self.peers
            .insert(nc.node_key.to_bytes(), PeerRole::Node(nc.community));
        let enrol = NodeEnrolment {
            community: nc.community,
            node_key: nc.node_key.to_bytes(),
            name: nc.community_name.clone(),
        };
        let batch = PolicyBatch {
            enrol: vec![enrol],
            ..PolicyBatch::default()
        };
        if let Err(e) = self.replication.apply_policy(&batch, now_ms() / 1000) {
            tracing::error!(error = %e, "enrolment not written to the district policy");
        }
        self.links
            .lock()
            .expect("links lock")
            .entry(nc.community)
            .or_default()
            .name = nc.community_name.clone();
        tracing::info!(community = nc.community, name = %nc.community_name, key = %nc.key_id(), "node enrolled");
        Ok(Response::Done(format!(
            "community {} ({}) enrolled",
            nc.community, nc.community_name
        )))
    }

    /// `community` has a node enrolled here; else the console's "not found".
    fn enrolled(&self, community: CommunityId) -> Result<(), (ErrorKind, String)> {
        if self
            .links
            .lock()
            .expect("links lock")
            .contains_key(&community)
        {
            Ok(())
        } else {
            Err((
                ErrorKind::NotFound,
                format!("community {community} is not enrolled at this hub"),
            ))
        }
    }

    /// The district's revocation of `key`, if it is revoked.
    fn revocation(&self, key: &[u8; 32]) -> Option<NodeRevocation> {
        self.replication
            .read(|r| r.district_policy().revoked_nodes.get(key).cloned())
    }

    /// Revokes a node key of `community` for good: the certificate's key if one is given,
    /// else the key enrolled now. The revocation goes into the district policy (nothing else
    /// changes if that fails); a revoked enrolled key then leaves tree `nodes` (flushed) and
    /// the peer table, which closes its link. Before the cut the hub waits, at most
    /// [`REVOKED_NOTICE_MS`], for that node to have the policy change, so that an honest
    /// node tells its gates to refuse it.
    fn revoke_node(
        &self,
        community: CommunityId,
        cert: Option<&[u8]>,
        by: &str,
        reason: &str,
    ) -> Result<Response, (ErrorKind, String)> {
        let bad = |m: String| (ErrorKind::BadRequest, m);
        let internal = |e: sled::Error| (ErrorKind::Internal, e.to_string());
        self.enrolled(community)?;
        let (by, reason) = (by.trim(), reason.trim());
        if by.is_empty() || by.len() > OPERATOR_LEN_MAX {
            return Err(bad(format!(
                "by: the operator's name, 1 to {OPERATOR_LEN_MAX} bytes"
            )));
        }
        if reason.len() > menjin_sync::POLICY_TEXT_LEN_MAX {
            return Err(bad(format!(
                "reason: at most {} bytes",
                menjin_sync::POLICY_TEXT_LEN_MAX
            )));
        }
        let enrolled = self
            .nodes
            .get(community.to_be_bytes())
            .map_err(internal)?
            .and_then(|v| NodeCert::decode(&v).ok());
        let key = match cert {
            Some(bytes) => {
                let nc = NodeCert::decode(bytes).map_err(|e| bad(format!("cert: {e}")))?;
                // Its signature only: a certificate replaced long ago may have expired.
                nc.verify(&self.root, nc.not_before)
                    .map_err(|e| bad(format!("cert: {e}")))?;
                if nc.community != community {
                    return Err(bad(format!(
                        "cert: the certificate is for community {}, not {community}",
                        nc.community
                    )));
                }
                nc.node_key
            }
            None => enrolled.as_ref().map(|e| e.node_key).ok_or_else(|| {
                bad(format!(
                    "community {community} has no enrolled node key now: name the certificate \
                     of the key to revoke (--cert)"
                ))
            })?,
        };
        let key_id = menjin_proto::KeyId::of(&key);
        if let Some(r) = self.revocation(key.as_bytes()) {
            return Err((
                ErrorKind::Refused,
                format!(
                    "node key {key_id} is revoked already (by {} at {})",
                    r.by, r.at
                ),
            ));
        }
        let at = now_ms() / 1000;
        let batch = PolicyBatch {
            revoke: vec![NodeRevocation {
                community,
                node_key: key.to_bytes(),
                at,
                by: by.to_string(),
                reason: reason.to_string(),
            }],
            ..PolicyBatch::default()
        };
        self.replication
            .apply_policy(&batch, at)
            .map_err(|e| (ErrorKind::Refused, e.to_string()))?;
        let mut closed = 0;
        if enrolled.is_some_and(|e| e.node_key == key) {
            self.nodes
                .remove(community.to_be_bytes())
                .map_err(internal)?;
            self.db.flush().map_err(internal)?;
            self.let_node_hear(community);
            closed = self.peers.remove(key.as_bytes());
        }
        tracing::warn!(community, key = %key_id, by, reason, closed, "node key revoked");
        Ok(Response::Done(format!(
            "community {community}: node key {key_id} revoked ({closed} open connections closed)"
        )))
    }

    /// Waits (at most [`REVOKED_NOTICE_MS`]) until `community`'s linked node has everything
    /// the hub's replica holds for it, the revocation of its key included.
    fn let_node_hear(&self, community: CommunityId) {
        let linked = self
            .links
            .lock()
            .expect("links lock")
            .get(&community)
            .is_some_and(|l| l.connected);
        let deadline =
            std::time::Instant::now() + std::time::Duration::from_millis(REVOKED_NOTICE_MS);
        while linked
            && std::time::Instant::now() < deadline
            && !self
                .replication
                .read(|r| r.is_settled(Role::Node(community)))
        {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    /// The hub's state for `menjin hub status`: each enrolled community's link, roster counts and
    /// lockdown, the district's event count and the hub's clock.
    pub fn status(&self) -> HubStatus {
        let links = self.links.lock().expect("links lock").clone();
        let (lockdowns, policy) = self
            .replication
            .read(|r| (r.lockdowns(), r.district_policy()));
        // Each community's counts from the index; a shard whose heads moved since it was
        // indexed (a change the link has not indexed yet, or one that failed) is decoded and
        // indexed now.
        let counts: HashMap<CommunityId, (u64, u64)> = links
            .keys()
            .map(|&community| {
                let (mut total, behind) = self.index.counts(&self.replication, community);
                if !behind.is_empty() {
                    let redone = self
                        .replication
                        .warm(&behind)
                        .map_err(|e| e.to_string())
                        .and_then(|()| {
                            self.index
                                .update(&self.replication, &behind)
                                .map_err(|e| e.to_string())
                        });
                    if let Err(e) = redone {
                        tracing::error!(community, error = %e, "roster counts not updated");
                    }
                    total = self.index.counts(&self.replication, community).0;
                }
                (community, total)
            })
            .collect();
        let mut communities: Vec<CommunityLink> = links
            .into_iter()
            .map(|(community, l)| {
                let lockdown = lockdowns.get(&community);
                let (residents, codes_active) = counts.get(&community).copied().unwrap_or_default();
                CommunityLink {
                    community,
                    name: l.name,
                    connected: l.connected,
                    last_contact_ms: l.last_contact_ms,
                    events: self.log.next_seq(community).map_or(0, |n| n - 1),
                    residents,
                    locked: lockdown.is_some_and(|l| l.locked),
                    lockdown_epoch: lockdown.map_or(0, |l| l.epoch),
                    gates: l.gates,
                    codes_active,
                    revoked_node_keys: policy
                        .revoked_keys_of(community)
                        .iter()
                        .map(|k| menjin_proto::KeyId::of_bytes(k).to_string())
                        .collect(),
                }
            })
            .collect();
        communities.sort_by_key(|c| c.community);
        HubStatus {
            name: self.config.name.clone(),
            events: communities.iter().map(|c| c.events).sum(),
            communities,
            hub_time_ms: now_ms(),
        }
    }

    fn touch(&self, community: CommunityId, connected: bool) {
        let mut links = self.links.lock().expect("links lock");
        let l = links.entry(community).or_default();
        l.connected = connected;
        l.last_contact_ms = now_ms();
    }

    fn set_lockdown(
        &self,
        community: CommunityId,
        locked: bool,
        reason: &str,
        by: &str,
    ) -> Result<Response, (ErrorKind, String)> {
        let bad = |m: &str| (ErrorKind::BadRequest, m.to_string());
        self.enrolled(community)?;
        if by.trim().is_empty() || by.len() > OPERATOR_LEN_MAX {
            return Err(bad("by: the operator's name, 1 to 64 bytes"));
        }
        if locked && reason.trim().is_empty() {
            return Err(bad("reason: say why the community is locked down"));
        }
        if reason.trim().len() > menjin_proto::record::LOCKDOWN_REASON_LEN_MAX {
            return Err(bad(&format!(
                "reason: at most {} bytes",
                menjin_proto::record::LOCKDOWN_REASON_LEN_MAX
            )));
        }
        let l = self
            .replication
            .set_lockdown(community, locked, reason.trim(), by.trim(), now_ms() / 1000)
            .map_err(|e| (ErrorKind::Refused, e.to_string()))?;
        tracing::warn!(
            community,
            locked,
            epoch = l.epoch,
            reason,
            by,
            "lockdown issued"
        );
        Ok(Response::Done(format!(
            "community {community}: lockdown {} (epoch {})",
            if locked { "started" } else { "lifted" },
            l.epoch
        )))
    }

    /// A lockdown decided at a node while cut off becomes the district's, unless the district
    /// decided later (see `record::effective_lockdown`).
    fn adopt_local_lockdown(
        &self,
        community: CommunityId,
        l: &menjin_proto::record::LocalLockdown,
    ) {
        let current = self.replication.read(|r| {
            r.community_policy(community)
                .lockdowns
                .get(&community)
                .cloned()
        });
        let at = menjin_proto::record::adopted_at(l, now_ms() / 1000);
        if current.as_ref().is_some_and(|c| c.at >= at) {
            tracing::info!(
                community,
                "node's local lockdown is older than the district's decision; not adopted"
            );
            return;
        }
        let by = menjin_proto::record::adopted_by(&l.by);
        match self
            .replication
            .set_lockdown(community, l.locked, &l.reason, &by, at)
        {
            Ok(x) => tracing::warn!(
                community,
                locked = l.locked,
                epoch = x.epoch,
                "node's local lockdown adopted"
            ),
            Err(e) => tracing::error!(community, error = %e, "node's local lockdown not adopted"),
        }
    }

    fn set_health(&self, flags: Vec<wire::HealthEntry>) -> Result<Response, (ErrorKind, String)> {
        if flags.len() > wire::HEALTH_BATCH_MAX {
            return Err((
                ErrorKind::BadRequest,
                format!("at most {} health rows per request", wire::HEALTH_BATCH_MAX),
            ));
        }
        if let Some(bad) = flags
            .iter()
            .find(|f| !wire::HEALTH_STATUSES.contains(&f.status.as_str()))
        {
            return Err((
                ErrorKind::BadRequest,
                format!("unknown health status {:?}", bad.status),
            ));
        }
        let at = now_ms() / 1000;
        // Each flag goes into the policy of the community whose roster holds the person (to
        // that node alone); one of no declared resident waits at the hub.
        let (placed, waiting) = self.placed(
            flags
                .iter()
                .map(|f| menjin_sync::HealthFlag {
                    id_hash: f.id_hash,
                    community: 0,
                    status: f.status.clone(),
                    at,
                })
                .collect(),
        );
        let n = flags.len() - waiting.len();
        self.replication
            .apply_policy(
                &PolicyBatch {
                    health: placed,
                    ..PolicyBatch::default()
                },
                at,
            )
            .map_err(|e| (ErrorKind::Refused, e.to_string()))?;
        self.keep_pending(&waiting)
            .map_err(|e| (ErrorKind::Internal, e.to_string()))?;
        tracing::warn!(rows = n, waiting = waiting.len(), "health list applied");
        Ok(Response::Done(if waiting.is_empty() {
            format!("{n} health statuses applied")
        } else {
            format!(
                "{n} health statuses applied; {} match no declared resident yet and wait at the hub (applied once they declare)",
                waiting.len()
            )
        }))
    }

    /// Runs the replica's timers (summaries, stall detection for every session) in one task,
    /// started with the first link: with 200 links, one task per link each waking at the
    /// same deadline made 200 calls where one does. It ends with the runtime.
    fn start_timers(&self) {
        if self.timers.swap(true, std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        // Weak: a hub that is dropped (and its database closed) is not kept alive by this.
        let weak = Arc::downgrade(&self.replication);
        let mut changes = self.replication.subscribe();
        tokio::spawn(async move {
            loop {
                let Some(deadline) = weak.upgrade().map(|r| r.next_timeout()) else {
                    return;
                };
                let wait = deadline.map_or(std::time::Duration::from_secs(3_600), |at| {
                    std::time::Duration::from_millis(at.saturating_sub(now_ms()))
                });
                tokio::select! {
                    () = tokio::time::sleep(wait) => {
                        let Some(repl) = weak.upgrade() else { return };
                        if let Err(e) = repl.timeout(now_ms()) {
                            tracing::error!(error = %e, "replica timers: state not flushed");
                        }
                    }
                    // A change may set an earlier deadline; a dropped replica ends the task.
                    r = changes.changed() => if r.is_err() { return },
                }
            }
        });
    }

    /// The hub's replica (the district policy and every community's roster), for tools that
    /// compare heads or read the documents.
    pub fn replication(&self) -> &Arc<Replication> {
        &self.replication
    }

    async fn serve_link(self: Arc<Self>, community: CommunityId, conn: quinn::Connection) {
        let peer = Role::Node(community);
        // One link per community: a node that reconnects (after a crash, say) replaces its
        // old connection, which may otherwise linger until its idle timeout.
        let old = self
            .links
            .lock()
            .expect("links lock")
            .entry(community)
            .or_default()
            .conn
            .replace(conn.clone());
        if let Some(old) = old.filter(|o| o.stable_id() != conn.stable_id()) {
            old.close(4u32.into(), b"replaced by a new link");
        }
        let mut session = None;
        let result = self.clone().link_loop(community, &conn, &mut session).await;
        if let Err(e) = self.replication.disconnect(peer, session) {
            tracing::error!(error = %e, "persisting replication state");
        }
        self.touch(community, false);
        match result {
            Err(LinkError::Frame(FrameError::Closed)) | Ok(()) => {
                tracing::info!(community, "node link closed")
            }
            Err(e) => {
                tracing::info!(community, error = %e, "node link ended");
                conn.close(2u32.into(), b"link error");
            }
        }
    }

    async fn link_loop(
        self: Arc<Self>,
        community: CommunityId,
        conn: &quinn::Connection,
        session: &mut Option<u64>,
    ) -> Result<(), LinkError> {
        let peer = Role::Node(community);
        let (mut send, mut recv) = conn.accept_bi().await?;
        match read_frame(&mut recv).await? {
            LinkFrame::Hello { events_logged } => {
                tracing::info!(community, events_logged, "node linked")
            }
            other => return Err(LinkError::NoHello(Box::new(other))),
        }
        self.touch(community, true);
        let next_seq = self.log.next_seq(community)?;
        write_frame(&mut send, &LinkFrame::LogCursor { next_seq }).await?;
        let (tx, mut frames) = tokio::sync::mpsc::channel(16);
        let reader = tokio::spawn(async move {
            loop {
                let frame = read_frame(&mut recv).await;
                let end = frame.is_err();
                if tx.send(frame).await.is_err() || end {
                    return;
                }
            }
        });
        let repl = self.replication.clone();
        *session = repl.connect(peer, now_ms())?;
        // Woken only when this node has something to be sent; the replica's timers run in
        // one task for the whole hub (`start_timers`), not in every link.
        let mut changes = repl.subscribe_peer(peer);
        self.start_timers();
        let mut conflicted = false;
        let result = async {
            loop {
                send_frames(&repl, peer, &mut send).await?;
                tokio::select! {
                    frame = frames.recv() => {
                        let frame = match frame {
                            Some(f) => f?,
                            None => return Err(FrameError::Closed.into()),
                        };
                        self.touch(community, true);
                        match frame {
                            // Batches sent before the node heard of a conflict carry its old
                            // numbers: none is stored.
                            LinkFrame::LogBatch { .. } if conflicted => {}
                            LinkFrame::LogBatch { events } => {
                                let stored = self.committer.store(community, events).await;
                                match stored {
                                    Ok(upto_seq) => write_frame(&mut send, &LinkFrame::LogAck { upto_seq }).await?,
                                    Err(e @ HubLogError::Conflict { seq, next, .. }) => {
                                        tracing::error!(community, error = %e, "gate log diverged");
                                        conflicted = true;
                                        write_frame(&mut send, &LinkFrame::LogConflict { seq, next_seq: next }).await?;
                                    }
                                    Err(e) => {
                                        tracing::warn!(community, error = %e, "log batch refused");
                                        return Err(e.into());
                                    }
                                }
                            }
                            LinkFrame::Sync(bytes) => {
                                let repl = repl.clone();
                                let hub = self.clone();
                                let changed = tokio::task::spawn_blocking(move || {
                                    let changed = receive_frame(&repl, peer, &bytes)?;
                                    if changed.iter().any(|d| matches!(d, DocId::Roster { .. })) {
                                        if let Err(e) = hub.index.update(&repl, &changed) {
                                            tracing::error!(community, error = %e, "roster index not updated; the next status or start catches up");
                                        }
                                        hub.rosters_changed.lock().expect("rosters changed lock").insert(community);
                                    }
                                    Ok::<_, LinkError>(changed)
                                })
                                .await??;
                                let _ = changed;
                            }
                            LinkFrame::LocalLockdown(l) => self.adopt_local_lockdown(community, &l),
                            LinkFrame::GateLinks(gates) => {
                                self.links.lock().expect("links lock").entry(community).or_default().gates = gates;
                            }
                            other => {
                                tracing::warn!(community, ?other, "unexpected frame from node");
                                return Err(LinkError::Unexpected);
                            }
                        }
                    }
                    _ = changes.changed() => {}
                }
            }
        }
        .await;
        reader.abort();
        result
    }
}

impl Service for Hub {
    fn peers(&self) -> PeerTable {
        self.peers.clone()
    }

    async fn on_connection(self: Arc<Self>, role: PeerRole, conn: quinn::Connection) {
        match role {
            PeerRole::Node(community) => self.serve_link(community, conn).await,
            PeerRole::Console => {
                let hub = self.clone();
                serve_requests(conn, CONSOLE_REQUEST_LEN_MAX, move |req| {
                    let hub = hub.clone();
                    async move {
                        tokio::task::spawn_blocking(move || hub.console(req))
                            .await
                            .unwrap_or_else(|e| Response::Error {
                                kind: ErrorKind::Internal,
                                message: e.to_string(),
                            })
                            .into()
                    }
                })
                .await;
            }
            PeerRole::Gate(_) => conn.close(3u32.into(), b"gates talk to nodes"),
        }
    }
}

/// Opens the hub, binds its endpoint, writes `node.addr`, and serves until `shutdown`.
///
/// # Errors
/// [`HubError`] if the hub cannot be opened or bound.
pub async fn run_hub(
    dir: &NodeDir,
    listen: Option<std::net::SocketAddr>,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), HubError> {
    let hub = Hub::open(dir)?;
    let addr = listen.unwrap_or(hub.config.listen);
    let listen = |source| HubError::Listen { addr, source };
    let server = hub.bind(addr).map_err(listen)?;
    let bound = server.local_addr().map_err(listen)?;
    menjin_store::files::write_public(&dir.addr(), format!("{bound}\n").as_bytes())?;
    let communities = hub.links.lock().expect("links lock").len();
    tracing::info!(name = %hub.config.name, %bound, communities, "hub serving");
    let cooler = Arc::downgrade(hub.replication());
    let cooling = tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(ROSTER_IDLE_S / 4));
        loop {
            tick.tick().await;
            let Some(repl) = cooler.upgrade() else { return };
            let idle = std::time::Duration::from_secs(ROSTER_IDLE_S);
            if let Err(e) = tokio::task::spawn_blocking(move || repl.cool_idle(idle)).await {
                tracing::error!(error = %e, "dropping idle roster shards failed");
            }
        }
    });
    let placer = hub.clone();
    let pending = tokio::spawn(async move {
        let mut tick =
            tokio::time::interval(std::time::Duration::from_secs(HEALTH_PENDING_RETRY_S));
        loop {
            tick.tick().await;
            let hub = placer.clone();
            match tokio::task::spawn_blocking(move || hub.place_pending_health()).await {
                Ok(Err(e)) => tracing::error!(error = %e, "waiting health flags not placed"),
                Err(e) => tracing::error!(error = %e, "placing waiting health flags failed"),
                Ok(Ok(_)) => {}
            }
        }
    });
    server.run(shutdown).await;
    pending.abort();
    cooling.abort();
    let _ = std::fs::remove_file(dir.addr());
    tracing::info!("hub stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use menjin_proto::rule::Reason;
    use menjin_proto::wire::Direction;

    use super::*;

    fn event(seq: u64, gate: &str) -> GateEvent {
        GateEvent {
            seq,
            time_ms: 1_000 + seq,
            gate: gate.into(),
            direction: Direction::In,
            allowed: true,
            reason: Reason::Ok,
            fever: false,
            temperature_dc: 365,
            cred: None,
            holder: None,
            kind: None,
            plate: None,
            offline: None,
            passback: false,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_log_writer_commits_many_links_batches_together_and_refuses_only_the_bad_one() {
        let dir = tempfile::tempdir().unwrap();
        let db = menjin_store::db::open(dir.path()).unwrap();
        let log = HubLog::open(&db).unwrap();
        let committer = LogCommitter::start(log.clone()).unwrap();
        let mut tasks = tokio::task::JoinSet::new();
        for community in 1..=20u32 {
            let c = committer.clone();
            tasks.spawn(async move {
                for seq in 1..=25 {
                    assert_eq!(
                        c.store(community, vec![event(seq, "g")]).await.unwrap(),
                        seq
                    );
                }
            });
        }
        // One link sends a batch with a gap, among the others: refused alone.
        let bad = committer.store(99, vec![event(5, "g")]).await;
        assert!(
            matches!(
                bad,
                Err(HubLogError::Gap {
                    community: 99,
                    first: 5,
                    next: 1
                })
            ),
            "{bad:?}"
        );
        tasks.join_all().await;
        for community in 1..=20u32 {
            assert_eq!(log.next_seq(community).unwrap(), 26);
        }
        assert_eq!(log.next_seq(99).unwrap(), 1, "nothing of the refused batch");
        assert_eq!(log.len(), 500);
    }

    #[test]
    fn a_resent_event_is_acknowledged_and_a_different_one_under_a_held_number_refused() {
        let dir = tempfile::tempdir().unwrap();
        let db = menjin_store::db::open(dir.path()).unwrap();
        let log = HubLog::open(&db).unwrap();
        let first: Vec<_> = (1..=3).map(|s| event(s, "g")).collect();
        assert_eq!(log.store(7, &first).unwrap(), 3);
        // The same events again (a resent batch): held, acknowledged up to the batch's end.
        assert_eq!(log.store(7, &first[..2]).unwrap(), 2);
        // A restored node's new event under number 2, and one new number after it.
        let other = [event(2, "other"), event(3, "g"), event(4, "g")];
        match log.store(7, &other) {
            Err(HubLogError::Conflict {
                community: 7,
                seq: 2,
                next: 4,
            }) => {}
            r => panic!("{r:?}"),
        }
        assert_eq!(
            log.next_seq(7).unwrap(),
            4,
            "nothing of the batch is stored"
        );
        let held = log
            .query(
                Some(7),
                &LogQuery {
                    limit: 10,
                    ..LogQuery::default()
                },
            )
            .unwrap();
        assert_eq!(held[1].event.gate, "g", "the held event stays");
    }
}
