//! One benchmark WebSocket client speaking protocol v1: dial, `connect`, `subscribe`, then read events and
//! take their latency from the publisher's timestamp inside `data`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context};
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpSocket, TcpStream},
};
use tokio_tungstenite::{
    client_async_with_config,
    tungstenite::{protocol::WebSocketConfig, Message},
    WebSocketStream,
};

use crate::target::Endpoint;

pub type Ws = WebSocketStream<TcpStream>;

/// Bound on each step of opening a connection (TCP, upgrade, `connected`, `subscribed`).
pub const STEP_TIMEOUT: Duration = Duration::from_secs(10);

/// The client's answer to the gateway's heartbeat.
pub const PONG: &str = r#"{"type":"pong"}"#;

/// Socket options of a client.
#[derive(Clone, Copy, Debug)]
pub struct Dial {
    /// tungstenite read buffer; small keeps thousands of idle clients cheap.
    pub read_buffer: usize,
    /// SO_RCVBUF of the socket (the slow client uses a tiny one so the gateway's queue fills quickly).
    pub rcvbuf: Option<u32>,
}

impl Default for Dial {
    fn default() -> Self {
        Dial { read_buffer: 8 * 1024, rcvbuf: None }
    }
}

/// Opens TCP and upgrades to WebSocket.
pub async fn dial(endpoint: &Endpoint, options: Dial) -> anyhow::Result<Ws> {
    let socket = if endpoint.addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    if let Some(size) = options.rcvbuf {
        socket.set_recv_buffer_size(size)?;
    }
    let stream = timeout(socket.connect(endpoint.addr), "TCP connect").await?.context("TCP connect")?;
    stream.set_nodelay(true)?;
    // write_buffer_size 0: every frame goes to the socket at once (frames here are small requests).
    let config = WebSocketConfig::default().read_buffer_size(options.read_buffer).write_buffer_size(0);
    let (ws, _) = timeout(client_async_with_config(endpoint.url.as_str(), stream, Some(config)), "WebSocket upgrade")
        .await?
        .map_err(|e| anyhow!("WebSocket upgrade: {}", short_ws_error(&e)))?;
    Ok(ws)
}

/// Opens an SSE connection (PROTOCOL.md section 10.1) authenticated with `token` and subscribed to `pattern`:
/// `GET /sse` with both frames in the `X-Telegraphy-Frames` header, read until `subscribed`. Returns the socket
/// of the open `text/event-stream` response.
pub async fn open_sse(endpoint: &Endpoint, token: &str, pattern: &str) -> anyhow::Result<TcpStream> {
    let frames = serde_json::json!([
        {"type": "connect", "id": 1, "token": token},
        {"type": "subscribe", "id": 2, "event": pattern},
    ]);
    let mut stream = timeout(TcpStream::connect(endpoint.addr), "TCP connect").await?.context("TCP connect")?;
    stream.set_nodelay(true)?;
    let request = format!("GET /sse HTTP/1.1\r\nHost: {}\r\nX-Telegraphy-Frames: {frames}\r\n\r\n", endpoint.addr);
    stream.write_all(request.as_bytes()).await.context("sending GET /sse")?;
    let read = async {
        let mut seen = Vec::new();
        let mut buf = [0u8; 2048];
        loop {
            let n = stream.read(&mut buf).await.context("reading the SSE response")?;
            if n == 0 {
                bail!("SSE response ended before subscribed");
            }
            seen.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&seen);
            if !text.starts_with("HTTP/1.1 200") && text.contains("\r\n") {
                bail!("GET /sse: {}", text.lines().next().unwrap_or_default());
            }
            if text.contains(r#""type":"error""#) {
                bail!("SSE open refused: an error frame");
            }
            if text.contains(r#""type":"subscribed""#) {
                return Ok(());
            }
        }
    };
    timeout(read, "SSE open").await??;
    Ok(stream)
}

/// Sends `connect` with `token` and waits for `connected`.
pub async fn authenticate(ws: &mut Ws, token: &str) -> anyhow::Result<()> {
    let frame = serde_json::json!({"type": "connect", "id": 1, "token": token}).to_string();
    ws.send(Message::text(frame)).await.context("sending connect")?;
    expect(ws, "connected").await
}

/// Sends `subscribe` to `pattern` (with a server-side `filter` when given, and `"presence": true` when
/// `presence`: PROTOCOL.md section 11) and waits for `subscribed`.
pub async fn subscribe(ws: &mut Ws, pattern: &str, filter: Option<Value>, presence: bool) -> anyhow::Result<()> {
    let mut frame = serde_json::json!({"type": "subscribe", "id": 2, "event": pattern});
    if let Some(filter) = filter {
        frame["filter"] = filter;
    }
    if presence {
        frame["presence"] = Value::Bool(true);
    }
    let frame = frame.to_string();
    ws.send(Message::text(frame)).await.context("sending subscribe")?;
    expect(ws, "subscribed").await
}

/// Sends the request `frame` and waits for its reply of type `want`; returns the round trip.
pub async fn request(ws: &mut Ws, frame: &Value, want: &str) -> anyhow::Result<Duration> {
    let start = std::time::Instant::now();
    ws.send(Message::text(frame.to_string())).await.context("sending a request")?;
    expect(ws, want).await?;
    Ok(start.elapsed())
}

/// Reads frames until one of type `want`; answers heartbeats meanwhile. An `error` frame or a close fails.
async fn expect(ws: &mut Ws, want: &str) -> anyhow::Result<()> {
    let wait = async {
        loop {
            let message = ws.next().await.ok_or_else(|| anyhow!("connection closed waiting for {want}"))?;
            match message.map_err(|e| anyhow!("waiting for {want}: {}", short_ws_error(&e)))? {
                Message::Text(text) => {
                    let frame: Value = serde_json::from_str(text.as_str()).context("gateway sent a non-JSON frame")?;
                    match frame["type"].as_str() {
                        Some(t) if t == want => return Ok(()),
                        Some("error") => bail!("{want} refused: error {}", frame["code"].as_str().unwrap_or("?")),
                        Some("ping") => ws.send(Message::text(PONG)).await?,
                        _ => {}
                    }
                }
                Message::Close(frame) => {
                    bail!("closed waiting for {want}: {}", frame.map_or(0, |f| u16::from(f.code)))
                }
                _ => {}
            }
        }
    };
    timeout(wait, want).await?
}

async fn timeout<T>(future: impl std::future::Future<Output = T>, what: &str) -> anyhow::Result<T> {
    tokio::time::timeout(STEP_TIMEOUT, future).await.map_err(|_| anyhow!("{what} timed out after {STEP_TIMEOUT:?}"))
}

/// Error text without details that vary per connection (so samples group well).
pub fn short_ws_error(e: &tokio_tungstenite::tungstenite::Error) -> String {
    use tokio_tungstenite::tungstenite::Error;
    match e {
        Error::Http(response) => format!("HTTP {}", response.status()),
        Error::Io(io) => format!("I/O: {}", io.kind()),
        other => other.to_string(),
    }
}

/// Wall clock in nanoseconds since the Unix epoch (the publisher's timestamps use the same clock).
pub fn now_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

/// The bench payload: `{"t":<publish time ns>,"s":<step>,"n":<number>[,"g":<group>],"p":"xxx..."}`, padded to
/// `size` bytes when possible. `t` comes first so clients find it without parsing the whole frame; `g` is what
/// filtered subscriptions select on.
pub fn payload(t: u64, step: u32, n: u64, group: Option<u64>, size: usize) -> Vec<u8> {
    let group = group.map(|g| format!(r#","g":{g}"#)).unwrap_or_default();
    let mut out = format!(r#"{{"t":{t},"s":{step},"n":{n}{group},"p":""#).into_bytes();
    let pad = size.saturating_sub(out.len() + 2);
    out.resize(out.len() + pad, b'x');
    out.extend_from_slice(b"\"}");
    out
}

/// The (publish time, step) of a bench event frame, without a full JSON parse; None for other frames.
pub fn event_stamp(frame: &str) -> Option<(u64, u32)> {
    if !frame.starts_with(r#"{"type":"event""#) {
        return None;
    }
    const DATA: &str = r#""data":{"t":"#;
    let rest = &frame[frame.find(DATA)? + DATA.len()..];
    let (t, rest) = leading_number(rest)?;
    let (step, _) = leading_number(rest.strip_prefix(r#","s":"#)?)?;
    Some((t, u32::try_from(step).ok()?))
}

fn leading_number(s: &str) -> Option<(u64, &str)> {
    let end = s.bytes().position(|b| !b.is_ascii_digit()).unwrap_or(s.len());
    Some((s[..end].parse().ok()?, &s[end..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_has_the_asked_size_and_is_json() {
        for size in [0, 10, 64, 256, 4096] {
            let p = payload(1_700_000_000_123_456_789, 3, 42, Some(2), size);
            let v: Value = serde_json::from_slice(&p).unwrap();
            assert_eq!(v["t"], 1_700_000_000_123_456_789u64);
            if size >= 60 {
                assert_eq!(p.len(), size);
            }
        }
    }

    #[test]
    fn stamps_are_found_in_event_frames_only() {
        let data = String::from_utf8(payload(123, 7, 1, None, 100)).unwrap();
        let frame =
            format!(r#"{{"type":"event","sub":"bench.>","name":"bench.x","data":{data},"seq":5,"epoch":"ab"}}"#);
        assert_eq!(event_stamp(&frame), Some((123, 7)));
        assert_eq!(event_stamp(r#"{"type":"ping"}"#), None);
        assert_eq!(event_stamp(r#"{"type":"event","sub":"a","name":"a","data":{"x":1}}"#), None);
    }
}
