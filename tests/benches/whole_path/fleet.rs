//! Fleet recovery: 100 nodes × 10,000 peers (10 regions of 10 nodes), the real `pvpn-backend`
//! binary (relay and feedback consumer) on PostgreSQL and Redis, and 100 agents in this process
//! (`pvpn_agent::serve`, the binary's own loop) each on an in-memory interface
//! (`MemoryWireGuard`), heartbeat 1 s.
//!
//! Nodes are filled in bulk (rows, as an import writes them); the relay's first pass publishes
//! them and every agent's start-up reconcile adds its 10,000 peers. Then:
//! - **Redis `FLUSHALL`**: the relay finds the region markers gone and republishes every node
//!   from PostgreSQL; agents find their stream gone and reconcile. Timed until every node's
//!   revision key is back (republished) and until every node *reports* applied = published in
//!   PostgreSQL with a reconcile finished after the flush (the heartbeat path, end to end).
//! - **Backend restart** (SIGKILL, then start): timed from the new process's start until every
//!   node has a heartbeat stored by it, at applied = published.
//!
//! The backend's RSS (`VmHWM`, its peak) after the republish is reported too. Agents' stats
//! reports are turned off (one hour): ingesting 1,000,000 peers' counters is not what this
//! measures, and the interfaces start empty, so nothing is owed at start either.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use pvpn_agent::Config;
use pvpn_agent::wireguard::WireGuard;
use pvpn_agent::wireguard::memory::MemoryWireGuard;
use pvpn_backend::db;
use pvpn_backend::service::{Actor, NodeDeclaration, Service, ServiceSettings};
use pvpn_common::addressing::ClientSubnet;
use pvpn_common::keys::KeyPair;
use pvpn_common::redis_keys::RegionKeys;
use pvpn_common::{NodeName, RegionCode};
use pvpn_tests::stack::Stack;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::grants::{FILLER, fill, users};
use crate::report::{Figure, secs};
use crate::rss::status_kb;
use crate::track::unix_now;

const SUBNET: &str = "198.19.0.0/18";
const REPUBLISH_TARGET_PER_200K: f64 = 1.3;
const BACKEND_RSS_TARGET_MB: f64 = 150.0;

/// One in-process agent.
struct Agent {
    wg: Arc<MemoryWireGuard>,
}

/// Nodes at applied = published whose heartbeat was stored after `$1` (Unix seconds) and whose
/// last reconcile finished in that second or later.
const RECONCILED_SINCE: &str = "SELECT count(*) FROM nodes WHERE applied_revision = published_revision \
     AND last_heartbeat_at > to_timestamp($1) \
     AND (last_reconcile->>'finished_at')::bigint >= floor($1)";
/// Nodes at applied = published whose heartbeat was stored after `$1` (Unix seconds).
const REPORTED_SINCE: &str = "SELECT count(*) FROM nodes WHERE applied_revision = published_revision \
     AND last_heartbeat_at > to_timestamp($1)";

async fn nodes_where(pool: &PgPool, sql: &'static str, since: f64) -> Result<i64> {
    Ok(sqlx::query_scalar(sql).bind(since).fetch_one(pool).await?)
}

/// Polls until `count()` reaches `n`; the time since `start`.
async fn until<F, Fut>(
    what: &str,
    n: i64,
    start: Instant,
    timeout: Duration,
    mut count: F,
) -> Result<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<i64>>,
{
    loop {
        let have = count().await?;
        if have >= n {
            return Ok(start.elapsed());
        }
        ensure!(
            start.elapsed() < timeout,
            "{what}: {have} of {n} after {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn agent_config(redis_url: &str, region: &RegionCode, node: &NodeName) -> Result<Config> {
    let (url, region, node) = (redis_url.to_string(), region.to_string(), node.to_string());
    Ok(Config::load(|key| match key {
        "REDIS_URL" => Some(url.clone()),
        "PVPN_REGION" => Some(region.clone()),
        "PVPN_NODE" => Some(node.clone()),
        "PVPN_SUBNET" => Some(SUBNET.into()),
        "PVPN_WG_INTERFACE" => Some("memory".into()),
        "PVPN_WG_BACKEND" => Some("userspace".into()),
        "PVPN_METRICS_ADDR" => Some("127.0.0.1:0".into()),
        "PVPN_HEARTBEAT_INTERVAL_SECS" => Some("1".into()),
        "PVPN_STATS_INTERVAL_SECS" => Some("3600".into()),
        "PVPN_RECONCILE_INTERVAL_SECS" => Some("3600".into()),
        _ => None,
    })?)
}

/// `regions` × `per_region` nodes of `peers` each.
pub async fn run(regions: usize, per_region: usize, peers: i64) -> Result<Vec<Figure>> {
    let stack = Stack::start().await?;
    let pool = db::pool(stack.database.url(), 20)?;
    let service = Service::new(pool.clone(), ServiceSettings::default());
    let actor = Actor::System("bench");
    let total = (regions * per_region) as i64;
    users(&pool, FILLER, 1, 0).await;
    let mut nodes = Vec::new();
    let started = Instant::now();
    for r in 0..regions {
        let region = RegionCode::new(format!("f{r}"))?;
        service
            .declare_region(&actor, &region, &format!("Fleet {r}"))
            .await?;
        for n in 1..=per_region {
            let node = NodeName::new(format!("f{r}-{n}"))?;
            let declaration = NodeDeclaration {
                name: node.clone(),
                region: region.clone(),
                endpoint: "vpn.example.net:51820".parse()?,
                public_key: KeyPair::generate().public,
                listen_port: 51820,
                subnet: ClientSubnet::new(SUBNET.parse()?)?,
                dns: vec![],
                capacity: 16_000,
                protocol: pvpn_common::obfuscation::Protocol::WireGuard,
            };
            service.declare_node(&actor, &declaration).await?;
            fill(&pool, node.as_str(), peers).await;
            nodes.push((region.clone(), node));
        }
    }
    println!(
        "fleet: {total} nodes × {peers} devices written in {}",
        secs(started.elapsed())
    );

    stack.start_backend_with(&[], &[("PVPN_HEARTBEAT_INTERVAL_SECS", "1")])?;
    let stop = CancellationToken::new();
    let redis_url = stack.redis.url();
    let mut agents = Vec::new();
    let mut tasks = Vec::new();
    for (region, node) in &nodes {
        let wg = Arc::new(MemoryWireGuard::new());
        let config = agent_config(&redis_url, region, node)?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        tasks.push(tokio::spawn(pvpn_agent::serve(
            config,
            wg.clone() as Arc<dyn WireGuard>,
            listener,
            stop.child_token(),
        )));
        agents.push(Agent { wg });
    }
    let expected = usize::try_from(peers)?;
    let start = Instant::now();
    loop {
        let full = agents.iter().filter(|a| a.wg.len() == expected).count();
        if full == agents.len() {
            break;
        }
        stack.check_processes()?;
        ensure!(
            start.elapsed() < Duration::from_secs(1200),
            "only {full} of {total} agents hold their peers:\n{}",
            stack.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!(
        "fleet: every agent holds its {peers} peers {} after the backend started",
        secs(start.elapsed())
    );
    let mut figures = Vec::new();

    // Redis loses everything.
    let mut conn = stack.redis.connection()?;
    let revision_keys: Vec<String> = nodes
        .iter()
        .map(|(r, n)| RegionKeys::new(r).node_revision(n))
        .collect();
    let flushed = unix_now();
    let _: () = redis::cmd("FLUSHALL").query(&mut conn)?;
    let start = Instant::now();
    let republished = until(
        "revision keys back",
        total,
        start,
        Duration::from_secs(900),
        || {
            let exists: redis::RedisResult<i64> =
                redis::cmd("EXISTS").arg(&revision_keys).query(&mut conn);
            async move { Ok(exists?) }
        },
    )
    .await?;
    let rss = stack.backend_pid().and_then(|pid| status_kb(pid, "VmHWM:"));
    let recovered = until(
        "nodes reporting applied = published after FLUSHALL",
        total,
        start,
        Duration::from_secs(900),
        || nodes_where(&pool, RECONCILED_SINCE, flushed),
    )
    .await
    .with_context(|| stack.logs())?;
    let held = agents.iter().filter(|a| a.wg.len() == expected).count();
    ensure!(
        held == agents.len(),
        "{held} of {total} agents hold every peer after FLUSHALL"
    );
    let all_peers = total * peers;
    let per_200k = republished.as_secs_f64() * 200_000.0 / all_peers as f64;
    figures.push(Figure::new(
        "fleet",
        format!("republish after FLUSHALL, {total} nodes × {peers} peers ({all_peers} peers), until every revision key is back"),
        format!("{} ({per_200k:.2} s per 200k peers)", secs(republished)),
        format!("keep ≤ {REPUBLISH_TARGET_PER_200K} s per 200k peers"),
        Some(per_200k <= REPUBLISH_TARGET_PER_200K),
    ));
    figures.push(Figure::info(
        "fleet",
        format!("fleet recovery after FLUSHALL, {total} nodes × {peers} peers: from the flush until every node reports applied = published"),
        secs(recovered),
    ));
    if let Some(kb) = rss {
        let mb = kb as f64 / 1024.0;
        figures.push(Figure::new(
            "fleet",
            format!("backend peak RSS (VmHWM) through the republish, {all_peers} devices on {total} nodes, 1 user"),
            format!("{mb:.0} MB"),
            format!("≤ {BACKEND_RSS_TARGET_MB} MB (issue: at 100k users / 200k devices)"),
            Some(mb <= BACKEND_RSS_TARGET_MB),
        ));
    }

    // The backend crashes and comes back.
    stack.kill_backend();
    let restarted = unix_now();
    let start = Instant::now();
    stack.start_backend_with(&[], &[("PVPN_HEARTBEAT_INTERVAL_SECS", "1")])?;
    let back = until(
        "nodes reporting applied = published after the restart",
        total,
        start,
        Duration::from_secs(900),
        || nodes_where(&pool, REPORTED_SINCE, restarted),
    )
    .await
    .with_context(|| stack.logs())?;
    figures.push(Figure::info(
        "fleet",
        format!("fleet recovery after a backend restart (SIGKILL), {total} nodes × {peers} peers: from the new process's start until every node reports applied = published"),
        secs(back),
    ));

    stop.cancel();
    for t in tasks {
        let _ = t.await;
    }
    stack.check_processes()?;
    Ok(figures)
}
