//! PostgreSQL access: the embedded migrations, the pool, and the queries the service layer runs.
//!
//! Queries use sqlx's runtime API (`query_as::<_, Row>`), so building needs no database. Each
//! submodule owns the queries of one table; functions take a `&mut PgConnection` so callers decide
//! the transaction.

pub mod addresses;
pub mod audit;
pub mod devices;
pub mod import;
pub mod invites;
pub mod nodes;
pub mod notices;
pub mod outbox;
pub mod regions;
pub mod users;
pub mod values;

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

/// Like [`migrate`], and says how many migrations it applied (0: the schema was up to date), so
/// that `pvpnctl migrate` and Ansible can report a change only when there was one.
pub async fn migrate_counting(pool: &PgPool) -> Result<usize, sqlx::migrate::MigrateError> {
    let applied = |versions: Vec<i64>| {
        MIGRATOR
            .iter()
            .filter(|m| !m.migration_type.is_down_migration())
            .filter(|m| versions.contains(&m.version))
            .count()
    };
    let before = applied(applied_versions(pool).await?);
    migrate(pool).await?;
    let after = applied(applied_versions(pool).await?);
    Ok(after.saturating_sub(before))
}

/// Versions recorded as applied; none when the bookkeeping table does not exist yet.
async fn applied_versions(pool: &PgPool) -> Result<Vec<i64>, sqlx::migrate::MigrateError> {
    let exists: bool = sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL")
        .fetch_one(pool)
        .await?;
    if !exists {
        return Ok(Vec::new());
    }
    Ok(
        sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success")
            .fetch_all(pool)
            .await?,
    )
}

/// Whether `err` means "PostgreSQL cannot be reached right now" (a cut or refused connection,
/// a full pool, a server shutting down or full) rather than a bug: the one answer to "is this a
/// cut connection", for service calls (`Unavailable`) and the retries of background loops.
pub fn is_unreachable(err: &sqlx::Error) -> bool {
    match err {
        // A connection cut mid-handshake shows up as a protocol error ("unexpected response
        // from SSLRequest"): the server is unreachable, not our bug.
        sqlx::Error::Io(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        // admin_shutdown, crash_shutdown, cannot_connect_now, too_many_connections
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|c| ["57P01", "57P02", "57P03", "53300"].contains(&&*c)),
        _ => false,
    }
}

/// A pool on `url`. Connecting is lazy, so a database that is down at start only makes calls
/// fail with `Unavailable` until it is back.
pub fn pool(url: &str, max_connections: u32) -> Result<PgPool, sqlx::Error> {
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(5))
        .connect_lazy(url)
}
