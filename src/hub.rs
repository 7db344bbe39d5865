//! Fan-out: one core NATS subscription per distinct pattern on this node, shared by all its connections.
//!
//! The first connection subscribing to a pattern makes the node subscribe to `<prefix>.<pattern>`; the last
//! one leaving drops that subscription (reference counting by the receiver list). Each node subscription
//! has its own task on the multi-thread runtime. The hot path, per NATS message:
//! check the payload once -> encode the event frame once -> clone the `ByteString` (a refcount) into each
//! receiver's bounded [`Outbox`]. It never awaits a socket and takes no global lock: only the pattern's own
//! read lock while pushing. With history on, node subscriptions use the stream's re-publish subjects, so frames
//! carry `seq` and `epoch`; a subscription recovering history holds its frames until [`Hub::go_live`]. After a
//! NATS reconnect each node subscription heals its own gap from the stream (core NATS drops what was in flight),
//! so clients whose sockets stayed open still get every event once.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, RwLock},
};

use bytestring::ByteString;
use futures_util::StreamExt;
use serde_json::value::RawValue;
use tokio::{runtime::Handle, sync::watch, task::JoinHandle};

use crate::{
    frames::{self, close},
    history::{self, History, Recovery},
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
    /// Bumped when NATS reconnects or reports lost messages: node subscriptions then heal from history.
    reconnects: watch::Receiver<u64>,
}

/// How the hub is wired.
pub struct HubConfig {
    /// Subject prefix the node subscribes under (no trailing dot).
    pub subscribe_prefix: String,
    pub max_event_bytes: usize,
    pub history: Option<Arc<History>>,
    pub max_pending: usize,
    pub reconnects: watch::Receiver<u64>,
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
            reconnects: config.reconnects,
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
        let mut reconnects = self.reconnects.clone();
        reconnects.borrow_and_update(); // only reconnects from now on matter to this subscription
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
                client: self.client.clone(),
            },
            reconnects,
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
    client: async_nats::Client,
}

/// The node subscription's own history position, to heal gaps after a NATS reconnect.
#[derive(Default)]
struct Track {
    /// Last (epoch, seq) delivered or known as the start.
    last: Option<(Arc<str>, u64)>,
    /// Live messages at or below this were already delivered by a heal.
    skip_through: u64,
}

impl Track {
    fn seen(&mut self, epoch: Option<Arc<str>>, seq: u64) {
        let Some(epoch) = epoch else { return };
        match &mut self.last {
            Some((e, s)) if *e == epoch => *s = (*s).max(seq),
            last => {
                *last = Some((epoch, seq));
                self.skip_through = 0;
            }
        }
    }
}

async fn fan_out(mut subscriber: async_nats::Subscriber, ctx: FanOut, mut reconnects: watch::Receiver<u64>) {
    let mut track = Track::default();
    if let Some(history) = &ctx.history {
        // Where this node subscription starts, so a later gap can be healed from there.
        let _ = tokio::time::timeout(HEAL_WAIT, ctx.client.flush()).await;
        if let Ok(position) = history.position().await {
            track.seen(history.epoch(), position.last_seq);
        }
    }
    let mut watching = true;
    loop {
        tokio::select! {
            message = subscriber.next() => {
                let Some(message) = message else { break };
                ctx.metrics.events_in.increment(1);
                let seq = history::sequence_of(&message);
                if seq.is_some_and(|s| s <= track.skip_through) {
                    continue; // already delivered when healing
                }
                let name = message.subject.as_str().get(ctx.prefix_len..).unwrap_or_default();
                if let Some(frame) = encode(&ctx, name, &message.payload, seq) {
                    ctx.deliver(seq.unwrap_or(0), frame);
                }
                if let Some(seq) = seq {
                    track.seen(ctx.history.as_ref().and_then(|h| h.epoch()), seq);
                }
            }
            changed = reconnects.changed(), if watching => match changed {
                Ok(()) => ctx.heal(&mut track).await,
                Err(_) => watching = false,
            },
        }
    }
}

/// Bound on one wait of the healing path.
const HEAL_WAIT: std::time::Duration = std::time::Duration::from_secs(5);
/// How long a node subscription keeps trying to heal after a reconnect before it gives up.
const HEAL_TRIES: u32 = 10;

impl FanOut {
    /// Queues one frame to every receiver (or holds it for a recovering one).
    fn deliver(&self, seq: u64, frame: ByteString) {
        let mut queued = 0u64;
        let mut too_slow = 0u64;
        {
            let receivers = self.receivers.read().expect("receivers lock");
            for receiver in receivers.iter() {
                if let Some(pending) = &receiver.pending {
                    let mut pending = pending.lock().expect("pending lock");
                    if pending.len() < self.max_pending {
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
        self.metrics.frames_out.increment(queued);
        if too_slow > 0 {
            self.metrics.slow_disconnects.increment(too_slow);
        }
    }

    /// After NATS reconnected (or reported lost messages), delivers the stored events this node subscription
    /// may have missed meanwhile. If they cannot be recovered, its connections are closed with 1012 so each
    /// client recovers (or learns `recovered:false`) on its own.
    async fn heal(&self, track: &mut Track) {
        let (Some(history), Some((epoch, last))) = (&self.history, track.last.clone()) else { return };
        for attempt in 1..=HEAL_TRIES {
            // The re-subscription reaches the server before the stored range is read: nothing falls between.
            let _ = tokio::time::timeout(HEAL_WAIT, self.client.flush()).await;
            match history.recover(&self.pattern, &epoch, last, history.max_heal()).await {
                Ok((Recovery::Complete(events), _)) => {
                    if !events.is_empty() {
                        tracing::info!(pattern = %self.pattern, events = events.len(), "healed a gap after NATS reconnect");
                    }
                    for event in events {
                        if let Some(frame) = encode(self, &event.name, &event.payload, Some(event.seq)) {
                            self.deliver(event.seq, frame);
                        }
                        track.skip_through = track.skip_through.max(event.seq);
                        track.seen(Some(epoch.clone()), event.seq);
                    }
                    return;
                }
                Ok((Recovery::Lost(why), position)) => {
                    tracing::warn!(pattern = %self.pattern, why, "cannot heal the gap; closing its connections (1012)");
                    self.close_all("resync");
                    track.last = history.epoch().map(|e| (e, position.last_seq));
                    track.skip_through = 0;
                    return;
                }
                Err(e) => {
                    tracing::debug!(pattern = %self.pattern, attempt, error = %e, "history not reachable yet to heal");
                    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                }
            }
        }
        tracing::warn!(pattern = %self.pattern, "history unreachable after reconnect; closing its connections (1012)");
        self.close_all("resync");
    }

    fn close_all(&self, reason: &'static str) {
        for receiver in self.receivers.read().expect("receivers lock").iter() {
            receiver.outbox.control().close(close::RESTART, reason);
        }
    }
}

/// Checks one event and encodes its frame (with `seq`/`epoch` when known), or counts why it is dropped.
fn encode(ctx: &FanOut, name: &str, payload: &[u8], seq: Option<u64>) -> Option<ByteString> {
    let metrics = &ctx.metrics;
    if names::validate_name(name).is_err() {
        metrics.events_dropped_bad_name.increment(1);
        log_dropped("bad name", name);
        return None;
    }
    if payload.len() > ctx.max_event_bytes {
        metrics.events_dropped_too_big.increment(1);
        log_dropped("payload too big", name);
        return None;
    }
    let data: &RawValue = match serde_json::from_slice(payload) {
        Ok(data) => data,
        Err(_) => {
            metrics.events_dropped_not_json.increment(1);
            log_dropped("payload is not JSON", name);
            return None;
        }
    };
    let epoch = ctx.history.as_ref().and_then(|h| h.epoch());
    Some(match (seq, epoch) {
        (Some(seq), Some(epoch)) => ByteString::from(frames::encode_event_at(&ctx.pattern, name, data, seq, &epoch)),
        _ => ByteString::from(frames::encode_event(&ctx.pattern, name, data)),
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
