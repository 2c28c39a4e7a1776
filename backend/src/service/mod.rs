//! The service layer: every business rule of PVPN, with no Telegram types in it. The bot, the
//! admin CLI and the tests all call this and nothing below it.
//!
//! # For the bot
//!
//! Create one [`Service`] (`Service::new(pool, settings)`; it is cheap to `clone`, all clones share
//! the pool and metrics) and call it from handlers. Users are identified by their Telegram id
//! (`i64`); admins may also name them as `@username` ([`UserRef`]).
//!
//! | call | what it does | errors to expect |
//! |---|---|---|
//! | [`Service::register_user`] | creates the user (idempotent; refreshes the username) | `RegistrationClosed`, `InviteRequired`, `InvalidInvite` |
//! | [`Service::get_user`] | the user, with their active device count | `NotRegistered` |
//! | [`Service::set_language`] | stores `en` / `ru` | `NotRegistered` |
//! | [`Service::list_regions`] | active and draining regions with load; [`RegionView::accepts_new_devices`] says which to offer | — |
//! | [`Service::grant_device`] | places a new device, returns it with its config (once!) | `NotRegistered`, `Banned`, `AccessExpired`, `DeviceLimitReached{limit}`, `RegionNotFound`, `RegionUnavailable`, `RegionFull`, `InvalidInput` |
//! | [`Service::list_devices`] | the user's active devices with last handshake and traffic | `NotRegistered` |
//! | [`Service::get_device`] | one of the user's active devices | `NotRegistered`, `DeviceNotFound` |
//! | [`Service::revoke_device`] | revokes one of the user's devices | `NotRegistered`, `DeviceNotFound` |
//! | [`Service::reissue_device`] | new keypair, same address; returns the new config | `NotRegistered`, `Banned`, `AccessExpired`, `DeviceNotFound` |
//! | [`Service::take_expiry_notices`] | users whose access the scheduler revoked, to tell them (each once) | — |
//! | [`Service::choose_blocked_device_nudges`], [`Service::due_notices`], [`Service::close_notice`] | the bot's notices outside a conversation: devices that never connected (suggest an obfuscated region), nodes whose configuration changed | — |
//! | operators: [`Service::notify_reissue`] | `pvpnctl node notify-reissue`: tell every user with a device on the node to re-issue it | `NodeNotFound` |
//! | [`Service::is_admin`] | whether a Telegram id is in `PVPN_ADMIN_IDS` | — |
//! | admin: [`Service::find_user`], [`Service::list_users`], [`Service::ban_user`], [`Service::unban_user`], [`Service::set_device_limit`], [`Service::set_access_expiry`], [`Service::create_invite`], [`Service::request_reconcile`], [`Service::node_statuses`], [`Service::system_status`], [`Service::audit`] | see each method | `UserNotFound`, `NodeNotFound`, `RegionNotFound`, `InvalidInput` |
//! | operators: [`Service::declare_region`], [`Service::declare_node`] (idempotent, return [`Change`]), [`Service::set_region_status`], [`Service::set_node_enabled`], [`Service::list_all_regions`] | `pvpnctl region/node` | `RegionNotFound`, `NodeNotFound`, `Conflict`, `InvalidInput` |
//! | [`Service::expire_due_access`] | what the expiry scheduler runs | — |
//!
//! Every error is a [`ServiceError`] with one variant per outcome a user should hear about.
//! `Unavailable` means the database is down or overloaded ("temporarily unavailable, try later");
//! `Internal` is a bug and was already logged. Conflicts between concurrent calls (two grants
//! racing for an address, deadlocks) are retried inside and never reach the caller.
//!
//! A [`GrantedDevice`]'s `config` holds the client's private key: it is never stored, and
//! `Debug` redacts it. Send `config.expose()` to the user and drop it.
//!
//! Admin actions done through the bot should be written to the audit log with
//! [`Service::audit`] (`Actor::Telegram(admin_id)`); the admin methods that change users take an
//! `&Actor` and audit themselves.
//!
//! # Where things are
//!
//! - `users`: registration, language, lookups.
//! - `regions`: region list with load.
//! - `devices`: grant, revoke, re-issue: where a grant becomes a peer.
//! - `admin`: ban, limits, expiry, invites, reconcile, status.
//! - `notices`: what the bot owes users outside a conversation (`user_notices`).
//! - `infra`, `expiry`, `render`; `outbox` (the changes for the relay, written in the caller's
//!   transaction); [`types`], [`error`]: what the calls return.

mod admin;
mod convert;
mod devices;
pub mod error;
mod expiry;
pub mod import;
pub mod infra;
pub mod notices;
mod outbox;
pub mod profiles;
mod regions;
mod render;
pub mod types;
mod users;

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;

pub use error::ServiceError;
pub use infra::{Change, NodeDeclaration};
pub use notices::{
    NoticeBody, NoticeDelivery, NoticeKind, NoticeState, PendingNotice, ReissueNotification,
};
pub use profiles::{NewProfile, ProfileSet};
pub use types::*;

use crate::metrics::Metrics;

/// The knobs of the service layer, from [`crate::config::Config`].
#[derive(Debug, Clone)]
pub struct ServiceSettings {
    pub registration: RegistrationMode,
    pub admin_ids: Vec<i64>,
    /// Whether new devices get a WireGuard preshared key.
    pub preshared_keys: bool,
    /// How often agents send heartbeats; a node is down after 3 missed ones.
    pub heartbeat_interval: Duration,
}

impl Default for ServiceSettings {
    fn default() -> Self {
        Self {
            registration: RegistrationMode::Open,
            admin_ids: Vec::new(),
            preshared_keys: true,
            heartbeat_interval: Duration::from_secs(10),
        }
    }
}

/// The service layer. Clone it freely.
#[derive(Clone)]
pub struct Service {
    pool: PgPool,
    settings: Arc<ServiceSettings>,
    metrics: Arc<Metrics>,
}

impl Service {
    pub fn new(pool: PgPool, settings: ServiceSettings) -> Self {
        Self::with_metrics(pool, settings, Arc::new(Metrics::default()))
    }

    pub fn with_metrics(pool: PgPool, settings: ServiceSettings, metrics: Arc<Metrics>) -> Self {
        Self {
            pool,
            settings: Arc::new(settings),
            metrics,
        }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub fn settings(&self) -> &ServiceSettings {
        &self.settings
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Whether `telegram_id` is one of the configured admins (`PVPN_ADMIN_IDS`).
    pub fn is_admin(&self, telegram_id: i64) -> bool {
        self.settings.admin_ids.contains(&telegram_id)
    }
}
