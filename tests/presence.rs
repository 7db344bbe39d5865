//! Presence (proto/PROTOCOL.md section 11) against a real nats-server: two in-process gateways on one NATS
//! (join/leave seen on both, snapshot, stats, leave on close and unsubscribe, limits, drain + resume on the
//! other gateway without leave/join), and two gateway binaries on a 3-node NATS cluster, one killed with
//! SIGKILL: its clients leave within the stated bound.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};
use telegraphy::protocol::token::{self, Claims, Keyring, TokenKind};
use tokio::time::Instant;

/// A short refresh so that expiry is seen within seconds: TTL = 3 s.
const REFRESH: u64 = 1;

async fn presence_app(nats: &str, tweak: impl FnOnce(&mut telegraphy::config::Settings)) -> TestApp {
    spawn_app_with(nats, |s| {
        s.presence.refresh_interval = REFRESH;
        tweak(s);
    })
    .await
}

/// A client of `user` (with `info`) connected to `app`; returns it and its `connected` reply.
async fn user_client(app: &TestApp, user: &str, info: Option<Value>) -> (WsClient, Value) {
    let token = app.gateway.auth().mint_with_info(user, &["chat.>".into()], 60, info).await.expect("mint");
    let mut client = WsClient::connect(&app.ws_url()).await;
    let connected = client.connect_with(json!({"type": "connect", "id": 1, "token": token})).await;
    assert_eq!(connected["type"], "connected", "{connected}");
    (client, connected)
}

async fn join_channel(client: &mut WsClient, channel: &str) {
    // `internal` means "retry later" (the bucket's stream may still be electing a leader on a fresh cluster).
    for _ in 0..5 {
        let reply = client.request(json!({"type": "subscribe", "id": 2, "event": channel, "presence": true})).await;
        if reply["code"] == "internal" {
            continue;
        }
        assert_eq!((&reply["type"], &reply["event"]), (&json!("subscribed"), &json!(channel)), "{reply}");
        return;
    }
    panic!("presence subscription still failing after 5 attempts");
}

/// The next `join`/`leave` frame.
async fn presence_event(client: &mut WsClient) -> Value {
    loop {
        let frame = client.recv().await;
        if frame["type"] == "join" || frame["type"] == "leave" {
            return frame;
        }
    }
}

async fn snapshot(client: &mut WsClient, channel: &str) -> Value {
    let reply = client.request(json!({"type": "presence", "id": 5, "event": channel})).await;
    assert_eq!((&reply["type"], &reply["id"]), (&json!("presence"), &json!(5)), "{reply}");
    reply
}

fn users(snapshot: &Value) -> Vec<String> {
    let mut users: Vec<String> =
        snapshot["clients"].as_array().unwrap().iter().map(|c| c["user"].as_str().unwrap().to_string()).collect();
    users.sort();
    users
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_snapshot_stats_and_leave_across_two_gateways() {
    let nats = NatsServer::start();
    let (a, b) = (presence_app(&nats.url(), |_| {}).await, presence_app(&nats.url(), |_| {}).await);
    let (mut alice, _) = user_client(&a, "alice", Some(json!({"name": "Alice"}))).await;
    join_channel(&mut alice, "chat.lobby").await;
    let (mut bob, _) = user_client(&b, "bob", None).await;
    join_channel(&mut bob, "chat.lobby").await;

    // Alice, on the other gateway, sees bob join; bob's snapshot (right after `subscribed`) has both.
    let joined = presence_event(&mut alice).await;
    assert_eq!(
        (&joined["type"], &joined["sub"], &joined["user"]),
        (&json!("join"), &json!("chat.lobby"), &json!("bob"))
    );
    assert!(joined.get("info").is_none(), "{joined}");
    let seen = snapshot(&mut bob, "chat.lobby").await;
    assert_eq!(users(&seen), ["alice", "bob"], "{seen}");
    assert_eq!(seen["truncated"], false);
    let alice_entry = seen["clients"].as_array().unwrap().iter().find(|c| c["user"] == "alice").unwrap().clone();
    assert_eq!(alice_entry["info"], json!({"name": "Alice"}), "info from the token");
    let stats = bob.request(json!({"type": "presence_stats", "id": 6, "event": "chat.lobby"})).await;
    assert_eq!(stats, json!({"type": "presence_stats", "id": 6, "event": "chat.lobby", "clients": 2, "users": 2}));

    // A second client of alice on gateway B: 3 clients, still 2 users; alice (A) and bob (B) see it join.
    let (mut alice2, _) = user_client(&b, "alice", None).await;
    join_channel(&mut alice2, "chat.lobby").await;
    for watcher in [&mut alice, &mut bob] {
        let joined = presence_event(watcher).await;
        assert_eq!((&joined["type"], &joined["user"]), (&json!("join"), &json!("alice")), "{joined}");
    }
    let stats = bob.request(json!({"type": "presence_stats", "id": 7, "event": "chat.lobby"})).await;
    assert_eq!((&stats["clients"], &stats["users"]), (&json!(3), &json!(2)), "{stats}");

    // Unsubscribe: a leave at once, on both gateways.
    let reply = alice2.request(json!({"type": "unsubscribe", "id": 8, "event": "chat.lobby"})).await;
    assert_eq!(reply["type"], "unsubscribed");
    let left_client = joined_client(&mut alice, "leave").await;
    assert_eq!(joined_client(&mut bob, "leave").await, left_client);

    // The client closes its socket: a leave at once (well before the 3 s TTL).
    let closed_at = Instant::now();
    bob.close().await;
    let left = presence_event(&mut alice).await;
    assert_eq!((&left["type"], &left["user"]), (&json!("leave"), &json!("bob")), "{left}");
    assert!(
        closed_at.elapsed() < Duration::from_secs(2),
        "a close is a delete, not an expiry: {:?}",
        closed_at.elapsed()
    );
    let seen = snapshot(&mut alice, "chat.lobby").await;
    assert_eq!(users(&seen), ["alice"], "{seen}");

    // A presence request needs a presence subscription on that channel.
    let refused = alice.request(json!({"type": "presence", "id": 9, "event": "chat.other"})).await;
    assert_eq!((&refused["type"], &refused["code"]), (&json!("error"), &json!("forbidden")), "{refused}");
}

/// Reads everything `watcher` gets for `quiet` (queued frames included): none may be a `join` or `leave`.
async fn assert_no_presence_events(watcher: &mut WsClient, quiet: Duration) {
    let until = Instant::now() + quiet;
    loop {
        // The end of the quiet period is the expected outcome (an elapsed timeout), not a failure.
        match tokio::time::timeout_at(until, watcher.recv_or_close(Duration::from_secs(60))).await {
            Err(_) => return,
            Ok(Ok(frame)) => assert!(frame["type"] != "join" && frame["type"] != "leave", "flap: {frame}"),
            Ok(Err(closed)) => panic!("watcher closed: {closed:?}"),
        }
    }
}

/// A 3-node NATS cluster and `count` gateway binaries on it (anonymous access to `room.>`, R3 buckets, a presence
/// refresh of `refresh` seconds), all ready.
async fn binary_cluster(count: usize, refresh: &str) -> (NatsCluster, Vec<GatewayBinary>) {
    let cluster = NatsCluster::start(3);
    let env = [
        ("TELEGRAPHY_AUTH__ANONYMOUS_ALLOW", "room.>"),
        ("TELEGRAPHY_HISTORY__REPLICAS", "3"),
        ("TELEGRAPHY_PRESENCE__REPLICAS", "3"),
        ("TELEGRAPHY_PRESENCE__REFRESH_INTERVAL", refresh),
        ("TELEGRAPHY_SHUTDOWN_TIMEOUT", "5"),
        ("TELEGRAPHY_HTTP__WORKERS", "1"),
    ];
    let mut gateways = Vec::new();
    for i in 1..=count {
        gateways.push(GatewayBinary::launch(&format!("gw-{i}"), &cluster.urls(), SECRET, &env).await);
    }
    for g in &gateways {
        g.wait_ready(Duration::from_secs(30)).await;
    }
    (cluster, gateways)
}

/// The next `kind` frame's client id.
async fn joined_client(client: &mut WsClient, kind: &str) -> Value {
    let frame = presence_event(client).await;
    assert_eq!(frame["type"], kind, "{frame}");
    frame["client"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_are_checked_before_any_kv_work() {
    let nats = NatsServer::start();
    let app = presence_app(&nats.url(), |s| {
        s.presence.max_per_connection = 2;
        s.presence.max_snapshot = 2;
        s.presence.max_channels = 3;
    })
    .await;
    let (mut c, _) = user_client(&app, "carol", None).await;
    let wildcard = c.request(json!({"type": "subscribe", "id": 2, "event": "chat.*", "presence": true})).await;
    assert_eq!(
        (&wildcard["code"], &wildcard["message"]),
        (&json!("bad_request"), &json!("presence needs a channel without wildcards"))
    );
    let outside = c.request(json!({"type": "subscribe", "id": 2, "event": "shop.x", "presence": true})).await;
    assert_eq!(outside["code"], "forbidden");
    let bad = c.request(json!({"type": "subscribe", "id": 2, "event": "chat.x", "presence": "yes"})).await;
    assert_eq!(bad["code"], "bad_request");
    join_channel(&mut c, "chat.a").await;
    join_channel(&mut c, "chat.b").await;
    let third = c.request(json!({"type": "subscribe", "id": 2, "event": "chat.c", "presence": true})).await;
    assert_eq!(
        (&third["code"], &third["message"]),
        (&json!("limit_exceeded"), &json!("too many presence subscriptions"))
    );
    // A plain subscription is still fine, and re-subscribing an existing presence subscription is idempotent.
    c.subscribe("chat.c").await;
    join_channel(&mut c, "chat.a").await;

    // Node cap: a third and fourth channel from another connection (carol holds chat.a, chat.b).
    let (mut d, _) = user_client(&app, "dave", None).await;
    join_channel(&mut d, "chat.d").await;
    let over = d.request(json!({"type": "subscribe", "id": 2, "event": "chat.e", "presence": true})).await;
    assert_eq!((&over["code"], &over["message"]), (&json!("limit_exceeded"), &json!("too many presence channels")));
    assert_eq!(app.metric("telegraphy_presence_channels").await, 3.0);

    // Snapshot truncation: 3 present, 2 shown.
    join_channel(&mut d, "chat.a").await;
    let (mut e, _) = user_client(&app, "erin", None).await;
    join_channel(&mut e, "chat.a").await;
    let seen = snapshot(&mut e, "chat.a").await;
    assert_eq!(seen["clients"].as_array().unwrap().len(), 2, "{seen}");
    assert_eq!(seen["truncated"], true);

    // The info claim: at most 256 bytes of a JSON object, refused at mint and at verify.
    let big = json!({"n": "x".repeat(token::MAX_INFO_BYTES)});
    let minted = app.gateway.auth().mint_with_info("erin", &["chat.>".into()], 60, Some(big.clone())).await;
    assert!(matches!(minted, Err(telegraphy::node::auth::MintError::BadInfo(_))), "{minted:?}");
    let keyring = Keyring::new(&[SECRET.to_string()]).unwrap();
    let now = token::now_unix();
    let mut claims = Claims::new("erin", vec!["chat.>".into()], now, 60, Some("s-erin".into()));
    let fine = keyring.sign(TokenKind::Resume, &claims);
    let mut ok = WsClient::connect(&app.ws_url()).await;
    assert_eq!(ok.connect_with(json!({"type": "connect", "resume": fine})).await["type"], "connected");
    claims.info = Some(big);
    let oversized = keyring.sign(TokenKind::Resume, &claims);
    let mut refused = WsClient::connect(&app.ws_url()).await;
    let reply = refused.connect_with(json!({"type": "connect", "resume": oversized})).await;
    assert_eq!(reply["code"], "unauthorized", "{reply}");
    assert_eq!(refused.expect_close().await, 4001);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drained_client_resuming_on_another_gateway_does_not_leave() {
    let nats = NatsServer::start();
    let (a, b) = (presence_app(&nats.url(), |_| {}).await, presence_app(&nats.url(), |_| {}).await);
    let (mut watcher, _) = user_client(&b, "walt", None).await;
    join_channel(&mut watcher, "chat.room").await;
    let (mut mover, connected) = user_client(&a, "mona", None).await;
    join_channel(&mut mover, "chat.room").await;
    let mona = joined_client(&mut watcher, "join").await;

    // Gateway A drains (1012); mona resumes on B at once and is present again.
    let resume = connected["resume"].as_str().unwrap().to_string();
    let drained = tokio::spawn(a.shutdown());
    assert_eq!(mover.expect_close().await, 1012);
    let mut moved = WsClient::connect(&b.ws_url()).await;
    assert_eq!(moved.connect_with(json!({"type": "connect", "id": 1, "resume": resume})).await["type"], "connected");
    join_channel(&mut moved, "chat.room").await;
    drained.await.unwrap().unwrap();

    // For longer than the TTL (3 s): no leave, no join of mona; she stays in the snapshot.
    assert_no_presence_events(&mut watcher, Duration::from_secs(3 * REFRESH + 2)).await;
    let seen = snapshot(&mut watcher, "chat.room").await;
    let clients: Vec<&Value> = seen["clients"].as_array().unwrap().iter().map(|c| &c["client"]).collect();
    assert!(clients.contains(&&mona), "{seen}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_gateways_clients_leave_within_the_bound_on_a_nats_cluster() {
    let (_cluster, mut gateways) = binary_cluster(2, "1").await;
    let anonymous = |url: String| async move {
        let mut client = WsClient::connect(&url).await;
        assert_eq!(client.connect_with(json!({"type": "connect", "id": 1})).await["type"], "connected");
        join_channel(&mut client, "room.a").await;
        client
    };
    let mut watcher = anonymous(gateways[1].ws_url()).await;
    let mut doomed = Vec::new();
    for _ in 0..3 {
        doomed.push(anonymous(gateways[0].ws_url()).await);
    }
    let mut joined = Vec::new();
    for _ in 0..3 {
        joined.push(joined_client(&mut watcher, "join").await);
    }
    let stats = watcher.request(json!({"type": "presence_stats", "id": 6, "event": "room.a"})).await;
    assert_eq!(stats["clients"], 4, "{stats}");

    let killed_at = Instant::now();
    gateways[0].kill9().await;
    let mut left = Vec::new();
    while left.len() < 3 {
        let frame = match watcher.recv_or_close(Duration::from_secs(15)).await {
            Ok(frame) => frame,
            Err(closed) => panic!("watcher closed: {closed:?}"),
        };
        if frame["type"] == "leave" {
            left.push(frame["client"].clone());
        }
    }
    let took = killed_at.elapsed();
    eprintln!("PRESENCE kill -9: 3 clients left after {took:?} (refresh 1 s, TTL 3 s)");
    joined.sort_by_key(|v| v.to_string());
    left.sort_by_key(|v| v.to_string());
    assert_eq!(left, joined);
    // Bound: TTL (3 x refresh) + 1 s sweep after the last refresh, plus 1 s of delivery slack.
    assert!(took <= Duration::from_secs(3 * REFRESH + 2), "left after {took:?}");
    let stats = watcher.request(json!({"type": "presence_stats", "id": 7, "event": "room.a"})).await;
    assert_eq!(stats["clients"], 1, "{stats}");
    drop(doomed);
}

/// CPU seconds (user + system) a process has used so far, from /proc (clock ticks of 1/100 s).
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit_once(')').map_or("", |(_, rest)| rest).split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

/// p50 and p99 of 2000 sequential `kind` requests on `bench.c0`.
async fn request_latency(reader: &mut WsClient, kind: &'static str) -> (Duration, Duration) {
    let mut took = Vec::new();
    for i in 0..2000u64 {
        let sent = Instant::now();
        let reply = reader.request(json!({"type": kind, "id": i, "event": "bench.c0"})).await;
        took.push(sent.elapsed());
        assert_eq!(reply["type"], kind, "{reply}");
    }
    took.sort();
    (percentile(&took, 0.5), percentile(&took, 0.99))
}

/// A performance record, not a check (bench/README.md "Presence"): the refresh cost of
/// `PRESENCE_BENCH_ENTRIES` (15000) entries on `PRESENCE_BENCH_CHANNELS` (1) channels of one node with the
/// default 10 s interval, and the latency of `presence_stats` / `presence` requests. Run:
/// `NATS_SERVER_BIN=... cargo test --test presence -- --ignored --nocapture presence_refresh_cost`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement; run by hand"]
async fn presence_refresh_cost() {
    use futures_util::StreamExt;
    let var = |name: &str, default: usize| std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default);
    let (entries, channels) = (var("PRESENCE_BENCH_ENTRIES", 15_000), var("PRESENCE_BENCH_CHANNELS", 1));
    let nats = NatsServer::start();
    let app = spawn_app_with(&nats.url(), |s| {
        s.limits.requests_per_second = 0;
        s.presence.max_channels = channels.max(1000);
    })
    .await;
    let interval = app.gateway.settings().presence.refresh_interval;
    let presence = app.gateway.presence();
    let started = Instant::now();
    let joined = futures_util::stream::iter(0..entries)
        .map(|i| async move {
            let channel = format!("bench.c{}", i % channels);
            presence.join(&channel, &format!("session-{i}"), &format!("user-{i}"), None).await.is_ok()
        })
        .buffer_unordered(64)
        .filter(|ok| std::future::ready(*ok))
        .count()
        .await;
    assert_eq!(joined, entries);
    let join_took = started.elapsed();

    // One full refresh round, with the CPU it costs the nats-server and this process (gateway + its watches).
    let refreshed = app.metric("telegraphy_presence_refreshes_total").await;
    let (nats_cpu, own_cpu) = (cpu_seconds(nats.pid().unwrap()), cpu_seconds(std::process::id()));
    let round_started = Instant::now();
    eventually_within("a refresh round", Duration::from_secs(3 * interval), || async {
        app.metric("telegraphy_presence_refreshes_total").await >= refreshed + entries as f64
    })
    .await;
    let waited = round_started.elapsed();
    let (nats_cpu, own_cpu) = (cpu_seconds(nats.pid().unwrap()) - nats_cpu, cpu_seconds(std::process::id()) - own_cpu);
    let round = app.metric("telegraphy_presence_refresh_seconds").await;

    // Request latency: one client present on channel 0 (entries / channels members).
    let token = app.token("reader", &["bench.>"]).await;
    let mut reader = WsClient::connect(&app.ws_url()).await;
    assert_eq!(reader.connect_with(json!({"type": "connect", "token": token})).await["type"], "connected");
    join_channel(&mut reader, "bench.c0").await;
    let (stats_p50, stats_p99) = request_latency(&mut reader, "presence_stats").await;
    let (snap_p50, snap_p99) = request_latency(&mut reader, "presence").await;
    let record = json!({
        "entries": entries, "channels": channels, "refresh_interval_s": interval,
        "join_s": join_took.as_secs_f64(), "joins_per_s": entries as f64 / join_took.as_secs_f64(),
        "refresh_round_s": round, "round_observed_within_s": waited.as_secs_f64(),
        "puts_per_s": entries as f64 / interval as f64,
        "nats_cpu_s_per_round": nats_cpu, "nats_cpu_pct_of_core": 100.0 * nats_cpu / interval as f64,
        "gateway_process_cpu_s_per_round": own_cpu,
        "stats_p50_us": stats_p50.as_micros(), "stats_p99_us": stats_p99.as_micros(),
        "snapshot_p50_us": snap_p50.as_micros(), "snapshot_p99_us": snap_p99.as_micros(),
    });
    eprintln!("PRESENCE BENCH {record}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_user_leaves_at_once() {
    let nats = NatsServer::start();
    // TTL 6 s: a leave within 3 s of the revocation is a delete, not an expiry.
    let app = spawn_app_with(&nats.url(), |s| s.presence.refresh_interval = 2).await;
    let (mut stays, _) = user_client(&app, "stan", None).await;
    join_channel(&mut stays, "chat.hall").await;
    let (mut revoked, _) = user_client(&app, "rex", None).await;
    join_channel(&mut revoked, "chat.hall").await;
    let rex = joined_client(&mut stays, "join").await;

    let revoked_at = Instant::now();
    let bucket = app.gateway.settings().auth.revocations_bucket.clone();
    telegraphy::node::auth::revoke(app.gateway.nats(), &bucket, &telegraphy::node::auth::user_key("rex"))
        .await
        .unwrap();
    assert_eq!(revoked.expect_close().await, 4003);
    let left = presence_event(&mut stays).await;
    assert_eq!((&left["type"], &left["client"]), (&json!("leave"), &rex), "{left}");
    assert!(revoked_at.elapsed() < Duration::from_secs(3), "leave after {:?}", revoked_at.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_takes_five_request_tokens() {
    let nats = NatsServer::start();
    // A burst of 12, refilled at 1/s: connect and subscribe leave 10.
    let app = presence_app(&nats.url(), |s| {
        s.limits.max_subscriptions = 4;
        s.limits.request_burst = 12;
        s.limits.requests_per_second = 1;
    })
    .await;
    let (mut c, _) = user_client(&app, "cara", None).await;
    join_channel(&mut c, "chat.cost").await;
    // Two snapshots take the 10 (give or take the refill while they run); a third finds too few.
    snapshot(&mut c, "chat.cost").await;
    snapshot(&mut c, "chat.cost").await;
    c.send(json!({"type": "presence", "id": 7, "event": "chat.cost"})).await;
    let refused = c.recv().await;
    assert_eq!((&refused["code"], &refused["message"]), (&json!("limit_exceeded"), &json!("too many requests")));
    assert_eq!(c.expect_close().await, 4029);
    // The same budget pays for several counts (one token each).
    let (mut d, _) = user_client(&app, "dora", None).await;
    join_channel(&mut d, "chat.cost").await;
    for id in 0..9 {
        let stats = d.request(json!({"type": "presence_stats", "id": id, "event": "chat.cost"})).await;
        assert_eq!(stats["type"], "presence_stats", "{stats}");
    }
}

/// A client present on `room.r` that follows the drains: on 1012 it resumes its session on `next` and
/// subscribes with presence again, as the JS client does.
struct Mover {
    client: WsClient,
    resume: String,
}

impl Mover {
    async fn open(url: &str) -> Self {
        let mut client = WsClient::connect(url).await;
        let connected = client.connect_with(json!({"type": "connect", "id": 1})).await;
        assert_eq!(connected["type"], "connected", "{connected}");
        join_channel(&mut client, "room.r").await;
        Mover { client, resume: connected["resume"].as_str().unwrap().to_string() }
    }

    async fn follow_drain(&mut self, next: &str) {
        assert_eq!(self.client.expect_close().await, 1012);
        self.client = WsClient::connect(next).await;
        let connected = self.client.connect_with(json!({"type": "connect", "id": 1, "resume": self.resume})).await;
        assert_eq!(connected["type"], "connected", "{connected}");
        self.resume = connected["resume"].as_str().unwrap().to_string();
        join_channel(&mut self.client, "room.r").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_does_not_flap_presence() {
    // Refresh 2 s (TTL 6 s, grace at least 4 s): the movers resume within the grace on a loaded machine too.
    let (_cluster, mut gateways) = binary_cluster(3, "2").await;
    // Every gateway has had a presence join before the drains: on a cluster this fresh, a gateway's first one can
    // wait seconds for its bucket (JetStream API requests unanswered while the cluster settles), which is not
    // what this test measures. gw-2's probe is on another channel (its leave at gw-2's drain is not room.r's).
    let mut probe = WsClient::connect(&gateways[1].ws_url()).await;
    assert_eq!(probe.connect_with(json!({"type": "connect", "id": 1})).await["type"], "connected");
    join_channel(&mut probe, "room.probe").await;
    let mut watcher = Mover::open(&gateways[2].ws_url()).await.client;
    let mut movers = Vec::new();
    for _ in 0..3 {
        movers.push(Mover::open(&gateways[0].ws_url()).await);
    }
    for _ in 0..3 {
        joined_client(&mut watcher, "join").await;
    }

    // gw-1 drains (its clients resume on gw-2) and comes back; then gw-2 drains (they resume on gw-1).
    for (stopping, next) in [(0, 1), (1, 0)] {
        gateways[stopping].sigterm();
        let next_url = gateways[next].ws_url();
        futures_util::future::join_all(movers.iter_mut().map(|mover| mover.follow_drain(&next_url))).await;
        assert_eq!(gateways[stopping].wait_exit(Duration::from_secs(10)).await, 0);
        gateways[stopping].relaunch().await;
        gateways[stopping].wait_ready(Duration::from_secs(30)).await;
    }

    // Through both drains and for a TTL (6 s) after: no join, no leave on the watcher's gateway.
    assert_no_presence_events(&mut watcher, Duration::from_secs(7)).await;
    let stats = watcher.request(json!({"type": "presence_stats", "id": 6, "event": "room.r"})).await;
    assert_eq!(stats["clients"], 4, "{stats}");
}

/// The next frame, which must be `presence_paused`/`presence_resumed` of `chat.crowd` with `clients`.
async fn assert_pause(client: &mut WsClient, kind: &str, clients: u64) {
    let frame = client.recv().await;
    assert_eq!(frame, json!({"type": kind, "sub": "chat.crowd", "clients": clients}), "expected {kind}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crowded_channel_pauses_join_leave_and_resumes_below_the_bound() {
    let nats = NatsServer::start();
    // At most 2 members for join/leave (resumed at 2 - 2/10 = 2), counted cluster-wide on two gateways.
    let bound = |s: &mut telegraphy::config::Settings| s.presence.max_join_leave_members = 2;
    let (a, b) = (presence_app(&nats.url(), bound).await, presence_app(&nats.url(), bound).await);
    let (mut alice, _) = user_client(&a, "alice", None).await;
    join_channel(&mut alice, "chat.crowd").await;
    let (mut bob, _) = user_client(&b, "bob", None).await;
    join_channel(&mut bob, "chat.crowd").await;
    assert_eq!(alice.recv().await["type"], "join", "2 members: join/leave flow");

    // carol is the third: no join for her; everyone (carol too, right after `subscribed`) is told of the pause.
    let (mut carol, _) = user_client(&a, "carol", None).await;
    join_channel(&mut carol, "chat.crowd").await;
    for client in [&mut alice, &mut bob, &mut carol] {
        assert_pause(client, "presence_paused", 3).await;
    }
    assert_eq!(
        (a.metric("telegraphy_presence_paused_channels").await, b.metric("telegraphy_presence_paused_channels").await),
        (1.0, 1.0)
    );
    // Counts and snapshots still work while paused.
    let stats = bob.request(json!({"type": "presence_stats", "id": 6, "event": "chat.crowd"})).await;
    assert_eq!(stats["clients"], 3, "{stats}");

    // dave joins and leaves, carol leaves: nobody sees those joins/leaves; the next frame of the watchers is
    // the resume at 2 members (the frames of one connection are in order).
    let (mut dave, _) = user_client(&b, "dave", None).await;
    join_channel(&mut dave, "chat.crowd").await;
    assert_pause(&mut dave, "presence_paused", 4).await;
    for client in [&mut dave, &mut carol] {
        let reply = client.request(json!({"type": "unsubscribe", "id": 8, "event": "chat.crowd"})).await;
        assert_eq!(reply["type"], "unsubscribed", "{reply}");
    }
    for client in [&mut alice, &mut bob] {
        assert_pause(client, "presence_resumed", 2).await;
    }
    assert_eq!(a.metric("telegraphy_presence_paused_channels").await, 0.0);
    // Flowing again: bob's leave reaches alice.
    bob.close().await;
    let left = alice.recv().await;
    assert_eq!((&left["type"], &left["user"]), (&json!("leave"), &json!("bob")), "{left}");
    let seen = snapshot(&mut alice, "chat.crowd").await;
    assert_eq!(users(&seen), ["alice"], "{seen}");
}

/// Abuse: n clients present on one channel. Without a bound every join goes to every member present before it:
/// n (n - 1) / 2 frames (1.25 GB and mass 4008 closes at 15 000 clients, bench/README.md). With
/// `max_join_leave_members` = B, B (B - 1) / 2 joins and one `presence_paused` per client, whatever n.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crowded_channel_costs_counts_not_n_squared_frames() {
    const N: usize = 120;
    const B: usize = 10;
    let nats = NatsServer::start();
    let app = presence_app(&nats.url(), |s| s.presence.max_join_leave_members = B).await;
    let mut clients = Vec::with_capacity(N);
    for i in 0..N {
        let (mut client, _) = user_client(&app, &format!("u{i}"), None).await;
        join_channel(&mut client, "chat.crowd").await;
        clients.push(client);
    }
    // Each client's stats reply is queued after every presence frame it was sent (one order per connection).
    let (mut joins, mut paused) = (0, 0);
    for client in &mut clients {
        client.send(json!({"type": "presence_stats", "id": 9, "event": "chat.crowd"})).await;
        let mut own_paused = 0;
        let stats = loop {
            let frame = client.recv().await;
            match frame["type"].as_str() {
                Some("join") => joins += 1,
                Some("presence_paused") => own_paused += 1,
                Some("presence_stats") => break frame,
                _ => panic!("unexpected {frame}"),
            }
        };
        assert_eq!(stats["clients"], N, "{stats}");
        assert_eq!(own_paused, 1, "one pause per client");
        paused += own_paused;
    }
    eprintln!(
        "{N} clients on one channel, bound {B}: {joins} joins + {paused} pauses (unbounded: {})",
        N * (N - 1) / 2
    );
    assert_eq!(joins, B * (B - 1) / 2, "joins only while the channel had at most {B} members");
    assert_eq!(paused, N);
}

/// Backstop: members coming and going cost every member of the channel a frame per join and leave. One member
/// churning is refused by its own budget first (`presence.user_churn_per_second`, tests/abuse/users.rs); many
/// distinct members churning together past the channel's churn budget (here 5 per second, bursts of 5) pause
/// it like a crowded one, and it resumes once it has been quiet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn churn_over_the_channels_budget_pauses_join_leave_until_the_channel_is_quiet() {
    const CYCLES: usize = 50;
    let nats = NatsServer::start();
    let app = presence_app(&nats.url(), |s| {
        s.presence.join_leave_per_second = 5;
        s.presence.join_leave_burst = 5;
        // One member stands for many distinct ones here: its own churn budget (which refuses a single churning
        // member long before the channel's, tests/abuse/users.rs) is raised, so the channel's backstop is tested.
        s.presence.user_churn_per_second = 1000;
        s.presence.user_churn_burst = 1000;
        s.limits.requests_per_second = 0; // the churner is limited by presence, not by its request rate
    })
    .await;
    let (mut watcher, _) = user_client(&app, "watcher", None).await;
    join_channel(&mut watcher, "chat.churn").await;
    let (mut churner, _) = user_client(&app, "churner", None).await;
    let started = Instant::now();
    for _ in 0..CYCLES {
        join_channel(&mut churner, "chat.churn").await;
        churner.send(json!({"type": "unsubscribe", "id": 8, "event": "chat.churn"})).await;
        // The churner is a member too: it may be told of the pause before its reply.
        let reply = loop {
            let frame = churner.recv().await;
            if frame["type"] != "presence_paused" {
                break frame;
            }
        };
        assert_eq!(reply["type"], "unsubscribed", "{reply}");
    }
    let churned_in = started.elapsed();
    // The watcher got joins/leaves up to the budget (refilled at 5/s while the churn lasted), then the pause.
    let mut events = 0;
    let paused = loop {
        let frame = watcher.recv().await;
        match frame["type"].as_str() {
            Some("join" | "leave") => events += 1,
            _ => break frame,
        }
    };
    assert_eq!(paused["type"], "presence_paused", "{paused}");
    let allowed = 5 + (5.0 * churned_in.as_secs_f64()).ceil() as usize;
    eprintln!("{} joins/leaves in {churned_in:?}: {events} sent, then paused", 2 * CYCLES);
    assert!(events <= allowed, "{events} join/leave frames > budget {allowed}");
    assert!(events < 2 * CYCLES, "paused before the churn ended");
    // Quiet again (the budget refills in 1 s): resumed with the one member left, and joins flow again.
    let resumed = watcher.recv().await;
    assert_eq!(resumed, json!({"type": "presence_resumed", "sub": "chat.churn", "clients": 1}));
    join_channel(&mut churner, "chat.churn").await;
    let joined = watcher.recv().await;
    assert_eq!((&joined["type"], &joined["user"]), (&json!("join"), &json!("churner")), "{joined}");
}

/// Sends SIGSTOP/SIGCONT to a process (freezing nats-server makes its writes hang, as an overloaded one would).
fn signal(pid: u32, sig: &str) {
    let status = std::process::Command::new("kill").args([sig, &pid.to_string()]).status().expect("kill");
    assert!(status.success(), "kill {sig} {pid}");
}

/// The next frame that is not a `join`/`leave`.
async fn reply_skipping_presence(client: &mut WsClient) -> Value {
    loop {
        let frame = client.recv().await;
        if frame["type"] != "join" && frame["type"] != "leave" {
            return frame;
        }
    }
}

/// Abuse: joins are KV writes. A node has `presence.max_writes_in_flight` of them under way at most; a join
/// finding none within 2 s is answered `internal` "presence busy, try again" (the JS client retries), before its
/// own write would have timed out (5 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_writes_beyond_the_node_budget_are_refused_busy() {
    let nats = NatsServer::start();
    let app = presence_app(&nats.url(), |s| s.presence.max_writes_in_flight = 1).await;
    let (mut a, _) = user_client(&app, "a", None).await;
    let (mut b, _) = user_client(&app, "b", None).await;
    join_channel(&mut a, "chat.warm").await; // the bucket and the watch are open
    let pid = nats.pid().expect("nats-server runs");
    signal(pid, "-STOP");
    let subscribe = |id| json!({"type": "subscribe", "id": id, "event": "chat.busy", "presence": true});
    a.send(subscribe(3)).await;
    b.send(subscribe(4)).await;
    // (With writes stuck, a's refresh of chat.warm fails too: its own `leave` there may come first.)
    let (ra, rb) = tokio::join!(reply_skipping_presence(&mut a), reply_skipping_presence(&mut b));
    signal(pid, "-CONT");
    let mut messages = [ra["message"].as_str().unwrap_or_default(), rb["message"].as_str().unwrap_or_default()];
    messages.sort();
    assert_eq!(messages, ["presence busy, try again", "presence failed, try again"], "{ra} {rb}");
    assert!(ra["code"] == "internal" && rb["code"] == "internal", "{ra} {rb}");
    assert_eq!(app.metric("telegraphy_presence_busy_total").await, 1.0);
    // NATS back: the retry the client makes succeeds.
    join_channel(&mut b, "chat.busy").await;
}
