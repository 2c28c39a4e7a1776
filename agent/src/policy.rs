//! What the agent agrees to put on its interface, whoever asks: every allowed IP a client address
//! (a /32) of the node's own subnet, no address held by two peers, at most `max_peers` peers.
//!
//! Redis is a shared broker; a bug or a stolen backend credential could ask for `0.0.0.0/0`, for
//! another device's address or for a million peers. These rules are the node's own, from its
//! configuration (`PVPN_SUBNET`, `PVPN_MAX_PEERS`), not from what it reads. An event that breaks
//! one is dead-lettered; a snapshot that breaks one is refused whole (nothing of it is applied).
//! IPv6 allowed IPs are refused: nodes have no IPv6 client subnet.

use std::collections::HashMap;

use ipnet::IpNet;
use pvpn_common::addressing::ClientSubnet;
use pvpn_common::{PeerSpec, PublicKey};

use crate::snapshot::Snapshot;

/// How many problems a refused snapshot's message quotes; the rest are counted.
const QUOTED_PROBLEMS: usize = 3;

/// Why a peer may not be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("peer {0}: {1}")]
    Malformed(PublicKey, pvpn_common::peer::PeerSpecError),
    #[error(
        "peer {key}: allowed IP {net} is not a client address (/32) of the node's subnet {subnet}"
    )]
    OutsideSubnet {
        key: PublicKey,
        net: IpNet,
        subnet: ipnet::Ipv4Net,
    },
    #[error("peer {key}: address {net} is held by peer {holder}")]
    AddressTaken {
        key: PublicKey,
        net: IpNet,
        holder: PublicKey,
    },
    #[error("peer {0} would exceed the node's limit of {1} peers")]
    TooManyPeers(PublicKey, usize),
}

/// A snapshot that breaks the rules: how many problems, and the first few.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{count} problem(s) among {peers} peers, e.g. {quoted}")]
pub struct SnapshotRefusal {
    pub count: usize,
    pub peers: usize,
    pub quoted: String,
}

/// The node's rules.
#[derive(Debug, Clone)]
pub struct PeerPolicy {
    pub subnet: ClientSubnet,
    pub max_peers: usize,
}

impl PeerPolicy {
    /// The rules one peer must meet on its own.
    pub fn check_peer(&self, spec: &PeerSpec) -> Result<(), Refusal> {
        spec.validate()
            .map_err(|e| Refusal::Malformed(spec.public_key, e))?;
        for net in &spec.allowed_ips {
            let client = match net {
                IpNet::V4(v4) => v4.prefix_len() == 32 && self.subnet.contains_client(v4.addr()),
                IpNet::V6(_) => false,
            };
            if !client {
                return Err(Refusal::OutsideSubnet {
                    key: spec.public_key,
                    net: *net,
                    subnet: self.subnet.net(),
                });
            }
        }
        Ok(())
    }

    /// Checks a whole snapshot: every peer, unique addresses, the peer count.
    pub fn check_snapshot(&self, snapshot: &Snapshot) -> Result<(), SnapshotRefusal> {
        let mut problems: Vec<String> = Vec::new();
        let mut count = 0;
        let mut note = |problem: String| {
            count += 1;
            if problems.len() < QUOTED_PROBLEMS {
                problems.push(problem);
            }
        };
        let total = snapshot.peers.len() + snapshot.untouchable.len();
        if total > self.max_peers {
            note(format!(
                "{total} peers exceed the node's limit of {}",
                self.max_peers
            ));
        }
        let mut holders: HashMap<IpNet, PublicKey> = HashMap::new();
        for spec in snapshot.peers.values() {
            if let Err(e) = self.check_peer(spec) {
                note(e.to_string());
                continue;
            }
            for net in &spec.allowed_ips {
                if let Some(holder) = holders.insert(*net, spec.public_key) {
                    note(format!(
                        "address {net} is held by peers {holder} and {}",
                        spec.public_key
                    ));
                }
            }
        }
        if count == 0 {
            return Ok(());
        }
        Err(SnapshotRefusal {
            count,
            peers: total,
            quoted: problems.join("; "),
        })
    }
}

/// Which peer holds which address on the interface, kept by the agent between reconciles so an
/// event can be checked without reading the whole interface.
///
/// It is the agent's one long-lived structure that grows with the node (two entries per peer,
/// about 14 MB at 60,000 peers), so it is kept small: a peer's usual single address is held
/// inline rather than in a vector of its own. A reconcile drops the book first and builds the
/// new one last, once the interface read is gone (see `NodeAgent::reconcile`).
#[derive(Debug, Default, Clone)]
pub struct AddressBook {
    by_address: HashMap<IpNet, PublicKey>,
    by_key: HashMap<PublicKey, Held>,
}

/// The addresses one peer holds: nearly always exactly one (a client's /32).
#[derive(Debug, Clone)]
enum Held {
    One(IpNet),
    Many(Box<[IpNet]>),
}

impl Held {
    fn of(nets: &[IpNet]) -> Self {
        match nets {
            [one] => Held::One(*one),
            many => Held::Many(many.into()),
        }
    }

    fn as_slice(&self) -> &[IpNet] {
        match self {
            Held::One(net) => std::slice::from_ref(net),
            Held::Many(nets) => nets,
        }
    }
}

impl AddressBook {
    /// The book of a set of peers, its tables sized for them at once (no table is grown, so
    /// no old table is held beside its larger copy).
    pub fn of<'a>(peers: impl IntoIterator<Item = &'a PeerSpec>) -> Self {
        let peers = peers.into_iter();
        let size = peers.size_hint().0;
        let mut book = Self {
            by_address: HashMap::with_capacity(size),
            by_key: HashMap::with_capacity(size),
        };
        for spec in peers {
            book.insert(spec);
        }
        book
    }

    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    /// Whether `spec` may be upserted now: its addresses free or its own, and room for it.
    pub fn check_upsert(&self, spec: &PeerSpec, max_peers: usize) -> Result<(), Refusal> {
        for net in &spec.allowed_ips {
            if let Some(holder) = self.by_address.get(net)
                && *holder != spec.public_key
            {
                return Err(Refusal::AddressTaken {
                    key: spec.public_key,
                    net: *net,
                    holder: *holder,
                });
            }
        }
        if !self.by_key.contains_key(&spec.public_key) && self.by_key.len() >= max_peers {
            return Err(Refusal::TooManyPeers(spec.public_key, max_peers));
        }
        Ok(())
    }

    /// Records an applied upsert (its old addresses are released).
    pub fn insert(&mut self, spec: &PeerSpec) {
        self.remove(&spec.public_key);
        for net in &spec.allowed_ips {
            self.by_address.insert(*net, spec.public_key);
        }
        self.by_key
            .insert(spec.public_key, Held::of(&spec.allowed_ips));
    }

    /// Records an applied removal.
    pub fn remove(&mut self, key: &PublicKey) {
        if let Some(held) = self.by_key.remove(key) {
            for net in held.as_slice() {
                if self.by_address.get(net) == Some(key) {
                    self.by_address.remove(net);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pvpn_common::keys::KeyPair;

    fn policy(max_peers: usize) -> PeerPolicy {
        PeerPolicy {
            subnet: ClientSubnet::new("198.18.0.0/24".parse().unwrap()).unwrap(),
            max_peers,
        }
    }

    fn spec(ips: &[&str]) -> PeerSpec {
        PeerSpec {
            public_key: KeyPair::generate().public,
            allowed_ips: ips.iter().map(|s| s.parse().unwrap()).collect(),
            preshared_key: None,
            persistent_keepalive: None,
        }
    }

    #[test]
    fn only_client_host_routes_of_the_subnet_pass() {
        let p = policy(10);
        assert_eq!(p.check_peer(&spec(&["198.18.0.2/32"])), Ok(()));
        assert_eq!(
            p.check_peer(&spec(&["198.18.0.254/32", "198.18.0.3/32"])),
            Ok(())
        );
        for bad in [
            "0.0.0.0/0",
            "198.18.0.0/24",
            "198.18.0.4/31",
            "198.18.0.1/32",
            "198.18.0.255/32",
            "198.18.1.2/32",
            "fd00::2/128",
            "::/0",
        ] {
            assert!(
                matches!(
                    p.check_peer(&spec(&[bad])),
                    Err(Refusal::OutsideSubnet { .. })
                ),
                "{bad}"
            );
        }
        assert!(matches!(
            p.check_peer(&spec(&[])),
            Err(Refusal::Malformed(..))
        ));
    }

    #[test]
    fn the_book_refuses_taken_addresses_and_a_full_interface() {
        let a = spec(&["198.18.0.2/32"]);
        let mut book = AddressBook::of([&a]);
        let thief = spec(&["198.18.0.2/32"]);
        assert!(matches!(
            book.check_upsert(&thief, 10),
            Err(Refusal::AddressTaken { .. })
        ));
        // The holder itself may re-apply or move; after it moves, the address is free.
        let mut moved = a.clone();
        moved.allowed_ips = vec!["198.18.0.3/32".parse().unwrap()];
        assert_eq!(book.check_upsert(&moved, 10), Ok(()));
        book.insert(&moved);
        assert_eq!(book.check_upsert(&thief, 10), Ok(()));
        assert!(matches!(
            book.check_upsert(&thief, 1),
            Err(Refusal::TooManyPeers(..))
        ));
        assert_eq!(
            book.check_upsert(&moved, 1),
            Ok(()),
            "an update needs no room"
        );
        book.remove(&moved.public_key);
        assert!(book.is_empty());
    }

    #[test]
    fn a_bad_snapshot_is_summarised_not_listed() {
        let p = policy(100_000);
        let mut snapshot = Snapshot::default();
        for _ in 0..1000 {
            let s = spec(&["0.0.0.0/0"]);
            snapshot.peers.insert(s.public_key, s);
        }
        let dup = "198.18.0.9/32";
        for s in [spec(&[dup]), spec(&[dup])] {
            snapshot.peers.insert(s.public_key, s);
        }
        let refusal = p.check_snapshot(&snapshot).unwrap_err();
        assert_eq!(refusal.count, 1001);
        assert_eq!(refusal.quoted.matches("; ").count(), QUOTED_PROBLEMS - 1);
        assert!(policy(1).check_snapshot(&Snapshot::default()).is_ok());
        let mut two = Snapshot::default();
        for s in [spec(&["198.18.0.2/32"]), spec(&["198.18.0.3/32"])] {
            two.peers.insert(s.public_key, s);
        }
        assert!(policy(2).check_snapshot(&two).is_ok());
        assert_eq!(policy(1).check_snapshot(&two).unwrap_err().count, 1);
    }
}
