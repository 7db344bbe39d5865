//! One test client over any of the gateway's transports (PROTOCOL.md section 10), so that the shared
//! integration suite (tests/transports.rs) runs each case on every transport.
//!
//! Adding a transport: a [`Transport`] variant, its arm in [`Transport::spawn`] (the gateway serving it) and in
//! [`Transport::open`] (a client of it), and a line in the `per_transport!` invocation of tests/transports.rs.

use std::{pin::Pin, time::Duration};

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use serde_json::{json, Value};
use telegraphy::config::Settings;

use super::{spawn_app_with, spawn_embedded_with, Closed, TestApp, WsClient, WAIT};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// `GET /ws` of the standalone gateway.
    RawWs,
    /// `GET /sse` + `POST /sse/{stream}` of the standalone gateway.
    Sse,
    /// `telegraphy::transports::actix::ws` on the route of an actix-web app that embeds a node ([`super::spawn_embedded`]).
    ActixWs,
}

impl Transport {
    /// A gateway serving this transport, with `tweak`ed settings.
    pub async fn spawn(self, nats_url: &str, tweak: impl FnOnce(&mut Settings)) -> TestApp {
        match self {
            Transport::RawWs | Transport::Sse => spawn_app_with(nats_url, tweak).await,
            Transport::ActixWs => spawn_embedded_with(nats_url, tweak).await,
        }
    }

    /// A client of `app` over this transport that has sent `frames` (for SSE: the opening frames of its GET).
    pub async fn open(self, app: &TestApp, frames: &[Value]) -> TestClient {
        match self {
            Transport::RawWs | Transport::ActixWs => {
                let mut ws = WsClient::connect(&app.ws_url()).await;
                for frame in frames {
                    ws.send(frame.clone()).await;
                }
                TestClient::Ws(ws)
            }
            Transport::Sse => TestClient::Sse(SseClient::open(&app.http(""), frames).await),
        }
    }
}

/// A protocol v1 client over one transport. Waits are bounded ([`WAIT`]); the gateway's `ping` frames are
/// answered and skipped.
pub enum TestClient {
    Ws(WsClient),
    Sse(SseClient),
}

impl TestClient {
    /// Sends a client frame.
    pub async fn send(&mut self, frame: Value) {
        match self {
            TestClient::Ws(ws) => ws.send(frame).await,
            TestClient::Sse(sse) => assert_eq!(sse.post(&frame.to_string()).await, 202, "POST {frame}"),
        }
    }

    /// The next frame other than `ping`; panics on close.
    pub async fn recv(&mut self) -> Value {
        match self.recv_or_close(WAIT).await {
            Ok(frame) => frame,
            Err(closed) => panic!("connection closed while waiting for a frame: {closed:?}"),
        }
    }

    /// The next frame other than `ping`, or the close.
    pub async fn recv_or_close(&mut self, limit: Duration) -> Result<Value, Closed> {
        match self {
            TestClient::Ws(ws) => ws.recv_or_close(limit).await,
            TestClient::Sse(sse) => sse.recv_or_close(limit).await,
        }
    }

    /// Reads until the close and returns its code and reason (frames before it are skipped).
    pub async fn expect_close(&mut self) -> (u16, String) {
        loop {
            match self.recv_or_close(WAIT).await {
                Ok(_) => continue,
                Err(Closed::Code(code, reason)) => return (code, reason),
                Err(Closed::NoFrame) => panic!("connection ended without a close"),
            }
        }
    }

    /// Sends `frame` and returns the reply.
    pub async fn request(&mut self, frame: Value) -> Value {
        self.send(frame).await;
        self.recv().await
    }

    /// Subscribes and returns the `subscribed` reply.
    pub async fn subscribe(&mut self, pattern: &str) -> Value {
        let reply = self.request(json!({"type": "subscribe", "id": 2, "event": pattern})).await;
        assert_eq!((&reply["type"], &reply["event"]), (&json!("subscribed"), &json!(pattern)), "{reply}");
        reply
    }

    /// The next frame, which must be an `event`.
    pub async fn next_event(&mut self) -> Value {
        let frame = self.recv().await;
        assert_eq!(frame["type"], "event", "expected an event, got {frame}");
        frame
    }
}

/// One SSE message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// `event:` (None: a plain message, i.e. a protocol frame).
    pub event: Option<String>,
    pub data: String,
    pub id: Option<String>,
}

type Body = Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>;

/// A client of the SSE transport: the `text/event-stream` response of `GET /sse`, read only when asked (a
/// client that does not call [`SseClient::next_message`] stops reading), and POSTs to its stream.
pub struct SseClient {
    http: reqwest::Client,
    base: String,
    /// The stream id from `event: stream`.
    pub stream: String,
    /// The response's headers.
    pub headers: reqwest::header::HeaderMap,
    body: Body,
    buf: Vec<u8>,
    /// The `id:` of the last message that had one.
    pub last_id: Option<String>,
    /// Answer the gateway's `ping` frames while receiving.
    pub auto_pong: bool,
    ended: bool,
}

/// `frames` as the `frames` query parameter's value.
pub fn frames_param(frames: &[Value]) -> String {
    percent_encoding::utf8_percent_encode(&Value::from(frames.to_vec()).to_string(), percent_encoding::NON_ALPHANUMERIC)
        .to_string()
}

impl SseClient {
    /// `GET {base}/sse?frames=..`, which must answer 200 and `event: stream`.
    pub async fn open(base: &str, frames: &[Value]) -> Self {
        match Self::try_open(base, &format!("frames={}", frames_param(frames)), &[]).await {
            Ok(client) => client,
            Err((status, body)) => panic!("GET /sse answered {status}: {body}"),
        }
    }

    /// `GET {base}/sse?{query}` with `headers`; the status and body when it is not 200.
    pub async fn try_open(base: &str, query: &str, headers: &[(&str, &str)]) -> Result<Self, (u16, String)> {
        let http = reqwest::Client::new();
        let mut request = http.get(format!("{base}/sse?{query}"));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = tokio::time::timeout(WAIT, request.send()).await.expect("GET /sse timeout").expect("GET /sse");
        let status = response.status().as_u16();
        if status != 200 {
            return Err((status, response.text().await.unwrap_or_default()));
        }
        let headers = response.headers().clone();
        let mut client = SseClient {
            http,
            base: base.to_string(),
            stream: String::new(),
            headers,
            body: Box::pin(response.bytes_stream()),
            buf: Vec::new(),
            last_id: None,
            auto_pong: true,
            ended: false,
        };
        let first = client.next_message(WAIT).await.expect("event: stream");
        assert_eq!(first.event.as_deref(), Some("stream"), "{first:?}");
        let data: Value = serde_json::from_str(&first.data).expect("stream data is JSON");
        client.stream = data["stream"].as_str().expect("stream id").to_string();
        assert_eq!(data["post"], format!("/sse/{}", client.stream));
        Ok(client)
    }

    /// POSTs `body` to the stream; returns the status.
    pub async fn post(&self, body: &str) -> u16 {
        post_status(&self.http, &format!("{}/sse/{}", self.base, self.stream), body.to_string()).await
    }

    /// The next message, or None when the response ended; panics after `limit`.
    pub async fn next_message(&mut self, limit: Duration) -> Option<Message> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if let Some(end) = self.buf.windows(2).position(|w| w == b"\n\n") {
                let raw: Vec<u8> = self.buf.drain(..end + 2).collect();
                let text = String::from_utf8(raw).expect("SSE is UTF-8");
                let message = parse_message(&text);
                if message.id.is_some() {
                    self.last_id = message.id.clone();
                }
                return Some(message);
            }
            if self.ended {
                assert!(self.buf.is_empty(), "response ended inside a message: {:?}", self.buf);
                return None;
            }
            match tokio::time::timeout_at(deadline, self.body.next()).await.expect("timed out waiting for SSE data") {
                Some(Ok(chunk)) => self.buf.extend_from_slice(&chunk),
                Some(Err(_)) | None => self.ended = true,
            }
        }
    }

    /// The next protocol frame other than `ping` (answered when `auto_pong`), or the close.
    pub async fn recv_or_close(&mut self, limit: Duration) -> Result<Value, Closed> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let Some(message) = self.next_message(left).await else { return Err(Closed::NoFrame) };
            match message.event.as_deref() {
                None => {}
                Some("close") => {
                    let close: Value = serde_json::from_str(&message.data).expect("close data is JSON");
                    let code = close["code"].as_u64().expect("close code") as u16;
                    let reason = close["reason"].as_str().expect("close reason").to_string();
                    assert!(self.next_message(WAIT).await.is_none(), "the response ends after event: close");
                    return Err(Closed::Code(code, reason));
                }
                Some(other) => panic!("unexpected SSE event {other}"),
            }
            let frame: Value = serde_json::from_str(&message.data).expect("gateway sent JSON");
            if frame["type"] == "ping" {
                if self.auto_pong {
                    // The stream may be closing already (404): the close comes next on the response.
                    self.post(r#"{"type":"pong"}"#).await;
                }
                continue;
            }
            return Ok(frame);
        }
    }
}

/// Parses one SSE message (its lines, without the blank line ending it).
fn parse_message(text: &str) -> Message {
    let mut message = Message { event: None, data: String::new(), id: None };
    let mut data_lines = 0;
    for line in text.lines().filter(|l| !l.is_empty()) {
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "event" => message.event = Some(value.to_string()),
            "id" => message.id = Some(value.to_string()),
            "data" => {
                data_lines += 1;
                message.data.push_str(value);
            }
            other => panic!("unexpected SSE field {other:?} in {text:?}"),
        }
    }
    assert_eq!(data_lines, 1, "one data line per message: {text:?}");
    message
}

/// POSTs `body` to `url`; returns the status.
pub async fn post_status(http: &reqwest::Client, url: &str, body: String) -> u16 {
    let request = http.post(url).header("Content-Type", "text/plain").body(body).send();
    tokio::time::timeout(WAIT, request).await.expect("POST timeout").expect("POST").status().as_u16()
}
