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

use std::borrow::Cow;
use std::cmp::Ordering;
use std::fmt;

use std::sync::Arc;

use regex_automata::{meta, util::syntax, MatchKind};
use serde_json::{Map, Value};

use crate::{
    protocol::decimal::{num_cmp, num_dec, Dec, DecView},
    protocol::frames::ErrorCode,
};

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

/// A pattern of a `regex`/`iregex` condition with its mode: what is compiled, and the key of the
/// node's pool of compiled regexes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RegexKey {
    pub pattern: Box<str>,
    /// `iregex`.
    pub insensitive: bool,
}

/// Why a pattern did not compile (a `bad_request` like every filter error).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RegexError {
    #[error("regex too complex")]
    TooComplex,
    #[error("invalid regex")]
    Invalid,
}

/// A compiled regex with the estimate of its memory ([`CompiledRegex::bytes`]), and, when it is
/// counted in a memory budget, the charge released when the last holder drops it.
#[derive(Debug)]
pub struct CompiledRegex {
    regex: meta::Regex,
    bytes: usize,
    /// Whatever gives the regex's bytes back to its budget when dropped (the node's is
    /// `filter_memory::Charge`; this module does not need to know the budget).
    charge: Option<Box<dyn fmt::Debug + Send + Sync>>,
}

impl CompiledRegex {
    /// Compiles with [`REGEX_SIZE_LIMIT`] and [`REGEX_CACHE_CAPACITY`] (RE2 syntax, Unicode,
    /// unanchored search; `iregex` case-insensitive: what `regex::Regex` does). CPU-bound, up to a
    /// few milliseconds at the size limit: the gateway calls it on a blocking thread.
    pub fn compile(key: &RegexKey) -> Result<CompiledRegex, RegexError> {
        let config = meta::Config::new()
            .match_kind(MatchKind::LeftmostFirst)
            .utf8_empty(true)
            .nfa_size_limit(Some(REGEX_SIZE_LIMIT))
            .hybrid_cache_capacity(REGEX_CACHE_CAPACITY);
        let regex = meta::Builder::new()
            .configure(config)
            .syntax(syntax::Config::new().case_insensitive(key.insensitive).utf8(true))
            .build(&key.pattern)
            .map_err(|e| if e.size_limit().is_some() { RegexError::TooComplex } else { RegexError::Invalid })?;
        // Honest estimate: the compiled program (NFA, any DFA, prefilter: `memory_usage`) plus one matching
        // cache as created. Caches grow with use (lazy DFA states, up to about 2 x REGEX_CACHE_CAPACITY) and
        // there is one per thread evaluating the regex; that growth is not charged.
        let bytes = std::mem::size_of::<CompiledRegex>()
            + key.pattern.len()
            + regex.memory_usage()
            + regex.create_cache().memory_usage();
        Ok(CompiledRegex { regex, bytes, charge: None })
    }

    /// Estimated memory of the compiled regex, bytes.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Counts this regex in a budget until it is dropped: `charge` is dropped with the regex.
    pub fn charged(mut self, charge: impl fmt::Debug + Send + Sync + 'static) -> CompiledRegex {
        self.charge = Some(Box::new(charge));
        self
    }

    pub fn is_match(&self, text: &str) -> bool {
        self.regex.is_match(text)
    }
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
        let mut canonical = String::new();
        for (name, conds) in [("filter", &filter), ("exclude", &exclude)] {
            if conds.is_empty() {
                continue;
            }
            canonical.push_str(if canonical.is_empty() { "{\"" } else { ",\"" });
            canonical.push_str(name);
            canonical.push_str("\":[");
            for (i, c) in conds.iter().enumerate() {
                if i > 0 {
                    canonical.push(',');
                }
                canonical.push_str(&c.canonical);
            }
            canonical.push(']');
        }
        if !canonical.is_empty() {
            canonical.push('}');
        }
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

fn object(v: Option<&Value>, clause: Clause) -> Result<Option<&Map<String, Value>>, FilterError> {
    match v {
        None => Ok(None),
        Some(Value::Object(m)) => Ok(Some(m)),
        Some(_) => Err(FilterError::NotObject(clause)),
    }
}

/// Length of `v` as compact JSON, counted up to just past `cap` (the rest is not written).
fn json_len(v: Option<&Value>, cap: usize) -> usize {
    struct Count(usize, usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            if self.0 > self.1 {
                return Err(std::io::Error::other("over the limit"));
            }
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let Some(v) = v else { return 0 };
    let mut count = Count(0, cap);
    let _ = serde_json::to_writer(&mut count, v);
    count.0
}

fn conditions(
    map: Option<&Map<String, Value>>,
    clause: Clause,
    limits: &FilterLimits,
) -> Result<Vec<Condition>, FilterError> {
    let mut out = Vec::new();
    for (key, value) in map.into_iter().flatten() {
        out.push(Condition::parse(key, value, clause, limits)?);
    }
    out.sort_by(|a, b| a.canonical.cmp(&b.canonical));
    out.dedup_by(|a, b| a.canonical == b.canonical);
    Ok(out)
}

/// One step of a field path: an object key, or (on a list) an index.
#[derive(Debug, Clone)]
struct Step {
    key: Box<str>,
    index: Option<usize>,
}

impl Step {
    fn new(part: &str) -> Step {
        let canonical_int = part == "0" || (!part.starts_with('0') && part.bytes().all(|b| b.is_ascii_digit()));
        Step { key: part.into(), index: if canonical_int { part.parse().ok() } else { None } }
    }
}

/// Reads a field; `None` when it is missing. Only an object has fields (a list at the top does
/// not: `{"0": 1}` reads nothing from `[1]`).
fn get<'a>(data: &'a Value, path: &[Step]) -> Option<&'a Value> {
    if !data.is_object() {
        return None;
    }
    path.iter().try_fold(data, |cur, step| match cur {
        Value::Object(m) => m.get(&*step.key),
        Value::Array(a) => step.index.and_then(|i| a.get(i)),
        _ => None,
    })
}

#[derive(Debug, Clone)]
struct Condition {
    /// The client's key (for errors found when compiling).
    key: Box<str>,
    path: Vec<Step>,
    test: Test,
    /// `["path__lookup",value]` in canonical form.
    canonical: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Text {
    Contains,
    StartsWith,
    EndsWith,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cmp {
    Gt,
    Gte,
    Lt,
    Lte,
}

#[derive(Debug, Clone)]
enum Test {
    IsNull(bool),
    Exact(Operand),
    /// Case-folded value.
    IExact(String),
    /// Value case-folded when `fold`.
    Text {
        how: Text,
        fold: bool,
        value: String,
    },
    /// Non-null values; `null` is whether the list held a `null`.
    In {
        values: Vec<Operand>,
        null: bool,
    },
    Cmp(Cmp, Operand),
    Range(Operand, Operand),
    /// Compiled by [`PreparedFilter::compile_with`]; a [`Filter`] has every one.
    Regex {
        key: RegexKey,
        compiled: Option<Arc<CompiledRegex>>,
    },
}

impl Condition {
    fn parse(key: &str, value: &Value, clause: Clause, limits: &FilterLimits) -> Result<Condition, FilterError> {
        let parts: Vec<&str> = key.split("__").collect();
        if parts.iter().any(|p| p.is_empty()) {
            return Err(FilterError::BadKey { clause, key: shown(key) });
        }
        let (fields, lookup) = match parts.split_last() {
            Some((last, rest)) if !rest.is_empty() && LOOKUPS.contains(last) => (rest, *last),
            _ => (&parts[..], crate::protocol::constants::filters::DEFAULT_LOOKUP),
        };
        let lookup = LOOKUPS
            .iter()
            .copied()
            .find(|l| *l == lookup)
            .unwrap_or(crate::protocol::constants::filters::DEFAULT_LOOKUP);
        let bad = |expected: &'static str| FilterError::BadValue { clause, key: shown(key), lookup, expected };
        let string = || value.as_str().ok_or_else(|| bad("a string"));
        let (test, lookup, canon_value) = match lookup {
            "exact" | "iexact" if value.is_null() => (Test::IsNull(true), "isnull", "true".to_owned()),
            "exact" => {
                let op = Operand::new(value);
                let c = canon(value);
                (Test::Exact(op), lookup, c)
            }
            "iexact" => {
                let v = fold(string()?).into_owned();
                let c = canon_str(&v);
                (Test::IExact(v), lookup, c)
            }
            "isnull" => {
                let b = value.as_bool().ok_or_else(|| bad("true or false"))?;
                (Test::IsNull(b), lookup, b.to_string())
            }
            "contains" | "icontains" | "startswith" | "istartswith" | "endswith" | "iendswith" => {
                let fold_case = lookup.starts_with('i');
                let how = match lookup.trim_start_matches('i') {
                    "contains" => Text::Contains,
                    "startswith" => Text::StartsWith,
                    _ => Text::EndsWith,
                };
                let s = string()?;
                let v = if fold_case { fold(s).into_owned() } else { s.to_owned() };
                let c = canon_str(&v);
                (Test::Text { how, fold: fold_case, value: v }, lookup, c)
            }
            "in" => {
                let list = value.as_array().ok_or_else(|| bad("a list"))?;
                if list.len() > limits.max_in_values {
                    return Err(FilterError::TooManyValues { clause, key: shown(key), limit: limits.max_in_values });
                }
                let mut texts: Vec<String> = list.iter().map(canon).collect();
                texts.sort();
                texts.dedup();
                let values = list.iter().filter(|v| !v.is_null()).map(Operand::new).collect();
                let test = Test::In { values, null: list.iter().any(Value::is_null) };
                (test, lookup, format!("[{}]", texts.join(",")))
            }
            "gt" | "gte" | "lt" | "lte" => {
                let op = ordered(value).ok_or_else(|| bad("a number or a string"))?;
                let cmp = match lookup {
                    "gt" => Cmp::Gt,
                    "gte" => Cmp::Gte,
                    "lt" => Cmp::Lt,
                    _ => Cmp::Lte,
                };
                (Test::Cmp(cmp, op), lookup, canon(value))
            }
            "range" => {
                let pair = match value.as_array().map(Vec::as_slice) {
                    Some([lo, hi]) => ordered(lo).zip(ordered(hi)),
                    _ => None,
                };
                let (lo, hi) = pair.ok_or_else(|| bad("[low, high] of numbers or strings"))?;
                (Test::Range(lo, hi), lookup, canon(value))
            }
            _ => {
                // regex, iregex
                let pattern = string()?;
                if pattern.len() > limits.max_regex_bytes {
                    return Err(FilterError::RegexTooLong { clause, key: shown(key), limit: limits.max_regex_bytes });
                }
                let key = RegexKey { pattern: pattern.into(), insensitive: lookup == "iregex" };
                (Test::Regex { key, compiled: None }, lookup, canon_str(pattern))
            }
        };
        let canonical_key = format!("{}__{}", fields.join("__"), lookup);
        let canonical = format!("[{},{}]", canon_str(&canonical_key), canon_value);
        Ok(Condition { key: key.into(), path: fields.iter().map(|p| Step::new(p)).collect(), test, canonical })
    }

    fn holds(&self, data: &Value) -> bool {
        let field = get(data, &self.path);
        let Some(v) = field.filter(|v| !v.is_null()) else {
            return match self.test {
                Test::IsNull(want) => want,
                Test::In { null, .. } => null,
                _ => false,
            };
        };
        match &self.test {
            Test::IsNull(want) => !want,
            Test::Exact(op) => op.equals(v),
            Test::IExact(want) => v.as_str().is_some_and(|s| fold(s) == want.as_str()),
            Test::Text { how, fold: fold_case, value } => v.as_str().is_some_and(|s| {
                let s = if *fold_case { fold(s) } else { Cow::Borrowed(s) };
                match how {
                    Text::Contains => s.contains(value.as_str()),
                    Text::StartsWith => s.starts_with(value.as_str()),
                    Text::EndsWith => s.ends_with(value.as_str()),
                }
            }),
            Test::In { values, .. } => values.iter().any(|op| op.equals(v)),
            Test::Cmp(cmp, op) => op.compare(v).is_some_and(|o| match cmp {
                Cmp::Gt => o == Ordering::Greater,
                Cmp::Gte => o != Ordering::Less,
                Cmp::Lt => o == Ordering::Less,
                Cmp::Lte => o != Ordering::Greater,
            }),
            Test::Range(lo, hi) => {
                lo.compare(v).is_some_and(|o| o != Ordering::Less)
                    && hi.compare(v).is_some_and(|o| o != Ordering::Greater)
            }
            Test::Regex { compiled, .. } => {
                v.as_str().is_some_and(|s| compiled.as_ref().is_some_and(|re| re.is_match(s)))
            }
        }
    }
}

/// Unicode simple lowercase of every code point (the first code point of the full lowercase).
pub fn fold(s: &str) -> Cow<'_, str> {
    fn lower(c: char) -> char {
        if c.is_ascii() {
            c.to_ascii_lowercase()
        } else {
            c.to_lowercase().next().unwrap_or(c)
        }
    }
    if s.chars().all(|c| lower(c) == c) {
        Cow::Borrowed(s)
    } else {
        Cow::Owned(s.chars().map(lower).collect())
    }
}

/// A filter's value with its decimal, when it is a number or a decimal string.
#[derive(Debug, Clone)]
struct Operand {
    value: Value,
    dec: Option<Dec>,
}

impl Operand {
    fn new(value: &Value) -> Operand {
        let dec = match value {
            Value::Number(n) => Some(num_dec(n, Dec::from_view)),
            Value::String(s) => DecView::parse(s).map(Dec::from_view),
            _ => None,
        };
        Operand { value: value.clone(), dec }
    }

    /// Equality of a (non-null) field with this value.
    fn equals(&self, field: &Value) -> bool {
        match (field, &self.value, &self.dec) {
            (Value::Number(a), Value::Number(b), _) => num_cmp(a, b) == Ordering::Equal,
            (Value::String(s), Value::Number(_), Some(d)) => {
                DecView::parse(s).is_some_and(|f| f.cmp(&d.view()) == Ordering::Equal)
            }
            (Value::Number(n), Value::String(_), Some(d)) => num_dec(n, |f| f.cmp(&d.view())) == Ordering::Equal,
            _ => json_eq(field, &self.value),
        }
    }

    /// Order of a (non-null) field against this value; `None` when they do not compare.
    fn compare(&self, field: &Value) -> Option<Ordering> {
        match (field, &self.value) {
            (Value::Number(a), Value::Number(b)) => Some(num_cmp(a, b)),
            (Value::String(s), Value::String(t)) => match (DecView::parse(s), &self.dec) {
                (Some(f), Some(d)) => Some(f.cmp(&d.view())),
                _ => Some(s.as_str().cmp(t.as_str())),
            },
            (Value::String(s), Value::Number(_)) => {
                let d = self.dec.as_ref()?;
                DecView::parse(s).map(|f| f.cmp(&d.view()))
            }
            (Value::Number(n), Value::String(_)) => {
                let d = self.dec.as_ref()?;
                Some(num_dec(n, |f| f.cmp(&d.view())))
            }
            _ => None,
        }
    }
}

/// An operand for `gt`..`range`: numbers and strings only.
fn ordered(v: &Value) -> Option<Operand> {
    (v.is_number() || v.is_string()).then(|| Operand::new(v))
}

/// JSON equality where numbers and decimal strings are equal by value (a string and a string
/// only when identical).
fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Null, Value::Null) => true,
        (Value::Bool(x), Value::Bool(y)) => x == y,
        (Value::Number(x), Value::Number(y)) => num_cmp(x, y) == Ordering::Equal,
        (Value::String(x), Value::String(y)) => x == y,
        (Value::Number(n), Value::String(s)) | (Value::String(s), Value::Number(n)) => {
            DecView::parse(s).is_some_and(|d| num_dec(n, |nd| nd.cmp(&d)) == Ordering::Equal)
        }
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(p, q)| json_eq(p, q)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
        }
        _ => false,
    }
}

fn canon_str(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

/// Canonical JSON of a value: object keys sorted, numbers normalised.
fn canon(v: &Value) -> String {
    fn write(out: &mut String, v: &Value) {
        match v {
            Value::Number(n) => out.push_str(&num_dec(n, Dec::from_view).to_string()),
            Value::String(s) => out.push_str(&canon_str(s)),
            Value::Array(a) => {
                out.push('[');
                for (i, x) in a.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write(out, x);
                }
                out.push(']');
            }
            Value::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                out.push('{');
                for (i, k) in keys.into_iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&canon_str(k));
                    out.push(':');
                    write(out, &m[k]);
                }
                out.push('}');
            }
            _ => out.push_str(&v.to_string()),
        }
    }
    let mut out = String::new();
    write(&mut out, v);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
