//! The Server-Sent Events transport (proto/PROTOCOL.md section 10.1), for networks that break WebSockets:
//! client frames go up in HTTP requests, server frames come down one `text/event-stream` response.
//!
//! - `GET /sse`: checks the opening frames (`frames` query parameter or `X-Telegraphy-Frames`
//!   header: size and count first, then the JSON array) and `Last-Event-ID`, admits the connection
//!   ([`crate::transports::admission`]), gives it a stream id (128 random bits, base64url) registered in the node's
//!   [`Streams`], and runs its [`Session`] on a bounded inbound channel (`limits.max_subscriptions` + 2 frames)
//!   that first holds the opening frames, then the posted ones. The response body (`Downlink`) drains the
//!   connection's outbox: `event: stream` first, then one SSE message per server frame (several queued frames
//!   per chunk), then `event: close` with the close code and reason.
//! - `POST /sse/{stream}`: one client frame or a JSON array of frames into that channel, only once the
//!   connection's `connect` succeeded (409 before: the body is not read): 413 over `limits.max_frame_bytes`
//!   (Content-Length first, then the bytes read, buffered as they arrive, never reserved) or over
//!   `limits.max_subscriptions` + 2 frames, 404 no such stream (also at once when it ends while the body
//!   arrives), 408 body not in within `http.body_timeout`, 429 no room for all of them (nothing taken) or
//!   [`streams::POSTS_IN_FLIGHT`] bodies of this stream already being read, else 202.
//! - `OPTIONS` on both: CORS preflight.
//!
//! Client gone: actix drops the response body when the client's TCP connection closes or cannot be written
//! (the public listener does not allow half-closed connections, see [`crate::server`]); dropping the
//! `Downlink` closes the connection's [`Control`], so the session ends, leaves the hub and the node's
//! connections, and its stream id leaves the registry. A stream id is a secret of the connection: it is never
//! logged.

use std::{convert::Infallible, fmt::Write as _, sync::Arc};

use actix_web::{
    error::PayloadError,
    http::{
        header::{self, HeaderMap, HeaderValue},
        Method, StatusCode,
    },
    web, HttpRequest, HttpResponse, HttpResponseBuilder,
};
use bytes::Bytes;
use futures_util::StreamExt;
use serde::de::{Deserializer as _, SeqAccess, Visitor};
use serde_json::{value::RawValue, Map, Value};
use tokio::sync::mpsc::{self, error::TrySendError};

use crate::{
    node::outbox::{Control, Frame},
    node::Gateway,
    protocol::frames::{self, close},
    session::{Inbound, Session},
    transports::admission::{self, Admitted},
    transports::streams,
};

/// The header carrying the opening frames instead of the `frames` query parameter.
pub const FRAMES_HEADER: &str = "x-telegraphy-frames";

/// Most queued frames one chunk of the response carries.
const WRITE_BATCH: usize = 64;

/// Why the client frames of an SSE request are refused (the text is the response body): the opening ones of
/// `GET /sse` (400), or too many in one POST (413).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BadFrames {
    #[error("frames missing: GET /sse?frames=<JSON array of client frames>")]
    NoFrames,
    #[error("frames given twice (query parameter and header, or the parameter twice)")]
    FramesTwice,
    #[error("frames larger than limits.max_frame_bytes")]
    TooLarge,
    #[error("more frames than limits.max_subscriptions + 2")]
    TooMany,
    #[error("frames must be a JSON array of JSON objects")]
    NotObjects,
    #[error("Last-Event-ID must be <epoch>:<seq>")]
    BadLastEventId,
    #[error("Last-Event-ID given twice (header and query parameter)")]
    LastEventIdTwice,
}

/// Why a JSON array could not be split into its elements.
#[derive(Debug, PartialEq, Eq)]
enum Split {
    TooMany,
    NotAnArray,
}

/// The elements of the JSON array `text`, as their raw texts, refusing at the `max + 1`-th element (before
/// parsing the rest).
fn split_array(text: &str, max: usize) -> Result<Vec<&RawValue>, Split> {
    struct Elements(usize);
    impl<'de> Visitor<'de> for Elements {
        type Value = Vec<&'de RawValue>;

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a JSON array")
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut elements = Vec::new();
            while let Some(element) = seq.next_element::<&RawValue>()? {
                if elements.len() == self.0 {
                    return Err(serde::de::Error::custom(TOO_MANY));
                }
                elements.push(element);
            }
            Ok(elements)
        }
    }
    const TOO_MANY: &str = "too many elements";
    let mut de = serde_json::Deserializer::from_str(text);
    let elements = de.deserialize_seq(Elements(max)).and_then(|elements| de.end().map(|()| elements));
    elements.map_err(|e| if e.to_string().starts_with(TOO_MANY) { Split::TooMany } else { Split::NotAnArray })
}

/// A `Last-Event-ID` value, `<epoch>:<seq>` (`seq` in decimal digits, no sign or leading zero), as the
/// `since` it stands for.
fn parse_last_event_id(value: &str) -> Result<Value, BadFrames> {
    let (epoch, digits) = value.rsplit_once(':').ok_or(BadFrames::BadLastEventId)?;
    let canonical = digits.bytes().all(|b| b.is_ascii_digit()) && (digits == "0" || !digits.starts_with('0'));
    let seq = digits.parse::<u64>().ok().filter(|seq| canonical && *seq <= frames::MAX_ID);
    match seq {
        Some(seq) if frames::valid_epoch(epoch) => Ok(serde_json::json!({"epoch": epoch, "seq": seq})),
        _ => Err(BadFrames::BadLastEventId),
    }
}

/// The opening frames of `GET /sse`, each a client frame's text, checked in the order of PROTOCOL.md 10.1:
/// one source, size, count, JSON array of objects; then `Last-Event-ID` injected as `since` into each
/// `subscribe` without one.
fn opening_frames(req: &HttpRequest, max_bytes: usize, max_frames: usize) -> Result<Vec<String>, BadFrames> {
    let mut from_query = None;
    let mut last_event_id = None;
    for (key, value) in form_urlencoded::parse(req.query_string().as_bytes()) {
        let slot = match &*key {
            "frames" => &mut from_query,
            "last_event_id" => &mut last_event_id,
            _ => continue,
        };
        if slot.replace(value).is_some() {
            return Err(if key == "frames" { BadFrames::FramesTwice } else { BadFrames::LastEventIdTwice });
        }
    }
    let headers = req.headers();
    let from_header = single_header(headers, FRAMES_HEADER, BadFrames::FramesTwice)?;
    let text = match (from_query, from_header) {
        (Some(_), Some(_)) => return Err(BadFrames::FramesTwice),
        (None, None) => return Err(BadFrames::NoFrames),
        (Some(query), None) => query,
        (None, Some(header)) => std::str::from_utf8(header.as_bytes()).map_err(|_| BadFrames::NotObjects)?.into(),
    };
    if text.len() > max_bytes {
        return Err(BadFrames::TooLarge);
    }
    let elements = split_array(&text, max_frames).map_err(|e| match e {
        Split::TooMany => BadFrames::TooMany,
        Split::NotAnArray => BadFrames::NotObjects,
    })?;
    if !elements.iter().all(|e| e.get().starts_with('{')) {
        return Err(BadFrames::NotObjects);
    }
    let header_id = single_header(headers, "last-event-id", BadFrames::LastEventIdTwice)?;
    let since = match (header_id, last_event_id) {
        (Some(_), Some(_)) => return Err(BadFrames::LastEventIdTwice),
        (None, None) => None,
        (Some(header), None) => Some(parse_last_event_id(header.to_str().map_err(|_| BadFrames::BadLastEventId)?)?),
        (None, Some(query)) => Some(parse_last_event_id(&query)?),
    };
    Ok(elements.into_iter().map(|frame| with_since(frame.get(), since.as_ref())).collect())
}

/// The one value of header `name`, or `twice` when it was sent more than once.
fn single_header<'a>(
    headers: &'a HeaderMap,
    name: &str,
    twice: BadFrames,
) -> Result<Option<&'a HeaderValue>, BadFrames> {
    let mut values = headers.get_all(name);
    let first = values.next();
    if values.next().is_some() {
        return Err(twice);
    }
    Ok(first)
}

/// `frame` with `"since": since` when it is a `subscribe` without a `since` (or with `"since": null`).
fn with_since(frame: &str, since: Option<&Value>) -> String {
    let Some(since) = since else { return frame.to_string() };
    let Ok(mut object) = serde_json::from_str::<Map<String, Value>>(frame) else { return frame.to_string() };
    if object.get("type").and_then(Value::as_str) != Some("subscribe")
        || object.get("since").is_some_and(|s| !s.is_null())
    {
        return frame.to_string();
    }
    object.insert("since".to_string(), since.clone());
    Value::Object(object).to_string()
}

/// The value of `Access-Control-Allow-Origin` for this request: its `Origin` when allowed, `*` when any origin
/// is (`http.allowed_origins` empty); None when the origin is not allowed.
fn allow_origin(headers: &HeaderMap, allowed: &[String]) -> Option<HeaderValue> {
    if allowed.is_empty() {
        return Some(HeaderValue::from_static("*"));
    }
    admission::origin_allowed(headers, allowed).then(|| headers.get(header::ORIGIN).cloned()).flatten()
}

/// A response with the CORS headers of this request. While the node drains it also closes its HTTP connection:
/// a browser would otherwise keep it alive (its POSTs, its refused reconnects) and hold up the server's stop until
/// `shutdown_timeout`.
fn respond(gw: &Gateway, req: &HttpRequest, status: StatusCode) -> HttpResponseBuilder {
    let mut response = HttpResponse::build(status);
    if gw.is_draining() {
        response.force_close();
    }
    if let Some(origin) = allow_origin(req.headers(), &gw.settings.http.allowed_origins) {
        response.insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, origin)).insert_header((header::VARY, "Origin"));
    }
    response
}

/// A plain-text answer with the CORS headers.
fn plain(gw: &Gateway, req: &HttpRequest, status: StatusCode, text: impl Into<String>) -> HttpResponse {
    respond(gw, req, status).content_type("text/plain").body(text.into() + "\n")
}

/// A plain-text answer given before the request's body was read in full: the HTTP connection is closed after it.
fn closing(gw: &Gateway, req: &HttpRequest, status: StatusCode, text: &str) -> HttpResponse {
    respond(gw, req, status).force_close().content_type("text/plain").body(format!("{text}\n"))
}

/// Routes of the SSE transport (public listener only).
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/sse").route(web::get().to(open)).route(web::method(Method::OPTIONS).to(preflight)))
        .service(
            web::resource("/sse/{stream}")
                .route(web::post().to(post))
                .route(web::method(Method::OPTIONS).to(preflight)),
        );
}

/// `OPTIONS /sse`, `OPTIONS /sse/{stream}`: the CORS preflight (403 for an origin not allowed).
async fn preflight(gw: web::Data<Gateway>, req: HttpRequest) -> HttpResponse {
    if allow_origin(req.headers(), &gw.settings.http.allowed_origins).is_none() {
        return plain(&gw, &req, StatusCode::FORBIDDEN, "origin not allowed");
    }
    respond(&gw, &req, StatusCode::NO_CONTENT)
        .insert_header((header::ACCESS_CONTROL_ALLOW_METHODS, "GET, POST, OPTIONS"))
        .insert_header((header::ACCESS_CONTROL_ALLOW_HEADERS, "Content-Type, Last-Event-ID, X-Telegraphy-Frames"))
        .insert_header((header::ACCESS_CONTROL_MAX_AGE, "600"))
        .finish()
}

/// `GET /sse`: opens an SSE connection (see the module docs).
async fn open(gw: web::Data<Gateway>, req: HttpRequest) -> HttpResponse {
    let limits = &gw.settings.limits;
    let inbound = limits.max_subscriptions + 2;
    let opening = match opening_frames(&req, limits.max_frame_bytes, inbound) {
        Ok(frames) => frames,
        Err(bad) => return plain(&gw, &req, StatusCode::BAD_REQUEST, bad.to_string()),
    };
    let peer = req.peer_addr().map(|a| a.ip());
    let Admitted { id, outbox, queue, ctl } = match admission::admit(&gw, req.headers(), peer) {
        Ok(admitted) => admitted,
        Err(refusal) => return plain(&gw, &req, refusal.status, refusal.reason),
    };
    let (uplink, mut frames) = mpsc::channel(inbound);
    for frame in opening {
        // At most `inbound` frames: they fit.
        let _ = uplink.try_send(Inbound::Text(frame));
    }
    let stream = gw.sse.open(uplink, id);
    gw.metrics.connections.increment(1.0);
    gw.metrics.connections_total.increment(1);
    tracing::debug!(conn = id, "SSE stream opened");
    let first = format!("event: stream\ndata: {{\"stream\":\"{stream}\",\"post\":\"/sse/{stream}\"}}\n\n");
    let node = gw.clone().into_inner();
    actix_web::rt::spawn(async move {
        let inbound = futures_util::stream::poll_fn(move |cx| frames.poll_recv(cx));
        Session::new(node.clone(), id, outbox).run(inbound).await;
        node.sse.remove(&stream);
    });
    let downlink = Downlink { queue, ctl, first: Some(Bytes::from(first)), done: false, batch: Vec::new() };
    let body = futures_util::stream::unfold(downlink, |mut downlink| async move {
        let chunk = downlink.next_chunk().await?;
        Some((Ok::<_, Infallible>(chunk), downlink))
    });
    respond(&gw, &req, StatusCode::OK)
        .content_type("text/event-stream")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(body)
}

/// The response body of an SSE connection: drains its outbox. Dropped (the client is gone, or the response
/// ended), it closes the connection.
struct Downlink {
    queue: crate::node::outbox::Queue,
    ctl: Arc<Control>,
    /// The `event: stream` message, until sent.
    first: Option<Bytes>,
    /// The `event: close` message was sent.
    done: bool,
    batch: Vec<Frame>,
}

impl Drop for Downlink {
    fn drop(&mut self) {
        // No effect when the connection was already closing (the first close wins).
        self.ctl.close(close::NORMAL, "client gone");
    }
}

impl Downlink {
    /// The next chunk of the body: every queued frame (up to `WRITE_BATCH`), or once the connection is closing
    /// the frames still queued (none after a 4008) and `event: close`; None after that.
    async fn next_chunk(&mut self) -> Option<Bytes> {
        if let Some(first) = self.first.take() {
            return Some(first);
        }
        if self.done {
            return None;
        }
        let received = tokio::select! {
            biased;
            _ = self.ctl.closed() => 0,
            n = self.queue.recv_many(&mut self.batch, WRITE_BATCH) => n,
        };
        if received > 0 {
            let mut chunk = String::new();
            let bytes = push_messages(&mut chunk, self.batch.drain(..));
            self.ctl.written(bytes);
            return Some(Bytes::from(chunk));
        }
        self.done = true;
        let (code, reason) = crate::node::outbox::closing_frames(&self.ctl, &mut self.queue, &mut self.batch);
        let mut chunk = String::new();
        push_messages(&mut chunk, self.batch.drain(..));
        push_close(&mut chunk, code, reason);
        Some(Bytes::from(chunk))
    }
}

/// Appends the last message of a connection, `event: close` with its close code and reason.
fn push_close(out: &mut String, code: u16, reason: &str) {
    let reason = Value::from(reason);
    let _ = write!(out, "event: close\ndata: {{\"code\":{code},\"reason\":{reason}}}\n\n");
}

/// Appends an SSE message for each of `frames` to `out` and returns the frames' bytes (for
/// [`Control::written`]): `data: <frame>` on one line, after `id: <epoch>:<seq>` for the frames that carry a
/// history position ([`Frame::position`], located when the frame was encoded: the text is not parsed here).
fn push_messages(out: &mut String, frames: impl Iterator<Item = Frame>) -> usize {
    let mut bytes = 0;
    for frame in frames {
        bytes += frame.len();
        out.reserve(frame.len() + 16);
        if let Some((epoch, seq)) = frame.position() {
            let _ = writeln!(out, "id: {epoch}:{seq}");
        }
        out.push_str("data: ");
        let text = frame.as_str();
        if text.contains(['\n', '\r']) {
            // Only a verbatim event payload can hold a line break, and in valid JSON (the hub forwards no other)
            // a line break is whitespace between tokens: a space means the same.
            out.extend(text.chars().map(|c| if c == '\n' || c == '\r' { ' ' } else { c }));
        } else {
            out.push_str(text);
        }
        out.push_str("\n\n");
    }
    bytes
}

/// `POST /sse/{stream}`: one client frame (a JSON object) or a JSON array of frames into the stream's
/// connection (see the module docs). Every check comes before the body is read; the body is buffered as its
/// bytes arrive (never reserved from `Content-Length`), within `http.body_timeout`, and its reading ends at once
/// when the stream does.
async fn post(
    gw: web::Data<Gateway>,
    req: HttpRequest,
    stream: web::Path<String>,
    mut body: web::Payload,
) -> HttpResponse {
    let limits = &gw.settings.limits;
    let max_bytes = limits.max_frame_bytes;
    let declared = req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|len| len > max_bytes as u64) {
        return plain(&gw, &req, StatusCode::PAYLOAD_TOO_LARGE, "body larger than limits.max_frame_bytes");
    }
    if !admission::origin_allowed(req.headers(), &gw.settings.http.allowed_origins) {
        return plain(&gw, &req, StatusCode::FORBIDDEN, "origin not allowed");
    }
    let Some(streams::Stream { uplink, conn, posts }) = gw.sse.get(&stream) else {
        return plain(&gw, &req, StatusCode::NOT_FOUND, "no such stream on this node");
    };
    if !gw.connections.is_connected(conn) {
        return plain(&gw, &req, StatusCode::CONFLICT, "not connected: the connect frame goes in GET /sse");
    }
    if uplink.capacity() == 0 {
        return plain(&gw, &req, StatusCode::TOO_MANY_REQUESTS, "too many frames waiting");
    }
    // Held until this body was read: a stream reads few bodies at once, whatever their number.
    let Ok(_reading) = posts.try_acquire_owned() else {
        return closing(&gw, &req, StatusCode::TOO_MANY_REQUESTS, "too many POSTs in flight on this stream");
    };
    // The body's deadline (`http.body_timeout`) is the server's, for every request (`crate::server`).
    let read = async {
        let mut received = Vec::new();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| match e {
                PayloadError::Io(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                    (StatusCode::REQUEST_TIMEOUT, "body not received within http.body_timeout")
                }
                _ => (StatusCode::BAD_REQUEST, "body not read"),
            })?;
            if received.len() + chunk.len() > max_bytes {
                return Err((StatusCode::PAYLOAD_TOO_LARGE, "body larger than limits.max_frame_bytes"));
            }
            received.extend_from_slice(&chunk);
        }
        Ok(received)
    };
    let received = tokio::select! {
        read = read => match read {
            Ok(received) => received,
            Err((status, why)) => return closing(&gw, &req, status, why),
        },
        () = uplink.closed() => return closing(&gw, &req, StatusCode::NOT_FOUND, "no such stream on this node"),
    };
    // An array longer than the inbound queue could never be taken: too large, like a body over the byte bound
    // (a client splits it).
    let Some(frames) = posted_frames(received, limits.max_subscriptions + 2) else {
        return plain(&gw, &req, StatusCode::PAYLOAD_TOO_LARGE, BadFrames::TooMany.to_string());
    };
    let status = match uplink.try_reserve_many(frames.len()) {
        Ok(permits) => {
            for (permit, frame) in permits.zip(frames) {
                permit.send(frame);
            }
            StatusCode::ACCEPTED
        }
        Err(TrySendError::Full(())) => StatusCode::TOO_MANY_REQUESTS,
        Err(TrySendError::Closed(())) => StatusCode::NOT_FOUND,
    };
    match status {
        StatusCode::TOO_MANY_REQUESTS => plain(&gw, &req, status, "too many frames waiting"),
        StatusCode::NOT_FOUND => plain(&gw, &req, status, "no such stream on this node"),
        _ => respond(&gw, &req, status).finish(),
    }
}

/// The client frames of a POST body: each element of a JSON array, else the whole body as one frame (a body
/// that is no frame is the session's bad frame, as on a WebSocket; a body that is not UTF-8 is a binary frame).
/// None for an array of more than `max_frames` elements.
fn posted_frames(body: Vec<u8>, max_frames: usize) -> Option<Vec<Inbound<String>>> {
    let Ok(text) = String::from_utf8(body) else { return Some(vec![Inbound::Binary]) };
    if text.trim_start().starts_with('[') {
        match split_array(&text, max_frames) {
            Ok(elements) => return Some(elements.iter().map(|e| Inbound::Text(e.get().to_string())).collect()),
            Err(Split::TooMany) => return None,
            Err(Split::NotAnArray) => {}
        }
    }
    Some(vec![Inbound::Text(text)])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrays_are_split_and_refused_at_the_first_element_too_many() {
        let elements = split_array(r#" [ {"type":"ping"} , {"a":[1,2]} ] "#, 2).unwrap();
        let texts: Vec<&str> = elements.iter().map(|e| e.get()).collect();
        assert_eq!(texts, [r#"{"type":"ping"}"#, r#"{"a":[1,2]}"#]);
        // The third element is refused before the (broken) rest is parsed.
        assert_eq!(split_array(r#"[{},{},{}, this is not JSON"#, 2).unwrap_err(), Split::TooMany);
        assert_eq!(split_array(r#"{"type":"ping"}"#, 2).unwrap_err(), Split::NotAnArray);
        assert_eq!(split_array(r#"[{}] x"#, 2).unwrap_err(), Split::NotAnArray);
        assert_eq!(split_array("[]", 2).unwrap().len(), 0);
    }

    #[test]
    fn since_goes_into_subscribes_without_one() {
        let since = serde_json::json!({"epoch":"e","seq":4});
        let plain = with_since(r#"{"type":"subscribe","event":"a"}"#, Some(&since));
        assert_eq!(serde_json::from_str::<Value>(&plain).unwrap()["since"], since);
        let null = with_since(r#"{"type":"subscribe","event":"a","since":null}"#, Some(&since));
        assert_eq!(serde_json::from_str::<Value>(&null).unwrap()["since"], since);
        let own = r#"{"type":"subscribe","event":"a","since":{"epoch":"x","seq":1}}"#;
        assert_eq!(with_since(own, Some(&since)), own);
        assert_eq!(with_since(r#"{"type":"connect"}"#, Some(&since)), r#"{"type":"connect"}"#);
        assert_eq!(with_since(r#"{"type":"subscribe"}"#, None), r#"{"type":"subscribe"}"#);
    }

    /// A vector's server frame as the gateway queues it: an `event` or `position` frame with a history position
    /// is encoded again by the encoder that records its span (byte-exact with the vector, checked); any other
    /// frame is queued as text.
    fn queued(text: &str) -> Frame {
        #[derive(serde::Deserialize)]
        struct Fields {
            #[serde(rename = "type")]
            kind: String,
            #[serde(default)]
            sub: String,
            #[serde(default)]
            name: String,
            data: Option<Box<RawValue>>,
            epoch: Option<String>,
            seq: Option<u64>,
        }
        let f: Fields = serde_json::from_str(text).unwrap();
        let (encoded, span) = match (f.kind.as_str(), f.data, f.epoch, f.seq) {
            ("event", Some(data), Some(epoch), Some(seq)) => {
                frames::encode_event_spanned(&f.sub, &f.name, &data, None, Some((seq, &epoch)))
            }
            ("position", None, Some(epoch), Some(seq)) => frames::encode_position_spanned(&f.sub, &epoch, seq),
            _ => return Frame::from(text.to_string()),
        };
        assert_eq!(encoded, text, "the encoders write the vector's frame");
        Frame::new(encoded.into(), span)
    }

    #[test]
    fn the_protocol_vectors_hold() {
        let v: Value = serde_json::from_str(include_str!("../../proto/vectors/sse.json")).unwrap();
        let text = |c: &Value, key: &str| c[key].as_str().unwrap_or_else(|| panic!("{key} in {c}")).to_string();
        for c in v["messages"].as_array().unwrap() {
            let mut out = String::new();
            let frame = queued(&text(c, "frame"));
            assert_eq!(push_messages(&mut out, std::iter::once(frame)), text(c, "frame").len());
            assert_eq!(out, text(c, "sse"), "{c}");
        }
        for c in v["close"].as_array().unwrap() {
            let mut out = String::new();
            push_close(&mut out, c["code"].as_u64().unwrap() as u16, &text(c, "reason"));
            assert_eq!(out, text(c, "sse"), "{c}");
        }
        for c in v["last_event_id"]["valid"].as_array().unwrap() {
            assert_eq!(parse_last_event_id(&text(c, "value")).unwrap(), c["since"], "{c}");
        }
        for bad in v["last_event_id"]["invalid"].as_array().unwrap() {
            assert_eq!(parse_last_event_id(bad.as_str().unwrap()), Err(BadFrames::BadLastEventId), "{bad}");
        }
        for c in v["post_bodies"].as_array().unwrap() {
            let frames = posted_frames(text(c, "body").into_bytes(), 16).expect("within the count");
            let texts: Vec<String> = frames
                .into_iter()
                .map(|f| match f {
                    Inbound::Text(t) => t,
                    other => panic!("{other:?} for {c}"),
                })
                .collect();
            let want: Vec<String> = serde_json::from_value(c["frames"].clone()).unwrap();
            assert_eq!(texts, want, "{c}");
        }
    }
}
