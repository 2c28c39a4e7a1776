//! Turning database rows into the service's validated view types. A row that does not parse
//! means the database holds something the schema should have prevented: `Internal`.

use std::net::Ipv4Addr;

use chrono::Utc;
use pvpn_common::{NodeName, RegionCode};

use super::ServiceError;
use super::types::*;
use crate::db::devices::DeviceRow;
use crate::db::nodes::NodeRow;
use crate::db::regions::RegionRow;
use crate::db::users::UserRow;

fn bad(what: &str, value: &str) -> ServiceError {
    ServiceError::Internal(format!("database holds an invalid {what}: {value:?}"))
}

fn count(n: i64) -> u32 {
    u32::try_from(n.max(0)).unwrap_or(u32::MAX)
}

pub(crate) fn user(row: &UserRow) -> Result<User, ServiceError> {
    Ok(User {
        telegram_id: row.telegram_id,
        username: row.username.clone(),
        language: row
            .language
            .parse()
            .map_err(|_| bad("language", &row.language))?,
        status: match row.status.as_str() {
            "active" => UserStatus::Active,
            "banned" => UserStatus::Banned,
            other => return Err(bad("user status", other)),
        },
        device_limit: count(row.device_limit.into()),
        access_expires_at: row.access_expires_at,
        active_devices: count(row.active_devices),
        created_at: row.created_at,
    })
}

pub(crate) fn region_status(s: &str) -> Result<RegionStatus, ServiceError> {
    match s {
        "active" => Ok(RegionStatus::Active),
        "draining" => Ok(RegionStatus::Draining),
        "disabled" => Ok(RegionStatus::Disabled),
        other => Err(bad("region status", other)),
    }
}

pub(crate) fn region(row: &RegionRow) -> Result<RegionView, ServiceError> {
    Ok(RegionView {
        code: RegionCode::new(&row.code).map_err(|_| bad("region code", &row.code))?,
        display_name: row.display_name.clone(),
        status: region_status(&row.status)?,
        devices: count(row.devices),
        capacity: count(row.capacity),
        active_nodes: count(row.active_nodes),
    })
}

pub(crate) fn device(row: &DeviceRow) -> Result<DeviceView, ServiceError> {
    Ok(DeviceView {
        id: row.id,
        name: row.name.clone(),
        region: RegionCode::new(&row.region).map_err(|_| bad("region code", &row.region))?,
        region_name: row.region_name.clone(),
        node: NodeName::new(&row.node).map_err(|_| bad("node name", &row.node))?,
        address: row
            .address
            .parse::<Ipv4Addr>()
            .map_err(|_| bad("address", &row.address))?,
        public_key: row.public_key.clone(),
        status: match row.status.as_str() {
            "active" => DeviceStatus::Active,
            "revoked" => DeviceStatus::Revoked,
            other => return Err(bad("device status", other)),
        },
        revoke_reason: row.revoke_reason.clone(),
        created_at: row.created_at,
        reissued_at: row.reissued_at,
        last_handshake_at: row.last_handshake_at,
        rx_bytes: row.rx_bytes.max(0).unsigned_abs(),
        tx_bytes: row.tx_bytes.max(0).unsigned_abs(),
    })
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
        name: NodeName::new(&row.name).map_err(|_| bad("node name", &row.name))?,
        region: RegionCode::new(&row.region).map_err(|_| bad("region code", &row.region))?,
        status: row.status.clone(),
        endpoint: row.endpoint.clone(),
        public_key: row.public_key.clone(),
        listen_port: u16::try_from(row.listen_port)
            .map_err(|_| bad("port", &row.listen_port.to_string()))?,
        subnet: row.subnet.clone(),
        dns: row.dns.clone(),
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
