//! The outbox relay: publishes committed outbox rows to Redis, in id order, and marks them
//! published only after Redis confirmed.
//!
//! Each pass: make sure every region's epoch marker exists in Redis (`snapshot`, republishing a
//! region from PostgreSQL where it does not); compare every node's revision in Redis with
//! PostgreSQL's published revision (`consistency`) at start, after a reconnect and every
//! `consistency_interval`, and each node again when a pass first touches it; republish a node
//! that disagrees under a new epoch and ask its agent to reconcile; then publish the unpublished
//! rows oldest first, one atomic Lua script per row (`scripts`). A pass runs when PostgreSQL
//! notifies a new outbox row (`LISTEN pvpn_outbox`) or after the poll interval. When Redis or
//! PostgreSQL fails, rows stay unpublished and the relay retries with capped, jittered backoff,
//! logging once when it starts failing and once when it recovers. When only one node fails (a
//! Redis error about its keys), that node waits for its own retry (`failures`) and the others
//! go on.
//!
//! Only one relay may run: it holds a PostgreSQL advisory lock on the connection it works on, and
//! a second backend waits for the lock.

mod consistency;
mod failures;
mod publish;
mod scripts;
mod snapshot;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pvpn_common::backoff::Backoff;
use redis::AsyncConnectionConfig;
use redis::aio::MultiplexedConnection;
use sqlx::postgres::PgListener;
use sqlx::{Connection, PgConnection, PgPool};
use tokio_util::sync::CancellationToken;

use crate::db;
use crate::metrics::Metrics;
use consistency::Verdict;
use failures::NodeFailures;
use scripts::Scripts;

/// Key of the advisory lock that makes the relay a singleton ("pvpnrely" in ASCII).
const RELAY_LOCK_KEY: i64 = 0x7076_706e_7265_6c79;

/// Why a relay pass stopped.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("postgres: {0}")]
    Db(#[from] sqlx::Error),
    #[error("inconsistent data: {0}")]
    Data(String),
}

impl RelayError {
    /// Whether this error concerns the keys of the node being published (a key of the wrong
    /// type, a script error, a refused command, a node that vanished), so only that node waits;
    /// a cut connection or a Redis that is loading, read-only or out of memory stops the pass.
    fn is_node_specific(&self) -> bool {
        match self {
            RelayError::Redis(e) => {
                !(e.is_io_error()
                    || e.is_connection_dropped()
                    || e.is_connection_refusal()
                    || e.is_timeout())
                    && e.code().is_some_and(|code| {
                        !matches!(
                            code,
                            "LOADING"
                                | "BUSY"
                                | "MASTERDOWN"
                                | "READONLY"
                                | "NOAUTH"
                                | "WRONGPASS"
                                | "CLUSTERDOWN"
                                | "TRYAGAIN"
                                | "OOM"
                        )
                    })
            }
            RelayError::Db(_) => false,
            RelayError::Data(_) => true,
        }
    }
}

/// Relay knobs, from [`crate::config::Config`].
#[derive(Debug, Clone)]
pub struct RelaySettings {
    /// Longest wait between passes when no notification arrives.
    pub poll_interval: Duration,
    /// Approximate `MAXLEN` of each region's event stream.
    pub stream_maxlen: u64,
    /// Rows read per query.
    pub batch_size: i64,
    /// How often every node's revision in Redis is compared with PostgreSQL's (also at start and
    /// after every reconnect; a node touched by a pass is compared then as well).
    pub consistency_interval: Duration,
}

impl Default for RelaySettings {
    fn default() -> Self {
        Self {
            poll_interval: Duration::from_millis(500),
            stream_maxlen: 100_000,
            batch_size: 500,
            consistency_interval: Duration::from_secs(30),
        }
    }
}

struct Relay {
    pool: PgPool,
    redis: redis::Client,
    metrics: Arc<Metrics>,
    settings: RelaySettings,
    scripts: Scripts,
    /// The connection holding the advisory lock; every query of the relay runs on it.
    pg: Option<PgConnection>,
    conn: Option<MultiplexedConnection>,
    /// When every node was last compared with PostgreSQL; `None` forces a comparison (start,
    /// reconnect).
    compared_at: Option<Instant>,
    failures: NodeFailures,
}

/// Runs the relay until `shutdown` is cancelled.
pub async fn run(
    pool: PgPool,
    redis: redis::Client,
    metrics: Arc<Metrics>,
    settings: RelaySettings,
    shutdown: CancellationToken,
) {
    let mut relay = Relay {
        pool,
        redis,
        metrics,
        settings,
        scripts: Scripts::default(),
        pg: None,
        conn: None,
        compared_at: None,
        failures: NodeFailures::default(),
    };
    let mut listener: Option<PgListener> = None;
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    while !shutdown.is_cancelled() {
        if listener.is_none() {
            listener = listen(&relay.pool).await;
        }
        let result = relay.pass(&shutdown).await;
        // Measured from the pool, so the gauge keeps rising while Redis is down.
        update_backlog(&relay.pool, &relay.metrics).await;
        match result {
            Ok(()) => {
                if let Some(failure) = backoff.succeed() {
                    tracing::info!(
                        recovered_from = failure,
                        "relay recovered: publishing again"
                    );
                }
                let wait = relay.settings.poll_interval;
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    notified = wait_notification(&mut listener) => {
                        if !notified {
                            tokio::time::sleep(wait.min(Duration::from_millis(200))).await;
                        }
                    }
                    _ = tokio::time::sleep(wait) => {}
                }
            }
            Err(e) => {
                relay.metrics.error("relay");
                // Whatever happened while we were cut off, compare everything once back.
                relay.compared_at = None;
                if matches!(e, RelayError::Redis(_)) {
                    relay.conn = None;
                }
                if matches!(e, RelayError::Db(_)) {
                    relay.pg = None;
                    listener = None;
                }
                let retry = backoff.fail(match e {
                    RelayError::Redis(_) => "redis unavailable",
                    RelayError::Db(_) => "database unavailable",
                    RelayError::Data(_) => "inconsistent data",
                });
                if retry.is_news() {
                    tracing::warn!(error = %e, "relay cannot publish; outbox rows wait, retrying with backoff");
                } else {
                    tracing::debug!(error = %e, "relay still cannot publish");
                }
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(retry.delay) => {}
                }
            }
        }
    }
    tracing::info!("relay stopped");
}

async fn update_backlog(pool: &PgPool, metrics: &Metrics) {
    if let Ok(mut conn) = pool.acquire().await
        && let Ok((backlog, _)) = db::outbox::backlog(&mut conn).await
    {
        metrics.outbox_backlog.set(backlog);
    }
}

async fn listen(pool: &PgPool) -> Option<PgListener> {
    let mut listener = PgListener::connect_with(pool).await.ok()?;
    listener.listen(db::outbox::NOTIFY_CHANNEL).await.ok()?;
    Some(listener)
}

/// `true` when a notification arrived, `false` when listening failed (the caller polls).
async fn wait_notification(listener: &mut Option<PgListener>) -> bool {
    match listener {
        Some(l) => match l.recv().await {
            Ok(_) => true,
            Err(_) => {
                *listener = None;
                false
            }
        },
        None => std::future::pending().await,
    }
}

impl Relay {
    /// Connects and takes the leadership lock; waits (returns `Ok(false)`) while another relay
    /// holds it.
    async fn ensure_leader(&mut self) -> Result<bool, RelayError> {
        if self.pg.is_some() {
            return Ok(true);
        }
        let mut conn = self.pool.acquire().await?.detach();
        let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(RELAY_LOCK_KEY)
            .fetch_one(&mut conn)
            .await?;
        if locked {
            tracing::info!("relay holds the leadership lock");
            self.pg = Some(conn);
        } else {
            let _ = conn.close().await;
        }
        Ok(locked)
    }

    async fn redis(&mut self) -> Result<MultiplexedConnection, RelayError> {
        if let Some(conn) = &self.conn {
            return Ok(conn.clone());
        }
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(10)));
        let conn = self
            .redis
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        self.conn = Some(conn.clone());
        Ok(conn)
    }

    async fn pass(&mut self, shutdown: &CancellationToken) -> Result<(), RelayError> {
        if !self.ensure_leader().await? {
            tokio::select! {
                _ = shutdown.cancelled() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
            return Ok(());
        }
        let mut redis = self.redis().await?;
        let Some(mut pg) = self.pg.take() else {
            return Ok(());
        };
        let result = self.pass_on(&mut pg, &mut redis).await;
        self.pg = Some(pg);
        result
    }

    async fn pass_on(
        &mut self,
        pg: &mut PgConnection,
        redis: &mut MultiplexedConnection,
    ) -> Result<(), RelayError> {
        let ctx = publish::Ctx {
            scripts: &self.scripts,
            metrics: &self.metrics,
            settings: &self.settings,
        };
        snapshot::ensure_region_markers(pg, redis, &ctx, &mut self.failures).await?;
        // Nodes compared in this pass; a node is compared once per pass at most.
        let mut compared: HashSet<String> = HashSet::new();
        let due = self
            .compared_at
            .is_none_or(|at| at.elapsed() >= self.settings.consistency_interval);
        let retries = self.failures.due_nodes();
        if due || !retries.is_empty() {
            let only = (!due).then_some(retries.as_slice());
            let checked = settle(pg, redis, &ctx, &mut self.failures, only, &retries).await?;
            compared.extend(checked);
            if due {
                self.compared_at = Some(Instant::now());
            }
        }
        loop {
            let held = self.failures.held();
            let rows = db::outbox::unpublished(pg, self.settings.batch_size, &held).await?;
            let fresh: Vec<String> = rows
                .iter()
                .filter_map(|r| r.node.clone())
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .filter(|n| !compared.contains(n))
                .collect();
            if !fresh.is_empty() {
                settle(pg, redis, &ctx, &mut self.failures, Some(&fresh), &[]).await?;
                compared.extend(fresh);
            }
            let mut done = Vec::new();
            let result =
                publish::publish_rows(pg, redis, &ctx, &mut self.failures, &rows, &mut done).await;
            publish::mark_done(pg, &rows, &done).await?;
            result?;
            if (rows.len() as i64) < self.settings.batch_size {
                break;
            }
        }
        Ok(())
    }
}

/// Compares the nodes named in `only` (or every node) with PostgreSQL and republishes those that
/// disagree, and those in `force` (failed nodes due for their retry) whatever they hold.
/// A node whose republish fails is handed to `failures`; the others go on. Returns the names of
/// the nodes compared.
async fn settle(
    pg: &mut PgConnection,
    redis: &mut MultiplexedConnection,
    ctx: &publish::Ctx<'_>,
    failures: &mut NodeFailures,
    only: Option<&[String]>,
    force: &[String],
) -> Result<Vec<String>, RelayError> {
    let nodes = consistency::compare(pg, redis, only).await?;
    let mut compared = Vec::with_capacity(nodes.len());
    for (node, region, verdict) in nodes {
        compared.push(node.to_string());
        let forced = force.iter().any(|f| f == node.as_str());
        if verdict == Verdict::InStep && !forced {
            continue;
        }
        let reason = if verdict == Verdict::InStep {
            "retry"
        } else {
            tracing::warn!(%region, %node, ?verdict, "node's revision in Redis disagrees with PostgreSQL; republishing it from PostgreSQL");
            verdict.reason()
        };
        let result = snapshot::republish_node(pg, redis, ctx, &region, &node, reason).await;
        match result {
            Ok(()) => failures.succeed(node.as_str(), ctx.metrics),
            Err(e) if e.is_node_specific() => failures.fail(node.as_str(), &e, ctx.metrics),
            Err(e) => return Err(e),
        }
    }
    Ok(compared)
}
