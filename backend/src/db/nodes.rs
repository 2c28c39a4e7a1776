//! Queries on `nodes`: placement candidates, the per-node lock, revisions, admin edits, and what
//! agents report.

use std::net::IpAddr;

use chrono::{DateTime, Utc};
use pvpn_common::addressing::ClientSubnet;
use pvpn_common::client_config::Endpoint;
use pvpn_common::obfuscation::{AwgProfile, InterfaceSpec, Protocol};
use pvpn_common::wire::ReconcileReport;
use pvpn_common::{NodeName, PublicKey, RegionCode};
use sqlx::postgres::PgRow;
use sqlx::{FromRow, PgConnection, Row};

use super::values::{NodeState, bad_column, parsed};

/// One `nodes` row with its number of live devices (`nodes.live_devices`), typed: a value that does not parse is a
/// decode error naming its column.
#[derive(Debug, Clone)]
pub struct NodeRow {
    pub name: NodeName,
    pub region: RegionCode,
    pub endpoint: Endpoint,
    pub public_key: PublicKey,
    pub listen_port: i32,
    pub subnet: ClientSubnet,
    pub dns: Vec<IpAddr>,
    pub capacity: i32,
    pub status: NodeState,
    pub revision: i64,
    pub published_revision: i64,
    pub applied_revision: i64,
    pub last_heartbeat_at: Option<DateTime<Utc>>,
    pub agent_version: Option<String>,
    pub peer_count: Option<i32>,
    pub last_reconcile: Option<serde_json::Value>,
    pub devices: i64,
    /// The protocol and, for AmneziaWG, the obfuscation profile; consistent and valid (checked
    /// when the row is read).
    pub interface: InterfaceSpec,
}

impl<'r> FromRow<'r, PgRow> for NodeRow {
    fn from_row(row: &'r PgRow) -> sqlx::Result<Self> {
        let subnet = ClientSubnet::new(parsed(row, "subnet")?)
            .map_err(|e| bad_column("subnet", e.to_string()))?;
        let dns = row
            .try_get::<Vec<String>, _>("dns")?
            .iter()
            .map(|d| d.parse::<IpAddr>())
            .collect::<Result<_, _>>()
            .map_err(|e| bad_column("dns", e.to_string()))?;
        let protocol: Protocol = parsed(row, "protocol")?;
        let amneziawg = row
            .try_get::<Option<serde_json::Value>, _>("awg_profile")?
            .map(serde_json::from_value::<AwgProfile>)
            .transpose()
            .map_err(|e| bad_column("awg_profile", e.to_string()))?;
        let interface = InterfaceSpec {
            protocol,
            amneziawg,
        };
        interface
            .validate()
            .map_err(|e| bad_column("awg_profile", e.to_string()))?;
        Ok(Self {
            name: parsed(row, "name")?,
            region: parsed(row, "region")?,
            endpoint: parsed(row, "endpoint")?,
            public_key: parsed(row, "public_key")?,
            listen_port: row.try_get("listen_port")?,
            subnet,
            dns,
            capacity: row.try_get("capacity")?,
            status: row.try_get("status")?,
            revision: row.try_get("revision")?,
            published_revision: row.try_get("published_revision")?,
            applied_revision: row.try_get("applied_revision")?,
            last_heartbeat_at: row.try_get("last_heartbeat_at")?,
            agent_version: row.try_get("agent_version")?,
            peer_count: row.try_get("peer_count")?,
            last_reconcile: row.try_get("last_reconcile")?,
            devices: row.try_get("devices")?,
            interface,
        })
    }
}

macro_rules! select_node {
    () => {
        "SELECT n.name, n.region, n.endpoint, n.public_key, n.listen_port, n.subnet::text AS subnet,
                ARRAY(SELECT host(x) FROM unnest(n.dns) AS x) AS dns, n.capacity, n.status,
                n.revision, n.published_revision, n.applied_revision, n.last_heartbeat_at,
                n.agent_version, n.peer_count, n.last_reconcile,
                n.live_devices::bigint AS devices, n.protocol, n.awg_profile
         FROM nodes n "
    };
}

pub async fn get(conn: &mut PgConnection, name: &str) -> sqlx::Result<Option<NodeRow>> {
    sqlx::query_as(concat!(select_node!(), "WHERE n.name = $1"))
        .bind(name)
        .fetch_optional(conn)
        .await
}

/// Locks the node's row until the transaction ends. Every change of a node's peers takes this
/// lock, so revisions, the live count and address allocation on one node happen one at a time.
/// The row it returns is the locked, latest version (its live count included: a column, not a
/// sub-query, so it is re-read after waiting for the lock).
pub async fn lock(conn: &mut PgConnection, name: &str) -> sqlx::Result<Option<NodeRow>> {
    sqlx::query_as(concat!(select_node!(), "WHERE n.name = $1 FOR UPDATE OF n"))
        .bind(name)
        .fetch_optional(conn)
        .await
}

/// Like [`lock`], but `None` at once if another transaction holds the lock (or the node does
/// not exist) instead of waiting for it.
pub async fn try_lock(conn: &mut PgConnection, name: &str) -> sqlx::Result<Option<NodeRow>> {
    sqlx::query_as(concat!(
        select_node!(),
        "WHERE n.name = $1 FOR UPDATE OF n SKIP LOCKED"
    ))
    .bind(name)
    .fetch_optional(conn)
    .await
}

/// Like [`lock`] but shared: blocks writers of the node while a snapshot is read.
pub async fn lock_shared(conn: &mut PgConnection, name: &str) -> sqlx::Result<Option<NodeRow>> {
    sqlx::query_as(concat!(select_node!(), "WHERE n.name = $1 FOR SHARE OF n"))
        .bind(name)
        .fetch_optional(conn)
        .await
}

pub async fn list(conn: &mut PgConnection, region: Option<&str>) -> sqlx::Result<Vec<NodeRow>> {
    sqlx::query_as(concat!(
        select_node!(),
        "WHERE $1::text IS NULL OR n.region = $1 ORDER BY n.region, n.name"
    ))
    .bind(region)
    .fetch_all(conn)
    .await
}

/// Active nodes of a region that is active itself, by name; empty when the region is missing,
/// not active or has no active node ([`super::regions::status`] tells which). Ranking them by
/// free room is the caller's, which knows the subnet arithmetic.
pub async fn placement_candidates(
    conn: &mut PgConnection,
    region: &str,
) -> sqlx::Result<Vec<NodeRow>> {
    sqlx::query_as(concat!(
        select_node!(),
        "WHERE n.region = $1 AND n.status = 'active'
           AND EXISTS (SELECT 1 FROM regions r WHERE r.code = n.region AND r.status = 'active')
         ORDER BY n.name"
    ))
    .bind(region)
    .fetch_all(conn)
    .await
}

/// Records that Redis holds the node at `revision` (never moves backwards).
pub async fn mark_published(
    conn: &mut PgConnection,
    name: &str,
    revision: i64,
) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE nodes SET published_revision = GREATEST(published_revision, $2) WHERE name = $1",
    )
    .bind(name)
    .bind(revision)
    .execute(conn)
    .await?;
    Ok(())
}

/// Fields of `pvpnctl node add`.
#[derive(Debug, Clone)]
pub struct NodeSpec<'a> {
    pub name: &'a str,
    pub region: &'a str,
    pub endpoint: &'a str,
    pub public_key: &'a str,
    pub listen_port: i32,
    pub subnet: &'a str,
    pub dns: &'a [String],
    pub capacity: i32,
}

pub async fn insert(conn: &mut PgConnection, spec: &NodeSpec<'_>) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO nodes (name, region, endpoint, public_key, listen_port, subnet, dns, capacity)
         VALUES ($1, $2, $3, $4, $5, $6::cidr, $7::inet[], $8)",
    )
    .bind(spec.name)
    .bind(spec.region)
    .bind(spec.endpoint)
    .bind(spec.public_key)
    .bind(spec.listen_port)
    .bind(spec.subnet)
    .bind(spec.dns)
    .bind(spec.capacity)
    .execute(conn)
    .await?;
    Ok(())
}

/// Sets the node's protocol and AmneziaWG profile (validated by the caller).
pub async fn set_interface(
    conn: &mut PgConnection,
    name: &str,
    interface: &InterfaceSpec,
) -> sqlx::Result<()> {
    let profile = interface
        .amneziawg
        .as_ref()
        .map(serde_json::to_value)
        .transpose()
        .map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    sqlx::query("UPDATE nodes SET protocol = $2, awg_profile = $3 WHERE name = $1")
        .bind(name)
        .bind(interface.protocol.as_str())
        .bind(profile)
        .execute(conn)
        .await?;
    Ok(())
}

/// Updates what may change on an existing node (not its region or subnet).
pub async fn update(conn: &mut PgConnection, spec: &NodeSpec<'_>) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE nodes SET endpoint = $2, public_key = $3, listen_port = $4, dns = $5::inet[],
                capacity = $6
         WHERE name = $1",
    )
    .bind(spec.name)
    .bind(spec.endpoint)
    .bind(spec.public_key)
    .bind(spec.listen_port)
    .bind(spec.dns)
    .bind(spec.capacity)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn set_status(
    conn: &mut PgConnection,
    name: &str,
    status: NodeState,
) -> sqlx::Result<bool> {
    let done = sqlx::query("UPDATE nodes SET status = $2 WHERE name = $1")
        .bind(name)
        .bind(status)
        .execute(conn)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Names of the nodes of one region, in name order.
pub async fn names_in_region(conn: &mut PgConnection, region: &str) -> sqlx::Result<Vec<NodeName>> {
    let rows = sqlx::query("SELECT name FROM nodes WHERE region = $1 ORDER BY name")
        .bind(region)
        .fetch_all(conn)
        .await?;
    rows.iter().map(|r| parsed(r, "name")).collect()
}

/// `(name, region)` of every node.
pub async fn all_names(conn: &mut PgConnection) -> sqlx::Result<Vec<(NodeName, RegionCode)>> {
    let rows = sqlx::query("SELECT name, region FROM nodes ORDER BY region, name")
        .fetch_all(conn)
        .await?;
    rows.iter()
        .map(|r| Ok((parsed(r, "name")?, parsed(r, "region")?)))
        .collect()
}

/// `(name, region, published_revision)` of every node, or of the nodes named in `only`.
pub async fn published_revisions(
    conn: &mut PgConnection,
    only: Option<&[String]>,
) -> sqlx::Result<Vec<(NodeName, RegionCode, i64)>> {
    let rows = sqlx::query(
        "SELECT name, region, published_revision FROM nodes
         WHERE $1::text[] IS NULL OR name = ANY($1) ORDER BY region, name",
    )
    .bind(only)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| {
            Ok((
                parsed(r, "name")?,
                parsed(r, "region")?,
                r.try_get("published_revision")?,
            ))
        })
        .collect()
}

/// What an agent's heartbeat says about its node.
#[derive(Debug, Clone)]
pub struct Heartbeat<'a> {
    pub applied_revision: i64,
    pub peer_count: i32,
    pub agent_version: &'a str,
    /// The last `ReconcileReport`, if the heartbeat carries one (else the stored one stays).
    pub last_reconcile: Option<&'a ReconcileReport>,
}

/// Stores a heartbeat of `node` in `region`; `false` if the region has no such node.
pub async fn record_heartbeat(
    conn: &mut PgConnection,
    region: &str,
    node: &str,
    heartbeat: &Heartbeat<'_>,
) -> sqlx::Result<bool> {
    // The receiving clock decides liveness: an agent's skewed clock must not make its node look
    // down (or up).
    let updated = sqlx::query(
        "UPDATE nodes SET last_heartbeat_at = now(), applied_revision = $3, peer_count = $4,
                agent_version = $5, last_reconcile = coalesce($6, last_reconcile)
         WHERE name = $1 AND region = $2",
    )
    .bind(node)
    .bind(region)
    .bind(heartbeat.applied_revision)
    .bind(heartbeat.peer_count)
    .bind(heartbeat.agent_version)
    .bind(heartbeat.last_reconcile.map(sqlx::types::Json))
    .execute(conn)
    .await?;
    Ok(updated.rows_affected() == 1)
}

/// A feedback stream entry id, `<ms>-<seq>`: the order Redis gave the entries of one stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct EntryId {
    pub ms: i64,
    pub seq: i64,
}

impl std::str::FromStr for EntryId {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (ms, seq) = s
            .split_once('-')
            .ok_or_else(|| format!("stream entry id {s:.40?} is not <ms>-<seq>"))?;
        let number = |part: &str| {
            part.parse::<i64>()
                .ok()
                .filter(|n| *n >= 0)
                .ok_or_else(|| format!("stream entry id {s:.40?} is not <ms>-<seq>"))
        };
        Ok(Self {
            ms: number(ms)?,
            seq: number(seq)?,
        })
    }
}

/// Moves `node`'s feedback cursor for `kind` (`heartbeat`, `stats`) to `entry` if `entry` is
/// newer; `false` (nothing changed) if an entry at or after it was stored already. The row lock
/// it takes makes a second consumer with the same entry wait and then see it as stored.
pub async fn advance_feedback_cursor(
    conn: &mut PgConnection,
    node: &str,
    kind: &str,
    entry: EntryId,
) -> sqlx::Result<bool> {
    let advanced: Option<String> = sqlx::query_scalar(
        "INSERT INTO feedback_cursor AS c (node, kind, entry_ms, entry_seq) VALUES ($1, $2, $3, $4)
         ON CONFLICT (node, kind) DO UPDATE SET entry_ms = $3, entry_seq = $4
             WHERE (c.entry_ms, c.entry_seq) < ($3, $4)
         RETURNING node",
    )
    .bind(node)
    .bind(kind)
    .bind(entry.ms)
    .bind(entry.seq)
    .fetch_optional(conn)
    .await?;
    Ok(advanced.is_some())
}

/// Whether `region` has a node called `node`.
pub async fn exists_in_region(
    conn: &mut PgConnection,
    region: &str,
    node: &str,
) -> sqlx::Result<bool> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM nodes WHERE name = $1 AND region = $2)")
        .bind(node)
        .bind(region)
        .fetch_one(conn)
        .await
}

/// The other node that already uses `public_key`, if any.
pub async fn holder_of_key(
    conn: &mut PgConnection,
    public_key: &str,
    except: &str,
) -> sqlx::Result<Option<String>> {
    sqlx::query_scalar("SELECT name FROM nodes WHERE public_key = $1 AND name <> $2")
        .bind(public_key)
        .bind(except)
        .fetch_optional(conn)
        .await
}
