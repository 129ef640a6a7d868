//! A per-client rate limit: a token bucket per source IP. Clients over it get `429` with a
//! JSON error and a `retry-after`; nothing of theirs is applied.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

/// Requests per second a client may sustain, and how many it may send at once.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    pub per_second: f64,
    pub burst: f64,
}

#[derive(Debug)]
pub struct RateLimiter {
    limit: Option<RateLimit>,
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Past this many clients, buckets that have refilled are forgotten (a full bucket carries no
/// information), so the map cannot grow without bound.
const PRUNE_AT: usize = 65_536;

impl RateLimiter {
    /// `None` turns the limit off (benchmarks, a coordinator behind its own proxy).
    pub fn new(limit: Option<RateLimit>) -> Self {
        assert!(
            limit.is_none_or(|l| l.per_second > 0.0 && l.burst >= 1.0),
            "a rate limit needs a positive rate and a burst of at least 1"
        );
        RateLimiter { limit, buckets: Mutex::new(HashMap::new()) }
    }

    /// Takes `cost` tokens for `client`; `Err(seconds)` says how long until it could.
    pub fn take(&self, client: IpAddr, cost: f64) -> Result<(), f64> {
        let Some(limit) = self.limit else { return Ok(()) };
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if buckets.len() >= PRUNE_AT {
            buckets.retain(|_, b| b.tokens + now.duration_since(b.at).as_secs_f64() * limit.per_second < limit.burst);
        }
        let bucket = buckets.entry(client).or_insert(Bucket { tokens: limit.burst, at: now });
        bucket.tokens =
            (bucket.tokens + now.duration_since(bucket.at).as_secs_f64() * limit.per_second).min(limit.burst);
        bucket.at = now;
        // A request costing more than the burst can never pass whole; let it through alone
        // when the bucket is full, so a large `POST /txs` is slowed, not banned.
        let cost = cost.min(limit.burst);
        if bucket.tokens >= cost {
            bucket.tokens -= cost;
            Ok(())
        } else {
            Err((cost - bucket.tokens) / limit.per_second)
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_burst_passes_and_the_next_request_waits() {
        let limiter = RateLimiter::new(Some(RateLimit { per_second: 1.0, burst: 3.0 }));
        let client: IpAddr = "127.0.0.1".parse().unwrap();
        let other: IpAddr = "127.0.0.2".parse().unwrap();
        for _ in 0..3 {
            assert!(limiter.take(client, 1.0).is_ok());
        }
        let wait = limiter.take(client, 1.0).unwrap_err();
        assert!(wait > 0.5 && wait <= 1.0, "{wait}");
        assert!(limiter.take(other, 1.0).is_ok(), "each client has its own bucket");
    }

    #[test]
    fn no_limit_lets_everything_through() {
        let limiter = RateLimiter::new(None);
        let client: IpAddr = "::1".parse().unwrap();
        assert!((0..10_000).all(|_| limiter.take(client, 1.0).is_ok()));
    }
}
