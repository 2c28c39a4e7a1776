//! The backend's configuration: one struct, one place for defaults.
//!
//! Sources, later wins field by field: defaults, the TOML file named by `PVPN_CONFIG` (keys in
//! lowercase without prefix, e.g. `database_url`, `admin_ids = [1, 2]`), environment variables
//! (`DATABASE_URL`, `REDIS_URL`, `TELEGRAM_BOT_TOKEN`, `TELEGRAM_API_URL`, `PVPN_ADMIN_IDS`
//! comma-separated, `PVPN_REGISTRATION`, `PVPN_METRICS_ADDR`, and `PVPN_<KEY>` for the rest).
//! Every error names the key and where its bad value came from.

use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;

use crate::service::RegistrationMode;

/// Why the configuration cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("{key} is required (set {env} or `{key}` in the PVPN_CONFIG file)")]
    Missing {
        key: &'static str,
        env: &'static str,
    },
    #[error("{key} from {origin} is invalid: {reason}")]
    Invalid {
        key: &'static str,
        origin: String,
        reason: String,
    },
    #[error("config file {path}: {reason}")]
    File { path: String, reason: String },
}

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
    /// The bot runs only when this is set.
    pub telegram_bot_token: Option<Secret>,
    pub telegram_api_url: Option<url::Url>,
    pub admin_ids: Vec<i64>,
    pub registration: RegistrationMode,
    pub metrics_addr: SocketAddr,
    pub preshared_keys: bool,
    pub relay_poll_interval: Duration,
    pub stream_maxlen: u64,
    /// The agents' heartbeat interval; a node is down after three missed heartbeats.
    pub heartbeat_interval: Duration,
    pub expiry_check_interval: Duration,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    database_url: Option<String>,
    redis_url: Option<String>,
    telegram_bot_token: Option<String>,
    telegram_api_url: Option<String>,
    admin_ids: Option<Vec<i64>>,
    registration: Option<String>,
    metrics_addr: Option<String>,
    preshared_keys: Option<bool>,
    relay_poll_interval_ms: Option<u64>,
    stream_maxlen: Option<u64>,
    heartbeat_interval_secs: Option<u64>,
    expiry_check_interval_secs: Option<u64>,
}

/// One value as read, with where it came from for error messages.
struct Raw {
    value: String,
    origin: String,
}

fn raw(
    key: &'static str,
    env_name: &str,
    file: Option<String>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Option<Raw> {
    match env(env_name) {
        Some(value) => Some(Raw {
            value,
            origin: format!("environment variable {env_name}"),
        }),
        None => file.map(|value| Raw {
            value,
            origin: format!("config file key `{key}`"),
        }),
    }
}

fn parse<T: FromStr>(key: &'static str, raw: Option<Raw>) -> Result<Option<T>, ConfigError>
where
    T::Err: fmt::Display,
{
    raw.map(|r| {
        r.value
            .trim()
            .parse::<T>()
            .map_err(|e| ConfigError::Invalid {
                key,
                origin: r.origin,
                reason: e.to_string(),
            })
    })
    .transpose()
}

fn parse_admin_ids(raw: Option<Raw>) -> Result<Vec<i64>, ConfigError> {
    let Some(r) = raw else { return Ok(Vec::new()) };
    r.value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<i64>()
                .ok()
                .filter(|id| *id > 0)
                .ok_or_else(|| ConfigError::Invalid {
                    key: "admin_ids",
                    origin: r.origin.clone(),
                    reason: format!("{s:?} is not a Telegram user id"),
                })
        })
        .collect()
}

fn positive(key: &'static str, value: u64) -> Result<u64, ConfigError> {
    if value == 0 {
        return Err(ConfigError::Invalid {
            key,
            origin: "configuration".into(),
            reason: "must be greater than 0".into(),
        });
    }
    Ok(value)
}

/// The file may hold the database password and the bot token: say so if anyone can read it.
fn warn_if_readable_by_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path)
        && meta.permissions().mode() & 0o007 != 0
    {
        tracing::warn!(
            path = %path.display(),
            "config file is accessible to other users; it may hold secrets (chmod 600)"
        );
    }
}

impl Config {
    /// Reads `PVPN_CONFIG` (if set) and the process environment.
    pub fn load() -> Result<Self, ConfigError> {
        let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let file = match env("PVPN_CONFIG") {
            Some(path) => {
                let text = std::fs::read_to_string(&path).map_err(|e| ConfigError::File {
                    path: path.clone(),
                    reason: e.to_string(),
                })?;
                warn_if_readable_by_others(Path::new(&path));
                Some((path, text))
            }
            None => None,
        };
        Self::from_sources(
            file.as_ref()
                .map(|(p, t)| (Path::new(p.as_str()), t.as_str())),
            &env,
        )
    }

    /// Builds the config from a TOML file's `(path, text)` and an environment lookup.
    pub fn from_sources(
        file: Option<(&Path, &str)>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let f: FileConfig = match file {
            Some((path, text)) => toml::from_str(text).map_err(|e| ConfigError::File {
                path: path.display().to_string(),
                reason: e.to_string(),
            })?,
            None => FileConfig::default(),
        };
        let database_url = raw("database_url", "DATABASE_URL", f.database_url, env)
            .map(|r| Secret(r.value))
            .ok_or(ConfigError::Missing {
                key: "database_url",
                env: "DATABASE_URL",
            })?;
        let redis_url = raw("redis_url", "REDIS_URL", f.redis_url, env).map(|r| Secret(r.value));
        let telegram_bot_token = raw(
            "telegram_bot_token",
            "TELEGRAM_BOT_TOKEN",
            f.telegram_bot_token,
            env,
        )
        .map(|r| Secret(r.value));
        let telegram_api_url = parse(
            "telegram_api_url",
            raw(
                "telegram_api_url",
                "TELEGRAM_API_URL",
                f.telegram_api_url,
                env,
            ),
        )?;
        let file_admins = f.admin_ids.map(|ids| {
            ids.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(",")
        });
        let admin_ids = parse_admin_ids(raw("admin_ids", "PVPN_ADMIN_IDS", file_admins, env))?;
        let registration = parse::<RegistrationMode>(
            "registration",
            raw("registration", "PVPN_REGISTRATION", f.registration, env),
        )?
        .unwrap_or_default();
        let metrics_addr = parse(
            "metrics_addr",
            raw("metrics_addr", "PVPN_METRICS_ADDR", f.metrics_addr, env),
        )?
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 9100)));
        let num = |key: &'static str,
                   env_name: &str,
                   file: Option<u64>|
         -> Result<Option<u64>, ConfigError> {
            parse(key, raw(key, env_name, file.map(|v| v.to_string()), env))
        };
        let preshared_keys = parse(
            "preshared_keys",
            raw(
                "preshared_keys",
                "PVPN_PRESHARED_KEYS",
                f.preshared_keys.map(|b| b.to_string()),
                env,
            ),
        )?
        .unwrap_or(true);
        let poll_ms = positive(
            "relay_poll_interval_ms",
            num(
                "relay_poll_interval_ms",
                "PVPN_RELAY_POLL_INTERVAL_MS",
                f.relay_poll_interval_ms,
            )?
            .unwrap_or(500),
        )?;
        let stream_maxlen = positive(
            "stream_maxlen",
            num("stream_maxlen", "PVPN_STREAM_MAXLEN", f.stream_maxlen)?.unwrap_or(100_000),
        )?;
        let heartbeat = positive(
            "heartbeat_interval_secs",
            num(
                "heartbeat_interval_secs",
                "PVPN_HEARTBEAT_INTERVAL_SECS",
                f.heartbeat_interval_secs,
            )?
            .unwrap_or(10),
        )?;
        let expiry = positive(
            "expiry_check_interval_secs",
            num(
                "expiry_check_interval_secs",
                "PVPN_EXPIRY_CHECK_INTERVAL_SECS",
                f.expiry_check_interval_secs,
            )?
            .unwrap_or(30),
        )?;
        Ok(Self {
            database_url,
            redis_url,
            telegram_bot_token,
            telegram_api_url,
            admin_ids,
            registration,
            metrics_addr,
            preshared_keys,
            relay_poll_interval: Duration::from_millis(poll_ms),
            stream_maxlen,
            heartbeat_interval: Duration::from_secs(heartbeat),
            expiry_check_interval: Duration::from_secs(expiry),
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
        assert!(c.redis_url.is_none());
        let c = load(
            Some(file),
            &[
                ("PVPN_ADMIN_IDS", " 5, 6 "),
                ("DATABASE_URL", "postgres://env"),
            ],
        )
        .unwrap();
        assert_eq!(c.admin_ids, [5, 6]);
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
