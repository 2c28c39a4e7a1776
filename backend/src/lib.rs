//! PVPN's backend: the one place that decides who has access where.
//!
//! # Layout
//!
//! - [`bot`]: the Telegram bot (handler tree, texts in English and Russian, keyboards).
//! - [`service`]: the business rules (register, grant, revoke, ban, ...). The bot and `pvpnctl`
//!   call only this.
//! - [`db`]: the PostgreSQL schema (migrations embedded from `migrations/`) and queries.
//! - [`outbox`]: writing desired-state changes to the outbox in the caller's transaction.
//! - [`relay`]: publishes outbox rows to Redis (snapshot + revision + stream, atomically), epoch.
//! - [`metrics`]: Prometheus metrics.
//! - [`backoff`]: capped, jittered retry delays for the background loops.
pub mod backoff;
pub mod bot;
pub mod db;
pub mod metrics;
pub mod outbox;
pub mod relay;
pub mod service;
