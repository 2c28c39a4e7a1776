//! A real fleet, provisioned the way an operator does it, carrying a user's traffic.
//!
//! Debian guests under QEMU with systemd — the backend host and one VPN node in each of two
//! regions (aa-1 plain WireGuard, bb-1 AmneziaWG), and a fourth, booted with them, that becomes a
//! second node of region A on day two — are provisioned by `ansible/site.yml` over SSH from an
//! inventory the test writes (bb-1 gets the AmneziaWG module built by DKMS on the booted host). The guests reach
//! nothing but the test's namespace: a local apt repository for the roles' apt tasks, the local
//! Bot API server for the bot, and "the internet" behind the nodes (a resolver and a service that
//! answers with the address it sees). A scripted Telegram user gets one config per region; each
//! is brought up on a device of its own (see `pvpn_tests::fleet::devices`: the AmneziaWG one
//! with `awg` inside a guest, as only guests have the module), pings its node and reaches the
//! internet host by name through the node's forwarding and NAT. On bb-1, the profile
//! `pvpnctl node profile` shows is the one on the interface, the bot marks the region as
//! obfuscated, and a plain WireGuard client with the same keys gets no handshake. Redis on the backend host answers TLS only, and the
//! agents reach it that way. Then day two: a second run changes nothing, a node reboots, one
//! `site.yml` run ships a new agent (restarted without dropping a peer) and adds a node, the
//! backend is killed and comes back, and `pvpnctl status` agrees with all of it.
//!
//! DNS: client configs name a resolver on the internet (the inventory's `pvpn_node_dns`; public
//! resolvers by default), reached through the tunnel and the node's NAT; nodes run no resolver.
//! One guest fleet serves every check, one after another; the time each stage took is printed
//! at the end (and each playbook run's slowest tasks). Needs root.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use pvpn_common::PublicKey;
use pvpn_common::client_config::ParsedConfig;
use pvpn_common::obfuscation::Protocol;
use pvpn_testkit::netns::DumpPeer;
use pvpn_tests::fleet::ansible::PlaybookRun;
use pvpn_tests::fleet::devices::Device;
use pvpn_tests::fleet::outside::{ClientNet, INTERNET_HOST, SERVICE_NAME, dns_servers};
use pvpn_tests::fleet::units::{UnitState, expect_hardened, expect_running, unit_state};
use pvpn_tests::fleet::{COMMAND, Fleet, Node, node_options, ship_agent_release};
use pvpn_tests::stack::wait_until;
use pvpn_tests::tunnel::{ClientTunnel, answers_ping};
use pvpn_tests::user::BotUser;
use tokio::task::block_in_place;

const BACKEND_UNITS: [&str; 4] = [
    "postgresql@15-main.service",
    "redis-server.service",
    "pvpn-backend.service",
    "nftables.service",
];
/// CAP_NET_ADMIN, the one capability the agent's unit grants.
const CAP_NET_ADMIN: u64 = 1 << 12;
/// Bound on "the change reached the node / the client": TCG guests on a busy machine.
const CONVERGE: Duration = Duration::from_secs(180);
/// Redis's TLS port on the backend host (the roles' `pvpn_redis_port`).
const REDIS_PORT: u16 = 6379;

/// The stages of the run and how long each took.
struct Timeline {
    started: Instant,
    current: Option<(String, Instant)>,
    done: Vec<(String, Duration)>,
}

impl Timeline {
    fn new() -> Self {
        Self {
            started: Instant::now(),
            current: None,
            done: Vec::new(),
        }
    }

    /// Ends the stage under way (if any) and starts `name`.
    fn stage(&mut self, name: &str) {
        self.finish();
        eprintln!("stage: {name} ({:.0?} in)", self.started.elapsed());
        self.current = Some((name.to_string(), Instant::now()));
    }

    fn finish(&mut self) {
        if let Some((name, since)) = self.current.take() {
            self.done.push((name, since.elapsed()));
        }
    }

    fn report(&mut self) -> String {
        self.finish();
        let mut text = format!("fleet stages ({:.0?} in all):\n", self.started.elapsed());
        for (name, took) in &self.done {
            text.push_str(&format!("  {:>6.0?}  {name}\n", took));
        }
        text
    }
}

/// A playbook run's time and its slowest tasks, for the log.
fn report_run(what: &str, run: &PlaybookRun) {
    eprintln!("  {what}: {:.0?}; slowest tasks:", run.took);
    for line in run.slowest.iter().take(12) {
        eprintln!("    {line}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_operator_provisions_a_fleet_that_carries_users_tunnels() -> Result<()> {
    let _ = tracing_subscriber::fmt().with_test_writer().try_init();
    let mut timeline = Timeline::new();
    timeline.stage("boot the backend host, aa-1, bb-1 and aa-2 (not in the inventory yet)");
    let mut fleet = block_in_place(|| {
        Fleet::boot(&[
            ("aa-1", "aa", "198.19.1.0/24", Protocol::WireGuard),
            ("bb-1", "bb", "198.19.2.0/24", Protocol::AmneziaWg),
            ("aa-2", "aa", "198.19.3.0/24", Protocol::WireGuard),
        ])
    })
    .context("booting the fleet (the fleet test must run as root)")?;
    let outcome = scenario(&mut fleet, &mut timeline).await;
    eprintln!("{}", timeline.report());
    if let Err(e) = &outcome {
        eprintln!(
            "fleet scenario failed: {e:#}\n{}",
            block_in_place(|| journals(&fleet))
        );
    }
    outcome
}

/// The PVPN units' journals of every guest, for a failure message.
fn journals(fleet: &Fleet) -> String {
    fleet
        .guests()
        .map(|g| {
            let text = g
                .run(
                    "journalctl --no-pager -n 40 -u pvpn-backend -u pvpn-agent -u wg-quick@wg0 \
                     -u awg-quick@awg0",
                    COMMAND,
                )
                .map(|o| o.stdout)
                .unwrap_or_default();
            format!("--- {} ---\n{text}\n", g.addr())
        })
        .collect()
}

fn running_units(fleet: &Fleet) -> Result<Vec<UnitState>> {
    let mut states = expect_running(&fleet.backend, &BACKEND_UNITS)?;
    for node in fleet.nodes.values().filter(|n| n.provisioned) {
        states.extend(node_units_running(node)?);
    }
    Ok(states)
}

fn node_units_running(node: &Node) -> Result<Vec<UnitState>> {
    let units = node.units();
    expect_running(&node.guest, &units.each_ref().map(String::as_str))
}

fn endpoint_of(config: &str) -> Result<String> {
    let parsed = ParsedConfig::parse(config).map_err(anyhow::Error::msg)?;
    Ok(parsed
        .peer_value("Endpoint")
        .context("no Endpoint")?
        .to_string())
}

/// The node's view of the client's peer, from `wg show wg0 dump` (`awg show awg0 dump`) in the
/// guest.
fn node_peer(node: &Node, key: &PublicKey) -> Result<Option<DumpPeer>> {
    let text = node.guest.run_ok(
        &format!("{} show {} dump", node.tool(), node.interface()),
        COMMAND,
    )?;
    for line in text.lines().skip(1) {
        let peer = DumpPeer::parse(line)?;
        if &peer.public_key == key {
            return Ok(Some(peer));
        }
    }
    Ok(None)
}

/// A received config brought up on a fresh device: it pings its node's tunnel address, and looks
/// the service up with the config's resolver and reaches it through the node's NAT (the service
/// sees the node's own address).
async fn tunnel_through(fleet: &Fleet, node: &str, link: u8, config: &str) -> Result<Device> {
    let node = fleet.node(node);
    ensure!(
        endpoint_of(config)? == node.endpoint(),
        "config for {}: {config}",
        node.name
    );
    let dns = dns_servers(config)?;
    ensure!(dns == [INTERNET_HOST], "the config names DNS {dns:?}");
    let device = block_in_place(|| fleet.device(&node.name, link, config))?;
    let what = format!("ping through the tunnel to {}", node.name);
    wait_until(&what, CONVERGE, || {
        device.answers_ping(&fleet.backend, node.tunnel_address)
    })
    .await?;
    wait_until(
        "ping to the internet host through the node",
        CONVERGE,
        || device.answers_ping(&fleet.backend, INTERNET_HOST),
    )
    .await?;
    let (found, seen) = block_in_place(|| device.whoami(&fleet.backend, SERVICE_NAME))?;
    ensure!(found == INTERNET_HOST, "{SERVICE_NAME} resolved to {found}");
    ensure!(
        seen == node.guest.addr(),
        "the internet host saw {seen}, not the node's address {} (no NAT?)",
        node.guest.addr()
    );
    Ok(device)
}

async fn scenario(fleet: &mut Fleet, timeline: &mut Timeline) -> Result<()> {
    timeline.stage("site.yml, first run, on the backend host and nodes aa-1, bb-1");
    fleet.add_to_inventory(&["aa-1", "bb-1"]);
    let first = block_in_place(|| fleet.run_site())?;
    report_run("first run", &first);
    ensure!(
        first.recap.keys().map(String::as_str).collect::<Vec<_>>() == ["aa-1", "backend", "bb-1"],
        "hosts in the first run: {:?}",
        first.recap
    );
    let provisioned = Instant::now();

    timeline.stage("units active under their hardening; Redis TLS only");
    let baseline = block_in_place(|| -> Result<_> {
        let states = running_units(fleet)?;
        expect_hardened(&fleet.backend, "pvpn-backend.service", 0)?;
        for name in ["aa-1", "bb-1"] {
            expect_hardened(&fleet.node(name).guest, "pvpn-agent.service", CAP_NET_ADMIN)?;
        }
        redis_speaks_tls_only(fleet)?;
        for name in ["aa-1", "bb-1"] {
            agent_reaches_redis_by_tls(fleet, name)?;
        }
        Ok(states)
    })?;

    timeline.stage("a user's configs for both regions carry traffic through the nodes");
    let api = fleet.bot_api.clone();
    let user = BotUser::new(&api, 7001, "Eve");
    let laptop = user.new_device("Atlantis", "laptop").await?;
    let laptop_device = tunnel_through(fleet, "aa-1", 21, &laptop.text).await?;
    let phone = user.new_device("Borealis", "phone").await?;
    let phone_device = tunnel_through(fleet, "bb-1", 22, &phone.text).await?;

    timeline.stage("bb-1 speaks AmneziaWG as provisioned and as the bot says");
    amneziawg_node(fleet, &user, &phone.text).await?;

    timeline.stage("site.yml, second run, changes nothing");
    let second = block_in_place(|| fleet.run_site())?;
    report_run("second run", &second);
    second.expect_unchanged()?;
    ensure!(second.recap.len() == 3, "{:?}", second.recap);

    timeline.stage("units unchanged a minute after the first run");
    let waited = provisioned.elapsed();
    if waited < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_secs(60) - waited).await;
    }
    let later = block_in_place(|| running_units(fleet))?;
    ensure!(
        later == baseline,
        "a unit restarted within a minute:\nbefore {baseline:#?}\nafter {later:#?}"
    );

    timeline.stage("node aa-1 reboots; its interface and agent come back, the client reconnects");
    let laptop_key = laptop_device.public_key();
    block_in_place(|| -> Result<()> {
        let node = fleet.nodes.get_mut("aa-1").context("aa-1")?;
        node.guest.reboot(&node_options())
    })?;
    let aa1 = fleet.node("aa-1");
    wait_until("aa-1's units after the reboot", CONVERGE, || {
        Ok(aa1
            .units()
            .iter()
            .all(|u| unit_state(&aa1.guest, u).is_ok_and(|s| s.active == "active")))
    })
    .await?;
    wait_until("the laptop's peer back on aa-1", CONVERGE, || {
        Ok(node_peer(aa1, &laptop_key)?.is_some())
    })
    .await?;
    let tunnel_addr = fleet.node("aa-1").tunnel_address;
    wait_until(
        "ping through the same tunnel after the reboot",
        CONVERGE,
        || laptop_device.answers_ping(&fleet.backend, tunnel_addr),
    )
    .await?;

    timeline.stage("one site.yml run: a new pvpn-agent on aa-1 and bb-1, and aa-2 joins region A");
    upgrade_and_add_node(
        fleet,
        &[("aa-1", &laptop_device), ("bb-1", &phone_device)],
        "aa-2",
    )
    .await?;

    timeline.stage("aa-2 takes the next device of region A");
    let tablet = user.new_device("Atlantis", "tablet").await?;
    let _tablet_device = tunnel_through(fleet, "aa-2", 23, &tablet.text).await?;

    timeline.stage("pvpn-backend killed; systemd restarts it and the bot answers");
    backend_comes_back(fleet, &user).await?;

    timeline.stage("pvpnctl status on the backend host: every node up and in sync");
    wait_until(
        "every node up with applied = published revision",
        CONVERGE,
        || {
            let status: serde_json::Value = serde_json::from_str(&fleet.pvpnctl("status --json")?)?;
            let nodes = status["nodes"].as_array().context("status without nodes")?;
            let mut names: Vec<&str> = nodes.iter().filter_map(|n| n["name"].as_str()).collect();
            names.sort_unstable();
            ensure!(
                names == ["aa-1", "aa-2", "bb-1"],
                "nodes in status: {names:?}"
            );
            Ok(nodes.iter().all(|n| {
                n["up"] == true
                    && n["applied_revision"] == n["published_revision"]
                    && n["published_revision"] == n["revision"]
                    && n["revision"].as_u64().is_some_and(|r| r > 0)
            }))
        },
    )
    .await?;
    Ok(())
}

/// The parameters AmneziaWG adds to a config's `[Interface]`.
const AMNEZIAWG_KEYS: [&str; 16] = [
    "Jc", "Jmin", "Jmax", "S1", "S2", "S3", "S4", "H1", "H2", "H3", "H4", "I1", "I2", "I3", "I4",
    "I5",
];

fn is_amneziawg_line(line: &str) -> bool {
    line.split_once('=')
        .is_some_and(|(key, _)| AMNEZIAWG_KEYS.contains(&key.trim()))
}

/// bb-1, made an AmneziaWG node by the playbook: the profile `pvpnctl node profile` shows is on
/// its interface (the agent sets it over netlink) and in the phone's config, the bot marks
/// Borealis and only Borealis as obfuscated, and a plain WireGuard client with the phone's keys
/// and endpoint gets no handshake (while the phone's AmneziaWG tunnel, up already, works).
async fn amneziawg_node(fleet: &Fleet, user: &BotUser<'_>, phone_config: &str) -> Result<()> {
    let node = fleet.node("bb-1");
    let shown = block_in_place(|| fleet.pvpnctl("node profile bb-1"))?;
    let profile: Vec<&str> = shown.lines().filter(|l| is_amneziawg_line(l)).collect();
    // Jc, Jmin, Jmax, S1, S2, H1–H4 always; S3, S4 and I1–I5 where the profile sets them.
    let has = |key: &str| {
        profile
            .iter()
            .any(|l| l.split_once('=').is_some_and(|(k, _)| k.trim() == key))
    };
    ensure!(
        profile.len() == shown.lines().count()
            && AMNEZIAWG_KEYS[..5].iter().all(|k| has(k))
            && AMNEZIAWG_KEYS[7..11].iter().all(|k| has(k)),
        "pvpnctl node profile bb-1 printed {shown:?}"
    );
    let on_interface = block_in_place(|| node.guest.run_ok("awg showconf awg0", COMMAND))?;
    let set: BTreeMap<&str, &str> = on_interface
        .lines()
        .filter(|l| is_amneziawg_line(l))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim(), v.trim()))
        .collect();
    // `awg` shows every parameter the module has; one the profile leaves out is 0 or empty there.
    let holds_profile = AMNEZIAWG_KEYS.iter().all(|key| {
        let want = profile
            .iter()
            .filter_map(|l| l.split_once('='))
            .find(|(k, _)| k.trim() == *key)
            .map(|(_, v)| v.trim());
        match (want, set.get(key)) {
            (Some(want), Some(have)) => want == *have,
            (Some(_), None) => false,
            (None, have) => have.is_none_or(|v| v.is_empty() || *v == "0"),
        }
    });
    ensure!(
        holds_profile,
        "bb-1's awg0 has the parameters {set:?}, pvpnctl shows {profile:?}"
    );
    let in_config: Vec<&str> = phone_config
        .lines()
        .filter(|l| is_amneziawg_line(l))
        .collect();
    ensure!(
        in_config == profile,
        "the phone's config carries {in_config:?}, pvpnctl shows {profile:?}"
    );

    let menu = user.say("/start").await?;
    let regions = user.press(&menu, "New device").await?;
    let marked: Vec<String> = regions
        .buttons()
        .into_iter()
        .map(|(label, _)| label)
        .filter(|label| label.contains("Atlantis") || label.contains("Borealis"))
        .collect();
    ensure!(
        marked.len() == 2
            && marked
                .iter()
                .all(|label| label.contains('🛡') == label.contains("Borealis")),
        "region buttons {marked:?}: only Borealis should carry 🛡"
    );

    let plain: String = phone_config
        .lines()
        .filter(|l| !is_amneziawg_line(l))
        .map(|l| format!("{l}\n"))
        .collect();
    let net = ClientNet::create(&fleet.net, 24)?;
    let tunnel = ClientTunnel::up(&net.ns, &plain)?;
    // wireguard-go sends an initiation at the first packet and again every 5 s.
    for _ in 0..12 {
        ensure!(
            !answers_ping(&net.ns, node.tunnel_address)?,
            "a plain WireGuard client got through the AmneziaWG node"
        );
    }
    let handshake = tunnel.latest_handshake()?;
    ensure!(
        handshake == 0,
        "a plain WireGuard client completed a handshake with bb-1 ({handshake})"
    );
    Ok(())
}

/// Redis on the backend host serves TLS only: its configuration opens no plain port, it
/// listens on the TLS port alone (loopback and the bridge address), a plain client gets no
/// answer there, and a TLS client that trusts the roles' CA gets Redis's own refusal of an
/// unauthenticated command (so the handshake and the certificate for that address work).
fn redis_speaks_tls_only(fleet: &Fleet) -> Result<()> {
    let backend = &fleet.backend;
    let addr = backend.addr();
    let ports = backend.run_ok("grep -E '^(port|tls-port) ' /etc/redis/redis.conf", COMMAND)?;
    ensure!(
        ports.lines().collect::<Vec<_>>()
            == ["port 0".to_string(), format!("tls-port {REDIS_PORT}")],
        "redis.conf opens {ports:?}, expected only the TLS port {REDIS_PORT}"
    );
    let listening = backend.run_ok(
        "ss -Hltnp | grep '\"redis-server\"' | awk '{print $4}' | sort",
        COMMAND,
    )?;
    let mut expected = vec![
        format!("127.0.0.1:{REDIS_PORT}"),
        format!("{addr}:{REDIS_PORT}"),
    ];
    expected.sort();
    ensure!(
        listening.lines().collect::<Vec<_>>() == expected,
        "redis-server listens on {listening:?}, expected only {expected:?}"
    );
    for host in ["127.0.0.1".to_string(), addr.to_string()] {
        let plain = backend.run(
            &format!("timeout 10 redis-cli -h {host} -p {REDIS_PORT} ping 2>&1"),
            COMMAND,
        )?;
        ensure!(
            !plain.stdout.contains("PONG") && !plain.stdout.contains("NOAUTH"),
            "Redis answered plain TCP on {host}:{REDIS_PORT}: {:?}",
            plain.stdout
        );
        let tls = backend.run(
            &format!(
                "timeout 10 redis-cli --tls --cacert /etc/redis/tls/ca.crt -h {host} -p {REDIS_PORT} ping 2>&1"
            ),
            COMMAND,
        )?;
        ensure!(
            tls.stdout.contains("NOAUTH"),
            "a TLS client trusting the roles' CA got {:?} from {host}:{REDIS_PORT}, expected \
             Redis's NOAUTH",
            tls.stdout
        );
    }
    Ok(())
}

/// A node's agent is configured with a `rediss://` URL for the backend host and holds a TCP
/// connection to Redis's port there: with nothing but TLS on that port (above) and the agent
/// applying peers (the tunnels), that connection is TLS.
fn agent_reaches_redis_by_tls(fleet: &Fleet, node: &str) -> Result<()> {
    let guest = &fleet.node(node).guest;
    let backend = fleet.backend.addr();
    let line = guest.run_ok("grep '^REDIS_URL=' /etc/pvpn/agent.env", COMMAND)?;
    // REDIS_URL='<scheme>://<user>:<password>@<host>:<port>/0': never print the password.
    let url = line
        .trim()
        .trim_start_matches("REDIS_URL=")
        .trim_matches('\'');
    let scheme = url.split("://").next().unwrap_or_default();
    let server = url
        .rsplit_once('@')
        .map(|(_, rest)| rest.split('/').next().unwrap_or_default())
        .unwrap_or_default();
    ensure!(
        scheme == "rediss" && server == format!("{backend}:{REDIS_PORT}"),
        "{node}'s agent.env names Redis as {scheme}://…@{server}, expected rediss://…@{backend}:{REDIS_PORT}"
    );
    wait_until_blocking(&format!("{node}'s agent connected to Redis"), || {
        let pid = unit_state(guest, "pvpn-agent.service")?.main_pid;
        let peers = guest.run_ok(
            &format!("ss -Htnp state established '( dport = :{REDIS_PORT} )' | grep 'pid={pid},' | awk '{{print $4}}'"),
            COMMAND,
        )?;
        Ok(peers
            .lines()
            .any(|p| p == format!("{backend}:{REDIS_PORT}")))
    })
}

/// Polls `check` every second until it holds, for up to [`CONVERGE`].
fn wait_until_blocking(what: &str, mut check: impl FnMut() -> Result<bool>) -> Result<()> {
    let deadline = Instant::now() + CONVERGE;
    let mut last = None;
    while Instant::now() < deadline {
        match check() {
            Ok(true) => return Ok(()),
            Ok(false) => last = None,
            Err(e) => last = Some(e),
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    match last {
        Some(e) => bail!("{what}: not within {CONVERGE:?}; last error: {e:#}"),
        None => bail!("{what}: not within {CONVERGE:?}"),
    }
}

/// One `site.yml` run that ships a new agent binary (the backend's binaries unchanged) and adds
/// `new_node` to the inventory: the running agents restart on the new binary and every client's
/// session on their nodes survives (the peer is never removed: its counters keep counting and
/// its handshake is not replaced by a new one forced by a lost session), and `new_node` is
/// provisioned in the same run.
async fn upgrade_and_add_node(
    fleet: &mut Fleet,
    clients: &[(&str, &Device)],
    new_node: &str,
) -> Result<()> {
    let mut before = Vec::new();
    for (name, device) in clients {
        let node = fleet.node(name);
        // Traffic first, so that a peer removed and re-added would show in its counters.
        block_in_place(|| device.send_traffic(&fleet.backend, node.tunnel_address))
            .with_context(|| format!("traffic through {name} before the upgrade"))?;
        let peer = block_in_place(|| node_peer(node, &device.public_key()))?
            .with_context(|| format!("the client's peer on {name}"))?;
        let agent = block_in_place(|| unit_state(&node.guest, "pvpn-agent.service"))?;
        before.push((peer, agent));
    }
    let backend_before = block_in_place(|| unit_state(&fleet.backend, "pvpn-backend.service"))?;
    let upgrade = fleet.work.join("bin-upgrade");
    ship_agent_release(&fleet.binaries_dir, &upgrade)?;
    let new_agent = sha256(&upgrade.join("pvpn-agent"))?;
    ensure!(
        new_agent != sha256(&fleet.binaries_dir.join("pvpn-agent"))?,
        "not a new binary"
    );
    fleet.binaries_dir = upgrade;
    fleet.add_to_inventory(&[new_node]);
    let run = block_in_place(|| fleet.run_site())?;
    report_run("upgrade + added node run", &run);
    ensure!(
        run.recap.contains_key(new_node) && run.recap.len() == 4,
        "hosts in the run: {:?}",
        run.recap
    );
    let backend_after = block_in_place(|| unit_state(&fleet.backend, "pvpn-backend.service"))?;
    ensure!(
        backend_after.invocation == backend_before.invocation,
        "an agent release restarted pvpn-backend: {backend_before:?} → {backend_after:?}"
    );
    for ((node, device), (peer0, agent0)) in clients.iter().zip(before) {
        let guest = &fleet.node(node).guest;
        let agent = block_in_place(|| unit_state(guest, "pvpn-agent.service"))?;
        ensure!(
            agent.active == "active" && agent.main_pid != agent0.main_pid,
            "{node}'s agent did not restart on the new binary: {agent0:?} → {agent:?}"
        );
        let running = block_in_place(|| {
            guest.run_ok(&format!("sha256sum /proc/{}/exe", agent.main_pid), COMMAND)
        })?;
        ensure!(
            running.starts_with(&new_agent),
            "{node} runs {running}, not {new_agent}"
        );
        let peer = block_in_place(|| node_peer(fleet.node(node), &device.public_key()))?
            .with_context(|| format!("the client's peer vanished from {node}"))?;
        ensure!(
            peer.rx_bytes >= peer0.rx_bytes
                && peer.tx_bytes >= peer0.tx_bytes
                && peer.latest_handshake >= peer0.latest_handshake,
            "{node} dropped the client's session in the upgrade: {peer0:?} → {peer:?}"
        );
        ensure!(
            block_in_place(|| device.answers_ping(&fleet.backend, fleet.node(node).tunnel_address))?,
            "no ping through {node} after the upgrade"
        );
    }
    block_in_place(|| -> Result<()> {
        let node = fleet.node(new_node);
        node_units_running(node)?;
        expect_hardened(&node.guest, "pvpn-agent.service", CAP_NET_ADMIN)?;
        agent_reaches_redis_by_tls(fleet, new_node)
    })?;
    Ok(())
}

fn sha256(path: &std::path::Path) -> Result<String> {
    let out = std::process::Command::new("sha256sum").arg(path).output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(text
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string())
}

/// `pvpn-backend` killed on the backend host: systemd restarts it, and the bot answers again.
async fn backend_comes_back(fleet: &Fleet, user: &BotUser<'_>) -> Result<()> {
    let before = block_in_place(|| unit_state(&fleet.backend, "pvpn-backend.service"))?;
    block_in_place(|| {
        fleet
            .backend
            .run_ok("systemctl kill -s SIGKILL pvpn-backend.service", COMMAND)
    })?;
    wait_until("systemd to restart pvpn-backend", CONVERGE, || {
        let now = unit_state(&fleet.backend, "pvpn-backend.service")?;
        Ok(now.active == "active"
            && now.restarts == before.restarts + 1
            && now.main_pid != before.main_pid)
    })
    .await?;
    user.api.send_text(&user.tg, "/start")?;
    let reply = user.api.next_message(user.tg.id, CONVERGE).await?;
    if reply.button_data("New device").is_none() {
        bail!("after the restart the bot answered {:?}", reply.text());
    }
    Ok(())
}
