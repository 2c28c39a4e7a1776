//! Client addresses inside a node's subnet.
//!
//! A node with subnet `198.18.0.0/24` keeps `.0` (network), `.1` (the node's own tunnel address)
//! and `.255` (broadcast) for itself and hands out `.2` to `.254`, lowest free first. The database
//! holds the uniqueness guarantee; these helpers only say which addresses exist and which is next.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

/// Smallest accepted node subnet: a /30 leaves exactly one client address.
pub const MAX_PREFIX_LEN: u8 = 30;
/// Largest accepted node subnet. wireguard-go holds at most 65,536 peers, a /16 has 65,533 clients.
pub const MIN_PREFIX_LEN: u8 = 16;

/// Why a subnet cannot serve as a node's client subnet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubnetError {
    #[error("subnet {0} has host bits set; use {1}")]
    HostBitsSet(Ipv4Net, Ipv4Net),
    #[error("subnet {0} must have a prefix length between /{MIN_PREFIX_LEN} and /{MAX_PREFIX_LEN}")]
    BadPrefixLen(Ipv4Net),
}

/// A validated node subnet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientSubnet(Ipv4Net);

impl ClientSubnet {
    pub fn new(net: Ipv4Net) -> Result<Self, SubnetError> {
        if net.trunc() != net {
            return Err(SubnetError::HostBitsSet(net, net.trunc()));
        }
        if !(MIN_PREFIX_LEN..=MAX_PREFIX_LEN).contains(&net.prefix_len()) {
            return Err(SubnetError::BadPrefixLen(net));
        }
        Ok(Self(net))
    }

    pub fn net(&self) -> Ipv4Net {
        self.0
    }

    /// The node's own address on its WireGuard interface: the first host.
    pub fn server_address(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.0.network()) + 1)
    }

    /// The first and the last address a client may get: the one place that says which
    /// addresses of the subnet are the clients' (network, node and broadcast are not).
    pub fn client_range(&self) -> (Ipv4Addr, Ipv4Addr) {
        (
            Ipv4Addr::from(u32::from(self.0.network()) + 2),
            Ipv4Addr::from(u32::from(self.0.broadcast()) - 1),
        )
    }

    /// Every address a client may get, in order.
    pub fn client_addresses(&self) -> impl Iterator<Item = Ipv4Addr> + use<> {
        let (first, last) = self.client_range();
        (u32::from(first)..=u32::from(last)).map(Ipv4Addr::from)
    }

    /// How many clients the subnet can hold.
    pub fn client_capacity(&self) -> u32 {
        let (first, last) = self.client_range();
        u32::from(last) - u32::from(first) + 1
    }

    pub fn contains_client(&self, addr: Ipv4Addr) -> bool {
        let (first, last) = self.client_range();
        (first..=last).contains(&addr)
    }

    /// The lowest client address not in `used`.
    pub fn lowest_free(&self, used: &BTreeSet<Ipv4Addr>) -> Option<Ipv4Addr> {
        self.client_addresses().find(|a| !used.contains(a))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subnet(s: &str) -> ClientSubnet {
        ClientSubnet::new(s.parse().unwrap()).unwrap()
    }

    #[test]
    fn reserves_network_server_and_broadcast() {
        let s = subnet("198.18.0.0/24");
        assert_eq!(s.server_address(), Ipv4Addr::new(198, 18, 0, 1));
        assert_eq!(s.client_capacity(), 253);
        let all: Vec<_> = s.client_addresses().collect();
        assert_eq!(all.len(), 253);
        assert_eq!(all[0], Ipv4Addr::new(198, 18, 0, 2));
        assert_eq!(all[252], Ipv4Addr::new(198, 18, 0, 254));
        assert!(!s.contains_client(Ipv4Addr::new(198, 18, 0, 1)));
        assert!(!s.contains_client(Ipv4Addr::new(198, 18, 0, 255)));
        assert!(s.contains_client(Ipv4Addr::new(198, 18, 0, 77)));
        assert_eq!(subnet("198.18.0.0/30").client_capacity(), 1);
    }

    #[test]
    fn allocates_lowest_free() {
        let s = subnet("198.18.4.0/29");
        let mut used = BTreeSet::new();
        for expected in 2..=6 {
            let a = s.lowest_free(&used).unwrap();
            assert_eq!(a, Ipv4Addr::new(198, 18, 4, expected));
            used.insert(a);
        }
        assert_eq!(s.lowest_free(&used), None);
        used.remove(&Ipv4Addr::new(198, 18, 4, 3));
        assert_eq!(s.lowest_free(&used), Some(Ipv4Addr::new(198, 18, 4, 3)));
    }

    #[test]
    fn rejects_bad_subnets() {
        assert!(matches!(
            ClientSubnet::new("198.18.0.5/24".parse().unwrap()),
            Err(SubnetError::HostBitsSet(..))
        ));
        assert!(matches!(
            ClientSubnet::new("198.18.0.0/31".parse().unwrap()),
            Err(SubnetError::BadPrefixLen(_))
        ));
        assert!(matches!(
            ClientSubnet::new("10.0.0.0/8".parse().unwrap()),
            Err(SubnetError::BadPrefixLen(_))
        ));
    }
}
