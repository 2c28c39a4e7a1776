//! Concurrent grants against a real PostgreSQL: the database, not luck, keeps addresses unique
//! and capacities and device limits exact; conflicts are retried, never surfaced as errors.

mod support;

use std::collections::BTreeSet;

use pvpn_backend::service::{Actor, ServiceError, UserRef};
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_grants_into_room_for_150() {
    let env = env().await;
    seed_region(&env.service, "nl", &[("nl-1", "198.18.0.0/24", 150)]).await;
    for id in 1..=200 {
        user(&env.service, id).await;
    }
    let tasks: Vec<_> = (1..=200)
        .map(|id| {
            let s = env.service.clone();
            tokio::spawn(async move { s.grant_device(id, &region("nl"), None).await })
        })
        .collect();
    let mut addresses = BTreeSet::new();
    let mut full = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(granted) => assert!(
                addresses.insert(granted.device.address),
                "duplicate address"
            ),
            Err(ServiceError::RegionFull) => full += 1,
            Err(other) => panic!("unexpected error: {other:?}"),
        }
    }
    assert_eq!(addresses.len(), 150);
    assert_eq!(full, 50);
    // The lowest 150 addresses, no holes.
    let lowest: BTreeSet<_> = (2..=151u32)
        .map(|h| std::net::Ipv4Addr::from(u32::from(std::net::Ipv4Addr::new(198, 18, 0, 0)) + h))
        .collect();
    assert_eq!(addresses, lowest);
    // One outbox row per grant, revisions 1..=150 without holes.
    let revisions: Vec<i64> =
        sqlx::query_scalar("SELECT revision FROM outbox WHERE node = 'nl-1' ORDER BY id")
            .fetch_all(&env.pool)
            .await
            .unwrap();
    assert_eq!(revisions, (1..=150).collect::<Vec<i64>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_grants_respect_the_device_limit() {
    let env = env().await;
    seed_region(
        &env.service,
        "nl",
        &[
            ("nl-1", "198.18.0.0/24", 200),
            ("nl-2", "198.18.1.0/24", 200),
        ],
    )
    .await;
    user(&env.service, 1).await;
    env.service
        .set_device_limit(&Actor::System("test"), &UserRef::TelegramId(1), 5)
        .await
        .unwrap();
    let tasks: Vec<_> = (0..40)
        .map(|_| {
            let s = env.service.clone();
            tokio::spawn(async move { s.grant_device(1, &region("nl"), None).await })
        })
        .collect();
    let (mut ok, mut limited) = (0, 0);
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => ok += 1,
            Err(ServiceError::DeviceLimitReached { limit: 5 }) => limited += 1,
            Err(other) => panic!("unexpected error: {other:?}"),
        }
    }
    assert_eq!((ok, limited), (5, 35));
    assert_eq!(env.service.list_devices(1).await.unwrap().len(), 5);
}

#[tokio::test]
async fn placement_prefers_the_node_with_most_free_room() {
    let env = env().await;
    // nl-2's configured capacity is large but its /29 holds only 5 clients.
    seed_region(
        &env.service,
        "nl",
        &[
            ("nl-1", "198.18.0.0/24", 8),
            ("nl-2", "198.18.1.0/29", 1000),
            ("nl-3", "198.18.2.0/24", 3),
        ],
    )
    .await;
    env.service
        .set_node_enabled(&OPERATOR, &node_name("nl-3"), false)
        .await
        .unwrap();
    let mut placed = Vec::new();
    for id in 1..=13 {
        user(&env.service, id).await;
        let device = env
            .service
            .grant_device(id, &region("nl"), None)
            .await
            .unwrap()
            .device;
        placed.push(device.node.to_string());
    }
    // Free: nl-1 8, nl-2 5 → nl-1 until both have 5 free, then alternating by name on ties.
    assert_eq!(&placed[..3], ["nl-1", "nl-1", "nl-1"]);
    assert_eq!(placed.iter().filter(|n| *n == "nl-1").count(), 8);
    assert_eq!(placed.iter().filter(|n| *n == "nl-2").count(), 5);
    assert!(
        !placed.contains(&"nl-3".to_string()),
        "a disabled node takes no devices"
    );
    let region = &env.service.list_regions().await.unwrap()[0];
    assert_eq!(
        (region.devices, region.capacity),
        (13, 13),
        "capacity counts what the subnets hold"
    );
    assert!(!region.accepts_new_devices());
    user(&env.service, 99).await;
    assert_eq!(
        env.service
            .grant_device(99, &region.code, None)
            .await
            .unwrap_err(),
        ServiceError::RegionFull
    );
}
