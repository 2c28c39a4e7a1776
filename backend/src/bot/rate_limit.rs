//! A per-user token bucket for actions that create things (devices, re-issued keys), so one user
//! hammering a button gets a polite "slow down" instead of generating keys in a loop.
//!
//! Time is passed in, so the behaviour is tested without sleeping.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How many creating actions a user may do in a burst, and how fast the allowance comes back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub burst: u32,
    /// Time for one action's allowance to come back.
    pub refill_every: Duration,
}

impl Default for RateLimit {
    fn default() -> Self {
        Self {
            burst: 5,
            refill_every: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// Buckets for all users. Users whose bucket is full again are forgotten, so memory stays
/// proportional to recently active users.
#[derive(Debug)]
pub struct RateLimiter {
    limit: RateLimit,
    buckets: Mutex<HashMap<i64, Bucket>>,
}

impl RateLimiter {
    pub fn new(limit: RateLimit) -> Self {
        Self {
            limit,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one action's allowance for `user` at `now`, or says how long until one is back.
    pub fn try_acquire(&self, user: i64, now: Instant) -> Result<(), Duration> {
        let burst = f64::from(self.limit.burst.max(1));
        let per_token = self.limit.refill_every.as_secs_f64().max(f64::EPSILON);
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() > 10_000 {
            buckets.retain(|_, b| refilled(*b, now, burst, per_token) < burst);
        }
        let bucket = buckets.entry(user).or_insert(Bucket {
            tokens: burst,
            updated: now,
        });
        let tokens = refilled(*bucket, now, burst, per_token);
        if tokens >= 1.0 {
            *bucket = Bucket {
                tokens: tokens - 1.0,
                updated: now,
            };
            Ok(())
        } else {
            *bucket = Bucket {
                tokens,
                updated: now,
            };
            Err(Duration::from_secs_f64((1.0 - tokens) * per_token))
        }
    }
}

fn refilled(bucket: Bucket, now: Instant, burst: f64, per_token: f64) -> f64 {
    let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
    (bucket.tokens + elapsed / per_token).min(burst)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter() -> RateLimiter {
        RateLimiter::new(RateLimit {
            burst: 3,
            refill_every: Duration::from_secs(10),
        })
    }

    #[test]
    fn allows_a_burst_then_refuses_until_refilled() {
        let limiter = limiter();
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(limiter.try_acquire(1, t0), Ok(()));
        }
        let wait = limiter.try_acquire(1, t0).unwrap_err();
        assert_eq!(wait, Duration::from_secs(10));
        assert!(limiter.try_acquire(1, t0 + Duration::from_secs(5)).is_err());
        assert_eq!(limiter.try_acquire(1, t0 + Duration::from_secs(10)), Ok(()));
        assert!(
            limiter
                .try_acquire(1, t0 + Duration::from_secs(10))
                .is_err()
        );
    }

    #[test]
    fn users_are_limited_independently() {
        let limiter = limiter();
        let t0 = Instant::now();
        for _ in 0..3 {
            limiter.try_acquire(1, t0).unwrap();
        }
        assert!(limiter.try_acquire(1, t0).is_err());
        assert_eq!(limiter.try_acquire(2, t0), Ok(()));
    }

    #[test]
    fn refill_never_exceeds_the_burst() {
        let limiter = limiter();
        let t0 = Instant::now();
        limiter.try_acquire(1, t0).unwrap();
        let later = t0 + Duration::from_secs(3600);
        for _ in 0..3 {
            limiter.try_acquire(1, later).unwrap();
        }
        assert!(limiter.try_acquire(1, later).is_err());
    }
}
