//! A node's live-device count and address pool (`nodes.live_devices`, `nodes.next_address`,
//! `free_addresses`) stay exactly what a scan of `devices` would say, through every path that
//! makes a device live or not, under concurrency, and after the migration backfilled them.

mod support;

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use chrono::{Duration, Utc};
use pvpn_backend::db;
use pvpn_backend::service::{ServiceError, UserRef};
use pvpn_common::addressing::ClientSubnet;
use sqlx::PgPool;
use support::*;

/// Checks every node: `live_devices` equals a COUNT over its active devices, no live client
/// address is at or above the cursor, and below the cursor every client address is either live or free,
/// never both.
async fn assert_pool_exact(pool: &PgPool) {
    let nodes: Vec<(String, String, i32, Option<String>)> = sqlx::query_as(
        "SELECT name, subnet::text, live_devices, host(next_address) FROM nodes ORDER BY name",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    assert!(!nodes.is_empty(), "no nodes to check");
    for (name, subnet, live_devices, next) in nodes {
        let live: BTreeSet<Ipv4Addr> = addresses(
            pool,
            "SELECT host(address) FROM devices WHERE node = $1 AND status = 'active'",
            &name,
        )
        .await;
        let free = addresses(
            pool,
            "SELECT host(address) FROM free_addresses WHERE node = $1",
            &name,
        )
        .await;
        let counted: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM devices WHERE node = $1 AND status = 'active'",
        )
        .bind(&name)
        .fetch_one(pool)
        .await
        .unwrap();
        assert_eq!(i64::from(live_devices), counted, "{name}: live_devices");
        let (first, last) = ClientSubnet::new(subnet.parse().unwrap())
            .unwrap()
            .client_range();
        // The pool covers the client range only (an imported device may hold another address).
        let live: BTreeSet<Ipv4Addr> = live
            .into_iter()
            .filter(|a| (first..=last).contains(a))
            .collect();
        let next: Ipv4Addr = next.map_or(first, |n| n.parse().unwrap());
        assert!(
            live.iter().all(|a| *a < next),
            "{name}: a live address at or above the cursor {next}: {live:?}"
        );
        assert!(
            live.is_disjoint(&free),
            "{name}: an address both live and free"
        );
        let below: BTreeSet<Ipv4Addr> = (u32::from(first)..u32::from(next))
            .map(Ipv4Addr::from)
            .collect();
        let held: BTreeSet<Ipv4Addr> = live.union(&free).copied().collect();
        assert_eq!(
            held, below,
            "{name}: live ∪ free must be the range below the cursor"
        );
    }
}

async fn addresses(pool: &PgPool, sql: &'static str, node: &str) -> BTreeSet<Ipv4Addr> {
    let rows: Vec<String> = sqlx::query_scalar(sql)
        .bind(node)
        .fetch_all(pool)
        .await
        .unwrap();
    rows.iter().map(|a| a.parse().unwrap()).collect()
}

async fn grant(env: &Env, telegram_id: i64, region_code: &str) -> (i64, Ipv4Addr) {
    let device = env
        .service
        .grant_device(telegram_id, &region(region_code), None)
        .await
        .expect("grant")
        .device;
    (device.id, device.address)
}

fn host(last_octet: u8) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, 0, last_octet)
}

#[tokio::test]
async fn counters_stay_exact_across_grant_revoke_reissue_ban_and_expiry() {
    let env = env().await;
    seed_region(
        &env.service,
        "nl",
        &[
            ("nl-1", "198.18.0.0/24", 100),
            ("nl-2", "198.18.1.0/24", 100),
        ],
    )
    .await;
    for id in 1..=4 {
        user(&env.service, id).await;
    }
    env.service
        .set_device_limit(&OPERATOR, &UserRef::TelegramId(1), 10)
        .await
        .unwrap();
    let mut devices = Vec::new();
    for id in 1..=4 {
        for _ in 0..3 {
            devices.push((id, grant(&env, id, "nl").await.0));
            assert_pool_exact(&env.pool).await;
        }
    }
    env.service.revoke_device(1, devices[0].1).await.unwrap();
    assert_pool_exact(&env.pool).await;
    env.service.reissue_device(1, devices[1].1).await.unwrap();
    assert_pool_exact(&env.pool).await;
    let banned = env
        .service
        .ban_user(&OPERATOR, &UserRef::TelegramId(2))
        .await
        .unwrap();
    assert_eq!(banned.revoked_devices, 3);
    assert_pool_exact(&env.pool).await;
    env.service
        .set_access_expiry(
            &OPERATOR,
            &UserRef::TelegramId(3),
            Some(Utc::now() - Duration::minutes(1)),
        )
        .await
        .unwrap();
    assert_eq!(
        env.service.expire_due_access().await.unwrap(),
        3,
        "user 3's devices"
    );
    assert_pool_exact(&env.pool).await;
    // A refused grant (banned) and a revoke of someone else's device change nothing.
    assert_eq!(
        env.service
            .grant_device(2, &region("nl"), None)
            .await
            .unwrap_err(),
        ServiceError::Banned
    );
    assert_eq!(
        env.service
            .revoke_device(4, devices[1].1)
            .await
            .unwrap_err(),
        ServiceError::DeviceNotFound
    );
    assert_pool_exact(&env.pool).await;
    let region_view = &env.service.list_regions().await.unwrap()[0];
    assert_eq!(region_view.devices, 5, "users 1 (2 left) and 4 (3)");
    // Everything freed (7 addresses) comes back before either cursor moves.
    let cursors = "SELECT host(next_address) FROM nodes ORDER BY name";
    let before: Vec<String> = sqlx::query_scalar(cursors)
        .fetch_all(&env.pool)
        .await
        .unwrap();
    for _ in 0..7 {
        grant(&env, 1, "nl").await;
    }
    let after: Vec<String> = sqlx::query_scalar(cursors)
        .fetch_all(&env.pool)
        .await
        .unwrap();
    assert_eq!(before, after);
    assert_pool_exact(&env.pool).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn counters_stay_exact_under_concurrent_grants_and_revokes() {
    let env = env().await;
    seed_region(
        &env.service,
        "nl",
        &[
            ("nl-1", "198.18.0.0/24", 60),
            ("nl-2", "198.18.1.0/24", 60),
            ("nl-3", "198.18.2.0/24", 60),
        ],
    )
    .await;
    for id in 1..=60 {
        user(&env.service, id).await;
    }
    let grants = |ids: Vec<i64>| {
        ids.into_iter()
            .map(|id| {
                let s = env.service.clone();
                tokio::spawn(async move { (id, s.grant_device(id, &region("nl"), None).await) })
            })
            .collect::<Vec<_>>()
    };
    let mut granted = Vec::new();
    for task in grants((1..=60).chain(1..=60).collect()) {
        let (telegram_id, result) = task.await.unwrap();
        granted.push((telegram_id, result.expect("room for all").device.id));
    }
    assert_pool_exact(&env.pool).await;
    // Revoke every other device while new grants race for the freed addresses.
    let revokes: Vec<_> = granted
        .iter()
        .step_by(2)
        .map(|&(telegram_id, device)| {
            let s = env.service.clone();
            tokio::spawn(async move { s.revoke_device(telegram_id, device).await })
        })
        .collect();
    let regrants = grants((1..=30).collect());
    for task in revokes {
        task.await.unwrap().expect("revoke");
    }
    for task in regrants {
        task.await.unwrap().1.expect("regrant");
    }
    assert_pool_exact(&env.pool).await;
    let live: i64 = sqlx::query_scalar("SELECT count(*) FROM devices WHERE status = 'active'")
        .fetch_one(&env.pool)
        .await
        .unwrap();
    assert_eq!(live, 120 - 60 + 30);
}

#[tokio::test]
async fn a_released_address_is_reused_lowest_first() {
    let env = env().await;
    seed_region(&env.service, "nl", &[("nl-1", "198.18.0.0/24", 100)]).await;
    user(&env.service, 1).await;
    env.service
        .set_device_limit(&OPERATOR, &UserRef::TelegramId(1), 20)
        .await
        .unwrap();
    let mut ids = Vec::new();
    for expected in 2..=7 {
        let (id, address) = grant(&env, 1, "nl").await;
        assert_eq!(address, host(expected));
        ids.push(id);
    }
    // Released in the order .6, .3, .7 (the highest handed out), .5.
    for index in [4, 1, 5, 3] {
        env.service.revoke_device(1, ids[index]).await.unwrap();
    }
    assert_pool_exact(&env.pool).await;
    let mut next = Vec::new();
    for _ in 0..5 {
        next.push(grant(&env, 1, "nl").await.1);
    }
    assert_eq!(next, [3, 5, 6, 7, 8].map(host));
    assert_pool_exact(&env.pool).await;
}

/// The version of the migration that adds the pool: everything before it is the schema the
/// backfill starts from.
const POOL_MIGRATION: i64 = 20261201120000;

#[tokio::test]
async fn the_migration_backfills_counts_and_free_addresses_from_existing_devices() {
    let database = pvpn_testkit::postgres::TestDatabase::create()
        .await
        .expect("test database");
    let pool = database.pool().await.expect("pool");
    let before = db::MIGRATOR
        .iter()
        .map(|m| m.version)
        .filter(|v| *v < POOL_MIGRATION)
        .max()
        .expect("a migration before the pool's");
    db::MIGRATOR
        .run_to(before, &pool)
        .await
        .expect("old schema");
    sqlx::raw_sql(
        "INSERT INTO regions (code, display_name) VALUES ('nl', 'Netherlands');
         INSERT INTO nodes (name, region, endpoint, public_key, listen_port, subnet, capacity)
         VALUES ('nl-1', 'nl', 'a.example.net:51820', repeat('A', 43) || '=', 51820, '198.18.0.0/24', 50),
                ('nl-2', 'nl', 'b.example.net:51820', repeat('B', 43) || '=', 51820, '198.18.1.0/24', 50),
                ('nl-3', 'nl', 'c.example.net:51820', repeat('C', 43) || '=', 51820, '198.18.2.0/24', 50);
         UPDATE nodes SET status = 'disabled' WHERE name <> 'nl-1';
         INSERT INTO users (telegram_id, device_limit) VALUES (1, 100);",
    )
    .execute(&pool)
    .await
    .unwrap();
    // nl-1: live .2 .3 .5 .8, revoked .4 and .9 (above the highest live); nl-2: only revoked.
    let rows = [
        ("nl-1", 2, true),
        ("nl-1", 3, true),
        ("nl-1", 4, false),
        ("nl-1", 5, true),
        ("nl-1", 8, true),
        ("nl-1", 9, false),
        ("nl-2", 2, false),
    ];
    for (i, (node, octet, live)) in rows.iter().enumerate() {
        let third = if *node == "nl-1" { 0 } else { 1 };
        sqlx::query(
            "INSERT INTO devices (user_id, node, name, public_key, address, status, revoked_at,
                                  revoke_reason)
             SELECT id, $1, 'd', $2, $3::inet,
                    CASE WHEN $4 THEN 'active' ELSE 'revoked' END,
                    CASE WHEN $4 THEN NULL ELSE now() END,
                    CASE WHEN $4 THEN NULL ELSE 'user' END
             FROM users WHERE telegram_id = 1",
        )
        .bind(node)
        .bind(format!("{:0>43}=", i))
        .bind(format!("198.18.{third}.{octet}"))
        .bind(live)
        .execute(&pool)
        .await
        .unwrap();
    }
    db::migrate(&pool).await.expect("the pool migration");
    assert_pool_exact(&pool).await;
    let counts: Vec<(String, i32)> =
        sqlx::query_as("SELECT name, live_devices FROM nodes ORDER BY name")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(
        counts,
        [("nl-1".into(), 4), ("nl-2".into(), 0), ("nl-3".into(), 0)]
    );
    let free = addresses(
        &pool,
        "SELECT host(address) FROM free_addresses WHERE node = $1",
        "nl-1",
    )
    .await;
    assert_eq!(free, [4, 6, 7].map(host).into());
    // Grants go on from there (nl-1 is the only active node).
    let service = pvpn_backend::service::Service::new(pool.clone(), Default::default());
    let mut got = Vec::new();
    for _ in 0..4 {
        let device = service
            .grant_device(1, &region("nl"), None)
            .await
            .expect("grant")
            .device;
        got.push(device.address);
    }
    assert_eq!(
        got,
        [4, 6, 7, 9].map(host),
        "the gaps lowest first, then past .8"
    );
    assert_pool_exact(&pool).await;
}

#[tokio::test]
async fn devices_inserted_with_their_own_addresses_are_claimed_from_the_pool() {
    let env = env().await;
    seed_region(&env.service, "nl", &[("nl-1", "198.18.0.0/24", 100)]).await;
    user(&env.service, 1).await;
    env.service
        .set_device_limit(&OPERATOR, &UserRef::TelegramId(1), 50)
        .await
        .unwrap();
    // Granted .2 .3 .4, then .3 released: the pool holds .3, the cursor is at .5.
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(grant(&env, 1, "nl").await.0);
    }
    env.service.revoke_device(1, ids[1]).await.unwrap();
    // A bulk writer inserts .3 (free), .9 and .12 (above the cursor) and .1 (outside the
    // client range: the node's own address), the way an import does.
    let imported = [3, 9, 12, 1].map(host);
    let mut tx = env.pool.begin().await.unwrap();
    let node = db::nodes::lock(&mut tx, "nl-1").await.unwrap().unwrap();
    for (i, address) in imported.iter().enumerate() {
        sqlx::query(
            "INSERT INTO devices (user_id, node, name, public_key, address)
             SELECT id, 'nl-1', 'imported', $1, $2::inet FROM users WHERE telegram_id = 1",
        )
        .bind(format!("{:0>43}=", i))
        .bind(address.to_string())
        .execute(&mut *tx)
        .await
        .unwrap();
    }
    let (first, last) = node.subnet.client_range();
    db::addresses::claim_inserted(&mut tx, "nl-1", first, last, &imported)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_pool_exact(&env.pool).await;
    let live_devices: i32 =
        sqlx::query_scalar("SELECT live_devices FROM nodes WHERE name = 'nl-1'")
            .fetch_one(&env.pool)
            .await
            .unwrap();
    assert_eq!(live_devices, 6, "two granted, four inserted");
    // The gaps the cursor skipped come first, lowest first, then past .12.
    let mut next = Vec::new();
    for _ in 0..6 {
        next.push(grant(&env, 1, "nl").await.1);
    }
    assert_eq!(next, [5, 6, 7, 8, 10, 11].map(host));
    assert_eq!(grant(&env, 1, "nl").await.1, host(13));
    assert_pool_exact(&env.pool).await;
}
