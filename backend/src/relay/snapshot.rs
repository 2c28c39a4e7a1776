//! Full snapshots: the epoch check and republishing a node's (or a whole region's) desired state
//! from PostgreSQL, for when Redis lost its data or a node was never published.
//!
//! A snapshot is read under a shared lock on the node row, so its peers and its revision belong
//! together (writers of the node hold the row's exclusive lock until they commit). Outbox rows at
//! or below the republished revision are covered by the snapshot and marked published.

use pvpn_common::redis_keys::RegionKeys;
use pvpn_common::wire::{self, StreamEvent};
use pvpn_common::{NodeName, RegionCode};
use redis::aio::MultiplexedConnection;
use sqlx::{Connection, PgConnection};

use super::RelayError;
use super::scripts::{Scripts, publish_control};
use crate::db;
use crate::metrics::{Metrics, label};

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

/// Writes one node's whole desired state to Redis at its current PostgreSQL revision.
pub(super) async fn republish_node(
    pg: &mut PgConnection,
    redis: &mut MultiplexedConnection,
    scripts: &Scripts,
    region: &RegionCode,
    node: &NodeName,
) -> Result<u64, RelayError> {
    let mut tx = pg.begin().await?;
    let Some(row) = db::nodes::lock_shared(&mut tx, node.as_str()).await? else {
        return Err(RelayError::Data(format!("node {node} vanished")));
    };
    let peers = db::devices::peers_of_node(&mut tx, node.as_str()).await?;
    tx.commit().await?;
    let entries = snapshot_entries(peers);
    let revision =
        u64::try_from(row.revision).map_err(|_| RelayError::Data("negative revision".into()))?;
    let keys = RegionKeys::new(region);
    scripts
        .write_snapshot(
            redis,
            &keys.node_peers(node),
            &keys.node_revision(node),
            revision,
            &entries,
        )
        .await?;
    let mut tx = pg.begin().await?;
    db::nodes::mark_published(&mut tx, node.as_str(), row.revision).await?;
    db::outbox::mark_covered_by_snapshot(&mut tx, node.as_str(), row.revision).await?;
    tx.commit().await?;
    tracing::info!(%region, %node, revision, peers = entries.len(), "node snapshot republished");
    Ok(revision)
}

/// Republishes every node of the region, asks its agents to reconcile, then sets the epoch.
pub(super) async fn republish_region(
    pg: &mut PgConnection,
    redis: &mut MultiplexedConnection,
    scripts: &Scripts,
    metrics: &Metrics,
    region: &RegionCode,
    maxlen: u64,
) -> Result<(), RelayError> {
    tracing::warn!(%region, "epoch marker missing in Redis: republishing the region from PostgreSQL");
    for node in db::nodes::names_in_region(pg, region.as_str()).await? {
        republish_node(pg, redis, scripts, region, &node).await?;
        metrics
            .republished
            .get_or_create(&label("reason", "epoch_missing"))
            .inc();
    }
    let keys = RegionKeys::new(region);
    let request = StreamEvent::Reconcile {
        node: None,
        request_id: format!("republish-{}", uuid::Uuid::new_v4()),
    };
    publish_control(redis, &keys.events(), &request.encode(), maxlen).await?;
    let epoch = format!(
        "{}:{}",
        chrono::Utc::now().timestamp(),
        uuid::Uuid::new_v4()
    );
    let _: () = redis::cmd("SET")
        .arg(keys.epoch())
        .arg(epoch)
        .query_async(redis)
        .await?;
    Ok(())
}

/// Makes sure every region has its epoch and every node its snapshot in Redis, republishing
/// from PostgreSQL where one is missing. Runs at the start of every relay pass.
pub(super) async fn ensure_snapshots(
    pg: &mut PgConnection,
    redis: &mut MultiplexedConnection,
    scripts: &Scripts,
    metrics: &Metrics,
    maxlen: u64,
) -> Result<(), RelayError> {
    let regions = db::regions::codes(pg).await?;
    let nodes = db::nodes::all_names(pg).await?;
    let mut pipe = redis::pipe();
    for region in &regions {
        pipe.exists(RegionKeys::new(region).epoch());
    }
    for (node, region) in &nodes {
        pipe.exists(RegionKeys::new(region).node_revision(node));
    }
    if regions.is_empty() {
        return Ok(());
    }
    let exists: Vec<bool> = pipe.query_async(redis).await?;
    let (region_flags, node_flags) = exists.split_at(regions.len().min(exists.len()));
    let mut republished = Vec::new();
    for (region, present) in regions.iter().zip(region_flags) {
        if !present {
            republish_region(pg, redis, scripts, metrics, region, maxlen).await?;
            republished.push(region.clone());
        }
    }
    for ((node, region), present) in nodes.iter().zip(node_flags) {
        if *present || republished.contains(region) {
            continue;
        }
        republish_node(pg, redis, scripts, region, node).await?;
        metrics
            .republished
            .get_or_create(&label("reason", "revision_missing"))
            .inc();
        let request = StreamEvent::Reconcile {
            node: Some(node.clone()),
            request_id: format!("republish-{}", uuid::Uuid::new_v4()),
        };
        publish_control(
            redis,
            &RegionKeys::new(region).events(),
            &request.encode(),
            maxlen,
        )
        .await?;
    }
    Ok(())
}
