//! The import rules on their own: what a known key, an unmapped peer, a full node or a banned
//! user does to the plan.

use std::collections::HashMap;

use pvpn_common::keys::KeyPair;

use super::*;
use crate::service::import::{Location, UnmappedPeers};

fn peer(line: usize, address: &str) -> SourcePeer {
    SourcePeer {
        line,
        public_key: KeyPair::generate().public,
        preshared_key: None,
        allowed_ips: vec![format!("{address}/32").parse().unwrap()],
        persistent_keepalive: None,
    }
}

fn facts() -> Facts {
    Facts {
        node: "nl-1".into(),
        subnet: ClientSubnet::new("198.19.0.0/24".parse().unwrap()).unwrap(),
        room: 100,
        known_devices: HashMap::new(),
        live_addresses: HashMap::new(),
        users: HashMap::new(),
        unassigned_telegram_id: 0,
    }
}

fn map(peer: &SourcePeer, telegram_id: i64) -> MappingEntry {
    MappingEntry {
        at: Location::Line(peer.line),
        public_key: peer.public_key,
        telegram_id,
        device_name: None,
    }
}

fn run(
    peers: &[SourcePeer],
    mapping: &[MappingEntry],
    facts: &Facts,
) -> Result<Plan, Vec<Problem>> {
    plan(
        &Request {
            peers_source: "dump",
            peers,
            mapping_source: "map",
            mapping,
            unmapped: UnmappedPeers::Unassigned,
        },
        facts,
    )
}

fn known(peer: &SourcePeer, owner: i64, node: &str, active: bool) -> KnownDevice {
    KnownDevice {
        id: 9,
        node: node.into(),
        active,
        address: peer.allowed_ips[0].addr().to_string().parse().unwrap(),
        preshared_key: None,
        owner_telegram_id: owner,
    }
}

#[test]
fn an_unassigned_device_is_assigned_by_a_later_mapping_and_a_repeat_is_unchanged() {
    let p = peer(1, "198.19.0.2");
    let mut f = facts();
    f.known_devices
        .insert(p.public_key, known(&p, 0, "nl-1", true));
    f.users.insert(
        5,
        KnownUser {
            banned: false,
            expired: false,
        },
    );
    let plan = run(std::slice::from_ref(&p), &[map(&p, 5)], &f).unwrap();
    assert_eq!((plan.assign.len(), plan.unchanged), (1, 0));
    assert_eq!(plan.assign[0].name, "imported-198.19.0.2");

    f.known_devices
        .insert(p.public_key, known(&p, 5, "nl-1", true));
    let plan = run(std::slice::from_ref(&p), &[map(&p, 5)], &f).unwrap();
    assert!(plan.changes_nothing());
    assert_eq!(plan.unchanged, 1);
}

#[test]
fn a_key_pvpn_knows_otherwise_is_refused() {
    let p = peer(3, "198.19.0.2");
    for (device, says) in [
        (known(&p, 5, "nl-1", false), "revoked"),
        (known(&p, 5, "de-1", true), "on node de-1"),
        (known(&p, 6, "nl-1", true), "of Telegram user 6"),
    ] {
        let mut f = facts();
        f.known_devices.insert(p.public_key, device);
        let problems = run(std::slice::from_ref(&p), &[map(&p, 5)], &f).unwrap_err();
        assert_eq!(problems[0].at, Some(Location::Line(3)));
        assert!(
            problems[0].message.contains(says),
            "{}",
            problems[0].message
        );
    }
}

#[test]
fn room_users_and_stray_mappings_are_checked() {
    let peers = [peer(1, "198.19.0.2"), peer(2, "198.19.0.3")];
    let mut f = facts();
    f.room = 1;
    let problems = run(&peers, &[], &f).unwrap_err();
    assert!(
        problems[0].message.contains("room for 1 more"),
        "{problems:?}"
    );

    let mut f = facts();
    f.users.insert(
        5,
        KnownUser {
            banned: true,
            expired: false,
        },
    );
    let stray = map(&peer(7, "198.19.0.9"), 5);
    let problems = run(&peers, &[map(&peers[0], 5), stray], &f).unwrap_err();
    let messages: Vec<_> = problems.iter().map(ToString::to_string).collect();
    assert!(
        messages
            .iter()
            .any(|m| m.starts_with("map:7: key") && m.contains("not among")),
        "{messages:?}"
    );
    assert!(
        messages.iter().any(|m| m.contains("5 is banned")),
        "{messages:?}"
    );
}

#[test]
fn the_node_address_and_outside_addresses_are_refused() {
    for address in ["198.19.0.1", "198.19.0.255", "198.19.1.2"] {
        let problems = run(&[peer(4, address)], &[], &facts()).unwrap_err();
        assert!(
            problems[0].message.contains("not a client address"),
            "{address}"
        );
    }
}
