//! HTTP API for backends without a NATS client or a token library (proto/PROTOCOL.md section 5):
//! `POST /api/v1/tokens` mints a connect token, `POST /api/v1/publish` publishes an event.
//! Both need `Authorization: Bearer <http.api_key>`; with no key configured the routes answer 404. A client
//! address that sent [`crate::api::throttle::MAX_KEY_FAILURES`] wrong (non-empty) keys within [`KEY_FAILURE_WINDOW`] gets 429 (any
//! key) until that window ends (`crate::api::throttle`); the key itself must pass the weak-secret rule (`crate::secret`).

pub(crate) mod throttle;

use std::net::IpAddr;

use actix_web::{http::header, web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::time::Instant;

use crate::{api::throttle::KEY_FAILURE_WINDOW, node::auth::MintError, node::Gateway, protocol::names};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/api/v1")
            .app_data(web::JsonConfig::default().limit(1 << 20).error_handler(|err, _| {
                let message = err.to_string();
                actix_web::error::InternalError::from_response(err, bad_request(&message)).into()
            }))
            .route("/tokens", web::post().to(tokens))
            .route("/publish", web::post().to(publish)),
    );
}

fn bad_request(message: &str) -> HttpResponse {
    HttpResponse::BadRequest().json(serde_json::json!({ "error": "bad_request", "message": message }))
}

/// Admits a request only with the right bearer key (404 when the API is off, else 401). Handlers take it as
/// their FIRST argument: actix resolves extractors in order and stops at the first error, so a refused caller
/// never gets its body read or parsed (a 400 would tell them the endpoint is on, and parse errors echo input).
struct ApiKey;

impl actix_web::FromRequest for ApiKey {
    type Error = actix_web::Error;
    type Future = std::future::Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        let refusal = match req.app_data::<web::Data<Gateway>>() {
            Some(gw) => guard(req, gw),
            None => Some(HttpResponse::InternalServerError().finish()),
        };
        std::future::ready(match refusal {
            None => Ok(ApiKey),
            Some(response) => Err(actix_web::error::InternalError::from_response("refused", response).into()),
        })
    }
}

/// None when the request may proceed, else the response to send.
fn guard(req: &HttpRequest, gw: &Gateway) -> Option<HttpResponse> {
    let key = &gw.settings.http.api_key;
    if key.is_empty() {
        return Some(HttpResponse::NotFound().finish());
    }
    // Checked before the key: a throttled address learns nothing about the keys it tries.
    let ip = client_address(gw, req);
    let now = Instant::now();
    if gw.api_failures.throttled(ip, now) {
        gw.metrics.api_key_throttled.increment(1);
        return Some(
            HttpResponse::TooManyRequests()
                .insert_header((header::RETRY_AFTER, KEY_FAILURE_WINDOW.as_secs().to_string()))
                .json(serde_json::json!({ "error": "too_many_requests" })),
        );
    }
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "))
        .unwrap_or_default();
    if constant_time_eq(presented.as_bytes(), key.as_bytes()) {
        None
    } else {
        if !presented.is_empty() {
            gw.api_failures.failed(ip, now); // a wrong key (not a request without one)
        }
        Some(
            HttpResponse::Unauthorized()
                .insert_header((header::WWW_AUTHENTICATE, "Bearer"))
                .json(serde_json::json!({ "error": "unauthorized" })),
        )
    }
}

/// The address wrong keys are counted under: as for the per-IP connection quota (the peer, or behind a trusted
/// proxy the client its header names; IPv6 by /64).
fn client_address(gw: &Gateway, req: &HttpRequest) -> IpAddr {
    let peer = req.peer_addr().map_or(IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED), |a| a.ip());
    let values =
        gw.client_ip.header().into_iter().flat_map(|h| req.headers().get_all(h)).filter_map(|v| v.to_str().ok());
    crate::transports::client_ip::quota_key(gw.client_ip.client_ip(peer, values))
}

/// Compares without leaking where the first difference is (the length is not secret).
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenRequest {
    #[serde(default)]
    user: String,
    allow: Vec<String>,
    ttl: Option<u64>,
    /// Presence `info` claim (a small JSON object, checked before any KV write).
    info: Option<serde_json::Value>,
    /// Action grants (proto/PROTOCOL.md section 13), checked before any KV write.
    #[serde(default)]
    publish: Vec<String>,
    #[serde(default)]
    publish_ephemeral: Vec<String>,
    #[serde(default)]
    rpc: Vec<String>,
}

async fn tokens(_: ApiKey, gw: web::Data<Gateway>, body: web::Json<TokenRequest>) -> HttpResponse {
    let body = body.into_inner();
    let ttl = body.ttl.unwrap_or(gw.settings.auth.token_ttl);
    let grants = crate::protocol::token::Grants {
        publish: body.publish,
        publish_ephemeral: body.publish_ephemeral,
        rpc: body.rpc,
    };
    match gw.auth.mint_with_grants(&body.user, &body.allow, ttl, body.info, grants).await {
        Ok(token) => HttpResponse::Ok().json(serde_json::json!({ "token": token, "expires_in": ttl })),
        Err(MintError::Nats(e)) => {
            tracing::warn!(error = %e, "token mint failed");
            HttpResponse::ServiceUnavailable().json(serde_json::json!({ "error": "unavailable" }))
        }
        Err(MintError::Register(e)) => {
            tracing::warn!(error = %e, "token registration failed");
            HttpResponse::ServiceUnavailable().json(serde_json::json!({ "error": "unavailable" }))
        }
        Err(e) => bad_request(&e.to_string()),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PublishRequest {
    event: String,
    data: Box<RawValue>,
}

async fn publish(_: ApiKey, gw: web::Data<Gateway>, body: web::Json<PublishRequest>) -> HttpResponse {
    if let Err(e) = names::validate_name(&body.event) {
        return bad_request(&format!("invalid event name: {e}"));
    }
    let subject = format!("{}.{}", gw.settings.nats.subject_prefix, body.event);
    let payload = bytes::Bytes::copy_from_slice(body.data.get().as_bytes());
    if payload.len() > gw.settings.limits.max_event_bytes {
        return bad_request("data too big");
    }
    let sent = async {
        gw.nats.publish(subject, payload).await?;
        gw.nats.flush().await?;
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
    };
    match tokio::time::timeout(std::time::Duration::from_secs(5), sent).await {
        Ok(Ok(())) => {
            gw.metrics.published_http.increment(1);
            HttpResponse::Accepted().json(serde_json::json!({ "published": body.event }))
        }
        _ => HttpResponse::ServiceUnavailable().json(serde_json::json!({ "error": "unavailable" })),
    }
}
