//! The agent's configuration: one struct, one place for defaults, environment over TOML file.
//!
//! Sources, weakest first: the defaults in [`Config::DEFAULTS`], the optional TOML file named by
//! `PVPN_CONFIG` (keys in lowercase without the `PVPN_` prefix: `redis_url`, `region`, `node`,
//! `wg_interface`, ...), then the environment, field by field. Every value is parsed into its
//! validated type here; a bad value stops start-up with an error naming the key.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use pvpn_common::{NodeName, RegionCode};
use serde::Deserialize;

/// Which `wireguard-control` backend talks to the interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WgBackend {
    /// Netlink to the kernel module (production).
    Kernel,
    /// The UAPI socket of a userspace implementation such as `wireguard-go` (tests, no module).
    Userspace,
}

impl std::str::FromStr for WgBackend {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "kernel" => Ok(Self::Kernel),
            "userspace" => Ok(Self::Userspace),
            other => Err(format!("expected `kernel` or `userspace`, got {other:?}")),
        }
    }
}

/// Everything the agent needs to run.
#[derive(Clone)]
pub struct Config {
    /// May carry an ACL user and password: never logged as a whole (see [`Config::redis_host`]).
    pub redis_url: String,
    pub region: RegionCode,
    pub node: NodeName,
    pub wg_interface: String,
    pub wg_backend: WgBackend,
    pub metrics_addr: SocketAddr,
    pub reconcile_interval: Duration,
    pub heartbeat_interval: Duration,
    pub stats_interval: Duration,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("redis", &self.redis_host())
            .field("region", &self.region)
            .field("node", &self.node)
            .field("wg_interface", &self.wg_interface)
            .field("wg_backend", &self.wg_backend)
            .field("metrics_addr", &self.metrics_addr)
            .field("reconcile_interval", &self.reconcile_interval)
            .field("heartbeat_interval", &self.heartbeat_interval)
            .field("stats_interval", &self.stats_interval)
            .finish()
    }
}

/// A configuration value that stops start-up; always names the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{key} is required")]
    Missing { key: &'static str },
    #[error("{key}: {reason}")]
    Invalid { key: &'static str, reason: String },
    #[error("PVPN_CONFIG file {path}: {reason}")]
    File { path: String, reason: String },
}

/// The TOML file's shape: every key optional, unknown keys rejected.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    redis_url: Option<String>,
    region: Option<String>,
    node: Option<String>,
    wg_interface: Option<String>,
    wg_backend: Option<String>,
    metrics_addr: Option<String>,
    reconcile_interval_secs: Option<u64>,
    heartbeat_interval_secs: Option<u64>,
    stats_interval_secs: Option<u64>,
}

/// The defaults, as the text a user would write, so they go through the same parsing.
struct Defaults {
    wg_interface: &'static str,
    wg_backend: &'static str,
    metrics_addr: &'static str,
    reconcile_interval_secs: &'static str,
    heartbeat_interval_secs: &'static str,
    stats_interval_secs: &'static str,
}

impl Config {
    const DEFAULTS: Defaults = Defaults {
        wg_interface: "wg0",
        wg_backend: "kernel",
        metrics_addr: "127.0.0.1:9101",
        reconcile_interval_secs: "60",
        heartbeat_interval_secs: "10",
        stats_interval_secs: "30",
    };

    /// Reads the process environment (and the file it names).
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::load(|key| std::env::var(key).ok())
    }

    /// Builds the configuration from `env` (a lookup, so tests need not touch the process
    /// environment) and the TOML file named by its `PVPN_CONFIG`.
    pub fn load(env: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let file = match env("PVPN_CONFIG") {
            Some(path) => read_file(Path::new(&path))?,
            None => FileConfig::default(),
        };
        let num = |n: Option<u64>| n.map(|n| n.to_string());
        // Environment first, then file, then default: the first that is set wins.
        let pick = |key: &'static str, from_file: Option<String>, default: Option<&str>| {
            env(key)
                .or(from_file)
                .or(default.map(str::to_string))
                .ok_or(ConfigError::Missing { key })
        };
        let d = Self::DEFAULTS;

        let redis_url = pick("REDIS_URL", file.redis_url, None)?;
        redis::Client::open(redis_url.as_str()).map_err(|e| invalid("REDIS_URL", e))?;
        let region = pick("PVPN_REGION", file.region, None)?;
        let node = pick("PVPN_NODE", file.node, None)?;
        let wg_interface = pick("PVPN_WG_INTERFACE", file.wg_interface, Some(d.wg_interface))?;
        validate_interface_name(&wg_interface).map_err(|r| invalid("PVPN_WG_INTERFACE", r))?;
        let wg_backend = pick("PVPN_WG_BACKEND", file.wg_backend, Some(d.wg_backend))?;
        let metrics_addr = pick("PVPN_METRICS_ADDR", file.metrics_addr, Some(d.metrics_addr))?;
        let reconcile = pick(
            "PVPN_RECONCILE_INTERVAL_SECS",
            num(file.reconcile_interval_secs),
            Some(d.reconcile_interval_secs),
        )?;
        let heartbeat = pick(
            "PVPN_HEARTBEAT_INTERVAL_SECS",
            num(file.heartbeat_interval_secs),
            Some(d.heartbeat_interval_secs),
        )?;
        let stats = pick(
            "PVPN_STATS_INTERVAL_SECS",
            num(file.stats_interval_secs),
            Some(d.stats_interval_secs),
        )?;

        Ok(Self {
            redis_url,
            region: region.parse().map_err(|e| invalid("PVPN_REGION", e))?,
            node: node.parse().map_err(|e| invalid("PVPN_NODE", e))?,
            wg_interface,
            wg_backend: wg_backend
                .parse()
                .map_err(|e| invalid("PVPN_WG_BACKEND", e))?,
            metrics_addr: metrics_addr
                .parse()
                .map_err(|e| invalid("PVPN_METRICS_ADDR", e))?,
            reconcile_interval: seconds("PVPN_RECONCILE_INTERVAL_SECS", &reconcile)?,
            heartbeat_interval: seconds("PVPN_HEARTBEAT_INTERVAL_SECS", &heartbeat)?,
            stats_interval: seconds("PVPN_STATS_INTERVAL_SECS", &stats)?,
        })
    }

    /// The Redis address without credentials, for logs.
    pub fn redis_host(&self) -> String {
        match redis::Client::open(self.redis_url.as_str()) {
            Ok(client) => client.get_connection_info().addr().to_string(),
            Err(_) => "<invalid>".to_string(),
        }
    }
}

fn invalid(key: &'static str, reason: impl std::fmt::Display) -> ConfigError {
    ConfigError::Invalid {
        key,
        reason: reason.to_string(),
    }
}

fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let file_error = |reason: String| ConfigError::File {
        path: path.display().to_string(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| file_error(e.to_string()))?;
    toml::from_str(&text).map_err(|e| file_error(e.to_string()))
}

/// A whole number of seconds between 1 and one day.
fn seconds(key: &'static str, value: &str) -> Result<Duration, ConfigError> {
    let secs: u64 = value
        .trim()
        .parse()
        .map_err(|_| invalid(key, format!("expected whole seconds, got {value:?}")))?;
    if !(1..=86_400).contains(&secs) {
        return Err(invalid(
            key,
            format!("must be 1..=86400 seconds, got {secs}"),
        ));
    }
    Ok(Duration::from_secs(secs))
}

/// Linux interface names: 1 to 15 bytes, no '/', whitespace or NUL.
fn validate_interface_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 15 {
        return Err(format!("must be 1 to 15 characters, got {:?}", name));
    }
    if name
        .bytes()
        .any(|b| b == b'/' || b == 0 || b.is_ascii_whitespace() || !b.is_ascii_graphic())
    {
        return Err(format!("{name:?} is not a valid interface name"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn load(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let env: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::load(|k| env.get(k).cloned())
    }

    const MINIMAL: [(&str, &str); 3] = [
        ("REDIS_URL", "redis://agent:secret@127.0.0.1:6379/"),
        ("PVPN_REGION", "nl"),
        ("PVPN_NODE", "nl-1"),
    ];

    #[test]
    fn defaults_fill_the_rest() {
        let c = load(&MINIMAL).unwrap();
        assert_eq!(c.wg_interface, "wg0");
        assert_eq!(c.wg_backend, WgBackend::Kernel);
        assert_eq!(c.metrics_addr.to_string(), "127.0.0.1:9101");
        assert_eq!(c.reconcile_interval, Duration::from_secs(60));
        assert_eq!(c.heartbeat_interval, Duration::from_secs(10));
        assert_eq!(c.stats_interval, Duration::from_secs(30));
        assert_eq!(c.node.as_str(), "nl-1");
    }

    #[test]
    fn debug_hides_the_redis_password() {
        let c = load(&MINIMAL).unwrap();
        let shown = format!("{c:?}");
        assert!(!shown.contains("secret"), "{shown}");
        assert!(shown.contains("127.0.0.1:6379"), "{shown}");
    }

    #[test]
    fn invalid_values_name_their_key() {
        let cases: [(&str, &str); 7] = [
            ("PVPN_REGION", "NL!"),
            ("PVPN_NODE", ""),
            ("PVPN_WG_BACKEND", "netlink"),
            ("PVPN_METRICS_ADDR", "localhost"),
            ("PVPN_HEARTBEAT_INTERVAL_SECS", "0"),
            ("PVPN_STATS_INTERVAL_SECS", "ten"),
            ("PVPN_WG_INTERFACE", "a-very-long-interface"),
        ];
        for (key, value) in cases {
            let mut pairs = MINIMAL.to_vec();
            pairs.retain(|(k, _)| *k != key);
            pairs.push((key, value));
            let err = load(&pairs).expect_err(key).to_string();
            assert!(err.starts_with(key), "{key}: {err}");
        }
        let err = load(&[
            ("REDIS_URL", "not a url"),
            ("PVPN_REGION", "nl"),
            ("PVPN_NODE", "n"),
        ])
        .expect_err("bad url")
        .to_string();
        assert!(err.starts_with("REDIS_URL"), "{err}");
        let err = load(&MINIMAL[1..]).expect_err("missing").to_string();
        assert_eq!(err, "REDIS_URL is required");
    }

    #[test]
    fn environment_overrides_file_field_by_field() {
        let dir = std::env::temp_dir().join(format!("pvpn-agent-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("agent.toml");
        std::fs::write(
            &path,
            "redis_url = \"redis://file:6379/\"\nregion = \"de\"\nnode = \"de-1\"\n\
             wg_interface = \"wgfile\"\nheartbeat_interval_secs = 5\n",
        )
        .unwrap();
        let path_text = path.display().to_string();
        let c = load(&[("PVPN_CONFIG", &path_text), ("PVPN_NODE", "de-2")]).unwrap();
        assert_eq!(c.region.as_str(), "de");
        assert_eq!(c.node.as_str(), "de-2");
        assert_eq!(c.wg_interface, "wgfile");
        assert_eq!(c.heartbeat_interval, Duration::from_secs(5));
        assert_eq!(c.stats_interval, Duration::from_secs(30));

        std::fs::write(&path, "surprise = 1\n").unwrap();
        let err = load(&[("PVPN_CONFIG", &path_text)]).expect_err("unknown key");
        assert!(matches!(err, ConfigError::File { .. }), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
