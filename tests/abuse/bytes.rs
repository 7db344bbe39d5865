//! Issue 11 part 6: byte bounds. A client that stops reading large events is closed 4008 once its queue holds
//! `limits.outbound_queue_bytes` (not only after `limits.outbound_queue` frames), so the gateway's memory stays
//! bounded; a recovery over `history.max_replay_bytes` answers `recovered: false` instead of holding it all.
//! Issue 20: sockets of many users that stop reading are bounded together by the node's total
//! (`limits.outbound_queue_bytes_per_node`), while a reading user gets every event.

use std::time::Duration;

use serde_json::{json, Value};
use tokio_tungstenite::MaybeTlsStream;

use crate::common::*;

const MIB: f64 = 1024.0 * 1024.0;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_reader_of_large_events_is_closed_4008_by_bytes_and_memory_stays_bounded() {
    let nats = NatsServer::start();
    let env = [("TELEGRAPHY_HISTORY__ENABLED", "false"), ("TELEGRAPHY_AUTH__ANONYMOUS_ALLOW", "big.>")];
    let gateway = GatewayBinary::start("gw-bytes", &nats.url(), SECRET, &env).await;
    let mut slow = WsClient::connect(&gateway.ws_url()).await;
    assert_eq!(slow.connect_with(json!({"type":"connect","id":1})).await["type"], "connected");
    slow.subscribe("big.x").await;
    let mut control = WsClient::connect(&gateway.ws_url()).await;
    assert_eq!(control.connect_with(json!({"type":"connect","id":1})).await["type"], "connected");
    let baseline = gateway.rss();

    // 400 events of 256 KiB (100 MiB, far below the 1024-frame limit) while `slow` reads nothing.
    let (events, size) = (400usize, 256 * 1024);
    let url = nats.url();
    let publishing = tokio::spawn(async move {
        let publisher = publisher(&url).await;
        let data = format!("\"{}\"", "x".repeat(size - 2));
        for _ in 0..events {
            publisher.publish("telegraphy.big.x", data.clone().into()).await.unwrap();
        }
        publisher.flush().await.unwrap();
    });
    let peak = std::cell::Cell::new(baseline);
    let sample = || peak.set(peak.get().max(gateway.rss()));
    eventually_within("the slow reader is closed as too slow", Duration::from_secs(60), || async {
        sample();
        gateway.metric("telegraphy_slow_disconnects_total").await >= 1.0
    })
    .await;
    publishing.await.unwrap();
    sample();
    let peak = peak.get();

    // Reading again: the frames that were in flight, then the close (or the end, if the close frame did not fit
    // in the grace period while the socket was full).
    let mut received = 0;
    let ended = loop {
        match slow.recv_or_close(Duration::from_secs(30)).await {
            Ok(frame) if frame["type"] == "event" => received += 1,
            Ok(frame) => panic!("unexpected frame {frame}"),
            Err(closed) => break closed,
        }
    };
    eprintln!(
        "slow reader: {received} of {events} events of {} KiB before {ended:?}; gateway RSS {:.1} MiB before, \
         peak {:.1} MiB (+{:.1} MiB)",
        size / 1024,
        baseline as f64 / MIB,
        peak as f64 / MIB,
        (peak - baseline) as f64 / MIB
    );
    assert!(matches!(ended, Closed::Code(4008, _) | Closed::NoFrame), "{ended:?}");
    assert!(received < events, "closed well before all {events} frames were queued: {received}");
    assert_eq!(gateway.metric("telegraphy_slow_disconnects_total").await, 1.0);
    assert!(peak - baseline < 64 * 1024 * 1024, "gateway RSS grew {:.1} MiB", (peak - baseline) as f64 / MIB);
    // Other sockets are served.
    assert_eq!(control.request(json!({"type":"ping","id":2})).await["type"], "pong");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_over_max_replay_bytes_is_not_recovered() {
    let nats = NatsServer::start();
    let app = spawn_app_with(&nats.url(), |s| {
        s.limits.max_event_bytes = 16 * 1024;
        s.history.max_replay_bytes = 64 * 1024;
    })
    .await;
    let mut listener = app.client(&["rb.>"]).await;
    let reply = listener.subscribe("rb.>").await;
    let (epoch, start) = (reply["epoch"].as_str().unwrap().to_string(), reply["seq"].as_u64().unwrap());
    // Ten events of 10 KiB: 100 KiB after `start`, 50 KiB after the fifth.
    let publisher = publisher(&nats.url()).await;
    let data = format!("\"{}\"", "y".repeat(10 * 1024 - 2));
    for _ in 0..10 {
        publish(&publisher, "rb.x", &data).await;
    }
    for _ in 0..10 {
        listener.next_event().await;
    }
    let since = |seq: u64| json!({"type":"subscribe","id":3,"event":"rb.x","since":{"epoch":epoch,"seq":seq}});

    let mut whole = app.client(&["rb.>"]).await;
    let reply: Value = whole.request(since(start)).await;
    assert_eq!((&reply["type"], &reply["recovered"]), (&json!("subscribed"), &json!(false)), "{reply}");
    assert_eq!(reply["seq"], start + 10, "the current position to continue from");
    assert_eq!(app.metric("telegraphy_recoveries_refused_total{reason=\"bytes\"}").await, 1.0);

    let mut half = app.client(&["rb.>"]).await;
    let reply = half.request(since(start + 5)).await;
    assert_eq!(reply["recovered"], true, "50 KiB fit: {reply}");
    for seq in start + 6..=start + 10 {
        assert_eq!(half.next_event().await["seq"], seq);
    }
}

/// A socket of `user` subscribed to `feed.big` with a 4 KiB receive buffer, which reads nothing more after its
/// `subscribed` (so that the gateway's queue, not the kernel's buffers, holds what it is sent).
async fn never_reading(app: &TestApp, user: &str) -> WsClient {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let tcp = socket.connect(app.addr).await.expect("connect");
    let (ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::client_async(app.ws_url(), MaybeTlsStream::Plain(tcp)))
        .await
        .expect("upgrade timeout")
        .expect("upgrade");
    let mut client = WsClient { ws, auto_pong: true };
    let token = app.token(user, &["feed.>"]).await;
    assert_eq!(client.connect_with(json!({"type":"connect","id":1,"token":token})).await["type"], "connected");
    client.subscribe("feed.big").await;
    client
}

/// Issue 20, node total of outbound bytes: 3 users' sockets that stop reading could each queue
/// `limits.outbound_queue_bytes` (here 512 KiB); the node's total (`limits.outbound_queue_bytes_per_node`, here
/// 1 MiB) closes them with 4008 (counted as slow) once they hold it together, while a reading user, a few frames
/// behind during each burst of events, is never the one closed (it was: the total closed whichever connection
/// with a non-empty queue pushed next); it gets every event and its ping answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn never_reading_sockets_of_many_users_share_the_nodes_outbound_total() {
    const SLOW: usize = 3;
    const BURSTS: usize = 60;
    const BURST: usize = 3;
    const NODE_TOTAL: usize = 1 << 20;
    const FRAME: usize = 48 * 1024;
    let nats = NatsServer::start();
    let app = spawn_app_with(&nats.url(), |s| {
        s.limits.max_event_bytes = 64 * 1024;
        s.limits.outbound_queue_bytes = 512 * 1024;
        s.limits.outbound_queue_bytes_per_node = NODE_TOTAL;
    })
    .await;
    let mut alice = app.client(&["feed.>"]).await;
    alice.subscribe("feed.big").await;
    let mut slow = Vec::new();
    for i in 0..SLOW {
        slow.push(never_reading(&app, &format!("slow{i}")).await);
    }
    app.flush().await;
    let publisher = publisher(&nats.url()).await;
    let data = bytes::Bytes::from(format!("\"{}\"", "z".repeat(FRAME - 200)));
    // Bursts of events; the reader reads each burst as it comes. The node's queued bytes are sampled meanwhile.
    let mut peak = 0;
    for _ in 0..BURSTS {
        for _ in 0..BURST {
            publisher.publish("telegraphy.feed.big", data.clone()).await.unwrap();
        }
        publisher.flush().await.unwrap();
        for _ in 0..BURST {
            assert_eq!(alice.next_event().await["name"], "feed.big");
            peak = peak.max(app.gateway.outbound_bytes());
        }
    }
    eventually("the never-reading sockets are closed as too slow", || async {
        app.metric("telegraphy_slow_disconnects_total").await >= SLOW as f64
    })
    .await;
    eprintln!("{SLOW} never-reading sockets: node queued bytes peaked at {peak} (node total {NODE_TOTAL})");
    // Over the total only by the frames queued before the largest queues were closed.
    assert!(peak <= NODE_TOTAL + (SLOW + 1) * BURST * FRAME, "the node queued {peak} bytes");
    for client in &mut slow {
        let ended = loop {
            match client.recv_or_close(Duration::from_secs(30)).await {
                Ok(frame) if frame["type"] == "event" => continue,
                Ok(frame) => panic!("unexpected frame {frame}"),
                Err(closed) => break closed,
            }
        };
        assert!(matches!(ended, Closed::Code(4008, _) | Closed::NoFrame), "{ended:?}");
    }
    assert_eq!(app.metric("telegraphy_slow_disconnects_total").await, SLOW as f64);
    assert_eq!(alice.request(json!({"type":"ping","id":2})).await["type"], "pong");
    eventually("everything queued for the closed sockets released", || async { app.gateway.outbound_bytes() == 0 })
        .await;
}
