//! A `subscribe` (proto/PROTOCOL.md sections 4, 7, 8, 11, 12) as named steps, each answering the client itself
//! when it stops the subscription (a step's `None` means: answered, stop):
//! [`Session::admit_pattern`] (connected, grant, catalog) -> [`Session::presence_allowed`] ->
//! [`Session::prepare_filter`] (every filter limit, nothing compiled) -> [`Session::room`] (same subscription
//! again, subscription and filter counts, filter memory) -> [`Session::compile_charged`] -> [`Session::install`]
//! (presence join, replacement, the hub) -> [`Session::confirm`] (`subscribed`, history recovery and replay) ->
//! [`Session::go_live`].

use std::sync::Arc;

use super::{Held, Session, SubscribeRequest, Uncompiled, HISTORY_WAIT, UNKNOWN_EVENT_MESSAGE};
use crate::{
    node::history::Recovery,
    protocol::filter::{Filter, FilterLimits, PreparedFilter},
    protocol::frames::{self, ErrorCode, Since, SubscribedAt},
    protocol::names,
    session::actions::lifecycle,
};

/// What a new subscription may use of the connection's filter memory.
struct Room {
    /// The name is held already by another subscription, which this one replaces.
    replacing: bool,
    /// Bytes the replaced subscription's regexes give back.
    credit: usize,
    /// Bytes of the connection's other subscriptions' regexes.
    kept_bytes: usize,
}

impl Session {
    pub(super) async fn on_subscribe(&mut self, id: Option<u64>, request: SubscribeRequest) {
        let SubscribeRequest { event, since, sub, filter, exclude, presence } = request;
        let name = sub.clone().unwrap_or_else(|| event.clone());
        let Some(user) = self.admit_pattern(id, &event) else { return };
        if presence && !self.presence_allowed(id, &event, &name) {
            return;
        }
        let Some(prepared) = self.prepare_filter(id, filter.as_ref(), exclude.as_ref()) else { return };
        let canonical = prepared.canonical().to_string();
        let again = Held { pattern: event.clone(), canonical, filter: None, filter_bytes: 0, presence };
        let Some(room) = self.room(id, &name, &again, sub.as_deref(), since.is_none(), &prepared, &user) else {
            return;
        };
        let Some((filter, filter_bytes)) = self.compile_charged(id, &user, prepared, &room).await else { return };
        let held = Held { filter: filter.clone(), filter_bytes, ..again };
        let gw = self.gw.clone();
        let release_user = || gw.filter_memory.release_user(&user, filter_bytes);
        if !self.install(id, &name, held, room.replacing).await {
            return release_user();
        }
        let replayed_through = self.confirm(id, &event, &name, sub.as_deref(), since, filter.as_deref()).await;
        self.go_live(&event, &name, presence, replayed_through).await;
    }

    /// Connected, the pattern inside the grant's `allow`, and (strict catalog mode, section 12) able to match a
    /// catalogued event: the user whose filter memory budget the subscription counts in ("" when anonymous).
    fn admit_pattern(&mut self, id: Option<u64>, event: &str) -> Option<Arc<str>> {
        let Some(identity) = &self.identity else {
            self.bad_frame(id, ErrorCode::NotConnected, "connect first");
            return None;
        };
        if !identity.permits(event) {
            self.reply(frames::encode_error(id, ErrorCode::Forbidden, "pattern not allowed"));
            return None;
        }
        // Strict catalog mode (section 12): after the permission, before any limit.
        if !self.gw.catalog.admits(event) {
            self.reply(frames::encode_error(id, ErrorCode::UnknownEvent, UNKNOWN_EVENT_MESSAGE));
            return None;
        }
        Some(identity.sub.clone())
    }

    /// Presence limits (section 11), before any KV work.
    fn presence_allowed(&mut self, id: Option<u64>, event: &str, name: &str) -> bool {
        let settings = self.gw.presence.settings();
        if !settings.enabled {
            self.bad_frame(id, ErrorCode::BadRequest, "presence is off");
            return false;
        }
        if names::validate_name(event).is_err() {
            self.bad_frame(id, ErrorCode::BadRequest, "presence needs a channel without wildcards");
            return false;
        }
        let held = self.subscriptions.iter().filter(|(n, h)| **n != name && h.presence).count();
        if held >= settings.max_per_connection {
            self.reply(frames::encode_error(id, ErrorCode::LimitExceeded, "too many presence subscriptions"));
            return false;
        }
        true
    }

    /// Every limit of the filter checked before any regex is compiled (section 8).
    fn prepare_filter(
        &mut self,
        id: Option<u64>,
        filter: Option<&serde_json::Value>,
        exclude: Option<&serde_json::Value>,
    ) -> Option<PreparedFilter> {
        let limits = &self.gw.settings.limits;
        let filter_limits = FilterLimits {
            max_conditions: limits.max_filter_conditions,
            max_regex_conditions: limits.max_regex_conditions,
            ..FilterLimits::default()
        };
        match Filter::prepare(filter, exclude, &filter_limits) {
            Ok(prepared) => Some(prepared),
            Err(e) => {
                self.bad_frame(id, ErrorCode::BadRequest, &e.to_string());
                None
            }
        }
    }

    /// The same subscription again (answered at once, unless it recovers history), the subscription and filter
    /// counts, and whether the regexes may fit the connection's and the user's filter memory.
    #[allow(clippy::too_many_arguments)]
    fn room(
        &mut self,
        id: Option<u64>,
        name: &str,
        wanted: &Held,
        sub: Option<&str>,
        no_since: bool,
        prepared: &PreparedFilter,
        user: &str,
    ) -> Option<Room> {
        let limits = &self.gw.settings.limits;
        let replacing = match self.subscriptions.get(name) {
            Some(held)
                if held.pattern == wanted.pattern
                    && held.canonical == wanted.canonical
                    && held.presence == wanted.presence
                    && no_since =>
            {
                let at = SubscribedAt { recovered: None, position: None, sub };
                self.reply(frames::encode_subscribed_at(id, &wanted.pattern, &at));
                return None;
            }
            Some(held) => Some(held.filter_bytes),
            None => None,
        };
        if replacing.is_none() && self.subscriptions.len() >= limits.max_subscriptions {
            self.reply(frames::encode_error(id, ErrorCode::LimitExceeded, "too many subscriptions"));
            return None;
        }
        let filtered = self.subscriptions.iter().filter(|(n, h)| **n != name && !h.canonical.is_empty()).count();
        if !prepared.is_empty() && filtered >= limits.max_filters {
            self.reply(frames::encode_error(id, ErrorCode::LimitExceeded, "too many filtered subscriptions"));
            return None;
        }
        // The connection's other subscriptions' regexes (a replaced subscription's are released with it).
        let credit = replacing.unwrap_or(0);
        let kept_bytes = self.filter_bytes() - credit;
        let budget = limits.filter_memory_per_connection;
        let user_full = !user.is_empty() && !self.gw.filter_memory.user_has_room(user, credit);
        if prepared.regexes().next().is_some() && (kept_bytes >= budget || user_full) {
            self.refuse_filter_memory(id);
            return None;
        }
        Some(Room { replacing: replacing.is_some(), credit, kept_bytes })
    }

    /// Compiles the regexes through the node's pool, then charges them to the connection's and the user's
    /// budgets: the filter (`None` when it has no conditions) and its bytes.
    async fn compile_charged(
        &mut self,
        id: Option<u64>,
        user: &str,
        prepared: PreparedFilter,
        room: &Room,
    ) -> Option<(Option<Arc<Filter>>, usize)> {
        let filter = match self.compile(prepared).await {
            Ok(filter) if filter.is_empty() => None,
            Ok(filter) => Some(Arc::new(filter)),
            Err(Uncompiled::Bad(e)) => {
                self.bad_frame(id, ErrorCode::BadRequest, &e.to_string());
                return None;
            }
            Err(Uncompiled::OverBudget) => {
                self.refuse_filter_memory(id);
                return None;
            }
        };
        let filter_bytes = filter.as_ref().map_or(0, |f| f.regex_bytes());
        let budget = self.gw.settings.limits.filter_memory_per_connection;
        if room.kept_bytes + filter_bytes > budget
            || (!user.is_empty() && !self.gw.filter_memory.charge_user(user, filter_bytes, room.credit))
        {
            self.refuse_filter_memory(id);
            return None;
        }
        Some((filter, filter_bytes))
    }

    /// Joins presence, drops the subscription this one replaces, and adds it to the hub; false (answered, and
    /// the presence joined here left) when it could not.
    async fn install(&mut self, id: Option<u64>, name: &str, held: Held, replacing: bool) -> bool {
        let (event, presence) = (held.pattern.clone(), held.presence);
        // Joined before a replaced subscription is dropped: a presence kept across the replacement is no
        // leave/join.
        if presence && !self.join_presence(id, &event).await {
            return false;
        }
        if replacing {
            if let Some(old) = self.drop_subscription(name, true).await {
                self.lifecycle(lifecycle::Kind::Unsubscribe, &old, name);
            }
        }
        // The hub holds this subscription's live frames until `subscribed` (and any replay) is queued, then
        // releases them without duplicates (Hub::go_live). `subscribed` is sent only once the node's NATS
        // interest is in place on the server (Hub::subscribe), so an event published after it is delivered.
        if !self.register(id, name, held).await {
            if presence {
                self.leave_presence(&event, true).await;
            }
            return false;
        }
        true
    }

    /// Answers `subscribed`, with the history position, and with the recovery and replay of the events since
    /// `since` when asked; returns the last sequence replayed.
    async fn confirm(
        &mut self,
        id: Option<u64>,
        event: &str,
        name: &str,
        sub: Option<&str>,
        since: Option<Since>,
        filter: Option<&Filter>,
    ) -> Option<u64> {
        let gw = self.gw.clone();
        let Some(history) = &gw.history else {
            let at = SubscribedAt { recovered: since.as_ref().map(|_| false), position: None, sub };
            self.reply(frames::encode_subscribed_at(id, event, &at));
            return None;
        };
        if tokio::time::timeout(HISTORY_WAIT, gw.nats.flush()).await.is_err() {
            tracing::debug!(conn = self.id, "NATS flush before history read timed out");
        }
        let Some(since) = since else {
            let position = history.position().await.ok();
            let at =
                SubscribedAt { recovered: None, position: position.as_ref().map(|p| (&*p.epoch, p.last_seq)), sub };
            self.reply(frames::encode_subscribed_at(id, event, &at));
            return None;
        };
        let recovered = self.recover(history, event, &since).await;
        match recovered {
            // The recovery's slots are kept until its replay is queued.
            Ok((Recovery::Complete(events), position, _slot)) => {
                let at =
                    SubscribedAt { recovered: Some(true), position: Some((&position.epoch, position.last_seq)), sub };
                self.reply(frames::encode_subscribed_at(id, event, &at));
                let replayed_through = events.last().map_or(since.seq, |e| e.seq.max(since.seq));
                self.replay(name, filter, &position.epoch, events).await;
                Some(replayed_through)
            }
            Ok((lost, position, _)) => {
                if let Recovery::Refused(refused) = lost {
                    refused.count(&gw.metrics);
                }
                tracing::debug!(conn = self.id, why = lost.why(), "history not recovered");
                let at =
                    SubscribedAt { recovered: Some(false), position: Some((&position.epoch, position.last_seq)), sub };
                self.reply(frames::encode_subscribed_at(id, event, &at));
                None
            }
            Err(e) => {
                tracing::warn!(conn = self.id, error = %e, "history unavailable for recovery");
                let at = SubscribedAt { recovered: Some(false), position: None, sub };
                self.reply(frames::encode_subscribed_at(id, event, &at));
                None
            }
        }
    }

    /// The subscription's lifecycle event, its presence events, then its live frames (held by the hub until
    /// now, those through `replayed_through` skipped).
    async fn go_live(&mut self, event: &str, name: &str, presence: bool, replayed_through: Option<u64>) {
        self.lifecycle(lifecycle::Kind::Subscribe, event, name);
        if presence {
            self.attach_presence(event, name);
        }
        self.gw.hub.go_live(event, self.id, name, replayed_through).await;
    }
}
