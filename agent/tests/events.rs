//! The agent against a real Redis and a real `wireguard-go`: events reach the interface and are
//! acknowledged only then, restarts lose nothing, bad entries are dead-lettered, lost streams and
//! revision gaps are repaired from the snapshot.

mod support;

use std::collections::BTreeMap;

use pvpn_common::NodeName;
use pvpn_common::redis_keys::{
    DEAD_LETTER_ID_FIELD, DEAD_LETTER_PAYLOAD_FIELD, DEAD_LETTER_REASON_FIELD, agent_group,
};
use pvpn_common::wire::{EVENT_FIELD, ReconcileTrigger, StreamEvent};
use redis::Commands;
use support::*;
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upsert_update_remove_reach_the_interface_and_are_acked() {
    let node = Node::start().unwrap();
    let mut relay = node.relay();
    relay.publish_snapshot();
    let agent = RunningAgent::start(node.config()).await;
    agent.wait_ready().await;

    let a = peer(1);
    relay.upsert(&a);
    node.wait_for_peers(&relay.peers).await;

    // Update in place: other allowed IPs, no preshared key any more, a keepalive.
    let mut a2 = a.clone();
    a2.allowed_ips = vec![
        "198.19.7.7/32".parse().unwrap(),
        "198.19.7.8/32".parse().unwrap(),
    ];
    a2.preshared_key = None;
    a2.persistent_keepalive = Some(25);
    relay.upsert(&a2);
    node.wait_for_peers(&relay.peers).await;
    assert_eq!(node.peers()[&a.public_key].persistent_keepalive, Some(25));

    // An event for another node of the region is acknowledged and skipped.
    let stranger = peer(2);
    let other = StreamEvent::PeerUpsert {
        node: NodeName::new("nl-2").unwrap(),
        revision: 1,
        peer: stranger.clone(),
    };
    relay.xadd_raw(&[(EVENT_FIELD, other.encode().as_bytes())]);

    relay.remove(&a.public_key);
    node.wait_for_peers(&relay.peers).await;
    assert!(node.peers().is_empty());
    eventually("every entry to be acknowledged", || {
        (node.pending() == 0).then_some(())
    })
    .await;
    assert!(!node.peers().contains_key(&stranger.public_key));

    // The heartbeat key expires after three intervals (1 s here) unless renewed.
    let ttl: i64 = node
        .conn()
        .ttl(keys().node_heartbeat(&support::node()))
        .unwrap();
    assert!((1..=3).contains(&ttl), "heartbeat TTL {ttl}");

    let (code, metrics) = agent.get("/metrics").await.unwrap();
    assert_eq!(code, 200);
    assert!(
        metrics.contains("pvpn_agent_events_applied_total 3"),
        "{metrics}"
    );
    assert!(
        metrics.contains("pvpn_agent_applied_revision 3"),
        "{metrics}"
    );
    agent.stop().await;
}

/// While the interface is gone the entry stays pending (not acknowledged); once the interface is
/// back the agent restores the snapshot and applies the entry, then acknowledges it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_are_acknowledged_only_once_the_interface_holds_them() {
    let mut node = Node::start().unwrap();
    let mut relay = node.relay();
    let first = peer(1);
    relay.upsert(&first);
    let agent = RunningAgent::start(node.config()).await;
    node.wait_for_peers(&relay.peers).await;

    // The interface disappears (wireguard-go stopped by its pid).
    let name = node.wg.name().to_string();
    let key = node.server_key.clone();
    node.wg.stop();
    let second = peer(2);
    relay.upsert(&second);
    eventually_async("/healthz to report the failing interface", || async {
        match agent.get("/healthz").await {
            Ok((503, body)) if body.contains("interface") => Some(()),
            _ => None,
        }
    })
    .await;
    assert_eq!(node.pending(), 1, "the unapplied entry must stay pending");

    // The interface comes back empty, as after a reboot: the agent does not create it, but once
    // it exists again it restores every peer and acknowledges the entry.
    node.wg =
        pvpn_testkit::netns::WgInterface::start(&node.ns, &name, &key, 51820, "198.19.255.254/16")
            .unwrap();
    node.wait_for_peers(&relay.peers).await;
    eventually("the entry to be acknowledged", || {
        (node.pending() == 0).then_some(())
    })
    .await;
    // The heartbeat says why the agent reconciled.
    eventually("a heartbeat reporting the recovery reconcile", || {
        let report = node.heartbeat()?.last_reconcile?;
        (report.trigger == ReconcileTrigger::InterfaceRecovered).then_some(())
    })
    .await;
    agent.stop().await;
}

/// Delivers `count` new entries to `consumer` of the node's group without acknowledging them.
fn deliver(node: &Node, consumer: &str, count: usize) {
    let _: redis::Value = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg(agent_group(&support::node()))
        .arg(consumer)
        .arg("COUNT")
        .arg(count)
        .arg("STREAMS")
        .arg(keys().events())
        .arg(">")
        .query(&mut node.conn())
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_with_pending_entries_loses_nothing_and_replays_nothing_harmful() {
    let node = Node::start().unwrap();
    let mut relay = node.relay();
    relay.publish_snapshot();
    let agent = RunningAgent::start(node.config()).await;
    agent.wait_ready().await;
    agent.stop().await;

    // While the agent is down: A added, B added, A removed, B changed.
    let a = peer(1);
    let b = peer(2);
    relay.upsert(&a);
    relay.upsert(&b);
    relay.remove(&a.public_key);
    // The first three were delivered to the previous agent, which died before acknowledging:
    // two under this node's consumer name, one under another name (an older host name).
    deliver(&node, NODE, 2);
    deliver(&node, "previous-host", 1);
    assert_eq!(node.pending(), 3);
    let mut b2 = b.clone();
    b2.allowed_ips = vec!["198.19.9.9/32".parse().unwrap()];
    relay.upsert(&b2);

    let agent = RunningAgent::start(node.config()).await;
    node.wait_for_peers(&relay.peers).await;
    eventually("pending entries to be acknowledged", || {
        (node.pending() == 0).then_some(())
    })
    .await;
    // Nothing replayed out of order: A stays removed, B keeps its latest allowed IPs.
    let peers = node.peers();
    assert_eq!(peers.len(), 1);
    assert_eq!(peers[&b.public_key].allowed_ips, vec!["198.19.9.9/32"]);
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_entries_are_dead_lettered_and_later_entries_still_apply() {
    let node = Node::start().unwrap();
    let mut relay = node.relay();
    relay.publish_snapshot();
    let agent = RunningAgent::start(node.config()).await;
    agent.wait_ready().await;

    let invalid_upsert = StreamEvent::PeerUpsert {
        node: support::node(),
        revision: 1,
        peer: peer(4),
    }
    .encode()
    .replace("/32", "/8");
    let bad: Vec<(&str, Vec<u8>)> = vec![
        (EVENT_FIELD, b"not json at all".to_vec()),
        (
            EVENT_FIELD,
            br#"{"v":9,"type":"reconcile","node":null,"request_id":"x"}"#.to_vec(),
        ),
        ("payload", b"no event field here".to_vec()),
        (EVENT_FIELD, invalid_upsert.into_bytes()),
    ];
    let mut bad_ids = Vec::new();
    for (field, value) in &bad {
        bad_ids.push(relay.xadd_raw(&[(field, value.as_slice())]));
    }
    let good = peer(5);
    relay.upsert(&good);
    node.wait_for_peers(&relay.peers).await;
    eventually("every entry to be acknowledged", || {
        (node.pending() == 0).then_some(())
    })
    .await;

    let dead: Vec<(String, BTreeMap<String, Vec<u8>>)> = {
        let reply: redis::streams::StreamRangeReply = node
            .conn()
            .xrange_all(keys().node_dead_letter(&support::node()))
            .unwrap();
        reply
            .ids
            .into_iter()
            .map(|e| {
                let map = e
                    .map
                    .iter()
                    .map(|(k, v)| (k.clone(), redis::from_redis_value_ref(v).unwrap()))
                    .collect();
                (e.id, map)
            })
            .collect()
    };
    assert_eq!(dead.len(), 4, "{dead:?}");
    for ((_, fields), (source_id, (field, payload))) in dead.iter().zip(bad_ids.iter().zip(&bad)) {
        assert_eq!(
            fields[DEAD_LETTER_ID_FIELD],
            source_id.as_bytes(),
            "a dead letter names its source entry"
        );
        // The payload is the `event` field as received (empty when there was none).
        let expected: &[u8] = if *field == EVENT_FIELD { payload } else { b"" };
        assert_eq!(fields[DEAD_LETTER_PAYLOAD_FIELD], expected);
    }
    let reasons: Vec<String> = dead
        .iter()
        .map(|(_, f)| String::from_utf8_lossy(&f[DEAD_LETTER_REASON_FIELD]).into_owned())
        .collect();
    assert!(reasons[0].contains("malformed"), "{reasons:?}");
    assert!(reasons[1].contains("version 9"), "{reasons:?}");
    assert!(reasons[2].contains("no `event` field"), "{reasons:?}");
    assert!(reasons[3].contains("invalid peer"), "{reasons:?}");
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revision_gap_is_repaired_from_the_snapshot() {
    let node = Node::start().unwrap();
    let mut relay = node.relay();
    relay.publish_snapshot();
    let agent = RunningAgent::start(node.config()).await;
    agent.wait_ready().await;

    relay.upsert(&peer(1));
    node.wait_for_peers(&relay.peers).await;
    // Revision 2's entry never reaches the stream (trimmed); revision 3's does.
    relay.upsert_without_event(&peer(2));
    relay.upsert(&peer(3));
    node.wait_for_peers(&relay.peers).await;
    let heartbeat = eventually("a heartbeat reporting the gap reconcile", || {
        node.heartbeat().filter(|h| {
            h.last_reconcile
                .as_ref()
                .is_some_and(|r| r.trigger == ReconcileTrigger::RevisionGap)
        })
    })
    .await;
    let report = heartbeat.last_reconcile.unwrap();
    assert_eq!((report.added, report.removed, report.updated), (2, 0, 0));
    assert_eq!(report.snapshot_revision, 3);
    eventually("revision 3 in the heartbeat", || {
        node.heartbeat().filter(|h| h.applied_revision == 3)
    })
    .await;
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_deleted_under_a_running_agent_is_recovered_from_the_snapshot() {
    let node = Node::start().unwrap();
    let mut relay = node.relay();
    relay.publish_snapshot();
    let agent = RunningAgent::start(node.config()).await;
    agent.wait_ready().await;
    relay.upsert(&peer(1));
    node.wait_for_peers(&relay.peers).await;

    // The snapshot moves on without an entry, then the stream and its groups vanish.
    relay.upsert_without_event(&peer(2));
    let _: () = node.conn().del(keys().events()).unwrap();

    let heartbeat = eventually("a heartbeat reporting the stream-lost reconcile", || {
        node.heartbeat().filter(|h| {
            h.last_reconcile
                .as_ref()
                .is_some_and(|r| r.trigger == ReconcileTrigger::StreamLost)
        })
    })
    .await;
    assert_eq!(heartbeat.last_reconcile.unwrap().snapshot_revision, 2);
    node.wait_for_peers(&relay.peers).await;

    // It carries on with the recreated group.
    relay.upsert(&peer(3));
    node.wait_for_peers(&relay.peers).await;
    eventually("the new entry to be acknowledged", || {
        (node.pending() == 0).then_some(())
    })
    .await;
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_refuses_to_create_a_missing_interface() {
    let node = Node::start().unwrap();
    let mut config = node.config();
    let missing = pvpn_testkit::netns::WgInterface::unique_name("none").unwrap();
    config.wg_interface = missing.clone();
    let wg = std::sync::Arc::new(
        pvpn_agent::wireguard::control::ControlWireGuard::new(
            &missing,
            pvpn_agent::WgBackend::Userspace,
        )
        .unwrap(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let result = pvpn_agent::serve(config, wg, listener, CancellationToken::new()).await;
    let err = result.expect_err("no interface, no agent").to_string();
    assert!(err.contains("does not exist"), "{err}");
    let socket =
        std::path::Path::new(pvpn_testkit::netns::SOCKET_DIR).join(format!("{missing}.sock"));
    assert!(!socket.exists(), "the agent must not start wireguard-go");
}

/// A pending entry whose content was trimmed away: the agent cannot know what it was, so it
/// reconciles from the snapshot and acknowledges it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trimmed_pending_entry_is_covered_by_a_reconcile() {
    let node = Node::start().unwrap();
    let mut relay = node.relay();
    relay.publish_snapshot();
    let agent = RunningAgent::start(node.config()).await;
    agent.wait_ready().await;
    agent.stop().await;

    relay.upsert(&peer(1));
    deliver(&node, NODE, 1);
    let _: i64 = redis::cmd("XTRIM")
        .arg(keys().events())
        .arg("MAXLEN")
        .arg(0)
        .query(&mut node.conn())
        .unwrap();
    assert_eq!(node.pending(), 1);

    let agent = RunningAgent::start(node.config()).await;
    node.wait_for_peers(&relay.peers).await;
    eventually("the trimmed entry to be acknowledged", || {
        (node.pending() == 0).then_some(())
    })
    .await;
    agent.stop().await;
}
