//! The agent's kernel scenarios, shared by the WireGuard and AmneziaWG guest tests (the
//! interface's kind is the node's `protocol`): start-up reconcile, ordered events, revision gap.

use pvpn_common::wire::{ReconcileReport, ReconcileTrigger};

use super::{GuestAgent, GuestNode};
use crate::support::{Relay, peer};

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
