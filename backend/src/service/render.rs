//! Building a device's two faces from the same facts: the [`PeerSpec`] the node must hold and the
//! client config the user imports.

use std::net::{IpAddr, Ipv4Addr};

use ipnet::{IpNet, Ipv4Net};
use pvpn_common::client_config::{ClientConfig, Endpoint, RenderedConfig};
use pvpn_common::{PeerSpec, PresharedKey, PrivateKey, PublicKey};

use super::ServiceError;
use crate::db::nodes::NodeRow;

/// What the client routes through the tunnel: everything, IPv4 and IPv6 (IPv6 so it does not leak
/// around a v4-only tunnel).
const CLIENT_ALLOWED_IPS: [&str; 2] = ["0.0.0.0/0", "::/0"];

fn host_net(address: Ipv4Addr) -> IpNet {
    IpNet::V4(Ipv4Net::from(address))
}

/// The node side of a device.
pub(crate) fn peer_spec(
    public_key: PublicKey,
    preshared_key: Option<PresharedKey>,
    address: Ipv4Addr,
) -> PeerSpec {
    PeerSpec {
        public_key,
        allowed_ips: vec![host_net(address)],
        preshared_key,
        persistent_keepalive: None,
    }
}

/// The client side of a device: the `wg-quick` file with the private key.
pub(crate) fn client_config(
    node: &NodeRow,
    private_key: &PrivateKey,
    preshared_key: Option<&PresharedKey>,
    address: Ipv4Addr,
) -> Result<RenderedConfig, ServiceError> {
    let bad =
        |what: &str| ServiceError::Internal(format!("node {} has an invalid {what}", node.name));
    let endpoint: Endpoint = node.endpoint.parse().map_err(|_| bad("endpoint"))?;
    let server_public_key: PublicKey = node.public_key.parse().map_err(|_| bad("public key"))?;
    let dns = node
        .dns
        .iter()
        .map(|d| d.parse::<IpAddr>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| bad("DNS address"))?;
    let allowed_ips = CLIENT_ALLOWED_IPS
        .iter()
        .map(|s| s.parse::<IpNet>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| ServiceError::Internal("client allowed IPs constant".into()))?;
    Ok(ClientConfig {
        private_key,
        addresses: &[host_net(address)],
        dns: &dns,
        server_public_key: &server_public_key,
        preshared_key,
        endpoint: &endpoint,
        allowed_ips: &allowed_ips,
    }
    .render())
}
