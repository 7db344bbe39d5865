//! The gateway embedded in an actix-web app, in this process: an `HttpServer` on port 0 whose app serves its own
//! route (`GET /` -> "embedding app\n"), the node's `/readyz` and `/metrics`, and the library handler
//! `telegraphy::transports::actix::ws` at `/ws`, its TCP connections aborted after 2 heartbeats without progress
//! (`telegraphy::transports::actix::abort_stalled_after`). Returns a [`TestApp`] like [`super::spawn_app`], so a test can run against
//! either transport; [`TestApp::shutdown`] drains it as SIGTERM would.

use actix_web::{web, App, HttpResponse, HttpServer};
use telegraphy::{config::Settings, node::Gateway};
use tokio::sync::oneshot;

use super::{test_settings, TestApp};

/// What the embedding app's own route answers.
pub const APP_ROUTE_BODY: &str = "embedding app\n";

pub async fn spawn_embedded(nats_url: &str) -> TestApp {
    spawn_embedded_with(nats_url, |_| {}).await
}

pub async fn spawn_embedded_with(nats_url: &str, tweak: impl FnOnce(&mut Settings)) -> TestApp {
    let mut settings = test_settings(nats_url);
    tweak(&mut settings);
    let stalled = settings.heartbeat_interval() * 2;
    let gateway = Gateway::start(settings).await.expect("start the node");
    let data = web::Data::from(gateway.clone());
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .route("/", web::get().to(|| async { APP_ROUTE_BODY }))
            .route("/readyz", web::get().to(readyz))
            .route("/metrics", web::get().to(|gw: web::Data<Gateway>| async move { gw.render_metrics() }))
            .route("/ws", web::get().to(telegraphy::transports::actix::ws))
    })
    .workers(1)
    .disable_signals()
    .tcp_nodelay(true)
    .on_connect(telegraphy::transports::actix::abort_stalled_after(stalled))
    .bind("127.0.0.1:0")
    .expect("bind 127.0.0.1:0");
    let addr = server.addrs()[0];
    let server = server.run();
    let (tx, rx) = oneshot::channel::<()>();
    let node = gateway.clone();
    let task = tokio::spawn(async move {
        node.run_until(server, async {
            let _ = rx.await;
        })
        .await
    });
    let app = TestApp { addr, admin_addr: None, gateway, shutdown: Some(tx), task: Some(task) };
    app.wait_ready().await;
    app
}

async fn readyz(gw: web::Data<Gateway>) -> HttpResponse {
    if gw.is_ready() {
        HttpResponse::Ok().body("ready\n")
    } else {
        HttpResponse::ServiceUnavailable().body("not ready\n")
    }
}
