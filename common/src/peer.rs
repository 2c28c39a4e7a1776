//! The desired state of one peer on a node: what the backend wants the node's interface to hold.

use std::net::Ipv4Addr;

use ipnet::{IpNet, Ipv4Net};
use serde::{Deserialize, Serialize};

use crate::keys::{PresharedKey, PublicKey};

/// Most allowed IPs a client peer may carry. A client device needs one or two (v4, v6); the bound
/// keeps a malformed message from asking the agent for millions of routes.
pub const MAX_ALLOWED_IPS: usize = 16;

/// Why a peer spec is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeerSpecError {
    #[error("a peer needs at least one allowed IP")]
    NoAllowedIps,
    #[error("a peer may have at most {MAX_ALLOWED_IPS} allowed IPs, got {0}")]
    TooManyAllowedIps(usize),
    #[error("allowed IP {0} has host bits set; use its network form")]
    HostBitsSet(IpNet),
}

/// One peer as the node's WireGuard interface should hold it.
///
/// Identified by its public key: applying the same spec twice is a no-op, and applying a spec with
/// the same key and other fields updates the peer in place (its session survives).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerSpec {
    pub public_key: PublicKey,
    pub allowed_ips: Vec<IpNet>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preshared_key: Option<PresharedKey>,
    /// Seconds between keepalives from the node's side; `None` leaves them off (clients send them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persistent_keepalive: Option<u16>,
}

impl PeerSpec {
    /// The peer a client device is on its node: routed to exactly its own address, with its
    /// preshared key if it has one, keepalives left to the client. The one place this is decided:
    /// the backend builds both the streamed change and the republished snapshot with it.
    pub fn for_client(
        public_key: PublicKey,
        preshared_key: Option<PresharedKey>,
        address: Ipv4Addr,
    ) -> Self {
        Self {
            public_key,
            allowed_ips: vec![IpNet::V4(Ipv4Net::from(address))],
            preshared_key,
            persistent_keepalive: None,
        }
    }

    /// Checks what the type system cannot: a non-empty, bounded list of network-form prefixes.
    pub fn validate(&self) -> Result<(), PeerSpecError> {
        if self.allowed_ips.is_empty() {
            return Err(PeerSpecError::NoAllowedIps);
        }
        if self.allowed_ips.len() > MAX_ALLOWED_IPS {
            return Err(PeerSpecError::TooManyAllowedIps(self.allowed_ips.len()));
        }
        if let Some(net) = self.allowed_ips.iter().find(|n| n.trunc() != **n) {
            return Err(PeerSpecError::HostBitsSet(*net));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::KeyPair;

    fn spec(ips: &[&str]) -> PeerSpec {
        PeerSpec {
            public_key: KeyPair::generate().public,
            allowed_ips: ips.iter().map(|s| s.parse().unwrap()).collect(),
            preshared_key: Some(PresharedKey::generate()),
            persistent_keepalive: None,
        }
    }

    #[test]
    fn validates_allowed_ips() {
        assert!(spec(&["198.18.0.2/32", "fd00::2/128"]).validate().is_ok());
        assert_eq!(spec(&[]).validate(), Err(PeerSpecError::NoAllowedIps));
        assert!(matches!(
            spec(&["198.18.0.2/24"]).validate(),
            Err(PeerSpecError::HostBitsSet(_))
        ));
        let many: Vec<String> = (0..17).map(|i| format!("198.18.0.{i}/32")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        assert_eq!(
            spec(&many).validate(),
            Err(PeerSpecError::TooManyAllowedIps(17))
        );
    }

    #[test]
    fn json_round_trip_and_strictness() {
        let s = spec(&["198.18.0.2/32"]);
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<PeerSpec>(&json).unwrap(), s);
        let extra = json.replacen('{', "{\"surprise\":1,", 1);
        assert!(serde_json::from_str::<PeerSpec>(&extra).is_err());
    }
}
