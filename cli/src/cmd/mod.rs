//! One module per command group of `menjin` (mini-redis `src/cmd/`): each holds its clap
//! arguments and runs them, printing through `output`.

pub mod bench;
pub mod declare;
pub mod demo;
pub mod district;
pub mod gate;
pub mod household;
pub mod hub;
pub mod log;
pub mod node;
pub mod pass;
pub mod roster;
pub mod show;
pub mod staff;
pub mod visitor;

/// Resolves at Ctrl-C or SIGTERM: how `hub run` and `node run` are stopped.
pub async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot watch SIGTERM; stop with Ctrl-C");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down");
}
