//! Issue 20 part 1: the transport layer. Slow SSE POST bodies are cut at `http.body_timeout` and need a connected
//! stream; connections without a token have their own budget per address and per node; a client still sending
//! when the gateway closes it gets the close code (closing handshake, raw and actix-ws paths), and WebSocket
//! ping control frames are rate-limited. Each attack runs beside a legitimate user who is still served.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};
use tokio_tungstenite::{tungstenite::Message, MaybeTlsStream};

use crate::{
    common::{
        transport::{frames_param, SseClient},
        *,
    },
    sessions::open_from,
};

/// A POST to `/sse/<stream>` that declares `declared` bytes and sends only `sent` of them: returns the open
/// connection.
async fn slow_post(app: &TestApp, stream: &str, declared: usize, sent: &[u8]) -> TcpStream {
    let mut tcp = TcpStream::connect(app.addr).await.expect("connect");
    let head = format!(
        "POST /sse/{stream} HTTP/1.1\r\nHost: {}\r\nContent-Type: text/plain\r\nContent-Length: {declared}\r\n\r\n",
        app.addr
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    tcp.write_all(sent).await.unwrap();
    tcp
}

/// Reads the gateway's answer on `tcp` until it closes the connection (bounded by `limit`); returns the status.
async fn answer_then_eof(tcp: &mut TcpStream, limit: Duration) -> u16 {
    let mut answer = Vec::new();
    tokio::time::timeout(limit, tcp.read_to_end(&mut answer))
        .await
        .expect("the gateway ends the request within the bound")
        .expect("read the answer");
    let text = String::from_utf8_lossy(&answer);
    text.strip_prefix("HTTP/1.1 ").and_then(|s| s.get(..3)).and_then(|s| s.parse().ok()).unwrap_or(0)
}

/// A connected SSE client still served: its `ping` is answered.
async fn sse_ping(client: &mut SseClient, id: u64) {
    assert_eq!(client.post(&json!({"type":"ping","id":id}).to_string()).await, 202);
    let pong = client.recv_or_close(WAIT).await.expect("pong");
    assert_eq!((&pong["type"], &pong["id"]), (&json!("pong"), &json!(id)), "{pong}");
}

/// A connected WebSocket client still served: its `ping` is answered.
async fn ws_ping(client: &mut WsClient, id: u64) {
    let pong = client.request(json!({"type":"ping","id":id})).await;
    assert_eq!((&pong["type"], &pong["id"]), (&json!("pong"), &json!(id)), "{pong}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_sse_post_bodies_are_cut_at_the_deadline_and_need_a_connected_stream() {
    let nats = NatsServer::start();
    let app = spawn_app_with(&nats.url(), |s| {
        s.auth.anonymous_allow = vec!["public.>".into()];
        s.http.body_timeout = 2;
        s.http.api_key = "transport-test-api-key-0123456789abcdef".into();
    })
    .await;
    let base = app.http("");
    let mut user = SseClient::open(&base, &[json!({"type":"connect","id":1})]).await;
    assert_eq!(user.recv_or_close(WAIT).await.expect("connected")["type"], "connected");

    // A stream opened without `connect` takes no POST: nothing is read for it (on main: 202).
    let unconnected = SseClient::open(&base, &[]).await;
    assert_eq!(unconnected.post(r#"{"type":"ping","id":1}"#).await, 409);
    let mut tcp = slow_post(&app, &unconnected.stream, 60_000, b"[").await;
    assert_eq!(answer_then_eof(&mut tcp, WAIT).await, 409, "refused before its body");

    // On a connected stream: bodies that never come are cut at http.body_timeout (408, connection closed).
    let mut attacker = SseClient::open(&base, &[json!({"type":"connect","id":1})]).await;
    assert_eq!(attacker.recv_or_close(WAIT).await.expect("connected")["type"], "connected");
    let mut slow = Vec::new();
    for _ in 0..4 {
        slow.push(slow_post(&app, &attacker.stream, 60_000, br#"[{"type":"ping","#).await);
    }
    // The gateway reads at most 4 bodies of one stream at once: more are refused at once, not held.
    assert_eq!(attacker.post(r#"{"type":"ping","id":3}"#).await, 429);
    for _ in 0..16 {
        let mut extra = slow_post(&app, &attacker.stream, 60_000, b"[").await;
        assert_eq!(answer_then_eof(&mut extra, WAIT).await, 429);
    }
    // Meanwhile the user is served.
    sse_ping(&mut user, 7).await;
    let mut ws = app.client(&["public.>"]).await;
    ws_ping(&mut ws, 8).await;
    for tcp in &mut slow {
        assert_eq!(answer_then_eof(tcp, Duration::from_secs(2) + WAIT).await, 408);
    }
    // Every request body has the deadline, the API's too (its extractor answers 400; on main: held for ever).
    let mut api = TcpStream::connect(app.addr).await.unwrap();
    let head = "POST /api/v1/publish HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n\
                Authorization: Bearer transport-test-api-key-0123456789abcdef\r\nContent-Length: 60000\r\n\r\n{";
    api.write_all(head.as_bytes()).await.unwrap();
    let status = answer_then_eof(&mut api, Duration::from_secs(2) + WAIT).await;
    assert!((400..500).contains(&status), "the API answered {status}");

    // A body still arriving when its stream ends is answered at once (404), not at the deadline.
    let mut pending = slow_post(&app, &attacker.stream, 60_000, b"[").await;
    // The POST is being read (it holds a request in the gateway) before the stream goes.
    tokio::time::sleep(Duration::from_millis(200)).await;
    drop(attacker);
    assert_eq!(answer_then_eof(&mut pending, WAIT).await, 404, "the stream went: the body is not awaited");
    sse_ping(&mut user, 9).await;
}

/// Settings of the pending-budget tests: 5 connections without a token per node, 3 per address, the address
/// read from `X-Forwarded-For` (the test client is the trusted proxy).
fn pending_budgets(s: &mut telegraphy::config::Settings) {
    s.limits.max_connections = 100;
    s.limits.max_pending_connections = 5;
    s.limits.max_pending_connections_per_ip = 3;
    s.http.trusted_proxies = vec!["127.0.0.0/8".into()];
    s.http.client_ip_header = "X-Forwarded-For".into();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_without_a_token_have_a_budget_per_address_and_per_node() {
    let nats = NatsServer::start();
    let app = spawn_app_with(&nats.url(), pending_budgets).await;
    upgrades_without_a_token_are_held_to_their_budget(&app).await;
}

/// The same on the actix-ws path of an app that embeds the node: its upgrades go through the same admission.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_without_a_token_have_a_budget_on_the_actix_ws_path() {
    let nats = NatsServer::start();
    let app = spawn_embedded_with(&nats.url(), pending_budgets).await;
    upgrades_without_a_token_are_held_to_their_budget(&app).await;
}

/// One address floods `app` (settings [`pending_budgets`]) with upgrades that never send `connect`: 429 past
/// its 3, another address still connects, many addresses get 503 at the node's 5; users beside are served.
async fn upgrades_without_a_token_are_held_to_their_budget(app: &TestApp) {
    let url = app.ws_url();
    let mut user = app.client(&["a.>"]).await;
    // One address floods with upgrades that never send `connect` (on main: all taken, up to max_connections).
    let mut flood = Vec::new();
    for _ in 0..3 {
        flood.push(open_from(&url, Some("203.0.113.1")).await.expect("within the address's pending budget"));
    }
    for _ in 0..5 {
        assert_eq!(open_from(&url, Some("203.0.113.1")).await.err(), Some(429));
    }
    // Another address still gets in, and connects.
    let mut visitor = open_from(&url, Some("198.51.100.2")).await.expect("another address gets in");
    let token = app.token("visitor", &["a.>"]).await;
    assert_eq!(visitor.connect_with(json!({"type":"connect","id":1,"token":token})).await["type"], "connected");
    ws_ping(&mut visitor, 2).await;
    ws_ping(&mut user, 3).await;
    // Many addresses: the node's pending budget (5) refuses with 503 before the node is full.
    flood.push(open_from(&url, Some("203.0.113.2")).await.unwrap());
    flood.push(open_from(&url, Some("203.0.113.3")).await.unwrap());
    assert_eq!(open_from(&url, Some("203.0.113.4")).await.err(), Some(503));
    assert_eq!(app.gateway.connection_count(), 2 + 5, "2 connected + 5 pending, far below max_connections");
    ws_ping(&mut user, 4).await;
    assert_eq!(app.metric("telegraphy_connections_over_quota_total{quota=\"pending_ip\"}").await, 5.0);
    assert_eq!(app.metric("telegraphy_connections_over_quota_total{quota=\"pending\"}").await, 1.0);
    // A pending socket that goes frees its slot.
    flood.pop().unwrap().close().await;
    eventually("pending slot released", || async { app.gateway.connection_count() == 6 }).await;
    let mut late = open_from(&url, Some("203.0.113.4")).await.expect("room again");
    let token = app.token("late", &["a.>"]).await;
    assert_eq!(late.connect_with(json!({"type":"connect","id":1,"token":token})).await["type"], "connected");
}

/// Opens `GET /sse` with no frames (no token: the stream can never connect) from `forwarded_for`; the status
/// when refused.
async fn sse_without_a_token(app: &TestApp, forwarded_for: &str) -> Result<SseClient, u16> {
    let query = format!("frames={}", frames_param(&[]));
    SseClient::try_open(&app.http(""), &query, &[("X-Forwarded-For", forwarded_for)])
        .await
        .map_err(|(status, _)| status)
}

/// Finding: `GET /sse?frames=[]` handed out a stream id to anyone. A stream without a token counts as pending
/// like an upgrade: the same budgets per address (429) and per node (503) bound `GET /sse` without a token, the
/// WebSocket upgrades and the SSE streams together; another address still opens a stream and connects, and a
/// connected SSE user and a WebSocket user beside are served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_streams_without_a_token_have_the_pending_budget() {
    let nats = NatsServer::start();
    let app = spawn_app_with(&nats.url(), pending_budgets).await;
    let token = app.token("reader", &["a.>"]).await;
    let mut user = SseClient::open(&app.http(""), &[json!({"type":"connect","id":1,"token":token})]).await;
    assert_eq!(user.recv_or_close(WAIT).await.expect("connected")["type"], "connected");
    let mut ws = app.client(&["a.>"]).await;
    let mut flood = Vec::new();
    for _ in 0..3 {
        flood.push(sse_without_a_token(&app, "203.0.113.1").await.expect("within the address's pending budget"));
    }
    for _ in 0..4 {
        assert_eq!(sse_without_a_token(&app, "203.0.113.1").await.err(), Some(429));
    }
    // A WebSocket upgrade from that address shares its budget.
    assert_eq!(open_from(&app.ws_url(), Some("203.0.113.1")).await.err(), Some(429));
    // Another address opens a stream with a token and connects (its slot is released by the connect).
    let token = app.token("visitor", &["a.>"]).await;
    let frames = frames_param(&[json!({"type":"connect","id":1,"token":token})]);
    let mut visitor =
        SseClient::try_open(&app.http(""), &format!("frames={frames}"), &[("X-Forwarded-For", "198.51.100.2")])
            .await
            .expect("another address gets in");
    assert_eq!(visitor.recv_or_close(WAIT).await.expect("connected")["type"], "connected");
    sse_ping(&mut visitor, 2).await;
    // Many addresses: the node's pending budget (5) refuses with 503 before the node is full.
    flood.push(sse_without_a_token(&app, "203.0.113.2").await.unwrap());
    flood.push(sse_without_a_token(&app, "203.0.113.3").await.unwrap());
    assert_eq!(sse_without_a_token(&app, "203.0.113.4").await.err(), Some(503));
    assert_eq!(app.gateway.connection_count(), 3 + 5, "3 connected + 5 pending, far below max_connections");
    assert_eq!(app.metric("telegraphy_connections_over_quota_total{quota=\"pending_ip\"}").await, 5.0);
    assert_eq!(app.metric("telegraphy_connections_over_quota_total{quota=\"pending\"}").await, 1.0);
    sse_ping(&mut user, 3).await;
    ws_ping(&mut ws, 4).await;
    // A stream that goes frees its slot.
    drop(flood.pop());
    eventually("pending slot released", || async { app.gateway.connection_count() == 7 }).await;
    assert!(sse_without_a_token(&app, "203.0.113.4").await.is_ok(), "room again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_sessions_have_a_budget_per_address() {
    let nats = NatsServer::start();
    let app = spawn_app_with(&nats.url(), |s| {
        s.auth.anonymous_allow = vec!["public.>".into()];
        s.limits.max_anonymous_connections_per_ip = 2;
        s.http.trusted_proxies = vec!["127.0.0.0/8".into()];
        s.http.client_ip_header = "X-Forwarded-For".into();
    })
    .await;
    let url = app.ws_url();
    let anonymous = json!({"type":"connect","id":1});
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut client = open_from(&url, Some("203.0.113.1")).await.unwrap();
        assert_eq!(client.connect_with(anonymous.clone()).await["type"], "connected");
        held.push(client);
    }
    // The same address's next anonymous sessions are refused (on main: taken, up to max_anonymous_connections).
    for _ in 0..3 {
        let mut client = open_from(&url, Some("203.0.113.1")).await.unwrap();
        let reply = client.connect_with(anonymous.clone()).await;
        assert_eq!((&reply["type"], &reply["code"]), (&json!("error"), &json!("limit_exceeded")), "{reply}");
        assert_eq!(client.expect_close().await, 4029);
    }
    // The next anonymous visitor, from another address, gets in.
    let mut visitor = open_from(&url, Some("198.51.100.2")).await.unwrap();
    assert_eq!(visitor.connect_with(anonymous.clone()).await["type"], "connected");
    visitor.subscribe("public.news").await;
    assert_eq!(app.metric("telegraphy_connections_over_quota_total{quota=\"anonymous_ip\"}").await, 3.0);
}

/// How a connection the gateway closed ended for its client.
#[derive(Debug, PartialEq, Eq)]
enum Ending {
    /// The close frame with this code, then the TCP connection ended cleanly (EOF, no reset).
    Clean(u16),
    /// The close frame, then a TCP reset (input the gateway never read).
    Reset(u16),
    /// No close frame at all.
    Lost,
}

/// A client that sends `count` frames of `frame` without reading (the gateway closes it on the way), then
/// reads: how its connection ended.
async fn ending_while_sending(url: &str, count: usize, frame: Message) -> Ending {
    let mut client = WsClient::connect(url).await;
    client.auto_pong = false;
    for _ in 0..count {
        if client.ws.feed(frame.clone()).await.is_err() {
            break;
        }
    }
    let _ = client.ws.flush().await;
    // A client busy elsewhere reads a little later: by then the gateway has closed the connection.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let code = loop {
        match tokio::time::timeout(WAIT, client.ws.next()).await.expect("an answer or the close") {
            Some(Ok(Message::Close(Some(close)))) => break u16::from(close.code),
            Some(Ok(Message::Close(None))) => return Ending::Lost,
            Some(Ok(_)) => continue,
            Some(Err(_)) | None => return Ending::Lost,
        }
    };
    // The client's close frame (queued by tungstenite) goes out; then the gateway ends the TCP connection. A
    // write that fails met a reset (tungstenite reports it as "closed" in this state).
    if client.ws.flush().await.is_err() {
        return Ending::Reset(code);
    }
    let MaybeTlsStream::Plain(tcp) = client.ws.get_mut() else { unreachable!("plain ws://") };
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(WAIT, tcp.read(&mut buf)).await.expect("the gateway ends the connection") {
            Ok(0) => return Ending::Clean(code),
            Ok(_) => continue,
            Err(_) => return Ending::Reset(code),
        }
    }
}

/// Runs the closing-handshake cases on `app`: bad frames (1008), a data-frame flood (4029) and a ping-control
/// flood (4029, on main all answered), each while the client keeps sending; a user beside is served.
async fn closes_are_delivered_to_clients_still_sending(app: &TestApp) {
    let url = app.ws_url();
    let mut user = app.client(&["a.>"]).await;
    let bad = Message::text(format!("not json {}", "x".repeat(1000)));
    let ping = Message::text(r#"{"type":"ping"}"#);
    let control = Message::Ping(vec![7u8; 100].into());
    for run in 0..3 {
        assert_eq!(ending_while_sending(&url, 200, bad.clone()).await, Ending::Clean(1008), "bad frames, run {run}");
        assert_eq!(ending_while_sending(&url, 400, ping.clone()).await, Ending::Clean(4029), "frame flood, run {run}");
        let flood = ending_while_sending(&url, 2000, control.clone()).await;
        assert_eq!(flood, Ending::Clean(4029), "ping flood, run {run}");
        ws_ping(&mut user, run).await;
    }
    assert!(app.metric("telegraphy_requests_rate_limited_total").await >= 6.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_path_closes_with_the_code_while_the_client_keeps_sending() {
    let nats = NatsServer::start();
    let app = spawn_app(&nats.url()).await;
    closes_are_delivered_to_clients_still_sending(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_path_closes_1009_with_the_code_while_the_client_keeps_sending() {
    let nats = NatsServer::start();
    let app = spawn_app(&nats.url()).await;
    closes_1009_while_the_client_keeps_sending(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actix_ws_path_closes_1009_with_the_code_while_the_client_keeps_sending() {
    let nats = NatsServer::start();
    let app = spawn_embedded(&nats.url()).await;
    closes_1009_while_the_client_keeps_sending(&app).await;
}

async fn closes_1009_while_the_client_keeps_sending(app: &TestApp) {
    let mut user = app.client(&["a.>"]).await;
    // Frames over limits.max_frame_bytes (65536): the first closes the socket with 1009, the rest is discarded.
    let too_big = Message::text("x".repeat(100_000));
    assert_eq!(ending_while_sending(&app.ws_url(), 3, too_big).await, Ending::Clean(1009));
    ws_ping(&mut user, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actix_ws_path_closes_with_the_code_while_the_client_keeps_sending() {
    let nats = NatsServer::start();
    let app = spawn_embedded(&nats.url()).await;
    closes_are_delivered_to_clients_still_sending(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_ping_control_frames_take_request_tokens() {
    let nats = NatsServer::start();
    let app = spawn_app_with(&nats.url(), |s| {
        s.limits.requests_per_second = 1;
        s.limits.request_burst = 130;
    })
    .await;
    let mut client = app.client(&["a.>"]).await;
    let mut user = app.client(&["a.>"]).await;
    // Pings within the burst are answered (connect took one token).
    for _ in 0..100 {
        client.ws.send(Message::Ping(b"hi".to_vec().into())).await.unwrap();
    }
    let mut pongs = 0;
    while pongs < 100 {
        match tokio::time::timeout(WAIT, client.ws.next()).await.expect("pong") {
            Some(Ok(Message::Pong(_))) => pongs += 1,
            Some(Ok(_)) => {}
            other => panic!("closed within the burst: {other:?}"),
        }
    }
    // Past the burst the socket is closed with 4029, like for data frames (on main: every ping answered).
    for _ in 0..100 {
        if client.ws.send(Message::Ping(b"hi".to_vec().into())).await.is_err() {
            break;
        }
    }
    let frame: Value = loop {
        match tokio::time::timeout(WAIT, client.ws.next()).await.expect("closed") {
            Some(Ok(Message::Text(text))) => break serde_json::from_str(&text).unwrap(),
            Some(Ok(Message::Pong(_))) => pongs += 1,
            other => panic!("expected limit_exceeded, got {other:?}"),
        }
    };
    assert_eq!(frame["code"], "limit_exceeded", "{frame}");
    assert_eq!(client.expect_close().await, 4029);
    assert!(pongs < 150, "answered {pongs} pings: the burst, not the flood");
    ws_ping(&mut user, 1).await;
}
