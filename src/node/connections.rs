//! The node's live connections: counted against the connection quotas (`limits.max_connections`, per client
//! address, per session, per user, anonymous), closed together on drain, and found by user or session when a revocation
//! arrives. Touched on upgrade, connect and disconnect only, never per frame.
//!
//! A connection is *pending* from its upgrade until its `connect` succeeds (it has no token yet): pending ones
//! have a small budget of their own, per node and per client address (`limits.max_pending_connections*`), so
//! that token-less upgrades cannot fill the node; anonymous sessions also have one per client address.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
};

use crate::{config::Limits, node::hub::ConnId, node::metrics::Metrics, node::outbox::Control};

/// A connection's entry. Its user and session are the keys of the per-user and per-session counts, shared
/// (one allocation per user and per session on the node, not one per table: issue 24's idle budget).
struct Live {
    ctl: Arc<Control>,
    sub: Option<Arc<str>>,
    session: Option<Arc<str>>,
    /// The client address the per-IP quota counts it under ([`crate::transports::client_ip::quota_key`]).
    ip: IpAddr,
}

/// The node's connection quotas (proto/PROTOCOL.md section 3), taken from `limits.*`; 0 = no per-IP or
/// anonymous limit.
#[derive(Clone, Copy, Debug)]
pub struct Quotas {
    pub max_connections: usize,
    pub per_ip: usize,
    pub per_session: usize,
    pub anonymous: usize,
    /// Pending connections (upgraded, not yet connected) per node and per client address.
    pub pending: usize,
    pub pending_per_ip: usize,
    /// Live anonymous sessions per client address.
    pub anonymous_per_ip: usize,
    /// `limits.max_connections_per_user` (sockets of one token `sub`, across its sessions).
    pub per_user: usize,
}

impl From<&Limits> for Quotas {
    fn from(limits: &Limits) -> Self {
        Quotas {
            max_connections: limits.max_connections,
            per_ip: limits.max_connections_per_ip,
            per_session: limits.max_connections_per_session,
            anonymous: limits.max_anonymous_connections,
            pending: limits.max_pending_connections,
            pending_per_ip: limits.max_pending_connections_per_ip,
            anonymous_per_ip: limits.max_anonymous_connections_per_ip,
            per_user: limits.max_connections_per_user,
        }
    }
}

/// Which quota refused a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OverQuota {
    /// `limits.max_connections`: the node is full (HTTP 503).
    Node,
    /// `limits.max_connections_per_ip` (HTTP 429).
    Ip,
    /// `limits.max_connections_per_session` (`limit_exceeded`, close 4029).
    Session,
    /// `limits.max_anonymous_connections` (`limit_exceeded`, close 4029).
    Anonymous,
    /// `limits.max_pending_connections`: too many connections without `connect` on the node (HTTP 503).
    Pending,
    /// `limits.max_pending_connections_per_ip` (HTTP 429).
    PendingIp,
    /// `limits.max_anonymous_connections_per_ip` (`limit_exceeded`, close 4029).
    AnonymousIp,
    /// `limits.max_connections_per_user` (`limit_exceeded`, close 4029).
    User,
}

impl OverQuota {
    /// Counts a refusal by this quota (`telegraphy_connections_over_quota_total{quota}`).
    pub fn count(self, metrics: &Metrics) {
        match self {
            OverQuota::Node => &metrics.over_quota_node,
            OverQuota::Ip => &metrics.over_quota_ip,
            OverQuota::Session => &metrics.over_quota_session,
            OverQuota::Anonymous => &metrics.over_quota_anonymous,
            OverQuota::Pending => &metrics.over_quota_pending,
            OverQuota::PendingIp => &metrics.over_quota_pending_ip,
            OverQuota::AnonymousIp => &metrics.over_quota_anonymous_ip,
            OverQuota::User => &metrics.over_quota_user,
        }
        .increment(1);
    }

    /// The reason told to the client (HTTP body or close reason) and the metric label.
    pub fn reason(self) -> &'static str {
        match self {
            OverQuota::Node => "too many connections",
            OverQuota::Ip => "too many connections from this address",
            OverQuota::Session => "too many connections for this session",
            OverQuota::Anonymous => "too many anonymous connections",
            OverQuota::Pending => "too many connections waiting for connect",
            OverQuota::PendingIp => "too many connections waiting for connect from this address",
            OverQuota::AnonymousIp => "too many anonymous connections from this address",
            OverQuota::User => "too many connections for this user",
        }
    }

    /// Whether this quota is the client address's share (HTTP 429 at the upgrade) rather than the node's (503).
    pub fn is_per_ip(self) -> bool {
        matches!(self, OverQuota::Ip | OverQuota::PendingIp)
    }
}

/// The `sub` of every anonymous connection (one allocation for the node).
static ANONYMOUS: std::sync::LazyLock<Arc<str>> = std::sync::LazyLock::new(|| Arc::from(""));

#[derive(Default)]
struct Table {
    live: HashMap<ConnId, Live>,
    per_ip: HashMap<IpAddr, usize>,
    per_session: HashMap<Arc<str>, usize>,
    /// Live sockets per non-empty `sub`.
    per_user: HashMap<Arc<str>, usize>,
    anonymous: usize,
    /// Connections not yet connected (no session): on the node and per client address.
    pending: usize,
    pending_per_ip: HashMap<IpAddr, usize>,
    anonymous_per_ip: HashMap<IpAddr, usize>,
}

/// Adds one to `map[key]`.
fn count_up<K: std::hash::Hash + Eq>(map: &mut HashMap<K, usize>, key: K) {
    *map.entry(key).or_default() += 1;
}

/// Adds one to `map[key]` and interns `key`: on return it is the string the map holds (one allocation per
/// distinct key, shared by the map, the connection and its session).
fn count_up_interned(map: &mut HashMap<Arc<str>, usize>, key: &mut Arc<str>) {
    if let Some(n) = map.get_mut(&**key) {
        *n += 1;
        *key = map.get_key_value(&**key).map(|(held, _)| Arc::clone(held)).expect("just found");
    } else {
        map.insert(Arc::clone(key), 1);
    }
}

/// Takes one from `map[key]`, dropping the entry at zero.
fn count_down<K: std::hash::Hash + Eq + std::borrow::Borrow<Q>, Q: std::hash::Hash + Eq + ?Sized>(
    map: &mut HashMap<K, usize>,
    key: &Q,
) {
    if let Some(n) = map.get_mut(key) {
        *n -= 1;
        if *n == 0 {
            map.remove(key);
        }
    }
}

#[derive(Default)]
pub struct Connections {
    table: Mutex<Table>,
    next_id: AtomicU64,
    removed: tokio::sync::Notify,
}

impl Connections {
    /// Registers a new connection from `ip` (a quota key), or says which quota is full: checked and counted
    /// under one lock, so concurrent upgrades cannot overshoot.
    pub fn try_register(&self, ctl: Arc<Control>, ip: IpAddr, quotas: Quotas) -> Result<ConnId, OverQuota> {
        let mut table = self.table.lock().expect("connections lock");
        if table.live.len() >= quotas.max_connections {
            return Err(OverQuota::Node);
        }
        if quotas.per_ip > 0 && table.per_ip.get(&ip).is_some_and(|n| *n >= quotas.per_ip) {
            return Err(OverQuota::Ip);
        }
        if quotas.pending_per_ip > 0 && table.pending_per_ip.get(&ip).is_some_and(|n| *n >= quotas.pending_per_ip) {
            return Err(OverQuota::PendingIp);
        }
        if quotas.pending > 0 && table.pending >= quotas.pending {
            return Err(OverQuota::Pending);
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        count_up(&mut table.per_ip, ip);
        count_up(&mut table.pending_per_ip, ip);
        table.pending += 1;
        table.live.insert(id, Live { ctl, sub: None, session: None, ip });
        Ok(id)
    }

    /// Records who the connection is once `connect` succeeded, unless its session already has
    /// `quotas.per_session` sockets here, its user `quotas.per_user`, or (anonymous, `sub` empty) the anonymous
    /// quota is full. Interns `sub` and `session`: once identified they point at the table's strings, so a
    /// connection holds one copy of each, shared with the table (and a user's sockets share one `sub`).
    pub fn identify(
        &self,
        id: ConnId,
        sub: &mut Arc<str>,
        session: &mut Arc<str>,
        quotas: Quotas,
    ) -> Result<(), OverQuota> {
        let mut table = self.table.lock().expect("connections lock");
        let table = &mut *table;
        let Some(conn) = table.live.get_mut(&id) else { return Ok(()) };
        if conn.session.is_some() {
            return Ok(()); // identified once only
        }
        if table.per_session.get(&**session).is_some_and(|n| *n >= quotas.per_session) {
            return Err(OverQuota::Session);
        }
        let anonymous = sub.is_empty();
        if anonymous && quotas.anonymous > 0 && table.anonymous >= quotas.anonymous {
            return Err(OverQuota::Anonymous);
        }
        let per_ip = |map: &HashMap<IpAddr, usize>| map.get(&conn.ip).copied().unwrap_or(0);
        if anonymous && quotas.anonymous_per_ip > 0 && per_ip(&table.anonymous_per_ip) >= quotas.anonymous_per_ip {
            return Err(OverQuota::AnonymousIp);
        }
        if !anonymous && table.per_user.get(&**sub).is_some_and(|n| *n >= quotas.per_user) {
            return Err(OverQuota::User);
        }
        count_up_interned(&mut table.per_session, session);
        conn.session = Some(Arc::clone(session));
        table.anonymous += usize::from(anonymous);
        if anonymous {
            count_up(&mut table.anonymous_per_ip, conn.ip);
        }
        // No longer pending.
        table.pending -= 1;
        count_down(&mut table.pending_per_ip, &conn.ip);
        if anonymous {
            *sub = Arc::clone(&ANONYMOUS);
        } else {
            count_up_interned(&mut table.per_user, sub);
        }
        conn.sub = Some(Arc::clone(sub));
        Ok(())
    }

    /// Whether connection `id` is live and its `connect` succeeded.
    pub fn is_connected(&self, id: ConnId) -> bool {
        self.table.lock().expect("connections lock").live.get(&id).is_some_and(|conn| conn.session.is_some())
    }

    pub fn remove(&self, id: ConnId) {
        {
            let mut table = self.table.lock().expect("connections lock");
            if let Some(conn) = table.live.remove(&id) {
                count_down(&mut table.per_ip, &conn.ip);
                match &conn.session {
                    Some(session) => count_down(&mut table.per_session, &**session),
                    None => {
                        table.pending -= 1;
                        count_down(&mut table.pending_per_ip, &conn.ip);
                    }
                }
                match conn.sub.as_deref() {
                    Some("") => {
                        table.anonymous -= 1;
                        count_down(&mut table.anonymous_per_ip, &conn.ip);
                    }
                    Some(sub) => count_down(&mut table.per_user, sub),
                    None => {}
                }
            }
        }
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
        self.table.lock().expect("connections lock").live.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Closes every connection with `code`.
    pub fn close_all(&self, code: u16, reason: &'static str) -> usize {
        self.close_where(|_, _| true, code, reason)
    }

    /// Brings the node's queued bytes down by `excess`: the connections with the largest queues are closed
    /// with 4008 (too slow) until they held at least `excess` bytes (a 4008 drops a connection's queued frames at
    /// once, see [`crate::node::outbox`]); returns how many were closed. Called when the node's total of queued bytes
    /// is exceeded, never per frame.
    pub fn close_largest_queues(&self, excess: usize) -> usize {
        let table = self.table.lock().expect("connections lock");
        let mut open: Vec<_> = table
            .live
            .values()
            .filter(|c| c.ctl.is_shared() && c.ctl.closing().is_none())
            .map(|c| (c.ctl.queued_bytes(), &c.ctl))
            .collect();
        open.sort_unstable_by_key(|(queued, _)| std::cmp::Reverse(*queued));
        let (mut released, mut closed) = (0, 0);
        for (queued, ctl) in open {
            if released >= excess || queued == 0 {
                break;
            }
            if ctl.close(crate::protocol::frames::close::TOO_SLOW, "too slow") {
                released += queued;
                closed += 1;
            }
        }
        closed
    }

    /// Closes the connections whose (sub, session) satisfy `pred`; returns how many.
    pub fn close_where(
        &self,
        pred: impl Fn(Option<&str>, Option<&str>) -> bool,
        code: u16,
        reason: &'static str,
    ) -> usize {
        let table = self.table.lock().expect("connections lock");
        table
            .live
            .values()
            .filter(|c| pred(c.sub.as_deref(), c.session.as_deref()))
            .filter(|c| c.ctl.close(code, reason))
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctl() -> Arc<Control> {
        crate::node::outbox::Outbox::new(1).2
    }

    #[test]
    fn quotas_count_and_release() {
        let q = Quotas {
            max_connections: 10,
            per_ip: 2,
            per_session: 2,
            anonymous: 1,
            pending: 0,
            pending_per_ip: 0,
            anonymous_per_ip: 0,
            per_user: 3,
        };
        let conns = Connections::default();
        let (a, b): (IpAddr, IpAddr) = ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        let one = conns.try_register(ctl(), a, q).unwrap();
        let two = conns.try_register(ctl(), a, q).unwrap();
        assert_eq!(conns.try_register(ctl(), a, q), Err(OverQuota::Ip));
        let three = conns.try_register(ctl(), b, q).unwrap();
        let identify = |id, sub: &str, session: &str| conns.identify(id, &mut sub.into(), &mut session.into(), q);
        assert_eq!(identify(one, "u", "s1"), Ok(()));
        assert_eq!(identify(two, "u", "s1"), Ok(()));
        assert_eq!(identify(three, "u", "s1"), Err(OverQuota::Session));
        assert_eq!(identify(three, "", "anon1"), Ok(()));
        let four = conns.try_register(ctl(), b, q).unwrap();
        assert_eq!(identify(four, "", "anon2"), Err(OverQuota::Anonymous));
        conns.remove(one);
        conns.remove(three);
        assert_eq!(identify(four, "", "anon2"), Ok(()), "the anonymous slot was released");
        let five = conns.try_register(ctl(), a, q).unwrap();
        assert_eq!(identify(five, "u", "s1"), Ok(()), "the session slot was released");
        // A user's sockets across sessions.
        let c: IpAddr = "192.0.2.3".parse().unwrap();
        let six = conns.try_register(ctl(), c, q).unwrap();
        assert_eq!(identify(six, "u", "s2"), Ok(()));
        let seven = conns.try_register(ctl(), c, q).unwrap();
        assert_eq!(identify(seven, "u", "s3"), Err(OverQuota::User));
        conns.remove(six);
        assert_eq!(identify(seven, "u", "s3"), Ok(()), "the user slot was released");
        conns.remove(seven);
        conns.remove(two);
        conns.remove(four);
        conns.remove(five);
        let table = conns.table.lock().unwrap();
        assert!(table.live.is_empty() && table.per_ip.is_empty() && table.per_session.is_empty());
        assert!(table.per_user.is_empty());
        assert_eq!(table.anonymous, 0);
    }

    #[test]
    fn identify_interns_user_and_session() {
        let q = Quotas {
            max_connections: 10,
            per_ip: 10,
            per_session: 10,
            anonymous: 0,
            pending: 0,
            pending_per_ip: 0,
            anonymous_per_ip: 0,
            per_user: 10,
        };
        let conns = Connections::default();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let (one, two) = (conns.try_register(ctl(), ip, q).unwrap(), conns.try_register(ctl(), ip, q).unwrap());
        let (mut sub1, mut session1): (Arc<str>, Arc<str>) = ("u".into(), "s".into());
        let (mut sub2, mut session2): (Arc<str>, Arc<str>) = ("u".into(), "s".into());
        conns.identify(one, &mut sub1, &mut session1, q).unwrap();
        conns.identify(two, &mut sub2, &mut session2, q).unwrap();
        assert!(Arc::ptr_eq(&sub1, &sub2) && Arc::ptr_eq(&session1, &session2), "one copy each, the table's");
        let table = conns.table.lock().unwrap();
        assert!(Arc::ptr_eq(table.per_user.get_key_value("u").unwrap().0, &sub1));
        assert!(Arc::ptr_eq(table.live[&one].session.as_ref().unwrap(), &session1));
    }

    #[test]
    fn over_the_node_total_the_largest_queues_are_closed_first() {
        use crate::node::outbox::{Outbox, SharedQueue};
        let node = SharedQueue::new(1 << 20);
        let conns = Connections::default();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let quotas = Quotas {
            max_connections: 10,
            per_ip: 0,
            per_session: 4,
            anonymous: 0,
            pending: 0,
            pending_per_ip: 0,
            anonymous_per_ip: 0,
            per_user: 4,
        };
        let mut held = Vec::new();
        for len in [100, 5000, 300, 2000] {
            let (outbox, queue, ctl) = Outbox::bounded(10, 1 << 20);
            ctl.share(node.clone());
            assert_eq!(
                outbox.push(crate::node::outbox::Frame::from("x".repeat(len))),
                crate::node::outbox::Push::Queued
            );
            conns.try_register(ctl.clone(), ip, quotas).unwrap();
            held.push((outbox, queue, ctl));
        }
        assert_eq!(node.used(), 7400);
        assert_eq!(conns.close_largest_queues(6000), 2, "the 5000 and 2000 byte queues");
        let closing: Vec<bool> = held.iter().map(|(_, _, ctl)| ctl.closing().is_some()).collect();
        assert_eq!(closing, [false, true, false, true]);
        assert_eq!(node.used(), 400, "their frames were dropped at once");
        assert_eq!(conns.close_largest_queues(250), 1, "then the next largest");
        assert!(held[2].2.closing().is_some());
        assert_eq!(node.used(), 100);
    }

    #[test]
    fn pending_and_anonymous_budgets_per_ip_and_node() {
        let q = Quotas {
            max_connections: 10,
            per_ip: 0,
            per_session: 4,
            anonymous: 0,
            pending: 3,
            pending_per_ip: 2,
            anonymous_per_ip: 1,
            per_user: 4,
        };
        let conns = Connections::default();
        let (a, b, c): (IpAddr, IpAddr, IpAddr) =
            ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap(), "192.0.2.3".parse().unwrap());
        let one = conns.try_register(ctl(), a, q).unwrap();
        let two = conns.try_register(ctl(), a, q).unwrap();
        assert_eq!(conns.try_register(ctl(), a, q), Err(OverQuota::PendingIp));
        let three = conns.try_register(ctl(), b, q).unwrap();
        assert_eq!(conns.try_register(ctl(), c, q), Err(OverQuota::Pending), "the node's pending budget");
        let identify = |id, sub: &str, session: &str| conns.identify(id, &mut sub.into(), &mut session.into(), q);
        assert!(!conns.is_connected(one));
        assert_eq!(identify(one, "", "anon1"), Ok(()));
        assert!(conns.is_connected(one));
        assert_eq!(identify(two, "", "anon2"), Err(OverQuota::AnonymousIp));
        assert_eq!(identify(two, "u", "s2"), Ok(()), "a user is no anonymous session");
        let four = conns.try_register(ctl(), a, q).unwrap();
        assert_eq!(identify(three, "", "anon3"), Ok(()), "another address has its own share");
        conns.remove(one);
        assert_eq!(identify(four, "", "anon4"), Ok(()), "the anonymous slot was released");
        for id in [two, three, four] {
            conns.remove(id);
        }
        let table = conns.table.lock().unwrap();
        assert!(table.pending_per_ip.is_empty() && table.anonymous_per_ip.is_empty());
        assert_eq!(table.pending, 0);
    }
}
