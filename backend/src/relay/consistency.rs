//! PostgreSQL decides revisions, never Redis: compares each node's revision and epoch in Redis
//! with the revision PostgreSQL says was published (`nodes.published_revision`), and checks that
//! the node's interface spec is there and readable (a Redis written by a relay from before
//! protocols has none; without it an AmneziaWG node's agent would not set its profile).
//!
//! Any disagreement means Redis and PostgreSQL no longer describe the same history: Redis came
//! back from an older RDB (behind), PostgreSQL was restored from a dump (ahead), someone wrote
//! the key (garbage), or it is gone (missing). The relay then republishes the node from
//! PostgreSQL under a new epoch; it never trusts the number in Redis. A relay that crashed
//! between Redis and PostgreSQL also leaves Redis ahead; republishing is the harmless answer.

use pvpn_common::obfuscation::InterfaceSpec;
use pvpn_common::redis_keys::RegionKeys;
use pvpn_common::{NodeName, RegionCode};
use redis::aio::MultiplexedConnection;
use sqlx::PgConnection;

use super::RelayError;
use crate::db;

/// How a node's snapshot in Redis compares with PostgreSQL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Verdict {
    InStep,
    /// No revision key.
    Missing,
    /// A revision key that is not a number (or not a string).
    Garbage,
    /// Redis holds an older revision than PostgreSQL published.
    Behind {
        redis: u64,
        published: i64,
    },
    /// Redis holds a newer revision than PostgreSQL published.
    Ahead {
        redis: u64,
        published: i64,
    },
    /// The revision agrees but the node's epoch is absent or not a number.
    EpochMissing,
    /// Revision and epoch agree but the node's interface spec is absent or unreadable.
    InterfaceMissing,
}

impl Verdict {
    /// The `reason` label of the republish this verdict causes.
    pub(super) fn reason(&self) -> &'static str {
        match self {
            Verdict::InStep => "in_step",
            Verdict::Missing => "revision_missing",
            Verdict::Garbage => "revision_garbage",
            Verdict::Behind { .. } => "revision_behind",
            Verdict::Ahead { .. } => "revision_ahead",
            Verdict::EpochMissing => "node_epoch_missing",
            Verdict::InterfaceMissing => "interface_missing",
        }
    }
}

/// Judges one node from its Redis revision and epoch values.
fn judge(
    revision: redis::RedisResult<Option<String>>,
    epoch: redis::RedisResult<Option<String>>,
    published: i64,
) -> Verdict {
    let revision = match revision {
        Ok(None) => return Verdict::Missing,
        Ok(Some(text)) => match text.trim().parse::<u64>() {
            Ok(r) => r,
            Err(_) => return Verdict::Garbage,
        },
        Err(_) => return Verdict::Garbage,
    };
    match i64::try_from(revision) {
        Ok(r) if r < published => {
            return Verdict::Behind {
                redis: revision,
                published,
            };
        }
        Ok(r) if r == published => {}
        _ => {
            return Verdict::Ahead {
                redis: revision,
                published,
            };
        }
    }
    match epoch {
        Ok(Some(text)) if text.trim().parse::<u64>().is_ok() => Verdict::InStep,
        _ => Verdict::EpochMissing,
    }
}

/// [`judge`], then the interface spec of a node otherwise in step: present and a valid spec.
fn judge_with_interface(
    revision: redis::RedisResult<Option<String>>,
    epoch: redis::RedisResult<Option<String>>,
    interface: redis::RedisResult<Option<String>>,
    published: i64,
) -> Verdict {
    let verdict = judge(revision, epoch, published);
    if verdict != Verdict::InStep {
        return verdict;
    }
    let readable = interface.ok().flatten().is_some_and(|text| {
        serde_json::from_str::<InterfaceSpec>(&text).is_ok_and(|s| s.validate().is_ok())
    });
    if readable {
        Verdict::InStep
    } else {
        Verdict::InterfaceMissing
    }
}

/// Compares every node (or the nodes named in `only`) with PostgreSQL.
pub(super) async fn compare(
    pg: &mut PgConnection,
    redis: &mut MultiplexedConnection,
    only: Option<&[String]>,
) -> Result<Vec<(NodeName, RegionCode, Verdict)>, RelayError> {
    let nodes = db::nodes::published_revisions(pg, only).await?;
    if nodes.is_empty() {
        return Ok(Vec::new());
    }
    let mut pipe = redis::pipe();
    pipe.ignore_errors();
    for (node, region, _) in &nodes {
        let keys = RegionKeys::new(region);
        pipe.get(keys.node_revision(node))
            .get(keys.node_epoch(node))
            .get(keys.node_interface(node));
    }
    // A key of the wrong type answers WRONGTYPE for its own GET only; a cut connection fails
    // the whole pipeline, which is the caller's retry.
    let replies: Vec<redis::RedisResult<Option<String>>> = pipe.query_async(redis).await?;
    if replies.len() != nodes.len() * 3 {
        return Err(RelayError::Data(format!(
            "{} replies for {} nodes",
            replies.len(),
            nodes.len()
        )));
    }
    let mut replies = replies.into_iter();
    let mut out = Vec::new();
    for (node, region, published) in nodes {
        let (Some(revision), Some(epoch), Some(interface)) =
            (replies.next(), replies.next(), replies.next())
        else {
            break;
        };
        out.push((
            node,
            region,
            judge_with_interface(revision, epoch, interface, published),
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> redis::RedisResult<Option<String>> {
        Ok(Some(s.to_string()))
    }

    #[test]
    fn every_disagreement_is_named() {
        assert_eq!(judge(text("5"), text("17"), 5), Verdict::InStep);
        assert_eq!(judge(Ok(None), text("17"), 5), Verdict::Missing);
        assert_eq!(judge(text("banana"), text("17"), 5), Verdict::Garbage);
        assert_eq!(judge(text("-1"), text("17"), 0), Verdict::Garbage);
        assert_eq!(
            judge(text("3"), text("17"), 5),
            Verdict::Behind {
                redis: 3,
                published: 5
            }
        );
        assert_eq!(
            judge(text("9"), text("17"), 5),
            Verdict::Ahead {
                redis: 9,
                published: 5
            }
        );
        assert_eq!(
            judge(text(&u64::MAX.to_string()), text("17"), 5),
            Verdict::Ahead {
                redis: u64::MAX,
                published: 5
            }
        );
        assert_eq!(judge(text("5"), Ok(None), 5), Verdict::EpochMissing);
        assert_eq!(judge(text("5"), text("x"), 5), Verdict::EpochMissing);
    }

    #[test]
    fn a_missing_or_unreadable_interface_spec_is_named() {
        let spec = serde_json::to_string(&InterfaceSpec::wireguard()).unwrap();
        let check = |interface| judge_with_interface(text("5"), text("17"), interface, 5);
        assert_eq!(check(text(&spec)), Verdict::InStep);
        assert_eq!(check(Ok(None)), Verdict::InterfaceMissing);
        assert_eq!(
            check(text("{\"protocol\":\"amneziawg\"}")),
            Verdict::InterfaceMissing
        );
        assert_eq!(
            judge_with_interface(Ok(None), text("17"), Ok(None), 5),
            Verdict::Missing,
            "the revision's verdict comes first"
        );
    }
}
