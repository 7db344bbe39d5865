//! One WebSocket connection speaking protocol v1 (proto/PROTOCOL.md section 3).
//!
//! The HTTP/1 dispatcher hands every `Upgrade: websocket` request, with its raw TCP connection, to
//! [`upgrade`]: it checks path, handshake, drain state, origin and the connection limit, answers `101`, and
//! from then on the connection is a plain [`tokio_tungstenite`] WebSocket with deliberately small buffers
//! (the HTTP dispatcher and its two 8 KiB buffers are gone: bench/README.md finding 1). Two tasks per
//! connection, both on the accepting actix worker:
//! - the **reader** ([`Connection::run`]) owns the read half: it parses client frames, runs the connect step,
//!   keeps the connection's subscriptions in the hub, sends heartbeats and decides when to close;
//! - the **writer** ([`writer`]) owns the write half and is the only task that awaits a socket write: it drains
//!   the bounded [`Outbox`] queue, all queued frames per write. A client that stops reading blocks only its own
//!   writer; its queue fills and the hub closes it with 4008 (see [`crate::outbox`]).
//!
//! Everything the reader sends also goes through the queue, so replies and events keep their order.
//! WebSocket pings from the client are answered by the WebSocket layer itself.

use std::{collections::HashMap, net::IpAddr, sync::Arc, time::Duration};

use actix_codec::Framed;
use actix_http::{body::BodySize, h1, header, ws as handshake, HttpMessage, Request, Response, StatusCode};
use bytestring::ByteString;
use futures_util::{
    stream::{SplitSink, SplitStream},
    SinkExt, StreamExt,
};
use tokio::{net::TcpStream, sync::mpsc, time::Instant};
use tokio_tungstenite::{
    tungstenite::{
        error::CapacityError,
        protocol::{frame::coding::CloseCode, CloseFrame, Role, WebSocketConfig},
        Error as WsError, Message, Utf8Bytes,
    },
    WebSocketStream,
};

use crate::{
    auth::{AuthError, Identity},
    client_ip,
    connections::OverQuota,
    filter::{Filter, FilterError, FilterLimits, PreparedFilter, RegexError},
    filter_memory::CompileError,
    frames::{self, close, ClientFrame, ErrorCode, Since, SubscribedAt},
    history::{History, HistoryError, Position, Recovery, Stored},
    hub::{self, ConnId, Subscription},
    node::Gateway,
    outbox::{Control, Frame, Outbox, Push},
    rate::TokenBucket,
    token,
};

/// Bound on waiting for NATS/JetStream or queue room while recovering history.
const HISTORY_WAIT: Duration = Duration::from_secs(5);

/// How long the writer may spend flushing queued frames and the close frame after a close was decided.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Read buffer of each WebSocket, allocated up front: client frames are small requests (larger ones, up to
/// `limits.max_frame_bytes`, still arrive, in several reads).
const READ_BUFFER: usize = 1024;

/// Most queued frames the writer takes per wake-up and writes with one flush.
const WRITE_BATCH: usize = 64;

type Socket = WebSocketStream<TcpStream>;

#[derive(Debug, thiserror::Error)]
#[error("WebSocket upgrade failed: {0}")]
pub struct UpgradeError(#[from] std::io::Error);

/// Required by the HTTP service; never sent (the connection left the HTTP dispatcher when this arises).
impl From<UpgradeError> for Response<actix_http::body::BoxBody> {
    fn from(_: UpgradeError) -> Self {
        Response::internal_server_error().map_into_boxed_body()
    }
}

/// Takes over an `Upgrade: websocket` request's connection: refuses it with a plain HTTP status, or answers
/// `101 Switching Protocols` and starts the connection's reader and writer tasks.
pub async fn upgrade(
    gw: Arc<Gateway>,
    req: Request,
    mut framed: Framed<TcpStream, h1::Codec>,
) -> Result<(), UpgradeError> {
    if req.path() != "/ws" {
        return refuse(framed, StatusCode::NOT_FOUND, "not found").await;
    }
    if handshake::verify_handshake(req.head()).is_err() {
        return refuse(framed, StatusCode::BAD_REQUEST, "bad WebSocket handshake").await;
    }
    if gw.is_draining() {
        gw.metrics.connections_refused.increment(1);
        return refuse(framed, StatusCode::SERVICE_UNAVAILABLE, "draining").await;
    }
    if !origin_allowed(&req, &gw.settings.http.allowed_origins) {
        gw.metrics.connections_refused.increment(1);
        return refuse(framed, StatusCode::FORBIDDEN, "origin not allowed").await;
    }
    let limits = &gw.settings.limits;
    let (outbox, queue, ctl) = Outbox::bounded(limits.outbound_queue, limits.outbound_queue_bytes);
    let id = match gw.connections.try_register(ctl.clone(), client_ip(&gw, &req, &framed), limits.into()) {
        Ok(id) => id,
        Err(over) => {
            gw.metrics.connections_refused.increment(1);
            gw.metrics.over_quota(over);
            let status =
                if over == OverQuota::Ip { StatusCode::TOO_MANY_REQUESTS } else { StatusCode::SERVICE_UNAVAILABLE };
            return refuse(framed, status, over.reason()).await;
        }
    };
    let accepted = handshake::handshake_response(req.head()).finish().drop_body();
    if let Err(e) = framed.send(h1::Message::Item((accepted, BodySize::None))).await {
        gw.connections.remove(id);
        return Err(e.into());
    }
    let parts = framed.into_parts();
    let config = WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .max_frame_size(Some(limits.max_frame_bytes))
        .max_message_size(Some(limits.max_frame_bytes));
    // Bytes the client sent right after its request (its first frames) are already in the read buffer.
    let socket = Socket::from_partially_read(parts.io, parts.read_buf.to_vec(), Role::Server, Some(config)).await;
    let (sink, stream) = socket.split();
    gw.metrics.connections.increment(1.0);
    gw.metrics.connections_total.increment(1);
    tracing::debug!(conn = id, "WebSocket upgraded");
    actix_web::rt::spawn(writer(sink, queue, ctl.clone()));
    let requests = TokenBucket::new(limits.requests_per_second, limits.request_burst, Instant::now());
    let connection = Connection {
        id,
        outbox,
        ctl,
        identity: None,
        subscriptions: HashMap::new(),
        filter_bytes: 0,
        bad_frames: 0,
        requests,
        gw,
    };
    actix_web::rt::spawn(connection.run(stream));
    Ok(())
}

/// Answers a refused upgrade with `status` and a short text, then drops the connection.
async fn refuse(
    mut framed: Framed<TcpStream, h1::Codec>,
    status: StatusCode,
    why: &'static str,
) -> Result<(), UpgradeError> {
    let mut response = Response::build(status);
    response.insert_header((header::CONTENT_TYPE, "text/plain")).insert_header((header::CONNECTION, "close"));
    let head = response.finish().drop_body();
    framed.feed(h1::Message::Item((head, BodySize::Sized(why.len() as u64)))).await?;
    framed.feed(h1::Message::Chunk(Some(bytes::Bytes::from_static(why.as_bytes())))).await?;
    framed.send(h1::Message::Chunk(None)).await?;
    Ok(())
}

/// The address the per-IP quota counts this upgrade under: the TCP peer, or behind a trusted proxy the client
/// its header names (see [`crate::client_ip`]).
fn client_ip(gw: &Gateway, req: &Request, framed: &Framed<TcpStream, h1::Codec>) -> IpAddr {
    let peer = framed.io_ref().peer_addr().map(|a| a.ip()).unwrap_or(IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED));
    let values =
        gw.client_ip.header().into_iter().flat_map(|h| req.headers().get_all(h)).filter_map(|v| v.to_str().ok());
    client_ip::quota_key(gw.client_ip.client_ip(peer, values))
}

fn origin_allowed(req: &Request, allowed: &[String]) -> bool {
    if allowed.is_empty() {
        return true;
    }
    let origin = req.headers().get(header::ORIGIN).and_then(|o| o.to_str().ok());
    origin.is_some_and(|o| allowed.iter().any(|a| a == o))
}

/// Sends queued frames until the connection is closed, then the close frame. The only task writing to the
/// socket: each wake-up takes every queued frame (up to [`WRITE_BATCH`]) and writes them with one flush.
pub async fn writer(mut sink: SplitSink<Socket, Message>, mut queue: mpsc::Receiver<Frame>, ctl: Arc<Control>) {
    let mut batch = Vec::new();
    loop {
        let received = tokio::select! {
            biased;
            _ = ctl.closed() => break,
            n = queue.recv_many(&mut batch, WRITE_BATCH) => n,
        };
        if received == 0 {
            break; // every sender is gone
        }
        let bytes = batch.iter().map(|frame| frame.len()).sum();
        tokio::select! {
            biased;
            _ = ctl.closed() => break,
            sent = send_all(&mut sink, &mut batch) => if sent.is_err() {
                ctl.close(close::NORMAL, "client gone");
                return;
            },
        }
        ctl.written(bytes);
    }
    let (code, reason) = ctl.closing().unwrap_or((close::NORMAL, "closing"));
    // A slow client gets no more queued frames; any other close first flushes what was queued (e.g. the
    // `error` frame explaining a 4001), within the grace period.
    let _ = tokio::time::timeout(CLOSE_GRACE, async {
        batch.clear();
        if code != close::TOO_SLOW {
            while let Ok(frame) = queue.try_recv() {
                batch.push(frame);
            }
            if send_all(&mut sink, &mut batch).await.is_err() {
                return;
            }
        }
        let frame = CloseFrame { code: CloseCode::from(code), reason: reason.into() };
        let _ = sink.send(Message::Close(Some(frame))).await;
    })
    .await;
}

async fn send_all(sink: &mut SplitSink<Socket, Message>, batch: &mut Vec<Frame>) -> Result<(), WsError> {
    for frame in batch.drain(..) {
        // A ByteString is UTF-8: the check cannot fail (it costs a scan of the frame).
        let Ok(text) = Utf8Bytes::try_from(frame.into_bytes()) else { continue };
        sink.feed(Message::Text(text)).await?;
    }
    sink.flush().await
}

/// A `subscribe` frame's content.
struct SubscribeRequest {
    event: String,
    since: Option<Since>,
    sub: Option<String>,
    filter: Option<serde_json::Value>,
    exclude: Option<serde_json::Value>,
}

/// A subscription the connection holds, by name.
struct Held {
    pattern: String,
    /// The filter's canonical text ("" = none): same name + pattern + canonical = the same subscription.
    canonical: String,
    filter: Option<Arc<Filter>>,
    /// Estimated memory of the filter's compiled regexes (in the connection's filter memory budget).
    filter_bytes: usize,
}

/// Why a subscription's filter was not compiled.
enum Uncompiled {
    /// A pattern does not compile: a bad frame.
    Bad(FilterError),
    /// The node's filter memory is used up: `limit_exceeded`.
    OverBudget,
}

struct Connection {
    id: ConnId,
    outbox: Outbox,
    ctl: Arc<Control>,
    identity: Option<Identity>,
    /// By subscription name (default: the pattern).
    subscriptions: HashMap<String, Held>,
    /// Sum of the held subscriptions' `filter_bytes` (`limits.filter_memory_per_connection`).
    filter_bytes: usize,
    bad_frames: u32,
    /// Request rate limit (`limits.requests_per_second`); None = off.
    requests: Option<TokenBucket>,
    gw: Arc<Gateway>,
}

impl Connection {
    async fn run(mut self, mut stream: SplitStream<Socket>) {
        let heartbeat = self.gw.settings.heartbeat_interval();
        let mut ticker = tokio::time::interval_at(Instant::now() + heartbeat, heartbeat);
        // After a long frame handler (a history replay), one ping, not a burst of the missed ones.
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let connect_deadline = tokio::time::sleep(Duration::from_secs(self.gw.settings.auth.connect_timeout));
        tokio::pin!(connect_deadline);
        let mut last_seen = Instant::now();
        // Armed once `connect` succeeded: the end of the session (`auth.max_session_age`).
        let session_end = tokio::time::sleep(Duration::ZERO);
        tokio::pin!(session_end);
        let mut session_armed = false;
        tracing::trace!(conn = self.id, "reader started");
        loop {
            tokio::select! {
                biased;
                _ = self.ctl.closed() => break,
                _ = &mut connect_deadline, if self.identity.is_none() => {
                    self.reply(frames::encode_error(None, ErrorCode::Unauthorized, "connect timeout"));
                    self.ctl.close(close::UNAUTHORIZED, "connect timeout");
                    break;
                }
                _ = &mut session_end, if session_armed => {
                    self.gw.metrics.sessions_expired.increment(1);
                    self.reply(frames::encode_error(None, ErrorCode::Unauthorized, "session expired"));
                    self.ctl.close(close::UNAUTHORIZED, "session expired");
                    break;
                }
                _ = ticker.tick() => {
                    if last_seen.elapsed() >= heartbeat * 2 {
                        self.ctl.close(close::NORMAL, "heartbeat timeout");
                        break;
                    }
                    self.reply(frames::encode_ping());
                }
                message = stream.next() => {
                    last_seen = Instant::now();
                    match message {
                        Some(Ok(Message::Text(_) | Message::Binary(_))) if !self.admit(last_seen) => break,
                        Some(Ok(Message::Text(text))) => {
                            tracing::trace!(conn = self.id, len = text.len(), "frame in");
                            // Boxed: the frame handlers' futures (connect with KV, subscribe with history) are large;
                            // inline they would make every idle connection's task ~9.8 KB instead of ~1.3 KB
                            // (bench/README.md finding 1).
                            Box::pin(self.on_text(&text)).await;
                            if !session_armed {
                                if let Some(end) = self.session_end() {
                                    session_end.as_mut().reset(end);
                                    session_armed = true;
                                }
                            }
                            // Time spent serving the frame (e.g. a history replay) is not the client's silence.
                            last_seen = Instant::now();
                        }
                        Some(Ok(Message::Binary(_))) => {
                            self.bad_frame(None, ErrorCode::BadRequest, "binary frames are not supported")
                        }
                        // Pings are answered by the WebSocket layer; pongs only count as life.
                        Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                        Some(Ok(Message::Close(_))) | None => {
                            self.ctl.close(close::NORMAL, "bye");
                        }
                        Some(Err(WsError::Capacity(CapacityError::MessageTooLong { .. }))) => {
                            self.ctl.close(close::TOO_BIG, "frame too big");
                        }
                        Some(Err(WsError::ConnectionClosed | WsError::AlreadyClosed | WsError::Io(_))) => {
                            self.ctl.close(close::NORMAL, "client gone");
                        }
                        Some(Err(e)) => {
                            tracing::debug!(conn = self.id, error = %e, "WebSocket protocol error");
                            self.ctl.close(close::PROTOCOL, "protocol error");
                        }
                    }
                }
            }
        }
        self.cleanup().await;
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
        if self.outbox.push(ByteString::from(text)) == Push::TooSlow {
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
            ClientFrame::Subscribe { id, event, since, sub, filter, exclude } => {
                self.on_subscribe(id, SubscribeRequest { event, since, sub, filter, exclude }).await
            }
            ClientFrame::Unsubscribe { id, event, sub } => self.on_unsubscribe(id, event, sub).await,
            ClientFrame::Ping { id } => self.reply(frames::encode_pong(id)),
            ClientFrame::Pong => {}
        }
    }

    async fn on_connect(&mut self, id: Option<u64>, token: Option<String>, resume: Option<String>) {
        if self.identity.is_some() {
            return self.bad_frame(id, ErrorCode::BadRequest, "already connected");
        }
        let gw = self.gw.clone();
        match gw.auth.connect(token.as_deref(), resume.as_deref(), token::new_jti()).await {
            Ok(identity) => {
                if let Err(over) =
                    gw.connections.identify(self.id, &identity.sub, &identity.session, (&gw.settings.limits).into())
                {
                    return self.refuse_over_quota(id, over);
                }
                // A revocation that arrived while the token was being checked found no identified socket to close.
                if gw.auth.is_revoked(&identity.sub, Some(&identity.session), identity.auth_time) {
                    gw.metrics.connects_failed.increment(1);
                    self.reply(frames::encode_error(id, ErrorCode::Unauthorized, "unauthorized"));
                    self.ctl.close(close::UNAUTHORIZED, "unauthorized");
                    return;
                }
                let (resume, expires_in) = gw.auth.resume_token(&identity);
                self.reply(frames::encode_connected(
                    id,
                    &identity.session,
                    &gw.settings.node.name,
                    gw.settings.heartbeat,
                    Some((&resume, expires_in)),
                ));
                gw.metrics.connects_ok.increment(1);
                tracing::debug!(conn = self.id, session = %identity.session, "connected");
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

    /// A `connect` over the session or anonymous quota: `limit_exceeded`, then close 4029 (the client retries
    /// with backoff, as with a rate limit: a slot frees when another socket of the session closes).
    fn refuse_over_quota(&mut self, id: Option<u64>, over: OverQuota) {
        self.gw.metrics.connects_failed.increment(1);
        self.gw.metrics.over_quota(over);
        tracing::info!(conn = self.id, reason = over.reason(), "connect refused: over quota");
        self.close_limited(id, over.reason());
    }

    async fn on_subscribe(&mut self, id: Option<u64>, request: SubscribeRequest) {
        let SubscribeRequest { event, since, sub, filter, exclude } = request;
        let Some(identity) = &self.identity else {
            return self.bad_frame(id, ErrorCode::NotConnected, "connect first");
        };
        if !identity.permits(&event) {
            return self.reply(frames::encode_error(id, ErrorCode::Forbidden, "pattern not allowed"));
        }
        let limits = &self.gw.settings.limits;
        let filter_limits = FilterLimits {
            max_conditions: limits.max_filter_conditions,
            max_regex_conditions: limits.max_regex_conditions,
            ..FilterLimits::default()
        };
        // Every limit is checked before any regex is compiled.
        let prepared = match Filter::prepare(filter.as_ref(), exclude.as_ref(), &filter_limits) {
            Ok(prepared) => prepared,
            Err(e) => return self.bad_frame(id, ErrorCode::BadRequest, &e.to_string()),
        };
        let name = sub.clone().unwrap_or_else(|| event.clone());
        let canonical = prepared.canonical().to_string();
        let replacing = match self.subscriptions.get(&name) {
            Some(held) if held.pattern == event && held.canonical == canonical && since.is_none() => {
                let at = SubscribedAt { recovered: None, position: None, sub: sub.as_deref() };
                return self.reply(frames::encode_subscribed_at(id, &event, &at));
            }
            Some(held) => Some(held.filter_bytes),
            None => None,
        };
        if replacing.is_none() && self.subscriptions.len() >= limits.max_subscriptions {
            return self.reply(frames::encode_error(id, ErrorCode::LimitExceeded, "too many subscriptions"));
        }
        let filtered = self.subscriptions.iter().filter(|(n, h)| **n != name && !h.canonical.is_empty()).count();
        if !prepared.is_empty() && filtered >= limits.max_filters {
            return self.reply(frames::encode_error(id, ErrorCode::LimitExceeded, "too many filtered subscriptions"));
        }
        // The connection's other subscriptions' regexes (a replaced subscription's are released with it).
        let kept_bytes = self.filter_bytes - replacing.unwrap_or(0);
        let budget = limits.filter_memory_per_connection;
        if prepared.regexes().next().is_some() && kept_bytes >= budget {
            return self.refuse_filter_memory(id);
        }
        let filter = match self.compile(prepared).await {
            Ok(filter) if filter.is_empty() => None,
            Ok(filter) => Some(Arc::new(filter)),
            Err(Uncompiled::Bad(e)) => return self.bad_frame(id, ErrorCode::BadRequest, &e.to_string()),
            Err(Uncompiled::OverBudget) => return self.refuse_filter_memory(id),
        };
        let filter_bytes = filter.as_ref().map_or(0, |f| f.regex_bytes());
        if kept_bytes + filter_bytes > budget {
            return self.refuse_filter_memory(id);
        }
        if replacing.is_some() {
            self.drop_subscription(&name).await;
        }
        let gw = self.gw.clone();
        let held = Held { pattern: event.clone(), canonical, filter: filter.clone(), filter_bytes };
        // The hub holds this subscription's live frames until `subscribed` (and any replay) is queued, then
        // releases them without duplicates (Hub::go_live). `subscribed` is sent only once the node's NATS
        // interest is in place on the server (Hub::subscribe), so an event published after it is delivered.
        if !self.register(id, &name, held).await {
            return;
        }
        let Some(history) = &gw.history else {
            let at = SubscribedAt { recovered: since.as_ref().map(|_| false), position: None, sub: sub.as_deref() };
            self.reply(frames::encode_subscribed_at(id, &event, &at));
            gw.hub.go_live(&event, self.id, &name, None).await;
            return;
        };
        if tokio::time::timeout(HISTORY_WAIT, gw.nats.flush()).await.is_err() {
            tracing::debug!(conn = self.id, "NATS flush before history read timed out");
        }
        let mut replayed_through = None;
        match since {
            None => {
                let position = history.position().await.ok();
                let at = SubscribedAt {
                    recovered: None,
                    position: position.as_ref().map(|p| (&*p.epoch, p.last_seq)),
                    sub: sub.as_deref(),
                };
                self.reply(frames::encode_subscribed_at(id, &event, &at));
            }
            Some(since) => match self.recover(history, &event, &since).await {
                Ok((Recovery::Complete(events), position)) => {
                    let at = SubscribedAt {
                        recovered: Some(true),
                        position: Some((&position.epoch, position.last_seq)),
                        sub: sub.as_deref(),
                    };
                    self.reply(frames::encode_subscribed_at(id, &event, &at));
                    replayed_through = Some(events.last().map_or(since.seq, |e| e.seq.max(since.seq)));
                    self.replay(&name, filter.as_deref(), &position.epoch, events).await;
                }
                Ok((lost, position)) => {
                    if let Recovery::Refused(refused) = lost {
                        gw.metrics.recovery_refused(refused);
                    }
                    tracing::debug!(conn = self.id, why = lost.why(), "history not recovered");
                    let at = SubscribedAt {
                        recovered: Some(false),
                        position: Some((&position.epoch, position.last_seq)),
                        sub: sub.as_deref(),
                    };
                    self.reply(frames::encode_subscribed_at(id, &event, &at));
                }
                Err(e) => {
                    tracing::warn!(conn = self.id, error = %e, "history unavailable for recovery");
                    let at = SubscribedAt { recovered: Some(false), position: None, sub: sub.as_deref() };
                    self.reply(frames::encode_subscribed_at(id, &event, &at));
                }
            },
        }
        gw.hub.go_live(&event, self.id, &name, replayed_through).await;
    }

    /// Compiles the filter's regexes through the node's pool (off this worker, see [`crate::filter_memory`]).
    async fn compile(&self, prepared: PreparedFilter) -> Result<Filter, Uncompiled> {
        let mut compiled = Vec::new();
        for key in prepared.regexes() {
            match self.gw.filter_memory.regex(key).await {
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

    /// A filter over the connection's or the node's filter memory: `limit_exceeded`, the socket stays open.
    fn refuse_filter_memory(&self, id: Option<u64>) {
        self.gw.filter_memory.refused();
        tracing::debug!(conn = self.id, held = self.filter_bytes, "subscribe refused: filter memory");
        self.reply(frames::encode_error(id, ErrorCode::LimitExceeded, "filter memory limit exceeded"));
    }

    async fn recover(
        &self,
        history: &History,
        pattern: &str,
        since: &Since,
    ) -> Result<(Recovery, Position), HistoryError> {
        let started = Instant::now();
        let result = history.recover_for_client(pattern, &since.epoch, since.seq).await;
        tracing::debug!(conn = self.id, took = ?started.elapsed(), "history recovery");
        result
    }

    /// Adds the subscription to the hub, holding its live frames until [`hub::Hub::go_live`]; false (with an
    /// `error` reply) if that failed.
    async fn register(&mut self, id: Option<u64>, name: &str, held: Held) -> bool {
        let who = Subscription { conn: self.id, name, filter: held.filter.clone(), outbox: &self.outbox };
        match self.gw.hub.subscribe(&held.pattern, who, true).await {
            Ok(()) => {
                self.gw.metrics.subscriptions.increment(1.0);
                self.filter_bytes += held.filter_bytes;
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
        for event in events {
            let Some(data) =
                hub::check(&self.gw.metrics, &event.name, &event.payload, self.gw.settings.limits.max_event_bytes)
            else {
                continue; // the live path drops it too
            };
            if filter.is_some_and(|f| !f.matches(&hub::parse_data(data))) {
                continue;
            }
            let frame = frames::encode_event_at(sub, &event.name, data, event.seq, epoch);
            if self.outbox.push_wait(ByteString::from(frame), HISTORY_WAIT).await != Push::Queued {
                return;
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
        let pattern = self.drop_subscription(&name).await.or(event).unwrap_or_else(|| name.clone());
        self.reply(frames::encode_unsubscribed_named(id, &pattern, sub.as_deref()));
    }

    /// Removes the named subscription from the hub; returns its pattern if it existed.
    async fn drop_subscription(&mut self, name: &str) -> Option<String> {
        let held = self.subscriptions.remove(name)?;
        self.filter_bytes -= held.filter_bytes;
        self.gw.hub.unsubscribe(&held.pattern, self.id, name).await;
        self.gw.metrics.subscriptions.decrement(1.0);
        Some(held.pattern)
    }

    async fn cleanup(&mut self) {
        self.filter_bytes = 0;
        for (name, held) in std::mem::take(&mut self.subscriptions) {
            self.gw.hub.unsubscribe(&held.pattern, self.id, &name).await;
            self.gw.metrics.subscriptions.decrement(1.0);
        }
        self.gw.connections.remove(self.id);
        self.gw.metrics.connections.decrement(1.0);
        if let Some((code, reason)) = self.ctl.closing() {
            tracing::debug!(conn = self.id, code, reason, "connection closed");
        }
    }
}
