//! Queries on `user_notices`: the messages the bot owes users outside a conversation, kept from
//! the moment they are chosen until they are delivered (or given up).

use chrono::{DateTime, Utc};
use pvpn_common::NodeName;
use sqlx::postgres::PgRow;
use sqlx::{FromRow, PgConnection, Row};

use super::values::{Language, NoticeKind, NoticeState, UserStatus, parsed};

/// A notice still to send, with what deciding whether it still holds needs about its user.
#[derive(Debug, Clone)]
pub struct DueNotice {
    pub id: i64,
    pub kind: NoticeKind,
    pub user_id: i64,
    pub telegram_id: i64,
    pub language: Language,
    pub user_status: UserStatus,
    pub access_expires_at: Option<DateTime<Utc>>,
    /// `BlockedDevice`: the device that never connected.
    pub device_id: Option<i64>,
    /// `NodeChanged`: the node whose configuration changed.
    pub node: Option<NodeName>,
    pub created_at: DateTime<Utc>,
}

impl<'r> FromRow<'r, PgRow> for DueNotice {
    fn from_row(row: &'r PgRow) -> sqlx::Result<Self> {
        let node: Option<String> = row.try_get("node")?;
        Ok(Self {
            id: row.try_get("id")?,
            kind: row.try_get("kind")?,
            user_id: row.try_get("user_id")?,
            telegram_id: row.try_get("telegram_id")?,
            language: row.try_get("language")?,
            user_status: row.try_get("user_status")?,
            access_expires_at: row.try_get("access_expires_at")?,
            device_id: row.try_get("device_id")?,
            node: match node {
                Some(_) => Some(parsed(row, "node")?),
                None => None,
            },
            created_at: row.try_get("created_at")?,
        })
    }
}

/// Chooses up to `limit` devices that never completed a handshake in the `after_secs` seconds
/// since they were issued (granted, or re-issued: that resets the handshake) and records a due
/// `blocked_device` notice for each, once per device ever. Only devices on plain WireGuard nodes
/// of active, unexpired users, and not imported ones still on their old server's config (PVPN
/// did not issue those). Returns how many were chosen.
pub async fn choose_blocked_devices(
    conn: &mut PgConnection,
    after_secs: i64,
    limit: i64,
) -> sqlx::Result<u64> {
    let done = sqlx::query(
        "INSERT INTO user_notices (user_id, kind, device_id)
         SELECT d.user_id, 'blocked_device', d.id
           FROM devices d
           JOIN nodes n ON n.name = d.node
           JOIN users u ON u.id = d.user_id
          WHERE d.status = 'active' AND d.last_handshake_at IS NULL
            AND coalesce(d.reissued_at, d.created_at) <= now() - make_interval(secs => $1)
            AND (d.imported_at IS NULL OR d.reissued_at IS NOT NULL)
            AND n.protocol = 'wireguard'
            AND u.status = 'active' AND u.telegram_id > 0
            AND (u.access_expires_at IS NULL OR u.access_expires_at > now())
            AND NOT EXISTS (SELECT 1 FROM user_notices x
                             WHERE x.kind = 'blocked_device' AND x.device_id = d.id)
          ORDER BY d.id
          LIMIT $2
         ON CONFLICT DO NOTHING",
    )
    .bind(after_secs as f64)
    .bind(limit)
    .execute(conn)
    .await?;
    Ok(done.rows_affected())
}

/// Records a due `node_changed` notice for every user with an active device on `node` (not the
/// placeholder owner of unassigned imported devices, who has no chat). A user who still has one
/// pending for the node gets no second. Returns how many were recorded.
pub async fn add_node_changed(conn: &mut PgConnection, node: &str) -> sqlx::Result<u64> {
    let done = sqlx::query(
        "INSERT INTO user_notices (user_id, kind, node)
         SELECT DISTINCT d.user_id, 'node_changed', d.node
           FROM devices d JOIN users u ON u.id = d.user_id
          WHERE d.node = $1 AND d.status = 'active' AND u.telegram_id > 0
         ON CONFLICT DO NOTHING",
    )
    .bind(node)
    .execute(conn)
    .await?;
    Ok(done.rows_affected())
}

/// The oldest due notices, up to `limit`.
pub async fn due(conn: &mut PgConnection, limit: i64) -> sqlx::Result<Vec<DueNotice>> {
    sqlx::query_as(
        "SELECT x.id, x.kind, x.user_id, u.telegram_id, u.language, u.status AS user_status,
                u.access_expires_at, x.device_id, x.node, x.created_at
           FROM user_notices x JOIN users u ON u.id = x.user_id
          WHERE x.state = 'due'
          ORDER BY x.id
          LIMIT $1",
    )
    .bind(limit)
    .fetch_all(conn)
    .await
}

/// Closes a due notice as `state` (sent, failed or dropped). A notice already closed stays as
/// it is; returns whether this call closed it.
pub async fn close(conn: &mut PgConnection, id: i64, state: NoticeState) -> sqlx::Result<bool> {
    let done = sqlx::query(
        "UPDATE user_notices SET state = $2, done_at = now() WHERE id = $1 AND state = 'due'",
    )
    .bind(id)
    .bind(state)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Counts a failed attempt to send a due notice; after `max_attempts` it is closed as failed.
/// Returns the notice's state afterwards.
pub async fn count_attempt(
    conn: &mut PgConnection,
    id: i64,
    max_attempts: i32,
) -> sqlx::Result<NoticeState> {
    sqlx::query_scalar(
        "UPDATE user_notices
            SET attempts = attempts + 1,
                state = CASE WHEN attempts + 1 >= $2 THEN 'failed' ELSE 'due' END,
                done_at = CASE WHEN attempts + 1 >= $2 THEN now() END
          WHERE id = $1 AND state = 'due'
          RETURNING state",
    )
    .bind(id)
    .bind(max_attempts)
    .fetch_optional(conn)
    .await
    .map(|state| state.unwrap_or(NoticeState::Failed))
}

/// Deletes a due notice, so that what it was about can be chosen again later (a nudge whose
/// obfuscated regions all went away before it was sent).
pub async fn withdraw(conn: &mut PgConnection, id: i64) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM user_notices WHERE id = $1 AND state = 'due'")
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}
