//! The one render path of an event to a subscription, shared by live delivery and healing (the hub's fan-out)
//! and the replay of a `subscribe` with `since` (the session): check the event once (name, size, JSON), then
//! per subscription (or group of subscriptions sharing a name and filter): filter, then encode the frame once.
//! The data is parsed for filters at most once per event, and only when a filter asks.

use std::cell::OnceCell;

use bytestring::ByteString;
use serde_json::value::RawValue;

use crate::{
    node::{metrics::Metrics, outbox::Frame},
    protocol::{filter::Filter, frames, names},
};

/// An event that passed the checks every receiver needs; its data borrowed from the payload.
pub(crate) struct Checked<'a> {
    name: &'a str,
    data: &'a RawValue,
    from: Option<&'a str>,
    /// The data as a JSON value for filters, parsed on the first filter.
    parsed: OnceCell<serde_json::Value>,
}

impl<'a> Checked<'a> {
    /// Checks one event's name, size and JSON, or counts why it is dropped (and drops it for every receiver).
    pub(crate) fn new(
        metrics: &Metrics,
        name: &'a str,
        payload: &'a [u8],
        from: Option<&'a str>,
        max_event_bytes: usize,
    ) -> Option<Checked<'a>> {
        if names::validate_name(name).is_err() {
            metrics.events_dropped_bad_name.increment(1);
            log_dropped("bad name", name);
            return None;
        }
        if payload.len() > max_event_bytes {
            metrics.events_dropped_too_big.increment(1);
            log_dropped("payload too big", name);
            return None;
        }
        match serde_json::from_slice(payload) {
            Ok(data) => Some(Checked { name, data, from, parsed: OnceCell::new() }),
            Err(_) => {
                metrics.events_dropped_not_json.increment(1);
                log_dropped("payload is not JSON", name);
                None
            }
        }
    }

    /// The event frame for subscription `sub` (with its history position `at` when the node keeps history, and
    /// where that position sits in the text), or `None` when `filter` refuses the event.
    pub(crate) fn render(&self, sub: &str, filter: Option<&Filter>, at: Option<(u64, &str)>) -> Option<Frame> {
        if let Some(filter) = filter {
            // Valid JSON already: only nesting beyond serde's limit fails to parse (and then matches as null).
            let data = self.parsed.get_or_init(|| serde_json::from_str(self.data.get()).unwrap_or_default());
            if !filter.matches(data) {
                return None;
            }
        }
        let (text, position) = frames::encode_event_spanned(sub, self.name, self.data, self.from, at);
        Some(Frame::new(ByteString::from(text), position))
    }
}

/// Logs a dropped event at most about once a second per process, so a bad publisher cannot flood the log.
fn log_dropped(why: &str, name: &str) {
    use std::sync::atomic::{AtomicU64, Ordering};
    static LAST: AtomicU64 = AtomicU64::new(0);
    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default();
    if LAST.swap(now, Ordering::Relaxed) != now {
        tracing::warn!(event = %name.chars().take(255).collect::<String>(), "event dropped: {why} (further drops this second not logged)");
    }
}
