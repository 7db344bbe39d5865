//! Telegraphy gateway: real-time events from NATS to browsers over WebSocket and SSE, protocol v1.
//!
//! # Layers
//!
//! The folders are the layers, listed bottom up: a module uses those of its own layer and the layers before it,
//! with a few named exceptions where the node keeps state for a part above it (the registry of open SSE streams,
//! wrong API keys per address, the client-address settings) or where a lower part names an upper one's type
//! (`protocol::sender` stamps a `node::auth::Identity`). proto/PROTOCOL.md is the normative contract;
//! tests/module_graph.rs checks that the modules' imports make no cycle.
//!
//! 1. [`protocol`]: the wire contract, without I/O or node state.
//!    - [`protocol::constants`]: the protocol's constants, generated from proto/constants.json by
//!      scripts/gen-constants.
//!    - [`protocol::names`]: event names and patterns: validation, matching, containment, model key escaping.
//!    - [`protocol::frames`]: client frame parsing, server frame encoding, error and close codes.
//!    - [`protocol::filter`]: server-side filters: Django-style lookups on event data (checked first, then
//!      compiled); `decimal` (private): exact decimal comparison for them.
//!    - [`protocol::token`]: the `tg1`/`tg1r` token format: signing and verification.
//!    - [`protocol::sender`]: who sent a client action: the NATS headers the gateway stamps, `from` in event frames.
//! 2. [`node`]: one per process, shared by every actix worker and connection ([`node::Gateway`]): readiness, the
//!    closing of revoked connections, the drain; and its parts:
//!    - [`node::nats`]: the NATS connection (reconnect forever, state and slow-consumer tracking) and KV buckets.
//!    - [`node::auth`]: connect step: token checks, single-use consumption in KV, resume tokens, revocation watch,
//!      minting.
//!    - [`node::catalog`]: the event catalog (section 12): entry checks, overlap, the node's one KV watch of the
//!      catalog bucket, the `events` reply and the strict-mode check of a `subscribe`.
//!    - [`node::outbox`]: a connection's bounded outbound queue (frames and bytes) and close switch (4008 when
//!      full); the node's outbound total.
//!    - private: `hub` (fan-out: one NATS subscription per distinct pattern per node, frame encoded once per
//!      message), `history` (the JetStream stream behind `seq`/`epoch` and the replay of `since`), `presence`
//!      (section 11: KV entries, one watch per watched channel, join/leave, snapshots), `connections` (live
//!      connections: limit, drain, revocation lookup), `filter_memory` (the pool of compiled regexes, its budget
//!      and compile queue), `metrics` (Prometheus), `wakes` (writer wake-ups of a fan-out round handed to each
//!      worker thread at once), `render` (the one render path of an event for a subscription: checked once, then
//!      filter -> encode; live delivery, healing and the replay of `since` all use it).
//! 3. [`session`]: the protocol core of one connection ([`session::Session`]): client frames, connect,
//!    subscriptions, heartbeat and timers, limits, when to close; it writes only to its outbox and knows no socket.
//!    Private parts: `actions` (client publish and RPC, sections 13-15, allocated on first use), `inbound` (what a
//!    transport read, as the session takes it), `rate` (the request token bucket; 4029 past it), `vec_map` (a
//!    small map as a vector of pairs, for per-connection maps).
//! 4. [`transports`]: how a connection reaches its session.
//!    - [`transports::actix`]: the gateway embedded in an actix-web app: [`transports::actix::ws`] speaks
//!      protocol v1 over actix-ws on the app's own route (the node is built once with [`node::Gateway::start`]),
//!      and [`transports::actix::abort_stalled_after`] for the app server's sockets.
//!    - private: `ws` (the raw WebSocket transport: tokio-tungstenite on the raw TCP stream, small buffers),
//!      `sse` (Server-Sent Events: `GET /sse` streams server frames, `POST /sse/{stream}` takes client frames),
//!      `streams` (the node's open SSE streams), `writer` (a WebSocket connection's task: its reader beside its writer, generic over the
//!      WebSocket library), `admission` (drain, origin and quota checks before any transport gets a session),
//!      `client_ip` (a connection's client address: peer, or a trusted proxy's header).
//! 5. `api` (private): HTTP API for backends (mint tokens, publish events); `api::throttle`: wrong API keys per
//!    client address, throttled past a bound.
//! 6. [`server`]: start-up ([`server::Application`]: bind, build the node once, run, drain) and the routes:
//!    `/healthz`, `/readyz`, `/metrics`, `/api/v1/*` and `/sse` on the public listener. HTTP/1 requests go to
//!    actix-web; `Upgrade: websocket` requests leave the HTTP dispatcher with their raw connection.
//!
//! Beside the layers: [`config`] (settings from defaults, a TOML file and `TELEGRAPHY_<SECTION>__<KEY>`
//! variables), [`secret`] (the weak-secret rule for configured secrets), [`shutdown`] (SIGTERM/SIGINT),
//! [`telemetry`] (logging setup), and `footprint` (hidden: the sizes of a connection's task futures, for the
//! memory budget test).
//!
//! # Stability
//!
//! The public surface is what `cargo doc` shows. Stable (changed only with the protocol version or a major release, and
//! said in CHANGELOG.md): the protocol types of [`protocol`] (frames, names, filters, tokens, constants),
//! [`node::Gateway`] with its methods and [`server::Application`], the actix embedding ([`transports::actix`]), and
//! [`config`] (the settings, their file keys and `TELEGRAPHY_*` variables). Public but not a promise: [`session`] (a
//! connection's core, public for the in-process tests and tools), [`node::nats`], [`node::outbox`], [`node::catalog`]
//! and [`node::auth`] beyond minting and revocation, [`secret`], [`shutdown`], [`telemetry`]. Hidden (`#[doc(hidden)]`,
//! for this repository's tests and bench only, may change in any release): `footprint` and the `Gateway` methods that
//! hand out the node's inner parts (`history`, `presence`, `filter_memory`, `connections`). The modules not shown are
//! private.

mod api;
pub mod config;
#[doc(hidden)]
pub mod footprint;
pub mod node;
pub mod protocol;
pub mod secret;
pub mod server;
pub mod session;
pub mod shutdown;
pub mod telemetry;
pub mod transports;

/// The client id presence shows for a session (proto/PROTOCOL.md section 11).
pub fn presence_client_id(session: &str) -> String {
    node::presence::client_id(session)
}
