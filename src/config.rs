//! Configuration: built-in defaults < TOML file (`--config FILE`) < environment `TELEGRAPHY_<SECTION>__<KEY>`.
//!
//! Every key has a default except `auth.secret`. [`Settings::load`] returns a [`ConfigError`] whose
//! message names the offending key; the binary prints it as one line and exits with status 2.

use std::{net::SocketAddr, path::Path, time::Duration};

use serde::Deserialize;

use crate::{protocol::names, secret};

/// Top-level keys of the configuration (a file may hold only these; the environment may hold others that are
/// not ours, such as `TELEGRAPHY_GATEWAY_BIN`).
const TOP_LEVEL: &[&str] = &[
    "node",
    "http",
    "nats",
    "auth",
    "limits",
    "history",
    "presence",
    "catalog",
    "log",
    "heartbeat",
    "shutdown_timeout",
    "rpc",
    "client_publish",
    "lifecycle",
];

/// A misspelt section in a file (`[histroy]`) is an error, not silently ignored.
fn check_file_sections(path: &Path) -> Result<(), ConfigError> {
    let file = config::Config::builder()
        .add_source(config::File::from(path).format(config::FileFormat::Toml).required(true))
        .build()?;
    let table: std::collections::HashMap<String, config::Value> = file.try_deserialize()?;
    match table.keys().find(|k| !TOP_LEVEL.contains(&k.as_str())) {
        Some(unknown) => Err(ConfigError::Invalid {
            key: "(file)",
            problem: format!(
                "unknown section or key {unknown:?} in {} (known: {})",
                path.display(),
                TOP_LEVEL.join(", ")
            ),
        }),
        None => Ok(()),
    }
}

/// Keys whose environment value is a comma-separated list.
const LIST_KEYS: &[&str] = &[
    "http.allowed_origins",
    "auth.previous_secrets",
    "auth.anonymous_allow",
    "http.trusted_proxies",
    "lifecycle.events",
];

/// Longest token lifetime the KV bucket keeps entries for (its `max_age`); see proto/PROTOCOL.md section 4.
pub const TOKENS_BUCKET_MAX_AGE: Duration = crate::protocol::constants::buckets::tokens::MAX_AGE;
/// Revocations outlive every resume token.
pub const REVOCATIONS_BUCKET_MAX_AGE: Duration = crate::protocol::constants::buckets::revocations::MAX_AGE;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration: {0}")]
    Load(#[from] config::ConfigError),
    #[error("configuration key `{key}`: {problem}")]
    Invalid { key: &'static str, problem: String },
}

fn invalid(key: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { key, problem: problem.into() }
}

fn weak_secret(key: &'static str, weak: secret::Weakness) -> ConfigError {
    invalid(key, format!("weak secret ({weak}): {}; generate one with `openssl rand -hex 32`", weak.explain()))
}

// No deny_unknown_fields at the top level: other tools' TELEGRAPHY_* variables (e.g. TELEGRAPHY_GATEWAY_BIN)
// land there. Inside a section an unknown key is an error, so typos in a file or variable are caught.
#[derive(Clone, Debug, Deserialize)]
pub struct Settings {
    pub node: NodeSettings,
    pub http: HttpSettings,
    pub nats: NatsSettings,
    pub auth: AuthSettings,
    pub limits: Limits,
    pub history: HistorySettings,
    pub presence: PresenceSettings,
    pub catalog: CatalogSettings,
    pub log: LogSettings,
    /// RPC from clients to backend workers (proto/PROTOCOL.md section 14).
    pub rpc: RpcSettings,
    /// Events published by clients (section 13.1).
    pub client_publish: ClientPublishSettings,
    /// Lifecycle events for backends (section 15).
    pub lifecycle: LifecycleSettings,
    /// Seconds between server pings; a connection silent for two intervals is closed.
    pub heartbeat: u64,
    /// Seconds a SIGTERM/SIGINT drain may take before the process exits anyway.
    pub shutdown_timeout: u64,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSettings {
    pub name: String,
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSettings {
    /// host:port; port 0 picks a free port (the bound address is logged).
    pub bind: String,
    /// Origins allowed to open `/ws` (empty = any).
    pub allowed_origins: Vec<String>,
    /// Bearer key for `/api/v1/*`; empty = the API is off.
    pub api_key: String,
    /// actix worker threads; 0 = one per core.
    pub workers: usize,
    /// Proxies (IPs or CIDRs) whose `client_ip_header` names the client for per-IP quotas.
    pub trusted_proxies: Vec<String>,
    /// Header naming the client behind a trusted proxy (`X-Forwarded-For`, `X-Real-IP`); empty = peer address.
    pub client_ip_header: String,
    /// host:port of a separate internal listener for `/metrics` and `/api/v1/*` (then not on `bind`); empty = off.
    pub admin_bind: String,
    /// Seconds a request body (`POST /sse/<stream>`) may take to arrive in full.
    pub body_timeout: u64,
}

impl std::fmt::Debug for HttpSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpSettings")
            .field("bind", &self.bind)
            .field("allowed_origins", &self.allowed_origins)
            .field("api_key", &if self.api_key.is_empty() { "<none>" } else { "<redacted>" })
            .field("workers", &self.workers)
            .field("trusted_proxies", &self.trusted_proxies)
            .field("client_ip_header", &self.client_ip_header)
            .field("admin_bind", &self.admin_bind)
            .field("body_timeout", &self.body_timeout)
            .finish()
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatsSettings {
    pub url: String,
    pub subject_prefix: String,
    /// Messages async-nats buffers per node subscription before it reports a slow consumer.
    pub subscription_capacity: usize,
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSettings {
    /// Signs and verifies tokens; at least 32 bytes. Never logged.
    pub secret: String,
    /// Older secrets that still verify (rotation).
    pub previous_secrets: Vec<String>,
    /// Default lifetime of tokens minted by the CLI and the HTTP API, seconds.
    pub token_ttl: u64,
    pub resume_ttl: u64,
    pub connect_timeout: u64,
    pub single_use: bool,
    pub tokens_bucket: String,
    pub revocations_bucket: String,
    pub anonymous_allow: Vec<String>,
    /// Seconds a session lasts from its first authentication (resumes do not extend it).
    pub max_session_age: u64,
}

impl std::fmt::Debug for AuthSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthSettings")
            .field("secret", &"<redacted>")
            .field("previous_secrets", &format_args!("<{} redacted>", self.previous_secrets.len()))
            .field("token_ttl", &self.token_ttl)
            .field("resume_ttl", &self.resume_ttl)
            .field("connect_timeout", &self.connect_timeout)
            .field("single_use", &self.single_use)
            .field("tokens_bucket", &self.tokens_bucket)
            .field("revocations_bucket", &self.revocations_bucket)
            .field("anonymous_allow", &self.anonymous_allow)
            .field("max_session_age", &self.max_session_age)
            .finish()
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    pub max_connections: usize,
    pub max_subscriptions: usize,
    pub max_frame_bytes: usize,
    pub max_bad_frames: u32,
    /// Frames queued per connection before it is closed as too slow (4008). Default 4096: for events under
    /// ~256 B it is the bound that decides, and 1024 closed every client ~1 s behind at 1 000 events/s
    /// (bench/README.md, "Performance budget": the queue policy).
    pub outbound_queue: usize,
    pub max_event_bytes: usize,
    /// Subscriptions with a `filter`/`exclude` per connection.
    pub max_filters: usize,
    /// Conditions in one subscription's `filter` + `exclude`.
    pub max_filter_conditions: usize,
    /// `regex`/`iregex` conditions in one subscription's `filter` + `exclude`.
    pub max_regex_conditions: usize,
    /// Bytes of compiled filter regexes one connection's subscriptions may hold (estimated, see `filter_memory`).
    pub filter_memory_per_connection: usize,
    /// Bytes of compiled filter regexes on the node (each distinct pattern counted once).
    pub filter_memory_per_node: usize,
    /// Live sockets of one session on this node (a resume token opens no more).
    pub max_connections_per_session: usize,
    /// Live sockets per client address on this node (IPv6: per /64); 0 = no limit.
    pub max_connections_per_ip: usize,
    /// Live anonymous sessions on this node; 0 = no limit of their own.
    pub max_anonymous_connections: usize,
    /// Live anonymous sessions per client address on this node; 0 = no limit.
    pub max_anonymous_connections_per_ip: usize,
    /// Connections upgraded but not yet connected (no token yet) on this node; 0 = no limit of their own.
    pub max_pending_connections: usize,
    /// Connections upgraded but not yet connected per client address on this node; 0 = no limit.
    pub max_pending_connections_per_ip: usize,
    /// Client frames per second a connection may send on average (token bucket, close 4029 past it); 0 = off.
    pub requests_per_second: u32,
    /// Client frames a connection may send at once (the bucket's size); at least `max_subscriptions` + 2.
    pub request_burst: u32,
    /// Bytes queued per connection before it is closed as too slow (4008); at least `max_event_bytes`.
    pub outbound_queue_bytes: usize,
    /// Live sockets of one user (token `sub`) on this node, across its sessions (close 4029 past it).
    pub max_connections_per_user: usize,
    /// Bytes of compiled filter regexes one user's connections may hold together on this node.
    pub filter_memory_per_user: usize,
    /// Bytes queued for every connection of the node together before the one pushing more into a non-empty queue
    /// is closed as too slow (4008); at least `outbound_queue_bytes`.
    pub outbound_queue_bytes_per_node: usize,
}

/// Event history in a JetStream stream, for recovery after reconnects (proto/PROTOCOL.md section 7).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistorySettings {
    /// Off: live delivery from core NATS subjects, no `seq`/`epoch`, no `since`.
    pub enabled: bool,
    /// JetStream stream capturing `<subject_prefix>.>`, created by the gateway when missing.
    pub stream: String,
    /// Seconds events are kept (the recovery window).
    pub max_age: u64,
    pub max_msgs: i64,
    /// Stream replicas: 1, or 3 on a 3-node NATS cluster.
    pub replicas: usize,
    /// Most events replayed for one `subscribe` with `since`; more missed = `recovered: false`.
    pub max_replay: usize,
    /// Subject space the stream re-publishes stored events to (with their sequence);
    /// empty = `<subject_prefix>_live`.
    pub live_prefix: String,
    /// Seconds between `position` frames that move quiet subscriptions' resume positions forward (so that
    /// one without matching events for longer than `max_age` still recovers); 0 = off. Below `max_age`.
    pub position_interval: u64,
    /// Recoveries (`subscribe` with `since`) replaying at once on this node; more wait up to 5 s, then
    /// get `recovered: false`.
    pub max_concurrent_recoveries: usize,
    /// Most payload bytes replayed for one `subscribe` with `since`; more = `recovered: false`.
    pub max_replay_bytes: usize,
    /// Recoveries of one user (or anonymous session) under way at once on this node; more wait (within the
    /// same 5 s as for a node slot), then get `recovered: false`. At most `max_concurrent_recoveries`.
    pub max_recoveries_per_user: usize,
}

impl HistorySettings {
    pub fn live_prefix(&self, subject_prefix: &str) -> String {
        if self.live_prefix.is_empty() {
            format!("{subject_prefix}_live")
        } else {
            self.live_prefix.clone()
        }
    }
}

/// Presence: who is present on a channel, kept in a JetStream KV bucket (proto/PROTOCOL.md section 11).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PresenceSettings {
    /// Off: `subscribe` with `presence` is a bad request.
    pub enabled: bool,
    /// KV bucket of the presence entries, created by the gateway when missing (`max_age` = the TTL).
    pub bucket: String,
    /// Bucket replicas: 1, or 3 on a 3-node NATS cluster.
    pub replicas: usize,
    /// Seconds between the re-puts of this node's entries; an entry expires 3 intervals after its last one.
    pub refresh_interval: u64,
    /// Most presence subscriptions per connection.
    pub max_per_connection: usize,
    /// Most clients in one `presence` reply (more: `truncated`).
    pub max_snapshot: usize,
    /// Most channels this node's connections are present on at once.
    pub max_channels: usize,
    /// Most members a channel may have for its `join`/`leave` to be sent: above, its presence subscribers get
    /// `presence_paused` and counts only (a channel of n members would otherwise cost n^2 frames).
    pub max_join_leave_members: usize,
    /// Join/leave events per second a channel may average (its members coming and going) for them to be sent;
    /// above, with bursts of `join_leave_burst`, the channel is paused as when crowded.
    pub join_leave_per_second: u32,
    pub join_leave_burst: u32,
    /// Most presence joins and leaves writing the bucket at once on this node (more wait, then `internal`
    /// "presence busy": the client retries).
    pub max_writes_in_flight: usize,
    /// Presence subscriptions one user (or anonymous session) may hold on this node at once.
    pub max_per_user: usize,
    /// Presence subscribes per second one user (or anonymous session) may average; past it (bursts of
    /// `user_churn_burst`) its presence subscribe gets `limit_exceeded`.
    pub user_churn_per_second: u32,
    pub user_churn_burst: u32,
}

/// The event catalog (proto/PROTOCOL.md section 12): which events exist, read from a KV bucket the publishers
/// write.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogSettings {
    /// `off` (no watch; `events` lists nothing), `open` (watch and list) or `strict` (also refuse a subscription
    /// that can match no entry: `unknown_event`).
    pub mode: String,
    /// The KV bucket of the entries (the gateway never creates nor writes it; missing = empty catalog).
    pub bucket: String,
    /// Valid entries the node keeps; more are ignored (counted, logged rate-limited).
    pub max_entries: usize,
    /// The largest `events` reply frame, in bytes (past it: `truncated`).
    pub max_reply_bytes: usize,
}

impl PresenceSettings {
    /// How long an entry lives after its last refresh: 3 refresh intervals.
    pub fn ttl(&self) -> Duration {
        Duration::from_secs(
            self.refresh_interval.saturating_mul(crate::protocol::constants::presence::TTL_REFRESH_INTERVALS),
        )
    }

    /// Members at or below which a paused channel's `join`/`leave` resume: 10 % under the bound, so that a
    /// channel hovering at the bound does not flap (each resume makes its clients take snapshots).
    pub fn join_leave_resume_at(&self) -> usize {
        self.max_join_leave_members - self.max_join_leave_members / 10
    }
}

/// RPC (proto/PROTOCOL.md section 14, "Settings").
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RpcSettings {
    /// Seconds the gateway waits for a worker's reply (0.1..60), then answers `timeout`.
    pub timeout: f64,
    /// RPCs of one connection awaiting an answer at once.
    pub max_in_flight: usize,
    /// Largest `data` of an `rpc` frame, bytes as received.
    pub max_request_bytes: usize,
    /// Largest reply a worker may send (larger: `internal` "bad rpc reply").
    pub max_reply_bytes: usize,
    /// RPCs per second one connection may average (bursts of `request_burst`); 0 = RPC off on this node.
    pub requests_per_second: u32,
    pub request_burst: u32,
}

impl RpcSettings {
    pub fn timeout(&self) -> Duration {
        Duration::from_secs_f64(self.timeout)
    }
}

/// Client publish (section 13.1).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientPublishSettings {
    /// Largest `data` of a `publish` frame, bytes as received.
    pub max_bytes: usize,
    /// Publishes per second one connection may average (bursts of `request_burst`); 0 = client publish off.
    pub requests_per_second: u32,
    pub request_burst: u32,
}

/// Lifecycle events (section 15): the kinds published, none by default.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LifecycleSettings {
    /// Any of "connect", "disconnect", "subscribe", "unsubscribe".
    pub events: Vec<String>,
}

impl LifecycleSettings {
    /// Is the lifecycle event `kind` published?
    pub fn publishes(&self, kind: &str) -> bool {
        self.events.iter().any(|k| k == kind)
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    /// "text" or "json".
    pub format: String,
    /// A tracing filter such as "info" or "telegraphy=debug".
    pub level: String,
}

const DEFAULTS: &str = r#"
heartbeat = 25
shutdown_timeout = 10
[node]
name = "gw-1"
[http]
bind = "127.0.0.1:8080"
allowed_origins = []
api_key = ""
workers = 0
trusted_proxies = []
client_ip_header = ""
admin_bind = ""
body_timeout = 10
[nats]
url = "nats://127.0.0.1:4222"
subject_prefix = "telegraphy"
subscription_capacity = 65536
[auth]
secret = ""
previous_secrets = []
token_ttl = 60
resume_ttl = 900
connect_timeout = 10
single_use = true
tokens_bucket = "telegraphy_tokens"
revocations_bucket = "telegraphy_revocations"
anonymous_allow = []
max_session_age = 86400
[limits]
max_connections = 10000
max_subscriptions = 128
max_frame_bytes = 65536
max_bad_frames = 10
outbound_queue = 4096
max_event_bytes = 1048576
max_filters = 32
max_filter_conditions = 16
max_regex_conditions = 4
filter_memory_per_connection = 4194304
filter_memory_per_node = 268435456
max_connections_per_session = 4
max_connections_per_ip = 0
max_anonymous_connections = 1000
max_anonymous_connections_per_ip = 64
max_pending_connections = 1000
max_pending_connections_per_ip = 32
requests_per_second = 20
request_burst = 150
outbound_queue_bytes = 1048576
max_connections_per_user = 32
filter_memory_per_user = 16777216
outbound_queue_bytes_per_node = 536870912
[history]
enabled = true
stream = "TELEGRAPHY"
max_age = 300
max_msgs = 1000000
replicas = 1
max_replay = 1000
live_prefix = ""
position_interval = 60
max_concurrent_recoveries = 32
max_replay_bytes = 4194304
max_recoveries_per_user = 8
[presence]
enabled = true
bucket = "telegraphy_presence"
replicas = 1
refresh_interval = 10
max_per_connection = 8
max_snapshot = 100
max_channels = 1000
max_join_leave_members = 1000
join_leave_per_second = 20
join_leave_burst = 200
max_writes_in_flight = 256
max_per_user = 32
user_churn_per_second = 2
user_churn_burst = 40
[catalog]
mode = "open"
bucket = "telegraphy_catalog"
max_entries = 10000
max_reply_bytes = 262144
[log]
format = "text"
level = "info"
[rpc]
timeout = 5.0
max_in_flight = 4
max_request_bytes = 16384
max_reply_bytes = 65536
requests_per_second = 5
request_burst = 20
[client_publish]
max_bytes = 4096
requests_per_second = 10
request_burst = 20
[lifecycle]
events = []
"#;

impl Settings {
    /// Defaults, then `file` (if any), then the process environment.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        Self::load_from(file, None)
    }

    /// Like [`Settings::load`] but reads the environment from `env` when given (tests).
    pub fn load_from(
        file: Option<&Path>,
        env: Option<std::collections::HashMap<String, String>>,
    ) -> Result<Self, ConfigError> {
        let mut builder =
            config::Config::builder().add_source(config::File::from_str(DEFAULTS, config::FileFormat::Toml));
        if let Some(path) = file {
            check_file_sections(path)?;
            builder = builder.add_source(config::File::from(path).format(config::FileFormat::Toml).required(true));
        }
        let mut environment = config::Environment::with_prefix("TELEGRAPHY")
            .prefix_separator("_")
            .separator("__")
            .try_parsing(true)
            .list_separator(",");
        for key in LIST_KEYS {
            environment = environment.with_list_parse_key(key);
        }
        let raw = |name: &str| match &env {
            Some(env) => env.get(name).cloned(),
            None => std::env::var(name).ok(),
        };
        let (secret, previous) = (raw("TELEGRAPHY_AUTH__SECRET"), raw("TELEGRAPHY_AUTH__PREVIOUS_SECRETS"));
        let api_key = raw("TELEGRAPHY_HTTP__API_KEY");
        if let Some(env) = env {
            environment = environment.source(Some(env.into_iter().collect()));
        }
        let mut settings: Settings = builder.add_source(environment).build()?.try_deserialize()?;
        // `try_parsing` would read an all-digit secret as a number and deserialise another string: secrets
        // from the environment are taken verbatim.
        if let Some(secret) = secret {
            settings.auth.secret = secret;
        }
        if let Some(previous) = previous {
            settings.auth.previous_secrets = previous.split(',').map(str::to_string).collect();
        }
        if let Some(api_key) = api_key {
            settings.http.api_key = api_key;
        }
        // `TELEGRAPHY_HTTP__ALLOWED_ORIGINS=` (empty) means "none", not one empty origin.
        for list in [
            &mut settings.http.allowed_origins,
            &mut settings.auth.previous_secrets,
            &mut settings.auth.anonymous_allow,
            &mut settings.http.trusted_proxies,
            &mut settings.lifecycle.events,
        ] {
            list.retain(|item| !item.trim().is_empty());
        }
        settings.validate()?;
        Ok(settings)
    }

    /// Checks that do not need the secret (the secret is checked where it is used, see [`Settings::secrets`]).
    fn validate(&self) -> Result<(), ConfigError> {
        self.http_bind()?;
        // The API key mints any user's token: the weak-secret rule of the signing secret applies ("" = API off).
        if let Some(weak) = Some(&self.http.api_key).filter(|k| !k.is_empty()).and_then(|k| secret::weakness(k)) {
            return Err(weak_secret("http.api_key", weak));
        }
        if names::validate_name(&self.nats.subject_prefix).is_err() {
            return Err(invalid(
                "nats.subject_prefix",
                "must be a valid event name without wildcards, e.g. \"telegraphy\"",
            ));
        }
        if !self.nats.url.split(',').all(|u| {
            let u = u.trim();
            (u.starts_with("nats://") || u.starts_with("tls://")) && u.parse::<async_nats::ServerAddr>().is_ok()
        }) {
            return Err(invalid("nats.url", "must be nats://host:port or tls://host:port (several: comma-separated)"));
        }
        if self.node.name.is_empty() || self.node.name.len() > 64 {
            return Err(invalid("node.name", "must be 1..64 characters"));
        }
        if self.heartbeat == 0 {
            return Err(invalid("heartbeat", "must be at least 1 second"));
        }
        if self.limits.outbound_queue == 0 {
            return Err(invalid("limits.outbound_queue", "must be at least 1"));
        }
        if self.limits.max_frame_bytes < 256 {
            return Err(invalid("limits.max_frame_bytes", "must be at least 256"));
        }
        if self.auth.token_ttl == 0 || self.auth.token_ttl > TOKENS_BUCKET_MAX_AGE.as_secs() {
            return Err(invalid("auth.token_ttl", format!("must be 1..{}", TOKENS_BUCKET_MAX_AGE.as_secs())));
        }
        if self.auth.resume_ttl == 0 || self.auth.resume_ttl > REVOCATIONS_BUCKET_MAX_AGE.as_secs() {
            return Err(invalid("auth.resume_ttl", format!("must be 1..{}", REVOCATIONS_BUCKET_MAX_AGE.as_secs())));
        }
        for p in &self.auth.anonymous_allow {
            if names::validate_pattern(p).is_err() {
                return Err(invalid("auth.anonymous_allow", format!("{p:?} is not a valid pattern")));
            }
        }
        if self.history.enabled {
            let live = self.history.live_prefix(&self.nats.subject_prefix);
            if names::validate_name(&live).is_err() || live == self.nats.subject_prefix {
                return Err(invalid("history.live_prefix", "must be a valid name other than nats.subject_prefix"));
            }
            if live.starts_with(&format!("{}.", self.nats.subject_prefix)) {
                return Err(invalid(
                    "history.live_prefix",
                    "must not be inside nats.subject_prefix (the stream would capture its own re-publishes)",
                ));
            }
            if !matches!(self.history.replicas, 1..=5) {
                return Err(invalid("history.replicas", "must be 1..5"));
            }
            if self.history.max_age == 0 {
                return Err(invalid("history.max_age", "must be at least 1 second"));
            }
            if self.history.position_interval >= self.history.max_age {
                return Err(invalid(
                    "history.position_interval",
                    "must be below history.max_age (positions must move before they age out), or 0 = off",
                ));
            }
            if self.history.stream.is_empty()
                || !self.history.stream.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            {
                return Err(invalid("history.stream", "must be a stream name of [A-Za-z0-9_-]"));
            }
        }
        self.validate_quotas()?;
        self.validate_rates()?;
        self.validate_presence()?;
        self.validate_actions()?;
        self.validate_catalog()?;
        match self.log.format.as_str() {
            "text" | "json" => {}
            _ => return Err(invalid("log.format", "must be \"text\" or \"json\"")),
        }
        Ok(())
    }

    /// Client actions (issue 22, proto/PROTOCOL.md sections 13-15).
    fn validate_actions(&self) -> Result<(), ConfigError> {
        let (rpc, publish) = (&self.rpc, &self.client_publish);
        if !(0.1..=60.0).contains(&rpc.timeout) {
            return Err(invalid("rpc.timeout", "must be 0.1..60 seconds"));
        }
        if rpc.max_in_flight == 0 {
            return Err(invalid("rpc.max_in_flight", "must be at least 1"));
        }
        let frame = self.limits.max_frame_bytes;
        for (key, bytes) in
            [("rpc.max_request_bytes", rpc.max_request_bytes), ("client_publish.max_bytes", publish.max_bytes)]
        {
            if bytes == 0 || bytes > frame {
                return Err(invalid(key, "must be 1..limits.max_frame_bytes"));
            }
        }
        if rpc.max_reply_bytes < 64 {
            return Err(invalid("rpc.max_reply_bytes", "must be at least 64"));
        }
        if rpc.requests_per_second > 0 && rpc.request_burst == 0 {
            return Err(invalid("rpc.request_burst", "must be at least 1 (or rpc.requests_per_second = 0: off)"));
        }
        if publish.requests_per_second > 0 && publish.request_burst == 0 {
            return Err(invalid(
                "client_publish.request_burst",
                "must be at least 1 (or client_publish.requests_per_second = 0: off)",
            ));
        }
        let kinds = crate::protocol::constants::actions::LIFECYCLE_KINDS;
        if let Some(bad) = self.lifecycle.events.iter().find(|k| !kinds.contains(&k.as_str())) {
            return Err(invalid("lifecycle.events", format!("{bad:?} is not one of {}", kinds.join(", "))));
        }
        if self.history.enabled {
            let live = self.history.live_prefix(&self.nats.subject_prefix);
            if live == self.rpc_prefix() || live == self.lifecycle_prefix() {
                return Err(invalid("history.live_prefix", "must differ from the RPC and lifecycle prefixes"));
            }
        }
        Ok(())
    }

    /// `<prefix>_rpc`: the prefix with `_rpc` appended to its last token (section 14).
    pub fn rpc_prefix(&self) -> String {
        format!("{}{}", self.nats.subject_prefix, crate::protocol::constants::actions::RPC_SUFFIX)
    }

    /// `<prefix>_lifecycle` (section 15).
    pub fn lifecycle_prefix(&self) -> String {
        format!("{}{}", self.nats.subject_prefix, crate::protocol::constants::actions::LIFECYCLE_SUFFIX)
    }

    /// The event catalog (issue 21).
    fn validate_catalog(&self) -> Result<(), ConfigError> {
        let c = &self.catalog;
        // The names of `node::catalog::Mode` (config sits below the node: it names them, not the type).
        if !matches!(c.mode.as_str(), "off" | "open" | "strict") {
            return Err(invalid("catalog.mode", "must be \"off\", \"open\" or \"strict\""));
        }
        if c.bucket.is_empty() || !c.bucket.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == '-') {
            return Err(invalid("catalog.bucket", "must be a bucket name of [A-Za-z0-9_-]"));
        }
        if !(1..=1_000_000).contains(&c.max_entries) {
            return Err(invalid("catalog.max_entries", "must be 1..1000000"));
        }
        // One entry of MAX_ENTRY_BYTES must fit a reply, and a reply must fit a client's outbound queue.
        let min = crate::protocol::constants::catalog::MAX_ENTRY_BYTES + 256;
        if c.max_reply_bytes < min || c.max_reply_bytes > self.limits.outbound_queue_bytes {
            return Err(invalid(
                "catalog.max_reply_bytes",
                format!("must be {min}..limits.outbound_queue_bytes ({})", self.limits.outbound_queue_bytes),
            ));
        }
        Ok(())
    }

    /// Presence (issue 13).
    fn validate_presence(&self) -> Result<(), ConfigError> {
        let p = &self.presence;
        if p.bucket.is_empty() || !p.bucket.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
            return Err(invalid("presence.bucket", "must be a bucket name of [A-Za-z0-9_-]"));
        }
        if !matches!(p.replicas, 1..=5) {
            return Err(invalid("presence.replicas", "must be 1..5"));
        }
        if !(1..=3600).contains(&p.refresh_interval) {
            return Err(invalid("presence.refresh_interval", "must be 1..3600 seconds"));
        }
        if p.max_snapshot == 0 || p.max_channels == 0 {
            return Err(invalid("presence.max_snapshot", "presence.max_snapshot and max_channels must be at least 1"));
        }
        if !(1..=1_000_000).contains(&p.max_join_leave_members) {
            return Err(invalid("presence.max_join_leave_members", "must be 1..1000000"));
        }
        if !(1..=1_000_000).contains(&p.join_leave_per_second) || !(1..=1_000_000).contains(&p.join_leave_burst) {
            return Err(invalid(
                "presence.join_leave_per_second",
                "join_leave_per_second and join_leave_burst must be 1..1000000",
            ));
        }
        if !(1..=100_000).contains(&p.max_writes_in_flight) {
            return Err(invalid("presence.max_writes_in_flight", "must be 1..100000"));
        }
        if p.max_per_user == 0 {
            return Err(invalid("presence.max_per_user", "must be at least 1"));
        }
        if !(1..=1_000_000).contains(&p.user_churn_per_second) || !(1..=1_000_000).contains(&p.user_churn_burst) {
            return Err(invalid(
                "presence.user_churn_per_second",
                "user_churn_per_second and user_churn_burst must be 1..1000000",
            ));
        }
        Ok(())
    }

    /// Connection quotas, filter memory, session age and the admin listener (issue 11).
    fn validate_quotas(&self) -> Result<(), ConfigError> {
        self.validate_filter_memory()?;
        if self.limits.max_connections_per_session == 0 {
            return Err(invalid("limits.max_connections_per_session", "must be at least 1"));
        }
        if !(1..=3600).contains(&self.http.body_timeout) {
            return Err(invalid("http.body_timeout", "must be 1..3600 seconds"));
        }
        if self.limits.max_connections_per_user < self.limits.max_connections_per_session {
            return Err(invalid(
                "limits.max_connections_per_user",
                "must be at least limits.max_connections_per_session",
            ));
        }
        let max_age = REVOCATIONS_BUCKET_MAX_AGE.as_secs();
        if self.auth.max_session_age == 0 || self.auth.max_session_age > max_age {
            // Above the revocations' max_age a revocation could expire while the session's tokens still work.
            return Err(invalid("auth.max_session_age", format!("must be 1..{max_age} seconds")));
        }
        if let Err(e) = crate::transports::client_ip::parse_trusted(&self.http.trusted_proxies) {
            return Err(invalid("http.trusted_proxies", e));
        }
        let header = self.http.client_ip_header.trim();
        if !header.is_empty() && actix_http::header::HeaderName::from_bytes(header.as_bytes()).is_err() {
            return Err(invalid("http.client_ip_header", "must be a header name such as X-Forwarded-For"));
        }
        if let Some(admin) = self.admin_bind()? {
            if admin == self.http_bind()? && admin.port() != 0 {
                return Err(invalid("http.admin_bind", "must differ from http.bind"));
            }
        }
        Ok(())
    }

    /// Request rate and byte bounds (issue 11 parts 3 and 6).
    fn validate_rates(&self) -> Result<(), ConfigError> {
        let limits = &self.limits;
        // A client re-subscribing everything after a reconnect (connect + every subscription + a ping) must fit.
        if limits.requests_per_second > 0 && (limits.request_burst as usize) < limits.max_subscriptions + 2 {
            return Err(invalid(
                "limits.request_burst",
                "must be at least limits.max_subscriptions + 2 (or limits.requests_per_second = 0: off)",
            ));
        }
        if limits.outbound_queue_bytes < limits.max_event_bytes {
            return Err(invalid("limits.outbound_queue_bytes", "must be at least limits.max_event_bytes"));
        }
        if self.history.max_concurrent_recoveries == 0 {
            return Err(invalid("history.max_concurrent_recoveries", "must be at least 1"));
        }
        if self.history.max_replay_bytes < limits.max_event_bytes {
            return Err(invalid("history.max_replay_bytes", "must be at least limits.max_event_bytes"));
        }
        if !(1..=self.history.max_concurrent_recoveries).contains(&self.history.max_recoveries_per_user) {
            return Err(invalid("history.max_recoveries_per_user", "must be 1..history.max_concurrent_recoveries"));
        }
        if limits.outbound_queue_bytes_per_node < limits.outbound_queue_bytes {
            return Err(invalid(
                "limits.outbound_queue_bytes_per_node",
                "must be at least limits.outbound_queue_bytes",
            ));
        }
        Ok(())
    }

    /// Regex count and filter memory budgets: nonzero, the connection's within the node's.
    fn validate_filter_memory(&self) -> Result<(), ConfigError> {
        let limits = &self.limits;
        if limits.max_regex_conditions == 0 {
            return Err(invalid("limits.max_regex_conditions", "must be at least 1"));
        }
        if limits.filter_memory_per_connection == 0 {
            return Err(invalid("limits.filter_memory_per_connection", "must be at least 1 byte"));
        }
        if limits.filter_memory_per_user < limits.filter_memory_per_connection {
            return Err(invalid(
                "limits.filter_memory_per_user",
                "must be at least limits.filter_memory_per_connection",
            ));
        }
        if limits.filter_memory_per_node < limits.filter_memory_per_user {
            return Err(invalid("limits.filter_memory_per_node", "must be at least limits.filter_memory_per_user"));
        }
        Ok(())
    }

    /// The internal listener's address, when `http.admin_bind` is set.
    pub fn admin_bind(&self) -> Result<Option<SocketAddr>, ConfigError> {
        use std::net::ToSocketAddrs;
        if self.http.admin_bind.trim().is_empty() {
            return Ok(None);
        }
        let addr = self.http.admin_bind.to_socket_addrs().ok().and_then(|mut a| a.next());
        addr.map(Some).ok_or_else(|| invalid("http.admin_bind", format!("{:?} is not host:port", self.http.admin_bind)))
    }

    pub fn http_bind(&self) -> Result<SocketAddr, ConfigError> {
        use std::net::ToSocketAddrs;
        self.http
            .bind
            .to_socket_addrs()
            .ok()
            .and_then(|mut a| a.next())
            .ok_or_else(|| invalid("http.bind", format!("{:?} is not host:port", self.http.bind)))
    }

    /// The signing secret first, then the verify-only ones; each must pass the weak-secret rule of
    /// proto/PROTOCOL.md section 4 ([`secret::weakness`]). The error names the key and the rule, never the secret.
    pub fn secrets(&self) -> Result<Vec<String>, ConfigError> {
        if self.auth.secret.is_empty() {
            return Err(invalid("auth.secret", "missing: set TELEGRAPHY_AUTH__SECRET (e.g. `openssl rand -hex 32`)"));
        }
        if let Some(weak) = secret::weakness(&self.auth.secret) {
            return Err(weak_secret("auth.secret", weak));
        }
        if let Some(weak) = self.auth.previous_secrets.iter().find_map(|s| secret::weakness(s)) {
            return Err(weak_secret("auth.previous_secrets", weak));
        }
        Ok(std::iter::once(self.auth.secret.clone()).chain(self.auth.previous_secrets.iter().cloned()).collect())
    }

    pub fn heartbeat_interval(&self) -> Duration {
        Duration::from_secs(self.heartbeat)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Option<std::collections::HashMap<String, String>> {
        Some(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
    }

    #[test]
    fn environment_overrides_file_overrides_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("gw.toml");
        std::fs::write(&file, "heartbeat = 7\n[node]\nname = \"from-file\"\n[limits]\nmax_subscriptions = 5\n")
            .unwrap();
        let s = Settings::load_from(Some(&file), env(&[("TELEGRAPHY_NODE__NAME", "from-env")])).unwrap();
        assert_eq!((s.node.name.as_str(), s.heartbeat, s.limits.max_subscriptions), ("from-env", 7, 5));
        assert_eq!(s.nats.subject_prefix, "telegraphy", "default kept");
    }

    #[test]
    fn a_misspelt_section_in_a_file_is_an_error_but_foreign_variables_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("gw.toml");
        std::fs::write(&file, "[histroy]\nenabled = false\n").unwrap();
        let err = Settings::load_from(Some(&file), env(&[])).unwrap_err().to_string();
        assert!(err.contains("histroy"), "{err}");
        assert!(Settings::load_from(None, env(&[("TELEGRAPHY_GATEWAY_BIN", "/x")])).is_ok());
    }

    #[test]
    fn empty_list_variables_mean_empty_lists() {
        let s = Settings::load_from(
            None,
            env(&[("TELEGRAPHY_HTTP__ALLOWED_ORIGINS", ""), ("TELEGRAPHY_AUTH__ANONYMOUS_ALLOW", "public.>,")]),
        )
        .unwrap();
        assert!(s.http.allowed_origins.is_empty());
        assert_eq!(s.auth.anonymous_allow, ["public.>"]);
    }

    #[test]
    fn errors_name_the_key_and_never_print_secrets() {
        let err = Settings::load_from(None, env(&[("TELEGRAPHY_LIMITS__MAX_CONNECTIONS", "lots")])).unwrap_err();
        assert!(err.to_string().contains("limits.max_connections"), "{err}");
        let s = Settings::load_from(None, env(&[("TELEGRAPHY_AUTH__SECRET", "short-secret-value")])).unwrap();
        let err = s.secrets().unwrap_err().to_string();
        assert!(err.contains("auth.secret") && !err.contains("short-secret-value"), "{err}");
        let key = "k3y-value-5d81c7e2a9f04b36e1d8c2a7f9b3e60d";
        let debug = format!("{:?}", Settings::load_from(None, env(&[("TELEGRAPHY_HTTP__API_KEY", key)])).unwrap());
        assert!(!debug.contains(key), "api key redacted in Debug");
    }

    #[test]
    fn a_weak_api_key_is_refused_naming_the_key_only() {
        for weak in ["abc", "change-me-change-me-change-me-change-me", &"ab".repeat(20)] {
            let err = Settings::load_from(None, env(&[("TELEGRAPHY_HTTP__API_KEY", weak)])).unwrap_err().to_string();
            assert!(err.contains("http.api_key") && err.contains("weak secret") && !err.contains(weak), "{err}");
        }
        let strong = "9f2c41d07be85a36c1e0d4f7a92b6e3158c0d7f4a1e92b63";
        assert_eq!(
            Settings::load_from(None, env(&[("TELEGRAPHY_HTTP__API_KEY", strong)])).unwrap().http.api_key,
            strong
        );
        assert!(Settings::load_from(None, env(&[("TELEGRAPHY_HTTP__API_KEY", "")])).is_ok(), "empty = off");
    }

    #[test]
    fn secrets_from_the_environment_are_taken_verbatim() {
        let digits = "4815162342481516234248151623424815162342";
        let s = Settings::load_from(
            None,
            env(&[("TELEGRAPHY_AUTH__SECRET", digits), ("TELEGRAPHY_AUTH__PREVIOUS_SECRETS", &format!("{digits}9,"))]),
        )
        .unwrap();
        assert_eq!(s.auth.secret, digits, "not parsed as a number");
        assert_eq!(s.auth.previous_secrets, [format!("{digits}9")]);
    }

    #[test]
    fn the_request_burst_fits_a_full_resubscription() {
        let load = |burst: &str, rate: &str| {
            Settings::load_from(
                None,
                env(&[
                    ("TELEGRAPHY_LIMITS__MAX_SUBSCRIPTIONS", "10"),
                    ("TELEGRAPHY_LIMITS__REQUEST_BURST", burst),
                    ("TELEGRAPHY_LIMITS__REQUESTS_PER_SECOND", rate),
                ]),
            )
        };
        assert_eq!(load("12", "20").unwrap().limits.request_burst, 12);
        let err = load("11", "20").unwrap_err().to_string();
        assert!(err.contains("limits.request_burst") && err.contains("max_subscriptions"), "{err}");
        assert!(load("0", "0").is_ok(), "0 requests per second = off");
        let small_queue = Settings::load_from(None, env(&[("TELEGRAPHY_LIMITS__OUTBOUND_QUEUE_BYTES", "1000")]));
        assert!(small_queue.unwrap_err().to_string().contains("limits.outbound_queue_bytes"));
    }

    #[test]
    fn filter_memory_budgets_are_nonzero_and_nested() {
        let s = Settings::load_from(None, env(&[])).unwrap();
        assert_eq!(
            (s.limits.max_regex_conditions, s.limits.filter_memory_per_connection, s.limits.filter_memory_per_node),
            (4, 4 << 20, 256 << 20)
        );
        for (key, value, named) in [
            ("TELEGRAPHY_LIMITS__MAX_REGEX_CONDITIONS", "0", "limits.max_regex_conditions"),
            ("TELEGRAPHY_LIMITS__FILTER_MEMORY_PER_CONNECTION", "0", "limits.filter_memory_per_connection"),
            ("TELEGRAPHY_LIMITS__FILTER_MEMORY_PER_NODE", "1000", "limits.filter_memory_per_node"),
        ] {
            let err = Settings::load_from(None, env(&[(key, value)])).unwrap_err().to_string();
            assert!(err.contains(named), "{err}");
        }
    }

    #[test]
    fn presence_bounds_are_nonzero() {
        for (key, value, named) in [
            ("TELEGRAPHY_PRESENCE__MAX_JOIN_LEAVE_MEMBERS", "0", "presence.max_join_leave_members"),
            ("TELEGRAPHY_PRESENCE__JOIN_LEAVE_PER_SECOND", "0", "presence.join_leave_per_second"),
            ("TELEGRAPHY_PRESENCE__JOIN_LEAVE_BURST", "0", "presence.join_leave_per_second"),
            // 0 slots would refuse every join as busy
            ("TELEGRAPHY_PRESENCE__MAX_WRITES_IN_FLIGHT", "0", "presence.max_writes_in_flight"),
        ] {
            let err = Settings::load_from(None, env(&[(key, value)])).unwrap_err().to_string();
            assert!(err.contains(named), "{key}={value}: {err}");
        }
    }

    #[test]
    fn positions_must_move_before_they_age_out() {
        let interval = |v: &str| {
            Settings::load_from(
                None,
                env(&[("TELEGRAPHY_HISTORY__MAX_AGE", "60"), ("TELEGRAPHY_HISTORY__POSITION_INTERVAL", v)]),
            )
        };
        assert_eq!(interval("59").unwrap().history.position_interval, 59);
        assert_eq!(interval("0").unwrap().history.position_interval, 0, "0 = off");
        let err = interval("60").unwrap_err().to_string();
        assert!(err.contains("history.position_interval") && err.contains("max_age"), "{err}");
    }

    #[test]
    fn catalog_settings_are_checked() {
        let s = Settings::load_from(None, env(&[("TELEGRAPHY_CATALOG__MODE", "strict")])).unwrap();
        assert_eq!((s.catalog.mode.as_str(), s.catalog.bucket.as_str()), ("strict", "telegraphy_catalog"));
        assert_eq!((s.catalog.max_entries, s.catalog.max_reply_bytes), (10000, 262144));
        for (var, value, key) in [
            ("TELEGRAPHY_CATALOG__MODE", "closed", "catalog.mode"),
            ("TELEGRAPHY_CATALOG__BUCKET", "a.b", "catalog.bucket"),
            ("TELEGRAPHY_CATALOG__MAX_ENTRIES", "0", "catalog.max_entries"),
            ("TELEGRAPHY_CATALOG__MAX_REPLY_BYTES", "1000", "catalog.max_reply_bytes"),
        ] {
            let err = Settings::load_from(None, env(&[(var, value)])).unwrap_err().to_string();
            assert!(err.contains(key), "{var}={value}: {err}");
        }
    }
}
