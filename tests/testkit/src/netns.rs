//! Network namespaces with real `wireguard-go` interfaces, for tests on machines without the
//! WireGuard kernel module.
//!
//! - [`Netns`]: a namespace, deleted on drop.
//! - [`Netns::link_veth`]: a veth pair joining two namespaces, with 198.18.0.0/15 addresses.
//! - [`WgInterface`]: `wireguard-go -f` running in a namespace with a given private key, listen
//!   port and address; on drop the process is stopped by its pid (SIGTERM, then SIGKILL) and its
//!   UAPI socket removed.
//!
//! Everything is cleaned up in `Drop`, so a panicking test leaves nothing behind. Names carry a
//! random suffix: interface names must be unique machine-wide because every namespace shares the
//! UAPI socket directory `/var/run/wireguard`.

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use pvpn_common::{PresharedKey, PrivateKey, PublicKey};

/// Where `wireguard-go` puts its UAPI sockets.
pub const SOCKET_DIR: &str = "/var/run/wireguard";

fn run(cmd: &mut Command) -> Result<Output> {
    let shown = format!("{cmd:?}");
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {shown}: is iproute2 installed? (scripts/setup.sh)"))?;
    if !out.status.success() {
        bail!(
            "{shown} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(out)
}

/// A network namespace that exists as long as this value.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates `pvpn-<role>-<random>` with its loopback up.
    pub fn create(role: &str) -> Result<Self> {
        let name = format!("pvpn-{role}-{}", crate::unique_suffix());
        run(Command::new("ip").args(["netns", "add", &name]))
            .context("creating a network namespace (tests must run as root)")?;
        let ns = Self { name };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `ip -n <ns> <args>` and fails with its stderr if it fails.
    pub fn ip(&self, args: &[&str]) -> Result<Output> {
        run(Command::new("ip").arg("-n").arg(&self.name).args(args))
    }

    /// Runs a program inside the namespace; returns its output whatever the exit status.
    pub fn exec(&self, program: &str, args: &[&str]) -> Result<Output> {
        Command::new("ip")
            .args(["netns", "exec", &self.name, program])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("running {program} in namespace {}", self.name))
    }

    /// Pings `addr` from inside the namespace, a few attempts (the first packet of a tunnel waits
    /// for the handshake). Fails if no attempt got an answer.
    pub fn ping(&self, addr: Ipv4Addr) -> Result<()> {
        let target = addr.to_string();
        let mut last = String::new();
        for _ in 0..5 {
            let out = self.exec("ping", &["-c", "1", "-W", "2", &target])?;
            if out.status.success() {
                return Ok(());
            }
            last = String::from_utf8_lossy(&out.stdout).into_owned();
        }
        bail!("{} cannot ping {target}: {last}", self.name)
    }

    /// Joins `a` and `b` with a veth pair and gives each end an address (`"198.18.0.1/30"`).
    /// Device names are unique, so a namespace may have several pairs.
    pub fn link_veth(a: &Netns, a_addr: &str, b: &Netns, b_addr: &str) -> Result<VethPair> {
        let pair = VethPair {
            a_dev: format!("ve{}", crate::unique_suffix()),
            b_dev: format!("ve{}", crate::unique_suffix()),
        };
        // Both ends are created directly inside their namespaces: no name in the root namespace.
        run(Command::new("ip").args([
            "link",
            "add",
            &pair.a_dev,
            "netns",
            &a.name,
            "type",
            "veth",
            "peer",
            "name",
            &pair.b_dev,
            "netns",
            &b.name,
        ]))?;
        for (ns, addr, dev) in [(a, a_addr, &pair.a_dev), (b, b_addr, &pair.b_dev)] {
            ns.ip(&["addr", "add", addr, "dev", dev])?;
            ns.ip(&["link", "set", dev, "up"])?;
        }
        Ok(pair)
    }
}

/// The device names of a veth pair made by [`Netns::link_veth`]; it disappears with either
/// namespace.
#[derive(Debug, Clone)]
pub struct VethPair {
    pub a_dev: String,
    pub b_dev: String,
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// A `wireguard-go` interface running in a namespace.
#[derive(Debug)]
pub struct WgInterface {
    name: String,
    netns: String,
    public_key: PublicKey,
    listen_port: u16,
    child: Option<Child>,
}

impl WgInterface {
    /// A unique interface name `pv<role><random>`; `role` is at most 5 characters.
    pub fn unique_name(role: &str) -> Result<String> {
        let name = format!("pv{role}{}", crate::unique_suffix());
        if name.len() > 15 {
            bail!("interface name {name} is longer than 15 characters");
        }
        Ok(name)
    }

    /// Starts `wireguard-go -f <name>` in `ns`, sets its private key and listen port, gives it
    /// `address` (e.g. `"198.19.0.1/24"`) and brings it up.
    pub fn start(
        ns: &Netns,
        name: &str,
        private_key: &PrivateKey,
        listen_port: u16,
        address: &str,
    ) -> Result<Self> {
        let child = Command::new("ip")
            .args(["netns", "exec", ns.name(), "wireguard-go", "-f", name])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting wireguard-go: is it installed? (scripts/setup.sh)")?;
        let iface = Self {
            name: name.to_string(),
            netns: ns.name().to_string(),
            public_key: private_key.public_key(),
            listen_port,
            child: Some(child),
        };
        iface.wait_for_socket()?;
        iface.wg_with_stdin(
            &[
                "set",
                name,
                "private-key",
                "/dev/stdin",
                "listen-port",
                &listen_port.to_string(),
            ],
            &private_key.to_base64(),
        )?;
        ns.ip(&["addr", "add", address, "dev", name])?;
        ns.ip(&["link", "set", name, "up"])?;
        Ok(iface)
    }

    fn wait_for_socket(&self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if std::os::unix::net::UnixStream::connect(self.socket_path()).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        bail!(
            "wireguard-go did not open {} within 10 s",
            self.socket_path().display()
        )
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn netns(&self) -> &str {
        &self.netns
    }

    pub fn public_key(&self) -> PublicKey {
        self.public_key
    }

    pub fn listen_port(&self) -> u16 {
        self.listen_port
    }

    /// The process id of `wireguard-go`.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn socket_path(&self) -> PathBuf {
        PathBuf::from(SOCKET_DIR).join(format!("{}.sock", self.name))
    }

    /// Runs `wg <args>` (it reaches userspace interfaces through their socket) and returns stdout.
    pub fn wg(&self, args: &[&str]) -> Result<String> {
        let out = run(Command::new("wg").args(args)).context("the `wg` tool (wireguard-tools)")?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn wg_with_stdin(&self, args: &[&str], input: &str) -> Result<()> {
        let mut child = Command::new("wg")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("running `wg` (wireguard-tools): run scripts/setup.sh")?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(input.as_bytes())?;
        }
        let out = child.wait_with_output()?;
        if !out.status.success() {
            bail!(
                "wg {args:?}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }

    /// Adds or updates a peer by hand (`wg set ... peer ...`), as an operator or a client would.
    pub fn set_peer(
        &self,
        public_key: &PublicKey,
        endpoint: Option<SocketAddr>,
        allowed_ips: &[&str],
        persistent_keepalive: Option<u16>,
        preshared_key: Option<&PresharedKey>,
    ) -> Result<()> {
        let key = public_key.to_base64();
        let ips = allowed_ips.join(",");
        let mut args = vec!["set", &self.name, "peer", &key, "allowed-ips", &ips];
        let endpoint = endpoint.map(|e| e.to_string());
        if let Some(endpoint) = &endpoint {
            args.extend(["endpoint", endpoint]);
        }
        let keepalive = persistent_keepalive.map(|k| k.to_string());
        if let Some(keepalive) = &keepalive {
            args.extend(["persistent-keepalive", keepalive]);
        }
        // The secret goes through stdin, never the command line.
        match preshared_key {
            Some(psk) => {
                args.extend(["preshared-key", "/dev/stdin"]);
                self.wg_with_stdin(&args, &psk.to_base64())
            }
            None => self.wg(&args).map(drop),
        }
    }

    /// Removes a peer by hand.
    pub fn remove_peer(&self, public_key: &PublicKey) -> Result<()> {
        self.wg(&["set", &self.name, "peer", &public_key.to_base64(), "remove"])
            .map(drop)
    }

    /// `wg show <name> dump`, parsed: one [`DumpPeer`] per peer.
    pub fn peers(&self) -> Result<Vec<DumpPeer>> {
        let text = self.wg(&["show", &self.name, "dump"])?;
        // The first line describes the interface itself.
        text.lines().skip(1).map(DumpPeer::parse).collect()
    }
}

/// One peer line of `wg show <iface> dump`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DumpPeer {
    pub public_key: PublicKey,
    /// Base64, `None` when unset.
    pub preshared_key: Option<String>,
    pub endpoint: Option<String>,
    /// Sorted.
    pub allowed_ips: Vec<String>,
    /// Unix seconds, 0 = never.
    pub latest_handshake: u64,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    pub persistent_keepalive: Option<u16>,
}

impl DumpPeer {
    /// Parses one peer line (the lines after the first) of `wg show <iface> dump`.
    pub fn parse(line: &str) -> Result<Self> {
        let f: Vec<&str> = line.split('\t').collect();
        if f.len() != 8 {
            bail!("unexpected `wg show dump` line: {line}");
        }
        let opt = |s: &str| (s != "(none)" && s != "off").then(|| s.to_string());
        let mut allowed_ips: Vec<String> = if f[3] == "(none)" {
            Vec::new()
        } else {
            f[3].split(',').map(str::to_string).collect()
        };
        allowed_ips.sort();
        Ok(Self {
            public_key: f[0].parse().context("public key in wg dump")?,
            preshared_key: opt(f[1]),
            endpoint: opt(f[2]),
            allowed_ips,
            latest_handshake: f[4].parse()?,
            rx_bytes: f[5].parse()?,
            tx_bytes: f[6].parse()?,
            persistent_keepalive: opt(f[7]).map(|k| k.parse()).transpose()?,
        })
    }
}

impl WgInterface {
    /// Stops `wireguard-go` (the interface disappears, as if the node lost it). Idempotent.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        // SIGTERM first so wireguard-go removes its socket and TUN itself; SIGKILL if it lingers.
        crate::terminate(&mut child, Duration::from_secs(3));
        let _ = std::fs::remove_file(self.socket_path());
    }
}

impl Drop for WgInterface {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn netns_exists(name: &str) -> bool {
        let out = Command::new("ip").args(["netns", "list"]).output().unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .any(|l| l.split_whitespace().next() == Some(name))
    }

    /// Two namespaces joined by veth, a tunnel between them that carries a ping, and nothing left
    /// behind once the fixtures are dropped.
    #[test]
    fn tunnel_between_namespaces_and_cleanup() {
        let server = Netns::create("srv").unwrap();
        let client = Netns::create("cli").unwrap();
        Netns::link_veth(&server, "198.18.0.1/30", &client, "198.18.0.2/30").unwrap();
        client.ping("198.18.0.1".parse().unwrap()).unwrap();

        let (server_key, client_key) = (PrivateKey::generate(), PrivateKey::generate());
        let s_name = WgInterface::unique_name("s").unwrap();
        let c_name = WgInterface::unique_name("c").unwrap();
        let s = WgInterface::start(&server, &s_name, &server_key, 51820, "198.19.0.1/24").unwrap();
        let c = WgInterface::start(&client, &c_name, &client_key, 51821, "198.19.0.2/24").unwrap();
        let psk = PresharedKey::generate();
        s.set_peer(&c.public_key(), None, &["198.19.0.2/32"], None, Some(&psk))
            .unwrap();
        c.set_peer(
            &s.public_key(),
            Some("198.18.0.1:51820".parse().unwrap()),
            &["198.19.0.1/32"],
            Some(25),
            Some(&psk),
        )
        .unwrap();
        client.ping("198.19.0.1".parse().unwrap()).unwrap();
        let peers = s.peers().unwrap();
        assert_eq!(peers.len(), 1);
        assert_eq!(peers[0].public_key, client_key.public_key());
        assert!(peers[0].latest_handshake > 0, "{peers:?}");
        assert_eq!(peers[0].allowed_ips, vec!["198.19.0.2/32".to_string()]);
        assert_eq!(peers[0].preshared_key, Some(psk.to_base64()));

        let (socket, names) = (
            s.socket_path(),
            [server.name().to_string(), client.name().to_string()],
        );
        let pid = s.pid().unwrap();
        drop((s, c, server, client));
        assert!(!socket.exists(), "socket {} left behind", socket.display());
        assert!(
            !PathBuf::from(format!("/proc/{pid}")).exists(),
            "wireguard-go {pid} still runs"
        );
        for name in names {
            assert!(!netns_exists(&name), "namespace {name} left behind");
        }
    }
}
