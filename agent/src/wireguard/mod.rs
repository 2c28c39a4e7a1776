//! The agent's view of a WireGuard interface: read its peers, apply a batch of peer changes.
//!
//! The [`WireGuard`] trait is the seam between the agent's logic (diffing, revisions, chunking)
//! and the interface. [`control::ControlWireGuard`] implements it with `wireguard-control`
//! (netlink on a real node, the UAPI socket of `wireguard-go` in tests);
//! [`amneziawg::AmneziaWireGuard`] implements it for kernel AmneziaWG over its own netlink family,
//! including the obfuscation parameters; [`memory::MemoryWireGuard`] implements it in memory so
//! the logic can be unit-tested.
//!
//! Both implementations are synchronous: async callers go through `spawn_blocking`.

pub mod amneziawg;
pub mod control;
pub mod memory;

use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use pvpn_common::obfuscation::{AwgProfile, Protocol};
use pvpn_common::wire::PeerStats;
use pvpn_common::{PeerSpec, PublicKey};

/// Most peer changes sent to the interface in one device update. Kernel netlink messages are
/// limited to a page-ish size (defguard hit "packet larger than maximum size 12288" with one huge
/// update); `wireguard-control` packs a device update into several messages, and this bound keeps
/// each update, its memory and the time it holds the interface small as well.
pub const MAX_CHANGES_PER_UPDATE: usize = 256;

/// One peer as the interface holds it: its configuration and its counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfacePeer {
    /// Allowed IPs in the interface's order; preshared key and keepalive `None` when unset.
    pub spec: PeerSpec,
    /// Where the peer was last seen; owned by WireGuard, never set by the agent.
    pub endpoint: Option<SocketAddr>,
    pub last_handshake: Option<SystemTime>,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
}

/// One change to the interface's peer list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerChange {
    /// Make the peer exactly `spec`: add it, or update allowed IPs (replacing them), preshared key
    /// and keepalive in place. The endpoint and the session are left alone.
    Upsert(PeerSpec),
    /// Remove the peer; a no-op if it is absent.
    Remove(PublicKey),
}

impl PeerChange {
    pub fn public_key(&self) -> &PublicKey {
        match self {
            PeerChange::Upsert(spec) => &spec.public_key,
            PeerChange::Remove(key) => key,
        }
    }
}

/// Why the interface could not be read or changed.
#[derive(Debug, thiserror::Error)]
pub enum WgError {
    /// The agent never creates the interface (its keys and port are provisioned elsewhere).
    #[error("WireGuard interface {0} does not exist (the agent does not create it)")]
    InterfaceMissing(String),
    #[error("WireGuard interface {iface}: {action}: {source}")]
    Io {
        iface: String,
        action: &'static str,
        source: std::io::Error,
    },
    #[error("the interface refused a batch of {size} changes (limit {limit})")]
    BatchTooLarge { size: usize, limit: usize },
    #[error("interface {iface} speaks {speaks}, which has no {wanted} parameters")]
    WrongProtocol {
        iface: String,
        speaks: Protocol,
        wanted: Protocol,
    },
    #[error("the blocking WireGuard task failed: {0}")]
    Task(String),
}

/// A WireGuard interface whose peer list the agent owns.
pub trait WireGuard: Send + Sync + 'static {
    /// Fails with [`WgError::InterfaceMissing`] unless the interface exists.
    fn check_exists(&self) -> Result<(), WgError>;

    /// Every peer on the interface, with counters.
    fn read_peers(&self) -> Result<Vec<InterfacePeer>, WgError>;

    /// Every peer's counters, for the stats report: the same read as [`WireGuard::read_peers`]
    /// without keeping each peer's configuration (64 bytes a peer instead of about 200).
    fn read_counters(&self) -> Result<Vec<PeerStats>, WgError> {
        Ok(self
            .read_peers()?
            .iter()
            .map(|p| counters(p.spec.public_key, p.last_handshake, p.rx_bytes, p.tx_bytes))
            .collect())
    }

    /// Applies `changes` as one device update. Never replaces the whole peer list and never
    /// creates the interface. Callers keep batches at most [`MAX_CHANGES_PER_UPDATE`] long
    /// (see [`apply_in_chunks`]).
    fn apply(&self, changes: &[PeerChange]) -> Result<(), WgError>;

    /// The protocol this implementation drives.
    fn protocol(&self) -> Protocol {
        Protocol::WireGuard
    }

    /// The interface's obfuscation parameters; `None` for plain WireGuard, which has none.
    fn read_obfuscation(&self) -> Result<Option<ObfuscationParams>, WgError> {
        Ok(None)
    }

    /// Sets every obfuscation parameter at once; plain WireGuard refuses.
    fn set_obfuscation(&self, _params: &ObfuscationParams) -> Result<(), WgError> {
        Err(WgError::WrongProtocol {
            iface: String::new(),
            speaks: self.protocol(),
            wanted: Protocol::AmneziaWg,
        })
    }
}

/// An AmneziaWG interface's obfuscation parameters as the module holds them: `H1`–`H4` in its
/// packed range encoding, `I1`–`I5` as the description text with the empty string for unset (an
/// interface reports a cleared one as empty, one never set not at all). An interface nobody
/// configured holds values no valid profile has (`Jc` 0), so this is not an [`AwgProfile`];
/// comparing the two goes through `From`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObfuscationParams {
    pub jc: u16,
    pub jmin: u16,
    pub jmax: u16,
    pub s1: u16,
    pub s2: u16,
    pub s3: u16,
    pub s4: u16,
    pub h: [u64; 4],
    pub i: [String; 5],
}

impl From<&AwgProfile> for ObfuscationParams {
    fn from(p: &AwgProfile) -> Self {
        Self {
            jc: p.jc,
            jmin: p.jmin,
            jmax: p.jmax,
            s1: p.s1,
            s2: p.s2,
            s3: p.s3,
            s4: p.s4,
            h: [p.h1, p.h2, p.h3, p.h4].map(|h| h.to_netlink()),
            i: p.special_junk()
                .map(|(_, junk)| junk.map(|j| j.as_str().to_string()).unwrap_or_default()),
        }
    }
}

/// A peer's counters as the stats report carries them: the handshake in Unix seconds.
pub fn counters(
    public_key: PublicKey,
    last_handshake: Option<SystemTime>,
    rx_bytes: u64,
    tx_bytes: u64,
) -> PeerStats {
    PeerStats {
        public_key,
        last_handshake: last_handshake
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX)),
        rx_bytes,
        tx_bytes,
    }
}

/// Applies `changes` in order, in device updates of at most [`MAX_CHANGES_PER_UPDATE`] changes.
/// Stops at the first failing chunk: earlier chunks stay applied, which is safe because every
/// change is idempotent and the caller acknowledges nothing unless all of them succeeded.
pub fn apply_in_chunks(wg: &dyn WireGuard, changes: &[PeerChange]) -> Result<(), WgError> {
    for chunk in changes.chunks(MAX_CHANGES_PER_UPDATE) {
        wg.apply(chunk)?;
    }
    Ok(())
}
