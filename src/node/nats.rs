//! The node's one NATS connection: built once at start-up (never per actix worker), reconnecting forever.
//!
//! State changes are logged and mirrored into the `telegraphy_nats_connected` gauge; async-nats'
//! `SlowConsumer` events (a node subscription's channel overflowed and messages were lost) are counted.

use std::{sync::Arc, time::Duration};

use async_nats::{jetstream, Client, ConnectOptions, Event};

use crate::{config::Settings, node::metrics::Metrics};

/// Any underlying error kept as the `source` of ours (async-nats has one type per operation).
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum NatsError {
    #[error("cannot connect to NATS at {url}: {source}")]
    Connect { url: String, source: async_nats::ConnectError },
    #[error("bad NATS url {url:?}: {source}")]
    Url { url: String, source: std::io::Error },
    #[error("JetStream key-value bucket {bucket}: {source}")]
    Bucket { bucket: String, source: BoxError },
}

/// Connects for a long-running gateway: returns at once and keeps retrying in the background, so the gateway
/// starts (not ready) while NATS is down.
/// `reconnects` is bumped on every (re)connect and on every slow-consumer report: either may mean that core
/// messages were lost, which node subscriptions then heal from history.
pub async fn connect(
    settings: &Settings,
    metrics: Arc<Metrics>,
    reconnects: Arc<tokio::sync::watch::Sender<u64>>,
) -> Result<Client, NatsError> {
    let url = settings.nats.url.clone();
    let node = settings.node.name.clone();
    let options = ConnectOptions::new()
        .name(format!("telegraphy-gateway {node}"))
        .retry_on_initial_connect()
        .max_reconnects(None)
        .subscription_capacity(settings.nats.subscription_capacity)
        .event_callback(move |event| {
            let metrics = metrics.clone();
            let reconnects = reconnects.clone();
            async move {
                match event {
                    Event::Connected => {
                        metrics.nats_connected.set(1.0);
                        metrics.nats_connects.increment(1);
                        tracing::info!("NATS connected");
                        reconnects.send_modify(|n| *n += 1);
                    }
                    Event::Disconnected => {
                        metrics.nats_connected.set(0.0);
                        tracing::warn!("NATS disconnected; reconnecting");
                    }
                    Event::SlowConsumer(sid) => {
                        metrics.nats_slow_consumers.increment(1);
                        tracing::warn!(
                            sid,
                            "NATS slow consumer: a node subscription lost messages; healing from history"
                        );
                        reconnects.send_modify(|n| *n += 1);
                    }
                    Event::Closed => {
                        metrics.nats_connected.set(0.0);
                        tracing::warn!("NATS connection closed");
                    }
                    other => tracing::info!(event = %other, "NATS event"),
                }
            }
        });
    let addrs = server_addrs(&url)?;
    with_url_credentials(options, &addrs)
        .connect(addrs)
        .await
        .map_err(|source| NatsError::Connect { url: redact_url(&url), source })
}

/// `nats.url` may list several servers separated by commas.
fn server_addrs(url: &str) -> Result<Vec<async_nats::ServerAddr>, NatsError> {
    url.split(',')
        .map(|u| u.trim().parse::<async_nats::ServerAddr>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| NatsError::Url { url: redact_url(url), source })
}

/// async-nats does not log in with credentials written in the URL: the first server that carries
/// `user:password@` (or `token@`) gives them, as the other NATS clients do (nats-py, nats.go).
fn with_url_credentials(options: ConnectOptions, addrs: &[async_nats::ServerAddr]) -> ConnectOptions {
    let decode = |s: &str| percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned();
    match addrs.iter().find_map(|a| a.username().map(|user| (user, a.password()))) {
        Some((user, Some(password))) => options.user_and_password(decode(user), decode(password)),
        Some((token, None)) => options.token(decode(token)),
        None => options,
    }
}

/// Connects once for a short command (token minting): fails fast instead of retrying.
pub async fn connect_once(url: &str) -> Result<Client, NatsError> {
    let addrs = server_addrs(url)?;
    with_url_credentials(ConnectOptions::new().connection_timeout(Duration::from_secs(5)), &addrs)
        .connect(addrs)
        .await
        .map_err(|source| NatsError::Connect { url: redact_url(url), source })
}

/// `nats.url` with every server's credentials (`user:password@`, `token@`) replaced by `***@`, for messages
/// and logs: the deployment puts per-role NATS users in the URL.
pub fn redact_url(url: &str) -> String {
    url.split(',')
        .map(|u| {
            let (scheme, rest) = u.split_once("://").unwrap_or(("", u));
            let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
            let sep = if scheme.is_empty() && !u.contains("://") { "" } else { "://" };
            match rest[..authority_end].rfind('@') {
                Some(at) => format!("{scheme}{sep}***@{}", &rest[at + 1..]),
                None => u.to_string(),
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

pub fn is_connected(client: &Client) -> bool {
    client.connection_state() == async_nats::connection::State::Connected
}

/// Returns the bucket, creating it with `max_age`, history 1 and `replicas` when it does not exist yet.
/// Only a "stream not found" answer leads to a create: a timeout (no JetStream leader during an election) is
/// returned as it is, for the caller to retry.
pub async fn key_value(
    client: &Client,
    bucket: &str,
    max_age: Duration,
    replicas: usize,
) -> Result<jetstream::kv::Store, NatsError> {
    let js = jetstream::new(client.clone());
    let err = |e: jetstream::context::KeyValueError| NatsError::Bucket { bucket: bucket.to_string(), source: e.into() };
    let get_err = match js.get_key_value(bucket).await {
        Ok(store) => return Ok(store),
        Err(e) if is_bucket_missing(&e) => e,
        Err(e) => return Err(err(e)),
    };
    let created = js
        .create_key_value(jetstream::kv::Config {
            bucket: bucket.to_string(),
            history: 1,
            max_age,
            num_replicas: replicas,
            ..Default::default()
        })
        .await;
    match created {
        Ok(store) => Ok(store),
        // Another node or the backend created it in between.
        Err(_) => js.get_key_value(bucket).await.map_err(|_| err(get_err)),
    }
}

/// Did JetStream answer that the bucket's stream does not exist (as opposed to not answering at all)?
pub(crate) fn is_bucket_missing(e: &jetstream::context::KeyValueError) -> bool {
    use std::error::Error as _;
    e.kind() == jetstream::context::KeyValueErrorKind::GetBucket
        && e.source().and_then(|s| s.downcast_ref::<jetstream::context::GetStreamError>()).is_some_and(|s| {
            matches!(s.kind(), jetstream::context::GetStreamErrorKind::JetStream(j)
                if j.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND)
        })
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::{redact_url, server_addrs, NatsError};

    #[test]
    fn a_bad_url_keeps_the_parse_error_as_source() {
        let e = server_addrs("nats://[::1").unwrap_err();
        assert!(matches!(e, NatsError::Url { .. }));
        let source = e.source().expect("source");
        assert!(source.downcast_ref::<std::io::Error>().is_some(), "{source:?}");
        assert_eq!(e.to_string(), format!("bad NATS url \"nats://[::1\": {source}"));
    }

    #[test]
    fn a_bucket_error_keeps_the_jetstream_error_as_source() {
        use async_nats::jetstream::kv::{PutError, PutErrorKind};
        let e = NatsError::Bucket { bucket: "tokens".into(), source: PutError::new(PutErrorKind::Publish).into() };
        let source = e.source().expect("source");
        assert_eq!(source.downcast_ref::<PutError>().map(|p| p.kind()), Some(PutErrorKind::Publish));
        assert_eq!(e.to_string(), format!("JetStream key-value bucket tokens: {source}"));
    }

    #[test]
    fn urls_lose_their_credentials() {
        assert_eq!(redact_url("nats://gw:s3cret@nats:4222"), "nats://***@nats:4222");
        assert_eq!(redact_url("nats://t0ken@a:4222, tls://u:p@ss@b:4222"), "nats://***@a:4222, tls://***@b:4222");
        assert_eq!(redact_url("u:pw@host:4222"), "***@host:4222");
        assert_eq!(redact_url("nats://127.0.0.1:4222"), "nats://127.0.0.1:4222");
    }
}
