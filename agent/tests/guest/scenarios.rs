//! The agent's kernel scenarios, shared by the WireGuard and AmneziaWG guest tests (the
//! interface's kind is the node's `protocol`): start-up reconcile, ordered events, revision gap,
//! dead letters, a restart that keeps a client's session, the interface deleted and recreated,
//! and an agent started without its interface.

use pvpn_common::redis_keys::{DEAD_LETTER_ID_FIELD, DEAD_LETTER_REASON_FIELD};
use pvpn_common::wire::{EVENT_FIELD, ReconcileReport, ReconcileTrigger};
use pvpn_common::{PrivateKey, PublicKey};
use redis::Commands;

use super::{GuestAgent, GuestNode};
use crate::support::{self, Relay, keys, peer};

/// Waits for a heartbeat whose last reconcile matches `wanted`.
pub fn reconcile_report(
    node: &GuestNode,
    what: &str,
    wanted: impl Fn(&ReconcileReport) -> bool,
) -> ReconcileReport {
    node.wait_until(what, || {
        node.heartbeat()
            .and_then(|h| h.last_reconcile)
            .filter(&wanted)
    })
}

/// Publishes a reconcile request and waits for the reconcile answering it.
pub fn requested_reconcile(
    node: &GuestNode,
    relay: &mut Relay,
    request_id: &str,
) -> ReconcileReport {
    relay.request_reconcile(request_id);
    reconcile_report(
        node,
        &format!("the reconcile answering {request_id}"),
        |r| r.request_id.as_deref() == Some(request_id),
    )
}

pub fn counts(report: &ReconcileReport) -> (u32, u32, u32) {
    (report.added, report.removed, report.updated)
}

/// On `iface` (created, no agent yet): a start-up reconcile adds the snapshot and removes a stray
/// peer; events apply in order and are acknowledged; a revision gap is repaired from the
/// snapshot. Returns the running agent.
pub fn startup_events_and_gap<'a>(
    node: &'a GuestNode,
    relay: &mut Relay,
    iface: &str,
) -> GuestAgent<'a> {
    eprintln!("scenario: start-up reconcile adds the snapshot and removes a stray peer");
    let stray = peer(900);
    node.sh(&format!(
        "{} set {iface} peer {} allowed-ips 198.19.200.1/32",
        node.tool(),
        stray.public_key
    ));
    for n in 1..=3 {
        relay.upsert_without_event(&peer(n));
    }
    let agent = node.start_agent(iface);
    agent.wait_ready();
    node.wait_for_peers(iface, &relay.peers);
    let startup = reconcile_report(node, "the start-up reconcile", |r| {
        r.trigger == ReconcileTrigger::Startup
    });
    assert_eq!(counts(&startup), (3, 1, 0));

    eprintln!("scenario: events apply in order and are acknowledged");
    let a = peer(10);
    relay.upsert(&a);
    node.wait_for_peers(iface, &relay.peers);
    let mut a2 = a.clone();
    // A peer moves to another address of the subnet (the agent accepts only one /32 client
    // address per peer, see `agent::policy`).
    a2.allowed_ips = vec!["198.19.7.7/32".parse().unwrap()];
    a2.preshared_key = None;
    a2.persistent_keepalive = Some(25);
    relay.upsert(&a2);
    node.wait_for_peers(iface, &relay.peers);
    assert_eq!(
        node.peers(iface)[&a.public_key].persistent_keepalive,
        Some(25)
    );
    relay.remove(&a.public_key);
    node.wait_for_peers(iface, &relay.peers);
    node.wait_until("every entry to be acknowledged", || {
        (node.pending() == 0).then_some(())
    });
    let revision = relay.revision;
    node.wait_until("the applied revision in /metrics", || {
        let (_, metrics) = agent.get("/metrics").ok()?;
        metrics
            .contains(&format!("pvpn_agent_applied_revision {revision}"))
            .then_some(())
    });

    eprintln!("scenario: a revision gap is repaired from the snapshot");
    relay.upsert_without_event(&peer(20));
    relay.upsert(&peer(21));
    node.wait_for_peers(iface, &relay.peers);
    let gap = reconcile_report(node, "the revision-gap reconcile", |r| {
        r.trigger == ReconcileTrigger::RevisionGap
    });
    assert_eq!(counts(&gap), (2, 0, 0));
    assert_eq!(gap.snapshot_revision, relay.revision);

    agent
}

/// A malformed stream entry is dead-lettered (its id and the reason recorded) and the entry after
/// it applies: one bad entry never stops the node.
pub fn dead_letter(node: &GuestNode, relay: &mut Relay, iface: &str) {
    eprintln!("scenario: a malformed entry is dead-lettered, the next one applies");
    let bad_id = relay.xadd_raw(&[(EVENT_FIELD, b"not json at all")]);
    relay.upsert(&peer(30));
    node.wait_for_peers(iface, &relay.peers);
    node.wait_until("every entry to be acknowledged", || {
        (node.pending() == 0).then_some(())
    });
    let dead: redis::streams::StreamRangeReply = node
        .conn()
        .xrange_all(keys().node_dead_letter(&support::node()))
        .unwrap();
    assert_eq!(dead.ids.len(), 1, "{dead:?}");
    let id: String = dead.ids[0].get(DEAD_LETTER_ID_FIELD).unwrap();
    let reason: String = dead.ids[0].get(DEAD_LETTER_REASON_FIELD).unwrap();
    assert_eq!(id, bad_id);
    assert!(reason.contains("malformed"), "{reason}");
}

/// Stops `agent` and starts a new one on `iface`, where `client` has completed a handshake: the
/// reconcile after the restart changes nothing, and the client's session is kept (same handshake
/// time and endpoint, counters not reset). Returns the restarted agent.
pub fn restart_keeps_session<'a>(
    node: &'a GuestNode,
    relay: &mut Relay,
    agent: GuestAgent<'a>,
    iface: &str,
    client: &PublicKey,
) -> GuestAgent<'a> {
    eprintln!("scenario: an agent restart keeps the client's session and changes nothing");
    let before = node.peers(iface)[client].clone();
    assert!(before.latest_handshake > 0, "no handshake: {before:?}");
    assert!(before.endpoint.is_some(), "{before:?}");
    agent.stop();
    let agent = node.start_agent(iface);
    agent.wait_ready();
    let report = requested_reconcile(node, relay, "after-restart");
    assert_eq!(counts(&report), (0, 0, 0));
    assert!(!report.interface_corrected, "{report:?}");
    let after = node.peers(iface)[client].clone();
    assert_eq!(
        after.latest_handshake, before.latest_handshake,
        "session kept"
    );
    assert_eq!(after.endpoint, before.endpoint, "endpoint kept");
    assert!(after.rx_bytes >= before.rx_bytes, "counters not reset");
    agent
}

/// How the node's interface unit creates `iface`: its key, port and address.
pub struct InterfaceUnit<'k> {
    pub key: &'k PrivateKey,
    pub port: u16,
    pub address: &'k str,
}

/// `iface` deleted under the running agent: `/healthz` says so, the next entry stays pending and
/// the agent does not recreate the interface. Recreated empty (by `unit`), it is reconciled back
/// to the snapshot and the entry acknowledged. Returns the interface-recovered reconcile's report.
pub fn interface_deleted_and_recreated(
    node: &GuestNode,
    relay: &mut Relay,
    agent: &GuestAgent<'_>,
    iface: &str,
    unit: &InterfaceUnit<'_>,
) -> ReconcileReport {
    eprintln!("scenario: the interface deleted under the agent is not recreated by it");
    node.sh(&format!("ip link del {iface}"));
    relay.upsert(&peer(40));
    node.wait_until("/healthz to report the missing interface", || {
        match agent.get("/healthz") {
            Ok((503, body)) if body.contains("interface") => Some(()),
            _ => None,
        }
    });
    node.wait_until("the entry to be delivered and left pending", || {
        (node.pending() == 1).then_some(())
    });
    assert!(
        !node.interface_exists(iface),
        "the agent must never create the interface"
    );
    eprintln!("scenario: the interface recreated empty is reconciled back");
    node.create_interface(iface, unit.key, unit.port, unit.address);
    node.wait_for_peers(iface, &relay.peers);
    node.wait_until("the entry to be acknowledged", || {
        (node.pending() == 0).then_some(())
    });
    reconcile_report(node, "the interface-recovered reconcile", |r| {
        r.trigger == ReconcileTrigger::InterfaceRecovered
    })
}

/// An agent started on an interface that does not exist gives up, says why, and never creates it.
pub fn missing_interface_at_start(node: &GuestNode, iface: &str) {
    eprintln!("scenario: an agent started without its interface never creates it");
    let agent = node.start_agent(iface);
    node.wait_until("the agent to give up", || {
        (!agent.is_running()).then_some(())
    });
    let journal = agent.journal();
    assert!(journal.contains("does not exist"), "{journal}");
    assert!(!node.interface_exists(iface), "the agent created {iface}");
}
