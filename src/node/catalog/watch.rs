//! The node's one KV watch on the catalog bucket (section 12): replays the stored entries into a fresh
//! [`Catalog`] and swaps it in once the replay is complete (the node is "loaded" from then on), then applies each
//! put, delete and purge as it comes. A missing bucket is an empty catalog, checked again with a bounded backoff
//! (the first writer creates it); an error restarts the watch after the same backoff. Invalid values are
//! skipped, counted and logged at most once per [`LOG_EVERY`].
//!
//! `catalog.max_entries`: a valid entry under a new key while the catalog is full is skipped (`Put::Full`). The
//! watch remembers that it skipped some (not which: that would cost memory per skipped entry), and once a
//! removal leaves room it replays the bucket again after [`REFILL_DELAY`] (coalescing a burst of deletes), so the
//! skipped entries come back; the node keeps serving its current catalog until the new replay replaces it.

use std::{
    sync::Weak,
    time::{Duration, Instant},
};

use async_nats::jetstream::{self, kv::Operation};
use futures_util::StreamExt;

use super::{Catalog, NodeCatalog, Put};
use crate::{config::CatalogSettings, node::nats};

/// First wait before looking again for a missing bucket or restarting a failed watch; doubled up to
/// [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Wait before the replay that brings back entries skipped at `catalog.max_entries` once there is room.
const REFILL_DELAY: Duration = Duration::from_millis(250);
/// At most one log line about skipped entries per this interval (the others are counted in it).
const LOG_EVERY: Duration = Duration::from_secs(10);

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Logs skipped entries, rate-limited.
struct SkipLog {
    last: Option<Instant>,
    suppressed: u64,
}

impl SkipLog {
    fn skipped(&mut self, key: &str, reason: &str, problem: &dyn std::fmt::Display) {
        if self.last.is_some_and(|at| at.elapsed() < LOG_EVERY) {
            self.suppressed += 1;
            return;
        }
        let key: String = key.chars().take(128).collect();
        tracing::warn!(key, reason, %problem, suppressed = self.suppressed, "catalog entry skipped");
        self.last = Some(Instant::now());
        self.suppressed = 0;
    }
}

enum Outcome {
    /// The bucket does not exist: the catalog is empty.
    Missing,
    /// The watch ended (the server or the connection closed it).
    Ended,
    /// Entries were skipped at `catalog.max_entries` and a removal left room: replay to bring them back.
    Refill,
}

pub(super) async fn run(client: async_nats::Client, settings: CatalogSettings, node: Weak<NodeCatalog>) {
    let mut backoff = MIN_BACKOFF;
    let mut log = SkipLog { last: None, suppressed: 0 };
    loop {
        let outcome = watch_once(&client, &settings, &node, &mut log, &mut backoff).await;
        let Some(catalog) = node.upgrade() else { return };
        match outcome {
            Ok(Outcome::Missing) => {
                if !catalog.is_loaded() || !catalog.catalog.read().expect("catalog lock").is_empty() {
                    tracing::info!(bucket = %settings.bucket, "catalog bucket missing: empty catalog");
                    catalog.replace(Catalog::new(settings.max_entries));
                }
            }
            Ok(Outcome::Ended) => tracing::warn!("catalog watch ended; restarting"),
            Ok(Outcome::Refill) => {
                tracing::info!("catalog has room for entries skipped at catalog.max_entries; replaying");
                drop(catalog);
                tokio::time::sleep(REFILL_DELAY).await;
                continue;
            }
            Err(e) => tracing::warn!(error = %e, "catalog watch failed; retrying"),
        }
        drop(catalog);
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

async fn watch_once(
    client: &async_nats::Client,
    settings: &CatalogSettings,
    node: &Weak<NodeCatalog>,
    log: &mut SkipLog,
    backoff: &mut Duration,
) -> Result<Outcome, BoxError> {
    let js = jetstream::new(client.clone());
    let kv = match js.get_key_value(&settings.bucket).await {
        Ok(kv) => kv,
        Err(e) if nats::is_bucket_missing(&e) => return Ok(Outcome::Missing),
        Err(e) => return Err(e.into()),
    };
    let mut entries = kv.watch_with_history(">").await?;
    // The replay of what is stored ends with the entry that has nothing pending; an empty bucket has none.
    let mut fresh = Some(Catalog::new(settings.max_entries));
    // Some valid entry was skipped at `catalog.max_entries` by this watch.
    let mut skipped = false;
    if kv.status().await?.values() == 0 {
        if let (Some(node), Some(fresh)) = (node.upgrade(), fresh.take()) {
            node.replace(fresh);
        }
    }
    while let Some(entry) = entries.next().await {
        let entry = entry?;
        let Some(node) = node.upgrade() else { return Ok(Outcome::Ended) };
        let value = (entry.operation == Operation::Put).then_some(&entry.value[..]);
        let put = match &mut fresh {
            Some(replay) => match value {
                Some(value) => Some(replay.put(&entry.key, value)),
                None => {
                    replay.remove(&entry.key);
                    None
                }
            },
            None => node.apply(&entry.key, value),
        };
        match put {
            Some(Put::Invalid(invalid)) => {
                node.metrics.count(invalid);
                log.skipped(&entry.key, invalid.reason(), &invalid);
            }
            Some(Put::Full) => {
                skipped = true;
                node.metrics.max_entries.increment(1);
                log.skipped(&entry.key, "max_entries", &"catalog.max_entries reached");
            }
            _ => {}
        }
        if entry.delta == 0 {
            if let Some(replay) = fresh.take() {
                tracing::debug!(entries = replay.len(), "catalog loaded");
                node.replace(replay);
                *backoff = MIN_BACKOFF;
            }
        }
        if skipped && fresh.is_none() && node.catalog.read().expect("catalog lock").has_room() {
            return Ok(Outcome::Refill);
        }
    }
    Ok(Outcome::Ended)
}
