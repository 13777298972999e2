//! A district on loopback inside this process, for `menjin demo`, `menjin bench` and the
//! tests: real sled in temporary directories, real QUIC, real enrolled keys. Its nodes never
//! advertise by mDNS.
//!
//! What it must never do: be a dependency of a daemon; listen beyond loopback.

#![warn(unreachable_pub, missing_docs, unused_crate_dependencies)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use menjin_community::Node;
use menjin_community::uplink::run_uplink;
use menjin_gate::{GateAgent, Notices};
use menjin_hub::Hub;
use menjin_net::client::NodeClient;
use menjin_net::clock::now_ms;
use menjin_proto::CommunityId;
use menjin_proto::cert::HUB_COMMUNITY;
use menjin_proto::declaration::{Declaration, Gender, PersonType, Quarantine, Tenure};
use menjin_proto::idnum::{DocumentType, complete_resident_id};
use menjin_proto::wire::{
    CheckAnswer, CheckRequest, ConsoleRequest, Direction, GateRequest, HubRequest, Response,
};
use menjin_store::files::{DistrictDir, GateDir, NodeDir, read_public_key, read_signing_key};
use menjin_store::provision::{NodeSpec, create_district, create_gate, create_hub, create_node};
use tokio::sync::oneshot;

/// A district in a temporary directory (deleted when this is dropped): its root and ID-hash
/// keys, and the directories of the nodes, hub and gates made from it.
pub struct LocalDistrict {
    _tmp: tempfile::TempDir,
    /// The temporary directory holding every other directory.
    pub base: PathBuf,
    /// The district's keys (`root.key`, `root.pub`, `idhash.key`).
    pub district: DistrictDir,
}

/// A community node serving on loopback in this process; stop it with [`LocalNode::stop`] to
/// wait for its tasks.
pub struct LocalNode {
    /// The node's directory (keys, `node.toml`, `db/`).
    pub dir: NodeDir,
    /// The running node, for reading its state directly.
    pub node: Arc<Node>,
    /// The loopback address its QUIC endpoint bound.
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    uplink: Option<(
        tokio::sync::watch::Sender<bool>,
        tokio::task::JoinHandle<()>,
    )>,
}

/// A node that was stopped to be restarted: where it lived.
pub struct StoppedNode {
    /// The node's directory.
    pub dir: NodeDir,
    /// The address it served on, for its restart.
    pub addr: SocketAddr,
}

/// A district hub in this process.
pub struct LocalHub {
    /// The hub's directory (`hub.toml`, keys, `db/`).
    pub dir: NodeDir,
    /// The running hub, for reading its state directly.
    pub hub: Arc<Hub>,
    /// The loopback address its QUIC endpoint bound.
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

/// A gate connected to its node as a bare client (no agent, cache or feed): each check is
/// answered by the node.
pub struct LocalGate {
    /// The gate id it was enrolled under.
    pub id: String,
    /// Its connection, authenticated with the gate's enrolled key.
    pub client: NodeClient,
}

impl LocalDistrict {
    /// Creates the district's keys in a new temporary directory.
    ///
    /// # Errors
    /// If the directory or the keys cannot be written.
    pub fn new() -> Result<LocalDistrict> {
        let tmp = tempfile::Builder::new()
            .prefix("menjin-")
            .tempdir()
            .context("temporary directory")?;
        let base = tmp.path().to_path_buf();
        let district = DistrictDir(base.join("district"));
        create_district(&district)?;
        Ok(LocalDistrict {
            _tmp: tmp,
            base,
            district,
        })
    }

    /// Creates a node directory (not running).
    pub fn create_node(&self, community: CommunityId, name: &str) -> Result<NodeDir> {
        let dir = NodeDir(self.base.join(format!("node-{community}")));
        create_node(
            &self.district,
            &dir,
            &NodeSpec {
                community,
                community_name: name.to_string(),
                listen: "127.0.0.1:0".parse().expect("literal"),
                campaign_start: now_ms() / 1000,
                code_validity_days: 30,
                hub: None,
            },
        )?;
        Ok(dir)
    }

    /// Creates the district hub's directory (`hub/`, listening on a loopback port), not
    /// running: for a hub run as its own process (`menjin hub run --dir`).
    ///
    /// # Errors
    /// If the directory or its keys cannot be written.
    pub fn create_hub(&self, name: &str) -> Result<NodeDir> {
        let dir = NodeDir(self.base.join("hub"));
        create_hub(
            &self.district,
            &dir,
            name,
            "127.0.0.1:0".parse().expect("literal"),
        )?;
        Ok(dir)
    }

    /// Creates and starts the district hub on a loopback port.
    pub fn start_hub(&self, name: &str) -> Result<LocalHub> {
        let dir = self.create_hub(name)?;
        let hub = Hub::open(&dir)?;
        LocalHub::serve(dir, hub, "127.0.0.1:0".parse().expect("literal"))
    }

    /// Creates and starts a node linked to `hub`: enrolled at the hub through its console,
    /// with its uplink running.
    pub async fn start_linked_node(
        &self,
        community: CommunityId,
        name: &str,
        hub: &LocalHub,
    ) -> Result<LocalNode> {
        self.start_linked_node_via(community, name, hub, hub.addr)
            .await
    }

    /// As [`LocalDistrict::start_linked_node`], with the node dialling `uplink` (a relay in
    /// front of the hub, say) instead of the hub's own address.
    pub async fn start_linked_node_via(
        &self,
        community: CommunityId,
        name: &str,
        hub: &LocalHub,
        uplink: SocketAddr,
    ) -> Result<LocalNode> {
        let console = hub.console().await?;
        let node = self
            .start_enrolled_node(community, name, &console, uplink)
            .await;
        console.close().await;
        node
    }

    /// As [`LocalDistrict::start_linked_node_via`], enrolled through `hub_console` (the
    /// console of a hub anywhere: one run as its own process, say).
    ///
    /// # Errors
    /// If the node cannot be created or started, or the hub refuses its enrolment.
    pub async fn start_enrolled_node(
        &self,
        community: CommunityId,
        name: &str,
        hub_console: &NodeClient,
        uplink: SocketAddr,
    ) -> Result<LocalNode> {
        let mut node = self.start_node(community, name)?;
        let cert = std::fs::read(node.dir.cert())?;
        match hub_console.request(&HubRequest::EnrolNode { cert }).await? {
            Response::Done(_) => {}
            other => bail!("enrolling community {community} at the hub: {other:?}"),
        }
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(run_uplink(node.node.clone(), uplink, stopped));
        node.uplink = Some((stop, task));
        Ok(node)
    }

    /// Starts a node stopped with [`LocalNode::stop_for_restart`] again on the same
    /// directory and address (its gates keep that address), linked to `hub`.
    pub fn restart_linked_node(&self, stopped: StoppedNode, hub: &LocalHub) -> Result<LocalNode> {
        let mut node = serve_node(stopped.dir, stopped.addr)?;
        let (stop_uplink, uplink_stopped) = tokio::sync::watch::channel(false);
        let uplink = tokio::spawn(run_uplink(node.node.clone(), hub.addr, uplink_stopped));
        node.uplink = Some((stop_uplink, uplink));
        Ok(node)
    }

    /// Creates and starts a node on a loopback port.
    pub fn start_node(&self, community: CommunityId, name: &str) -> Result<LocalNode> {
        let dir = self.create_node(community, name)?;
        serve_node(dir, "127.0.0.1:0".parse().expect("literal"))
    }
}

/// Opens the node in `dir` and serves it on `addr` (no uplink).
fn serve_node(dir: NodeDir, addr: SocketAddr) -> Result<LocalNode> {
    let node = Node::open(&dir)?;
    let server = menjin_community::bind(node.clone(), addr)?;
    let addr = server.local_addr()?;
    let (stop, stopped) = oneshot::channel();
    let task = tokio::spawn(server.run(async move {
        let _ = stopped.await;
    }));
    Ok(LocalNode {
        dir,
        node,
        addr,
        stop: Some(stop),
        task: Some(task),
        uplink: None,
    })
}

impl LocalNode {
    /// Connects to the node with its console key, as the community workstation does.
    ///
    /// # Errors
    /// If the key files cannot be read or the connection fails.
    pub async fn console(&self) -> Result<NodeClient> {
        let key = read_signing_key(&self.dir.console_key())?;
        let root = read_public_key(&self.dir.root_pub())?;
        Ok(NodeClient::connect(self.addr, &key, root, Some(self.node.config.community)).await?)
    }

    /// Creates a gate directory named `<prefix>-<community>-<gate_id>` and enrols its key
    /// through the console.
    async fn enrol_gate_dir(
        &self,
        console: &NodeClient,
        prefix: &str,
        gate_id: &str,
    ) -> Result<GateDir> {
        let community = self.node.config.community;
        let dir = GateDir(
            self.dir
                .0
                .with_file_name(format!("{prefix}-{community}-{gate_id}")),
        );
        let public_key = create_gate(&dir, gate_id, &self.dir, self.addr)?;
        match console
            .request(&ConsoleRequest::EnrolGate {
                gate_id: gate_id.to_string(),
                public_key,
            })
            .await?
        {
            Response::Done(_) => Ok(dir),
            other => bail!("enrolling gate {gate_id}: {other:?}"),
        }
    }

    /// Creates a gate directory, enrols its key through the console, and connects it.
    pub async fn gate(&self, console: &NodeClient, gate_id: &str) -> Result<LocalGate> {
        let dir = self.enrol_gate_dir(console, "gate", gate_id).await?;
        let key = read_signing_key(&dir.key())?;
        let root = read_public_key(&self.dir.root_pub())?;
        let client =
            NodeClient::connect(self.addr, &key, root, Some(self.node.config.community)).await?;
        Ok(LocalGate {
            id: gate_id.to_string(),
            client,
        })
    }

    /// Creates a gate directory, enrols its key, and starts a gate agent on it (the real
    /// gate device: feed subscription, cache, offline decisions).
    pub async fn gate_agent(
        &self,
        console: &NodeClient,
        gate_id: &str,
    ) -> Result<(GateAgent, Notices)> {
        let dir = self.enrol_gate_dir(console, "agent", gate_id).await?;
        let key = read_signing_key(&dir.key())?;
        let root = read_public_key(&self.dir.root_pub())?;
        Ok(GateAgent::start(
            dir.read_config()?,
            key,
            root,
            &dir.cache(),
        )?)
    }

    /// Stops the node, as a power cut would for its gates, and waits until nothing holds
    /// its database any more (a gate's feed task ends when its connection closes).
    pub async fn stop_for_restart(self) -> Result<StoppedNode> {
        let (dir, addr) = (self.dir.clone(), self.addr);
        let weak = Arc::downgrade(&self.node);
        self.stop().await;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while weak.strong_count() > 0 {
            if std::time::Instant::now() > deadline {
                bail!("node {} still held 10 s after it stopped", dir.0.display());
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        Ok(StoppedNode { dir, addr })
    }

    /// Stops the uplink, then the server, and waits for both tasks to end.
    pub async fn stop(mut self) {
        if let Some((stop, task)) = self.uplink.take() {
            let _ = stop.send(true);
            let _ = task.await;
        }
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl LocalHub {
    /// Connects to the hub with its console key, as the district operator's console does.
    ///
    /// # Errors
    /// If the key files cannot be read or the connection fails.
    pub async fn console(&self) -> Result<NodeClient> {
        let key = read_signing_key(&self.dir.console_key())?;
        let root = read_public_key(&self.dir.root_pub())?;
        Ok(NodeClient::connect(self.addr, &key, root, Some(HUB_COMMUNITY)).await?)
    }

    /// Stops the server and waits for its task to end (connections closed, requests drained).
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    /// Stops the hub and opens it again from its directory on the same address, as after a
    /// process restart (its nodes dial it again).
    ///
    /// # Errors
    /// If the hub cannot be opened again within a few seconds (the old database is closed
    /// once the last task holding it has ended) or the address bound.
    pub async fn restart(self) -> Result<LocalHub> {
        let (dir, addr) = (self.dir.clone(), self.addr);
        self.stop().await;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let hub = loop {
            match Hub::open(&dir) {
                Ok(h) => break h,
                Err(_) if std::time::Instant::now() < deadline => {
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
                Err(e) => return Err(e.into()),
            }
        };
        LocalHub::serve(dir, hub, addr)
    }

    /// Binds `hub` on `addr` and serves it until [`LocalHub::stop`].
    fn serve(dir: NodeDir, hub: Arc<Hub>, addr: SocketAddr) -> Result<LocalHub> {
        let server = hub.bind(addr)?;
        let addr = server.local_addr()?;
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(server.run(async move {
            let _ = stopped.await;
        }));
        Ok(LocalHub {
            dir,
            hub,
            addr,
            stop: Some(stop),
            task: Some(task),
        })
    }
}

impl LocalGate {
    /// Asks the node to decide on `code` (temperature in tenths of °C, `plate` for a person in
    /// a vehicle); the answer comes once the event is logged.
    ///
    /// # Errors
    /// If the request fails or the node answers anything but a check (a refusal included).
    pub async fn check(
        &self,
        code: &str,
        direction: Direction,
        temperature_dc: i16,
        plate: Option<&str>,
    ) -> Result<CheckAnswer> {
        let req = GateRequest::Check(CheckRequest {
            code: code.to_string(),
            direction,
            temperature_dc,
            plate: plate.map(str::to_string),
        });
        match self.client.request(&req).await? {
            Response::Check(a) => Ok(a),
            other => bail!("gate {}: unexpected answer {other:?}", self.id),
        }
    }
}

/// A resident of the demo roster, cleared at once: region 440304, `serial` keeps ID numbers
/// apart (the 17th digit is odd for men).
///
/// # Panics
/// Never for a `birth` of 8 digits (`YYYYMMDD`).
pub fn person(
    name: &str,
    male: bool,
    birth: &str,
    serial: u32,
    building: &str,
    door: &str,
) -> Declaration {
    // Region 440304 (Futian, Shenzhen); the 17th digit is odd for men.
    let serial = serial % 500 * 2 + u32::from(male);
    let id = complete_resident_id(&format!("440304{birth}{serial:03}")).expect("17 digits");
    Declaration {
        name: name.to_string(),
        gender: if male { Gender::Male } else { Gender::Female },
        document_type: DocumentType::ResidentId,
        document_number: id,
        birth_date: None,
        nationality: "CN".into(),
        phone: format!("1380013{serial:04}"),
        person_type: PersonType::Owner,
        quarantine: Quarantine::None,
        building: building.into(),
        door: door.into(),
        tenure: Tenure::Owned,
        travel_high_risk: false,
        contact_with_case: false,
        symptoms: false,
        underlying_conditions: String::new(),
    }
}
