//! Presence (proto/PROTOCOL.md section 11): who is present on a channel, on every replica.
//!
//! Storage is a JetStream KV bucket with one entry per (channel, session): key `<channel>.<client>`, value
//! `{"user":..,"info":..}`. This node puts the entries of its connections when they subscribe with `presence`
//! and re-puts them every `presence.refresh_interval` (one refresher task per node, bounded writes in flight);
//! an entry left alone expires after TTL = 3 intervals.
//!
//! Every node that has presence subscribers holds ONE KV watch on the whole bucket (one consumer per node,
//! whatever the number of channels: per-channel consumers cost the server per put and consumer, see
//! PROTOCOL.md section 11) and mirrors every channel's members in memory, with the time the last put of each
//! arrived: unknown key put = `join`, delete/purge = `leave`, and a member not refreshed for TTL is swept
//! (every second) = `leave`. Events go to the channels' receivers on this node. The server does not tell a
//! watcher when an entry ages out (without limit markers), so the sweep is what bounds a killed node's
//! clients. Snapshots and counts come from this memory, under the same lock as the events, so a reply and
//! the events queued around it are in one order. Nothing here awaits a socket: frames go to outboxes.
//!
//! Per-user budgets (issue 20), in one node-level table keyed by user (or, anonymous, by session): presence
//! subscriptions held at once (`presence.max_per_user`) and a churn budget (`presence.user_churn_per_second`,
//! bursts of `user_churn_burst`) that every presence subscribe takes from (each can cause one `join` and one
//! `leave`). A subscribe finding either used up is refused (`limit_exceeded`) before any KV write, so one member
//! coming and going in a loop costs the channel at most twice its own budget of `join`/`leave` frames, below
//! the channel's, and never pauses it; the channel's own churn budget remains as a backstop against many
//! distinct members churning together.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, Weak},
    time::Duration,
};

use async_nats::jetstream::kv::{Operation, Store};
use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::{sync::watch, task::JoinHandle, time::Instant};

use crate::{
    config::PresenceSettings,
    node::hub::ConnId,
    node::metrics::Metrics,
    node::nats::{self, NatsError},
    node::outbox::{Frame, Outbox, Push},
    protocol::frames,
    session::rate::TokenBucket,
};

/// Bound on one KV write or delete, and on waiting for the watch to deliver a join's own put.
const KV_WAIT: Duration = Duration::from_secs(5);
/// How long a join waits for one of the node's `presence.max_writes_in_flight` write slots (shorter than
/// [`KV_WAIT`]: a node whose writes are stuck answers "busy" before they time out).
const WRITE_SLOT_WAIT: Duration = Duration::from_secs(2);
/// How often the node sweeps members whose refresh is overdue.
const SWEEP_EVERY: Duration = Duration::from_secs(1);
/// Most refresh puts in flight per node.
const REFRESH_IN_FLIGHT: usize = 64;
/// Largest entry value read from the bucket (user <= 255 bytes, info <= 256 bytes, and the JSON around them).
const MAX_VALUE_BYTES: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum PresenceError {
    /// The node's connections are present on `presence.max_channels` channels already.
    #[error("too many presence channels on this node")]
    TooManyChannels,
    /// The user holds `presence.max_per_user` presence subscriptions on this node already.
    #[error("too many presence subscriptions of this user")]
    UserChannels,
    /// The user subscribed and unsubscribed with presence faster than `presence.user_churn_per_second`.
    #[error("presence changes too frequent")]
    UserChurn,
    /// No write slot (`presence.max_writes_in_flight`) within [`WRITE_SLOT_WAIT`].
    #[error("presence writes busy on this node")]
    Busy,
    #[error(transparent)]
    Bucket(#[from] NatsError),
    #[error("presence bucket write failed: {0}")]
    Write(#[source] nats::BoxError),
}

/// The client id presence shows for a session: stable across resumes, not the session id itself.
pub fn client_id(session: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, format!("telegraphy-presence:{session}").as_bytes());
    let mut id = URL_SAFE_NO_PAD.encode(digest.as_ref());
    id.truncate(crate::protocol::constants::presence::CLIENT_ID_CHARS);
    id
}

/// One user's (or anonymous session's) presence on this node: subscriptions held and churn budget.
struct UserPresence {
    held: usize,
    churn: TokenBucket,
}

/// The key of a per-user table: the user, or for an anonymous session (`user` empty) the session.
pub fn user_key(user: &str, session: &str) -> String {
    if user.is_empty() {
        format!("s:{session}")
    } else {
        format!("u:{user}")
    }
}

/// The entry this node keeps refreshed for (channel, client), shared by the node's sockets of that session.
struct Local {
    value: Bytes,
    holders: usize,
}

/// A connection's presence subscription on a channel: where its `join`/`leave` frames go.
struct Receiver {
    /// The receiver's own client id: it gets no `join` of itself.
    client: String,
    name: Arc<str>,
    outbox: Outbox,
}

struct Member {
    /// The member as a snapshot shows it (`{"client":..,"user":..,"info":..}`).
    shown: String,
    /// The member as a `leave` shows it (no `info`).
    left: String,
    user: String,
    seen: Instant,
}

#[derive(Default)]
struct State {
    members: HashMap<String, Member>,
    /// Members per non-empty user (for `presence_stats`).
    users: HashMap<String, usize>,
    /// Per connection (a few each, `presence.max_per_connection`): attaching or detaching one is not a scan of
    /// a crowded channel's thousands.
    receivers: HashMap<ConnId, Vec<Receiver>>,
    /// Presence subscriptions of this node on the channel.
    holders: usize,
    /// Crowded or churning (below): no `join`/`leave` are sent, counts and snapshots only.
    paused: bool,
    /// The channel's join/leave budget (`presence.join_leave_per_second`, bursts of `join_leave_burst`).
    churn: Option<TokenBucket>,
}

/// When a channel's `join`/`leave` pause and resume: above `presence.max_join_leave_members` members (each
/// join or leave would cost a frame per member), or once its members came and went faster than the churn
/// budget (a backstop against many members churning at once: one member is held to its own user budget).
#[derive(Clone, Copy)]
struct Bound {
    /// More members than this: paused.
    max: usize,
    /// Paused, down to this many members or fewer, and the churn budget full again: resumed.
    resume_at: usize,
    per_second: u32,
    burst: u32,
}

impl Bound {
    fn new(settings: &PresenceSettings) -> Self {
        Bound {
            max: settings.max_join_leave_members,
            resume_at: settings.join_leave_resume_at(),
            per_second: settings.join_leave_per_second,
            burst: settings.join_leave_burst,
        }
    }
}

impl State {
    /// Queues a frame (encoded per subscription name) to each receiver but `except` (a client's own join);
    /// counts those closed as too slow.
    fn send(&self, except: Option<&str>, encode: impl Fn(&str) -> String, slow: &mut usize) {
        for r in self.receivers.values().flatten().filter(|r| Some(r.client.as_str()) != except) {
            if r.outbox.push(Frame::from(encode(&r.name))) == Push::TooSlow {
                *slow += 1;
            }
        }
    }

    /// Takes a join or leave from the channel's churn budget: false when it is used up.
    fn within_churn(&mut self, bound: Bound, now: Instant) -> bool {
        let churn = self.churn.get_or_insert_with(|| {
            TokenBucket::new(bound.per_second, bound.burst, now).expect("join_leave_per_second is at least 1")
        });
        churn.take(now)
    }

    fn pause(&mut self, metrics: &Metrics, slow: &mut usize) {
        self.paused = true;
        metrics.presence_paused_channels.increment(1.0);
        let count = self.members.len();
        self.send(None, |sub| frames::encode_presence_paused(sub, count), slow);
    }

    /// Resumes a paused channel down to the resume mark whose churn budget is full again (it was quiet); run by
    /// the sweep, every second.
    fn try_resume(&mut self, bound: Bound, now: Instant, metrics: &Metrics, slow: &mut usize) {
        if !self.paused || self.members.len() > bound.resume_at {
            return;
        }
        if self.churn.as_mut().is_none_or(|churn| churn.is_full(now)) {
            self.paused = false;
            metrics.presence_paused_channels.decrement(1.0);
            let count = self.members.len();
            self.send(None, |sub| frames::encode_presence_resumed(sub, count), slow);
        }
    }

    /// A new member: its `join` to the receivers (but its own client's), or, when it takes the channel over
    /// the bound or its churn budget, `presence_paused` to every receiver instead; nothing while paused.
    fn join(&mut self, client: &str, member: Member, bound: Bound, metrics: &Metrics, slow: &mut usize) {
        if !member.user.is_empty() {
            *self.users.entry(member.user.clone()).or_default() += 1;
        }
        let within = self.within_churn(bound, Instant::now());
        self.members.insert(client.to_string(), member);
        if self.paused {
            return;
        }
        if !within || self.members.len() > bound.max {
            return self.pause(metrics, slow);
        }
        let shown = &self.members[client].shown;
        self.send(Some(client), |sub| frames::encode_join(sub, shown), slow);
    }

    /// A member gone: its `leave` to the receivers, or `presence_paused` instead when it exceeds the churn
    /// budget; nothing while paused (the leave itself took a token, so the channel is not quiet yet: the sweep
    /// resumes it, see [`State::try_resume`]).
    fn leave(&mut self, client: &str, bound: Bound, metrics: &Metrics, slow: &mut usize) {
        let Some(member) = self.remove(client) else { return };
        let within = self.within_churn(bound, Instant::now());
        if self.paused {
            return;
        }
        if !within {
            return self.pause(metrics, slow);
        }
        self.send(None, |sub| frames::encode_leave(sub, &member.left), slow);
    }

    fn remove(&mut self, client: &str) -> Option<Member> {
        let member = self.members.remove(client)?;
        if !member.user.is_empty() {
            if let Some(n) = self.users.get_mut(&member.user) {
                *n -= 1;
                if *n == 0 {
                    self.users.remove(&member.user);
                }
            }
        }
        Some(member)
    }
}

/// The node's mirror of the bucket: every channel's members (kept by the node's one watch), and for the
/// channels this node's connections are present on, their receivers.
struct Mirror {
    channels: Mutex<HashMap<String, State>>,
    /// Channels with presence subscriptions of this node (`presence.max_channels`).
    held: Mutex<usize>,
    /// The last bucket revision the watch has handled.
    revision: watch::Sender<u64>,
    bound: Bound,
}

pub struct Presence {
    client: async_nats::Client,
    settings: PresenceSettings,
    kv: tokio::sync::OnceCell<Store>,
    mirror: Arc<Mirror>,
    /// The node's watch on the whole bucket, started by the first join.
    watch: Mutex<Option<JoinHandle<()>>>,
    /// Key -> the entry this node refreshes.
    local: Mutex<HashMap<String, Local>>,
    /// The node's budget of join puts and leave deletes under way.
    writes: tokio::sync::Semaphore,
    /// Per user key ([`user_key`]); an entry holding nothing with a full churn budget is removed.
    users: Mutex<HashMap<String, UserPresence>>,
    metrics: Arc<Metrics>,
}

impl Drop for Presence {
    fn drop(&mut self) {
        if let Some(task) = self.watch.lock().expect("presence watch lock").take() {
            task.abort();
        }
    }
}

impl Presence {
    /// The node's presence; starts the refresher (which ends when the node is dropped) when enabled.
    pub fn start(client: async_nats::Client, settings: &PresenceSettings, metrics: Arc<Metrics>) -> Arc<Self> {
        let presence = Arc::new(Presence {
            client,
            settings: settings.clone(),
            kv: tokio::sync::OnceCell::new(),
            mirror: Arc::new(Mirror {
                channels: Mutex::new(HashMap::new()),
                held: Mutex::new(0),
                revision: watch::Sender::new(0),
                bound: Bound::new(settings),
            }),
            watch: Mutex::new(None),
            local: Mutex::new(HashMap::new()),
            writes: tokio::sync::Semaphore::new(settings.max_writes_in_flight),
            users: Mutex::new(HashMap::new()),
            metrics,
        });
        if settings.enabled {
            tokio::spawn(refresh(Arc::downgrade(&presence), Duration::from_secs(settings.refresh_interval)));
            tokio::spawn(open_bucket(Arc::downgrade(&presence)));
        }
        presence
    }

    pub fn settings(&self) -> &PresenceSettings {
        &self.settings
    }

    async fn kv(&self) -> Result<&Store, NatsError> {
        self.kv
            .get_or_try_init(|| {
                nats::key_value(&self.client, &self.settings.bucket, self.settings.ttl(), self.settings.replicas)
            })
            .await
    }

    /// Makes `session` present on `channel` for one more presence subscription of this node: puts the entry
    /// and waits (bounded) until the node's watch has delivered that put, so a snapshot taken afterwards is
    /// complete. Undone by [`Presence::leave`].
    pub async fn join(
        &self,
        channel: &str,
        session: &str,
        user: &str,
        info: Option<&serde_json::Value>,
    ) -> Result<(), PresenceError> {
        let who = user_key(user, session);
        self.charge_user(&who)?;
        if let Err(e) = self.acquire(channel) {
            self.uncharge_user(&who);
            return Err(e);
        }
        let Ok(Ok(slot)) = tokio::time::timeout(WRITE_SLOT_WAIT, self.writes.acquire()).await else {
            self.release(channel);
            self.uncharge_user(&who);
            self.metrics.presence_busy.increment(1);
            return Err(PresenceError::Busy);
        };
        self.ensure_watch();
        let key = format!("{channel}.{}", client_id(session));
        let mut fields = serde_json::Map::new();
        fields.insert("user".into(), user.into());
        if let Some(info) = info {
            fields.insert("info".into(), info.clone());
        }
        let value = Bytes::from(serde_json::Value::Object(fields).to_string());
        {
            let mut local = self.local.lock().expect("presence local lock");
            local.entry(key.clone()).or_insert_with(|| Local { value: value.clone(), holders: 0 }).holders += 1;
            self.metrics.presence_entries.set(local.len() as f64);
        }
        let put = async { self.kv().await?.put(&key, value).await.map_err(|e| PresenceError::Write(e.into())) };
        let put = tokio::time::timeout(KV_WAIT, put).await;
        drop(slot);
        let written = match put {
            Ok(Ok(written)) => written,
            Ok(Err(e)) => {
                self.leave(channel, session, user, false).await;
                return Err(e);
            }
            Err(_) => {
                self.leave(channel, session, user, false).await;
                return Err(PresenceError::Write("timed out".into()));
            }
        };
        let mut revision = self.mirror.revision.subscribe();
        if tokio::time::timeout(KV_WAIT, revision.wait_for(|seen| *seen >= written)).await.is_err() {
            tracing::warn!("presence watch did not deliver a join in time; its snapshot may lag");
        }
        Ok(())
    }

    /// Ends one presence subscription of `session` on `channel` on this node: the entry is no longer
    /// refreshed by this node once its last holder here is gone, and deleted then when `delete` (a `leave` at
    /// once everywhere; otherwise it expires unless another node refreshes it).
    pub async fn leave(&self, channel: &str, session: &str, user: &str, delete: bool) {
        self.uncharge_user(&user_key(user, session));
        let key = format!("{channel}.{}", client_id(session));
        let last = {
            let mut local = self.local.lock().expect("presence local lock");
            match local.get_mut(&key) {
                Some(entry) if entry.holders > 1 => {
                    entry.holders -= 1;
                    false
                }
                Some(_) => {
                    local.remove(&key);
                    self.metrics.presence_entries.set(local.len() as f64);
                    true
                }
                None => false,
            }
        };
        if last && delete {
            // A leave never waits for a write slot: without one the entry is left to expire (a later `leave`).
            let Ok(_slot) = self.writes.try_acquire() else {
                self.metrics.presence_busy.increment(1);
                tracing::debug!("presence writes busy; the entry will expire");
                return self.release(channel);
            };
            let deleted = async { self.kv().await?.delete(&key).await.map_err(|e| PresenceError::Write(e.into())) };
            match tokio::time::timeout(KV_WAIT, deleted).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::debug!(error = %e, "presence delete failed; the entry will expire"),
                Err(_) => tracing::debug!("presence delete timed out; the entry will expire"),
            }
        }
        self.release(channel);
    }

    /// One more presence subscription of the user key `who`, taking a token of its churn budget; refused when
    /// it holds `presence.max_per_user` or its churn budget is used up.
    fn charge_user(&self, who: &str) -> Result<(), PresenceError> {
        let now = Instant::now();
        let mut users = self.users.lock().expect("presence users lock");
        let entry = users.entry(who.to_string()).or_insert_with(|| UserPresence {
            held: 0,
            churn: TokenBucket::new(self.settings.user_churn_per_second, self.settings.user_churn_burst, now)
                .expect("user_churn_per_second is at least 1"),
        });
        let refused = if entry.held >= self.settings.max_per_user {
            self.metrics.presence_refused_user_channels.increment(1);
            PresenceError::UserChannels
        } else if !entry.churn.take(now) {
            self.metrics.presence_refused_user_churn.increment(1);
            PresenceError::UserChurn
        } else {
            entry.held += 1;
            return Ok(());
        };
        if entry.held == 0 && entry.churn.is_full(now) {
            users.remove(who);
        }
        Err(refused)
    }

    /// One presence subscription of `who` less (its churn budget is unchanged: the subscribe paid for both).
    fn uncharge_user(&self, who: &str) {
        let now = Instant::now();
        let mut users = self.users.lock().expect("presence users lock");
        let Some(entry) = users.get_mut(who) else { return };
        entry.held = entry.held.saturating_sub(1);
        if entry.held == 0 && entry.churn.is_full(now) {
            users.remove(who);
        }
    }

    /// Forgets the users holding nothing whose churn budget is full again (run by the refresher).
    fn prune_users(&self) {
        let now = Instant::now();
        self.users.lock().expect("presence users lock").retain(|_, u| u.held > 0 || !u.churn.is_full(now));
    }

    /// Starts the node's watch on the bucket (once).
    fn ensure_watch(&self) {
        let mut watch = self.watch.lock().expect("presence watch lock");
        if watch.is_none() {
            *watch = Some(tokio::spawn(watch_bucket(
                self.client.clone(),
                self.settings.clone(),
                self.mirror.clone(),
                self.metrics.clone(),
            )));
        }
    }

    /// One more presence subscription of this node on `channel`.
    fn acquire(&self, channel: &str) -> Result<(), PresenceError> {
        let mut channels = self.mirror.channels.lock().expect("presence channels lock");
        let mut held = self.mirror.held.lock().expect("presence held lock");
        let state = channels.entry(channel.to_string()).or_default();
        if state.holders == 0 {
            if *held >= self.settings.max_channels {
                if state.members.is_empty() {
                    channels.remove(channel);
                }
                return Err(PresenceError::TooManyChannels);
            }
            *held += 1;
            self.metrics.presence_channels.set(*held as f64);
        }
        state.holders += 1;
        Ok(())
    }

    fn release(&self, channel: &str) {
        let mut channels = self.mirror.channels.lock().expect("presence channels lock");
        let Some(state) = channels.get_mut(channel) else { return };
        state.holders = state.holders.saturating_sub(1);
        if state.holders == 0 {
            let mut held = self.mirror.held.lock().expect("presence held lock");
            *held = held.saturating_sub(1);
            self.metrics.presence_channels.set(*held as f64);
            if state.members.is_empty() {
                channels.remove(channel);
            }
        }
    }

    /// Sends the channel's `join`/`leave` events to the connection's subscription `name` from now on.
    pub fn attach(&self, channel: &str, session: &str, conn: ConnId, name: &str, outbox: &Outbox) {
        let client = client_id(session);
        let mut channels = self.mirror.channels.lock().expect("presence channels lock");
        if let Some(state) = channels.get_mut(channel) {
            if state.paused {
                let paused = frames::encode_presence_paused(name, state.members.len());
                if outbox.push(Frame::from(paused)) == Push::TooSlow {
                    self.metrics.slow_disconnects.increment(1);
                }
            }
            let own = state.receivers.entry(conn).or_default();
            own.retain(|r| &*r.name != name);
            own.push(Receiver { client, name: Arc::from(name), outbox: outbox.clone() });
        }
    }

    /// Stops the events to the connection's subscription `name` (before [`Presence::leave`]).
    pub fn detach(&self, channel: &str, conn: ConnId, name: &str) {
        let mut channels = self.mirror.channels.lock().expect("presence channels lock");
        if let Some(state) = channels.get_mut(channel) {
            if let Some(own) = state.receivers.get_mut(&conn) {
                own.retain(|r| &*r.name != name);
                if own.is_empty() {
                    state.receivers.remove(&conn);
                }
            }
        }
    }

    /// Queues the `presence` snapshot (or with `stats`, the `presence_stats` counts) of `channel` to
    /// `outbox`, under the mirror's lock (in order with the channel's events).
    pub fn reply(&self, channel: &str, id: Option<u64>, stats: bool, outbox: &Outbox) {
        let channels = self.mirror.channels.lock().expect("presence channels lock");
        let empty = State::default();
        let state = channels.get(channel).unwrap_or(&empty);
        let frame = if stats {
            frames::encode_presence_stats(id, channel, state.members.len(), state.users.len())
        } else {
            let max = self.settings.max_snapshot;
            let members = state.members.values().take(max).map(|m| m.shown.as_str());
            frames::encode_presence(id, channel, members, state.members.len() > max)
        };
        if outbox.push(Frame::from(frame)) == Push::TooSlow {
            self.metrics.slow_disconnects.increment(1);
        }
    }
}

/// Opens (creating it when missing) the bucket at start-up, retrying until it answers, so that the first join
/// does not wait for a bucket creation (seconds on a fresh 3-node cluster).
async fn open_bucket(presence: Weak<Presence>) {
    loop {
        let Some(presence) = presence.upgrade() else { return };
        match presence.kv().await {
            Ok(_) => return,
            Err(e) => tracing::debug!(error = %e, "presence bucket not open yet; retrying"),
        }
        drop(presence);
        tokio::time::sleep(SWEEP_EVERY).await;
    }
}

/// Re-puts this node's entries every `interval`, at most [`REFRESH_IN_FLIGHT`] at once, until the node is
/// dropped.
async fn refresh(presence: Weak<Presence>, interval: Duration) {
    let mut ticker = tokio::time::interval_at(Instant::now() + interval, interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let Some(presence) = presence.upgrade() else { return };
        presence.prune_users();
        let entries: Vec<(String, Bytes)> = {
            let local = presence.local.lock().expect("presence local lock");
            local.iter().map(|(k, l)| (k.clone(), l.value.clone())).collect()
        };
        if entries.is_empty() {
            continue;
        }
        let Ok(kv) = presence.kv().await.cloned() else {
            tracing::warn!("presence bucket unavailable; entries not refreshed");
            continue;
        };
        let started = Instant::now();
        let total = entries.len();
        let failed = futures_util::stream::iter(entries)
            .map(|(key, value)| {
                let kv = kv.clone();
                async move { tokio::time::timeout(KV_WAIT, kv.put(key, value)).await.is_ok_and(|r| r.is_ok()) }
            })
            .buffer_unordered(REFRESH_IN_FLIGHT)
            .filter(|ok| std::future::ready(!ok))
            .count()
            .await;
        presence.metrics.presence_refreshes.increment((total - failed) as u64);
        presence.metrics.presence_refresh_seconds.set(started.elapsed().as_secs_f64());
        if failed > 0 {
            tracing::warn!(failed, total, "presence refresh: some entries were not written");
        }
        tracing::debug!(total, took = ?started.elapsed(), "presence refreshed");
    }
}

/// Watches the whole bucket for as long as the node lives (restarting after errors), mirroring every
/// channel's members, and sweeps members whose refresh is overdue. One consumer per node: the server's cost
/// does not grow with the number of channels (see PROTOCOL.md section 11, "Costs").
async fn watch_bucket(
    client: async_nats::Client,
    settings: PresenceSettings,
    mirror: Arc<Mirror>,
    metrics: Arc<Metrics>,
) {
    let ttl = settings.ttl();
    let mut sweep = tokio::time::interval(SWEEP_EVERY);
    loop {
        let store = match nats::key_value(&client, &settings.bucket, ttl, settings.replicas).await {
            Ok(store) => store,
            Err(e) => {
                tracing::warn!(error = %e, "presence bucket unavailable; retrying");
                tokio::time::sleep(SWEEP_EVERY).await;
                continue;
            }
        };
        let mut entries = match store.watch_with_history(">").await {
            Ok(entries) => entries,
            Err(e) => {
                tracing::warn!(error = %e, "presence watch failed; retrying");
                tokio::time::sleep(SWEEP_EVERY).await;
                continue;
            }
        };
        loop {
            tokio::select! {
                entry = entries.next() => match entry {
                    Some(Ok(entry)) => on_entry(&mirror, &metrics, entry),
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "presence watch error; restarting it");
                        break;
                    }
                    None => break,
                },
                _ = sweep.tick() => {
                    // Without NATS no refresh can arrive: presence is frozen rather than emptied.
                    if nats::is_connected(&client) {
                        sweep_overdue(&mirror, &metrics, ttl);
                    }
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// One change of an entry (`<channel>.<client>`).
fn on_entry(mirror: &Mirror, metrics: &Metrics, entry: async_nats::jetstream::kv::Entry) {
    let mut slow = 0;
    if let Some((channel, client)) = entry.key.rsplit_once('.') {
        let mut channels = mirror.channels.lock().expect("presence channels lock");
        match entry.operation {
            Operation::Put => {
                // When it was put: a replayed entry may already be old (its node may be gone).
                let age = std::time::SystemTime::now()
                    .duration_since(std::time::SystemTime::from(entry.created))
                    .unwrap_or_default();
                let seen = Instant::now().checked_sub(age).unwrap_or_else(Instant::now);
                let known = channels.get_mut(channel).and_then(|state| state.members.get_mut(client));
                if let Some(member) = known {
                    member.seen = member.seen.max(seen);
                } else if let Some((user, info)) = parse_value(&entry.value) {
                    let member = Member {
                        shown: frames::encode_presence_member(client, &user, info.as_deref()),
                        left: frames::encode_presence_member(client, &user, None),
                        user,
                        seen,
                    };
                    let state = channels.entry(channel.to_string()).or_default();
                    state.join(client, member, mirror.bound, metrics, &mut slow);
                }
            }
            Operation::Delete | Operation::Purge => {
                if let Some(state) = channels.get_mut(channel) {
                    state.leave(client, mirror.bound, metrics, &mut slow);
                    if state.members.is_empty() && state.holders == 0 {
                        channels.remove(channel);
                    }
                }
            }
        }
    }
    if slow > 0 {
        metrics.slow_disconnects.increment(slow as u64);
    }
    mirror.revision.send_modify(|seen| *seen = (*seen).max(entry.revision));
}

/// `leave` for every member not refreshed within `ttl`.
fn sweep_overdue(mirror: &Mirror, metrics: &Metrics, ttl: Duration) {
    let now = Instant::now();
    let mut slow = 0;
    let mut channels = mirror.channels.lock().expect("presence channels lock");
    channels.retain(|_, state| {
        let overdue: Vec<String> =
            state.members.iter().filter(|(_, m)| now.duration_since(m.seen) > ttl).map(|(c, _)| c.clone()).collect();
        for client in overdue {
            state.leave(&client, mirror.bound, metrics, &mut slow);
        }
        state.try_resume(mirror.bound, now, metrics, &mut slow);
        !state.members.is_empty() || state.holders > 0
    });
    drop(channels);
    if slow > 0 {
        metrics.slow_disconnects.increment(slow as u64);
    }
}

/// An entry's value: `{"user": string, "info": object?}` -> (user, info as compact JSON). Anything else (not
/// written by a gateway) is ignored.
fn parse_value(value: &[u8]) -> Option<(String, Option<String>)> {
    #[derive(serde::Deserialize)]
    struct Value {
        user: String,
        info: Option<serde_json::Value>,
    }
    if value.len() > MAX_VALUE_BYTES {
        return None;
    }
    let value: Value = serde_json::from_slice(value).ok()?;
    if value.user.len() > 255 || value.info.as_ref().is_some_and(|i| crate::protocol::token::check_info(i).is_err()) {
        return None;
    }
    Some((value.user, value.info.map(|i| i.to_string())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_ids_are_stable_short_and_not_the_session() {
        let a = client_id("sess-1");
        assert_eq!(a, client_id("sess-1"));
        assert_ne!(a, client_id("sess-2"));
        assert_eq!(a.len(), 16);
        assert!(a.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
    }

    #[test]
    fn values_are_checked() {
        assert_eq!(parse_value(br#"{"user":"al"}"#), Some(("al".into(), None)));
        assert_eq!(parse_value(br#"{"user":"al","info":{"n":1}}"#), Some(("al".into(), Some(r#"{"n":1}"#.into()))));
        assert_eq!(parse_value(br#"{"user":"al","info":"x"}"#), None);
        assert_eq!(parse_value(b"nope"), None);
        let big = format!(r#"{{"user":"{}"}}"#, "u".repeat(MAX_VALUE_BYTES));
        assert_eq!(parse_value(big.as_bytes()), None);
    }
}
