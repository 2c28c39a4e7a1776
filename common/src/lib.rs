//! PVPN's shared vocabulary: the types and formats that the backend and the agents must agree on.
//!
//! This crate does no I/O but reading configuration: [`config_source`] reads the config file a
//! binary is started with, and [`redis_transport`] the Redis CA file that configuration names. It defines what a valid name, key, peer or message *is*, so that every
//! boundary (Telegram, Redis, configuration, the database) parses into these types once and the rest
//! of the code can trust them.
//!
//! # Layout
//!
//! - [`names`]: region codes and node names (`[a-z0-9-]`, bounded).
//! - [`keys`]: WireGuard public, private and preshared keys; generation; base64.
//! - [`peer`]: the desired state of one peer on a node ([`peer::PeerSpec`]).
//! - [`wire`]: the versioned JSON formats carried over Redis: stream events, heartbeats, stats.
//! - [`redis_keys`]: every Redis key and group name, with the per-region hash tag.
//! - [`redis_transport`]: how the binaries may reach Redis (TLS, or plain TCP on loopback only).
//! - [`addressing`]: client address allocation inside a node's subnet.
//! - [`client_config`]: the `[Interface]`/`[Peer]` file that WireGuard apps import.
//! - [`obfuscation`]: a node's protocol (WireGuard or AmneziaWG) and its AmneziaWG profile.
//! - [`config_source`]: where both binaries' settings come from (file, then environment).
//! - [`backoff`]: the retry policy of every loop that keeps trying (delays, log-once state).

pub mod addressing;
pub mod backoff;
pub mod client_config;
pub mod config_source;
pub mod keys;
pub mod names;
pub mod obfuscation;
pub mod peer;
pub mod redis_keys;
pub mod redis_transport;
pub mod wire;

pub use keys::{KeyError, PresharedKey, PrivateKey, PublicKey};
pub use names::{DeviceName, DeviceNameError, NameError, NodeName, RegionCode};
pub use peer::PeerSpec;
