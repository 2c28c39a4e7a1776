//! Agents' feedback into PostgreSQL through a real Redis: heartbeats update their node, stats
//! accumulate traffic across counter resets and re-deliveries, bad entries are dropped without
//! stopping the consumer, and a node whose heartbeats stopped shows as down.

mod support;

use std::time::Duration;

use pvpn_common::keys::KeyPair;
use pvpn_common::redis_keys::{BACKEND_FEEDBACK_GROUP, RegionKeys};
use pvpn_common::wire::{
    EVENT_FIELD, Feedback, Heartbeat, PeerStats, ReconcileReport, ReconcileTrigger,
};
use pvpn_common::{PublicKey, RegionCode};
use pvpn_testkit::redis_server::RedisServer;
use support::redis_side::*;
use support::*;

const LIMIT: Duration = Duration::from_secs(20);

/// The feedback stream of node `node` of region nl.
fn feedback_key(node: &str) -> String {
    RegionKeys::new(&RegionCode::new("nl").unwrap()).node_feedback(&node_name(node))
}

/// Writes `payload` to `node`'s feedback stream, as that node's agent does.
async fn send(conn: &mut redis::aio::MultiplexedConnection, node: &str, payload: &str) {
    let key = feedback_key(node);
    let _: String = redis::cmd("XADD")
        .arg(key)
        .arg("*")
        .arg(EVENT_FIELD)
        .arg(payload)
        .query_async(conn)
        .await
        .unwrap();
}

fn stats(key: PublicKey, rx: u64, tx: u64, handshake: Option<i64>) -> String {
    Feedback::Stats {
        node: node_name("nl-1"),
        sent_at: 1,
        peers: vec![PeerStats {
            public_key: key,
            last_handshake: handshake,
            rx_bytes: rx,
            tx_bytes: tx,
        }],
    }
    .encode()
}

async fn traffic(env: &Env, telegram_id: i64) -> (u64, u64) {
    let device = &env.service.list_devices(telegram_id).await.unwrap()[0];
    (device.rx_bytes, device.tx_bytes)
}

async fn pending(conn: &mut redis::aio::MultiplexedConnection) -> i64 {
    let key = feedback_key("nl-1");
    let summary: redis::Value = redis::cmd("XPENDING")
        .arg(key)
        .arg(BACKEND_FEEDBACK_GROUP)
        .query_async(conn)
        .await
        .unwrap();
    match summary {
        redis::Value::Array(items) => match items.first() {
            Some(redis::Value::Int(n)) => *n,
            other => panic!("unexpected XPENDING reply {other:?}"),
        },
        other => panic!("unexpected XPENDING reply {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_and_stats_are_stored() {
    let env = env().await;
    let redis = RedisServer::start().unwrap();
    seed_region(&env.service, "nl", &[("nl-1", "198.18.0.0/24", 10)]).await;
    user(&env.service, 1).await;
    let device = env
        .service
        .grant_device(1, &region("nl"), None)
        .await
        .unwrap()
        .device;
    let key: PublicKey = device.public_key;
    let consumer = start_feedback(&env.pool, &redis.url());
    let mut conn = connect(&redis.url()).await;

    assert!(
        !env.service.node_statuses(None).await.unwrap()[0].up,
        "never heard from: down"
    );
    let heartbeat = Feedback::Heartbeat(Heartbeat {
        node: node_name("nl-1"),
        agent_version: "0.1.0".into(),
        sent_at: chrono::Utc::now().timestamp(),
        applied_revision: 1,
        peer_count: 1,
        last_reconcile: Some(ReconcileReport {
            trigger: ReconcileTrigger::Requested,
            request_id: Some("r-1".into()),
            finished_at: 5,
            snapshot_revision: 1,
            added: 1,
            removed: 2,
            updated: 0,
            interface_corrected: false,
        }),
    });
    // Wait for the consumer's group, then feed: bad entries first, a good one after them.
    wait_for("the feedback group", LIMIT, || async {
        let key = feedback_key("nl-1");
        let groups: redis::RedisResult<redis::Value> = redis::cmd("XINFO")
            .arg("GROUPS")
            .arg(key)
            .query_async(&mut connect(&redis.url()).await)
            .await;
        groups.is_ok_and(|v| matches!(v, redis::Value::Array(g) if !g.is_empty()))
    })
    .await;
    send(&mut conn, "nl-1", "not json").await;
    send(&mut conn, "nl-1", r#"{"v":9,"type":"heartbeat"}"#).await;
    let key_name = feedback_key("nl-1");
    let _: String = redis::cmd("XADD")
        .arg(&key_name)
        .arg("*")
        .arg("other")
        .arg("x")
        .query_async(&mut conn)
        .await
        .unwrap();
    let stranger = Feedback::Stats {
        node: node_name("xx-9"),
        sent_at: 1,
        peers: vec![],
    }
    .encode();
    send(&mut conn, "nl-1", &stranger).await;
    send(&mut conn, "nl-1", &stats(key, u64::MAX, 1, None)).await;
    send(&mut conn, "nl-1", &heartbeat.encode()).await;

    wait_for("the heartbeat", LIMIT, || async {
        env.service.node_statuses(None).await.unwrap()[0].up
    })
    .await;
    let node = &env.service.node_statuses(None).await.unwrap()[0];
    assert_eq!(node.applied_revision, 1);
    assert_eq!(node.peer_count, Some(1));
    assert_eq!(node.agent_version.as_deref(), Some("0.1.0"));
    let drift = node.last_reconcile.as_ref().expect("drift stored");
    assert_eq!(drift["removed"], 2);
    assert_eq!(drift["request_id"], "r-1");
    wait_for("every entry acknowledged", LIMIT, || async {
        pending(&mut connect(&redis.url()).await).await == 0
    })
    .await;
    assert_eq!(
        traffic(&env, 1).await,
        (0, 0),
        "out-of-range counters were dropped"
    );

    // Counters: grow, re-delivered, reset to a smaller value, grow again.
    let handshake = chrono::Utc::now().timestamp() - 30;
    send(&mut conn, "nl-1", &stats(key, 100, 1000, Some(handshake))).await;
    wait_for("first stats", LIMIT, || async {
        traffic(&env, 1).await == (100, 1000)
    })
    .await;
    send(&mut conn, "nl-1", &stats(key, 150, 1500, Some(handshake))).await;
    send(&mut conn, "nl-1", &stats(key, 150, 1500, Some(handshake))).await;
    wait_for("second stats", LIMIT, || async {
        traffic(&env, 1).await == (150, 1500)
    })
    .await;
    send(
        &mut conn,
        "nl-1",
        &stats(key, 30, 200, Some(handshake + 10)),
    )
    .await;
    send(&mut conn, "nl-1", &stats(key, 50, 260, None)).await;
    wait_for("stats after the reset", LIMIT, || async {
        traffic(&env, 1).await == (200, 1760)
    })
    .await;
    let device = &env.service.list_devices(1).await.unwrap()[0];
    assert_eq!(
        device.last_handshake_at.map(|t| t.timestamp()),
        Some(handshake + 10)
    );
    // Stats for a key the node does not hold change nothing.
    send(
        &mut conn,
        "nl-1",
        &stats(KeyPair::generate().public, 5, 5, None),
    )
    .await;

    // A node whose heartbeats stopped shows as down.
    sqlx::query("UPDATE nodes SET last_heartbeat_at = now() - interval '10 minutes'")
        .execute(&env.pool)
        .await
        .unwrap();
    assert!(!env.service.node_statuses(None).await.unwrap()[0].up);
    consumer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_survives_redis_restart_and_recreates_its_group() {
    let env = env().await;
    let mut redis = RedisServer::start().unwrap();
    seed_region(&env.service, "nl", &[("nl-1", "198.18.0.0/24", 10)]).await;
    user(&env.service, 1).await;
    let key: PublicKey = env
        .service
        .grant_device(1, &region("nl"), None)
        .await
        .unwrap()
        .device
        .public_key;
    let consumer = start_feedback(&env.pool, &redis.url());
    wait_for("the feedback group", LIMIT, || async {
        let k = feedback_key("nl-1");
        redis::cmd("XINFO")
            .arg("GROUPS")
            .arg(k)
            .query_async::<redis::Value>(&mut connect(&redis.url()).await)
            .await
            .is_ok()
    })
    .await;
    redis.restart().unwrap();
    let conn = connect(&redis.url()).await;
    // The stream now exists without the group until the consumer recreates it.
    wait_for("stats after the restart", LIMIT, || async {
        send(&mut conn.clone(), "nl-1", &stats(key, 10, 10, None)).await;
        traffic(&env, 1).await.0 > 0
    })
    .await;
    consumer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_backends_count_usage_exactly_once() {
    let env = env().await;
    let redis = RedisServer::start().unwrap();
    seed_region(&env.service, "nl", &[("nl-1", "198.18.0.0/24", 10)]).await;
    user(&env.service, 1).await;
    let key: PublicKey = env
        .service
        .grant_device(1, &"nl".parse().unwrap(), None)
        .await
        .unwrap()
        .device
        .public_key;
    // Two whole backends' worth of background work against one database and one Redis.
    let relays = [
        start_relay(&env.pool, &redis.url()),
        start_relay(&env.pool, &redis.url()),
    ];
    let consumers = [
        start_feedback(&env.pool, &redis.url()),
        start_feedback(&env.pool, &redis.url()),
    ];
    wait_for("the feedback group", LIMIT, || async {
        redis::cmd("XINFO")
            .arg("GROUPS")
            .arg(feedback_key("nl-1"))
            .query_async::<redis::Value>(&mut connect(&redis.url()).await)
            .await
            .is_ok_and(|v| matches!(v, redis::Value::Array(g) if !g.is_empty()))
    })
    .await;
    // 300 reports, each 1,000 bytes more than the one before, as an agent sends them.
    let mut conn = connect(&redis.url()).await;
    for n in 1..=300u64 {
        send(&mut conn, "nl-1", &stats(key, n * 1000, n * 1000, None)).await;
    }
    wait_for("every entry acknowledged", LIMIT, || async {
        pending(&mut connect(&redis.url()).await).await == 0 && traffic(&env, 1).await.0 >= 300_000
    })
    .await;
    // Both consumers are idle now; nothing may arrive late and add more.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(traffic(&env, 1).await, (300_000, 300_000));
    for task in consumers.into_iter().chain(relays) {
        task.stop().await;
    }
}

fn heartbeat_of(node: &str, applied_revision: u64) -> String {
    Feedback::Heartbeat(Heartbeat {
        node: node_name(node),
        agent_version: "0.1.0".into(),
        sent_at: chrono::Utc::now().timestamp(),
        applied_revision,
        peer_count: 0,
        last_reconcile: None,
    })
    .encode()
}

/// The stream a message arrives on names its sender: a message on nl-1's stream claiming to be
/// nl-2 (what a stolen nl-1 credential could write) is dropped and counted, and changes nothing
/// for nl-2; nl-2's own stream is read too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feedback_claiming_another_node_is_dropped() {
    let env = env().await;
    let redis = RedisServer::start().unwrap();
    seed_region(
        &env.service,
        "nl",
        &[("nl-1", "198.18.0.0/24", 10), ("nl-2", "198.18.1.0/24", 10)],
    )
    .await;
    let metrics = std::sync::Arc::new(pvpn_backend::metrics::Metrics::default());
    let consumer = start_feedback_with(&env.pool, &redis.url(), metrics.clone());
    let mut conn = connect(&redis.url()).await;
    let status = |name: &'static str| {
        let service = env.service.clone();
        async move {
            service
                .node_statuses(None)
                .await
                .unwrap()
                .into_iter()
                .find(|n| n.name.as_str() == name)
                .expect("seeded node")
        }
    };
    wait_for("the feedback groups", LIMIT, || async {
        let mut ok = true;
        for node in ["nl-1", "nl-2"] {
            let groups: redis::RedisResult<redis::Value> = redis::cmd("XINFO")
                .arg("GROUPS")
                .arg(feedback_key(node))
                .query_async(&mut connect(&redis.url()).await)
                .await;
            ok &= groups.is_ok_and(|v| matches!(v, redis::Value::Array(g) if !g.is_empty()));
        }
        ok
    })
    .await;
    // The forgery first, then nl-1's own heartbeat on the same stream: once nl-1 is up, the
    // forgery before it was handled.
    send(&mut conn, "nl-1", &heartbeat_of("nl-2", 7)).await;
    send(&mut conn, "nl-1", &heartbeat_of("nl-1", 3)).await;
    wait_for("nl-1's heartbeat", LIMIT, || async {
        status("nl-1").await.up
    })
    .await;
    let victim = status("nl-2").await;
    assert!(!victim.up, "a forged heartbeat kept nl-2 up");
    assert_eq!(victim.applied_revision, 0);
    assert_eq!(status("nl-1").await.applied_revision, 3);
    let metrics = metrics.render();
    assert!(
        metrics.contains(r#"pvpn_feedback_entries_total{result="wrong_node"} 1"#),
        "{metrics}"
    );

    send(&mut conn, "nl-2", &heartbeat_of("nl-2", 5)).await;
    wait_for("nl-2's own heartbeat", LIMIT, || async {
        status("nl-2").await.applied_revision == 5
    })
    .await;
    consumer.stop().await;
}
