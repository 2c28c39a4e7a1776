//! Queries on `devices`. Addresses travel as text (`host(address)`) and are parsed by the caller.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

/// A device with its node's region, as users and admins see it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DeviceRow {
    pub id: i64,
    pub user_id: i64,
    pub name: String,
    pub region: String,
    pub region_name: String,
    pub node: String,
    pub address: String,
    pub public_key: String,
    pub status: String,
    pub revoke_reason: Option<String>,
    pub created_at: DateTime<Utc>,
    pub reissued_at: Option<DateTime<Utc>>,
    pub last_handshake_at: Option<DateTime<Utc>>,
    pub rx_bytes: i64,
    pub tx_bytes: i64,
}

macro_rules! select_device {
    () => {
        "SELECT d.id, d.user_id, d.name, n.region, r.display_name AS region_name, d.node,
                host(d.address) AS address, d.public_key, d.status, d.revoke_reason, d.created_at,
                d.reissued_at, d.last_handshake_at, d.rx_bytes, d.tx_bytes
         FROM devices d JOIN nodes n ON n.name = d.node JOIN regions r ON r.code = n.region "
    };
}

pub async fn active_for_user(
    conn: &mut PgConnection,
    user_id: i64,
) -> sqlx::Result<Vec<DeviceRow>> {
    sqlx::query_as(concat!(
        select_device!(),
        "WHERE d.user_id = $1 AND d.status = 'active' ORDER BY d.id"
    ))
    .bind(user_id)
    .fetch_all(conn)
    .await
}

pub async fn get(conn: &mut PgConnection, id: i64) -> sqlx::Result<Option<DeviceRow>> {
    sqlx::query_as(concat!(select_device!(), "WHERE d.id = $1"))
        .bind(id)
        .fetch_optional(conn)
        .await
}

/// Locks one active device of one user; `None` if it is not theirs or not active.
pub async fn lock_active_of_user(
    conn: &mut PgConnection,
    user_id: i64,
    device_id: i64,
) -> sqlx::Result<Option<DeviceRow>> {
    sqlx::query_as(concat!(
        select_device!(),
        "WHERE d.id = $1 AND d.user_id = $2 AND d.status = 'active' FOR UPDATE OF d"
    ))
    .bind(device_id)
    .bind(user_id)
    .fetch_optional(conn)
    .await
}

pub async fn insert(
    conn: &mut PgConnection,
    user_id: i64,
    node: &str,
    name: &str,
    public_key: &str,
    preshared_key: Option<&str>,
    address: &str,
) -> sqlx::Result<i64> {
    sqlx::query_scalar(
        "INSERT INTO devices (user_id, node, name, public_key, preshared_key, address)
         VALUES ($1, $2, $3, $4, $5, $6::inet) RETURNING id",
    )
    .bind(user_id)
    .bind(node)
    .bind(name)
    .bind(public_key)
    .bind(preshared_key)
    .bind(address)
    .fetch_one(conn)
    .await
}

pub async fn revoke(conn: &mut PgConnection, id: i64, reason: &str) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE devices SET status = 'revoked', revoked_at = now(), revoke_reason = $2
         WHERE id = $1 AND status = 'active'",
    )
    .bind(id)
    .bind(reason)
    .execute(conn)
    .await?;
    Ok(())
}

/// Gives a device a new key in place. Usage counters restart: the new peer's counters start at 0.
pub async fn replace_key(
    conn: &mut PgConnection,
    id: i64,
    public_key: &str,
    preshared_key: Option<&str>,
) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE devices SET public_key = $2, preshared_key = $3, reissued_at = now(),
                last_handshake_at = NULL, rx_counter = 0, tx_counter = 0
         WHERE id = $1",
    )
    .bind(id)
    .bind(public_key)
    .bind(preshared_key)
    .execute(conn)
    .await?;
    Ok(())
}

/// How many live devices a node has.
pub async fn count_live_on_node(conn: &mut PgConnection, node: &str) -> sqlx::Result<i64> {
    sqlx::query_scalar("SELECT count(*) FROM devices WHERE node = $1 AND status = 'active'")
        .bind(node)
        .fetch_one(conn)
        .await
}

/// The lowest address in `first..=last` that no live device of the node holds, as text: `first`
/// if it is free, else the address after the first live address whose successor is not live.
/// One ordered scan of the `devices_live_address` index inside PostgreSQL that stops at the
/// first gap, so a grant does not read every address of a big node.
pub async fn lowest_free_address(
    conn: &mut PgConnection,
    node: &str,
    first: &str,
    last: &str,
) -> sqlx::Result<Option<String>> {
    sqlx::query_scalar(
        "SELECT host(c.candidate) FROM (
             SELECT $2::inet AS candidate
             WHERE NOT EXISTS (SELECT 1 FROM devices
                               WHERE node = $1 AND status = 'active' AND address = $2::inet)
             UNION ALL
             (SELECT s.address + 1 FROM (
                  SELECT address, lead(address) OVER (ORDER BY address) AS next
                  FROM devices WHERE node = $1 AND status = 'active' AND address >= $2::inet
              ) s
              WHERE s.next IS NULL OR s.next <> s.address + 1
              ORDER BY s.address LIMIT 1)
         ) c
         WHERE c.candidate <= $3::inet
         ORDER BY c.candidate LIMIT 1",
    )
    .bind(node)
    .bind(first)
    .bind(last)
    .fetch_optional(conn)
    .await
}

/// What a node's snapshot is built from: `(public_key, preshared_key, address)` of live devices.
pub async fn peers_of_node(
    conn: &mut PgConnection,
    node: &str,
) -> sqlx::Result<Vec<(String, Option<String>, String)>> {
    sqlx::query_as(
        "SELECT public_key, preshared_key, host(address) FROM devices
         WHERE node = $1 AND status = 'active' ORDER BY id",
    )
    .bind(node)
    .fetch_all(conn)
    .await
}

/// `(id, node, public_key)` of a user's active devices, ordered by node name so that locking
/// their nodes happens in one global order.
pub async fn active_keys_of_user(
    conn: &mut PgConnection,
    user_id: i64,
) -> sqlx::Result<Vec<(i64, String, String)>> {
    sqlx::query_as(
        "SELECT id, node, public_key FROM devices WHERE user_id = $1 AND status = 'active'
         ORDER BY node, id",
    )
    .bind(user_id)
    .fetch_all(conn)
    .await
}

pub async fn count_active(conn: &mut PgConnection) -> sqlx::Result<i64> {
    sqlx::query_scalar("SELECT count(*) FROM devices WHERE status = 'active'")
        .fetch_one(conn)
        .await
}
