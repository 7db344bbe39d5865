//! What both WebSocket transports share once a connection is admitted and upgraded, whatever their WebSocket
//! library ([`crate::transports::ws`]: tokio-tungstenite on the raw socket; [`crate::transports::actix`]: actix-ws in an actix-web app):
//! the connection's one task ([`spawn`], [`serve`]: reader and writer side by side) and the **writer** ([`writer`]):
//! the only future that awaits the socket. It drains the bounded [`crate::node::outbox::Outbox`] queue, all queued frames per write, and
//! decides what goes out once the connection closes (queued frames, then the close frame with the code and reason
//! of [`Control`], all within [`CLOSE_GRACE`]; a 4008 gets no more queued frames).
//!
//! Once the session ended and the writer sent the close frame, the reader **lingers** ([`linger`], RFC 6455
//! 7.1.1): it keeps reading and discarding
//! what the client still sends, for at most [`LINGER`] and [`LINGER_BYTES`], until the client's close frame or
//! EOF, and only then lets the TCP connection go. Dropping a socket with unread input makes the kernel send a
//! reset, and a client still sending (e.g. the frames that got it closed with 1008 or 4029) would lose the close
//! frame and see 1006. A connection that ended on a frame too big (1009) or a broken WebSocket stream (1008
//! protocol error) is not read any further here: its input can no longer be split into frames without buffering
//! what the client declared (the raw path then drains its TCP connection instead, see `crate::transports::ws`).
//!
//! Generic over the library's sink and message type ([`WsMessage`]): monomorphised, so the raw path pays nothing
//! for the sharing.

use std::{cell::Cell, sync::Arc, time::Duration};

use bytestring::ByteString;
use futures_util::{Sink, SinkExt, Stream, StreamExt};

use crate::{
    node::outbox::{self, Control, Frame, Queue},
    node::Gateway,
    protocol::frames::close,
    session::{Inbound, Session},
    transports::admission::Admitted,
};

/// How long the writer may spend flushing queued frames and the close frame after a close was decided. A client
/// that does not read within it loses them.
pub const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// How long a closed connection's reader keeps reading and discarding its client's input, waiting for the
/// client's close frame or EOF.
pub const LINGER: Duration = Duration::from_secs(2);

/// Most bytes of client frames discarded while lingering (then the connection is dropped anyway).
pub const LINGER_BYTES: usize = 1 << 20;

/// Most queued frames the writer takes per wake-up and writes with one flush.
const WRITE_BATCH: usize = 64;

/// A WebSocket library's message type, as the writer builds it.
pub trait WsMessage: Sized {
    /// A text message carrying one encoded protocol frame's text (`None`: the library refused it; it is skipped).
    fn text(text: ByteString) -> Option<Self>;
    /// The close frame: `code` and `reason` from [`Control::closing`].
    fn close(code: u16, reason: &'static str) -> Self;
}

/// Starts an admitted, upgraded connection: counts it and spawns its one task ([`serve`]: the writer on `sink`
/// and the reader, a [`Session`] over `inbound`) on the current actix worker (`spawn_local`: a transport's stream
/// need not be `Send`).
pub fn spawn<S, M, I, T>(gw: Arc<Gateway>, admitted: Admitted, sink: S, inbound: I)
where
    S: Sink<M> + Unpin + 'static,
    M: WsMessage + 'static,
    I: Stream<Item = Inbound<T>> + 'static,
    T: AsRef<str> + 'static,
{
    gw.metrics.connections.increment(1.0);
    gw.metrics.connections_total.increment(1);
    tracing::debug!(conn = admitted.id, "WebSocket upgraded");
    actix_web::rt::spawn(serve(gw, admitted, sink, inbound));
}

/// A connection's one task: its reader (a [`Session`] over `inbound`) and its writer ([`writer`] on `sink`) polled
/// side by side, so that neither waits for the other (a frame handler awaiting NATS does not hold the writer, a
/// blocked socket write does not hold the reader). One task, not two: an idle connection pays one task header
/// and one allocation (issue 24). Once the session ended, the writer is given its close grace to send the
/// close frame, then the reader lingers ([`linger`]) unless the client's input had already ended.
///
/// Takes the parts, not the two futures: an `async fn` keeps its arguments in its state beside what they are
/// moved into, so two futures passed in would be stored twice (2.3 KB instead of 1.5 KB, measured).
pub async fn serve<S, M, I, T>(gw: Arc<Gateway>, admitted: Admitted, sink: S, inbound: I)
where
    S: Sink<M> + Unpin,
    M: WsMessage,
    I: Stream<Item = Inbound<T>>,
    T: AsRef<str>,
{
    let Admitted { id, outbox, queue, ctl } = admitted;
    // Whether the last item the session read ended the input (the client closed, or the stream broke). A local
    // the stream's closure borrows, not an `Rc`: the task's future holds both.
    let ended = Cell::new(false);
    let inbound =
        inbound.inspect(|item| ended.set(!matches!(item, Inbound::Text(_) | Inbound::Binary | Inbound::Alive)));
    let mut inbound = std::pin::pin!(inbound);
    let mut writing = std::pin::pin!(writer(sink, queue, ctl));
    let mut written = false;
    {
        let reading = Session::new(gw, id, outbox).run(inbound.as_mut());
        tokio::pin!(reading);
        loop {
            tokio::select! {
                biased;
                () = &mut reading => break,
                () = &mut writing, if !written => written = true,
            }
        }
    }
    // The session ended, so the connection is closing: the writer sends what is left and the close frame within
    // CLOSE_GRACE (bounded twice here, in case its socket never takes them).
    if !written {
        let _ = tokio::time::timeout(CLOSE_GRACE * 2, &mut writing).await;
    }
    if !ended.get() {
        // After the close frame went: what is read from then on gets no answer (no pong).
        linger(inbound).await;
    }
}

/// Reads and discards what the client of a closed connection still sends, until its close frame or EOF, at
/// most [`LINGER`] and [`LINGER_BYTES`] (see the module docs). Stops at anything but a frame.
pub async fn linger<I, T>(mut inbound: std::pin::Pin<&mut I>)
where
    I: Stream<Item = Inbound<T>>,
    T: AsRef<str>,
{
    let mut discarded = 0;
    let _ = tokio::time::timeout(LINGER, async {
        while let Some(item) = inbound.next().await {
            discarded += match &item {
                Inbound::Text(text) => text.as_ref().len(),
                // No size known: counted as a small frame.
                Inbound::Binary | Inbound::Alive => 128,
                _ => return,
            };
            if discarded > LINGER_BYTES {
                return;
            }
        }
    })
    .await;
}

/// Sends queued frames until the connection is closed, then the close frame. The only task writing to the
/// socket: each wake-up takes every queued frame (up to `WRITE_BATCH`) and writes them with one flush.
pub async fn writer<S, M>(mut sink: S, mut queue: Queue, ctl: Arc<Control>)
where
    S: Sink<M> + Unpin,
    M: WsMessage,
{
    let mut batch = Vec::new();
    loop {
        // A close wakes this wait too (no wait on `ctl.closed()` to register and drop per batch).
        if queue.recv_batch(&mut batch, WRITE_BATCH).await == 0 {
            break; // closing, or every sender is gone
        }
        let bytes = batch.iter().map(|frame| frame.len()).sum();
        // The send first: a socket with room completes it at once, and the close is only waited for (a
        // registration) while a send is blocked.
        tokio::select! {
            biased;
            sent = send_all(&mut sink, &mut batch) => if sent.is_err() {
                ctl.close(close::NORMAL, "client gone");
                return;
            },
            _ = ctl.closed() => break,
        }
        ctl.written(bytes);
        outbox::trim(&mut batch);
    }
    // What is left to send (none after a 4008), within the grace period.
    let (code, reason) = crate::node::outbox::closing_frames(&ctl, &mut queue, &mut batch);
    let _ = tokio::time::timeout(CLOSE_GRACE, async {
        if !batch.is_empty() && send_all(&mut sink, &mut batch).await.is_err() {
            return;
        }
        let _ = sink.send(M::close(code, reason)).await;
    })
    .await;
}

async fn send_all<S, M>(sink: &mut S, batch: &mut Vec<Frame>) -> Result<(), S::Error>
where
    S: Sink<M> + Unpin,
    M: WsMessage,
{
    // Only the text goes on a WebSocket (the position is for SSE ids): the loop's variable, kept in the future's
    // state across the await even once moved out of, is the 32-byte text, not the whole frame (issue 24).
    for text in batch.drain(..).map(Frame::into_text) {
        let Some(message) = M::text(text) else { continue };
        sink.feed(message).await?;
    }
    sink.flush().await
}
