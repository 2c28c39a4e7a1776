//! The outbox relay against a real PostgreSQL and a real Redis: changes reach the node snapshot
//! and the region stream with the right revisions, Redis outages delay but never lose or
//! duplicate them, and a Redis that lost its data is rebuilt from PostgreSQL.

mod support;

use std::time::Duration;

use pvpn_backend::service::{Actor, UserRef};
use pvpn_common::wire::StreamEvent;
use pvpn_testkit::redis_server::RedisServer;
use support::proxy::TcpProxy;
use support::redis_side::*;
use support::*;

const LIMIT: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grant_reaches_snapshot_and_stream_with_its_revision() {
    let env = env().await;
    let redis = RedisServer::start().unwrap();
    seed_region(&env.service, "nl", &[("nl-1", "198.18.0.0/24", 10)]).await;
    user(&env.service, 1).await;
    let relay = start_relay(&env.pool, &redis.url());
    let mut conn = connect(&redis.url()).await;
    wait_for("the epoch", LIMIT, || async {
        epoch_present(&mut connect(&redis.url()).await, "nl").await
    })
    .await;
    // An empty node still has a snapshot at revision 0: absent would mean "Redis lost data".
    assert_eq!(snapshot(&mut conn, "nl", "nl-1").await.0, Some(0));

    let granted = env
        .service
        .grant_device(1, &region("nl"), None)
        .await
        .unwrap();
    wait_published(&env.pool).await;
    let (revision, peers) = snapshot(&mut conn, "nl", "nl-1").await;
    assert_eq!(revision, Some(1));
    let peer = &peers[&granted.device.public_key.to_base64()];
    assert_eq!(peer.allowed_ips[0].to_string(), "198.18.0.2/32");
    assert!(peer.preshared_key.is_some());
    let events = events(&mut conn, "nl").await;
    assert_eq!(node_changes(&events, "nl-1"), [("upsert", 1)]);
    let Some(StreamEvent::PeerUpsert { peer: streamed, .. }) =
        events.iter().find(|e| e.revision() == Some(1))
    else {
        panic!("no upsert on the stream: {events:?}");
    };
    assert_eq!(streamed, peer);
    let published: i64 =
        sqlx::query_scalar("SELECT published_revision FROM nodes WHERE name = 'nl-1'")
            .fetch_one(&env.pool)
            .await
            .unwrap();
    assert_eq!(published, 1);
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoke_reissue_ban_and_expiry_produce_their_events() {
    let env = env().await;
    let redis = RedisServer::start().unwrap();
    seed_region(&env.service, "nl", &[("nl-1", "198.18.0.0/24", 10)]).await;
    let s = &env.service;
    for id in [1, 2, 3] {
        user(s, id).await;
    }
    let relay = start_relay(&env.pool, &redis.url());
    let mut conn = connect(&redis.url()).await;
    wait_for("the epoch", LIMIT, || async {
        epoch_present(&mut connect(&redis.url()).await, "nl").await
    })
    .await;

    let a = s.grant_device(1, &region("nl"), None).await.unwrap().device; // rev 1
    let b = s.grant_device(1, &region("nl"), None).await.unwrap().device; // rev 2
    let c = s.grant_device(2, &region("nl"), None).await.unwrap().device; // rev 3
    let d = s.grant_device(3, &region("nl"), None).await.unwrap().device; // rev 4
    s.revoke_device(1, a.id).await.unwrap(); // rev 5
    let b2 = s.reissue_device(1, b.id).await.unwrap().device; // rev 6 remove, 7 upsert
    s.ban_user(&Actor::Telegram(9), &UserRef::TelegramId(2))
        .await
        .unwrap(); // rev 8
    let past = chrono::Utc::now() - chrono::Duration::minutes(1);
    s.set_access_expiry(&Actor::Telegram(9), &UserRef::TelegramId(3), Some(past))
        .await
        .unwrap();
    assert_eq!(s.expire_due_access().await.unwrap(), 1); // rev 9
    wait_published(&env.pool).await;

    let events = events(&mut conn, "nl").await;
    assert_eq!(
        node_changes(&events, "nl-1"),
        [
            ("upsert", 1),
            ("upsert", 2),
            ("upsert", 3),
            ("upsert", 4),
            ("remove", 5),
            ("remove", 6),
            ("upsert", 7),
            ("remove", 8),
            ("remove", 9)
        ]
    );
    let removed: Vec<String> = events
        .iter()
        .filter_map(|e| match e {
            StreamEvent::PeerRemove { public_key, .. } => Some(public_key.to_base64()),
            _ => None,
        })
        .collect();
    assert_eq!(
        removed,
        [
            a.public_key.to_base64(),
            b.public_key.to_base64(),
            c.public_key.to_base64(),
            d.public_key.to_base64()
        ]
    );
    let (_, peers) = snapshot(&mut conn, "nl", "nl-1").await;
    assert_eq!(
        peers.keys().cloned().collect::<Vec<_>>(),
        [b2.public_key.to_base64()]
    );
    assert_snapshot_matches(&env.pool, &mut conn, "nl", "nl-1").await;
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_redis_delays_changes_then_publishes_each_once_in_order() {
    let env = env().await;
    let redis = RedisServer::start().unwrap();
    let proxy = TcpProxy::start(format!("127.0.0.1:{}", redis.port()).parse().unwrap()).await;
    seed_region(
        &env.service,
        "nl",
        &[
            ("nl-1", "198.18.0.0/24", 100),
            ("nl-2", "198.18.1.0/24", 100),
        ],
    )
    .await;
    for id in 1..=10 {
        user(&env.service, id).await;
    }
    let relay = start_relay(&env.pool, &proxy.url());
    let mut conn = connect(&redis.url()).await;
    wait_for("the epoch", LIMIT, || async {
        epoch_present(&mut connect(&redis.url()).await, "nl").await
    })
    .await;
    env.service
        .grant_device(1, &region("nl"), None)
        .await
        .unwrap();
    wait_published(&env.pool).await;

    proxy.cut();
    for id in 2..=10 {
        env.service
            .grant_device(id, &region("nl"), None)
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        unpublished(&env.pool).await,
        9,
        "rows wait while Redis is unreachable"
    );

    proxy.restore();
    wait_published(&env.pool).await;
    let events = events(&mut conn, "nl").await;
    for node in ["nl-1", "nl-2"] {
        let changes = node_changes(&events, node);
        let revisions: Vec<u64> = changes.iter().map(|(_, r)| *r).collect();
        let expected: Vec<u64> = (1..=revisions.len() as u64).collect();
        assert_eq!(revisions, expected, "{node}: every revision once, in order");
        assert_snapshot_matches(&env.pool, &mut conn, "nl", node).await;
    }
    assert_eq!(
        node_changes(&events, "nl-1").len() + node_changes(&events, "nl-2").len(),
        10
    );
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restarted_empty_is_rebuilt_from_postgres() {
    let env = env().await;
    let mut redis = RedisServer::start().unwrap();
    seed_region(
        &env.service,
        "nl",
        &[
            ("nl-1", "198.18.0.0/24", 100),
            ("nl-2", "198.18.1.0/24", 100),
        ],
    )
    .await;
    seed_region(&env.service, "de", &[("de-1", "198.18.2.0/24", 100)]).await;
    for id in 1..=6 {
        user(&env.service, id).await;
    }
    let relay = start_relay(&env.pool, &redis.url());
    for id in 1..=3 {
        env.service
            .grant_device(id, &region("nl"), None)
            .await
            .unwrap();
    }
    env.service
        .grant_device(4, &region("de"), None)
        .await
        .unwrap();
    wait_published(&env.pool).await;

    // Redis stops while grants happen, then comes back without its data.
    redis.stop();
    let revoked = env.service.list_devices(1).await.unwrap()[0].id;
    env.service.revoke_device(1, revoked).await.unwrap();
    env.service
        .grant_device(5, &region("nl"), None)
        .await
        .unwrap();
    env.service
        .grant_device(6, &region("de"), None)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        unpublished(&env.pool).await > 0,
        "rows wait while Redis is down"
    );
    redis.restart().unwrap();

    wait_published(&env.pool).await;
    let mut conn = connect(&redis.url()).await;
    wait_for("epochs", LIMIT, || async {
        let mut c = connect(&redis.url()).await;
        epoch_present(&mut c, "nl").await && epoch_present(&mut c, "de").await
    })
    .await;
    for (region, node) in [("nl", "nl-1"), ("nl", "nl-2"), ("de", "de-1")] {
        assert_snapshot_matches(&env.pool, &mut conn, region, node).await;
    }
    // Agents are asked to reconcile with the rebuilt snapshots.
    assert!(
        events(&mut conn, "nl")
            .await
            .iter()
            .any(|e| matches!(e, StreamEvent::Reconcile { node: None, .. }))
    );

    // Flushed while running: same recovery, and new changes flow on top of it.
    let _: () = redis::cmd("FLUSHALL").query_async(&mut conn).await.unwrap();
    wait_for("the epoch after FLUSHALL", LIMIT, || async {
        epoch_present(&mut connect(&redis.url()).await, "nl").await
    })
    .await;
    env.service
        .grant_device(1, &region("nl"), None)
        .await
        .unwrap();
    wait_published(&env.pool).await;
    for (region, node) in [("nl", "nl-1"), ("nl", "nl-2"), ("de", "de-1")] {
        assert_snapshot_matches(&env.pool, &mut conn, region, node).await;
    }
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_requests_travel_as_control_events() {
    let env = env().await;
    let redis = RedisServer::start().unwrap();
    seed_region(&env.service, "nl", &[("nl-1", "198.18.0.0/24", 10)]).await;
    let relay = start_relay(&env.pool, &redis.url());
    let admin = Actor::Cli("root".into());
    let id = env
        .service
        .request_reconcile(
            &admin,
            &pvpn_backend::service::ReconcileTarget::Node(node_name("nl-1")),
        )
        .await
        .unwrap();
    wait_published(&env.pool).await;
    let mut conn = connect(&redis.url()).await;
    let events = events(&mut conn, "nl").await;
    assert!(events.iter().any(|e| matches!(e, StreamEvent::Reconcile { node: Some(n), request_id } if n.as_str() == "nl-1" && *request_id == id)), "{events:?}");
    assert_eq!(
        snapshot(&mut conn, "nl", "nl-1").await.0,
        Some(0),
        "control events change no snapshot"
    );
    let unknown = env
        .service
        .request_reconcile(
            &admin,
            &pvpn_backend::service::ReconcileTarget::Node(node_name("nope")),
        )
        .await;
    assert_eq!(
        unknown.unwrap_err(),
        pvpn_backend::service::ServiceError::NodeNotFound
    );
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_relay_publishes_and_a_second_takes_over_when_it_stops() {
    let env = env().await;
    let redis = RedisServer::start().unwrap();
    seed_region(&env.service, "nl", &[("nl-1", "198.18.0.0/24", 50)]).await;
    for id in 1..=20 {
        user(&env.service, id).await;
    }
    let first = start_relay(&env.pool, &redis.url());
    wait_for("the epoch", LIMIT, || async {
        epoch_present(&mut connect(&redis.url()).await, "nl").await
    })
    .await;
    let second = start_relay(&env.pool, &redis.url());
    for id in 1..=10 {
        env.service
            .grant_device(id, &region("nl"), None)
            .await
            .unwrap();
    }
    wait_published(&env.pool).await;
    let leaders: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted
         AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
    )
    .fetch_one(&env.pool)
    .await
    .unwrap();
    assert_eq!(leaders, 1, "exactly one relay holds the lock");

    first.stop().await;
    for id in 11..=20 {
        env.service
            .grant_device(id, &region("nl"), None)
            .await
            .unwrap();
    }
    wait_published(&env.pool).await;
    let mut conn = connect(&redis.url()).await;
    let revisions: Vec<u64> = node_changes(&events(&mut conn, "nl").await, "nl-1")
        .iter()
        .map(|(_, r)| *r)
        .collect();
    assert_eq!(revisions, (1..=20).collect::<Vec<u64>>());
    assert_snapshot_matches(&env.pool, &mut conn, "nl", "nl-1").await;
    second.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regions_and_nodes_declared_later_get_their_snapshots() {
    let env = env().await;
    let redis = RedisServer::start().unwrap();
    let metrics = std::sync::Arc::new(pvpn_backend::metrics::Metrics::default());
    let stop = tokio_util::sync::CancellationToken::new();
    let relay = tokio::spawn(pvpn_backend::relay::run(
        env.pool.clone(),
        redis::Client::open(redis.url()).unwrap(),
        metrics.clone(),
        pvpn_backend::relay::RelaySettings {
            poll_interval: Duration::from_millis(100),
            ..Default::default()
        },
        stop.clone(),
    ));
    // Nothing declared yet: the relay idles without errors.
    tokio::time::sleep(Duration::from_millis(400)).await;
    seed_region(&env.service, "nl", &[("nl-1", "198.18.0.0/24", 10)]).await;
    wait_for("the new region's epoch", LIMIT, || async {
        epoch_present(&mut connect(&redis.url()).await, "nl").await
    })
    .await;
    env.service
        .declare_node(&OPERATOR, &node("nl-2", "nl", "198.18.1.0/24", 10))
        .await
        .unwrap();
    wait_for("the new node's snapshot", LIMIT, || async {
        snapshot(&mut connect(&redis.url()).await, "nl", "nl-2")
            .await
            .0
            == Some(0)
    })
    .await;
    assert!(
        !metrics
            .render()
            .contains("pvpn_errors_total{component=\"relay\"}"),
        "{}",
        metrics.render()
    );
    stop.cancel();
    relay.await.unwrap();
}
