//! The client configuration file that stock WireGuard apps import (`wg-quick` format).
//!
//! The rendered text contains the client's private key, so it lives in a [`RenderedConfig`] that
//! redacts itself in `Debug` and is wiped on drop: it is meant to be sent to the user and forgotten.

use std::fmt::{self, Write as _};
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::keys::{PresharedKey, PrivateKey, PublicKey};
use crate::obfuscation::AwgProfile;

/// Keepalive the client sends so NAT mappings stay open and the node sees it as connected.
pub const CLIENT_KEEPALIVE_SECS: u16 = 25;

/// Why a string is not a node endpoint.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EndpointError {
    #[error("endpoint {0:?} must be host:port (IPv6 as [addr]:port)")]
    Shape(String),
    #[error("endpoint {0:?} has an invalid port")]
    Port(String),
    #[error("endpoint host {0:?} is not an IP address or a DNS name")]
    Host(String),
}

/// Where clients reach a node: a DNS name or IP address, and a UDP port.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Endpoint {
    host: String,
    port: u16,
}

impl Endpoint {
    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn port(&self) -> u16 {
        self.port
    }
}

impl FromStr for Endpoint {
    type Err = EndpointError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let shape = || EndpointError::Shape(s.chars().take(300).collect());
        let (host, port) = if let Some(rest) = s.strip_prefix('[') {
            let (host, port) = rest.split_once("]:").ok_or_else(shape)?;
            host.parse::<std::net::Ipv6Addr>()
                .map_err(|_| EndpointError::Host(host.into()))?;
            (host, port)
        } else {
            let (host, port) = s.rsplit_once(':').ok_or_else(shape)?;
            let is_dns_name = !host.is_empty()
                && host.len() <= 253
                && host.split('.').all(|label| {
                    !label.is_empty()
                        && label.len() <= 63
                        && label
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                        && !label.starts_with('-')
                        && !label.ends_with('-')
                });
            if host.parse::<std::net::Ipv4Addr>().is_err() && !is_dns_name {
                return Err(EndpointError::Host(host.chars().take(300).collect()));
            }
            (host, port)
        };
        let port: u16 = port
            .parse()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| EndpointError::Port(s.chars().take(300).collect()))?;
        Ok(Self {
            host: host.to_string(),
            port,
        })
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl Serialize for Endpoint {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Endpoint {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// Everything a client config says.
pub struct ClientConfig<'a> {
    pub private_key: &'a PrivateKey,
    /// The client's tunnel addresses (host prefixes, such as `198.18.0.2/32`).
    pub addresses: &'a [IpNet],
    pub dns: &'a [IpAddr],
    pub server_public_key: &'a PublicKey,
    pub preshared_key: Option<&'a PresharedKey>,
    pub endpoint: &'a Endpoint,
    /// What the client routes through the tunnel; usually everything.
    pub allowed_ips: &'a [IpNet],
    /// The node's AmneziaWG profile, for an AmneziaWG node: its parameters go into `[Interface]`,
    /// where the AmneziaVPN and AmneziaWG apps and `awg-quick` read them.
    pub obfuscation: Option<&'a AwgProfile>,
}

impl ClientConfig<'_> {
    /// Renders the `wg-quick` file.
    pub fn render(&self) -> RenderedConfig {
        fn join<T: fmt::Display>(items: &[T]) -> String {
            items
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        }
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = writeln!(out, "[Interface]");
        let _ = writeln!(out, "PrivateKey = {}", self.private_key.to_base64());
        let _ = writeln!(out, "Address = {}", join(self.addresses));
        if !self.dns.is_empty() {
            let _ = writeln!(out, "DNS = {}", join(self.dns));
        }
        for (key, value) in self
            .obfuscation
            .map(AwgProfile::client_config_lines)
            .unwrap_or_default()
        {
            let _ = writeln!(out, "{key} = {value}");
        }
        let _ = writeln!(out);
        let _ = writeln!(out, "[Peer]");
        let _ = writeln!(out, "PublicKey = {}", self.server_public_key);
        if let Some(psk) = self.preshared_key {
            let _ = writeln!(out, "PresharedKey = {}", psk.to_base64());
        }
        let _ = writeln!(out, "Endpoint = {}", self.endpoint);
        let _ = writeln!(out, "AllowedIPs = {}", join(self.allowed_ips));
        let _ = writeln!(out, "PersistentKeepalive = {CLIENT_KEEPALIVE_SECS}");
        RenderedConfig(out)
    }
}

/// A rendered client config. Holds a private key: redacted in `Debug`, wiped on drop.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct RenderedConfig(String);

impl RenderedConfig {
    /// The file's text, to send to the user.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for RenderedConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RenderedConfig([redacted])")
    }
}

/// A `wg-quick` file read back into sections of `(key, value)` pairs, for tests and tools that
/// check what a user received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedConfig {
    pub interface: Vec<(String, String)>,
    pub peers: Vec<Vec<(String, String)>>,
}

impl ParsedConfig {
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut interface = None::<Vec<(String, String)>>;
        let mut peers = Vec::new();
        let mut current: Option<&mut Vec<(String, String)>> = None;
        for (n, raw) in text.lines().enumerate() {
            let line = raw.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            match line {
                "[Interface]" => {
                    if interface.is_some() {
                        return Err(format!("line {}: second [Interface]", n + 1));
                    }
                    current = Some(interface.insert(Vec::new()));
                }
                "[Peer]" => {
                    peers.push(Vec::new());
                    current = peers.last_mut();
                }
                _ => {
                    let (k, v) = line
                        .split_once('=')
                        .ok_or_else(|| format!("line {}: expected key = value", n + 1))?;
                    current
                        .as_mut()
                        .ok_or_else(|| format!("line {}: key outside a section", n + 1))?
                        .push((k.trim().to_string(), v.trim().to_string()));
                }
            }
        }
        Ok(Self {
            interface: interface.ok_or("no [Interface] section")?,
            peers,
        })
    }

    /// The first value of `key` in the interface section.
    pub fn interface_value(&self, key: &str) -> Option<&str> {
        self.interface
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.as_str())
    }

    /// The first value of `key` in the first peer section.
    pub fn peer_value(&self, key: &str) -> Option<&str> {
        self.peers
            .first()?
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::KeyPair;
    use std::process::Command;

    fn sample() -> (KeyPair, PublicKey, PresharedKey, Endpoint) {
        (
            KeyPair::generate(),
            KeyPair::generate().public,
            PresharedKey::generate(),
            "vpn.example.net:51820".parse().unwrap(),
        )
    }

    fn render(kp: &KeyPair, server: &PublicKey, psk: &PresharedKey, ep: &Endpoint) -> String {
        ClientConfig {
            private_key: &kp.private,
            addresses: &["198.18.0.2/32".parse().unwrap()],
            dns: &["198.18.0.1".parse().unwrap()],
            server_public_key: server,
            preshared_key: Some(psk),
            endpoint: ep,
            allowed_ips: &["0.0.0.0/0".parse().unwrap(), "::/0".parse().unwrap()],
            obfuscation: None,
        }
        .render()
        .expose()
        .to_string()
    }

    #[test]
    fn renders_and_parses_back() {
        let (kp, server, psk, ep) = sample();
        let text = render(&kp, &server, &psk, &ep);
        let parsed = ParsedConfig::parse(&text).unwrap();
        assert_eq!(
            parsed.interface_value("PrivateKey"),
            Some(kp.private.to_base64().as_str())
        );
        assert_eq!(parsed.interface_value("Address"), Some("198.18.0.2/32"));
        assert_eq!(parsed.interface_value("DNS"), Some("198.18.0.1"));
        assert_eq!(
            parsed.peer_value("PublicKey"),
            Some(server.to_base64().as_str())
        );
        assert_eq!(parsed.peer_value("Endpoint"), Some("vpn.example.net:51820"));
        assert_eq!(parsed.peer_value("AllowedIPs"), Some("0.0.0.0/0, ::/0"));
    }

    #[test]
    fn rendered_config_is_redacted_in_debug() {
        let (kp, server, psk, ep) = sample();
        let cfg = ClientConfig {
            private_key: &kp.private,
            addresses: &[],
            dns: &[],
            server_public_key: &server,
            preshared_key: Some(&psk),
            endpoint: &ep,
            allowed_ips: &[],
            obfuscation: None,
        }
        .render();
        assert!(!format!("{cfg:?}").contains(&kp.private.to_base64()));
    }

    #[test]
    fn endpoints_parse_strictly() {
        for ok in [
            "vpn.example.net:51820",
            "198.18.0.1:1",
            "[fd00::1]:51820",
            "node-1:65535",
        ] {
            let ep: Endpoint = ok.parse().unwrap();
            assert_eq!(ep.to_string(), ok);
        }
        for bad in [
            "",
            "host",
            "host:0",
            "host:70000",
            ":51820",
            "bad host:1",
            "fd00::1:5",
            "a..b:1",
        ] {
            assert!(bad.parse::<Endpoint>().is_err(), "{bad:?}");
        }
    }

    /// The real `wg-quick strip` and `wg setconf` accept what we render. `wg setconf` needs an
    /// interface: a throwaway `wireguard-go` one, removed when the test ends.
    #[test]
    fn real_wg_accepts_rendered_config() {
        let (kp, server, psk, ep) = sample();
        let ep: Endpoint = format!("127.0.0.1:{}", ep.port()).parse().unwrap();
        let text = render(&kp, &server, &psk, &ep);
        let dir = tempfile::tempdir().unwrap();
        let iface = format!("pvcfg{}", std::process::id() % 100_000);
        let path = dir.path().join(format!("{iface}.conf"));
        std::fs::write(&path, &text).unwrap();

        let strip = Command::new("wg-quick")
            .arg("strip")
            .arg(&path)
            .output()
            .expect("wg-quick (wireguard-tools) is required: run scripts/setup.sh");
        assert!(
            strip.status.success(),
            "{}",
            String::from_utf8_lossy(&strip.stderr)
        );
        let stripped = String::from_utf8(strip.stdout).unwrap();
        assert!(!stripped.contains("Address"), "{stripped}");
        let stripped_path = dir.path().join("stripped.conf");
        std::fs::write(&stripped_path, &stripped).unwrap();

        let mut wg_go = Command::new("wireguard-go")
            .args(["-f", &iface])
            .env("WG_PROCESS_FOREGROUND", "1")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("wireguard-go is required: run scripts/setup.sh");
        let sock = format!("/var/run/wireguard/{iface}.sock");
        for _ in 0..100 {
            if std::path::Path::new(&sock).exists() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let set = Command::new("wg")
            .arg("setconf")
            .arg(&iface)
            .arg(&stripped_path)
            .output()
            .unwrap();
        let show = Command::new("wg")
            .args(["show", &iface, "peers"])
            .output()
            .unwrap();
        // SIGKILL leaves the socket file behind; remove it so nothing of this test remains.
        let _ = wg_go.kill();
        let _ = wg_go.wait();
        let _ = std::fs::remove_file(&sock);
        assert!(
            set.status.success(),
            "wg setconf: {}",
            String::from_utf8_lossy(&set.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&show.stdout).trim(),
            server.to_base64()
        );
    }
}
