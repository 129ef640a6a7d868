//! A per-client rate limit: a token bucket per source, counted in transactions. Every request
//! costs 1 (a `POST /txs` costs the number of transactions it carries). Clients over it get `429`
//! with a JSON error and a `retry-after`; nothing of theirs is applied.
//!
//! A source is an IPv4 address or an IPv6 /64: one host on IPv6 is routinely given a whole /64,
//! so a bucket per IPv6 address would give it 2^64 buckets, and anything the limit bounds (the
//! deposit book's rows, the ledger's transactions) would be unbounded for it.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

/// Transactions (or other requests) per second a client may sustain, and how many it may send at
/// once.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    pub per_second: f64,
    pub burst: f64,
}

#[derive(Debug)]
pub struct RateLimiter {
    limit: Option<RateLimit>,
    buckets: Mutex<Buckets>,
}

#[derive(Debug)]
struct Buckets {
    by_source: HashMap<IpAddr, Bucket>,
    /// Prune again only once the map has doubled since the last prune, so a crowd of sources
    /// none of whose buckets has refilled does not make every request walk the map.
    prune_at: usize,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// Negative while the client owes for a request larger than the burst.
    tokens: f64,
    at: Instant,
}

/// Past this many clients, buckets that have refilled are forgotten (a full bucket carries no
/// information), so the map holds only the sources seen within about `burst / per_second`.
const PRUNE_AT: usize = 65_536;

/// The source a bucket belongs to: an IPv4 address (also when it arrives IPv4-mapped on an IPv6
/// socket), or an IPv6 address's /64.
pub fn source_of(client: IpAddr) -> IpAddr {
    match client {
        IpAddr::V4(_) => client,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(std::net::Ipv6Addr::from(v6.to_bits() & !u128::from(u64::MAX))),
        },
    }
}

impl RateLimiter {
    /// `None` turns the limit off (benchmarks, a coordinator behind its own proxy).
    pub fn new(limit: Option<RateLimit>) -> Self {
        assert!(
            limit.is_none_or(|l| l.per_second > 0.0 && l.burst >= 1.0),
            "a rate limit needs a positive rate and a burst of at least 1"
        );
        RateLimiter { limit, buckets: Mutex::new(Buckets { by_source: HashMap::new(), prune_at: PRUNE_AT }) }
    }

    /// Takes `cost` tokens for `client`; `Err(seconds)` says how long until it could.
    pub fn take(&self, client: IpAddr, cost: f64) -> Result<(), f64> {
        self.take_rest(client, 0.0, cost)
    }

    /// Charges the rest of a request that cost `total` and already paid `paid` on the way in.
    ///
    /// The whole cost is always charged, so a client's sustained rate never exceeds the limit,
    /// whatever the size of its requests. A request larger than the burst can never find that
    /// many tokens: it passes only when the bucket was full, and leaves the bucket owing the rest
    /// (negative), so the client waits `(total - burst) / per_second` before its next request.
    pub fn take_rest(&self, client: IpAddr, paid: f64, total: f64) -> Result<(), f64> {
        self.take_at(client, paid, total, Instant::now())
    }

    fn take_at(&self, client: IpAddr, paid: f64, total: f64, now: Instant) -> Result<(), f64> {
        let Some(limit) = self.limit else { return Ok(()) };
        let mut buckets = self.buckets.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let buckets = &mut *buckets;
        if buckets.by_source.len() >= buckets.prune_at {
            buckets.by_source.retain(|_, b| {
                b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * limit.per_second < limit.burst
            });
            buckets.prune_at = PRUNE_AT.max(buckets.by_source.len() * 2);
        }
        let bucket = buckets.by_source.entry(source_of(client)).or_insert(Bucket { tokens: limit.burst, at: now });
        bucket.tokens = (bucket.tokens + now.saturating_duration_since(bucket.at).as_secs_f64() * limit.per_second)
            .min(limit.burst);
        bucket.at = now;
        let needed = total.min(limit.burst) - paid;
        let cost = total - paid;
        if bucket.tokens >= needed {
            bucket.tokens -= cost;
            Ok(())
        } else {
            Err((needed - bucket.tokens) / limit.per_second)
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
    fn a_request_larger_than_the_burst_is_charged_whole_so_the_sustained_rate_holds() {
        // 200 transactions a second, a burst of 400, requests of 1,000: before, each cost at
        // most the burst, about 500 transactions a second passed.
        let limit = RateLimit { per_second: 200.0, burst: 400.0 };
        let limiter = RateLimiter::new(Some(limit));
        let client: IpAddr = "127.0.0.1".parse().unwrap();
        let start = Instant::now();
        let mut passed = 0.0;
        let mut at = start;
        let window = std::time::Duration::from_secs(60);
        while at < start + window {
            // The middleware charges one on the way in; the handler the rest.
            if limiter.take_at(client, 0.0, 1.0, at).is_ok() && limiter.take_at(client, 1.0, 1_000.0, at).is_ok() {
                passed += 1_000.0;
            }
            at += std::time::Duration::from_millis(100);
        }
        let rate = passed / window.as_secs_f64();
        assert!(rate <= 200.0 + 1_000.0 / 60.0, "{rate} transactions a second passed");
        assert!(passed >= 1_000.0, "a large request still passes from a full bucket");
        // Right after one, the client owes 600 and waits three seconds.
        let limiter = RateLimiter::new(Some(limit));
        limiter.take_at(client, 0.0, 1_000.0, start).unwrap();
        let wait = limiter.take_at(client, 0.0, 1.0, start).unwrap_err();
        assert!((wait - 3.005).abs() < 0.01, "{wait}");
    }

    /// Who could escape the limit: a host given an IPv6 /64 (the usual allocation), by
    /// sending each request from another of its 2^64 addresses. It shares one bucket.
    #[test]
    fn an_ipv6_host_has_one_bucket_for_its_whole_64_and_a_mapped_ipv4_is_its_ipv4() {
        let limiter = RateLimiter::new(Some(RateLimit { per_second: 1.0, burst: 3.0 }));
        let at = Instant::now();
        for n in 0..3u16 {
            let address: IpAddr = format!("2001:db8:1:2::{n:x}").parse().unwrap();
            assert!(limiter.take_at(address, 0.0, 1.0, at).is_ok());
        }
        let fourth: IpAddr = "2001:db8:1:2:ffff:ffff:ffff:ffff".parse().unwrap();
        assert!(limiter.take_at(fourth, 0.0, 1.0, at).is_err(), "another address of the same /64 got a new bucket");
        let next_64: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert!(limiter.take_at(next_64, 0.0, 1.0, at).is_ok(), "another /64 is another source");

        let v4: IpAddr = "192.0.2.7".parse().unwrap();
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        for _ in 0..3 {
            assert!(limiter.take_at(v4, 0.0, 1.0, at).is_ok());
        }
        assert!(limiter.take_at(mapped, 0.0, 1.0, at).is_err(), "an IPv4-mapped address is its IPv4 address");
        assert_eq!(source_of("192.0.2.7".parse().unwrap()), v4);
    }

    /// Who could slow every request: a crowd of sources whose buckets have not refilled, past
    /// the prune size. The map is walked again only once it has doubled.
    #[test]
    fn a_crowd_of_drained_sources_is_pruned_only_as_the_map_doubles() {
        let limiter = RateLimiter::new(Some(RateLimit { per_second: 0.001, burst: 1.0 }));
        let at = Instant::now();
        for n in 0..(PRUNE_AT as u32 + 10) {
            let _ = limiter.take_at(IpAddr::V4(std::net::Ipv4Addr::from(n)), 0.0, 1.0, at);
        }
        let buckets = limiter.buckets.lock().unwrap();
        assert_eq!(buckets.by_source.len(), PRUNE_AT + 10, "drained buckets are kept: they carry the debt");
        assert_eq!(buckets.prune_at, 2 * PRUNE_AT, "the next prune waits for the map to double");
    }

    #[test]
    fn no_limit_lets_everything_through() {
        let limiter = RateLimiter::new(None);
        let client: IpAddr = "::1".parse().unwrap();
        assert!((0..10_000).all(|_| limiter.take(client, 1.0).is_ok()));
    }
}
