//! Client actions (proto/PROTOCOL.md sections 13 to 15): what a connected client may send beyond subscriptions.
//! The sender they carry is [`crate::protocol::sender`]'s.
//!
//! - [`publish`]: the `publish` frame (section 13.1): checks in order, then one core NATS publish;
//! - [`rpc`]: the `rpc` frame (section 14): checks in order, then a NATS request answered from a task of its
//!   own through the connection's outbox, so the session's reading loop never waits for a worker;
//! - [`lifecycle`]: connect/disconnect/subscribe/unsubscribe messages for backends (opt-in, section 15).
//!
//! A connection pays for none of this until its first `publish` or `rpc`: its [`Actions`] state (rate buckets,
//! in-flight count, its client id) is allocated then ([`Actions::new`]), and an idle connection holds one null
//! pointer.

pub(crate) mod lifecycle;
pub(crate) mod publish;
pub(crate) mod rpc;

use std::sync::{atomic::AtomicUsize, Arc};

use tokio::time::Instant;

use crate::{node::auth::Identity, node::Gateway, session::rate::TokenBucket};

/// One connection's client-action state, allocated on its first `publish` or `rpc`.
pub(crate) struct Actions {
    /// The connection's client id (section 13): the presence client id of its session.
    pub(crate) client: String,
    /// `client_publish.*` bucket; None when client publish is off on the node.
    publish: Option<TokenBucket>,
    /// `rpc.*` bucket; None when RPC is off on the node.
    rpc: Option<TokenBucket>,
    /// RPCs of this connection awaiting an answer (shared with their tasks, which decrement it).
    in_flight: Arc<AtomicUsize>,
}

impl Actions {
    pub(crate) fn new(gw: &Gateway, identity: &Identity) -> Box<Self> {
        let now = Instant::now();
        let (p, r) = (&gw.settings.client_publish, &gw.settings.rpc);
        Box::new(Actions {
            client: crate::node::presence::client_id(&identity.session),
            publish: TokenBucket::new(p.requests_per_second, p.request_burst, now),
            rpc: TokenBucket::new(r.requests_per_second, r.request_burst, now),
            in_flight: Arc::new(AtomicUsize::new(0)),
        })
    }
}
