//! The backend's one `redis::Client`, over TLS when the URL says `rediss://`: it trusts the
//! certificates of `PVPN_REDIS_CA_FILE` (read once, at start) or else the system's roots.
//! (The agent builds its client the same way in its `redis_conn`; the two crates share no Redis
//! code because `pvpn-common` has no Redis dependency.)

use std::path::{Path, PathBuf};

use redis::{Client, TlsCertificates};

/// Why no Redis client could be built from the configuration.
#[derive(Debug, thiserror::Error)]
pub enum RedisClientError {
    #[error("reading the Redis CA file {path}: {source}")]
    ReadCa {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the Redis CA file {path} holds no PEM certificate")]
    NoCertificate { path: PathBuf },
    #[error("the Redis URL or CA file is not usable: {0}")]
    Redis(#[from] redis::RedisError),
}

/// The client for `url`; with `ca_file`, TLS trusts exactly the certificates in it.
pub fn client(url: &str, ca_file: Option<&Path>) -> Result<Client, RedisClientError> {
    // redis-rs builds rustls configs with the process-wide provider: make it ring, the one this
    // workspace compiles in. An error means a provider is installed already, which is fine.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let Some(path) = ca_file else {
        return Ok(Client::open(url)?);
    };
    let pem = std::fs::read(path).map_err(|source| RedisClientError::ReadCa {
        path: path.to_path_buf(),
        source,
    })?;
    const BEGIN: &[u8] = b"-----BEGIN CERTIFICATE-----";
    if !pem.windows(BEGIN.len()).any(|w| w == BEGIN) {
        return Err(RedisClientError::NoCertificate {
            path: path.to_path_buf(),
        });
    }
    Ok(Client::build_with_tls(
        url,
        TlsCertificates {
            client_tls: None,
            root_cert: Some(pem),
        },
    )?)
}
