//! The real `pvpn-agent` binary on kernel WireGuard (`PVPN_WG_BACKEND=kernel`, netlink) inside a
//! Debian guest under QEMU, with Redis on the host side of the guest's bridge: the scenarios the
//! other agent tests prove on wireguard-go, a client tunnel through the kernel interface, and the
//! kernel-only sizes (updates split across netlink messages, dumps that arrive in many).
//!
//! Each test boots one guest; scenarios share it one after another, each on interfaces and Redis
//! state of its own.

mod guest;
mod support;

use std::collections::BTreeMap;

use guest::scenarios::{self, counts, reconcile_report, requested_reconcile};
use guest::{GuestNode, assert_same_peers, replace_snapshot};
use pvpn_common::client_config::ClientConfig;
use pvpn_common::redis_keys::{DEAD_LETTER_ID_FIELD, DEAD_LETTER_REASON_FIELD};
use pvpn_common::wire::{EVENT_FIELD, ReconcileTrigger};
use pvpn_common::{PeerSpec, PresharedKey, PrivateKey};
use pvpn_testkit::netns::WgInterface;
use redis::Commands;
use support::{Relay, keys, peer};

const NODE_TUNNEL_ADDR: &str = "198.19.255.254";

#[test]
fn the_agent_keeps_a_kernel_interface_in_sync() {
    let node = GuestNode::boot().unwrap();
    let server_key = PrivateKey::generate();
    let cidr = format!("{NODE_TUNNEL_ADDR}/16");
    node.create_interface("wg1", &server_key, 51820, &cidr);
    let mut relay = node.relay();

    let agent = scenarios::startup_events_and_gap(&node, &mut relay, "wg1");

    eprintln!("scenario: a malformed entry is dead-lettered, the next one applies");
    let bad_id = relay.xadd_raw(&[(EVENT_FIELD, b"not json at all")]);
    relay.upsert(&peer(30));
    node.wait_for_peers("wg1", &relay.peers);
    node.wait_until("every entry to be acknowledged", || {
        (node.pending() == 0).then_some(())
    });
    let dead: redis::streams::StreamRangeReply = node
        .conn()
        .xrange_all(keys().node_dead_letter(&support::node()))
        .unwrap();
    assert_eq!(dead.ids.len(), 1, "{dead:?}");
    let id: String = dead.ids[0].get(DEAD_LETTER_ID_FIELD).unwrap();
    let reason: String = dead.ids[0].get(DEAD_LETTER_REASON_FIELD).unwrap();
    assert_eq!(id, bad_id);
    assert!(reason.contains("malformed"), "{reason}");

    eprintln!("scenario: a client tunnel; an agent restart keeps its session");
    let agent = client_session_survives_restart(&node, &mut relay, agent, &server_key);

    eprintln!("scenario: the interface deleted under the agent is not recreated by it");
    node.sh("ip link del wg1");
    relay.upsert(&peer(40));
    node.wait_until("/healthz to report the missing interface", || {
        match agent.get("/healthz") {
            Ok((503, body)) if body.contains("interface") => Some(()),
            _ => None,
        }
    });
    node.wait_until("the entry to be delivered and left pending", || {
        (node.pending() == 1).then_some(())
    });
    assert!(
        !node.interface_exists("wg1"),
        "the agent must never create the interface"
    );
    eprintln!("scenario: the interface recreated empty is reconciled back");
    node.create_interface("wg1", &server_key, 51820, &cidr);
    node.wait_for_peers("wg1", &relay.peers);
    node.wait_until("the entry to be acknowledged", || {
        (node.pending() == 0).then_some(())
    });
    reconcile_report(&node, "the interface-recovered reconcile", |r| {
        r.trigger == ReconcileTrigger::InterfaceRecovered
    });
    agent.stop();

    eprintln!("scenario: an agent started without its interface never creates it");
    let agent = node.start_agent("wg9");
    node.wait_until("the agent to give up", || {
        (!agent.is_running()).then_some(())
    });
    let journal = agent.journal();
    assert!(journal.contains("does not exist"), "{journal}");
    assert!(!node.interface_exists("wg9"), "the agent created wg9");
}

/// A client brings up the config rendered for it (wireguard-go in the bridge's namespace), pings
/// the node through the kernel interface, and keeps its session (no new handshake, same
/// endpoint) across an agent restart and a reconcile. Returns the restarted agent.
fn client_session_survives_restart<'a>(
    node: &'a GuestNode,
    relay: &mut Relay,
    agent: guest::GuestAgent<'a>,
    server_key: &PrivateKey,
) -> guest::GuestAgent<'a> {
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
    let before = node.peers("wg1")[&spec.public_key].clone();
    assert!(before.latest_handshake > 0, "no handshake: {before:?}");
    assert!(before.endpoint.is_some(), "{before:?}");

    agent.stop();
    let agent = node.start_agent("wg1");
    agent.wait_ready();
    let report = requested_reconcile(node, relay, "after-restart");
    assert_eq!(counts(&report), (0, 0, 0));
    let after = node.peers("wg1")[&spec.public_key].clone();
    assert_eq!(
        after.latest_handshake, before.latest_handshake,
        "session kept"
    );
    assert_eq!(after.endpoint, before.endpoint, "endpoint kept");
    assert!(after.rx_bytes >= before.rx_bytes, "counters not reset");
    ns.ping(NODE_TUNNEL_ADDR.parse().unwrap()).unwrap();
    drop(client);
    agent
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
