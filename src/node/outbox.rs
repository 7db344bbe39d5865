//! A connection's bounded outbound queue and its close switch.
//!
//! The hub and the session push encoded frames with [`Outbox::push`], which never waits: when the queue is
//! full the connection is marked too slow (close 4008) and the frame is dropped for it alone. The connection's
//! writer is the only reader of the queue ([`Queue`]) and the only one that awaits the socket.
//!
//! The queue is bounded twice: in frames (`limits.outbound_queue`) and in bytes (`limits.outbound_queue_bytes`,
//! counted from the push until the writer has written the frame). Into an empty queue any frame fits.
//!
//! Once connected, a connection's queued bytes also count in the node's total ([`SharedQueue`],
//! `limits.outbound_queue_bytes_per_node`). A push that takes the total over its bound is queued all the same
//! (it fits its connection's own bound), and the node closes the connections with the largest queues as too
//! slow until the excess is released ([`SharedQueue::over`], `crate::node`): the never-reading sockets that
//! fill the total go, not whichever reader happened to be a few frames behind when it was reached. (A user's
//! queued bytes are bounded by its sockets, `limits.max_connections_per_user` x `limits.outbound_queue_bytes`.)
//!
//! Memory and wake-ups (issue 24): the queue is a `VecDeque` under a short lock inside the connection's one
//! [`Control`] allocation, empty (unallocated) until the first frame, instead of a tokio `mpsc` channel, whose
//! channel state and first block of 32 slots cost every idle connection ~1.6 KB up front. A push wakes the writer
//! only when it finds the queue empty (once per batch, not per frame), and the writer takes up to a batch of
//! frames per lock.

use std::{
    collections::VecDeque,
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc, Mutex, OnceLock,
    },
};

use bytes::Bytes;
use bytestring::ByteString;
use tokio::sync::Notify;

use crate::{
    node::wakes::{self, Group, Wakes, Writer as _},
    protocol::frames::{close, PositionSpan},
};

/// One queued message: an encoded protocol frame (a WebSocket text message, an SSE `data:` line) and, for
/// `event` and `position` frames with a history position, where that position sits in the text: computed once by
/// the encoder ([`PositionSpan`]), so a transport that shows it (the SSE `id:` line) does not parse every frame.
///
/// Cheap to clone (the text is a refcounted [`ByteString`]): the hub encodes a frame once and queues a clone to
/// each receiver. 40 bytes, 8 more than the text alone: every retained queue slot pays them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    text: ByteString,
    position: Option<PositionSpan>,
}

impl Frame {
    /// A frame of `text` whose history position, if any, is at `position`: the span the encoder returned with
    /// this very text (`frames::encode_event_spanned`, `frames::encode_position_spanned`). A span of another
    /// text reads back whatever sits there, or nothing.
    pub fn new(text: ByteString, position: Option<PositionSpan>) -> Self {
        Frame { text, position }
    }

    /// The text's length in bytes (what the queue's byte bounds count).
    pub fn len(&self) -> usize {
        self.text.len()
    }

    pub fn is_empty(&self) -> bool {
        self.text.is_empty()
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The history position `(epoch, seq)` the frame carries, read through its span (no parsing of the frame);
    /// None for a frame without one.
    pub fn position(&self) -> Option<(&str, u64)> {
        self.position?.read(&self.text)
    }

    pub fn into_text(self) -> ByteString {
        self.text
    }

    /// The text's UTF-8 bytes (a refcount, no copy).
    pub fn into_bytes(self) -> Bytes {
        self.text.into_bytes()
    }
}

/// A frame without a history position (a reply, a presence frame...).
impl From<ByteString> for Frame {
    fn from(text: ByteString) -> Self {
        Frame::new(text, None)
    }
}

/// A frame without a history position (a reply, a presence frame...).
impl From<String> for Frame {
    fn from(text: String) -> Self {
        Frame::new(ByteString::from(text), None)
    }
}

/// The most frames a drained queue's buffer (and a writer's batch buffer, [`trim`]) keeps: a larger one, grown
/// by a burst, is freed once empty, so it does not stay with an idle connection.
const SPARE_FRAMES: usize = 16;

/// The queued frames and who is still there to use them.
#[derive(Debug, Default)]
struct Frames {
    queued: VecDeque<Frame>,
    /// Live [`Outbox`] handles (pushers); 0 = none will push again.
    senders: usize,
    /// The [`Queue`] (the writer's end) was dropped: pushes find the connection gone.
    reader_gone: bool,
}

/// Why and how a connection is being closed (the first caller wins), and its queue of frames.
#[derive(Debug, Default)]
pub struct Control {
    reason: OnceLock<(u16, &'static str)>,
    /// Signalled (to every waiter) when the reason is set.
    closing: Notify,
    frames: Mutex<Frames>,
    /// A permit for the writer: frames arrived in an empty queue, the last sender left, or the connection is
    /// closing.
    ready: Notify,
    /// Bytes of the frames queued and not yet written.
    queued_bytes: AtomicUsize,
    /// Signalled when the writer has written frames (room for [`Outbox::push_wait`]).
    room: Notify,
    /// The node's total this connection's queued bytes also count in, once connected ([`Control::share`]).
    shared: OnceLock<Arc<SharedQueue>>,
    /// The worker thread's group that wakes the writer for a fan-out round ([`crate::node::wakes`]); None = woken
    /// directly.
    group: Option<Arc<Group>>,
    /// The transport's input can no longer be read as frames (a frame over the limit, a broken WebSocket
    /// stream): the raw path drains its TCP connection instead of lingering on frames (`crate::transports::ws`).
    input_unreadable: AtomicBool,
}

impl Drop for Control {
    /// The connection is gone: what it still had queued (never written, e.g. after a 4008) leaves the totals.
    fn drop(&mut self) {
        if let Some(node) = self.shared.get() {
            node.sub(*self.queued_bytes.get_mut());
        }
    }
}

/// Bytes queued for a group of connections (the node's) and their bound.
#[derive(Debug)]
pub struct SharedQueue {
    used: AtomicUsize,
    max: usize,
    /// Signalled when a frame took the total over its bound: the node closes its largest queues.
    over: Notify,
}

impl SharedQueue {
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(SharedQueue { used: AtomicUsize::new(0), max, over: Notify::new() })
    }

    /// Bytes queued and not yet written, in the group.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// The group's bound, bytes.
    pub fn max(&self) -> usize {
        self.max
    }

    /// Resolves once a frame took the total over its bound (since the last call).
    pub async fn over(&self) {
        self.over.notified().await
    }

    /// Counts `len` more bytes; over the bound, the node is told to close its largest queues.
    fn add(&self, len: usize) {
        if self.used.fetch_add(len, Ordering::AcqRel).saturating_add(len) > self.max {
            self.over.notify_one();
        }
    }

    fn sub(&self, len: usize) {
        let _ = self.used.fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| Some(u.saturating_sub(len)));
    }
}

impl wakes::Writer for Control {
    /// Wakes the writer (it takes what is queued, or sees the close).
    fn wake_writer(&self) {
        self.ready.notify_one();
    }

    fn wake_group(&self) -> Option<&Arc<Group>> {
        self.group.as_ref()
    }
}

impl Control {
    /// Asks the connection to close with `code`; returns false if it was already closing.
    pub fn close(&self, code: u16, reason: &'static str) -> bool {
        let first = self.reason.set((code, reason)).is_ok();
        if first {
            if code == close::TOO_SLOW {
                // Never sent (a slow client gets no more frames): their bytes leave the totals now, not when
                // the writer is done with a full socket.
                self.drop_queued();
            }
            self.closing.notify_waiters();
            self.ready.notify_one(); // a writer in `Queue::recv_batch` returns
        }
        first
    }

    pub fn closing(&self) -> Option<(u16, &'static str)> {
        self.reason.get().copied()
    }

    /// Resolves once [`Control::close`] has been called.
    pub async fn closed(&self) {
        loop {
            let notified = self.closing.notified();
            tokio::pin!(notified);
            notified.as_mut().enable(); // a close between the check below and the wait is not missed
            if self.reason.get().is_some() {
                return;
            }
            notified.await;
        }
    }

    /// Drops the queued frames, unwritten: they leave the connection's count and the node's total.
    fn drop_queued(&self) {
        let dropped = std::mem::take(&mut self.frames().queued);
        let bytes = dropped.iter().map(|frame| frame.len()).sum();
        self.queued_bytes.fetch_sub(bytes, Ordering::AcqRel);
        if let Some(node) = self.shared.get() {
            node.sub(bytes);
        }
    }

    /// Marks the transport's input as no longer readable as frames ([`Control::input_unreadable`]).
    pub fn mark_input_unreadable(&self) {
        self.input_unreadable.store(true, Ordering::Relaxed);
    }

    /// Whether the transport's input broke (see the field's docs); kept here, in the connection's one shared
    /// allocation, rather than in a flag of its own (issue 24).
    pub fn input_unreadable(&self) -> bool {
        self.input_unreadable.load(Ordering::Relaxed)
    }

    /// Bytes queued and not yet written for this connection.
    pub fn queued_bytes(&self) -> usize {
        self.queued_bytes.load(Ordering::Relaxed)
    }

    /// Whether this connection's queued bytes count in a shared total (it is connected).
    pub fn is_shared(&self) -> bool {
        self.shared.get().is_some()
    }

    /// The writer has written frames of `bytes` bytes: they leave the queue's byte count.
    pub fn written(&self, bytes: usize) {
        self.queued_bytes.fetch_sub(bytes, Ordering::AcqRel);
        if let Some(node) = self.shared.get() {
            node.sub(bytes);
        }
        self.room.notify_waiters();
    }

    /// From now on, this connection's queued bytes also count in the node's total `node`; once only (at
    /// `connect`, by the connection's own task). Bytes queued before are counted too (a frame written while this
    /// runs may be taken off the total without having been counted: the total errs low, never high).
    pub fn share(&self, node: Arc<SharedQueue>) {
        if self.shared.set(node).is_ok() {
            if let Some(shared) = self.shared.get() {
                shared.add(self.queued_bytes.load(Ordering::Acquire));
            }
        }
    }

    fn frames(&self) -> std::sync::MutexGuard<'_, Frames> {
        self.frames.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The writer's end of a connection's queue (one per connection).
#[derive(Debug)]
pub struct Queue {
    ctl: Arc<Control>,
}

impl Queue {
    /// Moves up to `limit` queued frames to the end of `into`, waiting until there is one; 0 once every
    /// [`Outbox`] is gone and nothing is queued (as tokio's `mpsc::Receiver::recv_many`).
    pub async fn recv_many(&mut self, into: &mut Vec<Frame>, limit: usize) -> usize {
        loop {
            let ready = self.ctl.ready.notified();
            if let Some(n) = self.take(into, limit) {
                return n;
            }
            ready.await;
        }
    }

    /// As [`Queue::recv_many`], but 0 as soon as the connection is closing (what is left to send then is for
    /// [`closing_frames`]). The writer's wait: a close wakes it through the queue, so it needs no wait of its own
    /// on [`Control::closed`] per batch (in a burst to many sockets every writer wakes for every event).
    pub async fn recv_batch(&mut self, into: &mut Vec<Frame>, limit: usize) -> usize {
        loop {
            let ready = self.ctl.ready.notified();
            if self.ctl.closing().is_some() {
                return 0;
            }
            if let Some(n) = self.take(into, limit) {
                return n;
            }
            ready.await;
        }
    }

    /// The next queued frame, waiting for one; None once every [`Outbox`] is gone and nothing is queued.
    pub async fn recv(&mut self) -> Option<Frame> {
        let mut one = Vec::with_capacity(1);
        self.recv_many(&mut one, 1).await;
        one.pop()
    }

    /// The next queued frame, if any, without waiting.
    pub fn try_recv(&mut self) -> Option<Frame> {
        let mut one = Vec::with_capacity(1);
        self.take(&mut one, 1);
        one.pop()
    }

    /// Moves up to `limit` queued frames to `into` without waiting: their count, 0 when nothing is queued and
    /// no [`Outbox`] is left, None when nothing is queued yet.
    fn take(&self, into: &mut Vec<Frame>, limit: usize) -> Option<usize> {
        let mut frames = self.ctl.frames();
        let n = frames.queued.len().min(limit);
        if n == 0 {
            return (frames.senders == 0).then_some(0);
        }
        if into.capacity() == 0 {
            // As in `Outbox::enqueue`: a first batch buffer of the batch's size, not Vec's 4 slots.
            into.reserve_exact(n);
        }
        into.extend(frames.queued.drain(..n));
        if frames.queued.is_empty() && frames.queued.capacity() > SPARE_FRAMES {
            frames.queued = VecDeque::new(); // a burst's buffer does not stay with an idle connection
        }
        let left = !frames.queued.is_empty();
        drop(frames);
        if left {
            // The next call must not wait for a push: a push into a non-empty queue wakes nobody.
            self.ctl.ready.notify_one();
        }
        Some(n)
    }

    /// Every queued frame, without waiting (for a closing connection's last flush).
    pub fn drain_into(&mut self, into: &mut Vec<Frame>) {
        let _ = self.take(into, usize::MAX);
    }
}

/// Frees a writer's batch buffer grown by a burst (keeps a small one for the next batch).
pub fn trim(batch: &mut Vec<Frame>) {
    trim_spare(batch);
}

/// Frees an emptied buffer grown beyond [`SPARE_FRAMES`] items.
pub(crate) fn trim_spare<T>(buffer: &mut Vec<T>) {
    if buffer.capacity() > SPARE_FRAMES {
        *buffer = Vec::new();
    }
}

impl Drop for Queue {
    fn drop(&mut self) {
        self.ctl.frames().reader_gone = true;
        self.ctl.drop_queued();
    }
}

/// What a closing connection still sends, for its writer: the close code and reason, and the queued frames
/// (none after a 4008: a slow client gets no more of them; any other close first flushes them, e.g. the `error`
/// frame explaining a 4001). One rule for every transport's writer.
pub fn closing_frames(ctl: &Control, queue: &mut Queue, into: &mut Vec<Frame>) -> (u16, &'static str) {
    let (code, reason) = ctl.closing().unwrap_or((close::NORMAL, "closing"));
    into.clear();
    if code != close::TOO_SLOW {
        queue.drain_into(into);
    }
    (code, reason)
}

/// A pusher's handle on a connection's queue (cheap to clone: the hub keeps one per subscription).
#[derive(Debug)]
pub struct Outbox {
    ctl: Arc<Control>,
    capacity: usize,
    max_bytes: usize,
}

impl Clone for Outbox {
    fn clone(&self) -> Self {
        self.ctl.frames().senders += 1;
        Outbox { ctl: self.ctl.clone(), capacity: self.capacity, max_bytes: self.max_bytes }
    }
}

impl Drop for Outbox {
    fn drop(&mut self) {
        let last = {
            let mut frames = self.ctl.frames();
            frames.senders -= 1;
            frames.senders == 0
        };
        if last {
            self.ctl.ready.notify_one();
        }
    }
}

/// What happened to a pushed frame.
#[derive(Debug, PartialEq, Eq)]
pub enum Push {
    Queued,
    /// The queue was full: the connection is now closing with 4008.
    TooSlow,
    /// The connection is gone.
    Gone,
}

/// Why a frame was not queued.
enum Refused {
    /// No free slot: the frame is handed back.
    Full(Frame),
    Gone,
}

impl Outbox {
    /// A queue of at most `capacity` frames and no byte bound of its own.
    pub fn new(capacity: usize) -> (Self, Queue, Arc<Control>) {
        Self::bounded(capacity, usize::MAX)
    }

    /// A queue of at most `capacity` frames and `max_bytes` bytes. The writer reports what it wrote with
    /// [`Control::written`]. Made on the thread its writer will run on (the writer's wake-ups from a fan-out
    /// go through that thread's `crate::node::wakes` group).
    pub fn bounded(capacity: usize, max_bytes: usize) -> (Self, Queue, Arc<Control>) {
        let mut ctl = Control::default();
        ctl.group = wakes::local();
        let ctl = Arc::new(ctl);
        ctl.frames().senders = 1;
        (Outbox { ctl: ctl.clone(), capacity: capacity.max(1), max_bytes }, Queue { ctl: ctl.clone() }, ctl)
    }

    /// Queues a text frame without waiting.
    pub fn push(&self, frame: Frame) -> Push {
        self.push_to(frame, None)
    }

    /// As [`Outbox::push`], for one of many connections a frame goes to: the writer's wake-up, if it needs one,
    /// is left to `wakes` (one per worker thread when flushed, not one per connection).
    pub fn push_batched(&self, frame: Frame, wakes: &mut Wakes) -> Push {
        self.push_to(frame, Some(wakes))
    }

    fn push_to(&self, frame: Frame, wakes: Option<&mut Wakes>) -> Push {
        if self.ctl.closing().is_some() {
            return Push::Gone;
        }
        let len = frame.len();
        if !self.reserve(len) {
            return self.too_slow();
        }
        match self.enqueue(frame, wakes) {
            Ok(()) => Push::Queued,
            Err(refused) => {
                self.unreserve(len);
                match refused {
                    Refused::Full(_) => self.too_slow(),
                    Refused::Gone => Push::Gone,
                }
            }
        }
    }

    /// Appends `frame` if the queue has a free slot; wakes the writer when the queue was empty (it takes the
    /// whole queue per wake-up, so one wake-up per batch), now or through `wakes`.
    fn enqueue(&self, frame: Frame, wakes: Option<&mut Wakes>) -> Result<(), Refused> {
        let was_empty = {
            let mut frames = self.ctl.frames();
            if frames.reader_gone {
                return Err(Refused::Gone);
            }
            if frames.queued.len() >= self.capacity {
                return Err(Refused::Full(frame));
            }
            if frames.queued.capacity() == 0 {
                // Most connections queue one frame at a time (replies, an event now and then): the first buffer
                // holds one, not VecDeque's 4 (an idle connection keeps it; issue 24). A burst grows it.
                frames.queued.reserve_exact(1);
            }
            frames.queued.push_back(frame);
            frames.queued.len() == 1
        };
        if was_empty {
            match wakes {
                Some(wakes) => wakes.add(&self.ctl),
                None => self.ctl.wake_writer(),
            }
        }
        Ok(())
    }

    /// Queues a text frame, waiting up to `limit` for room (only for the connection's own task, e.g. a history
    /// replay larger than the queue); still full after that = too slow.
    pub async fn push_wait(&self, frame: Frame, limit: std::time::Duration) -> Push {
        let deadline = tokio::time::Instant::now() + limit;
        let len = frame.len();
        let mut frame = Some(frame);
        loop {
            if self.ctl.closing().is_some() {
                return Push::Gone;
            }
            let room = self.ctl.room.notified();
            tokio::pin!(room);
            room.as_mut().enable(); // a write between the check below and the wait is not missed
            if self.reserve(len) {
                match self.enqueue(frame.take().expect("frame not yet queued"), None) {
                    Ok(()) => return Push::Queued,
                    Err(Refused::Gone) => {
                        self.unreserve(len);
                        return Push::Gone;
                    }
                    Err(Refused::Full(back)) => {
                        // No free slot: wait for the writer, as for bytes.
                        self.unreserve(len);
                        frame = Some(back);
                    }
                }
            }
            if tokio::time::timeout_at(deadline, room).await.is_err() {
                return self.too_slow();
            }
        }
    }

    /// Counts `len` more queued bytes if they fit the connection's queue (any frame fits into an empty one),
    /// and in its shared total (over it, the node is told to close its largest queues).
    fn reserve(&self, len: usize) -> bool {
        let before = self.ctl.queued_bytes.fetch_add(len, Ordering::AcqRel);
        if before > 0 && before.saturating_add(len) > self.max_bytes {
            self.ctl.queued_bytes.fetch_sub(len, Ordering::AcqRel);
            return false;
        }
        if let Some(node) = self.ctl.shared.get() {
            node.add(len); // over the node's total: taken all the same, the node closes its largest queues
        }
        true
    }

    /// Takes back bytes [`Outbox::reserve`] counted for a frame that was not queued.
    fn unreserve(&self, len: usize) {
        self.ctl.queued_bytes.fetch_sub(len, Ordering::AcqRel);
        if let Some(node) = self.ctl.shared.get() {
            node.sub(len);
        }
    }

    /// The queue stayed full: close with 4008 (the first to notice reports `TooSlow`, to count it once).
    fn too_slow(&self) -> Push {
        if self.ctl.close(close::TOO_SLOW, "too slow") {
            Push::TooSlow
        } else {
            Push::Gone
        }
    }

    pub fn control(&self) -> &Arc<Control> {
        &self.ctl
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(len: usize) -> Frame {
        Frame::from("x".repeat(len))
    }

    #[test]
    fn a_frame_carries_its_position_in_40_bytes() {
        assert_eq!(std::mem::size_of::<Frame>(), 40, "a ByteString and an 8-byte span, per queued frame");
        let (text, span) = crate::protocol::frames::encode_position_spanned("a.>", "18a6f", 1234);
        let frame = Frame::new(ByteString::from(text.clone()), span);
        assert_eq!(frame.position(), Some(("18a6f", 1234)));
        assert_eq!((frame.len(), frame.as_str()), (text.len(), text.as_str()));
        let plain = Frame::from(text.clone());
        assert_eq!(plain.position(), None, "a frame from text alone has no position, whatever its text");
        assert_eq!(plain.into_bytes(), text.as_bytes());
        assert!(Frame::from(String::new()).is_empty());
    }

    #[test]
    fn bytes_bound_the_queue_until_written() {
        let (outbox, mut rx, ctl) = Outbox::bounded(100, 1000);
        assert_eq!(outbox.push(frame(600)), Push::Queued);
        assert_eq!(outbox.push(frame(400)), Push::Queued, "exactly at the bound");
        let taken = rx.try_recv().unwrap().len();
        ctl.written(taken);
        assert_eq!(outbox.push(frame(500)), Push::Queued, "room again once written");
        assert_eq!(outbox.push(frame(200)), Push::TooSlow);
        assert_eq!(ctl.closing(), Some((close::TOO_SLOW, "too slow")));
    }

    #[test]
    fn an_empty_queue_takes_any_frame() {
        let (outbox, _rx, _ctl) = Outbox::bounded(100, 10);
        assert_eq!(outbox.push(frame(50)), Push::Queued);
        assert_eq!(outbox.push(frame(1)), Push::TooSlow);
    }

    #[test]
    fn the_node_total_bounds_every_queue_together() {
        let node = SharedQueue::new(1000);
        let (a, mut a_rx, a_ctl) = Outbox::bounded(100, 1000);
        let (b, _b_rx, b_ctl) = Outbox::bounded(100, 1000);
        assert_eq!(a.push(frame(400)), Push::Queued, "before connect: not counted");
        a_ctl.share(node.clone());
        b_ctl.share(node.clone());
        assert_eq!(node.used(), 400, "what was queued counts from then on");
        assert_eq!(a.push(frame(400)), Push::Queued);
        let told = || futures_util::FutureExt::now_or_never(node.over()).is_some();
        assert!(!told());
        assert_eq!(b.push(frame(300)), Push::Queued, "over the node's total: the pusher is not the one closed");
        assert_eq!(node.used(), 1100);
        assert!(told(), "the node is told to close its largest queues");
        assert_eq!(b.push(frame(10)), Push::Queued);
        assert!(told());
        assert_eq!(node.used(), 1110);
        assert_eq!(b.push(frame(800)), Push::TooSlow, "its own bound still holds");
        assert_eq!(node.used(), 800, "a 4008 drops the connection's queued frames at once");
        let taken = a_rx.try_recv().unwrap().len();
        a_ctl.written(taken);
        assert_eq!(node.used(), 400);
        assert_eq!(a.push(frame(200)), Push::Queued);
        drop((b, b_ctl, _b_rx));
        assert_eq!(node.used(), 600);
        drop(a_rx);
        assert_eq!(node.used(), 0, "a closed connection's unwritten bytes leave the total");
    }

    #[tokio::test]
    async fn push_wait_waits_for_written_bytes() {
        let (outbox, mut rx, ctl) = Outbox::bounded(100, 1000);
        assert_eq!(outbox.push(frame(900)), Push::Queued);
        let writer = tokio::spawn(async move {
            let taken = rx.recv().await.unwrap().len();
            ctl.written(taken);
            rx
        });
        let pushed = outbox.push_wait(frame(900), std::time::Duration::from_secs(5)).await;
        assert_eq!(pushed, Push::Queued);
        let _rx = writer.await.unwrap();
    }

    #[tokio::test]
    async fn frames_bound_the_queue_and_push_wait_waits_for_a_slot() {
        let (outbox, mut rx, ctl) = Outbox::bounded(2, usize::MAX);
        assert_eq!(outbox.push(frame(1)), Push::Queued);
        assert_eq!(outbox.push(frame(1)), Push::Queued);
        let writer = tokio::spawn(async move {
            let mut batch = Vec::new();
            let n = rx.recv_many(&mut batch, 64).await;
            ctl.written(n);
            (rx, ctl)
        });
        let pushed = outbox.push_wait(frame(1), std::time::Duration::from_secs(5)).await;
        assert_eq!(pushed, Push::Queued, "a slot freed by the writer");
        let (_rx, ctl) = writer.await.unwrap();
        assert_eq!(outbox.push(frame(1)), Push::Queued);
        assert_eq!(outbox.push(frame(1)), Push::TooSlow, "the third frame of a 2-frame queue");
        assert_eq!(ctl.closing(), Some((close::TOO_SLOW, "too slow")));
    }

    #[tokio::test]
    async fn the_writer_takes_a_batch_per_wake_up_and_ends_with_the_last_sender() {
        let (outbox, mut rx, _ctl) = Outbox::bounded(100, usize::MAX);
        let hub_copy = outbox.clone();
        for _ in 0..5 {
            assert_eq!(hub_copy.push(frame(3)), Push::Queued);
        }
        let mut batch = Vec::new();
        assert_eq!(rx.recv_many(&mut batch, 3).await, 3, "at most the limit");
        assert_eq!(rx.recv_many(&mut batch, 64).await, 2, "the rest without another push");
        drop(hub_copy);
        let reader = tokio::spawn(async move { rx.recv().await });
        assert_eq!(outbox.push(frame(1)), Push::Queued);
        assert_eq!(reader.await.unwrap().map(|f| f.len()), Some(1));
        let (outbox, mut rx, _ctl) = Outbox::bounded(100, usize::MAX);
        drop(outbox);
        assert_eq!(rx.recv_many(&mut batch, 64).await, 0, "every sender gone");
    }

    #[tokio::test]
    async fn a_close_ends_the_writers_wait_and_leaves_the_frames_for_the_closing_flush() {
        let (outbox, mut rx, ctl) = Outbox::bounded(100, usize::MAX);
        let writer = tokio::spawn(async move {
            let mut batch = Vec::new();
            let n = rx.recv_batch(&mut batch, 64).await;
            (n, rx)
        });
        tokio::task::yield_now().await;
        assert_eq!(outbox.push(frame(1)), Push::Queued);
        let (n, mut rx) = writer.await.unwrap();
        assert_eq!(n, 1);
        assert_eq!(outbox.push(frame(2)), Push::Queued);
        ctl.close(close::UNAUTHORIZED, "session expired");
        let mut batch = Vec::new();
        assert_eq!(rx.recv_batch(&mut batch, 64).await, 0, "closing");
        assert_eq!(closing_frames(&ctl, &mut rx, &mut batch), (close::UNAUTHORIZED, "session expired"));
        assert_eq!(batch.len(), 1, "the frame queued before the close is still sent");
    }

    #[test]
    fn a_burst_buffer_is_freed_once_drained_and_a_gone_writer_refuses() {
        let (outbox, mut rx, ctl) = Outbox::bounded(1000, usize::MAX);
        for _ in 0..100 {
            assert_eq!(outbox.push(frame(1)), Push::Queued);
        }
        let mut batch = Vec::new();
        rx.drain_into(&mut batch);
        assert_eq!(batch.len(), 100);
        assert_eq!(ctl.frames().queued.capacity(), 0, "freed");
        trim(&mut batch);
        assert_eq!(batch.capacity(), 0, "freed");
        drop(rx);
        assert_eq!(outbox.push(frame(1)), Push::Gone);
    }

    /// A writer on a current-thread runtime (as on an actix worker) is woken by a push from another thread once
    /// the round's wakes are flushed, through its thread's group.
    #[test]
    fn a_flushed_round_wakes_a_writer_of_another_threads_runtime() {
        let (tx, rx) = std::sync::mpsc::channel();
        let worker = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async move {
                let (outbox, mut queue, ctl) = Outbox::bounded(16, usize::MAX);
                assert!(crate::node::wakes::Writer::wake_group(&*ctl).is_some(), "bound to this thread's group");
                tx.send(outbox).unwrap();
                let mut batch = Vec::new();
                tokio::time::timeout(std::time::Duration::from_secs(5), queue.recv_batch(&mut batch, 64))
                    .await
                    .expect("woken")
            })
        });
        let outbox = rx.recv_timeout(std::time::Duration::from_secs(5)).expect("outbox made");
        let mut wakes = crate::node::wakes::Wakes::default();
        assert_eq!(outbox.push_batched(Frame::from(String::from("frame")), &mut wakes), Push::Queued);
        wakes.flush();
        assert_eq!(worker.join().unwrap(), 1, "the writer took the frame");
    }
}
