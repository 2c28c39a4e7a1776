//! The guests' network: a namespace holding a bridge, one tap device per guest.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use anyhow::{Result, bail};

use crate::netns::Netns;

/// Name of the bridge inside the namespace (names are per namespace, so it never collides).
const BRIDGE: &str = "br0";

/// A namespace with a bridge at `198.18.<n>.1/24` (n random in 128..=255, so fixtures running in
/// parallel use different ranges). Guests get `.2`, `.3`, …; tests start services on
/// [`GuestNetwork::host_addr`] inside [`GuestNetwork::netns`]. Dropping it deletes the namespace
/// with its bridge and any tap left.
#[derive(Debug)]
pub struct GuestNetwork {
    netns: Netns,
    subnet: u8,
    next_host: AtomicU8,
}

impl GuestNetwork {
    /// Shared: every [`super::DebianGuest`] on it holds a reference.
    pub fn create() -> Result<Arc<Self>> {
        use rand::Rng;
        let netns = Netns::create("guests")?;
        let subnet = rand::thread_rng().gen_range(128..=255u8);
        let net = Self {
            netns,
            subnet,
            next_host: AtomicU8::new(2),
        };
        net.netns.ip(&["link", "add", BRIDGE, "type", "bridge"])?;
        let addr = format!("{}/24", net.host_addr());
        net.netns.ip(&["addr", "add", &addr, "dev", BRIDGE])?;
        net.netns.ip(&["link", "set", BRIDGE, "up"])?;
        Ok(Arc::new(net))
    }

    /// The namespace: start services and clients here (`ip netns exec`).
    pub fn netns(&self) -> &Netns {
        &self.netns
    }

    /// The bridge's address: the host side every guest reaches (its default gateway).
    pub fn host_addr(&self) -> Ipv4Addr {
        Ipv4Addr::new(198, 18, self.subnet, 1)
    }

    /// An address on the bridge that no guest will take: for a second host inside a guest (a
    /// namespace on a macvlan of the guest's `eth0`), such as a user's device.
    pub fn spare_addr(&self) -> Result<Ipv4Addr> {
        let host = self.next_host.fetch_add(1, Ordering::SeqCst);
        if host >= 250 {
            bail!("no guest address left in 198.18.{}.0/24", self.subnet);
        }
        Ok(Ipv4Addr::new(198, 18, self.subnet, host))
    }

    /// The next free guest address and a tap device for it, attached to the bridge.
    pub(crate) fn add_tap(&self) -> Result<(Ipv4Addr, String)> {
        let addr = self.spare_addr()?;
        let tap = format!("tap{}", addr.octets()[3]);
        self.netns.ip(&["tuntap", "add", &tap, "mode", "tap"])?;
        self.netns
            .ip(&["link", "set", &tap, "master", BRIDGE, "up"])?;
        Ok((addr, tap))
    }

    pub(crate) fn remove_tap(&self, tap: &str) {
        let _ = self.netns.ip(&["link", "del", tap]);
    }
}
