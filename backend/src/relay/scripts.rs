//! The relay's Redis writes, each one atomic Lua script: publish a desired-state change (snapshot
//! hash or interface spec + revision + stream entry), publish a control event, replace a node's whole snapshot.
//!
//! The change script refuses to run without the region's epoch marker (Redis lost its data: the
//! caller republishes first) or without the node's revision key (the node was never published),
//! skips a revision the snapshot already holds (a re-run after a crash between Redis and
//! PostgreSQL publishes nothing twice), and refuses a revision gap or a revision key that is not
//! a number (both mean the node must be republished from PostgreSQL). The snapshot script writes
//! the node's hash, revision, interface spec and a new, higher epoch together.

use pvpn_common::wire::EVENT_FIELD;
use redis::Script;
use redis::aio::MultiplexedConnection;

/// What the change script reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeOutcome {
    Published,
    /// The snapshot is already at or past this revision: nothing written.
    AlreadyPublished,
    /// The region's epoch marker is missing: republish the region first.
    EpochMissing,
    /// The node's revision key is missing: publish the node's snapshot first.
    SnapshotMissing,
    /// The snapshot is behind by more than one revision: republish the node.
    Gap,
    /// The node's revision key holds something that is not a number: republish the node.
    Garbage,
}

// KEYS: epoch, node peers hash, node revision, events stream, node interface.
// ARGV: revision, op (upsert|remove|interface), public key (or ""), peer or interface JSON (or
// ""), event JSON, maxlen, field.
const CHANGE: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local current = redis.call('GET', KEYS[3])
if not current then return -2 end
current = tonumber(current)
if not current then return -4 end
local revision = tonumber(ARGV[1])
if revision <= current then return 0 end
if revision ~= current + 1 then return -3 end
if ARGV[2] == 'upsert' then
  redis.call('HSET', KEYS[2], ARGV[3], ARGV[4])
elseif ARGV[2] == 'interface' then
  redis.call('SET', KEYS[5], ARGV[4])
else
  redis.call('HDEL', KEYS[2], ARGV[3])
end
redis.call('SET', KEYS[3], ARGV[1])
redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[6], '*', ARGV[7], ARGV[5])
return 1
";

// KEYS: node peers hash, node revision, node epoch, node interface. ARGV: revision, proposed
// epoch (the relay's clock in ms), the interface spec JSON, then public key / peer JSON pairs. The epoch written is the proposed one, or the
// previous epoch + 1 if that is higher (a relay clock that went back still raises it); a previous
// value that is not a sane integer is ignored. Returns the epoch written.
const SNAPSHOT: &str = r"
local epoch = tonumber(ARGV[2])
local previous = redis.pcall('GET', KEYS[3])
previous = type(previous) == 'string' and tonumber(previous) or nil
if previous and previous == math.floor(previous) and previous >= epoch and previous < 4503599627370496 then
  epoch = previous + 1
end
redis.call('DEL', KEYS[1], KEYS[3])
redis.call('SET', KEYS[4], ARGV[3])
for i = 4, #ARGV, 2 do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
end
redis.call('SET', KEYS[2], ARGV[1])
redis.call('SET', KEYS[3], string.format('%d', epoch))
return epoch
";

/// The loaded scripts (EVALSHA, falling back to EVAL after a Redis restart).
pub struct Scripts {
    change: Script,
    snapshot: Script,
}

impl Default for Scripts {
    fn default() -> Self {
        Self {
            change: Script::new(CHANGE),
            snapshot: Script::new(SNAPSHOT),
        }
    }
}

/// The keys of one node's snapshot.
pub struct SnapshotKeys {
    pub peers: String,
    pub revision: String,
    pub epoch: String,
    /// The node's InterfaceSpec (protocol and AmneziaWG profile), written with the peers.
    pub interface: String,
}

impl SnapshotKeys {
    pub fn new(keys: &pvpn_common::redis_keys::RegionKeys, node: &pvpn_common::NodeName) -> Self {
        Self {
            peers: keys.node_peers(node),
            revision: keys.node_revision(node),
            epoch: keys.node_epoch(node),
            interface: keys.node_interface(node),
        }
    }
}

/// What a change does to the node's snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeOp {
    Upsert,
    Remove,
    /// Replaces the node's interface spec (`value_json`).
    Interface,
}

impl ChangeOp {
    fn as_str(self) -> &'static str {
        match self {
            ChangeOp::Upsert => "upsert",
            ChangeOp::Remove => "remove",
            ChangeOp::Interface => "interface",
        }
    }
}

/// One desired-state change, ready to publish.
pub struct Change<'a> {
    pub epoch_key: &'a str,
    pub peers_key: &'a str,
    pub revision_key: &'a str,
    pub events_key: &'a str,
    pub interface_key: &'a str,
    pub revision: u64,
    pub op: ChangeOp,
    pub public_key: &'a str,
    /// The peer's JSON for an upsert, the interface spec's for an interface change.
    pub value_json: &'a str,
    pub event_json: &'a str,
    pub maxlen: u64,
}

impl Scripts {
    pub async fn publish_change(
        &self,
        conn: &mut MultiplexedConnection,
        c: &Change<'_>,
    ) -> redis::RedisResult<ChangeOutcome> {
        let code: i64 = self
            .change
            .key(c.epoch_key)
            .key(c.peers_key)
            .key(c.revision_key)
            .key(c.events_key)
            .key(c.interface_key)
            .arg(c.revision)
            .arg(c.op.as_str())
            .arg(c.public_key)
            .arg(c.value_json)
            .arg(c.event_json)
            .arg(c.maxlen)
            .arg(EVENT_FIELD)
            .invoke_async(conn)
            .await?;
        Ok(match code {
            1 => ChangeOutcome::Published,
            0 => ChangeOutcome::AlreadyPublished,
            -1 => ChangeOutcome::EpochMissing,
            -2 => ChangeOutcome::SnapshotMissing,
            -4 => ChangeOutcome::Garbage,
            _ => ChangeOutcome::Gap,
        })
    }

    /// Replaces a node's snapshot hash, sets its revision and interface spec and raises its
    /// epoch, atomically. Returns the epoch written.
    pub async fn write_snapshot(
        &self,
        conn: &mut MultiplexedConnection,
        keys: &SnapshotKeys,
        revision: u64,
        interface_json: &str,
        peers: &[(String, String)],
    ) -> redis::RedisResult<u64> {
        let proposed = chrono::Utc::now().timestamp_millis().max(1);
        let mut call = self.snapshot.prepare_invoke();
        call.key(&keys.peers)
            .key(&keys.revision)
            .key(&keys.epoch)
            .key(&keys.interface)
            .arg(revision)
            .arg(proposed)
            .arg(interface_json);
        for (key, json) in peers {
            call.arg(key).arg(json);
        }
        call.invoke_async(conn).await
    }
}

/// Appends a control event (no revision, no snapshot change) to a region's stream.
pub async fn publish_control(
    conn: &mut MultiplexedConnection,
    events_key: &str,
    event_json: &str,
    maxlen: u64,
) -> redis::RedisResult<()> {
    let _: String = redis::cmd("XADD")
        .arg(events_key)
        .arg("MAXLEN")
        .arg("~")
        .arg(maxlen)
        .arg("*")
        .arg(EVENT_FIELD)
        .arg(event_json)
        .query_async(conn)
        .await?;
    Ok(())
}
