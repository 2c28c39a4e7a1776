//! PostgreSQL decides revisions, never Redis: the relay against a real PostgreSQL and a real
//! Redis whose node keys someone broke or rolled back. A broken node never stops the others, a
//! revision that disagrees with PostgreSQL is republished under a higher node epoch, and every
//! republish is followed by a `Reconcile` for the node.

mod support;

use std::sync::Arc;
use std::time::Duration;

use pvpn_backend::metrics::Metrics;
use pvpn_backend::relay::{self, RelaySettings};
use pvpn_common::redis_keys::RegionKeys;
use pvpn_common::wire::StreamEvent;
use pvpn_testkit::redis_server::RedisServer;
use redis::aio::MultiplexedConnection;
use support::redis_side::*;
use support::*;
use tokio_util::sync::CancellationToken;

const LIMIT: Duration = Duration::from_secs(20);

async fn set(conn: &mut MultiplexedConnection, key: &str, value: &str) {
    let _: () = redis::cmd("SET")
        .arg(key)
        .arg(value)
        .query_async(conn)
        .await
        .unwrap();
}

async fn node_epoch(conn: &mut MultiplexedConnection, region: &str, node: &str) -> Option<u64> {
    let key = RegionKeys::new(&support::region(region)).node_epoch(&node_name(node));
    let value: Option<String> = redis::cmd("GET").arg(key).query_async(conn).await.unwrap();
    value.and_then(|v| v.parse().ok())
}

fn reconciles_of(events: &[StreamEvent], node: &str) -> usize {
    events
        .iter()
        .filter(|e| matches!(e, StreamEvent::Reconcile { node: Some(n), .. } if n.as_str() == node))
        .count()
}

async fn grant(env: &Env, telegram_id: i64, region: &str) {
    env.service
        .grant_device(telegram_id, &region.parse().unwrap(), None)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_node_never_stops_the_others_and_is_repaired() {
    let env = env().await;
    let redis = RedisServer::start().unwrap();
    seed_region(
        &env.service,
        "nl",
        &[
            ("nl-1", "198.18.0.0/24", 100),
            ("nl-2", "198.18.1.0/24", 100),
            ("nl-3", "198.18.2.0/24", 100),
        ],
    )
    .await;
    seed_region(&env.service, "de", &[("de-1", "198.18.3.0/24", 100)]).await;
    for id in 1..=30 {
        user(&env.service, id).await;
    }
    let metrics = Arc::new(Metrics::default());
    let stop = CancellationToken::new();
    // A long consistency interval: only the change script and the per-node retry may notice.
    let relay = tokio::spawn(relay::run(
        env.pool.clone(),
        redis::Client::open(redis.url()).unwrap(),
        metrics.clone(),
        RelaySettings {
            poll_interval: Duration::from_millis(100),
            consistency_interval: Duration::from_secs(3600),
            ..RelaySettings::default()
        },
        stop.clone(),
    ));
    let mut conn = connect(&redis.url()).await;
    wait_for("the epochs", LIMIT, || async {
        let mut c = connect(&redis.url()).await;
        epoch_present(&mut c, "nl").await && epoch_present(&mut c, "de").await
    })
    .await;
    for id in 1..=6 {
        grant(&env, id, "nl").await;
    }
    wait_published(&env.pool).await;
    let epoch_before = node_epoch(&mut conn, "nl", "nl-1")
        .await
        .expect("nl-1 epoch");

    // nl-1's revision key becomes a word; nl-2's snapshot hash becomes a string (every HSET on
    // it fails with WRONGTYPE). nl-3 and de-1 are untouched.
    let keys = RegionKeys::new(&support::region("nl"));
    set(&mut conn, &keys.node_revision(&node_name("nl-1")), "banana").await;
    set(
        &mut conn,
        &keys.node_peers(&node_name("nl-2")),
        "not a hash",
    )
    .await;
    for id in 7..=30 {
        let region = if id % 4 == 0 { "de" } else { "nl" };
        grant(&env, id, region).await;
    }
    wait_published(&env.pool).await;
    for (region, node) in [
        ("nl", "nl-1"),
        ("nl", "nl-2"),
        ("nl", "nl-3"),
        ("de", "de-1"),
    ] {
        assert_snapshot_matches(&env.pool, &mut conn, region, node).await;
    }
    // Each broken node was rewritten from PostgreSQL under a higher epoch and asked to
    // reconcile; the healthy ones got every change in order.
    let epoch_after = node_epoch(&mut conn, "nl", "nl-1")
        .await
        .expect("nl-1 epoch");
    assert!(epoch_after > epoch_before, "{epoch_after} > {epoch_before}");
    let nl_events = events(&mut conn, "nl").await;
    assert!(reconciles_of(&nl_events, "nl-1") >= 1, "{nl_events:?}");
    assert!(reconciles_of(&nl_events, "nl-2") >= 1, "{nl_events:?}");
    let nl3: Vec<u64> = node_changes(&nl_events, "nl-3")
        .iter()
        .map(|c| c.1)
        .collect();
    assert_eq!(nl3, (1..=nl3.len() as u64).collect::<Vec<_>>());
    assert!(!node_changes(&events(&mut conn, "de").await, "de-1").is_empty());
    let rendered = metrics.render();
    assert!(
        rendered.contains("pvpn_relay_node_failures_total{node=\"nl-2\"}"),
        "{rendered}"
    );
    assert!(
        rendered.contains("pvpn_relay_failing_nodes 0"),
        "{rendered}"
    );
    assert!(
        rendered.contains("reason=\"revision_garbage\""),
        "{rendered}"
    );
    stop.cancel();
    relay.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revision_that_disagrees_with_postgres_is_republished_under_a_new_epoch() {
    let env = env().await;
    let redis = RedisServer::start().unwrap();
    seed_region(
        &env.service,
        "nl",
        &[
            ("nl-1", "198.18.0.0/24", 100),
            ("nl-2", "198.18.1.0/24", 100),
        ],
    )
    .await;
    for id in 1..=8 {
        user(&env.service, id).await;
    }
    let stop = CancellationToken::new();
    let relay = tokio::spawn(relay::run(
        env.pool.clone(),
        redis::Client::open(redis.url()).unwrap(),
        Arc::new(Metrics::default()),
        RelaySettings {
            poll_interval: Duration::from_millis(100),
            consistency_interval: Duration::from_millis(300),
            ..RelaySettings::default()
        },
        stop.clone(),
    ));
    for id in 1..=4 {
        grant(&env, id, "nl").await;
    }
    wait_published(&env.pool).await;
    let mut conn = connect(&redis.url()).await;
    let keys = RegionKeys::new(&support::region("nl"));
    // Ahead (as after a database restore), behind (as after an older RDB), and a lost epoch:
    // the periodic check finds each without any new change.
    for (node, revision) in [("nl-1", "90"), ("nl-2", "0")] {
        let epoch = node_epoch(&mut conn, "nl", node).await.expect("epoch");
        set(&mut conn, &keys.node_revision(&node_name(node)), revision).await;
        wait_for("the node republished", LIMIT, || async {
            let mut c = connect(&redis.url()).await;
            node_epoch(&mut c, "nl", node)
                .await
                .is_some_and(|e| e > epoch)
        })
        .await;
        assert_snapshot_matches(&env.pool, &mut conn, "nl", node).await;
    }
    let _: () = redis::cmd("DEL")
        .arg(keys.node_epoch(&node_name("nl-1")))
        .query_async(&mut conn)
        .await
        .unwrap();
    wait_for("the node epoch rewritten", LIMIT, || async {
        node_epoch(&mut connect(&redis.url()).await, "nl", "nl-1")
            .await
            .is_some()
    })
    .await;
    // A grant after all that gets the next revision, on top of PostgreSQL's.
    for id in 5..=8 {
        grant(&env, id, "nl").await;
    }
    wait_published(&env.pool).await;
    for node in ["nl-1", "nl-2"] {
        assert_snapshot_matches(&env.pool, &mut conn, "nl", node).await;
    }
    stop.cancel();
    relay.await.unwrap();
}
