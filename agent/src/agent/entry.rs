//! One stream entry: decode, route by node and revision, check against the node's rules
//! ([`crate::policy`]), apply, and acknowledge only once the interface holds the change (or the
//! entry needs nothing from it). An entry that breaks a rule is dead-lettered, never applied.
//! The next revision's change (and an entry needing nothing) joins the [`Batch`]; everything
//! else flushes the batch first, so entries still take effect in stream order.

use pvpn_common::wire::{ReconcileTrigger, StreamEvent};
use redis::aio::MultiplexedConnection;

use super::batch::Batch;
use super::{NodeAgent, SessionError};

/// Shortest time between two dead-letter warnings.
const DEAD_LETTER_LOG_EVERY: std::time::Duration = std::time::Duration::from_secs(10);
use crate::consumer::{Entry, EntryBody, is_stream_lost};
use crate::wireguard::PeerChange;

impl NodeAgent {
    /// Handles one entry: adds it to `batch`, or flushes the batch and then deals with it,
    /// acknowledging it once it needs nothing more from the interface.
    pub(super) async fn handle(
        &mut self,
        conn: &mut MultiplexedConnection,
        entry: Entry,
        batch: &mut Batch,
    ) -> Result<(), SessionError> {
        if self.pending_reconcile.is_some() {
            self.flush(conn, batch).await?;
            self.reconcile_if_owed(conn).await?;
        }
        let payload = match entry.body {
            EntryBody::Payload(bytes) => bytes,
            EntryBody::NoEventField(fields) => {
                self.flush(conn, batch).await?;
                let reason = format!("entry has no `event` field (fields: {fields})");
                return self.dead_letter(conn, &entry.id, b"", &reason).await;
            }
            EntryBody::Gone => {
                // Trimmed before we acknowledged it: we cannot know what it was; the snapshot does.
                self.flush(conn, batch).await?;
                self.reconcile(conn, ReconcileTrigger::RevisionGap, None)
                    .await?;
                return self.ack(conn, &entry.id, false).await;
            }
        };
        let event = match StreamEvent::decode(&payload) {
            Ok(event) => event,
            Err(e) => {
                self.flush(conn, batch).await?;
                return self
                    .dead_letter(conn, &entry.id, &payload, &e.to_string())
                    .await;
            }
        };
        if !event.is_for(&self.node) {
            batch.push_skip(&entry.id);
            return Ok(());
        }
        let (revision, change) = match event {
            StreamEvent::Reconcile { request_id, .. } => {
                self.flush(conn, batch).await?;
                self.reconcile(conn, ReconcileTrigger::Requested, Some(request_id))
                    .await?;
                return self.ack(conn, &entry.id, false).await;
            }
            StreamEvent::InterfaceSet { revision, .. } => {
                // The relay wrote the spec into the node's interface key together with this
                // revision, so the snapshot holds it: a reconcile applies it (and finds the peers
                // as they are). An old revision is already covered.
                let newer = revision > self.applied;
                if newer {
                    self.reconcile(conn, ReconcileTrigger::InterfaceChanged, None)
                        .await?;
                }
                return self.ack(conn, &entry.id, newer).await;
            }
            StreamEvent::PeerUpsert { revision, peer, .. } => {
                if let Err(refusal) = self.policy.check_peer(&peer) {
                    self.flush(conn, batch).await?;
                    return self
                        .dead_letter(conn, &entry.id, &payload, &refusal.to_string())
                        .await;
                }
                (revision, PeerChange::Upsert(peer))
            }
            StreamEvent::PeerRemove {
                revision,
                public_key,
                ..
            } => (revision, PeerChange::Remove(public_key)),
        };
        let applied = batch.applied(self.applied);
        if revision <= applied {
            batch.push_skip(&entry.id);
            return Ok(());
        }
        if revision == applied + 1
            && !batch.is_full()
            && !matches!(&change, PeerChange::Upsert(spec)
                if self.book.check_upsert(spec, self.policy.max_peers).is_err())
        {
            // The book counts the change now, so the batch's next entries are checked against it.
            match &change {
                PeerChange::Upsert(spec) => self.book.insert(spec),
                PeerChange::Remove(key) => self.book.remove(key),
            }
            batch.push_change(&entry.id, change, revision);
            return Ok(());
        }
        // A gap, a refusal or a full batch: what is collected goes to the interface first.
        self.flush(conn, batch).await?;
        if revision > self.applied + 1 {
            tracing::info!(
                revision,
                applied = self.applied,
                "revision gap; reconciling"
            );
            self.reconcile(conn, ReconcileTrigger::RevisionGap, None)
                .await?;
        }
        if revision <= self.applied {
            return self.ack(conn, &entry.id, false).await;
        }
        if revision > self.applied + 1 {
            // The snapshot is behind the stream, which the relay's atomic publish rules out;
            // the snapshot is the truth, the next reconcile will catch up.
            let reason = format!(
                "revision {revision} is ahead of the node's snapshot at {}",
                self.applied
            );
            return self.dead_letter(conn, &entry.id, &payload, &reason).await;
        }
        if let PeerChange::Upsert(spec) = &change
            && let Err(refusal) = self.book.check_upsert(spec, self.policy.max_peers)
        {
            return self
                .dead_letter(conn, &entry.id, &payload, &refusal.to_string())
                .await;
        }
        match &change {
            PeerChange::Upsert(spec) => self.book.insert(spec),
            PeerChange::Remove(key) => self.book.remove(key),
        }
        batch.push_change(&entry.id, change, revision);
        Ok(())
    }

    async fn ack(
        &self,
        conn: &mut MultiplexedConnection,
        id: &str,
        applied: bool,
    ) -> Result<(), SessionError> {
        match self.consumer.ack(conn, id).await {
            Ok(()) => {}
            // The stream vanished between read and ack: the entry is gone with it.
            Err(e) if is_stream_lost(&e) => {}
            Err(e) => return Err(e.into()),
        }
        if applied {
            self.metrics.events_applied.inc();
        } else {
            self.metrics.events_skipped.inc();
        }
        Ok(())
    }

    async fn dead_letter(
        &mut self,
        conn: &mut MultiplexedConnection,
        id: &str,
        payload: &[u8],
        reason: &str,
    ) -> Result<(), SessionError> {
        // At most one warning per DEAD_LETTER_LOG_EVERY, with the count of those not logged: a
        // flood of bad entries must not flood the log (every one is on the dead-letter stream).
        let now = std::time::Instant::now();
        if self
            .dead_letter_logged
            .is_none_or(|at| now.duration_since(at) >= DEAD_LETTER_LOG_EVERY)
        {
            tracing::warn!(
                entry = id,
                reason,
                not_logged_since_last = self.dead_letters_unlogged,
                "stream entry refused and moved to the dead-letter stream"
            );
            self.dead_letter_logged = Some(now);
            self.dead_letters_unlogged = 0;
        } else {
            self.dead_letters_unlogged += 1;
        }
        self.consumer.dead_letter(conn, id, payload, reason).await?;
        self.metrics.dead_letters.inc();
        Ok(())
    }
}
