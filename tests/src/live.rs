//! `pvpn-demo` with `TELEGRAM_BOT_TOKEN` set: PVPN on this machine, live on Telegram.
//!
//! One region `local` with one node on this machine: kernel WireGuard where the module exists,
//! otherwise `wireguard-go`, both as interface `pvpn0` in the main network namespace so that real
//! devices can reach it at `PVPN_PUBLIC_ENDPOINT`. The backend keeps its data in `DATABASE_URL`
//! (default: the `pvpn` database `scripts/setup.sh` creates) and Redis at `REDIS_URL` (default:
//! the local Redis), so users and devices survive a restart; the node key is kept in
//! `/var/lib/pvpn/local-node.key` (0600) so configs stay valid. Ctrl-C stops the processes and
//! removes the interface; the data stays.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};
use pvpn_common::PrivateKey;

use crate::binaries::Binaries;
use crate::process::ChildProcess;

const INTERFACE: &str = "pvpn0";
const KEY_FILE: &str = "/var/lib/pvpn/local-node.key";

fn env_or(key: &str, default: &str) -> String {
    std::env::var(key).unwrap_or_else(|_| default.to_string())
}

fn command(program: &str, args: &[&str], stdin: Option<&str>) -> Result<String> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("running {program}"))?;
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(input.as_bytes())?;
    }
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "{program} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The node's private key, created once and kept on this machine only.
fn node_key() -> Result<PrivateKey> {
    if let Ok(text) = std::fs::read_to_string(KEY_FILE) {
        return text.trim().parse().context(KEY_FILE);
    }
    let key = PrivateKey::generate();
    let path = Path::new(KEY_FILE);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, key.to_base64())?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(key)
}

/// The local node's interface; removed when dropped.
struct NodeInterface {
    /// `Some` when `wireguard-go` runs it (no kernel module).
    userspace: Option<ChildProcess>,
}

impl NodeInterface {
    fn create(key: &PrivateKey, port: &str, address: &str, log_dir: &Path) -> Result<Self> {
        let kernel = command("ip", &["link", "add", INTERFACE, "type", "wireguard"], None).is_ok();
        let userspace = if kernel {
            None
        } else {
            let go = ChildProcess::spawn(
                "wireguard-go",
                Path::new("/usr/bin/wireguard-go"),
                &["-f", INTERFACE],
                &[],
                log_dir,
            )?;
            let socket = format!("/var/run/wireguard/{INTERFACE}.sock");
            for _ in 0..100 {
                if Path::new(&socket).exists() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            Some(go)
        };
        let iface = Self { userspace };
        command(
            "wg",
            &[
                "set",
                INTERFACE,
                "private-key",
                "/dev/stdin",
                "listen-port",
                port,
            ],
            Some(&key.to_base64()),
        )?;
        command(
            "ip",
            &["address", "replace", address, "dev", INTERFACE],
            None,
        )?;
        command("ip", &["link", "set", INTERFACE, "up"], None)?;
        Ok(iface)
    }

    fn backend(&self) -> &'static str {
        if self.userspace.is_some() {
            "userspace"
        } else {
            "kernel"
        }
    }
}

impl Drop for NodeInterface {
    fn drop(&mut self) {
        if self.userspace.take().is_none() {
            let _ = command("ip", &["link", "del", INTERFACE], None);
        }
    }
}

pub async fn run() -> Result<()> {
    let Ok(endpoint) = std::env::var("PVPN_PUBLIC_ENDPOINT") else {
        bail!(
            "with TELEGRAM_BOT_TOKEN set, PVPN_PUBLIC_ENDPOINT must say where users' devices reach \
             this machine, as host:port (for example vpn.example.net:51820)"
        );
    };
    let endpoint: pvpn_common::client_config::Endpoint =
        endpoint.parse().context("PVPN_PUBLIC_ENDPOINT")?;
    let subnet = env_or("PVPN_SUBNET", "198.19.0.0/24");
    let subnet = pvpn_common::addressing::ClientSubnet::new(subnet.parse().context("PVPN_SUBNET")?)
        .context("PVPN_SUBNET")?;
    let database_url = env_or("DATABASE_URL", "postgres://pvpn:pvpn@127.0.0.1:5432/pvpn");
    let redis_url = env_or("REDIS_URL", "redis://127.0.0.1:6379/");
    let bins = Binaries::locate()?;
    let log_dir = std::env::temp_dir().join("pvpn-live");
    std::fs::create_dir_all(&log_dir)?;

    let key = node_key()?;
    let port = endpoint.port().to_string();
    let address = format!("{}/{}", subnet.server_address(), subnet.net().prefix_len());
    let iface = NodeInterface::create(&key, &port, &address, &log_dir)?;
    println!(
        "node interface {INTERFACE} ({} WireGuard) on {address}, port {port}",
        iface.backend()
    );

    let ctl = |args: &[&str]| bins.pvpnctl(&[("DATABASE_URL", database_url.as_str())], args);
    ctl(&["migrate"])?;
    ctl(&["region", "add", "local", "--name", "Local"])?;
    let subnet_text = subnet.net().to_string();
    let endpoint_text = endpoint.to_string();
    let public_key = key.public_key().to_base64();
    ctl(&[
        "node",
        "add",
        "local-1",
        "--region",
        "local",
        "--endpoint",
        &endpoint_text,
        "--public-key",
        &public_key,
        "--listen-port",
        &port,
        "--subnet",
        &subnet_text,
        "--capacity",
        "250",
    ])?;

    let inherit = |key: &'static str| std::env::var(key).ok().map(|v| (key, v));
    let agent_env = vec![
        ("REDIS_URL", redis_url.clone()),
        ("PVPN_REGION", "local".to_string()),
        ("PVPN_NODE", "local-1".to_string()),
        ("PVPN_SUBNET", subnet_text.clone()),
        ("PVPN_WG_INTERFACE", INTERFACE.to_string()),
        ("PVPN_WG_BACKEND", iface.backend().to_string()),
    ];
    let _agent = ChildProcess::spawn("agent", &bins.agent, &[], &agent_env, &log_dir)?;
    let mut backend_env = vec![
        ("DATABASE_URL", database_url.clone()),
        ("REDIS_URL", redis_url.clone()),
    ];
    backend_env.extend(
        [
            "TELEGRAM_BOT_TOKEN",
            "TELEGRAM_API_URL",
            "PVPN_ADMIN_IDS",
            "PVPN_REGISTRATION",
        ]
        .into_iter()
        .filter_map(inherit),
    );
    let _backend = ChildProcess::spawn("backend", &bins.backend, &[], &backend_env, &log_dir)?;
    println!(
        "pvpn-backend and pvpn-agent run (logs in {}). Talk to your bot on Telegram; \
         Ctrl-C stops them and removes {INTERFACE}.\nNote: for devices to reach the internet \
         through this node, enable IP forwarding and NAT (the Ansible role wireguard_node does).",
        log_dir.display()
    );
    std::future::pending::<()>().await;
    Ok(())
}
