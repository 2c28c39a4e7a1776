//! Every Redis key and consumer group name PVPN uses, in one place.
//!
//! All keys of a region share the hash tag `{<region>}`, so a Redis Cluster keeps a region on one
//! slot (Lua scripts and MULTI over a region's keys stay legal). Everything one node's agent
//! writes lives under `pvpn:{<region>}:node:<node>:` and is written by that node's ACL user only
//! (the Ansible `redis` role renders one per node), so the key itself says which node wrote it.

use crate::names::{NodeName, RegionCode};

/// The keys of one region.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegionKeys {
    prefix: String,
}

impl RegionKeys {
    pub fn new(region: &RegionCode) -> Self {
        Self {
            prefix: format!("pvpn:{{{region}}}"),
        }
    }

    /// Stream of [`crate::wire::StreamEvent`]s for every node of the region.
    pub fn events(&self) -> String {
        format!("{}:events", self.prefix)
    }

    /// Marker the backend sets when it has published the region's snapshots; its absence means
    /// Redis lost its data and everything must be republished.
    pub fn epoch(&self) -> String {
        format!("{}:epoch", self.prefix)
    }

    /// Hash: public key (base64) → [`crate::peer::PeerSpec`] JSON. The node's whole desired state.
    pub fn node_peers(&self, node: &NodeName) -> String {
        format!("{}:node:{node}:peers", self.prefix)
    }

    /// Integer: the revision the node's snapshot hash is at.
    pub fn node_revision(&self, node: &NodeName) -> String {
        format!("{}:node:{node}:revision", self.prefix)
    }

    /// Integer: the epoch of the node's snapshot, a number the relay raises (milliseconds of its
    /// clock, at least the previous epoch + 1) every time it rewrites the snapshot from
    /// PostgreSQL. Written with the snapshot and read with it in one `MULTI`; an agent accepts a
    /// snapshot older than the one it applied only under a higher epoch.
    pub fn node_epoch(&self, node: &NodeName) -> String {
        format!("{}:node:{node}:epoch", self.prefix)
    }

    /// JSON [`crate::obfuscation::InterfaceSpec`]: the node's protocol and AmneziaWG profile,
    /// written by the relay with the node's snapshot, read by the agent with it.
    pub fn node_interface(&self, node: &NodeName) -> String {
        format!("{}:node:{node}:interface", self.prefix)
    }

    /// The node's latest [`crate::wire::Heartbeat`], expiring when the agent stops sending.
    pub fn node_heartbeat(&self, node: &NodeName) -> String {
        format!("{}:node:{node}:heartbeat", self.prefix)
    }

    /// Stream of [`crate::wire::Feedback`] from this node's agent to the backend. Only the node's
    /// own ACL user may write it, so the backend knows the sender from the key.
    pub fn node_feedback(&self, node: &NodeName) -> String {
        format!("{}:node:{node}:feedback", self.prefix)
    }

    /// Stream where the node's agent parks entries it refused, with the reason.
    pub fn node_dead_letter(&self, node: &NodeName) -> String {
        format!("{}:node:{node}:dead", self.prefix)
    }

    /// String: the token of the one agent allowed to apply changes to the node's interface,
    /// expiring unless that agent renews it (see the agent's `lease` module).
    pub fn node_lease(&self, node: &NodeName) -> String {
        format!("{}:node:{node}:lease", self.prefix)
    }
}

/// The consumer group through which one node's agent reads its region's event stream. One group
/// per node, so every agent sees every event of its region.
pub fn agent_group(node: &NodeName) -> String {
    format!("agent:{node}")
}

/// The consumer group through which the backend reads every region's feedback stream.
pub const BACKEND_FEEDBACK_GROUP: &str = "backend";

/// Field of an entry in the dead-letter stream: why the entry was rejected.
pub const DEAD_LETTER_REASON_FIELD: &str = "reason";
/// Field of an entry in the dead-letter stream: the original entry's id.
pub const DEAD_LETTER_ID_FIELD: &str = "source_id";
/// Field of an entry in the dead-letter stream: the original payload, as received.
pub const DEAD_LETTER_PAYLOAD_FIELD: &str = "payload";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_share_the_region_hash_tag() {
        let keys = RegionKeys::new(&RegionCode::new("nl").unwrap());
        let node = NodeName::new("nl-1").unwrap();
        for key in [
            keys.events(),
            keys.node_dead_letter(&node),
            keys.node_feedback(&node),
            keys.node_lease(&node),
            keys.epoch(),
            keys.node_peers(&node),
            keys.node_revision(&node),
            keys.node_epoch(&node),
            keys.node_heartbeat(&node),
            keys.node_interface(&node),
        ] {
            assert!(key.starts_with("pvpn:{nl}:"), "{key}");
        }
        assert_eq!(keys.node_peers(&node), "pvpn:{nl}:node:nl-1:peers");
        assert_eq!(keys.node_feedback(&node), "pvpn:{nl}:node:nl-1:feedback");
        assert_eq!(keys.node_dead_letter(&node), "pvpn:{nl}:node:nl-1:dead");
        assert_eq!(keys.node_interface(&node), "pvpn:{nl}:node:nl-1:interface");
        assert_eq!(agent_group(&node), "agent:nl-1");
    }
}
