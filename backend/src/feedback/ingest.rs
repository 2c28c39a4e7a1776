//! Storing one feedback message in PostgreSQL: a heartbeat updates its node, a stats report
//! updates its node's devices' last handshake and cumulative traffic.
//!
//! Traffic counters from the node are raw interface counters that restart at zero when the
//! interface is recreated. Each device keeps the last raw counter it saw (`rx_counter`) and the
//! cumulative total (`rx_bytes`): a counter that grew adds the difference, a counter that shrank
//! was reset and adds its whole value. Re-delivery of the same report adds nothing.

use chrono::DateTime;
use pvpn_common::RegionCode;
use pvpn_common::wire::{Feedback, Heartbeat, PeerStats};
use sqlx::PgConnection;

/// What happened to one entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ingested {
    Heartbeat,
    Stats {
        devices: u64,
    },
    /// The entry is valid but names a node this region does not have.
    UnknownNode(String),
    /// The entry cannot be stored (bad numbers); logged and dropped.
    Rejected(String),
}

/// Stores one decoded message from `region`'s feedback stream.
pub async fn ingest(
    conn: &mut PgConnection,
    region: &RegionCode,
    message: &Feedback,
) -> sqlx::Result<Ingested> {
    match message {
        Feedback::Heartbeat(hb) => heartbeat(conn, region, hb).await,
        Feedback::Stats { node, peers, .. } => stats(conn, region, node.as_str(), peers).await,
    }
}

async fn heartbeat(
    conn: &mut PgConnection,
    region: &RegionCode,
    hb: &Heartbeat,
) -> sqlx::Result<Ingested> {
    let Ok(applied) = i64::try_from(hb.applied_revision) else {
        return Ok(Ingested::Rejected(format!(
            "applied revision {} out of range",
            hb.applied_revision
        )));
    };
    let peer_count = i32::try_from(hb.peer_count).unwrap_or(i32::MAX);
    let version: String = hb.agent_version.chars().take(64).collect();
    let reconcile = hb
        .last_reconcile
        .as_ref()
        .map(|r| sqlx::types::Json(r.clone()));
    // The receiving clock decides liveness: an agent's skewed clock must not make its node look
    // down (or up).
    let updated = sqlx::query(
        "UPDATE nodes SET last_heartbeat_at = now(), applied_revision = $3, peer_count = $4,
                agent_version = $5, last_reconcile = coalesce($6, last_reconcile)
         WHERE name = $1 AND region = $2",
    )
    .bind(hb.node.as_str())
    .bind(region.as_str())
    .bind(applied)
    .bind(peer_count)
    .bind(version)
    .bind(reconcile)
    .execute(conn)
    .await?;
    Ok(if updated.rows_affected() == 1 {
        Ingested::Heartbeat
    } else {
        Ingested::UnknownNode(hb.node.to_string())
    })
}

async fn stats(
    conn: &mut PgConnection,
    region: &RegionCode,
    node: &str,
    peers: &[PeerStats],
) -> sqlx::Result<Ingested> {
    let known: Option<String> =
        sqlx::query_scalar("SELECT name FROM nodes WHERE name = $1 AND region = $2")
            .bind(node)
            .bind(region.as_str())
            .fetch_optional(&mut *conn)
            .await?;
    if known.is_none() {
        return Ok(Ingested::UnknownNode(node.to_string()));
    }
    let mut keys = Vec::with_capacity(peers.len());
    let mut rx = Vec::with_capacity(peers.len());
    let mut tx = Vec::with_capacity(peers.len());
    let mut handshakes = Vec::with_capacity(peers.len());
    for peer in peers {
        let (Ok(r), Ok(t)) = (i64::try_from(peer.rx_bytes), i64::try_from(peer.tx_bytes)) else {
            return Ok(Ingested::Rejected(format!(
                "counters of {} out of range",
                peer.public_key
            )));
        };
        keys.push(peer.public_key.to_base64());
        rx.push(r);
        tx.push(t);
        handshakes.push(
            peer.last_handshake
                .and_then(|s| DateTime::from_timestamp(s, 0)),
        );
    }
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
    .bind(&keys)
    .bind(&rx)
    .bind(&tx)
    .bind(&handshakes)
    .execute(conn)
    .await?;
    Ok(Ingested::Stats {
        devices: updated.rows_affected(),
    })
}
