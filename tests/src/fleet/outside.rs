//! The networks around the fleet's guests, all hung off the guests' namespace (which routes
//! between them): "the internet" — a host behind the VPN nodes with a resolver and a service that
//! answers with the address it sees — and the users' client namespaces.
//!
//! The internet host knows a route to the guests' bridge only, never to the nodes' client
//! subnets, so it can answer a tunnelled client only when the node masqueraded the packets.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use pvpn_testkit::netns::Netns;
use pvpn_testkit::vm::GuestNetwork;

use crate::process::ChildProcess;

/// The internet host's address: the resolver the client configs name, and the service.
pub const INTERNET_HOST: Ipv4Addr = Ipv4Addr::new(198, 18, 30, 2);
/// A name only the internet host's resolver knows; it points at the internet host.
pub const SERVICE_NAME: &str = "whoami.fleet.test";
/// The TCP port of the service that answers with the client address it sees.
pub const WHOAMI_PORT: u16 = 8000;

/// Debian's own interpreter (not whatever `python3` comes first in `PATH`).
const PYTHON: &str = "/usr/bin/python3";

/// Answers every TCP connection with the peer address it came from, then closes it.
const WHOAMI: &str = "import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2])))
s.listen(16)
while True:
    c, peer = s.accept()
    c.sendall(peer[0].encode() + b'\\n')
    c.close()
";

/// Resolves `argv[1]` with the system resolver, connects to the address found on port
/// `argv[2]`, and prints `<address> <what the service said>` (read by [`parse_whoami`]).
pub const WHOAMI_CLIENT: &str = "import socket, sys
addr = socket.getaddrinfo(sys.argv[1], None, socket.AF_INET)[0][4][0]
c = socket.create_connection((addr, int(sys.argv[2])), timeout=5)
print(addr, c.recv(100).decode().strip())
";

/// A namespace joined to the guests' namespace by veth on `198.18.<link>.0/24`, which the
/// guests' namespace forwards to and from.
fn attach(net: &GuestNetwork, role: &str, link: u8) -> Result<Netns> {
    let ns = Netns::create(role)?;
    Netns::link_veth(
        net.netns(),
        &format!("198.18.{link}.1/24"),
        &ns,
        &format!("198.18.{link}.2/24"),
    )?;
    let out = net
        .netns()
        .exec("sysctl", &["-q", "-w", "net.ipv4.ip_forward=1"])?;
    if !out.status.success() {
        bail!("enabling forwarding in {}", net.netns().name());
    }
    // Only the guests' bridge is reachable from here: no default route.
    let [a, b, c, _] = net.host_addr().octets();
    let bridge = format!("{a}.{b}.{c}.0/24");
    ns.ip(&["route", "add", &bridge, "via", &format!("198.18.{link}.1")])?;
    Ok(ns)
}

/// "The internet" behind the nodes: a resolver (dnsmasq) and the whoami service.
pub struct Internet {
    // Processes first: they run inside the namespace.
    _dns: ChildProcess,
    _whoami: ChildProcess,
    pub ns: Netns,
}

impl Internet {
    pub fn start(net: &GuestNetwork, log_dir: &Path) -> Result<Self> {
        let ns = attach(net, "internet", 30)?;
        let host = INTERNET_HOST.to_string();
        let dns = ChildProcess::spawn(
            "dnsmasq",
            Path::new("ip"),
            &[
                "netns",
                "exec",
                ns.name(),
                "dnsmasq",
                "--keep-in-foreground",
                "--conf-file=/dev/null",
                "--no-resolv",
                "--no-hosts",
                "--bind-interfaces",
                &format!("--listen-address={host}"),
                &format!("--address=/{SERVICE_NAME}/{host}"),
                "--pid-file",
                "--log-queries",
                "--log-facility=-",
            ],
            &[],
            log_dir,
        )
        .context("starting dnsmasq (scripts/setup.sh installs dnsmasq-base)")?;
        let whoami = ChildProcess::spawn(
            "whoami",
            Path::new("ip"),
            &[
                "netns",
                "exec",
                ns.name(),
                PYTHON,
                "-c",
                WHOAMI,
                &host,
                &WHOAMI_PORT.to_string(),
            ],
            &[],
            log_dir,
        )?;
        Ok(Self {
            _dns: dns,
            _whoami: whoami,
            ns,
        })
    }
}

/// A user's machine: a namespace that reaches the nodes' endpoints through the guests'
/// namespace, and whose resolver is the one its tunnel's config names (as `wg-quick` sets it).
pub struct ClientNet {
    pub ns: Netns,
    resolv_dir: PathBuf,
}

impl ClientNet {
    pub fn create(net: &GuestNetwork, link: u8) -> Result<Self> {
        let ns = attach(net, &format!("client{link}"), link)?;
        let resolv_dir = PathBuf::from("/etc/netns").join(ns.name());
        Ok(Self { ns, resolv_dir })
    }

    /// Uses the `DNS` servers of `config` (a `wg-quick` file) for name lookups in this
    /// namespace: `ip netns exec` mounts `/etc/netns/<ns>/resolv.conf` over `/etc/resolv.conf`.
    pub fn use_dns_of(&self, config: &str) -> Result<Vec<Ipv4Addr>> {
        let servers = dns_servers(config)?;
        std::fs::create_dir_all(&self.resolv_dir)?;
        std::fs::write(self.resolv_dir.join("resolv.conf"), resolv_conf(&servers))?;
        Ok(servers)
    }

    /// Looks `name` up with the namespace's resolver and asks the service at the address found
    /// who is calling: returns (the address found, the client address the service saw).
    pub fn whoami(&self, name: &str) -> Result<(Ipv4Addr, Ipv4Addr)> {
        let out = self.ns.exec(
            PYTHON,
            &["-c", WHOAMI_CLIENT, name, &WHOAMI_PORT.to_string()],
        )?;
        if !out.status.success() {
            bail!(
                "looking up {name} and asking it from {}: {}",
                self.ns.name(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        parse_whoami(&String::from_utf8_lossy(&out.stdout))
    }
}

/// The `DNS` servers a client config (a `wg-quick` file) names.
pub fn dns_servers(config: &str) -> Result<Vec<Ipv4Addr>> {
    let parsed =
        pvpn_common::client_config::ParsedConfig::parse(config).map_err(anyhow::Error::msg)?;
    parsed
        .interface_value("DNS")
        .context("the config names no DNS server")?
        .split(',')
        .map(|s| s.trim().parse())
        .collect::<Result<_, _>>()
        .context("a DNS entry of the config is not an IPv4 address")
}

/// A `resolv.conf` naming `servers`, as `wg-quick` (through resolvconf) sets it.
pub fn resolv_conf(servers: &[Ipv4Addr]) -> String {
    servers
        .iter()
        .map(|s| format!("nameserver {s}\n"))
        .collect()
}

/// [`WHOAMI_CLIENT`]'s output: (the address the name resolved to, the client address the
/// service saw).
pub fn parse_whoami(text: &str) -> Result<(Ipv4Addr, Ipv4Addr)> {
    let mut words = text.split_whitespace();
    let (Some(found), Some(seen)) = (words.next(), words.next()) else {
        bail!("unexpected answer from the whoami client: {text:?}");
    };
    Ok((found.parse()?, seen.parse()?))
}

impl Drop for ClientNet {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.resolv_dir);
    }
}
