//! Feedback to the backend: a heartbeat every interval (with an expiring key, so a dead node's
//! heartbeat disappears) and per-peer counters every stats interval. The interface is read only
//! for the counters; heartbeats in between report the peer count of that read.
//!
//! Counters are the interface's raw cumulative values; the backend turns them into usage by
//! adding the difference, or the whole value when a counter went down (interface recreated).
//! Reporting never blocks the apply loop: it has its own connection and its own task. The same
//! task keeps the node lease ([`crate::lease`]); an agent without it sends no report.

use std::sync::Arc;
use std::time::{Duration, Instant, UNIX_EPOCH};

use pvpn_common::NodeName;
use pvpn_common::redis_keys::RegionKeys;
use pvpn_common::wire::{EVENT_FIELD, Feedback, Heartbeat, PeerStats};
use redis::aio::MultiplexedConnection;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::agent::{blocking, unix_now};
use crate::lease::Lease;
use crate::metrics::{Metrics, SharedStatus, lock};
use crate::redis_conn;
use crate::wireguard::{InterfacePeer, WireGuard};

/// The feedback stream is bounded; the backend consumes it continuously.
const FEEDBACK_MAXLEN: usize = 10_000;

pub struct Reporter {
    pub wg: Arc<dyn WireGuard>,
    pub node: NodeName,
    pub keys: RegionKeys,
    pub redis: redis::Client,
    pub heartbeat_interval: Duration,
    pub stats_interval: Duration,
    pub metrics: Arc<Metrics>,
    pub status: SharedStatus,
    /// The node lease, refreshed at every tick; only its holder reports.
    pub lease: Lease,
    /// Tells the apply loop whether this agent holds the lease.
    pub lease_holder: watch::Sender<bool>,
    /// Whether the failure to reach Redis for the lease was logged (once per outage).
    pub lease_unreachable_logged: bool,
}

impl Reporter {
    /// Reports until shutdown. Failures are counted and logged at debug level: the apply loop
    /// already logs Redis state changes, and the next tick simply tries again.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let mut conn: Option<MultiplexedConnection> = None;
        let mut ticker = tokio::time::interval(self.heartbeat_interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The first tick reads the interface, so the first heartbeat has a peer count.
        let mut next_stats = Instant::now();
        let mut peer_count: Option<usize> = None;
        loop {
            tokio::select! {
                () = shutdown.cancelled() => {
                    self.release_lease(&mut conn).await;
                    return;
                }
                _ = ticker.tick() => {}
            }
            if !self.refresh_lease(&mut conn).await {
                continue;
            }
            // The whole interface is read only for stats: at 60,000 peers a read is tens of
            // megabytes, too much to allocate every heartbeat. Heartbeats in between carry the
            // peer count of the last read.
            let peers = if Instant::now() >= next_stats {
                match blocking(&self.wg, |wg| wg.read_peers()).await {
                    Ok(peers) => {
                        next_stats = Instant::now() + self.stats_interval;
                        peer_count = Some(peers.len());
                        Some(peers)
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "cannot read the interface for the report");
                        peer_count = None;
                        None
                    }
                }
            } else {
                None
            };
            if let Err(e) = self.send(&mut conn, peers.as_deref(), peer_count).await {
                self.metrics.redis_errors.inc();
                tracing::debug!(error = %e, "report not sent");
                conn = None;
            }
            if peers.is_some() {
                drop(peers);
                crate::heap::release_freed();
            }
        }
    }

    /// Refreshes the lease and tells the loop; returns whether this agent holds it.
    async fn refresh_lease(&mut self, conn: &mut Option<MultiplexedConnection>) -> bool {
        let refreshed = match conn {
            Some(c) => self.lease.refresh(c).await,
            None => match redis_conn::commands(&self.redis).await {
                Ok(mut c) => {
                    let r = self.lease.refresh(&mut c).await;
                    *conn = Some(c);
                    r
                }
                Err(e) => Err(e),
            },
        };
        let held = self.lease.held();
        if let Err(e) = &refreshed {
            self.metrics.redis_errors.inc();
            tracing::debug!(error = %e, "lease not refreshed");
            *conn = None;
            if !held {
                // No session runs without the lease, so nothing else tells the operator why
                // (a wrong CA, a refused connection, a bad password): say it here, once.
                if !self.lease_unreachable_logged {
                    tracing::warn!(error = %e, "redis unavailable, cannot take the node lease; retrying");
                    self.lease_unreachable_logged = true;
                }
                lock(&self.status).problem = Some(format!("redis unavailable: {e}"));
            }
        } else {
            self.lease_unreachable_logged = false;
        }
        let was = *self.lease_holder.borrow();
        if held != was {
            if held {
                tracing::info!(node = %self.node, "holding the node lease: applying changes");
            } else {
                tracing::warn!(
                    node = %self.node,
                    "another agent holds this node's lease: standing by, applying nothing"
                );
            }
            let _ = self.lease_holder.send(held);
        }
        self.metrics.lease_held.set(i64::from(held));
        // Standby means another agent holds the lease, which only a successful refresh can tell.
        lock(&self.status).standby = !held && refreshed.is_ok();
        held
    }

    async fn release_lease(&mut self, conn: &mut Option<MultiplexedConnection>) {
        if !self.lease.held() {
            return;
        }
        if let Some(c) = conn.as_mut()
            && let Err(e) = self.lease.release(c).await
        {
            tracing::debug!(error = %e, "lease not released; it runs out by itself");
        }
    }

    /// Sends a heartbeat, and the stats of `peers` when the interface was read for them.
    async fn send(
        &self,
        conn: &mut Option<MultiplexedConnection>,
        peers: Option<&[InterfacePeer]>,
        peer_count: Option<usize>,
    ) -> redis::RedisResult<()> {
        if conn.is_none() {
            *conn = Some(redis_conn::commands(&self.redis).await?);
        }
        let Some(conn) = conn.as_mut() else {
            return Ok(());
        };
        if let Some(count) = peer_count {
            self.metrics.peers.set(count as i64);
        }
        let heartbeat = self.heartbeat(peer_count);
        let expiry = self.heartbeat_interval.as_secs().max(1) * 3;
        let mut pipe = redis::pipe();
        pipe.cmd("SET")
            .arg(self.keys.node_heartbeat(&self.node))
            .arg(pvpn_common::wire::encode(&heartbeat))
            .arg("EX")
            .arg(expiry)
            .ignore();
        self.xadd(&mut pipe, &Feedback::Heartbeat(heartbeat));
        if let Some(peers) = peers {
            self.xadd(&mut pipe, &stats(&self.node, peers));
        }
        pipe.query_async::<()>(conn).await
    }

    fn xadd(&self, pipe: &mut redis::Pipeline, feedback: &Feedback) {
        pipe.cmd("XADD")
            .arg(self.keys.node_feedback(&self.node))
            .arg("MAXLEN")
            .arg("~")
            .arg(FEEDBACK_MAXLEN)
            .arg("*")
            .arg(EVENT_FIELD)
            .arg(feedback.encode())
            .ignore();
    }

    fn heartbeat(&self, peer_count: Option<usize>) -> Heartbeat {
        let status = lock(&self.status).clone();
        Heartbeat {
            node: self.node.clone(),
            agent_version: env!("CARGO_PKG_VERSION").to_string(),
            sent_at: unix_now(),
            applied_revision: status.applied_revision,
            peer_count: peer_count
                .map(|n| u32::try_from(n).unwrap_or(u32::MAX))
                .unwrap_or(0),
            last_reconcile: status.last_reconcile,
        }
    }
}

/// The stats message for the interface's peers.
pub fn stats(node: &NodeName, peers: &[InterfacePeer]) -> Feedback {
    Feedback::Stats {
        node: node.clone(),
        sent_at: unix_now(),
        peers: peers
            .iter()
            .map(|p| PeerStats {
                public_key: p.spec.public_key,
                last_handshake: p
                    .last_handshake
                    .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                    .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX)),
                rx_bytes: p.rx_bytes,
                tx_bytes: p.tx_bytes,
            })
            .collect(),
    }
}
