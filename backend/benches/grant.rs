//! Backend throughput against a real PostgreSQL and a real Redis: grants one after another and
//! concurrently, the relay publishing a burst, and a full node republish after Redis lost its
//! data; then grant latency at 1k, 10k and 60k devices on a node and grants/s into a 4-node
//! region (`scale`), each printed next to its target. Results go to BENCHMARKS.md.
//!
//! `cargo bench -p pvpn-backend --bench grant [-- <devices>]` (default 1000; the relay part);
//! `cargo bench -p pvpn-backend --bench grant -- region`: only the 4-node region's grants/s.

#[path = "grant/scale.rs"]
mod scale;

use std::sync::Arc;
use std::time::{Duration, Instant};

use pvpn_backend::metrics::Metrics;
use pvpn_backend::relay::{self, RelaySettings};
use pvpn_backend::service::{Actor, Language, NodeDeclaration, Service, ServiceSettings};
use pvpn_common::addressing::ClientSubnet;
use pvpn_common::keys::KeyPair;
use pvpn_common::{NodeName, RegionCode};
use pvpn_testkit::postgres::TestDatabase;
use pvpn_testkit::redis_server::RedisServer;
use tokio_util::sync::CancellationToken;

async fn setup(devices: u32) -> (TestDatabase, Service) {
    let database = TestDatabase::create().await.expect("database");
    let pool = database.pool().await.expect("pool");
    pvpn_backend::db::migrate(&pool).await.expect("migrate");
    let service = Service::new(pool, ServiceSettings::default());
    let actor = Actor::System("bench");
    let region = RegionCode::new("nl").unwrap();
    service
        .declare_region(&actor, &region, "Netherlands")
        .await
        .unwrap();
    let node = NodeDeclaration {
        name: NodeName::new("nl-1").unwrap(),
        region,
        endpoint: "vpn.example.net:51820".parse().unwrap(),
        public_key: KeyPair::generate().public,
        listen_port: 51820,
        subnet: ClientSubnet::new("198.18.0.0/16".parse().unwrap()).unwrap(),
        dns: vec![],
        capacity: devices * 3,
        protocol: pvpn_common::obfuscation::Protocol::WireGuard,
    };
    service.declare_node(&actor, &node).await.unwrap();
    for id in 1..=i64::from(devices) * 2 {
        service
            .register_user(id, None, Language::En, None)
            .await
            .unwrap();
    }
    (database, service)
}

async fn unpublished(service: &Service) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM outbox WHERE published_at IS NULL")
        .fetch_one(service.pool())
        .await
        .unwrap()
}

fn per_op(total: Duration, n: u32) -> String {
    format!(
        "{:.2} ms per grant ({:.0} ms total)",
        total.as_secs_f64() * 1000.0 / f64::from(n),
        total.as_secs_f64() * 1000.0
    )
}

#[tokio::main]
async fn main() {
    if std::env::args().any(|a| a == "region") {
        // Only the 4-node region's throughput (issue #13's grants/s target).
        let (_, _, rate, _, _) = scale::region_throughput(10_000, 4_000).await;
        println!(
            "target >= 1000 grants/s, 50 in flight, 4-node region: {rate:.0}/s ({})",
            if rate >= 1000.0 { "met" } else { "NOT met" }
        );
        return;
    }
    let devices: u32 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(1000);
    let (_database, service) = setup(devices).await;
    let redis = RedisServer::start().expect("redis-server");

    // Sequential grants, no relay running.
    let start = Instant::now();
    for id in 1..=i64::from(devices) {
        service
            .grant_device(id, &"nl".parse().unwrap(), None)
            .await
            .unwrap();
    }
    println!(
        "{devices} sequential grants: {}",
        per_op(start.elapsed(), devices)
    );

    // The relay publishes that backlog (first pass: epoch missing, so it republishes instead).
    let stop = CancellationToken::new();
    let settings = RelaySettings {
        poll_interval: Duration::from_millis(50),
        ..RelaySettings::default()
    };
    let client = redis::Client::open(redis.url()).unwrap();
    let task = tokio::spawn(relay::run(
        service.pool().clone(),
        client,
        Arc::new(Metrics::default()),
        settings,
        stop.clone(),
    ));
    let start = Instant::now();
    while unpublished(&service).await > 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    println!(
        "initial snapshot of {devices} peers (epoch missing): {:.0} ms",
        start.elapsed().as_secs_f64() * 1000.0
    );

    // Concurrent grants with the relay running, at most IN_FLIGHT at a time (a burst far
    // larger than the pool would wait longer than the pool's acquire timeout): commit to Redis
    // for the whole burst.
    const IN_FLIGHT: usize = 50;
    let limit = Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT));
    let start = Instant::now();
    let tasks: Vec<_> = (i64::from(devices) + 1..=i64::from(devices) * 2)
        .map(|id| {
            let (s, limit) = (service.clone(), limit.clone());
            tokio::spawn(async move {
                let _permit = limit.acquire_owned().await.unwrap();
                s.grant_device(id, &"nl".parse().unwrap(), None)
                    .await
                    .map(|_| ())
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let granted = start.elapsed();
    while unpublished(&service).await > 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    println!(
        "{devices} grants, {IN_FLIGHT} at a time: {}; all published {:.0} ms after the first",
        per_op(granted, devices),
        start.elapsed().as_secs_f64() * 1000.0
    );

    // Redis loses its data: time until the node's full snapshot is back.
    let mut conn = redis.connection().unwrap();
    let _: () = redis::cmd("FLUSHALL").query(&mut conn).unwrap();
    let start = Instant::now();
    loop {
        let revision: Option<String> = redis::cmd("GET")
            .arg("pvpn:{nl}:node:nl-1:revision")
            .query(&mut conn)
            .unwrap();
        if revision.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let peers: u64 = redis::cmd("HLEN")
        .arg("pvpn:{nl}:node:nl-1:peers")
        .query(&mut conn)
        .unwrap();
    println!(
        "republish after FLUSHALL: {peers} peers in {:.0} ms",
        start.elapsed().as_secs_f64() * 1000.0
    );
    stop.cancel();
    task.await.unwrap();
    drop(_database);

    let sizes = scale::node_sizes().await;
    let (_, _, rate, _, _) = scale::region_throughput(10_000, 4_000).await;
    let medians: Vec<f64> = sizes.iter().map(|(_, median, _)| *median).collect();
    let (fastest, slowest) = medians
        .iter()
        .fold((f64::MAX, 0.0f64), |(lo, hi), m| (lo.min(*m), hi.max(*m)));
    let flat = slowest / fastest;
    println!(
        "target grant latency flat within 2x from 1k to 60k devices: {flat:.2}x ({})",
        if flat <= 2.0 { "met" } else { "NOT met" }
    );
    println!(
        "target >= 1000 grants/s, 50 in flight, 4-node region: {rate:.0}/s ({})",
        if rate >= 1000.0 { "met" } else { "NOT met" }
    );
}
