//! History and recovery (proto/PROTOCOL.md section 7) against a real nats-server with JetStream.

mod common;

use common::*;
use serde_json::{json, Value};

fn position(v: &Value) -> (String, u64) {
    (v["epoch"].as_str().expect("epoch").to_string(), v["seq"].as_u64().expect("seq"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missed_events_are_replayed_on_another_replica_then_live_follows() {
    let nats = NatsServer::start();
    let gw1 = spawn_app(&nats.url()).await;
    let gw2 = spawn_app_with(&nats.url(), |s| s.node.name = "gw-2".into()).await;
    let publisher = publisher(&nats.url()).await;

    let mut client = gw1.client(&["h.>"]).await;
    let subscribed = client.subscribe("h.a.>").await;
    let (epoch, start) = position(&subscribed);
    gw1.flush().await;
    publish(&publisher, "h.a.1", "1").await;
    let first = client.next_event().await;
    assert_eq!(first["epoch"], epoch.as_str());
    let seen = first["seq"].as_u64().unwrap();
    assert!(seen > start, "live seq {seen} after the subscribe position {start}");
    client.close().await;

    // While the client is away: 3 matching events and noise that must not be replayed.
    for (event, data) in [("h.a.2", "2"), ("h.b.x", "0"), ("h.a.3", "3"), ("other.z", "0"), ("h.a.4", "4")] {
        publish(&publisher, event, data).await;
    }

    let mut client = gw2.client(&["h.>"]).await;
    let reply = client.subscribe_since("h.a.>", &epoch, seen).await;
    assert_eq!(reply["recovered"], true, "{reply}");
    let mut got = Vec::new();
    for _ in 0..3 {
        let e = client.next_event().await;
        got.push((e["name"].as_str().unwrap().to_string(), e["data"].as_i64().unwrap(), e["seq"].as_u64().unwrap()));
    }
    assert_eq!(got.iter().map(|g| g.1).collect::<Vec<_>>(), [2, 3, 4], "missed events in order: {got:?}");
    assert!(got.windows(2).all(|w| w[0].2 < w[1].2));
    gw2.flush().await;
    publish(&publisher, "h.a.5", "5").await;
    let live = client.next_event().await;
    assert_eq!((live["data"].as_i64(), live["sub"].as_str()), (Some(5), Some("h.a.>")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovery_while_events_keep_flowing_has_no_gap_and_no_duplicate() {
    let nats = NatsServer::start();
    let gw1 = spawn_app(&nats.url()).await;
    let gw2 = spawn_app_with(&nats.url(), |s| s.node.name = "gw-2".into()).await;
    let publisher = publisher(&nats.url()).await;
    const N: i64 = 400;

    let mut client = gw1.client(&["flow.>"]).await;
    let (epoch, _) = position(&client.subscribe("flow.>").await);
    gw1.flush().await;
    let producer = tokio::spawn(async move {
        for i in 0..N {
            publisher.publish(format!("telegraphy.flow.{}", i % 7), i.to_string().into()).await.unwrap();
            if i % 20 == 0 {
                publisher.flush().await.unwrap(); // keep the flow spread over time
            }
        }
        publisher.flush().await.unwrap();
    });

    let mut received = Vec::new();
    let mut last_seq = 0;
    while received.len() < 60 {
        let e = client.next_event().await;
        last_seq = e["seq"].as_u64().unwrap();
        received.push(e["data"].as_i64().unwrap());
    }
    drop(client); // the socket dies mid-flow

    let mut client = gw2.client(&["flow.>"]).await;
    let reply = client.subscribe_since("flow.>", &epoch, last_seq).await;
    assert_eq!(reply["recovered"], true, "{reply}");
    while received.len() < N as usize {
        let e = client.next_event().await;
        let seq = e["seq"].as_u64().unwrap();
        assert!(seq > last_seq, "sequence went back: {seq} after {last_seq}");
        last_seq = seq;
        received.push(e["data"].as_i64().unwrap());
    }
    producer.await.unwrap();
    assert_eq!(received, (0..N).collect::<Vec<_>>(), "every event exactly once, in order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aged_out_history_answers_recovered_false_with_the_current_position() {
    let nats = NatsServer::start();
    let app = spawn_app_with(&nats.url(), |s| s.history.max_msgs = 5).await;
    let publisher = publisher(&nats.url()).await;
    let mut client = app.client(&["old.>"]).await;
    let (epoch, start) = position(&client.subscribe("old.>").await);
    for i in 0..20 {
        publish(&publisher, &format!("old.{i}"), &i.to_string()).await;
    }
    let mut fresh = app.client(&["old.>"]).await;
    let reply = fresh.subscribe_since("old.>", &epoch, start).await;
    assert_eq!(reply["recovered"], false, "{reply}");
    assert_eq!(position(&reply), (epoch, start + 20), "current position to continue from");
    app.flush().await;
    publish(&publisher, "old.live", "99").await;
    assert_eq!(fresh.next_event().await["data"], 99, "live delivery continues after recovered:false");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_epoch_or_too_much_missed_is_not_recovered() {
    let nats = NatsServer::start();
    let app = spawn_app_with(&nats.url(), |s| s.history.max_replay = 3).await;
    let publisher = publisher(&nats.url()).await;
    let mut client = app.client(&["m.>"]).await;
    let (epoch, start) = position(&client.subscribe("m.>").await);
    for i in 0..5 {
        publish(&publisher, &format!("m.{i}"), "{}").await;
    }
    let mut stranger = app.client(&["m.>"]).await;
    let reply = stranger.subscribe_since("m.x", "not-the-epoch", 1).await;
    assert_eq!(reply["recovered"], false, "{reply}");
    let mut other = app.client(&["m.>"]).await;
    let reply = other.subscribe_since("m.>", &epoch, start).await;
    assert_eq!(reply["recovered"], false, "5 missed > max_replay 3: {reply}");
    let mut ok = app.client(&["m.>"]).await;
    let reply = ok.subscribe_since("m.>", &epoch, start + 2).await;
    assert_eq!(reply["recovered"], true, "3 missed fit: {reply}");
    for i in 2..5 {
        assert_eq!(ok.next_event().await["name"], format!("m.{i}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_history_frames_have_no_position_and_since_is_not_recovered() {
    let nats = NatsServer::start();
    let app = spawn_app_with(&nats.url(), |s| s.history.enabled = false).await;
    let publisher = publisher(&nats.url()).await;
    let mut client = app.client(&["n.>"]).await;
    let reply = client.subscribe("n.>").await;
    assert_eq!(reply, json!({"type":"subscribed","id":2,"event":"n.>"}));
    app.flush().await;
    publish(&publisher, "n.1", "1").await;
    assert_eq!(
        client.next_event().await,
        json!({"type":"event","sub":"n.>","name":"n.1","data":1}),
        "no seq/epoch without history"
    );
    let reply = client.subscribe_since("n.x", "e", 1).await;
    assert_eq!(reply["recovered"], false);
}

/// Reads frames until `done` says so (bounded by `limit`); returns them all (events and positions).
async fn frames_until(
    client: &mut WsClient,
    limit: std::time::Duration,
    mut done: impl FnMut(&[Value]) -> bool,
) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + limit;
    let mut frames = Vec::new();
    while !done(&frames) {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        assert!(!left.is_zero(), "gave up after {limit:?}; got {} frames, last {:?}", frames.len(), frames.last());
        frames.push(client.recv_or_close(left).await.expect("socket stays open"));
    }
    frames
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_subscription_gets_positions_and_stays_recoverable() {
    let nats = NatsServer::start();
    // The stream keeps 20 events: 50 others push a quiet subscription's own position out of it.
    let app = spawn_app_with(&nats.url(), |s| {
        s.history.max_msgs = 20;
        s.history.position_interval = 1;
    })
    .await;
    let publisher = publisher(&nats.url()).await;
    let mut client = app.client(&["quiet.>", "busy.>"]).await;
    let (epoch, start) = position(&client.subscribe("quiet.>").await);
    for i in 0..50 {
        publish(&publisher, "busy.x", &i.to_string()).await;
    }
    let last = start + 50;
    let frames = frames_until(&mut client, WAIT * 2, |f| f.last().is_some_and(|v| v["seq"] == last)).await;
    for frame in &frames {
        assert_eq!(
            (&frame["type"], &frame["sub"], &frame["epoch"]),
            (&json!("position"), &json!("quiet.>"), &json!(epoch))
        );
    }
    assert!(app.metric("telegraphy_position_frames_total").await >= 1.0);

    let mut old = app.client(&["quiet.>"]).await;
    assert_eq!(old.subscribe_since("quiet.>", &epoch, start).await["recovered"], false, "the old position aged out");
    let mut moved = app.client(&["quiet.>"]).await;
    let reply = moved.subscribe_since("quiet.>", &epoch, last).await;
    assert_eq!(reply["recovered"], true, "the position frame's position recovers: {reply}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_position_never_passes_an_event_not_yet_sent() {
    let nats = NatsServer::start();
    let app = spawn_app_with(&nats.url(), |s| {
        s.history.position_interval = 1;
        s.limits.outbound_queue = 50_000; // the test reads as fast as it can; never the slow-client limit
        s.limits.outbound_queue_bytes = 64 << 20;
    })
    .await;
    let mut client = app.client(&["mix.>"]).await;
    let (_, start) = position(&client.subscribe("mix.a").await);
    app.flush().await;
    // ~10k events/s for 3 s, every other one matching: position ticks come while matching events are stored
    // but not yet handled by the gateway (a position then must wait for them).
    const N: u64 = 30_000;
    let nc = publisher(&nats.url()).await;
    let producer = tokio::spawn(async move {
        let mut pace = tokio::time::interval(std::time::Duration::from_millis(2));
        for i in 0..N {
            if i % 20 == 0 {
                nc.flush().await.unwrap();
                pace.tick().await;
            }
            let name = if i % 2 == 0 { "mix.a" } else { "mix.b" };
            nc.publish(format!("telegraphy.{name}"), i.to_string().into()).await.unwrap();
        }
        nc.flush().await.unwrap();
    });
    let last = start + N;
    let frames =
        frames_until(&mut client, WAIT * 3, |f| f.last().is_some_and(|v| v["type"] == "position" && v["seq"] == last))
            .await;
    producer.await.unwrap();

    let seqs = |kind: &str| -> Vec<(usize, u64)> {
        let frames = frames.iter().enumerate().filter(|(_, f)| f["type"] == kind);
        frames.map(|(i, f)| (i, f["seq"].as_u64().unwrap())).collect()
    };
    let events = seqs("event");
    assert_eq!(events.len() as u64, N / 2, "every matching event arrived once");
    assert!(events.windows(2).all(|w| w[0].1 < w[1].1), "in order");
    let positions = seqs("position");
    for &(at, seq) in &positions {
        // Every matching event up to the position was sent before it, none after it.
        let wrong: Vec<_> = events.iter().filter(|&&(i, s)| (s <= seq) != (i < at)).take(3).collect();
        assert!(
            wrong.is_empty(),
            "position {seq} (frame {at}) vs events (frame, seq) {wrong:?}; positions {positions:?}"
        );
    }
    println!("position frames (frame index, seq): {positions:?}");
}
