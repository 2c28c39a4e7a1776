//! Where both binaries' settings come from, and the rules every setting follows: the TOML file
//! named by `PVPN_CONFIG` (keys in lowercase, e.g. `redis_url`), then the environment, field by
//! field (`REDIS_URL`), the environment winning; an empty value counts as not set wherever it
//! comes from; every error names the setting and where its bad value came from.
//!
//! The one I/O in this crate lives here: [`ConfigFile::read`] reads the file `PVPN_CONFIG`
//! names and looks at its permissions (the agent's file holds a Redis password, the backend's a
//! database password and the bot token). It returns what it noticed as [`ConfigWarning`]s; the
//! binaries log them. Everything else works on text and an environment lookup.

use std::fmt;
use std::path::Path;
use std::str::FromStr;

/// The environment variable that names the TOML file.
pub const CONFIG_FILE_VAR: &str = "PVPN_CONFIG";

/// One setting: its key in the TOML file and its environment variable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key {
    pub file: &'static str,
    pub env: &'static str,
}

impl Key {
    pub const fn new(file: &'static str, env: &'static str) -> Self {
        Self { file, env }
    }
}

/// Where a value came from, for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Environment,
    File(String),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Environment => f.write_str("the environment"),
            Origin::File(path) => write!(f, "config file {path}"),
        }
    }
}

/// A setting that stops start-up. `key` is the file key and `env` the variable, so a message
/// names both; `Invalid` also says where the value came from.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("{env} is required (or `{key}` in the PVPN_CONFIG file)")]
    Missing {
        key: &'static str,
        env: &'static str,
    },
    #[error("{env} (`{key}`) from {origin} is invalid: {reason}")]
    Invalid {
        key: &'static str,
        env: &'static str,
        origin: Origin,
        reason: String,
    },
    #[error("config file {path} (PVPN_CONFIG): {reason}")]
    File { path: String, reason: String },
}

/// Something about the configuration worth a warning in the log, but not worth refusing to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigWarning {
    /// Users outside the file's owner and group may access it, and it may hold secrets. (Group
    /// access is how a deployment shares a file with a service account, so it is not warned.)
    ReadableByOthers { path: String, mode: u32 },
}

impl fmt::Display for ConfigWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigWarning::ReadableByOthers { path, mode } => write!(
                f,
                "config file {path} is accessible to other users (mode {mode:03o}) and may hold \
                 secrets; chmod 600 it"
            ),
        }
    }
}

/// The parsed TOML file: plain values by key.
#[derive(Debug, Clone)]
pub struct ConfigFile {
    path: String,
    table: toml::Table,
    warnings: Vec<ConfigWarning>,
}

impl ConfigFile {
    /// Reads and parses the file at `path`, noting if others may access it.
    pub fn read(path: &Path) -> Result<Self, ConfigError> {
        let shown = path.display().to_string();
        let file_error = |reason: String| ConfigError::File {
            path: shown.clone(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| file_error(e.to_string()))?;
        let mode = std::fs::metadata(path)
            .map_err(|e| file_error(e.to_string()))?
            .permissions();
        let mut file = Self::parse(path, &text)?;
        if let Some(warning) =
            permission_warning(&shown, std::os::unix::fs::PermissionsExt::mode(&mode))
        {
            file.warnings.push(warning);
        }
        Ok(file)
    }

    /// Parses `text` as the file at `path` (no I/O).
    pub fn parse(path: &Path, text: &str) -> Result<Self, ConfigError> {
        let path = path.display().to_string();
        let table = text.parse::<toml::Table>().map_err(|e| ConfigError::File {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        Ok(Self {
            path,
            table,
            warnings: Vec::new(),
        })
    }
}

/// The warning for a file with permission bits `mode`, if others have any access.
fn permission_warning(path: &str, mode: u32) -> Option<ConfigWarning> {
    (mode & 0o007 != 0).then(|| ConfigWarning::ReadableByOthers {
        path: path.to_string(),
        mode: mode & 0o777,
    })
}

/// One value as read, with its origin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Value {
    /// Trimmed, never empty.
    pub text: String,
    pub origin: Origin,
}

/// The environment lookup and the optional file of one binary, asked setting by setting.
pub struct ConfigSource<'a> {
    env: &'a dyn Fn(&str) -> Option<String>,
    file: Option<ConfigFile>,
    /// Every setting the binary has.
    known: &'static [Key],
}

impl<'a> ConfigSource<'a> {
    /// `env` and the file it names in `PVPN_CONFIG`, read from disk ([`ConfigFile::read`]).
    pub fn from_env(
        env: &'a dyn Fn(&str) -> Option<String>,
        known: &'static [Key],
    ) -> Result<Self, ConfigError> {
        let file = match non_empty(env(CONFIG_FILE_VAR)) {
            Some(path) => Some(ConfigFile::read(Path::new(&path))?),
            None => None,
        };
        Self::new(file, env, known)
    }

    /// `env` and an already parsed file (tests, or no file at all). A key in the file that is
    /// not one of the `known` settings is refused: a typo would otherwise be ignored silently,
    /// and reported as a missing setting at best.
    pub fn new(
        file: Option<ConfigFile>,
        env: &'a dyn Fn(&str) -> Option<String>,
        known: &'static [Key],
    ) -> Result<Self, ConfigError> {
        if let Some(file) = &file {
            let unknown: Vec<&str> = file
                .table
                .keys()
                .map(String::as_str)
                .filter(|k| !known.iter().any(|key| key.file == *k))
                .collect();
            if !unknown.is_empty() {
                return Err(ConfigError::File {
                    path: file.path.clone(),
                    reason: format!("unknown key(s): {}", unknown.join(", ")),
                });
            }
        }
        Ok(Self { env, file, known })
    }

    /// What reading the file noticed, for the binary to log.
    pub fn warnings(&self) -> &[ConfigWarning] {
        self.file.as_ref().map_or(&[], |f| &f.warnings)
    }

    /// The value of `key`: the environment's if set and not empty, else the file's if set and not
    /// empty. An array in the file reads as its elements joined by commas, the form the
    /// environment uses for lists.
    pub fn get(&self, key: Key) -> Result<Option<Value>, ConfigError> {
        debug_assert!(
            self.known.contains(&key),
            "{key:?} is not in the known settings"
        );
        if let Some(text) = non_empty((self.env)(key.env)) {
            return Ok(Some(Value {
                text,
                origin: Origin::Environment,
            }));
        }
        let Some(file) = &self.file else {
            return Ok(None);
        };
        let Some(value) = file.table.get(key.file) else {
            return Ok(None);
        };
        let origin = Origin::File(file.path.clone());
        let text = plain_text(value).ok_or_else(|| ConfigError::Invalid {
            key: key.file,
            env: key.env,
            origin: origin.clone(),
            reason: "expected a string, number, boolean or a list of them".into(),
        })?;
        Ok(non_empty(Some(text)).map(|text| Value { text, origin }))
    }

    /// The value of a setting that has no default.
    pub fn require(&self, key: Key) -> Result<Value, ConfigError> {
        self.get(key)?.ok_or(ConfigError::Missing {
            key: key.file,
            env: key.env,
        })
    }

    /// The value of `key` parsed by `parse`, whose error text becomes the reason.
    pub fn parse_with<T, E: fmt::Display>(
        &self,
        key: Key,
        parse: impl FnOnce(&str) -> Result<T, E>,
    ) -> Result<Option<T>, ConfigError> {
        self.get(key)?
            .map(|value| {
                parse(&value.text).map_err(|e| ConfigError::Invalid {
                    key: key.file,
                    env: key.env,
                    origin: value.origin,
                    reason: e.to_string(),
                })
            })
            .transpose()
    }

    /// The value of `key` parsed with its type's `FromStr`.
    pub fn parse<T: FromStr>(&self, key: Key) -> Result<Option<T>, ConfigError>
    where
        T::Err: fmt::Display,
    {
        self.parse_with(key, str::parse::<T>)
    }

    /// [`ConfigSource::parse_with`] for a setting that has no default.
    pub fn required_with<T, E: fmt::Display>(
        &self,
        key: Key,
        parse: impl FnOnce(&str) -> Result<T, E>,
    ) -> Result<T, ConfigError> {
        self.parse_with(key, parse)?.ok_or(ConfigError::Missing {
            key: key.file,
            env: key.env,
        })
    }

    /// [`ConfigSource::parse`] for a setting that has no default.
    pub fn required<T: FromStr>(&self, key: Key) -> Result<T, ConfigError>
    where
        T::Err: fmt::Display,
    {
        self.required_with(key, str::parse::<T>)
    }
}

/// The one rule for empty values: trimmed, and nothing left means not set.
fn non_empty(value: Option<String>) -> Option<String> {
    value
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

fn plain_text(value: &toml::Value) -> Option<String> {
    match value {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(i) => Some(i.to_string()),
        toml::Value::Float(f) => Some(f.to_string()),
        toml::Value::Boolean(b) => Some(b.to_string()),
        toml::Value::Array(items) => items
            .iter()
            .map(|item| match item {
                toml::Value::Array(_) | toml::Value::Table(_) => None,
                scalar => plain_text(scalar),
            })
            .collect::<Option<Vec<_>>>()
            .map(|items| items.join(",")),
        toml::Value::Datetime(_) | toml::Value::Table(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NODE: Key = Key::new("node", "PVPN_NODE");
    const IDS: Key = Key::new("admin_ids", "PVPN_ADMIN_IDS");
    const KNOWN: &[Key] = &[NODE, IDS];

    fn sources<'a>(
        file: Option<ConfigFile>,
        env: &'a dyn Fn(&str) -> Option<String>,
    ) -> ConfigSource<'a> {
        ConfigSource::new(file, env, KNOWN).unwrap()
    }

    fn file(text: &str) -> ConfigFile {
        ConfigFile::parse(Path::new("/etc/pvpn/x.toml"), text).unwrap()
    }

    #[test]
    fn the_environment_wins_and_empty_values_are_not_set() {
        let f = file("node = \"from-file\"\n");
        let env = |k: &str| (k == "PVPN_NODE").then(|| "  from-env ".to_string());
        let source = sources(Some(f.clone()), &env);
        let value = source.get(NODE).unwrap().unwrap();
        assert_eq!(value.text, "from-env");
        assert_eq!(value.origin, Origin::Environment);

        let empty = |k: &str| (k == "PVPN_NODE").then(|| " ".to_string());
        let source = sources(Some(f), &empty);
        let value = source.get(NODE).unwrap().unwrap();
        assert_eq!(
            value.text, "from-file",
            "an empty variable does not hide the file"
        );
        assert_eq!(value.origin, Origin::File("/etc/pvpn/x.toml".into()));

        let source = sources(Some(file("node = \"\"\n")), &empty);
        assert_eq!(source.get(NODE).unwrap(), None);
        assert_eq!(
            source.require(NODE).unwrap_err().to_string(),
            "PVPN_NODE is required (or `node` in the PVPN_CONFIG file)"
        );
    }

    #[test]
    fn errors_name_the_setting_and_the_origin() {
        let none = |_: &str| None;
        let source = sources(Some(file("admin_ids = [1, \"x\"]\nnode = {}\n")), &none);
        let err = source
            .parse_with(IDS, |s| if s == "1,x" { Err("not ids") } else { Ok(()) })
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "PVPN_ADMIN_IDS (`admin_ids`) from config file /etc/pvpn/x.toml is invalid: not ids"
        );
        let err = source.get(NODE).unwrap_err().to_string();
        assert!(
            err.starts_with("PVPN_NODE (`node`) from config file"),
            "{err}"
        );
        let env = |_: &str| Some("many".to_string());
        let err = sources(None, &env)
            .parse::<u32>(NODE)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("PVPN_NODE (`node`) from the environment is invalid"),
            "{err}"
        );
    }

    #[test]
    fn unknown_file_keys_are_refused() {
        let none = |_: &str| None;
        let err = ConfigSource::new(Some(file("node = \"a\"\nnodes = \"b\"\n")), &none, KNOWN)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("unknown key(s): nodes"), "{err}");
        assert!(ConfigFile::parse(Path::new("x"), "node = ").is_err());
    }

    #[test]
    fn a_file_others_can_access_is_a_warning() {
        assert_eq!(permission_warning("p", 0o100600), None);
        assert_eq!(permission_warning("p", 0o100400), None);
        assert_eq!(
            permission_warning("p", 0o100640),
            None,
            "group access is deliberate"
        );
        for mode in [0o604, 0o644, 0o666, 0o601, 0o607] {
            let warning = permission_warning("/etc/pvpn/x.toml", 0o100000 | mode).unwrap();
            assert_eq!(
                warning,
                ConfigWarning::ReadableByOthers {
                    path: "/etc/pvpn/x.toml".into(),
                    mode
                }
            );
        }
        let text = permission_warning("/p", 0o644).unwrap().to_string();
        assert!(
            text.contains("/p") && text.contains("644") && text.contains("chmod 600"),
            "{text}"
        );
    }

    #[test]
    fn reading_a_file_checks_its_permissions() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.toml");
        std::fs::write(&path, "node = \"n\"\n").unwrap();
        let path_text = path.display().to_string();
        let env = |k: &str| (k == CONFIG_FILE_VAR).then(|| path_text.clone());

        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let source = ConfigSource::from_env(&env, KNOWN).unwrap();
        assert_eq!(source.get(NODE).unwrap().unwrap().text, "n");
        assert_eq!(
            source.warnings(),
            [ConfigWarning::ReadableByOthers {
                path: path_text.clone(),
                mode: 0o644
            }]
        );

        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let source = ConfigSource::from_env(&env, KNOWN).unwrap();
        assert_eq!(source.warnings(), []);

        let missing =
            |k: &str| (k == CONFIG_FILE_VAR).then(|| "/nonexistent/pvpn.toml".to_string());
        let err = ConfigSource::from_env(&missing, KNOWN)
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.starts_with("config file /nonexistent/pvpn.toml (PVPN_CONFIG)"),
            "{err}"
        );
    }
}
