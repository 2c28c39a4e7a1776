//! The backend and Redis over TLS: `pvpn-backend` configured with `rediss://` and the server's CA
//! publishes a grant that reads back through TLS; configured with another CA, the real binary
//! keeps running, publishes nothing, logs why (the certificate) and stops cleanly; bad Redis
//! settings stop it before it connects at all.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use pvpn_backend::app;
use pvpn_backend::config::Config;
use pvpn_testkit::redis_server::RedisServer;
use pvpn_testkit::tls_ca::TlsFiles;
use support::redis_side::*;
use support::*;
use tokio_util::sync::CancellationToken;

fn config(database: &str, redis: &RedisServer) -> Config {
    let mut env = vec![
        ("DATABASE_URL", database.to_string()),
        ("REDIS_URL", redis.url()),
        ("PVPN_METRICS_ADDR", "127.0.0.1:0".to_string()),
        ("PVPN_RELAY_POLL_INTERVAL_MS", "100".to_string()),
    ];
    if let Some(ca) = redis.ca_file() {
        env.push(("PVPN_REDIS_CA_FILE", ca.display().to_string()));
    }
    Config::from_sources(None, &|k| {
        env.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone())
    })
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishes_over_tls() {
    let env = env().await;
    let redis = RedisServer::start_tls().unwrap();
    seed_region(&env.service, "nl", &[("nl-1", "198.18.0.0/24", 10)]).await;
    let stop = CancellationToken::new();
    let running = app::start(config(env.database.url(), &redis), stop.clone())
        .await
        .unwrap();
    let service = running.service.clone();
    let waiter = tokio::spawn(running.wait());
    user(&service, 1).await;
    service.grant_device(1, &region("nl"), None).await.unwrap();
    wait_published(&env.pool).await;
    let mut conn = redis
        .client()
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    assert_snapshot_matches(&env.pool, &mut conn, "nl", "nl-1").await;
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(20), waiter)
        .await
        .expect("stops in time")
        .unwrap()
        .unwrap();
}

#[test]
fn another_ca_is_refused_with_a_clear_error() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (database, redis) = runtime.block_on(async {
        (
            pvpn_testkit::postgres::TestDatabase::create()
                .await
                .unwrap(),
            RedisServer::start_tls().unwrap(),
        )
    });
    let other = tempfile::tempdir().unwrap();
    let other_ca = TlsFiles::generate(other.path(), &[]).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_pvpn-backend"))
        .env_remove("PVPN_CONFIG")
        .env_remove("TELEGRAM_BOT_TOKEN")
        .env("DATABASE_URL", database.url())
        .env("REDIS_URL", redis.url())
        .env("PVPN_REDIS_CA_FILE", &other_ca.ca_cert)
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
    let mut guard = Kill(child);
    let stderr = guard.0.stderr.take().unwrap();
    let (lines_tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut log = String::new();
    while !log.to_lowercase().contains("certificate") {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) => log.push_str(&(line + "\n")),
            Err(_) => panic!("no certificate error logged within 30 s:\n{log}"),
        }
    }
    assert!(
        guard.0.try_wait().unwrap().is_none(),
        "it keeps running and retrying:\n{log}"
    );
    let pid = guard.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
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
    log.extend(lines.try_iter().map(|l| l + "\n"));
    assert!(exit.success(), "exit {exit:?}\n{log}");
    assert!(!log.contains("panicked"), "{log}");
}

#[test]
fn bad_redis_settings_stop_the_binary_before_it_connects() {
    let not_pem = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(not_pem.path(), "not a certificate\n").unwrap();
    let missing = std::env::temp_dir().join("pvpn-no-such-ca.crt");
    let cases: [(&str, Option<&std::path::Path>, &str); 4] = [
        (
            "redis://pvpn-backend:pw@203.0.113.10:6379/0",
            None,
            "rediss://",
        ),
        (
            "redis://127.0.0.1:6379/0",
            Some(not_pem.path()),
            "PVPN_REDIS_CA_FILE",
        ),
        (
            "rediss://127.0.0.1:1/0",
            Some(&missing),
            "reading the Redis CA file",
        ),
        (
            "rediss://127.0.0.1:1/0",
            Some(not_pem.path()),
            "holds no PEM certificate",
        ),
    ];
    for (url, ca, expected) in cases {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_pvpn-backend"));
        cmd.env_remove("PVPN_CONFIG")
            .env_remove("PVPN_REDIS_CA_FILE")
            .env_remove("TELEGRAM_BOT_TOKEN")
            .env("DATABASE_URL", "postgres://x@127.0.0.1:1/x")
            .env("REDIS_URL", url)
            .env("PVPN_METRICS_ADDR", "127.0.0.1:0");
        if let Some(ca) = ca {
            cmd.env("PVPN_REDIS_CA_FILE", ca);
        }
        let out = cmd.output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{url}: {stderr}");
        assert!(stderr.contains(expected), "{url}: {stderr}");
        assert!(!stderr.contains("panicked"), "{url}: {stderr}");
        assert!(
            !stderr.contains("pw@"),
            "the password stays out of the log: {stderr}"
        );
    }
}
