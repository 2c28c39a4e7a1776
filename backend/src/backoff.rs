//! Exponential backoff with a cap and jitter, and "log once per state change" for loops that
//! talk to Redis or PostgreSQL and must keep trying without flooding the log.

use std::time::Duration;

use rand::Rng;

/// Delay doubling from `min` to `max`, each with ±25 % jitter so restarted peers do not retry in
/// lockstep.
#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    current: Duration,
    failing: bool,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration) -> Self {
        Self {
            min,
            max,
            current: min,
            failing: false,
        }
    }

    /// Records a failure and returns how long to wait. `true` in the second field the first time
    /// after a success: the caller logs the failure then, and stays quiet while it persists.
    pub fn fail(&mut self) -> (Duration, bool) {
        let first = !self.failing;
        self.failing = true;
        let base = self.current;
        self.current = (self.current * 2).min(self.max);
        let jitter = rand::thread_rng().gen_range(0.75..=1.25);
        (base.mul_f64(jitter).min(self.max), first)
    }

    /// Records a success. Returns `true` if this ends a failing streak (log the recovery).
    pub fn succeed(&mut self) -> bool {
        let recovered = self.failing;
        self.failing = false;
        self.current = self.min;
        recovered
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_to_cap_and_reports_state_changes_once() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let (d1, first) = b.fail();
        assert!(first);
        assert!(d1 >= Duration::from_millis(75) && d1 <= Duration::from_millis(125));
        let mut last = d1;
        for _ in 0..10 {
            let (d, first) = b.fail();
            assert!(!first);
            assert!(d <= Duration::from_secs(1));
            last = d;
        }
        assert!(last >= Duration::from_millis(750));
        assert!(b.succeed());
        assert!(!b.succeed());
        assert!(b.fail().0 <= Duration::from_millis(125));
    }
}
