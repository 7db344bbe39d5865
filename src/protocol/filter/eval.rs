//! The conditions of a filter and their evaluation on an event's data: paths, equality, order, text, regex.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::sync::Arc;

use serde_json::Value;

use super::{CompiledRegex, RegexKey};
use crate::protocol::decimal::{num_cmp, num_dec, Dec, DecView};

/// One step of a field path: an object key, or (on a list) an index.
#[derive(Debug, Clone)]
pub(super) struct Step {
    pub(super) key: Box<str>,
    pub(super) index: Option<usize>,
}

impl Step {
    pub(super) fn new(part: &str) -> Step {
        let canonical_int = part == "0" || (!part.starts_with('0') && part.bytes().all(|b| b.is_ascii_digit()));
        Step { key: part.into(), index: if canonical_int { part.parse().ok() } else { None } }
    }
}

/// Reads a field; `None` when it is missing. Only an object has fields (a list at the top does
/// not: `{"0": 1}` reads nothing from `[1]`).
pub(super) fn get<'a>(data: &'a Value, path: &[Step]) -> Option<&'a Value> {
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
pub(super) struct Condition {
    /// The client's key (for errors found when compiling).
    pub(super) key: Box<str>,
    pub(super) path: Vec<Step>,
    pub(super) test: Test,
    /// `["path__lookup",value]` in canonical form.
    pub(super) canonical: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Text {
    Contains,
    StartsWith,
    EndsWith,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Cmp {
    Gt,
    Gte,
    Lt,
    Lte,
}

#[derive(Debug, Clone)]
pub(super) enum Test {
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
    pub(super) fn holds(&self, data: &Value) -> bool {
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
pub(super) struct Operand {
    value: Value,
    dec: Option<Dec>,
}

impl Operand {
    pub(super) fn new(value: &Value) -> Operand {
        let dec = match value {
            Value::Number(n) => Some(num_dec(n, Dec::from_view)),
            Value::String(s) => DecView::parse(s).map(Dec::from_view),
            _ => None,
        };
        Operand { value: value.clone(), dec }
    }

    /// Equality of a (non-null) field with this value.
    pub(super) fn equals(&self, field: &Value) -> bool {
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
    pub(super) fn compare(&self, field: &Value) -> Option<Ordering> {
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
pub(super) fn ordered(v: &Value) -> Option<Operand> {
    (v.is_number() || v.is_string()).then(|| Operand::new(v))
}

/// JSON equality where numbers and decimal strings are equal by value (a string and a string
/// only when identical).
pub(super) fn json_eq(a: &Value, b: &Value) -> bool {
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
