//! Redis-side helpers: running the relay and the feedback consumer against a test Redis, reading
//! snapshots and streams back, and comparing them with PostgreSQL.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pvpn_backend::feedback::{self, FeedbackSettings};
use pvpn_backend::metrics::Metrics;
use pvpn_backend::relay::{self, RelaySettings};
use pvpn_common::redis_keys::RegionKeys;
use pvpn_common::wire::{self, EVENT_FIELD, StreamEvent};
use pvpn_common::{NodeName, PeerSpec, RegionCode};
use redis::aio::MultiplexedConnection;
use sqlx::PgPool;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A background task (relay, consumer) stopped when dropped.
pub struct Task {
    stop: CancellationToken,
    handle: Option<JoinHandle<()>>,
}

impl Task {
    pub async fn stop(mut self) {
        self.stop.cancel();
        if let Some(h) = self.handle.take() {
            h.await.expect("task panicked");
        }
    }
}

impl Drop for Task {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

pub fn start_relay(pool: &PgPool, redis_url: &str) -> Task {
    let settings = RelaySettings {
        poll_interval: Duration::from_millis(100),
        ..RelaySettings::default()
    };
    start_relay_with(pool, redis_url, settings)
}

pub fn start_relay_with(pool: &PgPool, redis_url: &str, settings: RelaySettings) -> Task {
    let stop = CancellationToken::new();
    let client = redis::Client::open(redis_url).expect("redis url");
    let handle = tokio::spawn(relay::run(
        pool.clone(),
        client,
        Arc::new(Metrics::default()),
        settings,
        stop.clone(),
    ));
    Task {
        stop,
        handle: Some(handle),
    }
}

pub fn start_feedback(pool: &PgPool, redis_url: &str) -> Task {
    start_feedback_with(pool, redis_url, Arc::new(Metrics::default()))
}

/// The feedback consumer, counting into `metrics` (for tests that read its counters).
pub fn start_feedback_with(pool: &PgPool, redis_url: &str, metrics: Arc<Metrics>) -> Task {
    let stop = CancellationToken::new();
    let settings = FeedbackSettings {
        block: Duration::from_millis(100),
        region_refresh: Duration::from_millis(200),
        ..FeedbackSettings::default()
    };
    let client = redis::Client::open(redis_url).expect("redis url");
    let handle = tokio::spawn(feedback::run(
        pool.clone(),
        client,
        metrics,
        settings,
        stop.clone(),
    ));
    Task {
        stop,
        handle: Some(handle),
    }
}

/// Polls `check` until it returns true; panics with `what` after `limit`.
pub async fn wait_for<F, Fut>(what: &str, limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    while !check().await {
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub async fn connect(url: &str) -> MultiplexedConnection {
    redis::Client::open(url)
        .expect("redis url")
        .get_multiplexed_async_connection()
        .await
        .expect("redis connection")
}

/// Rows the relay has not published yet.
pub async fn unpublished(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM outbox WHERE published_at IS NULL")
        .fetch_one(pool)
        .await
        .expect("outbox count")
}

pub async fn wait_published(pool: &PgPool) {
    wait_for("the outbox to drain", Duration::from_secs(20), || async {
        unpublished(pool).await == 0
    })
    .await;
}

/// A node's snapshot in Redis: its revision (None if the key is absent) and its peers.
pub async fn snapshot(
    conn: &mut MultiplexedConnection,
    region: &str,
    node: &str,
) -> (Option<u64>, BTreeMap<String, PeerSpec>) {
    let keys = RegionKeys::new(&RegionCode::new(region).unwrap());
    let node = NodeName::new(node).unwrap();
    let revision: Option<String> = redis::cmd("GET")
        .arg(keys.node_revision(&node))
        .query_async(conn)
        .await
        .unwrap();
    let hash: BTreeMap<String, String> = redis::cmd("HGETALL")
        .arg(keys.node_peers(&node))
        .query_async(conn)
        .await
        .unwrap();
    let peers = hash
        .into_iter()
        .map(|(k, v)| {
            let peer = wire::decode_snapshot_peer(v.as_bytes()).expect("snapshot value decodes");
            assert_eq!(
                peer.public_key.to_base64(),
                k,
                "hash field is the peer's key"
            );
            (k, peer)
        })
        .collect();
    (
        revision.map(|r| r.parse().expect("revision is an integer")),
        peers,
    )
}

/// What PostgreSQL says the node should hold: its revision and `public key -> address/32`.
pub async fn desired(pool: &PgPool, node: &str) -> (u64, BTreeMap<String, String>) {
    let revision: i64 = sqlx::query_scalar("SELECT revision FROM nodes WHERE name = $1")
        .bind(node)
        .fetch_one(pool)
        .await
        .unwrap();
    let rows: Vec<(String, String)> = sqlx::query_as("SELECT public_key, host(address) || '/32' FROM devices WHERE node = $1 AND status = 'active'")
        .bind(node)
        .fetch_all(pool)
        .await
        .unwrap();
    (revision as u64, rows.into_iter().collect())
}

/// Asserts the Redis snapshot of `node` equals PostgreSQL's desired state.
pub async fn assert_snapshot_matches(
    pool: &PgPool,
    conn: &mut MultiplexedConnection,
    region: &str,
    node: &str,
) {
    let (revision, peers) = snapshot(conn, region, node).await;
    let (want_revision, want) = desired(pool, node).await;
    assert_eq!(revision, Some(want_revision), "snapshot revision of {node}");
    let got: BTreeMap<String, String> = peers
        .iter()
        .map(|(k, p)| {
            (
                k.clone(),
                p.allowed_ips
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(","),
            )
        })
        .collect();
    assert_eq!(got, want, "snapshot peers of {node}");
}

/// Every event on the region's stream, oldest first.
pub async fn events(conn: &mut MultiplexedConnection, region: &str) -> Vec<StreamEvent> {
    let keys = RegionKeys::new(&RegionCode::new(region).unwrap());
    let entries: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
        .arg(keys.events())
        .arg("-")
        .arg("+")
        .query_async(conn)
        .await
        .unwrap();
    entries
        .into_iter()
        .map(|(_, fields)| {
            assert_eq!(fields.len(), 1, "one field per entry");
            assert_eq!(fields[0].0, EVENT_FIELD);
            StreamEvent::decode(fields[0].1.as_bytes()).expect("stream event decodes")
        })
        .collect()
}

/// `(kind, revision)` of the desired-state events for `node`, in stream order.
pub fn node_changes(events: &[StreamEvent], node: &str) -> Vec<(&'static str, u64)> {
    events
        .iter()
        .filter_map(|e| match e {
            StreamEvent::PeerUpsert {
                node: n, revision, ..
            } if n.as_str() == node => Some(("upsert", *revision)),
            StreamEvent::PeerRemove {
                node: n, revision, ..
            } if n.as_str() == node => Some(("remove", *revision)),
            _ => None,
        })
        .collect()
}

pub async fn epoch_present(conn: &mut MultiplexedConnection, region: &str) -> bool {
    let keys = RegionKeys::new(&RegionCode::new(region).unwrap());
    redis::cmd("EXISTS")
        .arg(keys.epoch())
        .query_async::<bool>(conn)
        .await
        .unwrap_or(false)
}
