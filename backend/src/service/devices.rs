//! Devices: where a grant becomes a peer.
//!
//! A grant, in one transaction: lock the user (device limit), pick the active node of the region
//! with the most free capacity and lock it, take the lowest free address of its subnet, generate
//! the client's keys, insert the device, and write the `PeerUpsert` to the outbox with the node's
//! next revision (`super::outbox`). The relay then carries it to Redis. The locks make
//! concurrent grants queue per user and per node; the unique index `devices_live_address` is the
//! backstop, and a conflict is retried ([`super::error::retry`]).

use std::net::Ipv4Addr;

use chrono::Utc;
use pvpn_common::DeviceName;
use pvpn_common::keys::KeyPair;
use pvpn_common::{NodeName, PeerSpec, PresharedKey, PublicKey, RegionCode};
use rand::Rng;
use sqlx::{Connection, PgConnection};

use super::error::retry;
use super::types::*;
use super::{Service, ServiceError, convert, outbox, render};
use crate::db;
use crate::db::nodes::NodeRow;
use crate::db::users::UserRow;
use crate::metrics::label;

/// The typed name checked by its owner, `pvpn_common::DeviceName`, or `device-<n>` without one.
fn clean_device_name(name: Option<&str>, active: u32) -> Result<String, ServiceError> {
    let Some(name) = name else {
        return Ok(format!("device-{}", active + 1));
    };
    DeviceName::new(name)
        .map(|n| n.as_str().to_string())
        .map_err(|e| ServiceError::InvalidInput(e.to_string()))
}

/// How many clients a node can take: its configured capacity, bounded by its subnet's client
/// range. Placement and the regions' load both count with this.
pub(crate) fn node_capacity(node: &NodeRow) -> u32 {
    let configured = u32::try_from(node.capacity.max(0)).unwrap_or(0);
    configured.min(node.subnet.client_capacity())
}

/// Refuses banned and expired users.
pub(crate) fn check_access(user: &UserRow) -> Result<(), ServiceError> {
    if user.status == UserStatus::Banned {
        return Err(ServiceError::Banned);
    }
    if user.access_expires_at.is_some_and(|at| at <= Utc::now()) {
        return Err(ServiceError::AccessExpired);
    }
    Ok(())
}

/// Locks a placeable node of the region and allocates an address on it, or says why not.
///
/// Nodes are tried most free room first (a hint read without locks). A node whose lock another
/// grant holds is skipped in a first pass, so concurrent grants spread over the region's nodes
/// instead of queueing on the emptiest one; only when every node with room is busy does the
/// grant wait for a lock. Waiters start at a random node of that order: had they all waited
/// for the first, every other node's lock would go unused while they queue on one.
async fn place(
    conn: &mut PgConnection,
    region: &RegionCode,
) -> Result<(NodeRow, Ipv4Addr), ServiceError> {
    let candidates = db::nodes::placement_candidates(conn, region.as_str()).await?;
    if candidates.is_empty() {
        // The region's state is read only now, off the path of every grant that finds a node.
        return Err(match db::regions::status(conn, region.as_str()).await? {
            None | Some(RegionStatus::Disabled) => ServiceError::RegionNotFound,
            Some(RegionStatus::Active | RegionStatus::Draining) => ServiceError::RegionUnavailable,
        });
    }
    let mut ranked: Vec<(i64, NodeRow)> = candidates
        .into_iter()
        .map(|node| (i64::from(node_capacity(&node)) - node.devices, node))
        .filter(|(free, _)| *free > 0)
        .collect();
    ranked.sort_by(|(fa, a), (fb, b)| fb.cmp(fa).then_with(|| a.name.cmp(&b.name)));
    let waiting_from = rand::thread_rng().gen_range(0..ranked.len().max(1));
    for wait in [false, true] {
        let start = if wait { waiting_from } else { 0 };
        for (_, candidate) in ranked[start..].iter().chain(&ranked[..start]) {
            let name = candidate.name.as_str();
            let locked = if wait {
                db::nodes::lock(conn, name).await?
            } else {
                db::nodes::try_lock(conn, name).await?
            };
            if let Some(node) = locked
                && let Some(address) = allocate_on(conn, &node).await?
            {
                return Ok((node, address));
            }
        }
    }
    Err(ServiceError::RegionFull)
}

/// The lowest free address of a node the caller has locked, if it is active and has room.
async fn allocate_on(
    conn: &mut PgConnection,
    node: &NodeRow,
) -> Result<Option<Ipv4Addr>, ServiceError> {
    // The locked row is the latest version: its live count includes every grant committed
    // before ours, and no other grant on this node runs until we commit.
    if node.status != NodeState::Active || node.devices >= i64::from(node_capacity(node)) {
        return Ok(None);
    }
    let (first, last) = node.subnet.client_range();
    let free = db::addresses::take_lowest(conn, node.name.as_str(), first, last).await?;
    Ok(free.filter(|address| node.subnet.contains_client(*address)))
}

impl Service {
    /// Grants the user a new device in `region`. Returns the device and its config, once.
    /// `name` is the user's label for it (default `device-N`).
    pub async fn grant_device(
        &self,
        telegram_id: i64,
        region: &RegionCode,
        name: Option<&str>,
    ) -> Result<GrantedDevice, ServiceError> {
        let result = retry(|| self.try_grant(telegram_id, region, name)).await;
        let outcome = match &result {
            Ok(_) => "ok",
            Err(ServiceError::RegionFull) => "region_full",
            Err(ServiceError::DeviceLimitReached { .. }) => "device_limit",
            Err(ServiceError::Unavailable(_) | ServiceError::Internal(_)) => "error",
            Err(_) => "refused",
        };
        self.metrics
            .grants
            .get_or_create(&label("outcome", outcome))
            .inc();
        result
    }

    async fn try_grant(
        &self,
        telegram_id: i64,
        region: &RegionCode,
        name: Option<&str>,
    ) -> Result<GrantedDevice, ServiceError> {
        let mut conn = self.pool.acquire().await?;
        let mut tx = conn.begin().await?;
        let user = db::users::lock_by_telegram_id(&mut tx, telegram_id)
            .await?
            .ok_or(ServiceError::NotRegistered)?;
        check_access(&user)?;
        let active = u32::try_from(user.active_devices.max(0)).unwrap_or(u32::MAX);
        let limit = u32::try_from(user.device_limit.max(0)).unwrap_or(0);
        if active >= limit {
            return Err(ServiceError::DeviceLimitReached { limit });
        }
        let name = clean_device_name(name, active)?;
        // Everything that does not need the node is done before its lock is taken: from the
        // lock to the commit, only the statements that the revision order needs run.
        let keys = KeyPair::generate();
        let psk = self.settings.preshared_keys.then(PresharedKey::generate);
        let (mut node, address) = place(&mut tx, region).await?;
        let row = db::devices::insert(
            &mut tx,
            user.id,
            &node.name,
            &name,
            &keys.public,
            psk.as_ref(),
            address,
        )
        .await?;
        let peer = PeerSpec::for_client(keys.public, psk.clone(), address);
        let revision = outbox::peer_upsert(&mut tx, &mut node, peer).await?;
        let config = render::client_config(&node, &keys.private, psk.as_ref(), address)?;
        tx.commit().await?;
        let device = convert::device(&row);
        let device_id = device.id;
        outbox::wake_relay(&mut conn).await;
        tracing::info!(telegram_id, device_id, node = %node.name, %address, revision, "device granted");
        Ok(GrantedDevice { device, config })
    }

    /// The user's active devices, oldest first.
    pub async fn list_devices(&self, telegram_id: i64) -> Result<Vec<DeviceView>, ServiceError> {
        let mut conn = self.pool.acquire().await?;
        let user = db::users::by_telegram_id(&mut conn, telegram_id)
            .await?
            .ok_or(ServiceError::NotRegistered)?;
        let rows = db::devices::active_for_user(&mut conn, user.id).await?;
        Ok(rows.iter().map(convert::device).collect())
    }

    /// One of the user's active devices; `DeviceNotFound` for anyone else's.
    pub async fn get_device(
        &self,
        telegram_id: i64,
        device_id: i64,
    ) -> Result<DeviceView, ServiceError> {
        self.list_devices(telegram_id)
            .await?
            .into_iter()
            .find(|d| d.id == device_id)
            .ok_or(ServiceError::DeviceNotFound)
    }

    /// Revokes one of the user's own devices. Another user's device id gives `DeviceNotFound`
    /// and changes nothing.
    pub async fn revoke_device(
        &self,
        telegram_id: i64,
        device_id: i64,
    ) -> Result<DeviceView, ServiceError> {
        retry(|| async {
            let mut conn = self.pool.acquire().await?;
            let mut tx = conn.begin().await?;
            let user = db::users::lock_by_telegram_id(&mut tx, telegram_id)
                .await?
                .ok_or(ServiceError::NotRegistered)?;
            let device = db::devices::lock_active_of_user(&mut tx, user.id, device_id)
                .await?
                .ok_or(ServiceError::DeviceNotFound)?;
            revoke_locked(
                &mut tx,
                device.id,
                &device.node,
                device.public_key,
                RevokeReason::User,
            )
            .await?;
            let view = self.device_in(&mut tx, device.id).await?;
            tx.commit().await?;
            outbox::wake_relay(&mut conn).await;
            tracing::info!(telegram_id, device_id, "device revoked by its user");
            Ok(view)
        })
        .await
    }

    /// Gives one of the user's devices a new keypair (and preshared key) at the same address: the
    /// old peer is removed from the node, the new one added. Returns the new config, once.
    pub async fn reissue_device(
        &self,
        telegram_id: i64,
        device_id: i64,
    ) -> Result<GrantedDevice, ServiceError> {
        retry(|| async {
            let mut conn = self.pool.acquire().await?;
            let mut tx = conn.begin().await?;
            let user = db::users::lock_by_telegram_id(&mut tx, telegram_id)
                .await?
                .ok_or(ServiceError::NotRegistered)?;
            check_access(&user)?;
            let device = db::devices::lock_active_of_user(&mut tx, user.id, device_id)
                .await?
                .ok_or(ServiceError::DeviceNotFound)?;
            let mut node = db::nodes::lock(&mut tx, device.node.as_str())
                .await?
                .ok_or_else(|| ServiceError::Internal("device on a missing node".into()))?;
            let address = device.address;

            let keys = KeyPair::generate();
            let psk = self.settings.preshared_keys.then(PresharedKey::generate);
            db::devices::replace_key(&mut tx, device.id, &keys.public, psk.as_ref()).await?;
            outbox::peer_remove(&mut tx, &mut node, device.public_key).await?;
            let peer = PeerSpec::for_client(keys.public, psk.clone(), address);
            outbox::peer_upsert(&mut tx, &mut node, peer).await?;
            let config = render::client_config(&node, &keys.private, psk.as_ref(), address)?;
            let view = self.device_in(&mut tx, device.id).await?;
            tx.commit().await?;
            outbox::wake_relay(&mut conn).await;
            tracing::info!(telegram_id, device_id, "device re-issued");
            Ok(GrantedDevice {
                device: view,
                config,
            })
        })
        .await
    }

    async fn device_in(
        &self,
        conn: &mut PgConnection,
        id: i64,
    ) -> Result<DeviceView, ServiceError> {
        let row = db::devices::get(conn, id).await?.ok_or_else(|| {
            ServiceError::Internal("device vanished inside its transaction".into())
        })?;
        Ok(convert::device(&row))
    }
}

/// Revokes a device whose user the caller has locked: marks it revoked and writes the
/// `PeerRemove` with the node's next revision.
pub(crate) async fn revoke_locked(
    conn: &mut PgConnection,
    device_id: i64,
    node: &NodeName,
    public_key: PublicKey,
    reason: RevokeReason,
) -> Result<(), ServiceError> {
    let mut node_row = db::nodes::lock(conn, node.as_str())
        .await?
        .ok_or_else(|| ServiceError::Internal("device on a missing node".into()))?;
    db::devices::revoke(conn, device_id, reason).await?;
    outbox::peer_remove(conn, &mut node_row, public_key).await?;
    Ok(())
}

/// Revokes every active device of a locked user (ban, expiry); returns how many.
pub(crate) async fn revoke_all_locked(
    conn: &mut PgConnection,
    user_id: i64,
    reason: RevokeReason,
) -> Result<u32, ServiceError> {
    // Ordered by node, so concurrent multi-node revocations lock nodes in the same order.
    let devices = db::devices::active_keys_of_user(conn, user_id).await?;
    for device in &devices {
        revoke_locked(conn, device.id, &device.node, device.public_key, reason).await?;
    }
    Ok(u32::try_from(devices.len()).unwrap_or(u32::MAX))
}
