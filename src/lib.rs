//! Telegraphy gateway: real-time events from NATS to browsers over WebSocket, protocol v1.
//!
//! Map of the crate (one concern per module; proto/PROTOCOL.md is the normative contract). Modules marked private
//! are the node's inner parts: an embedding application or a test reaches the node through [`node::Gateway`],
//! [`server::Application`] and the public modules.
//! - [`config`]: settings from defaults, a TOML file and `TELEGRAPHY_<SECTION>__<KEY>` variables.
//! - [`constants`]: the protocol's constants, generated from proto/constants.json by scripts/gen-constants.
//! - [`server`]: start-up ([`server::Application`]: bind, build the node once, run, drain) and the routes:
//!   `/healthz`, `/readyz`, `/metrics`, and `/sse` (`sse`) on the public listener. HTTP/1 requests go to
//!   actix-web; `Upgrade: websocket` requests leave the HTTP dispatcher with their raw connection.
//! - [`node`]: the node's shared state ([`node::Gateway`], one for all actix workers), readiness, the closing of
//!   revoked connections, and the drain.
//! - `actions` (private): client actions (sections 13-15): client publish and RPC to backend workers;
//!   per-connection state allocated on first use.
//! - [`sender`]: who sent a client action: the NATS headers the gateway stamps, `from` in event frames.
//! - `inbound` (private): what a transport read from its client, as the session core takes it.
//! - [`session`]: the protocol core of one connection ([`session::Session`]): client frames, connect,
//!   subscriptions, heartbeat and timers, limits, when to close; it writes only to its outbox and knows no socket.
//! - `admission` (private): the checks before a connection of any transport gets a session (drain, origin, quotas).
//! - `ws` (private): the raw WebSocket transport (tokio-tungstenite on the raw TCP stream, small buffers): the upgrade
//!   checks, a reader feeding the session, and the writer task draining the outbox to the socket.
//! - [`actix`]: the gateway embedded in an actix-web app: [`actix::ws`], a handler speaking protocol v1 over
//!   actix-ws on the app's own route (the node is built once with [`node::Gateway::start`]), and
//!   [`actix::abort_stalled_after`] for the app server's sockets.
//! - `writer` (private): what both WebSocket transports share: a connection's writer task (batching, the close frame)
//!   and the start of its two tasks, generic over the WebSocket library.
//! - `streams` (private): the node's open SSE streams (stream id -> the connection's inbound channel).
//! - `sse` (private): the Server-Sent Events transport (`GET /sse` streams server frames, `POST /sse/{stream}` takes
//!   client frames) and the node's registry of open streams.
//! - [`outbox`]: a connection's bounded outbound queue (frames and bytes) and close switch (4008 when full).
//! - `rate` (private): a connection's request rate limit (token bucket; 4029 past it).
//! - `connections` (private): the node's live connections (limit, drain, revocation lookup).
//! - `hub` (private): fan-out: one NATS subscription per distinct pattern per node, frame encoded once per message.
//! - `history` (private): the JetStream stream behind `seq`/`epoch` and the replay of a `subscribe` with `since`.
//! - `presence` (private): who is present on a channel (section 11): KV entries refreshed by the node, one KV
//!   watch per watched channel and node, join/leave events, snapshots and counts from memory.
//! - [`nats`]: the NATS connection (reconnect forever, state and slow-consumer tracking) and KV buckets.
//! - [`auth`]: connect step: token checks, single-use consumption in KV, resume tokens, revocation watch, minting.
//! - `api` (private): HTTP API for backends: mint tokens, publish events.
//! - `api_throttle` (private): wrong API keys per client address, throttled past a bound.
//! - [`catalog`]: the event catalog (section 12): entry checks, overlap, the node's one KV watch of the catalog
//!   bucket, the `events` reply and the strict-mode check of a `subscribe`.
//! - [`names`]: event names and patterns: validation, matching, containment, model key escaping.
//! - [`frames`]: client frame parsing, server frame encoding, error and close codes.
//! - [`filter`]: server-side filters: Django-style lookups on event data (checked first, then compiled).
//! - `decimal` (private): exact decimal comparison of numbers and decimal strings for filters.
//! - `filter_memory` (private): the node's pool of compiled regexes, its memory budget and compile queue.
//! - [`token`]: the `tg1`/`tg1r` token format: signing and verification.
//! - [`secret`]: the weak-secret rule for configured secrets.
//! - `client_ip` (private): a connection's client address (peer, or a trusted proxy's header) for per-IP quotas.
//! - `metrics` (private): Prometheus metrics of the node.
//! - `wakes` (private): writer wake-ups of a fan-out round handed to each worker thread at once (one
//!   cross-thread wake-up per thread, not per socket).
//! - `vec_map` (private): a small map as a vector of pairs, for per-connection maps (no table per connection).
//! - [`footprint`] (hidden): the sizes of a connection's task futures, for the memory budget test.
//! - [`shutdown`]: the shutdown signals (SIGTERM/SIGINT).
//! - [`telemetry`]: logging setup.

mod actions;
pub mod actix;
mod admission;
mod api;
mod api_throttle;
pub mod auth;
pub mod catalog;
mod client_ip;
pub mod config;
mod connections;
pub mod constants;
mod decimal;
pub mod filter;
mod filter_memory;
#[doc(hidden)]
pub mod footprint;
pub mod frames;
mod history;
mod hub;
mod inbound;
mod metrics;
pub mod names;
pub mod nats;
pub mod node;
pub mod outbox;
mod presence;
mod rate;
pub mod secret;
pub mod sender;
pub mod server;
pub mod session;
pub mod shutdown;
mod sse;
mod streams;
pub mod telemetry;
pub mod token;
mod vec_map;
mod wakes;
mod writer;
mod ws;

/// The client id presence shows for a session (proto/PROTOCOL.md section 11).
pub fn presence_client_id(session: &str) -> String {
    presence::client_id(session)
}
