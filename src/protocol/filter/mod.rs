//! Server-side filters (proto/PROTOCOL.md section 8): Django-style lookups on an event's `data`.
//!
//! A `subscribe` frame may carry `filter` and `exclude`, two JSON objects of `field__lookup: value`
//! conditions. [`Filter::prepare`] checks them (every limit, every name, size and value) without
//! compiling anything; [`PreparedFilter::compile_with`] then attaches the compiled regexes (the
//! gateway compiles them through the node's filter memory pool, off the async workers and within a
//! memory budget; [`Filter::parse`] is both steps with plain compiles). [`Filter::matches`] then decides
//! for each event whether it passes: every `filter` condition holds, and not every `exclude`
//! condition holds (Django's `exclude(a=1, b=2)` is NOT (a AND b)). [`Filter::canonical`] is a text
//! that is equal for filters that mean the same, so the hub can evaluate each distinct filter once
//! per message.
//!
//! The shared vectors are `proto/vectors/filters.json` (the JS client reads the same file);
//! `tests/filters.rs` checks every case and the properties below.
//!
//! # Semantics (decisions where PROTOCOL.md leaves room; the vectors pin each one)
//! * **Keys.** A key is split on `__` (left to right, as `str.split("__")` in Python and JS). No
//!   part may be empty (`a____b`, `a__`, `__a`, `""` are errors). The last part is the lookup when
//!   it is one of [`LOOKUPS`] and at least one part precedes it; otherwise every part is a field
//!   and the lookup is `exact` (so `{"in": 1}` reads the field `in`, and an unknown name such as
//!   `total__year` reads the field `year` of `total`, as Django's `JSONField` key transforms do).
//! * **Paths.** Each field part reads a key of an object; on a list, a part that is a canonical
//!   non-negative integer (`0` or `[1-9][0-9]*`) reads that element. Anything else (a scalar or
//!   `null` on the way, a missing key, an index out of range, `-1`, `01`) makes the field missing.
//!   Data that is not an object (a list included) has no fields.
//! * **Missing and null.** A condition on a missing field is false, except `isnull: true`. `exact`
//!   and `iexact` with `null` mean `isnull: true` (missing or null), as in Django. `null` is an
//!   error for every other lookup. A `null` element of an `in` list also means "missing or null"
//!   (so `x__in=[v]` always equals `x=v`; Django would drop the `None`, a deliberate difference).
//! * **Numbers.** A *decimal string* is a JSON string matching
//!   `-?[0-9]+(\.[0-9]+)?([eE][+-]?[0-9]+)?` with an exponent of at most 999999999 in magnitude
//!   (what `str(Decimal)` writes, including `1E+2`; no `+`, spaces, `NaN`, `Infinity`, `.5`). A
//!   JSON number is the decimal of its shortest round-trip form (what JS `String(n)` and Python
//!   `repr(float)` print), integers exactly. Comparisons of numbers and decimal strings are
//!   **exact decimal** comparisons (no rounding through `f64`: `"0.30000000000000000001" > 0.3`).
//! * **Equality** (`exact`, `in`): JSON equality, recursively, where two numbers are equal when
//!   numerically equal (`1 == 1.0`) and a number equals a decimal string of the same value
//!   (`120 == "120.00"`), but two strings are equal only when identical (`"120" != "120.00"`:
//!   the gateway cannot tell a `DecimalField` from a `CharField`; give a number to match any
//!   spelling).
//! * **Order** (`gt`, `gte`, `lt`, `lte`, `range`): a number or decimal string against a number
//!   or decimal string compares numerically; two strings otherwise compare by Unicode code points
//!   (so ISO 8601 dates order correctly); any other pair (bool, null, list, object, a number
//!   against a non-decimal string) is false. The bounds must be numbers or strings. `range` is
//!   `gte low AND lte high`.
//! * **Text** (`iexact`, `contains`, `icontains`, `startswith`, `istartswith`, `endswith`,
//!   `iendswith`): the value must be a string; the field must be a string (a number field never
//!   matches). `i*` lookups map every code point to its Unicode simple lowercase (the first code
//!   point of its full lowercase: `İ` -> `i`, no final-sigma rule) on both sides.
//! * **Regex** (`regex`, `iregex`): RE2 syntax as the `regex` crate reads it (linear time),
//!   unanchored search (Python's `re.search`), Unicode classes; `iregex` is the crate's case
//!   insensitive mode (simple case folding). At most [`FilterLimits::max_regex_bytes`] bytes of
//!   pattern, [`REGEX_SIZE_LIMIT`] bytes of compiled program, and
//!   [`FilterLimits::max_regex_conditions`] `regex`/`iregex` conditions per subscription.
//! * **Limits.** At most `max_conditions` conditions in `filter` and `exclude` together; at most
//!   `max_bytes` bytes of compact JSON (`filter` plus `exclude`, as `JSON.stringify` writes them);
//!   at most `max_in_values` values in an `in` list.

//!
//! # Parts
//! `parse` checks a client's objects into conditions, `eval` holds the conditions and decides whether an event's
//! data passes them, `regex` compiles the patterns of `regex`/`iregex`, `canonical` writes the text that groups
//! filters meaning the same.

use std::fmt;
use std::sync::Arc;

use serde_json::{Map, Value};

use crate::protocol::frames::ErrorCode;

mod canonical;
mod eval;
mod parse;
mod regex;

pub use eval::fold;
pub use regex::{CompiledRegex, RegexError, RegexKey};

use eval::{Condition, Test};
use parse::{conditions, json_len, object};

/// The lookup names, in PROTOCOL.md order.
pub const LOOKUPS: &[&str] = crate::protocol::constants::filters::LOOKUPS;

/// Most bytes of compiled program per regex (the NFA: `meta::Config::nfa_size_limit`, what
/// `regex::RegexBuilder::size_limit` sets; the crate's default is 10 MiB). Measured with
/// regex-automata 0.4 (minimal limit that compiles): `^ord` 272 B, `\w+` 49 KiB,
/// `^[\p{L}\p{N}_-]+$` 47 KiB, `\w+@\w+\.\w+` 147 KiB, `\w{5}` 244 KiB; counted repetitions of
/// Unicode classes grow fastest (`\w{6}` and up, `\w{19}` 927 KiB, `\w{1,64}` are refused as
/// too complex, while `(?-u:\w){1,64}` 9 KiB or `\w+` are fine).
pub const REGEX_SIZE_LIMIT: usize = crate::protocol::constants::filters::limits::MAX_REGEX_PROGRAM_BYTES;

/// Capacity of each lazy DFA cache of a regex (`meta::Config::hybrid_cache_capacity`, what
/// `regex::RegexBuilder::dfa_size_limit` sets; the crate's default is 2 MiB). A matching cache
/// holds a forward and a reverse one and grows with use up to about twice this, per thread that
/// evaluates the regex; below the minimum a pattern needs, the crate uses its other engines.
pub const REGEX_CACHE_CAPACITY: usize = 64 << 10;

/// Longest part of a client's key repeated in an error message.
const SHOWN_KEY_BYTES: usize = 40;

/// Bounds on one subscription's filter (PROTOCOL.md section 8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FilterLimits {
    /// Conditions in `filter` and `exclude` together (`limits.max_filter_conditions`).
    pub max_conditions: usize,
    /// Bytes of compact JSON of `filter` plus `exclude`.
    pub max_bytes: usize,
    /// Bytes of one `regex`/`iregex` pattern.
    pub max_regex_bytes: usize,
    /// Values in one `in` list.
    pub max_in_values: usize,
    /// `regex`/`iregex` conditions in `filter` and `exclude` together (`limits.max_regex_conditions`).
    pub max_regex_conditions: usize,
}

impl Default for FilterLimits {
    fn default() -> Self {
        use crate::protocol::constants::filters::limits;
        FilterLimits {
            max_conditions: limits::MAX_CONDITIONS,
            max_bytes: limits::MAX_BYTES,
            max_regex_bytes: limits::MAX_REGEX_BYTES,
            max_in_values: limits::MAX_IN_VALUES,
            max_regex_conditions: limits::MAX_REGEX_CONDITIONS,
        }
    }
}

/// Which of the two objects a condition or error belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clause {
    Filter,
    Exclude,
}

impl fmt::Display for Clause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Clause::Filter => "filter",
            Clause::Exclude => "exclude",
        })
    }
}

/// Why a `filter`/`exclude` was refused. Every one is an `error` `bad_request` ([`Self::code`]).
/// Messages are short; they repeat at most the first 40 bytes of a client's key (escaped) and
/// never a value or a regex.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    #[error("{0} must be a JSON object")]
    NotObject(Clause),
    #[error("filter and exclude are larger than {0} bytes")]
    TooBig(usize),
    #[error("more than {0} filter conditions")]
    TooManyConditions(usize),
    #[error("more than {0} regex conditions")]
    TooManyRegexes(usize),
    #[error("{clause} key {key:?}: empty field name")]
    BadKey { clause: Clause, key: String },
    #[error("{clause} key {key:?}: {lookup} takes {expected}")]
    BadValue { clause: Clause, key: String, lookup: &'static str, expected: &'static str },
    #[error("{clause} key {key:?}: in takes at most {limit} values")]
    TooManyValues { clause: Clause, key: String, limit: usize },
    #[error("{clause} key {key:?}: regex longer than {limit} bytes")]
    RegexTooLong { clause: Clause, key: String, limit: usize },
    #[error("{clause} key {key:?}: regex too complex")]
    RegexTooComplex { clause: Clause, key: String },
    #[error("{clause} key {key:?}: invalid regex")]
    BadRegex { clause: Clause, key: String },
}

impl FilterError {
    /// The frame error code: always `bad_request`.
    pub fn code(&self) -> ErrorCode {
        ErrorCode::BadRequest
    }

    /// A stable name of the reason (the `kind` of the error vectors).
    pub fn kind(&self) -> &'static str {
        match self {
            FilterError::NotObject(_) => "not_object",
            FilterError::TooBig(_) => "too_big",
            FilterError::TooManyConditions(_) => "too_many_conditions",
            FilterError::TooManyRegexes(_) => "too_many_regexes",
            FilterError::BadKey { .. } => "bad_key",
            FilterError::BadValue { .. } => "bad_value",
            FilterError::TooManyValues { .. } => "too_many_values",
            FilterError::RegexTooLong { .. } => "regex_too_long",
            FilterError::RegexTooComplex { .. } => "regex_too_complex",
            FilterError::BadRegex { .. } => "bad_regex",
        }
    }
}

/// At most [`SHOWN_KEY_BYTES`] bytes of a client's key, cut at a character boundary.
fn shown(key: &str) -> String {
    if key.len() <= SHOWN_KEY_BYTES {
        return key.to_owned();
    }
    let mut end = SHOWN_KEY_BYTES;
    while !key.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &key[..end])
}

/// Checked `filter` + `exclude` whose regexes are not compiled yet ([`Filter::prepare`]). Every
/// limit, name, value and pattern length has been checked: only compiling may still fail.
#[derive(Debug, Clone)]
pub struct PreparedFilter {
    filter: Vec<Condition>,
    exclude: Vec<Condition>,
    canonical: String,
}

impl PreparedFilter {
    /// No conditions at all.
    pub fn is_empty(&self) -> bool {
        self.filter.is_empty() && self.exclude.is_empty()
    }

    /// The same text as [`Filter::canonical`] of the compiled filter.
    pub fn canonical(&self) -> &str {
        &self.canonical
    }

    /// The patterns to compile, in the order [`Self::compile_with`] asks for them (filter, then
    /// exclude); at most [`FilterLimits::max_regex_conditions`].
    pub fn regexes(&self) -> impl Iterator<Item = &RegexKey> {
        self.filter.iter().chain(&self.exclude).filter_map(|c| match &c.test {
            Test::Regex { key, .. } => Some(key),
            _ => None,
        })
    }

    /// Attaches a compiled regex to each regex condition, asking `compile` for each pattern in the
    /// order of [`Self::regexes`]; the first failure is the filter's error (naming its key).
    pub fn compile_with(
        self,
        mut compile: impl FnMut(&RegexKey) -> Result<Arc<CompiledRegex>, RegexError>,
    ) -> Result<Filter, FilterError> {
        let PreparedFilter { mut filter, mut exclude, canonical } = self;
        for (clause, conds) in [(Clause::Filter, &mut filter), (Clause::Exclude, &mut exclude)] {
            for cond in conds.iter_mut() {
                if let Test::Regex { key, compiled } = &mut cond.test {
                    let field = || shown(&cond.key);
                    *compiled = Some(compile(key).map_err(|e| match e {
                        RegexError::TooComplex => FilterError::RegexTooComplex { clause, key: field() },
                        RegexError::Invalid => FilterError::BadRegex { clause, key: field() },
                    })?);
                }
            }
        }
        Ok(Filter { filter, exclude, canonical })
    }
}

/// Parsed `filter` + `exclude` of one subscription. Cheap to evaluate; `Send + Sync`.
#[derive(Debug, Clone)]
pub struct Filter {
    filter: Vec<Condition>,
    exclude: Vec<Condition>,
    canonical: String,
}

impl Filter {
    /// Checks and compiles (plain compiles, no pool or budget): [`Filter::prepare`], then
    /// [`CompiledRegex::compile`] for each regex.
    pub fn parse(
        filter: Option<&Value>,
        exclude: Option<&Value>,
        limits: &FilterLimits,
    ) -> Result<Filter, FilterError> {
        Self::prepare(filter, exclude, limits)?.compile_with(|key| CompiledRegex::compile(key).map(Arc::new))
    }

    /// From the frame's optional `filter` and `exclude` JSON values (absent = `None`; a present
    /// `null` is not an object and is refused). An empty result (no conditions) is allowed. Checks,
    /// in this order: objects, size, condition count, each condition (key, value, `in` length,
    /// pattern length), regex count. Compiles nothing.
    pub fn prepare(
        filter: Option<&Value>,
        exclude: Option<&Value>,
        limits: &FilterLimits,
    ) -> Result<PreparedFilter, FilterError> {
        let f = object(filter, Clause::Filter)?;
        let x = object(exclude, Clause::Exclude)?;
        if json_len(filter, limits.max_bytes) + json_len(exclude, limits.max_bytes) > limits.max_bytes {
            return Err(FilterError::TooBig(limits.max_bytes));
        }
        if f.map_or(0, Map::len) + x.map_or(0, Map::len) > limits.max_conditions {
            return Err(FilterError::TooManyConditions(limits.max_conditions));
        }
        let filter = conditions(f, Clause::Filter, limits)?;
        let exclude = conditions(x, Clause::Exclude, limits)?;
        let regexes = filter.iter().chain(&exclude).filter(|c| matches!(c.test, Test::Regex { .. })).count();
        if regexes > limits.max_regex_conditions {
            return Err(FilterError::TooManyRegexes(limits.max_regex_conditions));
        }
        let canonical = canonical::of_filter(&filter, &exclude);
        Ok(PreparedFilter { filter, exclude, canonical })
    }

    /// Estimated memory of the compiled regexes this filter holds ([`CompiledRegex::bytes`]), shared
    /// ones included.
    pub fn regex_bytes(&self) -> usize {
        self.filter
            .iter()
            .chain(&self.exclude)
            .filter_map(|c| match &c.test {
                Test::Regex { compiled: Some(re), .. } => Some(re.bytes()),
                _ => None,
            })
            .sum()
    }

    /// No conditions at all: every event passes.
    pub fn is_empty(&self) -> bool {
        self.filter.is_empty() && self.exclude.is_empty()
    }

    /// Canonical text, equal for filters that mean the same (the grouping key): `""` for an
    /// empty filter, else compact JSON `{"filter":[[key,value],...],"exclude":[...]}` (a side
    /// without conditions left out) with every key spelled `path__lookup` (`field` ==
    /// `field__exact`, `exact: null` == `isnull: true`), pairs sorted and deduplicated, numbers
    /// normalised (`1.0` == `1`), `i*` values case-folded, `in` values sorted and deduplicated.
    pub fn canonical(&self) -> &str {
        &self.canonical
    }

    /// Does the event's data pass? `data` is the parsed event payload (any JSON; non-objects have
    /// no fields).
    pub fn matches(&self, data: &Value) -> bool {
        self.filter.iter().all(|c| c.holds(data))
            && (self.exclude.is_empty() || !self.exclude.iter().all(|c| c.holds(data)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::borrow::Cow;

    #[test]
    fn fold_is_simple_lowercase() {
        assert_eq!(fold("ABC"), "abc");
        assert!(matches!(fold("abc"), Cow::Borrowed(_)));
        assert_eq!(fold("İSTANBUL"), "istanbul");
        assert_eq!(fold("ΟΔΟΣ"), "οδοσ");
        assert_eq!(fold("Straße"), "straße");
    }

    #[test]
    fn errors_do_not_echo_long_input() {
        let key = format!("{}__regex", "k".repeat(500));
        let err = Filter::parse(Some(&json!({ key: "(" })), None, &FilterLimits::default()).unwrap_err();
        assert_eq!(err.kind(), "bad_regex");
        assert!(err.to_string().len() < 100, "{err}");
        let long_value = "v".repeat(300);
        let err = Filter::parse(Some(&json!({"a__regex": long_value})), None, &FilterLimits::default()).unwrap_err();
        assert!(!err.to_string().contains("vvv"), "{err}");
        assert_eq!(shown("é".repeat(30).as_str()).len(), 40 + 3);
    }

    #[test]
    fn regex_size_limit_refuses_blow_ups_but_allows_unicode_classes() {
        let limits = FilterLimits::default();
        for ok in [r"\w+@\w+\.\w+", r"^[\p{L}\p{N}_-]+$", r"(?-u:\w){1,64}", r"(?i)\bstraße\b"] {
            for lookup in ["a__regex", "a__iregex"] {
                assert!(Filter::parse(Some(&json!({ lookup: ok })), None, &limits).is_ok(), "{lookup} {ok}");
            }
        }
        for blow_up in [r"(\w{50}){50}", r"\w{1,64}", r"\w{19}", r"\w{6}"] {
            let err = Filter::parse(Some(&json!({"a__regex": blow_up})), None, &limits).unwrap_err();
            assert_eq!(err.kind(), "regex_too_complex", "{blow_up}");
        }
    }

    #[test]
    fn limits_are_checked_before_anything_is_compiled() {
        let limits = FilterLimits::default();
        // An invalid pattern is not compiled by prepare: it passes, and fails only when compiled.
        let prepared = Filter::prepare(Some(&json!({"a__regex": "("})), None, &limits).unwrap();
        assert_eq!(prepared.regexes().count(), 1);
        assert_eq!(Filter::parse(Some(&json!({"a__regex": "("})), None, &limits).unwrap_err().kind(), "bad_regex");
        // Over the regex count (with a pattern that would not compile, and one that would be too complex):
        // refused as too_many_regexes, whatever the patterns.
        let five = json!({"a__regex": "(", "b__regex": r"\w{19}", "c__iregex": "c", "d__regex": "d"});
        let err = Filter::prepare(Some(&five), Some(&json!({"e__iregex": "e"})), &limits).unwrap_err();
        assert_eq!((err.kind(), err.to_string().as_str()), ("too_many_regexes", "more than 4 regex conditions"));
        // The count is a limit: 4 pass prepare, each compiled once, in regexes() order.
        let four = json!({"a__regex": "a", "b__regex": "b", "c__iregex": "c", "d__regex": "d", "n": 1});
        let prepared = Filter::prepare(Some(&four), None, &limits).unwrap();
        let order: Vec<RegexKey> = prepared.regexes().cloned().collect();
        let mut asked = Vec::new();
        let filter = prepared
            .compile_with(|key| {
                asked.push(key.clone());
                CompiledRegex::compile(key).map(Arc::new)
            })
            .unwrap();
        assert_eq!(asked, order);
        assert!(order.iter().any(|k| k.insensitive && &*k.pattern == "c"));
        assert!(filter.matches(&json!({"a": "xa", "b": "b", "c": "C", "d": "d", "n": 1})));
        assert!(filter.regex_bytes() > 0);
        let tighter = FilterLimits { max_regex_conditions: 3, ..limits };
        assert_eq!(Filter::prepare(Some(&four), None, &tighter).unwrap_err().kind(), "too_many_regexes");
    }

    #[test]
    fn a_compile_failure_names_its_key_and_clause() {
        let prepared = Filter::prepare(
            Some(&json!({"ok__regex": "a"})),
            Some(&json!({"bad__iregex": "a"})),
            &FilterLimits::default(),
        )
        .unwrap();
        let err = prepared
            .compile_with(|key| {
                if key.insensitive {
                    Err(RegexError::TooComplex)
                } else {
                    CompiledRegex::compile(key).map(Arc::new)
                }
            })
            .unwrap_err();
        assert_eq!(err, FilterError::RegexTooComplex { clause: Clause::Exclude, key: "bad__iregex".into() });
    }

    #[test]
    fn compiled_size_is_estimated_from_the_program() {
        let bytes =
            |p: &str| CompiledRegex::compile(&RegexKey { pattern: p.into(), insensitive: false }).unwrap().bytes();
        let (small, unicode, bigger) = (bytes("^ord"), bytes(r"\w+"), bytes(r"\w{5}"));
        assert!(small < 8 << 10, "^ord {small}");
        assert!(unicode > 32 << 10 && unicode < 256 << 10, "\\w+ {unicode}");
        assert!(bigger > 256 << 10 && bigger < 1 << 20, "\\w{{5}} {bigger}");
    }

    proptest::proptest! {
        /// However the regex conditions are spread over filter and exclude, prepare refuses more than the limit
        /// without compiling, and compile_with compiles each accepted one exactly once.
        #[test]
        fn regex_count_is_a_prepare_limit(n_filter in 0usize..6, n_exclude in 0usize..6, plain in 0usize..4) {
            let side = |prefix: &str, n: usize| {
                let mut m = Map::new();
                for i in 0..n {
                    let lookup = if i % 2 == 0 { "regex" } else { "iregex" };
                    m.insert(format!("{prefix}{i}__{lookup}"), json!(format!("^{prefix}{i}")));
                }
                for i in 0..plain {
                    m.insert(format!("{prefix}p{i}"), json!(i));
                }
                Value::Object(m)
            };
            let limits = FilterLimits::default();
            let result = Filter::prepare(Some(&side("f", n_filter)), Some(&side("x", n_exclude)), &limits);
            let n = n_filter + n_exclude;
            if n > limits.max_regex_conditions || n + 2 * plain > limits.max_conditions {
                let kind = result.unwrap_err().kind();
                proptest::prop_assert!(kind == "too_many_regexes" || kind == "too_many_conditions", "{}", kind);
            } else {
                let mut calls = 0;
                let filter = result.unwrap().compile_with(|key| {
                    calls += 1;
                    CompiledRegex::compile(key).map(Arc::new)
                });
                proptest::prop_assert!(filter.is_ok());
                proptest::prop_assert_eq!(calls, n);
            }
        }
    }

    #[test]
    fn filter_is_send_sync() {
        fn check<T: Send + Sync + 'static>() {}
        check::<Filter>();
    }
}
