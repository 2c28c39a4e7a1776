//! The backend's configuration: one struct, one place for defaults.
//!
//! Sources, later wins field by field: defaults, the TOML file named by `PVPN_CONFIG` (keys in
//! lowercase without prefix, e.g. `database_url`, `admin_ids = [1, 2]`), environment variables
//! (`DATABASE_URL`, `REDIS_URL`, `TELEGRAM_BOT_TOKEN`, `TELEGRAM_API_URL`, `PVPN_ADMIN_IDS`
//! comma-separated, `PVPN_REGISTRATION`, `PVPN_METRICS_ADDR`, and `PVPN_<KEY>` for the rest).
//! The rules (an empty value is not set, every error names the key and where its bad value came
//! from, a warning for a file others can read: it may hold the database password and the bot
//! token) are [`pvpn_common::config_source`]'s, shared with the agent; so is the rule for
//! reaching Redis ([`pvpn_common::redis_transport`]: `rediss://` with `PVPN_REDIS_CA_FILE`, plain
//! TCP to loopback only unless `PVPN_REDIS_ALLOW_PLAINTEXT`).

use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

pub use pvpn_common::config_source::{ConfigError, ConfigWarning};
use pvpn_common::config_source::{ConfigFile, ConfigSource};
use pvpn_common::redis_transport::{RedisSecurity, RedisTransport};

use crate::service::RegistrationMode;

/// A secret string: `Debug` shows `[redacted]`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Everything `pvpn-backend` and `pvpnctl` read at start.
#[derive(Debug, Clone)]
pub struct Config {
    /// May contain a password: redacted in `Debug`.
    pub database_url: Secret,
    /// Required by `pvpn-backend`, not by `pvpnctl`.
    pub redis_url: Option<Secret>,
    /// The CA file for `rediss://`, and whether plain TCP to another host was allowed.
    pub redis: RedisSecurity,
    /// The bot runs only when this is set.
    pub telegram_bot_token: Option<Secret>,
    pub telegram_api_url: Option<url::Url>,
    pub admin_ids: Vec<i64>,
    pub registration: RegistrationMode,
    pub metrics_addr: SocketAddr,
    pub preshared_keys: bool,
    pub relay_poll_interval: Duration,
    /// How often the relay compares every node's revision in Redis with PostgreSQL's.
    pub relay_check_interval: Duration,
    pub stream_maxlen: u64,
    /// The agents' heartbeat interval; a node is down after three missed heartbeats.
    pub heartbeat_interval: Duration,
    pub expiry_check_interval: Duration,
    /// A device that never completed a handshake this long after it was issued gets one message
    /// suggesting an obfuscated region (`PVPN_BLOCKED_NUDGE_AFTER_HOURS`, default 6).
    pub blocked_nudge_after: Duration,
    /// What loading noticed (a config file others can read); logged by [`Config::load`].
    pub warnings: Vec<ConfigWarning>,
}

/// Every setting: its key in the file and its environment variable.
mod keys {
    use pvpn_common::config_source::Key;

    pub const DATABASE_URL: Key = Key::new("database_url", "DATABASE_URL");
    pub const REDIS_URL: Key = Key::new("redis_url", "REDIS_URL");
    pub use pvpn_common::redis_transport::{
        ALLOW_PLAINTEXT as REDIS_ALLOW_PLAINTEXT, CA_FILE as REDIS_CA_FILE,
    };
    pub const TELEGRAM_BOT_TOKEN: Key = Key::new("telegram_bot_token", "TELEGRAM_BOT_TOKEN");
    pub const TELEGRAM_API_URL: Key = Key::new("telegram_api_url", "TELEGRAM_API_URL");
    pub const ADMIN_IDS: Key = Key::new("admin_ids", "PVPN_ADMIN_IDS");
    pub const REGISTRATION: Key = Key::new("registration", "PVPN_REGISTRATION");
    pub const METRICS_ADDR: Key = Key::new("metrics_addr", "PVPN_METRICS_ADDR");
    pub const PRESHARED_KEYS: Key = Key::new("preshared_keys", "PVPN_PRESHARED_KEYS");
    pub const RELAY_POLL_INTERVAL: Key =
        Key::new("relay_poll_interval_ms", "PVPN_RELAY_POLL_INTERVAL_MS");
    pub const RELAY_CHECK_INTERVAL: Key = Key::new(
        "relay_check_interval_secs",
        "PVPN_RELAY_CHECK_INTERVAL_SECS",
    );
    pub const STREAM_MAXLEN: Key = Key::new("stream_maxlen", "PVPN_STREAM_MAXLEN");
    pub const HEARTBEAT_INTERVAL: Key =
        Key::new("heartbeat_interval_secs", "PVPN_HEARTBEAT_INTERVAL_SECS");
    pub const EXPIRY_CHECK_INTERVAL: Key = Key::new(
        "expiry_check_interval_secs",
        "PVPN_EXPIRY_CHECK_INTERVAL_SECS",
    );

    pub const BLOCKED_NUDGE_AFTER: Key = Key::new(
        "blocked_nudge_after_hours",
        "PVPN_BLOCKED_NUDGE_AFTER_HOURS",
    );

    pub const ALL: &[Key] = &[
        DATABASE_URL,
        REDIS_URL,
        REDIS_CA_FILE,
        REDIS_ALLOW_PLAINTEXT,
        TELEGRAM_BOT_TOKEN,
        TELEGRAM_API_URL,
        ADMIN_IDS,
        REGISTRATION,
        METRICS_ADDR,
        PRESHARED_KEYS,
        RELAY_POLL_INTERVAL,
        RELAY_CHECK_INTERVAL,
        STREAM_MAXLEN,
        HEARTBEAT_INTERVAL,
        EXPIRY_CHECK_INTERVAL,
        BLOCKED_NUDGE_AFTER,
    ];
}

/// What the Redis URL's address means for [`RedisSecurity`].
fn transport(addr: &redis::ConnectionAddr) -> RedisTransport<'_> {
    match addr {
        redis::ConnectionAddr::TcpTls { .. } => RedisTransport::Tls,
        redis::ConnectionAddr::Tcp(host, _) => RedisTransport::Tcp { host },
        redis::ConnectionAddr::Unix(_) => RedisTransport::Unix,
        // A transport redis-rs adds later counts as plain TCP to an unknown host until known.
        _ => RedisTransport::Tcp { host: "" },
    }
}

/// Comma-separated Telegram user ids (the file's `admin_ids = [1, 2]` reads the same way).
fn admin_ids(text: &str) -> Result<Vec<i64>, String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<i64>()
                .ok()
                .filter(|id| *id > 0)
                .ok_or_else(|| format!("{s:?} is not a Telegram user id"))
        })
        .collect()
}

/// A whole number greater than 0.
fn positive(text: &str) -> Result<u64, String> {
    match text.parse::<u64>() {
        Ok(0) => Err("must be greater than 0".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

impl Config {
    /// Reads `PVPN_CONFIG` (if set) and the process environment; logs the warnings.
    pub fn load() -> Result<Self, ConfigError> {
        Self::load_with(&|name: &str| std::env::var(name).ok())
    }

    /// [`Config::load`] with an environment lookup instead of the process environment.
    pub fn load_with(env: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let config = Self::from_source(&ConfigSource::from_env(env, keys::ALL)?)?;
        for warning in &config.warnings {
            tracing::warn!(%warning, "configuration");
        }
        Ok(config)
    }

    /// Builds the config from a TOML file's `(path, text)` and an environment lookup (no I/O).
    pub fn from_sources(
        file: Option<(&Path, &str)>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let file = file
            .map(|(path, text)| ConfigFile::parse(path, text))
            .transpose()?;
        Self::from_source(&ConfigSource::new(file, env, keys::ALL)?)
    }

    /// Builds the config from its sources, field by field, defaults last.
    pub fn from_source(source: &ConfigSource<'_>) -> Result<Self, ConfigError> {
        use keys::*;
        let secret = |key| Ok::<_, ConfigError>(source.get(key)?.map(|v| Secret(v.text)));
        let redis_url = secret(REDIS_URL)?;
        let redis_addr = source.parse_with(REDIS_URL, |url| {
            redis::Client::open(url).map(|c| c.get_connection_info().addr().clone())
        })?;
        Ok(Self {
            database_url: Secret(source.require(DATABASE_URL)?.text),
            redis: RedisSecurity::from_source(
                source,
                REDIS_URL,
                redis_addr.as_ref().map(transport),
            )?,
            redis_url,
            telegram_bot_token: secret(TELEGRAM_BOT_TOKEN)?,
            telegram_api_url: source.parse(TELEGRAM_API_URL)?,
            admin_ids: source.parse_with(ADMIN_IDS, admin_ids)?.unwrap_or_default(),
            registration: source.parse(REGISTRATION)?.unwrap_or_default(),
            metrics_addr: source
                .parse(METRICS_ADDR)?
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 9100))),
            preshared_keys: source.parse(PRESHARED_KEYS)?.unwrap_or(true),
            relay_poll_interval: Duration::from_millis(
                source
                    .parse_with(RELAY_POLL_INTERVAL, positive)?
                    .unwrap_or(500),
            ),
            relay_check_interval: Duration::from_secs(
                source
                    .parse_with(RELAY_CHECK_INTERVAL, positive)?
                    .unwrap_or(30),
            ),
            stream_maxlen: source
                .parse_with(STREAM_MAXLEN, positive)?
                .unwrap_or(100_000),
            heartbeat_interval: Duration::from_secs(
                source
                    .parse_with(HEARTBEAT_INTERVAL, positive)?
                    .unwrap_or(10),
            ),
            expiry_check_interval: Duration::from_secs(
                source
                    .parse_with(EXPIRY_CHECK_INTERVAL, positive)?
                    .unwrap_or(30),
            ),
            blocked_nudge_after: source
                .parse_with(BLOCKED_NUDGE_AFTER, positive)?
                .map_or(crate::bot::DEFAULT_BLOCKED_NUDGE_AFTER, |hours| {
                    Duration::from_secs(hours.saturating_mul(3600))
                }),
            warnings: source.warnings().to_vec(),
        })
    }

    /// The Redis URL, or the error to show when a command needs it.
    pub fn require_redis_url(&self) -> Result<&str, ConfigError> {
        self.redis_url
            .as_ref()
            .map(Secret::expose)
            .ok_or(ConfigError::Missing {
                key: "redis_url",
                env: "REDIS_URL",
            })
    }

    /// The service layer's settings from this config.
    pub fn service_settings(&self) -> crate::service::ServiceSettings {
        crate::service::ServiceSettings {
            registration: self.registration,
            admin_ids: self.admin_ids.clone(),
            preshared_keys: self.preshared_keys,
            heartbeat_interval: self.heartbeat_interval,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn load(file: Option<&str>, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_sources(file.map(|t| (Path::new("pvpn.toml"), t)), &|k| {
            env.get(k).cloned()
        })
    }

    #[test]
    fn defaults_apply_and_env_overrides_file_field_by_field() {
        let file =
            "database_url = \"postgres://file\"\nregistration = \"invite\"\nadmin_ids = [1, 2]\n";
        let c = load(Some(file), &[("PVPN_REGISTRATION", "closed")]).unwrap();
        assert_eq!(c.database_url.expose(), "postgres://file");
        assert_eq!(c.registration, RegistrationMode::Closed);
        assert_eq!(c.admin_ids, [1, 2]);
        assert_eq!(c.metrics_addr.to_string(), "127.0.0.1:9100");
        assert_eq!(c.stream_maxlen, 100_000);
        assert_eq!(c.blocked_nudge_after, Duration::from_secs(6 * 3600));
        assert!(c.redis_url.is_none());
        let c = load(
            Some(file),
            &[
                ("PVPN_ADMIN_IDS", " 5, 6 "),
                ("DATABASE_URL", "postgres://env"),
                ("PVPN_BLOCKED_NUDGE_AFTER_HOURS", "12"),
            ],
        )
        .unwrap();
        assert_eq!(c.admin_ids, [5, 6]);
        assert_eq!(c.blocked_nudge_after, Duration::from_secs(12 * 3600));
        assert_eq!(c.database_url.expose(), "postgres://env");
    }

    #[test]
    fn errors_name_the_key_and_origin() {
        assert_eq!(
            load(None, &[]).unwrap_err(),
            ConfigError::Missing {
                key: "database_url",
                env: "DATABASE_URL"
            }
        );
        let err = load(None, &[("DATABASE_URL", "x"), ("PVPN_ADMIN_IDS", "1,abc")]).unwrap_err();
        assert!(
            err.to_string().contains("admin_ids") && err.to_string().contains("PVPN_ADMIN_IDS"),
            "{err}"
        );
        let err = load(
            Some("registration = \"sometimes\"\ndatabase_url = \"x\""),
            &[],
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("registration") && err.to_string().contains("config file"),
            "{err}"
        );
        let err = load(Some("surprise = 1"), &[]).unwrap_err();
        assert!(matches!(err, ConfigError::File { .. }), "{err}");
        let err = load(
            None,
            &[("DATABASE_URL", "x"), ("PVPN_METRICS_ADDR", "nowhere")],
        )
        .unwrap_err();
        assert!(err.to_string().contains("metrics_addr"), "{err}");
        let err = load(None, &[("DATABASE_URL", "x"), ("PVPN_STREAM_MAXLEN", "0")]).unwrap_err();
        assert!(err.to_string().contains("stream_maxlen"), "{err}");
    }

    #[test]
    fn plain_redis_to_another_host_only_when_allowed() {
        // The rule is common::redis_transport's; this checks the backend feeds it its URL.
        let env = |url, allow| {
            [
                ("DATABASE_URL", "x"),
                ("REDIS_URL", url),
                ("PVPN_REDIS_ALLOW_PLAINTEXT", allow),
            ]
        };
        let err = load(None, &env("redis://u:hunter2@203.0.113.10:6379/0", "")).unwrap_err();
        assert!(err.to_string().starts_with("REDIS_URL") && !err.to_string().contains("hunter2"));
        assert!(
            load(None, &env("redis://203.0.113.10:6379/0", "true"))
                .unwrap()
                .redis
                .allow_plaintext
        );
        assert!(load(None, &env("rediss://203.0.113.10:6379/0", "")).is_ok());
    }

    #[test]
    fn an_empty_value_is_not_set() {
        let file = "database_url = \"postgres://file\"\nregistration = \"\"\n";
        let c = load(
            Some(file),
            &[
                ("DATABASE_URL", ""),
                ("TELEGRAM_BOT_TOKEN", " "),
                ("PVPN_ADMIN_IDS", ""),
                ("PVPN_METRICS_ADDR", ""),
            ],
        )
        .unwrap();
        assert_eq!(c.database_url.expose(), "postgres://file");
        assert!(c.telegram_bot_token.is_none(), "an empty token runs no bot");
        assert!(c.admin_ids.is_empty());
        assert_eq!(c.registration, RegistrationMode::default());
        assert_eq!(c.metrics_addr.to_string(), "127.0.0.1:9100");
        assert_eq!(
            load(None, &[("DATABASE_URL", "")]).unwrap_err(),
            ConfigError::Missing {
                key: "database_url",
                env: "DATABASE_URL"
            }
        );
    }

    #[test]
    fn a_config_file_others_can_read_is_warned_about() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("backend.toml");
        std::fs::write(&path, "database_url = \"postgres://u:hunter2@h/db\"\n").unwrap();
        let path_text = path.display().to_string();
        let env = |k: &str| (k == "PVPN_CONFIG").then(|| path_text.clone());
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o604)).unwrap();
        let c = Config::load_with(&env).unwrap();
        assert_eq!(c.database_url.expose(), "postgres://u:hunter2@h/db");
        assert_eq!(
            c.warnings,
            [ConfigWarning::ReadableByOthers {
                path: path_text.clone(),
                mode: 0o604
            }]
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(Config::load_with(&env).unwrap().warnings, []);
    }

    #[test]
    fn secrets_do_not_print() {
        let c = load(
            None,
            &[
                ("DATABASE_URL", "postgres://u:hunter2@h/db"),
                ("TELEGRAM_BOT_TOKEN", "123:abc"),
            ],
        )
        .unwrap();
        let shown = format!("{c:?}");
        assert!(
            !shown.contains("hunter2") && !shown.contains("123:abc"),
            "{shown}"
        );
    }
}
