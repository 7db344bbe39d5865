//! Wrong `/api/v1` keys per client address (proto/PROTOCOL.md section 5): past [`MAX_KEY_FAILURES`] within
//! [`KEY_FAILURE_WINDOW`] the address is throttled (the API answers 429) until its window ends, so the key
//! cannot be guessed at the listener's speed. One table per node ([`crate::node::Gateway`]), bounded in size.

use std::{collections::HashMap, net::IpAddr, sync::Mutex, time::Duration};

use tokio::time::Instant;

/// Wrong API keys a client address may send within [`KEY_FAILURE_WINDOW`]; past it every request from there
/// gets 429 until the window ends.
pub const MAX_KEY_FAILURES: u32 = 20;
/// The window wrong keys are counted in, from the first one.
pub const KEY_FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// Addresses tracked at once; past it (many addresses, e.g. IPv6 /64s) the new ones share one count.
const MAX_TRACKED: usize = 10_000;

/// Wrong API keys per client address ([`crate::transports::client_ip::quota_key`]), counted per window.
#[derive(Default)]
pub struct ApiFailures {
    by_ip: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

impl ApiFailures {
    /// Whether `ip` sent [`MAX_KEY_FAILURES`] wrong keys in its current window.
    pub fn throttled(&self, ip: IpAddr, now: Instant) -> bool {
        let by_ip = self.by_ip.lock().unwrap_or_else(|e| e.into_inner());
        by_ip
            .get(&Self::tracked(&by_ip, ip))
            .is_some_and(|(start, n)| now < *start + KEY_FAILURE_WINDOW && *n >= MAX_KEY_FAILURES)
    }

    /// Counts a wrong key from `ip`.
    pub fn failed(&self, ip: IpAddr, now: Instant) {
        let mut by_ip = self.by_ip.lock().unwrap_or_else(|e| e.into_inner());
        if by_ip.len() >= MAX_TRACKED && !by_ip.contains_key(&ip) {
            by_ip.retain(|_, (start, _)| now < *start + KEY_FAILURE_WINDOW);
        }
        let key = Self::tracked(&by_ip, ip);
        let (start, n) = by_ip.entry(key).or_insert((now, 0));
        if now >= *start + KEY_FAILURE_WINDOW {
            (*start, *n) = (now, 0);
        }
        *n = n.saturating_add(1);
    }

    /// The key `ip` is counted under: itself, or when the table is full and it is new, the shared overflow key.
    fn tracked(by_ip: &HashMap<IpAddr, (Instant, u32)>, ip: IpAddr) -> IpAddr {
        if by_ip.len() >= MAX_TRACKED && !by_ip.contains_key(&ip) {
            IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED)
        } else {
            ip
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_is_throttled_past_the_bound_until_its_window_ends() {
        let failures = ApiFailures::default();
        let (a, b): (IpAddr, IpAddr) = ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        let start = Instant::now();
        for _ in 0..MAX_KEY_FAILURES {
            assert!(!failures.throttled(a, start));
            failures.failed(a, start);
        }
        assert!(failures.throttled(a, start));
        assert!(!failures.throttled(b, start), "another address is not");
        assert!(failures.throttled(a, start + KEY_FAILURE_WINDOW - Duration::from_millis(1)));
        let later = start + KEY_FAILURE_WINDOW;
        assert!(!failures.throttled(a, later), "the window ended");
        failures.failed(a, later);
        assert!(!failures.throttled(a, later), "a new window counts from one");
    }
}
