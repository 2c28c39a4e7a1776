//! The whole `pvpn-backend` process: in-process (`app::start`) for `/healthz` and `/metrics`, and
//! the real binary for configuration errors and a clean exit on SIGTERM.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use pvpn_backend::app;
use pvpn_backend::config::Config;
use pvpn_testkit::redis_server::RedisServer;
use support::redis_side::*;
use support::*;
use tokio_util::sync::CancellationToken;

fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    let mut stream = TcpStream::connect(addr).expect("connect to the metrics server");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

fn config(database: &str, redis: &str) -> Config {
    let env = [
        ("DATABASE_URL", database.to_string()),
        ("REDIS_URL", redis.to_string()),
        ("PVPN_METRICS_ADDR", "127.0.0.1:0".to_string()),
        ("PVPN_RELAY_POLL_INTERVAL_MS", "100".to_string()),
    ];
    Config::from_sources(None, &|k| {
        env.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone())
    })
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_health_and_metrics_and_stops_on_shutdown() {
    let env = env().await;
    let mut redis = RedisServer::start().unwrap();
    seed_region(&env.service, "nl", &[("nl-1", "198.18.0.0/24", 10)]).await;
    let stop = CancellationToken::new();
    let running = app::start(config(env.database.url(), &redis.url()), stop.clone())
        .await
        .unwrap();
    let addr = running.metrics_addr;
    let service = running.service.clone();
    let waiter = tokio::spawn(running.wait());

    let health = tokio::task::spawn_blocking(move || http_get(addr, "/healthz"))
        .await
        .unwrap();
    assert!(
        health.starts_with("HTTP/1.0 200") || health.starts_with("HTTP/1.1 200"),
        "{health}"
    );
    user(&service, 1).await;
    service.grant_device(1, &region("nl"), None).await.unwrap();
    wait_published(&env.pool).await;
    let metrics = tokio::task::spawn_blocking(move || http_get(addr, "/metrics"))
        .await
        .unwrap();
    for name in [
        "pvpn_outbox_backlog",
        "pvpn_publish_latency_seconds",
        "pvpn_grants_total",
        "pvpn_published_total",
    ] {
        assert!(
            metrics.contains(name),
            "{name} missing from /metrics:\n{metrics}"
        );
    }
    assert!(
        metrics.contains("pvpn_grants_total{outcome=\"ok\"} 1"),
        "{metrics}"
    );

    // Redis down: the backlog gauge shows the rows waiting.
    redis.stop();
    user(&service, 2).await;
    service.grant_device(2, &region("nl"), None).await.unwrap();
    wait_for(
        "the backlog gauge",
        Duration::from_secs(20),
        || async move {
            let metrics = tokio::task::spawn_blocking(move || http_get(addr, "/metrics"))
                .await
                .unwrap();
            metrics.contains("pvpn_outbox_backlog 1")
        },
    )
    .await;
    redis.restart().unwrap();
    wait_published(&env.pool).await;

    stop.cancel();
    tokio::time::timeout(Duration::from_secs(20), waiter)
        .await
        .expect("stops in time")
        .unwrap()
        .unwrap();
}

#[test]
fn binary_exits_cleanly_on_sigterm_and_names_bad_config() {
    let bad = Command::new(env!("CARGO_BIN_EXE_pvpn-backend"))
        .env_remove("PVPN_CONFIG")
        .env("DATABASE_URL", "postgres://x@127.0.0.1/x")
        .env("REDIS_URL", "redis://127.0.0.1:1/")
        .env("PVPN_REGISTRATION", "sometimes")
        .output()
        .unwrap();
    assert!(!bad.status.success());
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(
        stderr.contains("registration") && stderr.contains("PVPN_REGISTRATION"),
        "{stderr}"
    );

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (database, redis) = runtime.block_on(async {
        (
            pvpn_testkit::postgres::TestDatabase::create()
                .await
                .unwrap(),
            RedisServer::start().unwrap(),
        )
    });
    let mut child = Command::new(env!("CARGO_BIN_EXE_pvpn-backend"))
        .env_remove("PVPN_CONFIG")
        .env_remove("TELEGRAM_BOT_TOKEN")
        .env("DATABASE_URL", database.url())
        .env("REDIS_URL", redis.url())
        .env("PVPN_METRICS_ADDR", "127.0.0.1:0")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let pid = child.id();
    let mut stderr = child.stderr.take().unwrap();
    let mut guard = Kill(child);
    // Started means migrated: wait for the schema, then ask it to stop.
    let deadline = Instant::now() + Duration::from_secs(20);
    runtime.block_on(async {
        let pool = database.pool().await.unwrap();
        loop {
            let migrated: Option<i64> = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations")
                .fetch_one(&pool)
                .await
                .ok();
            if migrated.is_some_and(|n| n > 0) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "pvpn-backend did not migrate in time"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    std::thread::sleep(Duration::from_millis(300));
    let status = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    let exit = loop {
        if let Some(exit) = guard.0.try_wait().unwrap() {
            break exit;
        }
        assert!(
            Instant::now() < deadline,
            "pvpn-backend did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut log = String::new();
    stderr.read_to_string(&mut log).unwrap();
    assert!(exit.success(), "exit {exit:?}\n{log}");
    assert!(
        log.contains("shutdown requested") && log.contains("relay stopped"),
        "{log}"
    );
}
