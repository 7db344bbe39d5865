//! Fuzzes the claims checks of `token::Keyring::verify` (PROTOCOL.md section 4): the input is the claims
//! JSON (first byte: connect or resume token), signed here with the fuzzing secret so that verification gets
//! past the signature. It must never panic, and whatever it accepts must satisfy the protocol's rules.
#![no_main]

use std::sync::OnceLock;

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use libfuzzer_sys::fuzz_target;
use ring::hmac;
use telegraphy::{
    protocol::names,
    protocol::token::{Keyring, TokenKind, CLOCK_SKEW, MAX_ALLOW},
};

const NOW: i64 = 1_800_000_000;
const SECRET: &str = "fuzz-secret-0123456789abcdef-0123";

fn keyring() -> &'static Keyring {
    static KEYRING: OnceLock<Keyring> = OnceLock::new();
    KEYRING.get_or_init(|| Keyring::new(&[SECRET.to_owned()]).expect("fuzz secret is long enough"))
}

fuzz_target!(|data: &[u8]| {
    let Some((&kind, claims)) = data.split_first() else { return };
    let prefix = if kind & 1 == 0 { "tg1" } else { "tg1r" };
    let signed = format!("{prefix}.{}", URL_SAFE_NO_PAD.encode(claims));
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, SECRET.as_bytes()), signed.as_bytes());
    let token = format!("{signed}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()));
    let Ok((kind, claims)) = keyring().verify(&token, NOW) else { return };
    assert_eq!(kind == TokenKind::Resume, prefix == "tg1r");
    assert!(claims.jti.len() == 32 && claims.jti.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
    assert!(claims.allow.len() <= MAX_ALLOW);
    assert!(claims.allow.iter().all(|p| names::validate_pattern(p).is_ok()), "{:?}", claims.allow);
    assert!(claims.iat <= NOW + CLOCK_SKEW && claims.exp > NOW - CLOCK_SKEW);
    assert_ne!(claims.rev, Some(0));
    if kind == TokenKind::Resume {
        assert!(claims.sid.as_deref().is_some_and(|s| !s.is_empty()) && claims.rev.is_none());
    }
});
