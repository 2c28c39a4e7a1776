//! Benchmark: the agent's apply path against `wg setconf` / `wg syncconf`, on the same
//! `wireguard-go` build, in the same run.
//!
//! For each size it measures, on fresh interfaces in a network namespace:
//! - from empty: the agent's reconcile (read peers, plan, chunked apply) vs. `wg setconf`;
//! - a small diff (10 removed, 10 updated, 10 added) against the full interface: the agent's
//!   reconcile vs. `wg syncconf`;
//! - reading the whole interface back: the agent's `read_peers` vs. `wg show dump`.
//!
//! Run: `cargo bench -p pvpn-agent --bench apply` (as root; wireguard-go, wg and ip installed).
//! Optional argument: sizes, e.g. `cargo bench -p pvpn-agent --bench apply -- 1000 5000`.

mod shared;

use std::process::Command;
use std::time::{Duration, Instant};

use pvpn_agent::WgBackend;
use pvpn_agent::snapshot::Snapshot;
use pvpn_agent::wireguard::WireGuard;
use pvpn_agent::wireguard::control::ControlWireGuard;
use pvpn_common::keys::KeyPair;
use pvpn_common::{PeerSpec, PresharedKey, PrivateKey};
use pvpn_testkit::netns::{Netns, WgInterface};
use shared::{conf, snapshot, timed_reconcile};

const RUNS: usize = 3;

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

fn wg(args: &[&str]) {
    let status = Command::new("wg").args(args).status().expect("run wg");
    assert!(status.success(), "wg {args:?} failed");
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

struct Row {
    size: usize,
    agent_empty: Duration,
    setconf_empty: Duration,
    agent_diff: Duration,
    syncconf_diff: Duration,
    agent_read: Duration,
    wg_dump: Duration,
}

fn measure(ns: &Netns, size: usize, dir: &std::path::Path) -> Row {
    let peers: Vec<PeerSpec> = (0..size as u32).map(spec).collect();
    // The small diff: 10 removed, 10 with other allowed IPs, 10 new.
    let mut changed = peers[10..].to_vec();
    for (i, p) in changed.iter_mut().take(10).enumerate() {
        p.allowed_ips = vec![format!("198.19.200.{}/32", i + 1).parse().expect("valid")];
    }
    changed.extend((0..10).map(|i| spec(60_000 + i)));
    let key = PrivateKey::generate();
    let full_conf = dir.join(format!("full-{size}.conf"));
    let diff_conf = dir.join(format!("diff-{size}.conf"));
    std::fs::write(&full_conf, conf(&key, &peers)).expect("write conf");
    std::fs::write(&diff_conf, conf(&key, &changed)).expect("write conf");

    let (mut ae, mut se, mut ad, mut sd, mut ar, mut wd) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    for run in 0..RUNS {
        // The agent's path on a fresh interface.
        let name = WgInterface::unique_name("ba").expect("name");
        let iface =
            WgInterface::start(ns, &name, &key, 51900 + run as u16 * 2, "198.19.255.254/16")
                .expect("wireguard-go");
        let control = ControlWireGuard::new(&name, WgBackend::Userspace).expect("iface");
        let reconcile = |snap: &Snapshot| timed_reconcile(&control, snap);
        let (d, p) = reconcile(&snapshot(&peers));
        assert_eq!(p.added as usize, size);
        ae.push(d);
        let t = Instant::now();
        let read = control.read_peers().expect("read");
        ar.push(t.elapsed());
        assert_eq!(read.len(), size);
        let (d, p) = reconcile(&snapshot(&changed));
        assert_eq!((p.added, p.removed, p.updated), (10, 10, 10));
        ad.push(d);
        drop(iface);

        // The reference on another fresh interface.
        let name = WgInterface::unique_name("bw").expect("name");
        let iface =
            WgInterface::start(ns, &name, &key, 51901 + run as u16 * 2, "198.19.255.254/16")
                .expect("wireguard-go");
        let t = Instant::now();
        wg(&["setconf", &name, &full_conf.display().to_string()]);
        se.push(t.elapsed());
        let t = Instant::now();
        let out = Command::new("wg")
            .args(["show", &name, "dump"])
            .output()
            .expect("wg show");
        wd.push(t.elapsed());
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).lines().count(),
            size + 1
        );
        let t = Instant::now();
        wg(&["syncconf", &name, &diff_conf.display().to_string()]);
        sd.push(t.elapsed());
        drop(iface);
    }
    Row {
        size,
        agent_empty: median(ae),
        setconf_empty: median(se),
        agent_diff: median(ad),
        syncconf_diff: median(sd),
        agent_read: median(ar),
        wg_dump: median(wd),
    }
}

fn main() {
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let sizes = if sizes.is_empty() {
        vec![1000, 5000, 10_000]
    } else {
        sizes
    };
    let ns = Netns::create("bench").expect("namespace (run as root)");
    let dir = std::env::temp_dir().join(format!("pvpn-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    println!(
        "| peers | agent from empty | `wg setconf` from empty | agent small diff | `wg syncconf` small diff | agent read all | `wg show dump` |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    for size in sizes {
        let r = measure(&ns, size, &dir);
        println!(
            "| {} | {} ms | {} ms | {} ms | {} ms | {} ms | {} ms |",
            r.size,
            ms(r.agent_empty),
            ms(r.setconf_empty),
            ms(r.agent_diff),
            ms(r.syncconf_diff),
            ms(r.agent_read),
            ms(r.wg_dump)
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
