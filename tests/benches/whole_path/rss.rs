//! The `pvpn-agent` binary's resident memory while it holds a full wireguard-go interface and
//! does its routine work (moved here from `agent/benches/rss.rs`).
//!
//! The interface is filled with `wg setconf` (as a running node's would be) and its snapshot in
//! a private Redis holds the same peers, so the agent's start-up reconcile changes nothing and
//! what remains is the routine. Intervals are shortened (heartbeat 5 s, stats 5 s, reconcile
//! 30 s) so the run holds far more of each than a node with the defaults (10 s, 30 s, 60 s).
//! RSS is sampled every 5 s from `/proc/<pid>/status`, and the peak is the kernel's high-water
//! mark (`VmHWM`), which a burst between samples cannot escape. Target (issue #13): ≤ 50 MB,
//! flat; "flat" is read as the lowest sample of the last third of the run within 5 MB of the
//! lowest of the first third (the bursts of a stats report or a reconcile come and go; a leak
//! raises the floor).

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use pvpn_common::keys::KeyPair;
use pvpn_common::redis_keys::RegionKeys;
use pvpn_common::{NodeName, PeerSpec, PrivateKey, RegionCode};
use pvpn_testkit::netns::{Netns, WgInterface};
use pvpn_testkit::redis_server::RedisServer;
use pvpn_tests::binaries::Binaries;
use pvpn_tests::process::ChildProcess;

use crate::report::Figure;

const SAMPLE_EVERY: Duration = Duration::from_secs(5);
const TARGET_MB: f64 = 50.0;
const FLAT_MB: f64 = 5.0;

fn spec(n: u32) -> PeerSpec {
    // Client addresses of 198.18.0.0/16 from .0.2 on (the node holds .0.1).
    let a = n + 2;
    PeerSpec {
        public_key: KeyPair::generate().public,
        allowed_ips: vec![
            format!("198.18.{}.{}/32", a >> 8, a & 255)
                .parse()
                .expect("valid"),
        ],
        preshared_key: None,
        persistent_keepalive: None,
    }
}

/// `VmRSS` of `pid` in kB.
pub fn rss_kb(pid: u32) -> Option<u64> {
    status_kb(pid, "VmRSS:")
}

/// A `kB` field of `/proc/<pid>/status` (`VmRSS:`, `VmHWM:`).
pub fn status_kb(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// Runs the agent for `seconds` against an interface of `peers_n` peers (blocking).
pub fn run(peers_n: u32, seconds: u64) -> Result<Vec<Figure>> {
    let bins = Binaries::locate()?;
    let ns = Netns::create("rss")?;
    let key = PrivateKey::generate();
    let name = WgInterface::unique_name("rs")?;
    let iface = WgInterface::start(&ns, &name, &key, 51950, "198.18.0.1/16")?;
    let peers: Vec<PeerSpec> = (0..peers_n).map(spec).collect();
    let dir = std::env::temp_dir().join(format!("pvpn-rss-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let conf = dir.join("peers.conf");
    std::fs::write(&conf, crate::apply::conf(&key, &peers))?;
    iface.wg(&["setconf", &name, &conf.display().to_string()])?;

    let redis = RedisServer::start()?;
    let mut conn = redis.connection()?;
    let region = RegionCode::new("rs")?;
    let node = NodeName::new("rs-1")?;
    let keys = RegionKeys::new(&region);
    for chunk in peers.chunks(5_000) {
        let items: Vec<(String, String)> = chunk
            .iter()
            .map(|p| (p.public_key.to_base64(), pvpn_common::wire::encode(p)))
            .collect();
        let _: () = redis::cmd("HSET")
            .arg(keys.node_peers(&node))
            .arg(items)
            .query(&mut conn)?;
    }
    let _: () = redis::cmd("SET")
        .arg(keys.node_revision(&node))
        .arg(1)
        .query(&mut conn)?;
    drop(peers);

    let env = [
        ("REDIS_URL", redis.url()),
        ("PVPN_REGION", region.to_string()),
        ("PVPN_NODE", node.to_string()),
        ("PVPN_SUBNET", "198.18.0.0/16".to_string()),
        ("PVPN_WG_INTERFACE", name.clone()),
        ("PVPN_WG_BACKEND", "userspace".to_string()),
        ("PVPN_METRICS_ADDR", "127.0.0.1:0".to_string()),
        ("PVPN_HEARTBEAT_INTERVAL_SECS", "5".to_string()),
        ("PVPN_STATS_INTERVAL_SECS", "5".to_string()),
        ("PVPN_RECONCILE_INTERVAL_SECS", "30".to_string()),
    ];
    let mut agent = ChildProcess::spawn("agent-rss", &bins.agent, &[], &env, &dir)?;
    let pid = agent.pid().context("the agent has no pid")?;
    let start = Instant::now();
    let mut samples: Vec<(u64, f64)> = Vec::new();
    while start.elapsed().as_secs() < seconds {
        std::thread::sleep(SAMPLE_EVERY);
        if !agent.is_running() {
            bail!("the agent exited:\n{}", agent.log_tail(20));
        }
        let Some(kb) = rss_kb(pid) else {
            bail!("no RSS for the agent");
        };
        samples.push((start.elapsed().as_secs(), kb as f64 / 1024.0));
    }
    // The 5-s samples can miss a burst between them; the kernel's high-water mark cannot.
    let peak = status_kb(pid, "VmHWM:").context("no VmHWM for the agent")? as f64 / 1024.0;
    drop(agent);
    drop(iface);
    let _ = std::fs::remove_dir_all(&dir);
    ensure!(samples.len() >= 3, "too few samples");

    println!("{peers_n} peers, agent RSS by minute (lowest / highest of the 5-s samples):");
    println!("| minute | lowest | highest |\n|---:|---:|---:|");
    let minutes = samples.last().map_or(0, |(s, _)| s.div_ceil(60));
    for m in 0..minutes {
        let in_minute: Vec<f64> = samples
            .iter()
            .filter(|(s, _)| (s.saturating_sub(1)) / 60 == m)
            .map(|(_, mb)| *mb)
            .collect();
        if in_minute.is_empty() {
            continue;
        }
        let lo = in_minute.iter().copied().fold(f64::MAX, f64::min);
        let hi = in_minute.iter().copied().fold(0.0, f64::max);
        println!("| {} | {lo:.1} MB | {hi:.1} MB |", m + 1);
    }
    let highest = samples.iter().map(|(_, mb)| *mb).fold(0.0, f64::max);
    let third = samples.len() / 3;
    let floor = |part: &[(u64, f64)]| part.iter().map(|(_, mb)| *mb).fold(f64::MAX, f64::min);
    let (first, last) = (
        floor(&samples[..third]),
        floor(&samples[samples.len() - third..]),
    );
    let drift = last - first;
    let minutes = seconds as f64 / 60.0;
    Ok(vec![
        Figure::new(
            "rss",
            format!(
                "agent peak RSS (VmHWM) holding {peers_n} peers, over {minutes:.0} min of \
                 heartbeats, stats and reconciles (highest 5-s sample {highest:.1} MB)"
            ),
            format!("{peak:.1} MB"),
            format!("≤ {TARGET_MB} MB"),
            Some(peak <= TARGET_MB),
        ),
        Figure::new(
            "rss",
            format!(
                "agent RSS holding {peers_n} peers, floor first → last third of {minutes:.0} min"
            ),
            format!("{first:.1} → {last:.1} MB ({drift:+.1} MB)"),
            format!("flat (within {FLAT_MB} MB)"),
            Some(drift.abs() <= FLAT_MB),
        ),
    ])
}
