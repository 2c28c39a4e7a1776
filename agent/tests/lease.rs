//! Two agents for one node (a cloned machine, a second unit): only the holder of the node lease
//! applies anything; the other stands by and says so (`/healthz`, `pvpn_agent_lease_held`), and
//! takes over when the holder stops, converging its interface to the snapshot. No revoked peer
//! stays on the interface of the agent that serves the node.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use pvpn_agent::wireguard::{InterfacePeer, ObfuscationParams, PeerChange, WgError, WireGuard};
use pvpn_common::PrivateKey;
use pvpn_common::obfuscation::Protocol;
use pvpn_testkit::netns::{Netns, WgInterface};
use redis::Commands;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_lease_holder_applies_and_the_standby_takes_over() {
    let node = Node::start().unwrap();
    let mut relay = node.relay();
    relay.publish_snapshot();
    let holder = RunningAgent::start(node.config()).await;
    holder.wait_ready().await;

    // A second agent for the same node, on an interface of its own.
    let clone_ns = Netns::create("agent-clone").unwrap();
    let clone_name = WgInterface::unique_name("ac").unwrap();
    let clone_wg = WgInterface::start(
        &clone_ns,
        &clone_name,
        &PrivateKey::generate(),
        51820,
        "198.19.255.254/16",
    )
    .unwrap();
    let mut clone_config = node.config();
    clone_config.wg_interface = clone_name.clone();
    let standby = RunningAgent::start(clone_config).await;
    eventually_async("the second agent to report standing by", || async {
        match standby.get("/healthz").await {
            Ok((503, body)) if body.contains("standby") => Some(()),
            _ => None,
        }
    })
    .await;
    let (_, metrics) = standby.get("/metrics").await.unwrap();
    assert!(metrics.contains("pvpn_agent_lease_held 0"), "{metrics}");

    let a = peer(1);
    let b = peer(2);
    relay.upsert(&a);
    relay.upsert(&b);
    relay.remove(&a.public_key);
    node.wait_for_peers(&relay.peers).await;
    eventually("every entry acknowledged by the holder", || {
        (node.pending() == 0).then_some(())
    })
    .await;
    assert!(
        !node.peers().contains_key(&a.public_key),
        "a revoked peer remains"
    );
    assert!(
        clone_wg.peers().unwrap().is_empty(),
        "the standby applied something"
    );
    let (_, metrics) = holder.get("/metrics").await.unwrap();
    assert!(metrics.contains("pvpn_agent_lease_held 1"), "{metrics}");

    // The holder stops: the standby takes the lease, reconciles its interface, and follows the
    // stream from then on.
    holder.stop().await;
    standby.wait_ready().await;
    let c = peer(3);
    relay.upsert(&c);
    relay.remove(&b.public_key);
    eventually("the new holder's interface to match the snapshot", || {
        let peers: std::collections::BTreeMap<_, _> = clone_wg
            .peers()
            .ok()?
            .into_iter()
            .map(|p| (p.public_key, p))
            .collect();
        (peers.len() == relay.peers.len()
            && relay
                .peers
                .values()
                .all(|s| peers.get(&s.public_key).is_some_and(|p| same(p, s))))
        .then_some(())
    })
    .await;
    let (_, metrics) = standby.get("/metrics").await.unwrap();
    assert!(metrics.contains("pvpn_agent_lease_held 1"), "{metrics}");
    standby.stop().await;
}

/// An interface whose reads take `delay`: a 60,000-peer node read on a starved CPU.
struct SlowReads {
    inner: Arc<dyn WireGuard>,
    delay: Duration,
}

impl WireGuard for SlowReads {
    fn check_exists(&self) -> Result<(), WgError> {
        self.inner.check_exists()
    }
    fn read_peers(&self) -> Result<Vec<InterfacePeer>, WgError> {
        std::thread::sleep(self.delay);
        self.inner.read_peers()
    }
    fn apply(&self, changes: &[PeerChange]) -> Result<(), WgError> {
        self.inner.apply(changes)
    }
    fn protocol(&self) -> Protocol {
        self.inner.protocol()
    }
    fn read_obfuscation(&self) -> Result<Option<ObfuscationParams>, WgError> {
        self.inner.read_obfuscation()
    }
    fn set_obfuscation(&self, params: &ObfuscationParams) -> Result<(), WgError> {
        self.inner.set_obfuscation(params)
    }
}

/// The lease is renewed on its own, whatever else the agent is doing: interface reads longer than
/// the whole lease time (5 s against 3 s), one at every heartbeat, never let it run out. When
/// renewals waited behind such reads, the key vanished within the first read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_interface_reads_never_let_the_lease_run_out() {
    let server = Node::start().unwrap();
    let mut relay = server.relay();
    relay.publish_snapshot();
    let mut config = server.config();
    config.heartbeat_interval = Duration::from_secs(1);
    config.stats_interval = Duration::from_secs(1);
    let wg = Arc::new(SlowReads {
        inner: userspace_interface(&config),
        delay: Duration::from_secs(5),
    });
    let agent = RunningAgent::start_with(config, wg).await;

    let lease_key = keys().node_lease(&node());
    let lease_ttl_ms = || -> i64 { server.conn().pttl(&lease_key).unwrap() };
    eventually("the agent to take the lease", || {
        (lease_ttl_ms() > 0).then_some(())
    })
    .await;
    let taken = Instant::now();
    // Four lease times, two and a half slow reads.
    while taken.elapsed() < Duration::from_secs(12) {
        let ttl = lease_ttl_ms();
        assert!(
            ttl > 0,
            "the lease ran out {:?} after it was taken (PTTL {ttl})",
            taken.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_, metrics) = agent.get("/metrics").await.unwrap();
    assert!(metrics.contains("pvpn_agent_lease_held 1"), "{metrics}");
    agent.stop().await;
}
