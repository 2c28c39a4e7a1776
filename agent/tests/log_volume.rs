//! Log volume stays bounded whatever Redis holds: the real `pvpn-agent` binary, given a snapshot
//! of 60,000 malformed entries next to one good peer, logs one summary line for them, not one
//! line per entry.

mod support;

use std::process::{Command, Stdio};

use pvpn_common::PublicKey;
use support::*;

const BIN: &str = env!("CARGO_BIN_EXE_pvpn-agent");
const MALFORMED: usize = 60_000;

/// Kills the agent process by its pid if the test fails before it exits.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_thousand_malformed_snapshot_entries_log_one_summary() {
    let node = Node::start().unwrap();
    let mut relay = node.relay();
    let good = peer(1);
    relay.upsert(&good);
    let mut conn = node.conn();
    let key = keys().node_peers(&support::node());
    for chunk in (0..MALFORMED).collect::<Vec<_>>().chunks(5_000) {
        let items: Vec<(String, String)> = chunk
            .iter()
            .map(|i| {
                // Distinct keys without 60,000 key generations: the entry's number in its bytes.
                let mut bytes = [7u8; 32];
                bytes[..8].copy_from_slice(&(*i as u64).to_le_bytes());
                (
                    PublicKey::from_bytes(bytes).to_base64(),
                    format!("garbage {i}"),
                )
            })
            .collect();
        let _: () = redis::cmd("HSET")
            .arg(&key)
            .arg(items)
            .query(&mut conn)
            .unwrap();
    }
    let log = tempfile::NamedTempFile::new().unwrap();
    let child = Command::new(BIN)
        .env_clear()
        .env("REDIS_URL", node.redis.url())
        .env("PVPN_REGION", REGION)
        .env("PVPN_NODE", NODE)
        .env("PVPN_SUBNET", SUBNET)
        .env("PVPN_WG_INTERFACE", node.wg.name())
        .env("PVPN_WG_BACKEND", "userspace")
        .env("PVPN_METRICS_ADDR", "127.0.0.1:0")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(log.reopen().unwrap())
        .spawn()
        .unwrap();
    let mut child = KillOnDrop(child);
    node.wait_for_peers(&relay.peers).await;
    let text = eventually("the start-up reconcile in the log", || {
        let text = std::fs::read_to_string(log.path()).ok()?;
        text.contains("reconciled").then_some(text)
    })
    .await;
    let _ = child.0.kill();
    let _ = child.0.wait();

    let summaries: Vec<&str> = text.lines().filter(|l| l.contains("malformed")).collect();
    assert_eq!(summaries.len(), 1, "{text}");
    assert!(
        summaries[0].contains(&MALFORMED.to_string()),
        "the summary counts every malformed entry: {text}"
    );
    assert!(text.lines().count() < 20, "{text}");
}
