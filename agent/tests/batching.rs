//! Consecutive entries reach a real `wireguard-go` interface in one device update each batch and
//! are acknowledged after it: counted through `pvpn_agent_device_updates_total`, with a
//! malformed entry in the middle of a batch, and with the interface gone while a batch waits.

mod support;

use support::*;

/// `pvpn_agent_device_updates_total` from the agent's `/metrics`.
async fn device_updates(agent: &RunningAgent) -> u64 {
    let (code, metrics) = agent.get("/metrics").await.unwrap();
    assert_eq!(code, 200);
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("pvpn_agent_device_updates_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no device update counter in {metrics}"))
}

async fn wait_acknowledged(node: &Node) {
    eventually("every entry to be acknowledged", || {
        (node.pending() == 0).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consecutive_entries_share_device_updates_and_a_bad_one_splits_the_batch() {
    let node = Node::start().unwrap();
    let mut relay = node.relay();
    relay.publish_snapshot();
    let agent = RunningAgent::start(node.config()).await;
    agent.wait_ready().await;
    let before = device_updates(&agent).await;

    // 150 upserts arriving together: read in reads of up to 100 entries, each applied as one
    // update. One update per entry would be 150.
    let specs: Vec<_> = (1..=150).map(peer).collect();
    let items: Vec<Publish> = specs.iter().map(Publish::Upsert).collect();
    relay.publish_together(&items);
    node.wait_for_peers(&relay.peers).await;
    wait_acknowledged(&node).await;
    let batched = device_updates(&agent).await - before;
    assert!(
        (1..=2).contains(&batched),
        "150 entries took {batched} device updates"
    );

    // A malformed entry in the middle: the two changes before it are applied (one update), it is
    // dead-lettered, then the two after it (one more update). The removal after it still finds
    // its peer, so the order held.
    let (a, b, c) = (peer(201), peer(202), peer(203));
    let before = device_updates(&agent).await;
    let ids = relay.publish_together(&[
        Publish::Upsert(&a),
        Publish::Upsert(&b),
        Publish::Raw(b"{not an event"),
        Publish::Upsert(&c),
        Publish::Remove(a.public_key),
    ]);
    node.wait_for_peers(&relay.peers).await;
    wait_acknowledged(&node).await;
    assert_eq!(device_updates(&agent).await - before, 2);
    let dead: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
        .arg(keys().node_dead_letter(&support::node()))
        .arg("-")
        .arg("+")
        .query(&mut node.conn())
        .unwrap();
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert!(dead[0].1.iter().any(|(_, v)| v == &ids[2]), "{dead:?}");
    let (_, metrics) = agent.get("/metrics").await.unwrap();
    assert!(
        metrics.contains(&format!("pvpn_agent_applied_revision {}", relay.revision)),
        "{metrics}"
    );
    agent.stop().await;
}

/// A batch whose interface is gone stays pending, every entry of it; once the interface is back
/// the agent restores it and only then acknowledges them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_is_acknowledged_only_once_the_interface_holds_it() {
    let mut node = Node::start().unwrap();
    let mut relay = node.relay();
    relay.publish_snapshot();
    let agent = RunningAgent::start(node.config()).await;
    agent.wait_ready().await;

    let name = node.wg.name().to_string();
    let key = node.server_key.clone();
    node.wg.stop();
    let specs: Vec<_> = (1..=3).map(peer).collect();
    let items: Vec<Publish> = specs.iter().map(Publish::Upsert).collect();
    relay.publish_together(&items);
    eventually_async("/healthz to report the failing interface", || async {
        match agent.get("/healthz").await {
            Ok((503, body)) if body.contains("interface") => Some(()),
            _ => None,
        }
    })
    .await;
    assert_eq!(
        node.pending(),
        3,
        "no entry of the batch may be acknowledged"
    );

    node.wg =
        pvpn_testkit::netns::WgInterface::start(&node.ns, &name, &key, 51820, "198.19.255.254/16")
            .unwrap();
    node.wait_for_peers(&relay.peers).await;
    wait_acknowledged(&node).await;
    agent.stop().await;
}
