//! Turning typed database rows into the service's view types. Parsing happened when the row was
//! read (`crate::db`); what is left is clamping counters into the views' unsigned types.

use chrono::Utc;

use super::ServiceError;
use super::types::*;
use crate::db::devices::DeviceRow;
use crate::db::nodes::NodeRow;
use crate::db::regions::RegionRow;
use crate::db::users::UserRow;

fn count(n: i64) -> u32 {
    u32::try_from(n.max(0)).unwrap_or(u32::MAX)
}

pub(crate) fn user(row: &UserRow) -> User {
    User {
        telegram_id: row.telegram_id,
        username: row.username.clone(),
        language: row.language,
        status: row.status,
        device_limit: count(row.device_limit.into()),
        access_expires_at: row.access_expires_at,
        active_devices: count(row.active_devices),
        created_at: row.created_at,
    }
}

/// `capacity`: the sum of the region's active nodes' capacities; `protocol`: what they speak.
pub(crate) fn region(row: &RegionRow, capacity: u64, protocol: RegionProtocol) -> RegionView {
    RegionView {
        code: row.code.clone(),
        display_name: row.display_name.clone(),
        status: row.status,
        devices: count(row.devices),
        capacity: u32::try_from(capacity).unwrap_or(u32::MAX),
        active_nodes: count(row.active_nodes),
        protocol,
    }
}

pub(crate) fn device(row: &DeviceRow) -> DeviceView {
    DeviceView {
        id: row.id,
        name: row.name.clone(),
        region: row.region.clone(),
        region_name: row.region_name.clone(),
        node: row.node.clone(),
        protocol: row.protocol,
        address: row.address,
        public_key: row.public_key,
        status: row.status,
        revoke_reason: row.revoke_reason,
        created_at: row.created_at,
        reissued_at: row.reissued_at,
        imported_config: row.imported_at.is_some() && row.reissued_at.is_none(),
        last_handshake_at: row.last_handshake_at,
        rx_bytes: row.rx_bytes.max(0).unsigned_abs(),
        tx_bytes: row.tx_bytes.max(0).unsigned_abs(),
    }
}

pub(crate) fn node_status(
    row: &NodeRow,
    heartbeat_interval: std::time::Duration,
) -> Result<NodeStatus, ServiceError> {
    let now = Utc::now();
    let age = row.last_heartbeat_at.map(|at| (now - at).num_seconds());
    let down_after =
        i64::try_from(heartbeat_interval.as_secs().saturating_mul(3)).unwrap_or(i64::MAX);
    Ok(NodeStatus {
        name: row.name.clone(),
        region: row.region.clone(),
        status: row.status,
        endpoint: row.endpoint.to_string(),
        public_key: row.public_key.to_base64(),
        listen_port: u16::try_from(row.listen_port).map_err(|_| {
            ServiceError::Internal(format!("node {} has port {}", row.name, row.listen_port))
        })?,
        subnet: row.subnet.net().to_string(),
        dns: row.dns.iter().map(ToString::to_string).collect(),
        capacity: count(row.capacity.into()),
        devices: count(row.devices),
        revision: row.revision.max(0).unsigned_abs(),
        published_revision: row.published_revision.max(0).unsigned_abs(),
        applied_revision: row.applied_revision.max(0).unsigned_abs(),
        last_heartbeat_at: row.last_heartbeat_at,
        heartbeat_age_secs: age,
        up: age.is_some_and(|a| a <= down_after),
        agent_version: row.agent_version.clone(),
        peer_count: row.peer_count.map(|n| count(n.into())),
        last_reconcile: row.last_reconcile.clone(),
    })
}
