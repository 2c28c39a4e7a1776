//! The agent applies only what the node's own rules allow (`pvpn_agent::policy`), against a real
//! Redis and a real `wireguard-go`: a hostile flood of entries (routes outside the client subnet,
//! `0.0.0.0/0`, another device's address, IPv6, revisions far ahead) never reaches the interface
//! and is dead-lettered, while the real grants and revokes between them are applied; a snapshot
//! that breaks a rule is refused whole and reported, and the interface keeps its peers.

mod support;

use pvpn_common::keys::KeyPair;
use pvpn_common::wire::{EVENT_FIELD, StreamEvent};
use pvpn_common::{PeerSpec, PublicKey};
use redis::Commands;
use support::*;

fn hostile(ips: &[&str]) -> PeerSpec {
    PeerSpec {
        public_key: KeyPair::generate().public,
        allowed_ips: ips.iter().map(|s| s.parse().unwrap()).collect(),
        preshared_key: None,
        persistent_keepalive: None,
    }
}

/// Writes an upsert straight to the stream, as a forger would: no snapshot change.
fn forge(relay: &mut Relay, revision: u64, spec: &PeerSpec) {
    let event = StreamEvent::PeerUpsert {
        node: support::node(),
        revision,
        peer: spec.clone(),
    };
    relay.xadd_raw(&[(EVENT_FIELD, event.encode().as_bytes())]);
}

fn dead_letters(node: &Node) -> usize {
    node.conn()
        .xlen(keys().node_dead_letter(&support::node()))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_flood_never_reaches_the_interface_and_real_grants_do() {
    let node = Node::start().unwrap();
    let mut relay = node.relay();
    let victim = peer(1);
    relay.upsert(&victim);
    let agent = RunningAgent::start(node.config()).await;
    node.wait_for_peers(&relay.peers).await;

    let mut forged: Vec<PublicKey> = Vec::new();
    // `held`: an address a real device holds at that point (a forgery for a free address in the
    // subnet looks exactly like a grant; only the snapshot can tell, and the ACL keeps everyone
    // but the backend from writing the stream).
    let mut flood = |relay: &mut Relay, rounds: u64, held: &PeerSpec| {
        let held_ip = held.allowed_ips[0].to_string();
        for round in 0..rounds {
            let next = relay.revision + 1;
            for (revision, spec) in [
                (next, hostile(&["0.0.0.0/0"])),
                (next, hostile(&["::/0"])),
                (next, hostile(&["198.18.5.5/32"])),
                (next, hostile(&["198.19.0.0/24"])),
                (next, hostile(&["198.19.0.1/32"])),
                (next, hostile(&["fd00:19::2/128"])),
                (next, hostile(&[&held_ip])),
                (next, hostile(&["198.19.200.2/32", "10.0.0.0/8"])),
                (next + 1000 + round, hostile(&["198.19.201.2/32"])),
            ] {
                forge(relay, revision, &spec);
                forged.push(spec.public_key);
            }
        }
    };

    flood(&mut relay, 20, &victim);
    let granted = peer(2);
    relay.upsert(&granted);
    flood(&mut relay, 20, &victim);
    relay.remove(&victim.public_key);
    flood(&mut relay, 20, &granted);
    let last = peer(3);
    relay.upsert(&last);

    // A reconcile request after the flood: once the agent reports it, every entry before it
    // was handled.
    relay.request_reconcile("after-the-flood");
    eventually("the agent to handle the whole flood", || {
        let report = node.heartbeat()?.last_reconcile?;
        (report.request_id.as_deref() == Some("after-the-flood")).then_some(())
    })
    .await;
    node.wait_for_peers(&relay.peers).await;
    assert_eq!(node.pending(), 0);
    // Every entry that breaks a rule on its own is dead-lettered (7 kinds, and the revisions far
    // ahead); one for a held address is dead-lettered, or skipped as stale once a reconcile
    // moved the node past its revision: never applied either way.
    let dead = dead_letters(&node);
    assert!(
        (3 * 20 * 8..=3 * 20 * 9).contains(&dead),
        "{dead} dead letters"
    );
    let on_interface = node.peers();
    assert!(
        forged.iter().all(|k| !on_interface.contains_key(k)),
        "a forged peer reached the interface"
    );
    assert_eq!(node.peers().len(), 2);
    let (_, metrics) = agent.get("/metrics").await.unwrap();
    assert!(
        metrics.contains(&format!("pvpn_agent_dead_letters_total {dead}")),
        "{metrics}"
    );
    assert!(
        metrics.contains("pvpn_agent_applied_revision 4"),
        "{metrics}"
    );
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_breaking_the_rules_is_refused_whole_and_reported() {
    let node = Node::start().unwrap();
    let mut relay = node.relay();
    let kept = peer(1);
    relay.peers.insert(kept.public_key, kept.clone());
    relay.publish_snapshot();
    let agent = RunningAgent::start(node.config()).await;
    agent.wait_ready().await;
    node.wait_for_peers(&relay.peers).await;
    let good = relay.peers.clone();

    // The next snapshot removes `kept`, adds a valid peer, and carries thousands of entries that
    // break the rules: none of it may be applied.
    relay.peers.clear();
    let fresh = peer(2);
    relay.peers.insert(fresh.public_key, fresh.clone());
    for _ in 0..5000 {
        let bad = hostile(&["0.0.0.0/0"]);
        relay.peers.insert(bad.public_key, bad);
    }
    let twin = hostile(&[&fresh.allowed_ips[0].to_string()]);
    relay.peers.insert(twin.public_key, twin);
    relay.revision = 7;
    relay.publish_snapshot();
    relay.request_reconcile("refuse-me");
    eventually_async("/healthz to report the refused snapshot", || async {
        match agent.get("/healthz").await {
            Ok((503, body)) if body.contains("snapshot refused") => Some(body),
            _ => None,
        }
    })
    .await;
    let (_, metrics) = agent.get("/metrics").await.unwrap();
    assert!(
        metrics.contains("pvpn_agent_snapshot_refused 1"),
        "{metrics}"
    );
    node.wait_for_peers(&good).await;

    // Fixed by the backend: applied at the next retry.
    relay.peers.clear();
    relay.peers.insert(fresh.public_key, fresh.clone());
    relay.revision = 8;
    relay.publish_snapshot();
    node.wait_for_peers(&relay.peers).await;
    agent.wait_ready().await;
    let (_, metrics) = agent.get("/metrics").await.unwrap();
    assert!(
        metrics.contains("pvpn_agent_snapshot_refused 0"),
        "{metrics}"
    );
    agent.stop().await;
}
