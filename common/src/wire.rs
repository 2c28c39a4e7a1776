//! The versioned JSON messages that travel through Redis between the backend and the agents.
//!
//! Every message is one JSON object with a format version `"v"` next to its fields. Decoding checks
//! the size, then the version, then the shape, and reports each failure as a [`WireError`] so the
//! agent can dead-letter the entry with a reason instead of crashing or guessing.
//!
//! | message | stream / key | written by | read by |
//! |---|---|---|---|
//! | [`StreamEvent`] | `pvpn:{r}:events` (field [`EVENT_FIELD`]) | backend relay | agents |
//! | [`Feedback`] | `pvpn:{r}:feedback` (field [`EVENT_FIELD`]) | agents | backend |
//! | [`PeerSpec`] | snapshot hash `pvpn:{r}:node:{n}:peers` | backend relay | agents |
//! | [`Heartbeat`] | `pvpn:{r}:node:{n}:heartbeat` (with expiry) | agents | backend |

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::keys::PublicKey;
use crate::names::NodeName;
use crate::obfuscation::InterfaceSpec;
use crate::peer::{PeerSpec, PeerSpecError};

/// The format version this build writes and the only one it reads.
pub const WIRE_VERSION: u32 = 1;

/// Largest message accepted. A peer upsert is well under 1 KiB and a stats report of 65,536 peers
/// is about 8 MiB; anything larger is malformed by definition.
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;

/// The stream entry field that carries a message's JSON.
pub const EVENT_FIELD: &str = "event";

/// Why bytes from Redis are not a message this build understands.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("message is {0} bytes, more than the {MAX_MESSAGE_BYTES} allowed")]
    TooLarge(usize),
    #[error("message has no format version \"v\"")]
    MissingVersion,
    #[error(
        "message format version {0} is not supported (this build reads version {WIRE_VERSION})"
    )]
    UnsupportedVersion(String),
    #[error("malformed message: {0}")]
    Malformed(String),
    #[error("invalid peer: {0}")]
    InvalidPeer(#[from] PeerSpecError),
}

#[derive(Serialize, Deserialize)]
struct Envelope<T> {
    v: u32,
    #[serde(flatten)]
    body: T,
}

#[derive(Deserialize)]
struct VersionProbe {
    v: Option<serde_json::Value>,
}

/// Serializes `body` with the current format version.
pub fn encode<T: Serialize>(body: &T) -> String {
    // Serializing these plain data types cannot fail: no maps with non-string keys, no I/O.
    serde_json::to_string(&Envelope {
        v: WIRE_VERSION,
        body,
    })
    .unwrap_or_else(|e| unreachable!("wire types always serialize: {e}"))
}

/// Parses a message: size, then version, then shape.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, WireError> {
    if bytes.len() > MAX_MESSAGE_BYTES {
        return Err(WireError::TooLarge(bytes.len()));
    }
    let probe: VersionProbe =
        serde_json::from_slice(bytes).map_err(|e| WireError::Malformed(e.to_string()))?;
    match probe.v {
        None => return Err(WireError::MissingVersion),
        Some(serde_json::Value::Number(n)) if n.as_u64() == Some(u64::from(WIRE_VERSION)) => {}
        Some(other) => return Err(WireError::UnsupportedVersion(other.to_string())),
    }
    let envelope: Envelope<T> =
        serde_json::from_slice(bytes).map_err(|e| WireError::Malformed(e.to_string()))?;
    Ok(envelope.body)
}

/// A change of desired state or a control request, appended to a region's event stream.
///
/// Desired-state events carry the node's revision: revisions of one node increase by exactly one
/// per change, so an agent that sees `revision > applied + 1` knows it missed something.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum StreamEvent {
    /// Add the peer, or update it in place if its public key is already there.
    PeerUpsert {
        node: NodeName,
        revision: u64,
        peer: PeerSpec,
    },
    /// Remove the peer with this public key (a no-op if it is absent).
    PeerRemove {
        node: NodeName,
        revision: u64,
        public_key: PublicKey,
    },
    /// The node's protocol parameters changed (an AmneziaWG profile set or regenerated). The
    /// relay writes the spec to the node's interface key with the revision, atomically; it is
    /// ordered with the node's peer changes by its revision.
    InterfaceSet {
        node: NodeName,
        revision: u64,
        interface: InterfaceSpec,
    },
    /// Compare the interface with the snapshot and fix the difference. `node: None` asks every
    /// node of the region.
    Reconcile {
        node: Option<NodeName>,
        request_id: String,
    },
}

impl StreamEvent {
    /// Decodes and validates an event from a stream entry's payload.
    pub fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        let event: Self = decode(bytes)?;
        if let StreamEvent::PeerUpsert { peer, .. } = &event {
            peer.validate()?;
        }
        if let StreamEvent::InterfaceSet { interface, .. } = &event {
            interface
                .validate()
                .map_err(|e| WireError::Malformed(e.to_string()))?;
        }
        Ok(event)
    }

    pub fn encode(&self) -> String {
        encode(self)
    }

    /// Whether this event is meant for `node`.
    pub fn is_for(&self, node: &NodeName) -> bool {
        match self {
            StreamEvent::PeerUpsert { node: n, .. }
            | StreamEvent::PeerRemove { node: n, .. }
            | StreamEvent::InterfaceSet { node: n, .. } => n == node,
            StreamEvent::Reconcile { node: n, .. } => n.as_ref().is_none_or(|n| n == node),
        }
    }

    /// The node revision this event produces, for desired-state events.
    pub fn revision(&self) -> Option<u64> {
        match self {
            StreamEvent::PeerUpsert { revision, .. }
            | StreamEvent::PeerRemove { revision, .. }
            | StreamEvent::InterfaceSet { revision, .. } => Some(*revision),
            StreamEvent::Reconcile { .. } => None,
        }
    }
}

/// Decodes one value of a node's snapshot hash.
pub fn decode_snapshot_peer(bytes: &[u8]) -> Result<PeerSpec, WireError> {
    let peer: PeerSpec = decode(bytes)?;
    peer.validate()?;
    Ok(peer)
}

/// Why an agent compared its interface with the snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReconcileTrigger {
    Startup,
    RevisionGap,
    StreamLost,
    Requested,
    Periodic,
    /// The interface failed (it may have been recreated empty) and answers again.
    InterfaceRecovered,
    /// The node's protocol parameters changed (`InterfaceSet`): applied from the snapshot.
    InterfaceChanged,
}

/// What one reconcile changed on the interface: the drift it found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReconcileReport {
    pub trigger: ReconcileTrigger,
    /// The admin's request this reconcile answers, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// Unix seconds.
    pub finished_at: i64,
    pub snapshot_revision: u64,
    pub added: u32,
    pub removed: u32,
    pub updated: u32,
    /// The interface's AmneziaWG parameters differed from the node's profile and were set again.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub interface_corrected: bool,
}

/// An agent's periodic "I am alive and this is where I am".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    pub node: NodeName,
    pub agent_version: String,
    /// Unix seconds.
    pub sent_at: i64,
    pub applied_revision: u64,
    pub peer_count: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_reconcile: Option<ReconcileReport>,
}

/// Counters of one peer as the interface reports them. They only grow, until the interface is
/// recreated (or the node reboots) and they restart from zero: the backend turns them into
/// cumulative usage by adding the difference, or the whole value after a reset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerStats {
    pub public_key: PublicKey,
    /// Unix seconds of the latest handshake, `None` if there never was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_handshake: Option<i64>,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
}

/// What agents send back to the backend on the region's feedback stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Feedback {
    Heartbeat(Heartbeat),
    Stats {
        node: NodeName,
        /// Unix seconds.
        sent_at: i64,
        peers: Vec<PeerStats>,
    },
}

impl Feedback {
    /// The node the message says it comes from.
    pub fn node(&self) -> &NodeName {
        match self {
            Feedback::Heartbeat(hb) => &hb.node,
            Feedback::Stats { node, .. } => node,
        }
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        decode(bytes)
    }

    pub fn encode(&self) -> String {
        encode(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{KeyPair, PresharedKey};

    fn node() -> NodeName {
        NodeName::new("nl-1").unwrap()
    }

    fn upsert() -> StreamEvent {
        StreamEvent::PeerUpsert {
            node: node(),
            revision: 7,
            peer: PeerSpec {
                public_key: KeyPair::generate().public,
                allowed_ips: vec!["198.18.0.2/32".parse().unwrap()],
                preshared_key: Some(PresharedKey::generate()),
                persistent_keepalive: None,
            },
        }
    }

    #[test]
    fn events_round_trip_with_version() {
        for event in [
            upsert(),
            StreamEvent::PeerRemove {
                node: node(),
                revision: 8,
                public_key: KeyPair::generate().public,
            },
            StreamEvent::Reconcile {
                node: None,
                request_id: "r1".into(),
            },
        ] {
            let json = event.encode();
            assert!(json.contains("\"v\":1"), "{json}");
            assert_eq!(StreamEvent::decode(json.as_bytes()).unwrap(), event);
        }
    }

    #[test]
    fn rejects_bad_events_with_typed_errors() {
        assert!(matches!(
            StreamEvent::decode(b"not json"),
            Err(WireError::Malformed(_))
        ));
        assert_eq!(
            StreamEvent::decode(br#"{"type":"reconcile","node":null,"request_id":"x"}"#),
            Err(WireError::MissingVersion)
        );
        assert_eq!(
            StreamEvent::decode(br#"{"v":2,"type":"reconcile","node":null,"request_id":"x"}"#),
            Err(WireError::UnsupportedVersion("2".into()))
        );
        assert_eq!(
            StreamEvent::decode(br#"{"v":"1","type":"reconcile"}"#),
            Err(WireError::UnsupportedVersion("\"1\"".into()))
        );
        assert!(matches!(
            StreamEvent::decode(br#"{"v":1,"type":"explode"}"#),
            Err(WireError::Malformed(_))
        ));
        assert!(matches!(
            StreamEvent::decode(
                br#"{"v":1,"type":"peer_remove","node":"NL","revision":1,"public_key":"x"}"#
            ),
            Err(WireError::Malformed(_))
        ));
        assert!(matches!(
            StreamEvent::decode(&vec![b' '; MAX_MESSAGE_BYTES + 1]),
            Err(WireError::TooLarge(_))
        ));
        let json = upsert().encode().replace("/32", "/16");
        assert!(matches!(
            StreamEvent::decode(json.as_bytes()),
            Err(WireError::InvalidPeer(_))
        ));
    }

    #[test]
    fn event_addressing() {
        let other = NodeName::new("nl-2").unwrap();
        assert!(upsert().is_for(&node()));
        assert!(!upsert().is_for(&other));
        let all = StreamEvent::Reconcile {
            node: None,
            request_id: "r".into(),
        };
        assert!(all.is_for(&other));
        assert_eq!(all.revision(), None);
        assert_eq!(upsert().revision(), Some(7));
    }

    #[test]
    fn feedback_round_trips() {
        let hb = Feedback::Heartbeat(Heartbeat {
            node: node(),
            agent_version: "0.1.0".into(),
            sent_at: 1,
            applied_revision: 3,
            peer_count: 2,
            last_reconcile: Some(ReconcileReport {
                trigger: ReconcileTrigger::Startup,
                request_id: None,
                finished_at: 1,
                snapshot_revision: 3,
                added: 1,
                removed: 0,
                updated: 0,
                interface_corrected: false,
            }),
        });
        let stats = Feedback::Stats {
            node: node(),
            sent_at: 2,
            peers: vec![PeerStats {
                public_key: KeyPair::generate().public,
                last_handshake: Some(5),
                rx_bytes: 10,
                tx_bytes: 20,
            }],
        };
        for msg in [hb, stats] {
            assert_eq!(Feedback::decode(msg.encode().as_bytes()).unwrap(), msg);
        }
    }
}
