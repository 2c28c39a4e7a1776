//! Prometheus metrics of the backend, served on `/metrics` by [`crate::http`].
//!
//! One [`Metrics`] value is created at start and shared (`Arc`) by the service layer, the relay,
//! the feedback consumer and the scheduler.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

type Labels = Vec<(String, String)>;

/// Every metric the backend exports.
pub struct Metrics {
    registry: Registry,
    /// Outbox rows not yet published to Redis.
    pub outbox_backlog: Gauge,
    /// Seconds from an outbox row's commit to Redis confirming it.
    pub publish_latency: Histogram,
    /// Outbox rows published, by kind.
    pub published: Family<Labels, Counter>,
    /// Full snapshot republishes, by reason (`epoch_missing`, `revision_missing`,
    /// `revision_behind`, `revision_ahead`, `revision_garbage`, `node_epoch_missing`, `retry`).
    pub republished: Family<Labels, Counter>,
    /// Device grants by outcome (`ok`, `region_full`, `device_limit`, ...).
    pub grants: Family<Labels, Counter>,
    /// Errors by component (`relay`, `feedback`, `scheduler`, `service`).
    pub errors: Family<Labels, Counter>,
    /// Feedback entries consumed, by result (`heartbeat`, `stats`, `malformed`, `stale`: at or
    /// below what was stored for its node, so not counted again).
    pub feedback: Family<Labels, Counter>,
    /// Devices revoked because access expired.
    pub expired: Counter,
    /// Publishing failures of one node (or `region:<code>`), which never stop the others.
    pub relay_node_failures: Family<Labels, Counter>,
    /// Nodes (or regions) whose publishing is failing now and waits for a retry.
    pub relay_failing_nodes: Gauge,
    /// Redis `used_memory`, `maxmemory` and their ratio (see [`crate::redis_memory`]).
    pub redis_used_memory: Gauge,
    pub redis_maxmemory: Gauge,
    pub redis_memory_ratio: Gauge<f64, AtomicU64>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("pvpn");
        let outbox_backlog = Gauge::default();
        let publish_latency = Histogram::new(exponential_buckets(0.001, 2.0, 16));
        let published = Family::default();
        let republished = Family::default();
        let grants = Family::default();
        let errors = Family::default();
        let feedback = Family::default();
        let expired = Counter::default();
        let relay_node_failures = Family::default();
        let relay_failing_nodes = Gauge::default();
        let redis_used_memory = Gauge::default();
        let redis_maxmemory = Gauge::default();
        let redis_memory_ratio = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "redis_used_memory_bytes",
            "Redis used_memory from INFO memory",
            redis_used_memory.clone(),
        );
        registry.register(
            "redis_maxmemory_bytes",
            "Redis maxmemory (0: no limit)",
            redis_maxmemory.clone(),
        );
        registry.register(
            "redis_memory_ratio",
            "Redis used_memory / maxmemory (0 without a limit); writes fail at 1 (noeviction)",
            redis_memory_ratio.clone(),
        );
        registry.register(
            "outbox_backlog",
            "Outbox rows waiting to be published to Redis",
            outbox_backlog.clone(),
        );
        registry.register(
            "publish_latency_seconds",
            "Time from an outbox row's commit to its publication in Redis",
            publish_latency.clone(),
        );
        registry.register("published", "Outbox rows published", published.clone());
        registry.register(
            "snapshot_republished",
            "Node snapshots republished in full from PostgreSQL",
            republished.clone(),
        );
        registry.register("grants", "Device grants by outcome", grants.clone());
        registry.register("errors", "Errors by component", errors.clone());
        registry.register(
            "feedback_entries",
            "Feedback entries consumed",
            feedback.clone(),
        );
        registry.register(
            "devices_expired",
            "Devices revoked because access expired",
            expired.clone(),
        );
        registry.register(
            "relay_node_failures",
            "Publishing failures of one node (the other nodes go on)",
            relay_node_failures.clone(),
        );
        registry.register(
            "relay_failing_nodes",
            "Nodes whose publishing fails now and waits for a retry",
            relay_failing_nodes.clone(),
        );
        Self {
            registry,
            outbox_backlog,
            publish_latency,
            published,
            republished,
            grants,
            errors,
            feedback,
            expired,
            relay_node_failures,
            relay_failing_nodes,
            redis_used_memory,
            redis_maxmemory,
            redis_memory_ratio,
        }
    }
}

/// A one-label set, `name="value"`.
pub fn label(name: &str, value: &str) -> Labels {
    vec![(name.to_string(), value.to_string())]
}

impl Metrics {
    pub fn error(&self, component: &str) {
        self.errors
            .get_or_create(&label("component", component))
            .inc();
    }

    pub fn record_redis_memory(&self, memory: &crate::redis_memory::MemoryUse) {
        self.redis_used_memory
            .set(i64::try_from(memory.used).unwrap_or(i64::MAX));
        self.redis_maxmemory
            .set(i64::try_from(memory.max).unwrap_or(i64::MAX));
        self.redis_memory_ratio.set(memory.ratio());
    }

    /// The OpenMetrics text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Err(e) = encode(&mut out, &self.registry) {
            tracing::error!(error = %e, "encoding metrics failed");
        }
        out
    }
}
