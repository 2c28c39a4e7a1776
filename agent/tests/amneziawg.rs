//! The real `pvpn-agent` binary on kernel AmneziaWG (`PVPN_WG_BACKEND=amneziawg`, the module built
//! from `vendor/amneziawg` by `scripts/build-awg.sh`) inside one Debian guest under QEMU: the
//! agent configures the interface's obfuscation from the node's InterfaceSpec in Redis and its
//! peers from the snapshot; a client brought up with `awg` from a rendered config (special junk
//! packets `I1`/`I2` included, seen on the wire) pings through it, a plain WireGuard client with
//! the same keys gets no handshake, nothing on the wire looks like WireGuard, a profile change
//! from the backend reaches the interface (`I*` changed and cleared), parameters changed behind
//! the agent's back (`Jc`; `I1`/`I2`) are set back, and an AmneziaWG spec on a plain WireGuard
//! interface is refused with nothing applied. The kernel scenarios shared with WireGuard
//! (`guest::scenarios`: start-up reconcile, ordered events, revision gap, dead letters, a restart
//! keeping the session, the interface deleted and recreated, an agent started without its
//! interface) run on the same guest.

mod guest;
mod support;

use std::collections::BTreeMap;

use guest::{COMMAND, GuestNode, scenarios};
use pvpn_common::client_config::ClientConfig;
use pvpn_common::obfuscation::{AwgProfile, InterfaceSpec, Protocol};
use pvpn_common::wire::ReconcileReport;
use pvpn_common::{PeerSpec, PresharedKey, PrivateKey};
use redis::Commands;
use support::keys;

const NODE_TUNNEL_ADDR: &str = "198.19.255.254";
const CLIENT_ADDR: &str = "198.19.254.2";
/// The guest's side of the client namespace's veth, where the client sends its UDP.
const NODE_UNDERLAY: &str = "198.18.99.1";
const CLIENT_UNDERLAY: &str = "198.18.99.2";
const PORT: u16 = 51820;

fn publish_interface(node: &GuestNode, spec: &InterfaceSpec) {
    let _: () = node
        .conn()
        .set(
            keys().node_interface(&support::node()),
            serde_json::to_string(spec).unwrap(),
        )
        .unwrap();
}

/// The `[Interface]` values `awg showconf` reports for `iface`.
fn interface_values(node: &GuestNode, iface: &str) -> BTreeMap<String, String> {
    node.sh(&format!("awg showconf {iface}"))
        .lines()
        .take_while(|l| !l.starts_with("[Peer]"))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

/// Whether the interface holds exactly the profile: every value of it, and no `I*` the profile
/// leaves unset (`awg` shows a cleared one as empty).
fn holds_profile(values: &BTreeMap<String, String>, profile: &AwgProfile) -> bool {
    let lines = profile.client_config_lines();
    lines
        .iter()
        .all(|(name, want)| values.get(*name) == Some(want))
        && ["I1", "I2", "I3", "I4", "I5"].iter().all(|name| {
            lines.iter().any(|(set, _)| set == name)
                || values.get(*name).is_none_or(|v| v.is_empty())
        })
}

/// Fails unless the interface holds exactly the profile.
fn assert_holds_profile(node: &GuestNode, iface: &str, profile: &AwgProfile) {
    let values = interface_values(node, iface);
    assert!(
        holds_profile(&values, profile),
        "{values:?}\nwanted {profile:?}"
    );
}

/// A generated profile with special junk packets: `I1` starts with fixed bytes the capture can
/// recognise, `I2` is random.
fn profile_with_special_junk() -> AwgProfile {
    let mut profile = AwgProfile::generate();
    profile.i1 = Some("<b 0xc0ffee01> <r 20><t>".parse().unwrap());
    profile.i2 = Some("<rc 10> <rd 6>".parse().unwrap());
    profile
}

fn reconcile_answer(node: &GuestNode, request_id: &str) -> ReconcileReport {
    node.wait_until(&format!("the reconcile answering {request_id}"), || {
        node.heartbeat()
            .and_then(|h| h.last_reconcile)
            .filter(|r| r.request_id.as_deref() == Some(request_id))
    })
}

/// A capture of the UDP packets of the node's port on the client's veth, in the guest.
struct Capture<'a> {
    node: &'a GuestNode,
    unit: String,
}

impl<'a> Capture<'a> {
    fn start(node: &'a GuestNode) -> Self {
        let unit = format!("capture-{}", pvpn_testkit::unique_suffix());
        node.sh(&format!(
            "systemd-run --quiet --unit={unit} python3 /root/capture.py veth-s {PORT}"
        ));
        let capture = Self { node, unit };
        node.wait_until("the capture to start", || {
            capture.lines_raw().contains("capturing").then_some(())
        });
        capture
    }

    fn lines_raw(&self) -> String {
        self.node.sh(&format!(
            "journalctl --no-pager -o cat -u {} || true",
            self.unit
        ))
    }

    /// Stops the capture; every packet as (payload length, first four bytes in hex).
    fn stop(self) -> Vec<(usize, String)> {
        self.node.sh(&format!("systemctl stop {}", self.unit));
        self.lines_raw()
            .lines()
            .filter_map(|l| {
                let (len, head) = l.split_once(' ')?;
                Some((len.parse().ok()?, head.to_string()))
            })
            .collect()
    }
}

/// WireGuard's messages: type 1–4 as a little-endian u32 at the start of the payload.
fn is_wireguard(head: &str) -> bool {
    ["01000000", "02000000", "03000000", "04000000"].contains(&head)
}

#[test]
fn the_agent_drives_an_amneziawg_interface() {
    let node = GuestNode::boot_amneziawg().unwrap();
    node.guest
        .write_file(
            "/root/capture.py",
            include_bytes!("guest/capture.py"),
            0o755,
        )
        .unwrap();
    let server_key = PrivateKey::generate();
    let cidr = format!("{NODE_TUNNEL_ADDR}/16");
    node.create_interface("awg1", &server_key, PORT, &cidr);
    let profile = profile_with_special_junk();
    publish_interface(&node, &InterfaceSpec::amneziawg(profile.clone()));

    let client_key = PrivateKey::generate();
    let psk = PresharedKey::generate();
    let client = PeerSpec {
        public_key: client_key.public_key(),
        allowed_ips: vec![format!("{CLIENT_ADDR}/32").parse().unwrap()],
        preshared_key: Some(psk.clone()),
        persistent_keepalive: None,
    };
    let mut relay = node.relay();
    // The kernel scenarios of WireGuard, on AmneziaWG; the start-up reconcile also sets the
    // fresh interface's obfuscation parameters.
    let agent = scenarios::startup_events_and_gap(&node, &mut relay, "awg1");
    assert_holds_profile(&node, "awg1", &profile);
    scenarios::dead_letter(&node, &mut relay, "awg1");
    relay.upsert(&client);
    node.wait_for_peers("awg1", &relay.peers);

    eprintln!(
        "scenario: an awg client from a rendered config with I1/I2 pings through the interface"
    );
    node.sh(&format!(
        "ip netns add cl && ip link add veth-s type veth peer name veth-c netns cl && \
         ip addr add {NODE_UNDERLAY}/30 dev veth-s && ip link set veth-s up && \
         ip -n cl addr add {CLIENT_UNDERLAY}/30 dev veth-c && ip -n cl link set veth-c up && \
         ip -n cl link set lo up"
    ));
    let endpoint = format!("{NODE_UNDERLAY}:{PORT}").parse().unwrap();
    let routed = [format!("{NODE_TUNNEL_ADDR}/32").parse().unwrap()];
    let render = |obfuscation: Option<&AwgProfile>| {
        ClientConfig {
            private_key: &client_key,
            addresses: &client.allowed_ips,
            dns: &[],
            server_public_key: &server_key.public_key(),
            preshared_key: Some(&psk),
            endpoint: &endpoint,
            allowed_ips: &routed,
            obfuscation,
        }
        .render()
    };
    let obfuscated = render(Some(&profile));
    assert!(
        obfuscated.expose().contains("Jc = ")
            && obfuscated
                .expose()
                .contains("\nI1 = <b 0xc0ffee01> <r 20><t>\n"),
        "the profile is in the client config"
    );
    node.guest
        .write_file("/root/awgc.conf", obfuscated.expose().as_bytes(), 0o600)
        .unwrap();
    let capture = Capture::start(&node);
    node.sh(&format!(
        "awg-quick strip /root/awgc.conf >/root/awgc.stripped && \
         ip -n cl link add awgc type amneziawg && \
         ip netns exec cl awg setconf awgc /root/awgc.stripped && \
         ip -n cl addr add {CLIENT_ADDR}/32 dev awgc && ip -n cl link set awgc up && \
         ip -n cl route add {NODE_TUNNEL_ADDR}/32 dev awgc"
    ));
    let client_values = node.sh("ip netns exec cl awg showconf awgc");
    assert!(
        client_values.contains("I1 = <b 0xc0ffee01> <r 20><t>"),
        "the client took I1 from the file: {client_values}"
    );
    node.wait_until("a ping through the AmneziaWG tunnel", || {
        node.guest
            .run(
                &format!("ip netns exec cl ping -c 1 -W 3 {NODE_TUNNEL_ADDR}"),
                COMMAND,
            )
            .ok()
            .filter(|o| o.success())
    });
    let packets = capture.stop();
    assert!(packets.len() >= 4, "handshake and ping seen: {packets:?}");
    let looks_like_wireguard: Vec<_> = packets.iter().filter(|(_, h)| is_wireguard(h)).collect();
    assert!(
        looks_like_wireguard.is_empty(),
        "WireGuard message types on the wire: {looks_like_wireguard:?}"
    );
    // The handshake messages travel padded by S1 and S2 (WireGuard's are always 148 and 92).
    let initiation = 148 + usize::from(profile.s1);
    let response = 92 + usize::from(profile.s2);
    assert!(
        packets.iter().any(|(len, _)| *len == initiation)
            && packets.iter().any(|(len, _)| *len == response),
        "no padded handshake ({initiation}, {response}) in {packets:?}"
    );
    // The client's I1 before its initiation: its fixed bytes first, 4 + 20 + 4 bytes long.
    assert!(
        packets.iter().any(|(len, h)| *len == 28 && h == "c0ffee01"),
        "no I1 packet (28 bytes, c0ffee01…) in {packets:?}"
    );
    let session = node.peers("awg1")[&client.public_key].clone();
    assert!(session.latest_handshake > 0, "{session:?}");

    eprintln!("scenario: a plain WireGuard client with the same keys gets no handshake");
    node.sh("ip -n cl link del awgc");
    let plain = render(None);
    node.guest
        .write_file("/root/wgc.conf", plain.expose().as_bytes(), 0o600)
        .unwrap();
    let capture = Capture::start(&node);
    node.sh(&format!(
        "wg-quick strip /root/wgc.conf >/root/wgc.stripped && \
         ip -n cl link add wgc type wireguard && \
         ip netns exec cl wg setconf wgc /root/wgc.stripped && \
         ip -n cl addr add {CLIENT_ADDR}/32 dev wgc && ip -n cl link set wgc up && \
         ip -n cl route add {NODE_TUNNEL_ADDR}/32 dev wgc"
    ));
    let ping = node
        .guest
        .run(
            &format!("ip netns exec cl ping -c 3 -W 3 {NODE_TUNNEL_ADDR}"),
            COMMAND,
        )
        .unwrap();
    assert!(
        !ping.success(),
        "plain WireGuard got through: {}",
        ping.stdout
    );
    let handshakes = node.sh("ip netns exec cl wg show wgc latest-handshakes");
    assert!(
        handshakes.trim().ends_with("\t0"),
        "the plain client completed a handshake: {handshakes}"
    );
    let packets = capture.stop();
    assert!(
        packets
            .iter()
            .any(|(len, h)| *len == 148 && h == "01000000"),
        "the capture sees plain WireGuard initiations (so it would see them above): {packets:?}"
    );
    node.sh("ip -n cl link del wgc");

    eprintln!("scenario: a profile changed in the backend (InterfaceSet) reaches the interface");
    // I1 changes and I2 goes: the agent clears it on the interface.
    let mut profile = AwgProfile::generate();
    profile.i1 = Some("<rd 12>".parse().unwrap());
    relay.set_interface(&InterfaceSpec::amneziawg(profile.clone()));
    node.wait_until("the new profile on the interface", || {
        holds_profile(&interface_values(&node, "awg1"), &profile).then_some(())
    });
    node.wait_until("the event to be acknowledged", || {
        (node.pending() == 0).then_some(())
    });

    eprintln!("scenario: a parameter changed behind the agent's back is set back");
    let other_jc = profile.jc % 12 + 13;
    node.sh(&format!("awg set awg1 jc {other_jc}"));
    assert_eq!(
        interface_values(&node, "awg1").get("Jc"),
        Some(&other_jc.to_string())
    );
    relay.request_reconcile("drift");
    let report = reconcile_answer(&node, "drift");
    assert!(report.interface_corrected, "{report:?}");
    assert_eq!((report.added, report.removed, report.updated), (0, 0, 0));
    assert_holds_profile(&node, "awg1", &profile);
    let (_, metrics) = agent.get("/metrics").unwrap();
    // Before: the start-up reconcile setting the fresh interface's parameters, and the
    // InterfaceSet's reconcile setting the new profile.
    assert!(
        metrics.contains("pvpn_agent_interface_corrections_total 3"),
        "{metrics}"
    );
    relay.request_reconcile("steady");
    assert!(!reconcile_answer(&node, "steady").interface_corrected);

    eprintln!("scenario: I1 changed and I2 set behind the agent's back are set back");
    node.sh("awg set awg1 i1 '<r 7>' i2 '<t>'");
    let drifted = interface_values(&node, "awg1");
    assert_eq!(
        (drifted.get("I1"), drifted.get("I2")),
        (Some(&"<r 7>".to_string()), Some(&"<t>".to_string()))
    );
    relay.request_reconcile("junk-drift");
    let report = reconcile_answer(&node, "junk-drift");
    assert!(report.interface_corrected, "{report:?}");
    assert_holds_profile(&node, "awg1", &profile);
    let after = node.peers("awg1")[&client.public_key].clone();
    assert_eq!(
        after.latest_handshake, session.latest_handshake,
        "session kept"
    );

    let agent =
        scenarios::restart_keeps_session(&node, &mut relay, agent, "awg1", &client.public_key);
    assert_holds_profile(&node, "awg1", &profile);

    let unit = scenarios::InterfaceUnit {
        key: &server_key,
        port: PORT,
        address: &cidr,
    };
    let recovered =
        scenarios::interface_deleted_and_recreated(&node, &mut relay, &agent, "awg1", &unit);
    // The recreated interface has the module's defaults: the agent set the profile again.
    assert!(recovered.interface_corrected, "{recovered:?}");
    assert_holds_profile(&node, "awg1", &profile);
    agent.stop();
    scenarios::missing_interface_at_start(&node, "awg9");

    eprintln!("scenario: an AmneziaWG spec on a plain WireGuard interface is refused");
    let mut plain_node = node;
    plain_node.protocol = Protocol::WireGuard;
    plain_node.create_interface("wg2", &PrivateKey::generate(), 51821, "198.19.255.253/16");
    let agent = plain_node.start_agent("wg2");
    plain_node.wait_until("/healthz to report the protocol mismatch", || {
        match agent.get("/healthz") {
            Ok((503, body)) if body.contains("amneziawg") => Some(()),
            _ => None,
        }
    });
    let (_, metrics) = agent.get("/metrics").unwrap();
    assert!(
        metrics.contains("pvpn_agent_interface_protocol_mismatch 1"),
        "{metrics}"
    );
    assert!(plain_node.peers("wg2").is_empty(), "nothing half-applied");
    agent.stop();
}
