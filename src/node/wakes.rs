//! Writer wake-ups batched per worker thread (issue 24, the one-event-to-10k-sockets burst).
//!
//! A connection's writer runs on the actix worker thread that accepted it (a current-thread runtime), while the
//! hub fans an event out on the node's multi-thread runtime. Waking a task of a current-thread runtime from
//! another thread pushes it into that runtime's shared queue under a lock and wakes the thread's I/O driver (a
//! write to its eventfd): one system call per socket, 10 000 for one event to 10 000 sockets. Instead the hub
//! collects the connections whose queue it found empty ([`Wakes`]), and hands each worker thread its list with
//! one cross-thread wake-up ([`Wakes::flush`]); a task of that thread ([`Group`]) then wakes the writers locally
//! (a push onto the thread's own run queue, no system call).
//!
//! A connection is bound to its thread's group when its outbox is made ([`local`], on an actix worker); a
//! connection made elsewhere (tests, another runtime flavour) has none and is woken directly. A group whose task
//! is gone (its runtime shut down, and with it the writers it would wake) is no longer handed anything.

use std::{
    cell::RefCell,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
};

use tokio::{runtime::RuntimeFlavor, sync::Notify};

/// What a group wakes: a connection's writer (the outbox's `Control`; a trait so that this module does not
/// depend on the outbox).
pub trait Writer: Send + Sync + std::fmt::Debug {
    fn wake_writer(&self);
    fn wake_group(&self) -> Option<&Arc<Group>>;
}

/// Most entries an emptied list keeps.
const SPARE: usize = 16;

/// The writers of one worker thread to wake, and the task that wakes them.
#[derive(Debug, Default)]
pub struct Group {
    pending: Mutex<Vec<Arc<dyn Writer>>>,
    signal: Notify,
    /// The waking task is running (false once its runtime dropped it).
    alive: AtomicBool,
}

thread_local! {
    static LOCAL: RefCell<Option<Arc<Group>>> = const { RefCell::new(None) };
}

/// This thread's group, started on first use; None outside a current-thread runtime (the writers of a
/// multi-thread runtime are woken directly).
pub fn local() -> Option<Arc<Group>> {
    let runtime = tokio::runtime::Handle::try_current().ok()?;
    if runtime.runtime_flavor() != RuntimeFlavor::CurrentThread {
        return None;
    }
    LOCAL.with(|local| {
        let mut local = local.borrow_mut();
        if let Some(group) = local.as_ref().filter(|g| g.alive.load(Ordering::Acquire)) {
            return Some(group.clone());
        }
        let group = Arc::new(Group { alive: AtomicBool::new(true), ..Group::default() });
        runtime.spawn(wake_writers(group.clone()));
        *local = Some(group.clone());
        Some(group)
    })
}

/// Marks its group dead when the waking task is dropped (its runtime is shutting down).
struct Alive(Arc<Group>);

impl Drop for Alive {
    fn drop(&mut self) {
        self.0.alive.store(false, Ordering::Release);
        self.0.pending.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clear();
    }
}

/// The group's task: wakes, on its own thread, the writers handed to it.
async fn wake_writers(group: Arc<Group>) {
    let alive = Alive(group);
    let mut waking = Vec::new();
    loop {
        alive.0.signal.notified().await;
        std::mem::swap(&mut waking, &mut *alive.0.pending.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
        for ctl in waking.drain(..) {
            ctl.wake_writer();
        }
        if waking.capacity() > SPARE {
            waking = Vec::new(); // a burst's list does not stay
        }
    }
}

/// A thread's group and the writers of it to wake.
type GroupWakes = (Arc<Group>, Vec<Arc<dyn Writer>>);

/// Writers to wake, collected by one fan-out round and handed to their threads at once by [`Wakes::flush`].
#[derive(Default)]
pub struct Wakes {
    groups: Vec<GroupWakes>,
}

impl Wakes {
    /// Wakes `ctl`'s writer at the next [`Wakes::flush`] (at once if it has no group).
    pub fn add<W: Writer + 'static>(&mut self, ctl: &Arc<W>) {
        let Some(group) = ctl.wake_group() else {
            ctl.wake_writer();
            return;
        };
        match self.groups.iter_mut().find(|(g, _)| Arc::ptr_eq(g, group)) {
            Some((_, list)) => list.push(ctl.clone() as Arc<dyn Writer>),
            None => self.groups.push((group.clone(), vec![ctl.clone() as Arc<dyn Writer>])),
        }
    }

    /// Hands every group its writers: one cross-thread wake-up per group, not per writer.
    pub fn flush(&mut self) {
        for (group, mut list) in self.groups.drain(..) {
            if !group.alive.load(Ordering::Acquire) {
                list.iter().for_each(|ctl| ctl.wake_writer());
                continue;
            }
            let was_empty = {
                let mut pending = group.pending.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                let was_empty = pending.is_empty();
                pending.append(&mut list);
                was_empty
            };
            if was_empty {
                group.signal.notify_one();
            }
        }
    }
}

impl Drop for Wakes {
    /// A round that ends without its flush (an early return) still wakes its writers.
    fn drop(&mut self) {
        self.flush();
    }
}
