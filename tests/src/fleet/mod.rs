//! A real fleet for the fleet test (`tests/tests/fleet.rs`): Debian guests under QEMU with
//! systemd — a backend host and VPN nodes in two regions, WireGuard or AmneziaWG — provisioned
//! by `ansible/site.yml`
//! over SSH exactly as an operator runs it, with everything the guests reach served inside the
//! test's own namespace: a local apt repository (`scripts/build-fleet-repo.sh`), the local Bot
//! API server, and [`outside::Internet`] behind the nodes.
//!
//! # Layout
//!
//! - [`ansible`]: the inventory and `ansible-playbook` runs with their PLAY RECAP.
//! - [`devices`]: a user's devices, each with a received config's tunnel up.
//! - [`outside`]: "the internet" (a resolver and a whoami service) and client namespaces.
//! - [`units`]: systemd units in a guest: active, restarts, hardening in force.

pub mod ansible;
pub mod devices;
pub mod outside;
pub mod units;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use pvpn_common::obfuscation::Protocol;
use pvpn_testkit::botapi::BotApiServer;
use pvpn_testkit::vm::{DebianGuest, GuestNetwork, GuestOptions};
use serde_json::{Value, json};

use crate::binaries::Binaries;
use crate::process::ChildProcess;
use crate::tunnel::ClientTunnel;
use ansible::{Ansible, PlaybookRun};
use devices::{AwgDevice, Device};
use outside::{ClientNet, INTERNET_HOST, Internet};

/// The regions of the fleet: code and the name users pick.
pub const REGIONS: [(&str, &str); 2] = [("aa", "Atlantis"), ("bb", "Borealis")];
/// Where the apt repository and the Bot API server listen on the guests' bridge.
const REPO_PORT: u16 = 8080;
const BOT_API_PORT: u16 = 8081;
/// For one command in a guest.
pub const COMMAND: Duration = Duration::from_secs(120);

/// A VPN node's guest and what the inventory says about it.
pub struct Node {
    pub name: String,
    pub region: String,
    /// Its client subnet; the node's own tunnel address is the first host.
    pub subnet: String,
    pub tunnel_address: Ipv4Addr,
    pub protocol: Protocol,
    pub guest: DebianGuest,
    /// Whether the inventory lists it yet (a node is added on day two).
    pub provisioned: bool,
}

/// A node to boot: name, region code, client subnet and protocol.
pub type NodePlan<'a> = (&'a str, &'a str, &'a str, Protocol);

impl Node {
    fn new(plan: &NodePlan<'_>, guest: DebianGuest) -> Result<Self> {
        let (name, region, subnet, protocol) = *plan;
        let net: ipnet::Ipv4Net = subnet.parse()?;
        Ok(Self {
            name: name.to_string(),
            region: region.to_string(),
            subnet: subnet.to_string(),
            tunnel_address: Ipv4Addr::from(u32::from(net.network()) + 1),
            protocol,
            guest,
            provisioned: false,
        })
    }

    /// The interface the roles give the node (`pvpn_wg_interface`'s default).
    pub fn interface(&self) -> &'static str {
        match self.protocol {
            Protocol::WireGuard => "wg0",
            Protocol::AmneziaWg => "awg0",
        }
    }

    /// The command-line tool of the node's interface.
    pub fn tool(&self) -> &'static str {
        match self.protocol {
            Protocol::WireGuard => "wg",
            Protocol::AmneziaWg => "awg",
        }
    }

    /// The units a provisioned node runs: its interface's, the agent and the firewall.
    pub fn units(&self) -> [String; 3] {
        let quick = match self.protocol {
            Protocol::WireGuard => "wg-quick",
            Protocol::AmneziaWg => "awg-quick",
        };
        [
            format!("{quick}@{}.service", self.interface()),
            "pvpn-agent.service".to_string(),
            "nftables.service".to_string(),
        ]
    }

    pub fn endpoint(&self) -> String {
        format!("{}:51820", self.guest.addr())
    }
}

/// The node guests' memory: the agent and a kernel WireGuard interface.
pub fn node_options() -> GuestOptions {
    GuestOptions {
        memory_mib: 640,
        ..GuestOptions::default()
    }
}

pub struct Fleet {
    pub backend: DebianGuest,
    pub nodes: BTreeMap<String, Node>,
    /// Shared, so a test's Telegram user can borrow it while the fleet changes.
    pub bot_api: Arc<BotApiServer>,
    pub internet: Internet,
    pub ansible: Ansible,
    /// What `pvpn_binaries_dir` points at: stripped copies of the built binaries.
    pub binaries_dir: PathBuf,
    redis_passwords: BTreeMap<String, String>,
    secrets: (String, String),
    _repo_server: ChildProcess,
    pub work: PathBuf,
    pub net: Arc<GuestNetwork>,
}

fn secret() -> String {
    use rand::Rng;
    rand::thread_rng()
        .sample_iter(rand::distributions::Alphanumeric)
        .take(24)
        .map(char::from)
        .collect()
}

/// Copies the built binaries into `dir`, stripped with `strip_flag`, as an operator ships them.
pub fn ship_binaries(dir: &Path, strip_flag: &str) -> Result<()> {
    let bins = Binaries::locate()?;
    std::fs::create_dir_all(dir)?;
    for (name, path) in [
        ("pvpn-backend", &bins.backend),
        ("pvpnctl", &bins.ctl),
        ("pvpn-agent", &bins.agent),
    ] {
        let out = Command::new("strip")
            .arg(strip_flag)
            .arg("-o")
            .arg(dir.join(name))
            .arg(path)
            .output()
            .context("strip (binutils, scripts/setup.sh installs build-essential)")?;
        if !out.status.success() {
            bail!("strip {name}: {}", String::from_utf8_lossy(&out.stderr));
        }
    }
    Ok(())
}

/// The machine's own setup, before any operator tool: its apt mirror is the local repository
/// at `mirror`, and dpkg skips fsync (a throwaway disk; the time goes to TCG instead).
fn use_local_mirror(guest: &DebianGuest, mirror: Ipv4Addr) -> Result<()> {
    let sources = format!("deb [trusted=yes] http://{mirror}:{REPO_PORT}/ ./");
    guest
        .run_ok(
            &format!(
                "rm -f /etc/apt/sources.list /etc/apt/sources.list.d/* && \
                 echo '{sources}' > /etc/apt/sources.list.d/local-mirror.list && \
                 echo force-unsafe-io > /etc/dpkg/dpkg.cfg.d/test-unsafe-io && \
                 rm -rf /var/lib/apt/lists/* && apt-get update -qq"
            ),
            COMMAND,
        )
        .with_context(|| format!("pointing {}'s apt at the local repository", guest.addr()))?;
    Ok(())
}

/// An agent release in `dir`: the backend's binaries of `current` as they are, and a new
/// `pvpn-agent` (the same build stripped differently, so its bytes differ).
pub fn ship_agent_release(current: &Path, dir: &Path) -> Result<()> {
    let bins = Binaries::locate()?;
    std::fs::create_dir_all(dir)?;
    for name in ["pvpn-backend", "pvpnctl"] {
        std::fs::copy(current.join(name), dir.join(name))
            .with_context(|| format!("copying {name} into {}", dir.display()))?;
    }
    let out = Command::new("strip")
        .args(["--strip-debug", "-o"])
        .arg(dir.join("pvpn-agent"))
        .arg(&bins.agent)
        .output()
        .context("strip (binutils, scripts/setup.sh installs build-essential)")?;
    if !out.status.success() {
        bail!("strip pvpn-agent: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

impl Fleet {
    /// Boots the backend host and the nodes `(name, region, subnet, protocol)` in parallel, points their
    /// apt at the local repository, and starts what they reach. Nothing is provisioned yet, and
    /// no node is in the inventory until [`Fleet::add_to_inventory`] (a node booted now can
    /// join on day two without a boot of its own then).
    pub fn boot(nodes: &[NodePlan<'_>]) -> Result<Self> {
        // The fleet's apt repository (built once per machine and set of inputs).
        let repo = pvpn_testkit::vm::cached_build("build-fleet-repo.sh", &["Packages"])?;
        let net = GuestNetwork::create()?;
        let work =
            std::env::temp_dir().join(format!("pvpn-fleet-{}", pvpn_testkit::unique_suffix()));
        std::fs::create_dir_all(&work)?;
        let host = net.host_addr().to_string();
        let repo_server = ChildProcess::spawn(
            "apt-repo",
            Path::new("ip"),
            &[
                "netns",
                "exec",
                net.netns().name(),
                "/usr/bin/python3",
                "-m",
                "http.server",
                "--bind",
                &host,
                "--directory",
                &repo.to_string_lossy(),
                &REPO_PORT.to_string(),
            ],
            &[],
            &work,
        )?;
        let bot_api = Arc::new(BotApiServer::start_in_netns(
            net.netns(),
            SocketAddr::new(net.host_addr().into(), BOT_API_PORT),
        )?);
        let internet = Internet::start(&net, &work)?;

        // Every guest boots and gets its apt source in its own thread (one TCG guest's boot
        // waits mostly on its own vCPU); the binaries are stripped meanwhile.
        let mirror = net.host_addr();
        let binaries_dir = work.join("bin");
        let (backend, guests, shipped) = std::thread::scope(|scope| {
            let backend = scope.spawn(|| {
                let guest = DebianGuest::boot(&net)?;
                use_local_mirror(&guest, mirror)?;
                Ok(guest)
            });
            let guests: Vec<_> = nodes
                .iter()
                .map(|_| {
                    scope.spawn(|| {
                        let guest = DebianGuest::boot_with(&net, &node_options())?;
                        use_local_mirror(&guest, mirror)?;
                        Ok(guest)
                    })
                })
                .collect();
            let shipped = ship_binaries(&binaries_dir, "--strip-all");
            let join = |h: std::thread::ScopedJoinHandle<'_, Result<DebianGuest>>| {
                h.join()
                    .map_err(|_| anyhow::anyhow!("a boot thread panicked"))?
            };
            let backend = join(backend);
            let guests: Vec<Result<DebianGuest>> = guests.into_iter().map(join).collect();
            (backend, guests, shipped)
        });
        let backend = backend.context("booting the backend host")?;
        let mut fleet_nodes = BTreeMap::new();
        for (plan, guest) in nodes.iter().zip(guests) {
            let guest = guest.with_context(|| format!("booting {}", plan.0))?;
            fleet_nodes.insert(plan.0.to_string(), Node::new(plan, guest)?);
        }
        shipped?;
        let redis_passwords = nodes
            .iter()
            .map(|(n, ..)| (n.to_string(), secret()))
            .collect();
        Ok(Self {
            backend,
            nodes: fleet_nodes,
            bot_api,
            internet,
            ansible: Ansible::new(&work),
            binaries_dir,
            redis_passwords,
            secrets: (secret(), secret()),
            _repo_server: repo_server,
            work,
            net,
        })
    }

    /// Every booted guest, provisioned or not.
    pub fn guests(&self) -> impl Iterator<Item = &DebianGuest> {
        std::iter::once(&self.backend).chain(self.nodes.values().map(|n| &n.guest))
    }

    pub fn node(&self, name: &str) -> &Node {
        &self.nodes[name]
    }

    fn ssh_vars(guest: &DebianGuest) -> Value {
        json!({
            "ansible_host": guest.addr().to_string(),
            "ansible_user": "root",
            "ansible_ssh_private_key_file": guest.ssh_key(),
            "ansible_ssh_common_args": format!(
                "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o ControlPath={}",
                guest.ssh_control_path().display()
            ),
        })
    }

    /// The inventory of the backend host and every provisioned node, as an operator writes it:
    /// regions, secrets, the bot's token and Bot API server, and each node's region and subnet.
    pub fn inventory(&self) -> Value {
        let regions: serde_json::Map<String, Value> = REGIONS
            .iter()
            .map(|(code, name)| (code.to_string(), json!({ "name": name })))
            .collect();
        let mut region_groups = serde_json::Map::new();
        for (code, _) in REGIONS {
            let hosts: serde_json::Map<String, Value> = self
                .nodes
                .values()
                .filter(|n| n.provisioned && n.region == code)
                .map(|n| {
                    let mut vars = Self::ssh_vars(&n.guest);
                    vars["pvpn_node_subnet"] = json!(n.subnet);
                    if n.protocol == Protocol::AmneziaWg {
                        vars["pvpn_protocol"] = json!("amneziawg");
                    }
                    (n.name.clone(), vars)
                })
                .collect();
            region_groups.insert(
                format!("region_{code}"),
                json!({ "vars": { "pvpn_region": code }, "hosts": hosts }),
            );
        }
        let node_passwords: BTreeMap<&String, &String> = self
            .redis_passwords
            .iter()
            .filter(|(n, _)| self.nodes.get(*n).is_some_and(|n| n.provisioned))
            .collect();
        let mut backend = Self::ssh_vars(&self.backend);
        backend["pvpn_redis_bind"] = json!(["127.0.0.1", self.backend.addr().to_string()]);
        json!({
            "all": {
                "vars": {
                    "pvpn_binaries_dir": self.binaries_dir,
                    "pvpn_regions": regions,
                    "pvpn_postgres_password": self.secrets.0,
                    "pvpn_redis_backend_password": self.secrets.1,
                    "pvpn_redis_node_passwords": node_passwords,
                    // The resolver the client configs name: "the internet"'s.
                    "pvpn_node_dns": [INTERNET_HOST.to_string()],
                },
                "children": {
                    "backend": {
                        "hosts": { "backend": backend },
                        "vars": {
                            "pvpn_backend_telegram_bot_token": self.bot_api.token(),
                            "pvpn_backend_telegram_api_url": self.bot_api.url(),
                        },
                    },
                    "vpn_nodes": { "children": region_groups },
                },
            }
        })
    }

    /// Marks `nodes` as provisioned (in the inventory from now on).
    pub fn add_to_inventory(&mut self, nodes: &[&str]) {
        for name in nodes {
            if let Some(node) = self.nodes.get_mut(*name) {
                node.provisioned = true;
            }
        }
    }

    /// Writes the inventory as it stands and runs `site.yml` with it.
    pub fn run_site(&mut self) -> Result<PlaybookRun> {
        self.run_playbook("site.yml")
    }

    /// Writes the inventory as it stands and runs `playbook` with it.
    pub fn run_playbook(&mut self, playbook: &str) -> Result<PlaybookRun> {
        self.ansible.write_inventory(&self.inventory())?;
        self.ansible.run(self.net.netns(), playbook, &[])
    }

    /// A user's device with `config` (from the bot, for `node`) brought up: a WireGuard one in
    /// a client namespace on the host linked by `198.18.<link>.0/24`, an AmneziaWG one in a
    /// namespace inside the backend host's guest (see [`devices`]).
    pub fn device(&self, node: &str, link: u8, config: &str) -> Result<Device> {
        match self.node(node).protocol {
            Protocol::WireGuard => {
                let net = ClientNet::create(&self.net, link)?;
                net.use_dns_of(config)?;
                let tunnel = ClientTunnel::up(&net.ns, config)?;
                Ok(Device::Host { tunnel, net })
            }
            Protocol::AmneziaWg => {
                let ns = format!("awgc{link}");
                let addr = self.net.spare_addr()?;
                Ok(Device::InGuest(AwgDevice::up(
                    &self.backend,
                    &ns,
                    addr,
                    config,
                )?))
            }
        }
    }

    /// `pvpnctl <args>` on the backend host, through the wrapper the backend role installs.
    pub fn pvpnctl(&self, args: &str) -> Result<String> {
        self.backend.run_ok(&format!("pvpnctl {args}"), COMMAND)
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        // The inventory, binaries and logs; the guests, servers and namespaces go with the
        // fields, in their declaration order.
        let _ = std::fs::remove_dir_all(&self.work);
    }
}
