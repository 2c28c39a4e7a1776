//! `pvpn-agent`: applies a region's Redis event stream to one node's WireGuard interface.
//!
//! The agent owns the interface's peer list and nothing else (keys, port and addresses are
//! provisioned by Ansible). It reads its region's stream through its node's consumer group,
//! applies the events meant for its node in revision order, reconciles against the node's
//! snapshot whenever it cannot be sure (start, gap, lost stream, request, timer), acknowledges an
//! entry only once the interface holds it, and reports heartbeats and counters back.
//!
//! # Layout
//!
//! - [`config`]: one `Config`, defaults, TOML file, environment overrides.
//! - [`wireguard`]: the `WireGuard` trait, its `wireguard-control`, AmneziaWG-netlink and
//!   in-memory implementations, chunked application of changes.
//! - [`consumer`]: consumer group, reads (pending first), acks, dead letters.
//! - [`snapshot`]: the node's desired state, read atomically and parsed strictly.
//! - [`policy`]: what the node agrees to apply (client host routes of its subnet, unique
//!   addresses, a peer limit), whoever asks.
//! - [`reconcile`]: snapshot vs. interface → the minimal list of changes.
//! - [`interface`]: the interface's protocol and AmneziaWG parameters vs. the node's spec.
//! - [`agent`]: the loop: sessions, revision logic, acknowledgement rules.
//! - [`report`]: heartbeats and per-peer stats on the node's feedback stream.
//! - [`lease`]: one agent per node applies changes (a token key renewed without scripts, in a
//!   task of its own).
//! - [`http`] and [`metrics`]: `/healthz`, `/metrics`, shared status.
//! - [`redis_conn`]: the Redis client (TLS with the configured CA) and connections with the right
//!   timeouts.
//! - [`heap`]: freed memory handed back after reads of a whole interface or snapshot.
//!
//! Retry delays come from [`pvpn_common::backoff`]; shutdown is one `CancellationToken`.

pub mod agent;
pub mod config;
pub mod consumer;
pub mod heap;
pub mod http;
pub mod interface;
pub mod lease;
pub mod metrics;
pub mod policy;
pub mod reconcile;
pub mod redis_conn;
pub mod report;
pub mod snapshot;
pub mod wireguard;

use std::sync::Arc;

pub use config::{Config, ConfigError, WgBackend};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::agent::NodeAgent;
use crate::lease::LeaseKeeper;
use crate::metrics::{Metrics, SharedStatus, Status};
use crate::report::Reporter;
use crate::wireguard::amneziawg::AmneziaWireGuard;
use crate::wireguard::control::ControlWireGuard;
use crate::wireguard::{WgError, WireGuard};

/// Why the agent could not start.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    WireGuard(#[from] WgError),
    #[error(transparent)]
    Redis(#[from] redis_conn::RedisClientError),
    #[error("binding the metrics address {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
}

/// Runs the agent against the configured interface until `shutdown` is cancelled.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), AgentError> {
    let wg: Arc<dyn WireGuard> = match config.wg_backend {
        WgBackend::AmneziaWg => Arc::new(AmneziaWireGuard::new(&config.wg_interface)),
        backend => Arc::new(ControlWireGuard::new(&config.wg_interface, backend)?),
    };
    let listener = TcpListener::bind(config.metrics_addr)
        .await
        .map_err(|source| AgentError::Bind {
            addr: config.metrics_addr,
            source,
        })?;
    serve(config, wg, listener, shutdown).await
}

/// Runs the agent with a given interface and HTTP listener (tests bind port 0).
///
/// Refuses to start if the interface does not exist. On shutdown it finishes the entry being
/// applied, acknowledges nothing else, and returns.
pub async fn serve(
    config: Config,
    wg: Arc<dyn WireGuard>,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), AgentError> {
    let redis = redis_conn::client(&config.redis_url, config.redis.ca_file.as_deref())?;
    agent::blocking(&wg, |wg| wg.check_exists()).await?;
    tracing::info!(?config, "pvpn-agent starting");
    // Stops the reporter and the HTTP server when the loop ends, for whatever reason.
    let stop = shutdown.child_token();
    let metrics = Arc::new(Metrics::new());
    let status: SharedStatus = Arc::new(std::sync::Mutex::new(Status::default()));

    let app = http::router(Arc::clone(&metrics), Arc::clone(&status));
    let http_task = tokio::spawn({
        let stopped = stop.clone().cancelled_owned();
        async move {
            if let Err(e) = axum::serve(listener, app)
                .with_graceful_shutdown(stopped)
                .await
            {
                tracing::error!(error = %e, "metrics endpoint failed");
            }
        }
    });

    let keys = pvpn_common::redis_keys::RegionKeys::new(&config.region);
    let (keeper, lease_held) = LeaseKeeper::new(
        keys.node_lease(&config.node),
        config.node.clone(),
        redis.clone(),
        config.heartbeat_interval,
        Arc::clone(&metrics),
        Arc::clone(&status),
    );
    // The lease is released only after the apply loop has returned, so a standby never applies
    // while this agent finishes its last entry.
    let release_lease = CancellationToken::new();
    let lease_task = tokio::spawn(keeper.run(release_lease.clone()));
    let reporter = Reporter {
        lease_held: lease_held.clone(),
        wg: Arc::clone(&wg),
        node: config.node.clone(),
        keys,
        redis: redis.clone(),
        heartbeat_interval: config.heartbeat_interval,
        stats_interval: config.stats_interval,
        metrics: Arc::clone(&metrics),
        status: Arc::clone(&status),
    };
    let report_task = tokio::spawn(reporter.run(stop.clone()));

    let mut node_agent = NodeAgent::new(wg, redis, &config, metrics, status, lease_held);
    agent_loop(&mut node_agent, &stop).await;
    stop.cancel();
    release_lease.cancel();
    let _ = lease_task.await;
    let _ = report_task.await;
    let _ = http_task.await;
    tracing::info!("pvpn-agent stopped");
    Ok(())
}

/// Sessions one after another, with backoff between failed ones, until shutdown. A session
/// notices shutdown between entries, so the entry being applied is finished first.
async fn agent_loop(agent: &mut NodeAgent, stop: &CancellationToken) {
    while !stop.is_cancelled() {
        if !agent.wait_for_lease(stop).await {
            break;
        }
        let Err(error) = agent.session(stop).await else {
            break;
        };
        let delay = agent.note_failure(&error);
        tokio::select! {
            () = stop.cancelled() => break,
            () = tokio::time::sleep(delay) => {}
        }
    }
}
