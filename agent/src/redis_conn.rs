//! Redis connections with timeouts chosen for what runs on them, over TLS when the URL says so.
//!
//! redis-rs times out responses after 500 ms by default. A blocking `XREADGROUP ... BLOCK` on such
//! a connection fails, poisons the next command, and leaves the delivered entry pending: blocking
//! reads therefore get their own connection whose timeout is longer than the block. Commands get a
//! timeout long enough for a snapshot of tens of thousands of peers.
//!
//! [`client`] builds the one `redis::Client` every connection comes from: for `rediss://` it
//! trusts the CA file's certificates (read once, at start, by
//! [`pvpn_common::redis_transport::read_ca_certificates`]) or else the system's roots.

use std::path::Path;

use pvpn_common::redis_transport::{CaFileError, read_ca_certificates};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, TlsCertificates};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

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

/// A connection for ordinary commands (acks, snapshots, feedback).
pub async fn commands(client: &Client) -> redis::RedisResult<MultiplexedConnection> {
    connect(client, COMMAND_TIMEOUT).await
}

/// A connection for `XREADGROUP ... BLOCK block` only.
pub async fn blocking_reads(
    client: &Client,
    block: Duration,
) -> redis::RedisResult<MultiplexedConnection> {
    connect(client, block + Duration::from_secs(10)).await
}

async fn connect(
    client: &Client,
    response_timeout: Duration,
) -> redis::RedisResult<MultiplexedConnection> {
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(response_timeout));
    client
        .get_multiplexed_async_connection_with_config(&config)
        .await
}
