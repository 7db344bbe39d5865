//! A connection's bounded outbound queue and its close switch.
//!
//! The hub and the session push encoded frames with [`Outbox::push`], which never waits: when the queue is
//! full the connection is marked too slow (close 4008) and the frame is dropped for it alone. The connection's
//! writer task is the only reader of the queue and the only one that awaits the socket.

use std::sync::{Arc, OnceLock};

use bytestring::ByteString;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::frames::close;

/// Why and how a connection is being closed; the first caller wins.
#[derive(Debug, Default)]
pub struct Control {
    reason: OnceLock<(u16, &'static str)>,
    cancel: CancellationToken,
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
}

/// One queued WebSocket text message (an encoded protocol frame).
pub type Frame = ByteString;

#[derive(Clone, Debug)]
pub struct Outbox {
    tx: mpsc::Sender<Frame>,
    ctl: Arc<Control>,
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
    pub fn new(capacity: usize) -> (Self, mpsc::Receiver<Frame>, Arc<Control>) {
        let (tx, rx) = mpsc::channel(capacity);
        let ctl = Arc::new(Control::default());
        (Outbox { tx, ctl: ctl.clone() }, rx, ctl)
    }

    /// Queues a text frame without waiting.
    pub fn push(&self, frame: Frame) -> Push {
        if self.ctl.closing().is_some() {
            return Push::Gone;
        }
        match self.tx.try_send(frame) {
            Ok(()) => Push::Queued,
            Err(mpsc::error::TrySendError::Full(_)) => self.too_slow(),
            Err(mpsc::error::TrySendError::Closed(_)) => Push::Gone,
        }
    }

    /// Queues a text frame, waiting up to `limit` for room (only for the connection's own task, e.g. a history
    /// replay larger than the queue); still full after that = too slow.
    pub async fn push_wait(&self, frame: ByteString, limit: std::time::Duration) -> Push {
        if self.ctl.closing().is_some() {
            return Push::Gone;
        }
        match self.tx.send_timeout(frame, limit).await {
            Ok(()) => Push::Queued,
            Err(mpsc::error::SendTimeoutError::Timeout(_)) => self.too_slow(),
            Err(mpsc::error::SendTimeoutError::Closed(_)) => Push::Gone,
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
