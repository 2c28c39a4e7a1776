//! The outbox relay: publishes committed outbox rows to Redis, in id order, and marks them
//! published only after Redis confirmed.
//!
//! Each pass: make sure every region's epoch and every node's snapshot exist in Redis
//! (`snapshot::ensure_snapshots`, republishing from PostgreSQL where they do not), then publish
//! the unpublished rows oldest first, one atomic Lua script per row (`scripts`). A pass runs when
//! PostgreSQL notifies a new outbox row (`LISTEN pvpn_outbox`) or after the poll interval. When
//! Redis or PostgreSQL fails, rows stay unpublished and the relay retries with capped, jittered
//! backoff, logging once when it starts failing and once when it recovers.
//!
//! Only one relay may run: it holds a PostgreSQL advisory lock on the connection it works on, and
//! a second backend waits for the lock.

mod scripts;
mod snapshot;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use pvpn_common::RegionCode;
use pvpn_common::backoff::Backoff;
use pvpn_common::redis_keys::RegionKeys;
use pvpn_common::wire::{self, StreamEvent};
use redis::AsyncConnectionConfig;
use redis::aio::MultiplexedConnection;
use sqlx::postgres::PgListener;
use sqlx::{Connection, PgConnection, PgPool};
use tokio_util::sync::CancellationToken;

use crate::db;
use crate::db::outbox::OutboxRow;
use crate::metrics::{Metrics, label};
use scripts::{Change, ChangeOutcome, Scripts, publish_control};

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

/// Relay knobs, from [`crate::config::Config`].
#[derive(Debug, Clone)]
pub struct RelaySettings {
    /// Longest wait between passes when no notification arrives.
    pub poll_interval: Duration,
    /// Approximate `MAXLEN` of each region's event stream.
    pub stream_maxlen: u64,
    /// Rows read per query.
    pub batch_size: i64,
}

impl Default for RelaySettings {
    fn default() -> Self {
        Self {
            poll_interval: Duration::from_millis(500),
            stream_maxlen: 100_000,
            batch_size: 500,
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
        let Some(pg) = self.pg.as_mut() else {
            return Ok(());
        };
        snapshot::ensure_snapshots(
            pg,
            &mut redis,
            &self.scripts,
            &self.metrics,
            self.settings.stream_maxlen,
        )
        .await?;
        loop {
            let rows = db::outbox::unpublished(pg, self.settings.batch_size).await?;
            let mut done = Vec::new();
            let result = publish_rows(
                pg,
                &mut redis,
                &self.scripts,
                &self.metrics,
                &self.settings,
                &rows,
                &mut done,
            )
            .await;
            mark_done(pg, &rows, &done).await?;
            result?;
            if (rows.len() as i64) < self.settings.batch_size {
                break;
            }
        }
        Ok(())
    }
}

/// Publishes `rows` in order, pushing each confirmed row's id to `done`; stops at the first error.
async fn publish_rows(
    pg: &mut PgConnection,
    redis: &mut MultiplexedConnection,
    scripts: &Scripts,
    metrics: &Metrics,
    settings: &RelaySettings,
    rows: &[OutboxRow],
    done: &mut Vec<i64>,
) -> Result<(), RelayError> {
    for row in rows {
        let region = RegionCode::new(&row.region).map_err(|e| RelayError::Data(e.to_string()))?;
        let keys = RegionKeys::new(&region);
        let event = match StreamEvent::decode(row.payload.as_bytes()) {
            Ok(event) => event,
            Err(e) => {
                // Our own row, so this is a bug; skipping it keeps every later change flowing.
                tracing::error!(id = row.id, error = %e, "outbox row does not decode; skipped");
                metrics.error("relay");
                done.push(row.id);
                continue;
            }
        };
        let (node, revision, upsert, public_key, peer_json) = match &event {
            StreamEvent::Reconcile { .. } => {
                publish_control(
                    redis,
                    &keys.events(),
                    &event.encode(),
                    settings.stream_maxlen,
                )
                .await?;
                done.push(row.id);
                metrics
                    .published
                    .get_or_create(&label("kind", &row.kind))
                    .inc();
                continue;
            }
            StreamEvent::PeerUpsert {
                node,
                revision,
                peer,
            } => (node, *revision, true, peer.public_key, wire::encode(peer)),
            StreamEvent::PeerRemove {
                node,
                revision,
                public_key,
            } => (node, *revision, false, *public_key, String::new()),
        };
        let (peers_key, revision_key, epoch_key, events_key) = (
            keys.node_peers(node),
            keys.node_revision(node),
            keys.epoch(),
            keys.events(),
        );
        let event_json = event.encode();
        let public_key = public_key.to_base64();
        let change = Change {
            epoch_key: &epoch_key,
            peers_key: &peers_key,
            revision_key: &revision_key,
            events_key: &events_key,
            revision,
            upsert,
            public_key: &public_key,
            peer_json: &peer_json,
            event_json: &event_json,
            maxlen: settings.stream_maxlen,
        };
        let mut outcome = scripts.publish_change(redis, &change).await?;
        if outcome == ChangeOutcome::EpochMissing {
            snapshot::republish_region(
                pg,
                redis,
                scripts,
                metrics,
                &region,
                settings.stream_maxlen,
            )
            .await?;
            outcome = scripts.publish_change(redis, &change).await?;
        }
        match outcome {
            ChangeOutcome::Published | ChangeOutcome::AlreadyPublished => {}
            ChangeOutcome::EpochMissing | ChangeOutcome::SnapshotMissing | ChangeOutcome::Gap => {
                tracing::warn!(%node, revision, ?outcome, "snapshot out of step; republishing the node");
                snapshot::republish_node(pg, redis, scripts, &region, node).await?;
                metrics
                    .republished
                    .get_or_create(&label("reason", "revision_missing"))
                    .inc();
            }
        }
        let latency = (Utc::now() - row.created_at).to_std().unwrap_or_default();
        metrics.publish_latency.observe(latency.as_secs_f64());
        metrics
            .published
            .get_or_create(&label("kind", &row.kind))
            .inc();
        done.push(row.id);
    }
    Ok(())
}

/// Marks published rows and advances each node's `published_revision`, in one transaction.
async fn mark_done(
    pg: &mut PgConnection,
    rows: &[OutboxRow],
    done: &[i64],
) -> Result<(), RelayError> {
    if done.is_empty() {
        return Ok(());
    }
    let mut highest: HashMap<&str, i64> = HashMap::new();
    for row in rows.iter().filter(|r| done.contains(&r.id)) {
        if let (Some(node), Some(revision)) = (row.node.as_deref(), row.revision) {
            let entry = highest.entry(node).or_insert(revision);
            *entry = (*entry).max(revision);
        }
    }
    let mut tx = pg.begin().await?;
    db::outbox::mark_published(&mut tx, done).await?;
    for (node, revision) in highest {
        db::nodes::mark_published(&mut tx, node, revision).await?;
    }
    tx.commit().await?;
    Ok(())
}
