//! Server frames (proto/PROTOCOL.md sections 3, 7, 11-15): compact JSON with the field order of the tables,
//! byte-exact with `proto/vectors/frames.json`.

use std::{fmt::Write as _, num::NonZeroU32};

use serde_json::value::RawValue;

use super::{valid_epoch, ErrorCode};

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

/// Appends `,"key":` followed by the JSON string `value`; returns the offset of the value's opening quote.
fn push_str_field(buf: &mut String, key: &str, value: &str) -> usize {
    buf.push_str(",\"");
    buf.push_str(key);
    buf.push_str("\":");
    let at = buf.len();
    push_json_str(buf, value);
    at
}

/// Appends `,"key":N`; returns the offset of the number's first digit.
fn push_num_field(buf: &mut String, key: &str, value: u64) -> usize {
    buf.push_str(",\"");
    buf.push_str(key);
    buf.push_str("\":");
    let at = buf.len();
    // Writing to a String cannot fail.
    let _ = write!(buf, "{value}");
    at
}

/// Where an encoded `event` or `position` frame's stream position `(epoch, seq)` sits in its text (byte offsets
/// and lengths), recorded by the encoder as it writes the fields ([`encode_event_spanned`],
/// [`encode_position_spanned`]), so that a transport needing the position (the SSE `id:` line) reads it back
/// with [`PositionSpan::read`] instead of parsing the frame.
///
/// Compact, as every queued frame carries one (`node::outbox::Frame`): 8 bytes, and `Option<PositionSpan>` too
/// (the epoch's offset is never 0, a frame starts with `{`). Only an epoch that can stand unescaped in an SSE
/// `id:` line gets a span: 1..64 ASCII alphanumerics (the history's epochs are hex); a frame with any other epoch,
/// or too long for the offsets (4 GiB), has no span, as the tail parser this replaces found no position in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PositionSpan {
    /// Byte offset of the epoch's first character.
    epoch_at: NonZeroU32,
    /// Signed distance in bytes from the epoch's first character to the seq's first digit (negative in an event
    /// frame, where `seq` comes first; positive in a `position` frame).
    seq_from_epoch: i16,
    /// The epoch's length in bytes (at most 64).
    epoch_len: u8,
    /// The seq's number of digits (at most 20).
    seq_len: u8,
}

impl PositionSpan {
    /// The span of `epoch` at `epoch_at` and of `seq`'s digits at `seq_at`; None for an epoch that is not 1..64
    /// ASCII alphanumerics or offsets that do not fit.
    fn new(epoch_at: usize, epoch: &str, seq_at: usize, seq: u64) -> Option<Self> {
        if !(valid_epoch(epoch) && epoch.bytes().all(|b| b.is_ascii_alphanumeric())) {
            return None;
        }
        let digits = seq.checked_ilog10().unwrap_or(0) + 1;
        Some(PositionSpan {
            epoch_at: NonZeroU32::new(u32::try_from(epoch_at).ok()?)?,
            seq_from_epoch: i16::try_from(seq_at as i64 - epoch_at as i64).ok()?,
            epoch_len: u8::try_from(epoch.len()).ok()?,
            seq_len: u8::try_from(digits).ok()?,
        })
    }

    /// The position `(epoch, seq)` in `text`, the frame this span was encoded with; None (never a panic) if the
    /// span does not fit `text`.
    pub fn read(self, text: &str) -> Option<(&str, u64)> {
        let epoch_at = usize::try_from(self.epoch_at.get()).ok()?;
        let epoch = text.get(epoch_at..)?.get(..usize::from(self.epoch_len))?;
        let seq_at = epoch_at.checked_add_signed(isize::from(self.seq_from_epoch))?;
        let seq = text.get(seq_at..)?.get(..usize::from(self.seq_len))?.parse().ok()?;
        Some((epoch, seq))
    }
}

/// In which order [`push_position`] writes a position's fields.
#[derive(Clone, Copy)]
enum Order {
    /// `,"seq":N,"epoch":"E"`, an event's (PROTOCOL.md section 7).
    SeqFirst,
    /// `,"epoch":"E","seq":N`, a `position` frame's.
    EpochFirst,
}

/// Appends a stream position's two fields in `order` and returns their span (see [`PositionSpan`]).
fn push_position(buf: &mut String, order: Order, epoch: &str, seq: u64) -> Option<PositionSpan> {
    let (seq_at, quote_at) = match order {
        Order::SeqFirst => {
            let seq_at = push_num_field(buf, "seq", seq);
            (seq_at, push_str_field(buf, "epoch", epoch))
        }
        Order::EpochFirst => {
            let quote_at = push_str_field(buf, "epoch", epoch);
            (push_num_field(buf, "seq", seq), quote_at)
        }
    };
    PositionSpan::new(quote_at + 1, epoch, seq_at, seq)
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
    encode_event_spanned(sub, name, data, from, position).0
}

/// [`encode_event_full`], with where its position sits in the text (None without a position; see
/// [`PositionSpan`]). The one event encoder with a position: the hot path of history delivery.
pub fn encode_event_spanned(
    sub: &str,
    name: &str,
    data: &RawValue,
    from: Option<&str>,
    position: Option<(u64, &str)>,
) -> (String, Option<PositionSpan>) {
    let extra = from.map_or(0, str::len) + position.map_or(0, |(_, e)| 40 + e.len());
    let mut buf = event_without_brace(sub, name, data, extra);
    if let Some(from) = from {
        buf.push_str(from);
    }
    let span = position.and_then(|(seq, epoch)| push_position(&mut buf, Order::SeqFirst, epoch, seq));
    buf.push('}');
    (buf, span)
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
    encode_event_full(sub, name, data, None, Some((seq, epoch)))
}

/// The history position `(epoch, seq)` an encoded `event` or `position` frame carries, read from the fixed
/// tail the encoders write ([`encode_event_at`]: `..,"seq":N,"epoch":"E"}`, [`encode_position`]:
/// `..,"epoch":"E","seq":N}`); None for any other frame. Anchored at the end of the frame, after the verbatim
/// `data`, and `E` must be alphanumeric, so a payload cannot fake a position: inside a JSON string every `"` is
/// escaped, and a payload object ends the frame with `}}`.
///
/// Test-only: the encoders record where they write the position ([`PositionSpan`]); this is the reference the
/// spans are checked against.
#[cfg(test)]
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
    encode_position_spanned(sub, epoch, seq).0
}

/// [`encode_position`], with where its position sits in the text (see [`PositionSpan`]).
pub fn encode_position_spanned(sub: &str, epoch: &str, seq: u64) -> (String, Option<PositionSpan>) {
    let mut buf = String::with_capacity(48 + sub.len() + epoch.len());
    buf.push_str("{\"type\":\"position\"");
    push_str_field(&mut buf, "sub", sub);
    let span = push_position(&mut buf, Order::EpochFirst, epoch, seq);
    buf.push('}');
    (buf, span)
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
