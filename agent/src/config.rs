//! The agent's configuration: one struct, one place for defaults, environment over TOML file.
//!
//! Sources, weakest first: the defaults (`Config::DEFAULT_*`), the optional TOML file named by
//! `PVPN_CONFIG` (keys in lowercase without the `PVPN_` prefix: `redis_url`, `region`, `node`,
//! `subnet`, `max_peers`, `wg_interface`, ...), then the environment, field by field; the rules (empty means not set,
//! errors name the key and origin, a warning for a file others can read) are
//! [`pvpn_common::config_source`]'s, shared with the backend. Every value is parsed into its
//! validated type here. How Redis may be reached (`rediss://` with `PVPN_REDIS_CA_FILE`, plain
//! TCP on loopback only unless `PVPN_REDIS_ALLOW_PLAINTEXT`) is [`pvpn_common::redis_transport`]'s
//! rule, also shared with the backend.

use std::net::SocketAddr;
use std::time::Duration;

use pvpn_common::addressing::ClientSubnet;
use pvpn_common::config_source::ConfigSource;
pub use pvpn_common::config_source::{ConfigError, ConfigWarning};
use pvpn_common::redis_transport::{RedisSecurity, RedisTransport};
use pvpn_common::{NodeName, RegionCode};

/// Which `wireguard-control` backend talks to the interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WgBackend {
    /// Netlink to the kernel module (production).
    Kernel,
    /// The UAPI socket of a userspace implementation such as `wireguard-go` (tests, no module).
    Userspace,
    /// Netlink to the AmneziaWG kernel module (`amneziawg` family): obfuscated WireGuard.
    AmneziaWg,
}

impl WgBackend {
    /// The most peers one interface holds: wireguard-go's `MaxPeers` (65,536), kernel 2^20.
    pub fn max_peers(self) -> usize {
        match self {
            WgBackend::Kernel | WgBackend::AmneziaWg => 1 << 20,
            WgBackend::Userspace => 1 << 16,
        }
    }
}

impl std::str::FromStr for WgBackend {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "kernel" => Ok(Self::Kernel),
            "userspace" => Ok(Self::Userspace),
            "amneziawg" => Ok(Self::AmneziaWg),
            other => Err(format!(
                "expected `kernel`, `userspace` or `amneziawg`, got {other:?}"
            )),
        }
    }
}

/// Everything the agent needs to run.
#[derive(Clone)]
pub struct Config {
    /// May carry an ACL user and password: never logged as a whole (see [`Config::redis_host`]).
    pub redis_url: String,
    /// The CA file for `rediss://`, and whether plain TCP to another host was allowed.
    pub redis: RedisSecurity,
    pub region: RegionCode,
    pub node: NodeName,
    /// The node's client subnet: every peer's allowed IPs must be client addresses in it.
    pub subnet: ClientSubnet,
    /// Most peers the agent puts on the interface (see [`WgBackend::max_peers`]).
    pub max_peers: usize,
    pub wg_interface: String,
    pub wg_backend: WgBackend,
    pub metrics_addr: SocketAddr,
    pub reconcile_interval: Duration,
    pub heartbeat_interval: Duration,
    pub stats_interval: Duration,
    /// What loading noticed (a config file others can read); logged by [`Config::load`].
    pub warnings: Vec<ConfigWarning>,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("redis", &self.redis_host())
            .field("redis_ca_file", &self.redis.ca_file)
            .field("region", &self.region)
            .field("node", &self.node)
            .field("subnet", &self.subnet.net())
            .field("max_peers", &self.max_peers)
            .field("wg_interface", &self.wg_interface)
            .field("wg_backend", &self.wg_backend)
            .field("metrics_addr", &self.metrics_addr)
            .field("reconcile_interval", &self.reconcile_interval)
            .field("heartbeat_interval", &self.heartbeat_interval)
            .field("stats_interval", &self.stats_interval)
            .finish()
    }
}

/// Every setting: its key in the file and its environment variable.
mod keys {
    use pvpn_common::config_source::Key;

    pub const REDIS_URL: Key = Key::new("redis_url", "REDIS_URL");
    pub const REGION: Key = Key::new("region", "PVPN_REGION");
    pub const NODE: Key = Key::new("node", "PVPN_NODE");
    pub const SUBNET: Key = Key::new("subnet", "PVPN_SUBNET");
    pub const MAX_PEERS: Key = Key::new("max_peers", "PVPN_MAX_PEERS");
    pub const WG_INTERFACE: Key = Key::new("wg_interface", "PVPN_WG_INTERFACE");
    pub const WG_BACKEND: Key = Key::new("wg_backend", "PVPN_WG_BACKEND");
    pub const METRICS_ADDR: Key = Key::new("metrics_addr", "PVPN_METRICS_ADDR");
    pub const RECONCILE_INTERVAL: Key =
        Key::new("reconcile_interval_secs", "PVPN_RECONCILE_INTERVAL_SECS");
    pub const HEARTBEAT_INTERVAL: Key =
        Key::new("heartbeat_interval_secs", "PVPN_HEARTBEAT_INTERVAL_SECS");
    pub const STATS_INTERVAL: Key = Key::new("stats_interval_secs", "PVPN_STATS_INTERVAL_SECS");
    pub use pvpn_common::redis_transport::{ALLOW_PLAINTEXT, CA_FILE};

    pub const ALL: &[Key] = &[
        REDIS_URL,
        CA_FILE,
        ALLOW_PLAINTEXT,
        REGION,
        NODE,
        SUBNET,
        MAX_PEERS,
        WG_INTERFACE,
        WG_BACKEND,
        METRICS_ADDR,
        RECONCILE_INTERVAL,
        HEARTBEAT_INTERVAL,
        STATS_INTERVAL,
    ];
}

impl Config {
    const DEFAULT_WG_INTERFACE: &str = "wg0";
    const DEFAULT_METRICS_ADDR: SocketAddr =
        SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 9101);
    const DEFAULT_RECONCILE_INTERVAL: Duration = Duration::from_secs(60);
    const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(10);
    const DEFAULT_STATS_INTERVAL: Duration = Duration::from_secs(30);

    /// Reads the process environment (and the file it names).
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::load(|key| std::env::var(key).ok())
    }

    /// Builds the configuration from `env` (a lookup, so tests need not touch the process
    /// environment) and the TOML file named by its `PVPN_CONFIG`; logs the warnings.
    pub fn load(env: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let config = Self::from_source(&ConfigSource::from_env(&env, keys::ALL)?)?;
        for warning in &config.warnings {
            tracing::warn!(%warning, "configuration");
        }
        Ok(config)
    }

    /// Builds the configuration from its sources (no I/O).
    pub fn from_source(source: &ConfigSource<'_>) -> Result<Self, ConfigError> {
        use keys::*;
        let (redis_url, addr) = source.required_with(REDIS_URL, |url| {
            redis::Client::open(url)
                .map(|c| (url.to_string(), c.get_connection_info().addr().clone()))
        })?;
        let redis = RedisSecurity::from_source(source, REDIS_URL, Some(transport(&addr)))?;
        let wg_interface = source
            .parse_with(WG_INTERFACE, interface_name)?
            .unwrap_or_else(|| Self::DEFAULT_WG_INTERFACE.to_string());
        let wg_backend = source.parse(WG_BACKEND)?.unwrap_or(WgBackend::Kernel);
        let config = Self {
            redis_url,
            redis,
            region: source.required(REGION)?,
            node: source.required(NODE)?,
            subnet: source.required_with(SUBNET, client_subnet)?,
            max_peers: source
                .parse_with(MAX_PEERS, |text| max_peers(text, wg_backend))?
                .unwrap_or(wg_backend.max_peers()),
            wg_interface,
            wg_backend,
            metrics_addr: source
                .parse(METRICS_ADDR)?
                .unwrap_or(Self::DEFAULT_METRICS_ADDR),
            reconcile_interval: source
                .parse_with(RECONCILE_INTERVAL, seconds)?
                .unwrap_or(Self::DEFAULT_RECONCILE_INTERVAL),
            heartbeat_interval: source
                .parse_with(HEARTBEAT_INTERVAL, seconds)?
                .unwrap_or(Self::DEFAULT_HEARTBEAT_INTERVAL),
            stats_interval: source
                .parse_with(STATS_INTERVAL, seconds)?
                .unwrap_or(Self::DEFAULT_STATS_INTERVAL),
            warnings: source.warnings().to_vec(),
        };
        Ok(config)
    }

    /// The Redis address without credentials, for logs.
    pub fn redis_host(&self) -> String {
        match redis::Client::open(self.redis_url.as_str()) {
            Ok(client) => client.get_connection_info().addr().to_string(),
            Err(_) => "<invalid>".to_string(),
        }
    }
}

/// What the URL's address means for [`RedisSecurity`].
fn transport(addr: &redis::ConnectionAddr) -> RedisTransport<'_> {
    match addr {
        redis::ConnectionAddr::TcpTls { .. } => RedisTransport::Tls,
        redis::ConnectionAddr::Tcp(host, _) => RedisTransport::Tcp { host },
        redis::ConnectionAddr::Unix(_) => RedisTransport::Unix,
        // A transport redis-rs adds later counts as plain TCP to an unknown host until known.
        _ => RedisTransport::Tcp { host: "" },
    }
}

fn client_subnet(text: &str) -> Result<ClientSubnet, String> {
    let net = text
        .parse()
        .map_err(|_| format!("expected an IPv4 subnet, got {text:?}"))?;
    ClientSubnet::new(net).map_err(|e| e.to_string())
}

/// 1 up to what the interface implementation can hold.
fn max_peers(text: &str, backend: WgBackend) -> Result<usize, String> {
    let limit = backend.max_peers();
    match text.parse::<usize>() {
        Ok(n) if (1..=limit).contains(&n) => Ok(n),
        _ => Err(format!(
            "must be 1..={limit} for this WireGuard backend, got {text:?}"
        )),
    }
}

/// A whole number of seconds between 1 and one day.
fn seconds(value: &str) -> Result<Duration, String> {
    let secs: u64 = value
        .parse()
        .map_err(|_| format!("expected whole seconds, got {value:?}"))?;
    if !(1..=86_400).contains(&secs) {
        return Err(format!("must be 1..=86400 seconds, got {secs}"));
    }
    Ok(Duration::from_secs(secs))
}

/// Linux interface names: 1 to 15 bytes, no '/', whitespace or NUL.
fn interface_name(name: &str) -> Result<String, String> {
    if name.is_empty() || name.len() > 15 {
        return Err(format!("must be 1 to 15 characters, got {name:?}"));
    }
    if name
        .bytes()
        .any(|b| b == b'/' || b == 0 || b.is_ascii_whitespace() || !b.is_ascii_graphic())
    {
        return Err(format!("{name:?} is not a valid interface name"));
    }
    Ok(name.to_string())
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

    const MINIMAL: [(&str, &str); 4] = [
        ("REDIS_URL", "redis://agent:secret@127.0.0.1:6379/"),
        ("PVPN_REGION", "nl"),
        ("PVPN_NODE", "nl-1"),
        ("PVPN_SUBNET", "198.18.0.0/24"),
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
        assert_eq!(c.max_peers, 1 << 20);
        assert_eq!(c.subnet.net().to_string(), "198.18.0.0/24");
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
        let cases: [(&str, &str); 11] = [
            ("PVPN_SUBNET", "198.18.0.5/24"),
            ("PVPN_SUBNET", "fd00::/64"),
            ("PVPN_MAX_PEERS", "0"),
            ("PVPN_MAX_PEERS", "2000000"),
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
            ("PVPN_SUBNET", "198.18.0.0/24"),
        ])
        .expect_err("bad url")
        .to_string();
        assert!(err.starts_with("REDIS_URL"), "{err}");
        let err = load(&MINIMAL[1..]).expect_err("missing").to_string();
        assert_eq!(
            err,
            "REDIS_URL is required (or `redis_url` in the PVPN_CONFIG file)"
        );
    }

    #[test]
    fn plain_redis_to_another_host_only_when_allowed() {
        // The rule is common::redis_transport's; this checks the agent feeds it its URL.
        let with = |url, allow| {
            let mut pairs = MINIMAL[1..].to_vec();
            pairs.extend([("REDIS_URL", url), ("PVPN_REDIS_ALLOW_PLAINTEXT", allow)]);
            load(&pairs)
        };
        let err = with("redis://u:secret@203.0.113.10:6379/0", "").unwrap_err();
        assert!(err.to_string().starts_with("REDIS_URL") && !err.to_string().contains("secret"));
        assert!(
            with("redis://203.0.113.10:6379/0", "true")
                .unwrap()
                .redis
                .allow_plaintext
        );
        assert!(with("rediss://203.0.113.10:6379/0", "").is_ok());
    }

    #[test]
    fn an_empty_value_is_not_set() {
        // An empty variable neither hides the file's value nor the default.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.toml");
        std::fs::write(&path, "node = \"nl-file\"\nwg_interface = \"\"\n").unwrap();
        let path_text = path.display().to_string();
        let c = load(&[
            ("PVPN_CONFIG", path_text.as_str()),
            ("REDIS_URL", "redis://127.0.0.1:6379/"),
            ("PVPN_REGION", "nl"),
            ("PVPN_NODE", ""),
            ("PVPN_SUBNET", "198.18.0.0/24"),
            ("PVPN_METRICS_ADDR", "  "),
        ])
        .unwrap();
        assert_eq!(c.node.as_str(), "nl-file");
        assert_eq!(c.wg_interface, "wg0");
        assert_eq!(c.metrics_addr.to_string(), "127.0.0.1:9101");
        // Empty everywhere: missing, not invalid.
        let err = load(&[("REDIS_URL", ""), ("PVPN_REGION", "nl"), ("PVPN_NODE", "n")])
            .expect_err("empty url")
            .to_string();
        assert!(err.starts_with("REDIS_URL is required"), "{err}");
    }

    #[test]
    fn a_config_file_others_can_read_is_warned_about() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.toml");
        std::fs::write(
            &path,
            "redis_url = \"redis://agent:secret@127.0.0.1:6379/\"\nregion = \"nl\"\nnode = \"nl-1\"\nsubnet = \"198.18.0.0/24\"\n",
        )
        .unwrap();
        let path_text = path.display().to_string();
        let env = [("PVPN_CONFIG", path_text.as_str())];
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let c = load(&env).unwrap();
        assert_eq!(
            c.warnings,
            [ConfigWarning::ReadableByOthers {
                path: path_text.clone(),
                mode: 0o644
            }]
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(load(&env).unwrap().warnings, []);
    }

    #[test]
    fn environment_overrides_file_field_by_field() {
        let dir = std::env::temp_dir().join(format!("pvpn-agent-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("agent.toml");
        std::fs::write(
            &path,
            "redis_url = \"rediss://file:6379/\"\nregion = \"de\"\nnode = \"de-1\"\n\
             wg_interface = \"wgfile\"\nheartbeat_interval_secs = 5\nsubnet = \"198.18.0.0/24\"\n",
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
