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
//! `None`. [`encode_event`] / [`encode_event_spanned`] are the hot path: one allocation each, `data`
//! copied verbatim. The `_spanned` encoders also return where the frame's history position sits in its text
//! ([`PositionSpan`]), so that nothing downstream parses a frame for it (the SSE `id:` line).
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
    fn spans_locate_the_position_the_encoders_write() {
        assert_eq!(std::mem::size_of::<Option<PositionSpan>>(), 8, "a span rides along every queued frame");
        let data = RawValue::from_string(r#"{"pk":1}"#.into()).unwrap();
        let from = encode_from("u", "c");
        let (text, span) = encode_event_spanned("a.>", "a.b", &data, Some(&from), Some((57, "18a6f")));
        assert_eq!(text, encode_event_full("a.>", "a.b", &data, Some(&from), Some((57, "18a6f"))));
        assert_eq!(span.and_then(|s| s.read(&text)), Some(("18a6f", 57)));
        let (text, span) = encode_position_spanned("a.>", "18a6f", 0);
        assert_eq!(text, encode_position("a.>", "18a6f", 0));
        assert_eq!(span.and_then(|s| s.read(&text)), Some(("18a6f", 0)));
        assert_eq!(encode_event_spanned("a", "a", &data, None, None).1, None, "no position, no span");
        // An epoch that could not stand unescaped in an SSE id line gets no span (nor did the tail parser read it).
        for epoch in ["", "a\nb", "a:b", "é", &"e".repeat(65)] {
            let (text, span) = encode_position_spanned("a", epoch, 1);
            assert_eq!(span, None, "{epoch:?}");
            assert_eq!(stream_position(&text), None, "{epoch:?}");
        }
        // A span read against another text gives what is there, or None: never a panic.
        let span = encode_position_spanned("a", "e", u64::MAX).1.unwrap();
        assert_eq!(span.read("{}"), None);
    }

    /// A JSON value of any shape, with strings that imitate a position tail.
    fn arbitrary_json() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let text = prop_oneof![
            ".{0,12}",
            Just(r#","seq":5,"epoch":"ab""#.to_string()),
            Just(r#"","seq":5,"epoch":"ab"}"#.to_string()),
            Just("\n\r\"}".to_string()),
        ];
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            text.clone().prop_map(Value::from),
        ];
        leaf.prop_recursive(3, 24, 4, move |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
                proptest::collection::btree_map(text.clone(), inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 2000, ..Default::default() })]

        /// For any subscription, name, payload (compact or pretty), sender, epoch and seq, the span the encoders
        /// record reads back exactly what the tail parser ([`stream_position`]) reads from the frame's text, and
        /// it is the position encoded whenever the epoch can be an SSE id.
        #[test]
        fn spans_read_back_what_the_tail_parser_reads(
            sub in ".{0,16}",
            name in ".{0,16}",
            payload in arbitrary_json(),
            pretty in proptest::prelude::any::<bool>(),
            from in proptest::option::of((".{0,8}", ".{0,8}")),
            epoch in proptest::prop_oneof!["[0-9a-zA-Z]{1,64}", ".{0,66}", "[0-9a-f]{1,16}[\":,}]"],
            seq in proptest::prelude::any::<u64>(),
            positioned in proptest::prelude::any::<bool>(),
        ) {
            let json = if pretty { serde_json::to_string_pretty(&payload) } else { serde_json::to_string(&payload) };
            let data = RawValue::from_string(json.unwrap()).unwrap();
            let from = from.map(|(user, client)| encode_from(&user, &client));
            let position = positioned.then_some((seq, epoch.as_str()));
            let plain = valid_epoch(&epoch) && epoch.bytes().all(|b| b.is_ascii_alphanumeric());
            let want = (positioned && plain).then_some((epoch.as_str(), seq));

            let (text, span) = encode_event_spanned(&sub, &name, &data, from.as_deref(), position);
            let read = span.and_then(|s| s.read(&text));
            proptest::prop_assert_eq!(read, stream_position(&text), "{}", text);
            proptest::prop_assert_eq!(read, want, "{}", text);

            let (text, span) = encode_position_spanned(&sub, &epoch, seq);
            let read = span.and_then(|s| s.read(&text));
            proptest::prop_assert_eq!(read, stream_position(&text), "{}", text);
            proptest::prop_assert_eq!(read, plain.then_some((epoch.as_str(), seq)), "{}", text);
        }
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
