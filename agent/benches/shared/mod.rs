//! What both apply benchmarks (`apply_kernel` in a guest here, and the `apply` section of
//! `tests/benches/whole_path` on wireguard-go, which includes this file) build their runs from,
//! so the agent and `wg` are given the same peers in the same form.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use pvpn_agent::reconcile::{Plan, plan};
use pvpn_agent::snapshot::Snapshot;
use pvpn_agent::wireguard::control::ControlWireGuard;
use pvpn_agent::wireguard::{WireGuard, apply_in_chunks};
use pvpn_common::{PeerSpec, PrivateKey};

/// A snapshot at revision 1 holding exactly `peers`.
pub fn snapshot(peers: &[PeerSpec]) -> Snapshot {
    Snapshot {
        revision: 1,
        peers: peers.iter().map(|p| (p.public_key, p.clone())).collect(),
        ..Snapshot::default()
    }
}

/// A `wg setconf` file with only peers (the interface keeps its key and port).
pub fn conf(key: &PrivateKey, peers: &[PeerSpec]) -> String {
    let mut out = format!("[Interface]\nPrivateKey = {}\n", key.to_base64());
    for p in peers {
        let ips: Vec<String> = p.allowed_ips.iter().map(ToString::to_string).collect();
        let _ = write!(out, "\n[Peer]\nPublicKey = {}\n", p.public_key);
        if let Some(psk) = &p.preshared_key {
            let _ = writeln!(out, "PresharedKey = {}", psk.to_base64());
        }
        let _ = writeln!(out, "AllowedIPs = {}", ips.join(","));
    }
    out
}

/// The agent's reconcile as it runs on a node (read the interface, plan, chunked apply), timed.
pub fn timed_reconcile(control: &ControlWireGuard, snap: &Snapshot) -> (Duration, Plan) {
    let t = Instant::now();
    let actual = control.read_peers().expect("read");
    let p = plan(snap, &actual);
    apply_in_chunks(control, &p.changes).expect("apply");
    (t.elapsed(), p)
}
