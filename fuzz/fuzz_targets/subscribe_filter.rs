//! Fuzzes a `subscribe` frame's `filter`/`exclude` (PROTOCOL.md section 8) the way the gateway takes it: parse
//! the frame, [`Filter::prepare`] under the default limits (no compile), then compile each regex and evaluate
//! the filter. Never panics; what `prepare` accepts obeys the limits (conditions, regex count, pattern length);
//! compiling changes nothing but the regexes (same canonical text); every compiled regex's estimated memory
//! stays near the size limit.
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use telegraphy::protocol::filter::{CompiledRegex, Filter, FilterLimits, REGEX_CACHE_CAPACITY, REGEX_SIZE_LIMIT};
use telegraphy::protocol::frames::{parse_client_frame, ClientFrame};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(ClientFrame::Subscribe { filter: lookups, exclude: excluded, .. }) = parse_client_frame(text) else {
        return;
    };
    let limits = FilterLimits::default();
    let prepared = match Filter::prepare(lookups.as_ref(), excluded.as_ref(), &limits) {
        Ok(prepared) => prepared,
        Err(e) => {
            assert!(!e.to_string().is_empty() && !e.kind().is_empty());
            assert!(!matches!(e.kind(), "bad_regex" | "regex_too_complex"), "prepare compiled: {e}");
            return;
        }
    };
    let keys: Vec<_> = prepared.regexes().cloned().collect();
    assert!(keys.len() <= limits.max_regex_conditions, "{} regexes passed prepare", keys.len());
    assert!(keys.iter().all(|k| k.pattern.len() <= limits.max_regex_bytes));
    let canonical = prepared.canonical().to_string();
    let mut asked = keys.iter();
    let compiled = prepared.compile_with(|key| {
        assert_eq!(Some(key), asked.next(), "compile order is regexes() order");
        let regex = CompiledRegex::compile(key)?;
        let bound = 8 * (REGEX_SIZE_LIMIT + REGEX_CACHE_CAPACITY);
        assert!(regex.bytes() <= bound, "{:?}: {} bytes estimated", key.pattern, regex.bytes());
        Ok(Arc::new(regex))
    });
    match compiled {
        Ok(filter) => {
            assert_eq!(filter.canonical(), canonical);
            let data = serde_json::json!({"a": filter.canonical(), "b": [1, "x"], "c": {"d": null}});
            let _ = filter.matches(&data);
            for value in lookups.iter().chain(excluded.iter()) {
                let _ = filter.matches(value);
            }
        }
        Err(e) => assert!(matches!(e.kind(), "bad_regex" | "regex_too_complex"), "{e}"),
    }
});
