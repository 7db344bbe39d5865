//! Issue 11 part 3: request rates. A socket sending frames faster than `limits.requests_per_second` (after a
//! `limits.request_burst`) is closed with 4029; recoveries are bounded node-wide
//! (`history.max_concurrent_recoveries`) and share their stream position reads. JetStream API requests are
//! counted on the test's nats-server (`$JS.API.>`) and printed.

use std::time::{Duration, Instant};

use futures_util::{FutureExt, SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use crate::common::*;

/// Counts the JetStream API requests every client of a nats-server makes (the gateway's, here).
struct JsApiRequests {
    client: async_nats::Client,
    requests: async_nats::Subscriber,
    marker: async_nats::Subscriber,
}

impl JsApiRequests {
    async fn start(url: &str) -> Self {
        let client = publisher(url).await;
        let requests = client.subscribe("$JS.API.>").await.unwrap();
        let marker = client.subscribe("test.js-count.marker").await.unwrap();
        client.flush().await.unwrap();
        JsApiRequests { client, requests, marker }
    }

    /// Subjects of the requests `app` sent since the last call: the gateway's requests reached the server
    /// (flush), then a marker published after them comes back after every request routed to us.
    async fn take(&mut self, app: &TestApp) -> Vec<String> {
        app.flush().await;
        self.client.publish("test.js-count.marker", "".into()).await.unwrap();
        self.client.flush().await.unwrap();
        tokio::time::timeout(WAIT, self.marker.next()).await.expect("marker back").expect("subscribed");
        let mut subjects = Vec::new();
        // Unconstrained: tokio's co-operative budget would make a ready channel look empty after 128 messages.
        tokio::task::unconstrained(async {
            while let Some(Some(message)) = self.requests.next().now_or_never() {
                subjects.push(message.subject.to_string());
            }
        })
        .await;
        subjects
    }
}

/// Requests by kind (`STREAM.INFO`, `CONSUMER.CREATE`, ...), for printing.
fn kinds(subjects: &[String]) -> std::collections::BTreeMap<String, usize> {
    let mut kinds = std::collections::BTreeMap::new();
    for subject in subjects {
        let kind: Vec<&str> = subject.split('.').skip(2).take(2).collect();
        *kinds.entry(kind.join(".")).or_default() += 1;
    }
    kinds
}

fn position(reply: &Value) -> (String, u64) {
    (reply["epoch"].as_str().expect("epoch").to_string(), reply["seq"].as_u64().expect("seq"))
}

/// Publishes `count` events on `event` and waits until `listener` got them live (so they are stored).
async fn publish_stored(nats_url: &str, listener: &mut WsClient, event: &str, count: usize, data: &str) -> u64 {
    let publisher = publisher(nats_url).await;
    for _ in 0..count {
        publish(&publisher, event, data).await;
    }
    let mut last = 0;
    for _ in 0..count {
        last = listener.next_event().await["seq"].as_u64().unwrap();
    }
    last
}

fn since(event: &str, epoch: &str, seq: u64) -> Value {
    json!({"type":"subscribe","id":7,"event":event,"since":{"epoch":epoch,"seq":seq}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscribe_flood_is_served_up_to_the_burst_then_closed_4029() {
    let nats = NatsServer::start();
    let app = spawn_app(&nats.url()).await; // defaults: 20 requests/s, burst 150
    let (rate, burst) =
        (app.gateway.settings().limits.requests_per_second, app.gateway.settings().limits.request_burst);
    let mut listener = app.client(&["r.>"]).await;
    let (epoch, _) = position(&listener.subscribe("r.>").await);
    let last = publish_stored(&nats.url(), &mut listener, "r.x", 3, "{}").await;
    let mut bystander = app.client(&["r.>"]).await;
    let mut attacker = app.client(&["r.>"]).await;
    attacker.auto_pong = false; // every frame it sends is one of the flood's (a heartbeat's pong would take a token)
    let mut js = JsApiRequests::start(&nats.url()).await;
    js.take(&app).await;

    // Re-subscriptions with `since` (each a recovery of 1 missed event) from one socket, `burst` frames ahead of
    // the replies, until one is refused. Not a fixed count: the gateway takes a token as it reads a frame, after
    // serving the one before, so a fixed flood is refused only if served fast enough (on a loaded machine, 200
    // recoveries took ~2.7 s and 150 + 20/s x 2.5 s covered a 200-frame flood whole). Up to 10 x burst frames:
    // refused unless the gateway serves fewer than 10/9 x rate of them a second.
    let frame = Message::text(since("r.x", &epoch, last - 1).to_string());
    let (ahead, most) = (burst, 10 * burst);
    let flood = tokio::spawn(async move {
        let started = Instant::now();
        let (mut sent, mut subscribed, mut events, mut first_served) = (0u32, 0u32, 0u32, None);
        let error = loop {
            while sent < most && sent < subscribed + ahead {
                // A frame sent after the refusal may find the socket closing: nothing to check on sending.
                let _ = attacker.ws.send(frame.clone()).await;
                sent += 1;
            }
            assert!(subscribed < most, "{most} frames served in {:?}, none refused", started.elapsed());
            let frame = attacker.recv_or_close(Duration::from_secs(30)).await.expect("error frame before the close");
            match frame["type"].as_str() {
                Some("subscribed") => subscribed += 1,
                Some("event") => events += 1,
                _ => break frame,
            }
            first_served.get_or_insert_with(Instant::now);
        };
        let refused_at = Instant::now();
        let closed = attacker.recv_or_close(WAIT).await;
        let served_while = first_served.expect("a frame served")..refused_at;
        (sent, started.elapsed(), subscribed, events, served_while, error, closed)
    });
    // Meanwhile another socket's requests are answered (each within WAIT, or `request` fails the test). The
    // bystander paces itself at the rate limit: a ping, its pong, then 1/rate, so its own bucket never drains
    // however long the flood takes on a loaded machine.
    let pace = Duration::from_secs_f64(1.0 / f64::from(rate));
    let mut pongs = Vec::new();
    while !flood.is_finished() {
        assert_eq!(bystander.request(json!({"type":"ping","id":5})).await["type"], "pong");
        pongs.push(Instant::now());
        tokio::time::sleep(pace).await; // pacing the bystander, not synchronisation
    }
    let (sent, took, subscribed, events, served_while, error, closed) = flood.await.unwrap();
    let requests = js.take(&app).await;
    // Pongs received between the attacker's first reply and its refusal: the flood did not hold the bystander up.
    let pongs_during = pongs.iter().filter(|at| served_while.contains(*at)).count();
    eprintln!(
        "flood: {sent} frames sent; {subscribed} served (+{events} replayed events) in {took:?}, then \
         {error}; {} JetStream API requests {:?} ({:.1} per served frame); bystander: {} pongs, {pongs_during} \
         while the flood was served (over {:?})",
        requests.len(),
        kinds(&requests),
        requests.len() as f64 / f64::from(subscribed.max(1)),
        pongs.len(),
        served_while.end - served_while.start,
    );
    assert_eq!((&error["type"], &error["code"]), (&json!("error"), &json!("limit_exceeded")), "{error}");
    assert_eq!(error["message"], "too many requests");
    assert!(
        matches!(&closed, Err(Closed::Code(4029, reason)) if reason == "too many requests"),
        "expected close 4029, got {closed:?}"
    );
    // The gateway runs in this process: its bucket and `took` read the same monotonic clock, and it read every
    // frame it admitted within `took` (after the first was sent, before the close arrived). Its bucket held at
    // most `burst` tokens then, and gained `rate` per second: an upper bound however slow the machine (+1: float).
    let allowed = f64::from(burst) + f64::from(rate) * took.as_secs_f64() + 1.0;
    assert!(f64::from(subscribed) <= allowed, "{subscribed} served > burst + rate x time = {allowed}");
    // And at least the burst less the `connect` frame's token: tokens only come back, whatever the timing.
    assert!(subscribed >= burst - 1, "the burst is served: {subscribed}");
    assert!(pongs_during >= 1, "the bystander is answered while the flood is served: {pongs:?} vs {served_while:?}");
    // The attacker alone was limited: the bystander, pacing itself, never, and it is still served.
    assert_eq!(app.metric("telegraphy_requests_rate_limited_total").await, 1.0);
    assert_eq!(bystander.request(json!({"type":"ping","id":6})).await["type"], "pong");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recoveries_share_position_reads_and_count_few_jetstream_requests() {
    let nats = NatsServer::start();
    let app = spawn_app(&nats.url()).await;
    let mut listener = app.client(&["p.>"]).await;
    let (epoch, _) = position(&listener.subscribe("p.>").await);
    let last = publish_stored(&nats.url(), &mut listener, "p.x", 3, "{}").await;
    let history = app.gateway.history().cloned().expect("history on");
    let mut js = JsApiRequests::start(&nats.url()).await;
    js.take(&app).await;

    // 50 concurrent position reads, each started (its call time taken, queued for the shared read) before any is
    // awaited: how many requests they cost does not depend on when the machine runs this task again.
    let mut reads: Vec<_> = (0..50).map(|_| Box::pin(futures_util::future::maybe_done(history.position()))).collect();
    for read in &mut reads {
        let _ = futures_util::poll!(read.as_mut());
    }
    futures_util::future::join_all(reads.iter_mut().map(|read| read.as_mut())).await;
    let positions: Vec<_> = reads.iter_mut().map(|read| read.as_mut().take_output().expect("read done")).collect();
    assert!(positions.iter().all(|p| p.as_ref().is_ok_and(|p| p.last_seq == last)), "{positions:?}");
    let requests = js.take(&app).await;
    eprintln!("50 concurrent position reads: {} JetStream API requests {:?}", requests.len(), kinds(&requests));
    assert!(requests.len() <= 3, "shared reads: {requests:?}");

    // One socket recovering one missed event, ten times in a row (a pattern the node already subscribes to).
    let mut client = app.client(&["p.>"]).await;
    js.take(&app).await;
    for _ in 0..10 {
        let reply = client.request(since("p.>", &epoch, last - 1)).await;
        assert_eq!((&reply["type"], &reply["recovered"]), (&json!("subscribed"), &json!(true)), "{reply}");
        assert_eq!(client.next_event().await["seq"], last);
    }
    let requests = js.take(&app).await;
    eprintln!(
        "10 sequential recoveries of 1 event: {} JetStream API requests {:?} ({:.1} per recovery)",
        requests.len(),
        kinds(&requests),
        requests.len() as f64 / 10.0
    );
    assert!(requests.len() <= 10 * 4 + 2, "at most 4 per recovery (+ the stream upkeep): {requests:?}");

    // Twenty sockets recovering at once, up to date (nothing missed): they share the reads.
    let mut clients = Vec::new();
    for _ in 0..20 {
        clients.push(app.client(&["p.>"]).await);
    }
    js.take(&app).await;
    let frame = since("p.>", &epoch, last);
    let replies = futures_util::future::join_all(clients.iter_mut().map(|c| c.request(frame.clone()))).await;
    assert!(replies.iter().all(|r| r["recovered"] == true), "{replies:?}");
    let requests = js.take(&app).await;
    eprintln!("20 concurrent up-to-date recoveries: {} JetStream API requests {:?}", requests.len(), kinds(&requests));
    assert!(requests.len() < 20, "shared reads: {requests:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recoveries_beyond_the_node_bound_wait_then_get_recovered_false() {
    let nats = NatsServer::start();
    let app = spawn_app_with(&nats.url(), |s| s.history.max_concurrent_recoveries = 2).await;
    let mut listener = app.client(&["q.>"]).await;
    let (epoch, _) = position(&listener.subscribe("q.>").await);
    let last = publish_stored(&nats.url(), &mut listener, "q.x", 2, "{}").await;
    let history = app.gateway.history().cloned().expect("history on");
    // Both slots taken (as by two long replays).
    let first = history.recovery_slot().await.expect("slot 1");
    let second = history.recovery_slot().await.expect("slot 2");

    // A recovery waits for a slot, and gets `recovered:false` (with the position) when none frees in time.
    let mut refused = app.client(&["q.>"]).await;
    let asked = Instant::now();
    let reply = refused.request(since("q.x", &epoch, last - 1)).await;
    let waited = asked.elapsed();
    eprintln!("no slot: answered after {waited:?}: {reply}");
    assert_eq!((&reply["type"], &reply["recovered"]), (&json!("subscribed"), &json!(false)), "{reply}");
    assert_eq!(position(&reply), (epoch.clone(), last));
    assert!(waited >= Duration::from_secs(4), "waited for a slot first: {waited:?}");
    assert_eq!(app.metric("telegraphy_recoveries_refused_total{reason=\"busy\"}").await, 1.0);
    // It is live all the same.
    publish_stored(&nats.url(), &mut listener, "q.x", 1, "{}").await;
    assert_eq!(refused.next_event().await["name"], "q.x");

    // A slot freeing while a recovery waits lets it recover.
    let mut waiting = app.client(&["q.>"]).await;
    waiting.send(since("q.x", &epoch, last - 1)).await;
    let release = async move {
        tokio::time::sleep(Duration::from_millis(500)).await; // the recovery is waiting by then (or soon)
        drop(first);
    };
    let (reply, ()) = tokio::join!(waiting.recv(), release);
    assert_eq!((&reply["type"], &reply["recovered"]), (&json!("subscribed"), &json!(true)), "{reply}");
    assert_eq!(waiting.next_event().await["seq"], last);
    drop(second);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_frame_counts_pings_too_and_each_socket_has_its_own_bucket() {
    let nats = NatsServer::start();
    let app = spawn_app_with(&nats.url(), |s| {
        s.limits.max_subscriptions = 3;
        s.limits.request_burst = 5; // the least allowed: max_subscriptions + 2
        s.limits.requests_per_second = 1;
    })
    .await;
    let mut chatty = app.client(&["c.>"]).await; // `connect` took a token
    let mut quiet = app.client(&["c.>"]).await;
    for id in 0..10 {
        chatty.send(json!({"type":"ping","id":id})).await;
    }
    let mut pongs = 0;
    let error = loop {
        let frame = chatty.recv().await;
        if frame["type"] != "pong" {
            break frame;
        }
        pongs += 1;
    };
    assert!((4..=5).contains(&pongs), "4 tokens left after connect (+1 if a second passed): {pongs}");
    assert_eq!((&error["code"], &error["message"]), (&json!("limit_exceeded"), &json!("too many requests")));
    match chatty.recv_or_close(WAIT).await {
        Err(Closed::Code(code, reason)) => assert_eq!((code, reason.as_str()), (4029, "too many requests")),
        other => panic!("expected close 4029, got {other:?}"),
    }
    // The other socket (same user) still has its own tokens.
    for id in 0..4 {
        assert_eq!(quiet.request(json!({"type":"ping","id":id})).await["type"], "pong");
    }
}
