//! Issue 22: client actions under attack. A client flooding `publish` is held to its publish bucket and then
//! closed by the general request bucket; an oversize `rpc` is refused before any NATS work; a client firing RPCs
//! at a method that never answers holds at most `rpc.max_in_flight` requests at the worker. Each time a
//! legitimate user beside the attacker is still served.

use std::sync::{
    atomic::{AtomicUsize, Ordering},
    Arc,
};

use futures_util::StreamExt;
use serde_json::{json, Value};
use telegraphy::protocol::token::Grants;

use crate::common::*;

fn grants() -> Grants {
    Grants { publish: vec![], publish_ephemeral: vec!["room.*.typing".into()], rpc: vec!["work.*".into()] }
}

async fn user(app: &TestApp, name: &str) -> WsClient {
    let token = app.gateway.auth().mint_with_grants(name, &["room.>".into()], 60, None, grants()).await.expect("mint");
    let mut client = WsClient::connect(&app.ws_url()).await;
    let connected = client.connect_with(json!({"type": "connect", "id": 1, "token": token})).await;
    assert_eq!(connected["type"], "connected", "{connected}");
    client
}

/// A worker on `work.*` counting the requests it gets per user header; answers `work.echo`, never `work.hang`.
async fn worker(url: &str) -> (async_nats::Client, Arc<AtomicUsize>, Arc<AtomicUsize>) {
    let client = publisher(url).await;
    let mut requests = client.queue_subscribe("telegraphy_rpc.work.*", "telegraphy_workers".into()).await.unwrap();
    client.flush().await.unwrap();
    let (from_attacker, from_others) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (a, o, replier) = (from_attacker.clone(), from_others.clone(), client.clone());
    tokio::spawn(async move {
        while let Some(request) = requests.next().await {
            let user = request.headers.as_ref().and_then(|h| h.get("Telegraphy-User")).map(|v| v.to_string());
            // base64url("mallory") = "bWFsbG9yeQ"
            let counter = if user.as_deref() == Some("bWFsbG9yeQ") { &a } else { &o };
            counter.fetch_add(1, Ordering::SeqCst);
            if request.subject.as_str().ends_with(".echo") {
                if let Some(reply) = request.reply {
                    let _ = replier.publish(reply, r#"{"data":"ok"}"#.into()).await;
                }
            }
        }
    });
    (client, from_attacker, from_others)
}

/// The legitimate user publishes and calls: both answered, and the watcher sees the publish.
async fn still_served(alice: &mut WsClient, watcher: &mut WsClient, id: u64) {
    let ack = alice.request(json!({"type": "publish", "id": id, "event": "room.a.typing", "data": id})).await;
    assert_eq!(ack, json!({"type": "published", "id": id}));
    loop {
        let event = watcher.next_event().await;
        if event["data"] == json!(id) {
            break;
        }
    }
    let answer = alice.request(json!({"type": "rpc", "id": id + 1, "method": "work.echo"})).await;
    assert_eq!((&answer["type"], &answer["data"]), (&json!("rpc_result"), &json!("ok")), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_flood_is_rate_limited_then_closed_while_others_are_served() {
    let nats = NatsServer::start();
    let app = spawn_app(&nats.url()).await;
    let (_w, _, _) = worker(&nats.url()).await;
    let mut mallory = user(&app, "mallory").await;
    let mut alice = user(&app, "alice").await;
    let mut watcher = user(&app, "watcher").await;
    watcher.subscribe("room.>").await;
    // 300 publishes at once: the publish bucket (burst 20) lets ~20 through, the rest are refused; the general
    // request bucket (burst 150) then closes the socket with 4029.
    let started = std::time::Instant::now();
    for i in 0..300 {
        mallory.send(json!({"type": "publish", "id": i, "event": "room.a.typing", "data": "spam"})).await;
    }
    let (mut published, mut limited) = (0, 0);
    let code = loop {
        match mallory.recv_or_close(WAIT).await {
            Ok(frame) if frame["type"] == "published" => published += 1,
            Ok(frame) if frame["message"] == "too many publishes" => limited += 1,
            Ok(frame) if frame["message"] == "too many requests" => {}
            Ok(frame) => panic!("unexpected {frame}"),
            Err(Closed::Code(code, _)) => break code,
            Err(Closed::NoFrame) => panic!("closed without a close frame"),
        }
    };
    eprintln!("publish flood: {published} published, {limited} refused, then close {code}");
    assert_eq!(code, 4029);
    // Burst 20, refilled at 10/s while the flood lasted.
    let bound = 20 + (10.0 * started.elapsed().as_secs_f64()).ceil() as usize;
    assert!((20..=bound).contains(&published), "the publish bucket let {published} through (bound {bound})");
    assert!(limited >= 100, "{limited}");
    still_served(&mut alice, &mut watcher, 1000).await;
    assert!(app.metric("telegraphy_client_publishes_total{result=\"rate_limited\"}").await >= 100.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversize_rpc_never_reaches_a_worker() {
    let nats = NatsServer::start();
    let app = spawn_app(&nats.url()).await;
    let (_w, from_attacker, _) = worker(&nats.url()).await;
    let mut mallory = user(&app, "mallory").await;
    let mut alice = user(&app, "alice").await;
    let mut watcher = user(&app, "watcher").await;
    watcher.subscribe("room.>").await;
    let big: Value = json!({"blob": "x".repeat(20_000)}); // over rpc.max_request_bytes (16384), under the frame limit
    for id in 0..5 {
        let refused = mallory.request(json!({"type": "rpc", "id": id, "method": "work.echo", "data": big})).await;
        assert_eq!(
            (&refused["id"], &refused["code"], &refused["message"]),
            (&json!(id), &json!("limit_exceeded"), &json!("rpc request too large"))
        );
    }
    still_served(&mut alice, &mut watcher, 2000).await;
    // The attacker's connection is still open, and nothing of it reached the worker.
    assert_eq!(mallory.request(json!({"type": "ping", "id": 9})).await["type"], "pong");
    assert_eq!(from_attacker.load(Ordering::SeqCst), 0);
    assert_eq!(app.metric("telegraphy_rpc_requests_total{result=\"too_large\"}").await, 5.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rpcs_in_flight_are_bounded_per_connection() {
    let nats = NatsServer::start();
    let app = spawn_app_with(&nats.url(), |s| s.rpc.timeout = 3.0).await;
    let (_w, from_attacker, _) = worker(&nats.url()).await;
    let mut mallory = user(&app, "mallory").await;
    let mut alice = user(&app, "alice").await;
    let mut watcher = user(&app, "watcher").await;
    watcher.subscribe("room.>").await;
    // 15 requests to a method that never answers (under the RPC bucket's burst of 20).
    for id in 0..15 {
        mallory.send(json!({"type": "rpc", "id": id, "method": "work.hang", "data": id})).await;
    }
    let mut refused = 0;
    while refused < 11 {
        let frame = mallory.recv().await;
        assert_eq!(frame["message"], "too many rpc requests in flight", "{frame}");
        refused += 1;
    }
    still_served(&mut alice, &mut watcher, 3000).await;
    eventually("the held requests at the worker", || async { from_attacker.load(Ordering::SeqCst) == 4 }).await;
    // Their timeouts free the slots: the attacker may call again (and is again bounded).
    let mut timed_out = 0;
    while timed_out < 4 {
        let frame = mallory.recv().await;
        assert_eq!(frame["code"], "timeout", "{frame}");
        timed_out += 1;
    }
    let answer = mallory.request(json!({"type": "rpc", "id": 99, "method": "work.echo"})).await;
    assert_eq!(answer["type"], "rpc_result", "{answer}");
    assert_eq!(from_attacker.load(Ordering::SeqCst), 5);
    assert_eq!(app.metric("telegraphy_rpc_requests_total{result=\"in_flight\"}").await, 11.0);
}
