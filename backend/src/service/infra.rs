//! Regions and nodes, as operators declare them (`pvpnctl region add`, `pvpnctl node add`).
//! Declaring is idempotent: the same declaration twice changes nothing and says so.

use std::net::IpAddr;

use pvpn_common::addressing::ClientSubnet;
use pvpn_common::client_config::Endpoint;
use pvpn_common::obfuscation::{AwgProfile, InterfaceSpec, Protocol};
use pvpn_common::{NodeName, PublicKey, RegionCode};
use serde::Serialize;
use serde_json::json;

use super::error::retry;
use super::types::*;
use super::{Service, ServiceError};
use crate::db;
use crate::db::nodes::NodeSpec;

/// What a declaration did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Change {
    Created,
    Updated,
    Unchanged,
}

impl Change {
    pub fn as_str(self) -> &'static str {
        match self {
            Change::Created => "created",
            Change::Updated => "updated",
            Change::Unchanged => "unchanged",
        }
    }
}

/// A node as an operator declares it, already validated by its types.
#[derive(Debug, Clone)]
pub struct NodeDeclaration {
    pub name: NodeName,
    pub region: RegionCode,
    pub endpoint: Endpoint,
    pub public_key: PublicKey,
    pub listen_port: u16,
    pub subnet: ClientSubnet,
    pub dns: Vec<IpAddr>,
    pub capacity: u32,
    /// Fixed when the node is created; an AmneziaWG node gets a generated profile then.
    pub protocol: Protocol,
}

impl Service {
    /// Creates a region, or renames it if it exists with another display name.
    pub async fn declare_region(
        &self,
        actor: &Actor,
        code: &RegionCode,
        display_name: &str,
    ) -> Result<Change, ServiceError> {
        let display_name = display_name.trim();
        if display_name.is_empty() || display_name.chars().count() > 64 {
            return Err(ServiceError::InvalidInput(
                "a region's display name has 1 to 64 characters".into(),
            ));
        }
        retry(|| async {
            let mut tx = self.pool.begin().await?;
            let change = match db::regions::get(&mut tx, code.as_str()).await? {
                None => {
                    db::regions::insert(&mut tx, code.as_str(), display_name).await?;
                    Change::Created
                }
                Some(r) if r.display_name == display_name => Change::Unchanged,
                Some(_) => {
                    db::regions::set_display_name(&mut tx, code.as_str(), display_name).await?;
                    Change::Updated
                }
            };
            if change != Change::Unchanged {
                db::audit::insert(
                    &mut tx,
                    &actor.to_string(),
                    "region.declare",
                    Some(code.as_str()),
                    &json!({ "display_name": display_name, "change": change }),
                )
                .await?;
            }
            tx.commit().await?;
            Ok(change)
        })
        .await
    }

    /// Sets a region active (takes devices), draining (keeps them, takes none) or disabled
    /// (hidden; existing devices keep working until revoked).
    pub async fn set_region_status(
        &self,
        actor: &Actor,
        code: &RegionCode,
        status: RegionStatus,
    ) -> Result<(), ServiceError> {
        let mut tx = self.pool.begin().await?;
        if !db::regions::set_status(&mut tx, code.as_str(), status).await? {
            return Err(ServiceError::RegionNotFound);
        }
        db::audit::insert(
            &mut tx,
            &actor.to_string(),
            "region.set_status",
            Some(code.as_str()),
            &json!({ "status": status }),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Creates a node, or updates endpoint, key, port, DNS and capacity of an existing one. A
    /// different region or subnet is a `Conflict`: devices hold addresses in the old subnet.
    pub async fn declare_node(
        &self,
        actor: &Actor,
        node: &NodeDeclaration,
    ) -> Result<Change, ServiceError> {
        if node.capacity == 0 || node.capacity > i32::MAX as u32 {
            return Err(ServiceError::InvalidInput(
                "capacity must be at least 1".into(),
            ));
        }
        let dns: Vec<String> = node.dns.iter().map(ToString::to_string).collect();
        let endpoint = node.endpoint.to_string();
        let public_key = node.public_key.to_base64();
        let subnet = node.subnet.net().to_string();
        let spec = NodeSpec {
            name: node.name.as_str(),
            region: node.region.as_str(),
            endpoint: &endpoint,
            public_key: &public_key,
            listen_port: i32::from(node.listen_port),
            subnet: &subnet,
            dns: &dns,
            capacity: node.capacity as i32,
        };
        retry(|| async {
            let mut tx = self.pool.begin().await?;
            if db::regions::get(&mut tx, node.region.as_str()).await?.is_none() {
                return Err(ServiceError::RegionNotFound);
            }
            if let Some(other) = db::nodes::holder_of_key(&mut tx, &public_key, spec.name).await? {
                return Err(ServiceError::Conflict(format!("node {other} already has this public key")));
            }
            let change = match db::nodes::lock(&mut tx, node.name.as_str()).await? {
                None => {
                    db::nodes::insert(&mut tx, &spec).await?;
                    if node.protocol == Protocol::AmneziaWg {
                        let interface = InterfaceSpec::amneziawg(AwgProfile::generate());
                        db::nodes::set_interface(&mut tx, spec.name, &interface).await?;
                    }
                    Change::Created
                }
                Some(old) => {
                    if old.region != node.region {
                        return Err(ServiceError::Conflict(format!(
                            "node {} is in region {}, not {}; a node cannot move",
                            spec.name, old.region, spec.region
                        )));
                    }
                    if old.interface.protocol != node.protocol {
                        return Err(ServiceError::Conflict(format!(
                            "node {} speaks {}, not {}; the protocol cannot change (add a new node)",
                            spec.name, old.interface.protocol, node.protocol
                        )));
                    }
                    if old.subnet != node.subnet {
                        return Err(ServiceError::Conflict(format!(
                            "node {} has subnet {}, not {}; the subnet cannot change",
                            spec.name,
                            old.subnet.net(),
                            spec.subnet
                        )));
                    }
                    let same = old.endpoint == node.endpoint
                        && old.public_key == node.public_key
                        && old.listen_port == spec.listen_port
                        && old.dns == node.dns
                        && old.capacity == spec.capacity;
                    if same {
                        Change::Unchanged
                    } else {
                        db::nodes::update(&mut tx, &spec).await?;
                        Change::Updated
                    }
                }
            };
            if change != Change::Unchanged {
                db::audit::insert(&mut tx, &actor.to_string(), "node.declare", Some(spec.name), &json!({ "region": spec.region, "endpoint": endpoint, "capacity": spec.capacity, "change": change })).await?;
            }
            tx.commit().await?;
            Ok(change)
        })
        .await
    }

    /// Enables or disables a node. A disabled node takes no new devices; its devices stay.
    pub async fn set_node_enabled(
        &self,
        actor: &Actor,
        name: &NodeName,
        enabled: bool,
    ) -> Result<(), ServiceError> {
        let status = if enabled {
            NodeState::Active
        } else {
            NodeState::Disabled
        };
        let mut tx = self.pool.begin().await?;
        if !db::nodes::set_status(&mut tx, name.as_str(), status).await? {
            return Err(ServiceError::NodeNotFound);
        }
        db::audit::insert(
            &mut tx,
            &actor.to_string(),
            "node.set_status",
            Some(name.as_str()),
            &json!({ "status": status }),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }
}
