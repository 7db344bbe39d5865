//! Fuzzes `token::Keyring::verify` (PROTOCOL.md section 4) with arbitrary strings: it must never
//! panic, and nothing random may pass as a token signed with the fuzzing secrets.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use telegraphy::protocol::token::Keyring;

const NOW: i64 = 1_800_000_000;

fn keyring() -> &'static Keyring {
    static KEYRING: OnceLock<Keyring> = OnceLock::new();
    KEYRING.get_or_init(|| {
        Keyring::new(&["fuzz-secret-0123456789abcdef-0123".to_owned(), "fuzz-previous-secret-0123456789abcdef".to_owned()])
            .expect("fuzz secrets are long enough")
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let result = keyring().verify(text, NOW);
    // Forging an HMAC-SHA256 by chance does not happen; an Ok here means verification is broken.
    assert!(result.is_err(), "random input verified as a token");
    let _ = result.unwrap_err().category();
});
