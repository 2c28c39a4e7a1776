//! [`WireGuard`] over `wireguard-control`: netlink to the kernel module, or the UAPI socket of a
//! userspace implementation such as `wireguard-go`.
//!
//! Two traps of the library are closed here: `DeviceUpdate::apply` creates a missing interface
//! (kernel) or starts `wireguard-go` (userspace), so every call first checks that the interface
//! exists; and unset preshared keys / keepalives read back as zero, so they are mapped to `None`.

use std::path::Path;

use ipnet::IpNet;
use pvpn_common::wire::PeerStats;
use pvpn_common::{PeerSpec, PresharedKey, PublicKey};
use wireguard_control::{
    AllowedIp, Backend, Device, DeviceUpdate, InterfaceName, Key, PeerConfigBuilder, PeerInfo,
};

use super::{InterfacePeer, PeerChange, WgError, WireGuard, counters};
use crate::config::WgBackend;

/// Where userspace implementations put their UAPI sockets (shared by all network namespaces).
const USERSPACE_SOCKET_DIRS: [&str; 2] = ["/var/run/wireguard", "/run/wireguard"];

/// A named interface reached through one `wireguard-control` backend.
#[derive(Debug, Clone)]
pub struct ControlWireGuard {
    name: InterfaceName,
    backend: Backend,
}

impl ControlWireGuard {
    pub fn new(name: &str, backend: WgBackend) -> Result<Self, WgError> {
        let name: InterfaceName = name.parse().map_err(|e| WgError::Io {
            iface: name.to_string(),
            action: "parsing the interface name",
            source: std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{e}")),
        })?;
        let backend = match backend {
            WgBackend::Kernel => Backend::Kernel,
            WgBackend::Userspace => Backend::Userspace,
            WgBackend::AmneziaWg => {
                return Err(WgError::WrongProtocol {
                    iface: name.to_string(),
                    speaks: pvpn_common::obfuscation::Protocol::AmneziaWg,
                    wanted: pvpn_common::obfuscation::Protocol::WireGuard,
                });
            }
        };
        Ok(Self { name, backend })
    }

    fn io_error(&self, action: &'static str) -> impl FnOnce(std::io::Error) -> WgError + '_ {
        move |source| WgError::Io {
            iface: self.name.to_string(),
            action,
            source,
        }
    }
}

impl WireGuard for ControlWireGuard {
    fn check_exists(&self) -> Result<(), WgError> {
        let exists = match self.backend {
            Backend::Kernel => Path::new("/sys/class/net")
                .join(self.name.to_string())
                .exists(),
            Backend::Userspace => USERSPACE_SOCKET_DIRS.iter().any(|dir| {
                std::os::unix::net::UnixStream::connect(
                    Path::new(dir).join(format!("{}.sock", self.name)),
                )
                .is_ok()
            }),
        };
        if exists {
            Ok(())
        } else {
            Err(WgError::InterfaceMissing(self.name.to_string()))
        }
    }

    fn read_peers(&self) -> Result<Vec<InterfacePeer>, WgError> {
        self.check_exists()?;
        let device =
            Device::get(&self.name, self.backend).map_err(self.io_error("reading peers"))?;
        Ok(device.peers.into_iter().map(from_peer_info).collect())
    }

    fn read_counters(&self) -> Result<Vec<PeerStats>, WgError> {
        self.check_exists()?;
        let device =
            Device::get(&self.name, self.backend).map_err(self.io_error("reading counters"))?;
        Ok(device
            .peers
            .into_iter()
            .map(|info| {
                counters(
                    PublicKey::from_bytes(info.config.public_key.0),
                    info.stats.last_handshake_time,
                    info.stats.rx_bytes,
                    info.stats.tx_bytes,
                )
            })
            .collect())
    }

    fn apply(&self, changes: &[PeerChange]) -> Result<(), WgError> {
        if changes.is_empty() {
            return Ok(());
        }
        self.check_exists()?;
        let update = changes
            .iter()
            .fold(DeviceUpdate::new(), |update, change| match change {
                PeerChange::Upsert(spec) => update.add_peer(to_builder(spec)),
                PeerChange::Remove(key) => update.remove_peer_by_key(&to_key(key)),
            });
        update
            .apply(&self.name, self.backend)
            .map_err(self.io_error("applying peer changes"))
    }
}

fn to_key(key: &PublicKey) -> Key {
    Key(*key.as_bytes())
}

/// A full description of the peer: allowed IPs replaced, preshared key and keepalive set or
/// cleared, endpoint untouched (WireGuard learns it from the client).
fn to_builder(spec: &PeerSpec) -> PeerConfigBuilder {
    let allowed: Vec<AllowedIp> = spec
        .allowed_ips
        .iter()
        .map(|net| AllowedIp {
            address: net.addr(),
            cidr: net.prefix_len(),
        })
        .collect();
    let builder = PeerConfigBuilder::new(&to_key(&spec.public_key))
        .replace_allowed_ips()
        .add_allowed_ips(&allowed);
    let builder = match &spec.preshared_key {
        Some(psk) => builder.set_preshared_key(Key(*psk.as_bytes())),
        None => builder.unset_preshared_key(),
    };
    match spec.persistent_keepalive {
        Some(secs) => builder.set_persistent_keepalive_interval(secs),
        None => builder.unset_persistent_keepalive(),
    }
}

fn from_peer_info(info: PeerInfo) -> InterfacePeer {
    let config = info.config;
    let mut allowed_ips = Vec::with_capacity(config.allowed_ips.len());
    allowed_ips.extend(
        config
            .allowed_ips
            .iter()
            .filter_map(|ip| IpNet::new(ip.address, ip.cidr).ok()),
    );
    InterfacePeer {
        spec: PeerSpec {
            public_key: PublicKey::from_bytes(config.public_key.0),
            allowed_ips,
            preshared_key: config
                .preshared_key
                .filter(|k| k.0 != [0u8; 32])
                .map(|k| PresharedKey::from_bytes(k.0)),
            persistent_keepalive: config.persistent_keepalive_interval.filter(|s| *s != 0),
        },
        endpoint: config.endpoint,
        last_handshake: info.stats.last_handshake_time,
        rx_bytes: info.stats.rx_bytes,
        tx_bytes: info.stats.tx_bytes,
    }
}
