//! RPC (proto/PROTOCOL.md section 14): a connected client's `rpc` frame becomes one NATS request to
//! `<prefix>_rpc.<method>` with the sender's headers; a worker's reply envelope becomes `rpc_result` or `error`.
//!
//! Checks, in the documented order, before any NATS work (connected and well-formed are the session's): size
//! (`rpc.max_request_bytes`), the connection's RPC bucket (0 per second: off on the node), RPCs in flight
//! (`rpc.max_in_flight`), the token's `rpc` grant. The request then runs in a task of its own: the session's
//! reading loop goes on at once, and the answer (at most `rpc.timeout` later) goes to the connection's outbox,
//! possibly after the replies to later frames (the client matches answers by `id`). At most once: the gateway
//! never retries a request; a connection that ended meanwhile drops the answer.

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use crate::{
    node::auth::Identity,
    node::outbox::{Frame, Outbox, Push},
    node::Gateway,
    protocol::frames::{self, ErrorCode},
};

use super::Actions;
use crate::protocol::sender;

/// Slack beyond `rpc.timeout` for the NATS client's own timer to fire first.
const TIMER_SLACK: Duration = Duration::from_secs(1);

/// One RPC of a connection awaiting its answer; dropping it frees its in-flight slot.
struct InFlight(Arc<AtomicUsize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Serves an `rpc` frame of a connected client: an `error` reply when a check refuses it (None when the request
/// went out; its answer comes later through `outbox`).
pub(crate) fn call(
    gw: &Arc<Gateway>,
    identity: &Identity,
    actions: &mut Actions,
    outbox: &Outbox,
    id: u64,
    method: &str,
    data: String,
) -> Option<String> {
    let m = &gw.metrics.actions;
    let settings = &gw.settings.rpc;
    let id_ = Some(id);
    if data.len() > settings.max_request_bytes {
        m.rpc_too_large.increment(1);
        return Some(frames::encode_error(id_, ErrorCode::LimitExceeded, "rpc request too large"));
    }
    let Some(bucket) = actions.rpc.as_mut() else {
        m.rpc_forbidden.increment(1);
        return Some(frames::encode_error(id_, ErrorCode::Forbidden, "rpc is off"));
    };
    if !bucket.take(tokio::time::Instant::now()) {
        m.rpc_rate_limited.increment(1);
        return Some(frames::encode_error(id_, ErrorCode::LimitExceeded, "too many rpc requests"));
    }
    if actions.in_flight.load(Ordering::Acquire) >= settings.max_in_flight {
        m.rpc_in_flight.increment(1);
        return Some(frames::encode_error(id_, ErrorCode::LimitExceeded, "too many rpc requests in flight"));
    }
    if !identity.grants().may_call(method) {
        m.rpc_forbidden.increment(1);
        return Some(frames::encode_error(id_, ErrorCode::Forbidden, "rpc not allowed"));
    }
    if !crate::node::nats::is_connected(&gw.nats) {
        m.rpc_unavailable.increment(1);
        return Some(frames::encode_error(id_, ErrorCode::Unavailable, "rpc unavailable, try again"));
    }
    actions.in_flight.fetch_add(1, Ordering::AcqRel);
    let slot = InFlight(actions.in_flight.clone());
    let subject = format!("{}.{method}", gw.settings.rpc_prefix());
    let headers = sender::rpc_headers(identity, &actions.client, &gw.settings.node.name);
    let timeout = settings.timeout();
    let request = async_nats::Request::new().payload(data.into()).headers(headers).timeout(Some(timeout));
    let (gw, outbox) = (gw.clone(), outbox.clone());
    tokio::spawn(async move {
        let started = tokio::time::Instant::now();
        let answer = tokio::time::timeout(timeout + TIMER_SLACK, gw.nats.send_request(subject, request)).await;
        let frame = answer_frame(&gw, id, answer);
        gw.metrics.actions.rpc_duration.record(started.elapsed().as_secs_f64());
        drop(slot);
        if outbox.push(Frame::from(frame)) == Push::TooSlow {
            gw.metrics.slow_disconnects.increment(1);
        }
    });
    None
}

/// The frame answering RPC `id`, counted by result.
fn answer_frame(
    gw: &Gateway,
    id: u64,
    answer: Result<Result<async_nats::Message, async_nats::RequestError>, tokio::time::error::Elapsed>,
) -> String {
    use async_nats::RequestErrorKind;
    let m = &gw.metrics.actions;
    match answer {
        Ok(Ok(reply)) if reply.payload.len() <= gw.settings.rpc.max_reply_bytes => {
            match frames::encode_rpc_reply(id, &reply.payload) {
                Some((frame, true)) => {
                    m.rpc_ok.increment(1);
                    frame
                }
                Some((frame, false)) => {
                    m.rpc_error.increment(1);
                    frame
                }
                None => bad_reply(gw, id),
            }
        }
        Ok(Ok(_)) => bad_reply(gw, id),
        Ok(Err(e)) if e.kind() == RequestErrorKind::NoResponders => {
            m.rpc_unavailable.increment(1);
            frames::encode_error(Some(id), ErrorCode::Unavailable, "no worker for this method")
        }
        Ok(Err(e)) if e.kind() == RequestErrorKind::TimedOut => timed_out(gw, id),
        Err(_) => timed_out(gw, id),
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "rpc request failed");
            m.rpc_unavailable.increment(1);
            frames::encode_error(Some(id), ErrorCode::Unavailable, "rpc unavailable, try again")
        }
    }
}

fn timed_out(gw: &Gateway, id: u64) -> String {
    gw.metrics.actions.rpc_timeout.increment(1);
    frames::encode_error(Some(id), ErrorCode::Timeout, "rpc timed out")
}

fn bad_reply(gw: &Gateway, id: u64) -> String {
    gw.metrics.actions.rpc_bad_reply.increment(1);
    frames::encode_error(Some(id), ErrorCode::Internal, "bad rpc reply")
}
