//! The Redis memory watch against a real Redis: with a `maxmemory` barely above what Redis uses,
//! the gauges show the limit and a ratio above the warning level, before any write is refused.

use std::sync::Arc;
use std::time::{Duration, Instant};

use pvpn_backend::metrics::Metrics;
use pvpn_backend::redis_memory::{self, MemoryUse, WARN_RATIO};
use pvpn_testkit::redis_server::RedisServer;
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_near_maxmemory_shows_in_the_gauges() {
    let redis = RedisServer::start().unwrap();
    let mut conn = redis.connection().unwrap();
    let info: String = redis::cmd("INFO").arg("memory").query(&mut conn).unwrap();
    let used = MemoryUse::parse(&info).expect("INFO memory parses").used;
    let limit = used + used / 10;
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory")
        .arg(limit)
        .query(&mut conn)
        .unwrap();

    let metrics = Arc::new(Metrics::default());
    let stop = CancellationToken::new();
    let task = tokio::spawn(redis_memory::run(
        redis::Client::open(redis.url()).unwrap(),
        metrics.clone(),
        stop.clone(),
    ));
    let start = Instant::now();
    while metrics.redis_maxmemory.get() == 0 {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no INFO memory read"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(metrics.redis_maxmemory.get(), limit as i64);
    assert!(metrics.redis_used_memory.get() > 0);
    let ratio = metrics.redis_memory_ratio.get();
    assert!((WARN_RATIO..1.5).contains(&ratio), "ratio {ratio}");
    let text = metrics.render();
    assert!(text.contains("pvpn_redis_memory_ratio"), "{text}");
    stop.cancel();
    task.await.unwrap();
}
