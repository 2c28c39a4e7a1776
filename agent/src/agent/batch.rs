//! Consecutive stream entries applied as one device update and acknowledged together after it.
//!
//! While entries for this node follow each other revision by revision, their changes are
//! collected here instead of being applied one update each; entries that need nothing from the
//! interface (another node's, an old revision) join the acknowledgement. Anything else (a
//! reconcile, a dead letter, a revision gap), a full batch or the end of a read first
//! [`NodeAgent::flush`]es the batch: one device update, then the applied revision, then one
//! `XACK` for all of its entries. Acknowledging only after the update keeps the rule that an
//! entry is acknowledged once the interface holds it.

use redis::aio::MultiplexedConnection;

use super::{NodeAgent, SessionError};
use crate::consumer::is_stream_lost;
use crate::wireguard::{MAX_CHANGES_PER_UPDATE, PeerChange};

/// Entries read but not yet acknowledged, and the changes they ask of the interface.
#[derive(Debug, Default)]
pub(super) struct Batch {
    /// Every entry of the batch, in stream order.
    ids: Vec<String>,
    changes: Vec<PeerChange>,
    /// The revision the interface holds once `changes` are applied; `None` while no change is
    /// collected.
    revision: Option<u64>,
}

impl Batch {
    /// The revision entries are checked against: the batch's last, or what the interface holds.
    pub(super) fn applied(&self, interface: u64) -> u64 {
        self.revision.unwrap_or(interface)
    }

    /// Collects an entry that changes the interface to `revision`.
    pub(super) fn push_change(&mut self, id: &str, change: PeerChange, revision: u64) {
        self.ids.push(id.to_string());
        self.changes.push(change);
        self.revision = Some(revision);
    }

    /// Collects an entry that needs nothing from the interface.
    pub(super) fn push_skip(&mut self, id: &str) {
        self.ids.push(id.to_string());
    }

    /// Whether the next change would exceed one device update.
    pub(super) fn is_full(&self) -> bool {
        self.changes.len() >= MAX_CHANGES_PER_UPDATE
    }
}

impl NodeAgent {
    /// Applies the batch's changes as one device update, records its revision, and acknowledges
    /// all its entries. On an error nothing is acknowledged: the entries stay pending and come
    /// back to the next session (and an apply error owes a reconcile, which also rebuilds the
    /// address book the batch already counted its changes in).
    pub(super) async fn flush(
        &mut self,
        conn: &mut MultiplexedConnection,
        batch: &mut Batch,
    ) -> Result<(), SessionError> {
        let Batch {
            ids,
            changes,
            revision,
        } = std::mem::take(batch);
        if ids.is_empty() {
            return Ok(());
        }
        let applied = changes.len() as u64;
        self.apply(changes).await?;
        if let Some(revision) = revision {
            self.set_applied(revision);
        }
        match self.consumer.ack_all(conn, &ids).await {
            Ok(()) => {}
            // The stream vanished between read and ack: the entries are gone with it.
            Err(e) if is_stream_lost(&e) => {}
            Err(e) => return Err(e.into()),
        }
        self.metrics.events_applied.inc_by(applied);
        self.metrics
            .events_skipped
            .inc_by(ids.len() as u64 - applied);
        Ok(())
    }
}
