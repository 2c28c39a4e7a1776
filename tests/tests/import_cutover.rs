//! Moving a running WireGuard server into PVPN without anyone noticing: a `wireguard-go`
//! interface holds 5,000 peers set by `wg setconf` (the old server), one of them a real client
//! tunnel that keeps pinging. `pvpnctl import` takes the peers and a mapping, the agent takes
//! over: the ping never drops, the client's handshake is the same, the agent's first reconcile
//! removes and adds nothing, every peer is a device in PostgreSQL and a peer on the interface,
//! and a second import changes nothing. Then the imported user sees the device in the bot, with
//! the note that their config keeps working, revokes it, and the peer leaves the node.
//! Needs root (network namespaces).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use ipnet::Ipv4Net;
use pvpn_tests::old_server::{OldServer, Shape};
use pvpn_tests::site::VpnSite;
use pvpn_tests::stack::{Stack, wait_until};
use pvpn_tests::tunnel::{ClientTunnel, answers_ping, ping_series};
use pvpn_tests::user::BotUser;
use serde_json::Value;

const PEERS: usize = 5_000;
/// The old server's peer that is a real client (its index among the peers).
const CLIENT: usize = 1_234;
const CLIENT_TELEGRAM_ID: i64 = 777_001;
/// Peers the old server gave a server-side keepalive: PVPN clears it in place.
const WITH_KEEPALIVE: usize = 10;
const CONVERGE: Duration = Duration::from_secs(90);

fn old_server(site: &VpnSite) -> OldServer {
    OldServer::generate(
        site,
        Shape {
            peers: PEERS,
            client: Some(CLIENT),
            client_telegram_id: CLIENT_TELEGRAM_ID,
            with_keepalive: WITH_KEEPALIVE,
            unmapped_every: 100,
        },
    )
}

/// Pings in rounds of 10 until told to stop; `(sent, answered)`.
fn keep_pinging(
    ns: String,
    target: std::net::Ipv4Addr,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Result<(u32, u32)>> {
    std::thread::spawn(move || {
        let (mut sent, mut answered) = (0, 0);
        while !stop.load(Ordering::SeqCst) {
            answered += ping_series(&ns, target, 10)?;
            sent += 10;
        }
        Ok((sent, answered))
    })
}

fn node_json(stack: &Stack) -> Result<Value> {
    let nodes: Value = serde_json::from_str(&stack.ctl(&["--json", "node", "list"])?)?;
    nodes
        .as_array()
        .and_then(|a| a.first())
        .cloned()
        .context("pvpnctl node list shows no node")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_existing_server_moves_into_pvpn_without_dropping_a_packet() -> Result<()> {
    let _ = tracing_subscriber::fmt().with_test_writer().try_init();
    let subnet: Ipv4Net = "198.19.64.0/18".parse()?;
    let site = VpnSite::create_with_subnet(41, "im", "Importland", subnet)
        .context("creating network namespaces (this test must run as root)")?;
    let stack = Stack::start().await?;
    let outcome = scenario(&stack, &site).await;
    if let Err(e) = &outcome {
        eprintln!("import cut-over failed: {e:#}\n{}", stack.logs());
    }
    outcome
}

async fn scenario(stack: &Stack, site: &VpnSite) -> Result<()> {
    let dir = stack.log_dir.join("old-server");
    std::fs::create_dir_all(&dir)?;
    let old = old_server(site);

    // The old server: its peers set by `wg setconf`, its client connected and pinging.
    let setconf_path = dir.join("wg0.conf");
    std::fs::write(&setconf_path, &old.setconf)?;
    let node_key = site.wg.public_key();
    site.wg.wg(&[
        "setconf",
        site.wg.name(),
        &setconf_path.display().to_string(),
    ])?;
    ensure!(
        site.wg.peers()?.len() == PEERS,
        "wg setconf did not set {PEERS} peers"
    );
    ensure!(
        site.wg.wg(&["show", site.wg.name(), "public-key"])?.trim() == node_key.to_base64(),
        "the old server's key changed"
    );
    let client_config = old.client_config.as_deref().context("no client config")?;
    let client_key = old.client_key.context("no client key")?;
    let tunnel = ClientTunnel::up(&site.client_ns, client_config)?;
    wait_until("ping through the old server", CONVERGE, || {
        answers_ping(&site.client_ns, site.tunnel_address)
    })
    .await?;
    let handshake_before = tunnel.latest_handshake()?;
    ensure!(handshake_before > 0, "the client never shook hands");

    stack.register(site, 6_000)?;
    stack.start_backend(&[])?;
    let stop = Arc::new(AtomicBool::new(false));
    let pinger = keep_pinging(
        site.client_ns.name().to_string(),
        site.tunnel_address,
        stop.clone(),
    );

    // The operator exports the peers (`wg show wg0 dump`, interface line included) and imports.
    let dump_path = dir.join("dump.txt");
    std::fs::write(&dump_path, site.wg.wg(&["show", site.wg.name(), "dump"])?)?;
    let mapping_path = dir.join("mapping.csv");
    std::fs::write(&mapping_path, &old.mapping)?;
    let dump_arg = dump_path.display().to_string();
    let mapping_arg = mapping_path.display().to_string();
    let import = [
        "import",
        site.node.as_str(),
        "--peers",
        dump_arg.as_str(),
        "--mapping",
        mapping_arg.as_str(),
    ];
    let output = stack.ctl(&import)?;
    ensure!(
        output.contains("new devices: 5000 (50 unassigned)"),
        "{output}"
    );
    ensure!(
        output.contains("published to Redis at revision 5000"),
        "{output}"
    );

    // The agent takes over the node that already holds every peer.
    stack.start_agent(site)?;
    let startup = std::sync::Mutex::new(None);
    wait_until(
        "the agent's start-up reconcile at revision 5000",
        CONVERGE,
        || {
            let node = node_json(stack)?;
            let report = &node["last_reconcile"];
            if report["trigger"] == "startup" && report["snapshot_revision"] == 5000 {
                *startup.lock().unwrap_or_else(|e| e.into_inner()) = Some(report.clone());
            }
            let seen = startup.lock().unwrap_or_else(|e| e.into_inner()).is_some();
            Ok(seen && node["applied_revision"] == 5000)
        },
    )
    .await?;
    stop.store(true, Ordering::SeqCst);
    let (sent, answered) = tokio::task::spawn_blocking(move || pinger.join())
        .await?
        .map_err(|_| anyhow::anyhow!("the pinger thread panicked"))??;

    let report = startup
        .into_inner()
        .unwrap_or_else(|e| e.into_inner())
        .context("no start-up report")?;
    ensure!(
        report["removed"] == 0 && report["added"] == 0,
        "the agent removed or re-added peers at take-over: {report}"
    );
    ensure!(
        report["updated"] == WITH_KEEPALIVE,
        "only the {WITH_KEEPALIVE} peers with a server-side keepalive change (in place): {report}"
    );
    ensure!(
        sent > 0 && answered == sent,
        "{answered} of {sent} pings answered during the cut-over"
    );
    ensure!(
        tunnel.latest_handshake()? == handshake_before,
        "the cut-over forced a new handshake"
    );
    let on_interface = site.wg.peers()?;
    ensure!(
        on_interface.len() == PEERS,
        "{} peers on the interface",
        on_interface.len()
    );
    for peer in &on_interface {
        let want = old
            .allowed
            .get(&peer.public_key)
            .context("a peer the old server did not have")?;
        ensure!(
            peer.allowed_ips == [want.clone()],
            "peer {} changed its allowed IPs",
            peer.public_key
        );
        ensure!(
            peer.persistent_keepalive.is_none(),
            "keepalive left on {}",
            peer.public_key
        );
    }
    ensure!(
        node_json(stack)?["devices"] == PEERS,
        "devices in PostgreSQL"
    );

    let again = stack.ctl(&import)?;
    ensure!(
        again.contains("unchanged: everything is already imported"),
        "{again}"
    );
    ensure!(
        node_json(stack)?["revision"] == 5000,
        "a second import moved the revision"
    );

    // The user finds the device in the bot, is told the config keeps working, and revokes it.
    let user = BotUser::new(&stack.bot_api, CLIENT_TELEGRAM_ID, "Olga");
    let menu = user.say("/start").await?;
    let devices = user.press(&menu, "My devices").await?;
    let text = devices.text().to_string();
    ensure!(
        text.contains("phone") && text.contains("keeps working"),
        "{text}"
    );
    user.revoke("phone").await?;
    wait_until("the revoked peer leaves the node", CONVERGE, || {
        Ok(!site.wg.peers()?.iter().any(|p| p.public_key == client_key))
    })
    .await?;
    ensure!(
        site.wg.peers()?.len() == PEERS - 1,
        "other peers were touched by the revoke"
    );
    stack.check_processes()
}
