//! `pvpn-demo`: the README's first command runs this after building.
//!
//! Without `TELEGRAM_BOT_TOKEN`, it starts a whole PVPN on this machine (a throwaway PostgreSQL
//! database, a private Redis, `pvpn-backend`, one `pvpn-agent` driving a `wireguard-go` node in a
//! network namespace, and the bundled local Bot API server in place of Telegram), lets a scripted
//! user get a config from the bot, brings the tunnel up in a client namespace and pings through
//! it, printing each step. Then it keeps everything running until Ctrl-C, and removes all of it.
//!
//! With `TELEGRAM_BOT_TOKEN` set, the same node and agent are set up, but the backend talks to
//! the real Telegram (or `TELEGRAM_API_URL`) and keeps its data in `DATABASE_URL`; see the README.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use pvpn_common::client_config::ParsedConfig;
use pvpn_tests::site::VpnSite;
use pvpn_tests::stack::{Stack, wait_until};
use pvpn_tests::tunnel::{ClientTunnel, ping_series};
use pvpn_tests::user::BotUser;

fn step(n: u32, text: &str) {
    println!("\n\x1b[1;32m[{n}]\x1b[0m {text}");
}

fn detail(text: impl AsRef<str>) {
    for line in text.as_ref().lines() {
        println!("      {line}");
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 4)]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    // Ctrl-C at any step drops the demo future, and with it every process, interface, namespace,
    // database and Redis it made (each is a guard that cleans up on drop).
    let demo = async {
        if std::env::var_os("TELEGRAM_BOT_TOKEN").is_some() {
            pvpn_tests::live::run().await
        } else {
            demo().await
        }
    };
    tokio::select! {
        outcome = demo => outcome,
        _ = tokio::signal::ctrl_c() => {
            println!("\ninterrupted: removing everything this run started");
            Ok(())
        }
    }
}

async fn demo() -> Result<()> {
    let started = Instant::now();

    step(
        1,
        "Network: a node namespace with wireguard-go, a client namespace, a veth between them",
    );
    let site = VpnSite::create(1, "local", "Local demo")
        .context("creating network namespaces (run as root)")?;
    detail(format!(
        "node namespace {} · interface {} · endpoint {} · client subnet {}",
        site.server_ns.name(),
        site.wg.name(),
        site.endpoint,
        site.subnet
    ));

    step(
        2,
        "Services: a fresh PostgreSQL database (migrated), a private Redis, a local Bot API server",
    );
    let stack = Stack::start().await?;
    detail(format!(
        "database {} · redis {} · Bot API {}",
        stack.database.name(),
        stack.redis.url(),
        stack.bot_api.url()
    ));

    step(
        3,
        "Operator: `pvpnctl region add` and `pvpnctl node add` register the node",
    );
    stack.register(&site, 100)?;
    detail(stack.ctl(&["node", "list"])?);

    step(
        4,
        "Processes: pvpn-agent for the node, pvpn-backend with the bot",
    );
    stack.start_agent(&site)?;
    stack.start_backend(&[])?;
    detail(format!("logs in {}", stack.log_dir.display()));

    step(
        5,
        "A user talks to the bot: /start → New device → Local demo → \"laptop\"",
    );
    let user = BotUser::new(&stack.bot_api, 4242, "Demo");
    let config = user.new_device("Local demo", "laptop").await?;
    let parsed = ParsedConfig::parse(&config.text).map_err(anyhow::Error::msg)?;
    detail(format!(
        "received {} (+ a QR code and instructions): address {}, endpoint {}",
        config.file_name,
        parsed.interface_value("Address").unwrap_or("?"),
        parsed.peer_value("Endpoint").unwrap_or("?")
    ));

    step(
        6,
        "The client brings the config up (wireguard-go + wg setconf) in its namespace",
    );
    let tunnel = ClientTunnel::up(&site.client_ns, &config.text)?;
    let key = tunnel.wg.public_key();
    wait_until("the agent to add the peer", Duration::from_secs(30), || {
        Ok(site.wg.peers()?.iter().any(|p| p.public_key == key))
    })
    .await?;
    detail(format!("the agent put peer {key} on {}", site.wg.name()));

    step(
        7,
        &format!("Ping {} (the node) through the tunnel", site.tunnel_address),
    );
    let ns = site.client_ns.name().to_string();
    let target = site.tunnel_address;
    let received = tokio::task::spawn_blocking(move || ping_series(&ns, target, 5)).await??;
    detail(format!(
        "{received} of 5 answered; handshake at unix time {}",
        tunnel.latest_handshake()?
    ));
    anyhow::ensure!(
        received > 0,
        "no ping went through the tunnel:\n{}",
        stack.logs()
    );

    println!(
        "\n\x1b[1mPVPN works ({:.0?}).\x1b[0m Everything keeps running; try:\n  \
         ip netns exec {} ping {}\n  wg show {}\n\
         Press Ctrl-C to stop and remove everything this demo started.",
        started.elapsed(),
        site.client_ns.name(),
        site.tunnel_address,
        site.wg.name()
    );
    // Keep everything alive until Ctrl-C drops this future (see `main`).
    std::future::pending::<()>().await;
    drop((tunnel, stack, site));
    Ok(())
}
