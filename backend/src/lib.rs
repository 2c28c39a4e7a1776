//! PVPN's backend: the one place that decides who has access where.
//!
//! # Layout
//!
//! - [`app`]: the `pvpn-backend` process: every task under one shutdown signal.
//! - [`bot`]: the Telegram bot (handler tree, texts in English and Russian, keyboards).
//! - [`service`]: the business rules (register, grant, revoke, ban, ...). The bot and `pvpnctl`
//!   call only this.
//! - [`cli`]: `pvpnctl`, the admin CLI.
//! - [`admin_args`]: the arguments the bot's admin commands and `pvpnctl` share.
//! - [`config`]: the one configuration struct (TOML file + environment).
//! - [`db`]: the PostgreSQL schema (migrations embedded from `migrations/`) and queries.
//! - [`relay`]: publishes outbox rows to Redis (snapshot + revision + stream, atomically), epoch.
//! - [`feedback`]: agents' heartbeats and stats from Redis into PostgreSQL.
//! - [`redis_client`]: the Redis client, over TLS with the configured CA for `rediss://`.
//! - [`redis_memory`]: Redis memory against `maxmemory`, as gauges and a warning.
//! - [`scheduler`]: revokes expired access on a timer.
//! - [`http`]: `/healthz` and `/metrics`.
//! - [`metrics`]: Prometheus metrics.
//!
//! Retry delays come from [`pvpn_common::backoff`], shutdown is one
//! `tokio_util::sync::CancellationToken` handed to every task.
pub mod admin_args;
pub mod app;
pub mod bot;
pub mod cli;
pub mod config;
pub mod db;
pub mod feedback;
pub mod http;
pub mod metrics;
pub mod redis_client;
pub mod redis_memory;
pub mod relay;
pub mod scheduler;
pub mod service;
