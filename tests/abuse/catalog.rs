//! Issue 21: the `events` frame. Its reply is the largest a client can ask for (up to `catalog.max_reply_bytes`,
//! 256 KiB), so a socket asking for it in a loop is stopped by the request rate limit (4029) or, not reading, by
//! its outbound byte budget (4008), while a neighbour on the same gateway keeps its events and its own catalog
//! replies. A bad `event` pattern is a bad frame (counted towards the close at `limits.max_bad_frames`).

use async_nats::jetstream::{self, kv};
use futures_util::SinkExt;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

use crate::common::*;

/// A catalog whose full listing is past 256 KiB: 300 entries of about 1.2 KB.
async fn big_catalog(nats: &str) {
    let js = jetstream::new(publisher(nats).await);
    let store = js
        .create_key_value(kv::Config { bucket: "telegraphy_catalog".into(), history: 1, ..Default::default() })
        .await
        .unwrap();
    for i in 0..300 {
        let name = format!("big.e{i:03}");
        let entry = json!({"format": 1, "name": name, "patterns": [name], "kind": "custom", "operations": [],
            "description": "d".repeat(1000), "data": {}, "presence": null, "version": 1, "owner": "go-big",
            "generation": 1});
        store.put(format!("go-big.{name}"), serde_json::to_vec(&entry).unwrap().into()).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_events_flood_is_closed_and_a_neighbour_is_still_served() {
    let nats = NatsServer::start();
    big_catalog(&nats.url()).await;
    let app = spawn_app(&nats.url()).await;
    let mut alice = app.client(&["big.>"]).await;
    // Alice's catalog is loaded (the node's first replay is done) and truncated at the bound.
    let deadline = tokio::time::Instant::now() + WAIT;
    let listed = loop {
        let reply = alice.request(json!({"type": "events", "id": 3})).await;
        if reply["type"] == "events" {
            break reply;
        }
        assert!(tokio::time::Instant::now() < deadline, "catalog never loaded: {reply}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_eq!(listed["truncated"], true);
    assert!(listed.to_string().len() <= 262_144);
    alice.subscribe("big.>").await;

    // Mallory asks for the whole catalog 400 times without reading an answer.
    let mut mallory = app.client(&[">"]).await;
    for _ in 0..400 {
        let frame = Message::text(json!({"type": "events", "id": 9}).to_string());
        if mallory.ws.feed(frame).await.is_err() {
            break;
        }
    }
    let _ = mallory.ws.flush().await;
    let code = mallory.expect_close().await;
    assert!(code == 4029 || code == 4008, "mallory closed with {code}");
    let stopped = app.metric("telegraphy_requests_rate_limited_total").await
        + app.metric("telegraphy_slow_disconnects_total").await;
    assert!(stopped >= 1.0, "counted as rate limited or too slow");

    // Alice is still served: events, and her own catalog reply.
    publish(&publisher(&nats.url()).await, "big.e001", r#"{"n":1}"#).await;
    assert_eq!(alice.next_event().await["name"], "big.e001");
    let again = alice.request(json!({"type": "events", "id": 4, "event": "big.e299"})).await;
    assert_eq!((again["events"][0]["name"].as_str(), &again["truncated"]), (Some("big.e299"), &json!(false)));

    // Bad patterns are bad frames: the 10th closes the socket with 1008.
    let mut eve = app.client(&[">"]).await;
    for i in 0..9 {
        let reply = eve.request(json!({"type": "events", "id": i, "event": "a..b"})).await;
        assert_eq!(reply["code"], "bad_request", "{reply}");
    }
    eve.send(json!({"type": "events", "id": 10, "event": "a.>.b"})).await;
    assert_eq!(eve.expect_close().await, 1008);
}
