//! The real `pvpn-agent` binary on kernel WireGuard (`PVPN_WG_BACKEND=kernel`, netlink) inside a
//! Debian guest under QEMU, with Redis on the host side of the guest's bridge: the scenarios the
//! other agent tests prove on wireguard-go, a client tunnel through the kernel interface, and the
//! kernel-only sizes (updates split across netlink messages, dumps that arrive in many).
//!
//! Each test boots one guest; scenarios share it one after another. The scenarios shared with
//! AmneziaWG live in `guest::scenarios`.

mod guest;
mod support;

use std::collections::BTreeMap;

use guest::scenarios::{self, counts, reconcile_report, requested_reconcile};
use guest::{GuestNode, assert_same_peers, replace_snapshot};
use pvpn_common::client_config::ClientConfig;
use pvpn_common::wire::ReconcileTrigger;
use pvpn_common::{PeerSpec, PresharedKey, PrivateKey, PublicKey};
use pvpn_testkit::netns::WgInterface;
use support::{Relay, peer};

const NODE_TUNNEL_ADDR: &str = "198.19.255.254";

#[test]
fn the_agent_keeps_a_kernel_interface_in_sync() {
    let node = GuestNode::boot().unwrap();
    let server_key = PrivateKey::generate();
    let cidr = format!("{NODE_TUNNEL_ADDR}/16");
    node.create_interface("wg1", &server_key, 51820, &cidr);
    let mut relay = node.relay();

    let agent = scenarios::startup_events_and_gap(&node, &mut relay, "wg1");
    scenarios::dead_letter(&node, &mut relay, "wg1");

    eprintln!("scenario: a client tunnel through the kernel interface");
    let (ns, client, client_key) = client_tunnel(&node, &mut relay, &server_key);
    let agent = scenarios::restart_keeps_session(&node, &mut relay, agent, "wg1", &client_key);
    ns.ping(NODE_TUNNEL_ADDR.parse().unwrap()).unwrap();
    drop(client);

    let unit = scenarios::InterfaceUnit {
        key: &server_key,
        port: 51820,
        address: &cidr,
    };
    scenarios::interface_deleted_and_recreated(&node, &mut relay, &agent, "wg1", &unit);
    agent.stop();
    scenarios::missing_interface_at_start(&node, "wg9");
}

/// A client brings up the config rendered for it (wireguard-go in the bridge's namespace) and
/// pings the node through the kernel interface. Returns its namespace, its interface (the tunnel
/// lives as long as it does) and its public key.
fn client_tunnel<'a>(
    node: &'a GuestNode,
    relay: &mut Relay,
    server_key: &PrivateKey,
) -> (&'a pvpn_testkit::netns::Netns, WgInterface, PublicKey) {
    let client_key = PrivateKey::generate();
    let psk = PresharedKey::generate();
    let spec = PeerSpec {
        public_key: client_key.public_key(),
        // Outside what `peer(n)` numbers: one allowed IP belongs to one peer only.
        allowed_ips: vec!["198.19.254.2/32".parse().unwrap()],
        preshared_key: Some(psk.clone()),
        persistent_keepalive: None,
    };
    relay.upsert(&spec);
    node.wait_for_peers("wg1", &relay.peers);

    let endpoint = format!("{}:51820", node.guest.addr()).parse().unwrap();
    // Only the node's tunnel address goes through the tunnel: the client shares its namespace
    // with the bridge the tunnel itself runs over.
    let routed = [format!("{NODE_TUNNEL_ADDR}/32").parse().unwrap()];
    let rendered = ClientConfig {
        private_key: &client_key,
        addresses: &spec.allowed_ips,
        dns: &[],
        server_public_key: &server_key.public_key(),
        preshared_key: Some(&psk),
        endpoint: &endpoint,
        allowed_ips: &routed,
        obfuscation: None,
    }
    .render();
    let ns = node.net.netns();
    let client = bring_up_client(ns, &client_key, rendered.expose());
    ns.ping(NODE_TUNNEL_ADDR.parse().unwrap()).unwrap();
    (ns, client, spec.public_key)
}

/// A `wireguard-go` interface configured from a rendered `wg-quick` file: `wg-quick strip` for
/// the WireGuard part, its `Address` on the interface, a route for each `AllowedIPs` entry.
fn bring_up_client(ns: &pvpn_testkit::netns::Netns, key: &PrivateKey, text: &str) -> WgInterface {
    let parsed = pvpn_common::client_config::ParsedConfig::parse(text).unwrap();
    let name = WgInterface::unique_name("cl").unwrap();
    let address = parsed.interface_value("Address").unwrap().to_string();
    let client = WgInterface::start(ns, &name, key, 51900, &address).unwrap();
    let dir = std::env::temp_dir().join(format!("pvpn-client-{name}"));
    std::fs::create_dir_all(&dir).unwrap();
    let conf = dir.join(format!("{name}.conf"));
    std::fs::write(&conf, text).unwrap();
    let stripped = std::process::Command::new("wg-quick")
        .arg("strip")
        .arg(&conf)
        .output()
        .unwrap();
    assert!(stripped.status.success(), "{stripped:?}");
    std::fs::write(&conf, &stripped.stdout).unwrap();
    client
        .wg(&["setconf", &name, conf.to_str().unwrap()])
        .unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    for net in parsed.peer_value("AllowedIPs").unwrap().split(',') {
        ns.ip(&["route", "add", net.trim(), "dev", &name]).unwrap();
    }
    client
}

/// Peers numbered `range`, each with a fresh key, one /32 and a preshared key.
fn peers(range: std::ops::Range<u32>) -> Vec<PeerSpec> {
    range.map(peer).collect()
}

#[test]
fn tens_of_thousands_of_peers_go_through_netlink() {
    let node = GuestNode::boot_with_plain_redis().unwrap();
    // Progress for whoever reads the log (not asserted: TCG speed varies with the machine's load).
    let booted = std::time::Instant::now();
    node.create_interface("wg0", &PrivateKey::generate(), 51820, "198.19.255.254/16");
    let mut relay = node.relay();

    eprintln!("scenario: one reconcile adds 10,000 peers (many netlink messages)");
    let first = peers(0..10_000);
    replace_snapshot(&mut relay, first.clone());
    let agent = node.start_agent("wg0");
    let startup = reconcile_report(&node, "the start-up reconcile", |r| {
        r.trigger == ReconcileTrigger::Startup
    });
    assert_eq!(counts(&startup), (10_000, 0, 0));
    assert_same_peers(&node.peers("wg0"), &relay.peers).unwrap();

    eprintln!("  ({:.0?} since boot)", booted.elapsed());
    eprintln!("scenario: 20,000 peers read completely, equal to `wg show dump`");
    let second = peers(10_000..20_000);
    replace_snapshot(&mut relay, first.iter().chain(&second).cloned());
    assert_eq!(
        counts(&requested_reconcile(&node, &mut relay, "add-10k")),
        (10_000, 0, 0)
    );
    let dump = node.peers("wg0");
    assert_same_peers(&dump, &relay.peers).unwrap();
    // The agent's own read of the interface: a reconcile finding nothing to change, and the
    // heartbeat's count of the peers it read. A dump read from its first message only would
    // miss thousands and re-add them.
    assert_eq!(
        counts(&requested_reconcile(&node, &mut relay, "read-20k")),
        (0, 0, 0)
    );
    node.wait_until("a heartbeat counting 20,000 peers", || {
        node.heartbeat().filter(|h| h.peer_count == 20_000)
    });

    eprintln!("  ({:.0?} since boot)", booted.elapsed());
    eprintln!("scenario: one reconcile removes 10,000 peers");
    replace_snapshot(&mut relay, second.clone());
    assert_eq!(
        counts(&requested_reconcile(&node, &mut relay, "remove-10k")),
        (0, 10_000, 0)
    );
    assert_same_peers(&node.peers("wg0"), &relay.peers).unwrap();

    eprintln!("  ({:.0?} since boot)", booted.elapsed());
    eprintln!("scenario: one reconcile changes the allowed IPs of 5,000 peers");
    let changed: BTreeMap<_, _> = second
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let mut p = p.clone();
            if i < 5_000 {
                // Each of these 5,000 moves to an address no other peer holds.
                p.allowed_ips = peer(20_000 + i as u32).allowed_ips;
            }
            (p.public_key, p)
        })
        .collect();
    replace_snapshot(&mut relay, changed.into_values());
    assert_eq!(
        counts(&requested_reconcile(&node, &mut relay, "change-5k")),
        (0, 0, 5_000)
    );
    assert_same_peers(&node.peers("wg0"), &relay.peers).unwrap();
    eprintln!("  ({:.0?} since boot)", booted.elapsed());
    agent.stop();
}
