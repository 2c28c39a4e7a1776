//! The `pvpn-agent` binary as an operator runs it: configured by environment, refusing bad
//! values with the key's name, serving `/healthz`, and exiting cleanly on SIGTERM.

mod support;

use std::net::TcpListener;
use std::process::{Command, Stdio};

use support::*;

const BIN: &str = env!("CARGO_BIN_EXE_pvpn-agent");

/// Kills the agent process by its pid if a test fails before stopping it.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn an_invalid_value_stops_start_up_naming_the_key() {
    let out = Command::new(BIN)
        .env_clear()
        .env("REDIS_URL", "redis://127.0.0.1:1/")
        .env("PVPN_REGION", "nl")
        .env("PVPN_NODE", "nl-1")
        .env("PVPN_SUBNET", SUBNET)
        .env("PVPN_WG_BACKEND", "netlink")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("PVPN_WG_BACKEND"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_from_the_environment_and_stops_on_sigterm() {
    let node = Node::start().unwrap();
    let mut relay = node.relay();
    relay.upsert(&peer(1));
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(BIN)
        .env_clear()
        .env("REDIS_URL", node.redis.url())
        .env("PVPN_REGION", REGION)
        .env("PVPN_NODE", NODE)
        .env("PVPN_SUBNET", SUBNET)
        .env("PVPN_WG_INTERFACE", node.wg.name())
        .env("PVPN_WG_BACKEND", "userspace")
        .env("PVPN_METRICS_ADDR", format!("127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut child = KillOnDrop(child);
    let pid = child.0.id();
    node.wait_for_peers(&relay.peers).await;
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    eventually_async("/healthz 200 from the binary", || async {
        matches!(support::http_get(addr, "/healthz").await, Ok((200, _))).then_some(())
    })
    .await;

    let status = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exited = eventually("the agent to exit after SIGTERM", || {
        child.0.try_wait().ok().flatten()
    })
    .await;
    assert!(exited.success(), "{exited:?}");
    // The interface keeps its peers when the agent stops.
    node.wait_for_peers(&relay.peers).await;
}

/// Redis down for many retry attempts: one warning when it goes down, one note when the agent is
/// back in sync, not one line per attempt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_once_per_state_change_while_redis_is_down() {
    let mut node = Node::start().unwrap();
    let mut relay = node.relay();
    relay.upsert(&peer(1));
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let log_path = std::env::temp_dir().join(format!("pvpn-agent-log-{}", node.wg.name()));
    let log = std::fs::File::create(&log_path).unwrap();
    let child = Command::new(BIN)
        .env_clear()
        .env("REDIS_URL", node.redis.url())
        .env("PVPN_REGION", REGION)
        .env("PVPN_NODE", NODE)
        .env("PVPN_SUBNET", SUBNET)
        .env("PVPN_WG_INTERFACE", node.wg.name())
        .env("PVPN_WG_BACKEND", "userspace")
        .env("PVPN_METRICS_ADDR", format!("127.0.0.1:{port}"))
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let mut child = KillOnDrop(child);
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    eventually_async("/healthz 200", || async {
        matches!(support::http_get(addr, "/healthz").await, Ok((200, _))).then_some(())
    })
    .await;

    node.redis.stop();
    eventually_async("several failed attempts while Redis is down", || async {
        let (_, metrics) = support::http_get(addr, "/metrics").await.ok()?;
        let errors: u64 = metrics
            .lines()
            .find_map(|l| l.strip_prefix("pvpn_agent_redis_errors_total "))?
            .trim()
            .parse()
            .ok()?;
        (errors >= 5).then_some(())
    })
    .await;
    node.redis.restart().unwrap();
    let mut relay = node.relay();
    relay.peers.clear();
    relay.upsert(&peer(1));
    eventually_async("/healthz 200 again", || async {
        matches!(support::http_get(addr, "/healthz").await, Ok((200, _))).then_some(())
    })
    .await;

    let pid = child.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    eventually("the agent to exit", || child.0.try_wait().ok().flatten()).await;
    let text = std::fs::read_to_string(&log_path).unwrap();
    let _ = std::fs::remove_file(&log_path);
    let down = text.matches("redis unavailable; retrying").count();
    assert_eq!(down, 1, "one warning for the outage:\n{text}");
    assert!(text.contains("in sync again"), "{text}");
}
