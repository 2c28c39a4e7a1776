//! The proof that PVPN works: a Telegram conversation ends in traffic through a tunnel.
//!
//! Everything is real except Telegram (the local Bot API server stands in): PostgreSQL, Redis,
//! the `pvpn-backend` and `pvpn-agent` binaries as separate processes, two regions whose nodes are
//! `wireguard-go` interfaces in their own network namespaces, and clients that bring the received
//! `.conf` files up in client namespaces and ping the node through the tunnel. Needs root.

use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use pvpn_common::redis_keys::RegionKeys;
use pvpn_common::{NodeName, PublicKey, RegionCode};
use pvpn_tests::site::VpnSite;
use pvpn_tests::stack::{Stack, wait_until};
use pvpn_tests::tunnel::{ClientTunnel, answers_ping, ping_series};
use pvpn_tests::user::BotUser;

/// Bound on "the change reached the node" for every step.
const CONVERGE: Duration = Duration::from_secs(30);

fn node_has_peer(site: &VpnSite, key: &PublicKey) -> Result<bool> {
    Ok(site.wg.peers()?.iter().any(|p| &p.public_key == key))
}

fn snapshot_len(stack: &Stack, region: &RegionCode, node: &NodeName) -> Result<Option<usize>> {
    let mut conn = stack.redis.connection()?;
    let keys = RegionKeys::new(region);
    let revision: Option<u64> = redis::cmd("GET")
        .arg(keys.node_revision(node))
        .query(&mut conn)?;
    let len: usize = redis::cmd("HLEN")
        .arg(keys.node_peers(node))
        .query(&mut conn)?;
    Ok(revision.map(|_| len))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn telegram_conversation_ends_in_working_tunnels() -> Result<()> {
    let _ = tracing_subscriber::fmt().with_test_writer().try_init();
    let site_a = VpnSite::create(1, "aa", "Atlantis")
        .context("creating network namespaces (the end-to-end test must run as root)")?;
    let site_b = VpnSite::create(2, "bb", "Borealis")?;
    let mut stack = Stack::start().await?;
    let outcome = scenario(&mut stack, &site_a, &site_b).await;
    if let Err(e) = &outcome {
        eprintln!("end-to-end scenario failed: {e:#}\n{}", stack.logs());
    }
    outcome
}

async fn scenario(stack: &mut Stack, a: &VpnSite, b: &VpnSite) -> Result<()> {
    stack.register(a, 50)?;
    stack.register(b, 50)?;
    stack.start_agent(a)?;
    stack.start_agent(b)?;
    stack.start_backend(&[])?;
    let user = BotUser::new(&stack.bot_api, 7001, "Eve");

    // Region A: /start, pick Atlantis, receive the config, bring it up, ping through it.
    let laptop = user.new_device("Atlantis", "laptop").await?;
    ensure!(laptop.file_name == "aa-laptop.conf", "{}", laptop.file_name);
    let tunnel_a = ClientTunnel::up(&a.client_ns, &laptop.text)?;
    let laptop_key = tunnel_a.wg.public_key();
    wait_until("the laptop's peer on node A", CONVERGE, || {
        node_has_peer(a, &laptop_key)
    })
    .await?;
    wait_until("ping through tunnel A", CONVERGE, || {
        answers_ping(&a.client_ns, a.tunnel_address)
    })
    .await?;

    // Region B works for the same user, side by side.
    let phone = user.new_device("Borealis", "phone").await?;
    let tunnel_b = ClientTunnel::up(&b.client_ns, &phone.text)?;
    wait_until("ping through tunnel B", CONVERGE, || {
        answers_ping(&b.client_ns, b.tunnel_address)
    })
    .await?;

    // Revoke the laptop: the peer leaves A's interface and its pings stop; B is untouched.
    user.revoke("laptop").await?;
    wait_until("the laptop's peer gone from node A", CONVERGE, || {
        Ok(!node_has_peer(a, &laptop_key)?)
    })
    .await?;
    ensure!(
        !answers_ping(&a.client_ns, a.tunnel_address)?,
        "a revoked config still reaches node A"
    );
    drop(tunnel_a);
    ensure!(
        answers_ping(&b.client_ns, b.tunnel_address)?,
        "B broke when A's device was revoked"
    );

    // Re-issue the phone: the old config stops working, the new one works.
    let old_phone_key = tunnel_b.wg.public_key();
    let phone2 = user.reissue("phone").await?;
    wait_until("the old phone key gone from node B", CONVERGE, || {
        Ok(!node_has_peer(b, &old_phone_key)?)
    })
    .await?;
    ensure!(
        !answers_ping(&b.client_ns, b.tunnel_address)?,
        "the re-issued (old) config still works"
    );
    drop(tunnel_b);
    let tunnel_b = ClientTunnel::up(&b.client_ns, &phone2.text)?;
    ensure!(
        tunnel_b.wg.public_key() != old_phone_key,
        "re-issue kept the key"
    );
    wait_until("ping through the re-issued config", CONVERGE, || {
        answers_ping(&b.client_ns, b.tunnel_address)
    })
    .await?;

    // Kill agent A (SIGKILL) and restart it while a client pings continuously: the session
    // survives (no new handshake) and at most a few packets are lost.
    let tablet = user.new_device("Atlantis", "tablet").await?;
    let tunnel_a = ClientTunnel::up(&a.client_ns, &tablet.text)?;
    wait_until("ping through the tablet's tunnel", CONVERGE, || {
        answers_ping(&a.client_ns, a.tunnel_address)
    })
    .await?;
    let handshake_before = tunnel_a.latest_handshake()?;
    ensure!(handshake_before > 0, "no handshake after a working ping");
    let pinger_ns = a.client_ns.name().to_string();
    let target = a.tunnel_address;
    let pings = std::thread::spawn(move || ping_series(&pinger_ns, target, 40));
    tokio::time::sleep(Duration::from_secs(1)).await;
    stack.kill_agent(a);
    tokio::time::sleep(Duration::from_secs(1)).await;
    stack.start_agent(a)?;
    let received = tokio::task::spawn_blocking(move || pings.join())
        .await?
        .map_err(|_| anyhow::anyhow!("the pinger thread panicked"))??;
    ensure!(
        received >= 37,
        "only {received} of 40 pings answered across an agent restart"
    );
    ensure!(
        tunnel_a.latest_handshake()? == handshake_before,
        "the agent restart forced a new handshake: the session was dropped"
    );

    // Redis restarts empty while both agents run: the backend republishes every snapshot, the
    // agents reconcile, both tunnels keep working, and new changes flow again.
    stack.redis.restart()?;
    wait_until("snapshots republished to the empty Redis", CONVERGE, || {
        Ok(snapshot_len(stack, &a.region, &a.node)? == Some(1)
            && snapshot_len(stack, &b.region, &b.node)? == Some(1))
    })
    .await?;
    for (site, name) in [(a, "A"), (b, "B")] {
        ensure!(
            answers_ping(&site.client_ns, site.tunnel_address)?,
            "tunnel {name} broke after Redis lost its data"
        );
    }
    let watch = user.new_device("Borealis", "watch").await?;
    let watch_key = watch_public_key(&watch.text)?;
    wait_until(
        "a device granted after the Redis restart on node B",
        CONVERGE,
        || node_has_peer(b, &watch_key),
    )
    .await?;
    ensure!(
        node_has_peer(a, &tunnel_a.wg.public_key())?,
        "node A lost the tablet"
    );

    stack.check_processes()?;
    stack.bot_api.assert_clean()?;
    Ok(())
}

fn watch_public_key(config: &str) -> Result<PublicKey> {
    let parsed =
        pvpn_common::client_config::ParsedConfig::parse(config).map_err(anyhow::Error::msg)?;
    let Some(private) = parsed.interface_value("PrivateKey") else {
        bail!("config without a private key");
    };
    Ok(private.parse::<pvpn_common::PrivateKey>()?.public_key())
}
