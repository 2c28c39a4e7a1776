//! Reconciles against a real `wireguard-go`: sessions survive, drift is repaired, thousands of
//! peers go through in one reconcile, and a Redis that lost its data never wipes the interface.

mod support;

use std::collections::BTreeMap;

use pvpn_common::wire::{Feedback, ReconcileTrigger};
use pvpn_common::{PeerSpec, PresharedKey, PrivateKey};
use pvpn_testkit::netns::{Netns, WgInterface};
use redis::Commands;
use support::*;

/// Waits for a heartbeat whose last reconcile answers `request_id`.
async fn reconcile_answer(node: &Node, request_id: &str) -> pvpn_common::wire::ReconcileReport {
    eventually("the reconcile answering the request", || {
        node.heartbeat()
            .and_then(|h| h.last_reconcile)
            .filter(|r| r.request_id.as_deref() == Some(request_id))
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connected_session_survives_agent_restart_and_reconcile() {
    let node = Node::start().unwrap();
    // A client in its own namespace, joined to the node's namespace by veth.
    let client_ns = Netns::create("client").unwrap();
    Netns::link_veth(&node.ns, "198.18.0.1/30", &client_ns, "198.18.0.2/30").unwrap();
    let client_key = PrivateKey::generate();
    let psk = PresharedKey::generate();
    let client = WgInterface::start(
        &client_ns,
        &WgInterface::unique_name("cl").unwrap(),
        &client_key,
        51830,
        "198.19.0.2/16",
    )
    .unwrap();
    client
        .set_peer(
            &node.wg.public_key(),
            Some("198.18.0.1:51820".parse().unwrap()),
            &["198.19.255.254/32"],
            None,
            Some(&psk),
        )
        .unwrap();

    let mut relay = node.relay();
    let spec = PeerSpec {
        public_key: client_key.public_key(),
        allowed_ips: vec!["198.19.0.2/32".parse().unwrap()],
        preshared_key: Some(psk.clone()),
        persistent_keepalive: None,
    };
    relay.upsert(&spec);
    relay.upsert(&peer(7));
    let agent = RunningAgent::start(node.config()).await;
    node.wait_for_peers(&relay.peers).await;

    client_ns.ping("198.19.255.254".parse().unwrap()).unwrap();
    let before = node.peers()[&spec.public_key].clone();
    assert!(
        before.latest_handshake > 0,
        "the client handshook: {before:?}"
    );
    assert!(before.endpoint.is_some());

    // Stats carry the session's counters.
    let key = spec.public_key;
    eventually("stats with the client's traffic", || {
        let entries: redis::streams::StreamRangeReply = node
            .conn()
            .xrange_all(keys().node_feedback(&support::node()))
            .ok()?;
        entries.ids.iter().rev().find_map(|e| {
            let json: String = e.get(pvpn_common::wire::EVENT_FIELD)?;
            match Feedback::decode(json.as_bytes()).ok()? {
                Feedback::Stats { peers, .. } => peers
                    .into_iter()
                    .find(|p| p.public_key == key && p.rx_bytes > 0 && p.last_handshake.is_some()),
                Feedback::Heartbeat(_) => None,
            }
        })
    })
    .await;

    // Restart the agent (start-up reconcile), then ask for a reconcile.
    agent.stop().await;
    let agent = RunningAgent::start(node.config()).await;
    agent.wait_ready().await;
    relay.request_reconcile("after-restart");
    let report = reconcile_answer(&node, "after-restart").await;
    assert_eq!((report.added, report.removed, report.updated), (0, 0, 0));

    let after = node.peers()[&spec.public_key].clone();
    assert_eq!(
        after.latest_handshake, before.latest_handshake,
        "session kept"
    );
    assert_eq!(after.endpoint, before.endpoint, "endpoint kept");
    assert!(after.rx_bytes >= before.rx_bytes, "counters not reset");
    client_ns.ping("198.19.255.254".parse().unwrap()).unwrap();
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_removes_a_stray_peer_and_restores_a_deleted_one() {
    let node = Node::start().unwrap();
    let mut relay = node.relay();
    let (a, b) = (peer(1), peer(2));
    relay.upsert(&a);
    relay.upsert(&b);
    let agent = RunningAgent::start(node.config()).await;
    node.wait_for_peers(&relay.peers).await;

    // By hand, behind the agent's back: a stray peer, a deleted peer, a changed peer.
    let stray = peer(3);
    node.wg
        .set_peer(&stray.public_key, None, &["198.19.0.3/32"], None, None)
        .unwrap();
    node.wg.remove_peer(&a.public_key).unwrap();
    node.wg
        .set_peer(&b.public_key, None, &["198.19.0.9/32"], None, None)
        .unwrap();
    assert_eq!(node.peers().len(), 2);

    relay.request_reconcile("drift-1");
    let report = reconcile_answer(&node, "drift-1").await;
    assert_eq!(report.trigger, ReconcileTrigger::Requested);
    assert_eq!((report.added, report.removed, report.updated), (1, 1, 1));
    node.wait_for_peers(&relay.peers).await;
    let (_, metrics) = agent.get("/metrics").await.unwrap();
    assert!(
        metrics.contains("pvpn_agent_reconcile_drift_total{kind=\"removed\"} 1"),
        "{metrics}"
    );
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_periodic_reconcile_repairs_drift_without_a_request() {
    let node = Node::start().unwrap();
    let mut relay = node.relay();
    relay.upsert(&peer(1));
    let mut config = node.config();
    config.reconcile_interval = std::time::Duration::from_secs(1);
    let agent = RunningAgent::start(config).await;
    node.wait_for_peers(&relay.peers).await;
    let stray = peer(2);
    node.wg
        .set_peer(&stray.public_key, None, &["198.19.0.5/32"], None, None)
        .unwrap();
    node.wait_for_peers(&relay.peers).await;
    eventually("a periodic reconcile in the heartbeat", || {
        node.heartbeat()
            .and_then(|h| h.last_reconcile)
            .filter(|r| r.trigger == ReconcileTrigger::Periodic)
    })
    .await;
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_thousand_peers_are_applied_and_read_back_in_one_reconcile() {
    let node = Node::start().unwrap();
    let mut relay = node.relay();
    relay.peers = (0..5000).map(peer).map(|p| (p.public_key, p)).collect();
    relay.revision = 5000;
    relay.publish_snapshot();
    let agent = RunningAgent::start(node.config()).await;
    agent.wait_ready().await;

    let report = eventually("the start-up reconcile report", || {
        node.heartbeat().and_then(|h| h.last_reconcile)
    })
    .await;
    assert_eq!(report.trigger, ReconcileTrigger::Startup);
    assert_eq!((report.added, report.removed, report.updated), (5000, 0, 0));
    node.wait_for_peers(&relay.peers).await;
    // The agent reads all 5,000 back: a requested reconcile finds nothing to do.
    relay.request_reconcile("read-back");
    let report = reconcile_answer(&node, "read-back").await;
    assert_eq!((report.added, report.removed, report.updated), (0, 0, 0));
    eventually("the heartbeat to count 5,000 peers", || {
        node.heartbeat().filter(|h| h.peer_count == 5000)
    })
    .await;
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_losing_its_data_never_wipes_the_interface() {
    let mut node = Node::start().unwrap();
    let mut relay = node.relay();
    let (a, b) = (peer(1), peer(2));
    relay.upsert(&a);
    relay.upsert(&b);
    let agent = RunningAgent::start(node.config()).await;
    node.wait_for_peers(&relay.peers).await;
    let desired: BTreeMap<_, _> = relay.peers.clone();

    // Redis goes down: the agent says so and keeps the interface as it is.
    node.redis.stop();
    eventually_async("/healthz to report Redis down", || async {
        match agent.get("/healthz").await {
            Ok((503, body)) if body.contains("redis") => Some(()),
            _ => None,
        }
    })
    .await;
    node.wait_for_peers(&desired).await;

    // Redis comes back empty (no persistence): no snapshot, so the agent waits and reports it.
    node.redis.restart().unwrap();
    eventually_async("/healthz to report the missing snapshot", || async {
        match agent.get("/healthz").await {
            Ok((503, body)) if body.contains("snapshot missing") => Some(()),
            _ => None,
        }
    })
    .await;
    let (_, metrics) = agent.get("/metrics").await.unwrap();
    assert!(
        metrics.contains("pvpn_agent_snapshot_missing 1"),
        "{metrics}"
    );
    node.wait_for_peers(&desired).await;

    // The backend republishes the snapshot (a changed, at a later revision): the agent catches up.
    let mut relay = node.relay();
    relay.peers = desired;
    let mut a2 = a.clone();
    a2.allowed_ips = vec!["198.19.4.4/32".parse().unwrap()];
    relay.peers.insert(a2.public_key, a2);
    relay.revision = 3;
    relay.publish_snapshot();
    node.wait_for_peers(&relay.peers).await;
    agent.wait_ready().await;
    let report = eventually("the reconcile of the republished snapshot", || {
        node.heartbeat()
            .and_then(|h| h.last_reconcile)
            .filter(|r| r.snapshot_revision == 3)
    })
    .await;
    assert_eq!((report.added, report.removed, report.updated), (0, 0, 1));
    agent.stop().await;
}

/// SIGTERM in the middle of a large apply: the apply runs to completion before the agent exits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_during_a_large_apply_finishes_it() {
    let node = Node::start().unwrap();
    let mut relay = node.relay();
    relay.peers = (0..3000).map(peer).map(|p| (p.public_key, p)).collect();
    relay.revision = 3000;
    relay.publish_snapshot();
    let agent = RunningAgent::start(node.config()).await;

    // Stop as soon as the first chunk is on the interface.
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let mut seen = 0;
    while seen == 0 {
        assert!(tokio::time::Instant::now() < deadline, "nothing applied");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        seen = node.peers().len();
    }
    agent.stop().await;

    let peers = node.peers();
    assert_eq!(peers.len(), 3000, "the interrupted reconcile was completed");
    assert!(
        relay
            .peers
            .values()
            .all(|s| peers.get(&s.public_key).is_some_and(|p| same(p, s)))
    );
    eprintln!("stopped with {seen} of 3000 peers applied");
}
