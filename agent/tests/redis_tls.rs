//! The agent and Redis over TLS: with the server's CA it applies its snapshot and reports through
//! `rediss://`; trusting another CA, or speaking plain TCP to the TLS-only port, it gets nowhere
//! (a clear error on `/healthz`, nothing applied, no panic, a clean stop); a bad CA file or plain
//! TCP to another host stops it before it connects at all.

mod support;

use std::process::Command;

use support::*;

/// `/healthz` once it reports that Redis is unavailable (503): its body.
async fn redis_problem(agent: &RunningAgent) -> String {
    eventually_async("/healthz to report Redis unavailable", || async {
        match agent.get("/healthz").await {
            Ok((503, body)) if body.contains("redis unavailable") => Some(body),
            _ => None,
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn applies_and_reports_over_tls() {
    let node = Node::start_tls().unwrap();
    assert!(node.redis.url().starts_with("rediss://"));
    let mut relay = node.relay();
    relay.upsert(&peer(1));
    relay.upsert(&peer(2));
    let agent = RunningAgent::start(node.config()).await;
    node.wait_for_peers(&relay.peers).await;
    agent.wait_ready().await;
    eventually("a heartbeat over TLS counting both peers", || {
        node.heartbeat().filter(|beat| beat.peer_count == 2)
    })
    .await;
    // A live change arrives through the stream on the TLS connection too.
    relay.upsert(&peer(3));
    node.wait_for_peers(&relay.peers).await;
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_certificate_from_another_ca_is_refused() {
    let node = Node::start_tls().unwrap();
    let mut relay = node.relay();
    relay.upsert(&peer(1));
    let other = tempfile::tempdir().unwrap();
    let other_ca = pvpn_testkit::tls_ca::TlsFiles::generate(other.path(), &[]).unwrap();
    let mut config = node.config();
    config.redis.ca_file = Some(other_ca.ca_cert.clone());
    let agent = RunningAgent::start(config).await;
    let problem = redis_problem(&agent).await;
    assert!(problem.contains("certificate"), "{problem}");
    assert!(node.peers().is_empty(), "nothing applied without Redis");
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tls_only_server_refuses_plain_tcp() {
    let node = Node::start_tls().unwrap();
    let mut relay = node.relay();
    relay.upsert(&peer(1));
    let ping = redis::Client::open(node.redis.plain_url())
        .unwrap()
        .get_connection()
        .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c));
    assert!(ping.is_err(), "plain PING to the TLS port: {ping:?}");

    let mut config = node.config();
    config.redis_url = node.redis.plain_url();
    config.redis.ca_file = None;
    let agent = RunningAgent::start(config).await;
    redis_problem(&agent).await;
    assert_eq!(node.peers().len(), 0);
    agent.stop().await;
    // The same server, reached the right way, has the peer the agent never got.
    let agent = RunningAgent::start(node.config()).await;
    node.wait_for_peers(&relay.peers).await;
    agent.stop().await;
}

#[test]
fn bad_redis_settings_stop_the_binary_before_it_connects() {
    let ca_missing = std::env::temp_dir().join("pvpn-no-such-ca.crt");
    let not_pem = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(not_pem.path(), "not a certificate\n").unwrap();
    let cases: [(&str, Option<&std::path::Path>, &str); 4] = [
        (
            "redis://pvpn-agent-nl-1:pw@203.0.113.10:6379/0",
            None,
            "rediss://",
        ),
        (
            "redis://127.0.0.1:6379/0",
            Some(&ca_missing),
            "PVPN_REDIS_CA_FILE",
        ),
        (
            "rediss://127.0.0.1:1/0",
            Some(&ca_missing),
            "reading the Redis CA file",
        ),
        (
            "rediss://127.0.0.1:1/0",
            Some(not_pem.path()),
            "holds no PEM certificate",
        ),
    ];
    for (url, ca, expected) in cases {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_pvpn-agent"));
        cmd.env_clear()
            .env("REDIS_URL", url)
            .env("PVPN_REGION", REGION)
            .env("PVPN_NODE", NODE)
            .env("PVPN_SUBNET", SUBNET)
            .env("PVPN_WG_INTERFACE", "pvpn-none0")
            .env("PVPN_WG_BACKEND", "userspace")
            .env("PVPN_METRICS_ADDR", "127.0.0.1:0");
        if let Some(ca) = ca {
            cmd.env("PVPN_REDIS_CA_FILE", ca);
        }
        let out = cmd.output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{url}: {stderr}");
        assert!(stderr.contains(expected), "{url}: {stderr}");
        assert!(!stderr.contains("panicked"), "{url}: {stderr}");
        assert!(
            !stderr.contains("pw@"),
            "the password stays out of the log: {stderr}"
        );
    }
}
