//! Publishing outbox rows to Redis, one atomic script per row, and marking them published.
//!
//! A row whose publish fails with an error about its node's keys holds back only that node's
//! (or, for a node-less row, its region's) later rows: they wait for the node's retry in
//! `failures`, and every other node's rows are published.

use std::collections::{HashMap, HashSet};

use chrono::Utc;
use pvpn_common::RegionCode;
use pvpn_common::redis_keys::RegionKeys;
use pvpn_common::wire::{self, StreamEvent};
use redis::aio::MultiplexedConnection;
use sqlx::{Connection, PgConnection};

use super::failures::NodeFailures;
use super::scripts::{Change, ChangeOp, ChangeOutcome, Scripts, publish_control};
use super::{RelayError, RelaySettings, snapshot};
use crate::db;
use crate::db::outbox::OutboxRow;
use crate::metrics::{Metrics, label};

/// What every publishing step needs besides the two connections.
pub(super) struct Ctx<'a> {
    pub scripts: &'a Scripts,
    pub metrics: &'a Metrics,
    pub settings: &'a RelaySettings,
}

/// Publishes `rows` in order, pushing each confirmed row's id to `done`. A node-specific failure
/// hands the row's scope to `failures` and skips that scope's later rows; any other error stops.
pub(super) async fn publish_rows(
    pg: &mut PgConnection,
    redis: &mut MultiplexedConnection,
    ctx: &Ctx<'_>,
    failures: &mut NodeFailures,
    rows: &[OutboxRow],
    done: &mut Vec<i64>,
) -> Result<(), RelayError> {
    let mut stopped: HashSet<String> = HashSet::new();
    for row in rows {
        let scope = row.scope();
        if stopped.contains(&scope) || failures.held().contains(&scope) {
            continue;
        }
        match publish_row(pg, redis, ctx, failures, row).await {
            Ok(()) => {
                failures.succeed(&scope, ctx.metrics);
                done.push(row.id);
            }
            Err(e) if e.is_node_specific() => {
                failures.fail(&scope, &e, ctx.metrics);
                stopped.insert(scope);
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Publishes one row: a control event as it is, a change through the change script, with a full
/// republish of the node when the script finds its snapshot out of step.
async fn publish_row(
    pg: &mut PgConnection,
    redis: &mut MultiplexedConnection,
    ctx: &Ctx<'_>,
    failures: &mut NodeFailures,
    row: &OutboxRow,
) -> Result<(), RelayError> {
    let region = RegionCode::new(&row.region).map_err(|e| RelayError::Data(e.to_string()))?;
    let keys = RegionKeys::new(&region);
    let maxlen = ctx.settings.stream_maxlen;
    let event = match StreamEvent::decode(row.payload.as_bytes()) {
        Ok(event) => event,
        Err(e) => {
            // Our own row, so this is a bug; skipping it keeps every later change flowing.
            tracing::error!(id = row.id, error = %e, "outbox row does not decode; skipped");
            ctx.metrics.error("relay");
            return Ok(());
        }
    };
    let (node, revision, op, public_key, value_json) = match &event {
        StreamEvent::Reconcile { .. } => {
            publish_control(redis, &keys.events(), &event.encode(), maxlen).await?;
            count_published(ctx.metrics, row);
            return Ok(());
        }
        StreamEvent::PeerUpsert {
            node,
            revision,
            peer,
        } => (
            node,
            *revision,
            ChangeOp::Upsert,
            peer.public_key.to_base64(),
            wire::encode(peer),
        ),
        StreamEvent::PeerRemove {
            node,
            revision,
            public_key,
        } => (
            node,
            *revision,
            ChangeOp::Remove,
            public_key.to_base64(),
            String::new(),
        ),
        // Plain JSON, as in snapshots (`snapshot::write_node`).
        StreamEvent::InterfaceSet {
            node,
            revision,
            interface,
        } => (
            node,
            *revision,
            ChangeOp::Interface,
            String::new(),
            serde_json::to_string(interface).map_err(|e| RelayError::Data(e.to_string()))?,
        ),
    };
    let (peers_key, revision_key, epoch_key, events_key) = (
        keys.node_peers(node),
        keys.node_revision(node),
        keys.epoch(),
        keys.events(),
    );
    let event_json = event.encode();
    let interface_key = keys.node_interface(node);
    let change = Change {
        epoch_key: &epoch_key,
        peers_key: &peers_key,
        revision_key: &revision_key,
        events_key: &events_key,
        interface_key: &interface_key,
        revision,
        op,
        public_key: &public_key,
        value_json: &value_json,
        event_json: &event_json,
        maxlen,
    };
    let mut outcome = ctx.scripts.publish_change(redis, &change).await?;
    if outcome == ChangeOutcome::EpochMissing {
        snapshot::republish_region(pg, redis, ctx, failures, &region).await?;
        outcome = ctx.scripts.publish_change(redis, &change).await?;
    }
    let reason = match outcome {
        ChangeOutcome::Published | ChangeOutcome::AlreadyPublished => None,
        ChangeOutcome::EpochMissing | ChangeOutcome::SnapshotMissing => Some("revision_missing"),
        ChangeOutcome::Gap => Some("revision_behind"),
        ChangeOutcome::Garbage => Some("revision_garbage"),
    };
    if let Some(reason) = reason {
        tracing::warn!(%node, revision, ?outcome, "snapshot out of step; republishing the node");
        snapshot::republish_node(pg, redis, ctx, &region, node, reason).await?;
    }
    let latency = (Utc::now() - row.created_at).to_std().unwrap_or_default();
    ctx.metrics.publish_latency.observe(latency.as_secs_f64());
    count_published(ctx.metrics, row);
    Ok(())
}

fn count_published(metrics: &Metrics, row: &OutboxRow) {
    metrics
        .published
        .get_or_create(&label("kind", &row.kind))
        .inc();
}

/// Marks published rows and advances each node's `published_revision`, in one transaction.
pub(super) async fn mark_done(
    pg: &mut PgConnection,
    rows: &[OutboxRow],
    done: &[i64],
) -> Result<(), RelayError> {
    if done.is_empty() {
        return Ok(());
    }
    let mut highest: HashMap<&str, i64> = HashMap::new();
    for row in rows.iter().filter(|r| done.contains(&r.id)) {
        if let (Some(node), Some(revision)) = (row.node.as_deref(), row.revision) {
            let entry = highest.entry(node).or_insert(revision);
            *entry = (*entry).max(revision);
        }
    }
    let mut tx = pg.begin().await?;
    db::outbox::mark_published(&mut tx, done).await?;
    for (node, revision) in highest {
        db::nodes::mark_published(&mut tx, node, revision).await?;
    }
    tx.commit().await?;
    Ok(())
}
