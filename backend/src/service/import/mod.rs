//! Bringing an existing WireGuard server's users along (`pvpnctl import`): its peers become PVPN
//! devices with their own public keys, preshared keys and addresses, so no user needs a new
//! config. PVPN never sees a client's private key here; it only ever had the server's view.
//!
//! One transaction: lock the mapped users, lock the node, read what PVPN already knows about
//! these keys and addresses, [`plan::plan`] (every check, every problem reported with its line),
//! then write in batches: users, devices, one `PeerUpsert` outbox row per new device with the
//! node's next revisions (as a grant would), and the audit entry. Any problem, or `dry_run`,
//! rolls back; a second identical import finds nothing to do and writes nothing.
//!
//! Peers without a mapping are either imported as *unassigned* — owned by an operator
//! placeholder user (Telegram id [`UNASSIGNED_TELEGRAM_ID`], which no Telegram account has) until
//! a later import maps them to someone — or left out. Left out means the agent removes them when
//! it takes over (it owns the peer list), so that needs the operator's confirmation.

pub mod mapping;
pub mod plan;
pub mod source;

mod write;

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::net::Ipv4Addr;

use pvpn_common::{NodeName, PublicKey};
use serde::Serialize;
use sqlx::Connection;

pub use mapping::{MappingEntry, parse_mapping};
pub use source::{SourcePeer, parse_peers};

use super::devices::node_capacity;
use super::error::MAX_ATTEMPTS;
use super::types::{Actor, DeviceStatus, UserStatus};
use super::{Service, ServiceError};
use crate::db;
use plan::{Facts, KnownDevice, KnownUser, Request};

/// The Telegram id of the placeholder user that owns unassigned imported devices. Telegram user
/// ids are positive, so no one can register as it or be mapped to it.
pub const UNASSIGNED_TELEGRAM_ID: i64 = 0;

/// Where in an input file a problem is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Location {
    /// 1-based line.
    Line(usize),
    /// 1-based entry of a JSON array.
    Entry(usize),
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Line(n) => write!(f, "line {n}"),
            Location::Entry(n) => write!(f, "entry {n}"),
        }
    }
}

/// One reason an import is refused, with the file and line it is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub source: String,
    pub at: Option<Location>,
    pub message: String,
}

impl Problem {
    pub fn new(source: &str, at: Option<Location>, message: String) -> Self {
        Self {
            source: source.to_string(),
            at,
            message,
        }
    }

    pub fn at(source: &str, line: usize, message: String) -> Self {
        Self::new(source, Some(Location::Line(line)), message)
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.at {
            Some(Location::Line(n)) => write!(f, "{}:{n}: {}", self.source, self.message),
            Some(Location::Entry(n)) => write!(f, "{} entry {n}: {}", self.source, self.message),
            None => write!(f, "{}: {}", self.source, self.message),
        }
    }
}

/// What happens to peers the mapping does not name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum UnmappedPeers {
    /// Import them, owned by the operator placeholder, to be assigned by a later import.
    Unassigned,
    /// Do not import them: the agent removes them from the interface when it takes over.
    LeaveOut,
}

/// Why an import changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("the import is refused, nothing was changed: {} problem(s)", .0.len())]
    Invalid(Vec<Problem>),
    #[error(transparent)]
    Service(#[from] ServiceError),
}

impl From<sqlx::Error> for ImportError {
    fn from(e: sqlx::Error) -> Self {
        ImportError::Service(e.into())
    }
}

/// One import, parsed.
#[derive(Debug)]
pub struct ImportRequest {
    pub node: NodeName,
    /// Name of the peers file, for messages.
    pub peers_source: String,
    pub peers: Vec<SourcePeer>,
    pub mapping_source: String,
    pub mapping: Vec<MappingEntry>,
    pub unmapped: UnmappedPeers,
    /// The operator agreed that left-out peers are removed from the interface.
    pub confirm_removal: bool,
    pub dry_run: bool,
}

/// A peer the mapping does not name.
#[derive(Debug, Clone, Serialize)]
pub struct UnmappedPeer {
    pub line: usize,
    pub public_key: String,
}

/// What an import did (or, for a dry run, would do).
#[derive(Debug, Clone, Serialize)]
pub struct ImportReport {
    pub node: String,
    pub dry_run: bool,
    /// Whether anything was (or would be) written.
    pub changed: bool,
    pub peers: usize,
    pub created_devices: usize,
    /// Of the created devices, those owned by the unassigned placeholder.
    pub unassigned_devices: usize,
    /// The peers imported as unassigned.
    pub unassigned: Vec<UnmappedPeer>,
    /// Unassigned devices the mapping now gave to users.
    pub assigned_devices: usize,
    pub unchanged_devices: usize,
    pub created_users: usize,
    /// The unmapped peers not imported (the agent removes them when it takes over).
    pub left_out: Vec<UnmappedPeer>,
    /// Peers whose server-side PersistentKeepalive is not kept (the agent clears it in place).
    pub keepalive_dropped: usize,
    /// The node revisions the new devices took, first and last.
    pub revisions: Option<(u64, u64)>,
}

impl Service {
    /// Imports an existing server's peers onto `request.node`; see the module docs.
    pub async fn import_peers(
        &self,
        actor: &Actor,
        request: &ImportRequest,
    ) -> Result<ImportReport, ImportError> {
        // A conflict (a deadlock with a concurrent grant) leaves nothing behind: run it again.
        for _ in 1..MAX_ATTEMPTS {
            match self.try_import(actor, request).await {
                Err(ImportError::Service(ServiceError::Contention)) => {
                    tracing::debug!("import conflicted with another transaction; retrying");
                }
                other => return other,
            }
        }
        match self.try_import(actor, request).await {
            Err(ImportError::Service(ServiceError::Contention)) => Err(ImportError::Service(
                ServiceError::Unavailable("the database kept reporting conflicts".into()),
            )),
            other => other,
        }
    }

    /// `(revision, published_revision)` of the node: the import is in Redis, and the agent may
    /// take over, once the second reaches the first.
    pub async fn node_publication(&self, node: &NodeName) -> Result<(u64, u64), ServiceError> {
        let mut conn = self.pool.acquire().await?;
        let (revision, published) = db::import::publication(&mut conn, node)
            .await?
            .ok_or(ServiceError::NodeNotFound)?;
        let as_u64 = |r: i64| u64::try_from(r).unwrap_or(0);
        Ok((as_u64(revision), as_u64(published)))
    }

    async fn try_import(
        &self,
        actor: &Actor,
        request: &ImportRequest,
    ) -> Result<ImportReport, ImportError> {
        let mut conn = self.pool.acquire().await?;
        let mut tx = conn.begin().await?;
        let mut telegram_ids: Vec<i64> = request.mapping.iter().map(|e| e.telegram_id).collect();
        telegram_ids.push(UNASSIGNED_TELEGRAM_ID);
        telegram_ids.sort_unstable();
        telegram_ids.dedup();
        // Users before the node: the lock order of every grant and revocation.
        let users = db::import::lock_users(&mut tx, &telegram_ids).await?;
        let node = db::nodes::lock(&mut tx, request.node.as_str())
            .await?
            .ok_or(ServiceError::NodeNotFound)?;
        let facts = read_facts(&mut tx, &node, request, users).await?;
        let plan = plan::plan(
            &Request {
                peers_source: &request.peers_source,
                peers: &request.peers,
                mapping_source: &request.mapping_source,
                mapping: &request.mapping,
                unmapped: request.unmapped,
            },
            &facts,
        )
        .map_err(ImportError::Invalid)?;
        if !plan.left_out.is_empty() && !request.confirm_removal && !request.dry_run {
            return Err(ImportError::Invalid(left_out_problems(request, &plan)));
        }
        let mut report = report_of(request, &plan);
        if plan.changes_nothing() || request.dry_run {
            tx.rollback().await?;
            return Ok(report);
        }
        report.revisions = write::apply(&mut tx, &node, &plan).await?;
        let details = serde_json::to_value(&report)
            .map_err(|e| ServiceError::Internal(format!("import report: {e}")))?;
        db::audit::insert(
            &mut tx,
            &actor.to_string(),
            "node.import",
            Some(request.node.as_str()),
            &details,
        )
        .await?;
        tx.commit().await?;
        super::outbox::wake_relay(&mut conn).await;
        tracing::info!(
            node = %request.node,
            created = report.created_devices,
            assigned = report.assigned_devices,
            unchanged = report.unchanged_devices,
            "peers imported"
        );
        Ok(report)
    }
}

fn left_out_problems(request: &ImportRequest, plan: &plan::Plan) -> Vec<Problem> {
    plan.left_out
        .iter()
        .map(|(line, key)| {
            Problem::at(
                &request.peers_source,
                *line,
                format!(
                    "peer {key} has no mapping and would be left out: the agent removes it from the interface when it takes over. Confirm with --remove-unmapped, or import it with --unmapped unassigned"
                ),
            )
        })
        .collect()
}

fn report_of(request: &ImportRequest, plan: &plan::Plan) -> ImportReport {
    ImportReport {
        node: request.node.to_string(),
        dry_run: request.dry_run,
        changed: !plan.changes_nothing(),
        peers: request.peers.len(),
        created_devices: plan.create.len(),
        unassigned_devices: plan
            .create
            .iter()
            .filter(|d| d.owner == plan::Owner::Unassigned)
            .count(),
        unassigned: plan
            .create
            .iter()
            .filter(|d| d.owner == plan::Owner::Unassigned)
            .map(|d| UnmappedPeer {
                line: d.line,
                public_key: d.public_key.to_base64(),
            })
            .collect(),
        assigned_devices: plan.assign.len(),
        unchanged_devices: plan.unchanged,
        created_users: plan.new_users.len(),
        left_out: plan
            .left_out
            .iter()
            .map(|(line, key)| UnmappedPeer {
                line: *line,
                public_key: key.to_base64(),
            })
            .collect(),
        keepalive_dropped: plan.keepalive_dropped,
        revisions: None,
    }
}

/// What PVPN knows about the node, the keys and the users, read under the locks.
async fn read_facts(
    conn: &mut sqlx::PgConnection,
    node: &db::nodes::NodeRow,
    request: &ImportRequest,
    users: Vec<(i64, UserStatus, bool)>,
) -> Result<Facts, ServiceError> {
    let keys: BTreeSet<String> = request
        .peers
        .iter()
        .map(|p| p.public_key.to_base64())
        .collect();
    let keys: Vec<String> = keys.into_iter().collect();
    let known_devices: HashMap<PublicKey, KnownDevice> = db::import::devices_with_keys(conn, &keys)
        .await?
        .into_iter()
        .map(|row| {
            let device = KnownDevice {
                id: row.id,
                node: row.node.to_string(),
                active: row.status == DeviceStatus::Active,
                address: row.address,
                preshared_key: row.preshared_key,
                owner_telegram_id: row.owner_telegram_id,
            };
            (row.public_key, device)
        })
        .collect();
    let live_addresses: HashMap<Ipv4Addr, PublicKey> = db::import::live_addresses(conn, &node.name)
        .await?
        .into_iter()
        .map(|live| (live.address, live.public_key))
        .collect();
    let capacity = u64::from(node_capacity(node));
    let live = u64::try_from(live_addresses.len()).unwrap_or(u64::MAX);
    Ok(Facts {
        node: node.name.to_string(),
        subnet: node.subnet,
        room: capacity.saturating_sub(live),
        known_devices,
        live_addresses,
        users: users
            .into_iter()
            .map(|(id, status, expired)| {
                let user = KnownUser {
                    banned: status == UserStatus::Banned,
                    expired,
                };
                (id, user)
            })
            .collect(),
        unassigned_telegram_id: UNASSIGNED_TELEGRAM_ID,
    })
}
