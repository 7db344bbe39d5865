//! proto/constants.json (PROTOCOL.md section 9) against the gateway's constants and defaults: each
//! value the file holds is the one the Rust code uses, and each gateway configuration key it names
//! is the key that sets that value.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use telegraphy::config::{Settings, REVOCATIONS_BUCKET_MAX_AGE, TOKENS_BUCKET_MAX_AGE};
use telegraphy::protocol::filter::{FilterLimits, LOOKUPS, REGEX_SIZE_LIMIT};
use telegraphy::protocol::frames::{self, close, ErrorCode};
use telegraphy::protocol::token::{self, TokenKind};
use telegraphy::{node::auth, protocol::names};

fn constants() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("proto").join("constants.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn int(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("expected an unsigned integer, got {v}"))
}

fn text(v: &Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("expected a string, got {v}"))
}

/// The gateway's settings with `env` (and nothing from the process environment).
fn settings(env: &[(&str, &str)]) -> Settings {
    let env: HashMap<String, String> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    Settings::load_from(None, Some(env)).expect("settings")
}

/// `limits.max_filter_conditions` -> `TELEGRAPHY_LIMITS__MAX_FILTER_CONDITIONS`.
fn env_name(setting: &str) -> String {
    format!("TELEGRAPHY_{}", setting.to_uppercase().replace('.', "__"))
}

/// The characters of a class such as `A-Za-z0-9_-` (ranges `x-y`; a `-` at the end is itself).
fn class_chars(class: &str) -> Vec<char> {
    let c: Vec<char> = class.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < c.len() {
        if i + 2 < c.len() && c[i + 1] == '-' {
            out.extend(c[i]..=c[i + 2]);
            i += 3;
        } else {
            out.push(c[i]);
            i += 1;
        }
    }
    out
}

#[test]
fn names_match() {
    let n = &constants()["names"];
    assert_eq!(int(&n["max_tokens"]) as usize, names::MAX_TOKENS);
    assert_eq!(int(&n["max_bytes"]) as usize, names::MAX_NAME_BYTES);
    assert_eq!(int(&n["max_plain_key_chars"]) as usize, names::MAX_PLAIN_KEY);
    let allowed = class_chars(text(&n["token_chars"]));
    for c in (0x20u8..0x7f).map(char::from) {
        assert_eq!(names::is_literal_token(&c.to_string()), allowed.contains(&c), "token character {c:?}");
    }
    let single = text(&n["single_wildcard"]);
    let tail = text(&n["tail_wildcard"]);
    assert!(names::validate_pattern(&format!("a.{single}.b")).is_ok());
    assert!(names::validate_pattern(&format!("a.{tail}")).is_ok());
    assert!(names::validate_pattern(&format!("a.{tail}.b")).is_err(), "the tail wildcard is last only");
}

#[test]
fn sub_names_match() {
    let s = &constants()["sub_names"];
    let (min, max) = (int(&s["min_chars"]) as usize, int(&s["max_chars"]) as usize);
    assert!(!frames::valid_sub_name(&"a".repeat(min - 1)));
    assert!(frames::valid_sub_name(&"a".repeat(min)));
    assert!(frames::valid_sub_name(&"a".repeat(max)));
    assert!(!frames::valid_sub_name(&"a".repeat(max + 1)));
    let allowed = class_chars(text(&s["chars"]));
    for c in (0x20u8..0x7f).map(char::from) {
        assert_eq!(frames::valid_sub_name(&c.to_string()), allowed.contains(&c), "sub name character {c:?}");
    }
}

#[test]
fn filter_lookups_and_limits_match() {
    let f = &constants()["filters"];
    let lookups: Vec<&str> = f["lookups"].as_array().unwrap().iter().map(text).collect();
    assert_eq!(lookups, LOOKUPS, "same lookups in the same (PROTOCOL.md) order");
    assert_eq!(text(&f["default_lookup"]), "exact");

    let limits = &f["limits"];
    let default = |key: &str| int(&limits[key]["default"]) as usize;
    let ours = FilterLimits::default();
    let expected = FilterLimits {
        max_conditions: default("max_conditions"),
        max_bytes: default("max_bytes"),
        max_regex_bytes: default("max_regex_bytes"),
        max_in_values: default("max_in_values"),
        max_regex_conditions: default("max_regex_conditions"),
    };
    assert_eq!(ours, expected);
    assert_eq!(default("max_regex_program_bytes"), REGEX_SIZE_LIMIT);
    let mut keys: Vec<&str> = limits.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort_unstable();
    let known = [
        "max_bytes",
        "max_conditions",
        "max_in_values",
        "max_regex_bytes",
        "max_regex_conditions",
        "max_regex_program_bytes",
    ];
    assert_eq!(keys, known, "every limit is checked here");

    // The configurable ones: the gateway's defaults are the protocol's, and the named key sets them.
    let defaults = settings(&[]);
    assert_eq!(defaults.limits.max_filter_conditions, default("max_conditions"));
    assert_eq!(defaults.limits.max_regex_conditions, default("max_regex_conditions"));
    for (key, read) in [
        ("max_conditions", (|s: &Settings| s.limits.max_filter_conditions) as fn(&Settings) -> usize),
        ("max_regex_conditions", |s: &Settings| s.limits.max_regex_conditions),
    ] {
        let setting = text(&limits[key]["gateway_setting"]);
        let changed = settings(&[(&env_name(setting), "3")]);
        assert_eq!(read(&changed), 3, "{setting} sets {key}");
    }
    for (key, limit) in limits.as_object().unwrap() {
        if !["max_conditions", "max_regex_conditions"].contains(&key.as_str()) {
            assert!(limit.get("gateway_setting").is_none(), "{key} is fixed in the gateway");
        }
    }
}

#[test]
fn event_limit_matches() {
    let limit = &constants()["limits"]["max_event_bytes"];
    let defaults = settings(&[]);
    assert_eq!(int(&limit["default"]) as usize, defaults.limits.max_event_bytes);
    assert_eq!(int(&limit["default"]) as usize, telegraphy::protocol::constants::limits::MAX_EVENT_BYTES);
    let setting = text(&limit["gateway_setting"]);
    let changed = settings(&[(&env_name(setting), "2048")]);
    assert_eq!(changed.limits.max_event_bytes, 2048, "{setting} sets max_event_bytes");
}

#[test]
fn tokens_match() {
    let t = &constants()["tokens"];
    assert_eq!(text(&t["connect_prefix"]), TokenKind::Connect.prefix());
    assert_eq!(text(&t["resume_prefix"]), TokenKind::Resume.prefix());
    assert_eq!(int(&t["max_bytes"]) as usize, token::MAX_TOKEN_BYTES);
    assert_eq!(int(&t["max_allow"]) as usize, token::MAX_ALLOW);
    assert_eq!(int(&t["jti_hex_chars"]) as usize, token::new_jti().len());
    assert_eq!(int(&t["clock_skew"]) as i64, token::CLOCK_SKEW);
    assert_eq!(int(&t["min_secret_bytes"]) as usize, token::MIN_SECRET_BYTES);
    assert_eq!(int(&t["max_info_bytes"]) as usize, token::MAX_INFO_BYTES);
    let max_ttl = int(&t["max_ttl"]);
    assert_eq!(max_ttl, TOKENS_BUCKET_MAX_AGE.as_secs(), "the longest TTL is the tokens bucket's max_age");
    assert!(auth::check_mint_request("u", &[], max_ttl).is_ok());
    assert!(auth::check_mint_request("u", &[], max_ttl + 1).is_err());
}

#[test]
fn buckets_match() {
    let b = &constants()["buckets"];
    assert_eq!(int(&b["tokens"]["max_age"]), TOKENS_BUCKET_MAX_AGE.as_secs());
    assert_eq!(int(&b["revocations"]["max_age"]), REVOCATIONS_BUCKET_MAX_AGE.as_secs());
    let defaults = settings(&[]);
    assert_eq!(text(&b["tokens"]["name"]), defaults.auth.tokens_bucket);
    assert_eq!(text(&b["revocations"]["name"]), defaults.auth.revocations_bucket);
    let changed = settings(&[
        (&env_name(text(&b["tokens"]["gateway_setting"])), "t2"),
        (&env_name(text(&b["revocations"]["gateway_setting"])), "r2"),
    ]);
    assert_eq!((changed.auth.tokens_bucket.as_str(), changed.auth.revocations_bucket.as_str()), ("t2", "r2"));
}

#[test]
fn presence_matches() {
    let p = &constants()["presence"];
    let defaults = settings(&[]);
    assert_eq!(text(&p["bucket"]["name"]), defaults.presence.bucket);
    let changed = settings(&[(&env_name(text(&p["bucket"]["gateway_setting"])), "p2")]);
    assert_eq!(changed.presence.bucket, "p2");
    let refresh = Duration::from_secs(defaults.presence.refresh_interval);
    assert_eq!(defaults.presence.ttl(), refresh * int(&p["ttl_refresh_intervals"]) as u32);
    assert_eq!(u64::from(telegraphy::session::SNAPSHOT_COST), int(&p["snapshot_cost"]));
    assert_eq!(telegraphy::presence_client_id("any session").len() as u64, int(&p["client_id_chars"]));
}

#[test]
fn catalog_matches() {
    let c = &constants()["catalog"];
    let defaults = settings(&[]);
    assert_eq!(text(&c["bucket"]["name"]), defaults.catalog.bucket);
    assert_eq!(settings(&[(&env_name(text(&c["bucket"]["gateway_setting"])), "c2")]).catalog.bucket, "c2");
    assert_eq!(text(&c["mode"]["default"]), defaults.catalog.mode);
    assert_eq!(settings(&[(&env_name(text(&c["mode"]["gateway_setting"])), "strict")]).catalog.mode, "strict");
    for mode in c["modes"].as_array().unwrap() {
        assert_eq!(telegraphy::node::catalog::Mode::parse(text(mode)).map(|m| m.as_str()), Some(text(mode)));
    }
    assert_eq!(int(&c["max_entries"]["default"]), defaults.catalog.max_entries as u64);
    assert_eq!(int(&c["max_reply_bytes"]["default"]), defaults.catalog.max_reply_bytes as u64);
    assert_eq!(int(&c["max_entry_bytes"]), telegraphy::node::catalog::MAX_ENTRY_BYTES as u64);
    // One value past the bound is refused before it is parsed; the entry format is the one the reader takes.
    let big = vec![b' '; telegraphy::node::catalog::MAX_ENTRY_BYTES + 1];
    assert_eq!(telegraphy::node::catalog::parse("o.a", &big).unwrap_err().reason(), "too_big");
    assert_eq!(int(&c["format"]), telegraphy::protocol::constants::catalog::FORMAT as u64);
}

/// Every error code, by a match that stops compiling when a variant is added.
fn error_codes() -> Vec<ErrorCode> {
    use ErrorCode::*;
    let all = vec![
        BadRequest,
        Unauthorized,
        Forbidden,
        NotConnected,
        LimitExceeded,
        Internal,
        Unavailable,
        Timeout,
        UnknownEvent,
    ];
    for code in &all {
        match code {
            BadRequest | Unauthorized | Forbidden | NotConnected | LimitExceeded | Internal | Unavailable | Timeout
            | UnknownEvent => {}
        }
    }
    all
}

#[test]
fn error_codes_match() {
    let constants = constants();
    let listed: Vec<&str> = constants["error_codes"].as_array().unwrap().iter().map(text).collect();
    let ours: Vec<&str> = error_codes().iter().map(|c| c.as_str()).collect();
    assert_eq!(listed, ours);
}

#[test]
fn close_codes_match() {
    let listed: BTreeMap<String, u64> = constants()["close_codes"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(name, c)| (name.clone(), int(&c["code"])))
        .collect();
    let ours: BTreeMap<String, u64> = [
        ("normal", close::NORMAL),
        ("protocol_violation", close::PROTOCOL),
        ("frame_too_big", close::TOO_BIG),
        ("restart", close::RESTART),
        ("try_again_later", close::TRY_AGAIN_LATER),
        ("unauthorized", close::UNAUTHORIZED),
        ("forbidden", close::FORBIDDEN),
        ("too_slow", close::TOO_SLOW),
        ("rate_limited", close::RATE_LIMITED),
    ]
    .into_iter()
    .map(|(name, code)| (name.to_string(), u64::from(code)))
    .collect();
    assert_eq!(listed, ours);
}
