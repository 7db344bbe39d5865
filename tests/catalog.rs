//! The event catalog (proto/PROTOCOL.md section 12) against a real nats-server and real gateways: entries put
//! in the KV bucket by a plain KV client (as a publisher in any language would) are listed by the `events`
//! frame, filtered by the token's grant and narrowed by `event`; garbage values are skipped and counted; a
//! delete removes an entry on every replica; strict mode refuses a subscription that can match no entry
//! (`unknown_event`, the socket stays usable) while open mode does not; the reply is bounded.

mod common;

use std::time::Duration;

use async_nats::jetstream::{self, kv};
use common::*;
use serde_json::{json, Value};

const BUCKET: &str = "telegraphy_catalog";

async fn bucket(nats: &str) -> kv::Store {
    let js = jetstream::new(publisher(nats).await);
    js.create_key_value(kv::Config { bucket: BUCKET.into(), history: 1, ..Default::default() })
        .await
        .expect("create the catalog bucket")
}

/// A format-1 custom entry of `owner` for template `name`.
fn entry(owner: &str, name: &str, patterns: &[&str], description: &str) -> Value {
    json!({"format": 1, "name": name, "patterns": patterns, "kind": "custom", "operations": [],
           "description": description, "data": {"type": "object"}, "presence": null, "version": 1,
           "owner": owner, "generation": 7})
}

async fn put(store: &kv::Store, key: &str, value: &Value) {
    store.put(key, serde_json::to_vec(value).unwrap().into()).await.expect("kv put");
}

/// The order entry and the chat entry of the vectors, put as raw KV values.
async fn put_shop_and_chat(store: &kv::Store) {
    let order = json!({"format": 1, "name": "shop.order.{action}.{key}",
        "patterns": ["shop.order.created.*", "shop.order.updated.*"], "kind": "model",
        "operations": ["create", "update"], "description": "An order.", "data": {"type": "object"},
        "presence": null, "version": 1, "owner": "django-shop", "generation": 100});
    put(store, "django-shop.shop.order.=.=", &order).await;
    put(store, "go-chat.chat.=.message", &entry("go-chat", "chat.{room}.message", &["chat.*.message"], "")).await;
}

/// Sends `events` (with `event` when given) until the node's catalog is loaded and `done` holds for the reply
/// (bounded; one request per 100 ms, well inside the request rate limit); returns that reply.
async fn events_until(client: &mut WsClient, event: Option<&str>, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut frame = json!({"type": "events", "id": 9});
    if let Some(event) = event {
        frame["event"] = json!(event);
    }
    loop {
        let reply = client.request(frame.clone()).await;
        let loading = reply["type"] == "error" && reply["code"] == "internal";
        if !loading {
            assert_eq!((&reply["type"], &reply["id"]), (&json!("events"), &json!(9)), "{reply}");
            if done(&reply) {
                return reply;
            }
        }
        assert!(tokio::time::Instant::now() < deadline, "events never satisfied the test: {reply}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn names(reply: &Value) -> Vec<&str> {
    reply["events"].as_array().expect("events list").iter().map(|e| e["name"].as_str().unwrap()).collect()
}

async fn listed(client: &mut WsClient, event: Option<&str>, want: &[&str]) -> Value {
    events_until(client, event, |r| names(r) == want).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_kv_entries_are_listed_within_the_grant() {
    let nats = NatsServer::start();
    let store = bucket(&nats.url()).await;
    put_shop_and_chat(&store).await;
    let app = spawn_app(&nats.url()).await;

    let mut all = app.client(&[">"]).await;
    let reply = listed(&mut all, None, &["shop.order.{action}.{key}", "chat.{room}.message"]).await;
    assert_eq!((&reply["mode"], &reply["truncated"]), (&json!("open"), &json!(false)), "{reply}");
    // The listed form: the stored value without format, owner and generation.
    let order = &reply["events"][0];
    assert_eq!(order["patterns"], json!(["shop.order.created.*", "shop.order.updated.*"]));
    assert_eq!((&order["kind"], &order["version"]), (&json!("model"), &json!(1)));
    assert!(order.get("owner").is_none() && order.get("generation").is_none() && order.get("format").is_none());
    // Keys in ascending byte order: django-shop.* before go-chat.*.
    assert_eq!(names(&reply), ["shop.order.{action}.{key}", "chat.{room}.message"]);
    listed(&mut all, Some("chat.>"), &["chat.{room}.message"]).await;

    // A token sees only what it may subscribe to.
    let mut shop = app.client(&["shop.>"]).await;
    listed(&mut shop, None, &["shop.order.{action}.{key}"]).await;
    // Narrowing cannot widen the grant.
    listed(&mut shop, Some("chat.>"), &[]).await;
    let mut room = app.client(&["chat.lobby.message", "news.>"]).await;
    listed(&mut room, None, &["chat.{room}.message"]).await;
    let mut deleted_only = app.client(&["shop.order.deleted.*"]).await;
    listed(&mut deleted_only, None, &[]).await;

    // A bad `event` is a bad request; the socket stays usable.
    let bad = all.request(json!({"type": "events", "id": 3, "event": "a..b"})).await;
    assert_eq!((&bad["type"], &bad["code"], &bad["id"]), (&json!("error"), &json!("bad_request"), &json!(3)));
    let no_id = all.request(json!({"type": "events"})).await;
    assert!(no_id.get("id").is_none() && no_id["type"] == "events", "{no_id}");

    // Before `connect`: not_connected.
    let mut early = WsClient::connect(&app.ws_url()).await;
    let reply = early.request(json!({"type": "events", "id": 1})).await;
    assert_eq!((&reply["code"], &reply["id"]), (&json!("not_connected"), &json!(1)), "{reply}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_entries_are_skipped_and_counted() {
    let nats = NatsServer::start();
    let store = bucket(&nats.url()).await;
    let huge = entry("go-x", "huge", &["huge"], &"x".repeat(70_000));
    put(&store, "go-x.huge", &huge).await;
    store.put("go-x.notjson", "not json".into()).await.unwrap();
    put(&store, "go-x.wrong", &entry("go-x", "right", &["right"], "")).await;
    put(&store, "go-x.bad", &entry("go-x", "bad", &["bad.>.x"], "")).await;
    put(&store, "go-x.future", &json!({"format": 2, "owner": "go-x", "anything": true})).await;
    put(&store, "go-x.ok", &entry("go-x", "ok", &["ok"], "")).await;
    let app = spawn_app(&nats.url()).await;
    let mut client = app.client(&[">"]).await;
    listed(&mut client, None, &["ok"]).await;
    for (reason, count) in [("too_big", 1.0), ("not_json", 1.0), ("key_mismatch", 1.0), ("invalid", 1.0)] {
        let series = format!("telegraphy_catalog_invalid_total{{reason=\"{reason}\"}}");
        assert_eq!(app.metric(&series).await, count, "{series}");
    }
    assert_eq!(app.metric("telegraphy_catalog_entries").await, 1.0);

    // A valid entry later replaced by garbage is gone (the stored value is what counts).
    store.put("go-x.ok", "[1,2]".into()).await.unwrap();
    listed(&mut client, None, &[]).await;
    assert_eq!(app.metric("telegraphy_catalog_invalid_total{reason=\"not_json\"}").await, 2.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletes_and_puts_reach_every_replica() {
    let nats = NatsServer::start();
    let store = bucket(&nats.url()).await;
    put_shop_and_chat(&store).await;
    let (a, b) = (spawn_app(&nats.url()).await, spawn_app(&nats.url()).await);
    let (mut on_a, mut on_b) = (a.client(&[">"]).await, b.client(&[">"]).await);
    for client in [&mut on_a, &mut on_b] {
        listed(client, None, &["shop.order.{action}.{key}", "chat.{room}.message"]).await;
    }
    store.delete("go-chat.chat.=.message").await.unwrap();
    put(&store, "go-news.news.=", &entry("go-news", "news.{topic}", &["news.*"], "News.")).await;
    for client in [&mut on_a, &mut on_b] {
        listed(client, None, &["shop.order.{action}.{key}", "news.{topic}"]).await;
    }
    store.purge("go-news.news.=").await.unwrap();
    for client in [&mut on_a, &mut on_b] {
        listed(client, None, &["shop.order.{action}.{key}"]).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_mode_refuses_unknown_patterns_and_open_mode_does_not() {
    let nats = NatsServer::start();
    let store = bucket(&nats.url()).await;
    put_shop_and_chat(&store).await;
    let strict = spawn_app_with(&nats.url(), |s| s.catalog.mode = "strict".into()).await;
    let open = spawn_app(&nats.url()).await;

    let mut client = strict.client(&["shop.>", "chat.>", "news.>"]).await;
    let reply = listed(&mut client, None, &["shop.order.{action}.{key}", "chat.{room}.message"]).await;
    assert_eq!(reply["mode"], "strict");
    assert_eq!(client.subscribe("shop.order.>").await["type"], "subscribed");
    assert_eq!(client.subscribe("chat.lobby.message").await["type"], "subscribed");
    for unknown in ["shop.order.deleted.*", "shop.ordr.>", "news.>"] {
        let refused = client.request(json!({"type": "subscribe", "id": 4, "event": unknown})).await;
        assert_eq!(
            refused,
            json!({"type": "error", "id": 4, "code": "unknown_event",
                   "message": "no catalogued event matches this pattern"}),
            "{unknown}"
        );
    }
    // Permission is checked before the catalog.
    let forbidden = client.request(json!({"type": "subscribe", "id": 5, "event": "other.thing"})).await;
    assert_eq!(forbidden["code"], "forbidden", "{forbidden}");
    // Not a bad frame: the socket stays open and serves the subscriptions it has.
    let pong = client.request(json!({"type": "ping", "id": 6})).await;
    assert_eq!(pong["type"], "pong");
    let publisher = publisher(&nats.url()).await;
    publish(&publisher, "shop.order.created.42", r#"{"pk":42}"#).await;
    assert_eq!(client.next_event().await["name"], "shop.order.created.42");

    // A deploy registers news.{topic}: the retry is subscribed.
    put(&store, "go-news.news.=", &entry("go-news", "news.{topic}", &["news.*"], "")).await;
    events_until(&mut client, Some("news.>"), |r| names(r) == ["news.{topic}"]).await;
    assert_eq!(client.subscribe("news.>").await["type"], "subscribed");
    assert!(strict.metric("telegraphy_catalog_unknown_event_total").await >= 3.0);

    // Open mode: the same unknown pattern is subscribed.
    let mut relaxed = open.client(&["shop.>"]).await;
    assert_eq!(relaxed.subscribe("shop.ordr.>").await["type"], "subscribed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_bucket_is_an_empty_catalog_until_a_writer_creates_it() {
    let nats = NatsServer::start();
    let strict = spawn_app_with(&nats.url(), |s| s.catalog.mode = "strict".into()).await;
    let off = spawn_app_with(&nats.url(), |s| s.catalog.mode = "off".into()).await;
    let mut client = strict.client(&[">"]).await;
    listed(&mut client, None, &[]).await;
    let refused = client.request(json!({"type": "subscribe", "id": 2, "event": "chat.>"})).await;
    assert_eq!(refused["code"], "unknown_event", "{refused}");

    let store = bucket(&nats.url()).await;
    put_shop_and_chat(&store).await;
    // Looked for again with a backoff of at most 5 s.
    listed(&mut client, None, &["shop.order.{action}.{key}", "chat.{room}.message"]).await;
    assert_eq!(client.subscribe("chat.>").await["type"], "subscribed");

    // Off: no watch, an empty list, nothing refused.
    let mut unlisted = off.client(&[">"]).await;
    let reply = unlisted.request(json!({"type": "events", "id": 9})).await;
    assert_eq!(reply, json!({"type": "events", "id": 9, "mode": "off", "events": [], "truncated": false}));
    assert_eq!(unlisted.subscribe("anything.>").await["type"], "subscribed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reply_is_bounded_and_says_truncated() {
    let nats = NatsServer::start();
    let store = bucket(&nats.url()).await;
    for i in 0..30 {
        let name = format!("big.e{i:02}");
        put(&store, &format!("go-big.{name}"), &entry("go-big", &name, &[&name], &"d".repeat(4000))).await;
    }
    let max = 65_536 + 256;
    let app = spawn_app_with(&nats.url(), |s| s.catalog.max_reply_bytes = max).await;
    let mut client = app.client(&["big.>"]).await;
    let full = events_until(&mut client, None, |r| r["truncated"] == true).await;
    let count = names(&full).len();
    assert!((10..30).contains(&count), "{count} entries listed");
    assert!(full.to_string().len() <= max, "frame of {} bytes", full.to_string().len());
    assert_eq!(names(&full)[0], "big.e00", "in key order");
    // Narrowing gets the rest.
    let narrowed = client.request(json!({"type": "events", "id": 9, "event": "big.e29"})).await;
    assert_eq!((names(&narrowed), &narrowed["truncated"]), (vec!["big.e29"], &json!(false)));
}

/// Sends `subscribe` to `pattern` and returns the reply's `type`, or its error `code`.
async fn subscribe_outcome(client: &mut WsClient, pattern: &str) -> String {
    let reply = client.request(json!({"type": "subscribe", "id": 7, "event": pattern})).await;
    match reply["type"].as_str() {
        Some("error") => reply["code"].as_str().unwrap_or_default().to_string(),
        other => other.unwrap_or_default().to_string(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_mode_follows_deletes_and_skipped_entries_come_back_when_there_is_room() {
    let nats = NatsServer::start();
    let store = bucket(&nats.url()).await;
    let custom = |name: &str| entry("go-x", name, &[name], "");
    for name in ["a.one", "b.two", "c.three"] {
        put(&store, &format!("go-x.{name}"), &custom(name)).await;
    }
    let app = spawn_app_with(&nats.url(), |s| {
        s.catalog.mode = "strict".into();
        s.catalog.max_entries = 2;
    })
    .await;
    let mut client = app.client(&[">"]).await;
    // The replay keeps the first two in the bucket's order; the third is skipped and counted.
    listed(&mut client, None, &["a.one", "b.two"]).await;
    assert_eq!(subscribe_outcome(&mut client, "c.>").await, "unknown_event");
    assert!(app.metric(r#"telegraphy_catalog_invalid_total{reason="max_entries"}"#).await >= 1.0);

    // A delete leaves room: the skipped entry comes back, and the deleted one's pattern is refused again.
    store.delete("go-x.a.one").await.unwrap();
    listed(&mut client, None, &["b.two", "c.three"]).await;
    assert_eq!(subscribe_outcome(&mut client, "c.>").await, "subscribed");
    assert_eq!(subscribe_outcome(&mut client, "a.one").await, "unknown_event");
    assert_eq!(subscribe_outcome(&mut client, "*.two").await, "subscribed");

    // Live: a put while full is skipped; a purge leaves room and it comes back.
    put(&store, "go-x.d.four", &custom("d.four")).await;
    put(&store, "go-x.b.two", &custom("b.two")).await; // a replacement is not a new entry: still stored
    events_until(&mut client, None, |_| true).await;
    assert_eq!(subscribe_outcome(&mut client, "d.*").await, "unknown_event");
    store.purge("go-x.c.three").await.unwrap();
    listed(&mut client, None, &["b.two", "d.four"]).await;
    assert_eq!(subscribe_outcome(&mut client, "d.*").await, "subscribed");
    assert_eq!(subscribe_outcome(&mut client, "c.three").await, "unknown_event");
}
