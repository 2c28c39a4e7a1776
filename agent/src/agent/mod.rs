//! The agent's loop: one Redis session at a time, turning stream entries and snapshots into
//! interface changes, and acknowledging an entry only once the interface holds it.
//!
//! A session connects, makes sure the group exists, reconciles if it must (start-up, lost stream),
//! re-processes its own pending entries, then blocks on new ones. Any error ends the session; the
//! caller ([`crate::run`]) backs off and starts a new one. Nothing is acknowledged that was not
//! applied, so a failed session loses nothing: its entries stay pending and come back.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use pvpn_common::backoff::Backoff;
use pvpn_common::obfuscation::InterfaceSpec;
use pvpn_common::redis_keys::RegionKeys;
use pvpn_common::wire::{ReconcileReport, ReconcileTrigger};
use pvpn_common::{NodeName, PeerSpec};
use redis::aio::MultiplexedConnection;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

mod batch;
mod entry;

use batch::Batch;

use crate::consumer::{Entry, ReadFrom, StreamConsumer, is_stream_lost};
use crate::interface::{self, InterfaceError, InterfaceOutcome};
use crate::metrics::{Metrics, SharedStatus, lock};
use crate::policy::{AddressBook, PeerPolicy};
use crate::snapshot::{self, Position, SnapshotError};
use crate::wireguard::{
    MAX_CHANGES_PER_UPDATE, ObfuscationParams, PeerChange, WgError, WireGuard, apply_in_chunks,
};
use crate::{reconcile, redis_conn};

/// Longest single blocking read; the loop wakes at least this often to check timers.
const MAX_BLOCK: Duration = Duration::from_secs(5);

/// Why a session ended.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("Redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("{0}")]
    SnapshotMissing(String),
    #[error("snapshot: {0}")]
    BadSnapshot(String),
    #[error(
        "the node's snapshot (epoch {}, revision {}) is older than what the interface holds \
         (epoch {}, revision {}): Redis was rolled back; not applied, waiting for the backend \
         to republish", .snapshot.epoch, .snapshot.revision, .applied.epoch, .applied.revision
    )]
    StaleSnapshot {
        snapshot: Position,
        applied: Position,
    },
    /// The snapshot breaks the node's rules ([`crate::policy`]); nothing of it was applied.
    #[error("snapshot refused, the interface keeps its peers: {0}")]
    RefusedSnapshot(String),
    /// The node's protocol is not the one this agent drives; nothing was applied.
    #[error("{0}")]
    WrongProtocol(String),
    #[error(transparent)]
    WireGuard(#[from] WgError),
    /// Another agent took the node lease: this one stops applying.
    #[error("another agent holds this node's lease")]
    Standby,
}

impl SessionError {
    /// A short name of the failure, so the caller logs once per change of kind, not per attempt.
    pub fn kind(&self) -> &'static str {
        match self {
            SessionError::Redis(_) => "redis unavailable",
            SessionError::SnapshotMissing(_) => "snapshot missing",
            SessionError::BadSnapshot(_) => "snapshot unreadable",
            SessionError::StaleSnapshot { .. } => "snapshot stale",
            SessionError::RefusedSnapshot(_) => "snapshot refused",
            SessionError::WrongProtocol(_) => "interface protocol mismatch",
            SessionError::WireGuard(_) => "interface failing",
            SessionError::Standby => "standby",
        }
    }
}

impl From<SnapshotError> for SessionError {
    fn from(e: SnapshotError) -> Self {
        match e {
            SnapshotError::Missing(_) => SessionError::SnapshotMissing(e.to_string()),
            SnapshotError::BadRevision(_)
            | SnapshotError::BadEpoch(_)
            | SnapshotError::BadInterface(_) => SessionError::BadSnapshot(e.to_string()),
            SnapshotError::Redis(e) => SessionError::Redis(e),
        }
    }
}

/// The state that outlives sessions: what the interface holds and what must happen next.
pub struct NodeAgent {
    pub(crate) wg: Arc<dyn WireGuard>,
    pub(crate) node: NodeName,
    pub(crate) keys: RegionKeys,
    pub(crate) consumer: StreamConsumer,
    pub(crate) redis: redis::Client,
    pub(crate) reconcile_interval: Duration,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) status: SharedStatus,
    /// What the node agrees to put on its interface.
    pub(crate) policy: PeerPolicy,
    /// Which peer holds which address on the interface (after the last reconcile and the events
    /// applied since).
    pub(crate) book: AddressBook,
    /// Whether this agent holds the node lease (kept by `lease::LeaseKeeper`).
    lease: watch::Receiver<bool>,
    /// When a dead letter was last logged, and how many were not logged since.
    dead_letter_logged: Option<Instant>,
    dead_letters_unlogged: u64,
    /// The revision the interface holds; meaningful once a reconcile succeeded.
    applied: u64,
    /// The epoch of the snapshot the interface last took; `None` until a reconcile succeeded
    /// (a fresh agent knows nothing to compare with and takes what Redis has).
    applied_epoch: Option<u64>,
    /// A reconcile owed before the next event (start-up, lost stream, trimmed entry).
    pending_reconcile: Option<ReconcileTrigger>,
    next_periodic: Instant,
    /// Delays between sessions, and the kind of failure being retried (logged once per change).
    backoff: Backoff,
    /// The drifted AmneziaWG parameters last logged, so a drift that keeps coming back is logged
    /// once (the metric counts every correction).
    interface_drift_logged: Option<ObfuscationParams>,
}

impl NodeAgent {
    pub fn new(
        wg: Arc<dyn WireGuard>,
        redis: redis::Client,
        config: &crate::Config,
        metrics: Arc<Metrics>,
        status: SharedStatus,
        lease: watch::Receiver<bool>,
    ) -> Self {
        let keys = RegionKeys::new(&config.region);
        let consumer = StreamConsumer::new(
            &keys,
            &config.node,
            pvpn_common::redis_keys::agent_group(&config.node),
            config.node.to_string(),
        );
        Self {
            wg,
            node: config.node.clone(),
            keys,
            consumer,
            redis,
            reconcile_interval: config.reconcile_interval,
            metrics,
            status,
            policy: PeerPolicy {
                subnet: config.subnet,
                max_peers: config.max_peers,
            },
            book: AddressBook::default(),
            lease,
            dead_letter_logged: None,
            dead_letters_unlogged: 0,
            applied: 0,
            applied_epoch: None,
            pending_reconcile: Some(ReconcileTrigger::Startup),
            next_periodic: Instant::now() + config.reconcile_interval,
            backoff: Backoff::new(Duration::from_millis(200), Duration::from_secs(30)),
            interface_drift_logged: None,
        }
    }

    /// Waits until this agent holds the node lease; false if shutdown came first.
    pub async fn wait_for_lease(&mut self, shutdown: &CancellationToken) -> bool {
        while !*self.lease.borrow_and_update() {
            tokio::select! {
                () = shutdown.cancelled() => return false,
                changed = self.lease.changed() => {
                    if changed.is_err() {
                        return false;
                    }
                }
            }
        }
        !shutdown.is_cancelled()
    }

    /// Runs one session until shutdown (`Ok`) or an error.
    pub async fn session(&mut self, shutdown: &CancellationToken) -> Result<(), SessionError> {
        let block = self.reconcile_interval.min(MAX_BLOCK);
        let mut conn = redis_conn::commands(&self.redis).await?;
        let mut reader = redis_conn::blocking_reads(&self.redis, block).await?;

        if self.consumer.ensure_group(&mut conn).await? && self.pending_reconcile.is_none() {
            self.pending_reconcile = Some(ReconcileTrigger::StreamLost);
        }
        self.consumer.claim_orphans(&mut conn).await?;
        self.reconcile_if_owed(&mut conn).await?;
        lock(&self.status).problem = None;
        if let Some(kind) = self.backoff.succeed() {
            tracing::info!(recovered_from = kind, "in sync again");
        }

        // Our own pending entries first: delivered to an earlier session, never acknowledged.
        loop {
            let entries = self.consumer.read(&mut conn, ReadFrom::Pending).await?;
            if entries.is_empty() || shutdown.is_cancelled() {
                break;
            }
            self.handle_all(&mut conn, entries, shutdown).await?;
        }

        while !shutdown.is_cancelled() {
            let read = tokio::select! {
                () = shutdown.cancelled() => break,
                changed = self.lease.changed() => {
                    if changed.is_err() || !*self.lease.borrow() {
                        return Err(SessionError::Standby);
                    }
                    continue;
                }
                read = self.consumer.read(&mut reader, ReadFrom::New { block }) => read,
            };
            match read {
                Ok(entries) => self.handle_all(&mut conn, entries, shutdown).await?,
                Err(e) if is_stream_lost(&e) => {
                    tracing::warn!(error = %e, "event stream or group vanished; recreating it");
                    self.consumer.ensure_group(&mut conn).await?;
                    self.pending_reconcile = Some(ReconcileTrigger::StreamLost);
                }
                Err(e) => return Err(e.into()),
            }
            if Instant::now() >= self.next_periodic && self.pending_reconcile.is_none() {
                self.pending_reconcile = Some(ReconcileTrigger::Periodic);
            }
            self.reconcile_if_owed(&mut conn).await?;
        }
        Ok(())
    }

    async fn handle_all(
        &mut self,
        conn: &mut MultiplexedConnection,
        entries: Vec<Entry>,
        shutdown: &CancellationToken,
    ) -> Result<(), SessionError> {
        let mut batch = Batch::default();
        for entry in entries {
            // Stop between entries on shutdown: the rest stay pending for the next start.
            if shutdown.is_cancelled() {
                break;
            }
            self.handle(conn, entry, &mut batch).await?;
        }
        self.flush(conn, &mut batch).await
    }

    async fn reconcile_if_owed(
        &mut self,
        conn: &mut MultiplexedConnection,
    ) -> Result<(), SessionError> {
        if let Some(trigger) = self.pending_reconcile {
            self.reconcile(conn, trigger, None).await?;
        }
        Ok(())
    }

    /// Reads the snapshot, diffs it against the interface and applies only the difference.
    async fn reconcile(
        &mut self,
        conn: &mut MultiplexedConnection,
        trigger: ReconcileTrigger,
        request_id: Option<String>,
    ) -> Result<ReconcileReport, SessionError> {
        self.pending_reconcile = Some(self.pending_reconcile.unwrap_or(trigger));
        let _burst = crate::heap::one_burst().await;
        // The address book is rebuilt at the end; until then no entry is checked against it
        // (entries wait while a reconcile is pending), so it is dropped now rather than held
        // beside the snapshot and the interface read: at 60,000 peers each is over 10 MB.
        self.book = AddressBook::default();
        let snapshot = match snapshot::read(conn, &self.keys, &self.node).await {
            Ok(s) => {
                self.metrics.snapshot_missing.set(0);
                s
            }
            Err(e) => {
                if matches!(e, SnapshotError::Missing(_)) {
                    self.metrics.snapshot_missing.set(1);
                }
                return Err(e.into());
            }
        };
        let next = Position {
            epoch: snapshot.epoch,
            revision: snapshot.revision,
        };
        if let Some(epoch) = self.applied_epoch {
            let applied = Position {
                epoch,
                revision: self.applied,
            };
            if !applied.accepts(next) {
                self.metrics.snapshot_stale.set(1);
                return Err(SessionError::StaleSnapshot {
                    snapshot: next,
                    applied,
                });
            }
        }
        self.metrics.snapshot_stale.set(0);
        if let Some(first) = snapshot.problems.first() {
            // One line however many: a snapshot of 60,000 bad entries must not flood the log.
            tracing::warn!(
                count = snapshot.problems.len(),
                first,
                "malformed snapshot entries left untouched"
            );
        }
        if let Err(refusal) = self.policy.check_snapshot(&snapshot) {
            self.metrics.snapshot_refused.set(1);
            return Err(SessionError::RefusedSnapshot(refusal.to_string()));
        }
        self.metrics.snapshot_refused.set(0);
        let interface_corrected = self.converge_interface(snapshot.interface.clone()).await?;
        let actual = blocking(&self.wg, |wg| wg.read_peers()).await?;
        let plan = reconcile::plan(&snapshot, &actual);
        // What the interface holds after the plan: the snapshot, plus the fenced-off peers left
        // as they were. Only those are kept of the interface read.
        let fenced: Vec<PeerSpec> = actual
            .iter()
            .filter(|p| snapshot.untouchable.contains(&p.spec.public_key))
            .map(|p| p.spec.clone())
            .collect();
        drop(actual);
        let (added, removed, updated) = (plan.added, plan.removed, plan.updated);
        self.apply(plan.changes).await?;
        self.book = AddressBook::of(snapshot.peers.values().chain(&fenced));
        self.set_applied(snapshot.revision);
        self.applied_epoch = Some(snapshot.epoch);
        let report = ReconcileReport {
            trigger,
            request_id,
            finished_at: unix_now(),
            snapshot_revision: snapshot.revision,
            added,
            removed,
            updated,
            interface_corrected,
        };
        tracing::info!(
            ?trigger,
            revision = snapshot.revision,
            added,
            removed,
            updated,
            "reconciled"
        );
        self.metrics.record_reconcile(&report);
        {
            let mut status = lock(&self.status);
            status.last_reconcile = Some(report.clone());
            status.ready = true;
        }
        self.pending_reconcile = None;
        self.next_periodic = Instant::now() + self.reconcile_interval;
        drop((snapshot, fenced));
        crate::heap::release_freed();
        Ok(report)
    }

    /// Brings the interface's protocol parameters to the node's spec before any peer is touched:
    /// a protocol the agent cannot drive fails the reconcile with nothing applied; drifted
    /// AmneziaWG parameters are logged (once per drifted state), counted and set back. Returns
    /// whether they were.
    async fn converge_interface(
        &mut self,
        spec: Option<InterfaceSpec>,
    ) -> Result<bool, SessionError> {
        let Some(spec) = spec else {
            return Ok(false);
        };
        let want = match blocking_interface(&self.wg, move |wg| interface::desired(wg, &spec)).await
        {
            Ok(want) => want,
            Err(InterfaceError::WrongProtocol { wanted, driven }) => {
                self.metrics.interface_protocol_mismatch.set(1);
                return Err(SessionError::WrongProtocol(
                    InterfaceError::WrongProtocol { wanted, driven }.to_string(),
                ));
            }
            Err(InterfaceError::WireGuard(e)) => return Err(e.into()),
        };
        self.metrics.interface_protocol_mismatch.set(0);
        let Some(want) = want else {
            return Ok(false);
        };
        if !*self.lease.borrow() {
            return Err(SessionError::Standby);
        }
        let wanted = want.clone();
        let outcome = blocking_interface(&self.wg, move |wg| interface::converge(wg, &wanted))
            .await
            .map_err(|e| match e {
                InterfaceError::WireGuard(e) => SessionError::WireGuard(e),
                other => SessionError::WrongProtocol(other.to_string()),
            })?;
        match outcome {
            InterfaceOutcome::Matches => Ok(false),
            InterfaceOutcome::Corrected { found } => {
                self.metrics.interface_corrections.inc();
                if self.interface_drift_logged.as_ref() != Some(&found) {
                    tracing::warn!(
                        ?found,
                        wanted = ?want,
                        "the interface's AmneziaWG parameters differ from the node's profile; set again"
                    );
                    self.interface_drift_logged = Some(found);
                }
                Ok(true)
            }
        }
    }

    async fn apply(&self, changes: Vec<PeerChange>) -> Result<(), SessionError> {
        if changes.is_empty() {
            return Ok(());
        }
        if !*self.lease.borrow() {
            return Err(SessionError::Standby);
        }
        let started = Instant::now();
        let updates = changes.len().div_ceil(MAX_CHANGES_PER_UPDATE) as u64;
        let result = blocking(&self.wg, move |wg| apply_in_chunks(wg, &changes)).await;
        self.metrics.device_updates.inc_by(updates);
        self.metrics
            .apply_seconds
            .observe(started.elapsed().as_secs_f64());
        if result.is_err() {
            self.metrics.wireguard_errors.inc();
        }
        Ok(result?)
    }

    /// Records a failed session: logs it if its kind changed, shows it on `/healthz`, and owes a
    /// reconcile if the interface failed (it may have been recreated empty). Returns the delay
    /// before the next attempt.
    pub(crate) fn note_failure(&mut self, error: &SessionError) -> Duration {
        let kind = error.kind();
        match error {
            SessionError::Redis(_) => {
                self.metrics.redis_errors.inc();
            }
            SessionError::WireGuard(_) => {
                self.pending_reconcile
                    .get_or_insert(ReconcileTrigger::InterfaceRecovered);
            }
            SessionError::Standby => {
                // Whatever happens while another agent holds the lease, the interface must be
                // made to match the snapshot again once this agent takes over.
                self.pending_reconcile
                    .get_or_insert(ReconcileTrigger::Startup);
            }
            SessionError::SnapshotMissing(_)
            | SessionError::BadSnapshot(_)
            | SessionError::StaleSnapshot { .. }
            | SessionError::RefusedSnapshot(_)
            | SessionError::WrongProtocol(_) => {}
        }
        let retry = self.backoff.fail(kind);
        if retry.is_news() {
            tracing::warn!(%error, "{kind}; retrying with backoff, the interface stays as it is");
        } else {
            tracing::debug!(%error, "still failing");
        }
        lock(&self.status).problem = Some(format!("{kind}: {error}"));
        retry.delay
    }

    fn set_applied(&mut self, revision: u64) {
        self.applied = revision;
        self.metrics
            .applied_revision
            .set(i64::try_from(revision).unwrap_or(i64::MAX));
        lock(&self.status).applied_revision = revision;
    }
}

/// [`blocking`] for the interface-spec calls, whose errors say more than [`WgError`].
async fn blocking_interface<T: Send + 'static>(
    wg: &Arc<dyn WireGuard>,
    f: impl FnOnce(&dyn WireGuard) -> Result<T, InterfaceError> + Send + 'static,
) -> Result<T, InterfaceError> {
    let wg = Arc::clone(wg);
    tokio::task::spawn_blocking(move || f(wg.as_ref()))
        .await
        .map_err(|e| InterfaceError::WireGuard(WgError::Task(e.to_string())))?
}

/// Runs a synchronous interface call on the blocking pool. The call runs to completion even if
/// the caller is dropped, so an apply is never cut in half by shutdown.
pub async fn blocking<T: Send + 'static>(
    wg: &Arc<dyn WireGuard>,
    f: impl FnOnce(&dyn WireGuard) -> Result<T, WgError> + Send + 'static,
) -> Result<T, WgError> {
    let wg = Arc::clone(wg);
    tokio::task::spawn_blocking(move || f(wg.as_ref()))
        .await
        .map_err(|e| WgError::Task(e.to_string()))?
}

pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
