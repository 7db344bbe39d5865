//! The gateway embedded in an actix-web app (`telegraphy::transports::actix::ws` on the app's route, issue 12): what only
//! embedding has (the app's own routes, fragmented frames through actix-ws, the TCP abort of a stalled client)
//! and the example app `examples/embed-actix` as a process. The protocol cases every transport shares (4008,
//! drain 1012, revocation 4003, history, filters) run in tests/transports.rs.

mod common;

use std::{path::PathBuf, time::Duration};

use common::*;
use futures_util::SinkExt;
use serde_json::json;
use telegraphy::node::auth::Auth;
use tokio_tungstenite::tungstenite::{
    client::IntoClientRequest,
    protocol::frame::{
        coding::{Data, OpCode},
        Frame,
    },
    Message,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_subscribe_and_receive_beside_the_apps_own_route() {
    let nats = NatsServer::start();
    let app = spawn_embedded(&nats.url()).await;
    let publisher = publisher(&nats.url()).await;
    let mut client = app.client(&["shop.>"]).await;
    client.subscribe("shop.order.>").await;
    app.flush().await;

    publish(&publisher, "shop.order.created.42", r#"{"pk":42}"#).await;
    let event = client.next_event().await;
    assert_eq!((event["name"].as_str(), event["data"]["pk"].as_i64()), (Some("shop.order.created.42"), Some(42)));
    assert_eq!(client.request(json!({"type":"ping","id":7})).await, json!({"type":"pong","id":7}));

    let body = reqwest::get(app.http("/")).await.expect("GET /").text().await.unwrap();
    assert_eq!(body, APP_ROUTE_BODY, "the app's own route is served beside /ws");
    assert_eq!(app.metric("telegraphy_connections ").await, 1.0);
    client.close().await;
    eventually("connection released", || async { app.gateway.connection_count() == 0 }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_are_plain_http_statuses() {
    let nats = NatsServer::start();
    let app = spawn_embedded_with(&nats.url(), |s| s.http.allowed_origins = vec!["https://app.example".into()]).await;
    // Not a WebSocket handshake.
    let plain = reqwest::get(app.http("/ws")).await.unwrap();
    assert_eq!(plain.status().as_u16(), 400);
    // Origin not allowed (none, or another one): 403, and nothing is registered.
    assert_eq!(WsClient::try_connect(&app.ws_url()).await.err(), Some(403));
    let mut request = app.ws_url().into_client_request().unwrap();
    request.headers_mut().insert("Origin", "https://evil.example".parse().unwrap());
    let refused = tokio_tungstenite::connect_async(request).await.expect_err("refused");
    assert!(matches!(&refused, tokio_tungstenite::tungstenite::Error::Http(r) if r.status() == 403), "{refused}");
    let mut request = app.ws_url().into_client_request().unwrap();
    request.headers_mut().insert("Origin", "https://app.example".parse().unwrap());
    let (allowed, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(request)).await.unwrap().unwrap();
    assert_eq!(app.gateway.connection_count(), 1);
    drop(allowed);
    assert!(app.metric("telegraphy_connections_refused_total").await >= 2.0);

    // Draining: 503.
    app.gateway.start_draining();
    let mut request = app.ws_url().into_client_request().unwrap();
    request.headers_mut().insert("Origin", "https://app.example".parse().unwrap());
    let refused = tokio_tungstenite::connect_async(request).await.expect_err("refused while draining");
    assert!(matches!(&refused, tokio_tungstenite::tungstenite::Error::Http(r) if r.status() == 503), "{refused}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_over_the_limit_close_with_1009_also_when_fragmented() {
    let nats = NatsServer::start();
    let app = spawn_embedded_with(&nats.url(), |s| s.limits.max_frame_bytes = 1024).await;
    // One frame over the limit.
    let mut client = app.client(&["a.>"]).await;
    client.send_text(&format!(r#"{{"type":"ping","pad":"{}"}}"#, "x".repeat(2000))).await;
    assert_eq!(client.expect_close().await, 1009);

    // Fragments: aggregated into one frame; under the limit it is served, over it (each fragment under it) 1009.
    let mut client = app.client(&["a.>"]).await;
    send_fragmented(&mut client, &[r#"{"type":"pi"#, r#"ng","id""#, ":8}"]).await;
    assert_eq!(client.recv().await, json!({"type":"pong","id":8}));
    let pad = "x".repeat(700);
    send_fragmented(&mut client, &[r#"{"type":"ping","pad":""#, &pad, &pad, r#""}"#]).await;
    assert_eq!(client.expect_close().await, 1009);
}

/// Sends `parts` as one text message in several WebSocket frames (a text frame and continuations).
async fn send_fragmented(client: &mut WsClient, parts: &[&str]) {
    for (i, part) in parts.iter().enumerate() {
        let opcode = OpCode::Data(if i == 0 { Data::Text } else { Data::Continue });
        let frame = Frame::message(part.as_bytes().to_vec(), opcode, i + 1 == parts.len());
        client.ws.send(Message::Frame(frame)).await.expect("send a fragment");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_up_to_the_limit_are_served_and_pings_answered() {
    let nats = NatsServer::start();
    let app = spawn_embedded(&nats.url()).await;
    let mut client = app.client(&["a.>"]).await;
    for size in [1_000, 5_000, 65_000] {
        let reply = client.request(json!({"type":"ping","id":size,"pad":"x".repeat(size)})).await;
        assert_eq!((reply["type"].as_str(), reply["id"].as_u64()), (Some("pong"), Some(size as u64)), "{size}");
    }
    // A WebSocket ping gets its pong (the WebSocket layer's, not a protocol frame).
    client.ws.send(Message::Ping(b"are you there".to_vec().into())).await.unwrap();
    let pong = tokio::time::timeout(WAIT, async {
        loop {
            match futures_util::StreamExt::next(&mut client.ws).await {
                Some(Ok(Message::Pong(payload))) => return payload,
                Some(Ok(_)) => continue,
                other => panic!("no pong: {other:?}"),
            }
        }
    })
    .await
    .expect("pong within WAIT");
    assert_eq!(&pong[..], b"are you there");
}

/// Publishes 60 KB events on `load.<i>` until the node has no connection left (flushing every 16): a subscriber
/// that reads nothing fills socket buffers, actix-ws's channel and then its outbox. Bounded: at most 2000 events
/// (120 MB), far more than all of those hold.
async fn flood_until_closed(app: &TestApp, publisher: &async_nats::Client) {
    let payload = format!(r#"{{"blob":"{}"}}"#, "x".repeat(60_000));
    for i in 0..2000 {
        if app.gateway.connection_count() == 0 {
            break;
        }
        publisher.publish(format!("telegraphy.load.{i}"), payload.clone().into()).await.unwrap();
        if i % 16 == 0 {
            publisher.flush().await.unwrap();
        }
    }
    publisher.flush().await.unwrap();
}

/// The compiled example: target/<profile>/examples/embed-actix beside deps/.
fn example_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let path = exe.parent().and_then(|deps| deps.parent()).expect("target/<profile>").join("examples/embed-actix");
    // `cargo test` builds it; `cargo test --test embedded` alone does not (nor rebuilds it).
    assert!(path.exists(), "{} missing: run `cargo build --examples` first", path.display());
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_app_serves_its_routes_and_the_gateway_and_drains_on_sigterm() {
    let nats = NatsServer::start();
    let env = [("TELEGRAPHY_SHUTDOWN_TIMEOUT", "5")];
    let mut app = GatewayBinary::launch_program(&example_binary(), "embed-actix", &nats.url(), SECRET, &env).await;
    let hello = reqwest::get(app.http("/")).await.expect("GET /").text().await.unwrap();
    assert!(hello.starts_with("Hello from an actix-web app"), "{hello}");
    app.wait_ready(WAIT).await; // its GET /readyz

    let minter = Auth::new(&test_settings(&nats.url()), publisher(&nats.url()).await).unwrap();
    let token = minter.mint("alice", &["x.>".into()], 60).await.unwrap();
    let mut client = WsClient::connect(&app.ws_url()).await;
    let connected = client.connect_with(json!({"type":"connect","id":1,"token":token})).await;
    assert_eq!(connected["type"], "connected", "{connected}");
    client.subscribe("x.>").await;
    let nc = publisher(&nats.url()).await;
    // The example's node subscribes in the background: publish until the first event arrives (bounded).
    let mut event = None;
    for i in 0..50 {
        publish(&nc, &format!("x.{i}"), "1").await;
        if let Ok(frame) = tokio::time::timeout(Duration::from_millis(200), client.recv()).await {
            event = Some(frame);
            break;
        }
    }
    let event = event.expect("an event through the example app");
    assert_eq!(event["type"], "event", "{event}");

    app.sigterm();
    assert_eq!(client.expect_close().await, 1012);
    assert_eq!(app.wait_exit(Duration::from_secs(7)).await, 0, "log:\n{}", app.log().await);
}

/// Server-side ESTABLISHED TCP connections on `port` (IPv4 loopback), from /proc/net/tcp.
fn established_on(port: u16) -> usize {
    let table = std::fs::read_to_string("/proc/net/tcp").expect("read /proc/net/tcp");
    let local = format!(":{port:04X}");
    table
        .lines()
        .skip(1)
        .filter(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            cols.len() > 3 && cols[1].ends_with(&local) && cols[3] == "01"
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_again_loses_its_tcp_connection() {
    let nats = NatsServer::start();
    // spawn_embedded aborts TCP connections whose data has not moved for 2 heartbeats (2 s here).
    let app = spawn_embedded_with(&nats.url(), |s| s.heartbeat = 1).await;
    let publisher = publisher(&nats.url()).await;
    let mut slow = app.client(&["load.>"]).await;
    slow.subscribe("load.>").await;
    app.flush().await;
    assert_eq!(established_on(app.addr.port()), 1);

    // It never reads again: the node closes it (4008, or the heartbeat's 1000) and forgets it.
    flood_until_closed(&app, &publisher).await;
    eventually("the node closed the client", || async { app.gateway.connection_count() == 0 }).await;
    // actix-web's dispatcher still holds the socket with unsent data: the kernel aborts it (TCP_USER_TIMEOUT).
    eventually("the server's TCP connection aborted", || async { established_on(app.addr.port()) == 0 }).await;
    drop(slow);
}
