//! Property tests of the protocol modules: names/patterns (validation, matching against a
//! reference matcher, containment against brute-force semantics), key escaping, client frame
//! decoding and tokens.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use proptest::prelude::*;
use proptest::sample::select;
use serde_json::{json, Value};
use telegraphy::protocol::frames::{parse_client_frame, ClientFrame, Since, MAX_ID};
use telegraphy::protocol::names::{self, contains, key_token, matches, validate_name, validate_pattern, MAX_TOKENS};
use telegraphy::protocol::token::{Claims, Keyring, TokenKind};

// ---------- generators ----------

fn literal() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_-]{1,8}"
}

fn valid_name() -> impl Strategy<Value = String> {
    prop::collection::vec(literal(), 1..=MAX_TOKENS).prop_map(|t| t.join("."))
}

fn valid_pattern() -> impl Strategy<Value = String> {
    let token = prop_oneof![3 => literal(), 1 => Just("*".to_owned())];
    (prop::collection::vec(token, 1..=MAX_TOKENS), any::<bool>()).prop_map(|(mut t, full_wild)| {
        if full_wild {
            *t.last_mut().unwrap() = ">".to_owned();
        }
        t.join(".")
    })
}

/// Patterns over a tiny alphabet so that matches and containments are frequent.
fn small_pattern() -> impl Strategy<Value = Vec<&'static str>> {
    (prop::collection::vec(select(vec!["a", "b", "*"]), 1..=4), any::<bool>()).prop_map(|(mut t, full_wild)| {
        if full_wild {
            *t.last_mut().unwrap() = ">";
        }
        t
    })
}

fn small_name() -> impl Strategy<Value = Vec<&'static str>> {
    prop::collection::vec(select(vec!["a", "b", "c"]), 1..=6)
}

// ---------- references ----------

/// Reference matcher written straight from PROTOCOL.md section 1, recursive over token slices.
fn reference_match(p: &[&str], n: &[&str]) -> bool {
    match (p.split_first(), n.split_first()) {
        (None, None) => true,
        (Some((&">", _)), Some(_)) => true,
        (Some((&pt, pr)), Some((&nt, nr))) => (pt == "*" || pt == nt) && reference_match(pr, nr),
        _ => false,
    }
}

/// Every name over {a, b, c} with 1 to `max_len` tokens.
fn all_names(max_len: usize) -> Vec<Vec<&'static str>> {
    let mut out: Vec<Vec<&'static str>> = vec![];
    let mut layer: Vec<Vec<&'static str>> = vec![vec![]];
    for _ in 0..max_len {
        layer =
            layer.iter().flat_map(|n| ["a", "b", "c"].iter().map(move |t| [n.as_slice(), &[*t]].concat())).collect();
        out.extend(layer.iter().cloned());
    }
    out
}

/// Containment by brute force: patterns use only `a`, `b` and wildcards, so `c` stands for any
/// other literal, and a counterexample, if any, exists among names of at most max(len)+1 tokens.
fn reference_contains(a: &[&str], b: &[&str]) -> bool {
    let names = all_names(a.len().max(b.len()) + 1);
    names.iter().all(|n| !reference_match(b, n) || reference_match(a, n))
}

/// Inverse of `key_token`, to show it is injective.
fn key_from_token(t: &str) -> String {
    match t.strip_prefix('-') {
        Some(b64) => String::from_utf8(URL_SAFE_NO_PAD.decode(b64).unwrap()).unwrap(),
        None => t.to_owned(),
    }
}

// ---------- names ----------

proptest! {
    #[test]
    fn generated_names_and_patterns_validate(n in valid_name(), p in valid_pattern()) {
        prop_assert_eq!(validate_name(&n), Ok(()));
        prop_assert_eq!(validate_pattern(&n), Ok(()));
        prop_assert_eq!(validate_pattern(&p), Ok(()));
        prop_assert!(matches(&n, &n), "a name matches itself");
    }

    #[test]
    fn validation_never_panics_and_accepts_only_well_formed(s in "[a-c.*> é]{0,12}|\\PC{0,40}") {
        let name_ok = validate_name(&s).is_ok();
        let pattern_ok = validate_pattern(&s).is_ok();
        if name_ok {
            prop_assert!(pattern_ok);
            prop_assert!(s.split('.').all(names::is_literal_token));
        }
        if pattern_ok {
            let tokens: Vec<&str> = s.split('.').collect();
            prop_assert!(tokens.len() <= MAX_TOKENS && s.len() <= names::MAX_NAME_BYTES);
            for (i, t) in tokens.iter().enumerate() {
                let last = i + 1 == tokens.len();
                prop_assert!(names::is_literal_token(t) || *t == "*" || (last && *t == ">"), "{:?}", s);
            }
        }
    }

    #[test]
    fn matches_agrees_with_reference(p in small_pattern(), n in small_name()) {
        let (ps, ns) = (p.join("."), n.join("."));
        prop_assert_eq!(matches(&ps, &ns), reference_match(&p, &n), "matches({:?}, {:?})", ps, ns);
    }

    #[test]
    fn contains_agrees_with_brute_force_semantics(a in small_pattern(), b in small_pattern()) {
        let (aj, bj) = (a.join("."), b.join("."));
        prop_assert_eq!(contains(&aj, &bj), reference_contains(&a, &b), "contains({:?}, {:?})", aj, bj);
    }

    #[test]
    fn contains_implies_matches(a in small_pattern(), b in small_pattern(), n in small_name()) {
        let (aj, bj, nj) = (a.join("."), b.join("."), n.join("."));
        if contains(&aj, &bj) && matches(&bj, &nj) {
            prop_assert!(matches(&aj, &nj), "{:?} contains {:?} but only the latter matches {:?}", aj, bj, nj);
        }
    }

    #[test]
    fn contains_is_reflexive(p in valid_pattern(), s in small_pattern()) {
        prop_assert!(contains(&p, &p));
        let sj = s.join(".");
        prop_assert!(contains(&sj, &sj));
        prop_assert!(contains(">", &sj));
    }

    #[test]
    fn contains_is_transitive(a in small_pattern(), b in small_pattern(), c in small_pattern()) {
        let (aj, bj, cj) = (a.join("."), b.join("."), c.join("."));
        if contains(&aj, &bj) && contains(&bj, &cj) {
            prop_assert!(contains(&aj, &cj), "{:?} > {:?} > {:?}", aj, bj, cj);
        }
    }

    #[test]
    fn key_token_is_injective_and_a_valid_token(key in "[-A-Za-z0-9_]{0,70}|\\PC{0,40}|.{0,40}") {
        let t = key_token(&key);
        prop_assert_eq!(key_from_token(&t), key.clone(), "key_token is invertible, hence injective");
        prop_assert_eq!(validate_name(&t), Ok(()), "{:?} -> {:?}", key, t);
        prop_assert!(!t.contains('.'));
    }

    #[test]
    fn key_token_injective_on_pairs(a in "[-a-c]{0,3}|.{0,3}", b in "[-a-c]{0,3}|.{0,3}") {
        prop_assert_eq!(a == b, key_token(&a) == key_token(&b));
    }
}

// ---------- frames ----------

fn json_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
        "[a-c.*>]{0,6}".prop_map(Value::from),
        Just(json!([])),
        Just(json!({})),
    ]
}

/// Frame-shaped objects with random field values and an unknown field.
fn frame_like() -> impl Strategy<Value = String> {
    let kind = prop_oneof![
        select(vec!["connect", "subscribe", "unsubscribe", "ping", "pong", "publish", ""]).prop_map(Value::from),
        json_value(),
    ];
    let field = || prop::option::of(json_value());
    let since = prop::option::of(prop_oneof![
        json_value(),
        (json_value(), json_value()).prop_map(|(epoch, seq)| json!({"epoch": epoch, "seq": seq})),
        ("[a-f0-9]{0,70}", any::<u64>()).prop_map(|(epoch, seq)| json!({"epoch": epoch, "seq": seq})),
    ]);
    (kind, field(), field(), field(), field(), since, field()).prop_map(|(k, id, ev, tok, res, since, extra)| {
        let mut obj = serde_json::Map::new();
        obj.insert("type".into(), k);
        for (name, v) in [("id", id), ("event", ev), ("token", tok), ("resume", res), ("since", since), ("x", extra)] {
            if let Some(v) = v {
                obj.insert(name.into(), v);
            }
        }
        Value::Object(obj).to_string()
    })
}

fn valid_client_frame() -> impl Strategy<Value = ClientFrame> {
    let id = prop::option::of(0..=MAX_ID);
    let s = "[ -~]{0,20}";
    prop_oneof![
        (id.clone(), prop::option::of(s)).prop_map(|(id, token)| ClientFrame::Connect { id, token, resume: None }),
        (id.clone(), prop::option::of(s)).prop_map(|(id, resume)| ClientFrame::Connect { id, token: None, resume }),
        (id.clone(), valid_pattern(), prop::option::of(since())).prop_map(|(id, event, since)| {
            ClientFrame::Subscribe { id, event, since, sub: None, filter: None, exclude: None, presence: false }
        }),
        (id.clone(), valid_pattern()).prop_map(|(id, event)| ClientFrame::Unsubscribe {
            id,
            event: Some(event),
            sub: None
        }),
        (id.clone(), prop::option::of(valid_pattern())).prop_map(|(id, event)| ClientFrame::Events { id, event }),
        id.prop_map(|id| ClientFrame::Ping { id }),
        Just(ClientFrame::Pong),
    ]
}

fn since() -> impl Strategy<Value = Since> {
    ("[ -~]{1,64}", 0..=MAX_ID).prop_map(|(epoch, seq)| Since { epoch, seq })
}

fn client_frame_json(f: &ClientFrame) -> String {
    let mut v = match f {
        ClientFrame::Connect { token, resume, .. } => json!({"type": "connect", "token": token, "resume": resume}),
        ClientFrame::Subscribe { event, since, .. } => {
            let since = since.as_ref().map(|s| json!({"epoch": s.epoch, "seq": s.seq}));
            json!({"type": "subscribe", "event": event, "since": since})
        }
        ClientFrame::Unsubscribe { event, sub, .. } => json!({"type": "unsubscribe", "event": event, "sub": sub}),
        ClientFrame::Ping { .. } => json!({"type": "ping"}),
        ClientFrame::Pong => json!({"type": "pong"}),
        ClientFrame::Presence { event, stats, .. } => {
            json!({"type": if *stats { "presence_stats" } else { "presence" }, "event": event})
        }
        ClientFrame::Publish { event, data, .. } => {
            json!({"type": "publish", "event": event, "data": serde_json::from_str::<serde_json::Value>(data).unwrap()})
        }
        ClientFrame::Rpc { method, data, .. } => {
            json!({"type": "rpc", "method": method, "data": serde_json::from_str::<serde_json::Value>(data).unwrap()})
        }
        ClientFrame::Events { event, .. } => json!({"type": "events", "event": event}),
    };
    let obj = v.as_object_mut().unwrap();
    obj.retain(|_, v| !v.is_null());
    if let Some(id) = f.id() {
        obj.insert("id".into(), id.into());
    }
    v.to_string()
}

proptest! {
    #[test]
    fn parse_client_frame_never_panics(text in "\\PC{0,64}|.{0,64}") {
        let _ = parse_client_frame(&text);
    }

    #[test]
    fn parsed_frames_respect_invariants(text in frame_like()) {
        match parse_client_frame(&text) {
            Ok(f) => {
                prop_assert!(f.id().is_none_or(|id| id <= MAX_ID));
                match &f {
                    ClientFrame::Subscribe { event, since, .. } => {
                        prop_assert_eq!(validate_pattern(event), Ok(()));
                        if let Some(s) = since {
                            prop_assert!(!s.epoch.is_empty() && s.epoch.len() <= 64 && s.seq <= MAX_ID);
                        }
                    }
                    ClientFrame::Unsubscribe { event, sub, .. } => {
                        prop_assert!(event.is_some() || sub.is_some());
                        if let Some(event) = event {
                            prop_assert_eq!(validate_pattern(event), Ok(()));
                        }
                    }
                    ClientFrame::Connect { token, resume, .. } => prop_assert!(token.is_none() || resume.is_none()),
                    _ => {}
                }
            }
            Err(e) => {
                prop_assert!(!e.message.is_empty());
                prop_assert!(e.id.is_none_or(|id| id <= MAX_ID));
            }
        }
    }

    #[test]
    fn valid_frames_round_trip(f in valid_client_frame()) {
        let text = client_frame_json(&f);
        prop_assert_eq!(parse_client_frame(&text), Ok(f), "{}", text);
    }
}

// ---------- tokens ----------

const NOW: i64 = 1_800_000_000;

fn keyring() -> Keyring {
    Keyring::new(&["p".repeat(32), "q".repeat(40)]).unwrap()
}

fn claims() -> impl Strategy<Value = (TokenKind, Claims)> {
    (
        "[0-9a-f]{32}",
        "\\PC{0,20}",
        prop::collection::vec(valid_pattern(), 0..6),
        -100i64..=5,
        1i64..=100_000,
        any::<bool>(),
        "[A-Za-z0-9_-]{1,24}",
        prop::option::of(1u64..),
    )
        .prop_map(|(jti, sub, allow, iat_off, ttl, resume, sid, rev)| {
            let kind = if resume { TokenKind::Resume } else { TokenKind::Connect };
            let sid = resume.then_some(sid);
            let rev = rev.filter(|_| !resume);
            (
                kind,
                Claims {
                    jti,
                    sub,
                    allow,
                    iat: NOW + iat_off,
                    exp: NOW + ttl,
                    rev,
                    sid,
                    info: None,
                    grants: Default::default(),
                },
            )
        })
}

proptest! {
    #[test]
    fn verify_never_panics(text in "\\PC{0,200}|tg1r?\\.[A-Za-z0-9_=.-]{0,120}") {
        prop_assert!(keyring().verify(&text, NOW).is_err());
    }

    #[test]
    fn sign_verify_round_trip((kind, c) in claims()) {
        let kr = keyring();
        let token = kr.sign(kind, &c);
        prop_assert_eq!(kr.verify(&token, NOW), Ok((kind, c.clone())));
        // A keyring that only knows the signing secret as a previous one also verifies.
        let rotated = Keyring::new(&["r".repeat(32), "p".repeat(32)]).unwrap();
        prop_assert_eq!(rotated.verify(&token, NOW), Ok((kind, c)));
    }

    #[test]
    fn any_single_byte_change_is_refused((kind, c) in claims(), pos in any::<prop::sample::Index>(), with in "[A-Za-z0-9_.=-]") {
        let kr = keyring();
        let token = kr.sign(kind, &c);
        let i = pos.index(token.len());
        let mut bytes = token.clone().into_bytes();
        let new = with.as_bytes()[0];
        prop_assume!(bytes[i] != new);
        bytes[i] = new;
        let tampered = String::from_utf8(bytes).unwrap();
        prop_assert!(kr.verify(&tampered, NOW).is_err(), "{} accepted", tampered);
    }
}

// ---------- catalog overlap (PROTOCOL.md section 12) ----------

/// Reference: do two patterns share a name? Brute force over names of tokens from the small alphabet plus one
/// literal neither side uses ("z"), up to the longer pattern's length plus one token.
fn overlap_reference(a: &[&str], b: &[&str]) -> bool {
    let max = a.len().max(b.len()) + 1;
    let alphabet = ["a", "b", "z"];
    let (pa, pb) = (a.join("."), b.join("."));
    let mut names: Vec<Vec<&str>> = vec![vec![]];
    for _ in 0..max {
        let mut longer = Vec::new();
        for n in &names {
            for t in alphabet {
                let mut m = n.clone();
                m.push(t);
                if matches(&pa, &m.join(".")) && matches(&pb, &m.join(".")) {
                    return true;
                }
                longer.push(m);
            }
        }
        names = longer;
    }
    false
}

proptest! {
    #[test]
    fn overlap_is_symmetric(a in valid_pattern(), b in valid_pattern()) {
        prop_assert_eq!(telegraphy::node::catalog::overlaps(&a, &b), telegraphy::node::catalog::overlaps(&b, &a));
    }

    #[test]
    fn a_name_overlaps_a_pattern_exactly_when_the_pattern_matches_it(p in valid_pattern(), n in valid_name()) {
        prop_assert_eq!(telegraphy::node::catalog::overlaps(&p, &n), matches(&p, &n));
        prop_assert_eq!(telegraphy::node::catalog::overlaps(&n, &n), true);
    }

    #[test]
    fn overlap_agrees_with_brute_force(a in small_pattern(), b in small_pattern()) {
        let (pa, pb) = (a.join("."), b.join("."));
        prop_assert_eq!(telegraphy::node::catalog::overlaps(&pa, &pb), overlap_reference(&a, &b), "{} {}", pa, pb);
    }
}
