//! PVPN's backend: the one place that decides who has access where.
//!
//! # Layout
//!
//! - [`service`]: the business rules (register, grant, revoke, ban, ...). The bot and `pvpnctl`
//!   call only this.
//! - [`db`]: the PostgreSQL schema (migrations embedded from `migrations/`) and queries.
//! - [`outbox`]: writing desired-state changes to the outbox in the caller's transaction.
//! - [`metrics`]: Prometheus metrics.
pub mod db;
pub mod metrics;
pub mod outbox;
pub mod service;
