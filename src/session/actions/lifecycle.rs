//! Lifecycle events (proto/PROTOCOL.md section 15): opt-in (`lifecycle.events`), one small core publish per
//! connection event to `<prefix>_lifecycle.<kind>`, fire-and-forget: handed to a task so the session never
//! waits for NATS, dropped (and counted) while NATS is down.

use std::fmt::Write as _;

use crate::{node::auth::Identity, node::Gateway, protocol::frames};

/// The lifecycle kinds, in `constants::actions::LIFECYCLE_KINDS` order (the metrics' index).
#[derive(Clone, Copy, Debug)]
pub(crate) enum Kind {
    Connect { resumed: bool },
    Disconnect { code: u16, reason: &'static str },
    Subscribe,
    Unsubscribe,
}

impl Kind {
    fn index(self) -> usize {
        match self {
            Kind::Connect { .. } => 0,
            Kind::Disconnect { .. } => 1,
            Kind::Subscribe => 2,
            Kind::Unsubscribe => 3,
        }
    }

    fn name(self) -> &'static str {
        crate::protocol::constants::actions::LIFECYCLE_KINDS[self.index()]
    }
}

/// The payload (compact JSON, fields in the documented order); `subscription` is `(pattern, name)` for
/// `subscribe`/`unsubscribe`; `time` unix milliseconds.
pub fn payload(
    kind_name: &str,
    node: &str,
    identity: &Identity,
    middle: impl FnOnce(&mut String),
    time: u64,
) -> String {
    let mut buf = String::with_capacity(160);
    buf.push_str("{\"kind\":");
    buf.push_str(&serde_json::to_string(kind_name).unwrap_or_default());
    for (key, value) in [
        ("node", node),
        ("session", &identity.session),
        ("client", &crate::node::presence::client_id(&identity.session)),
        ("user", &identity.sub),
    ] {
        let _ = write!(buf, ",\"{key}\":{}", serde_json::to_string(value).unwrap_or_default());
    }
    if let Some(info) = &identity.info {
        let _ = write!(buf, ",\"info\":{}", serde_json::to_string(info).unwrap_or_default());
    }
    middle(&mut buf);
    let _ = write!(buf, ",\"time\":{time}}}");
    buf
}

/// Publishes lifecycle event `kind` of the connection of `identity` if the node is configured for it.
pub(crate) fn emit(gw: &Gateway, kind: Kind, identity: &Identity, subscription: Option<(&str, &str)>) {
    if !gw.settings.lifecycle.publishes(kind.name()) {
        return;
    }
    let metrics = &gw.metrics.actions;
    if !crate::node::nats::is_connected(&gw.nats) {
        metrics.lifecycle_dropped[kind.index()].increment(1);
        return;
    }
    let time = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_millis();
    let body = payload(
        kind.name(),
        &gw.settings.node.name,
        identity,
        |buf| match kind {
            Kind::Connect { resumed } => {
                let _ = write!(buf, ",\"resumed\":{resumed}");
            }
            Kind::Disconnect { code, reason } => {
                let _ =
                    write!(buf, ",\"code\":{code},\"reason\":{}", serde_json::to_string(reason).unwrap_or_default());
            }
            Kind::Subscribe | Kind::Unsubscribe => {
                let (pattern, name) = subscription.unwrap_or_default();
                let _ =
                    write!(buf, ",\"event\":{},\"sub\":{}", frames::json_string(pattern), frames::json_string(name));
            }
        },
        time as u64,
    );
    let subject = format!("{}.{}", gw.settings.lifecycle_prefix(), kind.name());
    let (client, counter) = (gw.nats.clone(), metrics.lifecycle_sent[kind.index()].clone());
    tokio::spawn(async move {
        if client.publish(subject, body.into()).await.is_ok() {
            counter.increment(1);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_follow_the_vectors() {
        // proto/vectors/rpc.json "lifecycle" (node gw-1; the sender of "sender").
        let v: serde_json::Value =
            serde_json::from_str(include_str!("../../../proto/vectors/rpc.json")).expect("rpc.json");
        let who = &v["sender"];
        for case in v["lifecycle"].as_array().unwrap() {
            let expected = case["payload"].as_str().unwrap();
            let parsed: serde_json::Value = serde_json::from_str(expected).unwrap();
            let identity = Identity {
                sub: parsed["user"].as_str().unwrap().into(),
                allow: vec![],
                session: who["session"].as_str().unwrap().into(),
                auth_time: 0,
                info: parsed.get("info").cloned(),
                grants: None,
            };
            let kind = case["kind"].as_str().unwrap();
            let got = payload(
                kind,
                "gw-1",
                &identity,
                |buf| match kind {
                    "connect" => {
                        let _ = write!(buf, ",\"resumed\":{}", parsed["resumed"]);
                    }
                    "disconnect" => {
                        let _ = write!(buf, ",\"code\":{},\"reason\":{}", parsed["code"], parsed["reason"]);
                    }
                    _ => {
                        let _ = write!(buf, ",\"event\":{},\"sub\":{}", parsed["event"], parsed["sub"]);
                    }
                },
                parsed["time"].as_u64().unwrap(),
            );
            assert_eq!(got, expected, "{kind}");
            assert_eq!(case["subject"], format!("telegraphy_lifecycle.{kind}"));
        }
    }
}
