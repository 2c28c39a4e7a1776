//! Harness for the agent on kernel WireGuard or AmneziaWG: a Debian guest under QEMU
//! (pvpn-testkit's `vm`) running the real `pvpn-agent` binary with `PVPN_WG_BACKEND=kernel` or
//! `amneziawg`, Redis on the host side of the guest's bridge (TLS only, the guest trusting its
//! CA, as a provisioned node does), and kernel interfaces created and read with `ip` and `wg`
//! (or `awg`, with the module built by `scripts/build-awg.sh`) in the guest.

#![allow(dead_code)]

pub mod scenarios;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use pvpn_common::obfuscation::Protocol;
use pvpn_common::redis_keys::agent_group;
use pvpn_common::wire::Heartbeat;
use pvpn_common::{PeerSpec, PrivateKey, PublicKey};
use pvpn_testkit::netns::DumpPeer;
use pvpn_testkit::redis_server::RedisServer;
use pvpn_testkit::vm::{DebianGuest, GuestNetwork};
use redis::Commands;

use crate::support::{NODE, REGION, Relay, SUBNET, keys, node, same};

const AGENT_BIN: &str = env!("CARGO_BIN_EXE_pvpn-agent");
/// Where the agent serves `/healthz` and `/metrics` inside the guest.
const AGENT_HTTP_PORT: u16 = 9100;
/// Where the guest keeps the Redis server's CA certificate (as the Ansible role puts it).
const REDIS_CA_IN_GUEST: &str = "/etc/pvpn/redis-ca.crt";
/// For one command in the guest (a `wg show dump` of 20,000 peers included).
pub const COMMAND: Duration = Duration::from_secs(120);
/// Generous: TCG on a shared 2-core machine; a deadline, not a timing assertion.
pub const DEADLINE: Duration = Duration::from_secs(180);

/// A booted guest with the agent binary in it, and a Redis the guest reaches on the bridge.
pub struct GuestNode {
    pub guest: DebianGuest,
    pub redis: RedisServer,
    pub net: Arc<GuestNetwork>,
    /// The kind of interface this node's scenarios create, read and hand to the agent.
    pub protocol: Protocol,
}

impl GuestNode {
    /// A guest whose agent reaches Redis over TLS only, trusting the server's CA, as a
    /// provisioned node does.
    pub fn boot() -> Result<Self> {
        Self::boot_with(true)
    }

    /// A guest whose agent reaches Redis by plain TCP across the test's private bridge: for
    /// tests about sizes. With TLS in a debug build on the emulated CPU (no AES instructions)
    /// the agent's 3 s node lease lapsed again and again while 10,000-peer snapshots were read.
    pub fn boot_with_plain_redis() -> Result<Self> {
        Self::boot_with(false)
    }

    fn boot_with(tls: bool) -> Result<Self> {
        let net = GuestNetwork::create()?;
        let redis = match tls {
            true => RedisServer::start_in_netns_tls(net.netns(), net.host_addr())?,
            false => RedisServer::start_in_netns(net.netns(), net.host_addr())?,
        };
        let guest = DebianGuest::boot(&net)?;
        guest.copy_in(
            std::path::Path::new(AGENT_BIN),
            "/usr/local/bin/pvpn-agent",
            0o755,
        )?;
        if let Some(ca) = redis.ca_file() {
            guest.run_ok("mkdir -p /etc/pvpn", COMMAND)?;
            guest.copy_in(ca, REDIS_CA_IN_GUEST, 0o644)?;
        }
        Ok(Self {
            guest,
            redis,
            net,
            protocol: Protocol::WireGuard,
        })
    }

    /// A booted guest with the AmneziaWG module loaded and `awg`/`awg-quick` installed, whose
    /// interfaces are AmneziaWG ones; its agent reaches Redis over TLS.
    pub fn boot_amneziawg() -> Result<Self> {
        let mut node = Self::boot()?;
        pvpn_testkit::vm::install_amneziawg(&node.guest)?;
        node.protocol = Protocol::AmneziaWg;
        Ok(node)
    }

    /// `wg` or `awg`.
    pub fn tool(&self) -> &'static str {
        match self.protocol {
            Protocol::WireGuard => "wg",
            Protocol::AmneziaWg => "awg",
        }
    }

    pub fn conn(&self) -> redis::Connection {
        self.redis.connection().expect("redis connection")
    }

    /// A relay writing to this node's Redis, starting at revision 0 with no peers.
    pub fn relay(&self) -> Relay {
        Relay {
            conn: self.conn(),
            keys: keys(),
            node: node(),
            revision: 0,
            peers: BTreeMap::new(),
        }
    }

    /// Runs `script` in the guest and fails unless it exits 0.
    pub fn sh(&self, script: &str) -> String {
        self.guest
            .run_ok(script, COMMAND)
            .unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// Creates a kernel WireGuard (or AmneziaWG) interface with `key`, `port` and `address` and
    /// brings it up: what the node's interface unit does, nothing more.
    pub fn create_interface(&self, name: &str, key: &PrivateKey, port: u16, address: &str) {
        let (kind, tool) = match self.protocol {
            Protocol::WireGuard => ("wireguard", "wg"),
            Protocol::AmneziaWg => ("amneziawg", "awg"),
        };
        let key_file = format!("/run/{name}.key");
        self.guest
            .write_file(&key_file, key.to_base64().as_bytes(), 0o600)
            .expect("writing the private key");
        self.sh(&format!(
            "ip link add {name} type {kind} && {tool} set {name} private-key {key_file} \
             listen-port {port} && rm {key_file} && ip addr add {address} dev {name} && \
             ip link set {name} up"
        ));
    }

    pub fn interface_exists(&self, name: &str) -> bool {
        self.guest
            .run(&format!("ip link show {name}"), COMMAND)
            .expect("ip link show")
            .success()
    }

    /// The interface's peers by public key, read with `wg show <name> dump` in the guest.
    pub fn peers(&self, iface: &str) -> BTreeMap<PublicKey, DumpPeer> {
        let text = self.sh(&format!("{} show {iface} dump", self.tool()));
        text.lines()
            .skip(1)
            .map(|line| DumpPeer::parse(line).expect("a wg dump line"))
            .map(|p| (p.public_key, p))
            .collect()
    }

    /// Waits until `iface` holds exactly `specs` (keys, allowed IPs, preshared keys).
    pub fn wait_for_peers(&self, iface: &str, specs: &BTreeMap<PublicKey, PeerSpec>) {
        self.wait_until("the interface to hold the desired peers", || {
            let peers = self.peers(iface);
            (peers.len() == specs.len()
                && specs
                    .values()
                    .all(|s| peers.get(&s.public_key).is_some_and(|p| same(p, s))))
            .then_some(())
        })
    }

    /// Entries delivered to the agent's group and not acknowledged.
    pub fn pending(&self) -> usize {
        let reply: redis::Value = redis::cmd("XPENDING")
            .arg(keys().events())
            .arg(agent_group(&node()))
            .query(&mut self.conn())
            .expect("XPENDING");
        match reply {
            redis::Value::Array(items) => match items.first() {
                Some(redis::Value::Int(n)) => usize::try_from(*n).unwrap_or(0),
                _ => 0,
            },
            _ => 0,
        }
    }

    pub fn heartbeat(&self) -> Option<Heartbeat> {
        let text: Option<String> = self.conn().get(keys().node_heartbeat(&node())).ok()?;
        pvpn_common::wire::decode(text?.as_bytes()).ok()
    }

    /// Empties Redis between scenarios (a fresh region, as if the backend had just started).
    pub fn flush_redis(&self) {
        let _: () = redis::cmd("FLUSHALL")
            .query(&mut self.conn())
            .expect("FLUSHALL");
    }

    /// Starts the agent in the guest on `iface` (a transient systemd unit; SIGTERM stops it).
    pub fn start_agent(&self, iface: &str) -> GuestAgent<'_> {
        let unit = format!("pvpn-agent-{iface}-{}", pvpn_testkit::unique_suffix());
        let backend = match self.protocol {
            Protocol::WireGuard => "kernel",
            Protocol::AmneziaWg => "amneziawg",
        };
        let transport = match self.redis.ca_file() {
            Some(_) => ("PVPN_REDIS_CA_FILE", REDIS_CA_IN_GUEST),
            None => ("PVPN_REDIS_ALLOW_PLAINTEXT", "true"),
        };
        let env = [
            ("REDIS_URL", self.redis.network_url()),
            (transport.0, transport.1.to_string()),
            ("PVPN_REGION", REGION.to_string()),
            ("PVPN_NODE", NODE.to_string()),
            ("PVPN_SUBNET", SUBNET.to_string()),
            ("PVPN_WG_INTERFACE", iface.to_string()),
            ("PVPN_WG_BACKEND", backend.to_string()),
            ("PVPN_METRICS_ADDR", format!("127.0.0.1:{AGENT_HTTP_PORT}")),
            ("PVPN_HEARTBEAT_INTERVAL_SECS", "1".to_string()),
            ("PVPN_STATS_INTERVAL_SECS", "1".to_string()),
            ("RUST_LOG", "info".to_string()),
        ];
        let env: String = env.iter().map(|(k, v)| format!(" -E {k}={v}")).collect();
        self.sh(&format!(
            "systemd-run --quiet --unit={unit}{env} /usr/local/bin/pvpn-agent"
        ));
        GuestAgent {
            node: self,
            unit,
            stopped: false,
        }
    }

    /// Polls `check` until it returns `Some`; on timeout panics with the agents' journal and the
    /// serial console's tail.
    pub fn wait_until<T>(&self, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(value) = check() {
                return value;
            }
            if Instant::now() > deadline {
                let journal = self
                    .guest
                    .run(
                        "journalctl --no-pager -o short-monotonic -u 'pvpn-agent-*' | tail -n 60",
                        COMMAND,
                    )
                    .map(|o| o.stdout)
                    .unwrap_or_default();
                panic!(
                    "timed out after {DEADLINE:?} waiting for {what}\nagent journal:\n{journal}\n\
                     console:\n{}",
                    self.guest.console_tail(30)
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// The agent running in the guest; stopped (SIGTERM) on drop if the test did not stop it.
pub struct GuestAgent<'a> {
    node: &'a GuestNode,
    pub unit: String,
    stopped: bool,
}

impl GuestAgent<'_> {
    /// `GET path` on the agent's HTTP endpoint, from inside the guest: (status, body).
    pub fn get(&self, path: &str) -> Result<(u16, String)> {
        let script = format!(
            "exec 3<>/dev/tcp/127.0.0.1/{AGENT_HTTP_PORT} && \
             printf 'GET {path} HTTP/1.0\\r\\nHost: agent\\r\\n\\r\\n' >&3 && cat <&3"
        );
        let out = self.node.guest.run(&script, COMMAND)?;
        if !out.success() {
            bail!("no answer from the agent: {}", out.stderr.trim());
        }
        let status = out
            .stdout
            .split_whitespace()
            .nth(1)
            .context("no status line")?
            .parse()?;
        let body = out
            .stdout
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        Ok((status, body))
    }

    pub fn wait_ready(&self) {
        self.node
            .wait_until("the agent to be in sync (/healthz 200)", || {
                matches!(self.get("/healthz"), Ok((200, _))).then_some(())
            })
    }

    /// Whether the unit still runs.
    pub fn is_running(&self) -> bool {
        self.node
            .guest
            .run(
                &format!("systemctl is-active --quiet {}", self.unit),
                COMMAND,
            )
            .is_ok_and(|o| o.success())
    }

    /// The agent's log lines.
    pub fn journal(&self) -> String {
        self.node.sh(&format!(
            "journalctl --no-pager -o cat -u {} || true",
            self.unit
        ))
    }

    /// SIGTERM, and waits for the process to exit (systemctl stop waits).
    pub fn stop(mut self) {
        self.stopped = true;
        self.node.sh(&format!("systemctl stop {}", self.unit));
    }
}

impl Drop for GuestAgent<'_> {
    fn drop(&mut self) {
        if !self.stopped {
            let _ = self
                .node
                .guest
                .run(&format!("systemctl stop {}", self.unit), COMMAND);
        }
    }
}

/// Sets `relay`'s snapshot to `peers` at the next revision, without stream entries (what a
/// reconcile then has to bring the interface to).
pub fn replace_snapshot(relay: &mut Relay, peers: impl IntoIterator<Item = PeerSpec>) {
    relay.revision += 1;
    relay.peers = peers.into_iter().map(|p| (p.public_key, p)).collect();
    relay.publish_snapshot();
}

/// Fails unless the interface holds exactly `specs`, comparing every peer.
pub fn assert_same_peers(
    actual: &BTreeMap<PublicKey, DumpPeer>,
    specs: &BTreeMap<PublicKey, PeerSpec>,
) -> Result<()> {
    if actual.len() != specs.len() {
        bail!(
            "{} peers on the interface, {} wanted",
            actual.len(),
            specs.len()
        );
    }
    for spec in specs.values() {
        match actual.get(&spec.public_key) {
            Some(peer) if same(peer, spec) => {}
            other => bail!("peer {} is {other:?}, wanted {spec:?}", spec.public_key),
        }
    }
    Ok(())
}
