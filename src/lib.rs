//! Telegraphy gateway: real-time events from NATS to browsers over WebSocket, protocol v1.
//!
//! Map of the crate (one concern per module; proto/PROTOCOL.md is the normative contract):
//! - [`config`]: settings from defaults, a TOML file and `TELEGRAPHY_<SECTION>__<KEY>` variables.
//! - [`server`]: start-up ([`server::Application`]: bind, build the node once, run, drain) and the routes:
//!   `/healthz`, `/readyz`, `/metrics`, and `/sse` ([`sse`]) on the public listener. HTTP/1 requests go to
//!   actix-web; `Upgrade: websocket` requests leave the HTTP dispatcher with their raw connection.
//! - [`node`]: the node's shared state ([`node::Gateway`], one for all actix workers), readiness, the closing of
//!   revoked connections, and the drain.
//! - [`session`]: the protocol core of one connection ([`session::Session`]): client frames, connect,
//!   subscriptions, heartbeat and timers, limits, when to close; it writes only to its outbox and knows no socket.
//! - [`admission`]: the checks before a connection of any transport gets a session (drain, origin, quotas).
//! - [`ws`]: the raw WebSocket transport (tokio-tungstenite on the raw TCP stream, small buffers): the upgrade
//!   checks, a reader feeding the session, and the writer task draining the outbox to the socket.
//! - [`sse`]: the Server-Sent Events transport (`GET /sse` streams server frames, `POST /sse/{stream}` takes
//!   client frames) and the node's registry of open streams.
//! - [`outbox`]: a connection's bounded outbound queue (frames and bytes) and close switch (4008 when full).
//! - [`rate`]: a connection's request rate limit (token bucket; 4029 past it).
//! - [`connections`]: the node's live connections (limit, drain, revocation lookup).
//! - [`hub`]: fan-out: one NATS subscription per distinct pattern per node, frame encoded once per message.
//! - [`history`]: the JetStream stream behind `seq`/`epoch` and the replay of a `subscribe` with `since`.
//! - [`nats`]: the NATS connection (reconnect forever, state and slow-consumer tracking) and KV buckets.
//! - [`auth`]: connect step: token checks, single-use consumption in KV, resume tokens, revocation watch, minting.
//! - [`api`]: HTTP API for backends: mint tokens, publish events.
//! - [`names`]: event names and patterns: validation, matching, containment, model key escaping.
//! - [`frames`]: client frame parsing, server frame encoding, error and close codes.
//! - [`filter`]: server-side filters: Django-style lookups on event data (checked first, then compiled).
//! - [`filter_memory`]: the node's pool of compiled regexes, its memory budget and compile queue.
//! - [`token`]: the `tg1`/`tg1r` token format: signing and verification.
//! - [`secret`]: the weak-secret rule for configured secrets.
//! - [`client_ip`]: a connection's client address (peer, or a trusted proxy's header) for per-IP quotas.
//! - [`metrics`]: Prometheus metrics of the node.
//! - [`shutdown`]: the shutdown signals (SIGTERM/SIGINT).
//! - [`telemetry`]: logging setup.

pub mod admission;
pub mod api;
pub mod auth;
pub mod client_ip;
pub mod config;
pub mod connections;
pub mod filter;
pub mod filter_memory;
pub mod frames;
pub mod history;
pub mod hub;
pub mod metrics;
pub mod names;
pub mod nats;
pub mod node;
pub mod outbox;
pub mod rate;
pub mod secret;
pub mod server;
pub mod session;
pub mod shutdown;
pub mod sse;
pub mod telemetry;
pub mod token;
pub mod ws;
