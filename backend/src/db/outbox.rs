//! Queries on `outbox`: rows written with each change, read and marked by the relay.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

/// The channel `NOTIFY`ed after outbox rows committed, so the relay wakes up at once.
pub const NOTIFY_CHANNEL: &str = "pvpn_outbox";

/// One unpublished row.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct OutboxRow {
    pub id: i64,
    pub region: String,
    pub node: Option<String>,
    pub revision: Option<i64>,
    pub kind: String,
    /// The `StreamEvent` JSON.
    pub payload: String,
    pub created_at: DateTime<Utc>,
}

pub async fn insert(
    conn: &mut PgConnection,
    region: &str,
    node: Option<&str>,
    revision: Option<i64>,
    kind: &str,
    payload: &str,
) -> sqlx::Result<i64> {
    let id = sqlx::query_scalar(
        "INSERT INTO outbox (region, node, revision, kind, payload)
         VALUES ($1, $2, $3, $4, $5::jsonb) RETURNING id",
    )
    .bind(region)
    .bind(node)
    .bind(revision)
    .bind(kind)
    .bind(payload)
    .fetch_one(&mut *conn)
    .await?;
    Ok(id)
}

/// Moves `node` from `revision - 1` to `revision` and writes that revision's change as its
/// outbox row, in one statement. `false`, writing nothing, if the node is not at `revision - 1`:
/// its caller does not hold the node's lock, or lost count of the revision.
pub async fn insert_node_change(
    conn: &mut PgConnection,
    region: &str,
    node: &str,
    revision: i64,
    kind: &str,
    payload: &str,
) -> sqlx::Result<bool> {
    let written: Option<i64> = sqlx::query_scalar(
        "WITH bumped AS (
             UPDATE nodes SET revision = $3 WHERE name = $2 AND revision = $3 - 1
             RETURNING revision)
         INSERT INTO outbox (region, node, revision, kind, payload)
         SELECT $1, $2, revision, $4, $5::jsonb FROM bumped RETURNING id",
    )
    .bind(region)
    .bind(node)
    .bind(revision)
    .bind(kind)
    .bind(payload)
    .fetch_optional(conn)
    .await?;
    Ok(written.is_some())
}

/// Wakes the relay: `NOTIFY` on [`NOTIFY_CHANNEL`], in a transaction of its own.
///
/// Sent after the commit of the rows it announces, never inside their transaction: PostgreSQL
/// holds one cluster-wide lock from a notifying transaction's pre-commit until its commit is
/// flushed, so a `NOTIFY` in every grant made the grants' commits go one WAL flush at a time
/// (measured: 1,400 commits/s with it, 6,000/s without, 20 clients; BENCHMARKS.md).
pub async fn notify(conn: &mut PgConnection) -> sqlx::Result<()> {
    sqlx::query("SELECT pg_notify($1, '')")
        .bind(NOTIFY_CHANNEL)
        .execute(conn)
        .await?;
    Ok(())
}

/// The oldest unpublished rows, in id order, leaving out the rows of the scopes in `held` (node
/// names, or `region:<code>` for a region's rows without a node; see [`OutboxRow::scope`]): a
/// node whose publishing fails waits for its retry without holding back the others.
pub async fn unpublished(
    conn: &mut PgConnection,
    limit: i64,
    held: &[String],
) -> sqlx::Result<Vec<OutboxRow>> {
    sqlx::query_as(
        "SELECT id, region, node, revision, kind, payload::text AS payload, created_at
         FROM outbox
         WHERE published_at IS NULL AND coalesce(node, 'region:' || region) <> ALL($2)
         ORDER BY id LIMIT $1",
    )
    .bind(limit)
    .bind(held)
    .fetch_all(conn)
    .await
}

impl OutboxRow {
    /// What a publishing failure of this row holds back: its node, or its region's node-less
    /// rows (`region:<code>`). Node names cannot contain `:`, so the two never collide.
    pub fn scope(&self) -> String {
        match &self.node {
            Some(node) => node.clone(),
            None => format!("region:{}", self.region),
        }
    }
}

pub async fn mark_published(conn: &mut PgConnection, ids: &[i64]) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE outbox SET published_at = now() WHERE id = ANY($1) AND published_at IS NULL",
    )
    .bind(ids)
    .execute(conn)
    .await?;
    Ok(())
}

/// After a full snapshot of `node` at `revision` was published, its older rows are covered by it.
pub async fn mark_covered_by_snapshot(
    conn: &mut PgConnection,
    node: &str,
    revision: i64,
) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE outbox SET published_at = now()
         WHERE node = $1 AND revision <= $2 AND published_at IS NULL",
    )
    .bind(node)
    .bind(revision)
    .execute(conn)
    .await?;
    Ok(())
}

/// `(rows waiting, age of the oldest in seconds)`.
pub async fn backlog(conn: &mut PgConnection) -> sqlx::Result<(i64, Option<i64>)> {
    sqlx::query_as(
        "SELECT count(*), (extract(epoch FROM now() - min(created_at)))::bigint
         FROM outbox WHERE published_at IS NULL",
    )
    .fetch_one(conn)
    .await
}
