//! The protocol core ([`Session`]) without a socket: what the client sends comes from a channel, what the core
//! sends is read from its outbox queue. No nats-server either: these paths never reach NATS (the node is built
//! against an address where nothing listens and stays not ready).

mod common;

use std::{net::IpAddr, sync::Arc};

use common::*;
use serde_json::{json, Value};
use telegraphy::{
    config::Settings,
    node::outbox::{Control, Outbox, Queue},
    node::Gateway,
    protocol::frames::close,
    server::Application,
    session::{Inbound, Session},
};
use tokio::{sync::mpsc, task::JoinHandle};

/// Where no NATS server listens: the node starts, retrying in the background.
const NO_NATS: &str = "nats://127.0.0.1:1";

/// One session driven by the test.
struct Core {
    client: mpsc::UnboundedSender<Inbound<String>>,
    queue: Queue,
    ctl: Arc<Control>,
    task: JoinHandle<()>,
    gateway: Arc<Gateway>,
    _app: Application,
}

impl Core {
    async fn start(tweak: impl FnOnce(&mut Settings)) -> Self {
        let mut settings = test_settings(NO_NATS);
        tweak(&mut settings);
        let app = Application::build(settings).await.expect("build gateway");
        let gateway = app.gateway();
        let limits = &gateway.settings().limits;
        let (outbox, queue, ctl) = Outbox::bounded(limits.outbound_queue, limits.outbound_queue_bytes);
        let ip = IpAddr::from([127, 0, 0, 1]);
        let id = gateway.connections().try_register(ctl.clone(), ip, limits.into()).expect("register");
        let (client, inbound) = mpsc::unbounded_channel();
        let inbound = futures_util::stream::unfold(inbound, |mut rx| async { rx.recv().await.map(|m| (m, rx)) });
        let task = tokio::spawn(Session::new(gateway.clone(), id, outbox).run(inbound));
        Core { client, queue, ctl, task, gateway, _app: app }
    }

    fn send(&self, inbound: Inbound<String>) {
        self.client.send(inbound).expect("session reading");
    }

    fn send_text(&self, text: &str) {
        self.send(Inbound::Text(text.to_string()));
    }

    /// The next frame the core queued.
    async fn recv(&mut self) -> Value {
        let frame = tokio::time::timeout(WAIT, self.queue.recv()).await.expect("frame in time").expect("a frame");
        serde_json::from_str(frame.as_str()).expect("JSON frame")
    }

    /// Waits for the session to end; returns the close it decided, and checks it left the node's connections.
    async fn closed(self) -> (u16, &'static str) {
        tokio::time::timeout(WAIT, self.task).await.expect("session ends in time").expect("session task");
        assert_eq!(self.gateway.connection_count(), 0, "the session removed its registration");
        self.ctl.closing().expect("a close was decided")
    }
}

#[tokio::test]
async fn ping_is_answered_with_pong() {
    let mut core = Core::start(|_| {}).await;
    core.send_text(r#"{"type":"ping","id":7}"#);
    assert_eq!(core.recv().await, json!({"type": "pong", "id": 7}));
    core.send(Inbound::Closed);
    assert_eq!(core.closed().await, (close::NORMAL, "bye"));
}

#[tokio::test]
async fn connect_timeout_closes_4001() {
    let mut core = Core::start(|s| s.auth.connect_timeout = 1).await;
    let error = core.recv().await;
    assert_eq!(error["type"], "error", "{error}");
    assert_eq!(error["code"], "unauthorized", "{error}");
    assert_eq!(error["message"], "connect timeout", "{error}");
    assert_eq!(core.closed().await, (close::UNAUTHORIZED, "connect timeout"));
}

#[tokio::test]
async fn too_many_bad_frames_close_1008() {
    let mut core = Core::start(|s| s.limits.max_bad_frames = 3).await;
    core.send_text("not json");
    core.send(Inbound::Binary);
    core.send_text(r#"{"type":"subscribe","id":2,"event":"shop.>"}"#); // before connect
    for expected in ["bad_request", "bad_request", "not_connected"] {
        let error = core.recv().await;
        assert_eq!(error["type"], "error", "{error}");
        assert_eq!(error["code"], expected, "{error}");
    }
    assert_eq!(core.closed().await, (close::PROTOCOL, "too many bad frames"));
}

#[tokio::test]
async fn transport_events_close_as_before() {
    for (inbound, expected) in [
        (Inbound::TooBig, (close::TOO_BIG, "frame too big")),
        (Inbound::Gone, (close::NORMAL, "client gone")),
        (Inbound::ProtocolError("reserved bits".to_string()), (close::PROTOCOL, "protocol error")),
    ] {
        let core = Core::start(|_| {}).await;
        core.send(Inbound::Alive); // life only: no reply, no close
        core.send(inbound);
        assert_eq!(core.closed().await, expected);
    }
}

#[tokio::test]
async fn end_of_input_is_a_close() {
    let mut core = Core::start(|_| {}).await;
    let (nobody, _) = mpsc::unbounded_channel();
    drop(std::mem::replace(&mut core.client, nobody));
    assert_eq!(core.closed().await, (close::NORMAL, "bye"));
}
