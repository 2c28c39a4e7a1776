//! Watches Redis memory against its `maxmemory` limit, so operators hear about it before Redis
//! starts refusing writes (the role sets `maxmemory-policy noeviction`: a full Redis rejects every
//! publish and every agent report rather than evicting streams or snapshots).
//!
//! Every [`POLL_INTERVAL`] it reads `INFO memory` and sets `pvpn_redis_used_memory_bytes`,
//! `pvpn_redis_maxmemory_bytes` and `pvpn_redis_memory_ratio` (used / max; 0 without a limit). It
//! logs one warning when the ratio crosses [`WARN_RATIO`] and one line when it falls back.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

/// How often `INFO memory` is read.
pub const POLL_INTERVAL: Duration = Duration::from_secs(15);
/// The share of `maxmemory` above which the backend warns.
pub const WARN_RATIO: f64 = 0.8;

/// What `INFO memory` says about the limit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MemoryUse {
    pub used: u64,
    /// 0 when Redis has no limit.
    pub max: u64,
}

impl MemoryUse {
    /// Parses the `used_memory:` and `maxmemory:` lines of `INFO memory`.
    pub fn parse(info: &str) -> Option<Self> {
        let field = |name: &str| {
            info.lines()
                .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        Some(Self {
            used: field("used_memory")?,
            max: field("maxmemory")?,
        })
    }

    /// Used over limit; 0 without a limit.
    pub fn ratio(&self) -> f64 {
        if self.max == 0 {
            0.0
        } else {
            self.used as f64 / self.max as f64
        }
    }
}

/// Polls until `shutdown`; a failed read is logged at debug level and retried next tick (the
/// relay and the feedback consumer already report Redis being down).
pub async fn run(redis: redis::Client, metrics: Arc<Metrics>, shutdown: CancellationToken) {
    let mut conn = None;
    let mut warned = false;
    let mut ticker = tokio::time::interval(POLL_INTERVAL);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        if conn.is_none() {
            conn = redis.get_multiplexed_async_connection().await.ok();
        }
        let Some(c) = conn.as_mut() else { continue };
        let info: redis::RedisResult<String> =
            redis::cmd("INFO").arg("memory").query_async(c).await;
        let Some(memory) = info.ok().as_deref().and_then(MemoryUse::parse) else {
            tracing::debug!("cannot read Redis INFO memory");
            conn = None;
            continue;
        };
        metrics.record_redis_memory(&memory);
        let high = memory.ratio() >= WARN_RATIO;
        if high && !warned {
            tracing::warn!(
                used = memory.used,
                max = memory.max,
                "Redis memory above {:.0}% of maxmemory: at 100% it refuses every publish",
                WARN_RATIO * 100.0
            );
        } else if !high && warned {
            tracing::info!(
                used = memory.used,
                max = memory.max,
                "Redis memory back below the warning level"
            );
        }
        warned = high;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_info_memory() {
        let info = "# Memory\r\nused_memory:1000\r\nused_memory_human:1000B\r\nmaxmemory:4000\r\nmaxmemory_human:4K\r\n";
        let m = MemoryUse::parse(info).unwrap();
        assert_eq!(
            m,
            MemoryUse {
                used: 1000,
                max: 4000
            }
        );
        assert_eq!(m.ratio(), 0.25);
        assert_eq!(MemoryUse { used: 5, max: 0 }.ratio(), 0.0);
        assert_eq!(
            MemoryUse::parse("# Memory\r\nused_memory_human:1B\r\n"),
            None
        );
    }
}
