//! Event history and recovery (proto/PROTOCOL.md section 7).
//!
//! A JetStream stream (`history.stream`) captures every event published on `<prefix>.>` and RePublishes each
//! stored message to `<live_prefix>.<name>` with its stream sequence in the `Nats-Sequence` header. Gateways
//! subscribe to the live subjects (still one core subscription per pattern and node), so every live frame
//! carries `seq`; `epoch` identifies the stream's life (its creation time), so a recreated stream is noticed.
//!
//! A `subscribe` with `since` replays stored events after `since.seq` matching the pattern from an ephemeral
//! filtered consumer, while the hub buffers live frames for that subscription; the session then sends the
//! replay and switches to live, dropping buffered frames already replayed (see [`crate::node::hub::Hub::go_live`]).
//!
//! Bounds on the work and memory of recoveries (issue 11 parts 3 and 6, issue 20): at most
//! `history.max_concurrent_recoveries` replay at once on the node (others wait up to [`RECOVERY_WAIT`], then are
//! refused), at most `history.max_recoveries_per_user` of one user (or anonymous session; more wait within the
//! same [`RECOVERY_WAIT`], then are refused), a replay stops reading once over `history.max_replay_bytes`, and concurrent position
//! reads share one JetStream request ([`History::position`]). A recovery keeps its slots ([`RecoverySlot`])
//! until its replay is queued to the client, so the events read and not yet queued are bounded node-wide by
//! `max_concurrent_recoveries` x `max_replay_bytes`.

use std::{
    sync::{Arc, RwLock},
    time::Duration,
};

use async_nats::jetstream::{self, consumer, stream};
use futures_util::StreamExt;
use tokio::{
    sync::{Mutex, Semaphore},
    time::Instant,
};

use crate::{config::Settings, node::metrics::Metrics, node::nats::BoxError};

/// How long one JetStream request of the recovery path may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a client recovery waits for one of the `history.max_concurrent_recoveries` slots.
pub const RECOVERY_WAIT: Duration = Duration::from_secs(5);

/// How old a position read may be to decide that a recovery needs a consumer (a stale read only errs towards
/// reading more: the decisive read after the consumer is fresh).
const POSITION_REUSE: Duration = Duration::from_secs(1);

#[derive(Clone, Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("history stream unavailable: {0}")]
    Unavailable(#[source] SharedError),
    #[error("history request timed out")]
    Timeout,
}

/// An underlying error shared by the clones of a [`HistoryError`] (one position read answers concurrent
/// callers). It derefs to that error, so it is the [`HistoryError`]'s `source` itself (downcasts work).
#[derive(Clone, Debug)]
pub struct SharedError(Arc<dyn std::error::Error + Send + Sync>);

impl std::ops::Deref for SharedError {
    type Target = dyn std::error::Error + Send + Sync;

    fn deref(&self) -> &Self::Target {
        &*self.0
    }
}

impl std::fmt::Display for SharedError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

fn unavailable(e: impl Into<BoxError>) -> HistoryError {
    HistoryError::Unavailable(SharedError(e.into().into()))
}

/// Where the stream is now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Position {
    pub epoch: String,
    /// Lowest sequence still stored (0 when empty).
    pub first_seq: u64,
    /// Last sequence assigned.
    pub last_seq: u64,
}

/// A stored event to replay.
#[derive(Debug)]
pub struct Stored {
    pub seq: u64,
    pub name: String,
    pub payload: bytes::Bytes,
    /// The sender of a client publish (`,"from":{..}`, section 13.1), from the stored headers.
    pub from: Option<String>,
}

/// The answer to a `since` request.
#[derive(Debug)]
pub enum Recovery {
    /// Every matching event after `since` (possibly none), in order.
    Complete(Vec<Stored>),
    /// The range is gone (other epoch, aged out).
    Lost(&'static str),
    /// The events may be stored, but replaying them is over a bound of this node.
    Refused(Refused),
}

impl Recovery {
    /// Why the events are not replayed (for logs); "" when complete.
    pub fn why(&self) -> &'static str {
        match self {
            Recovery::Complete(_) => "",
            Recovery::Lost(why) => why,
            Recovery::Refused(refused) => refused.why(),
        }
    }
}

/// A bound that refused a recovery.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// No `history.max_concurrent_recoveries` slot within [`RECOVERY_WAIT`].
    Busy,
    /// More than `history.max_replay` events missed.
    TooManyEvents,
    /// More than `history.max_replay_bytes` of payload missed.
    TooManyBytes,
    /// The user had `history.max_recoveries_per_user` recoveries under way for [`RECOVERY_WAIT`].
    User,
}

impl Refused {
    /// Counts a client recovery refused by this bound of the node.
    pub fn count(self, metrics: &Metrics) {
        match self {
            Refused::Busy => &metrics.recoveries_refused_busy,
            Refused::TooManyEvents => &metrics.recoveries_refused_events,
            Refused::TooManyBytes => &metrics.recoveries_refused_bytes,
            Refused::User => &metrics.recoveries_refused_user,
        }
        .increment(1);
    }

    pub fn why(self) -> &'static str {
        match self {
            Refused::Busy => "too many recoveries at once",
            Refused::TooManyEvents => "too many missed events",
            Refused::TooManyBytes => "too many missed bytes",
            Refused::User => "too many recoveries of this user",
        }
    }
}

pub struct History {
    js: jetstream::Context,
    config: stream::Config,
    subject_prefix: String,
    max_replay: usize,
    max_replay_bytes: usize,
    epoch: RwLock<Option<Arc<str>>>,
    /// Node-wide slots for client recoveries.
    recoveries: Semaphore,
    /// Recoveries under way (waiting for a node slot or replaying) per user key; entries at zero are removed.
    users: std::sync::Mutex<std::collections::HashMap<String, usize>>,
    per_user: usize,
    /// Signalled when a user's recovery ends (a waiting one of that user may start).
    user_freed: tokio::sync::Notify,
    /// The last position read and when its request was sent; the lock makes concurrent reads one request.
    last_read: Mutex<Option<(Instant, Result<Position, HistoryError>)>>,
}

impl History {
    pub fn new(client: async_nats::Client, settings: &Settings) -> Self {
        let prefix = &settings.nats.subject_prefix;
        let h = &settings.history;
        let live = h.live_prefix(prefix);
        let config = stream::Config {
            name: h.stream.clone(),
            subjects: vec![format!("{prefix}.>")],
            max_age: Duration::from_secs(h.max_age),
            max_messages: h.max_msgs,
            num_replicas: h.replicas,
            storage: stream::StorageType::File,
            discard: stream::DiscardPolicy::Old,
            allow_direct: true,
            republish: Some(stream::Republish {
                source: format!("{prefix}.>"),
                destination: format!("{live}.>"),
                headers_only: false,
            }),
            ..Default::default()
        };
        History {
            js: jetstream::new(client),
            config,
            subject_prefix: prefix.clone(),
            max_replay: h.max_replay,
            max_replay_bytes: h.max_replay_bytes,
            epoch: RwLock::new(None),
            recoveries: Semaphore::new(h.max_concurrent_recoveries.min(Semaphore::MAX_PERMITS)),
            users: std::sync::Mutex::default(),
            per_user: h.max_recoveries_per_user,
            user_freed: tokio::sync::Notify::new(),
            last_read: Mutex::new(None),
        }
    }

    /// Most events one client subscription may replay (`history.max_replay`).
    pub fn max_replay(&self) -> usize {
        self.max_replay
    }

    /// Most events a node subscription replays to heal a gap after a NATS reconnect.
    pub fn max_heal(&self) -> usize {
        self.max_replay.saturating_mul(10).max(10_000)
    }

    /// The epoch last seen, if the stream has been reached at least once.
    pub fn epoch(&self) -> Option<Arc<str>> {
        self.epoch.read().expect("epoch lock").clone()
    }

    /// Keeps the stream present and the epoch fresh: at start, then every `every` (a recreated stream is noticed
    /// within that time; live frames also notice it at once through [`History::position`] calls).
    pub async fn maintain(self: Arc<Self>, every: Duration) {
        let mut failures = 0u32;
        loop {
            match self.ensure().await {
                Ok(position) => {
                    if failures > 0 {
                        tracing::info!(epoch = %position.epoch, "history stream available");
                    }
                    failures = 0;
                    tokio::time::sleep(every).await;
                }
                Err(e) => {
                    // Retry soon: a new JetStream cluster needs a few seconds to elect its leaders.
                    failures += 1;
                    if failures == 1 || failures.is_multiple_of(20) {
                        tracing::warn!(error = %e, stream = %self.config.name, "history stream not available yet");
                    }
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
            }
        }
    }

    /// Gets the stream, creating it when missing, and refreshes the epoch.
    pub async fn ensure(&self) -> Result<Position, HistoryError> {
        let stream = match timeout(self.js.get_stream(&self.config.name)).await? {
            Ok(stream) => stream,
            Err(_) => timeout(self.js.get_or_create_stream(self.config.clone())).await?.map_err(unavailable)?,
        };
        let info = stream.cached_info();
        if info.config.republish != self.config.republish {
            tracing::warn!(stream = %self.config.name, "history stream exists with another RePublish setting; live frames may not flow");
        }
        let position = self.position_from(info);
        Ok(position)
    }

    /// Current position: the answer to a JetStream request sent after this call began (one request, shared
    /// by the callers waiting meanwhile: 50 concurrent callers cost about two requests).
    pub async fn position(&self) -> Result<Position, HistoryError> {
        let called = Instant::now();
        let mut last = self.last_read.lock().await;
        match &*last {
            Some((sent, read)) if *sent >= called => read.clone(),
            _ => Ok(self.read_position(&mut last).await?),
        }
    }

    /// A position read at most `max_age` ago, else a new one.
    async fn recent_position(&self, max_age: Duration) -> Result<Position, HistoryError> {
        let mut last = self.last_read.lock().await;
        match &*last {
            Some((sent, Ok(position))) if sent.elapsed() <= max_age => Ok(position.clone()),
            _ => self.read_position(&mut last).await,
        }
    }

    /// One JetStream API request (STREAM.INFO), remembered in `last`.
    async fn read_position(
        &self,
        last: &mut Option<(Instant, Result<Position, HistoryError>)>,
    ) -> Result<Position, HistoryError> {
        let sent = Instant::now();
        let read = match timeout(self.js.get_stream(&self.config.name)).await {
            Ok(Ok(stream)) => Ok(self.position_from(stream.cached_info())),
            Ok(Err(e)) => Err(unavailable(e)),
            Err(e) => Err(e),
        };
        *last = Some((sent, read.clone()));
        read
    }

    /// One of the node's `history.max_concurrent_recoveries` slots, waiting up to [`RECOVERY_WAIT`] for it.
    pub async fn recovery_slot(&self) -> Option<tokio::sync::SemaphorePermit<'_>> {
        tokio::time::timeout(RECOVERY_WAIT, self.recoveries.acquire()).await.ok()?.ok()
    }

    /// Recoveries of the user key `user` under way (waiting for a slot or replaying).
    pub fn recoveries_of(&self, user: &str) -> usize {
        self.users.lock().unwrap_or_else(|e| e.into_inner()).get(user).copied().unwrap_or(0)
    }

    /// The node's recovery slots free now.
    pub fn free_recovery_slots(&self) -> usize {
        self.recoveries.available_permits()
    }

    /// One more recovery of `user` (a user key: one per user or anonymous session), waiting up to `deadline`
    /// while it has `history.max_recoveries_per_user` under way.
    async fn user_recovery(&self, user: &str, deadline: Instant) -> Option<UserRecovery<'_>> {
        loop {
            let freed = self.user_freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable(); // an end between the check below and the wait is not missed
            {
                let mut users = self.users.lock().unwrap_or_else(|e| e.into_inner());
                let n = users.entry(user.to_string()).or_default();
                if *n < self.per_user {
                    *n += 1;
                    return Some(UserRecovery { history: self, user: user.to_string() });
                }
            }
            tokio::time::timeout_at(deadline, freed).await.ok()?;
        }
    }

    /// A client's recovery (`subscribe` with `since`) for `user` (a user key), within the node's bounds:
    /// `history.max_recoveries_per_user` (refused at once), one of `history.max_concurrent_recoveries` slots
    /// (waiting up to [`RECOVERY_WAIT`]), `history.max_replay` events and `history.max_replay_bytes`. The caller
    /// keeps the returned slot until the replay is queued.
    pub async fn recover_for_client(
        &self,
        user: &str,
        pattern: &str,
        epoch: &str,
        seq: u64,
    ) -> Result<(Recovery, Position, Option<RecoverySlot<'_>>), HistoryError> {
        let deadline = Instant::now() + RECOVERY_WAIT;
        let Some(user) = self.user_recovery(user, deadline).await else {
            return Ok((Recovery::Refused(Refused::User), self.position().await?, None));
        };
        let node = tokio::time::timeout_at(deadline, self.recoveries.acquire()).await.ok().and_then(Result::ok);
        let Some(node) = node else {
            return Ok((Recovery::Refused(Refused::Busy), self.position().await?, None));
        };
        let (recovery, position) =
            self.recover_within(pattern, epoch, seq, self.max_replay, self.max_replay_bytes).await?;
        Ok((recovery, position, Some(RecoverySlot { _node: node, _user: user })))
    }

    fn position_from(&self, info: &stream::Info) -> Position {
        let epoch = format!("{:x}", info.created.unix_timestamp_nanos());
        let mut current = self.epoch.write().expect("epoch lock");
        if current.as_deref() != Some(epoch.as_str()) {
            if current.is_some() {
                tracing::warn!(%epoch, "history stream was recreated: new epoch");
            }
            *current = Some(Arc::from(epoch.as_str()));
        }
        Position { epoch, first_seq: info.state.first_sequence, last_seq: info.state.last_sequence }
    }

    /// Stored events matching `pattern` after `seq` in `epoch`, at most `max_replay` of them (and ten times
    /// `history.max_replay_bytes`). Events stored after this call starts reach the caller through the live path
    /// instead.
    pub async fn recover(
        &self,
        pattern: &str,
        epoch: &str,
        seq: u64,
        max_replay: usize,
    ) -> Result<(Recovery, Position), HistoryError> {
        self.recover_within(pattern, epoch, seq, max_replay, self.max_replay_bytes.saturating_mul(10)).await
    }

    async fn recover_within(
        &self,
        pattern: &str,
        epoch: &str,
        seq: u64,
        max_replay: usize,
        max_bytes: usize,
    ) -> Result<(Recovery, Position), HistoryError> {
        // A recent read can show that a consumer is needed (the stream only moves forward within an epoch, and
        // the read after the consumer decides); only a fresh one can show that nothing was missed.
        let mut position = self.recent_position(POSITION_REUSE).await?;
        if epoch == position.epoch && seq >= position.last_seq {
            position = self.position().await?;
        }
        if epoch != position.epoch {
            return Ok((Recovery::Lost("other epoch"), position));
        }
        if seq >= position.last_seq {
            return Ok((Recovery::Complete(Vec::new()), position));
        }
        if seq + 1 < position.first_seq {
            return Ok((Recovery::Lost("aged out"), position));
        }
        let stream = timeout(self.js.get_stream_no_info(&self.config.name)).await?.map_err(unavailable)?;
        let mut consumer: consumer::PullConsumer = timeout(stream.create_consumer(consumer::pull::Config {
            filter_subject: format!("{}.{}", self.subject_prefix, pattern),
            deliver_policy: consumer::DeliverPolicy::ByStartSequence { start_sequence: seq + 1 },
            ack_policy: consumer::AckPolicy::None,
            inactive_threshold: Duration::from_secs(10),
            memory_storage: true,
            num_replicas: 1,
            ..Default::default()
        }))
        .await?
        .map_err(unavailable)?;
        // Anything after `seq` that aged out before the consumer started would be a silent gap.
        let after = self.position().await?;
        let pending = consumer.cached_info().num_pending as usize;
        let recovery = if after.epoch != position.epoch {
            Recovery::Lost("other epoch")
        } else if seq + 1 < after.first_seq {
            Recovery::Lost("aged out")
        } else if pending > max_replay {
            Recovery::Refused(Refused::TooManyEvents)
        } else {
            match self.fetch(&mut consumer, pending, max_bytes).await? {
                None => Recovery::Refused(Refused::TooManyBytes),
                Some(events) if events.len() < pending => Recovery::Lost("aged out"),
                Some(events) => Recovery::Complete(events),
            }
        };
        let name = consumer.cached_info().name.clone();
        let _ = timeout(stream.delete_consumer(&name)).await;
        Ok((recovery, after))
    }

    /// Sequence of the first stored event matching `pattern` at or after `from`, if any. Asked of the stream
    /// leader (not a direct get, which a lagging follower may answer), so nothing stored before the call is missed.
    pub async fn next_stored(&self, pattern: &str, from: u64) -> Result<Option<u64>, HistoryError> {
        use async_nats::jetstream::stream::RawMessageErrorKind;
        let stream = timeout(self.js.get_stream_no_info(&self.config.name)).await?.map_err(unavailable)?;
        let request = stream
            .raw_message_builder()
            .sequence(from.max(1))
            .next_by_subject(format!("{}.{}", self.subject_prefix, pattern))
            .send();
        match timeout(request).await? {
            Ok(message) => Ok(Some(message.sequence)),
            Err(e) if e.kind() == RawMessageErrorKind::NoMessageFound => Ok(None),
            Err(e) => Err(unavailable(e)),
        }
    }

    /// Up to `count` events from the consumer; None as soon as their payloads exceed `max_bytes` (the rest is
    /// not read). The server sends at most about twice the bytes still allowed per request (its sizes include
    /// subjects and headers), so a replay over the bound is never all in this process's memory.
    async fn fetch(
        &self,
        consumer: &mut consumer::PullConsumer,
        count: usize,
        max_bytes: usize,
    ) -> Result<Option<Vec<Stored>>, HistoryError> {
        let mut events = Vec::with_capacity(count.min(1024));
        let mut bytes = 0usize;
        let prefix_len = self.subject_prefix.len() + 1;
        while events.len() < count {
            let budget = max_bytes.saturating_sub(bytes).saturating_mul(2).saturating_add(64 * 1024).min(1 << 40);
            let request = consumer.fetch().max_messages(count - events.len()).max_bytes(budget);
            let mut batch = timeout(request.expires(Duration::from_secs(2)).messages()).await?.map_err(unavailable)?;
            let before = events.len();
            while let Some(message) = timeout(batch.next()).await? {
                let message = match message {
                    Ok(message) => message,
                    // 409 "Message Size Exceeds MaxBytes": the next event does not fit the budget either.
                    Err(e) if e.to_string().contains("MaxBytes") => return Ok(None),
                    Err(e) => return Err(unavailable(e)),
                };
                bytes = bytes.saturating_add(message.payload.len());
                if bytes > max_bytes {
                    return Ok(None);
                }
                let seq = message.info().map_err(unavailable)?.stream_sequence;
                let name = message.subject.as_str().get(prefix_len..).unwrap_or_default().to_string();
                let from = crate::protocol::sender::from_of(message.headers.as_ref());
                events.push(Stored { seq, name, payload: message.payload.clone(), from });
            }
            if events.len() == before {
                break; // nothing more arrived within `expires`: the rest was deleted meanwhile
            }
        }
        Ok(Some(events))
    }
}

/// A user's recovery under way, counted in `history.max_recoveries_per_user` until dropped.
struct UserRecovery<'a> {
    history: &'a History,
    user: String,
}

impl Drop for UserRecovery<'_> {
    fn drop(&mut self) {
        let mut users = self.history.users.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = users.get_mut(&self.user) {
            *n -= 1;
            if *n == 0 {
                users.remove(&self.user);
            }
        }
        drop(users);
        self.history.user_freed.notify_waiters();
    }
}

/// The node's and the user's recovery slots a client recovery holds until its replay is queued.
pub struct RecoverySlot<'a> {
    _node: tokio::sync::SemaphorePermit<'a>,
    _user: UserRecovery<'a>,
}

async fn timeout<F: std::future::Future>(f: F) -> Result<F::Output, HistoryError> {
    tokio::time::timeout(REQUEST_TIMEOUT, f).await.map_err(|_| HistoryError::Timeout)
}

/// Reads the stream sequence of a re-published message.
pub fn sequence_of(message: &async_nats::Message) -> Option<u64> {
    message.headers.as_ref()?.get("Nats-Sequence")?.as_str().parse().ok()
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use async_nats::jetstream::context::{GetStreamError, GetStreamErrorKind};

    use super::*;

    #[test]
    fn an_unavailable_stream_keeps_the_nats_error_as_source_in_every_clone() {
        let e = unavailable(GetStreamError::new(GetStreamErrorKind::Request));
        for e in [e.clone(), e] {
            let source = e.source().expect("source");
            assert_eq!(source.downcast_ref::<GetStreamError>().map(|g| g.kind()), Some(GetStreamErrorKind::Request));
            assert_eq!(e.to_string(), format!("history stream unavailable: {source}"));
        }
        // A boxed error (async-nats' `crate::Error`, from `Message::info`) is kept as it is, not wrapped.
        let e = unavailable(BoxError::from(std::io::Error::other("no reply subject")));
        assert!(e.source().expect("source").is::<std::io::Error>());
    }
}
