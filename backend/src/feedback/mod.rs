//! The feedback consumer: reads every node's feedback stream (agents' heartbeats and stats)
//! through the consumer group [`BACKEND_FEEDBACK_GROUP`] and stores it in PostgreSQL.
//!
//! Each node writes its own stream, `pvpn:{<region>}:node:<node>:feedback`, which only that
//! node's Redis user may write: the sender is the node the key names, never the node the payload
//! claims. A payload naming another node is dropped and counted (`result="wrong_node"`): it is a
//! stolen or misconfigured credential speaking for someone else.
//!
//! An entry is acknowledged after it is stored, or after it was found malformed (logged and
//! dropped: one bad entry never stops the loop). When PostgreSQL or Redis fails, nothing is
//! acknowledged; the consumer backs off and then re-reads its own pending entries (`XREADGROUP
//! ... 0`) before new ones. The node list comes from PostgreSQL and is refreshed periodically;
//! a lost group (Redis restarted) is recreated.
//!
//! Several backends may run this consumer at once (same group, same consumer name): nothing
//! here is a singleton, because `ingest` is idempotent and ordered per node (see there), so an
//! entry read twice, or two entries stored out of order, count once.

pub mod ingest;

use std::sync::Arc;
use std::time::{Duration, Instant};

use pvpn_common::backoff::Backoff;
use pvpn_common::redis_keys::{BACKEND_FEEDBACK_GROUP, RegionKeys};
use pvpn_common::wire::{EVENT_FIELD, Feedback};
use pvpn_common::{NodeName, RegionCode};
use redis::AsyncConnectionConfig;
use redis::aio::MultiplexedConnection;
use redis::streams::{StreamReadOptions, StreamReadReply};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::db;
use crate::metrics::{Metrics, label};
use ingest::Ingested;

/// The consumer name inside the group. A fixed name lets a restarted backend find its own
/// pending entries; a second backend using it too is harmless (ingestion is idempotent).
const CONSUMER: &str = "backend";

/// One node's feedback stream.
#[derive(Debug, Clone)]
struct NodeStream {
    key: String,
    node: NodeName,
    region: RegionCode,
}

/// Feedback consumer knobs.
#[derive(Debug, Clone)]
pub struct FeedbackSettings {
    /// How long one `XREADGROUP` blocks waiting for entries.
    pub block: Duration,
    /// Entries read per call.
    pub batch: usize,
    /// How often the node list is re-read from PostgreSQL.
    pub region_refresh: Duration,
}

impl Default for FeedbackSettings {
    fn default() -> Self {
        Self {
            block: Duration::from_secs(1),
            batch: 200,
            region_refresh: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum FeedbackError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("postgres: {0}")]
    Db(#[from] sqlx::Error),
}

struct Consumer {
    pool: PgPool,
    redis: redis::Client,
    metrics: Arc<Metrics>,
    settings: FeedbackSettings,
    conn: Option<MultiplexedConnection>,
    /// Every node's feedback stream key, with the node and region it belongs to.
    streams: Vec<NodeStream>,
    refreshed: Option<Instant>,
    /// Re-read our pending entries before new ones (after a failure or at start).
    read_pending: bool,
}

/// Runs the consumer until `shutdown` is cancelled.
pub async fn run(
    pool: PgPool,
    redis: redis::Client,
    metrics: Arc<Metrics>,
    settings: FeedbackSettings,
    shutdown: CancellationToken,
) {
    let mut consumer = Consumer {
        pool,
        redis,
        metrics,
        settings,
        conn: None,
        streams: Vec::new(),
        refreshed: None,
        read_pending: true,
    };
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
    while !shutdown.is_cancelled() {
        let step = tokio::select! {
            _ = shutdown.cancelled() => break,
            step = consumer.step() => step,
        };
        match step {
            Ok(()) => {
                if let Some(failure) = backoff.succeed() {
                    tracing::info!(recovered_from = failure, "feedback consumer recovered");
                }
            }
            Err(e) => {
                consumer.metrics.error("feedback");
                consumer.read_pending = true;
                if matches!(e, FeedbackError::Redis(_)) {
                    consumer.conn = None;
                    consumer.refreshed = None;
                }
                let retry = backoff.fail(match e {
                    FeedbackError::Redis(_) => "redis unavailable",
                    FeedbackError::Db(_) => "database unavailable",
                });
                if retry.is_news() {
                    tracing::warn!(error = %e, "feedback consumer failing; retrying with backoff");
                } else {
                    tracing::debug!(error = %e, "feedback consumer still failing");
                }
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(retry.delay) => {}
                }
            }
        }
    }
    tracing::info!("feedback consumer stopped");
}

impl Consumer {
    async fn connection(&mut self) -> Result<MultiplexedConnection, FeedbackError> {
        if let Some(conn) = &self.conn {
            return Ok(conn.clone());
        }
        // Longer than BLOCK: a blocking read must not hit the response timeout.
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(self.settings.block + Duration::from_secs(5)));
        let conn = self
            .redis
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        self.conn = Some(conn.clone());
        Ok(conn)
    }

    /// Re-reads the nodes and makes sure each node's feedback stream has our group.
    async fn refresh_nodes(
        &mut self,
        conn: &mut MultiplexedConnection,
    ) -> Result<(), FeedbackError> {
        let mut pg = self.pool.acquire().await?;
        self.streams = db::nodes::all_names(&mut pg)
            .await?
            .into_iter()
            .map(|(node, region)| NodeStream {
                key: RegionKeys::new(&region).node_feedback(&node),
                node,
                region,
            })
            .collect();
        for stream in &self.streams {
            let created: redis::RedisResult<()> = redis::cmd("XGROUP")
                .arg("CREATE")
                .arg(&stream.key)
                .arg(BACKEND_FEEDBACK_GROUP)
                .arg("0")
                .arg("MKSTREAM")
                .query_async(conn)
                .await;
            match created {
                Ok(()) => {}
                Err(e) if e.code() == Some("BUSYGROUP") => {}
                Err(e) => return Err(e.into()),
            }
        }
        self.refreshed = Some(Instant::now());
        Ok(())
    }

    async fn step(&mut self) -> Result<(), FeedbackError> {
        let mut conn = self.connection().await?;
        if self
            .refreshed
            .is_none_or(|at| at.elapsed() >= self.settings.region_refresh)
        {
            self.refresh_nodes(&mut conn).await?;
        }
        if self.streams.is_empty() {
            tokio::time::sleep(self.settings.block).await;
            return Ok(());
        }
        let keys: Vec<String> = self.streams.iter().map(|s| s.key.clone()).collect();
        let pending = self.read_pending;
        let ids: Vec<&str> = keys
            .iter()
            .map(|_| if pending { "0" } else { ">" })
            .collect();
        let mut options = StreamReadOptions::default()
            .group(BACKEND_FEEDBACK_GROUP, CONSUMER)
            .count(self.settings.batch);
        if !pending {
            options = options.block(self.settings.block.as_millis() as usize);
        }
        let reply: redis::RedisResult<Option<StreamReadReply>> = redis::cmd("XREADGROUP")
            .arg(&options)
            .arg("STREAMS")
            .arg(&keys)
            .arg(&ids)
            .query_async(&mut conn)
            .await;
        let reply = match reply {
            Ok(reply) => reply.unwrap_or_default(),
            Err(e) if e.code() == Some("NOGROUP") => {
                tracing::warn!("feedback group missing (Redis lost data?): recreating");
                self.refresh_nodes(&mut conn).await?;
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        };
        let mut seen = 0;
        for stream in &reply.keys {
            let Some(source) = self.streams.iter().find(|s| s.key == stream.key).cloned() else {
                continue;
            };
            for entry in &stream.ids {
                seen += 1;
                let payload: Option<Vec<u8>> = entry.get(EVENT_FIELD);
                self.handle(&source, &entry.id, payload.as_deref()).await?;
                let _: i64 = redis::cmd("XACK")
                    .arg(&stream.key)
                    .arg(BACKEND_FEEDBACK_GROUP)
                    .arg(&entry.id)
                    .query_async(&mut conn)
                    .await?;
            }
        }
        if pending && seen == 0 {
            self.read_pending = false;
        }
        Ok(())
    }

    /// Stores one entry. Returns an error only for infrastructure failures (the entry stays
    /// pending); bad entries are logged and reported as handled.
    async fn handle(
        &self,
        source: &NodeStream,
        id: &str,
        payload: Option<&[u8]>,
    ) -> Result<(), FeedbackError> {
        let count = |result: &str| {
            self.metrics
                .feedback
                .get_or_create(&label("result", result))
                .inc();
        };
        let region = &source.region;
        let entry: db::nodes::EntryId = match id.parse() {
            Ok(entry) => entry,
            Err(why) => {
                tracing::warn!(%region, id, why, "feedback entry with an unexpected id; dropped");
                count("malformed");
                return Ok(());
            }
        };
        let Some(payload) = payload else {
            tracing::warn!(%region, id, "feedback entry without an {EVENT_FIELD:?} field; dropped");
            count("malformed");
            return Ok(());
        };
        let message = match Feedback::decode(payload) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(%region, id, error = %e, "malformed feedback entry; dropped");
                count("malformed");
                return Ok(());
            }
        };
        if message.node() != &source.node {
            tracing::warn!(
                %region,
                id,
                stream_node = %source.node,
                claimed_node = %message.node(),
                "feedback claims another node than the stream it was written to; dropped"
            );
            count("wrong_node");
            return Ok(());
        }
        let mut pg = self.pool.acquire().await?;
        match ingest::ingest(&mut pg, region, entry, &message).await {
            Ok(Ingested::Heartbeat) => count("heartbeat"),
            Ok(Ingested::Stale) => count("stale"),
            Ok(Ingested::Stats { .. }) => count("stats"),
            Ok(Ingested::UnknownNode(node)) => {
                tracing::warn!(%region, id, node, "feedback from a node this region does not have; dropped");
                count("unknown_node");
            }
            Ok(Ingested::Rejected(why)) => {
                tracing::warn!(%region, id, why, "feedback entry rejected; dropped");
                count("malformed");
            }
            // Data exceptions (SQLSTATE class 22, e.g. a total overflowing): this entry can
            // never be stored, so it must not block the ones behind it.
            Err(sqlx::Error::Database(e)) if e.code().is_some_and(|c| c.starts_with("22")) => {
                tracing::warn!(%region, id, error = %e, "feedback entry cannot be stored; dropped");
                count("malformed");
            }
            Err(e) => return Err(e.into()),
        }
        Ok(())
    }
}
