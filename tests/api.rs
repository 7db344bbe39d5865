//! HTTP API and `/ws` origin check (proto/PROTOCOL.md section 5, issue 3) against a real nats-server:
//! `POST /api/v1/tokens` and `POST /api/v1/publish` behind the bearer key, off without one, and
//! `http.allowed_origins`.

mod common;

use common::*;
use reqwest::StatusCode;
use serde_json::{json, Value};
use telegraphy::protocol::token::{self, Keyring};
use tokio_tungstenite::tungstenite::{client::IntoClientRequest, http::HeaderValue};

const API_KEY: &str = "test-api-key-0123456789";

async fn api_app(nats: &NatsServer) -> TestApp {
    spawn_app_with(&nats.url(), |s| s.http.api_key = API_KEY.into()).await
}

/// POSTs `body` (raw text, sent as JSON) with an optional bearer key; returns status and body text.
async fn post(app: &TestApp, path: &str, bearer: Option<&str>, body: &str) -> (StatusCode, String) {
    let mut request = reqwest::Client::new()
        .post(app.http(path))
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body.to_string());
    if let Some(key) = bearer {
        request = request.bearer_auth(key);
    }
    let response = tokio::time::timeout(WAIT, request.send()).await.expect("HTTP timeout").expect("HTTP request");
    let status = response.status();
    (status, response.text().await.unwrap())
}

async fn post_json(app: &TestApp, path: &str, body: Value) -> (StatusCode, Value) {
    let (status, text) = post(app, path, Some(API_KEY), &body.to_string()).await;
    (status, serde_json::from_str(&text).unwrap_or_else(|_| panic!("{path}: not JSON: {text:?}")))
}

/// Asserts a 400 with `{"error":"bad_request","message":<non-empty>}` and returns the message.
async fn assert_bad_request(app: &TestApp, path: &str, body: &str) -> String {
    let (status, text) = post(app, path, Some(API_KEY), body).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{path} {body}: {text}");
    let reply: Value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("{body}: not JSON: {text}"));
    assert_eq!(reply["error"], "bad_request", "{body}: {reply}");
    let message = reply["message"].as_str().unwrap_or_default().to_string();
    assert!(!message.is_empty(), "{body}: 400 without a message: {reply}");
    message
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_api_key_the_api_is_off() {
    let nats = NatsServer::start();
    let app = spawn_app(&nats.url()).await;
    let valid_token = json!({"user":"u","allow":["x.>"]}).to_string();
    let valid_publish = json!({"event":"x.y","data":{}}).to_string();
    for (path, body) in [
        ("/api/v1/tokens", valid_token.as_str()),
        ("/api/v1/tokens", "not json"),
        ("/api/v1/publish", valid_publish.as_str()),
        ("/api/v1/publish", "{}"),
    ] {
        for bearer in [None, Some(""), Some(API_KEY)] {
            let (status, text) = post(&app, path, bearer, body).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{path} {body} {bearer:?}: {text}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_or_missing_bearer_key_gets_401_before_the_body_is_looked_at() {
    let nats = NatsServer::start();
    let app = api_app(&nats).await;
    let valid = json!({"user":"u","allow":["x.>"],"ttl":30}).to_string();
    let wrong_key = format!("{API_KEY}x");
    for path in ["/api/v1/tokens", "/api/v1/publish"] {
        for body in [valid.as_str(), "not json", "{}"] {
            for bearer in [None, Some(""), Some("wrong"), Some(wrong_key.as_str()), Some(&API_KEY[..API_KEY.len() - 1])]
            {
                let (status, text) = post(&app, path, bearer, body).await;
                assert_eq!(status, StatusCode::UNAUTHORIZED, "{path} {body} {bearer:?}: {text}");
                assert!(!text.contains(API_KEY), "the key is never echoed");
            }
        }
    }
    // Another scheme carrying the right key is not accepted either.
    let response = reqwest::Client::new()
        .post(app.http("/api/v1/tokens"))
        .header("Authorization", format!("Basic {API_KEY}"))
        .json(&json!({"allow":["x.>"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(response.headers()["www-authenticate"], "Bearer");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn minted_tokens_work_once_over_websocket() {
    let nats = NatsServer::start();
    let app = api_app(&nats).await;
    let (status, reply) = post_json(&app, "/api/v1/tokens", json!({"user":"u","allow":["x.>"],"ttl":30})).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(reply["expires_in"], 30);
    let token = reply["token"].as_str().unwrap().to_string();
    assert!(token.starts_with("tg1."));
    let (_, claims) = Keyring::new(&[SECRET.to_string()]).unwrap().verify(&token, token::now_unix()).unwrap();
    assert_eq!(
        (claims.sub.as_str(), claims.allow.clone(), claims.exp - claims.iat),
        ("u", vec!["x.>".to_string()], 30)
    );

    let mut client = WsClient::connect(&app.ws_url()).await;
    let connected = client.connect_with(json!({"type":"connect","id":1,"token":token})).await;
    assert_eq!(connected["type"], "connected", "{connected}");
    client.subscribe("x.y").await;
    client.send(json!({"type":"subscribe","id":3,"event":"y.z"})).await;
    assert_eq!(client.recv().await["code"], "forbidden");

    let mut replay = WsClient::connect(&app.ws_url()).await;
    let refused = replay.connect_with(json!({"type":"connect","id":1,"token":token})).await;
    assert_eq!(refused["code"], "unauthorized");
    assert_eq!(replay.expect_close().await, 4001);

    // Defaults: anonymous user, auth.token_ttl.
    let (status, reply) = post_json(&app, "/api/v1/tokens", json!({"allow":[]})).await;
    assert_eq!((status, reply["expires_in"].as_u64()), (StatusCode::OK, Some(60)), "{reply}");
    let (_, claims) = Keyring::new(&[SECRET.to_string()])
        .unwrap()
        .verify(reply["token"].as_str().unwrap(), token::now_unix())
        .unwrap();
    assert_eq!(claims.sub, "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn minting_retries_until_the_token_bucket_answers() {
    // The node caches the bucket; one deleted behind its back (like a stream without a leader during a
    // JetStream election) fails the create: the mint retries, re-creating the bucket, and answers 200.
    let nats = NatsServer::start();
    let app = api_app(&nats).await;
    let mint = json!({"user":"u","allow":["x.>"]});
    assert_eq!(post_json(&app, "/api/v1/tokens", mint.clone()).await.0, StatusCode::OK);
    let js = async_nats::jetstream::new(publisher(&nats.url()).await);
    js.delete_key_value("telegraphy_tokens").await.expect("delete the token bucket");

    let (status, reply) = post_json(&app, "/api/v1/tokens", mint).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    let token = reply["token"].as_str().unwrap().to_string();
    let jti = Keyring::new(&[SECRET.to_string()]).unwrap().verify(&token, token::now_unix()).unwrap().1.jti;
    let kv = js.get_key_value("telegraphy_tokens").await.expect("the bucket is back");
    assert_eq!(kv.get(&jti).await.unwrap().as_deref(), Some(&b"1"[..]));
    let mut client = WsClient::connect(&app.ws_url()).await;
    let connected = client.connect_with(json!({"type":"connect","id":1,"token":token})).await;
    assert_eq!(connected["type"], "connected", "{connected}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_mint_requests_get_400_with_a_message() {
    let nats = NatsServer::start();
    let app = api_app(&nats).await;
    let message = assert_bad_request(&app, "/api/v1/tokens", r#"{"user":"u","allow":["x..y"]}"#).await;
    assert!(message.contains("x..y"), "names the bad pattern: {message}");
    assert_bad_request(&app, "/api/v1/tokens", r#"{"user":"u","allow":["x.>.y"]}"#).await;
    let message = assert_bad_request(&app, "/api/v1/tokens", r#"{"user":"u","allow":["x.>"],"ttl":0}"#).await;
    assert!(message.contains("ttl"), "{message}");
    let message = assert_bad_request(&app, "/api/v1/tokens", r#"{"user":"u","allow":["x.>"],"ttl":7200}"#).await;
    assert!(message.contains("ttl"), "{message}");
    for body in [
        r#"{"user":"u","allow":["x.>"],"ttl":-1}"#,
        r#"{"user":"u","allow":["x.>"],"ttl":"30"}"#,
        r#"{"user":"u","allow":["x.>"],"ttl":1.5}"#,
        r#"{"user":"u"}"#,
        r#"{"user":"u","allow":"x.>"}"#,
        r#"{"user":7,"allow":[]}"#,
        r#"{"user":"u","allow":[],"admin":true}"#,
        "not json",
        "",
    ] {
        assert_bad_request(&app, "/api/v1/tokens", body).await;
    }
    let too_many: Vec<String> = (0..65).map(|i| format!("p.{i}")).collect();
    assert_bad_request(&app, "/api/v1/tokens", &json!({"allow": too_many}).to_string()).await;
    assert_bad_request(&app, "/api/v1/tokens", &json!({"user": "u".repeat(256), "allow": []}).to_string()).await;
    // The presence `info` claim: an object of at most 256 bytes (checked before any KV write).
    let message =
        assert_bad_request(&app, "/api/v1/tokens", &json!({"allow": [], "info": {"n": "x".repeat(256)}}).to_string())
            .await;
    assert!(message.contains("256 bytes"), "{message}");
    let message = assert_bad_request(&app, "/api/v1/tokens", r#"{"allow":[],"info":"Alice"}"#).await;
    assert!(message.contains("object"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn minted_tokens_carry_the_presence_info_claim() {
    let nats = NatsServer::start();
    let app = api_app(&nats).await;
    let body = json!({"user": "alice", "allow": ["x.>"], "info": {"name": "Alice"}});
    let (status, reply) = post_json(&app, "/api/v1/tokens", body).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    let token = reply["token"].as_str().unwrap();
    let (_, claims) = Keyring::new(&[SECRET.to_string()]).unwrap().verify(token, token::now_unix()).unwrap();
    assert_eq!(claims.info, Some(json!({"name": "Alice"})));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn published_events_reach_subscribed_websocket_clients() {
    let nats = NatsServer::start();
    let app = spawn_app_with(&nats.url(), |s| {
        s.http.api_key = API_KEY.into();
        s.limits.max_event_bytes = 1000;
    })
    .await;
    let mut client = app.client(&["chat.>"]).await;
    client.subscribe("chat.lobby.*").await;
    app.flush().await;

    let data = json!({"text":"hello","n":[1,2.5,null],"nested":{"ok":true}});
    let (status, reply) = post_json(&app, "/api/v1/publish", json!({"event":"chat.lobby.message","data":data})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{reply}");
    let event = client.next_event().await;
    assert_eq!(
        (&event["sub"], &event["name"], &event["data"]),
        (&json!("chat.lobby.*"), &json!("chat.lobby.message"), &data)
    );
    assert_eq!(app.metric("telegraphy_http_published_total").await, 1.0);

    for event in ["chat.*.message", "chat.>", "chat..message", "", "chat.lobby message"] {
        let message = assert_bad_request(&app, "/api/v1/publish", &json!({"event":event,"data":{}}).to_string()).await;
        assert!(message.contains("event"), "{event:?}: {message}");
    }
    assert_bad_request(&app, "/api/v1/publish", r#"{"event":"chat.lobby.message"}"#).await;
    assert_bad_request(&app, "/api/v1/publish", r#"{"data":{}}"#).await;
    let big = json!({"event":"chat.lobby.message","data":{"blob":"x".repeat(2000)}}).to_string();
    assert_bad_request(&app, "/api/v1/publish", &big).await;

    // Nothing of the refused requests was published: the next event is the marker.
    let (status, _) = post_json(&app, "/api/v1/publish", json!({"event":"chat.lobby.marker","data":1})).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(client.next_event().await["name"], "chat.lobby.marker");
}

/// Opens `/ws` with an optional `Origin` header; returns the refusal status, or the open socket.
async fn ws_with_origin(app: &TestApp, origin: Option<&str>) -> Result<WsClient, u16> {
    let mut request = app.ws_url().into_client_request().unwrap();
    if let Some(origin) = origin {
        request.headers_mut().insert("Origin", HeaderValue::from_str(origin).unwrap());
    }
    match tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(request)).await.expect("ws connect timeout") {
        Ok((ws, _)) => Ok(WsClient { ws, auto_pong: true }),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => Err(response.status().as_u16()),
        Err(e) => panic!("unexpected ws error: {e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_origins_gate_the_websocket_upgrade() {
    let nats = NatsServer::start();
    let app = spawn_app_with(&nats.url(), |s| {
        s.http.allowed_origins = vec!["https://app.example".into(), "http://localhost:8000".into()]
    })
    .await;
    for origin in [Some("https://evil.example"), Some("https://app.example.evil"), Some("http://app.example"), None] {
        assert_eq!(ws_with_origin(&app, origin).await.err(), Some(403), "{origin:?}");
    }
    assert!(app.metric("telegraphy_connections_refused_total").await >= 4.0);
    for origin in ["https://app.example", "http://localhost:8000"] {
        let mut client = ws_with_origin(&app, Some(origin)).await.unwrap_or_else(|s| panic!("{origin}: {s}"));
        let token = app.token("u", &["x.>"]).await;
        let connected = client.connect_with(json!({"type":"connect","id":1,"token":token})).await;
        assert_eq!(connected["type"], "connected", "{origin}: {connected}");
    }

    // Without the setting any origin may connect.
    let open = spawn_app(&nats.url()).await;
    assert!(ws_with_origin(&open, Some("https://evil.example")).await.is_ok());
}
