//! Signed connect and resume tokens (proto/PROTOCOL.md section 4).
//!
//! ```text
//! tg1.<claims>.<sig>     connect token        tg1r.<claims>.<sig>     resume token
//! claims = base64url_nopad(compact UTF-8 JSON object: jti, sub, allow, iat, exp[, rev][, sid][, info]
//!                          [, publish][, publish_ephemeral][, rpc])
//! sig    = base64url_nopad(HMAC-SHA256(secret, "<prefix>." + claims))
//! ```
//! The signature covers the prefix and the claims part exactly as sent, so verifiers never
//! re-serialise JSON, and a resume token cannot pass as a connect token (or the reverse).
//!
//! A [`Keyring`] holds one or more secrets of at least 32 bytes: the first signs, all verify
//! (rotation). [`Keyring::verify`] checks, in this order, and stops at the first failure:
//! 1. size (at most [`MAX_TOKEN_BYTES`]), shape (three `.`-separated parts, unpadded base64url,
//!    a 32-byte signature) and prefix (`tg1` or `tg1r`)                     -> `Malformed`;
//! 2. the HMAC under each secret, constant time (`ring::hmac::verify`)      -> `BadSignature`;
//!    nothing of the claims is parsed before this passes;
//! 3. the claims JSON: object with the right types, `jti` 32 lowercase hex, `allow` at most
//!    [`MAX_ALLOW`] valid patterns, `sid` present for resume tokens, `info` a small object
//!    ([`check_info`]), the action grants ([`Grants`]: arrays of at most [`MAX_GRANT_PATTERNS`] valid
//!    patterns, section 13)                                                 -> `Malformed`;
//! 4. `iat <= now + CLOCK_SKEW`                                             -> `Malformed`
//!    (a token issued in the future is treated as malformed, as in `vectors/tokens.json`);
//! 5. `exp > now - CLOCK_SKEW`                                              -> `Expired`.
//!
//! The expiry leeway is decided here as symmetric clock skew: PROTOCOL.md says "`exp` > now (no
//! leeway beyond 5 s of clock skew)", so a token is still accepted up to [`CLOCK_SKEW`] seconds
//! after its `exp` and refused from `exp + CLOCK_SKEW` on. Single use, revocation and
//! permissions are the caller's (session/auth-KV) business. Errors never contain the token or
//! a secret; [`TokenError::category`] gives the category names of `vectors/tokens.json`.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ring::hmac;
use ring::rand::{SecureRandom as _, SystemRandom};

use crate::protocol::names;

/// Largest token accepted, in bytes.
pub const MAX_TOKEN_BYTES: usize = crate::protocol::constants::tokens::MAX_BYTES;
/// Most patterns in `allow`.
pub const MAX_ALLOW: usize = crate::protocol::constants::tokens::MAX_ALLOW;
/// Tolerated clock difference between minting and verifying hosts, in seconds.
pub const CLOCK_SKEW: i64 = crate::protocol::constants::tokens::CLOCK_SKEW;
/// Shortest secret, in bytes.
pub const MIN_SECRET_BYTES: usize = crate::protocol::constants::tokens::MIN_SECRET_BYTES;
/// Largest `info` claim (a JSON object shown by presence), in bytes of compact JSON.
pub const MAX_INFO_BYTES: usize = crate::protocol::constants::tokens::MAX_INFO_BYTES;

/// Most patterns in each action grant (`publish`, `publish_ephemeral`, `rpc`; proto/PROTOCOL.md section 13).
pub const MAX_GRANT_PATTERNS: usize = crate::protocol::constants::actions::MAX_GRANT_PATTERNS;

/// Connect token (`tg1`) or resume token (`tg1r`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenKind {
    Connect,
    Resume,
}

impl TokenKind {
    /// The token prefix: `tg1` or `tg1r`.
    pub fn prefix(self) -> &'static str {
        match self {
            TokenKind::Connect => crate::protocol::constants::tokens::CONNECT_PREFIX,
            TokenKind::Resume => crate::protocol::constants::tokens::RESUME_PREFIX,
        }
    }

    fn from_prefix(prefix: &str) -> Option<Self> {
        match prefix {
            crate::protocol::constants::tokens::CONNECT_PREFIX => Some(TokenKind::Connect),
            crate::protocol::constants::tokens::RESUME_PREFIX => Some(TokenKind::Resume),
            _ => None,
        }
    }
}

/// Token claims. Field order is the serialisation order of the vectors.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Claims {
    /// 32 lowercase hex characters (128 random bits): token id, single-use key.
    pub jti: String,
    /// User id; `""` is anonymous.
    pub sub: String,
    /// Patterns the holder may subscribe to.
    pub allow: Vec<String>,
    /// Issued at, unix seconds.
    pub iat: i64,
    /// Expires at, unix seconds.
    pub exp: i64,
    /// KV revision at which the token's `jti` was registered (connect tokens minted with single use): the
    /// gateway consumes the token with one write guarded by this revision. Without it the gateway reads the
    /// entry first (two round trips).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub rev: Option<u64>,
    /// Session id being resumed (resume tokens only).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub sid: Option<String>,
    /// What presence shows of the holder (e.g. a display name): a JSON object of at most [`MAX_INFO_BYTES`]
    /// as compact JSON ([`check_info`]), signed by the minter (proto/PROTOCOL.md section 11).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub info: Option<serde_json::Value>,
    /// What the holder may publish and call (section 13), after `info`; empty grants are not serialised, so a
    /// token without actions is byte-identical to one minted before them.
    #[serde(flatten)]
    pub grants: Grants,
}

/// The action grants of a token (proto/PROTOCOL.md section 13): patterns of events the holder may publish
/// (stored or ephemeral) and of RPC methods it may call. Absent and `[]` mean the same: nothing. A claim that
/// is present with another type (`null` included) fails to parse: the token is malformed.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Grants {
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub publish: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub publish_ephemeral: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub rpc: Vec<String>,
}

/// How a granted client publish goes out (proto/PROTOCOL.md section 13.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PublishKind {
    /// Stored like any event (history).
    Stored,
    /// Never stored (typing, cursors).
    Ephemeral,
}

impl Grants {
    /// No grant at all.
    pub fn is_empty(&self) -> bool {
        self.publish.is_empty() && self.publish_ephemeral.is_empty() && self.rpc.is_empty()
    }

    /// Whether each grant holds at most [`MAX_GRANT_PATTERNS`] valid patterns; the first wrong claim's name.
    pub fn check(&self) -> Result<(), &'static str> {
        for (claim, patterns) in
            [("publish", &self.publish), ("publish_ephemeral", &self.publish_ephemeral), ("rpc", &self.rpc)]
        {
            if patterns.len() > MAX_GRANT_PATTERNS || patterns.iter().any(|p| names::validate_pattern(p).is_err()) {
                return Err(claim);
            }
        }
        Ok(())
    }

    /// May the holder publish the event `name` (a name, never a pattern), and how: an ephemeral grant wins over
    /// a stored one; None = not granted.
    pub fn publish_kind(&self, name: &str) -> Option<PublishKind> {
        if self.publish_ephemeral.iter().any(|p| names::contains(p, name)) {
            Some(PublishKind::Ephemeral)
        } else if self.publish.iter().any(|p| names::contains(p, name)) {
            Some(PublishKind::Stored)
        } else {
            None
        }
    }

    /// May the holder call the RPC `method` (a name)?
    pub fn may_call(&self, method: &str) -> bool {
        self.rpc.iter().any(|p| names::contains(p, method))
    }
}

impl Claims {
    /// Fresh claims with a new random `jti`, `iat = now` and `exp = now + ttl` seconds.
    pub fn new(sub: impl Into<String>, allow: Vec<String>, now: i64, ttl: i64, sid: Option<String>) -> Self {
        Claims {
            jti: new_jti(),
            sub: sub.into(),
            allow,
            iat: now,
            exp: now.saturating_add(ttl),
            rev: None,
            sid,
            info: None,
            grants: Grants::default(),
        }
    }
}

/// Why a token was refused, or a keyring could not be built. Messages are fixed texts.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    #[error("bad signature")]
    BadSignature,
    #[error("token expired")]
    Expired,
    #[error("secret must be at least {MIN_SECRET_BYTES} bytes")]
    WeakSecret,
    #[error("no secret configured")]
    NoSecret,
}

impl TokenError {
    /// `malformed`, `bad_signature` or `expired` (the categories of `vectors/tokens.json`);
    /// `weak_secret` / `no_secret` for keyring construction errors.
    pub fn category(&self) -> &'static str {
        match self {
            TokenError::Malformed(_) => "malformed",
            TokenError::BadSignature => "bad_signature",
            TokenError::Expired => "expired",
            TokenError::WeakSecret => "weak_secret",
            TokenError::NoSecret => "no_secret",
        }
    }
}

/// HMAC keys: the first signs, all verify. Its `Debug` shows only the number of keys.
#[derive(Clone)]
pub struct Keyring {
    keys: Vec<hmac::Key>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring").field("keys", &self.keys.len()).finish_non_exhaustive()
    }
}

/// Whether `s` is non-empty unpadded base64url text.
fn is_b64url(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn is_jti(s: &str) -> bool {
    s.len() == crate::protocol::constants::tokens::JTI_HEX_CHARS
        && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl Keyring {
    /// Builds a keyring from secrets (first = signing secret). Each must be at least 32 bytes.
    pub fn new(secrets: &[String]) -> Result<Self, TokenError> {
        if secrets.is_empty() {
            return Err(TokenError::NoSecret);
        }
        if secrets.iter().any(|s| s.len() < MIN_SECRET_BYTES) {
            return Err(TokenError::WeakSecret);
        }
        let keys = secrets.iter().map(|s| hmac::Key::new(hmac::HMAC_SHA256, s.as_bytes())).collect();
        Ok(Keyring { keys })
    }

    /// Mints a token: compact claims JSON in field order, signed with the first secret.
    /// The caller is responsible for sensible claims (valid `jti`/`allow`, `sid` on resume).
    pub fn sign(&self, kind: TokenKind, claims: &Claims) -> String {
        // Serialising a struct of strings and integers cannot fail.
        let json = serde_json::to_vec(claims).unwrap_or_default();
        let mut token = String::with_capacity(8 + json.len() * 4 / 3 + 44);
        token.push_str(kind.prefix());
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(&json, &mut token);
        let tag = hmac::sign(&self.keys[0], token.as_bytes());
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(tag.as_ref(), &mut token);
        token
    }

    /// Verifies a token at unix time `now` (see the module docs for the order of checks).
    pub fn verify(&self, token: &str, now: i64) -> Result<(TokenKind, Claims), TokenError> {
        use TokenError::Malformed;
        if token.len() > MAX_TOKEN_BYTES {
            return Err(Malformed("too large"));
        }
        let mut parts = token.split('.');
        let (Some(prefix), Some(claims_b64), Some(sig_b64), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(Malformed("expected three parts"));
        };
        let kind = TokenKind::from_prefix(prefix).ok_or(Malformed("unknown prefix"))?;
        if !is_b64url(claims_b64) || !is_b64url(sig_b64) {
            return Err(Malformed("not unpadded base64url"));
        }
        let claims_json = URL_SAFE_NO_PAD.decode(claims_b64).map_err(|_| Malformed("not unpadded base64url"))?;
        let sig = URL_SAFE_NO_PAD.decode(sig_b64).map_err(|_| Malformed("not unpadded base64url"))?;
        if sig.len() != 32 {
            return Err(Malformed("signature length"));
        }
        let signed = &token[..prefix.len() + 1 + claims_b64.len()];
        if !self.keys.iter().any(|k| hmac::verify(k, signed.as_bytes(), &sig).is_ok()) {
            return Err(TokenError::BadSignature);
        }
        let claims: Claims = serde_json::from_slice(&claims_json).map_err(|_| Malformed("claims"))?;
        if !is_jti(&claims.jti) {
            return Err(Malformed("jti"));
        }
        if claims.allow.len() > MAX_ALLOW {
            return Err(Malformed("too many allow patterns"));
        }
        if claims.allow.iter().any(|p| names::validate_pattern(p).is_err()) {
            return Err(Malformed("allow pattern"));
        }
        if kind == TokenKind::Resume && claims.sid.as_deref().is_none_or(str::is_empty) {
            return Err(Malformed("resume token without sid"));
        }
        if claims.rev == Some(0) || (kind == TokenKind::Resume && claims.rev.is_some()) {
            return Err(Malformed("rev"));
        }
        if claims.info.as_ref().is_some_and(|info| check_info(info).is_err()) {
            return Err(Malformed("info"));
        }
        if claims.grants.check().is_err() {
            return Err(Malformed("action grant"));
        }
        if claims.iat > now.saturating_add(CLOCK_SKEW) {
            return Err(Malformed("issued in the future"));
        }
        if claims.exp <= now.saturating_sub(CLOCK_SKEW) {
            return Err(TokenError::Expired);
        }
        Ok((kind, claims))
    }
}

/// Why an `info` claim is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InfoError {
    #[error("info must be a JSON object")]
    NotAnObject,
    #[error("info must be at most {MAX_INFO_BYTES} bytes of compact JSON")]
    TooLarge,
}

/// Checks an `info` claim: a JSON object of at most [`MAX_INFO_BYTES`] bytes as compact JSON.
pub fn check_info(info: &serde_json::Value) -> Result<(), InfoError> {
    if !info.is_object() {
        return Err(InfoError::NotAnObject);
    }
    // Counting bytes without building the text: serialising into a sink that stops past the limit.
    struct Counter(usize);
    impl std::io::Write for Counter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            if self.0 > MAX_INFO_BYTES {
                return Err(std::io::Error::other("too large"));
            }
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    serde_json::to_writer(&mut Counter(0), info).map_err(|_| InfoError::TooLarge)
}

/// A fresh token id: 128 random bits from the system CSPRNG as 32 lowercase hex characters.
pub fn new_jti() -> String {
    let mut bytes = [0u8; crate::protocol::constants::tokens::JTI_HEX_CHARS / 2];
    SystemRandom::new().fill(&mut bytes).expect("system random number generator failed");
    let mut out = String::with_capacity(crate::protocol::constants::tokens::JTI_HEX_CHARS);
    for b in bytes {
        out.push(char::from_digit(u32::from(b >> 4), 16).unwrap_or('0'));
        out.push(char::from_digit(u32::from(b & 15), 16).unwrap_or('0'));
    }
    out
}

/// Current unix time in seconds.
pub fn now_unix() -> i64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    i64::try_from(since.as_secs()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000;

    fn ring() -> Keyring {
        Keyring::new(&["k".repeat(32)]).unwrap()
    }

    fn claims(exp: i64, sid: Option<&str>) -> Claims {
        Claims {
            jti: "0123456789abcdef0123456789abcdef".into(),
            sub: "alice".into(),
            allow: vec!["shop.>".into()],
            iat: NOW,
            exp,
            rev: None,
            sid: sid.map(Into::into),
            info: None,
            grants: Grants::default(),
        }
    }

    #[test]
    fn info_is_a_small_object() {
        let kr = ring();
        let mut c = claims(NOW + 60, None);
        c.info = Some(serde_json::json!({"name": "Alice"}));
        let (_, back) = kr.verify(&kr.sign(TokenKind::Connect, &c), NOW).unwrap();
        assert_eq!(back.info, c.info);
        // {"n":"..."} is 8 bytes around the string.
        c.info = Some(serde_json::json!({"n": "x".repeat(MAX_INFO_BYTES - 8)}));
        assert_eq!(check_info(c.info.as_ref().unwrap()), Ok(()));
        assert!(kr.verify(&kr.sign(TokenKind::Connect, &c), NOW).is_ok());
        c.info = Some(serde_json::json!({"n": "x".repeat(MAX_INFO_BYTES - 7)}));
        assert_eq!(check_info(c.info.as_ref().unwrap()), Err(InfoError::TooLarge));
        assert_eq!(kr.verify(&kr.sign(TokenKind::Connect, &c), NOW).unwrap_err(), TokenError::Malformed("info"));
        c.info = Some(serde_json::json!("Alice"));
        assert_eq!(check_info(c.info.as_ref().unwrap()), Err(InfoError::NotAnObject));
        assert_eq!(kr.verify(&kr.sign(TokenKind::Connect, &c), NOW).unwrap_err(), TokenError::Malformed("info"));
    }

    #[test]
    fn secrets_are_checked_and_not_debug_printed() {
        assert_eq!(Keyring::new(&[]).unwrap_err(), TokenError::NoSecret);
        assert_eq!(Keyring::new(&["k".repeat(31)]).unwrap_err(), TokenError::WeakSecret);
        let secret = "s3cr3t-".repeat(6);
        let kr = Keyring::new(std::slice::from_ref(&secret)).unwrap();
        let dbg = format!("{kr:?}");
        assert!(!dbg.contains("s3cr3t"), "{dbg}");
    }

    #[test]
    fn expiry_leeway_is_clock_skew() {
        let kr = ring();
        let at_edge = kr.sign(TokenKind::Connect, &claims(NOW - CLOCK_SKEW + 1, None));
        assert!(kr.verify(&at_edge, NOW).is_ok());
        let past = kr.sign(TokenKind::Connect, &claims(NOW - CLOCK_SKEW, None));
        assert_eq!(kr.verify(&past, NOW).unwrap_err(), TokenError::Expired);
    }

    #[test]
    fn iat_skew_boundary() {
        let kr = ring();
        let mut c = claims(NOW + 60, None);
        c.iat = NOW + CLOCK_SKEW;
        assert!(kr.verify(&kr.sign(TokenKind::Connect, &c), NOW).is_ok());
        c.iat = NOW + CLOCK_SKEW + 1;
        assert_eq!(kr.verify(&kr.sign(TokenKind::Connect, &c), NOW).unwrap_err().category(), "malformed");
    }

    #[test]
    fn resume_needs_sid_and_kind_is_reported() {
        let kr = ring();
        let no_sid = kr.sign(TokenKind::Resume, &claims(NOW + 60, None));
        assert_eq!(kr.verify(&no_sid, NOW).unwrap_err(), TokenError::Malformed("resume token without sid"));
        let ok = kr.sign(TokenKind::Resume, &claims(NOW + 60, Some("s1")));
        let (kind, c) = kr.verify(&ok, NOW).unwrap();
        assert_eq!(kind, TokenKind::Resume);
        assert_eq!(c.sid.as_deref(), Some("s1"));
    }

    #[test]
    fn too_many_allow_patterns() {
        let kr = ring();
        let mut c = claims(NOW + 60, None);
        c.allow = vec!["a".into(); MAX_ALLOW];
        assert!(kr.verify(&kr.sign(TokenKind::Connect, &c), NOW).is_ok());
        c.allow.push("a".into());
        assert_eq!(kr.verify(&kr.sign(TokenKind::Connect, &c), NOW).unwrap_err().category(), "malformed");
    }

    #[test]
    fn claims_are_not_parsed_before_signature() {
        // Valid shape, claims that are not JSON, wrong key: must say bad_signature, not malformed.
        let other = Keyring::new(&["o".repeat(32)]).unwrap();
        let mut forged = String::from("tg1.");
        URL_SAFE_NO_PAD.encode_string(b"{not json", &mut forged);
        let tag = hmac::sign(&other.keys[0], forged.as_bytes());
        forged.push('.');
        URL_SAFE_NO_PAD.encode_string(tag.as_ref(), &mut forged);
        assert_eq!(ring().verify(&forged, NOW).unwrap_err(), TokenError::BadSignature);
    }

    #[test]
    fn jti_is_32_lowercase_hex_and_random() {
        let (a, b) = (new_jti(), new_jti());
        assert!(is_jti(&a) && is_jti(&b));
        assert_ne!(a, b);
    }

    #[test]
    fn error_text_has_no_token() {
        let kr = ring();
        let token = kr.sign(TokenKind::Connect, &claims(NOW - 100, None));
        let err = kr.verify(&token, NOW).unwrap_err();
        assert!(!err.to_string().contains(&token[4..20]));
    }
}
