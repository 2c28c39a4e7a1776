//! Feedback to the backend: a heartbeat every interval (with an expiring key, so a dead node's
//! heartbeat disappears) and per-peer counters every stats interval. The interface is read only
//! for the counters; heartbeats in between report the peer count of that read.
//!
//! Counters are the interface's raw cumulative values; the backend turns them into usage by
//! adding the difference, or the whole value when a counter went down (interface recreated).
//! Reporting never blocks the apply loop: it has its own connection and its own task. Only the
//! holder of the node lease ([`crate::lease`]) reports; it reports at once when it gains the
//! lease, so a node that takes over shows up without waiting for a tick.

use std::sync::Arc;
use std::time::{Duration, Instant, UNIX_EPOCH};

use pvpn_common::NodeName;
use pvpn_common::redis_keys::RegionKeys;
use pvpn_common::wire::{EVENT_FIELD, Feedback, Heartbeat, PeerStats};
use redis::aio::MultiplexedConnection;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::agent::{blocking, unix_now};
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
    /// Whether this agent holds the node lease (kept by [`crate::lease::LeaseKeeper`]).
    pub lease_held: watch::Receiver<bool>,
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
                () = shutdown.cancelled() => return,
                _ = ticker.tick() => {}
                changed = self.lease_held.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    if *self.lease_held.borrow_and_update() {
                        ticker.reset();
                    } else {
                        continue;
                    }
                }
            }
            if !*self.lease_held.borrow() {
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
