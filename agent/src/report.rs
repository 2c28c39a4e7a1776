//! Feedback to the backend: a heartbeat every interval (with an expiring key, so a dead node's
//! heartbeat disappears) and per-peer counters every stats interval. The interface is read only
//! for the counters; heartbeats in between report the peer count of that read.
//!
//! A report of a full node is sent as several stats messages of at most [`STATS_PER_MESSAGE`]
//! peers, each its own stream entry: the agent never encodes 60,000 peers into one message (it
//! was the biggest burst of its memory), and the backend stores each in a short transaction of
//! its own. Counters are cumulative, so the messages of one report need nothing in common.
//!
//! Counters are the interface's raw cumulative values; the backend turns them into usage by
//! adding the difference, or the whole value when a counter went down (interface recreated).
//! Reporting never blocks the apply loop: it has its own connection and its own task. Only the
//! holder of the node lease ([`crate::lease`]) reports; it reports at once when it gains the
//! lease, so a node that takes over shows up without waiting for a tick.

use std::sync::Arc;
use std::time::{Duration, Instant};

use pvpn_common::NodeName;
use pvpn_common::redis_keys::RegionKeys;
use pvpn_common::wire::{EVENT_FIELD, Feedback, Heartbeat, PeerStats};
use redis::aio::MultiplexedConnection;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::agent::{blocking, unix_now};
use crate::metrics::{Metrics, SharedStatus, lock};
use crate::redis_conn;
use crate::wireguard::WireGuard;

/// The feedback stream is bounded; the backend consumes it continuously.
const FEEDBACK_MAXLEN: usize = 10_000;

/// Most peers in one stats message (about 200 kB of JSON).
pub const STATS_PER_MESSAGE: usize = 2_000;

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
            // The whole interface is read only for stats: at 60,000 peers a read is megabytes,
            // too much to allocate every heartbeat. Heartbeats in between carry the peer count
            // of the last read.
            let burst = if Instant::now() >= next_stats {
                Some(crate::heap::one_burst().await)
            } else {
                None
            };
            let counters = if burst.is_some() {
                match blocking(&self.wg, |wg| wg.read_counters()).await {
                    Ok(counters) => {
                        next_stats = Instant::now() + self.stats_interval;
                        peer_count = Some(counters.len());
                        Some(counters)
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
            if let Err(e) = self.send(&mut conn, counters.as_deref(), peer_count).await {
                self.metrics.redis_errors.inc();
                tracing::debug!(error = %e, "report not sent");
                conn = None;
            }
            if counters.is_some() {
                drop(counters);
                crate::heap::release_freed();
            }
            drop(burst);
        }
    }

    /// Sends a heartbeat, then the `counters` of a stats read (if this tick made one) in
    /// messages of at most [`STATS_PER_MESSAGE`] peers.
    async fn send(
        &self,
        conn: &mut Option<MultiplexedConnection>,
        counters: Option<&[PeerStats]>,
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
        pipe.query_async::<()>(conn).await?;
        for message in stats_messages(&self.node, counters.unwrap_or_default()) {
            let mut pipe = redis::pipe();
            self.xadd(&mut pipe, &message);
            pipe.query_async::<()>(conn).await?;
        }
        Ok(())
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

/// The stats messages of one report: `counters` in order, at most [`STATS_PER_MESSAGE`] a
/// message; none for an empty interface.
pub fn stats_messages<'a>(
    node: &'a NodeName,
    counters: &'a [PeerStats],
) -> impl Iterator<Item = Feedback> + 'a {
    counters
        .chunks(STATS_PER_MESSAGE)
        .map(move |chunk| Feedback::Stats {
            node: node.clone(),
            sent_at: unix_now(),
            peers: chunk.to_vec(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use pvpn_common::keys::KeyPair;

    #[test]
    fn a_full_node_reports_in_bounded_messages_that_cover_every_peer() {
        let node = NodeName::new("nl-1").unwrap();
        let counters: Vec<PeerStats> = (0..2 * STATS_PER_MESSAGE as u64 + 500)
            .map(|n| PeerStats {
                public_key: KeyPair::generate().public,
                last_handshake: None,
                rx_bytes: n,
                tx_bytes: n,
            })
            .collect();
        let mut sizes = Vec::new();
        let mut reported = Vec::new();
        for message in stats_messages(&node, &counters) {
            let Feedback::Stats {
                node: from, peers, ..
            } = message
            else {
                panic!("not a stats message");
            };
            assert_eq!(from, node);
            sizes.push(peers.len());
            reported.extend(peers);
        }
        assert_eq!(sizes, [STATS_PER_MESSAGE, STATS_PER_MESSAGE, 500]);
        assert_eq!(reported, counters, "every peer once, in order");
        assert_eq!(stats_messages(&node, &[]).count(), 0);
    }
}
