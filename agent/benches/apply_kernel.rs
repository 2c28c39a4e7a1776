//! Benchmark: the agent's apply path on kernel WireGuard (netlink) against `wg setconf`,
//! `wg syncconf` and `wg show dump` on the same kernel, in the same run, inside a Debian guest
//! under QEMU (this machine's kernel has no WireGuard).
//!
//! On the host this binary boots a guest (`pvpn_testkit::vm`), copies itself in and runs itself
//! there with `--in-guest`; in the guest it measures, per size, on fresh interfaces:
//! - from empty: the agent's reconcile (read peers, plan, chunked apply) vs. `wg setconf`;
//! - a small diff (10 removed, 10 updated, 10 added): the agent's reconcile vs. `wg syncconf`;
//! - reading everything back: the agent's `read_peers` vs. `wg show dump`;
//! - the process's resident memory after the agent's path (its peer lists included).
//!
//! Run: `cargo bench -p pvpn-agent --bench apply_kernel` (as root; QEMU from scripts/setup.sh).
//! Optional arguments: sizes, e.g. `cargo bench -p pvpn-agent --bench apply_kernel -- 10000`.

mod shared;

use std::process::Command;
use std::time::{Duration, Instant};

use pvpn_agent::WgBackend;
use pvpn_agent::snapshot::Snapshot;
use pvpn_agent::wireguard::WireGuard;
use pvpn_agent::wireguard::control::ControlWireGuard;
use pvpn_common::keys::KeyPair;
use pvpn_common::{PeerSpec, PresharedKey, PrivateKey};
use shared::{conf, snapshot, timed_reconcile};

const GUEST_BIN: &str = "/usr/local/bin/pvpn-bench-kernel";

/// Peer `n`: a fresh key, one IPv6 /128 (200,000 do not fit in 198.18.0.0/15), a preshared key.
fn spec(n: u32) -> PeerSpec {
    PeerSpec {
        public_key: KeyPair::generate().public,
        allowed_ips: vec![
            format!("fd00:18::{:x}:{:x}/128", n >> 16, n & 0xffff)
                .parse()
                .expect("valid"),
        ],
        preshared_key: Some(PresharedKey::generate()),
        persistent_keepalive: None,
    }
}

fn sh(script: &str) -> String {
    let out = Command::new("sh")
        .args(["-c", script])
        .output()
        .expect("sh");
    assert!(
        out.status.success(),
        "`{script}`: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn timed(f: impl FnOnce()) -> Duration {
    let t = Instant::now();
    f();
    t.elapsed()
}

fn ms(d: Duration) -> String {
    format!("{:.0}", d.as_secs_f64() * 1000.0)
}

/// Resident and peak memory of this process, in MiB.
fn rss_mib() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches(" kB").parse::<u64>().ok())
            .unwrap_or(0)
            / 1024
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// One row: every measurement at `size` peers, on fresh kernel interfaces.
fn measure(size: usize) -> String {
    let peers: Vec<PeerSpec> = (0..size as u32).map(spec).collect();
    let mut changed = peers[10..].to_vec();
    for (i, p) in changed.iter_mut().take(10).enumerate() {
        p.allowed_ips = vec![format!("fd00:19::{:x}/128", i + 1).parse().expect("valid")];
    }
    changed.extend((0..10).map(|i| spec(1_000_000 + i)));
    let key = PrivateKey::generate();
    std::fs::write("/run/full.conf", conf(&key, &peers)).expect("write conf");
    std::fs::write("/run/diff.conf", conf(&key, &changed)).expect("write conf");

    // Interfaces per size, left in place: deleting one with many peers takes minutes of TCG.
    let (agent_if, wg_if) = (format!("bka{size}"), format!("bkw{size}"));
    sh(&format!(
        "ip link add {agent_if} type wireguard && ip link add {wg_if} type wireguard"
    ));
    let control = ControlWireGuard::new(&agent_if, WgBackend::Kernel).expect("iface");
    let reconcile = |snap: &Snapshot| timed_reconcile(&control, snap);
    let (agent_empty, p) = reconcile(&snapshot(&peers));
    assert_eq!(p.added as usize, size);
    let t = Instant::now();
    let read = control.read_peers().expect("read");
    let agent_read = t.elapsed();
    assert_eq!(read.len(), size);
    drop(read);
    let (agent_diff, p) = reconcile(&snapshot(&changed));
    assert_eq!((p.added, p.removed, p.updated), (10, 10, 10));
    let (rss, peak) = rss_mib();

    let setconf = timed(|| {
        sh(&format!("wg setconf {wg_if} /run/full.conf"));
    });
    let mut lines = 0;
    let dump = timed(|| lines = sh(&format!("wg show {wg_if} dump")).lines().count());
    assert_eq!(lines, size + 1);
    let syncconf = timed(|| {
        sh(&format!("wg syncconf {wg_if} /run/diff.conf"));
    });
    sh("rm /run/full.conf /run/diff.conf");
    format!(
        "| {size} | {} ms | {} ms | {} ms | {} ms | {} ms | {} ms | {rss} / {peak} MiB |",
        ms(agent_empty),
        ms(setconf),
        ms(agent_diff),
        ms(syncconf),
        ms(agent_read),
        ms(dump)
    )
}

const HEADER: &str = "| peers | agent from empty | `wg setconf` from empty | agent small diff | \
    `wg syncconf` small diff | agent read all | `wg show dump` | RSS / peak after the agent's path |\n\
    |---:|---:|---:|---:|---:|---:|---:|---:|";

fn in_guest(sizes: &[usize]) {
    for &size in sizes {
        println!("{}", measure(size));
    }
}

fn on_host(sizes: &[usize]) -> anyhow::Result<()> {
    use pvpn_testkit::vm::{DebianGuest, GuestNetwork, GuestOptions};
    let net = GuestNetwork::create()?;
    let options = GuestOptions {
        memory_mib: 3072,
        ..GuestOptions::default()
    };
    let guest = DebianGuest::boot_with(&net, &options)?;
    guest.copy_in(&std::env::current_exe()?, GUEST_BIN, 0o755)?;
    let kernel = guest.run_ok("uname -r; wg --version", Duration::from_secs(60))?;
    eprintln!("guest: {}", kernel.replace('\n', "; "));
    println!("{HEADER}");
    // One process per size: each row's memory is that size's alone.
    for size in sizes {
        let row = guest.run_ok(
            &format!("{GUEST_BIN} --in-guest {size}"),
            Duration::from_secs(3 * 3600),
        )?;
        print!("{row}");
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let sizes: Vec<usize> = args.iter().filter_map(|a| a.parse().ok()).collect();
    let sizes = if sizes.is_empty() {
        vec![10_000, 60_000, 200_000]
    } else {
        sizes
    };
    if args.iter().any(|a| a == "--in-guest") {
        in_guest(&sizes);
        Ok(())
    } else {
        on_host(&sizes)
    }
}
