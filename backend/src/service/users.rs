//! Users: registration (open, invite-only or closed), language, lookups, expiry notices.

use sqlx::PgConnection;

use super::error::retry;
use super::types::*;
use super::{Service, ServiceError, convert};
use crate::db;
use crate::db::users::UserRow;

/// Telegram usernames are 5-32 of `[A-Za-z0-9_]`; anything else is not stored (it is only used
/// for admins' `@name` lookups, so a strange one is dropped rather than failing registration).
fn clean_username(username: Option<&str>) -> Option<&str> {
    username.map(|u| u.trim_start_matches('@')).filter(|u| {
        (1..=64).contains(&u.len()) && u.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    })
}

impl Service {
    /// Registers a Telegram user, or returns the existing registration (refreshing the stored
    /// username). Registration mode decides who may join: `open` lets everyone in, `invite` needs
    /// a valid `invite_code` (consumed once), `closed` admits nobody new. Admins may always join.
    pub async fn register_user(
        &self,
        telegram_id: i64,
        username: Option<&str>,
        language: Language,
        invite_code: Option<&str>,
    ) -> Result<Registration, ServiceError> {
        let username = clean_username(username);
        retry(|| self.try_register(telegram_id, username, language, invite_code)).await
    }

    async fn try_register(
        &self,
        telegram_id: i64,
        username: Option<&str>,
        language: Language,
        invite_code: Option<&str>,
    ) -> Result<Registration, ServiceError> {
        let mut tx = self.pool.begin().await?;
        if let Some(row) = db::users::lock_by_telegram_id(&mut tx, telegram_id).await? {
            if username.is_some() {
                db::users::set_username(&mut tx, row.id, username).await?;
            }
            let row = reload(&mut tx, telegram_id).await?;
            tx.commit().await?;
            return Ok(Registration {
                user: convert::user(&row),
                created: false,
            });
        }
        let mut used_invite = None;
        if !self.is_admin(telegram_id) {
            match self.settings.registration {
                RegistrationMode::Open => {}
                RegistrationMode::Closed => return Err(ServiceError::RegistrationClosed),
                RegistrationMode::Invite => {
                    let code = invite_code
                        .map(str::trim)
                        .filter(|c| !c.is_empty())
                        .ok_or(ServiceError::InviteRequired)?;
                    if !db::invites::consume(&mut tx, code).await? {
                        return Err(ServiceError::InvalidInvite);
                    }
                    used_invite = Some(code);
                }
            }
        }
        db::users::insert(&mut tx, telegram_id, username, language, used_invite).await?;
        let row = reload(&mut tx, telegram_id).await?;
        tx.commit().await?;
        tracing::info!(
            telegram_id,
            invite = used_invite.is_some(),
            "user registered"
        );
        Ok(Registration {
            user: convert::user(&row),
            created: true,
        })
    }

    /// The registered user with this Telegram id.
    pub async fn get_user(&self, telegram_id: i64) -> Result<User, ServiceError> {
        let mut conn = self.pool.acquire().await?;
        let row = db::users::by_telegram_id(&mut conn, telegram_id)
            .await?
            .ok_or(ServiceError::NotRegistered)?;
        Ok(convert::user(&row))
    }

    pub async fn set_language(
        &self,
        telegram_id: i64,
        language: Language,
    ) -> Result<User, ServiceError> {
        retry(|| async {
            let mut tx = self.pool.begin().await?;
            let row = db::users::lock_by_telegram_id(&mut tx, telegram_id)
                .await?
                .ok_or(ServiceError::NotRegistered)?;
            db::users::set_language(&mut tx, row.id, language).await?;
            let row = reload(&mut tx, telegram_id).await?;
            tx.commit().await?;
            Ok(convert::user(&row))
        })
        .await
    }

    /// Admin lookup by id or `@username`.
    pub async fn find_user(&self, user: &UserRef) -> Result<User, ServiceError> {
        let mut tx = self.pool.begin().await?;
        let row = lock_user_ref(&mut tx, user).await?;
        tx.commit().await?;
        Ok(convert::user(&row))
    }

    /// Every user, oldest first.
    pub async fn list_users(&self) -> Result<Vec<User>, ServiceError> {
        let mut conn = self.pool.acquire().await?;
        let rows = db::users::list(&mut conn).await?;
        Ok(rows.iter().map(convert::user).collect())
    }

    /// Users whose devices the expiry scheduler revoked and who have not been told yet. Each
    /// notice is returned once: the call clears them.
    pub async fn take_expiry_notices(&self) -> Result<Vec<ExpiryNotice>, ServiceError> {
        let mut conn = self.pool.acquire().await?;
        let rows = db::users::take_expiry_notices(&mut conn).await?;
        Ok(rows
            .into_iter()
            .map(|(telegram_id, language, expired_at)| ExpiryNotice {
                telegram_id,
                language,
                expired_at,
            })
            .collect())
    }
}

async fn reload(conn: &mut PgConnection, telegram_id: i64) -> Result<UserRow, ServiceError> {
    db::users::by_telegram_id(conn, telegram_id)
        .await?
        .ok_or_else(|| ServiceError::Internal("user vanished inside its transaction".into()))
}

/// Locks the user an admin named; `UserNotFound` if there is none.
pub(crate) async fn lock_user_ref(
    conn: &mut PgConnection,
    user: &UserRef,
) -> Result<UserRow, ServiceError> {
    let row = match user {
        UserRef::TelegramId(id) => db::users::lock_by_telegram_id(conn, *id).await?,
        UserRef::Username(name) => db::users::lock_by_username(conn, name).await?,
    };
    row.ok_or(ServiceError::UserNotFound)
}
