//! The community node's operations: declarations, codes, passes, visitors, gate checks, log
//! queries, progress. Sockets live in `serve`; storage in `roster`, `gatelog` and `gates`;
//! the rules themselves in `menjin_proto`.

use std::sync::{Arc, Mutex};

use ed25519_dalek::{SigningKey, VerifyingKey};
use menjin_proto::check;
use menjin_proto::civil::Date;
use menjin_proto::credential::{CredId, Credential, HolderId, HolderKind, SignedCode};
use menjin_proto::declaration::{Declaration, NAME_LEN_MAX, Outcome, PHONE_LEN_MAX};
use menjin_proto::idnum::{IdHash, IdHashKey};
use menjin_proto::record::{CredRecord, CredStatus, PersonRecord, Visit};
use menjin_proto::wire::{
    BuildingProgress, Channel, CheckAnswer, CheckRequest, ConsoleRequest, ErrorKind, NodeStatus,
    Receipt, Response, RosterSummary, VisitorReceipt,
};
use menjin_proto::{KeyId, NodeCert, UnixTime};

use crate::gatelog::UploadError;
use crate::gatelog::{GateLog, LogError};
use crate::gates::Gates;
use crate::local_policy::LocalPolicy;
use crate::mirror::{Backlog, Mirror};
use crate::roster::{Change, CredView, Roster, RosterError};
use menjin_net::tls::{PeerRole, PeerTable};
use menjin_proto::feed::{GateAck, GateLockdown, OfflineEvent, TrustSnapshot, UPLOAD_BATCH_MAX};
use menjin_proto::record::{LocalLockdown, effective_lockdown};
use menjin_proto::wire::Direction;
use menjin_render::{pass, photo};
use menjin_replication::{Replication, code_entry, roster_entry};
use menjin_store::files::{
    FileError, NodeConfig, NodeDir, read_node_cert, read_public_key, read_secret, read_signing_key,
};
use menjin_sync::{Lockdown, Role, RosterBatch};

mod adopt;
mod household;
mod import;
mod records;
mod staff;
pub use household::{
    CodeState, HomeRefusal, INVITATIONS_ACTIVE_MAX, INVITATIONS_SHOWN_MAX, Invitation,
    InvitationState, Member,
};
pub use import::{IMPORT_PERSONS_MAX, ImportError, Imported};
pub use records::{PersonCard, PersonFile, PersonSearch, RecordCode};

/// The deadline for every resident declared and every pass out (the order's 5 days).
pub const DEADLINE_DAYS: u64 = 5;
/// A visit is for a day or a few; longer stays are residents and should declare.
pub const VISIT_SECS_MAX: u64 = 7 * 86_400;
const DAY_SECS: u64 = 86_400;

/// Why a node could not be opened or started; the node does not serve until it is fixed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// A file of the node directory could not be read or is refused (see [`FileError`]).
    #[error(transparent)]
    File(#[from] FileError),
    /// sled could not open `db/` or one of its trees (held by another process, corrupt).
    #[error("opening the database: {0}")]
    Db(#[from] sled::Error),
    /// The roster could not be read at start (see [`RosterError`]).
    #[error(transparent)]
    Roster(#[from] RosterError),
    /// The gate log could not be opened or migrated.
    #[error(transparent)]
    Log(#[from] LogError),
    /// The enrolled gates could not be read.
    #[error(transparent)]
    Gates(#[from] crate::gates::GateError),
    /// The thread that loads the replicated rosters could not be started.
    #[error("starting the replica loader: {0}")]
    Spawn(std::io::Error),
    /// `node.cert` does not verify against `root.pub` (another district's, or expired: renew it
    /// with `rekey`).
    #[error("{}: {source}", .path.display())]
    Cert {
        /// The certificate file.
        path: std::path::PathBuf,
        /// Why it does not verify.
        source: menjin_proto::CertError,
    },
    /// `node.cert` is for another key than `node.key`, or another community than `node.toml`'s.
    #[error("{} does not match node.key and the community in node.toml", .0.display())]
    NotThisNode(std::path::PathBuf),
    /// The replica could not be opened, or its district policy loaded or applied.
    #[error(transparent)]
    Replication(#[from] menjin_replication::ReplicationError),
    /// Bringing the replicated roster in line with sled failed (after a crash, or too many
    /// changes queued while it loaded).
    #[error("reconciling the replicated roster: {0}")]
    Reconcile(menjin_replication::ReplicationError),
    /// The replicated rosters could not be loaded; shared by everyone waiting for them.
    #[error("loading the replica: {0}")]
    ReplicaLoad(Arc<menjin_replication::ReplicationError>),
    /// The household codes' tree could not be read or written.
    #[error(transparent)]
    Households(#[from] crate::households::HouseholdError),
    /// The staff tree could not be opened.
    #[error("staff accounts: {0}")]
    Staff(#[from] crate::staff::StaffStoreError),
    /// The audit tree could not be opened.
    #[error("audit log: {0}")]
    Audit(#[from] crate::audit::AuditError),
    /// A service started beside the node (the web pages) could not start.
    #[error("{0}")]
    Extra(Box<dyn std::error::Error + Send + Sync>),
    /// The QUIC endpoint could not bind its address (in use, or not this host's).
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address in `node.toml` (or given on the command line).
        addr: std::net::SocketAddr,
        /// What the operating system said.
        source: std::io::Error,
    },
}

/// A refused operation: what the console or gate is told.
#[derive(Debug)]
pub struct Refusal {
    /// Whose fault, as the client is told it.
    pub kind: ErrorKind,
    /// What went wrong, in words for the operator.
    pub message: String,
}

fn bad(message: impl Into<String>) -> Refusal {
    Refusal {
        kind: ErrorKind::BadRequest,
        message: message.into(),
    }
}
fn refused(message: impl Into<String>) -> Refusal {
    Refusal {
        kind: ErrorKind::Refused,
        message: message.into(),
    }
}
fn not_found(message: impl Into<String>) -> Refusal {
    Refusal {
        kind: ErrorKind::NotFound,
        message: message.into(),
    }
}
impl From<RosterError> for Refusal {
    fn from(e: RosterError) -> Refusal {
        tracing::error!(error = %e, "roster failure");
        Refusal {
            kind: ErrorKind::Internal,
            message: e.to_string(),
        }
    }
}
impl From<LogError> for Refusal {
    fn from(e: LogError) -> Refusal {
        tracing::error!(error = %e, "gate log failure");
        Refusal {
            kind: ErrorKind::Internal,
            message: e.to_string(),
        }
    }
}

use menjin_net::clock::now_ms;

/// A running community node's state.
pub struct Node {
    /// `node.toml` as read at open.
    pub config: NodeConfig,
    key: SigningKey,
    key_id: KeyId,
    cert: NodeCert,
    /// The certificate before the last rekey (`node.cert.previous`), if it checks out.
    previous_cert: Option<NodeCert>,
    idhash: IdHashKey,
    roster: Roster,
    log: GateLog,
    gates: Gates,
    /// Household codes for the resident pages (see `households`).
    households: crate::households::Households,
    /// Staff accounts for the pages (see `staff`).
    staff: crate::staff::Staff,
    /// Every search and record view of the staff pages (see `audit`).
    audit: crate::audit::Audit,
    peers: PeerTable,
    /// Declarations read, decide and write: one at a time, so two declarations of the same
    /// person cannot both issue a code. Every roster commit holds it (see `commit`).
    write: Mutex<()>,
    root: VerifyingKey,
    /// Wakes the hub uplink when a gate event is stored.
    pub(crate) log_appended: tokio::sync::Notify,
    pub(crate) hub_link: crate::uplink::LinkStatus,
    /// The replica: loading in the background at start, then loaded (see `mirror`).
    mirror: Arc<Mirror>,
    /// This community's lockdown, from the district policy (epoch 0: never locked).
    lockdown: std::sync::RwLock<Lockdown>,
    /// A lockdown decided here (see `record::effective_lockdown`), and where it is stored.
    local_lockdown: std::sync::RwLock<Option<LocalLockdown>>,
    local_policy: LocalPolicy,
    /// Wakes the uplink to report a local lockdown to the hub.
    pub(crate) local_changed: tokio::sync::Notify,
    /// Rises on every roster commit, household code change and change of the lockdown in
    /// force: what a resident's page shows may have changed (see [`Node::changes`]).
    changes: tokio::sync::watch::Sender<u64>,
    /// The district health list as last applied: keyed ID hash → (status, time).
    health: std::sync::RwLock<std::collections::HashMap<IdHash, (String, UnixTime)>>,
    /// What gates cache, pushed to them as it changes; and their links.
    pub feed: crate::feed::Feed,
    /// Anti-passback (when configured): each resident's last direction through a gate.
    last_direction: Mutex<std::collections::HashMap<HolderId, Direction>>,
}

/// Loads a node's replica behind its barrier (see [`Node::open_loading`]). Holds the node
/// only weakly: a node dropped while its replica loads is not kept alive by the loader (its
/// changes stay marked `mirror-pending` in sled for the next start).
pub struct ReplicaLoader {
    replica: menjin_replication::PolicyLoaded,
    node: std::sync::Weak<Node>,
    mirror: Arc<Mirror>,
    /// The roster's `mirror-pending` marker as found at start.
    mirror_pending: bool,
}

impl ReplicaLoader {
    /// Loads the replica, brings the roster changes committed meanwhile into it, opens the
    /// barrier, and applies the district policy again.
    pub fn run(self) {
        let t = std::time::Instant::now();
        let loaded = self.replica.finish();
        let ok = loaded.is_ok();
        let node = self.node.upgrade();
        // Commits hold `write` from sled to mirror: none is half-way while the queue drains.
        let guard = node
            .as_ref()
            .map(|n| n.write.lock().expect("declaration lock"));
        self.mirror.finish(loaded, |r, backlog| {
            if let Some(node) = &node {
                node.settle_mirror(r, backlog, self.mirror_pending);
            }
        });
        drop(guard);
        match (node, ok) {
            (Some(node), true) => {
                tracing::info!(load_ms = t.elapsed().as_millis() as u64, "replica loaded");
                node.refresh_policy();
            }
            (None, true) => {}
            (_, false) => tracing::error!("replica not loaded"),
        }
    }
}

impl Node {
    /// Opens a node directory: keys, certificate, sled, the in-memory view, and the replica
    /// (waits until it is loaded: see [`Node::open_loading`] for a node that serves sooner).
    ///
    /// # Errors
    /// [`NodeError`] naming the file or store that is wrong.
    pub fn open(dir: &NodeDir) -> Result<Arc<Node>, NodeError> {
        let node = Node::open_loading(dir)?;
        node.wait_replica()?;
        Ok(node)
    }

    /// Opens a node directory and returns as soon as gate checks can be answered: keys,
    /// certificate, the roster view from sled, and the district policy (so the lockdown in
    /// force is known before the first check). The replicated rosters, a few seconds of
    /// CPU at 100,000 residents, load on a thread of their own; what needs them waits for
    /// them ([`Node::replica_loaded`], the hub uplink) or queues (roster commits, see
    /// `mirror`). A failure to load them shows there too.
    ///
    /// # Errors
    /// [`NodeError`] naming the file or store that is wrong.
    pub fn open_loading(dir: &NodeDir) -> Result<Arc<Node>, NodeError> {
        let (node, loader) = Node::open_deferred(dir)?;
        std::thread::Builder::new()
            .name("replica-loader".into())
            .spawn(move || loader.run())
            .map_err(NodeError::Spawn)?;
        Ok(node)
    }

    /// [`Node::open_loading`], with the replica loaded when the caller runs the loader
    /// (tests hold it back to see a node whose replica is still loading).
    ///
    /// # Errors
    /// [`NodeError`] naming the file or store that is wrong.
    pub fn open_deferred(dir: &NodeDir) -> Result<(Arc<Node>, ReplicaLoader), NodeError> {
        let started = std::time::Instant::now();
        let config = dir.read_config()?;
        let key = read_signing_key(&dir.key())?;
        let cert = read_node_cert(&dir.cert())?;
        let root = read_public_key(&dir.root_pub())?;
        let idhash = IdHashKey(read_secret(&dir.idhash_key())?);
        let console = read_signing_key(&dir.console_key())?.verifying_key();
        cert.verify(&root, now_ms() / 1000)
            .map_err(|source| NodeError::Cert {
                path: dir.cert(),
                source,
            })?;
        if cert.node_key != key.verifying_key() || cert.community != config.community {
            return Err(NodeError::NotThisNode(dir.cert()));
        }
        let previous_cert = previous_cert(dir, &root, &cert);
        let db = menjin_store::db::open(&dir.db())?;
        let db_ms = started.elapsed().as_millis() as u64;
        let community = config.community;
        let roster = Roster::open(&db)?;
        let roster_ms = started.elapsed().as_millis() as u64;
        let replica = Replication::open_policy(&db, Role::Node(community))?;
        // Read before anything below commits (health flags may): a marker set now is a
        // change of an earlier run that may be missing from the replica.
        let mirror_pending = roster.mirror_pending()?;
        let log = GateLog::open(&db)?;
        let gates = Gates::open(&db)?;
        let households = crate::households::Households::open(&db, &key.to_bytes())?;
        let staff = crate::staff::Staff::open(&db)?;
        let audit = crate::audit::Audit::open(&db)?;
        let peers = PeerTable::default();
        peers.insert(console.to_bytes(), PeerRole::Console);
        for (gate_id, key) in gates.all()? {
            peers.insert(key, PeerRole::Gate(gate_id));
        }
        let config_community = config.community;
        let local_policy = LocalPolicy::open(&db)?;
        let feed = crate::feed::Feed::new(
            roster.clone(),
            GateLockdown::default(),
            u64::from_be_bytes(menjin_store::files::random8()),
        );
        let node = Arc::new(Node {
            feed,
            last_direction: Mutex::default(),
            config,
            key_id: KeyId::of(&key.verifying_key()),
            key,
            cert,
            previous_cert,
            idhash,
            roster,
            log,
            gates,
            households,
            staff,
            audit,
            peers,
            write: Mutex::new(()),
            root,
            log_appended: tokio::sync::Notify::new(),
            hub_link: crate::uplink::LinkStatus::default(),
            lockdown: std::sync::RwLock::new(Lockdown {
                community: config_community,
                locked: false,
                epoch: 0,
                reason: String::new(),
                by: String::new(),
                at: 0,
            }),
            mirror: Arc::new(Mirror::loading()),
            health: std::sync::RwLock::default(),
            local_lockdown: std::sync::RwLock::new(local_policy.lockdown()?),
            local_policy,
            local_changed: tokio::sync::Notify::new(),
            changes: tokio::sync::watch::Sender::new(0),
        });
        node.apply_policy(replica.policy());
        tracing::info!(
            db_ms,
            roster_ms,
            open_ms = started.elapsed().as_millis() as u64,
            "roster view and district policy loaded; replica loading"
        );
        let loader = ReplicaLoader {
            replica,
            node: Arc::downgrade(&node),
            mirror: node.mirror.clone(),
            mirror_pending,
        };
        Ok((node, loader))
    }

    /// The node's signing key (TLS and codes).
    pub fn signing_key(&self) -> &SigningKey {
        &self.key
    }
    /// The node's certificate from the district root.
    pub fn cert(&self) -> &NodeCert {
        &self.cert
    }
    /// The keys admitted and their roles (console, gates); gates enrolled while running are
    /// added here.
    pub fn peers(&self) -> PeerTable {
        self.peers.clone()
    }
    /// Gate events stored (the highest sequence number).
    pub fn events_logged(&self) -> u64 {
        self.log.len()
    }
    /// The district root public key.
    pub fn root(&self) -> &VerifyingKey {
        &self.root
    }
    /// The gate log, for the uplink and tools that read it directly.
    pub fn gate_log(&self) -> &GateLog {
        &self.log
    }

    /// Commits a roster change (flushed), then mirrors it into the replicated roster. The
    /// sled roster is the source of truth; if the mirror fails, the next start repairs it.
    /// While the replica is still loading the change waits in `mirror`'s queue. Callers hold
    /// `write`, which the replica loader takes too: no change slips between the queue and
    /// the loaded replica.
    fn commit(&self, change: Change) -> Result<(), RosterError> {
        let touched = touched_by(&change);
        let mut batch = RosterBatch::default();
        for p in &change.persons {
            batch.put_person(roster_entry(p));
        }
        for c in &change.creds {
            batch.put_code(code_entry(c));
        }
        for a in &change.adopted {
            batch.put_code(adopted_entry(a));
        }
        self.roster.commit(change)?;
        self.feed.on_commit(&touched, now_ms());
        self.changed();
        let Some((replication, batch)) = self.mirror.ready_or_queue(batch) else {
            return Ok(());
        };
        match replication.apply_roster(self.config.community, &batch, now_ms() / 1000) {
            Ok(()) => self.roster.mirror_done()?,
            Err(e) => {
                tracing::error!(error = %e, "replicated roster not updated; repaired at next start")
            }
        }
        Ok(())
    }

    /// Brings what was committed while the replica loaded into it (the loader calls this
    /// holding `write`). `pending_at_start`: the previous run may have crashed between sled
    /// and the replica, so compare them in full (that also covers the queued changes, which
    /// are in sled already).
    fn settle_mirror(&self, r: &Replication, backlog: Backlog, pending_at_start: bool) {
        let community = self.config.community;
        let result = match backlog {
            _ if pending_at_start => self.reconcile(r),
            Backlog::Reconcile => self.reconcile(r),
            Backlog::None => return,
            Backlog::Changes(batches) => {
                let n = batches.len();
                let applied = batches
                    .iter()
                    .try_for_each(|b| r.apply_roster(community, b, now_ms() / 1000))
                    .map_err(NodeError::from)
                    .and_then(|()| Ok(self.roster.mirror_done()?));
                if applied.is_ok() {
                    tracing::info!(
                        changes = n,
                        "roster changes made while the replica loaded are mirrored"
                    );
                }
                applied
            }
        };
        if let Err(e) = result {
            tracing::error!(error = %e, "replicated roster not updated; repaired at next start");
        }
    }

    /// Brings the replicated roster up to the sled roster after a crash between the two, record
    /// by record: a final status in the replica wins over sled's (a revoked code never comes
    /// back; `adopt_final_statuses` takes it into sled first), as does a person declared
    /// later there (a node restored from an older backup); the rest of sled goes into the
    /// replica, and the marker clears.
    fn reconcile(&self, replication: &Replication) -> Result<(), NodeError> {
        let view = replication.read(|r| r.roster(self.config.community));
        let adopted = self.adopt_final_statuses(&view)?;
        let mut batch = RosterBatch::default();
        for p in self.roster.persons() {
            let entry = roster_entry(&p?);
            match view.persons.get(&entry.holder) {
                Some(held) if *held == entry || held.declared_at > entry.declared_at => {}
                _ => {
                    batch.put_person(entry);
                }
            }
        }
        for c in self.roster.creds() {
            let entry = code_entry(&c?);
            match view.codes.get(&entry.id) {
                Some(held) if *held == entry || held.status.is_final() => {}
                _ => {
                    batch.put_code(entry);
                }
            }
        }
        let n = batch.persons.len() + batch.codes.len();
        replication
            .apply_roster(self.config.community, &batch, now_ms() / 1000)
            .map_err(NodeError::Reconcile)?;
        self.roster.mirror_done()?;
        tracing::info!(
            entries = n,
            adopted,
            "replicated roster reconciled with the node's roster"
        );
        Ok(())
    }

    /// The replica, once loaded (`None` while it loads, or if it failed to).
    /// Whether roster changes wait to be mirrored into the replica (the sled marker).
    ///
    /// # Errors
    /// [`RosterError`] if sled cannot be read.
    pub fn mirror_pending(&self) -> Result<bool, RosterError> {
        self.roster.mirror_pending()
    }

    /// The hub link's state and counters (what `node status` shows, and the benches read).
    pub fn hub_link(&self) -> &crate::uplink::LinkStatus {
        &self.hub_link
    }

    /// The replica, once loaded; `None` while it loads.
    pub fn replica(&self) -> Option<Arc<Replication>> {
        self.mirror.get()
    }

    /// Waits (blocking) until the replica is loaded.
    ///
    /// # Errors
    /// [`NodeError::ReplicaLoad`] saying why it could not be loaded.
    pub fn wait_replica(&self) -> Result<Arc<Replication>, NodeError> {
        self.mirror.wait().map_err(NodeError::ReplicaLoad)
    }

    /// Waits until the replica is loaded.
    ///
    /// # Errors
    /// [`NodeError::ReplicaLoad`] saying why it could not be loaded.
    pub async fn replica_loaded(&self) -> Result<Arc<Replication>, NodeError> {
        self.mirror.loaded().await.map_err(NodeError::ReplicaLoad)
    }

    /// Runs a console request (blocking: call from a blocking thread).
    pub fn console(&self, req: ConsoleRequest, now: UnixTime) -> Response {
        let result = match req {
            ConsoleRequest::LocalLockdown { locked, reason, by } => {
                self.set_local_lockdown(locked, reason, by, now)
            }
            ConsoleRequest::Declare { form } => self
                .declare(form, Channel::Online, None, None, None, now)
                .map(Response::Declared),
            ConsoleRequest::DeclareProxy { by, form } => self
                .declare(form, Channel::Proxy, Some(by), None, None, now)
                .map(Response::Declared),
            ConsoleRequest::DeclareOffline { form, photo, staff } => self
                .declare(form, Channel::Offline, None, Some(photo), Some(staff), now)
                .map(Response::Declared),
            ConsoleRequest::AttachPhoto { holder, photo } => self
                .attach_photo(holder, photo, now)
                .map(Response::Declared),
            ConsoleRequest::PrintPass { holder } => self.print_pass(holder, now),
            ConsoleRequest::ShowHolder { holder } => self.show(holder).map(Response::Declared),
            ConsoleRequest::InviteVisitor {
                host,
                visitor_name,
                visitor_phone,
                from,
                until,
            } => self
                .invite(host, visitor_name, visitor_phone, from, until, now)
                .map(Response::Visitor),
            ConsoleRequest::WithdrawConsent { visitor_code } => self.withdraw(visitor_code, now),
            ConsoleRequest::QueryLog(q) => {
                self.log.query(&q).map(Response::Log).map_err(Refusal::from)
            }
            ConsoleRequest::RosterSummary => self.summary().map(Response::Summary),
            ConsoleRequest::EnrolGate {
                gate_id,
                public_key,
            } => self.enrol_gate(gate_id, public_key),
            ConsoleRequest::RevokeGate { gate_id } => self.revoke_gate(&gate_id),
            ConsoleRequest::Status => Ok(Response::Status(self.status())),
            ConsoleRequest::IssueHouseholdCode { building, door } => {
                self.issue_household(&building, &door, now)
            }
            ConsoleRequest::RevokeHouseholdCode { building, door } => {
                self.revoke_household(&building, &door, now)
            }
            ConsoleRequest::AddStaff {
                name,
                role,
                password,
            } => self.add_staff(&name, role, &password, now),
            ConsoleRequest::SetStaffPassword { name, password } => {
                self.set_staff_password(&name, &password, now)
            }
            ConsoleRequest::RemoveStaff { name } => self.remove_staff(&name),
        };
        result.unwrap_or_else(|r| Response::Error {
            kind: r.kind,
            message: r.message,
        })
    }

    fn today(now: UnixTime) -> Date {
        Date::from_unix(now)
    }

    /// A code for a person cleared by the review of a declaration: valid from now for the
    /// configured number of days, at the declared home.
    fn issue_declared(
        &self,
        kind: HolderKind,
        holder: HolderId,
        form: &Declaration,
        now: UnixTime,
    ) -> CredRecord {
        let until = now + u64::from(self.config.code_validity_days) * DAY_SECS;
        self.issue(
            kind,
            holder,
            &form.building,
            &form.door,
            now,
            until,
            None,
            now,
        )
        .0
    }

    #[allow(clippy::too_many_arguments)]
    fn issue(
        &self,
        kind: HolderKind,
        holder: HolderId,
        building: &str,
        door: &str,
        from: UnixTime,
        until: UnixTime,
        visit: Option<Visit>,
        now: UnixTime,
    ) -> (CredRecord, SignedCode) {
        let cred = Credential {
            kind,
            id: CredId(menjin_store::files::random8()),
            community: self.config.community,
            holder,
            valid_from: from.min(u64::from(u32::MAX)) as u32,
            valid_until: until.min(u64::from(u32::MAX)) as u32,
            issuer: self.key_id,
            building: building.to_string(),
            door: door.to_string(),
        };
        let code = cred.sign(&self.key);
        let record = CredRecord {
            id: code.credential.id,
            holder,
            kind,
            code: code.as_bytes().to_vec(),
            issued_at: now,
            status: CredStatus::Active,
            visit,
        };
        (record, code)
    }

    fn receipt(&self, p: &PersonRecord, revoked: Option<CredId>) -> Result<Receipt, Refusal> {
        let code = match p.cred {
            Some(id) => self
                .roster
                .cred(&id)?
                .and_then(|c| SignedCode::decode(&c.code).ok())
                .map(|c| c.to_text()),
            None => None,
        };
        Ok(Receipt {
            holder: p.holder,
            name: p.form.name.clone(),
            kind: p.kind,
            channel: p.channel,
            outcome: p.review.outcome,
            why: p.review.why.clone(),
            code,
            cred: p.cred,
            revoked,
            declared_by: p.declared_by,
            has_photo: p.has_photo,
        })
    }

    /// Validates, reviews and stores a declaration; issues, keeps or revokes the code.
    fn declare(
        &self,
        mut form: Declaration,
        channel: Channel,
        by: Option<HolderId>,
        photo: Option<Vec<u8>>,
        staff: Option<String>,
        now: UnixTime,
    ) -> Result<Receipt, Refusal> {
        let today = Self::today(now);
        let mut checked = check_form(&mut form, photo.as_deref(), staff.as_deref(), today)?;
        let _guard = self.write.lock().expect("declaration lock");
        let id_hash = self.idhash.hash(form.document_type, &form.document_number);
        // The district's health list outranks what the person declares.
        if let Some((outcome, why)) = self.flagged(&id_hash)
            && checked.review.outcome == Outcome::Cleared
        {
            checked.review = menjin_proto::declaration::Review { outcome, why };
        }
        let existing = self.roster.person_by_hash(&id_hash)?;
        // Known by an adopted code only (declared after the backup this node was restored
        // from): the same holder, whose adopted code this declaration replaces.
        let known = match &existing {
            Some(p) => Some(p.holder),
            None => self.roster.holder_by_hash(&id_hash)?,
        };
        let kind = match by {
            Some(by) => {
                self.check_proxy(by, &id_hash, &form, today)?;
                HolderKind::Dependent
            }
            None => checked.kind,
        };
        let holder = known.unwrap_or_else(|| HolderId(menjin_store::files::random8()));
        let old_cred = self
            .roster
            .active_cred(&holder)
            .or_else(|| existing.as_ref().and_then(|p| p.cred));
        let mut change = Change::default();
        let (cred, revoked) = self.recode(
            old_cred,
            &checked.review,
            kind,
            holder,
            &form,
            now,
            &mut change,
        )?;
        let has_photo = photo.is_some() || existing.as_ref().is_some_and(|p| p.has_photo);
        if let Some(photo) = photo {
            change.photos.push((holder, photo));
        }
        let person = PersonRecord {
            holder,
            form,
            id_hash,
            kind,
            channel,
            review: checked.review,
            declared_at: now,
            declared_by: by.or_else(|| {
                existing
                    .as_ref()
                    .and_then(|p| p.declared_by)
                    .filter(|_| channel != Channel::Online)
            }),
            staff,
            cred,
            has_photo,
            passes_printed: existing.as_ref().map_or(0, |p| p.passes_printed),
        };
        change.persons.push(person.clone());
        self.commit(change)?;
        tracing::info!(holder = %holder, channel = ?channel, outcome = person.review.outcome.as_str(), revoked = ?revoked, "declaration stored");
        self.receipt(&person, revoked)
    }

    /// The proxy rule: an adult of the same home, declaring someone else.
    fn check_proxy(
        &self,
        by: HolderId,
        id_hash: &IdHash,
        form: &Declaration,
        today: Date,
    ) -> Result<(), Refusal> {
        let proxy = self
            .roster
            .person(&by)?
            .ok_or_else(|| not_found(format!("no declared person {by}")))?;
        if proxy.id_hash == *id_hash {
            return Err(refused(
                "a proxy declaration is for someone else; declare yourself online",
            ));
        }
        let proxy_birth = proxy
            .form
            .check(today)
            .map(|c| c.birth)
            .map_err(|e| refused(format!("proxy's own declaration: {e}")))?;
        if proxy_birth.age_on(today) < menjin_proto::declaration::ADULT_AGE {
            return Err(refused("a proxy must be an adult (18 or older)"));
        }
        if proxy.form.building != form.building || proxy.form.door != form.door {
            return Err(refused(format!(
                "a proxy must live in the same home: proxy lives at {}-{}, the form says {}-{}",
                proxy.form.building, proxy.form.door, form.building, form.door
            )));
        }
        Ok(())
    }

    /// The person's code after this declaration: the earlier one kept, or revoked and (when
    /// cleared) a new one issued, into `change`. Returns the code in force and the one
    /// revoked.
    #[allow(clippy::too_many_arguments)]
    fn recode(
        &self,
        old_cred: Option<CredId>,
        review: &menjin_proto::declaration::Review,
        kind: HolderKind,
        holder: HolderId,
        form: &Declaration,
        now: UnixTime,
        change: &mut Change,
    ) -> Result<(Option<CredId>, Option<CredId>), Refusal> {
        let old = match old_cred {
            Some(id) => self.roster.cred(&id)?,
            None => None,
        };
        // An adopted code (no bytes to keep) is always replaced.
        let adopted = match (old_cred, &old) {
            (Some(id), None) => self.roster.adopted(&id)?,
            _ => None,
        };
        if let Some(mut a) = adopted.filter(|a| a.status == CredStatus::Active) {
            a.status = CredStatus::Revoked {
                at: now,
                why: menjin_proto::record::WHY_REPLACED.to_string(),
            };
            change.adopted.push(a);
        }
        let cleared = review.outcome == Outcome::Cleared;
        let old_code = old.as_ref().and_then(|c| SignedCode::decode(&c.code).ok());
        // The earlier code stands only if it still says the right thing: same kind, same home,
        // still active, and not expiring within a day.
        let keep = cleared
            && old_code.as_ref().is_some_and(|c| {
                let c = &c.credential;
                c.kind == kind
                    && c.building == form.building
                    && c.door == form.door
                    && u64::from(c.valid_until) > now + DAY_SECS
            })
            && old.as_ref().is_some_and(|c| c.status == CredStatus::Active);
        let mut revoked = change.adopted.last().map(|a| a.id);
        if let Some(mut o) = old
            .clone()
            .filter(|o| !keep && o.status == CredStatus::Active)
        {
            let why = if cleared {
                menjin_proto::record::WHY_REPLACED.to_string()
            } else {
                format!(
                    "{}{}",
                    menjin_proto::record::WHY_NEW_DECLARATION,
                    review.why
                )
            };
            o.status = CredStatus::Revoked { at: now, why };
            revoked = Some(o.id);
            change.creds.push(o);
        }
        let cred = if keep {
            old.as_ref().map(|o| o.id)
        } else if cleared {
            let record = self.issue_declared(kind, holder, form, now);
            let id = record.id;
            change.creds.push(record);
            Some(id)
        } else {
            None
        };
        Ok((cred, revoked))
    }

    fn attach_photo(
        &self,
        holder: HolderId,
        photo: Vec<u8>,
        _now: UnixTime,
    ) -> Result<Receipt, Refusal> {
        photo::check_photo(&photo).map_err(|e| bad(e.to_string()))?;
        let _guard = self.write.lock().expect("declaration lock");
        let mut p = self
            .roster
            .person(&holder)?
            .ok_or_else(|| not_found(format!("no declared person {holder}")))?;
        p.has_photo = true;
        self.commit(Change {
            persons: vec![p.clone()],
            photos: vec![(holder, photo)],
            ..Change::default()
        })?;
        self.receipt(&p, None)
    }

    fn show(&self, holder: HolderId) -> Result<Receipt, Refusal> {
        let p = self
            .roster
            .person(&holder)?
            .ok_or_else(|| not_found(format!("no declared person {holder}")))?;
        self.receipt(&p, None)
    }

    /// The console's `PrintPass`: the file to print, counted as printed.
    fn print_pass(&self, holder: HolderId, now: UnixTime) -> Result<Response, Refusal> {
        self.render_pass(holder, now, pass::pass_html, true)
    }

    /// The printable pass of a person with a photo as the node's pages show it: only the
    /// pass's own markup (`menjin_render::pass::pass_body`, styled by `PASS_CSS`), in
    /// [`Response::Pass`]. A view is not a print: the page's Print button counts it
    /// ([`Node::pass_printed`]). Blocking.
    pub fn print_pass_body(&self, holder: HolderId, now: UnixTime) -> Response {
        self.render_pass(holder, now, pass::pass_body, false)
            .unwrap_or_else(|r| Response::Error {
                kind: r.kind,
                message: r.message,
            })
    }

    /// A pass printed from the office's pages (the clerk pressed Print): counted in
    /// `passes_printed`, as the console's `PrintPass` counts the file it writes. Only a
    /// cleared person with a photo has a pass. Blocking.
    pub fn pass_printed(&self, holder: HolderId) -> Response {
        self.count_printed(holder)
            .unwrap_or_else(|r| Response::Error {
                kind: r.kind,
                message: r.message,
            })
    }

    fn count_printed(&self, holder: HolderId) -> Result<Response, Refusal> {
        let _guard = self.write.lock().expect("declaration lock");
        let mut p = self
            .roster
            .person(&holder)?
            .ok_or_else(|| not_found(format!("no declared person {holder}")))?;
        if p.cred.is_none() || !p.has_photo {
            return Err(refused(format!("{holder} has no pass to print")));
        }
        p.passes_printed = p.passes_printed.saturating_add(1);
        let printed = p.passes_printed;
        self.commit(Change {
            persons: vec![p],
            ..Change::default()
        })?;
        Ok(Response::Done(format!(
            "pass of {holder} printed ({printed} so far)"
        )))
    }

    fn render_pass(
        &self,
        holder: HolderId,
        now: UnixTime,
        render: fn(&pass::PassData) -> Result<String, menjin_render::qr::RenderError>,
        count: bool,
    ) -> Result<Response, Refusal> {
        let _guard = self.write.lock().expect("declaration lock");
        let mut p = self
            .roster
            .person(&holder)?
            .ok_or_else(|| not_found(format!("no declared person {holder}")))?;
        let Some(cred_id) = p.cred else {
            return Err(refused(format!(
                "{} is not cleared ({}): no pass",
                p.form.name, p.review.why
            )));
        };
        let photo_bytes = self.roster.photo(&holder)?;
        let Some(photo_bytes) = photo_bytes else {
            return Err(refused(
                "the pass must carry a photo: attach one first (menjin pass photo)",
            ));
        };
        let mime = photo::check_photo(&photo_bytes)
            .map_err(|e| refused(format!("stored photo: {e}")))?
            .mime;
        let cred = self
            .roster
            .cred(&cred_id)?
            .ok_or_else(|| not_found("code record missing"))?;
        let code =
            SignedCode::decode(&cred.code).map_err(|e| refused(format!("stored code: {e}")))?;
        let gender = match p.form.gender {
            menjin_proto::declaration::Gender::Male => "男 M",
            menjin_proto::declaration::Gender::Female => "女 F",
        };
        let html = render(&pass::PassData {
            community_name: &self.config.community_name,
            name: &p.form.name,
            gender,
            document_type: p.form.document_type.label(),
            document_number: &p.form.document_number,
            building: &p.form.building,
            door: &p.form.door,
            holder_id: &holder.to_string(),
            photo: Some((mime, &photo_bytes)),
            code_text: &code.to_text(),
            valid_until: &Date::from_unix(u64::from(code.credential.valid_until)).to_string(),
            issued: &Date::from_unix(now).to_string(),
        })
        .map_err(|e| refused(e.to_string()))?;
        if count {
            p.passes_printed += 1;
            self.commit(Change {
                persons: vec![p],
                ..Change::default()
            })?;
        }
        Ok(Response::Pass { holder, html })
    }

    fn invite(
        &self,
        host: HolderId,
        name: String,
        phone: String,
        from: UnixTime,
        until: UnixTime,
        now: UnixTime,
    ) -> Result<VisitorReceipt, Refusal> {
        let (name, phone) = (name.trim().to_string(), phone.trim().to_string());
        if name.is_empty() || name.len() > NAME_LEN_MAX || name.chars().any(char::is_control) {
            return Err(bad("visitor name: 1 to 64 bytes, no control characters"));
        }
        if phone.is_empty()
            || phone.len() > PHONE_LEN_MAX
            || !phone
                .bytes()
                .all(|b| b.is_ascii_digit() || b"+- ".contains(&b))
        {
            return Err(bad("visitor phone: digits, spaces, + and -, at most 20"));
        }
        if until <= from {
            return Err(bad("visit window: the end must come after the start"));
        }
        if until <= now {
            return Err(bad("visit window: already over"));
        }
        if until - from > VISIT_SECS_MAX {
            return Err(bad(
                "visit window: at most 7 days; people staying longer declare as residents",
            ));
        }
        let _guard = self.write.lock().expect("declaration lock");
        let h = self
            .roster
            .person(&host)?
            .ok_or_else(|| not_found(format!("no declared person {host}")))?;
        if !self.roster.holder_active(&host, now) {
            return Err(refused(format!(
                "{} holds no valid code ({}): cannot consent to visitors",
                h.form.name, h.review.why
            )));
        }
        let visit = Visit {
            host,
            visitor_name: name.clone(),
            visitor_phone: phone,
        };
        let (record, code) = self.issue(
            HolderKind::Visitor,
            HolderId(menjin_store::files::random8()),
            &h.form.building,
            &h.form.door,
            from,
            until,
            Some(visit),
            now,
        );
        let cred = record.id;
        self.commit(Change {
            creds: vec![record],
            ..Change::default()
        })?;
        tracing::info!(host = %host, cred = %cred, "visitor consent recorded");
        Ok(VisitorReceipt {
            cred,
            code: code.to_text(),
            host,
            visitor_name: name,
            from,
            until,
        })
    }

    fn withdraw(&self, id: CredId, now: UnixTime) -> Result<Response, Refusal> {
        let _guard = self.write.lock().expect("declaration lock");
        let mut c = self
            .roster
            .cred(&id)?
            .ok_or_else(|| not_found(format!("no code {id}")))?;
        if c.kind != HolderKind::Visitor {
            return Err(bad(format!("{id} is not a visitor code")));
        }
        if c.status != CredStatus::Active {
            return Err(refused(format!("{id} is not in force")));
        }
        c.status = CredStatus::ConsentWithdrawn { at: now };
        self.commit(Change {
            creds: vec![c],
            ..Change::default()
        })?;
        Ok(Response::Done(format!(
            "consent for visitor code {id} withdrawn"
        )))
    }

    fn summary(&self) -> Result<RosterSummary, Refusal> {
        use std::collections::{BTreeMap, BTreeSet};
        let mut by_building: BTreeMap<String, (BuildingProgress, BTreeSet<String>)> =
            BTreeMap::new();
        for p in self.roster.persons() {
            let p = p?;
            let (b, doors) = by_building.entry(p.form.building.clone()).or_default();
            b.building = p.form.building.clone();
            doors.insert(p.form.door.clone());
            b.residents += 1;
            if p.review.outcome == Outcome::Cleared {
                b.cleared += 1;
            } else {
                b.not_cleared += 1;
            }
            if p.cred.is_some() {
                b.codes_active += 1;
            }
            if p.passes_printed > 0 {
                b.passes_printed += 1;
            }
        }
        let buildings = by_building
            .into_values()
            .map(|(mut b, doors)| {
                b.households = doors.len() as u32;
                b
            })
            .collect();
        Ok(RosterSummary {
            community: self.config.community,
            community_name: self.config.community_name.clone(),
            campaign_start: self.config.campaign_start,
            deadline: self.config.campaign_start + DEADLINE_DAYS * DAY_SECS,
            buildings,
        })
    }

    fn enrol_gate(&self, gate_id: String, key: [u8; 32]) -> Result<Response, Refusal> {
        menjin_proto::wire::check_gate_id(&gate_id).map_err(|e| bad(e.to_string()))?;
        let vk =
            VerifyingKey::from_bytes(&key).map_err(|_| bad("not a valid ed25519 public key"))?;
        if self.peers.role(&key).is_some() {
            return Err(refused("this key is already enrolled"));
        }
        self.gates
            .enrol(&gate_id, key)
            .map_err(|e| refused(e.to_string()))?;
        self.peers.insert(key, PeerRole::Gate(gate_id.clone()));
        tracing::info!(gate = %gate_id, key = %menjin_proto::keys::fingerprint(&vk), "gate enrolled");
        Ok(Response::Done(format!("gate {gate_id} enrolled")))
    }

    /// Takes a gate out: stored first (flushed), then its key leaves the peer table, which
    /// closes its open connections at once; it cannot connect again, so it can neither check
    /// nor upload (a restart reads the `gates` tree, where it no longer is).
    fn revoke_gate(&self, gate_id: &str) -> Result<Response, Refusal> {
        menjin_proto::wire::check_gate_id(gate_id).map_err(|e| bad(e.to_string()))?;
        let key = self
            .gates
            .revoke(gate_id)
            .map_err(|e| refused(e.to_string()))?
            .ok_or_else(|| refused(format!("no gate {gate_id} is enrolled")))?;
        let closed = self.peers.remove(&key);
        let fingerprint = VerifyingKey::from_bytes(&key)
            .map(|vk| menjin_proto::keys::fingerprint(&vk))
            .unwrap_or_default();
        tracing::warn!(gate = %gate_id, key = %fingerprint, closed, "gate revoked");
        Ok(Response::Done(format!(
            "gate {gate_id} revoked ({closed} open connections closed)"
        )))
    }

    /// Codes in force and revoked, from memory (cheap, unlike [`Node::status`], which
    /// counts the residents in sled).
    pub fn roster_code_counts(&self) -> (u64, u64) {
        self.roster.code_counts()
    }

    /// The node's state for `menjin node status`. Counts residents by walking sled (about
    /// 150 ms at 100,000): not for a hot path.
    pub fn status(&self) -> NodeStatus {
        let (active, revoked) = self.roster.code_counts();
        let lockdown = self.lockdown();
        NodeStatus {
            community: self.config.community,
            community_name: self.config.community_name.clone(),
            node_key_id: self.key_id.to_string(),
            residents: self.roster.persons().count() as u64,
            residents_to_redeclare: self.roster.residents_to_redeclare().unwrap_or(0),
            codes_active: active,
            codes_revoked: revoked,
            gates: self.peers.gates(),
            events_logged: self.log.len(),
            node_time_ms: now_ms(),
            hub_connected: self.hub_link.connected(),
            hub_acked_seq: self.hub_link.acked(),
            locked: lockdown.locked,
            lockdown_epoch: lockdown.epoch,
            lockdown_reason: lockdown.reason,
            gate_links: self.gate_links(),
            mirror_pending: self.roster.mirror_pending().unwrap_or(true),
            revoked: self.revoked(),
        }
    }

    /// Every enrolled gate's link.
    pub fn gate_links(&self) -> Vec<menjin_proto::wire::GateLink> {
        self.feed.links(&self.peers.gates())
    }

    /// The lockdown as gates apply it.
    pub fn gate_lockdown(&self) -> GateLockdown {
        let l = self.lockdown();
        GateLockdown {
            locked: l.locked,
            epoch: l.epoch,
            reason: l.reason,
            at: l.at,
        }
    }

    /// Tells the gates about the lockdown in force (nothing is sent if it did not change).
    fn push_lockdown(&self) {
        if self.feed.on_lockdown(self.gate_lockdown(), now_ms()) {
            self.changed();
        }
    }

    /// A version that rises whenever a roster commit, a household code's issue or
    /// revocation, or a change of the lockdown in force may have changed what a home's page
    /// shows. Watchers (the web pages' live streams) look again when it moves; it says
    /// nothing about what changed, so a watcher compares what it shows.
    pub fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }

    pub(crate) fn changed(&self) {
        self.changes.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// The lockdown in force here: the district's, or a later one decided at this node.
    pub fn lockdown(&self) -> Lockdown {
        let hub = self.lockdown.read().expect("lockdown lock").clone();
        let local = self.local_lockdown.read().expect("lockdown lock").clone();
        let locked = effective_lockdown(
            (hub.epoch > 0).then_some((hub.locked, hub.at)),
            local.as_ref(),
        );
        match local {
            Some(l) if hub.epoch == 0 || l.at > hub.at => Lockdown {
                community: hub.community,
                locked,
                epoch: hub.epoch,
                reason: format!("{} (decided at the node by {})", l.reason, l.by),
                by: l.by,
                at: l.at,
            },
            _ => Lockdown { locked, ..hub },
        }
    }

    /// The district adopted this node's local decision (`record::adopts`): the node keeps it
    /// no more, so its clock does not compete with later district decisions.
    fn drop_adopted_local_lockdown(&self, district: &Lockdown) {
        let mut local = self.local_lockdown.write().expect("lockdown lock");
        let adopted = local.as_ref().is_some_and(|l| {
            menjin_proto::record::adopts(district.locked, &district.reason, &district.by, l)
        });
        if !adopted {
            return;
        }
        match self.local_policy.clear_lockdown() {
            Ok(()) => {
                *local = None;
                tracing::info!("local lockdown adopted by the district; now the district's");
            }
            Err(e) => tracing::error!(error = %e, "local lockdown not cleared"),
        }
    }

    /// The local lockdown decision, for the uplink to report.
    pub fn local_lockdown(&self) -> Option<LocalLockdown> {
        self.local_lockdown.read().expect("lockdown lock").clone()
    }

    fn set_local_lockdown(
        &self,
        locked: bool,
        reason: String,
        by: String,
        now: UnixTime,
    ) -> Result<Response, Refusal> {
        let (reason, by) = (reason.trim().to_string(), by.trim().to_string());
        if by.is_empty() || by.len() > NAME_LEN_MAX {
            return Err(bad(
                "by: the name of the staff member deciding, 1 to 64 bytes",
            ));
        }
        if locked && reason.is_empty() {
            return Err(bad("reason: say why (who called, which case)"));
        }
        if reason.trim().len() > menjin_proto::record::LOCKDOWN_REASON_LEN_MAX {
            return Err(bad(format!(
                "reason: at most {} bytes",
                menjin_proto::record::LOCKDOWN_REASON_LEN_MAX
            )));
        }
        let l = LocalLockdown {
            locked,
            reason,
            by,
            at: now,
        };
        self.local_policy.set_lockdown(&l).map_err(|e| Refusal {
            kind: ErrorKind::Internal,
            message: e.to_string(),
        })?;
        *self.local_lockdown.write().expect("lockdown lock") = Some(l);
        self.push_lockdown();
        self.local_changed.notify_one();
        tracing::warn!(
            community = self.config.community,
            locked,
            "local lockdown decided at the node"
        );
        Ok(Response::Done(format!(
            "lockdown {} at the node; reported to the hub when the link is up",
            if locked { "started" } else { "lifted" }
        )))
    }

    /// Takes this community's lockdown from the replicated district policy. Called once the
    /// replica is loaded and whenever the hub's policy changes arrive; the gate rule reads
    /// the result.
    pub fn refresh_policy(&self) {
        if let Some(r) = self.mirror.get() {
            self.apply_policy(r.read(|r| r.policy()));
        }
    }

    /// Applies the district policy: the lockdown (a later epoch only), the community's
    /// revoked node keys and health flags.
    fn apply_policy(&self, policy: menjin_sync::PolicyView) {
        let community = self.config.community;
        self.apply_node_revocations(&policy.revoked_keys_of(community));
        let lockdown = policy.lockdowns.get(&community).cloned();
        let health = policy.health;
        if let Some(new) = lockdown {
            let mut current = self.lockdown.write().expect("lockdown lock");
            if new.epoch > current.epoch {
                tracing::warn!(community, locked = new.locked, epoch = new.epoch, reason = %new.reason, by = %new.by, "lockdown applied");
                self.drop_adopted_local_lockdown(&new);
                *current = new;
            }
        }
        self.push_lockdown();
        let changed: Vec<(IdHash, String, UnixTime)> = {
            let mut view = self.health.write().expect("health lock");
            let mut changed = Vec::new();
            for f in health.into_values() {
                if view.get(&f.id_hash) != Some(&(f.status.clone(), f.at)) {
                    view.insert(f.id_hash, (f.status.clone(), f.at));
                    changed.push((f.id_hash, f.status, f.at));
                }
            }
            changed
        };
        for (id_hash, status, at) in changed {
            if let Err(e) = self.apply_health_flag(&id_hash, &status, at) {
                tracing::error!(error = %e.message, "health flag not applied");
            }
        }
    }

    /// The community's node keys the district revoked go to the gates. The node's own current
    /// key among them: it keeps running (the roster, the pages, the log stay), but its gates
    /// now refuse it at the handshake and offline refuse the codes it signed, and the hub
    /// refuses its link; said loudly once, and in `node status` (`revoked`).
    fn apply_node_revocations(&self, revoked: &[[u8; 32]]) {
        let own = self.cert.node_key.to_bytes();
        let was = self.feed.node_key_revoked(&own);
        if self.feed.on_node_keys_revoked(revoked, now_ms()) {
            tracing::warn!(keys = revoked.len(), "revoked node keys sent to the gates");
        }
        if !was && self.feed.node_key_revoked(&own) {
            tracing::error!(
                key = %self.key_id,
                "the district revoked this node's key: its gates refuse it from now on; make a \
                 new key (`menjin node rekey`) and have the hub enrol it"
            );
        }
    }

    /// Whether the district revoked this node's current key (as far as its policy says).
    pub fn revoked(&self) -> bool {
        self.feed.node_key_revoked(self.cert.node_key.as_bytes())
    }

    /// A district health flag for someone of this community: a status other than `cleared`
    /// revokes their code at once; `cleared` lets their next declaration issue one.
    fn apply_health_flag(
        &self,
        id_hash: &IdHash,
        status: &str,
        at: UnixTime,
    ) -> Result<(), Refusal> {
        let Some(outcome) = health_outcome(status) else {
            return Ok(());
        };
        let _guard = self.write.lock().expect("declaration lock");
        let Some(holder) = self.roster.holder_by_hash(id_hash)? else {
            return Ok(());
        };
        // The code in force may be adopted (no declaration here: a restored node), or newer
        // than the one the person's record names.
        let person = self.roster.person(&holder)?;
        let Some(cred_id) = self
            .roster
            .active_cred(&holder)
            .or_else(|| person.as_ref().and_then(|p| p.cred))
        else {
            return Ok(());
        };
        let why = format!("{}{status}", menjin_proto::record::WHY_HEALTH_LIST);
        let revoked = CredStatus::Revoked {
            at,
            why: why.clone(),
        };
        let mut change = Change::default();
        if let Some(mut c) = self
            .roster
            .cred(&cred_id)?
            .filter(|c| c.status == CredStatus::Active)
        {
            c.status = revoked;
            change.creds.push(c);
        } else if let Some(mut a) = self
            .roster
            .adopted(&cred_id)?
            .filter(|a| a.status == CredStatus::Active)
        {
            a.status = revoked;
            change.adopted.push(a);
        }
        if let Some(mut person) = person {
            person.cred = None;
            person.review = menjin_proto::declaration::Review { outcome, why };
            change.persons.push(person);
        }
        self.commit(change)?;
        tracing::warn!(holder = %holder, status, "code revoked by the district health list");
        Ok(())
    }

    /// The district's health status for this person, when it forbids a code.
    fn flagged(&self, id_hash: &IdHash) -> Option<(Outcome, String)> {
        let view = self.health.read().expect("health lock");
        let (status, _) = view.get(id_hash)?;
        health_outcome(status).map(|o| {
            (
                o,
                format!("{}{status}", menjin_proto::record::WHY_HEALTH_LIST),
            )
        })
    }

    /// A gate check: decide (`menjin_proto::check`, as at a gate alone), log (flushed), answer.
    /// `gate_id` is the gate its connection authenticated as.
    ///
    /// # Errors
    /// A [`Refusal`] for a malformed request (nothing is logged) or a storage failure.
    pub async fn check(&self, gate_id: &str, req: CheckRequest) -> Result<CheckAnswer, Refusal> {
        let now_ms = now_ms();
        let scan = check::Scan {
            code: &req.code,
            temperature_dc: req.temperature_dc,
            plate: req.plate.as_deref(),
            direction: req.direction,
            gate_id,
        };
        let ctx = check::Context {
            community: self.config.community,
            issuer: check::Issuer::Own(&self.cert),
            mode: check::Mode::Online,
            lockdown: self.lockdown().locked,
            residents_may_leave: self.config.residents_may_leave_in_lockdown,
            anti_passback: self.config.anti_passback,
        };
        let mut trust = RosterTrust {
            now: now_ms / 1000,
            roster: &self.roster,
            last_direction: &self.last_direction,
            view: None,
        };
        let checked =
            check::check(&scan, now_ms, &ctx, &mut trust).map_err(|e| bad(e.to_string()))?;
        let holder = (trust.view)
            .filter(|_| checked.credential.is_some())
            .map(|v| v.display.clone());
        self.feed.contact(gate_id, now_ms);
        let (verdict, passback) = (checked.verdict, checked.passback);
        let (seq, time_ms) = self.log.append(checked.event).await?;
        self.log_appended.notify_one();
        if verdict.fever {
            tracing::warn!(gate = %gate_id, seq, temperature_dc = req.temperature_dc, "fever at the gate");
        }
        Ok(CheckAnswer {
            allowed: verdict.allowed,
            reason: verdict.reason,
            fever: verdict.fever,
            holder,
            seq,
            node_time_ms: time_ms,
            passback,
        })
    }

    /// A gate's offline events (see [`GateLog::append_offline`]), filed under the gate its
    /// connection authenticated as.
    ///
    /// # Errors
    /// A [`Refusal`] for a malformed upload (nothing stored) or a storage failure.
    pub async fn upload(
        &self,
        gate_id: &str,
        events: Vec<OfflineEvent>,
    ) -> Result<Response, Refusal> {
        if events.len() > UPLOAD_BATCH_MAX {
            return Err(bad(format!("at most {UPLOAD_BATCH_MAX} events per upload")));
        }
        let now = now_ms();
        let (upto, stored) = self
            .log
            .append_offline(gate_id, events, now)
            .await
            .map_err(|e| match e {
                UploadError::Log(e) => Refusal {
                    kind: ErrorKind::Internal,
                    message: e.to_string(),
                },
                e => bad(e.to_string()),
            })?;
        if stored > 0 {
            self.log_appended.notify_one();
            tracing::info!(gate = %gate_id, stored, upto, "offline gate events stored");
        }
        self.feed.uploaded(gate_id, upto, now);
        Ok(Response::Uploaded {
            upto_gate_seq: upto,
            stored,
        })
    }

    /// A gate's acknowledgment of the feed.
    pub fn gate_ack(&self, gate_id: &str, ack: &GateAck) -> Response {
        self.feed.acked(gate_id, ack, now_ms());
        Response::Done(format!("version {} noted", ack.version))
    }

    /// The full trust data for a gate that subscribes.
    pub fn feed_snapshot(&self) -> TrustSnapshot {
        let now = now_ms();
        let mut s = self.feed.snapshot(
            self.cert.encode(),
            self.config.community,
            self.config.residents_may_leave_in_lockdown,
            now,
        );
        // A previous key the district revoked vouches for nothing any more.
        s.previous_node_cert = self
            .previous_cert
            .as_ref()
            .filter(|prev| {
                previous_cert_needed(prev, &self.cert, self.config.code_validity_days, now / 1000)
                    && !self.feed.node_key_revoked(prev.node_key.as_bytes())
            })
            .map(NodeCert::encode);
        s
    }
}

/// Whether gates still need the certificate before the last rekey: while a code its key
/// signed may be in force (signed before the current certificate was made, valid at most
/// `code_validity_days`) and the certificate itself is.
fn previous_cert_needed(
    previous: &NodeCert,
    current: &NodeCert,
    code_validity_days: u32,
    now: UnixTime,
) -> bool {
    let rekeyed = current.not_before + menjin_store::provision::NODE_CERT_BACKDATE_S;
    now < rekeyed + u64::from(code_validity_days) * DAY_SECS && now <= previous.not_after
}

/// `node.cert.previous`, if there is one that the district root signed for this community
/// and another key; anything else is logged and left out of the feed (the node still starts).
fn previous_cert(dir: &NodeDir, root: &VerifyingKey, current: &NodeCert) -> Option<NodeCert> {
    let path = dir.previous_cert();
    if !path.exists() {
        return None;
    }
    let checked = read_node_cert(&path)
        .map_err(|e| e.to_string())
        .and_then(|c| {
            c.verify(root, now_ms() / 1000)
                .map(|()| c)
                .map_err(|e| e.to_string())
        })
        .and_then(|c| {
            if c.community == current.community && c.node_key != current.node_key {
                Ok(c)
            } else {
                Err("not an earlier certificate of this node".into())
            }
        });
    match checked {
        Ok(c) => Some(c),
        Err(why) => {
            tracing::warn!(path = %path.display(), %why, "previous node certificate not sent to gates");
            None
        }
    }
}

/// What a gate check at the node knows of codes: the roster's in-memory view (never sled),
/// and the anti-passback memory (this process's: a restart forgets who is in). Keeps the
/// record it looked up: the answer shows its holder.
struct RosterTrust<'a> {
    roster: &'a Roster,
    last_direction: &'a Mutex<std::collections::HashMap<HolderId, Direction>>,
    view: Option<Arc<CredView>>,
    /// The check's time (Unix seconds): a host's code must be in force then.
    now: UnixTime,
}

impl check::Trust for RosterTrust<'_> {
    fn lookup(&mut self, id: &CredId) -> check::Known<'_> {
        self.view = self.roster.lookup(id);
        let Some(v) = &self.view else {
            return check::Known::NotIssued;
        };
        if v.code.is_empty() {
            // Adopted from the district copy: no bytes to compare, so the signature decides;
            // never a visitor.
            return check::Known::Unrecorded {
                revoked: v.status != CredStatus::Active,
                consent: false,
            };
        }
        check::Known::Issued(check::Issued {
            code: &v.code,
            kind: v.kind,
            holder: v.holder,
            revoked: matches!(v.status, CredStatus::Revoked { .. }),
            // A visitor's consent stands while not withdrawn and while the host holds a code.
            consent: v.kind == HolderKind::Visitor
                && v.status == CredStatus::Active
                && v.host
                    .is_some_and(|h| self.roster.holder_active(&h, self.now)),
        })
    }

    fn swap_direction(&mut self, holder: HolderId, direction: Direction) -> Option<Direction> {
        let mut last = self.last_direction.lock().expect("passback lock");
        last.insert(holder, direction)
    }
}

/// What a change means for gates: every code it writes, declared or adopted.
pub(crate) fn touched_by(change: &Change) -> Vec<crate::feed::CodeTouch> {
    change
        .creds
        .iter()
        .map(crate::feed::CodeTouch::of)
        .chain(
            change
                .adopted
                .iter()
                .map(crate::feed::CodeTouch::of_adopted),
        )
        .collect()
}

/// The replicated code entry of an adopted code.
pub(crate) fn adopted_entry(a: &crate::roster::AdoptedCode) -> menjin_sync::CodeEntry {
    let (status, revoked_at) = match &a.status {
        CredStatus::Active => (menjin_sync::CodeStatus::Active, None),
        CredStatus::Revoked { at, .. } => (menjin_sync::CodeStatus::Revoked, Some(*at)),
        CredStatus::ConsentWithdrawn { at } => {
            (menjin_sync::CodeStatus::ConsentWithdrawn, Some(*at))
        }
    };
    menjin_sync::CodeEntry {
        id: a.id,
        holder: a.holder,
        kind: a.kind,
        status,
        valid_from: a.valid_from,
        valid_until: a.valid_until,
        host: None,
        revoked_at,
    }
}

/// The review outcome a district health status stands for (`None`: cleared, or unknown).
pub fn health_outcome(status: &str) -> Option<Outcome> {
    match status {
        "home_quarantine" => Some(Outcome::HomeQuarantine),
        "central_quarantine" => Some(Outcome::CentralQuarantine),
        "hospital" => Some(Outcome::Hospital),
        _ => None,
    }
}

/// The form as typed (trimmed), its photo and the staff member's name, checked before
/// anything is read or written: what is wrong comes back with the field it concerns.
fn check_form(
    form: &mut Declaration,
    photo: Option<&[u8]>,
    staff: Option<&str>,
    today: Date,
) -> Result<menjin_proto::declaration::Checked, Refusal> {
    trim_form(form);
    let checked = form.check(today).map_err(|e| bad(e.to_string()))?;
    if let Some(photo) = photo {
        photo::check_photo(photo).map_err(|e| bad(e.to_string()))?;
    }
    if let Some(staff) = staff
        && (staff.trim().is_empty() || staff.len() > NAME_LEN_MAX)
    {
        return Err(bad(
            "staff: the name of the staff member who typed the form is required",
        ));
    }
    Ok(checked)
}

fn trim_form(f: &mut Declaration) {
    for s in [
        &mut f.name,
        &mut f.document_number,
        &mut f.nationality,
        &mut f.phone,
        &mut f.building,
        &mut f.door,
    ] {
        *s = s.trim().to_string();
    }
    f.document_number = f.document_number.to_ascii_uppercase();
}

/// Gate ids are short names staff type and read in logs.
///
/// # Errors
/// A message saying what is allowed.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{new_node, now, resident};
    use menjin_proto::declaration::Quarantine;

    fn node() -> (tempfile::TempDir, Arc<Node>) {
        let tmp = tempfile::tempdir().unwrap();
        let dir = new_node(tmp.path());
        (tmp, Node::open(&dir).unwrap())
    }

    fn form(name: &str, birth: &str, serial: u32, door: &str) -> Declaration {
        resident(name, birth, serial, door)
    }

    fn declared(resp: Response) -> Receipt {
        match resp {
            Response::Declared(r) => r,
            other => panic!("expected a receipt, got {other:?}"),
        }
    }

    #[test]
    fn same_declaration_again_keeps_the_code() {
        let (_tmp, node) = node();
        let a = declared(node.console(
            ConsoleRequest::Declare {
                form: form("A", "19800101", 1, "101"),
            },
            now(),
        ));
        let b = declared(node.console(
            ConsoleRequest::Declare {
                form: form("A", "19800101", 1, "101"),
            },
            now(),
        ));
        assert_eq!(a.holder, b.holder);
        assert_eq!(a.cred, b.cred);
        assert!(b.revoked.is_none());
    }

    #[test]
    fn moving_home_revokes_and_reissues() {
        let (_tmp, node) = node();
        let a = declared(node.console(
            ConsoleRequest::Declare {
                form: form("A", "19800101", 1, "101"),
            },
            now(),
        ));
        let b = declared(node.console(
            ConsoleRequest::Declare {
                form: form("A", "19800101", 1, "102"),
            },
            now(),
        ));
        assert_eq!(b.revoked, a.cred);
        assert_ne!(b.cred, a.cred);
        assert!(b.code.is_some());
        let old = node.roster.lookup(&a.cred.unwrap()).unwrap();
        assert!(matches!(old.status, CredStatus::Revoked { .. }));
    }

    #[test]
    fn quarantine_gives_no_code_and_clearing_gives_one() {
        let (_tmp, node) = node();
        let mut f = form("A", "19800101", 1, "101");
        f.quarantine = Quarantine::Home;
        let a = declared(node.console(ConsoleRequest::Declare { form: f.clone() }, now()));
        assert_eq!(a.outcome, Outcome::HomeQuarantine);
        assert!(a.code.is_none() && a.cred.is_none());
        f.quarantine = Quarantine::None;
        let b = declared(node.console(ConsoleRequest::Declare { form: f }, now()));
        assert_eq!(b.outcome, Outcome::Cleared);
        assert!(b.code.is_some());
        assert_eq!(a.holder, b.holder);
    }

    #[test]
    fn refused_declaration_stores_nothing() {
        let (_tmp, node) = node();
        let mut f = form("A", "19800101", 1, "101");
        f.document_number.replace_range(
            17..,
            if f.document_number.ends_with('0') {
                "1"
            } else {
                "0"
            },
        );
        match node.console(ConsoleRequest::Declare { form: f }, now()) {
            Response::Error {
                kind: ErrorKind::BadRequest,
                message,
            } => assert!(message.contains("check digit"), "{message}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(node.status().residents, 0);
        assert_eq!(node.roster.code_counts(), (0, 0));
    }

    #[test]
    fn proxy_must_be_an_adult_of_the_same_home() {
        let (_tmp, node) = node();
        let adult = declared(node.console(
            ConsoleRequest::Declare {
                form: form("A", "19800101", 1, "101"),
            },
            now(),
        ));
        let child = declared(node.console(
            ConsoleRequest::DeclareProxy {
                by: adult.holder,
                form: form("C", "20180101", 2, "101"),
            },
            now(),
        ));
        assert_eq!(child.kind, HolderKind::Dependent);
        assert_eq!(child.declared_by, Some(adult.holder));
        let other_home = node.console(
            ConsoleRequest::DeclareProxy {
                by: adult.holder,
                form: form("D", "19400101", 4, "999"),
            },
            now(),
        );
        assert!(
            matches!(
                other_home,
                Response::Error {
                    kind: ErrorKind::Refused,
                    ..
                }
            ),
            "{other_home:?}"
        );
        let by_child = node.console(
            ConsoleRequest::DeclareProxy {
                by: child.holder,
                form: form("E", "19400101", 6, "101"),
            },
            now(),
        );
        assert!(
            matches!(
                by_child,
                Response::Error {
                    kind: ErrorKind::Refused,
                    ..
                }
            ),
            "{by_child:?}"
        );
        assert_eq!(node.status().residents, 2);
    }

    /// A host whose code has expired consents to nothing: not to a new visitor, and a visitor
    /// invited before the host's code ran out is no longer let in.
    #[test]
    fn a_host_with_an_expired_code_cannot_invite_and_its_visitors_lose_their_consent() {
        let (_tmp, node) = node();
        let host = declared(node.console(
            ConsoleRequest::Declare {
                form: form("H", "19800101", 1, "101"),
            },
            now(),
        ));
        let code = SignedCode::from_text(host.code.as_deref().unwrap()).unwrap();
        let expired = u64::from(code.credential.valid_until) + 1;
        let invite = |t: UnixTime| {
            node.console(
                ConsoleRequest::InviteVisitor {
                    host: host.holder,
                    visitor_name: "V".into(),
                    visitor_phone: "139".into(),
                    from: t,
                    until: t + 3600,
                },
                t,
            )
        };
        assert!(matches!(invite(now()), Response::Visitor(_)));
        assert!(node.roster.holder_active(&host.holder, now()));
        assert!(!node.roster.holder_active(&host.holder, expired));
        match invite(expired) {
            Response::Error { kind, message } => {
                assert_eq!(kind, ErrorKind::Refused, "{message}");
                assert!(message.contains("no valid code"), "{message}");
            }
            other => panic!("an expired host invited a visitor: {other:?}"),
        }
    }

    #[test]
    fn visitor_consent_falls_with_its_host() {
        let (_tmp, node) = node();
        let host = declared(node.console(
            ConsoleRequest::Declare {
                form: form("H", "19800101", 1, "101"),
            },
            now(),
        ));
        let t = now();
        let v = match node.console(
            ConsoleRequest::InviteVisitor {
                host: host.holder,
                visitor_name: "V".into(),
                visitor_phone: "139".into(),
                from: t,
                until: t + 3600,
            },
            t,
        ) {
            Response::Visitor(v) => v,
            other => panic!("{other:?}"),
        };
        let view = node.roster.lookup(&v.cred).unwrap();
        assert_eq!(view.host, Some(host.holder));
        assert!(node.roster.holder_active(&host.holder, now()));
        let mut sick = form("H", "19800101", 1, "101");
        sick.symptoms = true;
        declared(node.console(ConsoleRequest::Declare { form: sick }, now()));
        assert!(!node.roster.holder_active(&host.holder, now()));
        // And a host without a code cannot invite.
        let again = node.console(
            ConsoleRequest::InviteVisitor {
                host: host.holder,
                visitor_name: "V".into(),
                visitor_phone: "139".into(),
                from: t,
                until: t + 3600,
            },
            t,
        );
        assert!(
            matches!(
                again,
                Response::Error {
                    kind: ErrorKind::Refused,
                    ..
                }
            ),
            "{again:?}"
        );
    }

    #[test]
    fn view_is_rebuilt_from_disk_on_reopen() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = new_node(tmp.path());
        let (a, b) = {
            let node = Node::open(&dir).unwrap();
            let a = declared(node.console(
                ConsoleRequest::Declare {
                    form: form("A", "19800101", 1, "101"),
                },
                now(),
            ));
            let b = declared(node.console(
                ConsoleRequest::Declare {
                    form: form("A", "19800101", 1, "102"),
                },
                now(),
            ));
            (a, b)
        };
        let node = Node::open(&dir).unwrap();
        assert!(matches!(
            node.roster.lookup(&a.cred.unwrap()).unwrap().status,
            CredStatus::Revoked { .. }
        ));
        assert_eq!(
            node.roster.lookup(&b.cred.unwrap()).unwrap().status,
            CredStatus::Active
        );
        assert!(node.roster.holder_active(&b.holder, now()));
    }
}

#[cfg(test)]
mod changes_tests;
#[cfg(test)]
mod passback_tests;
#[cfg(test)]
mod start_tests;
