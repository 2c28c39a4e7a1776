//! A device's peer has one definition: the `PeerSpec` streamed when the device changed and the
//! one republished from PostgreSQL after Redis lost its data are the same whole struct, for
//! every device, with and without a preshared key (real PostgreSQL, Redis and relay).

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use pvpn_backend::service::{Service, ServiceSettings};
use pvpn_common::PeerSpec;
use pvpn_common::wire::StreamEvent;
use pvpn_testkit::redis_server::RedisServer;
use support::redis_side::*;
use support::*;

const LIMIT: Duration = Duration::from_secs(20);
const NODES: [&str; 2] = ["nl-1", "nl-2"];

/// Each node's peers as the stream's events leave them, applied in order: `node -> key -> spec`.
fn streamed_state(events: &[StreamEvent]) -> BTreeMap<String, BTreeMap<String, PeerSpec>> {
    let mut nodes: BTreeMap<String, BTreeMap<String, PeerSpec>> = NODES
        .iter()
        .map(|n| (n.to_string(), BTreeMap::new()))
        .collect();
    for event in events {
        match event {
            StreamEvent::PeerUpsert { node, peer, .. } => {
                let peers = nodes.entry(node.to_string()).or_default();
                peers.insert(peer.public_key.to_base64(), peer.clone());
            }
            StreamEvent::PeerRemove {
                node, public_key, ..
            } => {
                let peers = nodes.entry(node.to_string()).or_default();
                peers.remove(&public_key.to_base64());
            }
            _ => {}
        }
    }
    nodes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_and_republished_peers_are_the_same_whole_spec() {
    let env = env().await;
    let without_psk = Service::new(
        env.pool.clone(),
        ServiceSettings {
            preshared_keys: false,
            ..ServiceSettings::default()
        },
    );
    let redis = RedisServer::start().unwrap();
    seed_region(
        &env.service,
        "nl",
        &[("nl-1", "198.18.0.0/24", 3), ("nl-2", "198.18.1.0/24", 3)],
    )
    .await;
    for id in 1..=4 {
        user(&env.service, id).await;
    }
    let relay = start_relay(&env.pool, &redis.url());
    // Before the first epoch, changes are covered by the initial snapshot instead of streamed.
    wait_for("the epoch", LIMIT, || async {
        epoch_present(&mut connect(&redis.url()).await, "nl").await
    })
    .await;
    let nl = region("nl");
    let mut granted = Vec::new();
    for (id, service) in [
        (1, &env.service),
        (1, &without_psk),
        (2, &env.service),
        (3, &without_psk),
        (4, &env.service),
    ] {
        granted.push(service.grant_device(id, &nl, None).await.unwrap().device);
    }
    // A re-issue (remove + upsert) and a revoke change what the stream leaves behind.
    without_psk.reissue_device(1, granted[0].id).await.unwrap();
    env.service.revoke_device(2, granted[2].id).await.unwrap();
    wait_published(&env.pool).await;

    let mut conn = connect(&redis.url()).await;
    let streamed = streamed_state(&events(&mut conn, "nl").await);
    let all: Vec<&PeerSpec> = streamed.values().flat_map(BTreeMap::values).collect();
    assert_eq!(all.len(), 4, "five grants, one revoked: {streamed:?}");
    assert!(all.iter().any(|p| p.preshared_key.is_some()));
    assert!(all.iter().any(|p| p.preshared_key.is_none()));
    for node in NODES {
        assert_eq!(
            snapshot(&mut conn, "nl", node).await.1,
            streamed[node],
            "incremental snapshot of {node} is what was streamed"
        );
    }

    let _: () = redis::cmd("FLUSHALL").query_async(&mut conn).await.unwrap();
    wait_for("the epoch after FLUSHALL", LIMIT, || async {
        epoch_present(&mut connect(&redis.url()).await, "nl").await
    })
    .await;
    for node in NODES {
        let (revision, republished) = snapshot(&mut conn, "nl", node).await;
        assert!(revision.is_some(), "{node} was republished");
        assert_eq!(
            republished, streamed[node],
            "republished peers of {node} are the streamed ones, field for field"
        );
    }
    relay.stop().await;
}
