//! Writing desired-state changes to the outbox, inside the caller's transaction.
//!
//! Every peer change on a node does two things in the same transaction as the change itself, in
//! one statement: move the node's revision to the next (`nodes.revision + 1`) and insert an
//! outbox row carrying the [`StreamEvent`] with that revision. The caller holds the node's row
//! lock (see [`crate::db::nodes::lock`]) and passes the row it locked, which knows the current
//! revision, so a node's revisions go 1, 2, 3, ... without holes, in commit order. The relay
//! ([`crate::relay`]) later publishes the rows to Redis. It lives in the service layer because
//! only the service's transactions write it.
//!
//! After such a transaction commits, its caller calls [`wake_relay`] on the same connection. The
//! wake-up is not part of the transaction on purpose: a `NOTIFY` inside it would serialise every
//! grant's commit behind PostgreSQL's cluster-wide notify lock ([`db::outbox::notify`]).

use pvpn_common::obfuscation::InterfaceSpec;
use pvpn_common::wire::StreamEvent;
use pvpn_common::{NodeName, PeerSpec, PublicKey, RegionCode};
use sqlx::PgConnection;

use super::ServiceError;
use crate::db;
use crate::db::nodes::NodeRow;

/// Wakes the relay after a commit that wrote outbox rows, on the connection the transaction ran
/// on. Never fails the caller: the rows are committed, and if the wake-up is lost the relay's
/// poll publishes them.
pub(crate) async fn wake_relay(conn: &mut PgConnection) {
    if let Err(e) = db::outbox::notify(conn).await {
        tracing::debug!(error = %e, "relay not woken; its poll will publish the committed rows");
    }
}

fn revision_u64(revision: i64) -> Result<u64, ServiceError> {
    u64::try_from(revision)
        .map_err(|_| ServiceError::Internal(format!("negative node revision {revision}")))
}

/// Moves the node to its next revision and writes the change `event(revision)` as its outbox
/// row; `node` is the row the caller locked ([`db::nodes::lock`]), whose revision it keeps
/// counting, so several changes in one transaction follow each other.
async fn node_change(
    conn: &mut PgConnection,
    node: &mut NodeRow,
    kind: &str,
    event: impl FnOnce(u64) -> StreamEvent,
) -> Result<u64, ServiceError> {
    let revision = node.revision + 1;
    let event = event(revision_u64(revision)?);
    let written = db::outbox::insert_node_change(
        conn,
        node.region.as_str(),
        node.name.as_str(),
        revision,
        kind,
        &event.encode(),
    )
    .await?;
    if !written {
        return Err(ServiceError::Internal(format!(
            "node {} moved from revision {} while locked",
            node.name, node.revision
        )));
    }
    node.revision = revision;
    revision_u64(revision)
}

/// Records "node should hold this peer"; returns the node's new revision.
pub(crate) async fn peer_upsert(
    conn: &mut PgConnection,
    node: &mut NodeRow,
    peer: PeerSpec,
) -> Result<u64, ServiceError> {
    let name = node.name.clone();
    node_change(conn, node, "peer_upsert", |revision| {
        StreamEvent::PeerUpsert {
            node: name,
            revision,
            peer,
        }
    })
    .await
}

/// Records "node should not hold this peer"; returns the node's new revision.
pub(crate) async fn peer_remove(
    conn: &mut PgConnection,
    node: &mut NodeRow,
    public_key: PublicKey,
) -> Result<u64, ServiceError> {
    let name = node.name.clone();
    node_change(conn, node, "peer_remove", |revision| {
        StreamEvent::PeerRemove {
            node: name,
            revision,
            public_key,
        }
    })
    .await
}

/// Records "node's interface should be `interface`" (an AmneziaWG profile changed); returns the
/// node's new revision, which orders it with the node's peer changes.
pub(crate) async fn interface_set(
    conn: &mut PgConnection,
    node: &mut NodeRow,
    interface: InterfaceSpec,
) -> Result<u64, ServiceError> {
    let name = node.name.clone();
    node_change(conn, node, "interface_set", |revision| {
        StreamEvent::InterfaceSet {
            node: name,
            revision,
            interface,
        }
    })
    .await
}

/// Asks one node (or every node of the region) to reconcile with its snapshot. Control events
/// carry no revision and change no snapshot.
pub(crate) async fn reconcile(
    conn: &mut PgConnection,
    region: &RegionCode,
    node: Option<&NodeName>,
    request_id: &str,
) -> Result<(), ServiceError> {
    let event = StreamEvent::Reconcile {
        node: node.cloned(),
        request_id: request_id.to_string(),
    };
    db::outbox::insert(
        conn,
        region.as_str(),
        node.map(NodeName::as_str),
        None,
        "reconcile",
        &event.encode(),
    )
    .await?;
    Ok(())
}
