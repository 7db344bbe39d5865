//! Start-up: builds the node's shared state once ([`Gateway`], see [`crate::node`]: NATS client, hub, auth,
//! metrics), binds the listeners (port 0 allowed) with their routes, and runs actix-web until a shutdown future
//! resolves, then has the node drain.
//!
//! The NATS client is created here, outside `HttpServer::new`, because actix runs the app factory once per
//! worker; every worker gets the same `web::Data<Gateway>`.

use std::{
    future::Future,
    net::{SocketAddr, TcpListener},
    sync::Arc,
};

use actix_http::HttpService;
use actix_service::map_config;
use actix_web::{
    dev::{fn_service, AppConfig, Payload, ServiceRequest},
    error::PayloadError,
    web, App, HttpMessage, HttpResponse,
};
use futures_util::StreamExt;

use crate::{
    api,
    config::{ConfigError, Settings},
    node::nats::NatsError,
    node::NodeError,
    transports::sse,
    transports::ws,
};

/// The node's shared state lives in [`crate::node`]; kept here so `server::Gateway` still names it.
pub use crate::node::Gateway;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Nats(#[from] NatsError),
    #[error("cannot listen on {bind}: {source}")]
    Bind { bind: String, source: std::io::Error },
}

impl From<NodeError> for StartError {
    fn from(e: NodeError) -> Self {
        match e {
            NodeError::Config(e) => StartError::Config(e),
            NodeError::Nats(e) => StartError::Nats(e),
        }
    }
}

/// Accept queue length: a burst of connects beyond it is dropped by the kernel and retried by clients only after
/// a 1 s SYN timeout (the kernel caps it at net.core.somaxconn). bench/README.md finding 4.
const BACKLOG: u32 = 4096;

/// Binds `addr` with a listen backlog of `backlog` (std's `TcpListener::bind` uses 128, and actix's `backlog()`
/// only applies to sockets actix binds itself, not to a listener handed to `listen()`).
fn listen(addr: SocketAddr, backlog: u32) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(backlog)?.into_std()
}

pub struct Application {
    addr: SocketAddr,
    /// The internal listener (`http.admin_bind`), when configured.
    admin_addr: Option<SocketAddr>,
    server: actix_web::dev::Server,
    gateway: Arc<Gateway>,
}

impl Application {
    /// Connects to NATS (in the background if it is down), binds `http.bind` and prepares the server.
    pub async fn build(settings: Settings) -> Result<Self, StartError> {
        let bind = settings.http_bind()?;
        let listener =
            listen(bind, BACKLOG).map_err(|source| StartError::Bind { bind: settings.http.bind.clone(), source })?;
        let addr =
            listener.local_addr().map_err(|source| StartError::Bind { bind: settings.http.bind.clone(), source })?;
        let workers = match settings.http.workers {
            0 => std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            n => n,
        };
        let shutdown_timeout = settings.shutdown_timeout;
        let admin = bind_admin(&settings)?;
        let gateway = Gateway::start(settings).await?;

        let data = web::Data::from(gateway.clone());
        let upgrade_gateway = gateway.clone();
        let internal_here = admin.is_none();
        let public_data = data.clone();
        let body_timeout = std::time::Duration::from_secs(gateway.settings.http.body_timeout);
        let mut builder = actix_server::Server::build()
            .workers(workers)
            .disable_signals()
            .shutdown_timeout(shutdown_timeout)
            .listen("telegraphy", listener, move || {
                let app = App::new()
                    .wrap_fn(move |req, srv| actix_service::Service::call(srv, body_deadline(req, body_timeout)))
                    .app_data(public_data.clone())
                    // Upgrade requests never get here (see below); a plain GET is told what it missed.
                    .route("/ws", web::get().to(not_an_upgrade))
                    .configure(sse::configure)
                    .configure(|cfg| routes(cfg, internal_here));
                let gateway = upgrade_gateway.clone();
                HttpService::build()
                    // Events are small frames pushed as they come: Nagle's algorithm would hold one back until
                    // the previous one is acknowledged (up to the client's 40 ms delayed ACK). bench/README.md
                    // finding 3.
                    .tcp_nodelay(true)
                    // A client that closes its side is gone: its SSE response ends at once (PROTOCOL.md 10.1).
                    .h1_allow_half_closed(false)
                    .local_addr(addr)
                    // `Upgrade: websocket` requests leave the HTTP dispatcher with their raw connection.
                    .upgrade(fn_service(move |(req, framed)| ws::upgrade(gateway.clone(), req, framed)))
                    .finish(map_config(app, |_| AppConfig::default()))
                    .tcp()
            })
            .map_err(|source| StartError::Bind { bind: addr.to_string(), source })?;
        let mut admin_addr = None;
        if let Some(admin) = admin {
            let bound = admin.local_addr().map_err(|source| bind_error(&gateway.settings.http.admin_bind, source))?;
            builder = builder
                .listen("telegraphy-admin", admin, move || {
                    let app = App::new()
                        .wrap_fn(move |req, srv| actix_service::Service::call(srv, body_deadline(req, body_timeout)))
                        .app_data(data.clone())
                        .configure(|cfg| routes(cfg, true));
                    HttpService::build().local_addr(bound).finish(map_config(app, |_| AppConfig::default())).tcp()
                })
                .map_err(|source| bind_error(&bound.to_string(), source))?;
            tracing::info!("admin (metrics, API) listening on http://{bound}");
            admin_addr = Some(bound);
        }
        let server = builder.run();
        tracing::info!(node = %gateway.settings.node.name, "listening on http://{addr}");
        Ok(Application { addr, admin_addr, server, gateway })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Address of the internal listener for `/metrics` and `/api/v1/*` (`http.admin_bind`), when set.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    pub fn gateway(&self) -> Arc<Gateway> {
        self.gateway.clone()
    }

    /// Serves until `shutdown` resolves, then drains: not ready, sockets closed with 1012, exit within
    /// `shutdown_timeout`.
    pub async fn run_until(self, shutdown: impl Future<Output = ()>) -> std::io::Result<()> {
        self.gateway.run_until(self.server, shutdown).await
    }
}

/// The error a request body gives when it did not arrive in full within `http.body_timeout`.
pub const BODY_TIMEOUT: &str = "request body not received within http.body_timeout";

/// Gives the request's body a deadline, `timeout` from now (every route of both listeners): a body still
/// arriving then ends with an I/O error of kind `TimedOut` ([`BODY_TIMEOUT`]), which the handler reading it
/// answers (the SSE POST with 408, an extractor with 400), so no request holds its connection longer.
fn body_deadline(mut req: ServiceRequest, timeout: std::time::Duration) -> ServiceRequest {
    let deadline = tokio::time::Instant::now() + timeout;
    let payload = req.take_payload();
    let timed = futures_util::stream::unfold(Some(payload), move |payload| async move {
        let mut payload = payload?;
        match tokio::time::timeout_at(deadline, payload.next()).await {
            Ok(Some(chunk)) => Some((chunk, Some(payload))),
            Ok(None) => None,
            Err(_) => {
                let late = std::io::Error::new(std::io::ErrorKind::TimedOut, BODY_TIMEOUT);
                Some((Err(PayloadError::Io(late)), None))
            }
        }
    });
    req.set_payload(Payload::from(Box::pin(timed) as actix_http::BoxedPayloadStream));
    req
}

/// Binds `http.admin_bind` when set.
fn bind_admin(settings: &Settings) -> Result<Option<TcpListener>, StartError> {
    let Some(addr) = settings.admin_bind()? else { return Ok(None) };
    let listener = listen(addr, 128).map_err(|source| bind_error(&settings.http.admin_bind, source))?;
    Ok(Some(listener))
}

fn bind_error(bind: &str, source: std::io::Error) -> StartError {
    StartError::Bind { bind: bind.to_string(), source }
}

/// Health endpoints on every listener; `/metrics` and `/api/v1/*` where `internal` (the admin listener when
/// `http.admin_bind` is set, else the public one). PROTOCOL.md section 5.
fn routes(cfg: &mut web::ServiceConfig, internal: bool) {
    cfg.route("/healthz", web::get().to(healthz)).route("/readyz", web::get().to(readyz));
    if internal {
        cfg.route("/metrics", web::get().to(metrics_text)).configure(api::configure);
    }
}

async fn not_an_upgrade() -> HttpResponse {
    HttpResponse::BadRequest().content_type("text/plain").body("WebSocket upgrade expected\n")
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain").body("ok\n")
}

async fn readyz(gw: web::Data<Gateway>) -> HttpResponse {
    match gw.not_ready_reason() {
        None => HttpResponse::Ok().content_type("text/plain").body("ready\n"),
        Some(reason) => HttpResponse::ServiceUnavailable().content_type("text/plain").body(format!("{reason}\n")),
    }
}

async fn metrics_text(gw: web::Data<Gateway>) -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain; version=0.0.4").body(gw.metrics.render())
}
