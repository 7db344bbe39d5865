//! A connection's request rate limit (issue 11 part 3): a token bucket over the client's frames.
//!
//! Every WebSocket data frame a client sends (any `type`, including `ping`/`pong`, and binary or malformed
//! ones) takes one token; tokens come back at `limits.requests_per_second` up to `limits.request_burst`. A frame
//! finding the bucket empty ends the connection (`limit_exceeded`, close 4029). The bucket belongs to the
//! connection's reader alone: no lock, no shared state, a few bytes per connection.

use tokio::time::Instant;

#[derive(Debug, Clone)]
pub struct TokenBucket {
    per_second: f64,
    burst: f64,
    tokens: f64,
    updated: Instant,
}

impl TokenBucket {
    /// A full bucket; None when `per_second` is 0 (rate limiting off).
    pub fn new(per_second: u32, burst: u32, now: Instant) -> Option<Self> {
        (per_second > 0).then(|| TokenBucket {
            per_second: f64::from(per_second),
            burst: f64::from(burst),
            tokens: f64::from(burst),
            updated: now,
        })
    }

    /// Takes one token for a request arriving at `now`; false when none is left.
    pub fn take(&mut self, now: Instant) -> bool {
        self.take_n(now, 1)
    }

    /// Takes `n` tokens at once (a costlier request); false (taking none) when fewer are left.
    pub fn take_n(&mut self, now: Instant, n: u32) -> bool {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.burst);
        self.updated = now;
        if self.tokens >= f64::from(n) {
            self.tokens -= f64::from(n);
            true
        } else {
            false
        }
    }

    /// Whether the bucket has refilled to its burst by `now` (nothing taken for a while).
    pub fn is_full(&mut self, now: Instant) -> bool {
        self.take_n(now, 0);
        self.tokens >= self.burst
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_burst_then_the_rate() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(20, 150, start).unwrap();
        assert_eq!((0..200).filter(|_| bucket.take(start)).count(), 150, "the burst, at once");
        assert!(!bucket.take(start + Duration::from_millis(10)), "a 20th of a second is not there yet");
        assert!(bucket.take(start + Duration::from_millis(50)), "one token per 50 ms");
        assert!(!bucket.take(start + Duration::from_millis(60)));
        let later = start + Duration::from_secs(3600);
        assert_eq!((0..200).filter(|_| bucket.take(later)).count(), 150, "refills to the burst, no more");
    }

    #[test]
    fn full_again_after_a_quiet_while() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(10, 5, start).unwrap();
        assert!(bucket.is_full(start));
        assert!(bucket.take(start));
        assert!(!bucket.is_full(start + Duration::from_millis(50)), "half a token back");
        assert!(bucket.is_full(start + Duration::from_millis(100)));
    }

    #[test]
    fn zero_per_second_is_off() {
        assert!(TokenBucket::new(0, 150, Instant::now()).is_none());
    }
}
