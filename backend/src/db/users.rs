//! Queries on `users`.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use super::values::{Language, UserStatus};

/// One `users` row plus its number of active devices.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct UserRow {
    pub id: i64,
    pub telegram_id: i64,
    pub username: Option<String>,
    pub language: Language,
    pub status: UserStatus,
    pub device_limit: i32,
    pub access_expires_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub active_devices: i64,
}

macro_rules! select_user {
    () => {
        "SELECT u.id, u.telegram_id, u.username, u.language, u.status, u.device_limit,
                u.access_expires_at, u.created_at,
                (SELECT count(*) FROM devices d WHERE d.user_id = u.id AND d.status = 'active')
                    AS active_devices
         FROM users u "
    };
}

pub async fn by_telegram_id(
    conn: &mut PgConnection,
    telegram_id: i64,
) -> sqlx::Result<Option<UserRow>> {
    sqlx::query_as(concat!(select_user!(), "WHERE u.telegram_id = $1"))
        .bind(telegram_id)
        .fetch_optional(conn)
        .await
}

/// Locks the user's row until the transaction ends: every change of a user's devices takes this
/// lock first, so device-limit checks cannot race.
///
/// The lock and the read are two statements on purpose: under READ COMMITTED, a `SELECT ... FOR
/// UPDATE` that waited for the lock re-reads the locked row but evaluates sub-queries (the
/// device count) in its old snapshot; a fresh statement after the lock sees every commit before.
pub async fn lock_by_telegram_id(
    conn: &mut PgConnection,
    telegram_id: i64,
) -> sqlx::Result<Option<UserRow>> {
    let locked: Option<i64> =
        sqlx::query_scalar("SELECT id FROM users WHERE telegram_id = $1 FOR UPDATE")
            .bind(telegram_id)
            .fetch_optional(&mut *conn)
            .await?;
    match locked {
        Some(_) => by_telegram_id(conn, telegram_id).await,
        None => Ok(None),
    }
}

/// Case-insensitive `@username` lookup, locked like [`lock_by_telegram_id`]. Usernames are not
/// unique in our table (Telegram names move between accounts); the most recently updated holder
/// wins.
pub async fn lock_by_username(
    conn: &mut PgConnection,
    username: &str,
) -> sqlx::Result<Option<UserRow>> {
    let locked: Option<i64> = sqlx::query_scalar(
        "SELECT telegram_id FROM users WHERE lower(username) = lower($1)
         ORDER BY updated_at DESC LIMIT 1 FOR UPDATE",
    )
    .bind(username)
    .fetch_optional(&mut *conn)
    .await?;
    match locked {
        Some(telegram_id) => by_telegram_id(conn, telegram_id).await,
        None => Ok(None),
    }
}

pub async fn list(conn: &mut PgConnection) -> sqlx::Result<Vec<UserRow>> {
    sqlx::query_as(concat!(select_user!(), "ORDER BY u.id"))
        .fetch_all(conn)
        .await
}

pub async fn insert(
    conn: &mut PgConnection,
    telegram_id: i64,
    username: Option<&str>,
    language: Language,
    invite_code: Option<&str>,
) -> sqlx::Result<i64> {
    sqlx::query_scalar(
        "INSERT INTO users (telegram_id, username, language, invite_code)
         VALUES ($1, $2, $3, $4) RETURNING id",
    )
    .bind(telegram_id)
    .bind(username)
    .bind(language)
    .bind(invite_code)
    .fetch_one(conn)
    .await
}

pub async fn set_username(
    conn: &mut PgConnection,
    id: i64,
    username: Option<&str>,
) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE users SET username = $2, updated_at = now()
         WHERE id = $1 AND username IS DISTINCT FROM $2",
    )
    .bind(id)
    .bind(username)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn set_language(
    conn: &mut PgConnection,
    id: i64,
    language: Language,
) -> sqlx::Result<()> {
    sqlx::query("UPDATE users SET language = $2, updated_at = now() WHERE id = $1")
        .bind(id)
        .bind(language)
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn set_status(conn: &mut PgConnection, id: i64, status: UserStatus) -> sqlx::Result<()> {
    sqlx::query("UPDATE users SET status = $2, updated_at = now() WHERE id = $1")
        .bind(id)
        .bind(status)
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn set_device_limit(conn: &mut PgConnection, id: i64, limit: i32) -> sqlx::Result<()> {
    sqlx::query("UPDATE users SET device_limit = $2, updated_at = now() WHERE id = $1")
        .bind(id)
        .bind(limit)
        .execute(conn)
        .await?;
    Ok(())
}

/// Sets or clears the expiry; a pending "your access expired" notice is dropped with it.
pub async fn set_access_expiry(
    conn: &mut PgConnection,
    id: i64,
    expires_at: Option<DateTime<Utc>>,
) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE users SET access_expires_at = $2, expiry_notice_due = false, updated_at = now()
         WHERE id = $1",
    )
    .bind(id)
    .bind(expires_at)
    .execute(conn)
    .await?;
    Ok(())
}

/// Ids of active users whose access has expired and who still hold active devices.
pub async fn expired_with_devices(conn: &mut PgConnection, limit: i64) -> sqlx::Result<Vec<i64>> {
    sqlx::query_scalar(
        "SELECT u.telegram_id FROM users u
         WHERE u.access_expires_at <= now()
           AND EXISTS (SELECT 1 FROM devices d WHERE d.user_id = u.id AND d.status = 'active')
         ORDER BY u.access_expires_at LIMIT $1",
    )
    .bind(limit)
    .fetch_all(conn)
    .await
}

pub async fn mark_expiry_notice_due(conn: &mut PgConnection, id: i64) -> sqlx::Result<()> {
    sqlx::query("UPDATE users SET expiry_notice_due = true, updated_at = now() WHERE id = $1")
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Clears and returns the pending expiry notices: `(telegram_id, language, expired_at)`.
pub async fn take_expiry_notices(
    conn: &mut PgConnection,
) -> sqlx::Result<Vec<(i64, Language, DateTime<Utc>)>> {
    sqlx::query_as(
        "UPDATE users SET expiry_notice_due = false, updated_at = now()
         WHERE expiry_notice_due AND access_expires_at IS NOT NULL
         RETURNING telegram_id, language, access_expires_at",
    )
    .fetch_all(conn)
    .await
}

pub async fn count(conn: &mut PgConnection) -> sqlx::Result<i64> {
    sqlx::query_scalar("SELECT count(*) FROM users")
        .fetch_one(conn)
        .await
}
