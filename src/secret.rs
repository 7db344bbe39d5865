//! The weak-secret rule of proto/PROTOCOL.md section 4 "Secrets" (vectors: `proto/vectors/secrets.json`):
//! a configured signing or verifying secret must not be short, contain a placeholder word, be periodic or have
//! low entropy, so that copying a shipped example file never yields a working deployment.
//!
//! Only the configuration uses it ([`crate::config::Settings::secrets`]); a [`crate::protocol::token::Keyring`] built in
//! code (tests, tools) checks the length only.

use crate::protocol::token::MIN_SECRET_BYTES;

/// Words of the shipped examples; a secret containing one (ignoring ASCII case) is a placeholder.
pub const PLACEHOLDER_WORDS: &[&str] = &["change", "replace", "example", "placeholder", "dummy", "insecure"];

/// Least `len * H` (H = Shannon entropy of the byte frequencies, bits per byte).
pub const MIN_ENTROPY_BITS: f64 = 80.0;

/// Why a secret is refused; [`Weakness::as_str`] gives the names of `vectors/secrets.json`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Weakness {
    TooShort,
    Placeholder,
    Repetitive,
    LowEntropy,
}

impl Weakness {
    pub fn as_str(self) -> &'static str {
        match self {
            Weakness::TooShort => "too_short",
            Weakness::Placeholder => "placeholder",
            Weakness::Repetitive => "repetitive",
            Weakness::LowEntropy => "low_entropy",
        }
    }

    /// A short explanation for a configuration error (never the secret itself).
    pub fn explain(self) -> &'static str {
        match self {
            Weakness::TooShort => "too short: must be at least 32 bytes",
            Weakness::Placeholder => "looks like a placeholder from an example file",
            Weakness::Repetitive => "is a repeated pattern",
            Weakness::LowEntropy => "has too little entropy",
        }
    }
}

impl std::fmt::Display for Weakness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The first rule `secret` breaks, in the order of PROTOCOL.md, or None when it is acceptable
/// (`openssl rand -hex 32` always is).
pub fn weakness(secret: &str) -> Option<Weakness> {
    let bytes = secret.as_bytes();
    if bytes.len() < MIN_SECRET_BYTES {
        return Some(Weakness::TooShort);
    }
    let lower = secret.to_ascii_lowercase();
    if PLACEHOLDER_WORDS.iter().any(|w| lower.contains(w)) {
        return Some(Weakness::Placeholder);
    }
    if is_periodic(bytes) {
        return Some(Weakness::Repetitive);
    }
    if entropy_bits(bytes) < MIN_ENTROPY_BITS {
        return Some(Weakness::LowEntropy);
    }
    None
}

/// `s[i] == s[i + p]` for every `i`, for some period `p <= len / 2`.
fn is_periodic(s: &[u8]) -> bool {
    (1..=s.len() / 2).any(|p| s[p..].iter().zip(s).all(|(a, b)| a == b))
}

/// `len * H`, H the Shannon entropy (bits) of the byte frequencies.
fn entropy_bits(s: &[u8]) -> f64 {
    let mut counts = [0usize; 256];
    for &b in s {
        counts[b as usize] += 1;
    }
    let len = s.len() as f64;
    let h: f64 = counts.iter().filter(|&&c| c > 0).map(|&c| c as f64 / len).map(|p| -p * p.log2()).sum();
    len * h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_apply_in_order() {
        assert_eq!(weakness("short"), Some(Weakness::TooShort));
        // Periodic and a placeholder: the placeholder rule comes first.
        assert_eq!(weakness(&"dummy".repeat(8)), Some(Weakness::Placeholder));
        assert_eq!(weakness(&"ab".repeat(20)), Some(Weakness::Repetitive));
        assert_eq!(weakness(&format!("{}b", "a".repeat(39))), Some(Weakness::LowEntropy));
        assert_eq!(weakness("a17a0e70e723e518e8a4f159e5c75aef12a1562924a5da888760ed8559f722d7"), None);
    }

    #[test]
    fn a_period_longer_than_half_is_not_repetitive() {
        // "abc...xyz" + "abcdef": shares a prefix with itself at period 26 > 32 / 2.
        let s = "abcdefghijklmnopqrstuvwxyzabcdef";
        assert!(!is_periodic(s.as_bytes()));
        assert!(is_periodic(b"abcabcabcabcabcabcabcabcabcabcab"), "a partial last period still counts");
    }
}
