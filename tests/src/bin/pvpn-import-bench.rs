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
//! "Taken over" is when the agent's log shows its start-up reconcile at the import's last
//! revision (polled every 200 ms), not the heartbeat in PostgreSQL: with 50,000 peers the
//! stack's 2-second stats reports keep the backend's feedback consumer busy for longer than
//! that. Ctrl-C stops the run and removes everything it made. Results go to BENCHMARKS.md.
//!
//! `cargo build --release --bins -p pvpn-backend -p pvpn-agent -p pvpn-tests &&
//!  target/release/pvpn-import-bench 50000`

use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use ipnet::Ipv4Net;
use pvpn_tests::old_server::{OldServer, Shape};
use pvpn_tests::site::VpnSite;
use pvpn_tests::stack::{Stack, wait_until};

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
    let log = stack.log_dir.join(format!("agent-{}.log", site.node));
    let startup_line = || -> Option<String> {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let revision = format!("{peers}");
        text.lines()
            .map(strip_ansi)
            .find(|l| l.contains("reconciled") && l.contains("Startup") && l.contains(&revision))
    };
    wait_until(
        "the agent's start-up reconcile",
        Duration::from_secs(600),
        || Ok(startup_line().is_some()),
    )
    .await?;
    let total = started.elapsed();
    let on_interface = site.wg.peers()?.len();
    ensure!(
        on_interface == peers,
        "{on_interface} peers on the interface"
    );
    println!(
        "[{label}] agent took over: {} after the import, {} in all; {on_interface} peers on the interface; {}",
        secs(total - imported),
        secs(total),
        startup_line().unwrap_or_default()
    );
    Ok(())
}

/// A log line without its colour codes.
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
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
    let runs = async {
        run(&stack, &a, peers, true).await?;
        run(&stack, &b, peers, false).await
    };
    let outcome = tokio::select! {
        outcome = runs => outcome,
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
    };
    if let Err(e) = &outcome {
        eprintln!("bench failed: {e:#}\n{}", stack.logs());
    }
    outcome
}
