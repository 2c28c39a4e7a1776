//! Redis connections with timeouts chosen for what runs on them.
//!
//! redis-rs times out responses after 500 ms by default. A blocking `XREADGROUP ... BLOCK` on such
//! a connection fails, poisons the next command, and leaves the delivered entry pending: blocking
//! reads therefore get their own connection whose timeout is longer than the block. Commands get a
//! timeout long enough for a snapshot of tens of thousands of peers.

use std::time::Duration;

use redis::AsyncConnectionConfig;
use redis::aio::MultiplexedConnection;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// A connection for ordinary commands (acks, snapshots, feedback).
pub async fn commands(url: &str) -> redis::RedisResult<MultiplexedConnection> {
    connect(url, COMMAND_TIMEOUT).await
}

/// A connection for `XREADGROUP ... BLOCK block` only.
pub async fn blocking_reads(
    url: &str,
    block: Duration,
) -> redis::RedisResult<MultiplexedConnection> {
    connect(url, block + Duration::from_secs(10)).await
}

async fn connect(
    url: &str,
    response_timeout: Duration,
) -> redis::RedisResult<MultiplexedConnection> {
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(response_timeout));
    redis::Client::open(url)?
        .get_multiplexed_async_connection_with_config(&config)
        .await
}
