//! The difference between a snapshot and the interface, as the changes that remove it.
//!
//! A reconcile never replaces the peer list: it removes peers the snapshot does not have, updates
//! peers whose allowed IPs, preshared key or keepalive differ, and adds missing peers. Peers that
//! already match are not touched, so their sessions (handshake, endpoint, counters) survive.

use pvpn_common::{PeerSpec, PublicKey};
use std::collections::BTreeSet;

use crate::snapshot::Snapshot;
use crate::wireguard::{InterfacePeer, PeerChange};

/// What a reconcile will do, with the drift counts it reports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Removals first, then updates, then additions.
    pub changes: Vec<PeerChange>,
    pub added: u32,
    pub removed: u32,
    pub updated: u32,
}

/// Whether the interface peer already matches `desired` (allowed IPs compared as sets).
///
/// Both sides are destructured without `..`: a field added to [`PeerSpec`] is a compile error
/// here until this comparison says how to compare it, instead of a difference reconcile ignores.
fn matches_spec(actual: &PeerSpec, desired: &PeerSpec) -> bool {
    let PeerSpec {
        public_key,
        allowed_ips,
        preshared_key,
        persistent_keepalive,
    } = actual;
    let PeerSpec {
        public_key: want_public_key,
        allowed_ips: want_allowed_ips,
        preshared_key: want_preshared_key,
        persistent_keepalive: want_persistent_keepalive,
    } = desired;
    let as_set = |ips: &[ipnet::IpNet]| ips.iter().copied().collect::<BTreeSet<_>>();
    public_key == want_public_key
        && as_set(allowed_ips) == as_set(want_allowed_ips)
        && preshared_key == want_preshared_key
        && persistent_keepalive == want_persistent_keepalive
}

/// Plans the changes that make `actual` equal to `snapshot`.
pub fn plan(snapshot: &Snapshot, actual: &[InterfacePeer]) -> Plan {
    let mut removes = Vec::new();
    let mut updates = Vec::new();
    let mut present = BTreeSet::<PublicKey>::new();
    for peer in actual {
        let key = peer.spec.public_key;
        present.insert(key);
        match snapshot.peers.get(&key) {
            Some(desired) if !matches_spec(&peer.spec, desired) => {
                updates.push(PeerChange::Upsert(desired.clone()));
            }
            Some(_) => {}
            None if snapshot.untouchable.contains(&key) => {}
            None => removes.push(PeerChange::Remove(key)),
        }
    }
    let adds: Vec<PeerChange> = snapshot
        .peers
        .iter()
        .filter(|(key, _)| !present.contains(key))
        .map(|(_, spec)| PeerChange::Upsert(spec.clone()))
        .collect();
    let count = |v: &Vec<PeerChange>| u32::try_from(v.len()).unwrap_or(u32::MAX);
    let (added, removed, updated) = (count(&adds), count(&removes), count(&updates));
    let mut changes = removes;
    changes.extend(updates);
    changes.extend(adds);
    Plan {
        changes,
        added,
        removed,
        updated,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wireguard::memory::MemoryWireGuard;
    use crate::wireguard::{MAX_CHANGES_PER_UPDATE, WireGuard, apply_in_chunks};
    use pvpn_common::keys::KeyPair;
    use pvpn_common::{PeerSpec, PresharedKey};

    fn spec(ip: &str) -> PeerSpec {
        PeerSpec {
            public_key: KeyPair::generate().public,
            allowed_ips: vec![ip.parse().unwrap()],
            preshared_key: Some(PresharedKey::generate()),
            persistent_keepalive: None,
        }
    }

    fn on_interface(spec: &PeerSpec) -> InterfacePeer {
        InterfacePeer {
            spec: spec.clone(),
            endpoint: Some("198.18.0.2:51820".parse().unwrap()),
            last_handshake: Some(std::time::SystemTime::UNIX_EPOCH),
            rx_bytes: 7,
            tx_bytes: 9,
        }
    }

    fn snapshot(peers: &[&PeerSpec]) -> Snapshot {
        Snapshot {
            revision: 5,
            peers: peers.iter().map(|p| (p.public_key, (*p).clone())).collect(),
            ..Snapshot::default()
        }
    }

    #[test]
    fn finds_every_kind_of_drift() {
        let same = spec("198.18.1.1/32");
        let stray = spec("198.18.1.2/32");
        let missing = spec("198.18.1.3/32");
        let ips_changed = spec("198.18.1.4/32");
        let psk_changed = spec("198.18.1.5/32");
        let psk_removed = spec("198.18.1.6/32");
        let keepalive_changed = spec("198.18.1.7/32");

        let mut want_ips = ips_changed.clone();
        want_ips.allowed_ips.push("fd00::4/128".parse().unwrap());
        let mut want_psk = psk_changed.clone();
        want_psk.preshared_key = Some(PresharedKey::generate());
        let mut want_no_psk = psk_removed.clone();
        want_no_psk.preshared_key = None;
        let mut want_keepalive = keepalive_changed.clone();
        want_keepalive.persistent_keepalive = Some(25);

        let wg = MemoryWireGuard::new();
        for p in [
            &same,
            &stray,
            &ips_changed,
            &psk_changed,
            &psk_removed,
            &keepalive_changed,
        ] {
            wg.insert(on_interface(p));
        }
        let snap = snapshot(&[
            &same,
            &missing,
            &want_ips,
            &want_psk,
            &want_no_psk,
            &want_keepalive,
        ]);
        let plan = plan(&snap, &wg.read_peers().unwrap());
        assert_eq!((plan.added, plan.removed, plan.updated), (1, 1, 4));
        assert_eq!(plan.changes[0], PeerChange::Remove(stray.public_key));
        assert_eq!(
            plan.changes.last(),
            Some(&PeerChange::Upsert(missing.clone()))
        );
        assert!(
            !plan
                .changes
                .iter()
                .any(|c| *c.public_key() == same.public_key),
            "a matching peer is never touched"
        );

        apply_in_chunks(&wg, &plan.changes).unwrap();
        let after = wg.read_peers().unwrap();
        assert_eq!(super::plan(&snap, &after), Plan::default(), "converged");
        let kept = wg.peer(&same.public_key).unwrap();
        assert_eq!(kept, on_interface(&same), "session and counters untouched");
        assert_eq!(wg.peer(&psk_changed.public_key).unwrap().rx_bytes, 7);
    }

    #[test]
    fn allowed_ip_order_is_not_drift() {
        let mut a = spec("198.18.2.1/32");
        a.allowed_ips.push("fd00::1/128".parse().unwrap());
        let mut reversed = a.clone();
        reversed.allowed_ips.reverse();
        let plan = plan(&snapshot(&[&a]), &[on_interface(&reversed)]);
        assert_eq!(plan, Plan::default());
    }

    #[test]
    fn untouchable_peers_are_neither_removed_nor_added() {
        let fenced = spec("198.18.3.1/32");
        let mut snap = snapshot(&[]);
        snap.untouchable.insert(fenced.public_key);
        assert_eq!(plan(&snap, &[on_interface(&fenced)]), Plan::default());
    }

    #[test]
    fn large_plans_are_applied_in_bounded_chunks() {
        let peers: Vec<PeerSpec> = (0..1000u32)
            .map(|i| spec(&format!("198.18.{}.{}/32", 10 + i / 250, 1 + i % 250)))
            .collect();
        let snap = snapshot(&peers.iter().collect::<Vec<_>>());
        let wg = MemoryWireGuard::new();
        let plan = plan(&snap, &[]);
        assert_eq!(plan.added, 1000);
        assert!(
            wg.apply(&plan.changes).is_err(),
            "the fake refuses oversized batches like netlink"
        );
        apply_in_chunks(&wg, &plan.changes).unwrap();
        assert_eq!(wg.len(), 1000);
        assert!(
            wg.batch_sizes()
                .iter()
                .all(|n| *n <= MAX_CHANGES_PER_UPDATE)
        );
        assert_eq!(wg.batch_sizes().iter().sum::<usize>(), 1000);
    }
}
