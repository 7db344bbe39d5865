//! An actix-web application that embeds a Telegraphy gateway node: its own routes (`GET /`, `GET /readyz`, `GET /metrics`) and
//! protocol v1 WebSockets at `/ws` ([`telegraphy::transports::actix::ws`]), all on one port.
//!
//! Settings as for `telegraphy-gateway`: defaults < the TOML file given as first argument < `TELEGRAPHY_*`
//! variables (`TELEGRAPHY_NATS__URL`, `TELEGRAPHY_AUTH__SECRET`, `TELEGRAPHY_HTTP__BIND`, ...). SIGTERM or
//! SIGINT drains: every WebSocket is closed with 1012 (clients reconnect elsewhere), then the server stops.
//!
//! ```sh
//! TELEGRAPHY_AUTH__SECRET=<32+ random characters> cargo run --example embed-actix [config.toml]
//! ```

use std::path::PathBuf;

use actix_web::{web, App, HttpResponse, HttpServer};
use anyhow::Context;
use telegraphy::{config::Settings, node::Gateway, shutdown, telemetry};

#[tokio::main] // NATS wants tokio's multi-thread runtime; actix-web runs inside it
async fn main() -> anyhow::Result<()> {
    let config = std::env::args_os().nth(1).map(PathBuf::from);
    let settings = Settings::load(config.as_deref())?;
    telemetry::init(&settings.log);
    settings.secrets()?;
    let bind = settings.http_bind()?;
    let heartbeat = settings.heartbeat_interval();

    // Once per process: actix-web calls the closure below once per worker, and every worker shares this node.
    let node = Gateway::start(settings).await?;
    let data = web::Data::from(node.clone());
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .route("/", web::get().to(|| async { "Hello from an actix-web app that embeds Telegraphy\n" }))
            .route("/readyz", web::get().to(readyz))
            // The node's Prometheus metrics; a real app would serve them on an internal listener only.
            .route("/metrics", web::get().to(|node: web::Data<Gateway>| async move { node.render_metrics() }))
            .route("/ws", web::get().to(telegraphy::transports::actix::ws))
    })
    .tcp_nodelay(true) // events are small frames sent as they come: no Nagle delay
    // A client that stopped reading holds its socket and unsent frames; cut it once nothing moved for this long.
    .on_connect(telegraphy::transports::actix::abort_stalled_after(heartbeat * 2))
    .disable_signals() // SIGTERM/SIGINT drain the node first (run_until below)
    .bind(bind)
    .with_context(|| format!("cannot listen on {bind}"))?;
    tracing::info!("listening on http://{}", server.addrs()[0]);

    node.run_until(server.run(), shutdown::signal()).await.context("HTTP server failed")
}

/// The app's readiness probe (e.g. for Kubernetes): here, whether its gateway node is ready (NATS connected,
/// revocations loaded, not draining), with the standalone gateway's path, so the same probes and tools work.
async fn readyz(node: web::Data<Gateway>) -> HttpResponse {
    match node.not_ready_reason() {
        None => HttpResponse::Ok().body("ok\n"),
        Some(reason) => HttpResponse::ServiceUnavailable().body(format!("{reason}\n")),
    }
}
