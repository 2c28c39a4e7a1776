//! How both binaries may reach Redis: the one rule that keeps node credentials and preshared keys
//! off the wire in clear text.
//!
//! Everything between the backend and the agents travels through Redis: every node's ACL password
//! (in `AUTH`) and every peer's preshared key (in snapshots and stream events). A Redis URL names
//! one of three transports ([`RedisTransport`]): TLS (`rediss://`), plain TCP (`redis://`) or a
//! Unix socket. Plain TCP is accepted only to a loopback host, unless the operator states that the
//! network between the hosts is encrypted already (`redis_allow_plaintext`, e.g. a WireGuard link
//! between them). A CA file (`redis_ca_file`, the PEM certificates that sign the server's
//! certificate) makes sense only with TLS; without one, TLS trusts the system's roots.
//!
//! The binaries classify their URL with redis-rs (this crate has no Redis dependency) and ask
//! [`RedisSecurity::from_source`] for the verdict while their configuration loads. Both read the
//! CA file with [`read_ca_certificates`] when they build their client, so a missing or empty file
//! is the same error in either.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use crate::config_source::{ConfigError, ConfigSource, Key};

/// `PVPN_REDIS_CA_FILE`: PEM certificates to trust for `rediss://` instead of the system's roots.
pub const CA_FILE: Key = Key::new("redis_ca_file", "PVPN_REDIS_CA_FILE");
/// `PVPN_REDIS_ALLOW_PLAINTEXT`: plain `redis://` to another host is refused unless this is `true`.
pub const ALLOW_PLAINTEXT: Key = Key::new("redis_allow_plaintext", "PVPN_REDIS_ALLOW_PLAINTEXT");

/// How a Redis URL reaches the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedisTransport<'a> {
    /// `rediss://`: TLS, the server's certificate checked.
    Tls,
    /// `redis://host`: plain TCP.
    Tcp { host: &'a str },
    /// `redis+unix://` or `unix://`: a socket on this host.
    Unix,
}

/// The transport settings that passed the rule.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RedisSecurity {
    /// PEM certificates to trust for TLS (only ever set with a `rediss://` URL).
    pub ca_file: Option<PathBuf>,
    /// Plain TCP to another host was allowed explicitly.
    pub allow_plaintext: bool,
}

impl RedisSecurity {
    /// Reads [`CA_FILE`] and [`ALLOW_PLAINTEXT`] and checks them against the transport of the URL
    /// set under `url_key` (`None`: no URL, nothing to check). An error names the setting at fault.
    pub fn from_source(
        source: &ConfigSource<'_>,
        url_key: Key,
        transport: Option<RedisTransport<'_>>,
    ) -> Result<Self, ConfigError> {
        let ca_file = source.get(CA_FILE)?;
        let allow_plaintext = source.parse::<bool>(ALLOW_PLAINTEXT)?.unwrap_or(false);
        match (transport, &ca_file) {
            (Some(RedisTransport::Tcp { .. } | RedisTransport::Unix), Some(ca)) => {
                return Err(ConfigError::Invalid {
                    key: CA_FILE.file,
                    env: CA_FILE.env,
                    origin: ca.origin.clone(),
                    reason: format!(
                        "a CA file is only used with TLS, but {} is not a rediss:// URL",
                        url_key.env
                    ),
                });
            }
            (Some(RedisTransport::Tcp { host }), None)
                if !allow_plaintext && !is_loopback(host) =>
            {
                let origin = source
                    .get(url_key)?
                    .map(|v| v.origin)
                    .unwrap_or(crate::config_source::Origin::Environment);
                return Err(ConfigError::Invalid {
                    key: url_key.file,
                    env: url_key.env,
                    origin,
                    reason: format!(
                        "plain redis:// to {host} would carry the Redis password and preshared \
                         keys unencrypted: use rediss:// (TLS, with {} for a private CA), or set \
                         {}=true if the network between the hosts is encrypted already",
                        CA_FILE.env, ALLOW_PLAINTEXT.env
                    ),
                });
            }
            _ => {}
        }
        Ok(Self {
            ca_file: ca_file.map(|v| PathBuf::from(v.text)),
            allow_plaintext,
        })
    }
}

/// Why the configured CA file cannot be trusted.
#[derive(Debug, thiserror::Error)]
pub enum CaFileError {
    #[error("reading the Redis CA file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the Redis CA file {path} holds no PEM certificate")]
    NoCertificate { path: PathBuf },
}

/// The PEM text of the CA file, read once when a binary builds its Redis client. A file with no
/// certificate in it is refused here rather than as a TLS failure at the first connection.
pub fn read_ca_certificates(path: &Path) -> Result<Vec<u8>, CaFileError> {
    let pem = std::fs::read(path).map_err(|source| CaFileError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    const BEGIN: &[u8] = b"-----BEGIN CERTIFICATE-----";
    if !pem.windows(BEGIN.len()).any(|w| w == BEGIN) {
        return Err(CaFileError::NoCertificate {
            path: path.to_path_buf(),
        });
    }
    Ok(pem)
}

/// `localhost`, `127.0.0.0/8` and `::1`: traffic that never leaves the host.
pub fn is_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.eq_ignore_ascii_case("localhost")
        || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    const URL: Key = Key::new("redis_url", "REDIS_URL");
    const KNOWN: &[Key] = &[URL, CA_FILE, ALLOW_PLAINTEXT];

    fn check(
        transport: RedisTransport<'_>,
        env: &[(&str, &str)],
    ) -> Result<RedisSecurity, ConfigError> {
        let lookup = |name: &str| {
            env.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        };
        let source = ConfigSource::new(None, &lookup, KNOWN)?;
        RedisSecurity::from_source(&source, URL, Some(transport))
    }

    #[test]
    fn tls_takes_a_ca_file_or_the_system_roots() {
        let with_ca = check(
            RedisTransport::Tls,
            &[("PVPN_REDIS_CA_FILE", "/etc/pvpn/ca.crt")],
        );
        assert_eq!(
            with_ca.unwrap().ca_file,
            Some(PathBuf::from("/etc/pvpn/ca.crt"))
        );
        assert_eq!(check(RedisTransport::Tls, &[]).unwrap().ca_file, None);
    }

    #[test]
    fn plain_tcp_to_another_host_is_refused_unless_allowed() {
        for host in [
            "203.0.113.10",
            "redis.example.org",
            "[2001:db8::1]",
            "10.0.0.1",
        ] {
            let err = check(RedisTransport::Tcp { host }, &[]).unwrap_err();
            let text = err.to_string();
            assert!(
                text.starts_with("REDIS_URL") && text.contains("rediss://"),
                "{host}: {text}"
            );
            let allowed = check(
                RedisTransport::Tcp { host },
                &[("PVPN_REDIS_ALLOW_PLAINTEXT", "true")],
            );
            assert!(allowed.unwrap().allow_plaintext, "{host}");
        }
        for host in [
            "127.0.0.1",
            "127.0.0.53",
            "localhost",
            "LOCALHOST",
            "::1",
            "[::1]",
        ] {
            assert!(check(RedisTransport::Tcp { host }, &[]).is_ok(), "{host}");
        }
        assert!(check(RedisTransport::Unix, &[]).is_ok());
        let err = check(
            RedisTransport::Tcp { host: "10.0.0.1" },
            &[("PVPN_REDIS_ALLOW_PLAINTEXT", "yes please")],
        )
        .unwrap_err();
        assert!(
            err.to_string().starts_with("PVPN_REDIS_ALLOW_PLAINTEXT"),
            "{err}"
        );
    }

    #[test]
    fn a_ca_file_without_tls_is_a_mistake() {
        for transport in [
            RedisTransport::Tcp { host: "127.0.0.1" },
            RedisTransport::Unix,
        ] {
            let err = check(transport, &[("PVPN_REDIS_CA_FILE", "/etc/pvpn/ca.crt")]).unwrap_err();
            assert!(
                err.to_string().starts_with("PVPN_REDIS_CA_FILE")
                    && err.to_string().contains("rediss://"),
                "{err}"
            );
        }
    }

    #[test]
    fn a_ca_file_must_exist_and_hold_a_certificate() {
        let dir = std::env::temp_dir().join(format!("pvpn-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let missing = dir.join("missing.pem");
        assert!(matches!(
            read_ca_certificates(&missing),
            Err(CaFileError::Read { .. })
        ));
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        assert!(matches!(
            read_ca_certificates(&empty),
            Err(CaFileError::NoCertificate { .. })
        ));
        let ca = dir.join("ca.pem");
        let pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
        std::fs::write(&ca, pem).unwrap();
        assert_eq!(read_ca_certificates(&ca).unwrap(), pem.as_bytes());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
