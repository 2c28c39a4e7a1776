//! Messages the bot owes users outside a conversation, beyond expiry: the nudge for a device that
//! never connected (probably blocked: suggest an obfuscated region) and the notice that a node's
//! configuration changed (`pvpnctl node notify-reissue`).
//!
//! Each is a `user_notices` row, written when it is chosen (the nudge pass, the operator's
//! command) in that one statement or transaction; the bot then sends it and closes it with what
//! happened ([`Service::close_notice`]). Whether a due notice still holds is decided again when
//! the bot takes it ([`Service::due_notices`]): a device that connected or was revoked meanwhile
//! is dropped, never sent.

use std::time::Duration;

use chrono::Utc;
use pvpn_common::NodeName;
use pvpn_common::obfuscation::Protocol;
use serde::Serialize;
use serde_json::json;

use super::types::*;
use super::{Service, ServiceError, convert};
use crate::db;
use crate::db::notices::DueNotice;
pub use crate::db::values::{NoticeKind, NoticeState};

/// Devices chosen per nudge pass; the rest wait for the next pass.
const NUDGE_BATCH: i64 = 200;
/// Notices handed to the bot per call.
const DUE_BATCH: i64 = 50;
/// Attempts (network errors) before a notice is given up.
pub const MAX_SEND_ATTEMPTS: i32 = 5;

/// What a due notice tells its user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoticeBody {
    /// `device` never connected; these obfuscated regions take new devices now (never empty).
    BlockedDevice {
        device: DeviceView,
        regions: Vec<RegionView>,
    },
    /// `node`'s configuration changed; these devices of the user were issued before that.
    NodeChanged {
        node: NodeName,
        devices: Vec<DeviceView>,
    },
}

/// A notice to send now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingNotice {
    pub id: i64,
    pub telegram_id: i64,
    pub language: Language,
    pub body: NoticeBody,
}

/// How sending a notice went, as the bot reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoticeDelivery {
    Sent,
    /// Telegram refused it (the user blocked the bot, the chat is gone): never retried.
    Refused,
    /// It may not have arrived (network error): tried again later, up to
    /// [`MAX_SEND_ATTEMPTS`] times.
    Failed,
}

/// What `pvpnctl node notify-reissue` did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReissueNotification {
    pub node: NodeName,
    /// Users who will be told (one message each).
    pub users: u64,
}

impl Service {
    /// Obfuscated regions a user can get a device in right now, for nudges.
    async fn obfuscated_offers(&self) -> Result<Vec<RegionView>, ServiceError> {
        Ok(self
            .list_regions()
            .await?
            .into_iter()
            .filter(|r| r.is_obfuscated() && r.accepts_new_devices())
            .collect())
    }

    /// Chooses devices that never completed a handshake within `after` of being issued and
    /// records one nudge for each (once per device, ever), when an obfuscated region takes new
    /// devices; without one, nothing is chosen and the devices stay eligible. Returns how many.
    pub async fn choose_blocked_device_nudges(&self, after: Duration) -> Result<u64, ServiceError> {
        if self.obfuscated_offers().await?.is_empty() {
            return Ok(0);
        }
        let after_secs = i64::try_from(after.as_secs()).unwrap_or(i64::MAX);
        let mut conn = self.pool.acquire().await?;
        let chosen =
            db::notices::choose_blocked_devices(&mut conn, after_secs, NUDGE_BATCH).await?;
        if chosen > 0 {
            tracing::info!(chosen, "devices that never connected: nudges recorded");
        }
        Ok(chosen)
    }

    /// The notices to send now, oldest first. Notices that no longer hold are closed as dropped
    /// (or, a nudge with no obfuscated region left, withdrawn so it can be chosen again) and not
    /// returned.
    pub async fn due_notices(&self) -> Result<Vec<PendingNotice>, ServiceError> {
        let due = {
            let mut conn = self.pool.acquire().await?;
            db::notices::due(&mut conn, DUE_BATCH).await?
        };
        if due.is_empty() {
            return Ok(Vec::new());
        }
        let mut offers = None;
        let mut pending = Vec::new();
        for notice in due {
            let body = match self.still_holds(&notice, &mut offers).await? {
                Some(body) => body,
                None => continue,
            };
            pending.push(PendingNotice {
                id: notice.id,
                telegram_id: notice.telegram_id,
                language: notice.language,
                body,
            });
        }
        Ok(pending)
    }

    /// The body of `notice` if it still holds; otherwise closes (or withdraws) it.
    async fn still_holds(
        &self,
        notice: &DueNotice,
        offers: &mut Option<Vec<RegionView>>,
    ) -> Result<Option<NoticeBody>, ServiceError> {
        let mut conn = self.pool.acquire().await?;
        let user_can_use = notice.user_status == UserStatus::Active
            && notice.access_expires_at.is_none_or(|at| at > Utc::now());
        let body = match (notice.kind, notice.device_id, &notice.node) {
            _ if !user_can_use => None,
            (NoticeKind::BlockedDevice, Some(device_id), _) => {
                let device = db::devices::get(&mut conn, device_id).await?;
                let never_connected = device.as_ref().is_some_and(|d| {
                    d.status == DeviceStatus::Active
                        && d.last_handshake_at.is_none()
                        && d.protocol == Protocol::WireGuard
                });
                match device.filter(|_| never_connected) {
                    None => None,
                    Some(device) => {
                        if offers.is_none() {
                            *offers = Some(self.obfuscated_offers().await?);
                        }
                        let regions = offers.clone().unwrap_or_default();
                        if regions.is_empty() {
                            db::notices::withdraw(&mut conn, notice.id).await?;
                            return Ok(None);
                        }
                        Some(NoticeBody::BlockedDevice {
                            device: convert::device(&device),
                            regions,
                        })
                    }
                }
            }
            (NoticeKind::NodeChanged, _, Some(node)) => {
                let rows = db::devices::issued_on_node_before(
                    &mut conn,
                    notice.user_id,
                    node.as_str(),
                    notice.created_at,
                )
                .await?;
                (!rows.is_empty()).then(|| NoticeBody::NodeChanged {
                    node: node.clone(),
                    devices: rows.iter().map(convert::device).collect(),
                })
            }
            // The schema's checks make this impossible; dropping it is the safe answer.
            _ => None,
        };
        if body.is_none() {
            db::notices::close(&mut conn, notice.id, NoticeState::Dropped).await?;
        }
        Ok(body)
    }

    /// Records how sending notice `id` went; returns its state afterwards (`Due` when it will be
    /// tried again).
    pub async fn close_notice(
        &self,
        id: i64,
        delivery: NoticeDelivery,
    ) -> Result<NoticeState, ServiceError> {
        let mut conn = self.pool.acquire().await?;
        let state = match delivery {
            NoticeDelivery::Sent => NoticeState::Sent,
            NoticeDelivery::Refused => NoticeState::Failed,
            NoticeDelivery::Failed => {
                return Ok(db::notices::count_attempt(&mut conn, id, MAX_SEND_ATTEMPTS).await?);
            }
        };
        db::notices::close(&mut conn, id, state).await?;
        Ok(state)
    }

    /// `pvpnctl node notify-reissue`: every user with an active device on `node` will be told
    /// by the bot, once, that the node's configuration changed and their devices there need new
    /// configs. A user still waiting for such a message about this node gets no second one.
    pub async fn notify_reissue(
        &self,
        actor: &Actor,
        node: &NodeName,
    ) -> Result<ReissueNotification, ServiceError> {
        let mut tx = self.pool.begin().await?;
        if db::nodes::get(&mut tx, node.as_str()).await?.is_none() {
            return Err(ServiceError::NodeNotFound);
        }
        let users = db::notices::add_node_changed(&mut tx, node.as_str()).await?;
        db::audit::insert(
            &mut tx,
            &actor.to_string(),
            "node.notify_reissue",
            Some(node.as_str()),
            &json!({ "users": users }),
        )
        .await?;
        tx.commit().await?;
        tracing::info!(%node, users, "users will be told to re-issue their devices");
        Ok(ReissueNotification {
            node: node.clone(),
            users,
        })
    }
}
