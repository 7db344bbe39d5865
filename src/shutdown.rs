//! Graceful shutdown: SIGTERM/SIGINT -> not ready, no new upgrades, every socket closed with 1012 so clients
//! reconnect to another node at once, then the HTTP server stops; all within `shutdown_timeout`.

use std::time::Duration;

use crate::{frames::close, server::Gateway};

/// Resolves on the first SIGTERM or SIGINT.
pub async fn signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => tracing::info!("SIGTERM: draining"),
                    _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: draining"),
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM; only SIGINT drains");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Drains the node: waits for the sockets to close (bounded by `timeout`), then stops the HTTP server.
pub async fn drain(gateway: &Gateway, server: actix_web::dev::ServerHandle, timeout: Duration) {
    let deadline = tokio::time::Instant::now() + timeout;
    gateway.start_draining();
    let closing = gateway.connections.close_all(close::RESTART, "node restarting");
    tracing::info!(connections = closing, "closing connections with 1012");
    if tokio::time::timeout_at(deadline, gateway.connections.wait_empty()).await.is_err() {
        tracing::warn!(left = gateway.connections.len(), "drain timeout; stopping anyway");
    }
    if tokio::time::timeout_at(deadline, server.stop(true)).await.is_err() {
        server.stop(false).await;
    }
    // Bounded: a gateway that never reached NATS must still exit.
    match tokio::time::timeout(Duration::from_secs(1), gateway.nats.flush()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::debug!(error = %e, "NATS flush at shutdown failed"),
        Err(_) => tracing::debug!("NATS flush at shutdown timed out"),
    }
    tracing::info!("drained");
}
