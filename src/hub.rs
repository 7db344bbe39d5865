//! Fan-out: one core NATS subscription per distinct pattern on this node, shared by all its connections.
//!
//! The first connection subscribing to a pattern makes the node subscribe to `<prefix>.<pattern>`; the last
//! one leaving drops that subscription (reference counting by the receiver list). Each node subscription
//! has its own task on the multi-thread runtime. The hot path, per NATS message:
//! check the payload once -> encode the event frame once -> clone the `ByteString` (a refcount) into each
//! receiver's bounded [`Outbox`]. It never awaits a socket and takes no global lock: only the pattern's own
//! read lock while pushing. With history on, node subscriptions use the stream's re-publish subjects, so frames
//! carry `seq` and `epoch`; a subscription recovering history holds its frames until [`Hub::go_live`].

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, RwLock},
};

use bytestring::ByteString;
use futures_util::StreamExt;
use serde_json::value::RawValue;
use tokio::{runtime::Handle, task::JoinHandle};

use crate::{
    frames::{self, close},
    history::{self, History},
    names,
    metrics::Metrics,
    outbox::{Outbox, Push},
};

pub type ConnId = u64;

#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error("NATS subscribe failed: {0}")]
    Subscribe(#[from] async_nats::SubscribeError),
}

/// A connection receiving a pattern's frames. While `pending` is set (the subscription is recovering
/// history), frames are held there with their sequence instead of being queued; see [`Hub::go_live`].
struct Receiver {
    conn: ConnId,
    outbox: Outbox,
    pending: Option<Mutex<Vec<(u64, ByteString)>>>,
}

type Receivers = RwLock<Vec<Receiver>>;

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
    /// Where node subscriptions go, with the trailing dot: `<subject_prefix>.`, or `<live_prefix>.` when history
    /// is on (the stream re-publishes there with sequences).
    prefix: String,
    patterns: tokio::sync::Mutex<HashMap<String, PatternEntry>>,
    metrics: Arc<Metrics>,
    runtime: Handle,
    max_event_bytes: usize,
    history: Option<Arc<History>>,
    /// Most frames held for one recovering subscription before the connection counts as too slow.
    max_pending: usize,
}

/// How the hub is wired.
pub struct HubConfig {
    /// Subject prefix the node subscribes under (no trailing dot).
    pub subscribe_prefix: String,
    pub max_event_bytes: usize,
    pub history: Option<Arc<History>>,
    pub max_pending: usize,
}

impl Hub {
    /// `runtime` is where the per-pattern tasks run (the multi-thread runtime, not an actix worker).
    pub fn new(client: async_nats::Client, config: HubConfig, metrics: Arc<Metrics>, runtime: Handle) -> Self {
        Hub {
            client,
            prefix: format!("{}.", config.subscribe_prefix),
            patterns: tokio::sync::Mutex::new(HashMap::new()),
            metrics,
            runtime,
            max_event_bytes: config.max_event_bytes,
            history: config.history,
            max_pending: config.max_pending,
        }
    }

    /// Adds `conn` as a receiver of `pattern` (idempotent per connection and pattern). With `hold`, frames are
    /// held until [`Hub::go_live`] (used while history is replayed).
    pub async fn subscribe(&self, pattern: &str, conn: ConnId, outbox: &Outbox, hold: bool) -> Result<(), HubError> {
        let receiver = || Receiver { conn, outbox: outbox.clone(), pending: hold.then(|| Mutex::new(Vec::new())) };
        let mut patterns = self.patterns.lock().await;
        if let Some(entry) = patterns.get(pattern) {
            let mut receivers = entry.receivers.write().expect("receivers lock");
            match receivers.iter_mut().find(|r| r.conn == conn) {
                Some(existing) if hold => *existing = receiver(),
                Some(_) => {}
                None => receivers.push(receiver()),
            }
            return Ok(());
        }
        let subscriber = self.client.subscribe(format!("{}{}", self.prefix, pattern)).await?;
        let receivers: Arc<Receivers> = Arc::new(RwLock::new(vec![receiver()]));
        let task = self.runtime.spawn(fan_out(
            subscriber,
            FanOut {
                pattern: Arc::from(pattern),
                prefix_len: self.prefix.len(),
                receivers: receivers.clone(),
                metrics: self.metrics.clone(),
                max_event_bytes: self.max_event_bytes,
                history: self.history.clone(),
                max_pending: self.max_pending,
            },
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
                receivers.retain(|r| r.conn != conn);
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

    /// Ends the hold of `conn` on `pattern`: queues the held frames whose sequence is above `replayed_through`
    /// (those at or below it were part of the replay), then lets frames flow straight to the outbox. Atomic with
    /// respect to the fan-out (done under the pattern's write lock): nothing is lost or sent twice.
    pub async fn go_live(&self, pattern: &str, conn: ConnId, replayed_through: Option<u64>) {
        let patterns = self.patterns.lock().await;
        let Some(entry) = patterns.get(pattern) else { return };
        let mut receivers = entry.receivers.write().expect("receivers lock");
        let Some(receiver) = receivers.iter_mut().find(|r| r.conn == conn) else { return };
        let Some(pending) = receiver.pending.take() else { return };
        let held = pending.into_inner().unwrap_or_else(|p| p.into_inner());
        let mut queued = 0;
        for (seq, frame) in held {
            if replayed_through.is_some_and(|through| seq <= through) {
                continue;
            }
            match receiver.outbox.push(frame) {
                Push::Queued => queued += 1,
                Push::TooSlow => {
                    self.metrics.slow_disconnects.increment(1);
                    break;
                }
                Push::Gone => break,
            }
        }
        self.metrics.frames_out.increment(queued);
    }
}

/// What one node subscription's task needs.
struct FanOut {
    pattern: Arc<str>,
    prefix_len: usize,
    receivers: Arc<Receivers>,
    metrics: Arc<Metrics>,
    max_event_bytes: usize,
    history: Option<Arc<History>>,
    max_pending: usize,
}

async fn fan_out(mut subscriber: async_nats::Subscriber, ctx: FanOut) {
    while let Some(message) = subscriber.next().await {
        ctx.metrics.events_in.increment(1);
        let Some((seq, frame)) = encode(&ctx, &message) else {
            continue;
        };
        let mut queued = 0u64;
        let mut too_slow = 0u64;
        {
            let receivers = ctx.receivers.read().expect("receivers lock");
            for receiver in receivers.iter() {
                if let Some(pending) = &receiver.pending {
                    let mut pending = pending.lock().expect("pending lock");
                    if pending.len() < ctx.max_pending {
                        pending.push((seq, frame.clone()));
                    } else if receiver.outbox.control().close(close::TOO_SLOW, "too slow") {
                        too_slow += 1;
                    }
                    continue;
                }
                match receiver.outbox.push(frame.clone()) {
                    Push::Queued => queued += 1,
                    Push::TooSlow => too_slow += 1,
                    Push::Gone => {}
                }
            }
        }
        ctx.metrics.frames_out.increment(queued);
        if too_slow > 0 {
            ctx.metrics.slow_disconnects.increment(too_slow);
        }
    }
}

/// Checks one NATS message and encodes its event frame (with `seq`/`epoch` when history is on), or counts why
/// it is dropped. Returns the stream sequence (0 without history) and the frame.
fn encode(ctx: &FanOut, message: &async_nats::Message) -> Option<(u64, ByteString)> {
    let metrics = &ctx.metrics;
    let name = message.subject.as_str().get(ctx.prefix_len..).unwrap_or_default();
    if names::validate_name(name).is_err() {
        metrics.events_dropped_bad_name.increment(1);
        log_dropped("bad name", name);
        return None;
    }
    if message.payload.len() > ctx.max_event_bytes {
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
    let position = ctx.history.as_ref().and_then(|h| Some((history::sequence_of(message)?, h.epoch()?)));
    Some(match position {
        Some((seq, epoch)) => (seq, ByteString::from(frames::encode_event_at(&ctx.pattern, name, data, seq, &epoch))),
        None => (0, ByteString::from(frames::encode_event(&ctx.pattern, name, data))),
    })
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
