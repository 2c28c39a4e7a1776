//! A client's private key exists only in the config handed to the user: it is in the returned
//! config, and nowhere in PostgreSQL, Redis or the logs of everything that ran meanwhile.

mod support;

use std::io::Write;
use std::sync::{Arc, Mutex};

use pvpn_common::client_config::ParsedConfig;
use pvpn_testkit::redis_server::RedisServer;
use sqlx::AssertSqlSafe;
use support::redis_side::*;
use support::*;

#[derive(Clone, Default)]
struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

async fn dump_database(pool: &sqlx::PgPool) -> String {
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public'",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    assert!(tables.len() >= 7, "{tables:?}");
    let mut dump = String::new();
    for table in tables {
        let rows: Option<String> = sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT string_agg(t::text, E'\\n') FROM \"{table}\" t"
        )))
        .fetch_one(pool)
        .await
        .unwrap();
        dump.push_str(&rows.unwrap_or_default());
        dump.push('\n');
    }
    dump
}

async fn dump_redis(url: &str) -> String {
    let mut conn = connect(url).await;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut conn)
        .await
        .unwrap();
    let mut dump = String::new();
    for key in keys {
        let kind: String = redis::cmd("TYPE")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .unwrap();
        let value: redis::Value = match kind.as_str() {
            "hash" => redis::cmd("HGETALL")
                .arg(&key)
                .query_async(&mut conn)
                .await
                .unwrap(),
            "stream" => redis::cmd("XRANGE")
                .arg(&key)
                .arg("-")
                .arg("+")
                .query_async(&mut conn)
                .await
                .unwrap(),
            _ => redis::cmd("GET")
                .arg(&key)
                .query_async(&mut conn)
                .await
                .unwrap(),
        };
        dump.push_str(&format!("{key} {value:?}\n"));
    }
    dump
}

#[tokio::test]
async fn private_key_is_in_the_config_and_nowhere_else() {
    let logs = LogBuffer::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer({
            let logs = logs.clone();
            move || logs.clone()
        })
        .finish();
    // A current-thread runtime: every task of this test logs through this subscriber.
    let _guard = tracing::subscriber::set_default(subscriber);

    let env = env().await;
    let redis = RedisServer::start().unwrap();
    seed_region(&env.service, "nl", &[("nl-1", "198.18.0.0/24", 10)]).await;
    user(&env.service, 1).await;
    let relay = start_relay(&env.pool, &redis.url());

    let granted = env
        .service
        .grant_device(1, &region("nl"), Some("laptop"))
        .await
        .unwrap();
    let reissued = env
        .service
        .reissue_device(1, granted.device.id)
        .await
        .unwrap();
    let mut secrets = Vec::new();
    for config in [&granted.config, &reissued.config] {
        let parsed = ParsedConfig::parse(config.expose()).unwrap();
        let key = parsed
            .interface_value("PrivateKey")
            .expect("config has the private key")
            .to_string();
        assert_eq!(key.len(), 44);
        secrets.push(key);
    }
    wait_published(&env.pool).await;
    relay.stop().await;

    let database = dump_database(&env.pool).await;
    let redis_dump = dump_redis(&redis.url()).await;
    let logs = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    // The dumps are real: they hold the public keys and the log holds the grant.
    assert!(database.contains(&reissued.device.public_key.to_base64()));
    assert!(redis_dump.contains(&reissued.device.public_key.to_base64()));
    assert!(logs.contains("device granted"), "the log capture works");
    for secret in &secrets {
        assert!(
            !database.contains(secret.as_str()),
            "private key found in PostgreSQL"
        );
        assert!(
            !redis_dump.contains(secret.as_str()),
            "private key found in Redis"
        );
        assert!(
            !logs.contains(secret.as_str()),
            "private key found in the logs"
        );
    }
    // Debug output of what the service returns is redacted too.
    assert!(!format!("{granted:?}").contains(secrets[0].as_str()));
}
