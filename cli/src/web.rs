//! `menjin node run` with `[web]` in node.toml: the resident pages beside the node, started
//! once the node is open, stopped and drained with it: over HTTPS with `tls_cert` and
//! `tls_key`, plain HTTP without. The certificate and key are loaded and checked to belong
//! together before the node opens (a refusal is `node.toml:LINE:COLUMN: ...` and nothing is
//! written). The bound address goes to `web.addr` (port 0 picks a free one).

use std::sync::Arc;

use menjin_community::StartExtra;
use menjin_store::files::{FileError, NodeDir, write_public};
use menjin_web::tls::ServerConfig;

/// The TLS configuration of `[web]`, if it has one.
///
/// # Errors
/// `node.toml` refused, or its certificate or key (pointing at `tls_cert` or `tls_key`).
fn tls(dir: &NodeDir) -> Result<Option<Arc<ServerConfig>>, FileError> {
    let Some(web) = dir.read_config()?.web else {
        return Ok(None);
    };
    let (Some(cert), Some(key)) = (&web.tls_cert, &web.tls_key) else {
        return Ok(None);
    };
    menjin_web::tls::load(&dir.resolve(cert), &dir.resolve(key))
        .map(Some)
        .map_err(|e| dir.refuse_config(e.key(), &e.to_string()))
}

/// What `run_node_with` calls once the node is open.
///
/// # Errors
/// As [`tls`]: checked now, before the node opens.
pub fn start(dir: NodeDir) -> Result<StartExtra<'static>, FileError> {
    let tls = tls(&dir)?;
    Ok(Box::new(move |node, mut stop| {
        let Some(cfg) = node.config.web.clone() else {
            let _ = std::fs::remove_file(dir.web_addr());
            return Ok(None);
        };
        let server = menjin_web::WebServer::bind(node, cfg.listen, tls)
            .map_err(|e| format!("web pages: cannot listen on {}: {e}", cfg.listen))?;
        let bound = server.local_addr().map_err(|e| format!("web pages: {e}"))?;
        write_public(&dir.web_addr(), format!("{bound}\n").as_bytes())
            .map_err(|e| format!("web pages: {e}"))?;
        tracing::info!(url = %format!("{}://{bound}/", server.scheme()), "resident pages");
        let web_addr = dir.web_addr();
        Ok(Some(Box::pin(async move {
            server
                .serve(async move {
                    let _ = stop.wait_for(|stopped| *stopped).await;
                })
                .await;
            let _ = std::fs::remove_file(web_addr);
        })))
    }))
}
