//! Fault tests (issue: history, recovery and scale-out): a 3-node NATS cluster (stream R3), 3 gateway processes
//! (the real binary), clients spread over the gateways that reconnect to another gateway with `resume` and
//! `since`, and a publisher that keeps publishing while a gateway is killed, the gateways are restarted one by
//! one, a NATS node dies, or the whole NATS cluster stops for a few seconds.
//!
//! Each test asserts that every client ends with every event exactly once and in order, and prints the figures.
//! Loopback only; every wait bounded; the scenarios run one at a time (they share 2 cores).

mod common;

use std::{
    io::Write,
    sync::Arc,
    time::{Duration, Instant},
};

use async_nats::jetstream;
use common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::sync::{watch, Mutex};
use tokio_tungstenite::tungstenite::Message;

/// The scenarios are heavy: run them one after another.
static SERIAL: Mutex<()> = Mutex::const_new(());

const CLIENTS: usize = 12;

/// Settings of the gateway nodes under fault: anonymous clients, an R3 stream, a short heartbeat (dead links are
/// noticed fast) and a short drain.
fn gateway_env(log: &str) -> [(&str, &str); 6] {
    [
        ("TELEGRAPHY_AUTH__ANONYMOUS_ALLOW", "fault.>"),
        ("TELEGRAPHY_HISTORY__REPLICAS", "3"),
        ("TELEGRAPHY_HEARTBEAT", "2"),
        ("TELEGRAPHY_SHUTDOWN_TIMEOUT", "5"),
        ("TELEGRAPHY_HTTP__WORKERS", "1"),
        ("RUST_LOG", log),
    ]
}

/// A JetStream cluster that lost its nodes needs a while to elect leaders again.
const READY_WITHIN: Duration = Duration::from_secs(30);

/// What one client saw.
#[derive(Debug, Default)]
struct Report {
    data: Vec<i64>,
    duplicates: usize,
    reconnects: Vec<Duration>,
    not_recovered: usize,
}

/// A client that keeps one subscription to `fault.>` alive across gateways: on any loss it reconnects to the
/// next gateway with its resume token and `since`, like the JS client does. Ends when it has seen `last`.
async fn resilient_client(urls: Vec<String>, first: usize, mut last: watch::Receiver<Option<i64>>) -> Report {
    let mut report = Report::default();
    let mut index = first;
    let mut resume: Option<String> = None;
    let mut position: Option<(String, u64)> = None;
    let mut lost_at: Option<Instant> = None;
    let done = |report: &Report, last: &watch::Receiver<Option<i64>>| matches!(*last.borrow(), Some(l) if report.data.last() == Some(&l));
    'connections: loop {
        if done(&report, &last) {
            return report;
        }
        let url = &urls[index % urls.len()];
        let ws =
            match tokio::time::timeout(Duration::from_secs(2), tokio_tungstenite::connect_async(url.as_str())).await {
                Ok(Ok((ws, _))) => ws,
                _ => {
                    index += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
        let (mut tx, mut rx) = ws.split();
        let connect = match &resume {
            Some(r) => json!({"type":"connect","id":1,"resume":r}),
            None => json!({"type":"connect","id":1}),
        };
        let subscribe = match &position {
            Some((epoch, seq)) => {
                json!({"type":"subscribe","id":2,"event":"fault.>","since":{"epoch":epoch,"seq":seq}})
            }
            None => json!({"type":"subscribe","id":2,"event":"fault.>"}),
        };
        if tx.send(Message::text(connect.to_string())).await.is_err()
            || tx.send(Message::text(subscribe.to_string())).await.is_err()
        {
            index += 1;
            continue;
        }
        loop {
            let next = tokio::select! {
                next = tokio::time::timeout(Duration::from_secs(6), rx.next()) => next,
                _ = last.changed() => {
                    if done(&report, &last) {
                        return report;
                    }
                    continue;
                }
            };
            let frame: Value = match next {
                Ok(Some(Ok(Message::Text(text)))) => serde_json::from_str(&text).unwrap(),
                other @ (Ok(Some(Ok(Message::Close(_)))) | Ok(Some(Err(_))) | Ok(None) | Err(_)) => {
                    if std::env::var_os("TELEGRAPHY_TEST_LOGS").is_some() {
                        eprintln!("[client {first}] lost {url}: {other:?}");
                    }
                    lost_at.get_or_insert_with(Instant::now);
                    index += 1;
                    continue 'connections;
                }
                Ok(Some(Ok(_))) => continue,
            };
            if std::env::var_os("TELEGRAPHY_TEST_LOGS").is_some() && frame["type"] != "event" {
                eprintln!(
                    "[client {first}] {:?} via {url}: {frame} (have {} events)",
                    lost_at.map(|t| t.elapsed()),
                    report.data.len()
                );
            }
            match frame["type"].as_str() {
                Some("connected") => resume = frame["resume"].as_str().map(String::from),
                Some("subscribed") => {
                    if let Some(at) = lost_at.take() {
                        report.reconnects.push(at.elapsed());
                    }
                    if frame["recovered"] == false {
                        report.not_recovered += 1;
                    }
                    if position.is_none() {
                        if let (Some(e), Some(s)) = (frame["epoch"].as_str(), frame["seq"].as_u64()) {
                            position = Some((e.to_string(), s));
                        }
                    }
                }
                Some("event") => {
                    let seq = frame["seq"].as_u64().expect("event seq");
                    let epoch = frame["epoch"].as_str().expect("event epoch").to_string();
                    if position.as_ref().is_some_and(|(e, s)| *e == epoch && seq <= *s) {
                        report.duplicates += 1;
                    } else {
                        position = Some((epoch, seq));
                        report.data.push(frame["data"].as_i64().unwrap());
                        if std::env::var_os("TELEGRAPHY_TEST_LOGS").is_some() && report.data.len() % 50 == 0 {
                            eprintln!(
                                "[client {first}] {} events, last data {} seq {seq}",
                                report.data.len(),
                                frame["data"]
                            );
                        }
                    }
                    if done(&report, &last) {
                        return report;
                    }
                }
                Some("ping") => {
                    let _ = tx.send(Message::text(r#"{"type":"pong"}"#)).await;
                }
                Some("error") => panic!("gateway error: {frame}"),
                _ => {}
            }
        }
    }
}

/// Publishes `fault.<i % 5>` with data i through JetStream (acked, de-duplicated by message id, retried), so
/// the stream holds each i exactly once and in order whatever happens to the cluster.
async fn publish_acked(js: &jetstream::Context, i: i64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let publish =
            jetstream::message::PublishMessage::build().payload(i.to_string().into()).message_id(i.to_string());
        let sent = async { js.send_publish(format!("telegraphy.fault.{}", i % 5), publish).await?.await };
        match tokio::time::timeout(Duration::from_secs(2), sent).await {
            Ok(Ok(_)) => return,
            _ => {
                assert!(Instant::now() < deadline, "could not publish event {i} within 30 s");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

struct Cluster {
    nats: NatsCluster,
    gateways: Vec<GatewayBinary>,
}

impl Cluster {
    async fn start() -> Self {
        let nats = NatsCluster::start(3);
        let url = nats.urls();
        let log = std::env::var("TELEGRAPHY_TEST_GW_LOG").unwrap_or_else(|_| "warn,telegraphy=info".into());
        // gw-1 knows only NATS node 1 (it learns the others from the cluster), so killing node 1 forces at least
        // one gateway through a reconnect and the healing path.
        let mut gateways = Vec::new();
        for i in 1..=3 {
            let nats_url = if i == 1 { nats.nodes[0].url() } else { url.clone() };
            gateways.push(GatewayBinary::launch(&format!("gw-{i}"), &nats_url, SECRET, &gateway_env(&log)).await);
        }
        for g in &gateways {
            g.wait_ready(READY_WITHIN).await;
        }
        Cluster { nats, gateways }
    }

    fn urls(&self) -> Vec<String> {
        self.gateways.iter().map(|g| g.ws_url()).collect()
    }
}

/// Runs clients and a publisher, applies `fault` while events flow, then checks every client's events.
async fn scenario<F, Fut>(name: &str, events: i64, fault: F)
where
    F: FnOnce(Arc<Mutex<Cluster>>) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let _serial = SERIAL.lock().await;
    let started = Instant::now();
    let cluster = Arc::new(Mutex::new(Cluster::start().await));
    let (urls, nats_url) = {
        let c = cluster.lock().await;
        (c.urls(), c.nats.urls())
    };
    let (last_tx, last_rx) = watch::channel(None);
    let mut clients = Vec::new();
    for i in 0..CLIENTS {
        clients.push(tokio::spawn(resilient_client(urls.clone(), i % urls.len(), last_rx.clone())));
    }
    // Every client is subscribed before the first event: their positions start before it.
    {
        let c = cluster.lock().await;
        eventually("all clients subscribed", || async {
            let mut total = 0.0;
            for g in &c.gateways {
                if let Ok(r) = reqwest::get(format!("http://127.0.0.1:{}/metrics", g.port)).await {
                    total += metric_value(&r.text().await.unwrap(), "telegraphy_subscriptions ");
                }
            }
            total as usize == CLIENTS
        })
        .await;
    }

    let servers: Vec<async_nats::ServerAddr> = nats_url.split(',').map(|u| u.parse().unwrap()).collect();
    let client = async_nats::ConnectOptions::new().retry_on_initial_connect().connect(servers).await.unwrap();
    let js = jetstream::new(client);
    let publisher = tokio::spawn(async move {
        for i in 0..events {
            publish_acked(&js, i).await;
            tokio::time::sleep(Duration::from_millis(5)).await; // a steady flow over the fault
        }
    });
    fault(cluster.clone()).await;
    tokio::time::timeout(Duration::from_secs(60), publisher).await.expect("publisher finished").unwrap();
    last_tx.send(Some(events - 1)).unwrap();

    let mut reports = Vec::new();
    for client in clients {
        let report = tokio::time::timeout(Duration::from_secs(45), client)
            .await
            .unwrap_or_else(|_| panic!("{name}: a client did not get every event within 45 s"))
            .unwrap();
        reports.push(report);
    }
    let expected: Vec<i64> = (0..events).collect();
    let lost: usize = reports.iter().map(|r| expected.iter().filter(|e| !r.data.contains(e)).count()).sum();
    let duplicated: usize = reports.iter().map(|r| r.duplicates + (r.data.len() - dedup_len(&r.data))).sum();
    let mut reconnects: Vec<Duration> = reports.iter().flat_map(|r| r.reconnects.iter().copied()).collect();
    reconnects.sort();
    let p99 = reconnects.get((reconnects.len() * 99).div_ceil(100).saturating_sub(1)).copied().unwrap_or_default();
    let not_recovered: usize = reports.iter().map(|r| r.not_recovered).sum();
    // Written to stderr directly (not println!) so the figures show in the test output even when it is captured.
    let _ = writeln!(
        std::io::stderr(),
        "FAULT {name}: clients={CLIENTS} events={events} lost={lost} duplicated={duplicated} reconnects={} reconnect_p99={:?} recovered_false={not_recovered} took={:?}",
        reconnects.len(),
        p99,
        started.elapsed()
    );
    for (i, report) in reports.iter().enumerate() {
        assert_eq!(report.data, expected, "{name}: client {i} must have every event exactly once, in order");
    }
    assert_eq!((lost, duplicated, not_recovered), (0, 0, 0), "{name}");
    assert!(p99 < Duration::from_secs(5), "{name}: reconnect p99 {p99:?} >= 5 s");
}

fn dedup_len(v: &[i64]) -> usize {
    let mut sorted = v.to_vec();
    sorted.sort();
    sorted.dedup();
    sorted.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_one_gateway() {
    scenario("kill -9 gateway", 400, |cluster| async move {
        tokio::time::sleep(Duration::from_millis(600)).await; // let events flow first
        cluster.lock().await.gateways[1].kill9().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_restart_with_sigterm() {
    scenario("rolling restart", 600, |cluster| async move {
        for i in 0..3 {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let mut c = cluster.lock().await;
            c.gateways[i].sigterm();
            let code = c.gateways[i].wait_exit(Duration::from_secs(12)).await;
            assert_eq!(code, 0, "gw-{} exit status after SIGTERM", i + 1);
            c.gateways[i].relaunch().await;
            c.gateways[i].wait_ready(READY_WITHIN).await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_one_nats_node() {
    scenario("kill one NATS node", 400, |cluster| async move {
        tokio::time::sleep(Duration::from_millis(600)).await;
        let mut c = cluster.lock().await;
        c.nats.nodes[0].kill();
        drop(c);
        tokio::time::sleep(Duration::from_millis(600)).await;
        let c = cluster.lock().await;
        for g in &c.gateways {
            g.wait_ready(READY_WITHIN).await;
        }
        let gw1 = &c.gateways[0];
        eventually("gw-1 reconnected to another NATS node", || async {
            gw1.metric("telegraphy_nats_connects_total").await >= 2.0
        })
        .await;
        let _ = writeln!(
            std::io::stderr(),
            "FAULT kill one NATS node: gw-1 healed {} events after its reconnect",
            gw1.metric("telegraphy_healed_events_total").await
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_down_for_a_few_seconds() {
    scenario("NATS down", 400, |cluster| async move {
        tokio::time::sleep(Duration::from_millis(600)).await;
        let mut c = cluster.lock().await;
        for node in &mut c.nats.nodes {
            node.kill();
        }
        for g in &c.gateways {
            eventually("gateway not ready while NATS is down", || async { g.readyz().await == 503 }).await;
        }
        tokio::time::sleep(Duration::from_secs(2)).await; // the outage
        let handles: Vec<_> = std::mem::take(&mut c.nats.nodes)
            .into_iter()
            .map(|mut node| {
                std::thread::spawn(move || {
                    node.restart();
                    node
                })
            })
            .collect();
        c.nats.nodes = handles.into_iter().map(|h| h.join().unwrap()).collect();
        for g in &c.gateways {
            g.wait_ready(READY_WITHIN).await;
        }
    })
    .await;
}
