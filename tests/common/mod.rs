//! Test harness shared by the integration tests: a real `nats-server` (single node or a 3-node JetStream
//! cluster) on free loopback ports with temp stores, the gateway in-process on port 0 (`spawn_app`, in the
//! spirit of zero-to-production), the gateway embedded in an actix-web app in-process (`spawn_embedded`,
//! [`embedded`]), the gateway binary as a child process ([`binary`]), and a small WebSocket client speaking
//! protocol v1.
//!
//! Every wait is bounded; nothing here sleeps to synchronise where an event can be awaited.
#![allow(dead_code)]

use std::{
    io::{BufRead, BufReader},
    net::TcpListener,
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::{mpsc, Arc},
    time::Duration,
};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use telegraphy::{
    config::Settings,
    server::{Application, Gateway},
};
use tokio::{net::TcpStream, sync::oneshot, task::JoinHandle};
use tokio_tungstenite::{
    tungstenite::{self, protocol::frame::coding::CloseCode, Message},
    MaybeTlsStream, WebSocketStream,
};

pub mod binary;
pub mod embedded;
pub mod transport;
#[allow(unused_imports)] // each test file uses its part of the harness
pub use binary::{gateway_command, program_command, GatewayBinary};
#[allow(unused_imports)]
pub use embedded::{spawn_embedded, spawn_embedded_with, APP_ROUTE_BODY};

pub const SECRET: &str = "integration-test-secret-0123456789abcdef";
/// Default bound for any single wait in the tests.
pub const WAIT: Duration = Duration::from_secs(10);

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind port 0").local_addr().unwrap().port()
}

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn nats_server_bin() -> PathBuf {
    let path = std::env::var_os("NATS_SERVER_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".tools/venv/bin/nats-server"));
    assert!(
        path.exists(),
        "nats-server not found at {} (run ./scripts/test, or set NATS_SERVER_BIN to a nats-server >= 2.11)",
        path.display()
    );
    path
}

/// Reads a child's stderr in a thread until a line contains `marker` (at most [`WAIT`]), then keeps draining it
/// so the child never blocks on a full pipe. Lines are echoed with `echo` as prefix when given. Returns whether
/// the marker was seen in time.
pub fn await_line(stderr: std::process::ChildStderr, marker: &'static str, echo: Option<String>) -> bool {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut seen = Some(tx);
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains(marker) {
                if let Some(tx) = seen.take() {
                    let _ = tx.send(());
                }
            }
            if let Some(prefix) = &echo {
                eprintln!("[{prefix}] {line}");
            }
        }
    });
    rx.recv_timeout(WAIT).is_ok()
}

/// One `nats-server` process with JetStream; killed on drop.
pub struct NatsServer {
    child: Option<Child>,
    pub port: u16,
    store: tempfile::TempDir,
    extra_args: Vec<String>,
    pub name: String,
}

impl NatsServer {
    pub fn start() -> Self {
        Self::start_with("n1", Vec::new())
    }

    /// A single node with extra nats-server arguments (e.g. `--user`/`--pass`).
    pub fn start_with_args(args: &[&str]) -> Self {
        Self::start_with("n1", args.iter().map(|a| a.to_string()).collect())
    }

    fn start_with(name: &str, extra_args: Vec<String>) -> Self {
        let mut server = NatsServer {
            child: None,
            port: free_port(),
            store: tempfile::tempdir().expect("temp store"),
            extra_args,
            name: name.to_string(),
        };
        server.launch();
        server
    }

    fn launch(&mut self) {
        let mut child = Command::new(nats_server_bin())
            .args(["-a", "127.0.0.1", "-p", &self.port.to_string(), "-js", "-sd"])
            .arg(self.store.path())
            .args(["-n", &self.name])
            .args(&self.extra_args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn nats-server");
        let stderr = child.stderr.take().unwrap();
        assert!(await_line(stderr, "Server is ready", None), "nats-server did not become ready within 10 s");
        self.child = Some(child);
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// kill -9, keeping the store so a restart finds its JetStream data.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts again on the same port and store.
    pub fn restart(&mut self) {
        self.kill();
        self.launch();
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A 3-node JetStream cluster on loopback.
pub struct NatsCluster {
    pub nodes: Vec<NatsServer>,
}

impl NatsCluster {
    pub fn start(size: usize) -> Self {
        let cluster_ports: Vec<u16> = (0..size).map(|_| free_port()).collect();
        let routes = cluster_ports.iter().map(|p| format!("nats://127.0.0.1:{p}")).collect::<Vec<_>>().join(",");
        // Start all nodes concurrently: a JetStream cluster only reports ready once it has peers.
        let handles: Vec<_> = cluster_ports
            .iter()
            .enumerate()
            .map(|(i, port)| {
                let args = vec![
                    "--cluster_name".to_string(),
                    "telegraphy-test".to_string(),
                    "--cluster".to_string(),
                    format!("nats://127.0.0.1:{port}"),
                    "--routes".to_string(),
                    routes.clone(),
                ];
                std::thread::spawn(move || NatsServer::start_with(&format!("n{}", i + 1), args))
            })
            .collect();
        NatsCluster { nodes: handles.into_iter().map(|h| h.join().expect("start cluster node")).collect() }
    }

    /// Client URL listing every node.
    pub fn urls(&self) -> String {
        self.nodes.iter().map(|n| n.url()).collect::<Vec<_>>().join(",")
    }
}

/// Settings for a test gateway: port 0, the test secret, this NATS.
pub fn test_settings(nats_url: &str) -> Settings {
    let env = [
        ("TELEGRAPHY_NATS__URL", nats_url),
        ("TELEGRAPHY_HTTP__BIND", "127.0.0.1:0"),
        ("TELEGRAPHY_AUTH__SECRET", SECRET),
        ("TELEGRAPHY_HTTP__WORKERS", "1"),
        ("TELEGRAPHY_LOG__LEVEL", "warn"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    Settings::load_from(None, Some(env)).expect("test settings")
}

/// A gateway running in this process.
pub struct TestApp {
    pub addr: std::net::SocketAddr,
    /// The internal listener (`http.admin_bind`), when configured.
    pub admin_addr: Option<std::net::SocketAddr>,
    pub gateway: Arc<Gateway>,
    shutdown: Option<oneshot::Sender<()>>,
    pub task: Option<JoinHandle<std::io::Result<()>>>,
}

pub async fn spawn_app(nats_url: &str) -> TestApp {
    spawn_app_with(nats_url, |_| {}).await
}

pub async fn spawn_app_with(nats_url: &str, tweak: impl FnOnce(&mut Settings)) -> TestApp {
    let mut settings = test_settings(nats_url);
    tweak(&mut settings);
    let app = Application::build(settings).await.expect("build gateway");
    let addr = app.addr();
    let admin_addr = app.admin_addr();
    let gateway = app.gateway();
    let (tx, rx) = oneshot::channel();
    let task = tokio::spawn(app.run_until(async {
        let _ = rx.await;
    }));
    let test_app = TestApp { addr, admin_addr, gateway, shutdown: Some(tx), task: Some(task) };
    test_app.wait_ready().await;
    test_app
}

impl TestApp {
    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    pub fn http(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Waits (bounded) until /readyz says 200.
    pub async fn wait_ready(&self) {
        eventually("gateway ready", || async { self.get_status("/readyz").await == 200 }).await;
    }

    pub async fn get_status(&self, path: &str) -> u16 {
        match reqwest::get(self.http(path)).await {
            Ok(r) => r.status().as_u16(),
            Err(_) => 0,
        }
    }

    pub async fn metrics(&self) -> String {
        let addr = self.admin_addr.unwrap_or(self.addr);
        reqwest::get(format!("http://{addr}/metrics")).await.expect("GET /metrics").text().await.unwrap()
    }

    /// A metric's value from /metrics (first series whose name and labels start with `series`).
    pub async fn metric(&self, series: &str) -> f64 {
        metric_value(&self.metrics().await, series)
    }

    /// Mints a registered single-use connect token.
    pub async fn token(&self, sub: &str, allow: &[&str]) -> String {
        let allow: Vec<String> = allow.iter().map(|s| s.to_string()).collect();
        self.gateway.auth().mint(sub, &allow, 60).await.expect("mint token")
    }

    /// Connects a client and completes `connect` with a fresh token for `allow`.
    pub async fn client(&self, allow: &[&str]) -> WsClient {
        let token = self.token("tester", allow).await;
        let mut client = WsClient::connect(&self.ws_url()).await;
        let connected = client.connect_with(json!({"type": "connect", "id": 1, "token": token})).await;
        assert_eq!(connected["type"], "connected", "{connected}");
        client
    }

    /// Makes sure every SUB this gateway sent has reached the NATS server.
    pub async fn flush(&self) {
        tokio::time::timeout(WAIT, self.gateway.nats().flush()).await.expect("flush timeout").expect("flush");
    }

    /// Triggers the drain and waits for the server to stop.
    pub async fn shutdown(mut self) -> std::io::Result<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let task = self.task.take().unwrap();
        tokio::time::timeout(Duration::from_secs(30), task).await.expect("shutdown timeout").expect("join")
    }

    /// Waits (at most `limit`) for the server, shut down, to stop.
    pub async fn stopped_within(&mut self, limit: Duration) {
        let task = self.task.take().expect("server task");
        tokio::time::timeout(limit, task).await.expect("stopped in time").expect("join").expect("server result");
    }

    pub fn trigger_shutdown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

pub fn metric_value(text: &str, series: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("metric {series} not found in:\n{text}"))
}

/// Polls `check` until it holds, for at most [`WAIT`]. Used only for state with no event to await
/// (readiness endpoints, counters).
pub async fn eventually<F, Fut>(what: &str, check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    eventually_within(what, WAIT, check).await
}

/// [`eventually`] with another bound.
pub async fn eventually_within<F, Fut>(what: &str, limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if check().await {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A NATS client for publishing test events.
pub async fn publisher(url: &str) -> async_nats::Client {
    async_nats::connect(url).await.expect("test publisher connects")
}

pub async fn publish(client: &async_nats::Client, event: &str, data: &str) {
    client.publish(format!("telegraphy.{event}"), data.to_string().into()).await.expect("publish");
    client.flush().await.expect("flush publisher");
}

/// A protocol v1 WebSocket client.
pub struct WsClient {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// Answer the gateway's `ping` frames automatically while receiving.
    pub auto_pong: bool,
}

#[derive(Debug)]
pub enum Closed {
    Code(u16, String),
    /// The connection ended without a close frame.
    NoFrame,
}

impl WsClient {
    pub async fn connect(url: &str) -> Self {
        let (ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(url))
            .await
            .expect("ws connect timeout")
            .expect("ws connect");
        WsClient { ws, auto_pong: true }
    }

    /// Tries to open a WebSocket; returns the HTTP status when the upgrade is refused.
    pub async fn try_connect(url: &str) -> Result<Self, u16> {
        match tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(url)).await.expect("ws connect timeout") {
            Ok((ws, _)) => Ok(WsClient { ws, auto_pong: true }),
            Err(tungstenite::Error::Http(response)) => Err(response.status().as_u16()),
            Err(e) => panic!("unexpected ws error: {e}"),
        }
    }

    pub async fn send(&mut self, frame: Value) {
        self.send_text(&frame.to_string()).await;
    }

    pub async fn send_text(&mut self, text: &str) {
        self.ws.send(Message::text(text)).await.expect("ws send");
    }

    /// Sends a request frame and returns the reply (the next frame other than a heartbeat ping).
    pub async fn request(&mut self, frame: Value) -> Value {
        self.send(frame).await;
        self.recv().await
    }

    /// Sends `connect` and returns the reply (`connected` or `error`).
    pub async fn connect_with(&mut self, frame: Value) -> Value {
        self.request(frame).await
    }

    /// Next JSON frame other than the gateway's heartbeat `ping` (answered when `auto_pong`). Panics on close.
    pub async fn recv(&mut self) -> Value {
        match self.recv_or_close(WAIT).await {
            Ok(v) => v,
            Err(closed) => panic!("connection closed while waiting for a frame: {closed:?}"),
        }
    }

    pub async fn recv_or_close(&mut self, limit: Duration) -> Result<Value, Closed> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let message =
                tokio::time::timeout_at(deadline, self.ws.next()).await.expect("timed out waiting for a frame");
            match message {
                Some(Ok(Message::Text(text))) => {
                    let v: Value = serde_json::from_str(&text).expect("gateway sent JSON");
                    if v["type"] == "ping" {
                        if self.auto_pong {
                            self.send(json!({"type": "pong"})).await;
                        }
                        continue;
                    }
                    return Ok(v);
                }
                Some(Ok(Message::Close(frame))) => {
                    return Err(match frame {
                        Some(f) => Closed::Code(u16::from(f.code), f.reason.to_string()),
                        None => Closed::NoFrame,
                    })
                }
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return Err(Closed::NoFrame),
            }
        }
    }

    /// Reads until the close frame and returns its code (frames before it are skipped).
    pub async fn expect_close(&mut self) -> u16 {
        loop {
            match self.recv_or_close(WAIT).await {
                Ok(_) => continue,
                Err(Closed::Code(code, _)) => return code,
                Err(Closed::NoFrame) => panic!("connection ended without a close frame"),
            }
        }
    }

    /// Subscribes and waits for `subscribed`; returns the reply (with `epoch`/`seq` when history is on).
    pub async fn subscribe(&mut self, pattern: &str) -> Value {
        self.send(json!({"type": "subscribe", "id": 2, "event": pattern})).await;
        let reply = self.recv().await;
        assert_eq!(
            (&reply["type"], &reply["id"], &reply["event"]),
            (&json!("subscribed"), &json!(2), &json!(pattern)),
            "{reply}"
        );
        reply
    }

    /// Subscribes with `since` and returns the `subscribed` reply.
    pub async fn subscribe_since(&mut self, pattern: &str, epoch: &str, seq: u64) -> Value {
        self.send(json!({"type": "subscribe", "id": 3, "event": pattern, "since": {"epoch": epoch, "seq": seq}})).await;
        let reply = self.recv().await;
        assert_eq!((&reply["type"], &reply["event"]), (&json!("subscribed"), &json!(pattern)), "{reply}");
        reply
    }

    /// Next `event` frame.
    pub async fn next_event(&mut self) -> Value {
        let v = self.recv().await;
        assert_eq!(v["type"], "event", "expected an event, got {v}");
        v
    }

    pub async fn close(mut self) {
        let _ =
            self.ws.close(Some(tungstenite::protocol::CloseFrame { code: CloseCode::Normal, reason: "".into() })).await;
    }
}
