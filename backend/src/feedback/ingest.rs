//! Storing one feedback message in PostgreSQL: a heartbeat updates its node, a stats report
//! updates its node's devices' last handshake and cumulative traffic. This module checks and
//! converts the message; the queries are `db::nodes::record_heartbeat` and
//! `db::devices::add_traffic` (which says how counter resets are counted).
//!
//! Ingestion is idempotent and ordered per node, so two backends (or one re-reading its pending
//! entries) never count traffic twice: in the same transaction as the update, the node's
//! feedback cursor for the message's kind moves to the entry's stream id
//! (`db::nodes::advance_feedback_cursor`), and an entry at or below the cursor is `Stale` and
//! changes nothing. Counters are cumulative, so dropping an older stats report loses nothing
//! the newer one does not carry (except traffic between a counter reset and a report that was
//! overtaken, which is at most one stats interval of one node).

use chrono::DateTime;
use pvpn_common::RegionCode;
use pvpn_common::wire::{Feedback, Heartbeat, PeerStats};
use sqlx::{Connection, PgConnection};

use crate::db;
use crate::db::nodes::EntryId;

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
    /// An entry at or after this one was stored already: dropped, nothing counted twice.
    Stale,
}

/// Stores one decoded message from `region`'s feedback stream, the entry `entry`, in one
/// transaction with the node's feedback cursor.
pub async fn ingest(
    conn: &mut PgConnection,
    region: &RegionCode,
    entry: EntryId,
    message: &Feedback,
) -> sqlx::Result<Ingested> {
    let (node, kind) = match message {
        Feedback::Heartbeat(hb) => (hb.node.as_str(), "heartbeat"),
        Feedback::Stats { node, .. } => (node.as_str(), "stats"),
    };
    let mut tx = conn.begin().await?;
    if !db::nodes::exists_in_region(&mut tx, region.as_str(), node).await? {
        return Ok(Ingested::UnknownNode(node.to_string()));
    }
    if !db::nodes::advance_feedback_cursor(&mut tx, node, kind, entry).await? {
        return Ok(Ingested::Stale);
    }
    let outcome = match message {
        Feedback::Heartbeat(hb) => heartbeat(&mut tx, region, hb).await?,
        Feedback::Stats { node, peers, .. } => stats(&mut tx, node.as_str(), peers).await?,
    };
    // A rejected entry leaves the cursor where it was (the transaction is dropped).
    if !matches!(outcome, Ingested::Rejected(_)) {
        tx.commit().await?;
    }
    Ok(outcome)
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
    let report = db::nodes::Heartbeat {
        applied_revision: applied,
        peer_count,
        agent_version: &version,
        last_reconcile: hb.last_reconcile.as_ref(),
    };
    let updated =
        db::nodes::record_heartbeat(conn, region.as_str(), hb.node.as_str(), &report).await?;
    Ok(if updated {
        Ingested::Heartbeat
    } else {
        Ingested::UnknownNode(hb.node.to_string())
    })
}

async fn stats(conn: &mut PgConnection, node: &str, peers: &[PeerStats]) -> sqlx::Result<Ingested> {
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
    let devices = db::devices::add_traffic(conn, node, &keys, &rx, &tx, &handshakes).await?;
    Ok(Ingested::Stats { devices })
}
