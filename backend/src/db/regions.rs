//! Queries on `regions`, with their load computed from nodes and devices.

use pvpn_common::RegionCode;
use sqlx::postgres::PgRow;
use sqlx::{FromRow, PgConnection, Row};

use super::values::{RegionStatus, parsed};

/// A region plus its load: live devices and active nodes. Its capacity is summed from its
/// nodes by the service, which owns how a subnet bounds a node.
#[derive(Debug, Clone)]
pub struct RegionRow {
    pub code: RegionCode,
    pub display_name: String,
    pub status: RegionStatus,
    pub devices: i64,
    pub active_nodes: i64,
}

impl<'r> FromRow<'r, PgRow> for RegionRow {
    fn from_row(row: &'r PgRow) -> sqlx::Result<Self> {
        Ok(Self {
            code: parsed(row, "code")?,
            display_name: row.try_get("display_name")?,
            status: row.try_get("status")?,
            devices: row.try_get("devices")?,
            active_nodes: row.try_get("active_nodes")?,
        })
    }
}

macro_rules! select_region {
    () => {
        "SELECT r.code, r.display_name, r.status,
                (SELECT coalesce(sum(n.live_devices), 0)::bigint FROM nodes n
                  WHERE n.region = r.code) AS devices,
                (SELECT count(*) FROM nodes n WHERE n.region = r.code AND n.status = 'active')
                    AS active_nodes
         FROM regions r "
    };
}

/// Every region, any status, by code.
pub async fn list(conn: &mut PgConnection) -> sqlx::Result<Vec<RegionRow>> {
    sqlx::query_as(concat!(select_region!(), "ORDER BY r.code"))
        .fetch_all(conn)
        .await
}

pub async fn get(conn: &mut PgConnection, code: &str) -> sqlx::Result<Option<RegionRow>> {
    sqlx::query_as(concat!(select_region!(), "WHERE r.code = $1"))
        .bind(code)
        .fetch_optional(conn)
        .await
}

/// The region's status (`active`, `draining`, `disabled`), without computing its load.
pub async fn status(conn: &mut PgConnection, code: &str) -> sqlx::Result<Option<RegionStatus>> {
    sqlx::query_scalar("SELECT status FROM regions WHERE code = $1")
        .bind(code)
        .fetch_optional(conn)
        .await
}

pub async fn insert(conn: &mut PgConnection, code: &str, display_name: &str) -> sqlx::Result<()> {
    sqlx::query("INSERT INTO regions (code, display_name) VALUES ($1, $2)")
        .bind(code)
        .bind(display_name)
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn set_display_name(conn: &mut PgConnection, code: &str, name: &str) -> sqlx::Result<()> {
    sqlx::query("UPDATE regions SET display_name = $2 WHERE code = $1")
        .bind(code)
        .bind(name)
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn set_status(
    conn: &mut PgConnection,
    code: &str,
    status: RegionStatus,
) -> sqlx::Result<bool> {
    let done = sqlx::query("UPDATE regions SET status = $2 WHERE code = $1")
        .bind(code)
        .bind(status)
        .execute(conn)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Codes of every region (the relay and the feedback consumer serve all of them).
pub async fn codes(conn: &mut PgConnection) -> sqlx::Result<Vec<RegionCode>> {
    let rows = sqlx::query("SELECT code FROM regions ORDER BY code")
        .fetch_all(conn)
        .await?;
    rows.iter().map(|r| parsed(r, "code")).collect()
}
