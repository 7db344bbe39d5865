//! The node: its shared state ([`Gateway`]: settings, NATS client, hub, auth, metrics, live connections), one
//! per process and handed to every actix worker and every connection; its readiness, the closing of revoked
//! connections, and the drain at shutdown. Started once per process by [`Gateway::start`] (the standalone
//! server's [`crate::server::Application::build`] does it, or an app that embeds the gateway).

pub mod auth;
pub mod catalog;
pub(crate) mod connections;
pub(crate) mod filter_memory;
pub(crate) mod history;
pub(crate) mod hub;
pub(crate) mod metrics;
pub mod nats;
pub mod outbox;
pub(crate) mod presence;
pub(crate) mod render;
pub(crate) mod wakes;

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use crate::{
    api::throttle::ApiFailures,
    config::{ConfigError, Settings},
    node::auth::{Auth, Revoked},
    node::catalog::NodeCatalog,
    node::connections::Connections,
    node::filter_memory::FilterMemory,
    node::history::History,
    node::hub::{Hub, HubConfig},
    node::metrics::Metrics,
    node::nats::NatsError,
    node::outbox::SharedQueue,
    node::presence::Presence,
    protocol::frames::close,
    transports::client_ip::ClientIpConfig,
    transports::streams::Streams,
};

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Nats(#[from] NatsError),
}

/// The node's shared state, one per process, handed to every actix worker.
pub struct Gateway {
    pub(crate) settings: Settings,
    pub(crate) nats: async_nats::Client,
    pub(crate) hub: Hub,
    /// Present when `history.enabled`.
    pub(crate) history: Option<Arc<History>>,
    pub(crate) auth: Arc<Auth>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) connections: Connections,
    /// How a WebSocket's client address is found (per-IP quota).
    pub(crate) client_ip: ClientIpConfig,
    /// Compiled filter regexes: pool, node budget, compile queue.
    pub(crate) filter_memory: FilterMemory,
    /// The open SSE streams (stream id -> the connection's inbound channel).
    pub(crate) sse: Streams,
    /// Who is present on which channel (section 11).
    pub(crate) presence: Arc<Presence>,
    /// Which events exist (section 12): one KV watch per node, unless `catalog.mode` is `off`.
    pub(crate) catalog: Arc<NodeCatalog>,
    /// Bytes queued for every connection of the node (`limits.outbound_queue_bytes_per_node`).
    pub(crate) outbound: Arc<SharedQueue>,
    /// Wrong `/api/v1` keys per client address (throttled past a bound).
    pub(crate) api_failures: ApiFailures,
    /// Set once by [`Gateway::drain`] (built false by the server).
    pub(crate) draining: AtomicBool,
}
/// What an embedding application, a test or a tool reads of the node. The parts marked hidden hand out the
/// node's inner parts for the test suites: not a stable interface.
impl Gateway {
    /// The settings the node was started with.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The node's NATS client (reconnecting forever).
    pub fn nats(&self) -> &async_nats::Client {
        &self.nats
    }

    /// Token minting and checks, resume tokens, revocations ([`auth::Auth`]).
    pub fn auth(&self) -> &Auth {
        &self.auth
    }

    /// The node's Prometheus metrics in the text exposition format (what `/metrics` serves).
    pub fn render_metrics(&self) -> String {
        self.metrics.render()
    }

    /// Live connections of the node, every transport.
    pub fn connection_count(&self) -> usize {
        self.connections.len()
    }

    /// Open Server-Sent Events streams of the node.
    pub fn sse_stream_count(&self) -> usize {
        self.sse.len()
    }

    /// Bytes queued for every connection of the node (`limits.outbound_queue_bytes_per_node`).
    pub fn outbound_bytes(&self) -> usize {
        self.outbound.used()
    }

    /// NATS subscriptions the node holds for its connections (one per distinct pattern).
    pub async fn node_subscriptions(&self) -> usize {
        self.hub.node_subscriptions().await
    }

    #[doc(hidden)]
    pub fn history(&self) -> Option<&Arc<History>> {
        self.history.as_ref()
    }

    #[doc(hidden)]
    pub fn presence(&self) -> &Presence {
        &self.presence
    }

    #[doc(hidden)]
    pub fn filter_memory(&self) -> &FilterMemory {
        &self.filter_memory
    }

    #[doc(hidden)]
    pub fn connections(&self) -> &Connections {
        &self.connections
    }
}

impl Gateway {
    /// Starts a node: connects to NATS (in the background if it is down), opens the token and revocation
    /// buckets, the history stream (when enabled) and the hub, and starts watching revocations. Serving it is
    /// the caller's: the standalone server ([`crate::server::Application`]) or an actix-web app that embeds it.
    pub async fn start(settings: Settings) -> Result<Arc<Gateway>, NodeError> {
        let metrics = Arc::new(Metrics::new());
        let (reconnects, reconnects_rx) = tokio::sync::watch::channel(0u64);
        let client = nats::connect(&settings, metrics.clone(), Arc::new(reconnects)).await?;
        let auth = Arc::new(Auth::new(&settings, client.clone())?);
        let history = settings.history.enabled.then(|| Arc::new(History::new(client.clone(), &settings)));
        if let Some(history) = &history {
            tokio::spawn(history.clone().maintain(Duration::from_secs(5)));
        }
        let subscribe_prefix = match &history {
            Some(_) => settings.history.live_prefix(&settings.nats.subject_prefix),
            None => settings.nats.subject_prefix.clone(),
        };
        let hub = Hub::new(
            client.clone(),
            HubConfig {
                subscribe_prefix,
                max_event_bytes: settings.limits.max_event_bytes,
                history: history.clone(),
                max_pending: settings.limits.outbound_queue.max(settings.history.max_replay) * 4,
                reconnects: reconnects_rx,
                position_interval: (settings.history.position_interval > 0)
                    .then(|| Duration::from_secs(settings.history.position_interval)),
                sync_subject: format!("{}_sync", settings.nats.subject_prefix),
            },
            metrics.clone(),
            tokio::runtime::Handle::current(),
        );
        let client_ip = ClientIpConfig::new(&settings.http.trusted_proxies, &settings.http.client_ip_header)
            .map_err(|problem| ConfigError::Invalid { key: "http.trusted_proxies", problem })?;
        let filter_memory = FilterMemory::new(
            settings.limits.filter_memory_per_node,
            settings.limits.filter_memory_per_user,
            metrics.clone(),
        );
        let outbound = SharedQueue::new(settings.limits.outbound_queue_bytes_per_node);
        let presence = Presence::start(client.clone(), &settings.presence, metrics.clone());
        let catalog = NodeCatalog::start(client.clone(), &settings.catalog, &metrics);
        let gateway = Arc::new(Gateway {
            settings,
            nats: client,
            hub,
            history,
            auth,
            metrics,
            connections: Connections::default(),
            client_ip,
            filter_memory,
            sse: Streams::default(),
            presence,
            catalog,
            outbound,
            api_failures: ApiFailures::default(),
            draining: AtomicBool::new(false),
        });
        gateway.watch_revocations();
        gateway.trim_outbound();
        Ok(gateway)
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// Marks the node not ready and refuses new upgrades from now on.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    /// Ready: not draining, NATS connected, the stored revocations loaded (token connects wait for them), and
    /// (with history) the stream reached at least once.
    pub fn is_ready(&self) -> bool {
        self.not_ready_reason().is_none()
    }

    /// Why the node is not ready, checked in this order; None when it is.
    pub fn not_ready_reason(&self) -> Option<&'static str> {
        if self.is_draining() {
            Some("draining")
        } else if !nats::is_connected(&self.nats) {
            Some("NATS not connected")
        } else if !self.auth.revocations_loaded() {
            Some("revocations not loaded")
        } else if self.history.as_ref().is_some_and(|h| h.epoch().is_none()) {
            Some("history stream not available")
        } else {
            None
        }
    }

    /// For as long as the node lives: whenever its queued bytes went over `limits.outbound_queue_bytes_per_node`
    /// through a small queue (see [`crate::node::outbox`]), closes the connections with the largest queues (4008,
    /// counted as slow) until the excess is released.
    pub(crate) fn trim_outbound(self: &Arc<Self>) {
        let weak = Arc::downgrade(self);
        let outbound = self.outbound.clone();
        tokio::spawn(async move {
            loop {
                outbound.over().await;
                let Some(gw) = weak.upgrade() else { return };
                let excess = outbound.used().saturating_sub(outbound.max());
                if excess > 0 {
                    let closed = gw.connections.close_largest_queues(excess);
                    gw.metrics.slow_disconnects.increment(closed as u64);
                }
            }
        });
    }

    /// Watches the revocations bucket for as long as the node lives, closing revoked connections with 4003.
    pub(crate) fn watch_revocations(self: &Arc<Self>) {
        let weak = Arc::downgrade(self);
        tokio::spawn(self.auth.clone().watch_revocations(move |revoked| {
            if let Some(gateway) = weak.upgrade() {
                gateway.on_revoked(revoked);
            }
        }));
    }

    fn on_revoked(&self, revoked: Revoked) {
        let closed = match &revoked {
            Revoked::User(user) => {
                self.connections.close_where(|sub, _| sub == Some(user.as_str()), close::FORBIDDEN, "revoked")
            }
            Revoked::Session(sid) => {
                self.connections.close_where(|_, s| s == Some(sid.as_str()), close::FORBIDDEN, "revoked")
            }
        };
        if closed > 0 {
            self.metrics.revoked_disconnects.increment(closed as u64);
            tracing::info!(closed, "closed revoked connections");
        }
    }

    /// Runs `server` (an actix-web server that serves this node's connections: the standalone one, or an app's
    /// `HttpServer` with [`crate::transports::actix::ws`] on a route) until `shutdown` resolves, then drains (see
    /// [`Gateway::drain`]; `shutdown_timeout` bounds it) and waits for the server to stop, within the same bound.
    /// The server should be built with `disable_signals()`: the signals are `shutdown`'s (e.g.
    /// [`crate::shutdown::signal`]).
    pub async fn run_until(
        &self,
        server: actix_web::dev::Server,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> std::io::Result<()> {
        let handle = server.handle();
        let mut server = tokio::spawn(server);
        tokio::select! {
            result = &mut server => return result.map_err(std::io::Error::other)?,
            _ = shutdown => {}
        }
        let timeout = Duration::from_secs(self.settings.shutdown_timeout);
        self.drain(handle, timeout).await;
        match tokio::time::timeout(timeout, server).await {
            Ok(result) => result.map_err(std::io::Error::other)?,
            Err(_) => Ok(()),
        }
    }

    /// Drains the node: not ready, every socket closed with 1012 so clients reconnect to another node at once,
    /// waits for them to close (bounded by `timeout`), then stops the HTTP server.
    pub async fn drain(&self, server: actix_web::dev::ServerHandle, timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        self.start_draining();
        let closing = self.connections.close_all(close::RESTART, "node restarting");
        tracing::info!(connections = closing, "closing connections with 1012");
        if tokio::time::timeout_at(deadline, self.connections.wait_empty()).await.is_err() {
            tracing::warn!(left = self.connections.len(), "drain timeout; stopping anyway");
        }
        if tokio::time::timeout_at(deadline, server.stop(true)).await.is_err() {
            server.stop(false).await;
        }
        // Bounded: a gateway that never reached NATS must still exit.
        match tokio::time::timeout(Duration::from_secs(1), self.nats.flush()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::debug!(error = %e, "NATS flush at shutdown failed"),
            Err(_) => tracing::debug!("NATS flush at shutdown timed out"),
        }
        tracing::info!("drained");
    }
}
