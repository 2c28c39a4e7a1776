//! Full snapshots: republishing a node's (or a whole region's) desired state from PostgreSQL,
//! when Redis lost its data, disagrees with PostgreSQL, or a node was never published.
//!
//! A snapshot is read under a shared lock on the node row, so its peers and its revision belong
//! together (writers of the node hold the row's exclusive lock until they commit). It is written
//! with a new, higher epoch (`scripts::Scripts::write_snapshot`), and outbox rows at or below the
//! republished revision are covered by it and marked published. Every republish is followed by a
//! `Reconcile` on the region's stream, so agents converge at once instead of at their timer.

use pvpn_common::redis_keys::RegionKeys;
use pvpn_common::wire::{self, StreamEvent};
use pvpn_common::{NodeName, RegionCode};
use redis::aio::MultiplexedConnection;
use sqlx::{Connection, PgConnection};

use super::RelayError;
use super::failures::NodeFailures;
use super::publish::Ctx;
use super::scripts::{Scripts, SnapshotKeys, publish_control};
use crate::db;
use crate::metrics::label;

/// Turns a node's live devices into the snapshot hash's `(public key, PeerSpec JSON)` pairs,
/// each peer built by [`db::devices::DevicePeer::peer_spec`] like the streamed change was.
fn snapshot_entries(peers: Vec<db::devices::DevicePeer>) -> Vec<(String, String)> {
    peers
        .into_iter()
        .map(|device| {
            let peer = device.peer_spec();
            (peer.public_key.to_base64(), wire::encode(&peer))
        })
        .collect()
}

/// Writes one node's whole desired state to Redis at its current PostgreSQL revision, under a
/// new epoch, and records it as published. Sends no `Reconcile`: the callers do.
async fn write_node(
    pg: &mut PgConnection,
    redis: &mut MultiplexedConnection,
    scripts: &Scripts,
    region: &RegionCode,
    node: &NodeName,
) -> Result<(), RelayError> {
    let mut tx = pg.begin().await?;
    let Some(row) = db::nodes::lock_shared(&mut tx, node.as_str()).await? else {
        return Err(RelayError::Data(format!("node {node} vanished")));
    };
    let peers = db::devices::peers_of_node(&mut tx, node.as_str()).await?;
    tx.commit().await?;
    let entries = snapshot_entries(peers);
    let revision =
        u64::try_from(row.revision).map_err(|_| RelayError::Data("negative revision".into()))?;
    let keys = SnapshotKeys::new(&RegionKeys::new(region), node);
    // Plain JSON (the agent's `snapshot::parse_interface`): the spec refuses unknown fields.
    let interface = serde_json::to_string(&row.interface)
        .map_err(|e| RelayError::Data(format!("interface spec of {node}: {e}")))?;
    let epoch = scripts
        .write_snapshot(redis, &keys, revision, &interface, &entries)
        .await?;
    let mut tx = pg.begin().await?;
    db::nodes::mark_published(&mut tx, node.as_str(), row.revision).await?;
    db::outbox::mark_covered_by_snapshot(&mut tx, node.as_str(), row.revision).await?;
    tx.commit().await?;
    tracing::info!(%region, %node, revision, epoch, peers = entries.len(), "node snapshot republished");
    Ok(())
}

/// Asks the agents of `region` (all of them, or one node's) to reconcile now.
async fn request_reconcile(
    redis: &mut MultiplexedConnection,
    region: &RegionCode,
    node: Option<&NodeName>,
    maxlen: u64,
) -> Result<(), RelayError> {
    let request = StreamEvent::Reconcile {
        node: node.cloned(),
        request_id: format!("republish-{}", uuid::Uuid::new_v4()),
    };
    let events = RegionKeys::new(region).events();
    publish_control(redis, &events, &request.encode(), maxlen).await?;
    Ok(())
}

/// Republishes one node from PostgreSQL under a new epoch, then asks its agent to reconcile.
/// `reason` labels the `snapshot_republished` metric.
pub(super) async fn republish_node(
    pg: &mut PgConnection,
    redis: &mut MultiplexedConnection,
    ctx: &Ctx<'_>,
    region: &RegionCode,
    node: &NodeName,
    reason: &str,
) -> Result<(), RelayError> {
    write_node(pg, redis, ctx.scripts, region, node).await?;
    ctx.metrics
        .republished
        .get_or_create(&label("reason", reason))
        .inc();
    request_reconcile(redis, region, Some(node), ctx.settings.stream_maxlen).await
}

/// Republishes every node of the region, asks its agents to reconcile, then sets the epoch
/// marker. A node whose republish fails is handed to `failures` (it is retried on its own) and
/// does not stop the others.
pub(super) async fn republish_region(
    pg: &mut PgConnection,
    redis: &mut MultiplexedConnection,
    ctx: &Ctx<'_>,
    failures: &mut NodeFailures,
    region: &RegionCode,
) -> Result<(), RelayError> {
    tracing::warn!(%region, "epoch marker missing in Redis: republishing the region from PostgreSQL");
    for node in db::nodes::names_in_region(pg, region.as_str()).await? {
        match write_node(pg, redis, ctx.scripts, region, &node).await {
            Ok(()) => failures.succeed(node.as_str(), ctx.metrics),
            Err(e) if e.is_node_specific() => {
                failures.fail(node.as_str(), &e, ctx.metrics);
                continue;
            }
            Err(e) => return Err(e),
        }
        ctx.metrics
            .republished
            .get_or_create(&label("reason", "epoch_missing"))
            .inc();
    }
    request_reconcile(redis, region, None, ctx.settings.stream_maxlen).await?;
    let epoch = format!(
        "{}:{}",
        chrono::Utc::now().timestamp(),
        uuid::Uuid::new_v4()
    );
    let _: () = redis::cmd("SET")
        .arg(RegionKeys::new(region).epoch())
        .arg(epoch)
        .query_async(redis)
        .await?;
    Ok(())
}

/// Makes sure every region has its epoch marker in Redis, republishing a region whose marker is
/// missing (Redis restarted empty or was flushed). Cheap (one `EXISTS` per region): runs at the
/// start of every relay pass, together with [`ensure_node_revisions`].
pub(super) async fn ensure_region_markers(
    pg: &mut PgConnection,
    redis: &mut MultiplexedConnection,
    ctx: &Ctx<'_>,
    failures: &mut NodeFailures,
) -> Result<(), RelayError> {
    let regions = db::regions::codes(pg).await?;
    if regions.is_empty() {
        return Ok(());
    }
    let mut pipe = redis::pipe();
    for region in &regions {
        pipe.exists(RegionKeys::new(region).epoch());
    }
    let exists: Vec<bool> = pipe.query_async(redis).await?;
    for (region, present) in regions.iter().zip(exists) {
        if !present {
            republish_region(pg, redis, ctx, failures, region).await?;
        }
    }
    ensure_node_revisions(pg, redis, ctx, failures).await
}

/// Republishes every node whose revision key is missing (a node declared since, or a key
/// deleted): one `EXISTS` per node, so a new node has its snapshot before its first change.
async fn ensure_node_revisions(
    pg: &mut PgConnection,
    redis: &mut MultiplexedConnection,
    ctx: &Ctx<'_>,
    failures: &mut NodeFailures,
) -> Result<(), RelayError> {
    let nodes = db::nodes::all_names(pg).await?;
    if nodes.is_empty() {
        return Ok(());
    }
    let mut pipe = redis::pipe();
    for (node, region) in &nodes {
        pipe.exists(RegionKeys::new(region).node_revision(node));
    }
    let exists: Vec<bool> = pipe.query_async(redis).await?;
    for ((node, region), present) in nodes.iter().zip(exists) {
        if present || failures.is_failing(node.as_str()) {
            continue;
        }
        match republish_node(pg, redis, ctx, region, node, "revision_missing").await {
            Ok(()) => {}
            Err(e) if e.is_node_specific() => failures.fail(node.as_str(), &e, ctx.metrics),
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
