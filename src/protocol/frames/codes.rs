//! Error codes of `error` frames and WebSocket close codes (proto/PROTOCOL.md section 3).

/// Error codes of `error` frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorCode {
    /// Malformed frame, invalid name or pattern, second `connect`.
    BadRequest,
    /// Bad, expired, used or revoked token (followed by close 4001).
    Unauthorized,
    /// Pattern outside the token's `allow`.
    Forbidden,
    /// `subscribe`/`unsubscribe` before `connected`.
    NotConnected,
    /// Too many subscriptions or connections.
    LimitExceeded,
    /// The gateway could not do it now (e.g. NATS down); retry later.
    Internal,
    /// No worker for an RPC's method, or NATS down (section 14).
    Unavailable,
    /// No reply to an RPC within `rpc.timeout` (section 14).
    Timeout,
    /// Strict catalog mode: the pattern can match no catalogued event (section 12).
    UnknownEvent,
}

impl ErrorCode {
    pub fn as_str(&self) -> &'static str {
        use crate::protocol::constants::error_codes;
        match self {
            ErrorCode::BadRequest => error_codes::BAD_REQUEST,
            ErrorCode::Unauthorized => error_codes::UNAUTHORIZED,
            ErrorCode::Forbidden => error_codes::FORBIDDEN,
            ErrorCode::NotConnected => error_codes::NOT_CONNECTED,
            ErrorCode::LimitExceeded => error_codes::LIMIT_EXCEEDED,
            ErrorCode::Internal => error_codes::INTERNAL,
            ErrorCode::Unavailable => error_codes::UNAVAILABLE,
            ErrorCode::Timeout => error_codes::TIMEOUT,
            ErrorCode::UnknownEvent => error_codes::UNKNOWN_EVENT,
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// WebSocket close codes (PROTOCOL.md section 3, "Close codes").
pub mod close {
    use crate::protocol::constants::close as codes;

    /// Normal, e.g. heartbeat timeout: reconnect with backoff.
    pub const NORMAL: u16 = codes::NORMAL;
    /// Protocol violation (too many bad frames).
    pub const PROTOCOL: u16 = codes::PROTOCOL_VIOLATION;
    /// Frame too big.
    pub const TOO_BIG: u16 = codes::FRAME_TOO_BIG;
    /// Node restarting (drain): reconnect at once.
    pub const RESTART: u16 = codes::RESTART;
    /// Connect timeout, bad/expired/used token.
    pub const UNAUTHORIZED: u16 = codes::UNAUTHORIZED;
    /// Forbidden / revoked: stop.
    pub const FORBIDDEN: u16 = codes::FORBIDDEN;
    /// Outbound queue full.
    pub const TOO_SLOW: u16 = codes::TOO_SLOW;
    /// Rate limited.
    pub const RATE_LIMITED: u16 = codes::RATE_LIMITED;
    /// The token store (NATS) could not answer; the token was not consumed: retry later.
    pub const TRY_AGAIN_LATER: u16 = codes::TRY_AGAIN_LATER;
}
