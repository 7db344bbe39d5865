//! The sender of a client action (proto/PROTOCOL.md section 13, "The sender"): the gateway takes it from the
//! connection, never from a client frame, and stamps it on NATS as ASCII headers; receivers of a client publish
//! see it as `from` in the event frame.

use async_nats::HeaderMap;
use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};

use crate::{node::auth::Identity, protocol::constants::actions::headers, protocol::frames};

/// Length of a client id (section 11).
const CLIENT_ID_CHARS: usize = crate::protocol::constants::presence::CLIENT_ID_CHARS;

/// Is `id` a client id: 16 characters of `[A-Za-z0-9_-]`?
pub fn is_client_id(id: &str) -> bool {
    id.len() == CLIENT_ID_CHARS && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The headers of a client publish: `Telegraphy-Client`, `Telegraphy-User` (absent for an anonymous sender)
/// and a fresh `Nats-Msg-Id`.
pub fn publish_headers(identity: &Identity, client: &str) -> HeaderMap {
    let mut map = HeaderMap::new();
    map.insert(headers::CLIENT, client);
    if !identity.sub.is_empty() {
        map.insert(headers::USER, URL_SAFE_NO_PAD.encode(identity.sub.as_bytes()).as_str());
    }
    map.insert(async_nats::header::NATS_MESSAGE_ID, crate::protocol::token::new_jti().as_str());
    map
}

/// The headers of an RPC request: the publish's sender (without `Nats-Msg-Id`), `Telegraphy-Session`,
/// `Telegraphy-Info` when the token has an `info`, and `Telegraphy-Node`.
pub fn rpc_headers(identity: &Identity, client: &str, node: &str) -> HeaderMap {
    let mut map = HeaderMap::new();
    map.insert(headers::CLIENT, client);
    if !identity.sub.is_empty() {
        map.insert(headers::USER, URL_SAFE_NO_PAD.encode(identity.sub.as_bytes()).as_str());
    }
    map.insert(headers::SESSION, &*identity.session);
    if let Some(info) = &identity.info {
        // Serialising a JSON value cannot fail.
        let json = serde_json::to_vec(info).unwrap_or_default();
        map.insert(headers::INFO, URL_SAFE_NO_PAD.encode(json).as_str());
    }
    map.insert(headers::NODE, node);
    map
}

/// The `from` of a NATS message as receivers see it (`,"from":{..}`, [`frames::encode_from`]), decided once per
/// message: present exactly when it has a `Telegraphy-Client` header holding a client id; `user` is the decoded
/// `Telegraphy-User` (`""` when absent), and one that is not base64url of UTF-8 drops `from` entirely.
pub fn from_of(map: Option<&HeaderMap>) -> Option<String> {
    let map = map?;
    from_values(map.get(headers::CLIENT)?.as_str(), map.get(headers::USER).map(|v| v.as_str()))
}

/// [`from_of`] for the values of the `Telegraphy-Client` and `Telegraphy-User` headers.
pub fn from_values(client: &str, user: Option<&str>) -> Option<String> {
    if !is_client_id(client) {
        return None;
    }
    let user = match user {
        None => String::new(),
        Some(value) => String::from_utf8(URL_SAFE_NO_PAD.decode(value).ok()?).ok()?,
    };
    Some(frames::encode_from(&user, client))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zoe(info: bool) -> Identity {
        Identity {
            sub: "zoë".into(),
            allow: vec![],
            session: "s-abc123".into(),
            auth_time: 0,
            info: info.then(|| serde_json::json!({"name": "Zoë"})),
            grants: None,
        }
    }

    #[test]
    fn headers_follow_the_vectors() {
        // proto/vectors/rpc.json "sender".
        let h = rpc_headers(&zoe(true), "zeWRwZWB0FcDVYYQ", "gw-1");
        assert_eq!(h.get("Telegraphy-User").unwrap().as_str(), "em_Dqw");
        assert_eq!(h.get("Telegraphy-Info").unwrap().as_str(), "eyJuYW1lIjoiWm_DqyJ9");
        assert_eq!(h.get("Telegraphy-Session").unwrap().as_str(), "s-abc123");
        assert_eq!(h.get("Telegraphy-Node").unwrap().as_str(), "gw-1");
        let mut anonymous = zoe(false);
        anonymous.sub = "".into();
        let h = rpc_headers(&anonymous, "zeWRwZWB0FcDVYYQ", "gw-1");
        assert!(h.get("Telegraphy-User").is_none() && h.get("Telegraphy-Info").is_none());
        let p = publish_headers(&zoe(true), "zeWRwZWB0FcDVYYQ");
        assert_eq!(p.get("Telegraphy-Client").unwrap().as_str(), "zeWRwZWB0FcDVYYQ");
        assert_eq!(p.get("Nats-Msg-Id").unwrap().as_str().len(), 32);
        assert!(p.get("Telegraphy-Session").is_none(), "the session never reaches other clients");
    }

    #[test]
    fn from_needs_a_client_id_and_a_decodable_user() {
        let mut h = HeaderMap::new();
        assert_eq!(from_of(Some(&h)), None);
        h.insert("Telegraphy-Client", "zeWRwZWB0FcDVYYQ");
        assert_eq!(from_of(Some(&h)).unwrap(), r#","from":{"user":"","client":"zeWRwZWB0FcDVYYQ"}"#);
        h.insert("Telegraphy-User", "em_Dqw");
        assert_eq!(from_of(Some(&h)).unwrap(), r#","from":{"user":"zoë","client":"zeWRwZWB0FcDVYYQ"}"#);
        h.insert("Telegraphy-User", "%%%");
        assert_eq!(from_of(Some(&h)), None);
        h.insert("Telegraphy-User", "_w"); // base64url of 0xff: not UTF-8
        assert_eq!(from_of(Some(&h)), None);
        let mut short = HeaderMap::new();
        short.insert("Telegraphy-Client", "abc");
        assert_eq!(from_of(Some(&short)), None);
        let mut quote = HeaderMap::new();
        quote.insert("Telegraphy-Client", "zeWRwZWB0FcDVYY\"");
        assert_eq!(from_of(Some(&quote)), None);
    }
}
