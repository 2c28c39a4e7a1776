//! The values the service layer hands out: users, regions, devices, admin views. Plain data with
//! `Serialize` (for `pvpnctl --json`) except [`GrantedDevice`], which holds a private key.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use pvpn_common::client_config::RenderedConfig;
use pvpn_common::obfuscation::Protocol;
use pvpn_common::{NodeName, PublicKey, RegionCode};
use serde::{Deserialize, Serialize};

use super::ServiceError;
pub use crate::db::values::{
    DeviceStatus, Language, NodeState, RegionStatus, RevokeReason, UnknownValue, UserStatus,
};

/// Who may register. From `PVPN_REGISTRATION`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RegistrationMode {
    #[default]
    Open,
    Invite,
    Closed,
}

impl FromStr for RegistrationMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "open" => Ok(Self::Open),
            "invite" => Ok(Self::Invite),
            "closed" => Ok(Self::Closed),
            _ => Err(format!("expected open, invite or closed, got {s:?}")),
        }
    }
}

/// One registered user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct User {
    pub telegram_id: i64,
    pub username: Option<String>,
    pub language: Language,
    pub status: UserStatus,
    pub device_limit: u32,
    /// `None`: access never expires.
    pub access_expires_at: Option<DateTime<Utc>>,
    pub active_devices: u32,
    pub created_at: DateTime<Utc>,
}

impl User {
    pub fn is_expired(&self, now: DateTime<Utc>) -> bool {
        self.access_expires_at.is_some_and(|at| at <= now)
    }
}

/// What `register_user` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    pub user: User,
    /// `false` when the user was already registered (the call is idempotent).
    pub created: bool,
}

/// A user as an admin names them: `12345` (Telegram id) or `@name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserRef {
    TelegramId(i64),
    Username(String),
}

impl FromStr for UserRef {
    type Err = ServiceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if let Some(name) = s.strip_prefix('@') {
            let ok = (1..=64).contains(&name.len())
                && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
            return if ok {
                Ok(UserRef::Username(name.to_string()))
            } else {
                Err(ServiceError::InvalidInput(
                    "a username is @ followed by letters, digits or _".into(),
                ))
            };
        }
        s.parse::<i64>()
            .ok()
            .filter(|id| *id > 0)
            .map(UserRef::TelegramId)
            .ok_or_else(|| {
                ServiceError::InvalidInput("expected a Telegram user id or @username".into())
            })
    }
}

impl fmt::Display for UserRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UserRef::TelegramId(id) => write!(f, "{id}"),
            UserRef::Username(name) => write!(f, "@{name}"),
        }
    }
}

/// A region with its load, for the region picker and admins.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RegionView {
    pub code: RegionCode,
    pub display_name: String,
    pub status: RegionStatus,
    /// Active devices on the region's nodes.
    pub devices: u32,
    /// Sum of the capacities of the region's active nodes.
    pub capacity: u32,
    /// Active nodes (status active).
    pub active_nodes: u32,
    /// What its active nodes speak.
    pub protocol: RegionProtocol,
}

/// What a region's active nodes speak. A region is obfuscated only when every active node speaks
/// AmneziaWG: a grant lands on any active node, so a mixed region cannot promise obfuscation and
/// is offered (and suggested) as a plain one. A region without active nodes promises nothing:
/// `WireGuard`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum RegionProtocol {
    #[serde(rename = "wireguard")]
    WireGuard,
    #[serde(rename = "amneziawg")]
    AmneziaWg,
    #[serde(rename = "mixed")]
    Mixed,
}

impl RegionProtocol {
    /// The region's protocol from its active nodes' protocols.
    pub fn of_active_nodes(protocols: impl IntoIterator<Item = Protocol>) -> Self {
        let (mut plain, mut obfuscated) = (false, false);
        for protocol in protocols {
            match protocol {
                Protocol::WireGuard => plain = true,
                Protocol::AmneziaWg => obfuscated = true,
            }
        }
        match (plain, obfuscated) {
            (false, true) => RegionProtocol::AmneziaWg,
            (true, true) => RegionProtocol::Mixed,
            _ => RegionProtocol::WireGuard,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RegionProtocol::WireGuard => "wireguard",
            RegionProtocol::AmneziaWg => "amneziawg",
            RegionProtocol::Mixed => "mixed",
        }
    }
}

impl RegionView {
    /// Whether a new device may be granted here right now (active, a node, room left).
    pub fn accepts_new_devices(&self) -> bool {
        self.status == RegionStatus::Active && self.active_nodes > 0 && self.devices < self.capacity
    }

    /// Whether every device granted here speaks AmneziaWG (see [`RegionProtocol`]).
    pub fn is_obfuscated(&self) -> bool {
        self.protocol == RegionProtocol::AmneziaWg
    }

    /// Load in percent (0 when there is no capacity).
    pub fn load_percent(&self) -> u32 {
        if self.capacity == 0 {
            0
        } else {
            (u64::from(self.devices) * 100 / u64::from(self.capacity)) as u32
        }
    }
}

/// One of a user's devices, without secrets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeviceView {
    pub id: i64,
    pub name: String,
    pub region: RegionCode,
    pub region_name: String,
    pub node: NodeName,
    /// What its node speaks: its config is for a WireGuard or an AmneziaWG app.
    pub protocol: Protocol,
    pub address: Ipv4Addr,
    pub public_key: PublicKey,
    pub status: DeviceStatus,
    pub revoke_reason: Option<RevokeReason>,
    pub created_at: DateTime<Utc>,
    pub reissued_at: Option<DateTime<Utc>>,
    /// The device still uses the config of the server it was imported from (`pvpnctl import`):
    /// PVPN never had its private key, so there is no config to show, and none is needed.
    pub imported_config: bool,
    pub last_handshake_at: Option<DateTime<Utc>>,
    /// Cumulative bytes received by the node from this device.
    pub rx_bytes: u64,
    /// Cumulative bytes sent by the node to this device.
    pub tx_bytes: u64,
}

/// A device counts as connected when its last handshake is this recent (WireGuard re-handshakes
/// every two minutes while a tunnel is in use).
pub const CONNECTED_WITHIN: chrono::TimeDelta = chrono::TimeDelta::seconds(180);

impl DeviceView {
    /// Whether the device is connected now: its last handshake is recent ([`CONNECTED_WITHIN`]).
    /// The one definition, for every place that shows it.
    pub fn is_connected(&self, now: DateTime<Utc>) -> bool {
        self.last_handshake_at
            .is_some_and(|at| now - at <= CONNECTED_WITHIN)
    }
}

/// A device just granted or re-issued, with its config. The config holds the private key: send it
/// to the user and drop it; it cannot be fetched again.
#[derive(Debug)]
pub struct GrantedDevice {
    pub device: DeviceView,
    pub config: RenderedConfig,
}

/// Who did something, for the audit log: `telegram:<id>`, `cli:<user>`, `system:<task>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    Telegram(i64),
    Cli(String),
    System(&'static str),
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Actor::Telegram(id) => write!(f, "telegram:{id}"),
            Actor::Cli(user) => write!(f, "cli:{user}"),
            Actor::System(task) => write!(f, "system:{task}"),
        }
    }
}

/// An invite code created by an admin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Invite {
    pub code: String,
    pub max_uses: u32,
    pub uses: u32,
    pub expires_at: Option<DateTime<Utc>>,
}

/// What a ban did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BanOutcome {
    pub user: User,
    pub revoked_devices: u32,
}

/// A user whose access the expiry scheduler revoked, who has not been told yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExpiryNotice {
    pub telegram_id: i64,
    pub language: Language,
    pub expired_at: DateTime<Utc>,
}

/// Where a reconcile request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReconcileTarget {
    Node(NodeName),
    Region(RegionCode),
}

/// A node as admins see it: configuration, delivery state, and what its agent last reported.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodeStatus {
    pub name: NodeName,
    pub region: RegionCode,
    pub status: NodeState,
    pub endpoint: String,
    pub public_key: String,
    pub listen_port: u16,
    pub subnet: String,
    pub dns: Vec<String>,
    pub capacity: u32,
    pub devices: u32,
    /// Desired-state revision in PostgreSQL.
    pub revision: u64,
    /// Highest revision the relay published to Redis.
    pub published_revision: u64,
    /// What the agent last said it applied.
    pub applied_revision: u64,
    pub last_heartbeat_at: Option<DateTime<Utc>>,
    /// Seconds since the last heartbeat, if any.
    pub heartbeat_age_secs: Option<i64>,
    /// `false` when no heartbeat arrived within 3 heartbeat intervals.
    pub up: bool,
    pub agent_version: Option<String>,
    pub peer_count: Option<u32>,
    /// The agent's last `ReconcileReport` (drift), as JSON.
    pub last_reconcile: Option<serde_json::Value>,
}

/// The whole system at a glance (`pvpnctl status`, the bot's admin status).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SystemStatus {
    pub users: u64,
    pub active_devices: u64,
    /// Outbox rows not yet published to Redis.
    pub outbox_backlog: u64,
    /// Age of the oldest unpublished outbox row.
    pub oldest_unpublished_secs: Option<i64>,
    pub nodes: Vec<NodeStatus>,
}
