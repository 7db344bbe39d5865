//! The protocol core of one connection, protocol v1 (proto/PROTOCOL.md section 3), whatever its transport.
//!
//! A [`Session`] takes what its client sent as [`Inbound`] items (text frames, binary frames, life, close),
//! parses client frames, runs the connect step, keeps the connection's subscriptions in the hub, sends
//! heartbeats, enforces the timers (connect timeout, heartbeat, `auth.max_session_age`) and limits (rate, bad
//! frames, subscriptions, filters) and decides when to close. It never touches a socket: everything it sends
//! goes to its [`Outbox`] (so replies and events keep their order), and a close is decided on the outbox's
//! [`Control`]; the transport's writer drains both (e.g. `crate::transports::ws`).

pub(crate) mod actions;
pub(crate) mod inbound;
pub(crate) mod rate;
mod subscribe;
pub(crate) mod vec_map;

use std::{sync::Arc, time::Duration};

use futures_util::{Stream, StreamExt};
use tokio::time::Instant;

pub use crate::session::inbound::Inbound;
use crate::{
    node::auth::{AuthError, Identity},
    node::connections::OverQuota,
    node::filter_memory::CompileError,
    node::history::{History, HistoryError, Position, Recovery, RecoverySlot, Stored},
    node::hub::{ConnId, Subscription},
    node::outbox::{Control, Frame, Outbox, Push},
    node::presence::{self, PresenceError},
    node::render::Checked,
    node::Gateway,
    protocol::filter::{Filter, FilterError, PreparedFilter, RegexError},
    protocol::frames::{self, close, ClientFrame, ErrorCode, Since},
    protocol::token,
    session::actions::{lifecycle, Actions},
    session::rate::TokenBucket,
    session::vec_map::VecMap,
};

/// Rate-bucket tokens a `presence` snapshot takes (its reply holds up to `presence.max_snapshot` clients).
pub const SNAPSHOT_COST: u32 = crate::protocol::constants::presence::SNAPSHOT_COST;

/// The message of `unknown_event` (strict catalog mode, section 12).
const UNKNOWN_EVENT_MESSAGE: &str = "no catalogued event matches this pattern";

/// Bound on waiting for NATS/JetStream or queue room while recovering history.
const HISTORY_WAIT: Duration = Duration::from_secs(5);

/// A `subscribe` frame's content.
struct SubscribeRequest {
    event: String,
    since: Option<Since>,
    sub: Option<String>,
    filter: Option<serde_json::Value>,
    exclude: Option<serde_json::Value>,
    presence: bool,
}

/// A subscription the connection holds, by name.
struct Held {
    pattern: String,
    /// The filter's canonical text ("" = none): same name + pattern + canonical = the same subscription.
    canonical: String,
    filter: Option<Arc<Filter>>,
    /// Estimated memory of the filter's compiled regexes (in the connection's filter memory budget).
    filter_bytes: usize,
    /// Also present on the channel `pattern` (section 11).
    presence: bool,
}

/// Why a subscription's filter was not compiled.
enum Uncompiled {
    /// A pattern does not compile: a bad frame.
    Bad(FilterError),
    /// The node's filter memory is used up: `limit_exceeded`.
    OverBudget,
}

pub struct Session {
    id: ConnId,
    outbox: Outbox,
    ctl: Arc<Control>,
    identity: Option<Identity>,
    /// By subscription name (default: the pattern); a vector, not a hash table, per connection (issue 24).
    subscriptions: VecMap<String, Held>,
    bad_frames: u32,
    /// Request rate limit (`limits.requests_per_second`); None = off.
    requests: Option<TokenBucket>,
    /// Client publish / RPC state, allocated on the first such frame (section 13).
    actions: Option<Box<Actions>>,
    gw: Arc<Gateway>,
}

impl Session {
    /// The core of the registered connection `id` (see `crate::node::connections`), writing to `outbox`. Once run,
    /// the session owns the registration: it removes it (and its subscriptions) when it ends.
    pub fn new(gw: Arc<Gateway>, id: ConnId, outbox: Outbox) -> Self {
        let limits = &gw.settings.limits;
        let requests = TokenBucket::new(limits.requests_per_second, limits.request_burst, Instant::now());
        Session {
            id,
            ctl: outbox.control().clone(),
            outbox,
            identity: None,
            subscriptions: VecMap::new(),
            bad_frames: 0,
            requests,
            actions: None,
            gw,
        }
    }

    /// Serves the connection until it closes, reading what the client sent from `inbound` (its end = closed by
    /// the client), then leaves the hub and the node's connections.
    pub async fn run<T: AsRef<str>>(mut self, inbound: impl Stream<Item = Inbound<T>>) {
        let mut stream = std::pin::pin!(inbound);
        let heartbeat = self.gw.settings.heartbeat_interval();
        // One timer for the heartbeat and both deadlines (every timer is stored in every connection's task; a
        // tokio `Interval` also boxes its own: issue 24): it fires at the earlier of the next ping and the
        // deadline, which is the connect timeout until `connect` succeeded, then the end of the session
        // (`auth.max_session_age`).
        let start = Instant::now();
        let mut next_ping = start + heartbeat;
        let mut deadline = start + Duration::from_secs(self.gw.settings.auth.connect_timeout);
        let timer = tokio::time::sleep_until(next_ping.min(deadline));
        tokio::pin!(timer);
        let mut last_seen = start;
        let mut session_armed = false;
        tracing::trace!(conn = self.id, "reader started");
        loop {
            tokio::select! {
                biased;
                _ = self.ctl.closed() => break,
                _ = &mut timer => {
                    let now = Instant::now();
                    if now >= deadline {
                        if self.identity.is_none() {
                            self.reply(frames::encode_error(None, ErrorCode::Unauthorized, "connect timeout"));
                            self.ctl.close(close::UNAUTHORIZED, "connect timeout");
                        } else {
                            self.gw.metrics.sessions_expired.increment(1);
                            self.reply(frames::encode_error(None, ErrorCode::Unauthorized, "session expired"));
                            self.ctl.close(close::UNAUTHORIZED, "session expired");
                        }
                        break;
                    }
                    if now >= next_ping {
                        if last_seen.elapsed() >= heartbeat * 2 {
                            self.ctl.close(close::NORMAL, "heartbeat timeout");
                            break;
                        }
                        self.reply(frames::encode_ping());
                        // After a long frame handler (a history replay), one ping, not a burst of the missed ones.
                        next_ping = now + heartbeat;
                    }
                    timer.as_mut().reset(next_ping.min(deadline));
                }
                message = stream.next() => {
                    last_seen = Instant::now();
                    match message {
                        // WebSocket pings and pongs count like data frames (each ping costs a pong).
                        Some(Inbound::Text(_) | Inbound::Binary | Inbound::Alive) if !self.admit(last_seen) => break,
                        Some(Inbound::Text(text)) => {
                            let text = text.as_ref();
                            tracing::trace!(conn = self.id, len = text.len(), "frame in");
                            // Boxed: the frame handlers' futures (connect with KV, subscribe with history) are large;
                            // inline they would make every idle connection's task ~9.8 KB instead of ~1.3 KB
                            // (bench/README.md finding 1).
                            Box::pin(self.on_text(text)).await;
                            if !session_armed {
                                if let Some(end) = self.session_end() {
                                    deadline = end;
                                    session_armed = true;
                                    timer.as_mut().reset(next_ping.min(deadline));
                                }
                            }
                            // Time spent serving the frame (e.g. a history replay) is not the client's silence.
                            last_seen = Instant::now();
                        }
                        Some(Inbound::Binary) => {
                            self.bad_frame(None, ErrorCode::BadRequest, "binary frames are not supported")
                        }
                        Some(Inbound::Alive) => {}
                        Some(Inbound::Closed) | None => {
                            self.ctl.close(close::NORMAL, "bye");
                        }
                        Some(Inbound::TooBig) => {
                            self.ctl.close(close::TOO_BIG, "frame too big");
                        }
                        Some(Inbound::Gone) => {
                            self.ctl.close(close::NORMAL, "client gone");
                        }
                        Some(Inbound::ProtocolError(e)) => {
                            tracing::debug!(conn = self.id, error = %e, "WebSocket protocol error");
                            self.ctl.close(close::PROTOCOL, "protocol error");
                        }
                    }
                }
            }
        }
        Box::pin(self.cleanup()).await;
    }

    /// When the connected session ends (`auth.max_session_age` after its first authentication); None before
    /// `connect`.
    fn session_end(&self) -> Option<Instant> {
        let identity = self.identity.as_ref()?;
        let end =
            std::time::UNIX_EPOCH + Duration::from_secs(self.gw.auth.session_end(identity.auth_time).max(0) as u64);
        let left = end.duration_since(std::time::SystemTime::now()).unwrap_or(Duration::ZERO);
        Some(Instant::now() + left)
    }

    /// Queues a reply; a full queue closes the connection as too slow.
    fn reply(&self, text: String) {
        if self.outbox.push(Frame::from(text)) == Push::TooSlow {
            self.gw.metrics.slow_disconnects.increment(1);
        }
    }

    /// Takes a token for a client frame; without one the connection is closing with 4029.
    fn admit(&mut self, now: Instant) -> bool {
        if self.requests.as_mut().is_none_or(|bucket| bucket.take(now)) {
            return true;
        }
        self.gw.metrics.requests_rate_limited.increment(1);
        tracing::info!(conn = self.id, "closing: request rate limit");
        self.close_limited(None, "too many requests");
        false
    }

    /// `error` `limit_exceeded` with `reason`, then close 4029 (the client retries later, with backoff).
    fn close_limited(&self, id: Option<u64>, reason: &'static str) {
        self.reply(frames::encode_error(id, ErrorCode::LimitExceeded, reason));
        self.ctl.close(close::RATE_LIMITED, reason);
    }

    fn bad_frame(&mut self, id: Option<u64>, code: ErrorCode, message: &str) {
        self.gw.metrics.bad_frames.increment(1);
        self.bad_frames += 1;
        self.reply(frames::encode_error(id, code, message));
        if self.bad_frames >= self.gw.settings.limits.max_bad_frames {
            self.ctl.close(close::PROTOCOL, "too many bad frames");
        }
    }

    async fn on_text(&mut self, text: &str) {
        let frame = match frames::parse_client_frame(text) {
            Ok(frame) => frame,
            Err(e) => return self.bad_frame(e.id, ErrorCode::BadRequest, &e.message),
        };
        match frame {
            ClientFrame::Connect { id, token, resume } => self.on_connect(id, token, resume).await,
            ClientFrame::Subscribe { id, event, since, sub, filter, exclude, presence } => {
                self.on_subscribe(id, SubscribeRequest { event, since, sub, filter, exclude, presence }).await
            }
            ClientFrame::Presence { id, event, stats } => self.on_presence(id, &event, stats),
            ClientFrame::Events { id, event } => self.on_events(id, event.as_deref()),
            ClientFrame::Unsubscribe { id, event, sub } => self.on_unsubscribe(id, event, sub).await,
            ClientFrame::Publish { id, event, data } => self.on_publish(id, &event, data).await,
            ClientFrame::Rpc { id, method, data } => self.on_rpc(id, &method, data),
            ClientFrame::Ping { id } => self.reply(frames::encode_pong(id)),
            ClientFrame::Pong => {}
        }
    }

    async fn on_connect(&mut self, id: Option<u64>, token: Option<String>, resume: Option<String>) {
        if self.identity.is_some() {
            return self.bad_frame(id, ErrorCode::BadRequest, "already connected");
        }
        let gw = self.gw.clone();
        let resumed = resume.is_some();
        match gw.auth.connect(token.as_deref(), resume.as_deref(), token::new_jti()).await {
            Ok(mut identity) => {
                let quotas = (&gw.settings.limits).into();
                if let Err(over) = gw.connections.identify(self.id, &mut identity.sub, &mut identity.session, quotas) {
                    return self.refuse_over_quota(id, over);
                }
                // From now on its queued bytes count in the node's total too.
                self.ctl.share(gw.outbound.clone());
                // A revocation that arrived while the token was being checked found no identified socket to close.
                if gw.auth.is_revoked(&identity.sub, Some(&identity.session), identity.auth_time) {
                    gw.metrics.connects_failed.increment(1);
                    self.reply(frames::encode_error(id, ErrorCode::Unauthorized, "unauthorized"));
                    self.ctl.close(close::UNAUTHORIZED, "unauthorized");
                    return;
                }
                let (resume, expires_in) = gw.auth.resume_token(&identity);
                self.reply(frames::encode_connected_as(
                    id,
                    &identity.session,
                    &crate::node::presence::client_id(&identity.session),
                    &gw.settings.node.name,
                    gw.settings.heartbeat,
                    Some((&resume, expires_in)),
                ));
                gw.metrics.connects_ok.increment(1);
                tracing::debug!(conn = self.id, session = %identity.session, "connected");
                lifecycle::emit(&gw, lifecycle::Kind::Connect { resumed }, &identity, None);
                self.identity = Some(identity);
            }
            Err(AuthError::Rejected(reason)) => {
                gw.metrics.connects_failed.increment(1);
                tracing::info!(conn = self.id, reason, "connect refused");
                self.reply(frames::encode_error(id, ErrorCode::Unauthorized, "unauthorized"));
                self.ctl.close(close::UNAUTHORIZED, "unauthorized");
            }
            Err(AuthError::Unavailable(e)) => {
                gw.metrics.connects_failed.increment(1);
                tracing::warn!(conn = self.id, error = %e, "connect failed: token store unavailable");
                self.reply(frames::encode_error(id, ErrorCode::Internal, "try again later"));
                self.ctl.close(close::TRY_AGAIN_LATER, "try again later");
            }
        }
    }

    /// A `publish` frame (section 13.1): checked and published by [`actions::publish`].
    async fn on_publish(&mut self, id: Option<u64>, event: &str, data: String) {
        let Some(identity) = &self.identity else {
            return self.bad_frame(id, ErrorCode::NotConnected, "connect first");
        };
        let state = self.actions.get_or_insert_with(|| Actions::new(&self.gw, identity));
        let reply = actions::publish::publish(&self.gw, identity, state, id, event, data).await;
        self.reply(reply);
    }

    /// An `rpc` frame (section 14): checked by [`actions::rpc`], which answers later through the outbox.
    fn on_rpc(&mut self, id: u64, method: &str, data: String) {
        let Some(identity) = &self.identity else {
            return self.bad_frame(Some(id), ErrorCode::NotConnected, "connect first");
        };
        let state = self.actions.get_or_insert_with(|| Actions::new(&self.gw, identity));
        if let Some(refused) = actions::rpc::call(&self.gw, identity, state, &self.outbox, id, method, data) {
            self.reply(refused);
        }
    }

    /// A `connect` over the session or anonymous quota: `limit_exceeded`, then close 4029 (the client retries
    /// with backoff, as with a rate limit: a slot frees when another socket of the session closes).
    fn refuse_over_quota(&mut self, id: Option<u64>, over: OverQuota) {
        self.gw.metrics.connects_failed.increment(1);
        over.count(&self.gw.metrics);
        tracing::info!(conn = self.id, reason = over.reason(), "connect refused: over quota");
        self.close_limited(id, over.reason());
    }

    /// Makes the session present on `channel`; false (with an `error` reply) when it could not.
    async fn join_presence(&mut self, id: Option<u64>, channel: &str) -> bool {
        let Some(identity) = &self.identity else { return false };
        match self.gw.presence.join(channel, &identity.session, &identity.sub, identity.info.as_ref()).await {
            Ok(()) => true,
            Err(PresenceError::Busy) => {
                self.reply(frames::encode_error(id, ErrorCode::Internal, "presence busy, try again"));
                false
            }
            Err(PresenceError::TooManyChannels) => {
                self.reply(frames::encode_error(id, ErrorCode::LimitExceeded, "too many presence channels"));
                false
            }
            Err(e @ (PresenceError::UserChannels | PresenceError::UserChurn)) => {
                self.reply(frames::encode_error(id, ErrorCode::LimitExceeded, &e.to_string()));
                false
            }
            Err(e) => {
                tracing::warn!(conn = self.id, error = %e, "presence join failed");
                self.reply(frames::encode_error(id, ErrorCode::Internal, "presence failed, try again"));
                false
            }
        }
    }

    /// From now on, the channel's `join`/`leave` events go to the subscription `name`.
    fn attach_presence(&self, channel: &str, name: &str) {
        if let Some(identity) = &self.identity {
            self.gw.presence.attach(channel, &identity.session, self.id, name, &self.outbox);
        }
    }

    /// Ends one presence subscription of the session on `channel` (`delete`: a leave at once).
    async fn leave_presence(&self, channel: &str, delete: bool) {
        if let Some(identity) = &self.identity {
            self.gw.presence.leave(channel, &identity.session, &identity.sub, delete).await;
        }
    }

    /// An `events` request (section 12): the catalogued events the connection's grant may subscribe to,
    /// answered from the node's catalog (its `allow` patterns filter it; never an event outside them).
    fn on_events(&mut self, id: Option<u64>, event: Option<&str>) {
        let Some(identity) = &self.identity else {
            return self.bad_frame(id, ErrorCode::NotConnected, "connect first");
        };
        match self.gw.catalog.reply(id, &identity.allow, event) {
            Ok(frame) => self.reply(frame),
            Err(e) => self.reply(frames::encode_error(id, ErrorCode::Internal, &e.to_string())),
        }
    }

    /// A `presence` / `presence_stats` request: answered from the node's memory for a channel the connection is
    /// present on. A snapshot takes [`SNAPSHOT_COST`] tokens of the rate bucket (one was taken on arrival).
    fn on_presence(&mut self, id: Option<u64>, channel: &str, stats: bool) {
        if self.identity.is_none() {
            return self.bad_frame(id, ErrorCode::NotConnected, "connect first");
        }
        if !self.subscriptions.values().any(|h| h.presence && h.pattern == channel) {
            return self.reply(frames::encode_error(id, ErrorCode::Forbidden, "no presence subscription"));
        }
        if !stats && !self.requests.as_mut().is_none_or(|bucket| bucket.take_n(Instant::now(), SNAPSHOT_COST - 1)) {
            self.gw.metrics.requests_rate_limited.increment(1);
            return self.close_limited(id, "too many requests");
        }
        self.gw.presence.reply(channel, id, stats, &self.outbox);
    }

    /// Compiles the filter's regexes through the node's pool (off this worker, see [`crate::node::filter_memory`]).
    async fn compile(&self, prepared: PreparedFilter) -> Result<Filter, Uncompiled> {
        let mut compiled = Vec::new();
        // Compile time is shared per user (or anonymous session), see `crate::node::filter_memory`.
        let user = match &self.identity {
            Some(identity) => presence::user_key(&identity.sub, &identity.session),
            None => String::new(),
        };
        for key in prepared.regexes() {
            match self.gw.filter_memory.regex(key, &user).await {
                Ok(regex) => compiled.push(Ok(regex)),
                Err(CompileError::OverBudget) => return Err(Uncompiled::OverBudget),
                Err(CompileError::Regex(e)) => {
                    compiled.push(Err(e));
                    break;
                }
            }
        }
        let mut compiled = compiled.into_iter();
        prepared.compile_with(|_| compiled.next().unwrap_or(Err(RegexError::Invalid))).map_err(Uncompiled::Bad)
    }

    /// The connection's filter memory: its subscriptions' compiled regexes (`limits.filter_memory_per_connection`).
    fn filter_bytes(&self) -> usize {
        self.subscriptions.values().map(|held| held.filter_bytes).sum()
    }

    /// A filter over the connection's or the node's filter memory: `limit_exceeded`, the socket stays open.
    fn refuse_filter_memory(&self, id: Option<u64>) {
        self.gw.filter_memory.refused();
        tracing::debug!(conn = self.id, held = self.filter_bytes(), "subscribe refused: filter memory");
        self.reply(frames::encode_error(id, ErrorCode::LimitExceeded, "filter memory limit exceeded"));
    }

    async fn recover<'h>(
        &self,
        history: &'h History,
        pattern: &str,
        since: &Since,
    ) -> Result<(Recovery, Position, Option<RecoverySlot<'h>>), HistoryError> {
        let started = Instant::now();
        let user = match &self.identity {
            Some(identity) => presence::user_key(&identity.sub, &identity.session),
            None => String::new(),
        };
        let result = history.recover_for_client(&user, pattern, &since.epoch, since.seq).await;
        tracing::debug!(conn = self.id, took = ?started.elapsed(), "history recovery");
        result
    }

    /// Adds the subscription to the hub, holding its live frames until [`crate::node::hub::Hub::go_live`]; false (with an
    /// `error` reply) if that failed.
    async fn register(&mut self, id: Option<u64>, name: &str, held: Held) -> bool {
        let who = Subscription { conn: self.id, name, filter: held.filter.clone(), outbox: &self.outbox };
        match self.gw.hub.subscribe(&held.pattern, who, true).await {
            Ok(()) => {
                self.gw.metrics.subscriptions.increment(1.0);
                self.subscriptions.insert(name.to_string(), held);
                true
            }
            Err(e) => {
                tracing::warn!(conn = self.id, error = %e, "subscribe failed");
                self.reply(frames::encode_error(id, ErrorCode::Internal, "subscribe failed, try again"));
                false
            }
        }
    }

    /// Queues replayed events in order (those passing the subscription's filter), waiting for room in the queue
    /// (bounded) rather than failing at once.
    async fn replay(&self, sub: &str, filter: Option<&Filter>, epoch: &str, events: Vec<Stored>) {
        let max_event_bytes = self.gw.settings.limits.max_event_bytes;
        for event in events {
            let from = event.from.as_deref();
            // The live path drops (and counts) what fails the check too.
            let Some(checked) = Checked::new(&self.gw.metrics, &event.name, &event.payload, from, max_event_bytes)
            else {
                continue;
            };
            let Some(frame) = checked.render(sub, filter, Some((event.seq, epoch))) else { continue };
            match self.outbox.push_wait(frame, HISTORY_WAIT).await {
                Push::Queued => {}
                Push::TooSlow => return self.gw.metrics.slow_disconnects.increment(1),
                Push::Gone => return,
            }
        }
    }

    async fn on_unsubscribe(&mut self, id: Option<u64>, event: Option<String>, sub: Option<String>) {
        if self.identity.is_none() {
            return self.bad_frame(id, ErrorCode::NotConnected, "connect first");
        }
        let Some(name) = sub.clone().or_else(|| event.clone()) else {
            return self.bad_frame(id, ErrorCode::BadRequest, "unsubscribe needs 'sub' or 'event'");
        };
        let dropped = self.drop_subscription(&name, true).await;
        if let Some(pattern) = &dropped {
            self.lifecycle(lifecycle::Kind::Unsubscribe, pattern, &name);
        }
        let pattern = dropped.or(event).unwrap_or_else(|| name.clone());
        self.reply(frames::encode_unsubscribed_named(id, &pattern, sub.as_deref()));
    }

    /// Removes the named subscription from the hub (and its presence: `leave` at once when `delete`); returns its
    /// pattern if it existed.
    async fn drop_subscription(&mut self, name: &str, delete: bool) -> Option<String> {
        let held = self.subscriptions.remove(name)?;
        if let Some(identity) = self.identity.as_ref().filter(|i| !i.sub.is_empty()) {
            self.gw.filter_memory.release_user(&identity.sub, held.filter_bytes);
        }
        self.gw.hub.unsubscribe(&held.pattern, self.id, name).await;
        self.gw.metrics.subscriptions.decrement(1.0);
        if held.presence {
            self.gw.presence.detach(&held.pattern, self.id, name);
            self.leave_presence(&held.pattern, delete).await;
        }
        Some(held.pattern)
    }

    /// Whether this connection's end is the client leaving (its presence ends at once): it closed the socket
    /// itself, or its session ended or was revoked. Other ends (drain, a lost network, limits) let the
    /// presence expire, so a resume within the grace keeps it (section 11).
    fn client_left(&self) -> bool {
        matches!(self.ctl.closing(), Some((close::NORMAL, "bye") | (close::UNAUTHORIZED | close::FORBIDDEN, _)))
    }

    /// A lifecycle event of this connected session (section 15), when the node publishes that kind.
    fn lifecycle(&self, kind: lifecycle::Kind, pattern: &str, name: &str) {
        if let Some(identity) = &self.identity {
            lifecycle::emit(&self.gw, kind, identity, Some((pattern, name)));
        }
    }

    async fn cleanup(&mut self) {
        if let Some(identity) = &self.identity {
            let (code, reason) = self.ctl.closing().unwrap_or((1006, ""));
            lifecycle::emit(&self.gw, lifecycle::Kind::Disconnect { code, reason }, identity, None);
        }
        let delete = self.client_left();
        for name in self.subscriptions.keys().cloned().collect::<Vec<_>>() {
            self.drop_subscription(&name, delete).await;
        }
        self.gw.connections.remove(self.id);
        self.gw.metrics.connections.decrement(1.0);
        if let Some((code, reason)) = self.ctl.closing() {
            tracing::debug!(conn = self.id, code, reason, "connection closed");
        }
    }
}
