//! PVPN's backend: the one place that decides who has access where.
//!
//! # Layout
//!
//! - [`db`]: the PostgreSQL schema (migrations embedded from `migrations/`) and queries.
pub mod db;
