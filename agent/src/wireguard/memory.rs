//! An in-memory [`WireGuard`] with the semantics of a real interface, for unit tests of the
//! agent's logic: upserts replace allowed IPs and keep counters and endpoint, removes are
//! idempotent, batches larger than a configurable limit are refused like an oversized netlink
//! message, and a switch makes every call fail like a vanished interface. Made with
//! [`MemoryWireGuard::amneziawg`] it holds obfuscation parameters like an AmneziaWG interface.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use pvpn_common::PublicKey;
use pvpn_common::obfuscation::Protocol;

use super::{
    InterfacePeer, MAX_CHANGES_PER_UPDATE, ObfuscationParams, PeerChange, WgError, WireGuard,
};

#[derive(Debug)]
pub struct MemoryWireGuard {
    peers: Mutex<BTreeMap<PublicKey, InterfacePeer>>,
    batch_sizes: Mutex<Vec<usize>>,
    missing: AtomicBool,
    /// `Some` on an AmneziaWG interface (all zeros until set).
    obfuscation: Option<Mutex<ObfuscationParams>>,
}

impl Default for MemoryWireGuard {
    fn default() -> Self {
        Self {
            peers: Mutex::new(BTreeMap::new()),
            batch_sizes: Mutex::new(Vec::new()),
            missing: AtomicBool::new(false),
            obfuscation: None,
        }
    }
}

impl MemoryWireGuard {
    pub fn new() -> Self {
        Self::default()
    }

    /// An AmneziaWG interface whose obfuscation parameters nobody set yet.
    pub fn amneziawg() -> Self {
        Self {
            obfuscation: Some(Mutex::new(ObfuscationParams::default())),
            ..Self::default()
        }
    }

    /// Makes the interface disappear (`true`) or come back (`false`).
    pub fn set_missing(&self, missing: bool) {
        self.missing.store(missing, Ordering::SeqCst);
    }

    /// Puts a peer on the interface behind the agent's back, with counters.
    pub fn insert(&self, peer: InterfacePeer) {
        self.lock_peers().insert(peer.spec.public_key, peer);
    }

    pub fn peer(&self, key: &PublicKey) -> Option<InterfacePeer> {
        self.lock_peers().get(key).cloned()
    }

    pub fn remove(&self, key: &PublicKey) {
        self.lock_peers().remove(key);
    }

    pub fn len(&self) -> usize {
        self.lock_peers().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The size of every batch applied so far, in order.
    pub fn batch_sizes(&self) -> Vec<usize> {
        self.batch_sizes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn lock_peers(&self) -> std::sync::MutexGuard<'_, BTreeMap<PublicKey, InterfacePeer>> {
        // A panicking test thread must not poison the fake for the assertions that follow.
        self.peers.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl WireGuard for MemoryWireGuard {
    fn check_exists(&self) -> Result<(), WgError> {
        if self.missing.load(Ordering::SeqCst) {
            Err(WgError::InterfaceMissing("memory".into()))
        } else {
            Ok(())
        }
    }

    fn read_peers(&self) -> Result<Vec<InterfacePeer>, WgError> {
        self.check_exists()?;
        Ok(self.lock_peers().values().cloned().collect())
    }

    fn apply(&self, changes: &[PeerChange]) -> Result<(), WgError> {
        self.check_exists()?;
        if changes.len() > MAX_CHANGES_PER_UPDATE {
            return Err(WgError::BatchTooLarge {
                size: changes.len(),
                limit: MAX_CHANGES_PER_UPDATE,
            });
        }
        self.batch_sizes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(changes.len());
        let mut peers = self.lock_peers();
        for change in changes {
            match change {
                PeerChange::Upsert(spec) => {
                    let entry = peers.entry(spec.public_key).or_insert(InterfacePeer {
                        spec: spec.clone(),
                        endpoint: None,
                        last_handshake: None,
                        rx_bytes: 0,
                        tx_bytes: 0,
                    });
                    entry.spec = spec.clone();
                }
                PeerChange::Remove(key) => {
                    peers.remove(key);
                }
            }
        }
        Ok(())
    }

    fn protocol(&self) -> Protocol {
        match self.obfuscation {
            Some(_) => Protocol::AmneziaWg,
            None => Protocol::WireGuard,
        }
    }

    fn read_obfuscation(&self) -> Result<Option<ObfuscationParams>, WgError> {
        self.check_exists()?;
        Ok(self
            .obfuscation
            .as_ref()
            .map(|p| p.lock().unwrap_or_else(|e| e.into_inner()).clone()))
    }

    fn set_obfuscation(&self, params: &ObfuscationParams) -> Result<(), WgError> {
        self.check_exists()?;
        match &self.obfuscation {
            Some(held) => {
                *held.lock().unwrap_or_else(|e| e.into_inner()) = params.clone();
                Ok(())
            }
            None => Err(WgError::WrongProtocol {
                iface: "memory".into(),
                speaks: Protocol::WireGuard,
                wanted: Protocol::AmneziaWg,
            }),
        }
    }
}
