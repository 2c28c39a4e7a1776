//! Fixtures for PVPN's tests: real services, isolated per test, cleaned up when dropped.
//!
//! # Layout
//!
//! - [`botapi`]: a local Telegram Bot API server that records what the bot sends and injects
//!   messages and button presses.
//! - [`netns`]: network namespaces joined by veth, with real `wireguard-go` interfaces in them.
//! - [`postgres`]: a fresh PostgreSQL database per test on the machine's server.
//! - [`redis_server`]: a private `redis-server` process per test, on its own port, that a test
//!   may stop, restart empty, or flush without disturbing other tests.
//!
//! Fixtures fail loudly with what is missing ("run scripts/setup.sh"); they never skip a test.

pub mod botapi;
pub mod netns;
pub mod postgres;
pub mod redis_server;

/// A short random suffix for names that must not collide between concurrent tests.
pub fn unique_suffix() -> String {
    use rand::Rng;
    let n: u64 = rand::thread_rng().r#gen();
    format!("{:08x}", n as u32)
}
