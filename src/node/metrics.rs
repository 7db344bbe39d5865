//! Prometheus metrics of one gateway node, served at `GET /metrics`.
//!
//! Each [`Metrics`] owns its own Prometheus recorder (no process-global state, so several gateways can run in
//! one test process) and registers every handle once: the hot path only does atomic adds on stored handles.

use metrics::{Counter, Gauge, Histogram, Key, Label, Metadata, Recorder};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder};

pub struct Metrics {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    /// Open WebSocket connections.
    pub connections: Gauge,
    /// WebSocket upgrades accepted since start.
    pub connections_total: Counter,
    /// Upgrades refused (full, draining, origin).
    pub connections_refused: Counter,
    /// Client subscriptions (one per connection and pattern).
    pub subscriptions: Gauge,
    /// Core NATS subscriptions this node holds (one per distinct pattern).
    pub nats_subscriptions: Gauge,
    /// 1 while the NATS connection is up.
    pub nats_connected: Gauge,
    /// async-nats reported a full subscription channel (messages were lost).
    pub nats_slow_consumers: Counter,
    /// NATS (re)connections, the first one included.
    pub nats_connects: Counter,
    /// Stored events a node subscription delivered after a reconnect to fill the gap core NATS left.
    pub healed_events: Counter,
    /// NATS messages received on node subscriptions.
    pub events_in: Counter,
    pub events_dropped_not_json: Counter,
    pub events_dropped_too_big: Counter,
    pub events_dropped_bad_name: Counter,
    /// Event frames queued to connections.
    pub frames_out: Counter,
    /// `position` frames queued (quiet subscriptions' resume positions moved forward).
    pub positions_out: Counter,
    /// Connections closed with 4008 because their queue was full.
    pub slow_disconnects: Counter,
    pub bad_frames: Counter,
    pub connects_ok: Counter,
    pub connects_failed: Counter,
    pub revoked_disconnects: Counter,
    pub published_http: Counter,
    /// Upgrades and connects refused by a connection quota, by quota (`ip`, `session`, `anonymous`; a full node
    /// is `node`, also counted in `connections_refused`).
    pub over_quota_node: Counter,
    pub over_quota_ip: Counter,
    pub over_quota_session: Counter,
    pub over_quota_anonymous: Counter,
    /// Upgrades refused by the pending budgets (`pending`, `pending_ip`) and connects by the anonymous
    /// per-address quota (`anonymous_ip`).
    pub over_quota_pending: Counter,
    pub over_quota_pending_ip: Counter,
    pub over_quota_anonymous_ip: Counter,
    /// Connects refused by `limits.max_connections_per_user` (`quota="user"`).
    pub over_quota_user: Counter,
    /// Live connections closed because their session reached `auth.max_session_age`.
    pub sessions_expired: Counter,
    /// Connections closed with 4029 for sending frames faster than `limits.requests_per_second`.
    pub requests_rate_limited: Counter,
    /// Client recoveries answered `recovered: false` by a bound of this node, by reason (`busy`: no
    /// `history.max_concurrent_recoveries` slot in time; `events`: over `max_replay`; `bytes`: over
    /// `max_replay_bytes`).
    pub recoveries_refused_busy: Counter,
    pub recoveries_refused_events: Counter,
    pub recoveries_refused_bytes: Counter,
    /// `reason="user"`: the user already had `history.max_recoveries_per_user` recoveries under way.
    pub recoveries_refused_user: Counter,
    /// Estimated bytes of compiled filter regexes live on the node (see `filter_memory`).
    pub filter_memory: Gauge,
    /// `subscribe` frames refused because a filter memory budget (node or connection) was used up.
    pub filter_memory_refused: Counter,
    /// Presence channels this node watches (one KV watch each).
    pub presence_channels: Gauge,
    /// Presence entries re-put by this node's refresher (each a KV write).
    pub presence_refreshes: Counter,
    /// Presence entries this node keeps refreshed (distinct channel and session).
    pub presence_entries: Gauge,
    /// Duration of this node's last presence refresh round (all its entries re-put), seconds.
    pub presence_refresh_seconds: Gauge,
    /// Presence channels with join/leave paused (over `presence.max_join_leave_members`, or over their churn
    /// budget), as this node sees them.
    pub presence_paused_channels: Gauge,
    /// Presence joins refused and leaves not deleted (left to expire) because `presence.max_writes_in_flight`
    /// writes were already under way.
    pub presence_busy: Counter,
    /// Presence subscribes refused by a per-user budget, by reason (`channels`: `presence.max_per_user`;
    /// `churn`: `presence.user_churn_per_second`).
    pub presence_refused_user_channels: Counter,
    pub presence_refused_user_churn: Counter,
    /// `/api/v1` requests answered 429 because their client address sent too many wrong API keys.
    pub api_key_throttled: Counter,
    /// Client publish and RPC (proto/PROTOCOL.md sections 13.1 and 14).
    pub actions: ActionMetrics,
}

/// `telegraphy_client_publishes_total{result}`, `telegraphy_rpc_requests_total{result}`,
/// `telegraphy_rpc_duration_seconds` and `telegraphy_lifecycle_events_total{kind,result}`.
pub struct ActionMetrics {
    pub publish_ok: Counter,
    pub publish_forbidden: Counter,
    pub publish_too_large: Counter,
    pub publish_rate_limited: Counter,
    pub publish_failed: Counter,
    pub rpc_ok: Counter,
    pub rpc_error: Counter,
    pub rpc_forbidden: Counter,
    pub rpc_unavailable: Counter,
    pub rpc_timeout: Counter,
    pub rpc_too_large: Counter,
    pub rpc_rate_limited: Counter,
    pub rpc_in_flight: Counter,
    pub rpc_bad_reply: Counter,
    /// From the request to its answer (any answer), seconds.
    pub rpc_duration: Histogram,
    /// Lifecycle messages by kind (in `LIFECYCLE_KINDS` order): handed to NATS / dropped (NATS down).
    pub lifecycle_sent: [Counter; 4],
    pub lifecycle_dropped: [Counter; 4],
}

/// Buckets of `telegraphy_rpc_duration_seconds` (up to the longest `rpc.timeout`).
const RPC_DURATION_BUCKETS: &[f64] =
    &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0];

impl ActionMetrics {
    fn new(recorder: &PrometheusRecorder, meta: &Metadata<'static>) -> Self {
        let cl = |name: &'static str, v: &'static str| {
            let counter = recorder.register_counter(&Key::from_parts(name, vec![Label::new("result", v)]), meta);
            counter.increment(0);
            counter
        };
        let publish = |v| cl("telegraphy_client_publishes_total", v);
        let rpc = |v| cl("telegraphy_rpc_requests_total", v);
        let lifecycle = |result: &'static str| {
            std::array::from_fn(|i| {
                let kind = crate::protocol::constants::actions::LIFECYCLE_KINDS[i];
                let labels = vec![Label::new("kind", kind), Label::new("result", result)];
                let counter =
                    recorder.register_counter(&Key::from_parts("telegraphy_lifecycle_events_total", labels), meta);
                counter.increment(0);
                counter
            })
        };
        ActionMetrics {
            publish_ok: publish("ok"),
            publish_forbidden: publish("forbidden"),
            publish_too_large: publish("too_large"),
            publish_rate_limited: publish("rate_limited"),
            publish_failed: publish("failed"),
            rpc_ok: rpc("ok"),
            rpc_error: rpc("error"),
            rpc_forbidden: rpc("forbidden"),
            rpc_unavailable: rpc("unavailable"),
            rpc_timeout: rpc("timeout"),
            rpc_too_large: rpc("too_large"),
            rpc_rate_limited: rpc("rate_limited"),
            rpc_in_flight: rpc("in_flight"),
            rpc_bad_reply: rpc("bad_reply"),
            rpc_duration: recorder.register_histogram(&Key::from_static_name("telegraphy_rpc_duration_seconds"), meta),
            lifecycle_sent: lifecycle("ok"),
            lifecycle_dropped: lifecycle("dropped"),
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Full("telegraphy_rpc_duration_seconds".into()), RPC_DURATION_BUCKETS)
            .expect("non-empty buckets")
            .build_recorder();
        let handle = recorder.handle();
        let meta = Metadata::new(module_path!(), metrics::Level::INFO, None);
        let c = |name: &'static str| recorder.register_counter(&Key::from_static_name(name), &meta);
        let cl = |name: &'static str, k: &'static str, v: &'static str| {
            recorder.register_counter(&Key::from_parts(name, vec![Label::new(k, v)]), &meta)
        };
        let g = |name: &'static str| recorder.register_gauge(&Key::from_static_name(name), &meta);
        let m = Metrics {
            connections: g("telegraphy_connections"),
            connections_total: c("telegraphy_connections_total"),
            connections_refused: c("telegraphy_connections_refused_total"),
            subscriptions: g("telegraphy_subscriptions"),
            nats_subscriptions: g("telegraphy_nats_subscriptions"),
            nats_connected: g("telegraphy_nats_connected"),
            nats_slow_consumers: c("telegraphy_nats_slow_consumers_total"),
            nats_connects: c("telegraphy_nats_connects_total"),
            healed_events: c("telegraphy_healed_events_total"),
            events_in: c("telegraphy_events_in_total"),
            events_dropped_not_json: cl("telegraphy_events_dropped_total", "reason", "not_json"),
            events_dropped_too_big: cl("telegraphy_events_dropped_total", "reason", "too_big"),
            events_dropped_bad_name: cl("telegraphy_events_dropped_total", "reason", "bad_name"),
            frames_out: c("telegraphy_frames_out_total"),
            positions_out: c("telegraphy_position_frames_total"),
            slow_disconnects: c("telegraphy_slow_disconnects_total"),
            bad_frames: c("telegraphy_bad_frames_total"),
            connects_ok: cl("telegraphy_connects_total", "result", "ok"),
            connects_failed: cl("telegraphy_connects_total", "result", "failed"),
            revoked_disconnects: c("telegraphy_revoked_disconnects_total"),
            published_http: c("telegraphy_http_published_total"),
            over_quota_node: cl("telegraphy_connections_over_quota_total", "quota", "node"),
            over_quota_ip: cl("telegraphy_connections_over_quota_total", "quota", "ip"),
            over_quota_session: cl("telegraphy_connections_over_quota_total", "quota", "session"),
            over_quota_anonymous: cl("telegraphy_connections_over_quota_total", "quota", "anonymous"),
            over_quota_pending: cl("telegraphy_connections_over_quota_total", "quota", "pending"),
            over_quota_pending_ip: cl("telegraphy_connections_over_quota_total", "quota", "pending_ip"),
            over_quota_anonymous_ip: cl("telegraphy_connections_over_quota_total", "quota", "anonymous_ip"),
            over_quota_user: cl("telegraphy_connections_over_quota_total", "quota", "user"),
            sessions_expired: c("telegraphy_sessions_expired_total"),
            requests_rate_limited: c("telegraphy_requests_rate_limited_total"),
            recoveries_refused_busy: cl("telegraphy_recoveries_refused_total", "reason", "busy"),
            recoveries_refused_events: cl("telegraphy_recoveries_refused_total", "reason", "events"),
            recoveries_refused_bytes: cl("telegraphy_recoveries_refused_total", "reason", "bytes"),
            recoveries_refused_user: cl("telegraphy_recoveries_refused_total", "reason", "user"),
            filter_memory: g("telegraphy_filter_memory_bytes"),
            filter_memory_refused: c("telegraphy_filter_memory_refused_total"),
            presence_channels: g("telegraphy_presence_channels"),
            presence_refreshes: c("telegraphy_presence_refreshes_total"),
            presence_entries: g("telegraphy_presence_entries"),
            presence_refresh_seconds: g("telegraphy_presence_refresh_seconds"),
            presence_paused_channels: g("telegraphy_presence_paused_channels"),
            presence_busy: c("telegraphy_presence_busy_total"),
            presence_refused_user_channels: cl("telegraphy_presence_refused_total", "reason", "channels"),
            presence_refused_user_churn: cl("telegraphy_presence_refused_total", "reason", "churn"),
            api_key_throttled: c("telegraphy_api_key_throttled_total"),
            actions: ActionMetrics::new(&recorder, &meta),
            recorder,
            handle,
        };
        // Gauges and counters appear in the output from the start, at zero.
        m.connections.set(0.0);
        m.subscriptions.set(0.0);
        m.nats_subscriptions.set(0.0);
        m.nats_connected.set(0.0);
        m.filter_memory.set(0.0);
        m.presence_channels.set(0.0);
        m.presence_entries.set(0.0);
        m.presence_refresh_seconds.set(0.0);
        m.presence_paused_channels.set(0.0);
        for counter in [
            &m.connections_total,
            &m.connections_refused,
            &m.nats_slow_consumers,
            &m.nats_connects,
            &m.healed_events,
            &m.events_in,
            &m.events_dropped_not_json,
            &m.events_dropped_too_big,
            &m.events_dropped_bad_name,
            &m.frames_out,
            &m.positions_out,
            &m.slow_disconnects,
            &m.bad_frames,
            &m.connects_ok,
            &m.connects_failed,
            &m.revoked_disconnects,
            &m.published_http,
            &m.over_quota_node,
            &m.over_quota_ip,
            &m.over_quota_session,
            &m.over_quota_anonymous,
            &m.over_quota_pending,
            &m.over_quota_pending_ip,
            &m.over_quota_anonymous_ip,
            &m.over_quota_user,
            &m.sessions_expired,
            &m.requests_rate_limited,
            &m.recoveries_refused_busy,
            &m.recoveries_refused_events,
            &m.recoveries_refused_bytes,
            &m.recoveries_refused_user,
            &m.filter_memory_refused,
            &m.presence_refreshes,
            &m.presence_busy,
            &m.presence_refused_user_channels,
            &m.presence_refused_user_churn,
            &m.api_key_throttled,
        ] {
            counter.increment(0);
        }
        m
    }

    /// A counter registered by a module that keeps its own handles (e.g. the catalog).
    pub(crate) fn counter(&self, name: &'static str) -> Counter {
        self.recorder.register_counter(&Key::from_static_name(name), &self.meta())
    }

    /// A counter with one label, registered by a module that keeps its own handles.
    pub(crate) fn labelled_counter(&self, name: &'static str, label: &'static str, value: &'static str) -> Counter {
        self.recorder.register_counter(&Key::from_parts(name, vec![Label::new(label, value)]), &self.meta())
    }

    /// A gauge registered by a module that keeps its own handles.
    pub(crate) fn gauge(&self, name: &'static str) -> Gauge {
        self.recorder.register_gauge(&Key::from_static_name(name), &self.meta())
    }

    fn meta(&self) -> Metadata<'static> {
        Metadata::new(module_path!(), metrics::Level::INFO, None)
    }

    /// Prometheus text exposition format.
    pub fn render(&self) -> String {
        let _ = &self.recorder;
        self.handle.render()
    }
}
