//! One benchmark of PVPN's whole path (issue #13 item 4): every figure of the issue's table from
//! one command, with real PostgreSQL, Redis, the `pvpn-backend` relay and `pvpn-agent` binaries
//! on `wireguard-go` in network namespaces, each printed next to its target; the last line says
//! which targets are met. No figure is asserted: a missed target is a line, not a failure.
//!
//! ```sh
//! cargo build --release --bins -p pvpn-backend -p pvpn-agent
//! cargo bench -p pvpn-tests --bench whole_path                     # everything (~30 min)
//! cargo bench -p pvpn-tests --bench whole_path -- --small          # quick, smaller sizes
//! cargo bench -p pvpn-tests --bench whole_path -- --only apply,rss # some sections
//! cargo bench -p pvpn-tests --bench whole_path -- --only rss --rss-seconds 120 # shorter watch
//! cargo bench -p pvpn-tests --bench whole_path -- --write          # and rewrite BENCHMARKS.md
//! ```
//!
//! As root, with `wireguard-go`, `wg`, `ip`, PostgreSQL, `redis-server` and `redis-cli`
//! (`scripts/setup.sh`). Sections, in the order they run:
//!
//! - [`apply`]: the agent's full sync and small diff vs. `wg setconf` / `wg syncconf`, 10k and
//!   60k peers, same device, same run.
//! - [`grants`]: grant latency at 1k, 10k, 60k devices on a node; grants/s into a 4-node region
//!   with PostgreSQL alone.
//! - [`latency`]: grant → peer p50/p95/p99 idle and open-loop at 100/s with 10k peers present;
//!   sustained grants/s through to peers until the lag grows ([`track`] says when a peer landed).
//! - [`fleet`]: 100 nodes × 10k peers recovering from Redis `FLUSHALL` and a backend restart.
//! - [`rss`]: the agent binary's memory holding 60k peers for 10 minutes.
//! - [`report`]: the table, the verdict line, BENCHMARKS.md.
//! - [`cpu`]: where the machine's CPU went while the rates were measured.
//!
//! The kernel-WireGuard apply bench needs a QEMU guest and stays in the agent
//! (`cargo bench -p pvpn-agent --bench apply_kernel`).

#[path = "whole_path/apply.rs"]
mod apply;
#[path = "whole_path/cpu.rs"]
mod cpu;
#[path = "whole_path/fleet.rs"]
mod fleet;
#[path = "whole_path/grants.rs"]
mod grants;
#[path = "whole_path/latency.rs"]
mod latency;
#[path = "whole_path/report.rs"]
mod report;
#[path = "whole_path/rss.rs"]
mod rss;
#[path = "whole_path/track.rs"]
mod track;

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result, bail};

use report::Figure;

const SECTIONS: [&str; 5] = ["apply", "grants", "latency", "fleet", "rss"];

struct Options {
    small: bool,
    write: bool,
    only: Option<Vec<String>>,
    /// How long the `rss` section watches the agent (default 600 s, 60 s with `--small`).
    rss_seconds: Option<u64>,
}

impl Options {
    fn parse() -> Result<Self> {
        let mut options = Self {
            small: false,
            write: false,
            only: None,
            rss_seconds: None,
        };
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--small" => options.small = true,
                "--write" => options.write = true,
                "--only" => {
                    let list = args.next().context("--only needs a list: apply,grants,…")?;
                    let list: Vec<String> = list.split(',').map(str::to_string).collect();
                    if let Some(bad) = list.iter().find(|s| !SECTIONS.contains(&s.as_str())) {
                        bail!("unknown section {bad}; sections: {}", SECTIONS.join(","));
                    }
                    options.only = Some(list);
                }
                "--rss-seconds" => {
                    let value = args.next().context("--rss-seconds needs a number")?;
                    options.rss_seconds =
                        Some(value.parse().context("--rss-seconds needs a number")?);
                }
                // What `cargo bench` adds.
                "--bench" => {}
                other => bail!(
                    "unknown argument {other}; use --small, --write, --rss-seconds N, --only {}",
                    SECTIONS.join(",")
                ),
            }
        }
        Ok(options)
    }

    fn runs(&self, section: &str) -> bool {
        self.only
            .as_ref()
            .is_none_or(|only| only.iter().any(|s| s == section))
    }
}

async fn section(
    name: &str,
    figures: &mut Vec<Figure>,
    failures: &mut Vec<String>,
    run: impl std::future::Future<Output = Result<Vec<Figure>>>,
) {
    println!("\n## {name}\n");
    let started = Instant::now();
    match run.await {
        Ok(f) => figures.extend(f),
        Err(e) => {
            eprintln!("section {name} failed: {e:#}");
            failures.push(format!("{name}: {e:#}"));
        }
    }
    println!("({name}: {:.0} s)", started.elapsed().as_secs_f64());
}

/// Runs a blocking section on the blocking pool.
async fn blocking(f: impl FnOnce() -> Result<Vec<Figure>> + Send + 'static) -> Result<Vec<Figure>> {
    tokio::task::spawn_blocking(f).await?
}

fn uptime() -> String {
    std::process::Command::new("uptime")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 4)]
async fn main() -> Result<()> {
    let options = Options::parse()?;
    let small = options.small;
    let load_before = uptime();
    let started = Instant::now();
    let mut figures = Vec::new();
    let mut failures = Vec::new();
    if options.runs("apply") {
        let (sizes, runs) = if small {
            (vec![1_000, 2_000], 1)
        } else {
            (vec![10_000, 60_000], 3)
        };
        section(
            "apply",
            &mut figures,
            &mut failures,
            blocking(move || apply::run(&sizes, runs)),
        )
        .await;
    }
    if options.runs("grants") {
        let run = if small {
            grants::run(&[1_000, 2_000, 5_000], 100, 1_000, 500)
        } else {
            grants::run(&[1_000, 10_000, 60_000], 500, 10_000, 4_000)
        };
        section("grants", &mut figures, &mut failures, run).await;
    }
    if options.runs("latency") {
        let sizes = if small {
            latency::Sizes {
                prefill: 1_000,
                idle: 30,
                open_rate: 100.0,
                open_secs: 3.0,
                steps: vec![50.0, 100.0, 200.0],
                step_secs: 2.0,
            }
        } else {
            latency::Sizes {
                prefill: 10_000,
                idle: 200,
                open_rate: 100.0,
                open_secs: 20.0,
                steps: vec![100.0, 200.0, 400.0, 800.0, 1_200.0, 1_600.0],
                step_secs: 8.0,
            }
        };
        section("latency", &mut figures, &mut failures, latency::run(&sizes)).await;
    }
    if options.runs("fleet") {
        let run = if small {
            fleet::run(2, 5, 1_000)
        } else {
            fleet::run(10, 10, 10_000)
        };
        section("fleet", &mut figures, &mut failures, run).await;
    }
    if options.runs("rss") {
        let (peers, seconds) = if small { (5_000, 60) } else { (60_000, 600) };
        let seconds = options.rss_seconds.unwrap_or(seconds);
        section(
            "rss",
            &mut figures,
            &mut failures,
            blocking(move || rss::run(peers, seconds)),
        )
        .await;
    }

    let load_after = uptime();
    println!("\n## figures\n\n{}", report::table(&figures));
    for f in &failures {
        println!("section failed (no figures): {f}");
    }
    if options.write {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../BENCHMARKS.md");
        let header = format!(
            "Run: `cargo bench -p pvpn-tests --bench whole_path{}{}` on {}, {:.0} min, release \
             build. Load before: `{load_before}`; after: `{load_after}`.{}",
            if small { " -- --small" } else { "" },
            options
                .only
                .as_ref()
                .map_or(String::new(), |o| format!(" --only {}", o.join(","))),
            chrono_free_date(),
            started.elapsed().as_secs_f64() / 60.0,
            if failures.is_empty() {
                String::new()
            } else {
                format!(" Sections that failed: {}.", failures.join("; "))
            }
        );
        report::write(&path, &header, &figures)?;
        println!("wrote {}", path.display());
    }
    println!("{}", report::verdict(&figures));
    Ok(())
}

/// Today's date and time from `date -u` (no date crate for one line).
fn chrono_free_date() -> String {
    std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}
