//! The backend's one `redis::Client`, over TLS when the URL says `rediss://`: it trusts the
//! certificates of `PVPN_REDIS_CA_FILE` (read once, at start, by
//! [`pvpn_common::redis_transport::read_ca_certificates`]) or else the system's roots.

use std::path::Path;

use pvpn_common::redis_transport::{CaFileError, read_ca_certificates};

use redis::{Client, TlsCertificates};

/// Why no Redis client could be built from the configuration.
#[derive(Debug, thiserror::Error)]
pub enum RedisClientError {
    #[error(transparent)]
    CaFile(#[from] CaFileError),
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
    let pem = read_ca_certificates(path)?;
    Ok(Client::build_with_tls(
        url,
        TlsCertificates {
            client_tls: None,
            root_cert: Some(pem),
        },
    )?)
}
