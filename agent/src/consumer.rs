//! The agent's side of the region event stream: its consumer group, reads, acks, dead letters.
//!
//! Replies are parsed from raw [`redis::Value`]s so that every odd entry (missing field, trimmed
//! pending entry) becomes a typed [`EntryBody`] the agent can dead-letter or skip, never a parse
//! failure that stops the loop.

use std::time::Duration;

use pvpn_common::NodeName;
use pvpn_common::redis_keys::{
    DEAD_LETTER_ID_FIELD, DEAD_LETTER_PAYLOAD_FIELD, DEAD_LETTER_REASON_FIELD, RegionKeys,
};
use pvpn_common::wire::EVENT_FIELD;
use redis::Value;
use redis::aio::MultiplexedConnection;

/// Entries fetched per read.
const READ_COUNT: usize = 100;
/// The dead-letter stream is bounded; it is for inspection, not an archive.
const DEAD_LETTER_MAXLEN: usize = 10_000;

/// One stream entry as delivered to this consumer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub id: String,
    pub body: EntryBody,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryBody {
    /// The value of the [`EVENT_FIELD`] field, not yet decoded.
    Payload(Vec<u8>),
    /// The entry has no [`EVENT_FIELD`] field; the fields it has, for the dead letter.
    NoEventField(String),
    /// A pending entry whose content was trimmed from the stream.
    Gone,
}

/// Where a read starts.
#[derive(Debug, Clone, Copy)]
pub enum ReadFrom {
    /// This consumer's pending entries: delivered before, never acknowledged.
    Pending,
    /// New entries, waiting up to this long for one.
    New { block: Duration },
}

/// The group and consumer names of one agent on one region's stream.
#[derive(Debug, Clone)]
pub struct StreamConsumer {
    pub stream: String,
    pub dead_letter: String,
    pub group: String,
    pub consumer: String,
}

/// Whether an error means the stream or the group is gone (Redis lost data, someone deleted it).
pub fn is_stream_lost(error: &redis::RedisError) -> bool {
    matches!(error.code(), Some("NOGROUP") | Some("UNBLOCKED"))
}

impl StreamConsumer {
    pub fn new(keys: &RegionKeys, node: &NodeName, group: String, consumer: String) -> Self {
        Self {
            stream: keys.events(),
            dead_letter: keys.node_dead_letter(node),
            group,
            consumer,
        }
    }

    /// Creates the group at the stream's end (`$`), creating the stream if needed. Starting at the
    /// end is right because the agent reconciles from the snapshot right after: the snapshot
    /// covers every event written before the group existed. An existing group is kept.
    pub async fn ensure_group(&self, conn: &mut MultiplexedConnection) -> redis::RedisResult<bool> {
        let created: redis::RedisResult<()> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(&self.stream)
            .arg(&self.group)
            .arg("$")
            .arg("MKSTREAM")
            .query_async(conn)
            .await;
        match created {
            Ok(()) => Ok(true),
            Err(e) if e.code() == Some("BUSYGROUP") => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Takes over entries pending for other consumers of this node's group (a previous agent that
    /// ran under another consumer name), so the pending read below sees them.
    pub async fn claim_orphans(&self, conn: &mut MultiplexedConnection) -> redis::RedisResult<()> {
        let mut cursor = "0-0".to_string();
        // Bounded: each round moves the cursor forward; 10,000 rounds of 100 is far beyond a PEL.
        for _ in 0..10_000 {
            let reply: Value = redis::cmd("XAUTOCLAIM")
                .arg(&self.stream)
                .arg(&self.group)
                .arg(&self.consumer)
                .arg(0)
                .arg(&cursor)
                .arg("COUNT")
                .arg(READ_COUNT)
                .arg("JUSTID")
                .query_async(conn)
                .await?;
            match reply {
                Value::Array(items) if !items.is_empty() => {
                    cursor = text(&items[0]).unwrap_or_else(|| "0-0".to_string());
                }
                _ => break,
            }
            if cursor == "0-0" {
                break;
            }
        }
        Ok(())
    }

    /// Reads entries for this consumer.
    pub async fn read(
        &self,
        conn: &mut MultiplexedConnection,
        from: ReadFrom,
    ) -> redis::RedisResult<Vec<Entry>> {
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg("GROUP")
            .arg(&self.group)
            .arg(&self.consumer)
            .arg("COUNT")
            .arg(READ_COUNT);
        let start = match from {
            ReadFrom::Pending => "0",
            ReadFrom::New { block } => {
                cmd.arg("BLOCK").arg(block.as_millis().max(1) as u64);
                ">"
            }
        };
        cmd.arg("STREAMS").arg(&self.stream).arg(start);
        let reply: Value = cmd.query_async(conn).await?;
        Ok(parse_read_reply(reply))
    }

    pub async fn ack(&self, conn: &mut MultiplexedConnection, id: &str) -> redis::RedisResult<()> {
        let _: i64 = redis::cmd("XACK")
            .arg(&self.stream)
            .arg(&self.group)
            .arg(id)
            .query_async(conn)
            .await?;
        Ok(())
    }

    /// Acknowledges several entries in one `XACK`.
    pub async fn ack_all(
        &self,
        conn: &mut MultiplexedConnection,
        ids: &[String],
    ) -> redis::RedisResult<()> {
        let _: i64 = redis::cmd("XACK")
            .arg(&self.stream)
            .arg(&self.group)
            .arg(ids)
            .query_async(conn)
            .await?;
        Ok(())
    }

    /// Parks an entry with the reason on the dead-letter stream, then acknowledges it.
    pub async fn dead_letter(
        &self,
        conn: &mut MultiplexedConnection,
        id: &str,
        payload: &[u8],
        reason: &str,
    ) -> redis::RedisResult<()> {
        let _: String = redis::cmd("XADD")
            .arg(&self.dead_letter)
            .arg("MAXLEN")
            .arg("~")
            .arg(DEAD_LETTER_MAXLEN)
            .arg("*")
            .arg(DEAD_LETTER_REASON_FIELD)
            .arg(reason)
            .arg(DEAD_LETTER_ID_FIELD)
            .arg(id)
            .arg(DEAD_LETTER_PAYLOAD_FIELD)
            .arg(payload)
            .query_async(conn)
            .await?;
        self.ack(conn, id).await
    }
}

fn text(value: &Value) -> Option<String> {
    match value {
        Value::BulkString(bytes) => Some(String::from_utf8_lossy(bytes).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}

/// `[[stream, [[id, [field, value, ...] | nil], ...]]]` (or nil when nothing arrived).
fn parse_read_reply(reply: Value) -> Vec<Entry> {
    let mut entries = Vec::new();
    let Value::Array(streams) = reply else {
        return entries;
    };
    for stream in streams {
        let Value::Array(mut parts) = stream else {
            continue;
        };
        if parts.len() != 2 {
            continue;
        }
        let Value::Array(items) = parts.remove(1) else {
            continue;
        };
        for item in items {
            let Value::Array(mut pair) = item else {
                continue;
            };
            if pair.is_empty() {
                continue;
            }
            let Some(id) = text(&pair[0]) else { continue };
            let body = match pair.get_mut(1).map(std::mem::take) {
                Some(Value::Array(fields)) => body_from_fields(fields),
                _ => EntryBody::Gone,
            };
            entries.push(Entry { id, body });
        }
    }
    entries
}

fn body_from_fields(fields: Vec<Value>) -> EntryBody {
    let mut names = Vec::new();
    let mut iter = fields.into_iter();
    while let (Some(name), Some(value)) = (iter.next(), iter.next()) {
        let name = text(&name).unwrap_or_default();
        if name == EVENT_FIELD
            && let Value::BulkString(bytes) = value
        {
            return EntryBody::Payload(bytes);
        }
        names.push(name);
    }
    EntryBody::NoEventField(names.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn parses_entries_of_every_shape() {
        let reply = Value::Array(vec![Value::Array(vec![
            bulk("pvpn:{nl}:events"),
            Value::Array(vec![
                Value::Array(vec![
                    bulk("1-0"),
                    Value::Array(vec![bulk("event"), bulk("{}")]),
                ]),
                Value::Array(vec![
                    bulk("2-0"),
                    Value::Array(vec![bulk("other"), bulk("x")]),
                ]),
                Value::Array(vec![bulk("3-0"), Value::Nil]),
            ]),
        ])]);
        assert_eq!(
            parse_read_reply(reply),
            vec![
                Entry {
                    id: "1-0".into(),
                    body: EntryBody::Payload(b"{}".to_vec())
                },
                Entry {
                    id: "2-0".into(),
                    body: EntryBody::NoEventField("other".into())
                },
                Entry {
                    id: "3-0".into(),
                    body: EntryBody::Gone
                },
            ]
        );
        assert!(parse_read_reply(Value::Nil).is_empty());
    }
}
