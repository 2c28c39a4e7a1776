//! The agent's apply path against `wg setconf` / `wg syncconf` on the same `wireguard-go`
//! device, in the same run (moved here from `agent/benches/apply.rs`).
//!
//! For each size, on one fresh interface in a network namespace, each run does both sides one
//! after the other (the order alternates between runs), clearing the device with `wg setconf`
//! of a file without peers in between:
//! - full sync from empty: the agent's reconcile (read peers, plan, chunked apply) vs.
//!   `wg setconf`;
//! - a small diff (10 removed, 10 updated, 10 added) against the full device: the agent's
//!   reconcile vs. `wg syncconf` (which also reads the device first); and the same 30 changes
//!   the way they reach a running agent, as stream entries applied in one batched device update
//!   with no read (`apply_in_chunks` of the changes, what `agent::batch` sends);
//! - reading the whole device back: the agent's `read_peers` vs. `wg show dump`.
//!
//! Each cell is the median of the runs. Targets (issue #13): full sync ≤ 1.0× `wg setconf`,
//! small diff ≤ 0.5× `wg syncconf`.

// The peers and the timed reconcile are the ones `apply_kernel` (which stays in the agent's
// benches, it needs a guest) uses: one definition for both.
#[path = "../../../agent/benches/shared/mod.rs"]
mod shared;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use pvpn_agent::WgBackend;
use pvpn_agent::reconcile::plan;
use pvpn_agent::wireguard::WireGuard;
use pvpn_agent::wireguard::apply_in_chunks;
use pvpn_agent::wireguard::control::ControlWireGuard;
use pvpn_common::keys::KeyPair;
use pvpn_common::{PeerSpec, PresharedKey, PrivateKey};
use pvpn_testkit::netns::{Netns, WgInterface};
pub use shared::conf;
use shared::{snapshot, timed_reconcile};

use crate::report::{Figure, ms};

fn spec(n: u32) -> PeerSpec {
    PeerSpec {
        public_key: KeyPair::generate().public,
        allowed_ips: vec![
            format!("198.18.{}.{}/32", n / 250, 1 + n % 250)
                .parse()
                .expect("valid"),
        ],
        preshared_key: Some(PresharedKey::generate()),
        persistent_keepalive: None,
    }
}

fn wg(args: &[&str]) -> Result<()> {
    let status = Command::new("wg").args(args).status()?;
    ensure!(status.success(), "wg {args:?} failed");
    Ok(())
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Medians of one size.
struct Row {
    agent_empty: Duration,
    setconf_empty: Duration,
    agent_diff: Duration,
    agent_events: Duration,
    syncconf_diff: Duration,
    agent_read: Duration,
    wg_dump: Duration,
}

/// What one size is measured with.
struct Files<'a> {
    peers: &'a [PeerSpec],
    changed: &'a [PeerSpec],
    full: String,
    diff: String,
    empty: String,
}

#[derive(Default)]
struct Samples {
    agent_empty: Vec<Duration>,
    setconf_empty: Vec<Duration>,
    agent_diff: Vec<Duration>,
    agent_events: Vec<Duration>,
    syncconf_diff: Vec<Duration>,
    agent_read: Vec<Duration>,
    wg_dump: Vec<Duration>,
}

fn agent_side(name: &str, files: &Files<'_>, s: &mut Samples) -> Result<()> {
    let control = ControlWireGuard::new(name, WgBackend::Userspace)?;
    let (d, p) = timed_reconcile(&control, &snapshot(files.peers));
    ensure!(
        p.added as usize == files.peers.len(),
        "agent added {}",
        p.added
    );
    s.agent_empty.push(d);
    let t = Instant::now();
    let read = control.read_peers()?;
    s.agent_read.push(t.elapsed());
    ensure!(read.len() == files.peers.len(), "read {} peers", read.len());
    let (d, p) = timed_reconcile(&control, &snapshot(files.changed));
    ensure!(
        (p.added, p.removed, p.updated) == (10, 10, 10),
        "diff {p:?}"
    );
    s.agent_diff.push(d);
    // Back to the full set as 30 events would bring it: the changes are worked out untimed
    // (the backend sent them), the batched update is timed.
    let back = plan(&snapshot(files.peers), &control.read_peers()?);
    ensure!(
        back.changes.len() == 30,
        "{} changes back",
        back.changes.len()
    );
    let t = Instant::now();
    apply_in_chunks(&control, &back.changes)?;
    s.agent_events.push(t.elapsed());
    wg(&["setconf", name, &files.empty])
}

fn wg_side(name: &str, files: &Files<'_>, s: &mut Samples) -> Result<()> {
    let t = Instant::now();
    wg(&["setconf", name, &files.full])?;
    s.setconf_empty.push(t.elapsed());
    let t = Instant::now();
    let out = Command::new("wg").args(["show", name, "dump"]).output()?;
    s.wg_dump.push(t.elapsed());
    let lines = String::from_utf8_lossy(&out.stdout).lines().count();
    ensure!(
        lines == files.peers.len() + 1,
        "wg show dump: {lines} lines"
    );
    let t = Instant::now();
    wg(&["syncconf", name, &files.diff])?;
    s.syncconf_diff.push(t.elapsed());
    wg(&["setconf", name, &files.empty])
}

fn measure(ns: &Netns, size: usize, runs: usize, dir: &Path) -> Result<Row> {
    let peers: Vec<PeerSpec> = (0..size as u32).map(spec).collect();
    // The small diff: 10 removed, 10 with other allowed IPs, 10 new.
    let mut changed = peers[10..].to_vec();
    for (i, p) in changed.iter_mut().take(10).enumerate() {
        p.allowed_ips = vec![format!("198.19.200.{}/32", i + 1).parse()?];
    }
    changed.extend((0..10).map(|i| spec(60_000 + i)));
    let key = PrivateKey::generate();
    let path = |what: &str| dir.join(format!("{what}-{size}.conf"));
    std::fs::write(path("full"), conf(&key, &peers))?;
    std::fs::write(path("diff"), conf(&key, &changed))?;
    std::fs::write(path("empty"), conf(&key, &[]))?;
    let files = Files {
        peers: &peers,
        changed: &changed,
        full: path("full").display().to_string(),
        diff: path("diff").display().to_string(),
        empty: path("empty").display().to_string(),
    };
    let name = WgInterface::unique_name("ap")?;
    let iface = WgInterface::start(ns, &name, &key, 51900, "198.19.255.254/16")?;
    let mut s = Samples::default();
    for run in 0..runs {
        if run % 2 == 0 {
            agent_side(&name, &files, &mut s)?;
            wg_side(&name, &files, &mut s)?;
        } else {
            wg_side(&name, &files, &mut s)?;
            agent_side(&name, &files, &mut s)?;
        }
    }
    drop(iface);
    Ok(Row {
        agent_empty: median(s.agent_empty),
        setconf_empty: median(s.setconf_empty),
        agent_diff: median(s.agent_diff),
        agent_events: median(s.agent_events),
        syncconf_diff: median(s.syncconf_diff),
        agent_read: median(s.agent_read),
        wg_dump: median(s.wg_dump),
    })
}

/// Measures `sizes`, `runs` times each (blocking: run it off the async workers).
pub fn run(sizes: &[usize], runs: usize) -> Result<Vec<Figure>> {
    let ns = Netns::create("apply")?;
    let dir = std::env::temp_dir().join(format!("pvpn-apply-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let mut figures = Vec::new();
    println!(
        "| peers | agent from empty | `wg setconf` from empty | agent small diff | `wg syncconf` small diff | agent read all | `wg show dump` |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    for &size in sizes {
        let r = measure(&ns, size, runs, &dir);
        let r = match r {
            Ok(r) => r,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(e);
            }
        };
        println!(
            "| {size} | {} | {} | {} | {} | {} | {} |",
            ms(r.agent_empty),
            ms(r.setconf_empty),
            ms(r.agent_diff),
            ms(r.syncconf_diff),
            ms(r.agent_read),
            ms(r.wg_dump)
        );
        let full = r.agent_empty.as_secs_f64() / r.setconf_empty.as_secs_f64();
        let diff = r.agent_diff.as_secs_f64() / r.syncconf_diff.as_secs_f64();
        figures.push(Figure::new(
            "apply",
            format!("full sync into an empty device, {size} peers, vs `wg setconf`"),
            format!(
                "{full:.2}× ({} vs {})",
                ms(r.agent_empty),
                ms(r.setconf_empty)
            ),
            "≤ 1.0×",
            Some(full <= 1.0),
        ));
        figures.push(Figure::new(
            "apply",
            format!("small diff (30 changes), {size} peers, vs `wg syncconf`"),
            format!(
                "{diff:.2}× ({} vs {})",
                ms(r.agent_diff),
                ms(r.syncconf_diff)
            ),
            "≤ 0.5×",
            Some(diff <= 0.5),
        ));
        let events = r.agent_events.as_secs_f64() / r.syncconf_diff.as_secs_f64();
        figures.push(Figure::new(
            "apply",
            format!(
                "the same 30 changes as stream entries (one batched update, no read), {size} \
                 peers, vs `wg syncconf`"
            ),
            format!(
                "{events:.3}× ({} vs {})",
                ms(r.agent_events),
                ms(r.syncconf_diff)
            ),
            "≤ 0.5×",
            Some(events <= 0.5),
        ));
        figures.push(Figure::info(
            "apply",
            format!("read all, {size} peers, vs `wg show dump`"),
            format!("{} vs {}", ms(r.agent_read), ms(r.wg_dump)),
        ));
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(figures)
}
