//! Gateway core against a real nats-server and real WebSocket clients (issue: gateway core).

mod common;

use std::time::Duration;

use common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_receive_unsubscribe() {
    let nats = NatsServer::start();
    let app = spawn_app(&nats.url()).await;
    let publisher = publisher(&nats.url()).await;
    let mut client = app.client(&["shop.>"]).await;
    client.subscribe("shop.order.>").await;
    client.subscribe("shop.marker").await;
    app.flush().await;

    publish(&publisher, "shop.order.created.42", r#"{"pk":42,"total":"9.50"}"#).await;
    let mut event = client.next_event().await;
    let position = event.as_object_mut().unwrap();
    let (seq, epoch) = (position.remove("seq").unwrap(), position.remove("epoch").unwrap());
    assert!(
        seq.as_u64().unwrap() >= 1 && epoch.as_str().is_some_and(|e| !e.is_empty()),
        "history position on live frames"
    );
    assert_eq!(
        event,
        json!({"type":"event","sub":"shop.order.>","name":"shop.order.created.42","data":{"pk":42,"total":"9.50"}})
    );

    // Not matching: never delivered (the marker published after it arrives first).
    publish(&publisher, "shop.customer.created.1", "{}").await;
    publish(&publisher, "shop.marker", "1").await;
    assert_eq!(client.next_event().await["name"], "shop.marker");

    client.send(json!({"type":"unsubscribe","id":3,"event":"shop.order.>"})).await;
    assert_eq!(client.recv().await, json!({"type":"unsubscribed","id":3,"event":"shop.order.>"}));
    app.flush().await;
    publish(&publisher, "shop.order.created.43", "{}").await;
    publish(&publisher, "shop.marker", "2").await;
    let next = client.next_event().await;
    assert_eq!((next["name"].as_str(), next["data"].as_i64()), (Some("shop.marker"), Some(2)));

    // Unsubscribing from something not held still answers.
    client.send(json!({"type":"unsubscribe","id":4,"event":"nothing.here"})).await;
    assert_eq!(client.recv().await, json!({"type":"unsubscribed","id":4,"event":"nothing.here"}));
    assert_eq!(app.get_status("/healthz").await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wildcard_and_per_object_patterns_each_get_their_frame() {
    let nats = NatsServer::start();
    let app = spawn_app(&nats.url()).await;
    let publisher = publisher(&nats.url()).await;
    let mut a = app.client(&["shop.>"]).await;
    let mut b = app.client(&["shop.>"]).await;
    a.subscribe("shop.order.*.42").await;
    a.subscribe("shop.order.updated.*").await;
    b.subscribe("shop.order.>").await;
    app.flush().await;

    publish(&publisher, "shop.order.updated.42", r#"{"pk":42}"#).await;
    // One frame per matching subscription on `a`, in any order.
    let mut subs = vec![a.next_event().await["sub"].as_str().unwrap().to_string()];
    subs.push(a.next_event().await["sub"].as_str().unwrap().to_string());
    subs.sort();
    assert_eq!(subs, ["shop.order.*.42", "shop.order.updated.*"]);
    assert_eq!(b.next_event().await["name"], "shop.order.updated.42");

    publish(&publisher, "shop.order.created.7", r#"{"pk":7}"#).await;
    publish(&publisher, "shop.order.updated.7", r#"{"pk":7}"#).await;
    assert_eq!(b.next_event().await["name"], "shop.order.created.7");
    assert_eq!(b.next_event().await["name"], "shop.order.updated.7");
    let only = a.next_event().await;
    assert_eq!(
        (only["sub"].as_str(), only["name"].as_str()),
        (Some("shop.order.updated.*"), Some("shop.order.updated.7"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_subscriptions_are_reference_counted() {
    let nats = NatsServer::start();
    let app = spawn_app(&nats.url()).await;
    let mut a = app.client(&[">"]).await;
    let mut b = app.client(&[">"]).await;
    a.subscribe("chat.lobby.*").await;
    b.subscribe("chat.lobby.*").await;
    b.subscribe("chat.other.*").await;
    assert_eq!(app.gateway.node_subscriptions().await, 2);
    assert_eq!(app.metric("telegraphy_nats_subscriptions").await, 2.0);
    assert_eq!(app.metric("telegraphy_subscriptions").await, 3.0);

    a.send(json!({"type":"unsubscribe","event":"chat.lobby.*"})).await;
    a.recv().await;
    assert_eq!(app.gateway.node_subscriptions().await, 2, "b still holds chat.lobby.*");

    b.close().await;
    eventually("b's subscriptions released", || async { app.gateway.node_subscriptions().await == 0 }).await;
    assert_eq!(app.metric("telegraphy_subscriptions").await, 0.0);
    eventually("connection gauge back to 1", || async { app.metric("telegraphy_connections ").await == 1.0 }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_closed_with_4008_and_others_get_everything() {
    let nats = NatsServer::start();
    let app = spawn_app_with(&nats.url(), |s| {
        s.limits.outbound_queue = 128;
        // The frame limit is the one tested here: 128 queued frames of 60 KB, and the writer's batch of up to 64
        // more, stay below the byte bound (tests/abuse/bytes.rs tests that one).
        s.limits.outbound_queue_bytes = 64 << 20;
    })
    .await;
    let publisher = publisher(&nats.url()).await;
    let mut slow = app.client(&["load.>"]).await;
    slow.subscribe("load.>").await;
    let mut fast = app.client(&["load.>"]).await;
    fast.subscribe("load.>").await;
    app.flush().await;

    let payload = format!(r#"{{"blob":"{}"}}"#, "x".repeat(60_000));
    // ~48 MB: far more than socket buffers + the slow client's queue (128 x 60 KB) hold. The publisher stays at
    // most WINDOW events ahead of the fast client, so however slowly a loaded debug build lets it parse, its
    // queue never holds more than WINDOW (< 128) events: only the client that stops reading can fill one.
    const N: usize = 800;
    const WINDOW: usize = 32;
    let (progress, mut read) = tokio::sync::watch::channel(0usize);
    let reader = tokio::spawn(async move {
        for i in 0..N {
            let event = fast.next_event().await;
            assert_eq!(event["name"], format!("load.{i}"), "fast client got events in order");
            progress.send_replace(i + 1);
        }
        fast
    });
    let publish = async {
        for i in 0..N {
            tokio::time::timeout(Duration::from_secs(30), read.wait_for(|&done| done + WINDOW > i))
                .await
                .expect("fast client read within 30 s")
                .expect("fast client reader alive");
            publisher.publish(format!("telegraphy.load.{i}"), payload.clone().into()).await.unwrap();
        }
        publisher.flush().await.unwrap();
    };
    // Once the gateway gave up on the slow client, it reads again: some events, then the 4008 close (which the
    // gateway sends only within its 1 s close grace, so this does not wait for the fast client).
    let slow_closed = async {
        let closed = || async { app.metric("telegraphy_slow_disconnects_total").await >= 1.0 };
        eventually_within("the slow client closed", Duration::from_secs(60), closed).await;
        slow.expect_close().await
    };
    let (code, ()) = tokio::join!(slow_closed, publish);
    assert_eq!(code, 4008);
    let _fast = tokio::time::timeout(Duration::from_secs(60), reader).await.expect("fast client kept up").unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_are_closed_after_two_heartbeats() {
    let nats = NatsServer::start();
    let app = spawn_app_with(&nats.url(), |s| s.heartbeat = 1).await;
    let mut quiet = app.client(&["a.>"]).await;
    quiet.auto_pong = false;
    let mut alive = app.client(&["a.>"]).await;
    let started = tokio::time::Instant::now();
    // `alive` keeps reading (and answering pings) while `quiet` never sends anything.
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    // recv_or_close answers pings and returns only on another frame or a close: neither may happen.
    let keep_alive = tokio::spawn(async move {
        tokio::select! {
            _ = &mut stopped => alive,
            frame = alive.recv_or_close(WAIT) => panic!("alive got {frame:?}"),
        }
    });
    let closed = quiet.expect_close().await;
    assert_eq!(closed, 1000);
    assert!(started.elapsed() >= Duration::from_millis(1500), "closed too early: {:?}", started.elapsed());
    // Past two more intervals, `alive` is still open.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    stop.send(()).unwrap();
    let mut alive = keep_alive.await.unwrap();
    alive.send(json!({"type":"ping","id":9})).await;
    assert_eq!(alive.recv().await, json!({"type":"pong","id":9}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_frames_get_errors_then_1008() {
    let nats = NatsServer::start();
    let app = spawn_app_with(&nats.url(), |s| s.limits.max_bad_frames = 4).await;
    let mut client = WsClient::connect(&app.ws_url()).await;
    // Before connect: subscribe is refused, never executed.
    client.send(json!({"type":"subscribe","id":5,"event":"a"})).await;
    assert_eq!(client.recv().await["code"], "not_connected");
    client.send_text("not json").await;
    let reply = client.recv().await;
    assert_eq!((reply["type"].as_str(), reply["code"].as_str()), (Some("error"), Some("bad_request")));
    client.send(json!({"type":"subscribe","id":6,"event":"a..b"})).await;
    let reply = client.recv().await;
    assert_eq!((reply["id"].as_i64(), reply["code"].as_str()), (Some(6), Some("bad_request")));
    client.ws.send(tokio_tungstenite::tungstenite::Message::binary(vec![1u8, 2, 3])).await.unwrap();
    assert_eq!(client.expect_close().await, 1008);
    assert!(app.metric("telegraphy_bad_frames_total").await >= 4.0);
    assert_eq!(app.gateway.node_subscriptions().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_frames_close_with_1009() {
    let nats = NatsServer::start();
    let app = spawn_app_with(&nats.url(), |s| s.limits.max_frame_bytes = 1024).await;
    let mut client = app.client(&["a.>"]).await;
    client.send_text(&format!(r#"{{"type":"ping","pad":"{}"}}"#, "x".repeat(2000))).await;
    assert_eq!(client.expect_close().await, 1009);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_up_to_the_limit_are_served_whatever_the_read_buffer() {
    // The socket's read buffer is small (session::READ_BUFFER); larger frames arrive over several reads.
    let nats = NatsServer::start();
    let app = spawn_app(&nats.url()).await;
    let mut client = app.client(&["a.>"]).await;
    for size in [1_000, 5_000, 65_000] {
        let reply = client.request(json!({"type":"ping","id":size,"pad":"x".repeat(size)})).await;
        assert_eq!((reply["type"].as_str(), reply["id"].as_u64()), (Some("pong"), Some(size as u64)), "{size}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_must_come_first_and_in_time() {
    let nats = NatsServer::start();
    let app = spawn_app_with(&nats.url(), |s| s.auth.connect_timeout = 1).await;
    let mut client = WsClient::connect(&app.ws_url()).await;
    let reply = client.recv().await;
    assert_eq!((reply["type"].as_str(), reply["code"].as_str()), (Some("error"), Some("unauthorized")));
    assert_eq!(client.expect_close().await, 4001);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_on_connections_and_subscriptions() {
    let nats = NatsServer::start();
    let app = spawn_app_with(&nats.url(), |s| {
        s.limits.max_connections = 2;
        s.limits.max_subscriptions = 2;
    })
    .await;
    let mut a = app.client(&[">"]).await;
    let _b = app.client(&[">"]).await;
    assert_eq!(WsClient::try_connect(&app.ws_url()).await.err(), Some(503));
    a.subscribe("x.1").await;
    a.subscribe("x.2").await;
    a.subscribe("x.2").await; // idempotent
    a.send(json!({"type":"subscribe","id":7,"event":"x.3"})).await;
    assert_eq!(a.recv().await["code"], "limit_exceeded");
    assert!(app.metric("telegraphy_connections_refused_total").await >= 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payloads_that_are_not_json_are_dropped_and_counted() {
    let nats = NatsServer::start();
    let app = spawn_app_with(&nats.url(), |s| s.limits.max_event_bytes = 100).await;
    let publisher = publisher(&nats.url()).await;
    let mut client = app.client(&["p.>"]).await;
    client.subscribe("p.>").await;
    app.flush().await;
    publish(&publisher, "p.bad", "{not json").await;
    publish(&publisher, "p.big", &format!("\"{}\"", "y".repeat(200))).await;
    publish(&publisher, "p.good", "[1,2]").await;
    let event = client.next_event().await;
    assert_eq!((event["name"].as_str(), event["data"].clone()), (Some("p.good"), json!([1, 2])));
    let metrics = app.metrics().await;
    assert_eq!(metric_value(&metrics, "telegraphy_events_dropped_total{reason=\"not_json\"}"), 1.0);
    assert_eq!(metric_value(&metrics, "telegraphy_events_dropped_total{reason=\"too_big\"}"), 1.0);
    assert_eq!(metric_value(&metrics, "telegraphy_events_in_total"), 3.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_restart_flips_readiness_and_delivery_resumes() {
    let mut nats = NatsServer::start();
    let app = spawn_app(&nats.url()).await;
    let mut client = app.client(&["r.>"]).await;
    client.subscribe("r.>").await;
    app.flush().await;

    nats.kill(); // the store survives, so does the history stream
    eventually("readyz 503 while NATS is down", || async { app.get_status("/readyz").await == 503 }).await;
    assert_eq!(app.get_status("/healthz").await, 200, "process stays alive");
    client.send(json!({"type":"ping","id":1})).await;
    assert_eq!(client.recv().await, json!({"type":"pong","id":1}), "sockets stay open");

    nats.restart();
    app.wait_ready().await;
    app.flush().await; // re-subscriptions reached the server
    let publisher = publisher(&nats.url()).await;
    publish(&publisher, "r.after", r#"{"ok":true}"#).await;
    assert_eq!(client.next_event().await["name"], "r.after");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_closes_sockets_with_1012_and_refuses_new_ones() {
    let nats = NatsServer::start();
    let mut app = spawn_app(&nats.url()).await;
    let mut a = app.client(&["d.>"]).await;
    let mut b = app.client(&["d.>"]).await;
    a.subscribe("d.>").await;
    let gateway = app.gateway.clone();
    app.trigger_shutdown();
    assert_eq!(a.expect_close().await, 1012);
    assert_eq!(b.expect_close().await, 1012);
    assert!(gateway.is_draining());
    let started = tokio::time::Instant::now();
    app.stopped_within(Duration::from_secs(12)).await;
    assert!(started.elapsed() < Duration::from_secs(11));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_endpoint_exposes_the_node() {
    let nats = NatsServer::start();
    let app = spawn_app(&nats.url()).await;
    let text = app.metrics().await;
    for name in [
        "telegraphy_connections",
        "telegraphy_subscriptions",
        "telegraphy_nats_subscriptions",
        "telegraphy_events_in_total",
        "telegraphy_frames_out_total",
        "telegraphy_slow_disconnects_total",
        "telegraphy_bad_frames_total",
        "telegraphy_nats_connected",
    ] {
        assert!(text.contains(name), "{name} missing from /metrics:\n{text}");
    }
    assert_eq!(metric_value(&text, "telegraphy_nats_connected"), 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_subscribe_churn_leaves_one_node_subscription_per_held_pattern() {
    // Many connections subscribing and unsubscribing the same few patterns at once: the node's per-pattern
    // bookkeeping (first in subscribes to NATS, last out unsubscribes) must end exactly where the clients are.
    let nats = NatsServer::start();
    let app = spawn_app(&nats.url()).await;
    const CLIENTS: usize = 12;
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        clients.push(app.client(&["churn.>"]).await);
    }
    let tasks = clients.into_iter().enumerate().map(|(i, mut client)| {
        tokio::spawn(async move {
            let mut id = 10;
            for round in 0..15 {
                let pattern = format!("churn.{}.>", (i + round) % 4);
                id += 2;
                let reply = client.request(json!({"type":"subscribe","id":id,"event":pattern})).await;
                assert_eq!(reply["type"], "subscribed", "{reply}");
                let reply = client.request(json!({"type":"unsubscribe","id":id + 1,"event":pattern})).await;
                assert_eq!(reply["type"], "unsubscribed", "{reply}");
            }
            client.subscribe(&format!("churn.{}.>", i % 4)).await;
            client
        })
    });
    let mut clients: Vec<WsClient> =
        futures_util::future::join_all(tasks).await.into_iter().map(Result::unwrap).collect();
    assert_eq!(app.gateway.node_subscriptions().await, 4);
    assert_eq!(app.metric("telegraphy_nats_subscriptions").await, 4.0);
    app.flush().await;
    let publisher = publisher(&nats.url()).await;
    for k in 0..4 {
        publish(&publisher, &format!("churn.{k}.e"), &k.to_string()).await;
    }
    for (i, client) in clients.iter_mut().enumerate() {
        let event = client.next_event().await;
        assert_eq!(event["name"], format!("churn.{}.e", i % 4), "client {i}: {event}");
    }
    drop(clients);
    eventually("every node subscription released", || async { app.gateway.node_subscriptions().await == 0 }).await;
}

/// Sends raw bytes on a fresh TCP connection and reads the HTTP response head (up to the blank line, byte by
/// byte, so nothing after it is consumed); returns (status line, head, the still open stream).
async fn raw_http(app: &TestApp, request: &[u8]) -> (String, String, tokio::net::TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let byte = tokio::time::timeout(WAIT, stream.read_u8()).await.expect("response head in time").unwrap();
        head.push(byte);
    }
    let head = String::from_utf8(head).unwrap();
    (head.lines().next().unwrap_or_default().to_string(), head, stream)
}

const UPGRADE: &str = "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_upgrade_path_answers_like_http_and_keeps_frames_sent_with_the_request() {
    use tokio_tungstenite::tungstenite::{protocol::Role, Message};
    let nats = NatsServer::start();
    let app = spawn_app(&nats.url()).await;
    let host = format!("Host: {}\r\n", app.addr);

    let (status, _, _) =
        raw_http(&app, format!("GET /metrics HTTP/1.1\r\n{host}{UPGRADE}Sec-WebSocket-Version: 13\r\n\r\n").as_bytes())
            .await;
    assert!(status.contains(" 404 "), "an upgrade elsewhere than /ws: {status}");
    let (status, _, _) =
        raw_http(&app, format!("GET /ws HTTP/1.1\r\n{host}{UPGRADE}Sec-WebSocket-Version: 8\r\n\r\n").as_bytes()).await;
    assert!(status.contains(" 400 "), "unsupported WebSocket version: {status}");
    let (status, _, _) = raw_http(&app, format!("GET /ws HTTP/1.1\r\n{host}\r\n").as_bytes()).await;
    assert!(status.contains(" 400 "), "a plain GET /ws: {status}");

    // The client's first WebSocket frame in the same write as its request: it must not be lost.
    let mut request = format!("GET /ws HTTP/1.1\r\n{host}{UPGRADE}Sec-WebSocket-Version: 13\r\n\r\n").into_bytes();
    let ping = br#"{"type":"ping","id":7}"#;
    request.extend_from_slice(&[0x81, 0x80 | ping.len() as u8, 1, 2, 3, 4]); // FIN + text, masked
    request.extend(ping.iter().enumerate().map(|(i, b)| b ^ [1, 2, 3, 4][i % 4]));
    let (status, head, stream) = raw_http(&app, &request).await;
    assert!(status.contains(" 101 "), "{head}");
    assert!(head.to_ascii_lowercase().contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="), "{head}");
    let mut ws = tokio_tungstenite::WebSocketStream::from_raw_socket(stream, Role::Client, None).await;
    let reply = tokio::time::timeout(WAIT, ws.next()).await.expect("a reply in time").unwrap().unwrap();
    let Message::Text(text) = reply else { panic!("expected a text frame, got {reply:?}") };
    assert_eq!(serde_json::from_str::<serde_json::Value>(&text).unwrap(), json!({"type":"pong","id":7}));
}
