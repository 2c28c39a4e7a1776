//! `pvpn-import-bench [peers]` (default 50,000): how long moving a big WireGuard server into
//! PVPN takes, with the real binaries, PostgreSQL, Redis and `wireguard-go`. Needs root.
//!
//! Two runs, each on its own node:
//! - **cut-over**: the interface already holds every peer (`wg setconf`, the old server);
//!   `pvpnctl import` (parse, check, write, and wait for the relay to publish every row), then
//!   the agent starts and takes over. Done when the agent reports the last revision applied;
//!   its start-up reconcile must remove and add nothing.
//! - **empty interface**: the same import onto a node whose interface has no peers yet; the
//!   agent's start-up reconcile adds every peer. Done when it reports the last revision.
//!
//! "Applied" is read from the agent's heartbeat (every 2 s in the stack), so each end time is
//! late by up to one heartbeat. Results go to BENCHMARKS.md.
//!
//! `cargo build --release --bins -p pvpn-backend -p pvpn-agent -p pvpn-tests &&
//!  target/release/pvpn-import-bench 50000`

use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use ipnet::Ipv4Net;
use pvpn_tests::old_server::{OldServer, Shape};
use pvpn_tests::site::VpnSite;
use pvpn_tests::stack::{Stack, wait_until};
use serde_json::Value;

fn node_json(stack: &Stack, node: &str) -> Result<Value> {
    let nodes: Value = serde_json::from_str(&stack.ctl(&["--json", "node", "list"])?)?;
    nodes
        .as_array()
        .and_then(|a| a.iter().find(|n| n["name"] == node))
        .cloned()
        .context("pvpnctl node list does not show the node")
}

fn secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

async fn run(stack: &Stack, site: &VpnSite, peers: usize, preloaded: bool) -> Result<()> {
    let label = if preloaded {
        "cut-over"
    } else {
        "empty interface"
    };
    let shape = Shape {
        peers,
        client: None,
        client_telegram_id: 0,
        with_keepalive: 0,
        unmapped_every: 100,
    };
    let old = OldServer::generate(site, shape);
    let dir = stack.log_dir.join(format!("bench-{}", site.node));
    std::fs::create_dir_all(&dir)?;
    let setconf = dir.join("wg0.conf");
    std::fs::write(&setconf, &old.setconf)?;
    let dump = dir.join("dump.txt");
    if preloaded {
        let started = Instant::now();
        site.wg
            .wg(&["setconf", site.wg.name(), &setconf.display().to_string()])?;
        println!(
            "[{label}] wg setconf of {peers} peers: {}",
            secs(started.elapsed())
        );
        std::fs::write(&dump, site.wg.wg(&["show", site.wg.name(), "dump"])?)?;
    } else {
        // The same peers, as the old server's config file; the interface stays empty.
        std::fs::write(&dump, &old.setconf)?;
    }
    let mapping = dir.join("mapping.csv");
    std::fs::write(&mapping, &old.mapping)?;

    let started = Instant::now();
    let (dump_arg, mapping_arg) = (dump.display().to_string(), mapping.display().to_string());
    let out = stack.ctl(&[
        "import",
        site.node.as_str(),
        "--peers",
        &dump_arg,
        "--mapping",
        &mapping_arg,
    ])?;
    let imported = started.elapsed();
    ensure!(out.contains(&format!("new devices: {peers}")), "{out}");
    println!(
        "[{label}] pvpnctl import (committed and published): {}",
        secs(imported)
    );

    stack.start_agent(site)?;
    let revision = u64::try_from(peers)?;
    wait_until(
        "the agent applied the import",
        Duration::from_secs(600),
        || Ok(node_json(stack, site.node.as_str())?["applied_revision"] == revision),
    )
    .await?;
    let total = started.elapsed();
    let node = node_json(stack, site.node.as_str())?;
    let on_interface = site.wg.peers()?.len();
    ensure!(
        on_interface == peers,
        "{on_interface} peers on the interface"
    );
    println!(
        "[{label}] agent took over: {} after the import, {} in all; {on_interface} peers on the interface; start-up reconcile: {}",
        secs(total - imported),
        secs(total),
        node["last_reconcile"]
    );
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 4)]
async fn main() -> Result<()> {
    let peers: usize = match std::env::args().nth(1) {
        Some(n) => n.parse().context("the argument is a number of peers")?,
        None => 50_000,
    };
    ensure!(peers <= 65_000, "a /16 node holds at most 65,533 clients");
    let stack = Stack::start().await?;
    let subnet: Ipv4Net = "198.19.0.0/16".parse()?;
    let a = VpnSite::create_with_subnet(61, "bench", "Bench A", subnet)?;
    let b = VpnSite::create_with_subnet(62, "benchb", "Bench B", subnet)?;
    // Registered before the backend starts, so its feedback consumer reads both regions at once
    // (it looks for new regions every 30 s).
    let capacity = u32::try_from(peers + 10)?;
    stack.register(&a, capacity)?;
    stack.register(&b, capacity)?;
    stack.start_backend(&[])?;
    let outcome = async {
        run(&stack, &a, peers, true).await?;
        run(&stack, &b, peers, false).await
    }
    .await;
    if let Err(e) = &outcome {
        eprintln!("bench failed: {e:#}\n{}", stack.logs());
    }
    outcome
}
