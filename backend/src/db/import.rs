//! Queries of `pvpnctl import`: the facts an import is checked against, and its batched writes
//! (users, devices, outbox rows), each a few statements over arrays however many peers there are.

use std::net::Ipv4Addr;

use pvpn_common::{NodeName, PresharedKey, PublicKey, RegionCode};
use sqlx::postgres::PgRow;
use sqlx::{FromRow, PgConnection, Row};

use super::values::{DeviceStatus, UserStatus, parsed, parsed_secret_opt};

/// Rows per batched statement: keeps each statement's parameters a few megabytes at most.
const CHUNK: usize = 5_000;

/// A device that already has one of the imported keys.
#[derive(Debug, Clone)]
pub struct KeyHolderRow {
    pub id: i64,
    pub public_key: PublicKey,
    pub node: NodeName,
    pub status: DeviceStatus,
    pub address: Ipv4Addr,
    pub preshared_key: Option<PresharedKey>,
    pub owner_telegram_id: i64,
}

impl<'r> FromRow<'r, PgRow> for KeyHolderRow {
    fn from_row(row: &'r PgRow) -> sqlx::Result<Self> {
        Ok(Self {
            id: row.try_get("id")?,
            public_key: parsed(row, "public_key")?,
            node: parsed(row, "node")?,
            status: row.try_get("status")?,
            address: parsed(row, "address")?,
            preshared_key: parsed_secret_opt(row, "preshared_key")?,
            owner_telegram_id: row.try_get("owner_telegram_id")?,
        })
    }
}

/// Every device (any node, any status) holding one of `keys`.
pub async fn devices_with_keys(
    conn: &mut PgConnection,
    keys: &[String],
) -> sqlx::Result<Vec<KeyHolderRow>> {
    let mut rows = Vec::new();
    for chunk in keys.chunks(CHUNK) {
        rows.extend(
            sqlx::query_as::<_, KeyHolderRow>(
                "SELECT d.id, d.public_key, d.node, d.status, host(d.address) AS address,
                        d.preshared_key, u.telegram_id AS owner_telegram_id
                 FROM devices d JOIN users u ON u.id = d.user_id
                 WHERE d.public_key = ANY($1)",
            )
            .bind(chunk)
            .fetch_all(&mut *conn)
            .await?,
        );
    }
    Ok(rows)
}

/// A live address on a node and the key holding it.
#[derive(Debug, Clone)]
pub struct LiveAddress {
    pub address: Ipv4Addr,
    pub public_key: PublicKey,
}

impl<'r> FromRow<'r, PgRow> for LiveAddress {
    fn from_row(row: &'r PgRow) -> sqlx::Result<Self> {
        Ok(Self {
            address: parsed(row, "address")?,
            public_key: parsed(row, "public_key")?,
        })
    }
}

/// The node's live devices' addresses.
pub async fn live_addresses(
    conn: &mut PgConnection,
    node: &NodeName,
) -> sqlx::Result<Vec<LiveAddress>> {
    sqlx::query_as(
        "SELECT host(address) AS address, public_key FROM devices
         WHERE node = $1 AND status = 'active'",
    )
    .bind(node.as_str())
    .fetch_all(conn)
    .await
}

/// Locks the users with these Telegram ids (in id order, like every multi-user lock), then
/// reads `(telegram_id, status, expired)` in a fresh statement.
pub async fn lock_users(
    conn: &mut PgConnection,
    telegram_ids: &[i64],
) -> sqlx::Result<Vec<(i64, UserStatus, bool)>> {
    sqlx::query("SELECT id FROM users WHERE telegram_id = ANY($1) ORDER BY id FOR UPDATE")
        .bind(telegram_ids)
        .execute(&mut *conn)
        .await?;
    sqlx::query_as(
        "SELECT telegram_id, status, COALESCE(access_expires_at <= now(), false)
         FROM users WHERE telegram_id = ANY($1)",
    )
    .bind(telegram_ids)
    .fetch_all(conn)
    .await
}

/// Creates the users that do not exist yet; returns `telegram_id → users.id` for all of them.
pub async fn ensure_users(
    conn: &mut PgConnection,
    telegram_ids: &[i64],
) -> sqlx::Result<Vec<(i64, i64)>> {
    sqlx::query(
        "INSERT INTO users (telegram_id) SELECT unnest($1::bigint[])
         ON CONFLICT (telegram_id) DO NOTHING",
    )
    .bind(telegram_ids)
    .execute(&mut *conn)
    .await?;
    sqlx::query_as("SELECT telegram_id, id FROM users WHERE telegram_id = ANY($1)")
        .bind(telegram_ids)
        .fetch_all(conn)
        .await
}

/// The operator-owned placeholder that holds unassigned devices: created once, may grant
/// nothing itself (device limit 0). Returns its `users.id`.
pub async fn ensure_placeholder(conn: &mut PgConnection, telegram_id: i64) -> sqlx::Result<i64> {
    sqlx::query(
        "INSERT INTO users (telegram_id, device_limit) VALUES ($1, 0)
         ON CONFLICT (telegram_id) DO NOTHING",
    )
    .bind(telegram_id)
    .execute(&mut *conn)
    .await?;
    sqlx::query_scalar("SELECT id FROM users WHERE telegram_id = $1")
        .bind(telegram_id)
        .fetch_one(conn)
        .await
}

/// Lets each new user keep all their imported devices: limit = max(limit, devices), at most 100.
pub async fn raise_device_limits(
    conn: &mut PgConnection,
    user_ids: &[i64],
    devices: &[i32],
) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE users u SET device_limit = LEAST(100, GREATEST(u.device_limit, v.n))
         FROM unnest($1::bigint[], $2::int[]) AS v(id, n) WHERE u.id = v.id",
    )
    .bind(user_ids)
    .bind(devices)
    .execute(conn)
    .await?;
    Ok(())
}

/// Columns of the imported devices, one vector per column, in the same order.
#[derive(Debug, Default)]
pub struct NewDevices {
    pub user_ids: Vec<i64>,
    pub names: Vec<String>,
    pub public_keys: Vec<String>,
    pub preshared_keys: Vec<Option<String>>,
    pub addresses: Vec<String>,
}

/// Inserts the devices on `node`, marked imported; returns how many.
pub async fn insert_devices(
    conn: &mut PgConnection,
    node: &NodeName,
    devices: &NewDevices,
) -> sqlx::Result<u64> {
    let mut inserted = 0;
    for start in (0..devices.public_keys.len()).step_by(CHUNK) {
        let end = (start + CHUNK).min(devices.public_keys.len());
        let done = sqlx::query(
            "INSERT INTO devices (user_id, node, name, public_key, preshared_key, address, imported_at)
             SELECT v.user_id, $1, v.name, v.public_key, v.psk, v.address::inet, now()
             FROM unnest($2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[])
                  AS v(user_id, name, public_key, psk, address)",
        )
        .bind(node.as_str())
        .bind(&devices.user_ids[start..end])
        .bind(&devices.names[start..end])
        .bind(&devices.public_keys[start..end])
        .bind(&devices.preshared_keys[start..end])
        .bind(&devices.addresses[start..end])
        .execute(&mut *conn)
        .await?;
        inserted += done.rows_affected();
    }
    Ok(inserted)
}

/// Gives unassigned devices their owners and names.
pub async fn assign_devices(
    conn: &mut PgConnection,
    device_ids: &[i64],
    user_ids: &[i64],
    names: &[String],
) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE devices d SET user_id = v.user_id, name = v.name
         FROM unnest($1::bigint[], $2::bigint[], $3::text[]) AS v(id, user_id, name)
         WHERE d.id = v.id",
    )
    .bind(device_ids)
    .bind(user_ids)
    .bind(names)
    .execute(conn)
    .await?;
    Ok(())
}

/// Takes `count` revisions of a locked node at once; returns the last (the first is
/// `last - count + 1`).
pub async fn take_revisions(
    conn: &mut PgConnection,
    node: &NodeName,
    count: i64,
) -> sqlx::Result<i64> {
    sqlx::query_scalar(
        "UPDATE nodes SET revision = revision + $2 WHERE name = $1 RETURNING revision",
    )
    .bind(node.as_str())
    .bind(count)
    .fetch_one(conn)
    .await
}

/// `(revision, published_revision)` of a node: equal once the relay published every change.
pub async fn publication(
    conn: &mut PgConnection,
    node: &NodeName,
) -> sqlx::Result<Option<(i64, i64)>> {
    sqlx::query_as("SELECT revision, published_revision FROM nodes WHERE name = $1")
        .bind(node.as_str())
        .fetch_optional(conn)
        .await
}

/// One `peer_upsert` outbox row per `(revision, StreamEvent JSON)`; the caller wakes the relay
/// after its commit ([`super::outbox::notify`]).
pub async fn insert_upserts(
    conn: &mut PgConnection,
    region: &RegionCode,
    node: &NodeName,
    revisions: &[i64],
    payloads: &[String],
) -> sqlx::Result<()> {
    for start in (0..revisions.len()).step_by(CHUNK) {
        let end = (start + CHUNK).min(revisions.len());
        sqlx::query(
            "INSERT INTO outbox (region, node, revision, kind, payload)
             SELECT $1, $2, v.revision, 'peer_upsert', v.payload::jsonb
             FROM unnest($3::bigint[], $4::text[]) WITH ORDINALITY AS v(revision, payload, ord)
             ORDER BY v.ord",
        )
        .bind(region.as_str())
        .bind(node.as_str())
        .bind(&revisions[start..end])
        .bind(&payloads[start..end])
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}
