//! PostgreSQL access: the embedded migrations and the queries the service layer runs.

use sqlx::PgPool;
use sqlx::migrate::Migrator;

/// The schema in `migrations/`, embedded in the binary.
pub static MIGRATOR: Migrator = sqlx::migrate!("../migrations");

/// Brings the database schema up to date. Safe to run at every start and concurrently: sqlx
/// takes an advisory lock.
pub async fn migrate(pool: &PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    MIGRATOR.run(pool).await
}
