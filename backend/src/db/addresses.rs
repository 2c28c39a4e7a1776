//! A node's address pool: the cursor `nodes.next_address` (lowest client address never handed
//! out) and `free_addresses` (released addresses below it). Taking an address is one indexed
//! read, never a scan of the node's devices. Every caller holds the node's row lock, so the pool
//! changes one transaction at a time per node; the unique index `devices_live_address` is the
//! backstop if it were ever wrong.

use std::net::Ipv4Addr;

use sqlx::PgConnection;

use super::values::bad_column;

fn parse_address(text: Option<String>) -> sqlx::Result<Option<Ipv4Addr>> {
    text.map(|a| {
        a.parse()
            .map_err(|_| bad_column("address", format!("invalid value {a:?}")))
    })
    .transpose()
}

/// Takes the lowest free address of the node in `first..=last`: a released one if there is one
/// (removed from `free_addresses`), else the cursor's (which moves up by one). `None`: the range
/// is used up. The caller holds the node's lock.
pub async fn take_lowest(
    conn: &mut PgConnection,
    node: &str,
    first: Ipv4Addr,
    last: Ipv4Addr,
) -> sqlx::Result<Option<Ipv4Addr>> {
    // One statement, one round trip under the node's lock: the cursor moves only when no
    // released address was taken. Below `first` (a cursor from before a narrower range) counts
    // as `first`.
    let taken: Option<String> = sqlx::query_scalar(
        "WITH released AS (
             DELETE FROM free_addresses
             WHERE (node, address) = (SELECT node, address FROM free_addresses
                                      WHERE node = $1 AND address BETWEEN $2::inet AND $3::inet
                                      ORDER BY address LIMIT 1)
             RETURNING address),
         fresh AS (
             UPDATE nodes
             SET next_address = GREATEST(coalesce(next_address, $2::inet), $2::inet) + 1
             WHERE name = $1 AND NOT EXISTS (SELECT 1 FROM released)
               AND GREATEST(coalesce(next_address, $2::inet), $2::inet) <= $3::inet
             RETURNING next_address - 1 AS address)
         SELECT host(address) FROM released UNION ALL SELECT host(address) FROM fresh",
    )
    .bind(node)
    .bind(first.to_string())
    .bind(last.to_string())
    .fetch_optional(conn)
    .await?;
    parse_address(taken)
}

/// Accounts for live devices that a bulk writer inserted with addresses of its own (not taken
/// through [`take_lowest`], e.g. imported with the address they already had): the node's live
/// count goes up by their number, their addresses leave `free_addresses`, and if any lies at
/// or above the cursor, the cursor moves past the highest and the addresses it skipped that
/// none of them takes become free. Addresses outside `first..=last` are counted but left out of
/// the pool. Set operations, not per-address loops: a 60k-device import is a few statements.
/// The caller holds the node's lock.
pub async fn claim_inserted(
    conn: &mut PgConnection,
    node: &str,
    first: Ipv4Addr,
    last: Ipv4Addr,
    addresses: &[Ipv4Addr],
) -> sqlx::Result<()> {
    let inserted = i32::try_from(addresses.len())
        .map_err(|_| sqlx::Error::InvalidArgument("more devices than a node can count".into()))?;
    sqlx::query("UPDATE nodes SET live_devices = live_devices + $2 WHERE name = $1")
        .bind(node)
        .bind(inserted)
        .execute(&mut *conn)
        .await?;
    let claimed: Vec<String> = addresses
        .iter()
        .filter(|a| (first..=last).contains(*a))
        .map(Ipv4Addr::to_string)
        .collect();
    if claimed.is_empty() {
        return Ok(());
    }
    sqlx::query("DELETE FROM free_addresses WHERE node = $1 AND address = ANY($2::inet[])")
        .bind(node)
        .bind(&claimed)
        .execute(&mut *conn)
        .await?;
    sqlx::query(
        "WITH cursor AS (
             SELECT GREATEST(coalesce(next_address, $2::inet), $2::inet) AS next
             FROM nodes WHERE name = $1),
         top AS (SELECT max(a) AS top FROM unnest($3::inet[]) AS a),
         skipped AS (
             INSERT INTO free_addresses (node, address)
             SELECT $1, s.address FROM (
                 SELECT c.next + g AS address
                 FROM cursor c, top t, generate_series(0, t.top - c.next - 1) AS g
                 WHERE t.top >= c.next
                 EXCEPT SELECT unnest($3::inet[])) AS s
             ON CONFLICT DO NOTHING)
         UPDATE nodes n SET next_address = t.top + 1
         FROM cursor c, top t
         WHERE n.name = $1 AND t.top >= c.next",
    )
    .bind(node)
    .bind(first.to_string())
    .bind(&claimed)
    .execute(conn)
    .await?;
    Ok(())
}
