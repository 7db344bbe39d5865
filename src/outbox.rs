//! A connection's bounded outbound queue and its close switch.
//!
//! The hub and the session push encoded frames with [`Outbox::push`], which never waits: when the queue is
//! full the connection is marked too slow (close 4008) and the frame is dropped for it alone. The connection's
//! writer task is the only reader of the queue and the only one that awaits the socket.
//!
//! The queue is bounded twice: in frames (`limits.outbound_queue`) and in bytes (`limits.outbound_queue_bytes`,
//! counted from the push until the writer has written the frame). Into an empty queue any frame fits.
//!
//! Once connected, a connection's queued bytes also count in the node's total ([`SharedQueue`],
//! `limits.outbound_queue_bytes_per_node`): a push into a non-empty queue that would take the total over its
//! bound closes that connection as too slow, like its own bound. (A user's queued bytes are bounded by its
//! sockets, `limits.max_connections_per_user` x `limits.outbound_queue_bytes`.)

use std::sync::{
    atomic::{AtomicUsize, Ordering},
    Arc, OnceLock,
};

use bytestring::ByteString;
use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;

use crate::frames::close;

/// Why and how a connection is being closed; the first caller wins.
#[derive(Debug, Default)]
pub struct Control {
    reason: OnceLock<(u16, &'static str)>,
    cancel: CancellationToken,
    /// Bytes of the frames queued and not yet written.
    queued_bytes: AtomicUsize,
    /// Signalled when the writer has written frames (room for [`Outbox::push_wait`]).
    room: Notify,
    /// The node's total this connection's queued bytes also count in, once connected ([`Control::share`]).
    shared: OnceLock<Arc<SharedQueue>>,
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
}

impl SharedQueue {
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(SharedQueue { used: AtomicUsize::new(0), max })
    }

    /// Bytes queued and not yet written, in the group.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// Counts `len` more bytes if they fit, or anyway when `force`.
    fn add(&self, len: usize, force: bool) -> bool {
        if force {
            self.used.fetch_add(len, Ordering::AcqRel);
            return true;
        }
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| (u + len <= self.max).then_some(u + len))
            .is_ok()
    }

    fn sub(&self, len: usize) {
        let _ = self.used.fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| Some(u.saturating_sub(len)));
    }
}

impl Control {
    /// Asks the connection to close with `code`; returns false if it was already closing.
    pub fn close(&self, code: u16, reason: &'static str) -> bool {
        let first = self.reason.set((code, reason)).is_ok();
        self.cancel.cancel();
        first
    }

    pub fn closing(&self) -> Option<(u16, &'static str)> {
        self.reason.get().copied()
    }

    /// Resolves once [`Control::close`] has been called.
    pub async fn closed(&self) {
        self.cancel.cancelled().await
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
                shared.add(self.queued_bytes.load(Ordering::Acquire), true);
            }
        }
    }
}

/// What a closing connection still sends, for its writer: the close code and reason, and the queued frames
/// (none after a 4008: a slow client gets no more of them; any other close first flushes them, e.g. the `error`
/// frame explaining a 4001). One rule for every transport's writer.
pub fn closing_frames(ctl: &Control, queue: &mut mpsc::Receiver<Frame>, into: &mut Vec<Frame>) -> (u16, &'static str) {
    let (code, reason) = ctl.closing().unwrap_or((close::NORMAL, "closing"));
    into.clear();
    if code != close::TOO_SLOW {
        while let Ok(frame) = queue.try_recv() {
            into.push(frame);
        }
    }
    (code, reason)
}

/// One queued WebSocket text message (an encoded protocol frame).
pub type Frame = ByteString;

#[derive(Clone, Debug)]
pub struct Outbox {
    tx: mpsc::Sender<Frame>,
    ctl: Arc<Control>,
    max_bytes: usize,
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

impl Outbox {
    /// A queue of at most `capacity` frames and no byte bound of its own.
    pub fn new(capacity: usize) -> (Self, mpsc::Receiver<Frame>, Arc<Control>) {
        Self::bounded(capacity, usize::MAX)
    }

    /// A queue of at most `capacity` frames and `max_bytes` bytes. The writer reports what it wrote with
    /// [`Control::written`].
    pub fn bounded(capacity: usize, max_bytes: usize) -> (Self, mpsc::Receiver<Frame>, Arc<Control>) {
        let (tx, rx) = mpsc::channel(capacity);
        let ctl = Arc::new(Control::default());
        (Outbox { tx, ctl: ctl.clone(), max_bytes }, rx, ctl)
    }

    /// Queues a text frame without waiting.
    pub fn push(&self, frame: Frame) -> Push {
        if self.ctl.closing().is_some() {
            return Push::Gone;
        }
        let len = frame.len();
        if !self.reserve(len) {
            return self.too_slow();
        }
        match self.tx.try_send(frame) {
            Ok(()) => Push::Queued,
            Err(e) => {
                self.unreserve(len);
                match e {
                    mpsc::error::TrySendError::Full(_) => self.too_slow(),
                    mpsc::error::TrySendError::Closed(_) => Push::Gone,
                }
            }
        }
    }

    /// Queues a text frame, waiting up to `limit` for room (only for the connection's own task, e.g. a history
    /// replay larger than the queue); still full after that = too slow.
    pub async fn push_wait(&self, frame: ByteString, limit: std::time::Duration) -> Push {
        let deadline = tokio::time::Instant::now() + limit;
        let len = frame.len();
        loop {
            if self.ctl.closing().is_some() {
                return Push::Gone;
            }
            let room = self.ctl.room.notified();
            tokio::pin!(room);
            room.as_mut().enable(); // a write between the check below and the wait is not missed
            if self.reserve(len) {
                break;
            }
            if tokio::time::timeout_at(deadline, room).await.is_err() {
                return self.too_slow();
            }
        }
        match self.tx.send_timeout(frame, deadline.saturating_duration_since(tokio::time::Instant::now())).await {
            Ok(()) => Push::Queued,
            Err(e) => {
                self.unreserve(len);
                match e {
                    mpsc::error::SendTimeoutError::Timeout(_) => self.too_slow(),
                    mpsc::error::SendTimeoutError::Closed(_) => Push::Gone,
                }
            }
        }
    }

    /// Counts `len` more queued bytes if they fit, in the connection's queue and in its shared totals (any
    /// frame fits into an empty queue).
    fn reserve(&self, len: usize) -> bool {
        let before = self.ctl.queued_bytes.fetch_add(len, Ordering::AcqRel);
        if before > 0 && before.saturating_add(len) > self.max_bytes {
            self.ctl.queued_bytes.fetch_sub(len, Ordering::AcqRel);
            return false;
        }
        if self.ctl.shared.get().is_some_and(|node| !node.add(len, before == 0)) {
            self.ctl.queued_bytes.fetch_sub(len, Ordering::AcqRel);
            return false;
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
        ByteString::from("x".repeat(len))
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
        assert_eq!(b.push(frame(300)), Push::Queued, "an empty queue takes any frame");
        assert_eq!(node.used(), 1100);
        assert_eq!(b.push(frame(10)), Push::TooSlow, "over the node's total");
        assert_eq!(node.used(), 1100, "the refused frame is not counted");
        let taken = a_rx.try_recv().unwrap().len();
        a_ctl.written(taken);
        assert_eq!(node.used(), 700);
        assert_eq!(a.push(frame(200)), Push::Queued, "room again once written");
        drop((b, b_ctl, _b_rx));
        assert_eq!(node.used(), 600, "a closed connection's unwritten bytes leave the total");
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
}
