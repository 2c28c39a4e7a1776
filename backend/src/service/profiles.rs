//! A node's AmneziaWG obfuscation profile after the node exists (`pvpnctl node profile`): shown,
//! regenerated or replaced. A change is a desired-state change like a peer's: in one transaction
//! the profile is stored, the node's revision bumped and an `InterfaceSet` outbox row written, so
//! the relay publishes it in order with the node's peer changes and the agent sets it on the
//! interface. Every client config of the node holds the old profile and stops working: the caller
//! is told how many devices need a new config.

use pvpn_common::NodeName;
use pvpn_common::obfuscation::{AwgProfile, InterfaceSpec, Protocol};
use serde::Serialize;
use serde_json::json;
use sqlx::Connection;

use super::error::retry;
use super::types::Actor;
use super::{Service, ServiceError, outbox};
use crate::db;

/// What the new profile is.
#[derive(Debug, Clone)]
pub enum NewProfile {
    /// A fresh random profile ([`AwgProfile::generate`]).
    Regenerate,
    /// This one, validated here (boxed: I1–I5 make a profile large).
    Set(Box<AwgProfile>),
}

/// What a profile change did.
#[derive(Debug, Clone, Serialize)]
pub struct ProfileSet {
    pub node: NodeName,
    pub profile: AwgProfile,
    /// The node revision that carries the change.
    pub revision: u64,
    /// Live devices on the node: each needs a new client config.
    pub devices: i64,
}

impl Service {
    /// The node's protocol and profile.
    pub async fn node_interface(&self, name: &NodeName) -> Result<InterfaceSpec, ServiceError> {
        let mut conn = self.pool.acquire().await?;
        db::nodes::get(&mut conn, name.as_str())
            .await?
            .map(|row| row.interface)
            .ok_or(ServiceError::NodeNotFound)
    }

    /// Gives an AmneziaWG node a new profile; a plain WireGuard node has none to change.
    pub async fn set_node_profile(
        &self,
        actor: &Actor,
        name: &NodeName,
        new: NewProfile,
    ) -> Result<ProfileSet, ServiceError> {
        let profile = match new {
            NewProfile::Regenerate => AwgProfile::generate(),
            NewProfile::Set(profile) => {
                profile
                    .validate()
                    .map_err(|e| ServiceError::InvalidInput(format!("profile: {e}")))?;
                *profile
            }
        };
        retry(|| async {
            let profile = profile.clone();
            let mut conn = self.pool.acquire().await?;
            let mut tx = conn.begin().await?;
            let mut row = db::nodes::lock(&mut tx, name.as_str())
                .await?
                .ok_or(ServiceError::NodeNotFound)?;
            if row.interface.protocol != Protocol::AmneziaWg {
                return Err(ServiceError::InvalidInput(format!(
                    "node {name} speaks plain WireGuard: it has no obfuscation profile"
                )));
            }
            let interface = InterfaceSpec::amneziawg(profile.clone());
            db::nodes::set_interface(&mut tx, name.as_str(), &interface).await?;
            let revision = outbox::interface_set(&mut tx, &mut row, interface).await?;
            db::audit::insert(
                &mut tx,
                &actor.to_string(),
                "node.profile",
                Some(name.as_str()),
                &json!({ "revision": revision, "devices": row.devices }),
            )
            .await?;
            tx.commit().await?;
            outbox::wake_relay(&mut conn).await;
            Ok(ProfileSet {
                node: name.clone(),
                profile,
                revision,
                devices: row.devices,
            })
        })
        .await
    }
}
