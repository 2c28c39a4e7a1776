//! The `pvpn-backend` process: migrations, then every long-running task under one runtime with
//! one shutdown signal: the outbox relay, the feedback consumer, the expiry scheduler, the
//! health/metrics server and (when `TELEGRAM_BOT_TOKEN` is set) the Telegram bot.
//!
//! If any task ends on its own, the others are told to stop and `run` returns an error, so a
//! supervisor restarts the whole process rather than running half of it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use pvpn_common::backoff::Backoff;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::feedback::{self, FeedbackSettings};
use crate::metrics::Metrics;
use crate::relay::{self, RelaySettings};
use crate::service::Service;
use crate::{db, http, redis_client, redis_memory, scheduler};

/// How long tasks get to finish after shutdown was requested.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(15);

/// A started backend.
pub struct Running {
    /// Where `/healthz` and `/metrics` are served (useful with port 0).
    pub metrics_addr: SocketAddr,
    pub service: Service,
    shutdown: CancellationToken,
    tasks: JoinSet<(&'static str, anyhow::Result<()>)>,
}

/// Runs the backend until `shutdown` is cancelled.
pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    start(config, shutdown).await?.wait().await
}

/// Migrates the database (retrying while it is unreachable) and spawns every task.
pub async fn start(config: Config, shutdown: CancellationToken) -> anyhow::Result<Running> {
    let pool = db::pool(config.database_url.expose(), 20).context("DATABASE_URL")?;
    let redis = redis_client::client(config.require_redis_url()?, config.redis.ca_file.as_deref())?;
    migrate_when_reachable(&pool, &shutdown).await?;

    let metrics = Arc::new(Metrics::default());
    let service = Service::with_metrics(pool.clone(), config.service_settings(), metrics.clone());
    let listener = TcpListener::bind(config.metrics_addr)
        .await
        .with_context(|| format!("binding the metrics address {}", config.metrics_addr))?;
    let metrics_addr = listener.local_addr()?;

    let mut tasks = JoinSet::new();
    let relay_settings = RelaySettings {
        poll_interval: config.relay_poll_interval,
        consistency_interval: config.relay_check_interval,
        stream_maxlen: config.stream_maxlen,
        ..RelaySettings::default()
    };
    tasks.spawn({
        let (pool, redis, metrics, stop) = (
            pool.clone(),
            redis.clone(),
            metrics.clone(),
            shutdown.clone(),
        );
        async move {
            relay::run(pool, redis, metrics, relay_settings, stop).await;
            ("relay", Ok(()))
        }
    });
    tasks.spawn({
        let (redis, metrics, stop) = (redis.clone(), metrics.clone(), shutdown.clone());
        async move {
            redis_memory::run(redis, metrics, stop).await;
            ("redis_memory", Ok(()))
        }
    });
    tasks.spawn({
        let (pool, metrics, stop) = (pool.clone(), metrics.clone(), shutdown.clone());
        async move {
            feedback::run(pool, redis, metrics, FeedbackSettings::default(), stop).await;
            ("feedback", Ok(()))
        }
    });
    tasks.spawn({
        let (service, stop, interval) = (
            service.clone(),
            shutdown.clone(),
            config.expiry_check_interval,
        );
        async move {
            scheduler::run(service, interval, stop).await;
            ("scheduler", Ok(()))
        }
    });
    tasks.spawn({
        let (pool, metrics, stop) = (pool.clone(), metrics.clone(), shutdown.clone());
        async move {
            (
                "http",
                http::serve(listener, pool, metrics, stop)
                    .await
                    .map_err(Into::into),
            )
        }
    });

    // ── The Telegram bot ────────────────────────────────────────────────────────────────────
    // Runs only when a token is configured; everything above works without it.
    if let Some(token) = &config.telegram_bot_token {
        let mut settings = crate::bot::BotSettings::new(
            token.expose().to_string(),
            config.telegram_api_url.clone(),
        );
        settings.blocked_nudge_after = config.blocked_nudge_after;
        let (service, stop) = (service.clone(), shutdown.clone());
        tasks.spawn(async move { ("bot", crate::bot::run(settings, service, stop).await) });
    } else {
        tracing::info!("TELEGRAM_BOT_TOKEN not set: running without the bot");
    }
    // ─────────────────────────────────────────────────────────────────────────────────────────

    tracing::info!(%metrics_addr, "backend started");
    Ok(Running {
        metrics_addr,
        service,
        shutdown,
        tasks,
    })
}

impl Running {
    /// Waits for shutdown (or for a task to end on its own), then for every task to finish.
    pub async fn wait(mut self) -> anyhow::Result<()> {
        let mut failure = None;
        tokio::select! {
            // Shutdown first: once it is requested, tasks ending is expected, not a failure.
            biased;
            _ = self.shutdown.cancelled() => {}
            Some(done) = self.tasks.join_next(), if !self.shutdown.is_cancelled() => {
                let what = match done {
                    Ok((name, Ok(()))) => format!("{name} stopped unexpectedly"),
                    Ok((name, Err(e))) => format!("{name} failed: {e:#}"),
                    Err(e) => format!("a task panicked: {e}"),
                };
                tracing::error!(what, "stopping the backend");
                failure = Some(what);
                self.shutdown.cancel();
            }
        }
        let drain = async {
            while let Some(done) = self.tasks.join_next().await {
                match done {
                    Ok((name, Err(e))) => {
                        tracing::warn!(task = name, error = %e, "task ended with an error")
                    }
                    Err(e) => tracing::error!(error = %e, "task panicked during shutdown"),
                    Ok(_) => {}
                }
            }
        };
        if tokio::time::timeout(SHUTDOWN_GRACE, drain).await.is_err() {
            tracing::warn!("tasks did not stop within {SHUTDOWN_GRACE:?}; aborting them");
        }
        match failure {
            Some(what) => anyhow::bail!(what),
            None => Ok(()),
        }
    }
}

async fn migrate_when_reachable(
    pool: &sqlx::PgPool,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(10));
    loop {
        match db::migrate(pool).await {
            Ok(()) => return Ok(()),
            Err(sqlx::migrate::MigrateError::Execute(e)) if db::is_unreachable(&e) => {
                let retry = backoff.fail("database unreachable");
                if retry.is_news() {
                    tracing::warn!(error = %e, "database unreachable; retrying migrations");
                }
                tokio::select! {
                    _ = shutdown.cancelled() => anyhow::bail!("shut down before the database was reachable"),
                    _ = tokio::time::sleep(retry.delay) => {}
                }
            }
            Err(e) => return Err(e).context("running database migrations"),
        }
    }
}
