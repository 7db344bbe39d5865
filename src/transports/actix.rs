//! The gateway embedded in an actix-web application: [`ws`] is a request handler that speaks protocol v1 over
//! actix-ws on whatever route the application gives it, exactly like the standalone node's `/ws` (same admission,
//! limits, close codes, slow-client 4008, drain 1012, revocation 4003; proto/PROTOCOL.md section 10).
//!
//! The node is built once per process with [`Gateway::start`] (actix-web runs the app factory once per worker, so
//! not inside `HttpServer::new`) and handed to every worker as `web::Data<Gateway>`:
//!
//! ```no_run
//! use actix_web::{web, App, HttpServer};
//! use telegraphy::{config::Settings, node::Gateway};
//!
//! # async fn run() -> anyhow::Result<()> {
//! let node = Gateway::start(Settings::load(None)?).await?;
//! let data = web::Data::from(node.clone());
//! let server = HttpServer::new(move || {
//!     App::new().app_data(data.clone()).route("/ws", web::get().to(telegraphy::transports::actix::ws))
//! })
//! .tcp_nodelay(true) // events are small frames pushed as they come: no Nagle delay
//! .on_connect(telegraphy::transports::actix::abort_stalled_after(node.settings().heartbeat_interval() * 2))
//! .disable_signals()
//! .bind("127.0.0.1:8000")?
//! .run();
//! // Serves until SIGTERM/SIGINT, then drains: every socket closed with 1012, then the server stops.
//! node.run_until(server, telegraphy::shutdown::signal()).await?;
//! # Ok(()) }
//! ```
//!
//! Per connection, as on the raw path, one task running a reader (the [`crate::session::Session`], fed from
//! actix-ws's message stream, continuations aggregated up to `limits.max_frame_bytes`) beside the shared writer
//! (`writer`) draining the bounded outbox into actix-ws's session. The writer is the only future that awaits
//! the socket, so a client that stops reading blocks nobody else and is closed with 4008. After the close frame
//! the reader lingers (closing handshake, see `crate::transports::writer`) and the response body is held open meanwhile, so
//! that actix-web closes the TCP connection only then.
//!
//! Differences from the raw path, both from actix-web owning the socket: the connection keeps actix-web's HTTP/1
//! dispatcher and its buffers (more memory per idle connection: bench/README.md); and when the node closes a
//! client that stopped reading (4008), it releases the connection's session, subscriptions and quota at once but
//! cannot drop the socket, which actix-web's dispatcher holds with the unsent frames (up to actix-ws's 32 queued
//! messages) until the client reads or goes away. [`abort_stalled_after`], given to `HttpServer::on_connect`,
//! bounds that: the kernel aborts a TCP connection whose unsent data has not moved for that long.

use std::{
    any::Any,
    future::Future,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use actix_http::ws::verify_handshake;
use actix_web::{
    body::{BodySize, BoxBody, MessageBody},
    dev::Extensions,
    http::StatusCode,
    rt::net::TcpStream,
    web::{self, Bytes},
    HttpRequest, HttpResponse,
};
use actix_ws::{AggregatedMessage, CloseCode, CloseReason, Message, ProtocolError};
use bytestring::ByteString;
use futures_util::{FutureExt, StreamExt};

use crate::{
    node::Gateway,
    session::Inbound,
    transports::admission,
    transports::writer::{self, WsMessage},
};

/// The error actix-ws gives when aggregated continuation frames exceed `max_continuation_size`.
const CONTINUATION_TOO_BIG: &str = "Exceeded maximum continuation size";

/// Handles a WebSocket connection of protocol v1 for an actix-web app that embeds a node (`node`, from
/// `app_data(web::Data::from(node))`): refuses it with a plain-text HTTP status (400 not a WebSocket handshake; or
/// the admission's 403/429/503, see PROTOCOL.md section 10), or answers `101 Switching Protocols` and runs the
/// connection until it closes.
pub async fn ws(req: HttpRequest, body: web::Payload, node: web::Data<Gateway>) -> actix_web::Result<HttpResponse> {
    if verify_handshake(req.head()).is_err() {
        return Ok(refuse(StatusCode::BAD_REQUEST, "bad WebSocket handshake"));
    }
    let peer = req.peer_addr().map(|a| a.ip());
    let admitted = match admission::admit(&node, req.headers(), peer) {
        Ok(admitted) => admitted,
        Err(refusal) => return Ok(refuse(refusal.status, refusal.reason)),
    };
    let (response, session, stream) = match actix_ws::handle(&req, body) {
        Ok(parts) => parts,
        Err(e) => {
            node.connections.remove(admitted.id);
            return Err(e);
        }
    };
    let max = node.settings.limits.max_frame_bytes;
    let stream = stream.max_frame_size(max).aggregate_continuations().max_continuation_size(max);
    // Pings are answered at once if actix-ws's queue has room (a client that does not read needs no pong).
    let mut pong = session.clone();
    // The response body (actix-ws ends it right after the close frame) is held open until the reader has
    // lingered (it drops `lingering` with the stream): actix-web closes the TCP connection when the body ends,
    // and unread client input would turn that into a reset (see `crate::transports::writer`).
    let (lingering, lingered) = tokio::sync::oneshot::channel::<()>();
    let inbound = stream.map(move |message| {
        let _ = &lingering;
        if let Ok(AggregatedMessage::Ping(payload)) = &message {
            let _ = pong.pong(payload).now_or_never();
        }
        inbound(message)
    });
    writer::spawn(node.into_inner(), admitted, session, inbound);
    Ok(response.map_body(|_, body| HeldOpen { body, ended: false, lingered }).map_into_boxed_body())
}

/// A WebSocket response body that, once ended, ends only when `lingered` resolves (its sender is dropped).
struct HeldOpen {
    body: BoxBody,
    ended: bool,
    lingered: tokio::sync::oneshot::Receiver<()>,
}

impl MessageBody for HeldOpen {
    type Error = Box<dyn std::error::Error>;

    fn size(&self) -> BodySize {
        BodySize::Stream
    }

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, Self::Error>>> {
        let this = self.get_mut();
        if !this.ended {
            match Pin::new(&mut this.body).poll_next(cx) {
                Poll::Ready(None) => this.ended = true,
                other => return other,
            }
        }
        Pin::new(&mut this.lingered).poll(cx).map(|_| None)
    }
}

/// A callback for `HttpServer::on_connect`: every accepted TCP connection gets `TCP_USER_TIMEOUT` = `limit`, so
/// the kernel aborts it once data it has to send stayed unacknowledged, or unsent because the client's receive
/// window is closed, for `limit` (Linux; elsewhere nothing is set). A client that reads, however slowly, is not
/// affected; one that stopped reading is cut `limit` after its last progress, taking actix-web's dispatcher and its
/// buffers with it. Twice the heartbeat interval matches the node's own rule for silent clients. It applies to
/// every connection of that server, plain HTTP responses too.
pub fn abort_stalled_after(limit: Duration) -> impl Fn(&dyn Any, &mut Extensions) + Send + Sync + 'static {
    move |connection, _| {
        #[cfg(any(target_os = "linux", target_os = "android"))]
        if let Some(tcp) = connection.downcast_ref::<TcpStream>() {
            if let Err(e) = socket2::SockRef::from(tcp).set_tcp_user_timeout(Some(limit)) {
                tracing::debug!(error = %e, "cannot set TCP_USER_TIMEOUT");
            }
        }
        #[cfg(not(any(target_os = "linux", target_os = "android")))]
        let _ = (connection, limit);
    }
}

/// A refused connection: `status` and a short plain-text reason, and the connection is not kept.
fn refuse(status: StatusCode, reason: &'static str) -> HttpResponse {
    HttpResponse::build(status).content_type("text/plain").force_close().body(reason)
}

/// actix-ws's messages, as the shared writer builds them.
impl WsMessage for Message {
    fn text(text: ByteString) -> Option<Self> {
        Some(Message::Text(text))
    }

    fn close(code: u16, reason: &'static str) -> Self {
        Message::Close(Some(CloseReason { code: CloseCode::from(code), description: Some(reason.to_owned()) }))
    }
}

/// An actix-ws message (or read error) as the protocol core sees it.
fn inbound(message: Result<AggregatedMessage, ProtocolError>) -> Inbound<ByteString> {
    match message {
        Ok(AggregatedMessage::Text(text)) => Inbound::Text(text),
        Ok(AggregatedMessage::Binary(_)) => Inbound::Binary,
        Ok(AggregatedMessage::Ping(_) | AggregatedMessage::Pong(_)) => Inbound::Alive,
        Ok(AggregatedMessage::Close(_)) => Inbound::Closed,
        // One frame over `max_frame_size`, or continuations adding up to more than `max_continuation_size`.
        Err(ProtocolError::Overflow) => Inbound::TooBig,
        Err(ProtocolError::Io(e)) if e.kind() == std::io::ErrorKind::Other && e.to_string() == CONTINUATION_TOO_BIG => {
            Inbound::TooBig
        }
        // A text message that is not UTF-8.
        Err(ProtocolError::Io(e)) if e.kind() == std::io::ErrorKind::InvalidData => {
            Inbound::ProtocolError(e.to_string())
        }
        // The request's payload broke: the connection is gone.
        Err(ProtocolError::Io(_)) => Inbound::Gone,
        Err(e) => Inbound::ProtocolError(e.to_string()),
    }
}
