//! Admission of a new connection, whatever its transport (raw WebSocket, actix-ws, SSE): the checks made before
//! a connection gets a session (drain, origin, the node's connection limit and the per-IP quota), and its
//! registration with its bounded outbox. A refusal is a plain HTTP status with a short reason, given before any
//! protocol frame.

use std::{
    net::{IpAddr, Ipv6Addr},
    sync::Arc,
};

use actix_http::{
    header::{self, HeaderMap},
    StatusCode,
};

use crate::{
    node::hub::ConnId,
    node::outbox::{Control, Outbox, Queue},
    node::Gateway,
    transports::client_ip,
};

/// A connection the node took: registered in its connections, with its outbox. Whoever admitted it runs a
/// [`crate::session::Session`] on `id` + `outbox` (which removes the registration when it ends) and a writer
/// draining `queue`; a transport that gives up before starting the session calls
/// [`Gateway::connections`]`.remove(id)`.
pub struct Admitted {
    pub id: ConnId,
    pub outbox: Outbox,
    pub queue: Queue,
    pub ctl: Arc<Control>,
}

/// Why a connection was refused: the HTTP status and a short plain-text reason for the response body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    pub status: StatusCode,
    pub reason: &'static str,
}

/// Admits a connection from `peer` whose request carried `headers`, or says why not (counted in
/// `telegraphy_connections_refused_total`): the node is draining (503), the `Origin` is not allowed (403), the
/// node is full or has too many connections waiting for `connect` (503), the client address is over its quota
/// of connections or of connections waiting for `connect` (429).
pub fn admit(gw: &Gateway, headers: &HeaderMap, peer: Option<IpAddr>) -> Result<Admitted, Refusal> {
    let refused = |status, reason| {
        gw.metrics.connections_refused.increment(1);
        Refusal { status, reason }
    };
    if gw.is_draining() {
        return Err(refused(StatusCode::SERVICE_UNAVAILABLE, "draining"));
    }
    if !origin_allowed(headers, &gw.settings.http.allowed_origins) {
        return Err(refused(StatusCode::FORBIDDEN, "origin not allowed"));
    }
    let limits = &gw.settings.limits;
    let (outbox, queue, ctl) = Outbox::bounded(limits.outbound_queue, limits.outbound_queue_bytes);
    match gw.connections.try_register(ctl.clone(), client_ip(gw, headers, peer), limits.into()) {
        Ok(id) => Ok(Admitted { id, outbox, queue, ctl }),
        Err(over) => {
            over.count(&gw.metrics);
            let status = if over.is_per_ip() { StatusCode::TOO_MANY_REQUESTS } else { StatusCode::SERVICE_UNAVAILABLE };
            Err(refused(status, over.reason()))
        }
    }
}

/// The address the per-IP quota counts this connection under: the TCP peer, or behind a trusted proxy the
/// client its header names (see [`crate::transports::client_ip`]).
fn client_ip(gw: &Gateway, headers: &HeaderMap, peer: Option<IpAddr>) -> IpAddr {
    let peer = peer.unwrap_or(IpAddr::V6(Ipv6Addr::UNSPECIFIED));
    let values = gw.client_ip.header().into_iter().flat_map(|h| headers.get_all(h)).filter_map(|v| v.to_str().ok());
    client_ip::quota_key(gw.client_ip.client_ip(peer, values))
}

/// Whether the request's `Origin` is allowed (`http.allowed_origins`; empty = any, and no `Origin` needed).
pub fn origin_allowed(headers: &HeaderMap, allowed: &[String]) -> bool {
    if allowed.is_empty() {
        return true;
    }
    let origin = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok());
    origin.is_some_and(|o| allowed.iter().any(|a| a == o))
}
