//! A throwaway PostgreSQL database per test.
//!
//! The server is the machine's (`PVPN_TEST_PG_URL`, default
//! `postgres://pvpn:pvpn@127.0.0.1:5432/postgres`); each test gets its own database, dropped when
//! the [`TestDatabase`] is dropped, so tests run in parallel without seeing each other's rows.

use anyhow::{Context, Result};
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::{AssertSqlSafe, Connection, Executor, PgConnection};

/// Where the test PostgreSQL server is.
pub fn admin_url() -> String {
    std::env::var("PVPN_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://pvpn:pvpn@127.0.0.1:5432/postgres".to_string())
}

/// An empty database that lives as long as this value.
pub struct TestDatabase {
    name: String,
    url: String,
}

impl TestDatabase {
    /// Creates an empty database with a unique name.
    pub async fn create() -> Result<Self> {
        let admin = admin_url();
        let mut conn = PgConnection::connect(&admin).await.with_context(|| {
            format!("cannot connect to PostgreSQL at {admin}: is it running? (scripts/setup.sh starts it)")
        })?;
        let name = format!(
            "pvpn_test_{}_{}",
            std::process::id(),
            crate::unique_suffix()
        );
        conn.execute(AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .await
            .with_context(|| format!("creating database {name}"))?;
        let _ = conn.close().await;
        let url = match admin.rsplit_once('/') {
            Some((base, _)) => format!("{base}/{name}"),
            None => anyhow::bail!("PVPN_TEST_PG_URL {admin:?} has no database part"),
        };
        Ok(Self { name, url })
    }

    /// The connection URL of this database.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Saves the whole database with `pg_dump` (custom format) to `path`, as a backup would.
    pub fn dump(&self, path: &std::path::Path) -> Result<()> {
        let status = std::process::Command::new("pg_dump")
            .args(["--format=custom", "--file"])
            .arg(path)
            .arg(&self.url)
            .status()
            .context("running pg_dump: is the PostgreSQL client installed?")?;
        anyhow::ensure!(
            status.success(),
            "pg_dump of {} failed: {status}",
            self.name
        );
        Ok(())
    }

    /// Replaces the database with the dump at `path`: dropped (its connections forced out),
    /// created empty under the same name and filled by `pg_restore`, as a restore from a
    /// backup would leave it.
    pub async fn restore(&self, path: &std::path::Path) -> Result<()> {
        let mut conn = PgConnection::connect(&admin_url()).await?;
        conn.execute(AssertSqlSafe(format!(
            "DROP DATABASE {} WITH (FORCE)",
            self.name
        )))
        .await
        .with_context(|| format!("dropping {}", self.name))?;
        conn.execute(AssertSqlSafe(format!("CREATE DATABASE {}", self.name)))
            .await
            .with_context(|| format!("recreating {}", self.name))?;
        let _ = conn.close().await;
        let status = std::process::Command::new("pg_restore")
            .args(["--no-owner", "--dbname"])
            .arg(&self.url)
            .arg(path)
            .status()
            .context("running pg_restore: is the PostgreSQL client installed?")?;
        anyhow::ensure!(
            status.success(),
            "pg_restore into {} failed: {status}",
            self.name
        );
        Ok(())
    }

    /// One text column of every row `sql` returns, on a connection of its own.
    pub async fn strings(&self, sql: &str) -> Result<Vec<String>> {
        let mut conn = PgConnection::connect(&self.url).await?;
        let rows: Vec<String> = sqlx::query_scalar(AssertSqlSafe(sql.to_string()))
            .fetch_all(&mut conn)
            .await
            .with_context(|| format!("running {sql}"))?;
        let _ = conn.close().await;
        Ok(rows)
    }

    /// A small pool on this database.
    pub async fn pool(&self) -> Result<PgPool> {
        PgPoolOptions::new()
            .max_connections(20)
            .connect(&self.url)
            .await
            .with_context(|| format!("connecting to {}", self.url))
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        // Drop runs outside any async context we can rely on: use a short-lived runtime on its
        // own thread, and force out connections a test left open.
        let name = self.name.clone();
        let admin = admin_url();
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                if let Ok(mut conn) = PgConnection::connect(&admin).await {
                    let _ = conn
                        .execute(AssertSqlSafe(format!(
                            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                        )))
                        .await;
                }
            });
        })
        .join();
    }
}
