//! The client config of a device: the `wg-quick` file the user imports (with the node's
//! AmneziaWG profile for an AmneziaWG node). Its node side, the
//! peer, is [`pvpn_common::PeerSpec::for_client`].

use std::net::Ipv4Addr;

use ipnet::{IpNet, Ipv4Net};
use pvpn_common::client_config::{ClientConfig, RenderedConfig};
use pvpn_common::{PresharedKey, PrivateKey};

use super::ServiceError;
use crate::db::nodes::NodeRow;

/// What the client routes through the tunnel: everything, IPv4 and IPv6 (IPv6 so it does not leak
/// around a v4-only tunnel).
const CLIENT_ALLOWED_IPS: [&str; 2] = ["0.0.0.0/0", "::/0"];

fn host_net(address: Ipv4Addr) -> IpNet {
    IpNet::V4(Ipv4Net::from(address))
}

/// The client side of a device: the `wg-quick` file with the private key.
pub(crate) fn client_config(
    node: &NodeRow,
    private_key: &PrivateKey,
    preshared_key: Option<&PresharedKey>,
    address: Ipv4Addr,
) -> Result<RenderedConfig, ServiceError> {
    let allowed_ips = CLIENT_ALLOWED_IPS
        .iter()
        .map(|s| s.parse::<IpNet>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| ServiceError::Internal("client allowed IPs constant".into()))?;
    Ok(ClientConfig {
        private_key,
        addresses: &[host_net(address)],
        dns: &node.dns,
        server_public_key: &node.public_key,
        preshared_key,
        endpoint: &node.endpoint,
        allowed_ips: &allowed_ips,
        // AmneziaWG nodes: the profile the node's interface holds, in the client's [Interface].
        obfuscation: node.interface.amneziawg.as_ref(),
    }
    .render())
}
