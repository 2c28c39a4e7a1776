//! One VPN region on one machine: a "server" network namespace with a `wireguard-go` interface
//! (the node), a "client" namespace joined to it by veth (the user's network), and the addresses
//! that tie them together. Everything is removed when the [`VpnSite`] is dropped.
//!
//! Site `i` uses `198.18.<i>.1/24` (server) and `198.18.<i>.2/24` (client) on the veth, and the
//! client subnet `198.19.<i>.0/24` inside the tunnel, whose first host is the node's own tunnel
//! address. All of it lives inside the namespaces: nothing is reachable from outside the machine.

use std::net::Ipv4Addr;

use anyhow::Result;
use ipnet::Ipv4Net;
use pvpn_common::{NodeName, PrivateKey, RegionCode};
use pvpn_testkit::netns::{Netns, WgInterface};

/// The UDP port every test node listens on (inside its own namespace, so they never clash).
pub const LISTEN_PORT: u16 = 51820;

pub struct VpnSite {
    pub region: RegionCode,
    pub display_name: String,
    pub node: NodeName,
    /// The node's interface: `wireguard-go` in `server_ns`.
    pub wg: WgInterface,
    /// The interface's private key, for tests that play the server's previous owner (a full
    /// `wg setconf` file names it).
    pub private_key: PrivateKey,
    /// Where clients reach the node, as `host:port`.
    pub endpoint: String,
    pub subnet: Ipv4Net,
    /// The node's own address inside the tunnel: what clients ping.
    pub tunnel_address: Ipv4Addr,
    // Dropped after `wg`: the interface goes first, then its namespaces.
    pub client_ns: Netns,
    pub server_ns: Netns,
}

impl VpnSite {
    /// Builds site number `index` (1..=250) for `region`.
    pub fn create(index: u8, region: &str, display_name: &str) -> Result<Self> {
        let subnet: Ipv4Net = format!("198.19.{index}.0/24").parse()?;
        Self::create_with_subnet(index, region, display_name, subnet)
    }

    /// Like [`VpnSite::create`] with another client subnet (inside 198.18.0.0/15), for nodes
    /// with more than 253 clients.
    pub fn create_with_subnet(
        index: u8,
        region: &str,
        display_name: &str,
        subnet: Ipv4Net,
    ) -> Result<Self> {
        Self::create_node(index, region, 1, display_name, subnet)
    }

    /// Like [`VpnSite::create_with_subnet`] for node `<region>-<number>`, so that one region
    /// can have several nodes (register the second and later ones with
    /// [`VpnSite::node_add_args`] only: their region exists).
    pub fn create_node(
        index: u8,
        region: &str,
        number: u32,
        display_name: &str,
        subnet: Ipv4Net,
    ) -> Result<Self> {
        let region = RegionCode::new(region)?;
        let node = NodeName::new(format!("{region}-{number}"))?;
        let server_ns = Netns::create(&format!("srv{index}"))?;
        let client_ns = Netns::create(&format!("cli{index}"))?;
        let server_veth = Ipv4Addr::new(198, 18, index, 1);
        Netns::link_veth(
            &server_ns,
            &format!("{server_veth}/24"),
            &client_ns,
            &format!("198.18.{index}.2/24"),
        )?;
        let tunnel_address = Ipv4Addr::from(u32::from(subnet.network()) + 1);
        let private_key = PrivateKey::generate();
        let wg = WgInterface::start(
            &server_ns,
            &WgInterface::unique_name(&format!("s{index}"))?,
            &private_key,
            LISTEN_PORT,
            &format!("{tunnel_address}/{}", subnet.prefix_len()),
        )?;
        Ok(Self {
            region,
            display_name: display_name.to_string(),
            node,
            wg,
            private_key,
            endpoint: format!("{server_veth}:{LISTEN_PORT}"),
            subnet,
            tunnel_address,
            client_ns,
            server_ns,
        })
    }

    /// The `pvpnctl node add` arguments that register this site's node.
    pub fn node_add_args(&self, capacity: u32) -> Vec<String> {
        vec![
            "node".into(),
            "add".into(),
            self.node.to_string(),
            "--region".into(),
            self.region.to_string(),
            "--endpoint".into(),
            self.endpoint.clone(),
            "--public-key".into(),
            self.wg.public_key().to_base64(),
            "--listen-port".into(),
            LISTEN_PORT.to_string(),
            "--subnet".into(),
            self.subnet.to_string(),
            "--dns".into(),
            self.tunnel_address.to_string(),
            "--capacity".into(),
            capacity.to_string(),
        ]
    }
}
