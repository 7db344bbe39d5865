//! WebSocket frames of protocol v1 (proto/PROTOCOL.md section 3): decoding client frames and
//! encoding server frames, error codes and close codes.
//!
//! Decoding rules ([`parse_client_frame`]):
//! * the text must be a JSON object with a string `type` among `connect`, `subscribe`,
//!   `unsubscribe`, `ping`, `pong`, `presence`, `presence_stats`, `events`, `publish`, `rpc`; anything else is a
//!   bad frame (`bad_request`);
//! * `id`, when present, must be an integer in 0 ..= 2^53-1 (`1.0`, `"1"`, `-1` and `null` are
//!   wrong types); it is read first so that the error for a bad frame can echo it;
//! * a present field of a known name with the wrong JSON type (including `null`) is a bad frame,
//!   except `since`, where `null` is the same as absent (as `vectors/frames.json` fixes);
//!   unknown fields are ignored (forward compatibility);
//! * `subscribe`/`unsubscribe` need `event`, a valid pattern (`names::validate_pattern`);
//!   `subscribe` may carry `since: {"epoch": string of 1..64 chars, "seq": integer 0..2^53-1}`
//!   to recover missed events (PROTOCOL.md section 7);
//! * `connect` takes at most one of `token` and `resume` (both strings); neither means anonymous.
//! * `subscribe` may carry `presence` (a boolean); `presence` and `presence_stats` need `event`, a valid
//!   pattern (PROTOCOL.md section 11).
//! * `publish` needs `event` and `rpc` needs `method`, each a valid name (no wildcards), and `rpc` an `id`;
//!   their `data` is kept as the bytes received (`null` when absent), sections 13.1 and 14.
//! * `events` may carry `event`, a valid pattern (PROTOCOL.md section 12).
//!
//! Encoders write compact JSON with the field order of the tables in PROTOCOL.md (sections 3 and 7)
//! and of `proto/vectors/frames.json` (`server` cases are byte-exact), omitting `id` when it is
//! `None`. [`encode_event`] / [`encode_event_at`] are the hot path: one allocation each, `data`
//! copied verbatim.
//! The JSON Schemas are `proto/schema/client-frame.schema.json` and `server-frame.schema.json`.

use std::fmt::Write as _;

use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::protocol::names;

/// Largest `id` a client may send: 2^53-1, the largest integer a JavaScript number holds exactly.
pub const MAX_ID: u64 = (1 << 53) - 1;

/// A history position: the stream's `epoch` and the last `seq` the client has seen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Since {
    pub epoch: String,
    pub seq: u64,
}

/// A decoded client frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientFrame {
    /// `token` and `resume` are never both `Some`; both `None` asks for anonymous access.
    Connect {
        id: Option<u64>,
        token: Option<String>,
        resume: Option<String>,
    },
    /// `event` is a valid pattern; `since` asks for recovery (PROTOCOL.md section 7).
    /// `sub` names the subscription (default: the pattern); `filter`/`exclude` are JSON objects of Django-style
    /// lookups (section 8), checked further by [`crate::protocol::filter::Filter::prepare`].
    Subscribe {
        id: Option<u64>,
        event: String,
        since: Option<Since>,
        sub: Option<String>,
        filter: Option<Value>,
        exclude: Option<Value>,
        /// Also be present on the channel `event` (PROTOCOL.md section 11); `false` when absent.
        presence: bool,
    },
    /// `event` is a valid pattern.
    /// Names the subscription by `sub`, or by `event` (the name a subscription gets by default); at least one.
    Unsubscribe {
        id: Option<u64>,
        event: Option<String>,
        sub: Option<String>,
    },
    Ping {
        id: Option<u64>,
    },
    Pong,
    /// Who is present on the channel `event` (a valid pattern; section 11); `stats`: counts only
    /// (`presence_stats`).
    Presence {
        id: Option<u64>,
        event: String,
        stats: bool,
    },
    /// The catalogued events the connection may subscribe to (section 12), narrowed by `event` (a valid
    /// pattern) when given.
    Events {
        id: Option<u64>,
        event: Option<String>,
    },
    /// Client publish (section 13.1): `event` is a name; `data` the value's bytes as received (`null` when
    /// absent).
    Publish {
        id: Option<u64>,
        event: String,
        data: String,
    },
    /// RPC (section 14): `id` is required; `method` is a name; `data` as for `Publish`.
    Rpc {
        id: u64,
        method: String,
        data: String,
    },
}

impl ClientFrame {
    /// The request id, for echoing in the reply (`Pong` has none).
    pub fn id(&self) -> Option<u64> {
        match self {
            ClientFrame::Connect { id, .. }
            | ClientFrame::Subscribe { id, .. }
            | ClientFrame::Unsubscribe { id, .. }
            | ClientFrame::Presence { id, .. }
            | ClientFrame::Publish { id, .. }
            | ClientFrame::Events { id, .. }
            | ClientFrame::Ping { id } => *id,
            ClientFrame::Rpc { id, .. } => Some(*id),
            ClientFrame::Pong => None,
        }
    }
}

/// A bad client frame: answer `error` `bad_request` (see [`FrameError::encode`]) and count it.
/// `id` is the frame's id when it could be read; `message` is a short fixed text that never
/// repeats client input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FrameError {
    pub id: Option<u64>,
    pub message: String,
}

impl FrameError {
    fn new(id: Option<u64>, message: impl Into<String>) -> Self {
        FrameError { id, message: message.into() }
    }

    /// The `error` frame (code `bad_request`) that answers this bad frame.
    pub fn encode(&self) -> String {
        encode_error(self.id, ErrorCode::BadRequest, &self.message)
    }
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for FrameError {}

/// Reads the optional field `key` as a string; present with another type is an error.
fn opt_str(obj: &mut Map<String, Value>, key: &str, id: Option<u64>) -> Result<Option<String>, FrameError> {
    match obj.remove(key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(FrameError::new(id, format!("field '{key}' must be a string"))),
    }
}

/// Reads the required `event` field: a string holding a valid pattern.
fn event_pattern(obj: &mut Map<String, Value>, id: Option<u64>) -> Result<String, FrameError> {
    let event = opt_str(obj, "event", id)?.ok_or_else(|| FrameError::new(id, "field 'event' is required"))?;
    names::validate_pattern(&event).map_err(|e| FrameError::new(id, format!("invalid event: {e}")))?;
    Ok(event)
}

/// Is `name` a valid subscription name: 1..64 characters of `[A-Za-z0-9_.:*>-]`?
pub fn valid_sub_name(name: &str) -> bool {
    (crate::protocol::constants::sub_names::MIN_CHARS..=crate::protocol::constants::sub_names::MAX_CHARS)
        .contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'*' | b'>' | b'-'))
}

/// Reads the optional `sub` (subscription name).
fn sub_name(obj: &mut Map<String, Value>, id: Option<u64>) -> Result<Option<String>, FrameError> {
    match opt_str(obj, "sub", id)? {
        Some(name) if !valid_sub_name(&name) => {
            Err(FrameError::new(id, "field 'sub' must be 1..64 characters of [A-Za-z0-9_.:*>-]"))
        }
        name => Ok(name),
    }
}

/// Reads the optional `filter`/`exclude`: a JSON object (its lookups are checked by the filter module).
fn lookups(obj: &mut Map<String, Value>, key: &'static str, id: Option<u64>) -> Result<Option<Value>, FrameError> {
    match obj.remove(key) {
        None => Ok(None),
        Some(v @ Value::Object(_)) => Ok(Some(v)),
        Some(_) => Err(FrameError::new(id, format!("field '{key}' must be an object of lookups"))),
    }
}

/// Whether `epoch` may be the epoch of a `since` position: 1..64 bytes.
pub fn valid_epoch(epoch: &str) -> bool {
    !epoch.is_empty() && epoch.len() <= 64
}

/// Reads the optional `since` object: `{"epoch": string (1..64 chars), "seq": integer 0..2^53-1}`.
fn since(obj: &mut Map<String, Value>, id: Option<u64>) -> Result<Option<Since>, FrameError> {
    const BAD: &str = "field 'since' must be {\"epoch\": string, \"seq\": integer}";
    let mut since = match obj.remove("since") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Object(since)) => since,
        Some(_) => return Err(FrameError::new(id, BAD)),
    };
    let epoch = match since.remove("epoch") {
        Some(Value::String(e)) if valid_epoch(&e) => e,
        _ => return Err(FrameError::new(id, BAD)),
    };
    let seq = match since.remove("seq").and_then(|v| v.as_u64()) {
        Some(seq) if seq <= MAX_ID => seq,
        _ => return Err(FrameError::new(id, BAD)),
    };
    Ok(Some(Since { epoch, seq }))
}

/// Reads the required field `key` of a `publish`/`rpc`: a string holding a valid name (no wildcards).
fn action_name(obj: &mut Map<String, Value>, key: &'static str, id: Option<u64>) -> Result<String, FrameError> {
    let name = opt_str(obj, key, id)?.ok_or_else(|| FrameError::new(id, format!("field '{key}' is required")))?;
    names::validate_name(&name).map_err(|e| FrameError::new(id, format!("invalid {key}: {e}")))?;
    Ok(name)
}

/// The `data` value of a `publish`/`rpc` frame as received (its bytes in the frame, whitespace included), or
/// `null` when absent. The frame already parsed as a JSON object; a second, borrowing pass takes the raw text.
fn raw_data(text: &str, id: Option<u64>) -> Result<String, FrameError> {
    #[derive(serde::Deserialize)]
    struct Data<'a> {
        #[serde(borrow, default)]
        data: Option<&'a RawValue>,
    }
    match serde_json::from_str::<Data>(text) {
        Ok(Data { data: Some(raw) }) => Ok(raw.get().to_string()),
        Ok(Data { data: None }) => Ok(String::from("null")),
        Err(_) => Err(FrameError::new(id, "field 'data' must be a JSON value")),
    }
}

/// Decodes one client text frame. Never panics.
pub fn parse_client_frame(text: &str) -> Result<ClientFrame, FrameError> {
    let mut obj = match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(obj)) => obj,
        Ok(_) => return Err(FrameError::new(None, "frame must be a JSON object")),
        Err(_) => return Err(FrameError::new(None, "frame is not valid JSON")),
    };
    let id = match obj.remove("id") {
        None => None,
        Some(Value::Number(n)) => match n.as_u64() {
            Some(v) if v <= MAX_ID => Some(v),
            _ => return Err(FrameError::new(None, "field 'id' must be an integer from 0 to 2^53-1")),
        },
        Some(_) => return Err(FrameError::new(None, "field 'id' must be an integer from 0 to 2^53-1")),
    };
    let kind = match obj.remove("type") {
        Some(Value::String(s)) => s,
        Some(_) => return Err(FrameError::new(id, "field 'type' must be a string")),
        None => return Err(FrameError::new(id, "field 'type' is required")),
    };
    match kind.as_str() {
        "connect" => {
            let token = opt_str(&mut obj, "token", id)?;
            let resume = opt_str(&mut obj, "resume", id)?;
            if token.is_some() && resume.is_some() {
                return Err(FrameError::new(id, "connect takes 'token' or 'resume', not both"));
            }
            Ok(ClientFrame::Connect { id, token, resume })
        }
        "subscribe" => {
            let event = event_pattern(&mut obj, id)?;
            let since = since(&mut obj, id)?;
            let sub = sub_name(&mut obj, id)?;
            let filter = lookups(&mut obj, "filter", id)?;
            let exclude = lookups(&mut obj, "exclude", id)?;
            let presence = match obj.remove("presence") {
                None => false,
                Some(Value::Bool(presence)) => presence,
                Some(_) => return Err(FrameError::new(id, "field 'presence' must be a boolean")),
            };
            Ok(ClientFrame::Subscribe { id, event, since, sub, filter, exclude, presence })
        }
        "unsubscribe" => {
            let sub = sub_name(&mut obj, id)?;
            let event =
                if obj.contains_key("event") || sub.is_none() { Some(event_pattern(&mut obj, id)?) } else { None };
            Ok(ClientFrame::Unsubscribe { id, event, sub })
        }
        "presence" | "presence_stats" => {
            let event = event_pattern(&mut obj, id)?;
            Ok(ClientFrame::Presence { id, event, stats: kind == "presence_stats" })
        }
        "events" => {
            let event = if obj.contains_key("event") { Some(event_pattern(&mut obj, id)?) } else { None };
            Ok(ClientFrame::Events { id, event })
        }
        "publish" => {
            let event = action_name(&mut obj, "event", id)?;
            Ok(ClientFrame::Publish { id, event, data: raw_data(text, id)? })
        }
        "rpc" => {
            let Some(id) = id else { return Err(FrameError::new(None, "rpc needs an 'id'")) };
            let method = action_name(&mut obj, "method", Some(id))?;
            Ok(ClientFrame::Rpc { id, method, data: raw_data(text, Some(id))? })
        }
        "ping" => Ok(ClientFrame::Ping { id }),
        "pong" => Ok(ClientFrame::Pong),
        _ => Err(FrameError::new(id, "unknown frame type")),
    }
}

/// Error codes of `error` frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorCode {
    /// Malformed frame, invalid name or pattern, second `connect`.
    BadRequest,
    /// Bad, expired, used or revoked token (followed by close 4001).
    Unauthorized,
    /// Pattern outside the token's `allow`.
    Forbidden,
    /// `subscribe`/`unsubscribe` before `connected`.
    NotConnected,
    /// Too many subscriptions or connections.
    LimitExceeded,
    /// The gateway could not do it now (e.g. NATS down); retry later.
    Internal,
    /// No worker for an RPC's method, or NATS down (section 14).
    Unavailable,
    /// No reply to an RPC within `rpc.timeout` (section 14).
    Timeout,
    /// Strict catalog mode: the pattern can match no catalogued event (section 12).
    UnknownEvent,
}

impl ErrorCode {
    pub fn as_str(&self) -> &'static str {
        use crate::protocol::constants::error_codes;
        match self {
            ErrorCode::BadRequest => error_codes::BAD_REQUEST,
            ErrorCode::Unauthorized => error_codes::UNAUTHORIZED,
            ErrorCode::Forbidden => error_codes::FORBIDDEN,
            ErrorCode::NotConnected => error_codes::NOT_CONNECTED,
            ErrorCode::LimitExceeded => error_codes::LIMIT_EXCEEDED,
            ErrorCode::Internal => error_codes::INTERNAL,
            ErrorCode::Unavailable => error_codes::UNAVAILABLE,
            ErrorCode::Timeout => error_codes::TIMEOUT,
            ErrorCode::UnknownEvent => error_codes::UNKNOWN_EVENT,
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// WebSocket close codes (PROTOCOL.md section 3, "Close codes").
pub mod close {
    use crate::protocol::constants::close as codes;

    /// Normal, e.g. heartbeat timeout: reconnect with backoff.
    pub const NORMAL: u16 = codes::NORMAL;
    /// Protocol violation (too many bad frames).
    pub const PROTOCOL: u16 = codes::PROTOCOL_VIOLATION;
    /// Frame too big.
    pub const TOO_BIG: u16 = codes::FRAME_TOO_BIG;
    /// Node restarting (drain): reconnect at once.
    pub const RESTART: u16 = codes::RESTART;
    /// Connect timeout, bad/expired/used token.
    pub const UNAUTHORIZED: u16 = codes::UNAUTHORIZED;
    /// Forbidden / revoked: stop.
    pub const FORBIDDEN: u16 = codes::FORBIDDEN;
    /// Outbound queue full.
    pub const TOO_SLOW: u16 = codes::TOO_SLOW;
    /// Rate limited.
    pub const RATE_LIMITED: u16 = codes::RATE_LIMITED;
    /// The token store (NATS) could not answer; the token was not consumed: retry later.
    pub const TRY_AGAIN_LATER: u16 = codes::TRY_AGAIN_LATER;
}

/// Appends `s` as a JSON string literal. Strings without characters that need escaping (all
/// names, patterns, codes, tokens) are copied as they are; others go through serde_json.
fn push_json_str(buf: &mut String, s: &str) {
    if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        buf.push('"');
        buf.push_str(s);
        buf.push('"');
    } else {
        // Serialising a &str cannot fail.
        buf.push_str(&serde_json::to_string(s).unwrap_or_else(|_| String::from("\"\"")));
    }
}

/// `s` as a JSON string literal.
pub fn json_string(s: &str) -> String {
    let mut buf = String::with_capacity(s.len() + 2);
    push_json_str(&mut buf, s);
    buf
}

/// Starts a frame: `{"type":"<kind>"` then `,"id":N` when `id` is set.
fn start(kind: &str, id: Option<u64>, extra: usize) -> String {
    let mut buf = String::with_capacity(32 + kind.len() + extra);
    buf.push_str("{\"type\":\"");
    buf.push_str(kind);
    buf.push('"');
    if let Some(id) = id {
        push_num_field(&mut buf, "id", id);
    }
    buf
}

/// Appends `,"key":` followed by the JSON string `value`.
fn push_str_field(buf: &mut String, key: &str, value: &str) {
    buf.push_str(",\"");
    buf.push_str(key);
    buf.push_str("\":");
    push_json_str(buf, value);
}

/// Appends `,"key":N`.
fn push_num_field(buf: &mut String, key: &str, value: u64) {
    buf.push_str(",\"");
    buf.push_str(key);
    buf.push_str("\":");
    // Writing to a String cannot fail.
    let _ = write!(buf, "{value}");
}

/// [`encode_connected`] with the connection's own client id after `session` (section 13.1: a client recognises
/// its own publishes by `from.client`).
pub fn encode_connected_as(
    id: Option<u64>,
    session: &str,
    client: &str,
    node: &str,
    heartbeat: u64,
    resume: Option<(&str, u64)>,
) -> String {
    let mut buf = encode_connected(id, session, node, heartbeat, resume);
    let at = buf.find(",\"node\":").unwrap_or(buf.len() - 1);
    let mut field = String::with_capacity(client.len() + 12);
    push_str_field(&mut field, "client", client);
    buf.insert_str(at, &field);
    buf
}

/// `{"type":"connected","id":..,"session":..,"node":..,"heartbeat":..,"resume":..,"resume_expires_in":..}`;
/// `resume` is `(token, expires_in seconds)`; both resume fields are omitted when it is `None`.
pub fn encode_connected(
    id: Option<u64>,
    session: &str,
    node: &str,
    heartbeat: u64,
    resume: Option<(&str, u64)>,
) -> String {
    let extra = session.len() + node.len() + resume.map_or(0, |(t, _)| t.len()) + 80;
    let mut buf = start("connected", id, extra);
    push_str_field(&mut buf, "session", session);
    push_str_field(&mut buf, "node", node);
    push_num_field(&mut buf, "heartbeat", heartbeat);
    if let Some((token, expires_in)) = resume {
        push_str_field(&mut buf, "resume", token);
        push_num_field(&mut buf, "resume_expires_in", expires_in);
    }
    buf.push('}');
    buf
}

/// Shared shape of `subscribed` and `unsubscribed`.
fn encode_sub_reply(kind: &str, id: Option<u64>, event: &str) -> String {
    let mut buf = start(kind, id, event.len() + 12);
    push_str_field(&mut buf, "event", event);
    buf.push('}');
    buf
}

/// `{"type":"subscribed","id":..,"event":..}`
pub fn encode_subscribed(id: Option<u64>, event: &str) -> String {
    encode_sub_reply("subscribed", id, event)
}

/// `{"type":"unsubscribed","id":..,"event":..}`
pub fn encode_unsubscribed(id: Option<u64>, event: &str) -> String {
    encode_sub_reply("unsubscribed", id, event)
}

/// `{"type":"unsubscribed","id":..,"event":..,"sub":..}`: `event` is the pattern of the removed subscription
/// (or the one asked for), `sub` its name when the client named it.
pub fn encode_unsubscribed_named(id: Option<u64>, event: &str, sub: Option<&str>) -> String {
    let mut buf = encode_unsubscribed(id, event);
    if let Some(sub) = sub {
        buf.pop();
        push_str_field(&mut buf, "sub", sub);
        buf.push('}');
    }
    buf
}

/// `{"type":"event","sub":..,"name":..,"data":<data verbatim>}`. Hot path: one allocation.
pub fn encode_event(sub: &str, name: &str, data: &RawValue) -> String {
    let mut buf = event_without_brace(sub, name, data, 0);
    buf.push('}');
    buf
}

/// `{"type":"event","sub":..,"name":..,"data":..` with room for `extra` more bytes.
fn event_without_brace(sub: &str, name: &str, data: &RawValue, extra: usize) -> String {
    let data = data.get();
    let mut buf = String::with_capacity(44 + sub.len() + name.len() + data.len() + extra);
    buf.push_str("{\"type\":\"event\"");
    push_str_field(&mut buf, "sub", sub);
    push_str_field(&mut buf, "name", name);
    buf.push_str(",\"data\":");
    buf.push_str(data);
    buf
}

/// `,"from":{"user":..,"client":..}`: the sender of a client publish as receivers see it (section 13.1), built
/// once per NATS message and appended to each group's event frame.
pub fn encode_from(user: &str, client: &str) -> String {
    let mut buf = String::with_capacity(32 + user.len() + client.len());
    buf.push_str(",\"from\":{\"user\":");
    push_json_str(&mut buf, user);
    push_str_field(&mut buf, "client", client);
    buf.push('}');
    buf
}

/// An event frame with its sender (`from`, [`encode_from`]'s text) and its history position, each when present:
/// `{"type":"event","sub":..,"name":..,"data":..[,"from":{..}][,"seq":N,"epoch":".."]}`.
pub fn encode_event_full(
    sub: &str,
    name: &str,
    data: &RawValue,
    from: Option<&str>,
    position: Option<(u64, &str)>,
) -> String {
    let extra = from.map_or(0, str::len) + position.map_or(0, |(_, e)| 40 + e.len());
    let mut buf = event_without_brace(sub, name, data, extra);
    if let Some(from) = from {
        buf.push_str(from);
    }
    if let Some((seq, epoch)) = position {
        push_num_field(&mut buf, "seq", seq);
        push_str_field(&mut buf, "epoch", epoch);
    }
    buf.push('}');
    buf
}

/// `{"type":"published","id":..}`: a client publish was handed to NATS (section 13.1).
pub fn encode_published(id: Option<u64>) -> String {
    let mut buf = start("published", id, 0);
    buf.push('}');
    buf
}

/// `{"type":"rpc_result","id":..,"data":<data verbatim>}` (section 14).
pub fn encode_rpc_result(id: u64, data: &str) -> String {
    let mut buf = start("rpc_result", Some(id), data.len() + 8);
    buf.push_str(",\"data\":");
    buf.push_str(data);
    buf.push('}');
    buf
}

/// The frame answering RPC `id` for a worker's reply body (section 14, "The answer"): `(rpc_result, true)` for
/// `{"data":X}` (X copied verbatim), `(error, false)` for `{"error":{"code":C,"message":M}}`; None for anything
/// else (not UTF-8 JSON, not an object, both or neither key, a code that is not 1..64 of `[a-z0-9_]` starting
/// with a letter, a message that is not a string of at most 256 bytes): the gateway answers "bad rpc reply".
/// The caller bounds the reply's size first (`rpc.max_reply_bytes`).
pub fn encode_rpc_reply(id: u64, reply: &[u8]) -> Option<(String, bool)> {
    use crate::protocol::constants::actions::{RPC_ERROR_CODE_MAX_CHARS, RPC_ERROR_MESSAGE_MAX_BYTES};
    #[derive(serde::Deserialize)]
    struct WorkerError {
        code: String,
        message: String,
    }
    let text = std::str::from_utf8(reply).ok()?;
    let envelope: std::collections::BTreeMap<String, &RawValue> = serde_json::from_str(text).ok()?;
    match (envelope.get("data"), envelope.get("error")) {
        (Some(data), None) => Some((encode_rpc_result(id, data.get()), true)),
        (None, Some(error)) => {
            let WorkerError { code, message } = serde_json::from_str(error.get()).ok()?;
            let code_ok = code.len() <= RPC_ERROR_CODE_MAX_CHARS
                && code.bytes().next().is_some_and(|b| b.is_ascii_lowercase())
                && code.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
            (code_ok && message.len() <= RPC_ERROR_MESSAGE_MAX_BYTES)
                .then(|| (encode_error_str(Some(id), &code, &message), false))
        }
        _ => None,
    }
}

/// An `error` frame with a code that is not the gateway's own (a worker's RPC error code, already checked).
pub fn encode_error_str(id: Option<u64>, code: &str, message: &str) -> String {
    let mut buf = start("error", id, message.len() + code.len() + 30);
    push_str_field(&mut buf, "code", code);
    push_str_field(&mut buf, "message", message);
    buf.push('}');
    buf
}

/// An event frame with its history position: `...,"data":..,"seq":N,"epoch":".."}` (PROTOCOL.md section 7).
pub fn encode_event_at(sub: &str, name: &str, data: &RawValue, seq: u64, epoch: &str) -> String {
    let mut buf = event_without_brace(sub, name, data, 40 + epoch.len());
    push_num_field(&mut buf, "seq", seq);
    push_str_field(&mut buf, "epoch", epoch);
    buf.push('}');
    buf
}

/// The history position `(epoch, seq)` an encoded `event` or `position` frame carries, read from the fixed
/// tail the encoders write ([`encode_event_at`]: `..,"seq":N,"epoch":"E"}`, [`encode_position`]:
/// `..,"epoch":"E","seq":N}`); None for any other frame. Anchored at the end of the frame, after the verbatim
/// `data`, and `E` must be alphanumeric, so a payload cannot fake a position: inside a JSON string every `"` is
/// escaped, and a payload object ends the frame with `}}`.
pub fn stream_position(frame: &str) -> Option<(&str, u64)> {
    fn seq(digits: &str) -> Option<u64> {
        (!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())).then(|| digits.parse().ok()).flatten()
    }
    fn epoch(e: &str) -> Option<&str> {
        (valid_epoch(e) && e.bytes().all(|b| b.is_ascii_alphanumeric())).then_some(e)
    }
    if frame.starts_with("{\"type\":\"event\",") {
        let (head, e) = frame.strip_suffix("\"}")?.rsplit_once(",\"epoch\":\"")?;
        let (_, n) = head.rsplit_once(",\"seq\":")?;
        Some((epoch(e)?, seq(n)?))
    } else if frame.starts_with("{\"type\":\"position\",") {
        let (head, n) = frame.strip_suffix('}')?.rsplit_once(",\"seq\":")?;
        let (_, e) = head.rsplit_once(",\"epoch\":\"")?;
        Some((epoch(e.strip_suffix('"')?)?, seq(n)?))
    } else {
        None
    }
}

/// What a `subscribed` reply says about history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubscribedAt<'a> {
    /// Only for a `subscribe` with `since`: were all missed events replayed?
    pub recovered: Option<bool>,
    /// `(epoch, seq)`: the stream position the subscription is live from (the next `since` may use it);
    /// None when history is off or unavailable.
    pub position: Option<(&'a str, u64)>,
    /// The subscription's name when the client gave one (`sub`), echoed.
    pub sub: Option<&'a str>,
}

/// `{"type":"subscribed","id":..,"event":..,"recovered":..,"epoch":..,"seq":..}`
pub fn encode_subscribed_at(id: Option<u64>, event: &str, at: &SubscribedAt) -> String {
    let mut buf = encode_subscribed(id, event);
    buf.pop();
    if let Some(sub) = at.sub {
        push_str_field(&mut buf, "sub", sub);
    }
    if let Some(recovered) = at.recovered {
        buf.push_str(if recovered { ",\"recovered\":true" } else { ",\"recovered\":false" });
    }
    if let Some((epoch, seq)) = at.position {
        push_str_field(&mut buf, "epoch", epoch);
        push_num_field(&mut buf, "seq", seq);
    }
    buf.push('}');
    buf
}

/// `{"type":"pong","id":..}`
pub fn encode_pong(id: Option<u64>) -> String {
    let mut buf = start("pong", id, 0);
    buf.push('}');
    buf
}

/// `{"type":"position","sub":..,"epoch":..,"seq":..}`: every event of subscription `sub` up to `seq` of `epoch`
/// has been sent; a quiet subscription's resume position moves forward (proto/PROTOCOL.md section 7).
pub fn encode_position(sub: &str, epoch: &str, seq: u64) -> String {
    let mut buf = String::with_capacity(48 + sub.len() + epoch.len());
    buf.push_str("{\"type\":\"position\"");
    push_str_field(&mut buf, "sub", sub);
    push_str_field(&mut buf, "epoch", epoch);
    push_num_field(&mut buf, "seq", seq);
    buf.push('}');
    buf
}

/// `{"type":"ping"}`
pub fn encode_ping() -> String {
    String::from("{\"type\":\"ping\"}")
}

/// `{"type":"error","id":..,"code":..,"message":..}`. `message` must be short and free of secrets.
pub fn encode_error(id: Option<u64>, code: ErrorCode, message: &str) -> String {
    let mut buf = start("error", id, message.len() + 40);
    push_str_field(&mut buf, "code", code.as_str());
    push_str_field(&mut buf, "message", message);
    buf.push('}');
    buf
}

/// A present client as it appears in a `presence` snapshot: `{"client":..,"user":..,"info":<info verbatim>}`
/// (`info` omitted when `None`; it is a checked JSON object).
pub fn encode_presence_member(client: &str, user: &str, info: Option<&str>) -> String {
    let mut buf = String::with_capacity(32 + client.len() + user.len() + info.map_or(0, str::len));
    buf.push_str("{\"client\":");
    push_json_str(&mut buf, client);
    push_str_field(&mut buf, "user", user);
    if let Some(info) = info {
        buf.push_str(",\"info\":");
        buf.push_str(info);
    }
    buf.push('}');
    buf
}

/// `{"type":"join","sub":..,"client":..,"user":..,"info":..}` (section 11): `member` is
/// [`encode_presence_member`]'s text.
pub fn encode_join(sub: &str, member: &str) -> String {
    presence_event("join", sub, member)
}

/// `{"type":"leave","sub":..,"client":..,"user":..}`: `member` is [`encode_presence_member`]'s text without
/// `info`.
pub fn encode_leave(sub: &str, member: &str) -> String {
    presence_event("leave", sub, member)
}

fn presence_event(kind: &str, sub: &str, member: &str) -> String {
    let mut buf = start(kind, None, sub.len() + member.len() + 8);
    push_str_field(&mut buf, "sub", sub);
    // The member object's fields follow, without its braces.
    let fields = member.strip_prefix('{').and_then(|m| m.strip_suffix('}')).unwrap_or("");
    if !fields.is_empty() {
        buf.push(',');
        buf.push_str(fields);
    }
    buf.push('}');
    buf
}

/// `{"type":"presence_paused","sub":..,"clients":N}`: the channel has more members than
/// `presence.max_join_leave_members`; no `join`/`leave` follow until `presence_resumed` (section 11).
pub fn encode_presence_paused(sub: &str, clients: usize) -> String {
    presence_mode("presence_paused", sub, clients)
}

/// `{"type":"presence_resumed","sub":..,"clients":N}`: `join`/`leave` follow again; those of the pause are
/// not replayed (a client keeping a list takes a snapshot).
pub fn encode_presence_resumed(sub: &str, clients: usize) -> String {
    presence_mode("presence_resumed", sub, clients)
}

fn presence_mode(kind: &str, sub: &str, clients: usize) -> String {
    let mut buf = start(kind, None, sub.len() + 24);
    push_str_field(&mut buf, "sub", sub);
    push_num_field(&mut buf, "clients", clients as u64);
    buf.push('}');
    buf
}

/// `{"type":"presence","id":..,"event":..,"clients":[<member>,...],"truncated":..}` (section 11).
pub fn encode_presence<'a>(
    id: Option<u64>,
    event: &str,
    members: impl Iterator<Item = &'a str>,
    truncated: bool,
) -> String {
    let mut buf = start("presence", id, event.len() + 64);
    push_str_field(&mut buf, "event", event);
    buf.push_str(",\"clients\":[");
    for (i, member) in members.enumerate() {
        if i > 0 {
            buf.push(',');
        }
        buf.push_str(member);
    }
    buf.push_str("],\"truncated\":");
    buf.push_str(if truncated { "true" } else { "false" });
    buf.push('}');
    buf
}

/// `{"type":"presence_stats","id":..,"event":..,"clients":N,"users":N}` (section 11).
pub fn encode_presence_stats(id: Option<u64>, event: &str, clients: usize, users: usize) -> String {
    let mut buf = start("presence_stats", id, event.len() + 48);
    push_str_field(&mut buf, "event", event);
    push_num_field(&mut buf, "clients", clients as u64);
    push_num_field(&mut buf, "users", users as u64);
    buf.push('}');
    buf
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presence_frames() {
        let alice = encode_presence_member("c1", "alice", Some(r#"{"name":"Alice"}"#));
        assert_eq!(alice, r#"{"client":"c1","user":"alice","info":{"name":"Alice"}}"#);
        assert_eq!(
            encode_join("chat.lobby", &alice),
            r#"{"type":"join","sub":"chat.lobby","client":"c1","user":"alice","info":{"name":"Alice"}}"#
        );
        assert_eq!(
            encode_leave("lobby", &encode_presence_member("c1", "alice", None)),
            r#"{"type":"leave","sub":"lobby","client":"c1","user":"alice"}"#
        );
        assert_eq!(
            encode_presence(Some(5), "chat.lobby", [alice.as_str()].into_iter(), true),
            r#"{"type":"presence","id":5,"event":"chat.lobby","clients":[{"client":"c1","user":"alice","info":{"name":"Alice"}}],"truncated":true}"#
        );
        assert_eq!(
            encode_presence(None, "a", std::iter::empty(), false),
            r#"{"type":"presence","event":"a","clients":[],"truncated":false}"#
        );
        assert_eq!(
            encode_presence_stats(Some(6), "a", 3, 2),
            r#"{"type":"presence_stats","id":6,"event":"a","clients":3,"users":2}"#
        );
    }

    fn json(s: &str) -> Value {
        serde_json::from_str(s).expect("encoder output must be JSON")
    }

    #[test]
    fn stream_position_reads_the_tail_the_encoders_write() {
        let data = RawValue::from_string(r#"{"pk":1}"#.into()).unwrap();
        assert_eq!(stream_position(&encode_event_at("a.>", "a.b", &data, 57, "18a6f")), Some(("18a6f", 57)));
        assert_eq!(stream_position(&encode_position("a.>", "18a6f", 1234)), Some(("18a6f", 1234)));
        assert_eq!(stream_position(&encode_event("a.>", "a.b", &data)), None);
        assert_eq!(stream_position(&encode_pong(Some(1))), None);
        // Payloads that look like a position are not one.
        for payload in [r#"{"seq":5,"epoch":"ab"}"#, r#""x,\"seq\":5,\"epoch\":\"ab""#, r#"["seq",5]"#] {
            let data = RawValue::from_string(payload.into()).unwrap();
            assert_eq!(stream_position(&encode_event("a", "a", &data)), None, "{payload}");
        }
        let subscribed = encode_subscribed_at(
            Some(2),
            "a",
            &SubscribedAt { recovered: Some(true), position: Some(("18a6f", 41)), sub: None },
        );
        assert_eq!(stream_position(&subscribed), None, "only events and positions carry an SSE id");
    }

    #[test]
    fn connected_field_order_and_optional_resume() {
        assert_eq!(
            encode_connected(Some(1), "s-1", "gw-1", 25, Some(("tg1r.a.b", 900))),
            r#"{"type":"connected","id":1,"session":"s-1","node":"gw-1","heartbeat":25,"resume":"tg1r.a.b","resume_expires_in":900}"#
        );
        assert_eq!(
            encode_connected(None, "s", "n", 5, None),
            r#"{"type":"connected","session":"s","node":"n","heartbeat":5}"#
        );
    }

    #[test]
    fn strings_are_escaped() {
        let out = encode_error(None, ErrorCode::Internal, "a \"quoted\"\n\\ message\u{1}");
        assert_eq!(json(&out)["message"], "a \"quoted\"\n\\ message\u{1}");
        let out = encode_connected(None, "é\"", "n\t", 1, None);
        assert_eq!(json(&out)["session"], "é\"");
        assert_eq!(json(&out)["node"], "n\t");
    }

    #[test]
    fn event_embeds_data_verbatim() {
        let raw = RawValue::from_string("[1, 2.50, {\"x\" : null}]".into()).unwrap();
        let out = encode_event("a.>", "a.b", &raw);
        assert_eq!(out, r#"{"type":"event","sub":"a.>","name":"a.b","data":[1, 2.50, {"x" : null}]}"#);
    }

    #[test]
    fn history_positions_follow_the_base_frames() {
        let raw = RawValue::from_string("{\"pk\":1}".into()).unwrap();
        assert_eq!(
            encode_event_at("a.>", "a.b", &raw, 57, "18a6f"),
            r#"{"type":"event","sub":"a.>","name":"a.b","data":{"pk":1},"seq":57,"epoch":"18a6f"}"#
        );
        let at = SubscribedAt { recovered: Some(true), position: Some(("18a6f", 41)), sub: None };
        assert_eq!(
            encode_subscribed_at(Some(2), "shop.>", &at),
            r#"{"type":"subscribed","id":2,"event":"shop.>","recovered":true,"epoch":"18a6f","seq":41}"#
        );
        let at = SubscribedAt { recovered: Some(false), position: None, sub: None };
        assert_eq!(encode_subscribed_at(None, "a", &at), r#"{"type":"subscribed","event":"a","recovered":false}"#);
        let at = SubscribedAt { recovered: None, position: None, sub: None };
        assert_eq!(encode_subscribed_at(None, "a", &at), encode_subscribed(None, "a"));
    }

    #[test]
    fn since_is_checked() {
        let f = parse_client_frame(r#"{"type":"subscribe","event":"a","since":{"epoch":"e","seq":9007199254740991}}"#);
        assert_eq!(
            f.unwrap(),
            ClientFrame::Subscribe {
                id: None,
                event: "a".into(),
                since: Some(Since { epoch: "e".into(), seq: MAX_ID }),
                sub: None,
                filter: None,
                exclude: None,
                presence: false,
            }
        );
        for bad in [
            r#"{"type":"subscribe","event":"a","since":{"epoch":"e","seq":9007199254740992}}"#,
            r#"{"type":"subscribe","event":"a","since":{"epoch":"e","seq":1.0}}"#,
            r#"{"type":"subscribe","event":"a","since":{"epoch":7,"seq":1}}"#,
            r#"{"type":"subscribe","event":"a","since":[]}"#,
        ] {
            assert!(parse_client_frame(bad).is_err(), "{bad}");
        }
        let long = format!(r#"{{"type":"subscribe","event":"a","since":{{"epoch":"{}","seq":1}}}}"#, "e".repeat(65));
        assert!(parse_client_frame(&long).is_err());
    }

    #[test]
    fn unsubscribed_and_pong_without_id() {
        assert_eq!(encode_unsubscribed(None, "a"), r#"{"type":"unsubscribed","event":"a"}"#);
        assert_eq!(encode_pong(None), r#"{"type":"pong"}"#);
    }

    #[test]
    fn error_echoes_readable_id() {
        let err = parse_client_frame(r#"{"type":"nope","id":7}"#).unwrap_err();
        assert_eq!(err.id, Some(7));
        assert_eq!(json(&err.encode())["code"], "bad_request");
        assert_eq!(json(&err.encode())["id"], 7);
        let err = parse_client_frame(r#"{"type":"subscribe","id":7,"event":"a..b"}"#).unwrap_err();
        assert_eq!(err.id, Some(7));
        let err = parse_client_frame(r#"{"type":"subscribe","id":"7","event":"a"}"#).unwrap_err();
        assert_eq!(err.id, None);
    }

    #[test]
    fn connect_rejects_token_and_resume_together_and_nulls() {
        assert!(parse_client_frame(r#"{"type":"connect","token":"a","resume":"b"}"#).is_err());
        assert!(parse_client_frame(r#"{"type":"connect","token":null}"#).is_err());
        assert!(parse_client_frame(r#"{"type":"ping","id":null}"#).is_err());
        assert!(parse_client_frame(r#"{"type":"ping","id":1.0}"#).is_err());
    }

    #[test]
    fn error_messages_do_not_repeat_input() {
        for text in [r#"{"type":"secretX"}"#, r#"{"type":"subscribe","event":"secretX y"}"#, "secretX"] {
            let err = parse_client_frame(text).unwrap_err();
            assert!(!err.message.contains("secretX"), "{text}: {}", err.message);
        }
    }
}
