//! A user's devices in the fleet test: where the tunnel of each config the bot sent runs.
//!
//! A plain WireGuard config runs in a client namespace on the host (`wireguard-go`, as in the
//! other whole-path tests). An AmneziaWG config needs the `amneziawg` kernel module, which only
//! the guests have, so it runs in a namespace inside the backend host's guest — the module and
//! `awg` from `scripts/build-awg.sh` — on a macvlan of the guest's `eth0` with an address of its
//! own on the guests' bridge: its packets reach the node over the bridge like any client's, never
//! through the backend host's own stack or firewall.

use std::net::Ipv4Addr;

use anyhow::{Context, Result, bail, ensure};
use pvpn_common::PublicKey;
use pvpn_testkit::vm::DebianGuest;

use super::COMMAND;
use super::outside::{
    ClientNet, WHOAMI_CLIENT, WHOAMI_PORT, dns_servers, parse_whoami, resolv_conf,
};
use crate::tunnel::{ClientSide, ClientTunnel, answers_ping};

const WHOAMI_SCRIPT: &str = "/root/whoami-client.py";

/// A device holding one received config, with its tunnel up.
pub enum Device {
    /// `wireguard-go` in a namespace on the host.
    /// (The tunnel is declared first: it stops before its namespace goes.)
    Host {
        tunnel: ClientTunnel,
        net: ClientNet,
    },
    /// `awg` in a namespace inside the guest the fleet hands to every call.
    InGuest(AwgDevice),
}

impl Device {
    /// The device's public key, as the node lists its peer.
    pub fn public_key(&self) -> PublicKey {
        match self {
            Device::Host { tunnel, .. } => tunnel.wg.public_key(),
            Device::InGuest(device) => device.public_key,
        }
    }

    /// Whether `addr` answers one ping through the device's network now.
    pub fn answers_ping(&self, guest: &DebianGuest, addr: Ipv4Addr) -> Result<bool> {
        match self {
            Device::Host { net, .. } => answers_ping(&net.ns, addr),
            Device::InGuest(device) => Ok(guest
                .run(
                    &format!("ip netns exec {} ping -n -c 1 -W 1 {addr}", device.ns),
                    COMMAND,
                )?
                .success()),
        }
    }

    /// Twenty 1200-byte pings to `addr`, every one answered: traffic that shows in the peer's
    /// counters on the node.
    pub fn send_traffic(&self, guest: &DebianGuest, addr: Ipv4Addr) -> Result<()> {
        let args = format!("-n -q -c 20 -i 0.2 -s 1200 {addr}");
        let ok = match self {
            Device::Host { net, .. } => net
                .ns
                .exec("ping", &args.split(' ').collect::<Vec<_>>())?
                .status
                .success(),
            Device::InGuest(device) => guest
                .run(&format!("ip netns exec {} ping {args}", device.ns), COMMAND)?
                .success(),
        };
        ensure!(ok, "pings to {addr} through the tunnel were lost");
        Ok(())
    }

    /// Looks `name` up with the resolver the config names and asks the whoami service there
    /// who is calling: (the address found, the client address the service saw).
    pub fn whoami(&self, guest: &DebianGuest, name: &str) -> Result<(Ipv4Addr, Ipv4Addr)> {
        match self {
            Device::Host { net, .. } => net.whoami(name),
            Device::InGuest(device) => {
                let out = guest.run(
                    &format!(
                        "ip netns exec {} /usr/bin/python3 {WHOAMI_SCRIPT} {name} {WHOAMI_PORT}",
                        device.ns
                    ),
                    COMMAND,
                )?;
                if !out.success() {
                    bail!("looking up {name} in {}: {}", device.ns, out.stderr.trim());
                }
                parse_whoami(&out.stdout)
            }
        }
    }
}

/// An AmneziaWG config brought up in a namespace of a guest, as `awg-quick up` would on a
/// Linux laptop (`awg-quick strip` + `awg setconf`, the address, the default route and the
/// resolver from the file).
pub struct AwgDevice {
    pub ns: String,
    pub public_key: PublicKey,
}

impl AwgDevice {
    /// Brings `config` up in a new namespace `ns` of `guest`, on a macvlan with the bridge
    /// address `addr`; loads the module and installs the tools into the guest first if needed.
    pub fn up(guest: &DebianGuest, ns: &str, addr: Ipv4Addr, config: &str) -> Result<Self> {
        let ClientSide {
            private_key,
            address: tunnel_addr,
            ..
        } = ClientSide::of(config)?;
        let dns = dns_servers(config)?;
        install_amneziawg(guest)?;
        guest.write_file(&format!("/root/{ns}.conf"), config.as_bytes(), 0o600)?;
        guest.run_ok(&format!("mkdir -p /etc/netns/{ns}"), COMMAND)?;
        guest.write_file(
            &format!("/etc/netns/{ns}/resolv.conf"),
            resolv_conf(&dns).as_bytes(),
            0o644,
        )?;
        guest
            .run_ok(
                &format!(
                    "set -e
                     ip netns add {ns}
                     ip link add {ns}-lan link eth0 type macvlan mode bridge
                     ip link set {ns}-lan netns {ns}
                     ip -n {ns} link set lo up
                     ip -n {ns} addr add {addr}/24 dev {ns}-lan
                     ip -n {ns} link set {ns}-lan up
                     awg-quick strip /root/{ns}.conf > /root/{ns}.stripped
                     ip -n {ns} link add awg-c type amneziawg
                     ip netns exec {ns} awg setconf awg-c /root/{ns}.stripped
                     ip -n {ns} addr add {tunnel_addr} dev awg-c
                     ip -n {ns} link set awg-c up
                     ip -n {ns} route add default dev awg-c"
                ),
                COMMAND,
            )
            .with_context(|| format!("bringing the AmneziaWG config up in {ns}"))?;
        Ok(Self {
            ns: ns.to_string(),
            public_key: private_key.public_key(),
        })
    }
}

/// The `amneziawg` module loaded in `guest` and `awg`/`awg-quick` installed, and the whoami
/// client script.
fn install_amneziawg(guest: &DebianGuest) -> Result<()> {
    pvpn_testkit::vm::install_amneziawg(guest)?;
    guest.write_file(WHOAMI_SCRIPT, WHOAMI_CLIENT.as_bytes(), 0o644)
}
