//! The protocol on every transport (PROTOCOL.md section 10: "the same client frames, the same server frames,
//! limits, close codes and drain"): each case below runs once per transport, against a real nats-server and
//! an in-process gateway, through [`TestClient`] (tests/common/transport.rs).

mod common;

use std::time::Duration;

use common::{
    transport::{TestClient, Transport},
    *,
};
use serde_json::{json, Value};
use telegraphy::node::auth;

/// Runs each case as one test per transport: `<module>::<case>`.
macro_rules! per_transport {
    (transports: [$($module:ident => $transport:ident),* $(,)?], cases: $cases:tt) => {
        $( per_transport!(@module $module $transport $cases); )*
    };
    (@module $module:ident $transport:ident [$($case:ident),* $(,)?]) => {
        mod $module {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case(super::Transport::$transport).await
                }
            )*
        }
    };
}

per_transport! {
    transports: [raw_ws => RawWs, sse => Sse, actix_ws => ActixWs],
    cases: [
        connect_and_ping,
        subscribe_and_receive_events,
        filters_narrow_what_arrives,
        since_recovers_missed_events,
        a_client_that_stops_reading_is_closed_with_4008,
        drain_closes_with_1012,
        revocation_closes_with_4003,
        presence_join_snapshot_stats_and_leave,
    ]
}

fn connect(token: &str) -> Value {
    json!({"type": "connect", "id": 1, "token": token})
}

async fn connect_and_ping(transport: Transport) {
    let nats = NatsServer::start();
    let app = transport.spawn(&nats.url(), |_| {}).await;
    let token = app.token("tester", &["a.>"]).await;
    let mut client = transport.open(&app, &[connect(&token), json!({"type": "ping", "id": 2})]).await;
    let connected = client.recv().await;
    assert_eq!((&connected["type"], &connected["id"]), (&json!("connected"), &json!(1)), "{connected}");
    assert_eq!(client.recv().await, json!({"type": "pong", "id": 2}));
    assert_eq!(client.request(json!({"type": "ping", "id": 3})).await, json!({"type": "pong", "id": 3}));
    // One connection on the node, whatever its transport.
    assert_eq!(app.gateway.connection_count(), 1);
}

async fn subscribe_and_receive_events(transport: Transport) {
    let nats = NatsServer::start();
    let app = transport.spawn(&nats.url(), |_| {}).await;
    let publisher = publisher(&nats.url()).await;
    let token = app.token("tester", &["shop.>"]).await;
    let subscribe = json!({"type": "subscribe", "id": 2, "event": "shop.order.>"});
    let mut client = transport.open(&app, &[connect(&token), subscribe]).await;
    assert_eq!(client.recv().await["type"], "connected");
    assert_eq!(client.recv().await["type"], "subscribed");

    publish(&publisher, "shop.order.created.42", r#"{"pk":42}"#).await;
    let event = client.next_event().await;
    assert_eq!(
        (&event["sub"], &event["name"], &event["data"]),
        (&json!("shop.order.>"), &json!("shop.order.created.42"), &json!({"pk": 42}))
    );

    // Subscribing after the opening frames works the same.
    client.subscribe("shop.marker").await;
    publish(&publisher, "shop.marker", "1").await;
    assert_eq!(client.next_event().await["name"], "shop.marker");
    let reply = client.request(json!({"type": "unsubscribe", "id": 3, "event": "shop.marker"})).await;
    assert_eq!(reply, json!({"type": "unsubscribed", "id": 3, "event": "shop.marker"}));
}

async fn filters_narrow_what_arrives(transport: Transport) {
    let nats = NatsServer::start();
    let app = transport.spawn(&nats.url(), |_| {}).await;
    let publisher = publisher(&nats.url()).await;
    let token = app.token("tester", &["shop.>"]).await;
    let mut client = transport.open(&app, &[connect(&token)]).await;
    assert_eq!(client.recv().await["type"], "connected");
    let reply = client
        .request(json!({"type": "subscribe", "id": 2, "event": "shop.order.>", "sub": "big",
                        "filter": {"total__gte": 100}, "exclude": {"status": "cancelled"}}))
        .await;
    assert_eq!((&reply["type"], &reply["sub"]), (&json!("subscribed"), &json!("big")), "{reply}");

    publish(&publisher, "shop.order.created.1", r#"{"total":50,"status":"new"}"#).await;
    publish(&publisher, "shop.order.created.2", r#"{"total":150,"status":"cancelled"}"#).await;
    publish(&publisher, "shop.order.created.3", r#"{"total":"150.5","status":"new"}"#).await;
    let event = client.next_event().await;
    assert_eq!((&event["sub"], &event["name"]), (&json!("big"), &json!("shop.order.created.3")), "{event}");
}

async fn since_recovers_missed_events(transport: Transport) {
    let nats = NatsServer::start();
    let app = transport.spawn(&nats.url(), |_| {}).await;
    let publisher = publisher(&nats.url()).await;
    let mut first = transport.open(&app, &[connect(&app.token("tester", &["h.>"]).await)]).await;
    assert_eq!(first.recv().await["type"], "connected");
    first.subscribe("h.>").await;
    publish(&publisher, "h.1", "1").await;
    let seen = first.next_event().await;
    let (epoch, seq) = (seen["epoch"].as_str().unwrap().to_string(), seen["seq"].as_u64().unwrap());
    drop(first);
    publish(&publisher, "h.2", "2").await;
    publish(&publisher, "h.3", "3").await;

    let since = json!({"type": "subscribe", "id": 2, "event": "h.>", "since": {"epoch": epoch, "seq": seq}});
    let mut again = transport.open(&app, &[connect(&app.token("tester", &["h.>"]).await), since]).await;
    assert_eq!(again.recv().await["type"], "connected");
    let reply = again.recv().await;
    assert_eq!((&reply["type"], &reply["recovered"]), (&json!("subscribed"), &json!(true)), "{reply}");
    assert_eq!(again.next_event().await["data"], 2);
    assert_eq!(again.next_event().await["data"], 3);
}

async fn a_client_that_stops_reading_is_closed_with_4008(transport: Transport) {
    let nats = NatsServer::start();
    let app = transport
        .spawn(&nats.url(), |s| {
            s.limits.outbound_queue = 8;
            s.limits.outbound_queue_bytes = 64 << 20;
        })
        .await;
    let publisher = publisher(&nats.url()).await;
    let subscribe = json!({"type": "subscribe", "id": 2, "event": "load.>"});
    let mut slow = transport.open(&app, &[connect(&app.token("tester", &["load.>"]).await), subscribe]).await;
    assert_eq!(slow.recv().await["type"], "connected");
    assert_eq!(slow.recv().await["type"], "subscribed");
    // The client reads nothing more: socket buffers fill, then its queue of 8 frames.
    let payload = format!(r#"{{"blob":"{}"}}"#, "x".repeat(60_000));
    let flood = async {
        for i in 0..2000 {
            publisher.publish(format!("telegraphy.load.{i}"), payload.clone().into()).await.unwrap();
            if i % 10 == 9 {
                publisher.flush().await.unwrap();
                if app.metric("telegraphy_slow_disconnects_total").await >= 1.0 {
                    return;
                }
            }
        }
        panic!("2000 events of 60 KB did not fill the client's queue");
    };
    tokio::time::timeout(Duration::from_secs(60), flood).await.expect("the slow client was closed within 60 s");
    assert_eq!(slow.expect_close().await, (4008, "too slow".to_string()));
    eventually("the slow connection left the node", || async { app.gateway.connection_count() == 0 }).await;
}

async fn drain_closes_with_1012(transport: Transport) {
    let nats = NatsServer::start();
    let mut app = transport.spawn(&nats.url(), |_| {}).await;
    let mut client = transport.open(&app, &[connect(&app.token("tester", &["d.>"]).await)]).await;
    assert_eq!(client.recv().await["type"], "connected");
    app.trigger_shutdown();
    assert_eq!(client.expect_close().await, (1012, "node restarting".to_string()));
    app.stopped_within(Duration::from_secs(12)).await;
}

async fn revocation_closes_with_4003(transport: Transport) {
    let nats = NatsServer::start();
    let app = transport.spawn(&nats.url(), |_| {}).await;
    let nc = publisher(&nats.url()).await;
    let mut mallory = transport.open(&app, &[connect(&app.token("mallory", &["r.>"]).await)]).await;
    let mut alice = transport.open(&app, &[connect(&app.token("alice", &["r.>"]).await)]).await;
    assert_eq!(mallory.recv().await["type"], "connected");
    assert_eq!(alice.recv().await["type"], "connected");
    auth::revoke(&nc, "telegraphy_revocations", &auth::user_key("mallory")).await.unwrap();
    assert_eq!(mallory.expect_close().await, (4003, "revoked".to_string()));
    assert_eq!(alice.request(json!({"type": "ping", "id": 5})).await, json!({"type": "pong", "id": 5}), "others stay");
}

/// The next `join` or `leave` frame (events and replies before it are skipped).
async fn presence_event(client: &mut TestClient) -> Value {
    loop {
        let frame = client.recv().await;
        if frame["type"] == "join" || frame["type"] == "leave" {
            return frame;
        }
    }
}

async fn presence_join_snapshot_stats_and_leave(transport: Transport) {
    let nats = NatsServer::start();
    let app = transport.spawn(&nats.url(), |s| s.presence.refresh_interval = 1).await;
    let lobby = json!({"type": "subscribe", "id": 2, "event": "chat.lobby", "presence": true});
    let mut alice = transport.open(&app, &[connect(&app.token("alice", &["chat.>"]).await), lobby.clone()]).await;
    assert_eq!(alice.recv().await["type"], "connected");
    assert_eq!(alice.recv().await["type"], "subscribed");
    let mut bob = transport.open(&app, &[connect(&app.token("bob", &["chat.>"]).await), lobby]).await;
    assert_eq!(bob.recv().await["type"], "connected");
    assert_eq!(bob.recv().await["type"], "subscribed");

    let join = presence_event(&mut alice).await;
    assert_eq!((&join["type"], &join["sub"], &join["user"]), (&json!("join"), &json!("chat.lobby"), &json!("bob")));
    let snapshot = bob.request(json!({"type": "presence", "id": 5, "event": "chat.lobby"})).await;
    let mut users: Vec<&str> =
        snapshot["clients"].as_array().unwrap().iter().map(|c| c["user"].as_str().unwrap()).collect();
    users.sort();
    assert_eq!(users, ["alice", "bob"], "{snapshot}");
    let stats = bob.request(json!({"type": "presence_stats", "id": 6, "event": "chat.lobby"})).await;
    assert_eq!((&stats["clients"], &stats["users"]), (&json!(2), &json!(2)), "{stats}");

    let reply = bob.request(json!({"type": "unsubscribe", "id": 7, "event": "chat.lobby"})).await;
    assert_eq!(reply["type"], "unsubscribed");
    let leave = presence_event(&mut alice).await;
    assert_eq!((&leave["type"], &leave["client"]), (&json!("leave"), &join["client"]), "{leave}");
}
