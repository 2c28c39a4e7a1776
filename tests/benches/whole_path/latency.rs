//! Grant → peer on the interface, through the real pieces: grants through the service (in this
//! process, on the stack's PostgreSQL, waking the relay after the commit as the bot's grants do),
//! the `pvpn-backend` binary's relay publishing to Redis, and one `pvpn-agent` binary per node
//! applying to `wireguard-go` in its namespace ([`pvpn_tests::stack::Stack`]).
//!
//! - Latency: region `wl`, one node prefilled with 10,000 devices (bulk rows, published by the
//!   relay's first pass and added by the agent's start-up reconcile): grants one at a time, each
//!   after the previous one reached the interface (idle), then open-loop at 100 grants/s (each
//!   grant starts on its schedule whatever the others do). Measured from the grant's commit (the
//!   service call's return) to its node's `XACK` of the entry ([`crate::track`]).
//! - Sustained rate: region `ws`, four nodes, open-loop steps of rising rate; a step keeps up
//!   when every grant succeeds, grants commit at ≥ 90 % of the offered rate and the lag does not
//!   grow (the median latency of the step's last fifth ≤ 2× that of its first fifth + 20 ms).
//!   The figure is the highest rate, grant to peer, of a step that kept up.
//!
//! Agents run with the production stats and reconcile intervals (30 s, 60 s), heartbeats 2 s.

use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use ipnet::Ipv4Net;
use pvpn_backend::db;
use pvpn_backend::service::{Service, ServiceSettings};
use pvpn_common::redis_keys::RegionKeys;
use pvpn_common::{NodeName, PublicKey, RegionCode};
use pvpn_tests::site::VpnSite;
use pvpn_tests::stack::{Stack, wait_until};

use crate::cpu;
use crate::grants::{FILLER, fill, users};
use crate::report::{Figure, quantile};
use crate::track::{Tracker, unix_now};

/// How much the section does.
pub struct Sizes {
    pub prefill: i64,
    pub idle: usize,
    pub open_rate: f64,
    pub open_secs: f64,
    pub steps: Vec<f64>,
    pub step_secs: f64,
}

/// One grant of an open-loop run.
struct Granted {
    key: PublicKey,
    node: NodeName,
    /// Unix seconds of the commit (the service call's return).
    committed: f64,
}

struct Outcome {
    /// In schedule order; `None`: the grant failed.
    grants: Vec<Option<Granted>>,
    /// The first failure, if any (one line for a run, however many failed).
    first_error: Option<String>,
    started: f64,
}

const AGENT_ENV: [(&str, &str); 2] = [
    ("PVPN_STATS_INTERVAL_SECS", "30"),
    ("PVPN_RECONCILE_INTERVAL_SECS", "60"),
];

async fn grant(service: &Service, id: i64, region: &RegionCode) -> Result<Granted, String> {
    let granted = service.grant_device(id, region, None).await;
    let committed = unix_now();
    match granted {
        Ok(g) => Ok(Granted {
            key: g.device.public_key,
            node: g.device.node,
            committed,
        }),
        Err(e) => Err(format!("grant by user {id} failed: {e}")),
    }
}

/// `rate` grants per second for `secs` by users `first..`, each on its schedule.
async fn open_loop(
    service: &Service,
    region: &RegionCode,
    rate: f64,
    secs: f64,
    first: i64,
) -> Outcome {
    let n = (rate * secs).round() as i64;
    let started = unix_now();
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(n as usize);
    for i in 0..n {
        let at = start + Duration::from_secs_f64(i as f64 / rate);
        tokio::time::sleep_until(at.into()).await;
        let (service, region) = (service.clone(), region.clone());
        tasks.push(tokio::spawn(async move {
            grant(&service, first + i, &region).await
        }));
    }
    let mut grants = Vec::with_capacity(tasks.len());
    let mut first_error = None;
    for t in tasks {
        match t.await {
            Ok(Ok(g)) => grants.push(Some(g)),
            Ok(Err(e)) => {
                first_error.get_or_insert(e);
                grants.push(None);
            }
            Err(e) => {
                first_error.get_or_insert(format!("grant task failed: {e}"));
                grants.push(None);
            }
        }
    }
    Outcome {
        grants,
        first_error,
        started,
    }
}

/// Latencies (ms, schedule order) of the grants that reached their interface, and how many did not.
async fn latencies(tracker: &Tracker, grants: &[&Granted], wait: Duration) -> (Vec<f64>, usize) {
    let peers: Vec<(PublicKey, NodeName)> =
        grants.iter().map(|g| (g.key, g.node.clone())).collect();
    let times = tracker.wait_all(&peers, wait).await;
    let mut out = Vec::with_capacity(grants.len());
    let mut missing = 0;
    for (g, t) in grants.iter().zip(times) {
        match t {
            Some(t) => out.push((t - g.committed) * 1000.0),
            None => missing += 1,
        }
    }
    (out, missing)
}

fn spread(mut v: Vec<f64>) -> String {
    v.sort_by(f64::total_cmp);
    let q = |p| quantile(&v, p).unwrap_or(f64::NAN);
    format!(
        "p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms ({} grants)",
        q(0.5),
        q(0.95),
        q(0.99),
        v.len()
    )
}

fn p99(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    quantile(&v, 0.99).unwrap_or(f64::NAN)
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    quantile(&v, 0.5).unwrap_or(f64::NAN)
}

/// Builds the stack and measures; every process and namespace goes when it returns.
pub async fn run(sizes: &Sizes) -> Result<Vec<Figure>> {
    let stack = Stack::start().await?;
    let subnet: Ipv4Net = "198.19.0.0/18".parse()?;
    let lat = VpnSite::create_node(71, "wl", 1, "Latency", subnet)?;
    let mut sus = Vec::new();
    for n in 1..=4u8 {
        sus.push(VpnSite::create_node(
            71 + n,
            "ws",
            u32::from(n),
            "Sustained",
            subnet,
        )?);
    }
    stack.register(&lat, 16_000)?;
    stack.register(&sus[0], 16_000)?;
    for site in &sus[1..] {
        let args = site.node_add_args(16_000);
        stack.ctl(&args.iter().map(String::as_str).collect::<Vec<_>>())?;
    }
    let pool = db::pool(stack.database.url(), 20)?;
    let service = Service::new(pool.clone(), ServiceSettings::default());
    users(&pool, FILLER, 1, 0).await;
    fill(&pool, lat.node.as_str(), sizes.prefill).await;
    let steps_total: f64 = sizes.steps.iter().map(|r| r * sizes.step_secs).sum();
    let needed = sizes.idle as f64 + sizes.open_rate * sizes.open_secs + steps_total;
    users(&pool, 1, needed.ceil() as i64 + 10, 3).await;

    stack.start_backend(&[])?;
    for site in std::iter::once(&lat).chain(&sus) {
        stack.start_agent_with(site, &AGENT_ENV)?;
    }
    let prefill = usize::try_from(sizes.prefill)?;
    let started = Instant::now();
    wait_until(
        "the prefilled peers on the interface",
        Duration::from_secs(900),
        || {
            // A process that died at start would otherwise be waited for until the timeout.
            stack.check_processes()?;
            Ok(lat.wg.peers()?.len() == prefill)
        },
    )
    .await?;
    println!(
        "{prefill} prefilled peers on {} after {:.1} s",
        lat.wg.name(),
        started.elapsed().as_secs_f64()
    );
    let streams = [&lat.region, &sus[0].region]
        .iter()
        .map(|r| RegionKeys::new(r).events())
        .collect();
    let tracker = Tracker::start(&stack.redis, streams)?;
    let mut figures = Vec::new();
    let mut next_user = 1i64;

    // Idle: one grant at a time.
    let mut idle = Vec::new();
    for _ in 0..sizes.idle {
        if let Ok(g) = grant(&service, next_user, &lat.region).await {
            let (l, _) = latencies(&tracker, &[&g], Duration::from_secs(10)).await;
            idle.extend(l);
        }
        next_user += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    ensure!(
        !idle.is_empty(),
        "no idle grant reached the interface:\n{}",
        stack.logs()
    );
    let idle_p99 = p99(&idle);
    println!("idle: {}", spread(idle.clone()));
    figures.push(Figure::new(
        "latency",
        format!("grant committed → peer on the interface, idle, {prefill} peers present"),
        spread(idle),
        "p99 ≤ 5 ms",
        Some(idle_p99 <= 5.0),
    ));

    // Open-loop at 100 grants/s.
    let out = open_loop(
        &service,
        &lat.region,
        sizes.open_rate,
        sizes.open_secs,
        next_user,
    )
    .await;
    next_user += out.grants.len() as i64;
    let ok: Vec<&Granted> = out.grants.iter().flatten().collect();
    let failed = out.grants.len() - ok.len();
    let (l, missing) = latencies(&tracker, &ok, Duration::from_secs(60)).await;
    println!(
        "open loop {}/s: {}; {failed} failed, {missing} never seen",
        sizes.open_rate,
        spread(l.clone())
    );
    figures.push(Figure::info(
        "latency",
        format!(
            "grant committed → peer, open loop at {:.0} grants/s for {:.0} s, {prefill} peers present",
            sizes.open_rate, sizes.open_secs
        ),
        format!("{}; {failed} failed, {missing} not seen", spread(l)),
    ));

    // Sustained: rising open-loop steps into the 4-node region.
    println!(
        "| offered | committed | grant → peer | p50 | p99 | first-fifth / last-fifth median | kept up |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---|");
    let mut best: Option<(f64, f64, f64)> = None;
    let mut last_step = String::new();
    let mut step_cpu = String::new();
    for &rate in &sizes.steps {
        let cpu_before = cpu::Snapshot::take();
        let out = open_loop(&service, &sus[0].region, rate, sizes.step_secs, next_user).await;
        // The step's own stretch (its grants, not the wait for stragglers after it).
        let usage = cpu::Snapshot::take().usage_since(&cpu_before);
        step_cpu = format!("at {rate:.0}/s offered, {usage}");
        if let Some(e) = &out.first_error {
            println!("at {rate:.0}/s, first of the failed grants: {e}");
        }
        next_user += out.grants.len() as i64;
        let ok: Vec<&Granted> = out.grants.iter().flatten().collect();
        let failed = out.grants.len() - ok.len();
        let (l, missing) = latencies(&tracker, &ok, Duration::from_secs(60)).await;
        let last_commit = ok.iter().map(|g| g.committed).fold(out.started, f64::max);
        let committed_rate = ok.len() as f64 / (last_commit - out.started);
        let peers = tracker_peer_rate(&tracker, &ok, out.started);
        let fifth = (l.len() / 5).max(1);
        let (early, late) = (
            median(&l[..fifth.min(l.len())]),
            median(&l[l.len().saturating_sub(fifth)..]),
        );
        let kept = failed == 0
            && missing == 0
            && committed_rate >= 0.9 * rate
            && late <= 2.0 * early + 20.0;
        last_step = format!(
            "{rate:.0}/s offered: {committed_rate:.0}/s committed, {peers:.0}/s on interfaces, p99 {:.1} ms, lag {early:.1} → {late:.1} ms{}",
            p99(&l),
            if failed + missing > 0 {
                format!(", {failed} failed, {missing} not seen")
            } else {
                String::new()
            }
        );
        println!(
            "| {rate:.0}/s | {committed_rate:.0}/s | {peers:.0}/s | {:.1} ms | {:.1} ms | {early:.1} / {late:.1} ms | {} |",
            median(&l),
            p99(&l),
            if kept { "yes" } else { "no" }
        );
        if !kept {
            break;
        }
        best = Some((rate, committed_rate, peers));
    }
    // Everything of the stack shares this machine's cores: the rate is bound by whoever uses them.
    println!("CPU during the last step: {step_cpu}");
    figures.push(Figure::info(
        "latency",
        "CPU during the last sustained step, by program (every process of the stack on this machine)",
        step_cpu,
    ));
    let (measured, met) = match best {
        Some((rate, committed, peers)) => (
            format!(
                "{peers:.0}/s grant → peer ({committed:.0}/s committed) at {rate:.0}/s offered; next step: {last_step}"
            ),
            peers >= 1000.0,
        ),
        None => (format!("no step kept up; {last_step}"), false),
    };
    figures.push(Figure::new(
        "latency",
        "sustained grants/s through to peers on interfaces, 4-node region, until the lag grows",
        measured,
        "≥ 1,000/s",
        Some(met),
    ));
    drop(tracker);
    stack.check_processes()?;
    Ok(figures)
}

/// Peers per second reaching their interfaces: grants that arrived / (last arrival − start).
fn tracker_peer_rate(tracker: &Tracker, grants: &[&Granted], started: f64) -> f64 {
    let last = grants
        .iter()
        .filter_map(|g| tracker.on_interface(&g.key, &g.node))
        .fold(started, f64::max);
    grants.len() as f64 / (last - started)
}
