//! Carrying out an import [`Plan`] inside its transaction: users, devices and outbox rows in a
//! few batched statements, so 50,000 peers are a handful of round trips, not 150,000.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use pvpn_common::wire::StreamEvent;
use pvpn_common::{PeerSpec, PresharedKey};

use super::UNASSIGNED_TELEGRAM_ID;
use super::plan::{Owner, Plan};
use crate::db;
use crate::db::nodes::NodeRow;
use crate::service::ServiceError;

/// Writes the plan on the locked `node`; returns the first and last revision the new devices took.
pub(super) async fn apply(
    conn: &mut sqlx::PgConnection,
    node: &NodeRow,
    plan: &Plan,
) -> Result<Option<(u64, u64)>, ServiceError> {
    let mut receiving: Vec<i64> = plan
        .create
        .iter()
        .filter_map(|d| match d.owner {
            Owner::Telegram(id) => Some(id),
            Owner::Unassigned => None,
        })
        .chain(plan.assign.iter().map(|a| a.telegram_id))
        .collect();
    receiving.sort_unstable();
    receiving.dedup();
    let mut user_ids: HashMap<i64, i64> = db::import::ensure_users(conn, &receiving)
        .await?
        .into_iter()
        .collect();
    if plan.create.iter().any(|d| d.owner == Owner::Unassigned) {
        let id = db::import::ensure_placeholder(conn, UNASSIGNED_TELEGRAM_ID).await?;
        user_ids.insert(UNASSIGNED_TELEGRAM_ID, id);
    }
    let user_of = |owner: Owner| {
        let telegram_id = match owner {
            Owner::Telegram(id) => id,
            Owner::Unassigned => UNASSIGNED_TELEGRAM_ID,
        };
        user_ids
            .get(&telegram_id)
            .copied()
            .ok_or_else(|| ServiceError::Internal(format!("user {telegram_id} vanished")))
    };
    raise_new_users_limits(conn, plan, &user_of).await?;

    if !plan.assign.is_empty() {
        let ids: Vec<i64> = plan.assign.iter().map(|a| a.device_id).collect();
        let owners = plan
            .assign
            .iter()
            .map(|a| user_of(Owner::Telegram(a.telegram_id)))
            .collect::<Result<Vec<_>, _>>()?;
        let names: Vec<String> = plan.assign.iter().map(|a| a.name.clone()).collect();
        db::import::assign_devices(conn, &ids, &owners, &names).await?;
    }
    if plan.create.is_empty() {
        return Ok(None);
    }
    let mut devices = db::import::NewDevices::default();
    for d in &plan.create {
        devices.user_ids.push(user_of(d.owner)?);
        devices.names.push(d.name.clone());
        devices.public_keys.push(d.public_key.to_base64());
        devices
            .preshared_keys
            .push(d.preshared_key.as_ref().map(PresharedKey::to_base64));
        devices.addresses.push(d.address.to_string());
    }
    db::import::insert_devices(conn, &node.name, &devices).await?;
    // The node's live count and address pool must account for the imported addresses, or a
    // later grant would be offered one of them (and fail on the unique index).
    let (first, last) = node.subnet.client_range();
    let addresses: Vec<Ipv4Addr> = plan.create.iter().map(|d| d.address).collect();
    db::addresses::claim_inserted(conn, node.name.as_str(), first, last, &addresses).await?;

    // One revision and one outbox row per device, exactly as a grant writes them.
    let count = i64::try_from(plan.create.len())
        .map_err(|_| ServiceError::Internal("too many devices".into()))?;
    let last = db::import::take_revisions(conn, &node.name, count).await?;
    let first = last - count + 1;
    let revisions: Vec<i64> = (first..=last).collect();
    let mut payloads = Vec::with_capacity(plan.create.len());
    for (d, revision) in plan.create.iter().zip(&revisions) {
        let event = StreamEvent::PeerUpsert {
            node: node.name.clone(),
            revision: revision_u64(*revision)?,
            peer: PeerSpec::for_client(d.public_key, d.preshared_key.clone(), d.address),
        };
        payloads.push(event.encode());
    }
    db::import::insert_upserts(conn, &node.region, &node.name, &revisions, &payloads).await?;
    Ok(Some((revision_u64(first)?, revision_u64(last)?)))
}

fn revision_u64(revision: i64) -> Result<u64, ServiceError> {
    u64::try_from(revision)
        .map_err(|_| ServiceError::Internal(format!("negative node revision {revision}")))
}

/// A new user keeps every imported device: their limit is raised to their device count.
async fn raise_new_users_limits(
    conn: &mut sqlx::PgConnection,
    plan: &Plan,
    user_of: &impl Fn(Owner) -> Result<i64, ServiceError>,
) -> Result<(), ServiceError> {
    let mut counts: HashMap<i64, i32> = HashMap::new();
    let owners = plan
        .create
        .iter()
        .map(|d| d.owner)
        .chain(plan.assign.iter().map(|a| Owner::Telegram(a.telegram_id)));
    for owner in owners {
        if let Owner::Telegram(id) = owner
            && plan.new_users.contains(&id)
        {
            *counts.entry(id).or_default() += 1;
        }
    }
    if counts.is_empty() {
        return Ok(());
    }
    let mut ids = Vec::with_capacity(counts.len());
    let mut devices = Vec::with_capacity(counts.len());
    for (telegram_id, n) in counts {
        ids.push(user_of(Owner::Telegram(telegram_id))?);
        devices.push(n);
    }
    db::import::raise_device_limits(conn, &ids, &devices).await?;
    Ok(())
}
