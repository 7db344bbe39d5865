//! Event names, patterns, matching and containment (proto/PROTOCOL.md section 1),
//! and the model-event key escape (section 2, "Model events").
//!
//! * An **event name** is 1 to [`MAX_TOKENS`] tokens joined by `.`; a token is one or more
//!   characters of `[A-Za-z0-9_-]`; the whole name is at most [`MAX_NAME_BYTES`] bytes.
//! * A **pattern** is a name in which any token may be `*` (exactly one token) and the last token
//!   may be `>` (one or more tokens): the NATS wildcards with the NATS meaning.
//! * [`matches()`] decides whether a pattern matches a name; [`contains`] decides whether every name
//!   one pattern matches is matched by another (used for permissions: a token's `allow` pattern
//!   must contain the pattern a client subscribes to).
//! * [`key_token`] turns a model's primary key into a single name token, injectively.
//!
//! The shared vectors are `proto/vectors/names.json`, `match.json`, `contains.json` and
//! `keys.json`; `tests/vectors.rs` checks every case.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

/// Most tokens in a name or pattern.
pub const MAX_TOKENS: usize = crate::protocol::constants::names::MAX_TOKENS;
/// Most bytes in a name or pattern.
pub const MAX_NAME_BYTES: usize = crate::protocol::constants::names::MAX_BYTES;
/// Longest primary key (in characters of the token alphabet) that [`key_token`] keeps as is.
pub const MAX_PLAIN_KEY: usize = crate::protocol::constants::names::MAX_PLAIN_KEY_CHARS;

/// Why a string is not a valid event name or pattern. The messages are fixed texts (they never
/// repeat the input), so they are safe to send to a client in an `error` frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("name is empty")]
    Empty,
    #[error("name is longer than {MAX_NAME_BYTES} bytes")]
    TooLong,
    #[error("name has more than {MAX_TOKENS} tokens")]
    TooManyTokens,
    #[error("name has an empty token")]
    EmptyToken,
    #[error("name token has a character outside [A-Za-z0-9_-]")]
    BadChar,
    #[error("wildcard must be a whole token and '>' only the last one")]
    MisplacedWildcard,
    #[error("event names cannot contain wildcards")]
    Wildcard,
}

/// Whether `b` may appear in a (literal) name token.
#[inline]
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

/// Whether `t` is a non-empty literal token (no wildcards).
#[inline]
pub fn is_literal_token(t: &str) -> bool {
    !t.is_empty() && t.bytes().all(is_token_byte)
}

/// The one validator behind [`validate_name`] and [`validate_pattern`].
fn validate(s: &str, wildcards: bool) -> Result<(), NameError> {
    if s.is_empty() {
        return Err(NameError::Empty);
    }
    if s.len() > MAX_NAME_BYTES {
        return Err(NameError::TooLong);
    }
    let mut count = 0;
    let mut tokens = s.split('.').peekable();
    while let Some(t) = tokens.next() {
        count += 1;
        if count > MAX_TOKENS {
            return Err(NameError::TooManyTokens);
        }
        if t.is_empty() {
            return Err(NameError::EmptyToken);
        }
        if is_literal_token(t) {
            continue;
        }
        let has_wildcard = t.bytes().any(|b| b == b'*' || b == b'>');
        if !has_wildcard {
            return Err(NameError::BadChar);
        }
        if !wildcards {
            return Err(NameError::Wildcard);
        }
        let whole = t == "*" || (t == ">" && tokens.peek().is_none());
        if !whole {
            return Err(NameError::MisplacedWildcard);
        }
    }
    Ok(())
}

/// Checks an event name (no wildcards allowed).
pub fn validate_name(s: &str) -> Result<(), NameError> {
    validate(s, false)
}

/// Checks a pattern: a name whose tokens may be `*`, and whose last token may be `>`.
pub fn validate_pattern(s: &str) -> Result<(), NameError> {
    validate(s, true)
}

/// Whether `pattern` matches `name` (NATS semantics). Both are assumed valid
/// ([`validate_pattern`] / [`validate_name`]); the result on invalid input is unspecified but
/// never a panic. Does not allocate.
pub fn matches(pattern: &str, name: &str) -> bool {
    let mut p = pattern.split('.');
    let mut n = name.split('.');
    loop {
        match (p.next(), n.next()) {
            (Some(">"), Some(_)) => return true,
            (Some("*"), Some(_)) => {}
            (Some(pt), Some(nt)) if pt == nt => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// Whether pattern `outer` contains pattern `inner`: every name `inner` matches, `outer` matches
/// too. Decision rule of PROTOCOL.md section 1, token by token over `inner`. Both are assumed
/// valid patterns. Does not allocate.
pub fn contains(outer: &str, inner: &str) -> bool {
    let mut a = outer.split('.');
    let mut b = inner.split('.');
    loop {
        match (a.next(), b.next()) {
            (Some(">"), Some(_)) => return true,
            (Some(_), Some(">")) => return false,
            (Some("*"), Some(_)) => {}
            (Some(at), Some(bt)) if at == bt => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// Encodes a model's primary key (`str(pk)`) as one name token (PROTOCOL.md section 2):
/// the key itself when it is 1 to 64 characters of `[A-Za-z0-9_-]` not starting with `-`,
/// else `-` followed by the unpadded base64url of its UTF-8 bytes. Injective: escaped keys start
/// with `-`, plain ones never do. (A very long key gives a long token; the caller must still
/// check that the whole event name fits [`MAX_NAME_BYTES`].)
pub fn key_token(key: &str) -> String {
    if key.len() <= MAX_PLAIN_KEY && !key.starts_with('-') && is_literal_token(key) {
        return key.to_owned();
    }
    let mut out = String::with_capacity(1 + key.len().div_ceil(3) * 4);
    out.push('-');
    URL_SAFE_NO_PAD.encode_string(key.as_bytes(), &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_rule_broken() {
        assert_eq!(validate_name(""), Err(NameError::Empty));
        assert_eq!(validate_name(&"a".repeat(256)), Err(NameError::TooLong));
        assert_eq!(validate_name(&["a"; 17].join(".")), Err(NameError::TooManyTokens));
        assert_eq!(validate_name("a..b"), Err(NameError::EmptyToken));
        assert_eq!(validate_name("a b"), Err(NameError::BadChar));
        assert_eq!(validate_name("a.*"), Err(NameError::Wildcard));
        assert_eq!(validate_pattern("a.>.b"), Err(NameError::MisplacedWildcard));
        assert_eq!(validate_pattern("a*"), Err(NameError::MisplacedWildcard));
        assert_eq!(validate_pattern("a.>>"), Err(NameError::MisplacedWildcard));
    }

    #[test]
    fn limits_are_inclusive() {
        let sixteen = ["a"; 16].join(".");
        assert_eq!(validate_name(&sixteen), Ok(()));
        assert_eq!(validate_name(&"a".repeat(255)), Ok(()));
        let pattern16 = format!("{}.>", ["*"; 15].join("."));
        assert_eq!(validate_pattern(&pattern16), Ok(()));
    }

    #[test]
    fn error_messages_do_not_echo_input() {
        let err = validate_name("secret<script>").unwrap_err();
        assert!(!err.to_string().contains("secret"));
    }

    #[test]
    fn key_token_boundary_at_64() {
        let k64 = "k".repeat(64);
        assert_eq!(key_token(&k64), k64);
        let k65 = "k".repeat(65);
        assert!(key_token(&k65).starts_with('-'));
        assert_eq!(validate_name(&key_token(&k65)), Ok(()));
    }
}
