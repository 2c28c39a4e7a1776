//! Access expiry: revoking the devices of users whose `access_expires_at` has passed, and
//! remembering to tell them ([`Service::take_expiry_notices`]).

use chrono::Utc;
use serde_json::json;
use sqlx::Connection;

use super::devices::revoke_all_locked;
use super::error::retry;
use super::{Actor, RevokeReason, Service, ServiceError};
use crate::db;

/// Users read per query.
const BATCH: i64 = 100;
/// Batches per call; anything left waits for the scheduler's next tick.
const MAX_BATCHES: usize = 100;

impl Service {
    /// Revokes every device of every user whose access has expired, marks them to be told, and
    /// returns how many devices were revoked. Called by [`crate::scheduler`].
    pub async fn expire_due_access(&self) -> Result<u32, ServiceError> {
        let mut revoked_total = 0;
        // Batch after batch until none is due (bounded, so one call cannot run forever).
        for _ in 0..MAX_BATCHES {
            let due = {
                let mut conn = self.pool.acquire().await?;
                db::users::expired_with_devices(&mut conn, BATCH).await?
            };
            let full_batch = due.len() as i64 == BATCH;
            for telegram_id in due {
                revoked_total += retry(|| self.expire_user(telegram_id)).await?;
            }
            if !full_batch {
                break;
            }
        }
        if revoked_total > 0 {
            self.metrics.expired.inc_by(u64::from(revoked_total));
        }
        Ok(revoked_total)
    }

    async fn expire_user(&self, telegram_id: i64) -> Result<u32, ServiceError> {
        let mut conn = self.pool.acquire().await?;
        let mut tx = conn.begin().await?;
        let Some(user) = db::users::lock_by_telegram_id(&mut tx, telegram_id).await? else {
            return Ok(0);
        };
        // Re-checked under the lock: an admin may have extended access meanwhile.
        if user.access_expires_at.is_none_or(|at| at > Utc::now()) {
            return Ok(0);
        }
        let revoked = revoke_all_locked(&mut tx, user.id, RevokeReason::Expired).await?;
        db::users::mark_expiry_notice_due(&mut tx, user.id).await?;
        db::audit::insert(
            &mut tx,
            &Actor::System("expiry").to_string(),
            "user.expire",
            Some(&telegram_id.to_string()),
            &json!({ "revoked_devices": revoked }),
        )
        .await?;
        tx.commit().await?;
        super::outbox::wake_relay(&mut conn).await;
        tracing::info!(telegram_id, revoked, "access expired: devices revoked");
        Ok(revoked)
    }
}
