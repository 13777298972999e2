//! The console's connection to a running node or hub: the console key of its directory,
//! the address it is bound to (`node.addr`, else its configured `listen`).

use std::net::SocketAddr;
use std::path::Path;

use anyhow::{Context, Result};
use menjin_net::client::NodeClient;
use menjin_proto::wire::{ConsoleRequest, HubRequest, Response};
use menjin_store::files::{NodeDir, read_public_key, read_signing_key};

/// Connects to the running node of a node directory with its console key.
pub async fn node(node_dir: &Path) -> Result<NodeClient> {
    let dir = NodeDir(node_dir.to_path_buf());
    let cfg = dir.read_config()?;
    let addr = dir.read_addr().unwrap_or(cfg.listen);
    connect(&dir, addr, cfg.community, "node").await
}

/// Connects to the running hub of a hub directory with its console key.
pub async fn hub(hub_dir: &Path) -> Result<NodeClient> {
    let dir = NodeDir(hub_dir.to_path_buf());
    let cfg = dir.read_hub_config()?;
    let addr = dir.read_addr().unwrap_or(cfg.listen);
    connect(&dir, addr, menjin_proto::cert::HUB_COMMUNITY, "hub").await
}

async fn connect(
    dir: &NodeDir,
    addr: SocketAddr,
    community: u32,
    what: &str,
) -> Result<NodeClient> {
    let key = read_signing_key(&dir.console_key())?;
    let root = read_public_key(&dir.root_pub())?;
    NodeClient::connect(addr, &key, root, Some(community))
        .await
        .with_context(|| {
            format!(
                "is the {what} running? start it with: menjin {what} run --dir {}",
                dir.0.display()
            )
        })
}

/// One request to the running node of `node_dir`.
pub async fn ask(node_dir: &Path, req: ConsoleRequest) -> Result<Response> {
    let client = node(node_dir).await?;
    let resp = client.request(&req).await?;
    client.close().await;
    Ok(resp)
}

/// One request to the running hub of `hub_dir`.
pub async fn ask_hub(hub_dir: &Path, req: HubRequest) -> Result<Response> {
    let client = hub(hub_dir).await?;
    let resp = client.request(&req).await?;
    client.close().await;
    Ok(resp)
}
