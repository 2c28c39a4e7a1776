//! A rolled-back Redis never rolls back the interface: against a real `wireguard-go`, the agent
//! takes a snapshot older than what it applied only under a higher node epoch (the backend
//! republished from PostgreSQL); under the same or an older epoch it keeps the interface and
//! reports the stale snapshot on `/healthz` and in its metrics.

mod support;

use std::collections::BTreeMap;

use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_snapshot_is_taken_only_under_a_higher_epoch() {
    let node = Node::start().unwrap();
    let mut relay = node.relay();
    let (a, b) = (peer(1), peer(2));
    relay.upsert(&a);
    relay.upsert(&b);
    relay.set_epoch(100);
    let agent = RunningAgent::start(node.config()).await;
    node.wait_for_peers(&relay.peers).await;
    agent.wait_ready().await;
    let both = relay.peers.clone();

    // Redis comes back from an older copy: revision 1, without b, at the same epoch, then at
    // an older one. Asked to reconcile, the agent refuses both and keeps b.
    relay.peers.remove(&b.public_key);
    relay.revision = 1;
    relay.publish_snapshot();
    for (epoch, request) in [(100, "same-epoch"), (99, "older-epoch")] {
        relay.set_epoch(epoch);
        relay.request_reconcile(request);
        eventually_async("/healthz to report the stale snapshot", || async {
            match agent.get("/healthz").await {
                Ok((503, body)) if body.contains("snapshot stale") => Some(()),
                _ => None,
            }
        })
        .await;
        let (_, metrics) = agent.get("/metrics").await.unwrap();
        assert!(metrics.contains("pvpn_agent_snapshot_stale 1"), "{metrics}");
        let held: BTreeMap<_, _> = node.peers();
        assert_eq!(
            held.keys().collect::<Vec<_>>(),
            both.keys().collect::<Vec<_>>(),
            "a stale snapshot removed a peer"
        );
    }

    // The backend republishes from PostgreSQL under a higher epoch: now the older revision is
    // the truth, b goes, and later revisions apply on top of it.
    relay.set_epoch(101);
    relay.request_reconcile("republished");
    node.wait_for_peers(&relay.peers).await;
    agent.wait_ready().await;
    let c = peer(3);
    relay.upsert(&c);
    node.wait_for_peers(&relay.peers).await;
    let (_, metrics) = agent.get("/metrics").await.unwrap();
    assert!(metrics.contains("pvpn_agent_snapshot_stale 0"), "{metrics}");
    agent.stop().await;
}
