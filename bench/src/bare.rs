//! `bare-server`: the baseline fan-out figures are stated against (issue 24). A minimal NATS -> WebSocket
//! forwarder speaking just enough of protocol v1 for this tool's clients: `connect` is answered `connected` (no
//! token check), `subscribe` `subscribed`, and every NATS message on `<prefix>.<pattern>` goes to that
//! pattern's connections as an `event` frame encoded once. One core NATS subscription per distinct pattern, one
//! task per connection (tokio-tungstenite, default buffers) that writes every frame queued for it with one flush.
//! No limits, no history, no heartbeats, no filters, no auth: what a gateway could not do with less work. A
//! `fanout` run against it measures the machine, NATS and the load client; the gateway's figure divided by it is
//! the gateway's own cost (bench/README.md).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use anyhow::Context;
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::{net::TcpListener, sync::mpsc};
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

/// Pattern -> the queues of the connections subscribed to it.
type Registry = Arc<Mutex<HashMap<String, Vec<mpsc::UnboundedSender<Utf8Bytes>>>>>;

#[derive(clap::Args, Debug)]
pub struct BareArgs {
    /// Address to listen on (loopback); port 0 = a free port. The address is printed as
    /// `bare-server listening on ws://<addr>/ws`.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: std::net::SocketAddr,
    /// NATS URL (loopback).
    #[arg(long, env = "BENCH_NATS", default_value = "nats://127.0.0.1:4222")]
    pub nats: String,
    /// Subject prefix events are published under (<prefix>.<name>).
    #[arg(long, default_value = "telegraphy")]
    pub subject_prefix: String,
}

/// Serves until killed.
pub async fn run(args: BareArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.listen.ip().is_loopback(), "--listen must be a loopback address");
    crate::target::loopback_nats(&args.nats)?;
    let nats = async_nats::connect(&args.nats).await.context("connecting to NATS")?;
    let listener = TcpListener::bind(args.listen).await.context("binding --listen")?;
    println!("bare-server listening on ws://{}/ws", listener.local_addr()?);
    let registry = Registry::default();
    let prefix: Arc<str> = Arc::from(format!("{}.", args.subject_prefix));
    loop {
        let (socket, _) = listener.accept().await?;
        let _ = socket.set_nodelay(true);
        let (nats, registry, prefix) = (nats.clone(), registry.clone(), prefix.clone());
        tokio::spawn(async move {
            let _ = connection(socket, nats, registry, prefix).await;
        });
    }
}

/// One client: the handshake, `connect` and `subscribe`, then frames out until it goes away.
async fn connection(
    socket: tokio::net::TcpStream,
    nats: async_nats::Client,
    registry: Registry,
    prefix: Arc<str>,
) -> anyhow::Result<()> {
    let mut head = [0u8; 8];
    let n = socket.peek(&mut head).await?;
    if !head[..n].starts_with(b"GET /ws") {
        return plain_http(socket).await;
    }
    let mut ws = tokio_tungstenite::accept_async(socket).await?;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut tx = Some(tx);
    loop {
        tokio::select! {
            message = ws.next() => {
                let Some(Ok(Message::Text(text))) = message else {
                    match message {
                        Some(Ok(_)) => continue,
                        _ => return Ok(()),
                    }
                };
                let frame: Value = serde_json::from_str(text.as_str()).unwrap_or_default();
                let id = &frame["id"];
                let reply = match frame["type"].as_str() {
                    Some("connect") => serde_json::json!({"type": "connected", "id": id}),
                    Some("subscribe") => {
                        let pattern = frame["event"].as_str().unwrap_or_default().to_string();
                        if let Some(tx) = tx.take() {
                            subscribe(&nats, &registry, &prefix, &pattern, tx).await?;
                        }
                        serde_json::json!({"type": "subscribed", "id": id, "event": pattern})
                    }
                    _ => continue,
                };
                ws.send(Message::text(reply.to_string())).await?;
            }
            Some(frame) = rx.recv() => {
                ws.feed(Message::Text(frame)).await?;
                while let Ok(frame) = rx.try_recv() {
                    ws.feed(Message::Text(frame)).await?;
                }
                ws.flush().await?;
            }
        }
    }
}

/// Any other request (the tool's `/readyz` and `/metrics`): 200 with an empty body, then close.
async fn plain_http(mut socket: tokio::net::TcpStream) -> anyhow::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut request = Vec::new();
    let mut byte = [0u8; 1];
    while !request.ends_with(b"\r\n\r\n") && request.len() < 8192 {
        if socket.read(&mut byte).await? == 0 {
            return Ok(());
        }
        request.push(byte[0]);
    }
    socket.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").await?;
    Ok(socket.shutdown().await?)
}

/// Adds a connection's queue to `pattern`; the first one subscribes the pattern on NATS with a forwarding task.
async fn subscribe(
    nats: &async_nats::Client,
    registry: &Registry,
    prefix: &str,
    pattern: &str,
    tx: mpsc::UnboundedSender<Utf8Bytes>,
) -> anyhow::Result<()> {
    let first = {
        let mut patterns = registry.lock().expect("registry");
        let receivers = patterns.entry(pattern.to_string()).or_default();
        receivers.push(tx);
        receivers.len() == 1
    };
    if !first {
        return Ok(());
    }
    let mut messages = nats.subscribe(format!("{prefix}{pattern}")).await?;
    nats.flush().await?;
    let (registry, pattern, prefix) = (registry.clone(), pattern.to_string(), prefix.to_string());
    tokio::spawn(async move {
        while let Some(message) = messages.next().await {
            let name = message.subject.strip_prefix(prefix.as_str()).unwrap_or(&message.subject);
            let Ok(data) = std::str::from_utf8(&message.payload) else { continue };
            let frame =
                Utf8Bytes::from(format!(r#"{{"type":"event","sub":{pattern:?},"name":{name:?},"data":{data}}}"#));
            let mut patterns = registry.lock().expect("registry");
            if let Some(receivers) = patterns.get_mut(&pattern) {
                receivers.retain(|tx| tx.send(frame.clone()).is_ok());
            }
        }
    });
    Ok(())
}
