//! Client publish (proto/PROTOCOL.md section 13.1): a connected client's `publish` frame becomes one core NATS
//! publish of its `data`, stamped with the sender ([`crate::protocol::sender`]).
//!
//! Checks, in the documented order, before any NATS work (connected and well-formed are the session's):
//! size (`client_publish.max_bytes`), the connection's publish bucket (0 per second: off on the node), the
//! token's grant (`publish_ephemeral` first: ephemeral, else `publish`: stored). Every refusal is an `error`
//! reply; the connection stays open.

use std::time::Duration;

use crate::{
    node::auth::Identity,
    node::Gateway,
    protocol::frames::{self, ErrorCode},
    protocol::token::PublishKind,
};

use super::Actions;
use crate::protocol::sender;

/// How long a publish may wait for room in the NATS client's command queue (only when NATS is slow).
const PUBLISH_WAIT: Duration = Duration::from_secs(1);

/// Serves a `publish` frame of a connected client; returns the reply (`published` or `error`).
pub(crate) async fn publish(
    gw: &Gateway,
    identity: &Identity,
    actions: &mut Actions,
    id: Option<u64>,
    event: &str,
    data: String,
) -> String {
    let m = &gw.metrics.actions;
    let settings = &gw.settings.client_publish;
    if data.len() > settings.max_bytes {
        m.publish_too_large.increment(1);
        return frames::encode_error(id, ErrorCode::LimitExceeded, "publish too large");
    }
    let Some(bucket) = actions.publish.as_mut() else {
        m.publish_forbidden.increment(1);
        return frames::encode_error(id, ErrorCode::Forbidden, "client publish is off");
    };
    if !bucket.take(tokio::time::Instant::now()) {
        m.publish_rate_limited.increment(1);
        return frames::encode_error(id, ErrorCode::LimitExceeded, "too many publishes");
    }
    let Some(kind) = identity.grants().publish_kind(event) else {
        m.publish_forbidden.increment(1);
        return frames::encode_error(id, ErrorCode::Forbidden, "publish not allowed");
    };
    let prefix = match (kind, &gw.history) {
        (PublishKind::Ephemeral, Some(_)) => gw.settings.history.live_prefix(&gw.settings.nats.subject_prefix),
        _ => gw.settings.nats.subject_prefix.clone(),
    };
    let subject = format!("{prefix}.{event}");
    let headers = sender::publish_headers(identity, &actions.client);
    let sent = crate::node::nats::is_connected(&gw.nats)
        && matches!(
            tokio::time::timeout(PUBLISH_WAIT, gw.nats.publish_with_headers(subject, headers, data.into())).await,
            Ok(Ok(()))
        );
    if sent {
        m.publish_ok.increment(1);
        frames::encode_published(id)
    } else {
        m.publish_failed.increment(1);
        frames::encode_error(id, ErrorCode::Internal, "publish failed, try again")
    }
}
