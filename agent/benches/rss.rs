//! Benchmark: the `pvpn-agent` binary's resident memory while it holds a full wireguard-go
//! interface and does its routine work (heartbeats, stats reports, periodic reconciles).
//!
//! A node's interface is filled with `wg setconf` (as a running node's would be) and its snapshot
//! in a private Redis holds the same peers, so the agent's start-up reconcile changes nothing and
//! what remains is the routine. Intervals are shortened (heartbeat 5 s, stats 5 s, reconcile
//! 30 s) so ten minutes hold far more of each than on a node with the defaults (10 s, 30 s,
//! 60 s). RSS is sampled every 5 s from `/proc/<pid>/status`; the bench prints each minute's
//! lowest and highest sample and the target (≤ 50 MB, flat).
//!
//! Run: `cargo bench -p pvpn-agent --bench rss [-- <peers> <seconds>]` (as root; default
//! 60000 peers, 600 s; wireguard-go, wg, ip, redis-server installed).

// Only `conf` of the shared helpers is needed here.
#[allow(dead_code)]
mod shared;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use pvpn_common::keys::KeyPair;
use pvpn_common::redis_keys::RegionKeys;
use pvpn_common::{NodeName, PeerSpec, PrivateKey, RegionCode};
use pvpn_testkit::netns::{Netns, WgInterface};
use pvpn_testkit::redis_server::RedisServer;

const BIN: &str = env!("CARGO_BIN_EXE_pvpn-agent");
const SAMPLE_EVERY: Duration = Duration::from_secs(5);
const TARGET_MB: f64 = 50.0;

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

fn rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let peers_n = args.first().copied().unwrap_or(60_000) as u32;
    let seconds = args.get(1).copied().unwrap_or(600);
    let ns = Netns::create("rss").expect("namespace (run as root)");
    let key = PrivateKey::generate();
    let name = WgInterface::unique_name("br").expect("name");
    let iface = WgInterface::start(&ns, &name, &key, 51950, "198.18.0.1/16").expect("wireguard-go");
    let peers: Vec<PeerSpec> = (0..peers_n).map(spec).collect();
    let dir = std::env::temp_dir().join(format!("pvpn-rss-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let conf = dir.join("peers.conf");
    std::fs::write(&conf, shared::conf(&key, &peers)).expect("write conf");
    let status = Command::new("wg")
        .args(["setconf", &name, &conf.display().to_string()])
        .status()
        .expect("wg setconf");
    assert!(status.success(), "wg setconf failed");

    let redis = RedisServer::start().expect("redis-server");
    let mut conn = redis.connection().expect("redis connection");
    let region = RegionCode::new("rs").expect("region");
    let node = NodeName::new("rs-1").expect("node");
    let keys = RegionKeys::new(&region);
    for chunk in peers.chunks(5_000) {
        let items: Vec<(String, String)> = chunk
            .iter()
            .map(|p| (p.public_key.to_base64(), pvpn_common::wire::encode(p)))
            .collect();
        let _: () = redis::cmd("HSET")
            .arg(keys.node_peers(&node))
            .arg(items)
            .query(&mut conn)
            .expect("HSET");
    }
    let _: () = redis::cmd("SET")
        .arg(keys.node_revision(&node))
        .arg(1)
        .query(&mut conn)
        .expect("SET");

    let mut agent = Command::new(BIN)
        .env_clear()
        .env("REDIS_URL", redis.url())
        .env("PVPN_REGION", region.as_str())
        .env("PVPN_NODE", node.as_str())
        .env("PVPN_SUBNET", "198.18.0.0/16")
        .env("PVPN_WG_INTERFACE", &name)
        .env("PVPN_WG_BACKEND", "userspace")
        .env("PVPN_METRICS_ADDR", "127.0.0.1:0")
        .env("PVPN_HEARTBEAT_INTERVAL_SECS", "5")
        .env("PVPN_STATS_INTERVAL_SECS", "5")
        .env("PVPN_RECONCILE_INTERVAL_SECS", "30")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("pvpn-agent");
    let pid = agent.id();
    let start = Instant::now();
    let mut samples: Vec<(u64, u64)> = Vec::new();
    while start.elapsed().as_secs() < seconds {
        std::thread::sleep(SAMPLE_EVERY);
        let Some(kb) = rss_kb(pid) else {
            panic!("the agent exited");
        };
        samples.push((start.elapsed().as_secs(), kb));
    }
    let _ = agent.kill();
    let _ = agent.wait();
    drop(iface);
    let _ = std::fs::remove_dir_all(&dir);

    let mb = |kb: u64| kb as f64 / 1024.0;
    println!("{peers_n} peers, RSS by minute (lowest / highest of the 5-s samples):");
    println!("| minute | lowest | highest |");
    println!("|---:|---:|---:|");
    let minutes = samples.last().map_or(0, |(s, _)| s / 60 + 1);
    let mut per_minute = Vec::new();
    for m in 0..minutes {
        let in_minute: Vec<u64> = samples
            .iter()
            .filter(|(s, _)| s / 60 == m)
            .map(|(_, kb)| *kb)
            .collect();
        let (Some(lo), Some(hi)) = (in_minute.iter().min(), in_minute.iter().max()) else {
            continue;
        };
        println!("| {} | {:.1} MB | {:.1} MB |", m + 1, mb(*lo), mb(*hi));
        per_minute.push((mb(*lo), mb(*hi)));
    }
    let highest = per_minute.iter().map(|(_, h)| *h).fold(0.0, f64::max);
    let (first, last) = (per_minute.first(), per_minute.last());
    let growth = match (first, last) {
        (Some((f, _)), Some((l, _))) => l - f,
        _ => 0.0,
    };
    println!(
        "target agent RSS <= {TARGET_MB} MB over {seconds} s at {peers_n} peers: highest {highest:.1} MB, \
         lowest sample moved {growth:+.1} MB from the first minute to the last ({})",
        if highest <= TARGET_MB && growth.abs() <= 5.0 {
            "met"
        } else {
            "NOT met"
        }
    );
}
