//! Queries on `devices`. Addresses travel as text (`host(address)`) and are parsed into their
//! types when the row is read, like every other typed column.

use std::net::Ipv4Addr;

use chrono::{DateTime, Utc};
use pvpn_common::obfuscation::Protocol;
use pvpn_common::{NodeName, PeerSpec, PresharedKey, PublicKey, RegionCode};
use sqlx::postgres::PgRow;
use sqlx::{FromRow, PgConnection, Row};

use super::values::{DeviceStatus, RevokeReason, parsed, parsed_secret_opt};

/// A device with its node's region, as users and admins see it.
#[derive(Debug, Clone)]
pub struct DeviceRow {
    pub id: i64,
    pub user_id: i64,
    pub name: String,
    pub region: RegionCode,
    pub region_name: String,
    pub node: NodeName,
    /// The node's protocol.
    pub protocol: Protocol,
    pub address: Ipv4Addr,
    pub public_key: PublicKey,
    pub status: DeviceStatus,
    pub revoke_reason: Option<RevokeReason>,
    pub created_at: DateTime<Utc>,
    pub reissued_at: Option<DateTime<Utc>>,
    /// Set when `pvpnctl import` brought the device over from an existing server.
    pub imported_at: Option<DateTime<Utc>>,
    pub last_handshake_at: Option<DateTime<Utc>>,
    pub rx_bytes: i64,
    pub tx_bytes: i64,
}

impl<'r> FromRow<'r, PgRow> for DeviceRow {
    fn from_row(row: &'r PgRow) -> sqlx::Result<Self> {
        Ok(Self {
            id: row.try_get("id")?,
            user_id: row.try_get("user_id")?,
            name: row.try_get("name")?,
            region: parsed(row, "region")?,
            region_name: row.try_get("region_name")?,
            node: parsed(row, "node")?,
            protocol: parsed(row, "protocol")?,
            address: parsed(row, "address")?,
            public_key: parsed(row, "public_key")?,
            status: row.try_get("status")?,
            revoke_reason: row.try_get("revoke_reason")?,
            created_at: row.try_get("created_at")?,
            reissued_at: row.try_get("reissued_at")?,
            imported_at: row.try_get("imported_at")?,
            last_handshake_at: row.try_get("last_handshake_at")?,
            rx_bytes: row.try_get("rx_bytes")?,
            tx_bytes: row.try_get("tx_bytes")?,
        })
    }
}

/// A live device as its node must hold it: what a snapshot is built from.
#[derive(Debug, Clone)]
pub struct DevicePeer {
    pub public_key: PublicKey,
    pub preshared_key: Option<PresharedKey>,
    pub address: Ipv4Addr,
}

impl DevicePeer {
    /// The device's peer on its node ([`PeerSpec::for_client`], as the grant streamed it).
    pub fn peer_spec(self) -> PeerSpec {
        PeerSpec::for_client(self.public_key, self.preshared_key, self.address)
    }
}

impl<'r> FromRow<'r, PgRow> for DevicePeer {
    fn from_row(row: &'r PgRow) -> sqlx::Result<Self> {
        Ok(Self {
            public_key: parsed(row, "public_key")?,
            preshared_key: parsed_secret_opt(row, "preshared_key")?,
            address: parsed(row, "address")?,
        })
    }
}

/// One active device of a user, as revoking it needs it.
#[derive(Debug, Clone)]
pub struct DeviceKey {
    pub id: i64,
    pub node: NodeName,
    pub public_key: PublicKey,
}

impl<'r> FromRow<'r, PgRow> for DeviceKey {
    fn from_row(row: &'r PgRow) -> sqlx::Result<Self> {
        Ok(Self {
            id: row.try_get("id")?,
            node: parsed(row, "node")?,
            public_key: parsed(row, "public_key")?,
        })
    }
}

/// A query for [`DeviceRow`]s of the device rows in `$source` (`devices`, or a CTE of inserted
/// rows) as `d`, joined to their node `n` and region `r`; the caller adds its `WHERE`.
macro_rules! select_device_from {
    ($source:literal) => {
        concat!(
            "SELECT d.id, d.user_id, d.name, n.region, r.display_name AS region_name, d.node,
                    host(d.address) AS address, d.public_key, d.status, d.revoke_reason,
                    d.created_at, d.reissued_at, d.imported_at, d.last_handshake_at, d.rx_bytes,
                    d.tx_bytes, n.protocol
             FROM ",
            $source,
            " d JOIN nodes n ON n.name = d.node JOIN regions r ON r.code = n.region "
        )
    };
}

macro_rules! select_device {
    () => {
        select_device_from!("devices")
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

/// Inserts an active device on `node` at `address` and returns it. The caller holds the node's
/// lock and took `address` from its pool.
pub async fn insert(
    conn: &mut PgConnection,
    user_id: i64,
    node: &NodeName,
    name: &str,
    public_key: &PublicKey,
    preshared_key: Option<&PresharedKey>,
    address: Ipv4Addr,
) -> sqlx::Result<DeviceRow> {
    // The node's live count moves in the same statement, so no writer can forget it; the row
    // comes back as the caller shows it, so a grant needs no second read under the node's lock.
    sqlx::query_as(concat!(
        "WITH inserted AS (
             INSERT INTO devices (user_id, node, name, public_key, preshared_key, address)
             VALUES ($1, $2, $3, $4, $5, $6::inet) RETURNING *),
         counted AS (
             UPDATE nodes n SET live_devices = n.live_devices + 1
             FROM inserted i WHERE n.name = i.node) ",
        select_device_from!("inserted")
    ))
    .bind(user_id)
    .bind(node.as_str())
    .bind(name)
    .bind(public_key.to_base64())
    .bind(preshared_key.map(PresharedKey::to_base64))
    .bind(address.to_string())
    .fetch_one(conn)
    .await
}

/// Marks an active device revoked; in the same statement its node's live count goes down and
/// its address goes back to the node's pool (`free_addresses`, see [`super::addresses`]). The
/// caller holds the node's lock.
pub async fn revoke(conn: &mut PgConnection, id: i64, reason: RevokeReason) -> sqlx::Result<()> {
    sqlx::query(
        "WITH gone AS (
             UPDATE devices SET status = 'revoked', revoked_at = now(), revoke_reason = $2
             WHERE id = $1 AND status = 'active' RETURNING node, address),
         counted AS (
             UPDATE nodes n SET live_devices = n.live_devices - 1
             FROM gone g WHERE n.name = g.node)
         INSERT INTO free_addresses (node, address)
         SELECT g.node, g.address FROM gone g JOIN nodes n ON n.name = g.node
         WHERE g.address < n.next_address
         ON CONFLICT DO NOTHING",
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
    public_key: &PublicKey,
    preshared_key: Option<&PresharedKey>,
) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE devices SET public_key = $2, preshared_key = $3, reissued_at = now(),
                last_handshake_at = NULL, rx_counter = 0, tx_counter = 0
         WHERE id = $1",
    )
    .bind(id)
    .bind(public_key.to_base64())
    .bind(preshared_key.map(PresharedKey::to_base64))
    .execute(conn)
    .await?;
    Ok(())
}

/// What a node's snapshot is built from: its live devices.
pub async fn peers_of_node(conn: &mut PgConnection, node: &str) -> sqlx::Result<Vec<DevicePeer>> {
    sqlx::query_as(
        "SELECT public_key, preshared_key, host(address) AS address FROM devices
         WHERE node = $1 AND status = 'active' ORDER BY id",
    )
    .bind(node)
    .fetch_all(conn)
    .await
}

/// A user's active devices, ordered by node name so that locking their nodes happens in one
/// global order.
pub async fn active_keys_of_user(
    conn: &mut PgConnection,
    user_id: i64,
) -> sqlx::Result<Vec<DeviceKey>> {
    sqlx::query_as(
        "SELECT id, node, public_key FROM devices WHERE user_id = $1 AND status = 'active'
         ORDER BY node, id",
    )
    .bind(user_id)
    .fetch_all(conn)
    .await
}

/// Adds one stats report of `node` to its active devices (the slices are parallel: key, raw rx
/// and tx counters, last handshake); returns how many devices it updated.
///
/// The counters are raw interface counters that restart at zero when the interface is
/// recreated. Each device keeps the last raw counter it saw (`rx_counter`) and the cumulative
/// total (`rx_bytes`): a counter that grew adds the difference, a counter that shrank was reset
/// and adds its whole value. Re-delivery of the same report adds nothing.
pub async fn add_traffic(
    conn: &mut PgConnection,
    node: &str,
    keys: &[String],
    rx: &[i64],
    tx: &[i64],
    handshakes: &[Option<DateTime<Utc>>],
) -> sqlx::Result<u64> {
    let updated = sqlx::query(
        "UPDATE devices d SET
            rx_bytes = d.rx_bytes + CASE WHEN s.rx >= d.rx_counter THEN s.rx - d.rx_counter ELSE s.rx END,
            tx_bytes = d.tx_bytes + CASE WHEN s.tx >= d.tx_counter THEN s.tx - d.tx_counter ELSE s.tx END,
            rx_counter = s.rx,
            tx_counter = s.tx,
            last_handshake_at = GREATEST(d.last_handshake_at, s.hs)
         FROM unnest($2::text[], $3::bigint[], $4::bigint[], $5::timestamptz[]) AS s(key, rx, tx, hs)
         WHERE d.node = $1 AND d.public_key = s.key AND d.status = 'active'",
    )
    .bind(node)
    .bind(keys)
    .bind(rx)
    .bind(tx)
    .bind(handshakes)
    .execute(conn)
    .await?;
    Ok(updated.rows_affected())
}

pub async fn count_active(conn: &mut PgConnection) -> sqlx::Result<i64> {
    sqlx::query_scalar("SELECT count(*) FROM devices WHERE status = 'active'")
        .fetch_one(conn)
        .await
}

/// The user's active devices on `node` issued (granted or re-issued) before `before`, oldest
/// first: the ones a `node_changed` notice (`super::notices`) created at `before` is about.
pub async fn issued_on_node_before(
    conn: &mut PgConnection,
    user_id: i64,
    node: &str,
    before: DateTime<Utc>,
) -> sqlx::Result<Vec<DeviceRow>> {
    sqlx::query_as(concat!(
        select_device!(),
        "WHERE d.user_id = $1 AND d.node = $2 AND d.status = 'active'
           AND coalesce(d.reissued_at, d.created_at) < $3
         ORDER BY d.id"
    ))
    .bind(user_id)
    .bind(node)
    .bind(before)
    .fetch_all(conn)
    .await
}
