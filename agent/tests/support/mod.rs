//! Test harness for the agent: a private Redis, a `wireguard-go` interface in its own namespace,
//! the agent running in-process, and a [`Relay`] that writes snapshots and stream entries exactly
//! as the contract says the backend's relay does (hash + revision + XADD in one MULTI).

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use pvpn_agent::{AgentError, Config, WgBackend};
use pvpn_common::keys::KeyPair;
use pvpn_common::redis_keys::{RegionKeys, agent_group};
use pvpn_common::wire::{EVENT_FIELD, Heartbeat, StreamEvent, encode};
use pvpn_common::{NodeName, PeerSpec, PresharedKey, PrivateKey, PublicKey, RegionCode};
use pvpn_testkit::netns::{DumpPeer, Netns, WgInterface};
use pvpn_testkit::redis_server::RedisServer;
use redis::Commands;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub const REGION: &str = "nl";
pub const NODE: &str = "nl-1";
/// The test node's client subnet: [`peer`] addresses are inside it.
pub const SUBNET: &str = "198.19.0.0/16";
/// Generous: a deadline for things that take milliseconds, not a timing assertion.
pub const DEADLINE: Duration = Duration::from_secs(30);

pub fn node() -> NodeName {
    NodeName::new(NODE).unwrap()
}

pub fn keys() -> RegionKeys {
    RegionKeys::new(&RegionCode::new(REGION).unwrap())
}

/// A client peer with a fresh key, one client address of [`SUBNET`] numbered by `n`, and a PSK.
pub fn peer(n: u32) -> PeerSpec {
    PeerSpec {
        public_key: KeyPair::generate().public,
        allowed_ips: vec![
            format!("198.19.{}.{}/32", n / 250, 2 + n % 250)
                .parse()
                .unwrap(),
        ],
        preshared_key: Some(PresharedKey::generate()),
        persistent_keepalive: None,
    }
}

/// A server namespace with an agent-managed `wireguard-go` interface, and a private Redis.
pub struct Node {
    pub redis: RedisServer,
    pub wg: WgInterface,
    pub ns: Netns,
    pub server_key: PrivateKey,
}

impl Node {
    pub fn start() -> Result<Self> {
        Self::with_redis(RedisServer::start()?)
    }

    /// A node whose Redis speaks TLS only; [`Node::config`] trusts its CA.
    pub fn start_tls() -> Result<Self> {
        Self::with_redis(RedisServer::start_tls()?)
    }

    fn with_redis(redis: RedisServer) -> Result<Self> {
        let ns = Netns::create("agent")?;
        let server_key = PrivateKey::generate();
        let name = WgInterface::unique_name("ag")?;
        let wg = WgInterface::start(&ns, &name, &server_key, 51820, "198.19.255.254/16")?;
        Ok(Self {
            redis,
            wg,
            ns,
            server_key,
        })
    }

    pub fn config(&self) -> Config {
        let url = self.redis.url();
        let ca_file = self.redis.ca_file().map(|p| p.display().to_string());
        let iface = self.wg.name().to_string();
        Config::load(|key| match key {
            "REDIS_URL" => Some(url.clone()),
            "PVPN_REDIS_CA_FILE" => ca_file.clone(),
            "PVPN_REGION" => Some(REGION.into()),
            "PVPN_NODE" => Some(NODE.into()),
            "PVPN_SUBNET" => Some(SUBNET.into()),
            "PVPN_WG_INTERFACE" => Some(iface.clone()),
            "PVPN_WG_BACKEND" => Some("userspace".into()),
            "PVPN_HEARTBEAT_INTERVAL_SECS" => Some("1".into()),
            "PVPN_STATS_INTERVAL_SECS" => Some("1".into()),
            _ => None,
        })
        .expect("test config is valid")
    }

    pub fn relay(&self) -> Relay {
        Relay {
            conn: self.redis.connection().expect("redis connection"),
            keys: keys(),
            node: node(),
            revision: 0,
            peers: BTreeMap::new(),
        }
    }

    pub fn conn(&self) -> redis::Connection {
        self.redis.connection().expect("redis connection")
    }

    /// The interface's peers by public key, read with `wg show dump`.
    pub fn peers(&self) -> BTreeMap<PublicKey, DumpPeer> {
        self.wg
            .peers()
            .expect("wg show dump")
            .into_iter()
            .map(|p| (p.public_key, p))
            .collect()
    }

    /// Waits until the interface holds exactly `specs` (keys, allowed IPs, preshared keys).
    pub async fn wait_for_peers(&self, specs: &BTreeMap<PublicKey, PeerSpec>) {
        eventually("the interface to hold the desired peers", || {
            let peers = self.peers();
            (peers.len() == specs.len()
                && specs
                    .values()
                    .all(|s| peers.get(&s.public_key).is_some_and(|p| same(p, s))))
            .then_some(())
        })
        .await
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
                Some(redis::Value::Int(n)) => *n as usize,
                _ => 0,
            },
            _ => 0,
        }
    }

    /// The agent's latest heartbeat, if its key exists.
    pub fn heartbeat(&self) -> Option<Heartbeat> {
        let text: Option<String> = self.conn().get(keys().node_heartbeat(&node())).ok()?;
        pvpn_common::wire::decode(text?.as_bytes()).ok()
    }
}

/// Whether an interface peer matches a spec.
pub fn same(p: &DumpPeer, s: &PeerSpec) -> bool {
    let mut ips: Vec<String> = s.allowed_ips.iter().map(|n| n.to_string()).collect();
    ips.sort();
    p.allowed_ips == ips && p.preshared_key == s.preshared_key.as_ref().map(|k| k.to_base64())
}

/// One entry of [`Relay::publish_together`].
pub enum Publish<'a> {
    Upsert(&'a PeerSpec),
    Remove(PublicKey),
    /// An `event` field that is not a valid event.
    Raw(&'a [u8]),
}

/// Writes what the backend's relay writes: for each change, the node's snapshot hash, its
/// revision and the stream entry, in one MULTI.
pub struct Relay {
    pub conn: redis::Connection,
    pub keys: RegionKeys,
    pub node: NodeName,
    pub revision: u64,
    pub peers: BTreeMap<PublicKey, PeerSpec>,
}

impl Relay {
    /// Publishes the whole snapshot at the current revision without an event (the relay's
    /// republish after Redis lost its data, or the initial state).
    pub fn publish_snapshot(&mut self) {
        let key = self.keys.node_peers(&self.node);
        let mut pipe = redis::pipe();
        pipe.atomic().del(&key).ignore();
        for chunk in self.peers.values().collect::<Vec<_>>().chunks(1000) {
            let items: Vec<(String, String)> = chunk
                .iter()
                .map(|s| (s.public_key.to_base64(), encode(*s)))
                .collect();
            pipe.hset_multiple(&key, &items).ignore();
        }
        pipe.set(self.keys.node_revision(&self.node), self.revision)
            .ignore();
        pipe.query::<()>(&mut self.conn)
            .expect("publishing the snapshot");
    }

    /// Sets the node's epoch key, as the backend's relay does with every republish.
    pub fn set_epoch(&mut self, epoch: u64) {
        self.conn
            .set::<_, _, ()>(self.keys.node_epoch(&self.node), epoch)
            .expect("setting the epoch");
    }

    /// The next revision's upsert: snapshot + revision + stream entry. Returns the entry id.
    pub fn upsert(&mut self, spec: &PeerSpec) -> String {
        self.revision += 1;
        self.peers.insert(spec.public_key, spec.clone());
        let event = StreamEvent::PeerUpsert {
            node: self.node.clone(),
            revision: self.revision,
            peer: spec.clone(),
        };
        let mut pipe = redis::pipe();
        pipe.atomic()
            .hset(
                self.keys.node_peers(&self.node),
                spec.public_key.to_base64(),
                encode(spec),
            )
            .ignore();
        self.finish(pipe, &event)
    }

    /// The next revision's interface change (an AmneziaWG profile set with `pvpnctl`): the
    /// node's interface key (plain JSON) + revision + stream entry.
    pub fn set_interface(&mut self, spec: &pvpn_common::obfuscation::InterfaceSpec) -> String {
        self.revision += 1;
        let event = StreamEvent::InterfaceSet {
            node: self.node.clone(),
            revision: self.revision,
            interface: spec.clone(),
        };
        let json = serde_json::to_string(spec).expect("a spec serializes");
        let mut pipe = redis::pipe();
        pipe.atomic()
            .set(self.keys.node_interface(&self.node), json)
            .ignore();
        self.finish(pipe, &event)
    }

    /// The next revision's removal.
    pub fn remove(&mut self, key: &PublicKey) -> String {
        self.revision += 1;
        self.peers.remove(key);
        let event = StreamEvent::PeerRemove {
            node: self.node.clone(),
            revision: self.revision,
            public_key: *key,
        };
        let mut pipe = redis::pipe();
        pipe.atomic()
            .hdel(self.keys.node_peers(&self.node), key.to_base64())
            .ignore();
        self.finish(pipe, &event)
    }

    /// Changes the snapshot as a revision would, without a stream entry: the entry was lost
    /// (trimmed, or Redis dropped it).
    pub fn upsert_without_event(&mut self, spec: &PeerSpec) {
        self.revision += 1;
        self.peers.insert(spec.public_key, spec.clone());
        let mut pipe = redis::pipe();
        pipe.atomic()
            .hset(
                self.keys.node_peers(&self.node),
                spec.public_key.to_base64(),
                encode(spec),
            )
            .ignore()
            .set(self.keys.node_revision(&self.node), self.revision)
            .ignore();
        pipe.query::<()>(&mut self.conn).expect("snapshot change");
    }

    fn finish(&mut self, mut pipe: redis::Pipeline, event: &StreamEvent) -> String {
        pipe.set(self.keys.node_revision(&self.node), self.revision)
            .ignore()
            .cmd("XADD")
            .arg(self.keys.events())
            .arg("MAXLEN")
            .arg("~")
            .arg(100_000)
            .arg("*")
            .arg(EVENT_FIELD)
            .arg(event.encode());
        let (id,): (String,) = pipe.query(&mut self.conn).expect("publishing an event");
        id
    }

    /// Several entries in one MULTI, each as [`Relay::upsert`] / [`Relay::remove`] would write
    /// it (or raw, for malformed input): an agent blocked on the stream gets them in one read.
    pub fn publish_together(&mut self, items: &[Publish]) -> Vec<String> {
        let mut pipe = redis::pipe();
        pipe.atomic();
        for item in items {
            let event = match item {
                Publish::Raw(bytes) => {
                    pipe.cmd("XADD")
                        .arg(self.keys.events())
                        .arg("*")
                        .arg(EVENT_FIELD)
                        .arg(*bytes);
                    continue;
                }
                Publish::Upsert(spec) => {
                    self.revision += 1;
                    self.peers.insert(spec.public_key, (*spec).clone());
                    pipe.hset(
                        self.keys.node_peers(&self.node),
                        spec.public_key.to_base64(),
                        encode(spec),
                    )
                    .ignore();
                    StreamEvent::PeerUpsert {
                        node: self.node.clone(),
                        revision: self.revision,
                        peer: (*spec).clone(),
                    }
                }
                Publish::Remove(key) => {
                    self.revision += 1;
                    self.peers.remove(key);
                    pipe.hdel(self.keys.node_peers(&self.node), key.to_base64())
                        .ignore();
                    StreamEvent::PeerRemove {
                        node: self.node.clone(),
                        revision: self.revision,
                        public_key: *key,
                    }
                }
            };
            pipe.set(self.keys.node_revision(&self.node), self.revision)
                .ignore()
                .cmd("XADD")
                .arg(self.keys.events())
                .arg("*")
                .arg(EVENT_FIELD)
                .arg(event.encode());
        }
        pipe.query(&mut self.conn)
            .expect("publishing entries together")
    }

    /// A reconcile request, as `pvpnctl reconcile` publishes it.
    pub fn request_reconcile(&mut self, request_id: &str) -> String {
        let event = StreamEvent::Reconcile {
            node: Some(self.node.clone()),
            request_id: request_id.to_string(),
        };
        self.xadd_raw(&[(EVENT_FIELD, event.encode().as_bytes())])
    }

    /// Any entry, for malformed input.
    pub fn xadd_raw(&mut self, fields: &[(&str, &[u8])]) -> String {
        let mut cmd = redis::cmd("XADD");
        cmd.arg(self.keys.events()).arg("*");
        for (name, value) in fields {
            cmd.arg(*name).arg(*value);
        }
        cmd.query(&mut self.conn).expect("XADD")
    }
}

/// The agent running in this process, stopped by [`RunningAgent::stop`].
pub struct RunningAgent {
    pub http: SocketAddr,
    stop: CancellationToken,
    task: JoinHandle<Result<(), AgentError>>,
}

impl RunningAgent {
    pub async fn start(config: Config) -> Self {
        let wg = userspace_interface(&config);
        Self::start_with(config, wg).await
    }

    /// The agent driving `wg`, which may wrap the configured interface (to slow it down, say).
    pub async fn start_with(
        config: Config,
        wg: std::sync::Arc<dyn pvpn_agent::wireguard::WireGuard>,
    ) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let http = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        let task = tokio::spawn(pvpn_agent::serve(config, wg, listener, stop.clone()));
        Self { http, stop, task }
    }

    /// Asks the agent to stop (like SIGTERM) and waits for it to return.
    pub async fn stop(mut self) {
        self.stop.cancel();
        let result = tokio::time::timeout(DEADLINE, &mut self.task)
            .await
            .expect("the agent stops on request")
            .expect("the agent task does not panic");
        result.expect("the agent returns Ok after shutdown");
    }

    /// `GET path` on the agent's HTTP endpoint: (status code, body).
    pub async fn get(&self, path: &str) -> Result<(u16, String)> {
        http_get(self.http, path).await
    }

    /// Waits until `/healthz` answers 200.
    pub async fn wait_ready(&self) {
        eventually_async("the agent to be in sync (/healthz 200)", || async {
            matches!(self.get("/healthz").await, Ok((200, _))).then_some(())
        })
        .await
    }
}

/// The configured `wireguard-go` interface, through `wireguard-control`'s userspace backend.
pub fn userspace_interface(
    config: &Config,
) -> std::sync::Arc<pvpn_agent::wireguard::control::ControlWireGuard> {
    std::sync::Arc::new(
        pvpn_agent::wireguard::control::ControlWireGuard::new(
            &config.wg_interface,
            WgBackend::Userspace,
        )
        .unwrap(),
    )
}

impl Drop for RunningAgent {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub async fn http_get(addr: SocketAddr, path: &str) -> Result<(u16, String)> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: agent\r\n\r\n").as_bytes())
        .await?;
    let mut raw = String::new();
    stream.read_to_string(&mut raw).await?;
    let status = raw
        .split_whitespace()
        .nth(1)
        .context("no status line")?
        .parse()?;
    let Some((_, body)) = raw.split_once("\r\n\r\n") else {
        bail!("no body in {raw:?}");
    };
    Ok((status, body.to_string()))
}

/// Polls `check` until it returns `Some`, panicking with `what` after [`DEADLINE`].
pub async fn eventually<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    eventually_async(what, || std::future::ready(check())).await
}

pub async fn eventually_async<T, F: Future<Output = Option<T>>>(
    what: &str,
    mut check: impl FnMut() -> F,
) -> T {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out after {DEADLINE:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
