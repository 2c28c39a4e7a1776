//! PostgreSQL access: the embedded migrations, the pool, and the queries the service layer runs.
//!
//! Queries use sqlx's runtime API (`query_as::<_, Row>`), so building needs no database. Each
//! submodule owns the queries of one table; functions take a `&mut PgConnection` so callers decide
//! the transaction.

pub mod audit;
pub mod devices;
pub mod invites;
pub mod nodes;
pub mod outbox;
pub mod regions;
pub mod users;

use std::time::Duration;

use sqlx::PgPool;
use sqlx::migrate::Migrator;
use sqlx::postgres::PgPoolOptions;

/// The schema in `migrations/`, embedded in the binary.
pub static MIGRATOR: Migrator = sqlx::migrate!("../migrations");

/// Brings the database schema up to date. Safe to run at every start and concurrently: sqlx
/// takes an advisory lock.
pub async fn migrate(pool: &PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    MIGRATOR.run(pool).await
}

/// A pool on `url`. Connecting is lazy, so a database that is down at start only makes calls
/// fail with `Unavailable` until it is back.
pub fn pool(url: &str, max_connections: u32) -> Result<PgPool, sqlx::Error> {
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(5))
        .connect_lazy(url)
}
