//! The raw WebSocket transport: moves bytes and closes between a socket and a protocol core ([`Session`]).
//!
//! The HTTP/1 dispatcher hands every `Upgrade: websocket` request, with its raw TCP connection, to
//! [`upgrade`]: it checks path, handshake, drain state, origin and the connection limit, answers `101`, and
//! from then on the connection is a plain [`tokio_tungstenite`] WebSocket with deliberately small buffers
//! (the HTTP dispatcher and its two 8 KiB buffers are gone: bench/README.md finding 1). Two tasks per
//! connection, both on the accepting actix worker:
//! - the **reader** ([`Session::run`]) owns the read half, each WebSocket message turned into an [`Inbound`];
//! - the **writer** ([`writer`]) owns the write half and is the only task that awaits a socket write: it drains
//!   the bounded [`Outbox`](crate::outbox::Outbox) queue, all queued frames per write. A client that stops
//!   reading blocks only its own writer; its queue fills and the hub closes it with 4008 (see [`crate::outbox`]).
//!
//! WebSocket pings from the client are answered by the WebSocket layer itself.

use std::{sync::Arc, time::Duration};

use actix_codec::Framed;
use actix_http::{body::BodySize, h1, header, ws as handshake, HttpMessage, Request, Response, StatusCode};
use futures_util::{stream::SplitSink, SinkExt, StreamExt};
use tokio::{net::TcpStream, sync::mpsc};
use tokio_tungstenite::{
    tungstenite::{
        error::CapacityError,
        protocol::{frame::coding::CloseCode, CloseFrame, Role, WebSocketConfig},
        Error as WsError, Message, Utf8Bytes,
    },
    WebSocketStream,
};

use crate::{
    admission::{self, Admitted},
    frames::close,
    node::Gateway,
    outbox::{Control, Frame},
    session::{Inbound, Session},
};

/// How long the writer may spend flushing queued frames and the close frame after a close was decided.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Read buffer of each WebSocket, allocated up front: client frames are small requests (larger ones, up to
/// `limits.max_frame_bytes`, still arrive, in several reads).
const READ_BUFFER: usize = 1024;

/// Most queued frames the writer takes per wake-up and writes with one flush.
const WRITE_BATCH: usize = 64;

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
/// `101 Switching Protocols` and starts the connection's reader (its [`Session`]) and writer tasks.
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
    let Admitted { id, outbox, queue, ctl } = match admission::admit(&gw, req.headers(), peer) {
        Ok(admitted) => admitted,
        Err(refusal) => return refuse(framed, refusal.status, refusal.reason).await,
    };
    let limits = &gw.settings.limits;
    let accepted = handshake::handshake_response(req.head()).finish().drop_body();
    if let Err(e) = framed.send(h1::Message::Item((accepted, BodySize::None))).await {
        gw.connections.remove(id);
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
    gw.metrics.connections.increment(1.0);
    gw.metrics.connections_total.increment(1);
    tracing::debug!(conn = id, "WebSocket upgraded");
    actix_web::rt::spawn(writer(sink, queue, ctl.clone()));
    actix_web::rt::spawn(Session::new(gw, id, outbox).run(stream.map(inbound)));
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

/// Sends queued frames until the connection is closed, then the close frame. The only task writing to the
/// socket: each wake-up takes every queued frame (up to `WRITE_BATCH`) and writes them with one flush.
pub async fn writer(mut sink: SplitSink<Socket, Message>, mut queue: mpsc::Receiver<Frame>, ctl: Arc<Control>) {
    let mut batch = Vec::new();
    loop {
        let received = tokio::select! {
            biased;
            _ = ctl.closed() => break,
            n = queue.recv_many(&mut batch, WRITE_BATCH) => n,
        };
        if received == 0 {
            break; // every sender is gone
        }
        let bytes = batch.iter().map(|frame| frame.len()).sum();
        tokio::select! {
            biased;
            _ = ctl.closed() => break,
            sent = send_all(&mut sink, &mut batch) => if sent.is_err() {
                ctl.close(close::NORMAL, "client gone");
                return;
            },
        }
        ctl.written(bytes);
    }
    let (code, reason) = ctl.closing().unwrap_or((close::NORMAL, "closing"));
    // A slow client gets no more queued frames; any other close first flushes what was queued (e.g. the
    // `error` frame explaining a 4001), within the grace period.
    let _ = tokio::time::timeout(CLOSE_GRACE, async {
        batch.clear();
        if code != close::TOO_SLOW {
            while let Ok(frame) = queue.try_recv() {
                batch.push(frame);
            }
            if send_all(&mut sink, &mut batch).await.is_err() {
                return;
            }
        }
        let frame = CloseFrame { code: CloseCode::from(code), reason: reason.into() };
        let _ = sink.send(Message::Close(Some(frame))).await;
    })
    .await;
}

async fn send_all(sink: &mut SplitSink<Socket, Message>, batch: &mut Vec<Frame>) -> Result<(), WsError> {
    for frame in batch.drain(..) {
        // A ByteString is UTF-8: the check cannot fail (it costs a scan of the frame).
        let Ok(text) = Utf8Bytes::try_from(frame.into_bytes()) else { continue };
        sink.feed(Message::Text(text)).await?;
    }
    sink.flush().await
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
