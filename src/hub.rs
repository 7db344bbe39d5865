//! Fan-out: one core NATS subscription per distinct pattern on this node, shared by all its connections.
//!
//! The first connection subscribing to a pattern makes the node subscribe to `<prefix>.<pattern>`; the last
//! one leaving drops that subscription (reference counting by the receiver list). Each node subscription
//! has its own task on the multi-thread runtime. The hot path, per NATS message:
//! check the payload once -> encode the event frame once -> clone the `ByteString` (a refcount) into each
//! receiver's bounded [`Outbox`]. It never awaits a socket and takes no global lock: only the pattern's own
//! read lock while pushing.

use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
};

use bytestring::ByteString;
use futures_util::StreamExt;
use serde_json::value::RawValue;
use tokio::{runtime::Handle, sync::Mutex, task::JoinHandle};

use crate::{
    frames, names,
    metrics::Metrics,
    outbox::{Outbox, Push},
};

pub type ConnId = u64;

#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error("NATS subscribe failed: {0}")]
    Subscribe(#[from] async_nats::SubscribeError),
}

type Receivers = RwLock<Vec<(ConnId, Outbox)>>;

struct PatternEntry {
    receivers: Arc<Receivers>,
    task: JoinHandle<()>,
}

impl Drop for PatternEntry {
    fn drop(&mut self) {
        // Dropping the task drops its `Subscriber`, which unsubscribes from NATS.
        self.task.abort();
    }
}

pub struct Hub {
    client: async_nats::Client,
    /// `<subject_prefix>.`
    prefix: String,
    patterns: Mutex<HashMap<String, PatternEntry>>,
    metrics: Arc<Metrics>,
    runtime: Handle,
    max_event_bytes: usize,
}

impl Hub {
    /// `runtime` is where the per-pattern tasks run (the multi-thread runtime, not an actix worker).
    pub fn new(
        client: async_nats::Client,
        subject_prefix: &str,
        metrics: Arc<Metrics>,
        runtime: Handle,
        max_event_bytes: usize,
    ) -> Self {
        Hub {
            client,
            prefix: format!("{subject_prefix}."),
            patterns: Mutex::new(HashMap::new()),
            metrics,
            runtime,
            max_event_bytes,
        }
    }

    /// Adds `conn` as a receiver of `pattern` (idempotent per connection and pattern).
    pub async fn subscribe(&self, pattern: &str, conn: ConnId, outbox: &Outbox) -> Result<(), HubError> {
        let mut patterns = self.patterns.lock().await;
        if let Some(entry) = patterns.get(pattern) {
            let mut receivers = entry.receivers.write().expect("receivers lock");
            if !receivers.iter().any(|(id, _)| *id == conn) {
                receivers.push((conn, outbox.clone()));
            }
            return Ok(());
        }
        let subscriber = self.client.subscribe(format!("{}{}", self.prefix, pattern)).await?;
        let receivers: Arc<Receivers> = Arc::new(RwLock::new(vec![(conn, outbox.clone())]));
        let task = self.runtime.spawn(fan_out(
            subscriber,
            Arc::from(pattern),
            self.prefix.len(),
            receivers.clone(),
            self.metrics.clone(),
            self.max_event_bytes,
        ));
        patterns.insert(pattern.to_string(), PatternEntry { receivers, task });
        self.metrics.nats_subscriptions.set(patterns.len() as f64);
        tracing::debug!(pattern, "node subscribed");
        Ok(())
    }

    /// Removes `conn` from `pattern`; the last receiver leaving unsubscribes the node.
    pub async fn unsubscribe(&self, pattern: &str, conn: ConnId) {
        let mut patterns = self.patterns.lock().await;
        let now_empty = match patterns.get(pattern) {
            Some(entry) => {
                let mut receivers = entry.receivers.write().expect("receivers lock");
                receivers.retain(|(id, _)| *id != conn);
                receivers.is_empty()
            }
            None => false,
        };
        if now_empty {
            patterns.remove(pattern);
            self.metrics.nats_subscriptions.set(patterns.len() as f64);
            tracing::debug!(pattern, "node unsubscribed");
        }
    }

    /// Number of node-level NATS subscriptions (distinct patterns).
    pub async fn node_subscriptions(&self) -> usize {
        self.patterns.lock().await.len()
    }
}

async fn fan_out(
    mut subscriber: async_nats::Subscriber,
    pattern: Arc<str>,
    prefix_len: usize,
    receivers: Arc<Receivers>,
    metrics: Arc<Metrics>,
    max_event_bytes: usize,
) {
    while let Some(message) = subscriber.next().await {
        metrics.events_in.increment(1);
        let Some(frame) = encode(&pattern, prefix_len, &message, &metrics, max_event_bytes) else {
            continue;
        };
        let mut queued = 0u64;
        let mut too_slow = 0u64;
        {
            let receivers = receivers.read().expect("receivers lock");
            for (_, outbox) in receivers.iter() {
                match outbox.push(frame.clone()) {
                    Push::Queued => queued += 1,
                    Push::TooSlow => too_slow += 1,
                    Push::Gone => {}
                }
            }
        }
        metrics.frames_out.increment(queued);
        if too_slow > 0 {
            metrics.slow_disconnects.increment(too_slow);
        }
    }
}

/// Checks one NATS message and encodes its event frame, or counts why it is dropped.
fn encode(
    pattern: &str,
    prefix_len: usize,
    message: &async_nats::Message,
    metrics: &Metrics,
    max_event_bytes: usize,
) -> Option<ByteString> {
    let name = message.subject.as_str().get(prefix_len..).unwrap_or_default();
    if names::validate_name(name).is_err() {
        metrics.events_dropped_bad_name.increment(1);
        log_dropped("bad name", name);
        return None;
    }
    if message.payload.len() > max_event_bytes {
        metrics.events_dropped_too_big.increment(1);
        log_dropped("payload too big", name);
        return None;
    }
    let data: &RawValue = match serde_json::from_slice(&message.payload) {
        Ok(data) => data,
        Err(_) => {
            metrics.events_dropped_not_json.increment(1);
            log_dropped("payload is not JSON", name);
            return None;
        }
    };
    Some(ByteString::from(frames::encode_event(pattern, name, data)))
}

/// Logs a dropped event at most about once a second per process, so a bad publisher cannot flood the log.
fn log_dropped(why: &str, name: &str) {
    use std::sync::atomic::{AtomicU64, Ordering};
    static LAST: AtomicU64 = AtomicU64::new(0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    if LAST.swap(now, Ordering::Relaxed) != now {
        tracing::warn!(event = %name.chars().take(255).collect::<String>(), "event dropped: {why} (further drops this second not logged)");
    }
}
