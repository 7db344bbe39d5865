//! What only the SSE transport has (PROTOCOL.md section 10.1), against a real nats-server and an in-process
//! gateway: the checks of the opening request, POST answers, CORS, `Last-Event-ID`, the `close` event, a client
//! going away, draining, and the abuse cases (oversized or too many opening frames, a flood of POSTs, a full
//! inbound channel). The protocol itself on SSE is tests/transports.rs.

mod common;

use std::time::Duration;

use common::{
    transport::{frames_param, post_status, SseClient},
    *,
};
use futures_util::StreamExt;
use serde_json::{json, Value};

fn connect(token: &str) -> Value {
    json!({"type": "connect", "id": 1, "token": token})
}

/// The status and body of a refused `GET /sse?{query}`.
async fn refused(app: &TestApp, query: &str, headers: &[(&str, &str)]) -> (u16, String) {
    match SseClient::try_open(&app.http(""), query, headers).await {
        Ok(_) => panic!("GET /sse?{query} was accepted"),
        Err(refusal) => refusal,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_opening_frames_are_checked_before_anything_else() {
    let nats = NatsServer::start();
    let app = spawn_app_with(&nats.url(), |s| {
        s.limits.max_frame_bytes = 1024;
        s.limits.max_subscriptions = 3;
    })
    .await;
    let ping = frames_param(&[json!({"type": "ping"})]);
    let many = |n: usize| format!("[{}]", vec!["{}"; n].join(","));
    let cases: Vec<Case> = vec![
        (String::new(), vec![], "frames missing"),
        (format!("frames={ping}"), vec![("X-Telegraphy-Frames", "[]".into())], "given twice"),
        (format!("frames={ping}&frames={ping}"), vec![], "given twice"),
        // Size before parsing: over the limit and not JSON says "larger", not "JSON".
        (format!("frames={}", "x".repeat(1025)), vec![], "larger than limits.max_frame_bytes"),
        (String::new(), vec![("X-Telegraphy-Frames", "x".repeat(1025))], "larger than limits.max_frame_bytes"),
        // Count before parsing the rest: the 6th element is refused, the broken tail never read.
        (format!("frames={}", urlencode(&format!("[{}, not JSON at all", ["{}"; 6].join(",")))), vec![], "more frames"),
        (String::new(), vec![("X-Telegraphy-Frames", many(6))], "more frames"),
        (format!("frames={}", urlencode(&many(5))), vec![], "__accepted__"),
        (format!("frames={}", urlencode(r#"{"type":"ping"}"#)), vec![], "JSON array of JSON objects"),
        (format!("frames={}", urlencode(r#"[{"type":"ping"}, 1]"#)), vec![], "JSON array of JSON objects"),
        (format!("frames={}", urlencode(r#"[{"type":"ping"}"#)), vec![], "JSON array of JSON objects"),
        (format!("frames={ping}&last_event_id=abc"), vec![], "Last-Event-ID must be"),
        (format!("frames={ping}"), vec![("Last-Event-ID", "e:01".into())], "Last-Event-ID must be"),
        (format!("frames={ping}&last_event_id=e:1"), vec![("Last-Event-ID", "e:1".into())], "given twice"),
    ];
    for (query, headers, expected) in cases {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        if expected == "__accepted__" {
            // max_subscriptions + 2 = 5 frames are fine (the gateway answers each empty object as a bad frame).
            let _ = SseClient::try_open(&app.http(""), &query, &headers).await.expect("5 frames accepted");
            continue;
        }
        let (status, body) = refused(&app, &query, &headers).await;
        assert_eq!(status, 400, "{query:.80} {headers:?}: {body}");
        assert!(body.contains(expected), "{query:.80} {headers:?}: {body:?} should say {expected:?}");
    }
    eventually("no connection left", || async { app.gateway.connection_count() == 0 }).await;
    assert_eq!(app.metric("telegraphy_connections_total").await, 1.0, "only the accepted one was admitted");
}

/// A refused opening: its query, headers and what the 400's body says.
type Case = (String, Vec<(&'static str, String)>, &'static str);

fn urlencode(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, percent_encoding::NON_ALPHANUMERIC).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn posts_are_answered_202_404_413_and_arrays_are_split_into_frames() {
    let nats = NatsServer::start();
    let app = spawn_app_with(&nats.url(), |s| {
        s.limits.max_frame_bytes = 1024;
        s.limits.max_subscriptions = 2;
    })
    .await;
    let http = reqwest::Client::new();
    let mut client = SseClient::open(&app.http(""), &[connect(&app.token("tester", &["a.>"]).await)]).await;
    let url = app.http(&format!("/sse/{}", client.stream));
    assert_eq!(client.recv_or_close(WAIT).await.unwrap()["type"], "connected");

    let pings = r#" [{"type":"ping","id":1}, {"type":"ping","id":2}] "#;
    assert_eq!(post_status(&http, &url, pings.into()).await, 202);
    assert_eq!(client.recv_or_close(WAIT).await.unwrap(), json!({"type":"pong","id":1}));
    assert_eq!(client.recv_or_close(WAIT).await.unwrap(), json!({"type":"pong","id":2}));
    // Not JSON: the connection's bad frame, answered on the stream as on a WebSocket.
    assert_eq!(post_status(&http, &url, "nope".into()).await, 202);
    assert_eq!(client.recv_or_close(WAIT).await.unwrap()["code"], "bad_request");

    assert_eq!(post_status(&http, &app.http("/sse/AAAAAAAAAAAAAAAAAAAAAA"), "{}".into()).await, 404);
    // Over max_frame_bytes: by its Content-Length, and (chunked, no length) by the bytes read.
    assert_eq!(post_status(&http, &url, format!(r#"{{"type":"ping","pad":"{}"}}"#, "x".repeat(1024))).await, 413);
    let chunks = futures_util::stream::iter((0..8).map(|_| Ok::<_, std::io::Error>(vec![b' '; 200])));
    let chunked = http.post(&url).body(reqwest::Body::wrap_stream(chunks)).send().await.unwrap();
    assert_eq!(chunked.status().as_u16(), 413);
    // More frames than max_subscriptions + 2 in one body: it could never fit, too large too.
    let too_many = format!("[{}]", [r#"{"type":"pong"}"#; 5].join(","));
    assert_eq!(post_status(&http, &url, too_many).await, 413);
    // Nothing of the refused bodies arrived: the next frame answers the next request.
    assert_eq!(post_status(&http, &url, r#"{"type":"ping","id":9}"#.into()).await, 202);
    assert_eq!(client.recv_or_close(WAIT).await.unwrap(), json!({"type":"pong","id":9}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_inbound_channel_answers_429_and_takes_nothing() {
    let nats = NatsServer::start();
    let app = spawn_app_with(&nats.url(), |s| s.limits.max_subscriptions = 2).await;
    // Something holds the sync subject and never answers: a new node subscription waits 5 s for its
    // confirmation (src/node/hub.rs), and the connection's session with it, while posted frames pile up.
    let nc = publisher(&nats.url()).await;
    let mut sync = nc.subscribe("telegraphy_sync").await.unwrap();
    nc.publish("telegraphy_sync", "probe".into()).await.unwrap();
    tokio::time::timeout(WAIT, sync.next()).await.expect("the sync subject's subscription is live");

    let mut client = SseClient::open(&app.http(""), &[connect(&app.token("tester", &["a.>"]).await)]).await;
    assert_eq!(client.recv_or_close(WAIT).await.unwrap()["type"], "connected");
    assert_eq!(client.post(r#"{"type":"subscribe","id":2,"event":"a.>"}"#).await, 202);
    let mut accepted = 0;
    let refused = loop {
        let status = client.post(&json!({"type": "ping", "id": 100 + accepted}).to_string()).await;
        if status != 202 {
            break status;
        }
        accepted += 1;
        assert!(accepted <= 5, "the channel holds max_subscriptions + 2 = 4 frames, not {accepted}");
    };
    assert_eq!(refused, 429);
    assert!(accepted >= 3, "at least 4 frames fit, the subscribe being one of them: {accepted}");
    let reply = client.recv_or_close(Duration::from_secs(15)).await.unwrap();
    assert_eq!(reply["type"], "subscribed", "{reply}");
    for id in 0..accepted {
        assert_eq!(client.recv_or_close(WAIT).await.unwrap(), json!({"type":"pong","id":100 + id}));
    }
    // The refused ping was not taken: the next frame answers the next request.
    assert_eq!(client.post(r#"{"type":"ping","id":7}"#).await, 202);
    assert_eq!(client.recv_or_close(WAIT).await.unwrap(), json!({"type":"pong","id":7}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_posts_is_closed_with_4029() {
    let nats = NatsServer::start();
    let app = spawn_app_with(&nats.url(), |s| {
        s.limits.max_subscriptions = 2;
        s.limits.request_burst = 4;
        s.limits.requests_per_second = 1;
    })
    .await;
    let mut client = SseClient::open(&app.http(""), &[connect(&app.token("tester", &["a.>"]).await)]).await;
    assert_eq!(client.recv_or_close(WAIT).await.unwrap()["type"], "connected");
    let mut posted = 0;
    while posted < 50 {
        match client.post(r#"{"type":"ping"}"#).await {
            202 => posted += 1,
            404 => break, // closed: the stream is gone
            other => assert_eq!(other, 429, "only 202, 429 or 404"),
        }
    }
    assert!(posted >= 3, "the burst of 4 (connect included) admits 3 pings");
    client.auto_pong = false;
    // Pongs for the admitted pings, then the error.
    let error = loop {
        match client.recv_or_close(WAIT).await {
            Ok(frame) if frame["type"] == "pong" => continue,
            other => break other,
        }
    };
    let error = error.expect("an error frame before the close");
    assert_eq!((&error["code"], &error["message"]), (&json!("limit_exceeded"), &json!("too many requests")));
    match client.recv_or_close(WAIT).await {
        Err(Closed::Code(code, reason)) => assert_eq!((code, reason.as_str()), (4029, "too many requests")),
        other => panic!("expected close 4029, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_headers_and_preflights() {
    let nats = NatsServer::start();
    let app = spawn_app_with(&nats.url(), |s| s.http.allowed_origins = vec!["https://app.test".into()]).await;
    let frames = format!("frames={}", frames_param(&[json!({"type": "ping", "id": 1})]));
    let client = SseClient::try_open(&app.http(""), &frames, &[("Origin", "https://app.test")]).await.unwrap();
    let header = |name: &str| client.headers.get(name).map(|v| v.to_str().unwrap().to_string());
    assert_eq!(header("content-type").as_deref(), Some("text/event-stream"));
    assert_eq!(header("cache-control").as_deref(), Some("no-cache"));
    assert_eq!(header("x-accel-buffering").as_deref(), Some("no"));
    assert_eq!(header("access-control-allow-origin").as_deref(), Some("https://app.test"));
    let (status, _) = refused(&app, &frames, &[("Origin", "https://evil.test")]).await;
    assert_eq!(status, 403);
    let (status, _) = refused(&app, &frames, &[]).await;
    assert_eq!(status, 403, "an Origin is required when allowed_origins is set");

    let http = reqwest::Client::new();
    for path in ["/sse", "/sse/some-stream"] {
        let preflight = |origin: &'static str| {
            http.request(reqwest::Method::OPTIONS, app.http(path))
                .header("Origin", origin)
                .header("Access-Control-Request-Method", "POST")
                .send()
        };
        let ok = preflight("https://app.test").await.unwrap();
        assert_eq!(ok.status().as_u16(), 204, "{path}");
        let h = |name: &str| ok.headers().get(name).map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
        assert_eq!(h("access-control-allow-origin"), "https://app.test");
        assert!(h("access-control-allow-methods").contains("POST"));
        assert!(h("access-control-allow-headers").contains("X-Telegraphy-Frames"));
        assert_eq!(preflight("https://evil.test").await.unwrap().status().as_u16(), 403, "{path}");
    }
    // A POST from an origin not allowed is refused before the stream is looked at.
    let url = app.http(&format!("/sse/{}", client.stream));
    let post = http.post(&url).header("Origin", "https://evil.test").body(r#"{"type":"ping"}"#).send().await.unwrap();
    assert_eq!(post.status().as_u16(), 403);
    // From the allowed origin it reaches the stream, which has not connected (its frames hold no `connect`): 409.
    let post = http.post(&url).header("Origin", "https://app.test").body(r#"{"type":"ping"}"#).send().await.unwrap();
    assert_eq!(post.status().as_u16(), 409);
    assert_eq!(post.headers()["access-control-allow-origin"], "https://app.test");

    // Without allowed_origins, any origin: `*`.
    let open = spawn_app(&nats.url()).await;
    let client = SseClient::try_open(&open.http(""), &frames, &[("Origin", "https://any.test")]).await.unwrap();
    assert_eq!(client.headers["access-control-allow-origin"], "*");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_event_id_recovers_through_the_header_or_the_query() {
    let nats = NatsServer::start();
    let app = spawn_app(&nats.url()).await;
    let publisher = publisher(&nats.url()).await;
    let subscribe = json!({"type": "subscribe", "id": 2, "event": "h.>"});
    let mut first =
        SseClient::open(&app.http(""), &[connect(&app.token("tester", &["h.>"]).await), subscribe.clone()]).await;
    assert_eq!(first.recv_or_close(WAIT).await.unwrap()["type"], "connected");
    assert_eq!(first.recv_or_close(WAIT).await.unwrap()["type"], "subscribed");
    // A payload with line breaks still comes as one `data:` line (the client asserts it) and the same JSON.
    publish(&publisher, "h.1", "{\n  \"n\": 1\r\n}").await;
    let event = first.recv_or_close(WAIT).await.unwrap();
    assert_eq!(event["data"], json!({"n": 1}));
    let last_id = first.last_id.clone().expect("events carry an id");
    assert_eq!(last_id, format!("{}:{}", event["epoch"].as_str().unwrap(), event["seq"]));
    drop(first);
    publish(&publisher, "h.2", "2").await;
    publish(&publisher, "h.3", "3").await;

    for by_header in [true, false] {
        let frames = frames_param(&[connect(&app.token("tester", &["h.>"]).await), subscribe.clone()]);
        let (query, headers) = if by_header {
            (format!("frames={frames}"), vec![("Last-Event-ID", last_id.as_str())])
        } else {
            (format!("frames={frames}&last_event_id={}", urlencode(&last_id)), vec![])
        };
        let mut again = SseClient::try_open(&app.http(""), &query, &headers).await.unwrap();
        assert_eq!(again.recv_or_close(WAIT).await.unwrap()["type"], "connected");
        let reply = again.recv_or_close(WAIT).await.unwrap();
        assert_eq!(reply["recovered"], true, "by_header {by_header}: {reply}");
        assert_eq!(again.recv_or_close(WAIT).await.unwrap()["data"], 2);
        assert_eq!(again.recv_or_close(WAIT).await.unwrap()["data"], 3);
    }
}

/// The next protocol frame other than `ping`, and the SSE `id:` it came with, which must be exactly the frame's
/// history position (`<epoch>:<seq>`) for an `event` or `position` frame carrying one, and absent otherwise.
async fn frame_and_id(client: &mut SseClient) -> (Value, Option<String>) {
    loop {
        let message = client.next_message(WAIT).await.expect("a message");
        assert_eq!(message.event, None, "{message:?}");
        let frame: Value = serde_json::from_str(&message.data).expect("gateway sent JSON");
        if frame["type"] == "ping" {
            continue;
        }
        let position = match (frame["type"].as_str(), &frame["epoch"], &frame["seq"]) {
            (Some("event" | "position"), Value::String(epoch), Value::Number(seq)) => Some(format!("{epoch}:{seq}")),
            _ => None,
        };
        assert_eq!(message.id, position, "{frame}");
        return (frame, message.id);
    }
}

/// Every frame delivered with a history position (live events, events replayed for `Last-Event-ID`, `position`
/// frames) arrives with the SSE `id:` of exactly that position, and no other frame has one, whatever the
/// payload imitates.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_positioned_frame_arrives_with_its_position_as_sse_id() {
    let nats = NatsServer::start();
    let app = spawn_app_with(&nats.url(), |s| s.history.position_interval = 1).await;
    let publisher = publisher(&nats.url()).await;
    let subscribe = json!({"type": "subscribe", "id": 2, "event": "h.>"});
    let token = app.token("tester", &["h.>"]).await;
    let mut client = SseClient::open(&app.http(""), &[connect(&token), subscribe.clone()]).await;
    assert_eq!(frame_and_id(&mut client).await.0["type"], "connected");
    let (subscribed, id) = frame_and_id(&mut client).await;
    assert_eq!((subscribed["type"].as_str(), id), (Some("subscribed"), None), "{subscribed}");
    let epoch = subscribed["epoch"].as_str().expect("history is on").to_string();

    let payloads = [
        "1",
        r#"{"seq":99,"epoch":"fake"}"#,
        r#""x\",\"seq\":5,\"epoch\":\"ab""#,
        "{\n  \"n\": 1\r\n}",
        r#"["seq",5]"#,
    ];
    let mut ids = Vec::new();
    for (i, payload) in payloads.iter().enumerate() {
        publish(&publisher, &format!("h.{i}"), payload).await;
        let (event, id) = frame_and_id(&mut client).await;
        assert_eq!((event["type"].as_str(), event["epoch"].as_str()), (Some("event"), Some(epoch.as_str())));
        assert_eq!(event["data"], serde_json::from_str::<Value>(payload).unwrap());
        ids.push(id.expect("a live event with a position has an id"));
    }
    // A quiet subscription's position moves on: the `position` frame's id is its position.
    publish(&publisher, "other.x", "0").await;
    let (position, id) = frame_and_id(&mut client).await;
    assert_eq!(position["type"], "position", "{position}");
    assert!(id.is_some());
    drop(client);

    publish(&publisher, "h.5", "5").await;
    publish(&publisher, "h.6", r#"{"epoch":"e","seq":1}"#).await;
    let headers = [("Last-Event-ID", ids[2].as_str())];
    // Tokens are single-use: a new one for the new connection.
    let token = app.token("tester", &["h.>"]).await;
    let query = format!("frames={}", frames_param(&[connect(&token), subscribe]));
    let mut again = SseClient::try_open(&app.http(""), &query, &headers).await.unwrap();
    assert_eq!(frame_and_id(&mut again).await.0["type"], "connected");
    assert_eq!(frame_and_id(&mut again).await.0["recovered"], true);
    for name in ["h.3", "h.4", "h.5", "h.6"] {
        let (event, id) = frame_and_id(&mut again).await;
        assert_eq!(event["name"], name, "{event}");
        assert!(id.is_some(), "a replayed event has an id: {event}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_close_event_ends_the_response() {
    let nats = NatsServer::start();
    let app = spawn_app(&nats.url()).await;
    let mut client = SseClient::open(&app.http(""), &[connect("tg1.not.a-token")]).await;
    let error = client.recv_or_close(WAIT).await.unwrap();
    assert_eq!(error["code"], "unauthorized");
    // recv_or_close also checks that the response ends right after `event: close`.
    match client.recv_or_close(WAIT).await {
        Err(Closed::Code(code, _)) => assert_eq!(code, 4001),
        other => panic!("expected close 4001, got {other:?}"),
    }
    let stream = client.stream.clone();
    eventually("the stream left the node", || async { app.gateway.sse_stream_count() == 0 }).await;
    assert_eq!(app.gateway.connection_count(), 0);
    let http = reqwest::Client::new();
    assert_eq!(post_status(&http, &app.http(&format!("/sse/{stream}")), "{}".into()).await, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_goes_away_leaves_the_node() {
    let nats = NatsServer::start();
    let app = spawn_app(&nats.url()).await;
    let mut client = SseClient::open(&app.http(""), &[connect(&app.token("tester", &["a.>"]).await)]).await;
    // Client frames are taken once `connect` succeeded (409 before, section 10.1): wait for `connected`.
    assert_eq!(client.recv_or_close(WAIT).await.unwrap()["type"], "connected");
    assert_eq!(client.post(r#"{"type":"subscribe","id":2,"event":"a.>"}"#).await, 202);
    assert_eq!(client.recv_or_close(WAIT).await.unwrap()["type"], "subscribed");
    assert_eq!((app.gateway.connection_count(), app.gateway.sse_stream_count()), (1, 1));
    assert_eq!(app.gateway.node_subscriptions().await, 1);
    drop(client); // closes its TCP connection; the heartbeat (25 s) is far off
    eventually("the connection left the node", || async {
        app.gateway.connection_count() == 0 && app.gateway.sse_stream_count() == 0
    })
    .await;
    eventually("its subscription left the hub", || async { app.gateway.node_subscriptions().await == 0 }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admission_refuses_over_the_ip_quota_with_429_and_when_draining_with_503_closing_the_connection() {
    let nats = NatsServer::start();
    let app = spawn_app_with(&nats.url(), |s| s.limits.max_connections_per_ip = 1).await;
    let frames = format!("frames={}", frames_param(&[json!({"type": "ping"})]));
    let first = SseClient::try_open(&app.http(""), &frames, &[]).await.expect("the first stream opens");
    assert_eq!(refused(&app, &frames, &[]).await, (429, "too many connections from this address\n".into()));
    drop(first);
    eventually("the first stream's connection left", || async { app.gateway.connection_count() == 0 }).await;
    let _second = SseClient::try_open(&app.http(""), &frames, &[]).await.expect("room again");
    app.gateway.start_draining();
    assert_eq!(refused(&app, &frames, &[]).await.0, 503);
    // A draining node's answers close their HTTP connection: a browser's keep-alive would hold up the stop.
    let refusal = reqwest::get(app.http(&format!("/sse?{frames}"))).await.expect("GET /sse");
    assert_eq!(refusal.status(), 503);
    assert_eq!(refusal.headers().get("connection").map(|v| v.as_bytes()), Some(&b"close"[..]));
}
