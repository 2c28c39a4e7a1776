//! The node lease: one agent at a time applies changes to a node's interface.
//!
//! The lease is the key `pvpn:{<region>}:node:<node>:lease` holding a random token, set with
//! `SET … NX PX <ttl>` and renewed with every heartbeat. Renewing must not overwrite another
//! agent's token, and the node's ACL user may not run scripts, so it is an optimistic
//! transaction: `WATCH key`, `GET key`, and only if the token is still ours `MULTI; PEXPIRE; EXEC`
//! (an `EXEC` answered nil means the key changed in between: not renewed). Release on shutdown is
//! the same with `DEL`. An agent that does not hold the lease applies nothing, reads no entry and
//! sends no report: it says so in its log, on `/healthz` and in `pvpn_agent_lease_held`, and tries
//! again at every heartbeat tick, so it takes over within one interval of a clean stop and within
//! one lease time (3 heartbeat intervals) of a crash.

use std::time::{Duration, Instant};

use std::hash::{BuildHasher, Hasher};

use redis::aio::MultiplexedConnection;

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

    /// Takes the lease if it is free, renews it if it is ours. Returns whether it is ours now.
    /// On a Redis error the lease counts as ours only until its last renewal runs out.
    pub async fn refresh(&mut self, conn: &mut MultiplexedConnection) -> redis::RedisResult<bool> {
        let started = Instant::now();
        let ours = self.try_refresh(conn).await?;
        self.held_until = ours.then(|| started + self.ttl);
        Ok(ours)
    }

    async fn try_refresh(&self, conn: &mut MultiplexedConnection) -> redis::RedisResult<bool> {
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
                Ok(matches!(renewed, Some((1,))))
            }
            Some(_) => {
                redis::cmd("UNWATCH").query_async::<()>(conn).await?;
                Ok(false)
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
                Ok(set.is_some())
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
