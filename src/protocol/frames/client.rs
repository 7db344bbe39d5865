//! Client frames (proto/PROTOCOL.md section 3): decoding, with the rules of the module's map ([`super`]).

use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::{encode_error, ErrorCode};
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
