//! Issue 11 part 5 (gateway side): with `http.admin_bind`, `/metrics` and `/api/v1/*` (which mints tokens and
//! publishes events) are served only on that internal listener, not on the public one browsers reach.

use serde_json::json;

use crate::common::*;

const API_KEY: &str = "admin-listener-test-key";

async fn status(url: String, post: bool) -> u16 {
    let client = reqwest::Client::new();
    let request = if post {
        client.post(&url).bearer_auth(API_KEY).json(&json!({"user":"alice","allow":["a.>"],"ttl":60}))
    } else {
        client.get(&url)
    };
    request.send().await.unwrap_or_else(|e| panic!("{url}: {e}")).status().as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_and_api_move_to_the_admin_listener() {
    let nats = NatsServer::start();
    let app = spawn_app_with(&nats.url(), |s| {
        s.http.api_key = API_KEY.into();
        s.http.admin_bind = "127.0.0.1:0".into();
    })
    .await;
    let admin = app.admin_addr.expect("the admin listener is bound");
    assert_ne!(admin, app.addr);
    let public = |path: &str| format!("http://{}{path}", app.addr);
    let internal = |path: &str| format!("http://{admin}{path}");
    // Public: health and WebSockets only.
    assert_eq!(status(public("/metrics"), false).await, 404);
    assert_eq!(status(public("/api/v1/tokens"), true).await, 404);
    assert_eq!(status(public("/api/v1/publish"), true).await, 404);
    assert_eq!(status(public("/healthz"), false).await, 200);
    assert_eq!(status(public("/readyz"), false).await, 200);
    let mut client = app.client(&["a.>"]).await;
    client.subscribe("a.b").await;
    // Internal: metrics, API and health; no WebSockets.
    assert_eq!(status(internal("/metrics"), false).await, 200);
    assert_eq!(status(internal("/api/v1/tokens"), true).await, 200);
    assert_eq!(status(internal("/healthz"), false).await, 200);
    assert_eq!(status(internal("/readyz"), false).await, 200);
    assert!(WsClient::try_connect(&format!("ws://{admin}/ws")).await.is_err(), "no WebSocket on the admin listener");
    assert_eq!(app.metric("telegraphy_connects_total{result=\"ok\"}").await, 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_admin_bind_everything_stays_on_the_public_listener() {
    let nats = NatsServer::start();
    let app = spawn_app_with(&nats.url(), |s| s.http.api_key = API_KEY.into()).await;
    assert_eq!(app.admin_addr, None);
    assert_eq!(status(app.http("/metrics"), false).await, 200);
    assert_eq!(status(app.http("/api/v1/tokens"), true).await, 200);
}
