//! Client actions (issue 22, proto/PROTOCOL.md sections 13 to 14) against a real nats-server and real gateways:
//! client publish (grant containment, stored vs ephemeral, `from` that no client or raw NATS publisher can
//! forge), RPC round trips answered by workers written here with raw async-nats in the queue group
//! `telegraphy_workers` (headers, error envelopes, no worker, timeout, a worker killed while another goes on),
//! and two gateways on one NATS.

mod common;

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
use common::*;
use futures_util::StreamExt;
use serde_json::{json, Value};
use telegraphy::protocol::token::Grants;
use tokio::task::JoinHandle;

fn patterns(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// A connected client of `user` with `grants`; returns it and its `connected` reply.
async fn actor(app: &TestApp, user: &str, grants: Grants) -> (WsClient, Value) {
    let token = app
        .gateway
        .auth()
        .mint_with_grants(user, &patterns(&["chat.>", "shop.>"]), 60, Some(json!({"name": user})), grants)
        .await
        .expect("mint");
    let mut client = WsClient::connect(&app.ws_url()).await;
    let connected = client.connect_with(json!({"type": "connect", "id": 1, "token": token})).await;
    assert_eq!(connected["type"], "connected", "{connected}");
    (client, connected)
}

fn chat_grants() -> Grants {
    Grants {
        publish: patterns(&["chat.*.message"]),
        publish_ephemeral: patterns(&["chat.*.typing"]),
        rpc: patterns(&["chat.*", "slow.>"]),
    }
}

/// A worker written with a raw NATS client: serves `subject` in the queue group, answering each request with
/// what `answer` returns (None: no answer).
async fn worker(
    url: &str,
    subject: &str,
    answer: impl Fn(&async_nats::Message) -> Option<String> + Send + 'static,
) -> (async_nats::Client, JoinHandle<()>) {
    let client = publisher(url).await;
    let mut requests = client.queue_subscribe(subject.to_string(), "telegraphy_workers".into()).await.unwrap();
    client.flush().await.unwrap();
    let replier = client.clone();
    let task = tokio::spawn(async move {
        while let Some(request) = requests.next().await {
            if let (Some(reply), Some(body)) = (request.reply.clone(), answer(&request)) {
                let _ = replier.publish(reply, body.into()).await;
            }
        }
    });
    (client, task)
}

fn header(request: &async_nats::Message, name: &str) -> Value {
    request.headers.as_ref().and_then(|h| h.get(name)).map_or(Value::Null, |v| Value::from(v.as_str()))
}

/// An echo worker: `{"data":{"headers":{..},"payload":<payload verbatim>,"worker":name}}`.
fn echo(name: &'static str) -> impl Fn(&async_nats::Message) -> Option<String> + Send + 'static {
    move |request| {
        let headers = json!({
            "client": header(request, "Telegraphy-Client"),
            "user": header(request, "Telegraphy-User"),
            "session": header(request, "Telegraphy-Session"),
            "info": header(request, "Telegraphy-Info"),
            "node": header(request, "Telegraphy-Node"),
        });
        let payload = std::str::from_utf8(&request.payload).unwrap();
        Some(format!(r#"{{"data":{{"headers":{headers},"payload":{payload},"worker":"{name}"}}}}"#))
    }
}

#[tokio::test]
async fn publish_is_contained_by_the_grant_and_receivers_see_the_stamped_sender() {
    let nats = NatsServer::start();
    let app = spawn_app(&nats.url()).await;
    let (mut alice, alice_connected) = actor(&app, "alice", chat_grants()).await;
    let (mut bob, _) = actor(&app, "bob", Grants::default()).await;
    let alice_client = alice_connected["client"].as_str().expect("connected carries the client id").to_string();
    assert_eq!(alice_client, telegraphy::presence_client_id(alice_connected["session"].as_str().unwrap()));
    bob.subscribe("chat.>").await;

    // Ephemeral: live only, no history position; `from` is the connection's, whatever `data` claims.
    let forged = json!({"typing": true, "from": {"user": "mallory", "client": "AAAAAAAAAAAAAAAA"}});
    let ack = alice.request(json!({"type": "publish", "id": 5, "event": "chat.lobby.typing", "data": forged})).await;
    assert_eq!(ack, json!({"type": "published", "id": 5}));
    let event = bob.next_event().await;
    assert_eq!(event["name"], "chat.lobby.typing");
    assert_eq!(event["data"], forged, "data is passed on verbatim");
    assert_eq!(event["from"], json!({"user": "alice", "client": alice_client}));
    assert!(event.get("seq").is_none(), "an ephemeral publish is never stored: {event}");

    // Stored: through the stream, with its position and its sender (headers kept by the stream).
    let ack = alice.request(json!({"type": "publish", "id": 6, "event": "chat.lobby.message", "data": {"t": 1}})).await;
    assert_eq!(ack, json!({"type": "published", "id": 6}));
    let stored = bob.next_event().await;
    assert_eq!((&stored["name"], &stored["data"]), (&json!("chat.lobby.message"), &json!({"t": 1})));
    assert_eq!(stored["from"], json!({"user": "alice", "client": alice_client}));
    let seq = stored["seq"].as_u64().expect("a stored publish has a seq");

    // A replayed stored publish carries `from` too.
    let (mut carol, _) = actor(&app, "carol", Grants::default()).await;
    let epoch = stored["epoch"].as_str().unwrap();
    let at = carol.subscribe_since("chat.>", epoch, seq - 1).await;
    assert_eq!(at["recovered"], true, "{at}");
    let replayed = carol.next_event().await;
    assert_eq!((&replayed["seq"], &replayed["from"]), (&json!(seq), &stored["from"]));

    // Outside the grant, a pattern, no grant at all.
    let refused = alice.request(json!({"type": "publish", "id": 7, "event": "shop.order.1", "data": 1})).await;
    assert_eq!((&refused["code"], &refused["message"]), (&json!("forbidden"), &json!("publish not allowed")));
    let refused = alice.request(json!({"type": "publish", "id": 8, "event": "chat.lobby.x.typing"})).await;
    assert_eq!(refused["code"], "forbidden", "containment, not prefix: {refused}");
    let bad = alice.request(json!({"type": "publish", "id": 9, "event": "chat.*.typing", "data": 1})).await;
    assert_eq!((&bad["code"], &bad["id"]), (&json!("bad_request"), &json!(9)));
    let refused = bob.request(json!({"type": "publish", "id": 10, "event": "chat.lobby.typing"})).await;
    assert_eq!(refused["code"], "forbidden", "allow does not grant publish: {refused}");

    // A raw NATS publisher's headers: a malformed client id or user drops `from`; none means no `from`.
    let raw = publisher(&nats.url()).await;
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Telegraphy-Client", "abc");
    raw.publish_with_headers("telegraphy.chat.lobby.message", headers, r#"{"raw":1}"#.into()).await.unwrap();
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Telegraphy-Client", "zeWRwZWB0FcDVYYQ");
    headers.insert("Telegraphy-User", "%%%");
    raw.publish_with_headers("telegraphy.chat.lobby.message", headers, r#"{"raw":2}"#.into()).await.unwrap();
    publish(&raw, "chat.lobby.message", r#"{"raw":3}"#).await;
    for n in 1..=3 {
        let event = bob.next_event().await;
        assert_eq!(event["data"], json!({"raw": n}));
        assert!(event.get("from").is_none(), "{event}");
    }
    assert_eq!(app.metric("telegraphy_client_publishes_total{result=\"ok\"}").await, 2.0);
    assert_eq!(app.metric("telegraphy_client_publishes_total{result=\"forbidden\"}").await, 3.0);
}

#[tokio::test]
async fn publish_checks_size_then_rate_and_anonymous_sessions_have_no_grant() {
    let nats = NatsServer::start();
    let app = spawn_app_with(&nats.url(), |s| {
        s.client_publish.max_bytes = 64;
        s.client_publish.request_burst = 3;
        s.client_publish.requests_per_second = 1;
        s.auth.anonymous_allow = vec!["chat.>".into()];
    })
    .await;
    let (mut alice, _) = actor(&app, "alice", chat_grants()).await;
    let big = "x".repeat(64);
    let refused = alice.request(json!({"type": "publish", "id": 1, "event": "chat.a.typing", "data": big})).await;
    assert_eq!((&refused["code"], &refused["message"]), (&json!("limit_exceeded"), &json!("publish too large")));
    for id in 2..=4 {
        let ack = alice.request(json!({"type": "publish", "id": id, "event": "chat.a.typing"})).await;
        assert_eq!(ack["type"], "published", "{ack}");
    }
    let limited = alice.request(json!({"type": "publish", "id": 5, "event": "chat.a.typing"})).await;
    assert_eq!((&limited["code"], &limited["message"]), (&json!("limit_exceeded"), &json!("too many publishes")));
    assert_eq!(alice.request(json!({"type": "ping", "id": 6})).await["type"], "pong", "the connection stays open");

    let mut anonymous = WsClient::connect(&app.ws_url()).await;
    assert_eq!(anonymous.connect_with(json!({"type": "connect"})).await["type"], "connected");
    let refused = anonymous.request(json!({"type": "publish", "id": 1, "event": "chat.a.typing"})).await;
    assert_eq!(refused["code"], "forbidden");
    let refused = anonymous.request(json!({"type": "rpc", "id": 2, "method": "chat.send"})).await;
    assert_eq!(refused["code"], "forbidden");

    // Publish off on the node: every publish is forbidden, before the grant is looked at.
    let off = spawn_app_with(&nats.url(), |s| s.client_publish.requests_per_second = 0).await;
    let (mut alice, _) = actor(&off, "alice", chat_grants()).await;
    let refused = alice.request(json!({"type": "publish", "id": 1, "event": "chat.a.typing"})).await;
    assert_eq!((&refused["code"], &refused["message"]), (&json!("forbidden"), &json!("client publish is off")));
    // Not connected: a bad frame.
    let mut early = WsClient::connect(&app.ws_url()).await;
    let refused = early.request(json!({"type": "publish", "id": 1, "event": "chat.a.typing"})).await;
    assert_eq!(refused["code"], "not_connected");
}

#[tokio::test]
async fn rpc_round_trip_carries_the_sender_in_headers_never_from_the_frame() {
    let nats = NatsServer::start();
    let app = spawn_app(&nats.url()).await;
    let (_w, _task) = worker(&nats.url(), "telegraphy_rpc.chat.*", echo("w1")).await;
    let (mut alice, connected) = actor(&app, "zoë", chat_grants()).await;
    let data = json!({"room": "lobby", "user": "mallory", "session": "forged"});
    let answer = alice.request(json!({"type": "rpc", "id": 7, "method": "chat.send", "data": data})).await;
    assert_eq!((&answer["type"], &answer["id"]), (&json!("rpc_result"), &json!(7)), "{answer}");
    let got = &answer["data"];
    assert_eq!(got["payload"], data, "the data reaches the worker verbatim");
    assert_eq!(got["headers"]["user"], URL_SAFE_NO_PAD.encode("zoë"));
    assert_eq!(got["headers"]["session"], connected["session"]);
    assert_eq!(got["headers"]["client"], connected["client"]);
    assert_eq!(got["headers"]["node"], "gw-1");
    assert_eq!(got["headers"]["info"], URL_SAFE_NO_PAD.encode(r#"{"name":"zoë"}"#));

    // Without data: null.
    let answer = alice.request(json!({"type": "rpc", "id": 8, "method": "chat.ping"})).await;
    assert_eq!(answer["data"]["payload"], Value::Null);

    // Not granted (a pattern grant does not cover a longer method), no id, a wildcard method.
    let refused = alice.request(json!({"type": "rpc", "id": 9, "method": "chat.history.page"})).await;
    assert_eq!((&refused["code"], &refused["message"]), (&json!("forbidden"), &json!("rpc not allowed")));
    let bad = alice.request(json!({"type": "rpc", "method": "chat.send"})).await;
    assert_eq!(bad["code"], "bad_request");
    let bad = alice.request(json!({"type": "rpc", "id": 10, "method": "chat.*"})).await;
    assert_eq!((&bad["code"], &bad["id"]), (&json!("bad_request"), &json!(10)));
    assert_eq!(app.metric("telegraphy_rpc_requests_total{result=\"ok\"}").await, 2.0);
    assert_eq!(app.metric("telegraphy_rpc_requests_total{result=\"forbidden\"}").await, 1.0);
}

#[tokio::test]
async fn rpc_errors_no_worker_timeout_and_bad_replies() {
    let nats = NatsServer::start();
    let app = spawn_app_with(&nats.url(), |s| s.rpc.timeout = 0.5).await;
    let (_w, _t) = worker(&nats.url(), "telegraphy_rpc.chat.*", |request| {
        Some(match request.subject.as_str() {
            "telegraphy_rpc.chat.missing" => r#"{"error":{"code":"not_found","message":"no such room"}}"#.into(),
            "telegraphy_rpc.chat.capital" => r#"{"error":{"code":"NotFound","message":"x"}}"#.into(),
            "telegraphy_rpc.chat.notjson" => "oops".into(),
            "telegraphy_rpc.chat.big" => format!(r#"{{"data":"{}"}}"#, "x".repeat(70_000)),
            _ => return None, // chat.silent: never answers
        })
    })
    .await;
    let (mut alice, _) = actor(&app, "alice", chat_grants()).await;
    let mut ask = async |id: u64, method: &str| {
        let answer = alice.request(json!({"type": "rpc", "id": id, "method": method, "data": {}})).await;
        assert_eq!((&answer["type"], &answer["id"]), (&json!("error"), &json!(id)), "{answer}");
        (answer["code"].as_str().unwrap().to_string(), answer["message"].as_str().unwrap().to_string())
    };
    assert_eq!(ask(1, "chat.missing").await, ("not_found".into(), "no such room".into()));
    assert_eq!(ask(2, "chat.capital").await, ("internal".into(), "bad rpc reply".into()));
    assert_eq!(ask(3, "chat.notjson").await, ("internal".into(), "bad rpc reply".into()));
    assert_eq!(ask(4, "chat.big").await, ("internal".into(), "bad rpc reply".into()));
    assert_eq!(ask(5, "chat.silent").await, ("timeout".into(), "rpc timed out".into()));
    assert_eq!(ask(6, "slow.nobody").await, ("unavailable".into(), "no worker for this method".into()));
    // None of them closed the connection.
    assert_eq!(alice.request(json!({"type": "ping", "id": 9})).await["type"], "pong");
    assert_eq!(app.metric("telegraphy_rpc_requests_total{result=\"timeout\"}").await, 1.0);
    assert_eq!(app.metric("telegraphy_rpc_requests_total{result=\"unavailable\"}").await, 1.0);
    assert_eq!(app.metric("telegraphy_rpc_requests_total{result=\"bad_reply\"}").await, 3.0);
    assert_eq!(app.metric("telegraphy_rpc_requests_total{result=\"error\"}").await, 1.0);
    assert!(app.metrics().await.contains("telegraphy_rpc_duration_seconds_bucket"));
}

#[tokio::test]
async fn an_rpc_in_flight_never_blocks_the_connection_and_in_flight_is_bounded() {
    let nats = NatsServer::start();
    let app = spawn_app_with(&nats.url(), |s| {
        s.rpc.timeout = 3.0;
        s.rpc.max_in_flight = 2;
    })
    .await;
    // Holds the requests; the test answers them.
    let held = std::sync::Arc::new(std::sync::Mutex::new(Vec::<async_nats::Message>::new()));
    let keep = held.clone();
    let (w, _t) = worker(&nats.url(), "telegraphy_rpc.slow.>", move |request| {
        keep.lock().unwrap().push(request.clone());
        None
    })
    .await;
    let (mut alice, _) = actor(&app, "alice", chat_grants()).await;
    alice.send(json!({"type": "rpc", "id": 1, "method": "slow.a"})).await;
    alice.send(json!({"type": "rpc", "id": 2, "method": "slow.b"})).await;
    // Replies to later frames come before the RPCs' answers.
    assert_eq!(alice.request(json!({"type": "ping", "id": 3})).await, json!({"type": "pong", "id": 3}));
    let refused = alice.request(json!({"type": "rpc", "id": 4, "method": "slow.c"})).await;
    assert_eq!(
        (&refused["id"], &refused["code"], &refused["message"]),
        (&json!(4), &json!("limit_exceeded"), &json!("too many rpc requests in flight"))
    );
    eventually("both requests at the worker", || async { held.lock().unwrap().len() == 2 }).await;
    // Answered out of order: the client matches by id.
    let requests: Vec<_> = held.lock().unwrap().drain(..).collect();
    for (request, n) in requests.iter().rev().zip([20, 10]) {
        w.publish(request.reply.clone().unwrap(), format!(r#"{{"data":{n}}}"#).into()).await.unwrap();
    }
    let (first, second) = (alice.recv().await, alice.recv().await);
    assert_eq!((&first["id"], &first["data"]), (&json!(2), &json!(20)));
    assert_eq!((&second["id"], &second["data"]), (&json!(1), &json!(10)));
    // The slots are free again.
    alice.send(json!({"type": "rpc", "id": 5, "method": "slow.d"})).await;
    eventually("a new request at the worker", || async { held.lock().unwrap().len() == 1 }).await;
}

#[tokio::test]
async fn a_killed_worker_while_another_goes_on() {
    let nats = NatsServer::start();
    let app = spawn_app_with(&nats.url(), |s| {
        s.rpc.timeout = 1.0;
        s.rpc.request_burst = 100;
    })
    .await;
    let (w1, t1) = worker(&nats.url(), "telegraphy_rpc.chat.*", echo("w1")).await;
    let (_w2, _t2) = worker(&nats.url(), "telegraphy_rpc.chat.*", echo("w2")).await;
    let (mut alice, _) = actor(&app, "alice", chat_grants()).await;
    let mut served = std::collections::BTreeSet::new();
    for id in 0..40 {
        let answer = alice.request(json!({"type": "rpc", "id": id, "method": "chat.send"})).await;
        served.insert(answer["data"]["worker"].as_str().unwrap_or_else(|| panic!("{answer}")).to_string());
    }
    assert_eq!(served.len(), 2, "the queue group shares the requests: {served:?}");
    // w1 dies (its connection closes without a drain); w2 serves every request from then on.
    t1.abort();
    drop(w1);
    let probe = publisher(&nats.url()).await;
    eventually("the dead worker's subscription is gone", || async {
        // With w1's interest removed, every request reaches w2.
        let mut all_w2 = true;
        for _ in 0..5 {
            let answer = probe.request("telegraphy_rpc.chat.send", "null".into()).await;
            all_w2 &= answer.is_ok_and(|m| String::from_utf8_lossy(&m.payload).contains("\"w2\""));
        }
        all_w2
    })
    .await;
    for id in 100..120 {
        let answer = alice.request(json!({"type": "rpc", "id": id, "method": "chat.send"})).await;
        assert_eq!((&answer["type"], &answer["data"]["worker"]), (&json!("rpc_result"), &json!("w2")), "{answer}");
    }
}

#[tokio::test]
async fn two_gateways_share_workers_and_client_publishes() {
    let nats = NatsServer::start();
    let gw1 = spawn_app(&nats.url()).await;
    let gw2 = spawn_app_with(&nats.url(), |s| s.node.name = "gw-2".into()).await;
    let (_w, _t) = worker(&nats.url(), "telegraphy_rpc.chat.*", echo("w")).await;
    let (mut alice, alice_connected) = actor(&gw1, "alice", chat_grants()).await;
    let (mut bob, _) = actor(&gw2, "bob", chat_grants()).await;
    bob.subscribe("chat.*.typing").await;
    alice.subscribe("chat.*.typing").await;
    let answer = bob.request(json!({"type": "rpc", "id": 1, "method": "chat.send"})).await;
    assert_eq!(answer["data"]["headers"]["node"], "gw-2");
    let answer = alice.request(json!({"type": "rpc", "id": 1, "method": "chat.send"})).await;
    assert_eq!(answer["data"]["headers"]["node"], "gw-1");
    alice.send(json!({"type": "publish", "id": 2, "event": "chat.lobby.typing", "data": true})).await;
    let from = json!({"user": "alice", "client": alice_connected["client"]});
    // The sender gets its own publish too (its own subscription), and recognises it by `from.client`.
    let (mut ack, mut own) = (None, None);
    while ack.is_none() || own.is_none() {
        let frame = alice.recv().await;
        match frame["type"].as_str() {
            Some("published") => ack = Some(frame),
            Some("event") => own = Some(frame),
            _ => panic!("{frame}"),
        }
    }
    assert_eq!(own.unwrap()["from"], from);
    let seen = bob.next_event().await;
    assert_eq!((&seen["name"], &seen["data"], &seen["from"]), (&json!("chat.lobby.typing"), &json!(true), &from));
}

#[tokio::test]
async fn lifecycle_events_reach_a_worker_when_enabled() {
    let nats = NatsServer::start();
    let watcher = publisher(&nats.url()).await;
    let mut events = watcher.queue_subscribe("telegraphy_lifecycle.>", "telegraphy_workers".into()).await.unwrap();
    watcher.flush().await.unwrap();
    let app = spawn_app_with(&nats.url(), |s| {
        s.lifecycle.events = ["connect", "disconnect", "subscribe", "unsubscribe"].map(String::from).to_vec()
    })
    .await;
    let (mut alice, connected) = actor(&app, "alice", Grants::default()).await;
    alice.subscribe("chat.>").await;
    let reply = alice.request(json!({"type": "unsubscribe", "id": 3, "event": "chat.>"})).await;
    assert_eq!(reply["type"], "unsubscribed");
    alice.close().await;
    // Fire-and-forget publishes: collected by kind (their order is not promised).
    let mut by_kind = std::collections::BTreeMap::new();
    while by_kind.len() < 4 {
        let message = tokio::time::timeout(WAIT, events.next()).await.expect("a lifecycle message").unwrap();
        let payload: Value = serde_json::from_slice(&message.payload).unwrap();
        assert_eq!(format!("telegraphy_lifecycle.{}", payload["kind"].as_str().unwrap()), message.subject.as_str());
        by_kind.insert(payload["kind"].as_str().unwrap().to_string(), payload);
    }
    let connect = &by_kind["connect"];
    assert_eq!(connect["session"], connected["session"]);
    assert_eq!(
        (&connect["client"], &connect["user"], &connect["info"], &connect["resumed"], &connect["node"]),
        (&connected["client"], &json!("alice"), &json!({"name": "alice"}), &json!(false), &json!("gw-1"))
    );
    for kind in ["subscribe", "unsubscribe"] {
        assert_eq!((&by_kind[kind]["event"], &by_kind[kind]["sub"]), (&json!("chat.>"), &json!("chat.>")));
    }
    let gone = &by_kind["disconnect"];
    assert_eq!((&gone["code"], &gone["reason"]), (&json!(1000), &json!("bye")));
    assert!(gone["time"].as_u64().unwrap() >= connect["time"].as_u64().unwrap());
    eventually("the lifecycle counter", || async {
        app.metric("telegraphy_lifecycle_events_total{kind=\"disconnect\",result=\"ok\"}").await == 1.0
    })
    .await;
}
