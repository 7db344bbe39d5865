//! The canonical text of a filter ([`super::Filter::canonical`]): equal for filters that mean the same.

use serde_json::Value;

use super::eval::Condition;
use crate::protocol::decimal::{num_dec, Dec};

/// The canonical text of checked conditions (each already in canonical form, sorted and deduplicated).
pub(super) fn of_filter(filter: &[Condition], exclude: &[Condition]) -> String {
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
    canonical
}

pub(super) fn canon_str(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

/// Canonical JSON of a value: object keys sorted, numbers normalised.
pub(super) fn canon(v: &Value) -> String {
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
