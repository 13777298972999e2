//! `menjin node run` with `[web]` in node.toml: the resident pages beside the node, started
//! once the node is open, stopped and drained with it. The bound address goes to `web.addr`
//! (port 0 picks a free one).

use menjin_community::StartExtra;
use menjin_store::files::{NodeDir, write_public};

/// What `run_node_with` calls once the node is open.
pub fn start(dir: NodeDir) -> StartExtra<'static> {
    Box::new(move |node, mut stop| {
        let Some(cfg) = node.config.web.clone() else {
            let _ = std::fs::remove_file(dir.web_addr());
            return Ok(None);
        };
        let server = menjin_web::WebServer::bind(node, cfg.listen)
            .map_err(|e| format!("web pages: cannot listen on {}: {e}", cfg.listen))?;
        let bound = server.local_addr().map_err(|e| format!("web pages: {e}"))?;
        write_public(&dir.web_addr(), format!("{bound}\n").as_bytes())
            .map_err(|e| format!("web pages: {e}"))?;
        tracing::info!(url = %format!("http://{bound}/"), "resident pages");
        let web_addr = dir.web_addr();
        Ok(Some(Box::pin(async move {
            server
                .serve(async move {
                    let _ = stop.wait_for(|stopped| *stopped).await;
                })
                .await;
            let _ = std::fs::remove_file(web_addr);
        })))
    })
}
