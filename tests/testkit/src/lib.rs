//! Fixtures for PVPN's tests: real services, isolated per test, cleaned up when dropped.
//!
//! # Layout
//!
//! - [`botapi`]: a local Telegram Bot API server that records what the bot sends and injects
//!   messages and button presses.
//! - [`netns`]: network namespaces joined by veth, with real `wireguard-go` interfaces in them.
//! - [`netns_listener`]: a TCP listener opened inside a namespace, for in-process servers that
//!   QEMU guests must reach.
//! - [`postgres`]: a fresh PostgreSQL database per test on the machine's server.
//! - [`redis_server`]: a private `redis-server` process per test, on its own port, that a test
//!   may stop, restart empty, or flush without disturbing other tests; also inside a namespace,
//!   for QEMU guests to reach; or serving TLS only, with a certificate from [`tls_ca`].
//! - [`tls_ca`]: a throwaway CA and Redis server certificate (the `openssl` CLI).
//! - [`vm`]: Debian 12 guests under QEMU (kernel WireGuard, real netlink) on a bridge in a
//!   namespace, reached over SSH.
//!
//! Fixtures fail loudly with what is missing ("run scripts/setup.sh"); they never skip a test.

pub mod botapi;
pub mod netns;
pub mod netns_listener;
pub mod postgres;
pub mod redis_server;
pub mod tls_ca;
pub mod vm;

/// Stops `child` the polite way: SIGTERM, up to `grace` for it to exit on its own (and clean up
/// after itself: sockets, TUN devices, connections), then SIGKILL. Returns whether it exited
/// within the grace period.
pub fn terminate(child: &mut std::process::Child, grace: std::time::Duration) -> bool {
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .stderr(Stdio::null())
        .status();
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    false
}

/// A short random suffix for names that must not collide between concurrent tests.
pub fn unique_suffix() -> String {
    use rand::Rng;
    let n: u64 = rand::thread_rng().r#gen();
    format!("{:08x}", n as u32)
}
