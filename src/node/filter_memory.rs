//! Memory of compiled filters (issue 11): the node's pool of compiled regexes, the node's budget for them
//! (`limits.filter_memory_per_node`) and the queue their compiles wait in.
//!
//! A regex is compiled once per node for each distinct (pattern, case-insensitive) pair: while any
//! subscription holds it, another one with the same pattern shares it and costs the node no new budget. Its cost
//! is [`CompiledRegex::bytes`] (program plus one matching cache, see there); it is charged when compiled and
//! released when its last holder drops it (the subscription or connection ended). The per-connection budget
//! (`limits.filter_memory_per_connection`) is kept by the session, which counts every regex its subscriptions
//! hold, shared or not; the per-user budget (`limits.filter_memory_per_user`) likewise, summed over the user's
//! connections in this node's table ([`FilterMemory::charge_user`]), so that many sockets of one user cannot take
//! the node's budget. A subscription of a user at its budget is refused before anything is compiled.
//!
//! Compiles run on tokio's blocking threads, one at a time per node ([`COMPILE_PERMITS`]): a burst of
//! `subscribe` frames with regexes queues there and never runs on an async worker, so other sockets' frames and
//! pings on that worker are not held up. The pool is only touched on `subscribe` and when a regex is dropped,
//! never on event fan-out.
//!
//! Compile time is shared per user (issue 20): a user's compiles (keyed like its other budgets: the token's
//! `sub`, or the session of an anonymous one) take their turn in the node's first-come queue one after
//! another, through the user's own lane, so a user has at most one compile waiting there however many sockets
//! and `subscribe` frames it queued. Another user's compile thus waits for at most one compile of each user
//! ahead of it, not for everything one user queued. A lane exists only while its user has a compile waiting or
//! running.

use std::{
    collections::HashMap,
    fmt,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex, Weak,
    },
};

use tokio::sync::Semaphore;

use crate::{
    node::metrics::Metrics,
    protocol::filter::{CompiledRegex, RegexError, RegexKey},
};

/// Compiles running at once on the node.
pub const COMPILE_PERMITS: usize = 1;

/// Why no compiled regex was returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CompileError {
    /// The pattern does not compile: a bad filter.
    #[error(transparent)]
    Regex(#[from] RegexError),
    /// The node's filter memory is used up: `limit_exceeded`.
    #[error("filter memory of the node exceeded")]
    OverBudget,
}

/// The node's compiled regexes and their budget. One per node ([`crate::node::Gateway`]).
pub struct FilterMemory {
    inner: Arc<Inner>,
    compiles: Semaphore,
    /// Bytes charged per user (token `sub`) across its connections; entries at zero are removed.
    users: Mutex<HashMap<String, usize>>,
    per_user: usize,
    /// Per user key with a compile waiting or running: its lane (its compiles one at a time).
    lanes: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Compiles waiting for their turn or running, on the node.
    queued: AtomicUsize,
    /// Regexes compiled on the node since it started (pool hits not counted).
    compiled: AtomicUsize,
}

/// A compile's place in its user's lane: counted in [`FilterMemory::queued`] and holding the lane in the map
/// until dropped (then the lane goes when no other compile of the user holds it), also when the compiling
/// `subscribe` is abandoned (its connection closed).
struct InLane<'a> {
    memory: &'a FilterMemory,
    user: &'a str,
    lane: Option<Arc<tokio::sync::Mutex<()>>>,
}

impl Drop for InLane<'_> {
    fn drop(&mut self) {
        self.memory.queued.fetch_sub(1, Ordering::Relaxed);
        let mut lanes = self.memory.lanes.lock().unwrap_or_else(|e| e.into_inner());
        // Held by the map and this compile only: no other compile of the user waits on it.
        if self.lane.take().is_some_and(|lane| Arc::strong_count(&lane) == 2) {
            lanes.remove(self.user);
        }
    }
}

struct Inner {
    pool: Mutex<HashMap<RegexKey, Weak<CompiledRegex>>>,
    used: AtomicUsize,
    per_node: usize,
    metrics: Arc<Metrics>,
}

/// A regex's bytes in the node budget, released (and its pool entry removed) when the regex is dropped.
pub struct Charge {
    bytes: usize,
    key: RegexKey,
    inner: Arc<Inner>,
}

impl fmt::Debug for Charge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Charge").field("bytes", &self.bytes).finish()
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.inner.used.fetch_sub(self.bytes, Ordering::Relaxed);
        self.inner.metrics.filter_memory.decrement(self.bytes as f64);
        // Runs while the last Arc is dropped: the entry's Weak is dead unless a new regex took the key.
        let mut pool = self.inner.pool.lock().unwrap_or_else(|e| e.into_inner());
        if pool.get(&self.key).is_some_and(|w| w.strong_count() == 0) {
            pool.remove(&self.key);
        }
    }
}

impl FilterMemory {
    pub fn new(per_node: usize, per_user: usize, metrics: Arc<Metrics>) -> Self {
        let inner = Inner { pool: Mutex::default(), used: AtomicUsize::new(0), per_node, metrics };
        let compiles = Semaphore::new(COMPILE_PERMITS);
        FilterMemory {
            inner: Arc::new(inner),
            compiles,
            users: Mutex::default(),
            per_user,
            lanes: Mutex::default(),
            queued: AtomicUsize::new(0),
            compiled: AtomicUsize::new(0),
        }
    }

    /// Compiles waiting for their turn or running on the node now.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    /// Regexes compiled on the node so far (a pool hit compiles nothing).
    pub fn compiled(&self) -> usize {
        self.compiled.load(Ordering::Relaxed)
    }

    /// Enters `user`'s lane (made if it has none).
    fn enter_lane<'a>(&'a self, user: &'a str) -> InLane<'a> {
        let lane = self.lanes.lock().unwrap_or_else(|e| e.into_inner()).entry(user.to_string()).or_default().clone();
        self.queued.fetch_add(1, Ordering::Relaxed);
        InLane { memory: self, user, lane: Some(lane) }
    }

    /// Bytes `user`'s connections hold (every regex of their subscriptions, shared or not).
    pub fn user_used(&self, user: &str) -> usize {
        self.users.lock().unwrap_or_else(|e| e.into_inner()).get(user).copied().unwrap_or(0)
    }

    /// Whether `user` (not counting `credit` bytes about to be released) is under its budget: may compile more.
    pub fn user_has_room(&self, user: &str, credit: usize) -> bool {
        self.user_used(user).saturating_sub(credit) < self.per_user
    }

    /// Charges `bytes` to `user` if, with `credit` bytes about to be released, they fit its budget.
    pub fn charge_user(&self, user: &str, bytes: usize, credit: usize) -> bool {
        if bytes == 0 {
            return true;
        }
        let mut users = self.users.lock().unwrap_or_else(|e| e.into_inner());
        let used = users.get(user).copied().unwrap_or(0);
        if used.saturating_sub(credit) + bytes > self.per_user {
            return false;
        }
        users.insert(user.to_string(), used + bytes);
        true
    }

    /// Releases `bytes` charged to `user` ([`Self::charge_user`]).
    pub fn release_user(&self, user: &str, bytes: usize) {
        if bytes == 0 {
            return;
        }
        let mut users = self.users.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(used) = users.get_mut(user) {
            *used = used.saturating_sub(bytes);
            if *used == 0 {
                users.remove(user);
            }
        }
    }

    /// Bytes of compiled regexes live on the node.
    pub fn used(&self) -> usize {
        self.inner.used.load(Ordering::Relaxed)
    }

    /// Distinct compiled regexes live on the node.
    pub fn pooled(&self) -> usize {
        self.lock().values().filter(|w| w.strong_count() > 0).count()
    }

    /// Counts a `subscribe` refused for filter memory (the node's or a connection's budget).
    pub fn refused(&self) {
        self.inner.metrics.filter_memory_refused.increment(1);
    }

    /// The compiled regex for `key`, for `user` (a user key: the token's `sub`, or an anonymous session's): a
    /// live one from the pool, else compiled on a blocking thread (after the user's earlier compiles, then after
    /// the compiles queued before it on the node) and charged to the node budget. Over the budget the new regex
    /// is dropped at once and [`CompileError::OverBudget`] returned (the caller counts the refusal:
    /// [`Self::refused`]).
    pub async fn regex(&self, key: &RegexKey, user: &str) -> Result<Arc<CompiledRegex>, CompileError> {
        if let Some(hit) = self.lookup(key) {
            return Ok(hit);
        }
        let in_lane = self.enter_lane(user);
        let lane = in_lane.lane.clone().expect("in its lane");
        let _turn = lane.lock().await;
        // Never closed; a permit is held until this compile is charged or dropped.
        let _permit = self.compiles.acquire().await.ok();
        if let Some(hit) = self.lookup(key) {
            return Ok(hit); // compiled by a frame queued before this one
        }
        if self.used() >= self.inner.per_node {
            return Err(CompileError::OverBudget);
        }
        let owned = key.clone();
        let compiled = tokio::task::spawn_blocking(move || CompiledRegex::compile(&owned))
            .await
            .map_err(|_| CompileError::Regex(RegexError::TooComplex))??;
        self.compiled.fetch_add(1, Ordering::Relaxed);
        let bytes = compiled.bytes();
        let reserved = self.inner.used.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
            (used + bytes <= self.inner.per_node).then_some(used + bytes)
        });
        if reserved.is_err() {
            return Err(CompileError::OverBudget);
        }
        self.inner.metrics.filter_memory.increment(bytes as f64);
        let charge = Charge { bytes, key: key.clone(), inner: self.inner.clone() };
        let regex = Arc::new(compiled.charged(charge));
        let existing = {
            let mut pool = self.lock();
            match pool.get(key).and_then(Weak::upgrade) {
                Some(live) => Some(live),
                None => {
                    pool.insert(key.clone(), Arc::downgrade(&regex));
                    None
                }
            }
        };
        // A duplicate is dropped outside the lock (its charge's drop takes the lock).
        Ok(existing.unwrap_or(regex))
    }

    fn lookup(&self, key: &RegexKey) -> Option<Arc<CompiledRegex>> {
        self.lock().get(key).and_then(Weak::upgrade)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<RegexKey, Weak<CompiledRegex>>> {
        self.inner.pool.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(pattern: &str) -> RegexKey {
        RegexKey { pattern: pattern.into(), insensitive: false }
    }

    #[tokio::test]
    async fn identical_patterns_share_one_regex_and_memory_is_released_with_the_last_holder() {
        let memory = FilterMemory::new(1 << 20, 1 << 20, Arc::new(Metrics::new()));
        let a = memory.regex(&key(r"\d{3}-\d{4}"), "u").await.unwrap();
        let used = memory.used();
        assert!(used >= a.bytes() && used > 1000, "charged {used}");
        let b = memory.regex(&key(r"\d{3}-\d{4}"), "u").await.unwrap();
        assert!(Arc::ptr_eq(&a, &b), "a pool hit");
        assert_eq!(memory.used(), used, "a pool hit costs no new budget");
        let ci = memory.regex(&RegexKey { pattern: r"\d{3}-\d{4}".into(), insensitive: true }, "u").await.unwrap();
        assert!(!Arc::ptr_eq(&a, &ci), "iregex is another key");
        drop(ci);
        drop(a);
        assert_eq!((memory.used(), memory.pooled()), (used, 1), "still held by b");
        drop(b);
        assert_eq!((memory.used(), memory.pooled()), (0, 0));
    }

    #[test]
    fn a_users_charges_are_bounded_and_released() {
        let memory = FilterMemory::new(1000, 100, Arc::new(Metrics::new()));
        assert!(memory.charge_user("u", 60, 0));
        assert!(!memory.charge_user("u", 60, 0), "over the user's budget");
        assert!(memory.charge_user("v", 60, 0), "another user has its own");
        assert!(memory.charge_user("u", 60, 60), "a replaced subscription's bytes are credited");
        assert!(!memory.user_has_room("u", 0));
        memory.release_user("u", 60);
        memory.release_user("u", 60);
        assert_eq!((memory.user_used("u"), memory.users.lock().unwrap().len()), (0, 1), "empty entries removed");
    }

    #[tokio::test]
    async fn over_the_node_budget_nothing_is_kept() {
        let memory = FilterMemory::new(100_000, 100_000, Arc::new(Metrics::new()));
        let small = memory.regex(&key("^ord"), "u").await.unwrap();
        let err = memory.regex(&key(r"\w+@\w+\.\w+"), "u").await.unwrap_err();
        assert_eq!(err, CompileError::OverBudget);
        assert_eq!(memory.used(), small.bytes(), "the refused regex was not kept");
        assert_eq!(memory.regex(&key("("), "u").await.unwrap_err(), CompileError::Regex(RegexError::Invalid));
        assert_eq!(memory.regex(&key(r"\w{19}"), "u").await.unwrap_err(), CompileError::Regex(RegexError::TooComplex));
        let text = Metrics::new().render();
        assert!(text.contains("telegraphy_filter_memory_bytes"), "{text}");
    }
}
