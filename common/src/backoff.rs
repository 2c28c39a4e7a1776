//! The retry policy of every loop that must keep trying (the agent's sessions, the relay, the
//! feedback consumer, the bot's start-up, migrations): capped exponential delays with jitter,
//! and a record of the failure being retried, so that each change of failure is logged once and
//! the recovery once, not every attempt.
//!
//! Pure: nothing here sleeps or logs. The caller asks [`Backoff::fail`] how long to wait and
//! whether the failure is news, waits (racing its shutdown signal), and logs when told to.

use std::time::Duration;

use rand_core::{OsRng, RngCore};

/// Capped, jittered exponential backoff plus the kind of failure it is retrying.
///
/// The n-th consecutive failure waits a uniformly random time in `[c/2, c]`, where
/// `c = min(cap, base · 2ⁿ)`: never more than `cap`, never less than half the ceiling, and the
/// randomness keeps a region's agents (or a restarted backend's loops) from retrying in
/// lockstep after an outage.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    attempt: u32,
    streak: FailureStreak,
}

/// The kind of failure being retried, for loops that log once per change of failure. Part of
/// [`Backoff`]; on its own for loops whose next attempt is on a timer anyway (the scheduler).
#[derive(Debug, Clone, Default)]
pub struct FailureStreak {
    current: Option<&'static str>,
}

impl FailureStreak {
    /// Records a failure of kind `kind`: whether it is news.
    pub fn fail(&mut self, kind: &'static str) -> FailureChange {
        match self.current.replace(kind) {
            None => FailureChange::Started,
            Some(before) if before == kind => FailureChange::Same,
            Some(before) => FailureChange::Changed { from: before },
        }
    }

    /// Records a success: the kind of failure it ends, if any (log the recovery then).
    pub fn succeed(&mut self) -> Option<&'static str> {
        self.current.take()
    }

    /// The kind of failure being retried, if the last attempt failed.
    pub fn current(&self) -> Option<&'static str> {
        self.current
    }
}

/// What [`Backoff::fail`] says about one failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    /// How long to wait before the next attempt.
    pub delay: Duration,
    /// How this failure relates to the one before.
    pub change: FailureChange,
}

/// Whether a failure is news, and so worth a log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureChange {
    /// The first failure after success (or ever).
    Started,
    /// Still failing, but of another kind than before.
    Changed { from: &'static str },
    /// The same kind as the attempt before: stay quiet.
    Same,
}

impl FailureChange {
    /// `true` when the caller should log this failure (at warning level); otherwise at most debug.
    pub fn is_news(self) -> bool {
        self != FailureChange::Same
    }
}

impl Retry {
    /// See [`FailureChange::is_news`].
    pub fn is_news(&self) -> bool {
        self.change.is_news()
    }
}

impl Backoff {
    pub fn new(base: Duration, cap: Duration) -> Self {
        Self {
            base,
            cap: cap.max(base),
            attempt: 0,
            streak: FailureStreak::default(),
        }
    }

    /// Records a failed attempt of kind `kind` (a short fixed name such as `"redis unavailable"`)
    /// and returns the delay before the next one.
    pub fn fail(&mut self, kind: &'static str) -> Retry {
        self.fail_with(kind, &mut OsRng)
    }

    /// [`Backoff::fail`] with the randomness supplied (tests pass a fixed source).
    pub fn fail_with(&mut self, kind: &'static str, rng: &mut impl RngCore) -> Retry {
        let change = self.streak.fail(kind);
        let ceiling = self.ceiling();
        self.attempt = self.attempt.saturating_add(1);
        let half = ceiling / 2;
        // 53 random bits as a fraction in [0, 1].
        let fraction = (rng.next_u64() >> 11) as f64 / ((1u64 << 53) - 1) as f64;
        let delay = half + (ceiling - half).mul_f64(fraction);
        Retry {
            delay: delay.min(self.cap),
            change,
        }
    }

    /// Records a success: delays start from `base` again. Returns the kind of failure this ends,
    /// if it ends one, so the caller logs the recovery once.
    pub fn succeed(&mut self) -> Option<&'static str> {
        self.attempt = 0;
        self.streak.succeed()
    }

    /// The kind of failure being retried, if the last attempt failed.
    pub fn failure(&self) -> Option<&'static str> {
        self.streak.current()
    }

    fn ceiling(&self) -> Duration {
        let factor = 1u32 << self.attempt.min(20);
        self.base.saturating_mul(factor).min(self.cap)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A randomness source that always answers the same number.
    struct Fixed(u64);

    impl RngCore for Fixed {
        fn next_u32(&mut self) -> u32 {
            self.0 as u32
        }
        fn next_u64(&mut self) -> u64 {
            self.0
        }
        fn fill_bytes(&mut self, dest: &mut [u8]) {
            dest.fill(self.0 as u8);
        }
        fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
            dest.fill(self.0 as u8);
            Ok(())
        }
    }

    const BASE: Duration = Duration::from_millis(100);
    const CAP: Duration = Duration::from_secs(5);

    fn delays(rng: u64, n: usize) -> Vec<Duration> {
        let mut b = Backoff::new(BASE, CAP);
        (0..n)
            .map(|_| b.fail_with("x", &mut Fixed(rng)).delay)
            .collect()
    }

    #[test]
    fn the_lowest_draw_is_half_the_ceiling_and_the_highest_the_ceiling() {
        let ms = Duration::from_millis;
        assert_eq!(
            delays(0, 8),
            [
                ms(50),
                ms(100),
                ms(200),
                ms(400),
                ms(800),
                ms(1600),
                ms(2500),
                ms(2500)
            ]
        );
        assert_eq!(
            delays(u64::MAX, 8),
            [
                ms(100),
                ms(200),
                ms(400),
                ms(800),
                ms(1600),
                ms(3200),
                ms(5000),
                ms(5000)
            ]
        );
    }

    #[test]
    fn real_jitter_stays_within_its_range_and_under_the_cap() {
        let mut b = Backoff::new(BASE, CAP);
        for attempt in 0..64u32 {
            let ceiling = BASE.saturating_mul(1 << attempt.min(20)).min(CAP);
            let d = b.fail("x").delay;
            assert!(d >= ceiling / 2 && d <= ceiling, "attempt {attempt}: {d:?}");
            assert!(d <= CAP);
        }
        // Thousands of attempts: the exponent saturates instead of overflowing.
        for _ in 0..10_000 {
            assert!(b.fail("x").delay <= CAP);
        }
    }

    #[test]
    fn success_starts_the_delays_over() {
        let mut b = Backoff::new(BASE, CAP);
        for _ in 0..10 {
            b.fail_with("x", &mut Fixed(u64::MAX));
        }
        b.succeed();
        assert_eq!(b.fail_with("x", &mut Fixed(u64::MAX)).delay, BASE);
    }

    #[test]
    fn a_cap_below_the_base_is_the_base() {
        let mut b = Backoff::new(Duration::from_secs(2), Duration::from_secs(1));
        assert_eq!(
            b.fail_with("x", &mut Fixed(u64::MAX)).delay,
            Duration::from_secs(2)
        );
    }

    #[test]
    fn each_change_of_failure_is_news_once_and_so_is_the_recovery() {
        let mut b = Backoff::new(BASE, CAP);
        assert_eq!(b.succeed(), None, "nothing to recover from");
        assert_eq!(b.fail("redis").change, FailureChange::Started);
        assert!(!b.fail("redis").is_news());
        assert!(!b.fail("redis").is_news());
        assert_eq!(
            b.fail("interface").change,
            FailureChange::Changed { from: "redis" }
        );
        assert!(!b.fail("interface").is_news());
        assert_eq!(b.failure(), Some("interface"));
        assert_eq!(b.succeed(), Some("interface"));
        assert_eq!(b.succeed(), None, "a recovery is reported once");
        assert!(
            b.fail("interface").is_news(),
            "failing again after a success is news"
        );
    }
}
