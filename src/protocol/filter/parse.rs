//! From a client's `filter`/`exclude` objects to checked conditions: keys, lookups, values, limits.

use serde_json::{Map, Value};

use super::canonical::{canon, canon_str};
use super::eval::{ordered, Cmp, Condition, Operand, Step, Test, Text};
use super::{fold, shown, Clause, FilterError, FilterLimits, RegexKey, LOOKUPS};

pub(super) fn object(v: Option<&Value>, clause: Clause) -> Result<Option<&Map<String, Value>>, FilterError> {
    match v {
        None => Ok(None),
        Some(Value::Object(m)) => Ok(Some(m)),
        Some(_) => Err(FilterError::NotObject(clause)),
    }
}

/// Length of `v` as compact JSON, counted up to just past `cap` (the rest is not written).
pub(super) fn json_len(v: Option<&Value>, cap: usize) -> usize {
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

pub(super) fn conditions(
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

impl Condition {
    pub(super) fn parse(
        key: &str,
        value: &Value,
        clause: Clause,
        limits: &FilterLimits,
    ) -> Result<Condition, FilterError> {
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
}
