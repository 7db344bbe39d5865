//! Named subscriptions and server-side filters end to end (proto/PROTOCOL.md section 8).

mod common;

use common::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_narrow_delivery_and_frames_carry_the_subscription_name() {
    let nats = NatsServer::start();
    let app = spawn_app(&nats.url()).await;
    let publisher = publisher(&nats.url()).await;
    let mut client = app.client(&["shop.>"]).await;
    let reply = client.request(
        json!({"type":"subscribe","id":1,"event":"shop.order.>","sub":"big","filter":{"total__gte":100},"exclude":{"status":"cancelled"}}),
    )
    .await;
    assert_eq!((reply["type"].as_str(), reply["sub"].as_str()), (Some("subscribed"), Some("big")), "{reply}");
    let reply = client
        .request(json!({"type":"subscribe","id":2,"event":"shop.order.>","sub":"mine","filter":{"customer__id":7}}))
        .await;
    assert_eq!(reply["sub"], "mine");
    app.flush().await;

    for (i, data) in [
        r#"{"pk":1,"total":"120.00","status":"paid","customer":{"id":3}}"#, // big only
        r#"{"pk":2,"total":"99.99","status":"paid","customer":{"id":7}}"#,  // mine only
        r#"{"pk":3,"total":"150","status":"cancelled","customer":{"id":7}}"#, // mine only (big excludes cancelled)
        r#"{"pk":4,"total":"5","status":"paid","customer":{"id":1}}"#,      // nobody
        r#"{"pk":5,"total":100,"status":"paid","customer":{"id":7}}"#,      // both
    ]
    .into_iter()
    .enumerate()
    {
        publish(&publisher, &format!("shop.order.created.{}", i + 1), data).await;
    }
    publish(&publisher, "shop.order.marker.0", r#"{"total":1000,"customer":{"id":7}}"#).await; // both: end marker
    let mut big = Vec::new();
    let mut mine = Vec::new();
    while big.last() != Some(&0) || mine.last() != Some(&0) {
        let event = client.next_event().await;
        let pk = event["data"]["pk"].as_i64().unwrap_or(0);
        match event["sub"].as_str() {
            Some("big") => big.push(pk),
            Some("mine") => mine.push(pk),
            other => panic!("unexpected sub {other:?}"),
        }
    }
    assert_eq!(big, [1, 5, 0]);
    assert_eq!(mine, [2, 3, 5, 0]);

    // Unsubscribing one name leaves the other.
    client.send(json!({"type":"unsubscribe","id":3,"sub":"big"})).await;
    assert_eq!(client.recv().await, json!({"type":"unsubscribed","id":3,"event":"shop.order.>","sub":"big"}));
    publish(&publisher, "shop.order.created.9", r#"{"pk":9,"total":500,"customer":{"id":7}}"#).await;
    let event = client.next_event().await;
    assert_eq!((event["sub"].as_str(), event["data"]["pk"].as_i64()), (Some("mine"), Some(9)));
    assert_eq!(app.gateway.node_subscriptions().await, 1, "one NATS subscription for the pattern");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resubscribing_a_name_replaces_its_filter_and_bad_filters_are_refused() {
    let nats = NatsServer::start();
    let app = spawn_app(&nats.url()).await;
    let publisher = publisher(&nats.url()).await;
    let mut client = app.client(&["t.>"]).await;
    client.request(json!({"type":"subscribe","event":"t.>","sub":"s","filter":{"n":1}})).await;
    client.request(json!({"type":"subscribe","event":"t.>","sub":"s","filter":{"n":2}})).await;
    assert_eq!(app.metric("telegraphy_subscriptions").await, 1.0, "replaced, not added");
    app.flush().await;
    publish(&publisher, "t.a", r#"{"n":1}"#).await;
    publish(&publisher, "t.b", r#"{"n":2}"#).await;
    assert_eq!(client.next_event().await["name"], "t.b");

    for (bad, why) in [
        (json!({"n__":1}), "empty lookup part"),
        (json!({"n__in":1}), "in needs a list"),
        (json!({"n__range":[1]}), "range needs two values"),
        (json!({"n__isnull":"yes"}), "isnull needs a boolean"),
        (json!({"s__regex":"("}), "bad regex"),
    ] {
        let reply = client.request(json!({"type":"subscribe","id":8,"event":"t.>","sub":"x","filter":bad})).await;
        assert_eq!(
            (reply["type"].as_str(), reply["code"].as_str()),
            (Some("error"), Some("bad_request")),
            "{why}: {reply}"
        );
    }
    // Filters only narrow: a pattern outside the token stays forbidden.
    let reply = client.request(json!({"type":"subscribe","id":9,"event":"other.>","filter":{"n":1}})).await;
    assert_eq!(reply["code"], "forbidden");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovery_replays_only_events_passing_the_filter() {
    let nats = NatsServer::start();
    let app = spawn_app(&nats.url()).await;
    let publisher = publisher(&nats.url()).await;
    let mut client = app.client(&["r.>"]).await;
    let reply =
        client.request(json!({"type":"subscribe","id":1,"event":"r.>","sub":"odd","filter":{"n__in":[1,3,5,7]}})).await;
    let (epoch, seq) = (reply["epoch"].as_str().unwrap().to_string(), reply["seq"].as_u64().unwrap());
    client.close().await;
    for n in 0..8 {
        publish(&publisher, &format!("r.{n}"), &format!(r#"{{"n":{n}}}"#)).await;
    }
    let mut client = app.client(&["r.>"]).await;
    let reply = client.request(
        json!({"type":"subscribe","id":2,"event":"r.>","sub":"odd","filter":{"n__in":[1,3,5,7]},"since":{"epoch":epoch,"seq":seq}}),
    )
    .await;
    assert_eq!(reply["recovered"], true, "{reply}");
    let mut got = Vec::new();
    for _ in 0..4 {
        let event = client.next_event().await;
        assert_eq!(event["sub"], "odd");
        got.push(event["data"]["n"].as_i64().unwrap());
    }
    assert_eq!(got, [1, 3, 5, 7]);
}

/// 1000 subscriptions over 50 distinct filters on one pattern: 200 connections x 5 named subscriptions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_subscribers_over_fifty_filters_each_get_exactly_their_events() {
    const CONNECTIONS: usize = 200;
    const PER_CONNECTION: usize = 5;
    const FILTERS: usize = 50;
    const EVENTS: usize = 200;
    let nats = NatsServer::start();
    // Every client is the harness's one user: allow it this many sockets (limits.max_connections_per_user).
    let app = spawn_app_with(&nats.url(), |s| s.limits.max_connections_per_user = CONNECTIONS).await;
    let publisher = publisher(&nats.url()).await;
    let mut clients = Vec::new();
    for c in 0..CONNECTIONS {
        let mut client = app.client(&["load.>"]).await;
        for j in 0..PER_CONNECTION {
            let k = (c * PER_CONNECTION + j) % FILTERS;
            let reply = client
                .request(json!({"type":"subscribe","event":"load.>","sub":format!("f{k}"),"filter":{"bucket":k}}))
                .await;
            assert_eq!(reply["type"], "subscribed");
        }
        clients.push(client);
    }
    assert_eq!(app.metric("telegraphy_subscriptions").await, (CONNECTIONS * PER_CONNECTION) as f64);
    assert_eq!(app.gateway.node_subscriptions().await, 1);
    app.flush().await;
    for i in 0..EVENTS {
        publisher
            .publish(format!("telegraphy.load.{i}"), format!(r#"{{"bucket":{},"i":{i}}}"#, i % FILTERS).into())
            .await
            .unwrap();
    }
    publisher.flush().await.unwrap();
    let per_filter = EVENTS / FILTERS;
    let readers: Vec<_> = clients
        .into_iter()
        .map(|mut client| {
            tokio::spawn(async move {
                let mut got = Vec::new();
                for _ in 0..PER_CONNECTION * per_filter {
                    let event = client.next_event().await;
                    let k: usize = event["sub"].as_str().unwrap()[1..].parse().unwrap();
                    assert_eq!(event["data"]["bucket"].as_u64(), Some(k as u64), "only events of its filter");
                    got.push(event["data"]["i"].as_u64().unwrap());
                }
                got.len()
            })
        })
        .collect();
    let mut total = 0;
    for reader in readers {
        total += reader.await.unwrap();
    }
    assert_eq!(total, CONNECTIONS * PER_CONNECTION * per_filter);
    assert_eq!(app.metric("telegraphy_frames_out_total").await, total as f64, "no frame beyond the filters");
}

/// `subscribed` means the node's interest is in place on its NATS server: an event published the moment the
/// client reads `subscribed` (no flush, no pause) is delivered, for many fresh patterns in a row, with and
/// without history (issue 11 part 7: without history, `subscribed` used to be queued before the node's SUB
/// was even sent, and under CPU load the event was sometimes lost).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_published_right_after_subscribed_is_delivered() {
    let nats = NatsServer::start();
    let publisher = publisher(&nats.url()).await;
    for history in [false, true] {
        let app = spawn_app_with(&nats.url(), |s| {
            s.history.enabled = history;
            s.limits.requests_per_second = 10_000; // 300 requests as fast as they are answered
        })
        .await;
        let mut client = app.client(&["fresh.>"]).await;
        let rounds = 150;
        let mut lost = Vec::new();
        for i in 0..rounds {
            let pattern = format!("fresh.h{}.p{i}", u8::from(history));
            client.subscribe(&pattern).await;
            publish(&publisher, &pattern, &i.to_string()).await;
            match tokio::time::timeout(std::time::Duration::from_secs(3), client.recv()).await {
                Ok(frame) => {
                    assert_eq!((&frame["type"], &frame["name"]), (&json!("event"), &json!(pattern)), "{frame}")
                }
                Err(_) => lost.push(pattern.clone()),
            }
            let reply = client.request(json!({"type":"unsubscribe","id":9,"event":pattern})).await;
            assert_eq!(reply["type"], "unsubscribed", "{reply}");
        }
        println!("history={history}: {} of {rounds} events published right after `subscribed` lost", lost.len());
        assert!(lost.is_empty(), "history={history}: lost {lost:?}");
    }
}
