//! Admin operations on users and the system: ban, limits, expiry, invites, reconcile requests,
//! status, and the audit log every admin action is written to.

use chrono::{DateTime, Duration as ChronoDuration, Utc};
use pvpn_common::RegionCode;
use rand::Rng;
use rand::distributions::Alphanumeric;
use serde_json::json;
use sqlx::Connection;

use super::devices::revoke_all_locked;
use super::error::retry;
use super::types::*;
use super::users::lock_user_ref;
use super::{Service, ServiceError, convert, outbox};
use crate::db;

/// Highest device limit an admin may set (the schema's bound).
pub const MAX_DEVICE_LIMIT: u32 = 100;

impl Service {
    /// Appends an entry to the audit log. `action` is a short verb such as `user.ban`; `details`
    /// any JSON (never secrets).
    pub async fn audit(
        &self,
        actor: &Actor,
        action: &str,
        target: Option<&str>,
        details: serde_json::Value,
    ) -> Result<(), ServiceError> {
        if action.is_empty() || action.len() > 64 {
            return Err(ServiceError::InvalidInput(
                "audit action has 1 to 64 characters".into(),
            ));
        }
        let mut conn = self.pool.acquire().await?;
        db::audit::insert(&mut conn, &actor.to_string(), action, target, &details).await?;
        Ok(())
    }

    /// Bans a user and revokes every device they have.
    pub async fn ban_user(
        &self,
        actor: &Actor,
        user: &UserRef,
    ) -> Result<BanOutcome, ServiceError> {
        retry(|| async {
            let mut conn = self.pool.acquire().await?;
            let mut tx = conn.begin().await?;
            let row = lock_user_ref(&mut tx, user).await?;
            db::users::set_status(&mut tx, row.id, UserStatus::Banned).await?;
            let revoked = revoke_all_locked(&mut tx, row.id, RevokeReason::Banned).await?;
            let target = row.telegram_id.to_string();
            db::audit::insert(
                &mut tx,
                &actor.to_string(),
                "user.ban",
                Some(&target),
                &json!({ "revoked_devices": revoked }),
            )
            .await?;
            let row = db::users::by_telegram_id(&mut tx, row.telegram_id)
                .await?
                .ok_or(ServiceError::UserNotFound)?;
            tx.commit().await?;
            outbox::wake_relay(&mut conn).await;
            tracing::info!(%actor, telegram_id = row.telegram_id, revoked, "user banned");
            Ok(BanOutcome {
                user: convert::user(&row),
                revoked_devices: revoked,
            })
        })
        .await
    }

    /// Lifts a ban. Revoked devices stay revoked; the user can create new ones.
    pub async fn unban_user(&self, actor: &Actor, user: &UserRef) -> Result<User, ServiceError> {
        self.update_user(actor, user, "user.unban", json!({}), |tx, id| {
            Box::pin(async move { db::users::set_status(tx, id, UserStatus::Active).await })
        })
        .await
    }

    /// Sets how many active devices the user may have (0 to `MAX_DEVICE_LIMIT`, 100). Devices above
    /// a lowered limit are kept; new ones are refused.
    pub async fn set_device_limit(
        &self,
        actor: &Actor,
        user: &UserRef,
        limit: u32,
    ) -> Result<User, ServiceError> {
        if limit > MAX_DEVICE_LIMIT {
            return Err(ServiceError::InvalidInput(format!(
                "the device limit is 0 to {MAX_DEVICE_LIMIT}"
            )));
        }
        let limit_i32 = limit as i32;
        self.update_user(
            actor,
            user,
            "user.set_limit",
            json!({ "limit": limit }),
            move |tx, id| {
                Box::pin(async move { db::users::set_device_limit(tx, id, limit_i32).await })
            },
        )
        .await
    }

    /// Sets (or with `None` removes) the moment the user's access ends. The expiry scheduler
    /// revokes their devices once it passes.
    pub async fn set_access_expiry(
        &self,
        actor: &Actor,
        user: &UserRef,
        expires_at: Option<DateTime<Utc>>,
    ) -> Result<User, ServiceError> {
        self.update_user(
            actor,
            user,
            "user.set_expiry",
            json!({ "expires_at": expires_at }),
            move |tx, id| {
                Box::pin(async move { db::users::set_access_expiry(tx, id, expires_at).await })
            },
        )
        .await
    }

    async fn update_user<F>(
        &self,
        actor: &Actor,
        user: &UserRef,
        action: &str,
        details: serde_json::Value,
        change: F,
    ) -> Result<User, ServiceError>
    where
        F: for<'c> Fn(
            &'c mut sqlx::PgConnection,
            i64,
        ) -> std::pin::Pin<
            Box<dyn std::future::Future<Output = sqlx::Result<()>> + Send + 'c>,
        >,
    {
        retry(|| async {
            let mut tx = self.pool.begin().await?;
            let row = lock_user_ref(&mut tx, user).await?;
            change(&mut tx, row.id).await?;
            let target = row.telegram_id.to_string();
            db::audit::insert(&mut tx, &actor.to_string(), action, Some(&target), &details).await?;
            let row = db::users::by_telegram_id(&mut tx, row.telegram_id)
                .await?
                .ok_or(ServiceError::UserNotFound)?;
            tx.commit().await?;
            tracing::info!(%actor, action, telegram_id = row.telegram_id, "user updated");
            Ok(convert::user(&row))
        })
        .await
    }

    /// Creates an invite code usable `max_uses` times, optionally expiring after `valid_for`.
    pub async fn create_invite(
        &self,
        actor: &Actor,
        max_uses: u32,
        valid_for: Option<ChronoDuration>,
    ) -> Result<Invite, ServiceError> {
        if !(1..=100_000).contains(&max_uses) {
            return Err(ServiceError::InvalidInput(
                "an invite has 1 to 100000 uses".into(),
            ));
        }
        if valid_for.is_some_and(|d| d <= ChronoDuration::zero()) {
            return Err(ServiceError::InvalidInput(
                "an invite must be valid for some time".into(),
            ));
        }
        let expires_at = valid_for.map(|d| Utc::now() + d);
        let code: String = rand::thread_rng()
            .sample_iter(&Alphanumeric)
            .take(16)
            .map(char::from)
            .collect();
        retry(|| async {
            let mut tx = self.pool.begin().await?;
            db::invites::insert(
                &mut tx,
                &code,
                &actor.to_string(),
                max_uses as i32,
                expires_at,
            )
            .await?;
            db::audit::insert(
                &mut tx,
                &actor.to_string(),
                "invite.create",
                Some(&code),
                &json!({ "max_uses": max_uses, "expires_at": expires_at }),
            )
            .await?;
            tx.commit().await?;
            Ok(())
        })
        .await?;
        Ok(Invite {
            code,
            max_uses,
            uses: 0,
            expires_at,
        })
    }

    /// Asks a node, or every node of a region, to reconcile its interface with its snapshot.
    /// Returns the request id the agents echo back in their `ReconcileReport`.
    pub async fn request_reconcile(
        &self,
        actor: &Actor,
        target: &ReconcileTarget,
    ) -> Result<String, ServiceError> {
        let request_id = uuid::Uuid::new_v4().to_string();
        let mut conn = self.pool.acquire().await?;
        let mut tx = conn.begin().await?;
        let (region, node, target_text) = match target {
            ReconcileTarget::Node(node) => {
                let row = db::nodes::get(&mut tx, node.as_str())
                    .await?
                    .ok_or(ServiceError::NodeNotFound)?;
                (row.region, Some(node), format!("node:{node}"))
            }
            ReconcileTarget::Region(region) => {
                db::regions::get(&mut tx, region.as_str())
                    .await?
                    .ok_or(ServiceError::RegionNotFound)?;
                (region.clone(), None, format!("region:{region}"))
            }
        };
        outbox::reconcile(&mut tx, &region, node, &request_id).await?;
        db::audit::insert(
            &mut tx,
            &actor.to_string(),
            "reconcile.request",
            Some(&target_text),
            &json!({ "request_id": request_id }),
        )
        .await?;
        tx.commit().await?;
        outbox::wake_relay(&mut conn).await;
        Ok(request_id)
    }

    /// Every node (or one region's), with what its agent last reported.
    pub async fn node_statuses(
        &self,
        region: Option<&RegionCode>,
    ) -> Result<Vec<NodeStatus>, ServiceError> {
        let mut conn = self.pool.acquire().await?;
        let rows = db::nodes::list(&mut conn, region.map(RegionCode::as_str)).await?;
        rows.iter()
            .map(|r| convert::node_status(r, self.settings.heartbeat_interval))
            .collect()
    }

    /// Users, devices, outbox backlog and every node's state.
    pub async fn system_status(&self) -> Result<SystemStatus, ServiceError> {
        let nodes = self.node_statuses(None).await?;
        let mut conn = self.pool.acquire().await?;
        let users = db::users::count(&mut conn).await?;
        let devices = db::devices::count_active(&mut conn).await?;
        let (backlog, oldest) = db::outbox::backlog(&mut conn).await?;
        Ok(SystemStatus {
            users: users.max(0).unsigned_abs(),
            active_devices: devices.max(0).unsigned_abs(),
            outbox_backlog: backlog.max(0).unsigned_abs(),
            oldest_unpublished_secs: oldest,
            nodes,
        })
    }
}
