//! WireGuard keys: the public key that names a peer, the private key that must never leak, and the
//! optional preshared key.
//!
//! All three are 32 bytes written as standard base64 (44 characters), exactly like `wg genkey`,
//! `wg pubkey` and `wg genpsk`. Secret keys redact themselves in `Debug`, have no `Display`, and are
//! zeroized when dropped; the only way to get their text is the explicit [`PrivateKey::to_base64`].

use std::fmt;
use std::str::FromStr;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rand_core::{OsRng, RngCore};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use x25519_dalek::StaticSecret;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// Length of every WireGuard key in bytes.
pub const KEY_LEN: usize = 32;

/// Why a string is not a valid WireGuard key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("a WireGuard key is 44 characters of base64, got {0} characters")]
    BadLength(usize),
    #[error("a WireGuard key must be standard base64")]
    BadBase64,
    #[error("a WireGuard key decodes to 32 bytes, got {0}")]
    BadByteLength(usize),
}

fn decode_key(text: &str) -> Result<[u8; KEY_LEN], KeyError> {
    let text = text.trim();
    if text.len() != 44 {
        return Err(KeyError::BadLength(text.len()));
    }
    let bytes = STANDARD.decode(text).map_err(|_| KeyError::BadBase64)?;
    <[u8; KEY_LEN]>::try_from(bytes.as_slice()).map_err(|_| KeyError::BadByteLength(bytes.len()))
}

/// A WireGuard public key. It identifies a peer on an interface; it is not secret.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PublicKey([u8; KEY_LEN]);

impl PublicKey {
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        Self(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.0)
    }
}

impl FromStr for PublicKey {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        decode_key(s).map(Self)
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_base64())
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.to_base64())
    }
}

impl Serialize for PublicKey {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_base64())
    }
}

impl<'de> Deserialize<'de> for PublicKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A WireGuard private key. Printing it is impossible by accident: `Debug` shows `[redacted]`,
/// there is no `Display` and no `Serialize`, and the bytes are wiped on drop.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct PrivateKey([u8; KEY_LEN]);

impl PrivateKey {
    /// A fresh key from the operating system's randomness, clamped as X25519 requires.
    pub fn generate() -> Self {
        let secret = StaticSecret::random_from_rng(OsRng);
        Self(secret.to_bytes())
    }

    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        Self(bytes)
    }

    /// The base64 text for a config file. The one deliberate way to reveal the key.
    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.0)
    }

    pub fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    /// The public key that belongs to this private key (what `wg pubkey` prints).
    pub fn public_key(&self) -> PublicKey {
        let secret = StaticSecret::from(self.0);
        PublicKey(x25519_dalek::PublicKey::from(&secret).to_bytes())
    }
}

impl FromStr for PrivateKey {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        decode_key(s).map(Self)
    }
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PrivateKey([redacted])")
    }
}

/// A WireGuard preshared key: an extra symmetric secret shared by one client and its node.
///
/// It is secret like a private key (redacted `Debug`, zeroized), but unlike the client's private
/// key it must travel to the node, so it serializes as base64 inside peer specs.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct PresharedKey([u8; KEY_LEN]);

impl PresharedKey {
    pub fn generate() -> Self {
        let mut bytes = [0u8; KEY_LEN];
        OsRng.fill_bytes(&mut bytes);
        Self(bytes)
    }

    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        Self(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.0)
    }
}

impl FromStr for PresharedKey {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        decode_key(s).map(Self)
    }
}

impl fmt::Debug for PresharedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PresharedKey([redacted])")
    }
}

impl Serialize for PresharedKey {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_base64())
    }
}

impl<'de> Deserialize<'de> for PresharedKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A client's fresh key material, as the backend creates it for one device.
#[derive(Debug)]
pub struct KeyPair {
    pub private: PrivateKey,
    pub public: PublicKey,
}

impl KeyPair {
    pub fn generate() -> Self {
        let private = PrivateKey::generate();
        let public = private.public_key();
        Self { private, public }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::io::Write;
    use std::process::{Command, Stdio};

    proptest! {
        #[test]
        fn public_key_base64_round_trips(bytes in any::<[u8; 32]>()) {
            let key = PublicKey::from_bytes(bytes);
            let text = key.to_base64();
            prop_assert_eq!(text.len(), 44);
            prop_assert_eq!(text.parse::<PublicKey>().unwrap(), key);
            let json = serde_json::to_string(&key).unwrap();
            prop_assert_eq!(serde_json::from_str::<PublicKey>(&json).unwrap(), key);
        }

        #[test]
        fn secret_keys_round_trip(bytes in any::<[u8; 32]>()) {
            let private = PrivateKey::from_bytes(bytes);
            let parsed = private.to_base64().parse::<PrivateKey>().unwrap();
            prop_assert_eq!(parsed.as_bytes(), &bytes);
            let psk = PresharedKey::from_bytes(bytes);
            prop_assert_eq!(psk.to_base64().parse::<PresharedKey>().unwrap(), psk);
        }

        #[test]
        fn arbitrary_text_never_panics(text in ".{0,80}") {
            let _ = text.parse::<PublicKey>();
            let _ = text.parse::<PrivateKey>();
        }
    }

    #[test]
    fn rejects_malformed_keys_with_typed_errors() {
        assert_eq!("abc".parse::<PublicKey>(), Err(KeyError::BadLength(3)));
        let not_base64 = "!".repeat(44);
        assert_eq!(not_base64.parse::<PublicKey>(), Err(KeyError::BadBase64));
        // 44 characters of valid base64 that decode to 31 bytes ("==" padding).
        let short = STANDARD.encode([7u8; 31]);
        assert_eq!(short.len(), 44);
        assert_eq!(short.parse::<PublicKey>(), Err(KeyError::BadByteLength(31)));
    }

    #[test]
    fn secrets_never_print() {
        let kp = KeyPair::generate();
        let debug = format!("{kp:?}");
        assert!(!debug.contains(&kp.private.to_base64()), "{debug}");
        assert!(debug.contains("redacted"));
        let psk = PresharedKey::generate();
        assert!(!format!("{psk:?}").contains(&psk.to_base64()));
    }

    #[test]
    fn generated_keys_differ() {
        assert_ne!(KeyPair::generate().public, KeyPair::generate().public);
    }

    /// `wg pubkey` is the reference for what the public key of a private key is.
    #[test]
    fn public_key_matches_wg_pubkey() {
        let Ok(mut child) = Command::new("wg")
            .arg("pubkey")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
        else {
            panic!(
                "the `wg` tool (wireguard-tools) is required for this test: run scripts/setup.sh"
            );
        };
        let kp = KeyPair::generate();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(kp.private.to_base64().as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        assert_eq!(
            String::from_utf8(out.stdout).unwrap().trim(),
            kp.public.to_base64()
        );
    }
}
