//! Running a node: open it, bind its endpoint, advertise it, link it to its hub, serve until
//! shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use menjin_store::files::{NodeDir, write_public};

use crate::service::{Node, NodeError};

/// A service started beside the node once it is open (the web pages: a crate the node
/// cannot depend on). It runs until the receiver it was given turns `true`, then drains.
pub type ExtraService = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// What starts the extra services: given the open node and the stop signal, it binds what it
/// needs (an error, in words, stops the start) and returns the service to run, if any.
pub type StartExtra<'a> = Box<
    dyn FnOnce(
            Arc<Node>,
            tokio::sync::watch::Receiver<bool>,
        ) -> Result<Option<ExtraService>, Box<dyn std::error::Error + Send + Sync>>
        + Send
        + 'a,
>;

/// Opens the node, binds its endpoint, writes `node.addr`, and serves until `shutdown`.
///
/// # Errors
/// [`NodeError`] if the node cannot be opened or bound.
pub async fn run_node(
    dir: &NodeDir,
    listen: Option<SocketAddr>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), NodeError> {
    run_node_with(dir, listen, shutdown, None).await
}

/// [`run_node`], with extra services started once the node is open and bound (before
/// `node.addr` is written: a node that says it serves serves everything), stopped and
/// drained after the node's endpoint.
///
/// # Errors
/// [`NodeError`] if the node cannot be opened or bound, or an extra service cannot start.
pub async fn run_node_with(
    dir: &NodeDir,
    listen: Option<SocketAddr>,
    shutdown: impl Future<Output = ()>,
    extra: Option<StartExtra<'_>>,
) -> Result<(), NodeError> {
    // Serves gates while the replica loads (the uplink waits for it).
    let node = Node::open_loading(dir)?;
    let addr = listen.unwrap_or(node.config.listen);
    let listen = |source| NodeError::Listen { addr, source };
    let server = crate::serve::bind(node.clone(), addr).map_err(listen)?;
    let bound = server.local_addr().map_err(listen)?;
    let (stop_extra, extra_stopped) = tokio::sync::watch::channel(false);
    let extra = match extra {
        Some(start) => start(node.clone(), extra_stopped)
            .map_err(NodeError::Extra)?
            .map(tokio::spawn),
        None => None,
    };
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
    let _ = stop_extra.send(true);
    if let Some(uplink) = uplink {
        let _ = uplink.await;
    }
    if let Some(extra) = extra {
        let _ = extra.await;
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
fn advertise(node: &Node, bound: SocketAddr) -> Option<menjin_discovery::Advertiser> {
    let cfg = &node.config.mdns;
    if !cfg.enabled {
        tracing::info!("mDNS advertisement off ([mdns] enabled = false in node.toml)");
        return None;
    }
    let key = node.cert().node_key;
    match menjin_discovery::Advertiser::start(cfg, node.config.community, &key, bound) {
        Ok(a) => {
            tracing::info!(
                instance = %a.instance,
                service = menjin_discovery::SERVICE_TYPE,
                configured = ?cfg.interfaces,
                interfaces = ?menjin_discovery::selected_interfaces(&cfg.interfaces),
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
