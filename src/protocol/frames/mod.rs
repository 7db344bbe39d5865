//! WebSocket frames of protocol v1 (proto/PROTOCOL.md section 3): decoding client frames and
//! encoding server frames, error codes and close codes.
//!
//! Decoding rules ([`parse_client_frame`]):
//! * the text must be a JSON object with a string `type` among `connect`, `subscribe`,
//!   `unsubscribe`, `ping`, `pong`, `presence`, `presence_stats`, `events`, `publish`, `rpc`; anything else is a
//!   bad frame (`bad_request`);
//! * `id`, when present, must be an integer in 0 ..= 2^53-1 (`1.0`, `"1"`, `-1` and `null` are
//!   wrong types); it is read first so that the error for a bad frame can echo it;
//! * a present field of a known name with the wrong JSON type (including `null`) is a bad frame,
//!   except `since`, where `null` is the same as absent (as `vectors/frames.json` fixes);
//!   unknown fields are ignored (forward compatibility);
//! * `subscribe`/`unsubscribe` need `event`, a valid pattern (`names::validate_pattern`);
//!   `subscribe` may carry `since: {"epoch": string of 1..64 chars, "seq": integer 0..2^53-1}`
//!   to recover missed events (PROTOCOL.md section 7);
//! * `connect` takes at most one of `token` and `resume` (both strings); neither means anonymous.
//! * `subscribe` may carry `presence` (a boolean); `presence` and `presence_stats` need `event`, a valid
//!   pattern (PROTOCOL.md section 11).
//! * `publish` needs `event` and `rpc` needs `method`, each a valid name (no wildcards), and `rpc` an `id`;
//!   their `data` is kept as the bytes received (`null` when absent), sections 13.1 and 14.
//! * `events` may carry `event`, a valid pattern (PROTOCOL.md section 12).
//!
//! Encoders write compact JSON with the field order of the tables in PROTOCOL.md (sections 3 and 7)
//! and of `proto/vectors/frames.json` (`server` cases are byte-exact), omitting `id` when it is
//! `None`. [`encode_event`] / [`encode_event_at`] are the hot path: one allocation each, `data`
//! copied verbatim.
//! The JSON Schemas are `proto/schema/client-frame.schema.json` and `server-frame.schema.json`.

//!
//! The module is cut in three: `client` (decoding client frames), `server` (encoding server frames) and
//! `codes` (error and close codes); their items are re-exported here.

mod client;
mod codes;
mod server;

pub use client::*;
pub use codes::*;
pub use server::*;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{value::RawValue, Value};

    #[test]
    fn presence_frames() {
        let alice = encode_presence_member("c1", "alice", Some(r#"{"name":"Alice"}"#));
        assert_eq!(alice, r#"{"client":"c1","user":"alice","info":{"name":"Alice"}}"#);
        assert_eq!(
            encode_join("chat.lobby", &alice),
            r#"{"type":"join","sub":"chat.lobby","client":"c1","user":"alice","info":{"name":"Alice"}}"#
        );
        assert_eq!(
            encode_leave("lobby", &encode_presence_member("c1", "alice", None)),
            r#"{"type":"leave","sub":"lobby","client":"c1","user":"alice"}"#
        );
        assert_eq!(
            encode_presence(Some(5), "chat.lobby", [alice.as_str()].into_iter(), true),
            r#"{"type":"presence","id":5,"event":"chat.lobby","clients":[{"client":"c1","user":"alice","info":{"name":"Alice"}}],"truncated":true}"#
        );
        assert_eq!(
            encode_presence(None, "a", std::iter::empty(), false),
            r#"{"type":"presence","event":"a","clients":[],"truncated":false}"#
        );
        assert_eq!(
            encode_presence_stats(Some(6), "a", 3, 2),
            r#"{"type":"presence_stats","id":6,"event":"a","clients":3,"users":2}"#
        );
    }

    fn json(s: &str) -> Value {
        serde_json::from_str(s).expect("encoder output must be JSON")
    }

    #[test]
    fn stream_position_reads_the_tail_the_encoders_write() {
        let data = RawValue::from_string(r#"{"pk":1}"#.into()).unwrap();
        assert_eq!(stream_position(&encode_event_at("a.>", "a.b", &data, 57, "18a6f")), Some(("18a6f", 57)));
        assert_eq!(stream_position(&encode_position("a.>", "18a6f", 1234)), Some(("18a6f", 1234)));
        assert_eq!(stream_position(&encode_event("a.>", "a.b", &data)), None);
        assert_eq!(stream_position(&encode_pong(Some(1))), None);
        // Payloads that look like a position are not one.
        for payload in [r#"{"seq":5,"epoch":"ab"}"#, r#""x,\"seq\":5,\"epoch\":\"ab""#, r#"["seq",5]"#] {
            let data = RawValue::from_string(payload.into()).unwrap();
            assert_eq!(stream_position(&encode_event("a", "a", &data)), None, "{payload}");
        }
        let subscribed = encode_subscribed_at(
            Some(2),
            "a",
            &SubscribedAt { recovered: Some(true), position: Some(("18a6f", 41)), sub: None },
        );
        assert_eq!(stream_position(&subscribed), None, "only events and positions carry an SSE id");
    }

    #[test]
    fn connected_field_order_and_optional_resume() {
        assert_eq!(
            encode_connected(Some(1), "s-1", "gw-1", 25, Some(("tg1r.a.b", 900))),
            r#"{"type":"connected","id":1,"session":"s-1","node":"gw-1","heartbeat":25,"resume":"tg1r.a.b","resume_expires_in":900}"#
        );
        assert_eq!(
            encode_connected(None, "s", "n", 5, None),
            r#"{"type":"connected","session":"s","node":"n","heartbeat":5}"#
        );
    }

    #[test]
    fn strings_are_escaped() {
        let out = encode_error(None, ErrorCode::Internal, "a \"quoted\"\n\\ message\u{1}");
        assert_eq!(json(&out)["message"], "a \"quoted\"\n\\ message\u{1}");
        let out = encode_connected(None, "é\"", "n\t", 1, None);
        assert_eq!(json(&out)["session"], "é\"");
        assert_eq!(json(&out)["node"], "n\t");
    }

    #[test]
    fn event_embeds_data_verbatim() {
        let raw = RawValue::from_string("[1, 2.50, {\"x\" : null}]".into()).unwrap();
        let out = encode_event("a.>", "a.b", &raw);
        assert_eq!(out, r#"{"type":"event","sub":"a.>","name":"a.b","data":[1, 2.50, {"x" : null}]}"#);
    }

    #[test]
    fn history_positions_follow_the_base_frames() {
        let raw = RawValue::from_string("{\"pk\":1}".into()).unwrap();
        assert_eq!(
            encode_event_at("a.>", "a.b", &raw, 57, "18a6f"),
            r#"{"type":"event","sub":"a.>","name":"a.b","data":{"pk":1},"seq":57,"epoch":"18a6f"}"#
        );
        let at = SubscribedAt { recovered: Some(true), position: Some(("18a6f", 41)), sub: None };
        assert_eq!(
            encode_subscribed_at(Some(2), "shop.>", &at),
            r#"{"type":"subscribed","id":2,"event":"shop.>","recovered":true,"epoch":"18a6f","seq":41}"#
        );
        let at = SubscribedAt { recovered: Some(false), position: None, sub: None };
        assert_eq!(encode_subscribed_at(None, "a", &at), r#"{"type":"subscribed","event":"a","recovered":false}"#);
        let at = SubscribedAt { recovered: None, position: None, sub: None };
        assert_eq!(encode_subscribed_at(None, "a", &at), encode_subscribed(None, "a"));
    }

    #[test]
    fn since_is_checked() {
        let f = parse_client_frame(r#"{"type":"subscribe","event":"a","since":{"epoch":"e","seq":9007199254740991}}"#);
        assert_eq!(
            f.unwrap(),
            ClientFrame::Subscribe {
                id: None,
                event: "a".into(),
                since: Some(Since { epoch: "e".into(), seq: MAX_ID }),
                sub: None,
                filter: None,
                exclude: None,
                presence: false,
            }
        );
        for bad in [
            r#"{"type":"subscribe","event":"a","since":{"epoch":"e","seq":9007199254740992}}"#,
            r#"{"type":"subscribe","event":"a","since":{"epoch":"e","seq":1.0}}"#,
            r#"{"type":"subscribe","event":"a","since":{"epoch":7,"seq":1}}"#,
            r#"{"type":"subscribe","event":"a","since":[]}"#,
        ] {
            assert!(parse_client_frame(bad).is_err(), "{bad}");
        }
        let long = format!(r#"{{"type":"subscribe","event":"a","since":{{"epoch":"{}","seq":1}}}}"#, "e".repeat(65));
        assert!(parse_client_frame(&long).is_err());
    }

    #[test]
    fn unsubscribed_and_pong_without_id() {
        assert_eq!(encode_unsubscribed(None, "a"), r#"{"type":"unsubscribed","event":"a"}"#);
        assert_eq!(encode_pong(None), r#"{"type":"pong"}"#);
    }

    #[test]
    fn error_echoes_readable_id() {
        let err = parse_client_frame(r#"{"type":"nope","id":7}"#).unwrap_err();
        assert_eq!(err.id, Some(7));
        assert_eq!(json(&err.encode())["code"], "bad_request");
        assert_eq!(json(&err.encode())["id"], 7);
        let err = parse_client_frame(r#"{"type":"subscribe","id":7,"event":"a..b"}"#).unwrap_err();
        assert_eq!(err.id, Some(7));
        let err = parse_client_frame(r#"{"type":"subscribe","id":"7","event":"a"}"#).unwrap_err();
        assert_eq!(err.id, None);
    }

    #[test]
    fn connect_rejects_token_and_resume_together_and_nulls() {
        assert!(parse_client_frame(r#"{"type":"connect","token":"a","resume":"b"}"#).is_err());
        assert!(parse_client_frame(r#"{"type":"connect","token":null}"#).is_err());
        assert!(parse_client_frame(r#"{"type":"ping","id":null}"#).is_err());
        assert!(parse_client_frame(r#"{"type":"ping","id":1.0}"#).is_err());
    }

    #[test]
    fn error_messages_do_not_repeat_input() {
        for text in [r#"{"type":"secretX"}"#, r#"{"type":"subscribe","event":"secretX y"}"#, "secretX"] {
            let err = parse_client_frame(text).unwrap_err();
            assert!(!err.message.contains("secretX"), "{text}: {}", err.message);
        }
    }
}
