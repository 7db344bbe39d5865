//! The compiled patterns of `regex`/`iregex` conditions (RE2 syntax through regex-automata, bounded).

use std::fmt;

use regex_automata::{meta, util::syntax, MatchKind};

use super::{REGEX_CACHE_CAPACITY, REGEX_SIZE_LIMIT};

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
