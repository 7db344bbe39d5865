//! Fuzzes `frames::parse_client_frame` (PROTOCOL.md section 3) with arbitrary UTF-8 text:
//! it must never panic, and whatever it accepts must satisfy the decoding rules.
#![no_main]

use libfuzzer_sys::fuzz_target;
use telegraphy::protocol::frames::{parse_client_frame, ClientFrame, MAX_ID};
use telegraphy::protocol::names::validate_pattern;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match parse_client_frame(text) {
        Ok(frame) => {
            assert!(frame.id().is_none_or(|id| id <= MAX_ID));
            match &frame {
                ClientFrame::Subscribe { event, since, .. } => {
                    assert!(validate_pattern(event).is_ok());
                    assert!(since.as_ref().is_none_or(|s| !s.epoch.is_empty() && s.epoch.len() <= 64 && s.seq <= MAX_ID));
                }
                ClientFrame::Unsubscribe { event, sub, .. } => {
                    assert!(event.is_some() || sub.is_some());
                    assert!(event.as_deref().is_none_or(|e| validate_pattern(e).is_ok()));
                }
                ClientFrame::Connect { token, resume, .. } => assert!(token.is_none() || resume.is_none()),
                ClientFrame::Ping { .. } | ClientFrame::Pong => {}
            }
        }
        Err(e) => {
            assert!(!e.message.is_empty());
            let _ = e.encode();
        }
    }
});
