//! Nodes whose publishing fails, each retried on its own backoff, so one broken node (a key of
//! the wrong type, a script error, a refused command) never stops the other nodes and regions.
//!
//! A scope is a node name, or `region:<code>` for a region's rows without a node
//! (`db::outbox::OutboxRow::scope`). The first failure of a scope is logged once (and again only
//! after it recovered); every failure is counted (`pvpn_relay_node_failures_total{node}`), and
//! `pvpn_relay_failing_nodes` says how many scopes are failing now.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::metrics::{Metrics, label};
use pvpn_common::backoff::Backoff;

use super::RelayError;

struct Failing {
    backoff: Backoff,
    retry_at: Instant,
}

/// The failing scopes and when each is retried.
#[derive(Default)]
pub(super) struct NodeFailures {
    scopes: HashMap<String, Failing>,
}

impl NodeFailures {
    /// Records a failure of `scope` and schedules its retry.
    pub(super) fn fail(&mut self, scope: &str, error: &RelayError, metrics: &Metrics) {
        let failing = self
            .scopes
            .entry(scope.to_string())
            .or_insert_with(|| Failing {
                backoff: Backoff::new(Duration::from_millis(500), Duration::from_secs(30)),
                retry_at: Instant::now(),
            });
        let retry = failing.backoff.fail("node failing");
        failing.retry_at = Instant::now() + retry.delay;
        if retry.is_news() {
            tracing::warn!(
                scope,
                %error,
                "publishing to this node fails; the others go on, it is retried with backoff"
            );
        } else {
            tracing::debug!(scope, %error, "node still failing");
        }
        metrics
            .relay_node_failures
            .get_or_create(&label("node", scope))
            .inc();
        metrics.relay_failing_nodes.set(self.scopes.len() as i64);
    }

    /// Records that `scope` published again.
    pub(super) fn succeed(&mut self, scope: &str, metrics: &Metrics) {
        if self.scopes.remove(scope).is_some() {
            tracing::info!(scope, "node publishes again");
            metrics.relay_failing_nodes.set(self.scopes.len() as i64);
        }
    }

    /// Scopes waiting for their retry: their rows are left out of this pass.
    pub(super) fn held(&self) -> Vec<String> {
        let now = Instant::now();
        self.scopes
            .iter()
            .filter(|(_, f)| f.retry_at > now)
            .map(|(scope, _)| scope.clone())
            .collect()
    }

    /// Node scopes whose retry is due: the relay republishes them in full before their rows,
    /// because what their failure left in Redis is unknown.
    pub(super) fn due_nodes(&self) -> Vec<String> {
        let now = Instant::now();
        self.scopes
            .iter()
            .filter(|(scope, f)| f.retry_at <= now && !scope.starts_with("region:"))
            .map(|(scope, _)| scope.clone())
            .collect()
    }

    pub(super) fn is_failing(&self, scope: &str) -> bool {
        self.scopes.contains_key(scope)
    }
}
