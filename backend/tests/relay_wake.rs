//! The relay is woken by every committed change, not by its poll: with a poll interval of an
//! hour, a grant, a revoke, a re-issue, a ban, an expiry and a reconcile request each reach Redis
//! while the test waits. If a path commits outbox rows without waking the relay (the `NOTIFY`
//! sent after the commit, `service::outbox::wake_relay`), its rows would wait for the poll and
//! this test would time out.

mod support;

use std::time::Duration;

use pvpn_backend::relay::RelaySettings;
use pvpn_backend::service::{Actor, ReconcileTarget, UserRef};
use pvpn_testkit::redis_server::RedisServer;
use support::redis_side::*;
use support::*;

/// Far longer than the test may take: only a wake-up can make the relay publish.
const POLL: Duration = Duration::from_secs(3600);
const LIMIT: Duration = Duration::from_secs(20);

async fn stream_length(conn: &mut redis::aio::MultiplexedConnection) -> usize {
    events(conn, "nl").await.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_committed_change_wakes_the_relay_without_waiting_for_its_poll() {
    let env = env().await;
    let redis = RedisServer::start().unwrap();
    seed_region(&env.service, "nl", &[("nl-1", "198.18.0.0/24", 10)]).await;
    let s = &env.service;
    for id in [1, 2, 3] {
        user(s, id).await;
    }
    let settings = RelaySettings {
        poll_interval: POLL,
        ..RelaySettings::default()
    };
    let relay = start_relay_with(&env.pool, &redis.url(), settings);
    let mut conn = connect(&redis.url()).await;
    // The relay's first pass (at start, before any wait) writes the region's epoch.
    wait_for("the epoch", LIMIT, || async {
        epoch_present(&mut connect(&redis.url()).await, "nl").await
    })
    .await;

    // Each step commits outbox rows, then waits until the relay has published them all: the
    // stream grows by the step's events and nothing is left unpublished.
    let mut expected = stream_length(&mut conn).await;
    let a = s.grant_device(1, &region("nl"), None).await.unwrap().device;
    expected += 1;
    wait_stream(&env, &redis, expected, "a grant").await;
    let b = s.grant_device(1, &region("nl"), None).await.unwrap().device;
    s.grant_device(2, &region("nl"), None).await.unwrap();
    s.grant_device(3, &region("nl"), None).await.unwrap();
    expected += 3;
    wait_stream(&env, &redis, expected, "three grants").await;
    s.revoke_device(1, a.id).await.unwrap();
    expected += 1;
    wait_stream(&env, &redis, expected, "a revoke").await;
    s.reissue_device(1, b.id).await.unwrap();
    expected += 2;
    wait_stream(&env, &redis, expected, "a re-issue").await;
    s.ban_user(&Actor::Telegram(9), &UserRef::TelegramId(2))
        .await
        .unwrap();
    expected += 1;
    wait_stream(&env, &redis, expected, "a ban").await;
    let past = chrono::Utc::now() - chrono::Duration::minutes(1);
    s.set_access_expiry(&Actor::Telegram(9), &UserRef::TelegramId(3), Some(past))
        .await
        .unwrap();
    assert_eq!(s.expire_due_access().await.unwrap(), 1);
    expected += 1;
    wait_stream(&env, &redis, expected, "an expiry").await;
    s.request_reconcile(
        &Actor::Telegram(9),
        &ReconcileTarget::Node(node_name("nl-1")),
    )
    .await
    .unwrap();
    expected += 1;
    wait_stream(&env, &redis, expected, "a reconcile request").await;

    // What was published is exactly PostgreSQL's state of the node.
    assert_snapshot_matches(&env.pool, &mut conn, "nl", "nl-1").await;
    relay.stop().await;
}

/// Waits until the region's stream holds `expected` events and the outbox is fully published.
async fn wait_stream(env: &Env, redis: &RedisServer, expected: usize, what: &str) {
    wait_for(
        &format!("{what} to be published without a poll"),
        LIMIT,
        || async {
            let mut conn = connect(&redis.url()).await;
            stream_length(&mut conn).await == expected && unpublished(&env.pool).await == 0
        },
    )
    .await;
}
