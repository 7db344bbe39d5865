//! Every case of every file in proto/vectors/ (the shared contract of PROTOCOL.md), checked
//! against the Rust modules. A vector file this test does not know fails the test, so new
//! vectors cannot be skipped silently.

use std::path::{Path, PathBuf};

use serde_json::value::RawValue;
use serde_json::{json, Value};
use telegraphy::protocol::frames::{self, ClientFrame, ErrorCode};
use telegraphy::protocol::token::{Claims, Keyring, TokenKind};
use telegraphy::{node::catalog, protocol::names, protocol::token, secret};

fn vectors_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("proto").join("vectors")
}

fn load(name: &str) -> Value {
    let path = vectors_dir().join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn arr<'a>(v: &'a Value, key: &str) -> &'a Vec<Value> {
    v[key].as_array().unwrap_or_else(|| panic!("vector field {key:?} must be an array"))
}

fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or_else(|| panic!("vector field {key:?} must be a string in {v}"))
}

fn opt_id(v: &Value) -> Option<u64> {
    v.get("id").map(|id| id.as_u64().expect("vector id must be an unsigned integer"))
}

/// Runs `check` on every case and returns how many there were.
fn each(cases: &[Value], mut check: impl FnMut(&Value)) -> usize {
    cases.iter().for_each(&mut check);
    cases.len()
}

fn check_names() -> usize {
    let v = load("names.json");
    let mut n = 0;
    n += each(arr(&v, "valid_names"), |c| {
        let name = c.as_str().unwrap();
        assert_eq!(names::validate_name(name), Ok(()), "valid name {name:?}");
        assert_eq!(names::validate_pattern(name), Ok(()), "a name is a pattern: {name:?}");
    });
    n += each(arr(&v, "invalid_names"), |c| {
        let name = c.as_str().unwrap();
        assert!(names::validate_name(name).is_err(), "invalid name accepted: {name:?}");
    });
    n += each(arr(&v, "valid_patterns"), |c| {
        let p = c.as_str().unwrap();
        assert_eq!(names::validate_pattern(p), Ok(()), "valid pattern {p:?}");
    });
    n += each(arr(&v, "invalid_patterns"), |c| {
        let p = c.as_str().unwrap();
        assert!(names::validate_pattern(p).is_err(), "invalid pattern accepted: {p:?}");
    });
    n
}

fn check_match() -> usize {
    let v = load("match.json");
    each(arr(&v, "cases"), |c| {
        let (p, name) = (s(c, "pattern"), s(c, "name"));
        assert_eq!(names::validate_pattern(p), Ok(()), "vector pattern must be valid: {p:?}");
        assert_eq!(names::validate_name(name), Ok(()), "vector name must be valid: {name:?}");
        assert_eq!(names::matches(p, name), c["match"].as_bool().unwrap(), "matches({p:?}, {name:?})");
    })
}

fn check_contains() -> usize {
    let v = load("contains.json");
    each(arr(&v, "cases"), |c| {
        let (outer, inner) = (s(c, "outer"), s(c, "inner"));
        assert_eq!(names::validate_pattern(outer), Ok(()));
        assert_eq!(names::validate_pattern(inner), Ok(()));
        assert_eq!(names::contains(outer, inner), c["contains"].as_bool().unwrap(), "contains({outer:?}, {inner:?})");
    })
}

fn check_keys() -> usize {
    let v = load("keys.json");
    each(arr(&v, "cases"), |c| {
        let (key, token) = (s(c, "key"), s(c, "token"));
        assert_eq!(names::key_token(key), token, "key_token({key:?})");
        assert_eq!(names::validate_name(token), Ok(()), "key token must be a valid name token: {token:?}");
    })
}

/// The canonical JSON form of a parsed frame, as written in `vectors/frames.json`.
fn frame_to_json(f: &ClientFrame) -> Value {
    let mut obj = serde_json::Map::new();
    let mut put = |k: &str, v: Option<Value>| {
        if let Some(v) = v {
            obj.insert(k.to_owned(), v);
        }
    };
    let (kind, id) = match f {
        ClientFrame::Connect { id, token, resume } => {
            put("token", token.clone().map(Value::from));
            put("resume", resume.clone().map(Value::from));
            ("connect", *id)
        }
        ClientFrame::Subscribe { id, event, since, sub, filter, exclude, presence } => {
            put("event", Some(event.clone().into()));
            put("presence", presence.then_some(Value::Bool(true)));
            put("since", since.as_ref().map(|s| serde_json::json!({"epoch": s.epoch, "seq": s.seq})));
            put("sub", sub.clone().map(Value::from));
            put("filter", filter.clone());
            put("exclude", exclude.clone());
            ("subscribe", *id)
        }
        ClientFrame::Unsubscribe { id, event, sub } => {
            put("event", event.clone().map(Value::from));
            put("sub", sub.clone().map(Value::from));
            ("unsubscribe", *id)
        }
        ClientFrame::Presence { id, event, stats } => {
            put("event", Some(event.clone().into()));
            (if *stats { "presence_stats" } else { "presence" }, *id)
        }
        ClientFrame::Events { id, event } => {
            put("event", event.clone().map(Value::from));
            ("events", *id)
        }
        ClientFrame::Publish { id, event, data } => {
            put("event", Some(event.clone().into()));
            put("data", Some(serde_json::from_str(data).unwrap()));
            ("publish", *id)
        }
        ClientFrame::Rpc { id, method, data } => {
            put("method", Some(method.clone().into()));
            put("data", Some(serde_json::from_str(data).unwrap()));
            ("rpc", Some(*id))
        }
        ClientFrame::Ping { id } => ("ping", *id),
        ClientFrame::Pong => ("pong", None),
    };
    put("type", Some(kind.into()));
    put("id", id.map(Value::from));
    Value::Object(obj)
}

fn error_code(name: &str) -> ErrorCode {
    use ErrorCode::*;
    [BadRequest, Unauthorized, Forbidden, NotConnected, LimitExceeded, Internal, UnknownEvent]
        .into_iter()
        .find(|c| c.as_str() == name)
        .unwrap_or_else(|| panic!("unknown error code {name:?}"))
}

/// A presence member of a vector: `client`, `user` and `info` (the JSON text of the info object).
fn member(c: &Value) -> String {
    frames::encode_presence_member(s(c, "client"), s(c, "user"), c.get("info").map(|i| i.as_str().unwrap()))
}

fn encode_server(c: &Value) -> String {
    let id = opt_id(c);
    match s(c, "frame") {
        "ping" => frames::encode_ping(),
        "pong" => frames::encode_pong(id),
        "subscribed" => {
            let position = c.get("epoch").map(|e| (e.as_str().unwrap(), c["seq"].as_u64().unwrap()));
            let at = frames::SubscribedAt {
                recovered: c.get("recovered").map(|r| r.as_bool().unwrap()),
                position,
                sub: c.get("sub").map(|v| v.as_str().unwrap()),
            };
            frames::encode_subscribed_at(id, s(c, "event"), &at)
        }
        "unsubscribed" => {
            frames::encode_unsubscribed_named(id, s(c, "event"), c.get("sub").map(|v| v.as_str().unwrap()))
        }
        "event" => {
            let data = RawValue::from_string(s(c, "data").to_owned()).expect("vector data must be JSON");
            match c.get("seq") {
                None => frames::encode_event(s(c, "sub"), s(c, "name"), &data),
                Some(seq) => {
                    frames::encode_event_at(s(c, "sub"), s(c, "name"), &data, seq.as_u64().unwrap(), s(c, "epoch"))
                }
            }
        }
        "error" => frames::encode_error(id, error_code(s(c, "code")), s(c, "message")),
        "connected" => {
            let resume = c.get("resume").map(|r| (r.as_str().unwrap(), c["resume_expires_in"].as_u64().unwrap()));
            frames::encode_connected(id, s(c, "session"), s(c, "node"), c["heartbeat"].as_u64().unwrap(), resume)
        }
        "position" => frames::encode_position(s(c, "sub"), s(c, "epoch"), c["seq"].as_u64().unwrap()),
        "join" => frames::encode_join(s(c, "sub"), &member(c)),
        "leave" => frames::encode_leave(s(c, "sub"), &member(c)),
        "presence_paused" => frames::encode_presence_paused(s(c, "sub"), c["clients"].as_u64().unwrap() as usize),
        "presence_resumed" => frames::encode_presence_resumed(s(c, "sub"), c["clients"].as_u64().unwrap() as usize),
        "presence" => {
            let members: Vec<String> = c["clients"].as_array().unwrap().iter().map(member).collect();
            frames::encode_presence(id, s(c, "event"), members.iter().map(String::as_str), c["truncated"] == true)
        }
        "presence_stats" => frames::encode_presence_stats(
            id,
            s(c, "event"),
            c["clients"].as_u64().unwrap() as usize,
            c["users"].as_u64().unwrap() as usize,
        ),
        other => panic!("server frame kind {other:?} has no encoder in this test"),
    }
}

fn check_frames() -> usize {
    let v = load("frames.json");
    let mut n = each(arr(&v, "client"), |c| {
        let text = s(c, "text");
        match (c.get("frame"), c.get("error")) {
            (Some(expected), None) => {
                let frame =
                    frames::parse_client_frame(text).unwrap_or_else(|e| panic!("{text:?} rejected: {}", e.message));
                assert_eq!(&frame_to_json(&frame), expected, "parse of {text:?}");
            }
            (None, Some(code)) => {
                assert_eq!(code, "bad_request", "client decode errors are bad_request");
                let err = frames::parse_client_frame(text).expect_err(text);
                assert!(!err.message.is_empty() && err.message.len() <= 80, "short message for {text:?}");
                let reply: Value = serde_json::from_str(&err.encode()).unwrap();
                assert_eq!(reply["code"], "bad_request");
            }
            _ => panic!("client case needs exactly one of frame/error: {c}"),
        }
    });
    n += each(arr(&v, "server"), |c| {
        let text = encode_server(c);
        assert_eq!(text, s(c, "text"), "encoding of {c}");
        // The encoding is also the JSON the vector describes.
        let parsed: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(parsed["type"], json!(s(c, "frame")));
    });
    n
}

fn check_tokens() -> usize {
    let v = load("tokens.json");
    let secret = s(&v, "secret").to_owned();
    let secret2 = s(&v, "secret2").to_owned();
    let now = v["now"].as_i64().unwrap();
    let first = Keyring::new(std::slice::from_ref(&secret)).unwrap();
    let second = Keyring::new(std::slice::from_ref(&secret2)).unwrap();
    let both = Keyring::new(&[secret.clone(), secret2.clone()]).unwrap();
    let check_valid = |c: &Value| {
        let what = s(c, "what");
        let kind = match s(c, "prefix") {
            "tg1" => TokenKind::Connect,
            "tg1r" => TokenKind::Resume,
            p => panic!("unknown prefix {p:?}"),
        };
        let claims: Claims = serde_json::from_value(c["claims"].clone()).unwrap();
        let token = s(c, "token");
        let signer = if what.contains("rotated") { &second } else { &first };
        assert_eq!(signer.sign(kind, &claims), token, "minting {what:?}");
        let (got_kind, got) = both.verify(token, now).unwrap_or_else(|e| panic!("{what:?}: {e}"));
        assert_eq!(got_kind, kind, "{what:?}");
        assert_eq!(got, claims, "{what:?}");
        // Claims serialise back to the vector's JSON (same fields, sid only when present).
        assert_eq!(serde_json::to_value(&got).unwrap(), c["claims"], "{what:?}");
    };
    let check_invalid = |c: &Value| {
        let what = s(c, "what");
        let err = both.verify(s(c, "token"), now).expect_err(what);
        assert_eq!(err.category(), s(c, "error"), "{what:?}: got {err}");
    };
    let mut n = each(arr(&v, "valid"), &check_valid);
    n += each(arr(&v, "invalid"), &check_invalid);
    // Section 13: the action grants (publish, publish_ephemeral, rpc).
    n += each(arr(&v, "valid_grants"), &check_valid);
    n += each(arr(&v, "invalid_grants"), &check_invalid);
    n
}

/// proto/vectors/rpc.json (sections 13-15): client frames, grants, RPC subjects/payloads/headers, reply
/// envelopes, the `from` of event frames. (Lifecycle payloads: see the lifecycle case below.)
fn check_rpc() -> usize {
    use telegraphy::node::auth::Identity;
    use telegraphy::protocol::constants::actions::{limits, RPC_SUFFIX};
    use telegraphy::protocol::sender;
    use telegraphy::protocol::token::{Grants, PublishKind};
    let v = load("rpc.json");
    let prefix = s(&v, "prefix");
    // The sender: client id, headers.
    let who = &v["sender"];
    assert_eq!(telegraphy::presence_client_id(s(who, "session")), s(who, "client"));
    let identity = |sub: &str| Identity {
        sub: sub.into(),
        allow: vec![],
        session: s(who, "session").into(),
        auth_time: 0,
        info: (!sub.is_empty()).then(|| who["info"].clone()),
        grants: None,
    };
    let headers_json = |h: &async_nats::HeaderMap| -> Value {
        let mut out = serde_json::Map::new();
        for (name, values) in h.iter() {
            out.insert(name.to_string(), Value::String(values[0].as_str().to_string()));
        }
        Value::Object(out)
    };
    let node = s(&v, "node");
    assert_eq!(headers_json(&sender::rpc_headers(&identity(s(who, "sub")), s(who, "client"), node)), who["headers"]);
    assert_eq!(headers_json(&sender::rpc_headers(&identity(""), s(who, "client"), node)), who["anonymous_headers"]);
    let mut n = 2;
    n += each(arr(&v, "client_frames"), |c| {
        let what = s(c, "what");
        let text = c["frame"].to_string();
        let parsed = frames::parse_client_frame(&text);
        if c["ok"] == json!(true) {
            assert!(parsed.is_ok(), "{what}: {parsed:?}");
        } else if c["bad_frame"] == json!(true) {
            assert_eq!(s(c, "error"), "bad_request");
            assert!(parsed.is_err(), "{what}");
        } else {
            // Refused by a limit with the default settings: parses, and its data is over the limit.
            let data = match parsed.unwrap_or_else(|e| panic!("{what}: {e}")) {
                ClientFrame::Publish { data, .. } => {
                    assert_eq!(s(c, "limit"), "client_publish.max_bytes");
                    assert!(data.len() > limits::PUBLISH_MAX_BYTES, "{what}");
                    data
                }
                ClientFrame::Rpc { data, .. } => {
                    assert_eq!(s(c, "limit"), "rpc.max_request_bytes");
                    assert!(data.len() > limits::RPC_MAX_REQUEST_BYTES, "{what}");
                    data
                }
                other => panic!("{what}: {other:?}"),
            };
            assert_eq!(s(c, "error"), "limit_exceeded", "{what}: {}", data.len());
        }
    });
    let strings = |c: &Value, key: &str| -> Vec<String> {
        c.get(key).and_then(Value::as_array).map_or(vec![], |a| a.iter().map(|p| p.as_str().unwrap().into()).collect())
    };
    n += each(arr(&v, "grants"), |c| {
        let what = s(c, "what");
        let grants = Grants {
            publish: strings(c, "publish"),
            publish_ephemeral: strings(c, "publish_ephemeral"),
            rpc: strings(c, "rpc"),
        };
        let got = match (c.get("event"), c.get("method")) {
            (Some(event), _) => match grants.publish_kind(event.as_str().unwrap()) {
                Some(PublishKind::Ephemeral) => "ephemeral",
                Some(PublishKind::Stored) => "stored",
                None => "forbidden",
            },
            (_, Some(method)) => {
                if grants.may_call(method.as_str().unwrap()) {
                    "allowed"
                } else {
                    "forbidden"
                }
            }
            _ => panic!("{what}: neither event nor method"),
        };
        assert_eq!(got, s(c, "result"), "{what}");
    });
    n += each(arr(&v, "rpc_requests"), |c| {
        let what = s(c, "what");
        let Ok(ClientFrame::Rpc { method, data, .. }) = frames::parse_client_frame(s(c, "frame")) else {
            panic!("{what}: not an rpc frame")
        };
        let prefix = c.get("prefix").and_then(Value::as_str).unwrap_or(prefix);
        assert_eq!(format!("{prefix}{RPC_SUFFIX}.{method}"), s(c, "subject"), "{what}");
        assert_eq!(data, s(c, "payload"), "{what}");
    });
    n += each(arr(&v, "rpc_replies"), |c| {
        let what = s(c, "what");
        let frame = match (c["reply"].as_str(), c.get("nats").and_then(Value::as_str)) {
            (Some(reply), _) => frames::encode_rpc_reply(7, reply.as_bytes())
                .map(|(f, _)| f)
                .unwrap_or_else(|| frames::encode_error(Some(7), ErrorCode::Internal, "bad rpc reply")),
            (None, Some("no_responders")) => {
                frames::encode_error(Some(7), ErrorCode::Unavailable, "no worker for this method")
            }
            (None, Some("timeout")) => frames::encode_error(Some(7), ErrorCode::Timeout, "rpc timed out"),
            other => panic!("{what}: {other:?}"),
        };
        assert_eq!(frame, s(c, "frame"), "{what}");
    });
    n += each(arr(&v, "publish"), |c| {
        let what = s(c, "what");
        let (headers, payload) = match c.get("frame") {
            Some(frame) => {
                let Ok(ClientFrame::Publish { id, data, .. }) = frames::parse_client_frame(s(c, "frame")) else {
                    panic!("{what}: not a publish frame")
                };
                let ident = identity(if c["headers"].get("Telegraphy-User").is_some() { s(who, "sub") } else { "" });
                let sent = sender::publish_headers(&ident, s(who, "client"));
                let mut h = headers_json(&sent);
                assert_eq!(
                    h.as_object_mut().unwrap().remove("Nats-Msg-Id").map(|m| m.as_str().unwrap().len()),
                    Some(32)
                );
                assert_eq!(h, c["headers"], "{what}");
                assert_eq!(frames::encode_published(id), s(c, "reply"), "{what}");
                assert_eq!(data, s(c, "payload"), "{what}");
                let _ = frame;
                (c["headers"].clone(), data)
            }
            None => (c["nats_headers"].clone(), s(c, "payload").to_string()),
        };
        let from = sender::from_values(
            headers["Telegraphy-Client"].as_str().unwrap(),
            headers.get("Telegraphy-User").and_then(Value::as_str),
        );
        let name = c.get("subject").map_or_else(
            || {
                frames::parse_client_frame(s(c, "frame"))
                    .map(|f| match f {
                        ClientFrame::Publish { event, .. } => event,
                        _ => unreachable!(),
                    })
                    .unwrap()
            },
            |subject| subject.as_str().unwrap().strip_prefix(&format!("{prefix}.")).unwrap().to_string(),
        );
        let data = RawValue::from_string(payload).unwrap();
        let frame = frames::encode_event_full(s(c, "sub"), &name, &data, from.as_deref(), None);
        assert_eq!(frame, s(c, "event_frame"), "{what}");
    });
    n
}

fn check_secrets() -> usize {
    let v = load("secrets.json");
    let words: Vec<&str> = arr(&v, "placeholder_words").iter().map(|w| w.as_str().unwrap()).collect();
    assert_eq!(words, secret::PLACEHOLDER_WORDS, "placeholder words");
    assert_eq!(v["min_bytes"], json!(token::MIN_SECRET_BYTES));
    assert_eq!(v["min_entropy_bits"].as_f64(), Some(secret::MIN_ENTROPY_BITS));
    let mut n = each(arr(&v, "accepted"), |c| {
        let s = c.as_str().unwrap();
        assert_eq!(secret::weakness(s), None, "accepted secret {s:?}");
    });
    n += each(arr(&v, "refused"), |c| {
        let got = secret::weakness(s(c, "secret")).map(|w| w.as_str());
        assert_eq!(got, Some(s(c, "why")), "refused secret {c}");
    });
    n
}

#[test]
fn every_vector_file_and_case_passes() {
    let mut files: Vec<String> = std::fs::read_dir(vectors_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|f| f.ends_with(".json"))
        .collect();
    files.sort();
    let mut total = 0;
    for file in &files {
        let count = match file.as_str() {
            "names.json" => check_names(),
            "match.json" => check_match(),
            "contains.json" => check_contains(),
            "keys.json" => check_keys(),
            "frames.json" => check_frames(),
            "tokens.json" => check_tokens(),
            "rpc.json" => check_rpc(),
            "secrets.json" => check_secrets(),
            "filters.json" => {
                eprintln!("filters.json: checked by tests/filters.rs");
                continue;
            }
            "sse.json" => {
                eprintln!("sse.json: checked by the sse module's unit tests (src/transports/sse.rs)");
                continue;
            }
            "catalog.json" => check_catalog(),
            other => panic!("proto/vectors/{other} is not checked by tests/vectors.rs"),
        };
        assert!(count > 0, "{file} has no cases");
        eprintln!("{file}: {count} cases");
        total += count;
    }
    assert!(files.len() >= 6, "expected the six vector files, found {files:?}");
    eprintln!("total: {total} cases");
}

// ---------- catalog.json (PROTOCOL.md section 12) ----------

/// A vector's KV value: the entry compactly encoded (its description first made `description_chars` x's), or
/// the raw `value` string.
fn catalog_value(case: &Value) -> Vec<u8> {
    if let Some(raw) = case.get("value") {
        return raw.as_str().expect("value is a string").as_bytes().to_vec();
    }
    let mut entry = case["entry"].clone();
    if let Some(chars) = case.get("description_chars") {
        entry["description"] = Value::String("x".repeat(chars.as_u64().unwrap() as usize));
    }
    serde_json::to_vec(&entry).unwrap()
}

/// A catalog of a vector's `entries` (key -> entry); every one must be valid.
fn catalog_of(entries: &Value) -> catalog::Catalog {
    let mut c = catalog::Catalog::new(10_000);
    for (key, entry) in entries.as_object().expect("entries is an object") {
        assert_eq!(c.put(key, &serde_json::to_vec(entry).unwrap()), catalog::Put::Stored, "{key}");
    }
    c
}

fn check_catalog() -> usize {
    let v = load("catalog.json");
    let c = &v["constants"];
    use telegraphy::protocol::constants::catalog as k;
    assert_eq!(c["bucket"]["name"], k::bucket::NAME);
    assert_eq!(c["format"], k::FORMAT);
    assert_eq!(c["max_entry_bytes"], k::MAX_ENTRY_BYTES);
    assert_eq!(c["max_patterns"], k::MAX_PATTERNS);
    assert_eq!(c["max_description_chars"], k::MAX_DESCRIPTION_CHARS);
    assert_eq!(c["mode"]["default"], k::MODE);
    assert_eq!(c["mode"]["values"], json!(k::MODES));
    for code in arr(c, "reserved_error_codes") {
        assert!(telegraphy::protocol::constants::error_codes::ALL.contains(&code.as_str().unwrap()), "{code}");
    }
    let mut n = each(arr(&v, "overlap"), |case| {
        let (a, b) = (s(case, "a"), s(case, "b"));
        let want = case["overlap"].as_bool().unwrap();
        assert_eq!(catalog::overlaps(a, b), want, "overlap {a} {b}");
        assert_eq!(catalog::overlaps(b, a), want, "overlap {b} {a} (symmetric)");
    });
    n += each(arr(&v, "keys"), |case| {
        let key = catalog::entry_key(s(case, "owner"), s(case, "name"));
        assert_eq!(key.as_deref(), case["key"].as_str(), "{case}");
    });
    let entries = &v["entries"];
    n += each(arr(entries, "valid"), |case| {
        let parsed = catalog::parse(s(case, "key"), &catalog_value(case));
        let entry = parsed.unwrap_or_else(|e| panic!("{case}: {e}")).expect("format 1");
        assert_eq!(&*entry.name, case["entry"]["name"].as_str().unwrap());
        let listed: Value = serde_json::from_str(&entry.listed).unwrap();
        let mut want = case["entry"].clone();
        let want = want.as_object_mut().unwrap();
        want.retain(|k, _| {
            ["name", "patterns", "kind", "operations", "description", "data", "presence", "version"]
                .contains(&k.as_str())
        });
        assert_eq!(listed, Value::Object(want.clone()), "listed form of {}", s(case, "key"));
    });
    n += each(arr(entries, "invalid"), |case| {
        let parsed = catalog::parse(s(case, "key"), &catalog_value(case));
        let reason = parsed.err().unwrap_or_else(|| panic!("accepted {case}")).reason();
        assert_eq!(reason, s(case, "reason"), "{case}");
    });
    n += each(arr(entries, "other_format"), |case| {
        assert_eq!(catalog::parse(s(case, "key"), &catalog_value(case)), Ok(None), "{case}");
    });
    n += each(arr(&v, "listing"), |case| {
        let cat = catalog_of(&case["entries"]);
        let allow: Vec<String> = arr(case, "allow").iter().map(|a| a.as_str().unwrap().to_string()).collect();
        let event = case["event"].as_str();
        let listed: Vec<&str> = cat.listing(&allow, event).map(|(key, _)| key).collect();
        assert_eq!(json!(listed), case["listed"], "{}", case["comment"]);
        // The frame lists the same entries, in that order, in their listed form.
        let frame: Value =
            serde_json::from_str(&cat.reply(Some(5), catalog::Mode::Open, &allow, event, 262_144)).unwrap();
        assert_eq!((&frame["type"], &frame["id"], &frame["truncated"]), (&json!("events"), &json!(5), &json!(false)));
        let names: Vec<&Value> = frame["events"].as_array().unwrap().iter().map(|e| &e["name"]).collect();
        let want: Vec<&Value> =
            arr(case, "listed").iter().map(|k| &case["entries"][k.as_str().unwrap()]["name"]).collect();
        assert_eq!(names, want);
    });
    n += each(arr(&v, "strict"), |case| {
        let cat = catalog_of(&case["entries"]);
        let known = cat.knows(s(case, "subscribe"));
        assert_eq!(if known { "subscribed" } else { "unknown_event" }, s(case, "result"), "{case}");
    });
    n
}
