//! The append-only `audit_log`: who changed what, for admins reading back later.

use sqlx::PgConnection;

pub async fn insert(
    conn: &mut PgConnection,
    actor: &str,
    action: &str,
    target: Option<&str>,
    details: &serde_json::Value,
) -> sqlx::Result<()> {
    sqlx::query("INSERT INTO audit_log (actor, action, target, details) VALUES ($1, $2, $3, $4)")
        .bind(actor)
        .bind(action)
        .bind(target)
        .bind(sqlx::types::Json(details))
        .execute(conn)
        .await?;
    Ok(())
}
