//! A node's desired-state snapshot: read from Redis in one atomic step and parsed strictly.
//!
//! The relay keeps, per node, a hash (public key → `PeerSpec` JSON) and a revision key, and writes
//! both together with the stream entry. An absent revision key means Redis lost the snapshot (the
//! relay always sets it, even to "0"): that is [`SnapshotError::Missing`], and the caller must not
//! treat it as "no peers".
//!
//! Next to them the relay keeps the node's epoch, raised every time it rewrites the snapshot
//! from PostgreSQL (Redis rolled back, or PostgreSQL restored). [`Position::accepts`] is the
//! rule that makes a rolled-back Redis harmless: a snapshot older than what the interface holds
//! is applied only under a higher epoch.

use std::collections::{BTreeMap, BTreeSet};

use pvpn_common::obfuscation::InterfaceSpec;
use pvpn_common::redis_keys::RegionKeys;
use pvpn_common::wire::{WireError, decode_snapshot_peer};
use pvpn_common::{NodeName, PeerSpec, PublicKey};

/// Where a node's desired state stands: the epoch of the snapshot it descends from and its
/// revision. A missing epoch (a relay from before epochs) counts as 0.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Position {
    pub epoch: u64,
    pub revision: u64,
}

impl Position {
    /// Whether an interface at `self` may take a snapshot at `next`: a higher epoch always (the
    /// relay rewrote the node from PostgreSQL, which decides), the same epoch only at the same
    /// or a newer revision, an older epoch never (Redis came back from an older copy).
    pub fn accepts(self, next: Position) -> bool {
        next.epoch > self.epoch || (next.epoch == self.epoch && next.revision >= self.revision)
    }
}

/// The desired peers of a node at one revision.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub revision: u64,
    /// The node's epoch key; 0 when absent.
    pub epoch: u64,
    pub peers: BTreeMap<PublicKey, PeerSpec>,
    /// Peers whose entry is malformed: left on the interface as they are (neither added nor
    /// removed) until the entry is fixed, so a bad entry never disconnects anyone.
    pub untouchable: BTreeSet<PublicKey>,
    /// One line per malformed entry, for the log.
    pub problems: Vec<String>,
    /// The node's protocol and AmneziaWG profile, read in the same MULTI; `None` when the relay
    /// has not written one (a relay from before protocols: the interface is left as it is).
    pub interface: Option<InterfaceSpec>,
}

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("the node's snapshot is missing (no revision key {0}); waiting for the backend")]
    Missing(String),
    #[error("the node's snapshot revision {0:?} is not a number")]
    BadRevision(String),
    #[error("the node's snapshot epoch {0:?} is not a number")]
    BadEpoch(String),
    #[error("the node's interface spec is unusable: {0}")]
    BadInterface(String),
    #[error(transparent)]
    Redis(#[from] redis::RedisError),
}

/// Reads the node's hash, revision and epoch in one MULTI, so they belong together.
pub async fn read(
    conn: &mut redis::aio::MultiplexedConnection,
    keys: &RegionKeys,
    node: &NodeName,
) -> Result<Snapshot, SnapshotError> {
    let revision_key = keys.node_revision(node);
    // The fields as a list of pairs: a hash table of 60,000 entries would only be walked once.
    type Reply = (
        Vec<(Vec<u8>, Vec<u8>)>,
        Option<String>,
        Option<String>,
        Option<String>,
    );
    let (fields, revision, epoch, interface): Reply = redis::pipe()
        .atomic()
        .cmd("HGETALL")
        .arg(keys.node_peers(node))
        .cmd("GET")
        .arg(&revision_key)
        .cmd("GET")
        .arg(keys.node_epoch(node))
        .cmd("GET")
        .arg(keys.node_interface(node))
        .query_async(conn)
        .await?;
    let revision = revision.ok_or(SnapshotError::Missing(revision_key))?;
    let mut snapshot = parse(&revision, fields)?;
    snapshot.epoch = match epoch {
        None => 0,
        Some(text) => text
            .trim()
            .parse()
            .map_err(|_| SnapshotError::BadEpoch(text.chars().take(40).collect()))?,
    };
    snapshot.interface = interface.as_deref().map(parse_interface).transpose()?;
    Ok(snapshot)
}

/// Parses and validates the interface spec; an unusable one stops the reconcile (nothing is
/// applied), since peers without the right profile would leave every client unable to connect.
pub fn parse_interface(text: &str) -> Result<InterfaceSpec, SnapshotError> {
    let spec: InterfaceSpec =
        serde_json::from_str(text).map_err(|e| SnapshotError::BadInterface(format!("{e}")))?;
    spec.validate()
        .map_err(|e| SnapshotError::BadInterface(e.to_string()))?;
    Ok(spec)
}

/// Parses the raw hash and revision text.
pub fn parse(
    revision: &str,
    fields: impl IntoIterator<Item = (Vec<u8>, Vec<u8>)>,
) -> Result<Snapshot, SnapshotError> {
    let revision: u64 = revision
        .trim()
        .parse()
        .map_err(|_| SnapshotError::BadRevision(revision.chars().take(40).collect()))?;
    let mut snapshot = Snapshot {
        revision,
        ..Snapshot::default()
    };
    for (field, value) in fields {
        let field_text = String::from_utf8_lossy(&field);
        let Ok(key) = field_text.parse::<PublicKey>() else {
            snapshot
                .problems
                .push(format!("field {field_text:.60?} is not a public key"));
            continue;
        };
        match decode_snapshot_peer(&value) {
            Ok(mut spec) if spec.public_key == key => {
                // Held until the next reconcile: no room for more addresses than it has.
                spec.allowed_ips.shrink_to_fit();
                snapshot.peers.insert(key, spec);
            }
            Ok(spec) => {
                snapshot.untouchable.insert(key);
                snapshot.problems.push(format!(
                    "field {key} holds the spec of another key {}",
                    spec.public_key
                ));
            }
            Err(e) => {
                let e: WireError = e;
                snapshot.untouchable.insert(key);
                snapshot.problems.push(format!("peer {key}: {e}"));
            }
        }
    }
    Ok(snapshot)
}

#[cfg(test)]
mod tests {
    use super::*;
    use pvpn_common::keys::KeyPair;
    use pvpn_common::wire::encode;
    use std::collections::HashMap;

    fn spec() -> PeerSpec {
        PeerSpec {
            public_key: KeyPair::generate().public,
            allowed_ips: vec!["198.18.0.2/32".parse().unwrap()],
            preshared_key: None,
            persistent_keepalive: None,
        }
    }

    #[test]
    fn parses_good_entries_and_fences_bad_ones() {
        let good = spec();
        let bad_json = KeyPair::generate().public;
        let mismatched = KeyPair::generate().public;
        let mut fields = HashMap::new();
        fields.insert(
            good.public_key.to_base64().into_bytes(),
            encode(&good).into_bytes(),
        );
        fields.insert(bad_json.to_base64().into_bytes(), b"{nope".to_vec());
        fields.insert(
            mismatched.to_base64().into_bytes(),
            encode(&spec()).into_bytes(),
        );
        fields.insert(b"not-a-key".to_vec(), encode(&spec()).into_bytes());
        let s = parse("42", fields).unwrap();
        assert_eq!(s.revision, 42);
        assert_eq!(s.peers.len(), 1);
        assert_eq!(s.peers[&good.public_key], good);
        assert_eq!(
            s.untouchable,
            BTreeSet::from([bad_json, mismatched]),
            "{:?}",
            s.problems
        );
        assert_eq!(s.problems.len(), 3);
    }

    #[test]
    fn an_older_snapshot_is_taken_only_under_a_higher_epoch() {
        let at = |epoch, revision| Position { epoch, revision };
        let applied = at(100, 8);
        assert!(applied.accepts(at(100, 8)), "the same snapshot");
        assert!(applied.accepts(at(100, 9)), "newer, same epoch");
        assert!(!applied.accepts(at(100, 5)), "Redis rolled back");
        assert!(
            !applied.accepts(at(99, 9)),
            "an older copy, whatever its revision"
        );
        assert!(
            applied.accepts(at(101, 5)),
            "republished from a restored database"
        );
        assert!(applied.accepts(at(101, 20)));
        assert!(at(0, 3).accepts(at(0, 3)), "no epochs yet");
    }

    #[test]
    fn interface_specs_are_validated() {
        let profile = pvpn_common::obfuscation::AwgProfile::generate();
        let good = InterfaceSpec::amneziawg(profile);
        let text = serde_json::to_string(&good).unwrap();
        assert_eq!(parse_interface(&text).unwrap(), good);
        let mut bad = good;
        bad.amneziawg = None;
        let text = serde_json::to_string(&bad).unwrap();
        assert!(matches!(
            parse_interface(&text),
            Err(SnapshotError::BadInterface(_))
        ));
        assert!(parse_interface("{nope").is_err());
    }

    #[test]
    fn rejects_a_bad_revision() {
        assert!(matches!(
            parse("x1", HashMap::new()),
            Err(SnapshotError::BadRevision(_))
        ));
        assert_eq!(parse("0", HashMap::new()).unwrap().revision, 0);
    }
}
