//! Server-side filters (PROTOCOL.md section 8): every vector of proto/vectors/filters.json (the
//! spec shared with the JS client), and properties of `telegraphy::protocol::filter` on random data.

use std::collections::BTreeMap;
use std::path::Path;

use proptest::prelude::*;
use serde_json::{json, Map, Value};
use telegraphy::protocol::filter::{Filter, FilterLimits, LOOKUPS};
use telegraphy::protocol::frames::ErrorCode;

fn vectors() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("proto/vectors/filters.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn list<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v[key].as_array().unwrap_or_else(|| panic!("filters.json: {key:?} must be a list"))
}

fn parse(v: &Value) -> Result<Filter, telegraphy::protocol::filter::FilterError> {
    Filter::parse(v.get("filter"), v.get("exclude"), &FilterLimits::default())
}

/// The lookup a key names, by the key rule of section 8 (for the coverage count only).
fn lookup_of(key: &str) -> &str {
    match key.rsplit_once("__") {
        Some((_, last)) if LOOKUPS.contains(&last) => last,
        _ => "exact",
    }
}

#[test]
fn every_case_matches_as_the_vectors_say() {
    let v = vectors();
    let mut per_lookup: BTreeMap<&str, usize> = LOOKUPS.iter().map(|l| (*l, 0)).collect();
    let cases = list(&v, "cases");
    for c in cases {
        let f = parse(c).unwrap_or_else(|e| panic!("case must parse: {c}: {e}"));
        let want = c["match"].as_bool().unwrap_or_else(|| panic!("case without a bool match: {c}"));
        assert_eq!(f.matches(&c["data"]), want, "case {c}");
        for side in ["filter", "exclude"] {
            for key in c.get(side).and_then(Value::as_object).into_iter().flat_map(Map::keys) {
                *per_lookup.get_mut(lookup_of(key)).unwrap() += 1;
            }
        }
    }
    for (lookup, n) in &per_lookup {
        assert!(*n >= 3, "lookup {lookup} has only {n} vector cases");
    }
    eprintln!("filters.json: {} cases; per lookup {per_lookup:?}", cases.len());
}

#[test]
fn every_error_is_refused_with_its_kind() {
    let v = vectors();
    let errors = list(&v, "errors");
    for e in errors {
        let err = parse(e).err().unwrap_or_else(|| panic!("error vector accepted: {e}"));
        assert_eq!(e["error"], "bad_request", "vector {e}");
        assert_eq!(err.code(), ErrorCode::BadRequest);
        assert_eq!(err.code().as_str(), e["error"].as_str().unwrap());
        assert_eq!(err.kind(), e["kind"].as_str().unwrap(), "vector {e}: got {err}");
        assert!(err.to_string().len() <= 120, "message too long: {err}");
    }
    eprintln!("filters.json: {} errors", errors.len());
}

#[test]
fn canonical_texts_are_equal_exactly_when_the_vectors_say() {
    let v = vectors();
    let datas: Vec<&Value> = list(&v, "cases").iter().map(|c| &c["data"]).collect();
    let pairs = list(&v, "canonical");
    for p in pairs {
        let a = parse(&p["a"]).unwrap_or_else(|e| panic!("{p}: {e}"));
        let b = parse(&p["b"]).unwrap_or_else(|e| panic!("{p}: {e}"));
        let same = p["same"].as_bool().unwrap();
        assert_eq!(a.canonical() == b.canonical(), same, "{p}: {:?} vs {:?}", a.canonical(), b.canonical());
        if same {
            for d in &datas {
                assert_eq!(a.matches(d), b.matches(d), "{p} on {d}");
            }
        }
    }
    eprintln!("filters.json: {} canonical pairs", pairs.len());
}

/// The `orm: true` cases must be rows a Django model can hold, or the cross-check means nothing.
#[test]
fn orm_cases_are_rows_of_the_orm_schema() {
    let v = vectors();
    let schema = v["orm_schema"].as_object().expect("orm_schema");
    let fields: Vec<&str> = schema.keys().map(String::as_str).filter(|k| *k != "model").collect();
    let decimal_2dp = |s: &str| {
        let (int, frac) = s.trim_start_matches('-').split_once('.').unwrap_or(("", ""));
        let digits = |t: &str| t.bytes().all(|b| b.is_ascii_digit());
        !int.is_empty() && digits(int) && frac.len() == 2 && digits(frac)
    };
    let orm: Vec<&Value> = list(&v, "cases").iter().filter(|c| c["orm"] == true).collect();
    assert!(orm.len() >= 10, "only {} orm cases", orm.len());
    for c in orm {
        let row = c["data"].as_object().unwrap_or_else(|| panic!("orm data must be an object: {c}"));
        let mut keys: Vec<&str> = row.keys().map(String::as_str).collect();
        keys.sort();
        let mut want = fields.clone();
        want.sort();
        assert_eq!(keys, want, "orm row must have exactly the schema's fields: {c}");
        for (k, val) in row {
            let kind = schema[k].as_str().unwrap();
            let ok = if kind.starts_with("IntegerField") {
                val.is_i64()
            } else if kind.starts_with("DecimalField") {
                val.as_str().is_some_and(decimal_2dp)
            } else {
                // A CharField value must not look like a number, where the gateway compares numerically.
                val.as_str().is_some_and(|s| s.parse::<f64>().is_err())
            };
            assert!(ok, "orm field {k} = {val} does not fit {kind}: {c}");
        }
    }
}

// ---- properties on random data ----

const KEYS: [&str; 5] = ["a", "b", "c", "0", "1"];
const DECIMAL_STRINGS: [&str; 10] = ["0", "1", "1.0", "-2", "2.50", "1e1", "10", "9.5", "0.10", "-0"];
const OTHER_STRINGS: [&str; 13] = ["a", "A", "ab", "Ab", "bA", "ß", "İ", "i", "", "z", "ΟΔΟΣ", "2026-11-26", "0.1 "];

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (-3i64..=12).prop_map(|i| json!(i)),
        prop::sample::select(vec![0.5, -0.0, 1.0, 2.5, -1.5, 1e20, 0.1, 9.5]).prop_map(|f| json!(f)),
        prop::sample::select(DECIMAL_STRINGS.to_vec()).prop_map(|s| json!(s)),
        prop::sample::select(OTHER_STRINGS.to_vec()).prop_map(|s| json!(s)),
    ]
}

fn any_json() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(3, 24, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
            prop::collection::btree_map(prop::sample::select(KEYS.to_vec()), inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())),
        ]
    })
}

/// Event data: mostly objects over the same keys the filters use, sometimes any JSON.
fn data() -> impl Strategy<Value = Value> {
    let object = prop::collection::btree_map(prop::sample::select(KEYS.to_vec()), any_json(), 0..5)
        .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()));
    prop_oneof![4 => object, 1 => any_json()]
}

fn path() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(KEYS.to_vec()), 1..4).prop_map(|p| p.join("__"))
}

fn comparable() -> impl Strategy<Value = Value> {
    leaf().prop_filter("numbers and strings", |v| v.is_number() || v.is_string())
}

/// A value of the right shape for `lookup` (mostly), so that most random filters parse.
fn value_for(lookup: &'static str) -> BoxedStrategy<Value> {
    match lookup {
        "in" => prop::collection::vec(leaf(), 0..4).prop_map(Value::Array).boxed(),
        "range" => (comparable(), comparable()).prop_map(|(a, b)| json!([a, b])).boxed(),
        "isnull" => any::<bool>().prop_map(Value::Bool).boxed(),
        "gt" | "gte" | "lt" | "lte" => comparable().boxed(),
        "regex" | "iregex" => prop::sample::select(vec!["a", "^a", "A|b", r"\d", "ß$", "", "^$", r"^\w+$", "(?i)İ"])
            .prop_map(|s| json!(s))
            .boxed(),
        "exact" => any_json().boxed(),
        _ => leaf().prop_filter("strings", Value::is_string).boxed(),
    }
}

/// One condition: `path`, or `path__lookup` with a fitting value; now and then a wrong value.
fn condition() -> impl Strategy<Value = (String, Value)> {
    let named = (path(), prop::sample::select(LOOKUPS.to_vec()))
        .prop_flat_map(|(p, l)| (Just(format!("{p}__{l}")), prop_oneof![9 => value_for(l), 1 => any_json()]));
    prop_oneof![1 => (path(), any_json()), 4 => named]
}

fn conditions(min: usize) -> impl Strategy<Value = Value> {
    prop::collection::vec(condition(), min..4).prop_map(|cs| Value::Object(cs.into_iter().collect()))
}

/// The field path of a key (the key without its lookup).
fn stem(key: &str) -> Vec<&str> {
    let mut parts: Vec<&str> = key.split("__").collect();
    if parts.len() > 1 && LOOKUPS.contains(parts.last().unwrap()) {
        parts.pop();
    }
    parts
}

/// `data` with `value` written at `path` (the data becomes an object if it is not one; objects
/// are created on the way; below the top a list element is set when the part indexes it).
fn put(data: &mut Value, path: &[&str], value: Value) {
    fn inside(data: &mut Value, path: &[&str], value: Value) {
        let Some((first, rest)) = path.split_first() else {
            *data = value;
            return;
        };
        if let Value::Array(a) = data {
            if let Some(slot) = first.parse::<usize>().ok().and_then(|i| a.get_mut(i)) {
                return inside(slot, rest, value);
            }
        }
        if !data.is_object() {
            *data = Value::Object(Map::new());
        }
        inside(data.as_object_mut().unwrap().entry(first.to_string()).or_insert(Value::Null), rest, value);
    }
    if !data.is_object() {
        *data = Value::Object(Map::new());
    }
    inside(data, path, value);
}

/// `data` with a value planted at the path of every condition of `filter`: the condition's own
/// value (or its first element, for `in` and `range`) or one of `others`, so that random
/// filters meet fields that are there and sometimes equal.
fn planted(data: &Value, filter: &Value, own: &[bool], others: &[Value]) -> Value {
    let mut d = data.clone();
    let conditions = filter.as_object().into_iter().flatten();
    for (i, (key, value)) in conditions.enumerate() {
        let pick = match value {
            Value::Array(vs) if own.get(i) == Some(&true) => vs.first().cloned(),
            v if own.get(i) == Some(&true) => Some(v.clone()),
            _ => others.get(i).cloned(),
        };
        if let Some(v) = pick {
            put(&mut d, &stem(key), v);
        }
    }
    d
}

fn plants() -> impl Strategy<Value = (Vec<bool>, Vec<Value>)> {
    (prop::collection::vec(any::<bool>(), 4), prop::collection::vec(prop_oneof![leaf(), any_json()], 4))
}

fn filter_of(filter: Option<&Value>, exclude: Option<&Value>) -> Option<Filter> {
    Filter::parse(filter, exclude, &FilterLimits::default()).ok()
}

/// The same conditions written another way: `x` <-> `x__exact`, integers as floats, `in`
/// values reversed and repeated, ASCII case of `i*` values swapped, `exact: null` as `isnull`.
/// When two respelled keys would collide, the filter is returned as it is.
fn respell(filter: &Value) -> Value {
    let mut out = Map::new();
    for (key, value) in filter.as_object().unwrap() {
        let (stem, lookup) = match key.rsplit_once("__") {
            Some((stem, last)) if LOOKUPS.contains(&last) => (stem, last),
            _ => (key.as_str(), "exact"),
        };
        let floats = |v: &Value| match v.as_i64() {
            Some(i) => json!(i as f64),
            None => v.clone(),
        };
        let (key, value) = match (lookup, value) {
            ("exact" | "iexact", Value::Null) => (format!("{stem}__isnull"), json!(true)),
            ("exact", v) if key.ends_with("__exact") && !LOOKUPS.contains(&stem.rsplit("__").next().unwrap()) => {
                (stem.to_owned(), floats(v))
            }
            ("exact", v) => (format!("{stem}__exact"), floats(v)),
            ("in", Value::Array(vs)) => {
                let mut vs: Vec<Value> = vs.iter().rev().map(floats).collect();
                if let Some(first) = vs.first().cloned() {
                    vs.push(first);
                }
                (key.clone(), Value::Array(vs))
            }
            ("range", Value::Array(vs)) => (key.clone(), Value::Array(vs.iter().map(floats).collect())),
            ("gt" | "gte" | "lt" | "lte", v) => (key.clone(), floats(v)),
            (l, Value::String(s)) if l.starts_with('i') && l != "in" && l != "iregex" => {
                let swap =
                    |c: char| if c.is_ascii_lowercase() { c.to_ascii_uppercase() } else { c.to_ascii_lowercase() };
                let swapped: String = s.chars().map(swap).collect();
                (key.clone(), json!(swapped))
            }
            (_, v) => (key.clone(), v.clone()),
        };
        if out.insert(key, value).is_some() {
            return filter.clone();
        }
    }
    Value::Object(out)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// (1) Parsing never panics on any filter JSON, and matches() never panics on any data.
    #[test]
    fn matches_never_panics(f in prop_oneof![conditions(0), any_json()], x in prop_oneof![conditions(0), any_json()],
                            raw_key in ".{0,12}", raw_value in any_json(), d in data()) {
        let raw = json!({ raw_key: raw_value });
        for (filter, exclude) in [(Some(&f), Some(&x)), (Some(&f), None), (None, Some(&x)), (Some(&raw), None)] {
            if let Some(filter) = filter_of(filter, exclude) {
                let _ = filter.matches(&d);
                let _ = filter.matches(&Value::Null);
            }
        }
    }

    /// (2) filter=F passes exactly the events that exclude=F drops.
    #[test]
    fn filter_and_exclude_are_complements(f in conditions(1), d in data(), (own, others) in plants()) {
        if let (Some(keep), Some(drop)) = (filter_of(Some(&f), None), filter_of(None, Some(&f))) {
            prop_assert!(!keep.is_empty());
            for d in [d.clone(), planted(&d, &f, &own, &others)] {
                prop_assert_eq!(keep.matches(&d), !drop.matches(&d), "F = {}, data = {}", f, d);
            }
        }
    }

    /// (3) Equal canonical texts mean equal verdicts: for the same conditions spelled another way
    /// (which must get the same text), and for any two random filters that happen to.
    #[test]
    fn equal_canonical_means_equal_matches(f in conditions(0), x in conditions(0), g in conditions(0), d in data(),
                                           (own, others) in plants()) {
        if let Some(a) = filter_of(Some(&f), Some(&x)) {
            let (rf, rx) = (respell(&f), respell(&x));
            let b = filter_of(Some(&rf), Some(&rx));
            prop_assert!(b.is_some(), "respelled filter refused: {} / {}", rf, rx);
            let b = b.unwrap();
            prop_assert_eq!(a.canonical(), b.canonical(), "{} / {} respelled {} / {}", f, x, rf, rx);
            let planted_f = planted(&d, &f, &own, &others);
            for d in [d.clone(), planted(&planted_f, &x, &own, &others)] {
                prop_assert_eq!(a.matches(&d), b.matches(&d), "{} on {}", a.canonical(), d);
            }
            if let Some(c) = filter_of(Some(&g), None) {
                if c.canonical() == a.canonical() {
                    prop_assert_eq!(a.matches(&d), c.matches(&d));
                }
            }
        }
    }

    /// (4) `x__in=[v]` agrees with `x=v` (null included: both mean missing or null).
    #[test]
    fn in_with_one_value_is_exact(p in path(), v in any_json(), d in data(), w in any_json()) {
        let one = filter_of(Some(&json!({ format!("{p}__in"): [v.clone()] })), None).unwrap();
        let exact = filter_of(Some(&json!({ p.clone(): v.clone() })), None).unwrap();
        let path: Vec<&str> = p.split("__").collect();
        let (mut with_v, mut with_w) = (d.clone(), d.clone());
        put(&mut with_v, &path, v.clone());
        put(&mut with_w, &path, w);
        prop_assert!(exact.matches(&with_v), "{} = {} on {}", p, v, with_v);
        for d in [d, with_v, with_w] {
            prop_assert_eq!(one.matches(&d), exact.matches(&d), "{} = {} on {}", p, v, d);
        }
    }

    /// (5) `range [a, b]` agrees with `gte a AND lte b`.
    #[test]
    fn range_is_gte_and_lte(p in path(), a in comparable(), b in comparable(), d in data(), w in comparable()) {
        let range = filter_of(Some(&json!({ format!("{p}__range"): [a.clone(), b.clone()] })), None).unwrap();
        let both = json!({ format!("{p}__gte"): a.clone(), format!("{p}__lte"): b.clone() });
        let both = filter_of(Some(&both), None).unwrap();
        let path: Vec<&str> = p.split("__").collect();
        let planted: Vec<Value> = [a, b, w]
            .into_iter()
            .map(|v| {
                let mut d = d.clone();
                put(&mut d, &path, v);
                d
            })
            .collect();
        for d in std::iter::once(d).chain(planted) {
            prop_assert_eq!(range.matches(&d), both.matches(&d), "on {}", d);
        }
    }

    /// Order lookups agree with each other: gt = gte and not exact-by-value; lt = not gte when comparable.
    #[test]
    fn order_lookups_are_consistent(p in path(), v in comparable(), d in data(), w in comparable()) {
        let mut d = d;
        put(&mut d, &p.split("__").collect::<Vec<_>>(), w);
        let f = |l: &str| filter_of(Some(&json!({ format!("{p}__{l}"): v.clone() })), None).unwrap().matches(&d);
        let (gt, gte, lt, lte) = (f("gt"), f("gte"), f("lt"), f("lte"));
        prop_assert!(!(gt && lt), "gt and lt both hold");
        prop_assert!(!gt || gte, "gt without gte");
        prop_assert!(!lt || lte, "lt without lte");
        prop_assert_eq!(gte || lt, lte || gt, "comparable both ways or neither");
    }
}
