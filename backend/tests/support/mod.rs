//! Shared fixtures of the backend's integration tests: a migrated per-test database, a service on
//! it, and regions and nodes declared the way an operator would.
#![allow(dead_code)]

pub mod proxy;
pub mod pvpnctl_bin;
pub mod redis_side;

use pvpn_backend::db;
use pvpn_backend::service::{Actor, NodeDeclaration, Service, ServiceSettings};
use pvpn_common::keys::KeyPair;
use pvpn_common::{NodeName, RegionCode};
use pvpn_testkit::postgres::TestDatabase;
use sqlx::PgPool;

pub const OPERATOR: Actor = Actor::System("test");

pub struct Env {
    pub database: TestDatabase,
    pub pool: PgPool,
    pub service: Service,
}

pub async fn env_with(settings: ServiceSettings) -> Env {
    let database = TestDatabase::create().await.expect("test database");
    let pool = database.pool().await.expect("pool");
    db::migrate(&pool).await.expect("migrations");
    let service = Service::new(pool.clone(), settings);
    Env {
        database,
        pool,
        service,
    }
}

pub async fn env() -> Env {
    env_with(ServiceSettings::default()).await
}

pub fn region(code: &str) -> RegionCode {
    RegionCode::new(code).expect("region code")
}

pub fn node_name(name: &str) -> NodeName {
    NodeName::new(name).expect("node name")
}

pub fn node(name: &str, region_code: &str, subnet: &str, capacity: u32) -> NodeDeclaration {
    NodeDeclaration {
        name: node_name(name),
        region: region(region_code),
        endpoint: format!("{name}.example.net:51820")
            .parse()
            .expect("endpoint"),
        public_key: KeyPair::generate().public,
        listen_port: 51820,
        subnet: pvpn_common::addressing::ClientSubnet::new(subnet.parse().expect("subnet"))
            .expect("client subnet"),
        dns: vec!["198.18.0.1".parse().expect("dns")],
        capacity,
        protocol: pvpn_common::obfuscation::Protocol::WireGuard,
    }
}

/// Declares region `code` with one node per `(name, subnet, capacity)`.
pub async fn seed_region(service: &Service, code: &str, nodes: &[(&str, &str, u32)]) {
    service
        .declare_region(&OPERATOR, &region(code), &format!("Region {code}"))
        .await
        .expect("region");
    for (name, subnet, capacity) in nodes {
        service
            .declare_node(&OPERATOR, &node(name, code, subnet, *capacity))
            .await
            .expect("node");
    }
}

/// Registers a user in the default (open) mode.
pub async fn user(service: &Service, telegram_id: i64) {
    service
        .register_user(telegram_id, None, Default::default(), None)
        .await
        .expect("register");
}
