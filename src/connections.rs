//! The node's live connections: counted against `limits.max_connections`, closed together on drain, and
//! found by user or session when a revocation arrives. Touched on connect/disconnect only, never per frame.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
};

use crate::{hub::ConnId, outbox::Control};

struct Live {
    ctl: Arc<Control>,
    sub: Option<String>,
    session: Option<String>,
}

#[derive(Default)]
pub struct Connections {
    live: Mutex<HashMap<ConnId, Live>>,
    next_id: AtomicU64,
    removed: tokio::sync::Notify,
}

impl Connections {
    /// Registers a new connection, or returns None when `max` are already open.
    pub fn try_register(&self, ctl: Arc<Control>, max: usize) -> Option<ConnId> {
        let mut live = self.live.lock().expect("connections lock");
        if live.len() >= max {
            return None;
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        live.insert(id, Live { ctl, sub: None, session: None });
        Some(id)
    }

    /// Records who the connection is once `connect` succeeded.
    pub fn identify(&self, id: ConnId, sub: &str, session: &str) {
        if let Some(conn) = self.live.lock().expect("connections lock").get_mut(&id) {
            conn.sub = Some(sub.to_string());
            conn.session = Some(session.to_string());
        }
    }

    pub fn remove(&self, id: ConnId) {
        self.live.lock().expect("connections lock").remove(&id);
        self.removed.notify_waiters();
    }

    /// Resolves when no connection is left.
    pub async fn wait_empty(&self) {
        loop {
            let removed = self.removed.notified();
            tokio::pin!(removed);
            removed.as_mut().enable();
            if self.is_empty() {
                return;
            }
            removed.await;
        }
    }

    pub fn len(&self) -> usize {
        self.live.lock().expect("connections lock").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Closes every connection with `code`.
    pub fn close_all(&self, code: u16, reason: &'static str) -> usize {
        self.close_where(|_, _| true, code, reason)
    }

    /// Closes the connections whose (sub, session) satisfy `pred`; returns how many.
    pub fn close_where(
        &self,
        pred: impl Fn(Option<&str>, Option<&str>) -> bool,
        code: u16,
        reason: &'static str,
    ) -> usize {
        let live = self.live.lock().expect("connections lock");
        live.values()
            .filter(|c| pred(c.sub.as_deref(), c.session.as_deref()))
            .filter(|c| c.ctl.close(code, reason))
            .count()
    }
}
