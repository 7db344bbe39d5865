//! The raw WebSocket transport: moves bytes and closes between a socket and a protocol core
//! ([`crate::session::Session`]).
//!
//! The HTTP/1 dispatcher hands every `Upgrade: websocket` request, with its raw TCP connection, to
//! [`upgrade`]: it checks path, handshake, drain state, origin and the connection limit, answers `101`, and
//! from then on the connection is a plain [`tokio_tungstenite`] WebSocket with deliberately small buffers
//! (the HTTP dispatcher and its two 8 KiB buffers are gone: bench/README.md finding 1). One task per
//! connection on the accepting actix worker ([`writer::serve`]), polling two futures side by side:
//! - the **reader** ([`crate::session::Session::run`]) owns the read half, each WebSocket message turned into an
//!   [`Inbound`];
//! - the **writer** ([`writer::writer`], shared with the actix-ws transport) owns the write half and is the only
//!   future that awaits a socket write: it drains the bounded [`crate::node::outbox::Outbox`] queue, all queued
//!   frames per write. A client that stops reading blocks only its own writer; its queue fills and the hub closes
//!   it with 4008 (see [`crate::node::outbox`]).
//!
//! WebSocket pings from the client are answered by the WebSocket layer itself; they take request-rate tokens like
//! data frames (the session counts them). Once the connection is closed, the reader keeps reading and discarding
//! until the client's close frame (RFC 6455 7.1.1, see [`writer::linger`]); after a frame too big or a protocol
//! error, the TCP connection itself is drained until EOF (`Lingering`).

use std::{
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use actix_codec::Framed;
use actix_http::{body::BodySize, h1, header, ws as handshake, HttpMessage, Request, Response, StatusCode};
use bytestring::ByteString;
use futures_util::{SinkExt, StreamExt};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf},
    net::TcpStream,
};
use tokio_tungstenite::{
    tungstenite::{
        error::CapacityError,
        protocol::{frame::coding::CloseCode, CloseFrame, Role, WebSocketConfig},
        Error as WsError, Message, Utf8Bytes,
    },
    WebSocketStream,
};

use crate::{
    node::outbox::Control,
    node::Gateway,
    session::inbound::Inbound,
    transports::admission,
    transports::writer::{self, WsMessage},
};

/// Read buffer of each WebSocket, allocated up front and kept for the connection's life: client frames are small
/// requests; 512 bytes hold a `connect` with a typical token (larger frames, up to `limits.max_frame_bytes`, grow
/// it to their size once). 1 KiB until issue 24; 256 saves nothing (the `connect` frame grows it to 512 anyway).
const READ_BUFFER: usize = 512;

type Socket = WebSocketStream<Lingering>;

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
/// `101 Switching Protocols` and starts the connection's task (its reader, a [`crate::session::Session`], and its writer).
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
    let ctl = admitted.ctl.clone();
    let io = Lingering { tcp: Some(parts.io), ctl: ctl.clone() };
    let socket = Socket::from_partially_read(io, parts.read_buf.to_vec(), Role::Server, Some(config)).await;
    let (sink, stream) = socket.split();
    let inbound = stream.map(move |message| {
        let item = inbound(message);
        if matches!(item, Inbound::TooBig | Inbound::ProtocolError(_)) {
            ctl.mark_input_unreadable();
        }
        item
    });
    writer::spawn(gw, admitted, sink, inbound);
    Ok(())
}

/// The TCP connection under a raw WebSocket. When the WebSocket stream broke (a frame over the limit: 1009; a
/// protocol error: 1008), its input can no longer be read as frames (the WebSocket layer would buffer what the
/// client declared), so the shared linger cannot run; dropped in that state, the connection lingers on its own:
/// its input is read and discarded until EOF, at most [`writer::LINGER`] and [`writer::LINGER_BYTES`], so that
/// the close frame sent before reaches a client that was still sending (no reset).
struct Lingering {
    tcp: Option<TcpStream>,
    /// The connection's control, whose [`Control::input_unreadable`] says the stream broke.
    ctl: Arc<Control>,
}

impl Lingering {
    fn tcp(&mut self) -> Pin<&mut TcpStream> {
        Pin::new(self.tcp.as_mut().expect("present until dropped"))
    }
}

impl AsyncRead for Lingering {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        self.get_mut().tcp().poll_read(cx, buf)
    }
}

impl AsyncWrite for Lingering {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        self.get_mut().tcp().poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.get_mut().tcp().poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.get_mut().tcp().poll_shutdown(cx)
    }
}

impl Drop for Lingering {
    fn drop(&mut self) {
        let Some(mut tcp) = self.tcp.take() else { return };
        if !self.ctl.input_unreadable() {
            return;
        }
        // Outside a runtime (it is shutting down) the connection just closes.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let mut scratch = [0u8; 4096];
                let mut discarded = 0;
                let _ = tokio::time::timeout(writer::LINGER, async {
                    while let Ok(n @ 1..) = tcp.read(&mut scratch).await {
                        discarded += n;
                        if discarded > writer::LINGER_BYTES {
                            break;
                        }
                    }
                })
                .await;
            });
        }
    }
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
    fn text(text: ByteString) -> Option<Self> {
        // A ByteString is UTF-8: the check cannot fail (it costs a scan of the frame).
        Utf8Bytes::try_from(text.into_bytes()).ok().map(Message::Text)
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
        // Pings are answered by the WebSocket layer; pings and pongs count as life and as requests.
        Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_)) => Inbound::Alive,
        Ok(Message::Close(_)) => Inbound::Closed,
        Err(WsError::Capacity(CapacityError::MessageTooLong { .. })) => Inbound::TooBig,
        Err(WsError::ConnectionClosed | WsError::AlreadyClosed | WsError::Io(_)) => Inbound::Gone,
        Err(e) => Inbound::ProtocolError(e.to_string()),
    }
}

/// The size of the future `make` returns, without building one.
fn future_size<A, F: std::future::Future>(_make: impl FnOnce(A) -> F) -> usize {
    std::mem::size_of::<F>()
}

/// Sizes in bytes of the futures of one raw WebSocket connection, as spawned by [`upgrade`]: its reader (its
/// session), its writer, and its one task's future ([`writer::serve`], both and their glue), stored whole for the
/// connection's lifetime, idle or not.
pub(crate) fn task_sizes() -> (usize, usize, usize) {
    type Reader = futures_util::stream::Map<
        futures_util::stream::SplitStream<Socket>,
        fn(Result<Message, WsError>) -> Inbound<Utf8Bytes>,
    >;
    type Sink = futures_util::stream::SplitSink<Socket, Message>;
    type Parts = (Sink, crate::node::outbox::Queue, Arc<crate::node::outbox::Control>);
    let reader = future_size(|(session, stream): (crate::session::Session, Reader)| session.run(stream));
    let writer = future_size(|(sink, queue, ctl): Parts| writer::writer(sink, queue, ctl));
    let task = future_size(|(gw, admitted, sink, stream): (Arc<Gateway>, admission::Admitted, Sink, Reader)| {
        writer::serve(gw, admitted, sink, stream)
    });
    (reader, writer, task)
}
