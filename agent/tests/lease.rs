//! Two agents for one node (a cloned machine, a second unit): only the holder of the node lease
//! applies anything; the other stands by and says so (`/healthz`, `pvpn_agent_lease_held`), and
//! takes over when the holder stops, converging its interface to the snapshot. No revoked peer
//! stays on the interface of the agent that serves the node.

mod support;

use pvpn_common::PrivateKey;
use pvpn_testkit::netns::{Netns, WgInterface};
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
