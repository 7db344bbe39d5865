//! Logging with `tracing`: human text by default, one JSON object per line with `log.format = "json"`.
//! `RUST_LOG` overrides `log.level`. Secrets never reach the log: settings print them redacted and tokens are
//! never logged. async-nats logs server URLs (with any `user:password@` in `nats.url`) at debug level, so its
//! level is capped at `info` unless the filter names `async_nats` itself.

use tracing_subscriber::{fmt, EnvFilter};

use crate::config::LogSettings;

/// Installs the global subscriber; a second call (tests) is a no-op.
pub fn init(settings: &LogSettings) {
    let filter = match std::env::var(EnvFilter::DEFAULT_ENV) {
        Ok(directives) if !directives.is_empty() => cap_nats(&directives),
        _ => cap_nats(&settings.level),
    };
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    let _ = if settings.format == "json" { builder.json().flatten_event(true).try_init() } else { builder.try_init() };
}

/// The filter for `directives`; when they enable debug or trace without naming async_nats, async_nats stays at
/// info.
fn cap_nats(directives: &str) -> EnvFilter {
    let filter = EnvFilter::new(directives);
    let verbose = filter.max_level_hint().is_some_and(|max| max > tracing::level_filters::LevelFilter::INFO);
    if verbose && !directives.contains("async_nats") {
        EnvFilter::new(format!("{directives},async_nats=info"))
    } else {
        filter
    }
}
