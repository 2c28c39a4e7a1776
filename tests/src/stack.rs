//! PVPN's processes on one machine: PostgreSQL (a throwaway database), a private Redis, the local
//! Bot API server in place of Telegram, `pvpn-backend`, and one `pvpn-agent` per [`VpnSite`].
//! Each is a real process or server; dropping the [`Stack`] stops every one of them.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use pvpn_testkit::botapi::BotApiServer;
use pvpn_testkit::postgres::TestDatabase;
use pvpn_testkit::redis_server::RedisServer;

use crate::binaries::Binaries;
use crate::process::ChildProcess;
use crate::site::VpnSite;

/// Intervals short enough for a test, long enough to be realistic in shape.
const AGENT_HEARTBEAT_SECS: &str = "2";
const AGENT_STATS_SECS: &str = "2";
const AGENT_RECONCILE_SECS: &str = "10";

pub struct Stack {
    pub bins: Binaries,
    pub bot_api: BotApiServer,
    pub redis: RedisServer,
    // Behind locks so a test can restart processes while it holds `&Stack` (its Telegram user
    // borrows the Bot API server).
    backend: Mutex<Option<ChildProcess>>,
    agents: Mutex<BTreeMap<String, ChildProcess>>,
    pub log_dir: PathBuf,
    // Dropped last: the processes above hold connections to it.
    pub database: TestDatabase,
}

/// A poisoned lock only means another thread panicked mid-test; the processes are still there
/// to be stopped.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// `env` with the `extra` variables replacing or added to it.
fn with_extra<'a>(
    mut env: Vec<(&'a str, String)>,
    extra: &[(&'a str, &str)],
) -> Vec<(&'a str, String)> {
    env.retain(|(key, _)| !extra.iter().any(|(k, _)| k == key));
    env.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
    env
}

/// Where the stack's processes serve their metrics: a port the kernel picks when the process
/// binds, because a port picked here and bound later can be taken in between (by any outgoing
/// connection's ephemeral port; it happened: the backend then exits at start). Nothing in the
/// stack reads these endpoints.
const METRICS_ADDR: &str = "127.0.0.1:0";

impl Stack {
    /// Starts the services and migrates the database; no backend or agent runs yet.
    pub async fn start() -> Result<Self> {
        let bins = Binaries::locate()?;
        let database = TestDatabase::create().await?;
        let redis = RedisServer::start()?;
        let bot_api = BotApiServer::start().await?;
        let log_dir = std::env::temp_dir().join(format!("pvpn-stack-{}", database.name()));
        std::fs::create_dir_all(&log_dir)?;
        let stack = Self {
            bins,
            bot_api,
            redis,
            backend: Mutex::new(None),
            agents: Mutex::new(BTreeMap::new()),
            log_dir,
            database,
        };
        stack.ctl(&["migrate"])?;
        Ok(stack)
    }

    /// Runs `pvpnctl <args>` against the stack's database and returns its stdout.
    pub fn ctl(&self, args: &[&str]) -> Result<String> {
        let redis_url = self.redis.url();
        let env = [
            ("DATABASE_URL", self.database.url()),
            ("REDIS_URL", redis_url.as_str()),
        ];
        self.bins.pvpnctl(&env, args)
    }

    /// Registers a site's region and node with `pvpnctl`, as an operator (or Ansible) would.
    pub fn register(&self, site: &VpnSite, capacity: u32) -> Result<()> {
        self.ctl(&[
            "region",
            "add",
            site.region.as_str(),
            "--name",
            &site.display_name,
        ])?;
        let args = site.node_add_args(capacity);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.ctl(&args)?;
        Ok(())
    }

    /// Starts `pvpn-backend` with the bot talking to the local Bot API server.
    pub fn start_backend(&self, admin_ids: &[i64]) -> Result<()> {
        self.start_backend_with(admin_ids, &[])
    }

    /// [`Stack::start_backend`] with extra environment variables (they win over the defaults).
    pub fn start_backend_with(&self, admin_ids: &[i64], extra: &[(&str, &str)]) -> Result<()> {
        let admins = admin_ids
            .iter()
            .map(i64::to_string)
            .collect::<Vec<_>>()
            .join(",");
        let env = vec![
            ("DATABASE_URL", self.database.url().to_string()),
            ("REDIS_URL", self.redis.url()),
            ("TELEGRAM_BOT_TOKEN", self.bot_api.token().to_string()),
            ("TELEGRAM_API_URL", self.bot_api.url()),
            ("PVPN_ADMIN_IDS", admins),
            ("PVPN_REGISTRATION", "open".to_string()),
            ("PVPN_METRICS_ADDR", METRICS_ADDR.to_string()),
            (
                "PVPN_HEARTBEAT_INTERVAL_SECS",
                AGENT_HEARTBEAT_SECS.to_string(),
            ),
        ];
        let env = with_extra(env, extra);
        let process = ChildProcess::spawn("backend", &self.bins.backend, &[], &env, &self.log_dir)?;
        *lock(&self.backend) = Some(process);
        Ok(())
    }

    /// Starts the agent of `site` (userspace backend: it drives `wireguard-go` through its UAPI
    /// socket, the same code path that drives kernel WireGuard through netlink in production).
    pub fn start_agent(&self, site: &VpnSite) -> Result<()> {
        self.start_agent_with(site, &[])
    }

    /// [`Stack::start_agent`] with extra environment variables (they win over the defaults).
    pub fn start_agent_with(&self, site: &VpnSite, extra: &[(&str, &str)]) -> Result<()> {
        let env = vec![
            ("REDIS_URL", self.redis.url()),
            ("PVPN_REGION", site.region.to_string()),
            ("PVPN_NODE", site.node.to_string()),
            ("PVPN_SUBNET", site.subnet.to_string()),
            ("PVPN_WG_INTERFACE", site.wg.name().to_string()),
            ("PVPN_WG_BACKEND", "userspace".to_string()),
            ("PVPN_METRICS_ADDR", METRICS_ADDR.to_string()),
            (
                "PVPN_HEARTBEAT_INTERVAL_SECS",
                AGENT_HEARTBEAT_SECS.to_string(),
            ),
            ("PVPN_STATS_INTERVAL_SECS", AGENT_STATS_SECS.to_string()),
            (
                "PVPN_RECONCILE_INTERVAL_SECS",
                AGENT_RECONCILE_SECS.to_string(),
            ),
        ];
        let env = with_extra(env, extra);
        let name = format!("agent-{}", site.node);
        let process = ChildProcess::spawn(&name, &self.bins.agent, &[], &env, &self.log_dir)?;
        lock(&self.agents).insert(site.node.to_string(), process);
        Ok(())
    }

    /// SIGKILLs `pvpn-backend`, as a crash would (nothing else stops it without its grace
    /// period). Idempotent.
    pub fn kill_backend(&self) {
        if let Some(mut backend) = lock(&self.backend).take() {
            backend.kill_hard();
        }
    }

    /// The pid of the running `pvpn-backend`, to read its memory from `/proc`.
    pub fn backend_pid(&self) -> Option<u32> {
        lock(&self.backend).as_ref().and_then(ChildProcess::pid)
    }

    /// SIGKILLs the agent of `site`, as a crash would.
    pub fn kill_agent(&self, site: &VpnSite) {
        let agent = lock(&self.agents).remove(site.node.as_str());
        if let Some(mut agent) = agent {
            agent.kill_hard();
        }
    }

    /// Every process still running, or an error naming the one that died, with its log.
    pub fn check_processes(&self) -> Result<()> {
        let mut backend = lock(&self.backend);
        let mut agents = lock(&self.agents);
        for process in backend.iter_mut().chain(agents.values_mut()) {
            if !process.is_running() {
                bail!(
                    "{} exited; its log:\n{}",
                    process.log_path().display(),
                    process.log_tail(40)
                );
            }
        }
        Ok(())
    }

    /// The last lines of every process's log, for a failure message.
    pub fn logs(&self) -> String {
        let backend = lock(&self.backend);
        let agents = lock(&self.agents);
        backend
            .iter()
            .chain(agents.values())
            .map(|p| format!("--- {} ---\n{}\n", p.log_path().display(), p.log_tail(30)))
            .collect()
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        // Agents first (they would log Redis errors otherwise), then the backend.
        lock(&self.agents).clear();
        *lock(&self.backend) = None;
        let _ = std::fs::remove_dir_all(&self.log_dir);
    }
}

/// Polls `check` every 200 ms until it returns `Ok(true)` or `timeout` passes. `check` may
/// block briefly (a ping, a `wg show`), so it runs in place of an async task (multi-threaded
/// runtime required) while the Bot API server keeps serving on the other workers.
pub async fn wait_until(
    what: &str,
    timeout: Duration,
    check: impl Fn() -> Result<bool>,
) -> Result<()> {
    let deadline = Instant::now() + timeout;
    let mut last_error = None;
    while Instant::now() < deadline {
        match tokio::task::block_in_place(&check) {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(e) => last_error = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    match last_error {
        Some(e) => bail!("timed out after {timeout:?} waiting for {what}; last error: {e:#}"),
        None => bail!("timed out after {timeout:?} waiting for {what}"),
    }
}
