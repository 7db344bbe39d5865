//! Fan-out: one core NATS subscription per distinct pattern on this node, shared by all its connections.
//!
//! The first connection subscribing to a pattern makes the node subscribe to `<prefix>.<pattern>`; the last
//! one leaving drops that subscription (reference counting by the receiver list). Each node subscription
//! has its own task on the multi-thread runtime. The hot path, per NATS message:
//! check the payload once -> (parse its JSON once, only when some receiver filters) -> per group of receivers
//! sharing a subscription name and filter: evaluate the filter once, encode the event frame once -> clone the
//! [`Frame`] (a refcount on its text) into each receiver's bounded [`Outbox`]. It never awaits a socket and takes no global lock: only the pattern's own
//! read lock while pushing. With history on, node subscriptions use the stream's re-publish subjects, so frames
//! carry `seq` and `epoch`; a subscription recovering history holds its frames until [`Hub::go_live`]. After a
//! NATS reconnect each node subscription heals its own gap from the stream (core NATS drops what was in flight),
//! so clients whose sockets stayed open still get every event once.

use std::{
    collections::HashMap,
    hash::{BuildHasher, RandomState},
    sync::{Arc, Mutex, RwLock},
    time::Duration,
};

use bytestring::ByteString;
use futures_util::StreamExt;
use tokio::{runtime::Handle, sync::watch, task::JoinHandle};

use crate::{
    node::history::{self, History, Recovery},
    node::metrics::Metrics,
    node::outbox::{Frame, Outbox, Push},
    node::render::Checked,
    node::wakes::Wakes,
    protocol::filter::Filter,
    protocol::frames::{self, close},
};

pub type ConnId = u64;

#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error("NATS subscribe failed: {0}")]
    Subscribe(#[from] async_nats::SubscribeError),
    #[error("NATS subscribe timed out (NATS unreachable and the client's command queue full)")]
    Timeout,
}

/// How long a node subscribe may wait to hand its SUB to the NATS client (it waits only when NATS is down and
/// the client's command queue is full).
const SUBSCRIBE_WAIT: Duration = Duration::from_secs(5);

/// How long a new node subscription waits for the NATS server to confirm it (see [`Hub::sync`]).
const SYNC_WAIT: Duration = Duration::from_secs(5);

/// A connection receiving a pattern's frames under one subscription name. While `pending` is set (the
/// subscription is recovering history), frames are held there with their sequence instead of being queued;
/// see [`Hub::go_live`].
struct Receiver {
    conn: ConnId,
    outbox: Outbox,
    pending: Option<Mutex<Vec<(u64, Frame)>>>,
}

/// The receivers of a pattern that get the very same frames: same subscription name (the frame's `sub`) and
/// the same filter (by canonical text).
struct Group {
    name: Arc<str>,
    filter: Option<Arc<Filter>>,
    canonical: String,
    receivers: Vec<Receiver>,
}

impl Group {
    fn is(&self, name: &str, canonical: &str) -> bool {
        &*self.name == name && self.canonical == canonical
    }
}

type Groups = RwLock<Vec<Group>>;

/// Who subscribes: a connection's named subscription, with its optional filter.
pub struct Subscription<'a> {
    pub conn: ConnId,
    pub name: &'a str,
    pub filter: Option<Arc<Filter>>,
    pub outbox: &'a Outbox,
}

struct PatternEntry {
    groups: Arc<Groups>,
    task: JoinHandle<()>,
}

impl Drop for PatternEntry {
    fn drop(&mut self) {
        // Dropping the task drops its `Subscriber`, which unsubscribes from NATS.
        self.task.abort();
    }
}

/// One pattern's place in the hub. Its async lock is held while the node subscribes to NATS for that pattern
/// (so concurrent subscribers of the same pattern wait for the one NATS subscription), never across patterns.
type Slot = Arc<tokio::sync::Mutex<Option<PatternEntry>>>;

pub struct Hub {
    client: async_nats::Client,
    /// Where node subscriptions go, with the trailing dot: `<subject_prefix>.`, or `<live_prefix>.` when history
    /// is on (the stream re-publishes there with sequences).
    prefix: String,
    /// Pattern -> slot. This map's lock is only taken briefly, never across an await.
    patterns: Mutex<HashMap<String, Slot>>,
    /// Node subscriptions in place (slots holding an entry).
    active: std::sync::atomic::AtomicUsize,
    metrics: Arc<Metrics>,
    runtime: Handle,
    max_event_bytes: usize,
    history: Option<Arc<History>>,
    /// Most frames held for one recovering subscription before the connection counts as too slow.
    max_pending: usize,
    /// Bumped when NATS reconnects or reports lost messages: node subscriptions then heal from history.
    reconnects: watch::Receiver<u64>,
    position_interval: Option<Duration>,
    /// Subject nobody subscribes to: a request there is answered "no responders" by the server once it has
    /// processed everything sent before it (see [`Hub::sync`]).
    sync_subject: String,
}

/// How the hub is wired.
pub struct HubConfig {
    /// Subject prefix the node subscribes under (no trailing dot).
    pub subscribe_prefix: String,
    pub max_event_bytes: usize,
    pub history: Option<Arc<History>>,
    pub max_pending: usize,
    pub reconnects: watch::Receiver<u64>,
    /// How often each node subscription tries to move its receivers' positions forward (history only).
    pub position_interval: Option<Duration>,
    /// Subject of the round trip confirming a new node subscription (`<subject_prefix>_sync`): nothing may
    /// subscribe to it; the gateway's NATS user needs permission to publish there.
    pub sync_subject: String,
}

impl Hub {
    /// `runtime` is where the per-pattern tasks run (the multi-thread runtime, not an actix worker).
    pub fn new(client: async_nats::Client, config: HubConfig, metrics: Arc<Metrics>, runtime: Handle) -> Self {
        let has_history = config.history.is_some();
        Hub {
            client,
            prefix: format!("{}.", config.subscribe_prefix),
            patterns: Mutex::new(HashMap::new()),
            active: std::sync::atomic::AtomicUsize::new(0),
            metrics,
            runtime,
            max_event_bytes: config.max_event_bytes,
            history: config.history,
            max_pending: config.max_pending,
            reconnects: config.reconnects,
            position_interval: config.position_interval.filter(|_| has_history),
            sync_subject: config.sync_subject,
        }
    }

    /// Adds a connection's named subscription to `pattern` (replacing one of the same connection and name).
    /// With `hold`, frames are held until [`Hub::go_live`] (used while history is replayed).
    pub async fn subscribe(&self, pattern: &str, who: Subscription<'_>, hold: bool) -> Result<(), HubError> {
        let filter = who.filter.filter(|f| !f.is_empty());
        let canonical = filter.as_ref().map(|f| f.canonical().to_string()).unwrap_or_default();
        let receiver =
            Receiver { conn: who.conn, outbox: who.outbox.clone(), pending: hold.then(|| Mutex::new(Vec::new())) };
        let (slot, mut entry) = self.slot(pattern).await;
        if let Some(entry) = entry.as_ref() {
            let mut groups = entry.groups.write().expect("groups lock");
            remove_receiver(&mut groups, who.conn, who.name);
            match groups.iter_mut().find(|g| g.is(who.name, &canonical)) {
                Some(group) => group.receivers.push(receiver),
                None => groups.push(Group { name: Arc::from(who.name), filter, canonical, receivers: vec![receiver] }),
            }
            return Ok(());
        }
        // The first receiver of the pattern: subscribe, holding only this pattern's slot.
        let subject = format!("{}{}", self.prefix, pattern);
        let subscribed = match tokio::time::timeout(SUBSCRIBE_WAIT, self.client.subscribe(subject)).await {
            Ok(Ok(subscriber)) => Ok(subscriber),
            Ok(Err(e)) => Err(HubError::Subscribe(e)),
            Err(_) => Err(HubError::Timeout),
        };
        // Until the server has processed the SUB, an event published meanwhile is not delivered to this node:
        // `subscribed` must not reach the client before then (a client may publish right after it).
        if subscribed.is_ok() {
            self.sync(pattern).await;
        }
        let subscriber = match subscribed {
            Ok(subscriber) => subscriber,
            Err(e) => {
                self.forget(pattern, &slot);
                return Err(e);
            }
        };
        let groups: Arc<Groups> = Arc::new(RwLock::new(vec![Group {
            name: Arc::from(who.name),
            filter,
            canonical,
            receivers: vec![receiver],
        }]));
        let mut reconnects = self.reconnects.clone();
        reconnects.borrow_and_update(); // only reconnects from now on matter to this subscription
        let task = self.runtime.spawn(fan_out(
            subscriber,
            FanOut {
                pattern: Arc::from(pattern),
                prefix_len: self.prefix.len(),
                groups: groups.clone(),
                metrics: self.metrics.clone(),
                max_event_bytes: self.max_event_bytes,
                history: self.history.clone(),
                max_pending: self.max_pending,
                client: self.client.clone(),
            },
            reconnects,
            self.position_interval,
        ));
        *entry = Some(PatternEntry { groups, task });
        let active = self.active.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        self.metrics.nats_subscriptions.set(active as f64);
        tracing::debug!(pattern, "node subscribed");
        Ok(())
    }

    /// One round trip to the NATS server after everything this node sent so far (the SUB): a request to
    /// [`HubConfig::sync_subject`], which the server answers "no responders" in order. (`Client::flush` only
    /// writes the socket; it does not wait for the server.) The interest is then in place on the node's own
    /// NATS server; other servers of a cluster learn it over their routes shortly after.
    ///
    /// Best effort: while NATS is down there is nothing to wait for (the client re-sends its SUBs on reconnect
    /// and history heals the gap); an unanswered request (e.g. no permission to publish to the sync subject)
    /// delays the subscribe by at most [`SYNC_WAIT`] and is logged.
    async fn sync(&self, pattern: &str) {
        if !crate::node::nats::is_connected(&self.client) {
            return;
        }
        let request = self.client.request(self.sync_subject.clone(), bytes::Bytes::new());
        match tokio::time::timeout(SYNC_WAIT, request).await {
            // Something answered: a misconfiguration, but the server did process the SUB first.
            Ok(Ok(_)) => {}
            Ok(Err(e)) if e.kind() == async_nats::RequestErrorKind::NoResponders => {}
            Ok(Err(e)) => tracing::warn!(pattern, error = %e, subject = %self.sync_subject,
                "NATS did not confirm a node subscription (may the gateway publish to the sync subject?)"),
            Err(_) => tracing::warn!(pattern, subject = %self.sync_subject,
                "NATS did not confirm a node subscription in time (may the gateway publish to the sync subject?)"),
        }
    }

    /// Removes a connection's named subscription from `pattern`; the last one leaving unsubscribes the node.
    pub async fn unsubscribe(&self, pattern: &str, conn: ConnId, name: &str) {
        let Some(slot) = self.existing_slot(pattern) else { return };
        let mut entry = slot.lock().await;
        let now_empty = match entry.as_ref() {
            Some(entry) => {
                let mut groups = entry.groups.write().expect("groups lock");
                remove_receiver(&mut groups, conn, name);
                groups.is_empty()
            }
            None => false,
        };
        if now_empty {
            *entry = None; // drops the task, whose `Subscriber` unsubscribes from NATS
            self.forget(pattern, &slot);
            let active = self.active.fetch_sub(1, std::sync::atomic::Ordering::Relaxed) - 1;
            self.metrics.nats_subscriptions.set(active as f64);
            tracing::debug!(pattern, "node unsubscribed");
        }
    }

    /// Number of node-level NATS subscriptions (distinct patterns).
    pub async fn node_subscriptions(&self) -> usize {
        self.active.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The pattern's slot, locked: created when missing. A slot removed from the map while this caller waited
    /// for its lock is stale (its pattern was dropped meanwhile): the caller starts over with the current one.
    async fn slot(&self, pattern: &str) -> (Slot, tokio::sync::OwnedMutexGuard<Option<PatternEntry>>) {
        loop {
            let slot = self.patterns.lock().expect("patterns lock").entry(pattern.to_string()).or_default().clone();
            let guard = slot.clone().lock_owned().await;
            if self.existing_slot(pattern).is_some_and(|current| Arc::ptr_eq(&current, &slot)) {
                return (slot, guard);
            }
        }
    }

    fn existing_slot(&self, pattern: &str) -> Option<Slot> {
        self.patterns.lock().expect("patterns lock").get(pattern).cloned()
    }

    /// Removes `slot` from the map if it is still the pattern's (called with the slot's lock held and no entry).
    fn forget(&self, pattern: &str, slot: &Slot) {
        let mut patterns = self.patterns.lock().expect("patterns lock");
        if patterns.get(pattern).is_some_and(|current| Arc::ptr_eq(current, slot)) {
            patterns.remove(pattern);
        }
    }

    /// Ends the hold of `conn` on `pattern`: queues the held frames whose sequence is above `replayed_through`
    /// (those at or below it were part of the replay), then lets frames flow straight to the outbox. Atomic with
    /// respect to the fan-out (done under the pattern's write lock): nothing is lost or sent twice.
    pub async fn go_live(&self, pattern: &str, conn: ConnId, name: &str, replayed_through: Option<u64>) {
        let Some(slot) = self.existing_slot(pattern) else { return };
        let entry = slot.lock().await;
        let Some(entry) = entry.as_ref() else { return };
        let mut groups = entry.groups.write().expect("groups lock");
        let Some(receiver) = groups
            .iter_mut()
            .filter(|g| &*g.name == name)
            .flat_map(|g| g.receivers.iter_mut())
            .find(|r| r.conn == conn)
        else {
            return;
        };
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

/// Takes the receiver (conn, name) out of whichever group holds it; drops groups left empty.
fn remove_receiver(groups: &mut Vec<Group>, conn: ConnId, name: &str) {
    for group in groups.iter_mut().filter(|g| &*g.name == name) {
        group.receivers.retain(|r| r.conn != conn);
    }
    groups.retain(|g| !g.receivers.is_empty());
}

/// What one node subscription's task needs.
struct FanOut {
    pattern: Arc<str>,
    prefix_len: usize,
    groups: Arc<Groups>,
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

async fn fan_out(
    mut subscriber: async_nats::Subscriber,
    ctx: FanOut,
    mut reconnects: watch::Receiver<u64>,
    position_interval: Option<Duration>,
) {
    let mut track = Track::default();
    let mut positions = position_interval.map(|every| {
        // A random phase spreads the node subscriptions' requests over the interval.
        let phase = every.mul_f64((RandomState::new().hash_one(&*ctx.pattern) % 1000) as f64 / 1000.0);
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + every + phase, every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker
    });
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
                // A client publish's sender, decided once per message (section 13.1).
                let from = crate::protocol::sender::from_of(message.headers.as_ref());
                ctx.deliver(name, &message.payload, seq, from.as_deref());
                if let Some(seq) = seq {
                    track.seen(ctx.history.as_ref().and_then(|h| h.epoch()), seq);
                }
            }
            changed = reconnects.changed(), if watching => match changed {
                Ok(()) => ctx.heal(&mut track).await,
                Err(_) => watching = false,
            },
            _ = next_tick(&mut positions) => ctx.advance(&mut track).await,
        }
    }
}

async fn next_tick(ticker: &mut Option<tokio::time::Interval>) {
    match ticker {
        Some(ticker) => {
            ticker.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// Frames queued by one fan-out round, and connections it found too slow (closed 4008 by their outbox).
#[derive(Default)]
struct Queued {
    queued: u64,
    too_slow: u64,
    /// The writers to wake for the round, one hand-over per worker thread ([`crate::node::wakes`]).
    wakes: Wakes,
}

impl Queued {
    fn push(&mut self, outbox: &Outbox, frame: &Frame) {
        match outbox.push_batched(frame.clone(), &mut self.wakes) {
            Push::Queued => self.queued += 1,
            Push::TooSlow => self.too_slow += 1,
            Push::Gone => {}
        }
    }

    fn record(mut self, metrics: &Metrics, frames: &metrics::Counter) {
        self.wakes.flush();
        frames.increment(self.queued);
        if self.too_slow > 0 {
            metrics.slow_disconnects.increment(self.too_slow);
        }
    }
}

/// Bound on one wait of the healing path.
const HEAL_WAIT: std::time::Duration = std::time::Duration::from_secs(5);
/// How long a node subscription keeps trying to heal after a reconnect before it gives up.
const HEAL_TRIES: u32 = 10;

impl FanOut {
    /// Checks one event, then per group: filter, encode once, queue to every receiver (or hold the frame for a
    /// recovering one).
    fn deliver(&self, name: &str, payload: &[u8], seq: Option<u64>, from: Option<&str>) {
        let Some(event) = Checked::new(&self.metrics, name, payload, from, self.max_event_bytes) else { return };
        let epoch = self.history.as_ref().and_then(|h| h.epoch());
        let at = seq.zip(epoch.as_deref());
        let mut count = Queued::default();
        {
            let groups = self.groups.read().expect("groups lock");
            for group in groups.iter() {
                let Some(frame) = event.render(&group.name, group.filter.as_deref(), at) else { continue };
                for receiver in &group.receivers {
                    if let Some(pending) = &receiver.pending {
                        let mut pending = pending.lock().expect("pending lock");
                        if pending.len() < self.max_pending {
                            pending.push((seq.unwrap_or(0), frame.clone()));
                        } else if receiver.outbox.control().close(close::TOO_SLOW, "too slow") {
                            count.too_slow += 1;
                        }
                        continue;
                    }
                    count.push(&receiver.outbox, &frame);
                }
            }
        }
        count.record(&self.metrics, &self.metrics.frames_out);
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
                        self.metrics.healed_events.increment(events.len() as u64);
                    }
                    for event in events {
                        self.deliver(&event.name, &event.payload, Some(event.seq), event.from.as_deref());
                        track.skip_through = track.skip_through.max(event.seq);
                        track.seen(Some(epoch.clone()), event.seq);
                    }
                    return;
                }
                Ok((lost, position)) => {
                    let why = lost.why();
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

    /// Moves quiet subscriptions' resume positions forward. When no stored event matching the pattern lies
    /// between what this task has handled and the stream's last sequence `L` (read first), every live receiver
    /// has been queued every matching event up to `L`: a `position` frame to `L` says so, queued after them and
    /// before any later event. Otherwise (an event is on its way to this task) it waits for the next tick.
    /// Receivers still recovering history are skipped. Two JetStream requests per tick and node subscription.
    async fn advance(&self, track: &mut Track) {
        let (Some(history), Some((epoch, done))) = (&self.history, track.last.clone()) else { return };
        let Ok(position) = history.position().await else { return };
        if position.epoch != *epoch || position.last_seq <= done {
            return;
        }
        match history.next_stored(&self.pattern, done + 1).await {
            Ok(Some(seq)) if seq <= position.last_seq => return,
            Ok(_) => {}
            Err(e) => {
                tracing::debug!(pattern = %self.pattern, error = %e, "position check failed");
                return;
            }
        }
        track.seen(Some(epoch.clone()), position.last_seq);
        let mut count = Queued::default();
        for group in self.groups.read().expect("groups lock").iter() {
            let (text, span) = frames::encode_position_spanned(&group.name, &epoch, position.last_seq);
            let frame = Frame::new(ByteString::from(text), span);
            for receiver in group.receivers.iter().filter(|r| r.pending.is_none()) {
                count.push(&receiver.outbox, &frame);
            }
        }
        count.record(&self.metrics, &self.metrics.positions_out);
    }

    fn close_all(&self, reason: &'static str) {
        for group in self.groups.read().expect("groups lock").iter() {
            for receiver in &group.receivers {
                receiver.outbox.control().close(close::RESTART, reason);
            }
        }
    }
}
