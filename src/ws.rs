//! The raw WebSocket transport: moves bytes and closes between a socket and a protocol core
//! ([`crate::session::Session`]).
//!
//! The HTTP/1 dispatcher hands every `Upgrade: websocket` request, with its raw TCP connection, to
//! [`upgrade`]: it checks path, handshake, drain state, origin and the connection limit, answers `101`, and
//! from then on the connection is a plain [`tokio_tungstenite`] WebSocket with deliberately small buffers
//! (the HTTP dispatcher and its two 8 KiB buffers are gone: bench/README.md finding 1). Two tasks per
//! connection, both on the accepting actix worker:
//! - the **reader** ([`crate::session::Session::run`]) owns the read half, each WebSocket message turned into an
//!   [`Inbound`];
//! - the **writer** ([`writer::writer`], shared with the actix-ws transport) owns the write half and is the only
//!   task that awaits a socket write: it drains the bounded [`crate::outbox::Outbox`] queue, all queued frames per
//!   write. A client that stops reading blocks only its own writer; its queue fills and the hub closes it with
//!   4008 (see [`crate::outbox`]).
//!
//! WebSocket pings from the client are answered by the WebSocket layer itself.

use std::sync::Arc;

use actix_codec::Framed;
use actix_http::{body::BodySize, h1, header, ws as handshake, HttpMessage, Request, Response, StatusCode};
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::{
    tungstenite::{
        error::CapacityError,
        protocol::{frame::coding::CloseCode, CloseFrame, Role, WebSocketConfig},
        Error as WsError, Message, Utf8Bytes,
    },
    WebSocketStream,
};

use crate::{
    admission,
    node::Gateway,
    outbox::Frame,
    session::Inbound,
    writer::{self, WsMessage},
};

/// Read buffer of each WebSocket, allocated up front and kept for the connection's life: client frames are small
/// requests; 512 bytes hold a `connect` with a typical token (larger frames, up to `limits.max_frame_bytes`, grow
/// it to their size once). 1 KiB until issue 24; 256 saves nothing (the `connect` frame grows it to 512 anyway).
const READ_BUFFER: usize = 512;

type Socket = WebSocketStream<TcpStream>;

#[derive(Debug, thiserror::Error)]
#[error("WebSocket upgrade failed: {0}")]
pub struct UpgradeError(#[from] std::io::Error);

/// Required by the HTTP service; never sent (the connection left the HTTP dispatcher when this arises).
impl From<UpgradeError> for Response<actix_http::body::BoxBody> {
    fn from(_: UpgradeError) -> Self {
        Response::internal_server_error().map_into_boxed_body()
    }
}

/// Takes over an `Upgrade: websocket` request's connection: refuses it with a plain HTTP status, or answers
/// `101 Switching Protocols` and starts the connection's reader (its [`crate::session::Session`]) and writer tasks.
pub async fn upgrade(
    gw: Arc<Gateway>,
    req: Request,
    mut framed: Framed<TcpStream, h1::Codec>,
) -> Result<(), UpgradeError> {
    if req.path() != "/ws" {
        return refuse(framed, StatusCode::NOT_FOUND, "not found").await;
    }
    if handshake::verify_handshake(req.head()).is_err() {
        return refuse(framed, StatusCode::BAD_REQUEST, "bad WebSocket handshake").await;
    }
    let peer = framed.io_ref().peer_addr().ok().map(|a| a.ip());
    let admitted = match admission::admit(&gw, req.headers(), peer) {
        Ok(admitted) => admitted,
        Err(refusal) => return refuse(framed, refusal.status, refusal.reason).await,
    };
    let limits = &gw.settings.limits;
    let accepted = handshake::handshake_response(req.head()).finish().drop_body();
    if let Err(e) = framed.send(h1::Message::Item((accepted, BodySize::None))).await {
        gw.connections.remove(admitted.id);
        return Err(e.into());
    }
    let parts = framed.into_parts();
    let config = WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .max_frame_size(Some(limits.max_frame_bytes))
        .max_message_size(Some(limits.max_frame_bytes));
    // Bytes the client sent right after its request (its first frames) are already in the read buffer.
    let socket = Socket::from_partially_read(parts.io, parts.read_buf.to_vec(), Role::Server, Some(config)).await;
    let (sink, stream) = socket.split();
    writer::spawn(gw, admitted, sink, stream.map(inbound));
    Ok(())
}

/// Answers a refused upgrade with `status` and a short text, then drops the connection.
async fn refuse(
    mut framed: Framed<TcpStream, h1::Codec>,
    status: StatusCode,
    why: &'static str,
) -> Result<(), UpgradeError> {
    let mut response = Response::build(status);
    response.insert_header((header::CONTENT_TYPE, "text/plain")).insert_header((header::CONNECTION, "close"));
    let head = response.finish().drop_body();
    framed.feed(h1::Message::Item((head, BodySize::Sized(why.len() as u64)))).await?;
    framed.feed(h1::Message::Chunk(Some(bytes::Bytes::from_static(why.as_bytes())))).await?;
    framed.send(h1::Message::Chunk(None)).await?;
    Ok(())
}

/// tungstenite's messages, as the shared writer builds them.
impl WsMessage for Message {
    fn text(frame: Frame) -> Option<Self> {
        // A ByteString is UTF-8: the check cannot fail (it costs a scan of the frame).
        Utf8Bytes::try_from(frame.into_bytes()).ok().map(Message::Text)
    }

    fn close(code: u16, reason: &'static str) -> Self {
        Message::Close(Some(CloseFrame { code: CloseCode::from(code), reason: reason.into() }))
    }
}

/// A WebSocket message (or read error) as the protocol core sees it.
fn inbound(message: Result<Message, WsError>) -> Inbound<Utf8Bytes> {
    match message {
        Ok(Message::Text(text)) => Inbound::Text(text),
        Ok(Message::Binary(_)) => Inbound::Binary,
        // Pings are answered by the WebSocket layer; pongs only count as life.
        Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_)) => Inbound::Alive,
        Ok(Message::Close(_)) => Inbound::Closed,
        Err(WsError::Capacity(CapacityError::MessageTooLong { .. })) => Inbound::TooBig,
        Err(WsError::ConnectionClosed | WsError::AlreadyClosed | WsError::Io(_)) => Inbound::Gone,
        Err(e) => Inbound::ProtocolError(e.to_string()),
    }
}

/// Sizes in bytes of the futures of one raw WebSocket connection's two tasks (reader = its session, writer), as
/// spawned by [`upgrade`]: each is stored whole in its task for the connection's lifetime, idle or not.
pub(crate) fn task_sizes() -> (usize, usize) {
    type Reader = futures_util::stream::Map<
        futures_util::stream::SplitStream<Socket>,
        fn(Result<Message, WsError>) -> Inbound<Utf8Bytes>,
    >;
    let reader =
        crate::footprint::future_size(|(session, stream): (crate::session::Session, Reader)| session.run(stream));
    let writer = crate::footprint::future_size(
        |(sink, queue, ctl): (
            futures_util::stream::SplitSink<Socket, Message>,
            crate::outbox::Queue,
            Arc<crate::outbox::Control>,
        )| { writer::writer(sink, queue, ctl) },
    );
    (reader, writer)
}
