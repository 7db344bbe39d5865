//! One catalog entry (proto/PROTOCOL.md section 12): the KV key rule, the checks of a stored value in the
//! section's order (size before parsing, JSON object, `format`, fields, key) and the overlap of two patterns.
//! The shared vectors are `proto/vectors/catalog.json` (`overlap`, `keys`, `entries`); `tests/vectors.rs`.

use serde_json::{Map, Value};

use crate::{protocol::constants::catalog as consts, protocol::names};

/// Largest stored value a reader parses (`MAX_ENTRY_BYTES`).
pub const MAX_ENTRY_BYTES: usize = consts::MAX_ENTRY_BYTES;
/// Most patterns of an entry.
pub const MAX_PATTERNS: usize = consts::MAX_PATTERNS;
/// Longest description, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = consts::MAX_DESCRIPTION_CHARS;
/// The entry format this module reads.
pub const FORMAT: u64 = consts::FORMAT as u64;
const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;
const MAX_OWNER_CHARS: usize = 64;

/// Why a stored value is not an entry; [`Invalid::reason`] is the label of `telegraphy_catalog_invalid_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Invalid {
    #[error("more than {MAX_ENTRY_BYTES} bytes")]
    TooBig,
    #[error("not a UTF-8 JSON object")]
    NotJson,
    #[error("{0}")]
    Field(&'static str),
    #[error("the key is not <owner>.<template pattern> of the entry")]
    KeyMismatch,
}

impl Invalid {
    pub fn reason(&self) -> &'static str {
        match self {
            Invalid::TooBig => "too_big",
            Invalid::NotJson => "not_json",
            Invalid::Field(_) => "invalid",
            Invalid::KeyMismatch => "key_mismatch",
        }
    }
}

/// A valid entry as a node keeps it: its patterns (for overlap checks) and its listed form, serialised once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub name: Box<str>,
    /// Also in the node's strict-mode index (`index`), which counts them.
    pub patterns: Box<[Box<str>]>,
    /// The entry as an `events` reply lists it: the stored value's `name`, `patterns`, `kind`, `operations`,
    /// `description`, `data`, `presence` and `version`, in that order, compact JSON.
    pub listed: Box<str>,
}

impl Entry {
    /// Whether one of the entry's patterns overlaps `pattern`.
    pub fn overlaps(&self, pattern: &str) -> bool {
        self.patterns.iter().any(|p| overlaps(p, pattern))
    }
}

/// Patterns `a` and `b` overlap when some event name matches both (both assumed valid): token by token, a `>`
/// on either side overlaps what is left (at least one token), `*` any token, literals must be equal; both must
/// run out together. Symmetric; a name overlaps a pattern exactly when the pattern matches it. No allocation.
pub fn overlaps(a: &str, b: &str) -> bool {
    let mut x = a.split('.');
    let mut y = b.split('.');
    loop {
        match (x.next(), y.next()) {
            (None, None) => return true,
            (None, Some(_)) | (Some(_), None) => return false,
            (Some(">"), Some(_)) | (Some(_), Some(">")) => return true,
            (Some(s), Some(t)) if s == "*" || t == "*" || s == t => {}
            _ => return false,
        }
    }
}

/// The pattern of a name template: each whole `{param}` token as `*`; None when a token is neither a literal
/// nor a whole `{param}`, a param repeats, or the result is not a valid pattern.
pub fn template_pattern(name: &str) -> Option<String> {
    let mut params: Vec<&str> = Vec::new();
    let mut out = String::with_capacity(name.len());
    for (i, token) in name.split('.').enumerate() {
        if i > 0 {
            out.push('.');
        }
        if let Some(param) = token.strip_prefix('{').and_then(|t| t.strip_suffix('}')) {
            if !names::is_literal_token(param) || params.contains(&param) {
                return None;
            }
            params.push(param);
            out.push('*');
        } else if names::is_literal_token(token) {
            out.push_str(token);
        } else {
            return None;
        }
    }
    names::validate_pattern(&out).ok().map(|()| out)
}

fn valid_owner(owner: &str) -> bool {
    (1..=MAX_OWNER_CHARS).contains(&owner.len()) && names::is_literal_token(owner)
}

/// The KV key of `owner`'s entry for template `name`: `<owner>.<template pattern with each * written =>`;
/// None for an invalid owner or template.
pub fn entry_key(owner: &str, name: &str) -> Option<String> {
    if !valid_owner(owner) {
        return None;
    }
    let pattern = template_pattern(name)?;
    Some(format!("{owner}.{}", pattern.replace('*', "=")))
}

fn int(obj: &Map<String, Value>, field: &str, low: u64) -> Option<u64> {
    obj.get(field).and_then(Value::as_u64).filter(|v| (low..=MAX_SAFE_INTEGER).contains(v))
}

fn string<'a>(obj: &'a Map<String, Value>, field: &str) -> Option<&'a str> {
    obj.get(field).and_then(Value::as_str)
}

fn distinct<T: PartialEq>(items: &[T]) -> bool {
    items.iter().enumerate().all(|(i, a)| !items[..i].contains(a))
}

/// Checks one stored value under `key`, in the order of section 12: size, JSON object, `format`, fields, key.
/// `Ok(None)`: an entry of a later integer `format`, left alone (not an error).
pub fn parse(key: &str, value: &[u8]) -> Result<Option<Entry>, Invalid> {
    if value.len() > MAX_ENTRY_BYTES {
        return Err(Invalid::TooBig);
    }
    let Ok(Value::Object(obj)) = serde_json::from_slice::<Value>(value) else {
        return Err(Invalid::NotJson);
    };
    match obj.get("format").and_then(Value::as_u64) {
        Some(FORMAT) => {}
        Some(f) if f > FORMAT && f <= MAX_SAFE_INTEGER => return Ok(None),
        _ => return Err(Invalid::Field("format must be 1")),
    }
    let owner = string(&obj, "owner").filter(|o| valid_owner(o)).ok_or(Invalid::Field("bad owner"))?;
    int(&obj, "generation", 0).ok_or(Invalid::Field("generation must be an integer 0..2^53-1"))?;
    int(&obj, "version", 1).ok_or(Invalid::Field("version must be an integer 1..2^53-1"))?;
    let name = string(&obj, "name").ok_or(Invalid::Field("name must be a string"))?;
    let template = template_pattern(name).ok_or(Invalid::Field("name is not a valid template"))?;
    let patterns: Vec<&str> = match obj.get("patterns") {
        Some(Value::Array(items)) => items.iter().map(Value::as_str).collect::<Option<_>>().unwrap_or_default(),
        _ => Vec::new(),
    };
    if !(1..=MAX_PATTERNS).contains(&patterns.len())
        || !patterns.iter().all(|p| names::validate_pattern(p).is_ok())
        || !distinct(&patterns)
    {
        return Err(Invalid::Field("patterns must be 1..32 distinct valid patterns"));
    }
    let model = match string(&obj, "kind") {
        Some("model") => true,
        Some("custom") => false,
        _ => return Err(Invalid::Field("kind must be model or custom")),
    };
    let operations: Option<Vec<&str>> = match obj.get("operations") {
        Some(Value::Array(items)) => items.iter().map(Value::as_str).collect(),
        _ => None,
    };
    let operations_ok = operations.is_some_and(|ops| {
        ops.iter().all(|op| matches!(*op, "create" | "update" | "delete")) && distinct(&ops) && model != ops.is_empty()
    });
    if !operations_ok {
        return Err(Invalid::Field("operations must be distinct create/update/delete, some for a model only"));
    }
    if string(&obj, "description").is_none_or(|d| d.chars().count() > MAX_DESCRIPTION_CHARS) {
        return Err(Invalid::Field("description must be a string of at most 4096 characters"));
    }
    if !matches!(obj.get("data"), Some(Value::Object(_) | Value::Bool(_))) {
        return Err(Invalid::Field("data must be a JSON Schema (an object or a boolean)"));
    }
    match obj.get("presence") {
        Some(Value::Null) => {}
        Some(Value::String(p)) if template_pattern(p).is_some() => {}
        _ => return Err(Invalid::Field("presence must be null or a template")),
    }
    if key.strip_prefix(owner).and_then(|k| k.strip_prefix('.')) != Some(&template.replace('*', "=")) {
        return Err(Invalid::KeyMismatch);
    }
    let mut listed = String::with_capacity(value.len());
    listed.push('{');
    for (i, field) in
        ["name", "patterns", "kind", "operations", "description", "data", "presence", "version"].into_iter().enumerate()
    {
        if i > 0 {
            listed.push(',');
        }
        listed.push_str(&serde_json::to_string(field).expect("a string serialises"));
        listed.push(':');
        listed.push_str(&serde_json::to_string(&obj[field]).expect("a JSON value serialises"));
    }
    listed.push('}');
    Ok(Some(Entry {
        name: name.into(),
        patterns: patterns.iter().map(|p| Box::<str>::from(*p)).collect(),
        listed: listed.into(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_listed_form_keeps_the_section_order_and_drops_the_writer_fields() {
        let value = br#"{"format":1,"name":"a.{x}","patterns":["a.*"],"kind":"custom","operations":[],"description":"d","data":{},"presence":null,"version":3,"owner":"o","generation":1,"later":1}"#;
        let entry = parse("o.a.=", value).unwrap().unwrap();
        assert_eq!(
            &*entry.listed,
            r#"{"name":"a.{x}","patterns":["a.*"],"kind":"custom","operations":[],"description":"d","data":{},"presence":null,"version":3}"#
        );
        assert_eq!(&*entry.name, "a.{x}");
    }

    #[test]
    fn a_float_format_or_generation_is_invalid() {
        let value = br#"{"format":1,"name":"a","patterns":["a"],"kind":"custom","operations":[],"description":"","data":{},"presence":null,"version":1,"owner":"o","generation":1.5}"#;
        assert_eq!(parse("o.a", value), Err(Invalid::Field("generation must be an integer 0..2^53-1")));
    }
}
