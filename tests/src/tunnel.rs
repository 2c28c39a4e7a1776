//! A user's side of the tunnel: the `.conf` file the bot sent, brought up in a client namespace
//! the way a user's machine would (`wireguard-go`, `wg-quick strip` + `wg setconf`, the
//! addresses and the default route from the file), then pinged through.

use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};
use pvpn_common::client_config::ParsedConfig;
use pvpn_common::{PrivateKey, PublicKey};
use pvpn_testkit::netns::{Netns, WgInterface};

/// What a client takes from a received config to bring its tunnel up.
pub struct ClientSide {
    pub private_key: PrivateKey,
    /// The client's address inside the tunnel (the first of `Address`).
    pub address: String,
    /// The node's public key.
    pub server_key: PublicKey,
}

impl ClientSide {
    pub fn of(config: &str) -> Result<Self> {
        let parsed = ParsedConfig::parse(config).map_err(anyhow::Error::msg)?;
        let private_key: PrivateKey = parsed
            .interface_value("PrivateKey")
            .context("config without PrivateKey")?
            .parse()?;
        let address = parsed
            .interface_value("Address")
            .context("config without Address")?
            .split(',')
            .next()
            .unwrap_or_default()
            .trim()
            .to_string();
        let server_key: PublicKey = parsed
            .peer_value("PublicKey")
            .context("config without a [Peer] PublicKey")?
            .parse()?;
        Ok(Self {
            private_key,
            address,
            server_key,
        })
    }
}

/// A client interface holding one received config.
pub struct ClientTunnel {
    pub wg: WgInterface,
    /// The client's address inside the tunnel, from the config.
    pub address: String,
    /// The node's public key, from the config.
    pub server_key: PublicKey,
}

impl ClientTunnel {
    /// Brings `config` up in `ns` under a fresh interface name.
    pub fn up(ns: &Netns, config: &str) -> Result<Self> {
        let ClientSide {
            private_key,
            address,
            server_key,
        } = ClientSide::of(config)?;
        let name = WgInterface::unique_name("c")?;
        // Listen port 0: the kernel picks one, as on a phone.
        let wg = WgInterface::start(ns, &name, &private_key, 0, &address)?;

        // What a user's `wg-quick up` does with the file, minus the parts that touch the host.
        let dir = std::env::temp_dir().join(format!("pvpn-e2e-{name}"));
        std::fs::create_dir_all(&dir)?;
        let path = dir.join(format!("{name}.conf"));
        std::fs::write(&path, config)?;
        let strip = Command::new("wg-quick")
            .arg("strip")
            .arg(&path)
            .stdin(Stdio::null())
            .output()
            .context("wg-quick (wireguard-tools) is required")?;
        if !strip.status.success() {
            bail!("wg-quick strip: {}", String::from_utf8_lossy(&strip.stderr));
        }
        let stripped = dir.join("stripped.conf");
        std::fs::write(&stripped, &strip.stdout)?;
        let set = Command::new("wg")
            .arg("setconf")
            .arg(&name)
            .arg(&stripped)
            .output()?;
        let _ = std::fs::remove_dir_all(&dir);
        if !set.status.success() {
            bail!("wg setconf: {}", String::from_utf8_lossy(&set.stderr));
        }
        // AllowedIPs = 0.0.0.0/0: everything goes through the tunnel except the endpoint, which
        // stays reachable through the more specific veth route.
        ns.ip(&["route", "replace", "default", "dev", &name])?;
        Ok(Self {
            wg,
            address,
            server_key,
        })
    }

    /// Latest handshake with the node, unix seconds (0 = never).
    pub fn latest_handshake(&self) -> Result<u64> {
        let peers = self.wg.peers()?;
        peers
            .iter()
            .find(|p| p.public_key == self.server_key)
            .map(|p| p.latest_handshake)
            .context("the client interface lost its peer")
    }
}

/// Sends `count` pings 200 ms apart from the namespace named `ns` to `addr` and returns how many
/// were answered. Takes the name so that it can run on another thread while the test goes on.
pub fn ping_series(ns: &str, addr: Ipv4Addr, count: u32) -> Result<u32> {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "ping"])
        .args([
            "-n",
            "-q",
            "-i",
            "0.2",
            "-W",
            "1",
            "-c",
            &count.to_string(),
            &addr.to_string(),
        ])
        .stdin(Stdio::null())
        .output()
        .context("running ping")?;
    let text = String::from_utf8_lossy(&out.stdout);
    // "10 packets transmitted, 9 received, 10% packet loss, time 1803ms"
    let received = text
        .lines()
        .find(|l| l.contains("packets transmitted"))
        .and_then(|l| l.split(", ").nth(1))
        .and_then(|part| part.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("unexpected ping output: {text}"))?;
    Ok(received)
}

/// One ping with a short timeout: whether `addr` answers now.
pub fn answers_ping(ns: &Netns, addr: Ipv4Addr) -> Result<bool> {
    Ok(ns
        .exec("ping", &["-n", "-c", "1", "-W", "1", &addr.to_string()])?
        .status
        .success())
}
