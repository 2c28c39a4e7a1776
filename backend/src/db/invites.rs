//! Queries on `invites`.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

pub async fn insert(
    conn: &mut PgConnection,
    code: &str,
    created_by: &str,
    max_uses: i32,
    expires_at: Option<DateTime<Utc>>,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO invites (code, created_by, max_uses, expires_at) VALUES ($1, $2, $3, $4)",
    )
    .bind(code)
    .bind(created_by)
    .bind(max_uses)
    .bind(expires_at)
    .execute(conn)
    .await?;
    Ok(())
}

/// Uses the invite once if it is still valid; `false` if it is unknown, used up or expired.
pub async fn consume(conn: &mut PgConnection, code: &str) -> sqlx::Result<bool> {
    let used = sqlx::query(
        "UPDATE invites SET uses = uses + 1
         WHERE code = $1 AND uses < max_uses AND (expires_at IS NULL OR expires_at > now())",
    )
    .bind(code)
    .execute(conn)
    .await?;
    Ok(used.rows_affected() == 1)
}
