//! The protocol's constants (proto/PROTOCOL.md section 9), one module per section of proto/constants.json.
//!
//! Generated from proto/constants.json by scripts/gen-constants; do not edit.
//! Sizes are bytes, times seconds (a bucket's `max_age` is a `Duration`). The modules that use them
//! re-export the names the rest of the crate and its tests know (e.g. [`crate::protocol::names::MAX_TOKENS`]).

/// `names`.
pub mod names {
    /// `names.max_tokens`.
    pub const MAX_TOKENS: usize = 16;
    /// `names.max_bytes`.
    pub const MAX_BYTES: usize = 255;
    /// `names.token_chars`.
    pub const TOKEN_CHARS: &str = "A-Za-z0-9_-";
    /// `names.single_wildcard`.
    pub const SINGLE_WILDCARD: &str = "*";
    /// `names.tail_wildcard`.
    pub const TAIL_WILDCARD: &str = ">";
    /// `names.max_plain_key_chars`.
    pub const MAX_PLAIN_KEY_CHARS: usize = 64;
}
/// `sub_names`.
pub mod sub_names {
    /// `sub_names.min_chars`.
    pub const MIN_CHARS: usize = 1;
    /// `sub_names.max_chars`.
    pub const MAX_CHARS: usize = 64;
    /// `sub_names.chars`.
    pub const CHARS: &str = "A-Za-z0-9_.:*>-";
}
/// `filters`.
pub mod filters {
    /// `filters.lookups`.
    pub const LOOKUPS: &[&str] = &[
        "exact",
        "iexact",
        "contains",
        "icontains",
        "in",
        "gt",
        "gte",
        "lt",
        "lte",
        "range",
        "startswith",
        "istartswith",
        "endswith",
        "iendswith",
        "isnull",
        "regex",
        "iregex",
    ];
    /// `filters.default_lookup`.
    pub const DEFAULT_LOOKUP: &str = "exact";
    /// `filters.limits`.
    pub mod limits {
        /// `filters.limits.max_conditions`: default of the gateway setting `limits.max_filter_conditions`.
        pub const MAX_CONDITIONS: usize = 16;
        /// `filters.limits.max_regex_conditions`: default of the gateway setting `limits.max_regex_conditions`.
        pub const MAX_REGEX_CONDITIONS: usize = 4;
        /// `filters.limits.max_bytes`: fixed.
        pub const MAX_BYTES: usize = 4096;
        /// `filters.limits.max_in_values`: fixed.
        pub const MAX_IN_VALUES: usize = 100;
        /// `filters.limits.max_regex_bytes`: fixed.
        pub const MAX_REGEX_BYTES: usize = 256;
        /// `filters.limits.max_regex_program_bytes`: fixed.
        pub const MAX_REGEX_PROGRAM_BYTES: usize = 262144;
    }
}
/// `limits`.
pub mod limits {
    /// `limits.max_event_bytes`: default of the gateway setting `limits.max_event_bytes`.
    pub const MAX_EVENT_BYTES: usize = 1048576;
}
/// `tokens`.
pub mod tokens {
    /// `tokens.connect_prefix`.
    pub const CONNECT_PREFIX: &str = "tg1";
    /// `tokens.resume_prefix`.
    pub const RESUME_PREFIX: &str = "tg1r";
    /// `tokens.max_bytes`.
    pub const MAX_BYTES: usize = 4096;
    /// `tokens.max_allow`.
    pub const MAX_ALLOW: usize = 64;
    /// `tokens.jti_hex_chars`.
    pub const JTI_HEX_CHARS: usize = 32;
    /// `tokens.clock_skew`.
    pub const CLOCK_SKEW: i64 = 5;
    /// `tokens.max_ttl`.
    pub const MAX_TTL: u64 = 3600;
    /// `tokens.min_secret_bytes`.
    pub const MIN_SECRET_BYTES: usize = 32;
    /// `tokens.max_info_bytes`.
    pub const MAX_INFO_BYTES: usize = 256;
}
/// `buckets`.
pub mod buckets {
    /// `buckets.tokens`, default of the gateway setting `auth.tokens_bucket`.
    pub mod tokens {
        /// `buckets.tokens.name`.
        pub const NAME: &str = "telegraphy_tokens";
        /// `buckets.tokens.max_age`.
        pub const MAX_AGE: std::time::Duration = std::time::Duration::from_secs(3600);
    }
    /// `buckets.revocations`, default of the gateway setting `auth.revocations_bucket`.
    pub mod revocations {
        /// `buckets.revocations.name`.
        pub const NAME: &str = "telegraphy_revocations";
        /// `buckets.revocations.max_age`.
        pub const MAX_AGE: std::time::Duration = std::time::Duration::from_secs(86400);
    }
}
/// `presence`.
pub mod presence {
    /// `presence.bucket`, default of the gateway setting `presence.bucket`.
    pub mod bucket {
        /// `presence.bucket.name`.
        pub const NAME: &str = "telegraphy_presence";
    }
    /// `presence.ttl_refresh_intervals`.
    pub const TTL_REFRESH_INTERVALS: u64 = 3;
    /// `presence.snapshot_cost`.
    pub const SNAPSHOT_COST: u32 = 5;
    /// `presence.client_id_chars`.
    pub const CLIENT_ID_CHARS: usize = 16;
}
/// `catalog`.
pub mod catalog {
    /// `catalog.bucket`, default of the gateway setting `catalog.bucket`.
    pub mod bucket {
        /// `catalog.bucket.name`.
        pub const NAME: &str = "telegraphy_catalog";
    }
    /// `catalog.format`.
    pub const FORMAT: usize = 1;
    /// `catalog.max_entry_bytes`.
    pub const MAX_ENTRY_BYTES: usize = 65536;
    /// `catalog.max_patterns`.
    pub const MAX_PATTERNS: usize = 32;
    /// `catalog.max_description_chars`.
    pub const MAX_DESCRIPTION_CHARS: usize = 4096;
    /// `catalog.mode`: default of the gateway setting `catalog.mode`.
    pub const MODE: &str = "open";
    /// `catalog.modes`.
    pub const MODES: &[&str] = &["off", "open", "strict"];
    /// `catalog.max_entries`: default of the gateway setting `catalog.max_entries`.
    pub const MAX_ENTRIES: usize = 10000;
    /// `catalog.max_reply_bytes`: default of the gateway setting `catalog.max_reply_bytes`.
    pub const MAX_REPLY_BYTES: usize = 262144;
}
/// `error_codes`: one constant per code, and all of them in file order.
pub mod error_codes {
    /// `bad_request`.
    pub const BAD_REQUEST: &str = "bad_request";
    /// `unauthorized`.
    pub const UNAUTHORIZED: &str = "unauthorized";
    /// `forbidden`.
    pub const FORBIDDEN: &str = "forbidden";
    /// `not_connected`.
    pub const NOT_CONNECTED: &str = "not_connected";
    /// `limit_exceeded`.
    pub const LIMIT_EXCEEDED: &str = "limit_exceeded";
    /// `internal`.
    pub const INTERNAL: &str = "internal";
    /// `unavailable`.
    pub const UNAVAILABLE: &str = "unavailable";
    /// `timeout`.
    pub const TIMEOUT: &str = "timeout";
    /// `unknown_event`.
    pub const UNKNOWN_EVENT: &str = "unknown_event";
    /// Every code, in file order.
    pub const ALL: &[&str] = &[
        "bad_request",
        "unauthorized",
        "forbidden",
        "not_connected",
        "limit_exceeded",
        "internal",
        "unavailable",
        "timeout",
        "unknown_event",
    ];
}
/// `actions`.
pub mod actions {
    /// `actions.grant_claims`.
    pub const GRANT_CLAIMS: &[&str] = &["publish", "publish_ephemeral", "rpc"];
    /// `actions.max_grant_patterns`.
    pub const MAX_GRANT_PATTERNS: usize = 64;
    /// `actions.rpc_suffix`.
    pub const RPC_SUFFIX: &str = "_rpc";
    /// `actions.lifecycle_suffix`.
    pub const LIFECYCLE_SUFFIX: &str = "_lifecycle";
    /// `actions.queue_group`.
    pub const QUEUE_GROUP: &str = "telegraphy_workers";
    /// `actions.headers`.
    pub mod headers {
        /// `actions.headers.client`.
        pub const CLIENT: &str = "Telegraphy-Client";
        /// `actions.headers.user`.
        pub const USER: &str = "Telegraphy-User";
        /// `actions.headers.session`.
        pub const SESSION: &str = "Telegraphy-Session";
        /// `actions.headers.info`.
        pub const INFO: &str = "Telegraphy-Info";
        /// `actions.headers.node`.
        pub const NODE: &str = "Telegraphy-Node";
    }
    /// `actions.rpc_error_code_chars`.
    pub const RPC_ERROR_CODE_CHARS: &str = "a-z0-9_";
    /// `actions.rpc_error_code_max_chars`.
    pub const RPC_ERROR_CODE_MAX_CHARS: usize = 64;
    /// `actions.rpc_error_message_max_bytes`.
    pub const RPC_ERROR_MESSAGE_MAX_BYTES: usize = 256;
    /// `actions.lifecycle_kinds`.
    pub const LIFECYCLE_KINDS: &[&str] = &["connect", "disconnect", "subscribe", "unsubscribe"];
    /// `actions.limits`.
    pub mod limits {
        /// `actions.limits.rpc_timeout`: default of the gateway setting `rpc.timeout`.
        pub const RPC_TIMEOUT: usize = 5;
        /// `actions.limits.rpc_max_in_flight`: default of the gateway setting `rpc.max_in_flight`.
        pub const RPC_MAX_IN_FLIGHT: usize = 4;
        /// `actions.limits.rpc_max_request_bytes`: default of the gateway setting `rpc.max_request_bytes`.
        pub const RPC_MAX_REQUEST_BYTES: usize = 16384;
        /// `actions.limits.rpc_max_reply_bytes`: default of the gateway setting `rpc.max_reply_bytes`.
        pub const RPC_MAX_REPLY_BYTES: usize = 65536;
        /// `actions.limits.rpc_requests_per_second`: default of the gateway setting `rpc.requests_per_second`.
        pub const RPC_REQUESTS_PER_SECOND: usize = 5;
        /// `actions.limits.rpc_request_burst`: default of the gateway setting `rpc.request_burst`.
        pub const RPC_REQUEST_BURST: usize = 20;
        /// `actions.limits.publish_max_bytes`: default of the gateway setting `client_publish.max_bytes`.
        pub const PUBLISH_MAX_BYTES: usize = 4096;
        /// `actions.limits.publish_requests_per_second`: default of the gateway setting `client_publish.requests_per_second`.
        pub const PUBLISH_REQUESTS_PER_SECOND: usize = 10;
        /// `actions.limits.publish_request_burst`: default of the gateway setting `client_publish.request_burst`.
        pub const PUBLISH_REQUEST_BURST: usize = 20;
    }
}
/// `close_codes`.
pub mod close {
    /// `close_codes.normal`: a client does `reconnect`.
    pub const NORMAL: u16 = 1000;
    /// `close_codes.protocol_violation`: a client does `stop`.
    pub const PROTOCOL_VIOLATION: u16 = 1008;
    /// `close_codes.frame_too_big`: a client does `stop`.
    pub const FRAME_TOO_BIG: u16 = 1009;
    /// `close_codes.restart`: a client does `reconnect_at_once`.
    pub const RESTART: u16 = 1012;
    /// `close_codes.try_again_later`: a client does `reconnect`.
    pub const TRY_AGAIN_LATER: u16 = 1013;
    /// `close_codes.unauthorized`: a client does `new_token`.
    pub const UNAUTHORIZED: u16 = 4001;
    /// `close_codes.forbidden`: a client does `stop`.
    pub const FORBIDDEN: u16 = 4003;
    /// `close_codes.too_slow`: a client does `reconnect`.
    pub const TOO_SLOW: u16 = 4008;
    /// `close_codes.rate_limited`: a client does `reconnect`.
    pub const RATE_LIMITED: u16 = 4029;
}
