//! The node lease: one agent at a time applies changes to a node's interface.
//!
//! The lease is the key `pvpn:{<region>}:node:<node>:lease` holding a random token, set with
//! `SET … NX PX <ttl>` and renewed every heartbeat interval. Renewing must not overwrite another
//! agent's token, and the node's ACL user may not run scripts, so it is an optimistic
//! transaction: `WATCH key`, `GET key`, and only if the token is still ours `MULTI; PEXPIRE; EXEC`
//! (an `EXEC` answered nil means the key changed in between: the renewal is tried again). Release
//! on shutdown is the same with `DEL`. An agent that does not hold the lease applies nothing,
//! reads no entry and sends no report: it says so in its log, on `/healthz` and in
//! `pvpn_agent_lease_held`, and tries again at every interval, so it takes over within one
//! interval of a clean stop and within one lease time (3 heartbeat intervals) of a crash.
//!
//! [`LeaseKeeper`] renews the lease in a task and on a connection of its own. Nothing else the
//! agent does (reading 60,000 peers for stats, a large snapshot, a slow Redis reply) can
//! delay a renewal: under CPU starvation a renewal queued behind such work let the lease run out
//! while its holder was alive, and a standby could have taken the node.

use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pvpn_common::NodeName;
use redis::aio::MultiplexedConnection;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::metrics::{Metrics, SharedStatus, lock};
use crate::redis_conn;

/// How often a renewal whose `EXEC` was aborted (the key changed between `WATCH` and `EXEC`) is
/// tried again before the tick gives up; the next tick tries anew.
const RENEWAL_ATTEMPTS: usize = 3;

/// What one renewal found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Renewal {
    /// The lease was ours and now runs for another lease time.
    Extended,
    /// The lease was free (never taken, released, or run out) and is ours now.
    Taken,
    /// Another agent's token is in the key.
    HeldByAnother,
}

impl Renewal {
    fn is_ours(self) -> bool {
        matches!(self, Renewal::Extended | Renewal::Taken)
    }
}

/// The lease of one node, as one agent sees it.
#[derive(Debug)]
pub struct Lease {
    key: String,
    token: String,
    ttl: Duration,
    /// Until when the lease is surely ours: the last successful renewal plus the lease time.
    held_until: Option<Instant>,
}

impl Lease {
    pub fn new(key: String, ttl: Duration) -> Self {
        Self {
            key,
            token: unique_token(),
            ttl,
            held_until: None,
        }
    }

    /// Whether the lease was ours at the last renewal and has not run out since.
    pub fn held(&self) -> bool {
        self.held_until.is_some_and(|t| Instant::now() < t)
    }

    /// Takes the lease if it is free, renews it if it is ours. On a Redis error the lease counts
    /// as ours only until its last renewal runs out.
    pub async fn renew(&mut self, conn: &mut MultiplexedConnection) -> redis::RedisResult<Renewal> {
        let started = Instant::now();
        let mut outcome = None;
        for _ in 0..RENEWAL_ATTEMPTS {
            outcome = self.try_renew(conn).await?;
            if outcome.is_some() {
                break;
            }
        }
        // Aborted every time: the key keeps changing under us, so it is not ours to count on.
        let outcome = outcome.unwrap_or(Renewal::HeldByAnother);
        self.held_until = outcome.is_ours().then(|| started + self.ttl);
        Ok(outcome)
    }

    /// One optimistic attempt; `None` when `EXEC` was aborted because the key changed.
    async fn try_renew(
        &self,
        conn: &mut MultiplexedConnection,
    ) -> redis::RedisResult<Option<Renewal>> {
        let ttl_ms = u64::try_from(self.ttl.as_millis()).unwrap_or(u64::MAX);
        redis::cmd("WATCH")
            .arg(&self.key)
            .query_async::<()>(conn)
            .await?;
        let current: Option<String> = redis::cmd("GET").arg(&self.key).query_async(conn).await?;
        match current {
            Some(token) if token == self.token => {
                let renewed: Option<(i64,)> = redis::pipe()
                    .atomic()
                    .cmd("PEXPIRE")
                    .arg(&self.key)
                    .arg(ttl_ms)
                    .query_async(conn)
                    .await?;
                // Aborted (nil), or PEXPIRE found no key because it ran out after GET: the next
                // try sees the key as it is now.
                Ok(matches!(renewed, Some((1,))).then_some(Renewal::Extended))
            }
            Some(_) => {
                redis::cmd("UNWATCH").query_async::<()>(conn).await?;
                Ok(Some(Renewal::HeldByAnother))
            }
            None => {
                redis::cmd("UNWATCH").query_async::<()>(conn).await?;
                let set: Option<String> = redis::cmd("SET")
                    .arg(&self.key)
                    .arg(&self.token)
                    .arg("NX")
                    .arg("PX")
                    .arg(ttl_ms)
                    .query_async(conn)
                    .await?;
                // NX refused: someone set it since our GET; the next try reads whose it is.
                Ok(set.map(|_| Renewal::Taken))
            }
        }
    }

    /// Gives the lease up if it is still ours, so a standby takes over at once.
    pub async fn release(&mut self, conn: &mut MultiplexedConnection) -> redis::RedisResult<()> {
        self.held_until = None;
        redis::cmd("WATCH")
            .arg(&self.key)
            .query_async::<()>(conn)
            .await?;
        let current: Option<String> = redis::cmd("GET").arg(&self.key).query_async(conn).await?;
        if current.as_deref() == Some(self.token.as_str()) {
            let _: Option<(i64,)> = redis::pipe()
                .atomic()
                .cmd("DEL")
                .arg(&self.key)
                .query_async(conn)
                .await?;
        } else {
            redis::cmd("UNWATCH").query_async::<()>(conn).await?;
        }
        Ok(())
    }
}

/// Keeps this agent's node lease: renews it every interval and tells the apply loop and the
/// reporter whether it is held.
pub struct LeaseKeeper {
    lease: Lease,
    node: NodeName,
    redis: redis::Client,
    interval: Duration,
    holder: watch::Sender<bool>,
    metrics: Arc<Metrics>,
    status: SharedStatus,
    /// Whether the failure to reach Redis was logged (once per outage).
    unreachable_logged: bool,
}

impl LeaseKeeper {
    /// A keeper renewing every `interval` a lease of three intervals; the receiver tells whether
    /// the lease is held (false until the first renewal).
    pub fn new(
        key: String,
        node: NodeName,
        redis: redis::Client,
        interval: Duration,
        metrics: Arc<Metrics>,
        status: SharedStatus,
    ) -> (Self, watch::Receiver<bool>) {
        let (holder, held) = watch::channel(false);
        let keeper = Self {
            lease: Lease::new(key, interval * 3),
            node,
            redis,
            interval,
            holder,
            metrics,
            status,
            unreachable_logged: false,
        };
        (keeper, held)
    }

    /// Renews until `stop`, then releases the lease so a standby takes over at once. The caller
    /// cancels `stop` only after the apply loop has finished: two agents never apply at once.
    pub async fn run(mut self, stop: CancellationToken) {
        let mut conn: Option<MultiplexedConnection> = None;
        let mut ticker = tokio::time::interval(self.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                _ = ticker.tick() => {}
            }
            self.renew(&mut conn).await;
        }
        let _ = self.holder.send(false);
        if self.lease.held()
            && let Some(c) = conn.as_mut()
            && let Err(e) = self.lease.release(c).await
        {
            tracing::debug!(error = %e, "lease not released; it runs out by itself");
        }
    }

    async fn renew(&mut self, conn: &mut Option<MultiplexedConnection>) {
        let was_held = *self.holder.borrow();
        let renewed = match conn {
            Some(c) => self.lease.renew(c).await,
            None => match redis_conn::commands(&self.redis).await {
                Ok(mut c) => {
                    let r = self.lease.renew(&mut c).await;
                    *conn = Some(c);
                    r
                }
                Err(e) => Err(e),
            },
        };
        let held = self.lease.held();
        match &renewed {
            Err(e) => {
                self.metrics.redis_errors.inc();
                tracing::debug!(error = %e, "lease not renewed");
                *conn = None;
                if !held {
                    // No session runs without the lease, so nothing else tells the operator why
                    // (a wrong CA, a refused connection, a bad password): say it here, once.
                    if !self.unreachable_logged {
                        tracing::warn!(error = %e, "redis unavailable, cannot take the node lease; retrying");
                        self.unreachable_logged = true;
                    }
                    lock(&self.status).problem = Some(format!("redis unavailable: {e}"));
                }
            }
            Ok(outcome) => {
                self.unreachable_logged = false;
                if was_held && *outcome == Renewal::Taken {
                    // Ours again, but it had run out: for a moment another agent could have
                    // taken the node. Say so, rather than nothing or "another agent".
                    tracing::warn!(
                        node = %self.node,
                        "the node lease ran out before it was renewed; taken again"
                    );
                }
            }
        }
        if held != was_held {
            if held {
                tracing::info!(node = %self.node, "holding the node lease: applying changes");
            } else if matches!(renewed, Ok(Renewal::HeldByAnother)) {
                tracing::warn!(
                    node = %self.node,
                    "another agent holds this node's lease: standing by, applying nothing"
                );
            } else {
                tracing::warn!(
                    node = %self.node,
                    "the node lease ran out and could not be renewed: applying nothing until it is"
                );
            }
            let _ = self.holder.send(held);
        }
        self.metrics.lease_held.set(i64::from(held));
        // Standby means another agent holds the lease, which only a successful renewal can tell.
        lock(&self.status).standby = matches!(renewed, Ok(Renewal::HeldByAnother));
    }
}

/// A token no other agent process has: std's per-process random hash keys (seeded from the OS),
/// the pid and the start time. It needs to be unique, not secret: only this node's ACL user can
/// read or write the lease.
fn unique_token() -> String {
    let random = |salt: u64| {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(salt);
        h.finish()
    };
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "{:016x}{:016x}-{}-{nanos:x}",
        random(1),
        random(2),
        std::process::id()
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn tokens_differ() {
        assert_ne!(super::unique_token(), super::unique_token());
    }
}
