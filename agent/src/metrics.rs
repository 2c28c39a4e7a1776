//! The agent's Prometheus metrics and the status it shares with `/healthz` and the heartbeat.

use std::sync::{Arc, Mutex};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use pvpn_common::wire::ReconcileReport;

type Labels = Vec<(String, String)>;

/// Every metric the agent exports (names prefixed `pvpn_agent_`).
pub struct Metrics {
    pub events_applied: Counter,
    pub events_skipped: Counter,
    pub dead_letters: Counter,
    pub reconciles: Family<Labels, Counter>,
    pub drift: Family<Labels, Counter>,
    pub apply_seconds: Histogram,
    pub device_updates: Counter,
    pub redis_errors: Counter,
    pub wireguard_errors: Counter,
    pub applied_revision: Gauge,
    pub peers: Gauge,
    pub snapshot_missing: Gauge,
    pub snapshot_stale: Gauge,
    pub snapshot_refused: Gauge,
    pub lease_held: Gauge,
    pub interface_corrections: Counter,
    pub interface_protocol_mismatch: Gauge,
    registry: Registry,
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("pvpn_agent");
        let m = Self {
            events_applied: Counter::default(),
            events_skipped: Counter::default(),
            dead_letters: Counter::default(),
            reconciles: Family::default(),
            drift: Family::default(),
            apply_seconds: Histogram::new(exponential_buckets(0.0005, 2.0, 16)),
            device_updates: Counter::default(),
            redis_errors: Counter::default(),
            wireguard_errors: Counter::default(),
            applied_revision: Gauge::default(),
            peers: Gauge::default(),
            snapshot_missing: Gauge::default(),
            snapshot_stale: Gauge::default(),
            snapshot_refused: Gauge::default(),
            lease_held: Gauge::default(),
            interface_corrections: Counter::default(),
            interface_protocol_mismatch: Gauge::default(),
            registry: Registry::default(),
        };
        registry.register(
            "events_applied",
            "Desired-state events applied to the interface",
            m.events_applied.clone(),
        );
        registry.register(
            "events_skipped",
            "Events acknowledged without change (other node, old revision)",
            m.events_skipped.clone(),
        );
        registry.register(
            "dead_letters",
            "Malformed entries moved to the dead-letter stream",
            m.dead_letters.clone(),
        );
        registry.register("reconciles", "Reconciles by trigger", m.reconciles.clone());
        registry.register(
            "reconcile_drift",
            "Peers changed by reconciles, by kind (added, removed, updated)",
            m.drift.clone(),
        );
        registry.register(
            "apply_seconds",
            "Time to apply one batch of events or one reconcile's changes to the interface",
            m.apply_seconds.clone(),
        );
        registry.register(
            "device_updates",
            "Device updates sent to the interface (one per batch of at most 256 peer changes)",
            m.device_updates.clone(),
        );
        registry.register(
            "redis_errors",
            "Failed Redis operations",
            m.redis_errors.clone(),
        );
        registry.register(
            "wireguard_errors",
            "Failed reads or updates of the interface",
            m.wireguard_errors.clone(),
        );
        registry.register(
            "applied_revision",
            "The node revision the interface holds",
            m.applied_revision.clone(),
        );
        registry.register(
            "peers",
            "Peers on the interface at the last report",
            m.peers.clone(),
        );
        registry.register(
            "snapshot_missing",
            "1 while the node's snapshot is missing from Redis",
            m.snapshot_missing.clone(),
        );
        registry.register(
            "snapshot_stale",
            "1 while the node's snapshot in Redis is older than what the interface holds, under \
             the same or an older epoch (Redis rolled back): not applied, waiting for the backend",
            m.snapshot_stale.clone(),
        );
        registry.register(
            "snapshot_refused",
            "1 while the node's snapshot breaks the node's rules and is not applied",
            m.snapshot_refused.clone(),
        );
        registry.register(
            "lease_held",
            "1 while this agent holds the node lease; 0 while another agent does (standby)",
            m.lease_held.clone(),
        );
        registry.register(
            "interface_corrections",
            "Reconciles that found the interface's AmneziaWG parameters differing from the node's \
             profile and set them again",
            m.interface_corrections.clone(),
        );
        registry.register(
            "interface_protocol_mismatch",
            "1 while the node's published protocol is not the one the agent drives: nothing applied",
            m.interface_protocol_mismatch.clone(),
        );
        Self { registry, ..m }
    }

    pub fn record_reconcile(&self, report: &ReconcileReport) {
        let trigger = serde_json::to_value(report.trigger)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        self.reconciles
            .get_or_create(&vec![("trigger".to_string(), trigger)])
            .inc();
        for (kind, n) in [
            ("added", report.added),
            ("removed", report.removed),
            ("updated", report.updated),
        ] {
            self.drift
                .get_or_create(&vec![("kind".to_string(), kind.to_string())])
                .inc_by(u64::from(n));
        }
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// What the agent loop knows right now, for `/healthz` and the heartbeat.
#[derive(Debug, Clone, Default)]
pub struct Status {
    pub applied_revision: u64,
    pub last_reconcile: Option<ReconcileReport>,
    /// `None` while healthy; otherwise what is wrong (Redis down, snapshot missing, ...).
    pub problem: Option<String>,
    /// Set once the first reconcile finished.
    pub ready: bool,
    /// Another agent holds the node lease: this one applies nothing.
    pub standby: bool,
}

pub type SharedStatus = Arc<Mutex<Status>>;

/// Locks the status, ignoring poisoning (a panic elsewhere must not silence health reporting).
pub fn lock(status: &SharedStatus) -> std::sync::MutexGuard<'_, Status> {
    status.lock().unwrap_or_else(|e| e.into_inner())
}
