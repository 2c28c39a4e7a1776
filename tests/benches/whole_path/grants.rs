//! Grants at node sizes and across a region, against PostgreSQL only (moved here from
//! `backend/benches/grant/scale.rs`): the latency of one grant with 1k, 10k and 60k devices
//! already on its node (target: flat within 2×), and grants per second with 50 in flight into
//! a 4-node region with no relay running (the same target as the whole path's sustained rate,
//! ≥ 1,000/s: this one shows what PostgreSQL alone allows). Nodes are filled in bulk the way an
//! import writes devices (`db::addresses::claim_inserted`), then granted into through the
//! service; `fill` and `users` serve the other sections too. Addresses are rows only (no
//! traffic), all inside 198.18.0.0/15.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use pvpn_backend::db;
use pvpn_backend::service::{Actor, NodeDeclaration, Service, ServiceSettings};
use pvpn_common::addressing::ClientSubnet;
use pvpn_common::keys::KeyPair;
use pvpn_common::{NodeName, RegionCode};
use pvpn_testkit::postgres::TestDatabase;
use sqlx::PgPool;

use crate::report::Figure;

/// The backend's own pool size (`app::start`).
const POOL: u32 = 20;
const IN_FLIGHT: usize = 50;
/// The owner of bulk-filled devices.
pub const FILLER: i64 = 1_000_000_000;

/// A service with the backend's pool size on `database`, migrated.
pub async fn service_on(database: &TestDatabase) -> Service {
    let pool = db::pool(database.url(), POOL).expect("pool");
    db::migrate(&pool).await.expect("migrate");
    Service::new(pool, ServiceSettings::default())
}

/// Declares `region` and its `nodes` (name, subnet, capacity).
pub async fn declare(service: &Service, region: &str, nodes: &[(&str, &str, u32)]) {
    let actor = Actor::System("bench");
    let code = RegionCode::new(region).unwrap();
    service.declare_region(&actor, &code, region).await.unwrap();
    for (name, subnet, capacity) in nodes {
        let node = NodeDeclaration {
            name: NodeName::new(*name).unwrap(),
            region: code.clone(),
            endpoint: "vpn.example.net:51820".parse().unwrap(),
            public_key: KeyPair::generate().public,
            listen_port: 51820,
            subnet: ClientSubnet::new(subnet.parse().unwrap()).unwrap(),
            dns: vec![],
            capacity: *capacity,
            protocol: pvpn_common::obfuscation::Protocol::WireGuard,
        };
        service.declare_node(&actor, &node).await.unwrap();
    }
}

/// Users `first..first+count` (Telegram ids), each allowed `limit` devices, in one statement.
pub async fn users(pool: &PgPool, first: i64, count: i64, limit: i32) {
    sqlx::query(
        "INSERT INTO users (telegram_id, device_limit)
         SELECT g, $3 FROM generate_series($1::bigint, $1 + $2 - 1) AS g",
    )
    .bind(first)
    .bind(count)
    .bind(limit)
    .execute(pool)
    .await
    .unwrap();
}

/// Adds devices to `node` until it holds `target` live ones, at the addresses after its cursor,
/// in one transaction under the node's lock, accounted by `claim_inserted` like an import.
pub async fn fill(pool: &PgPool, node: &str, target: i64) {
    let mut tx = pool.begin().await.unwrap();
    let row = db::nodes::lock(&mut tx, node).await.unwrap().unwrap();
    let missing = target - row.devices;
    if missing <= 0 {
        return;
    }
    let (first, last) = row.subnet.client_range();
    let next: Option<String> =
        sqlx::query_scalar("SELECT host(next_address) FROM nodes WHERE name = $1")
            .bind(node)
            .fetch_one(&mut *tx)
            .await
            .unwrap();
    let start = next.map_or(first, |a| a.parse().unwrap());
    let addresses: Vec<Ipv4Addr> = (0..u32::try_from(missing).unwrap())
        .map(|i| Ipv4Addr::from(u32::from(start) + i))
        .take_while(|a| *a <= last)
        .collect();
    let texts: Vec<String> = addresses.iter().map(Ipv4Addr::to_string).collect();
    sqlx::query(
        "INSERT INTO devices (user_id, node, name, public_key, address)
         SELECT u.id, $1, 'filler', md5($1 || a) || lpad('', 10, 'x') || 'A=', a::inet
         FROM unnest($2::text[]) AS a, users u WHERE u.telegram_id = $3",
    )
    .bind(node)
    .bind(&texts)
    .bind(FILLER)
    .execute(&mut *tx)
    .await
    .unwrap();
    db::addresses::claim_inserted(&mut tx, node, first, last, &addresses)
        .await
        .unwrap();
    tx.commit().await.unwrap();
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// (median, p95) in ms.
fn spread(mut samples: Vec<Duration>) -> (f64, f64) {
    samples.sort();
    let at = |q: f64| millis(samples[((samples.len() - 1) as f64 * q).round() as usize]);
    (at(0.5), at(0.95))
}

/// `measured` grants one after another by users `first..`, each its own user.
async fn sequential(
    service: &Service,
    region: &RegionCode,
    first: i64,
    measured: usize,
) -> (f64, f64) {
    let mut samples = Vec::with_capacity(measured);
    for id in first..first + measured as i64 {
        let start = Instant::now();
        service.grant_device(id, region, None).await.unwrap();
        samples.push(start.elapsed());
    }
    spread(samples)
}

/// Grant latency with `sizes` devices on the node, `measured` grants at each: rows of
/// (devices, median, p95).
pub async fn node_sizes(sizes: &[i64], measured: usize) -> Vec<(i64, f64, f64)> {
    let database = TestDatabase::create().await.expect("database");
    let service = service_on(&database).await;
    let pool = service.pool().clone();
    declare(&service, "sz", &[("sz-1", "198.18.0.0/16", 65_000)]).await;
    users(&pool, FILLER, 1, 0).await;
    users(&pool, 1, (sizes.len() * measured) as i64, 3).await;
    let region = RegionCode::new("sz").unwrap();
    let mut rows = Vec::new();
    for (step, &size) in sizes.iter().enumerate() {
        fill(&pool, "sz-1", size).await;
        let first = 1 + (step * measured) as i64;
        let (median, p95) = sequential(&service, &region, first, measured).await;
        println!("grant with {size} devices on the node: median {median:.2} ms, p95 {p95:.2} ms");
        rows.push((size, median, p95));
    }
    rows
}

/// Grants per second with `IN_FLIGHT` at a time into a 4-node region whose nodes hold
/// `prefill` devices each: (grants, seconds, grants/s, median ms, p99 ms, where the CPU went).
pub async fn region_throughput(prefill: i64, grants: usize) -> (usize, f64, f64, f64, f64, String) {
    let database = TestDatabase::create().await.expect("database");
    let service = service_on(&database).await;
    let pool = service.pool().clone();
    let nodes = [
        ("rg-1", "198.19.0.0/18", 16_000),
        ("rg-2", "198.19.64.0/18", 16_000),
        ("rg-3", "198.19.128.0/18", 16_000),
        ("rg-4", "198.19.192.0/18", 16_000),
    ];
    declare(&service, "rg", &nodes).await;
    users(&pool, FILLER, 1, 0).await;
    users(&pool, 1, grants as i64, 3).await;
    for (name, _, _) in nodes {
        fill(&pool, name, prefill).await;
    }
    let region = RegionCode::new("rg").unwrap();
    let limit = std::sync::Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT));
    let cpu_before = crate::cpu::Snapshot::take();
    let start = Instant::now();
    let tasks: Vec<_> = (1..=grants as i64)
        .map(|id| {
            let (s, limit, region) = (service.clone(), limit.clone(), region.clone());
            tokio::spawn(async move {
                let _permit = limit.acquire_owned().await.unwrap();
                let begun = Instant::now();
                s.grant_device(id, &region, None)
                    .await
                    .map(|_| begun.elapsed())
            })
        })
        .collect();
    let mut samples = Vec::with_capacity(grants);
    for t in tasks {
        samples.push(t.await.unwrap().unwrap());
    }
    let seconds = start.elapsed().as_secs_f64();
    let cpu_use = crate::cpu::Snapshot::take().usage_since(&cpu_before);
    println!("CPU during the region's grants: {cpu_use}");
    samples.sort();
    let median = millis(samples[samples.len() / 2]);
    let p99 = millis(samples[(samples.len() - 1) * 99 / 100]);
    let rate = grants as f64 / seconds;
    println!(
        "{grants} grants, {IN_FLIGHT} in flight, 4 nodes of {prefill}: {seconds:.2} s, \
         {rate:.0} grants/s, median {median:.1} ms, p99 {p99:.1} ms"
    );
    (grants, seconds, rate, median, p99, cpu_use)
}

/// The section: grant latency at `sizes` devices on a node, then the region's rate.
pub async fn run(
    sizes: &[i64],
    measured: usize,
    prefill: i64,
    grants: usize,
) -> anyhow::Result<Vec<Figure>> {
    let mut figures = Vec::new();
    let rows = node_sizes(sizes, measured).await;
    for (size, median, p95) in &rows {
        figures.push(Figure::info(
            "grants",
            format!("grant, one after another, {size} devices on the node"),
            format!("median {median:.2} ms, p95 {p95:.2} ms ({measured} grants)"),
        ));
    }
    let medians: Vec<f64> = rows.iter().map(|(_, median, _)| *median).collect();
    let (fastest, slowest) = medians
        .iter()
        .fold((f64::MAX, 0.0f64), |(lo, hi), m| (lo.min(*m), hi.max(*m)));
    let flat = slowest / fastest;
    let (first, last) = (sizes[0], sizes[sizes.len() - 1]);
    figures.push(Figure::new(
        "grants",
        format!(
            "grant latency from {first} to {last} devices on a node (slowest / fastest median)"
        ),
        format!("{flat:.2}×"),
        "flat within 2×",
        Some(flat <= 2.0),
    ));
    let (_, _, rate, median, p99, cpu_use) = region_throughput(prefill, grants).await;
    figures.push(Figure::new(
        "grants",
        format!("grants/s, {IN_FLIGHT} in flight, 4-node region of {prefill} devices each, PostgreSQL only (no relay)"),
        format!("{rate:.0}/s (median {median:.1} ms, p99 {p99:.1} ms)"),
        "≥ 1,000/s",
        Some(rate >= 1000.0),
    ));
    figures.push(Figure::info(
        "grants",
        "CPU during the region's grants, by program",
        cpu_use,
    ));
    Ok(figures)
}
