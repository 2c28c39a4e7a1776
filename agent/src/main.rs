//! The `pvpn-agent` binary: reads the configuration, sets up logging, runs until SIGTERM/Ctrl-C.

use anyhow::Context;
use clap::Parser;
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

/// PVPN node agent: applies the region's Redis event stream to this node's WireGuard interface.
#[derive(Parser)]
#[command(
    version,
    about,
    after_help = "Configuration comes from the environment (and an optional TOML file named by \
PVPN_CONFIG, same keys in lowercase without the PVPN_ prefix; the environment wins):
  REDIS_URL                      rediss://[user:password@]host:port/ (required; plain redis://
                                 to loopback only)
  PVPN_REDIS_CA_FILE             PEM certificates rediss:// trusts (default: the system's roots)
  PVPN_REDIS_ALLOW_PLAINTEXT     true: plain redis:// to another host (default false)
  PVPN_REGION, PVPN_NODE         this node's region code and name (required)
  PVPN_SUBNET                    the node's client subnet, e.g. 10.66.0.0/22 (required)
  PVPN_MAX_PEERS                 most peers on the interface (default 65536 userspace, 1048576 kernel)
  PVPN_WG_INTERFACE              WireGuard interface, must exist (default wg0)
  PVPN_WG_BACKEND                kernel | userspace (default kernel)
  PVPN_METRICS_ADDR              /healthz and /metrics (default 127.0.0.1:9101)
  PVPN_RECONCILE_INTERVAL_SECS   default 60
  PVPN_HEARTBEAT_INTERVAL_SECS   default 10
  PVPN_STATS_INTERVAL_SECS       default 30
Logs go to stderr; RUST_LOG filters them."
)]
struct Cli {}

fn main() -> anyhow::Result<()> {
    Cli::parse();
    // Before the runtime's threads exist, so none of them gets an arena of its own.
    pvpn_agent::heap::limit_arenas();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(run())
}

async fn run() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let config = pvpn_agent::Config::from_env().context("invalid configuration")?;
    let mut sigterm = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let shutdown = CancellationToken::new();
    tokio::spawn({
        let shutdown = shutdown.clone();
        async move {
            tokio::select! {
                _ = sigterm.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            tracing::info!("shutdown requested: finishing the current apply");
            shutdown.cancel();
        }
    });
    pvpn_agent::run(config, shutdown).await?;
    Ok(())
}
