//! Issue 11 parts 2 and 4 (gateway side): one resume token or one address cannot take every connection slot,
//! anonymous visitors have their own quota, and sessions end (`auth.max_session_age`, anonymous resumes
//! re-checked against `auth.anonymous_allow`).

use std::time::Duration;

use serde_json::{json, Value};
use telegraphy::protocol::token::{self, Claims, Keyring, TokenKind};
use tokio_tungstenite::tungstenite::{self, client::IntoClientRequest};

use crate::common::*;

/// Opens a WebSocket with an `X-Forwarded-For` header; the HTTP status when the upgrade is refused.
pub(crate) async fn open_from(url: &str, forwarded_for: Option<&str>) -> Result<WsClient, u16> {
    let mut request = url.into_client_request().unwrap();
    if let Some(xff) = forwarded_for {
        request.headers_mut().insert("X-Forwarded-For", xff.parse().unwrap());
    }
    match tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(request)).await.expect("ws connect timeout") {
        Ok((ws, _)) => Ok(WsClient { ws, auto_pong: true }),
        Err(tungstenite::Error::Http(response)) => Err(response.status().as_u16()),
        Err(e) => panic!("unexpected ws error: {e}"),
    }
}

/// Opens a socket and sends `frame`; returns it and the reply.
async fn connect(app: &TestApp, frame: Value) -> (WsClient, Value) {
    let mut client = WsClient::connect(&app.ws_url()).await;
    let reply = client.connect_with(frame).await;
    (client, reply)
}

/// The reply was `error` `code`, and the gateway then closed with `close` and `reason`.
async fn assert_refused(client: &mut WsClient, reply: &Value, code: &str, close: u16, reason: &str) {
    assert_eq!((&reply["type"], &reply["code"]), (&json!("error"), &json!(code)), "{reply}");
    match client.recv_or_close(WAIT).await {
        Err(Closed::Code(got, why)) => assert_eq!((got, why.as_str()), (close, reason)),
        other => panic!("expected close {close} {reason:?}, got {other:?}"),
    }
}

/// A resume token for session `sid`, first authenticated `age` seconds ago, signed with the test secret.
fn resume_token(sub: &str, allow: &[&str], sid: &str, age: i64) -> String {
    let now = token::now_unix();
    let mut claims = Claims::new(sub, allow.iter().map(|s| s.to_string()).collect(), now - age, 900 + age, None);
    claims.sid = Some(sid.to_string());
    Keyring::new(&[SECRET.to_string()]).unwrap().sign(TokenKind::Resume, &claims)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_resume_token_opens_at_most_max_connections_per_session_sockets() {
    let nats = NatsServer::start();
    let app = spawn_app_with(&nats.url(), |s| s.limits.max_connections_per_session = 2).await;
    let token = app.token("mallory", &["a.>"]).await;
    let (first, connected) = connect(&app, json!({"type":"connect","id":1,"token":token})).await;
    assert_eq!(connected["type"], "connected", "{connected}");
    let resume = connected["resume"].as_str().unwrap().to_string();
    let (second, reply) = connect(&app, json!({"type":"connect","id":2,"resume":resume})).await;
    assert_eq!(reply["type"], "connected", "a second socket of the session (within the quota): {reply}");
    // The attack: the same resume token for ever more sockets. Each is refused and closed.
    for attempt in 0..5 {
        let (mut extra, reply) = connect(&app, json!({"type":"connect","id":3,"resume":resume})).await;
        assert_refused(&mut extra, &reply, "limit_exceeded", 4029, "too many connections for this session").await;
        assert_eq!(reply["id"], 3, "attempt {attempt}");
    }
    assert_eq!(app.metric("telegraphy_connections_over_quota_total{quota=\"session\"}").await, 5.0);
    // Another session is not affected; and a slot frees when a socket of the session closes.
    let _other = app.client(&["a.>"]).await;
    second.close().await;
    eventually("the closed socket released its slot", || async { app.gateway.connection_count() == 2 }).await;
    let (_again, reply) = connect(&app, json!({"type":"connect","id":4,"resume":resume})).await;
    assert_eq!(reply["type"], "connected", "{reply}");
    drop(first);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_connections_have_their_own_smaller_quota() {
    let nats = NatsServer::start();
    let app = spawn_app_with(&nats.url(), |s| {
        s.auth.anonymous_allow = vec!["public.>".into()];
        s.limits.max_anonymous_connections = 2;
    })
    .await;
    let mut anonymous = Vec::new();
    for _ in 0..2 {
        let (client, reply) = connect(&app, json!({"type":"connect","id":1})).await;
        assert_eq!(reply["type"], "connected", "{reply}");
        anonymous.push(client);
    }
    for _ in 0..3 {
        let (mut client, reply) = connect(&app, json!({"type":"connect","id":1})).await;
        assert_refused(&mut client, &reply, "limit_exceeded", 4029, "too many anonymous connections").await;
    }
    // Logged-in users still get in.
    let mut user = app.client(&["public.>"]).await;
    user.subscribe("public.news").await;
    assert_eq!(app.metric("telegraphy_connections_over_quota_total{quota=\"anonymous\"}").await, 3.0);
    anonymous.pop().unwrap().close().await;
    eventually("slot released", || async { app.gateway.connection_count() == 2 }).await;
    let (_client, reply) = connect(&app, json!({"type":"connect","id":1})).await;
    assert_eq!(reply["type"], "connected", "{reply}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_ip_quota_counts_the_peer_unless_a_trusted_proxy_names_the_client() {
    let nats = NatsServer::start();
    // Direct clients: the header is ignored (a client cannot pick its address), every socket counts for 127.0.0.1.
    let direct = spawn_app_with(&nats.url(), |s| {
        s.limits.max_connections_per_ip = 2;
        s.http.client_ip_header = "X-Forwarded-For".into();
    })
    .await;
    let _a = open_from(&direct.ws_url(), Some("203.0.113.1")).await.unwrap();
    let _b = open_from(&direct.ws_url(), None).await.unwrap(); // not yet connected: counts too
    assert_eq!(open_from(&direct.ws_url(), Some("203.0.113.2")).await.err(), Some(429), "forged header ignored");
    assert_eq!(direct.metric("telegraphy_connections_over_quota_total{quota=\"ip\"}").await, 1.0);

    // Behind a trusted proxy (loopback here): the right-most address that is not a trusted proxy.
    let proxied = spawn_app_with(&nats.url(), |s| {
        s.auth.anonymous_allow = vec!["public.>".into()];
        s.limits.max_connections_per_ip = 2;
        s.http.trusted_proxies = vec!["127.0.0.0/8".into(), "10.0.0.0/8".into()];
        s.http.client_ip_header = "X-Forwarded-For".into();
    })
    .await;
    let url = proxied.ws_url();
    let _c1 = open_from(&url, Some("203.0.113.5")).await.unwrap();
    let _c2 = open_from(&url, Some("198.51.100.9, 203.0.113.5, 10.1.2.3")).await.unwrap();
    assert_eq!(open_from(&url, Some("203.0.113.5")).await.err(), Some(429), "third from 203.0.113.5");
    // Entries left of the client's are the client's own words and cannot buy it more sockets.
    assert_eq!(open_from(&url, Some("192.0.2.77, 203.0.113.5")).await.err(), Some(429));
    let _d1 = open_from(&url, Some("203.0.113.6")).await.unwrap();
    // Anonymous sockets count against the same quota.
    let mut anon = open_from(&url, Some("203.0.113.6")).await.unwrap();
    assert_eq!(anon.connect_with(json!({"type":"connect","id":1})).await["type"], "connected");
    assert_eq!(open_from(&url, Some("203.0.113.6")).await.err(), Some(429));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_past_the_session_age_is_refused() {
    let nats = NatsServer::start();
    let app = spawn_app_with(&nats.url(), |s| s.auth.max_session_age = 3600).await;
    eventually("revocations loaded", || async { app.gateway.auth().revocations_loaded() }).await;
    // A session authenticated 59 minutes ago resumes (the control)...
    let young = resume_token("alice", &["a.>"], "sess-young", 3540);
    let (_client, reply) = connect(&app, json!({"type":"connect","id":1,"resume":young})).await;
    assert_eq!(reply["type"], "connected", "{reply}");
    // ...and its new resume token stops at the session's end, not resume_ttl (900 s) from now.
    let expires_in = reply["resume_expires_in"].as_u64().unwrap();
    assert!((55..=60).contains(&expires_in), "resume_expires_in {expires_in}");
    // A session authenticated 61 minutes ago does not, though its resume token has not expired.
    let old = resume_token("alice", &["a.>"], "sess-old", 3660);
    let (mut client, reply) = connect(&app, json!({"type":"connect","id":2,"resume":old})).await;
    assert_refused(&mut client, &reply, "unauthorized", 4001, "unauthorized").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_socket_is_closed_when_its_session_reaches_the_age() {
    let nats = NatsServer::start();
    let app = spawn_app_with(&nats.url(), |s| s.auth.max_session_age = 60).await;
    eventually("revocations loaded", || async { app.gateway.auth().revocations_loaded() }).await;
    // A session 57 s old resumes and has 3 s left; a fresh one (the control) has 60 s.
    let ageing = resume_token("bob", &["b.>"], "sess-ageing", 57);
    let (mut client, reply) = connect(&app, json!({"type":"connect","id":1,"resume":ageing})).await;
    assert_eq!(reply["type"], "connected", "{reply}");
    assert!(reply["resume_expires_in"].as_u64().unwrap() <= 3, "{reply}");
    let mut fresh = app.client(&["b.>"]).await;
    client.subscribe("b.x").await;
    let started = std::time::Instant::now();
    let reply = client.recv_or_close(WAIT).await.expect("the error frame before the close");
    assert_eq!(
        (&reply["type"], &reply["code"], &reply["message"]),
        (&json!("error"), &json!("unauthorized"), &json!("session expired"))
    );
    match client.recv_or_close(WAIT).await {
        Err(Closed::Code(code, reason)) => assert_eq!((code, reason.as_str()), (4001, "session expired")),
        other => panic!("expected close 4001, got {other:?}"),
    }
    eprintln!("closed {:?} after subscribing (session end ~3 s after connect)", started.elapsed());
    assert_eq!(app.metric("telegraphy_sessions_expired_total").await, 1.0);
    // The fresh session is still served.
    assert_eq!(fresh.request(json!({"type":"ping","id":9})).await["type"], "pong");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_resume_rechecks_anonymous_allow() {
    let nats = NatsServer::start();
    let open = spawn_app_with(&nats.url(), |s| {
        s.node.name = "gw-open".into();
        s.auth.anonymous_allow = vec!["public.>".into()];
    })
    .await;
    let (_client, connected) = connect(&open, json!({"type":"connect","id":1})).await;
    assert_eq!(connected["type"], "connected", "{connected}");
    let resume = connected["resume"].as_str().unwrap().to_string();
    // Another node (same NATS, new configuration) where anonymous access is off: the resume is refused.
    let closed = spawn_app_with(&nats.url(), |s| s.node.name = "gw-closed".into()).await;
    let (mut client, reply) = connect(&closed, json!({"type":"connect","id":2,"resume":resume})).await;
    assert_refused(&mut client, &reply, "unauthorized", 4001, "unauthorized").await;
    // Where anonymous access now grants other patterns, the resumed session gets those, not the old ones.
    let changed = spawn_app_with(&nats.url(), |s| {
        s.node.name = "gw-changed".into();
        s.auth.anonymous_allow = vec!["other.>".into()];
    })
    .await;
    let (mut client, reply) = connect(&changed, json!({"type":"connect","id":3,"resume":resume})).await;
    assert_eq!(reply["type"], "connected", "{reply}");
    let denied = client.request(json!({"type":"subscribe","id":4,"event":"public.news"})).await;
    assert_eq!(denied["code"], "forbidden", "{denied}");
    client.subscribe("other.news").await;
    tokio::time::timeout(Duration::from_secs(30), closed.shutdown()).await.unwrap().unwrap();
}
