//! The event catalog on a node (proto/PROTOCOL.md section 12): which events exist, read from the KV bucket
//! `catalog.bucket` that publishers write (a gateway never writes it).
//!
//! * `entry`: the key rule, the checks of a stored value, the overlap of two patterns.
//! * `index`: a token trie of the entries' patterns, so that a strict-mode check walks the checked pattern's
//!   tokens, not the entries.
//! * [`Catalog`]: the valid entries by key (at most `catalog.max_entries`) and their patterns' index;
//!   [`Catalog::listing`] and [`Catalog::knows`].
//! * [`NodeCatalog`]: the node's one catalog (not one per connection), behind a `RwLock` that only an `events`
//!   request, a strict-mode `subscribe` and the node's one KV watch (`watch`) take; the hub's delivery path never
//!   touches it. Not ready until the watch's first replay is complete.

mod entry;
mod index;
mod watch;

use std::{
    collections::BTreeMap,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, RwLock,
    },
};

pub use entry::{entry_key, overlaps, parse, template_pattern, Entry, Invalid, MAX_ENTRY_BYTES};
use metrics::{Counter, Gauge};

use crate::{config::CatalogSettings, node::metrics::Metrics};

/// `catalog.mode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// No watch, no catalog: `events` lists nothing.
    Off,
    /// Watch and list; subscriptions unchecked.
    Open,
    /// Also refuse a subscription that can match no entry (`unknown_event`).
    Strict,
}

impl Mode {
    pub fn parse(mode: &str) -> Option<Mode> {
        match mode {
            "off" => Some(Mode::Off),
            "open" => Some(Mode::Open),
            "strict" => Some(Mode::Strict),
            _ => None,
        }
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            Mode::Off => "off",
            Mode::Open => "open",
            Mode::Strict => "strict",
        }
    }
}

/// What [`Catalog::put`] did with a value.
#[derive(Debug, PartialEq, Eq)]
pub enum Put {
    /// A valid entry, added or replacing the key's previous one.
    Stored,
    /// An entry of a later format: left alone (the key's previous entry, if any, is gone).
    OtherFormat,
    /// Skipped (the key's previous entry, if any, is gone).
    Invalid(Invalid),
    /// A valid entry under a new key while the catalog holds `catalog.max_entries` already: ignored.
    Full,
}

/// The valid entries by key, in ascending byte order of their keys.
#[derive(Debug, Default)]
pub struct Catalog {
    max_entries: usize,
    entries: BTreeMap<Arc<str>, Entry>,
    /// Every pattern of every entry (counted: two entries may share one).
    index: index::Index,
}

impl Catalog {
    pub fn new(max_entries: usize) -> Self {
        Catalog { max_entries, ..Default::default() }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether a valid entry under a new key would be stored (fewer than `catalog.max_entries`).
    pub fn has_room(&self) -> bool {
        self.entries.len() < self.max_entries
    }

    /// Applies a KV put of `value` under `key` (checked as section 12 says, size first).
    pub fn put(&mut self, key: &str, value: &[u8]) -> Put {
        match entry::parse(key, value) {
            Ok(Some(entry)) => {
                if !self.entries.contains_key(key) && self.entries.len() >= self.max_entries {
                    return Put::Full;
                }
                self.remove(key);
                for pattern in entry.patterns.iter() {
                    self.index.insert(pattern);
                }
                self.entries.insert(key.into(), entry);
                Put::Stored
            }
            Ok(None) => {
                self.remove(key);
                Put::OtherFormat
            }
            Err(invalid) => {
                self.remove(key);
                Put::Invalid(invalid)
            }
        }
    }

    /// Applies a KV delete or purge of `key`.
    pub fn remove(&mut self, key: &str) -> bool {
        let Some(entry) = self.entries.remove(key) else {
            return false;
        };
        for pattern in entry.patterns.iter() {
            let indexed = self.index.remove(pattern);
            debug_assert!(indexed, "every stored entry's patterns are indexed");
        }
        true
    }

    /// The entries an `events` request lists, in key order: one of their patterns overlaps one of `allow` (the
    /// connection's grant), and `event` too when given.
    pub fn listing<'a>(
        &'a self,
        allow: &'a [String],
        event: Option<&'a str>,
    ) -> impl Iterator<Item = (&'a str, &'a Entry)> + 'a {
        self.entries
            .iter()
            .filter(move |(_, e)| allow.iter().any(|a| e.overlaps(a)) && event.is_none_or(|p| e.overlaps(p)))
            .map(|(k, e)| (&**k, e))
    }

    /// Whether a subscription to `pattern` (a valid pattern) can match an entry (strict mode): one of the
    /// entries' patterns overlaps it. Walks the pattern's tokens in the index, not the entries.
    pub fn knows(&self, pattern: &str) -> bool {
        self.index.overlaps_any(pattern)
    }

    /// The `events` reply: entries of [`Catalog::listing`] in order while the frame stays at most `max_bytes`;
    /// the first that does not fit ends the list and sets `truncated`.
    pub fn reply(
        &self,
        id: Option<u64>,
        mode: Mode,
        allow: &[String],
        event: Option<&str>,
        max_bytes: usize,
    ) -> String {
        let mut frame = head(id, mode);
        let mut truncated = false;
        let mut first = true;
        for (_, entry) in self.listing(allow, event) {
            let tail = if first { TAIL_TRUNCATED.len() } else { TAIL_TRUNCATED.len() + 1 };
            if frame.len() + entry.listed.len() + tail > max_bytes {
                truncated = true;
                break;
            }
            if !first {
                frame.push(',');
            }
            frame.push_str(&entry.listed);
            first = false;
        }
        frame.push_str(if truncated { TAIL_TRUNCATED } else { TAIL });
        frame
    }
}

const TAIL: &str = r#"],"truncated":false}"#;
const TAIL_TRUNCATED: &str = r#"],"truncated":true}"#;

fn head(id: Option<u64>, mode: Mode) -> String {
    match id {
        Some(id) => format!(r#"{{"type":"events","id":{id},"mode":"{}","events":["#, mode.as_str()),
        None => format!(r#"{{"type":"events","mode":"{}","events":["#, mode.as_str()),
    }
}

/// The `events` reply of a node whose `catalog.mode` is `off`.
pub fn off_reply(id: Option<u64>) -> String {
    let mut frame = head(id, Mode::Off);
    frame.push_str(TAIL);
    frame
}

/// Why an `events` request or a strict check could not be answered from the catalog.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CatalogError {
    /// The watch's first replay is not complete yet.
    #[error("catalog not loaded")]
    NotLoaded,
}

/// The node's catalog counters (`telegraphy_catalog_invalid_total{reason}`, the entries gauge).
pub(crate) struct CatalogMetrics {
    pub too_big: Counter,
    pub not_json: Counter,
    pub invalid: Counter,
    pub key_mismatch: Counter,
    pub max_entries: Counter,
    pub entries: Gauge,
    pub unknown_event: Counter,
}

impl CatalogMetrics {
    fn new(metrics: &Metrics) -> Self {
        let invalid = |reason| metrics.labelled_counter("telegraphy_catalog_invalid_total", "reason", reason);
        let m = CatalogMetrics {
            too_big: invalid("too_big"),
            not_json: invalid("not_json"),
            invalid: invalid("invalid"),
            key_mismatch: invalid("key_mismatch"),
            max_entries: invalid("max_entries"),
            entries: metrics.gauge("telegraphy_catalog_entries"),
            unknown_event: metrics.counter("telegraphy_catalog_unknown_event_total"),
        };
        for c in [&m.too_big, &m.not_json, &m.invalid, &m.key_mismatch, &m.max_entries, &m.unknown_event] {
            c.increment(0);
        }
        m.entries.set(0.0);
        m
    }

    fn count(&self, invalid: Invalid) {
        match invalid {
            Invalid::TooBig => &self.too_big,
            Invalid::NotJson => &self.not_json,
            Invalid::Field(_) => &self.invalid,
            Invalid::KeyMismatch => &self.key_mismatch,
        }
        .increment(1);
    }
}

/// The node's catalog: one per node, kept by one KV watch (started by [`NodeCatalog::start`] unless `off`).
pub struct NodeCatalog {
    mode: Mode,
    max_reply_bytes: usize,
    catalog: RwLock<Catalog>,
    loaded: AtomicBool,
    metrics: CatalogMetrics,
}

impl NodeCatalog {
    /// The node's catalog; with `catalog.mode` other than `off`, starts its KV watch on `client`.
    pub fn start(client: async_nats::Client, settings: &CatalogSettings, metrics: &Metrics) -> Arc<NodeCatalog> {
        let mode = Mode::parse(&settings.mode).unwrap_or(Mode::Open);
        let node = Arc::new(NodeCatalog {
            mode,
            max_reply_bytes: settings.max_reply_bytes,
            catalog: RwLock::new(Catalog::new(settings.max_entries)),
            loaded: AtomicBool::new(false),
            metrics: CatalogMetrics::new(metrics),
        });
        if mode != Mode::Off {
            tokio::spawn(watch::run(client, settings.clone(), Arc::downgrade(&node)));
        }
        node
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// True once the watch's first replay is complete (always false with `off`).
    pub fn is_loaded(&self) -> bool {
        self.loaded.load(Ordering::Acquire)
    }

    /// The `events` reply for a connection granted `allow`, or [`CatalogError::NotLoaded`].
    pub fn reply(&self, id: Option<u64>, allow: &[String], event: Option<&str>) -> Result<String, CatalogError> {
        if self.mode == Mode::Off {
            return Ok(off_reply(id));
        }
        if !self.is_loaded() {
            return Err(CatalogError::NotLoaded);
        }
        let catalog = self.catalog.read().expect("catalog lock");
        Ok(catalog.reply(id, self.mode, allow, event, self.max_reply_bytes))
    }

    /// Strict mode: false when a subscription to `pattern` can match no entry (answer `unknown_event`). True in
    /// `open`/`off`, and until the first replay is complete (availability first).
    pub fn admits(&self, pattern: &str) -> bool {
        if self.mode != Mode::Strict || !self.is_loaded() {
            return true;
        }
        let known = self.catalog.read().expect("catalog lock").knows(pattern);
        if !known {
            self.metrics.unknown_event.increment(1);
        }
        known
    }

    /// Replaces the whole catalog (the end of a watch's replay) and marks it loaded.
    fn replace(&self, catalog: Catalog) {
        self.metrics.entries.set(catalog.len() as f64);
        *self.catalog.write().expect("catalog lock") = catalog;
        self.loaded.store(true, Ordering::Release);
    }

    /// Applies one change after the replay; returns what a put did (None for a removal).
    fn apply(&self, key: &str, value: Option<&[u8]>) -> Option<Put> {
        let mut catalog = self.catalog.write().expect("catalog lock");
        let put = match value {
            Some(value) => Some(catalog.put(key, value)),
            None => {
                catalog.remove(key);
                None
            }
        };
        self.metrics.entries.set(catalog.len() as f64);
        put
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(mode: Mode) -> NodeCatalog {
        NodeCatalog {
            mode,
            max_reply_bytes: 262_144,
            catalog: RwLock::new(Catalog::new(2)),
            loaded: AtomicBool::new(false),
            metrics: CatalogMetrics::new(&Metrics::new()),
        }
    }

    fn value(name: &str) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({"format": 1, "name": name, "patterns": [name], "kind": "custom",
            "operations": [], "description": "", "data": {}, "presence": null, "version": 1, "owner": "o",
            "generation": 1}))
        .unwrap()
    }

    #[test]
    fn before_the_first_replay_events_is_not_loaded_and_strict_lets_through() {
        let strict = node(Mode::Strict);
        assert_eq!(strict.reply(Some(1), &[">".into()], None), Err(CatalogError::NotLoaded));
        assert!(strict.admits("anything.>"), "availability first");
        strict.replace(Catalog::new(2));
        assert!(!strict.admits("anything.>"));
        assert_eq!(
            strict.reply(Some(1), &[">".into()], None).unwrap(),
            r#"{"type":"events","id":1,"mode":"strict","events":[],"truncated":false}"#
        );
        let off = node(Mode::Off);
        assert_eq!(off.reply(None, &[">".into()], None).unwrap(), off_reply(None));
        assert!(off.admits("anything.>"));
    }

    #[test]
    fn max_entries_bounds_new_keys_but_not_replacements() {
        let mut c = Catalog::new(2);
        assert_eq!(c.put("o.a", &value("a")), Put::Stored);
        assert_eq!(c.put("o.b", &value("b")), Put::Stored);
        assert_eq!(c.put("o.c", &value("c")), Put::Full);
        assert_eq!(c.put("o.b", &value("b")), Put::Stored, "a replacement is not a new entry");
        assert!(c.knows("b") && !c.knows("c"));
        assert!(c.remove("o.a"));
        assert!(!c.knows("a") && c.knows("*"), "the index follows removals");
        assert_eq!(c.put("o.c", &value("c")), Put::Stored);
    }
}
