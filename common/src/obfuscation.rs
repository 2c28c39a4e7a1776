//! A node's protocol (plain WireGuard or AmneziaWG) and the obfuscation profile an AmneziaWG node
//! and all its clients share.
//!
//! AmneziaWG keeps WireGuard's cryptography and changes what the packets look like on the wire:
//! junk packets before a handshake (`Jc`, `Jmin`, `Jmax`), random padding in front of handshake
//! and cookie messages (`S1`–`S3`) and of data packets (`S4`), and message-type values of its own
//! instead of WireGuard's 1–4 (`H1`–`H4`, each one value or a range the sender picks from). The
//! rules below are the kernel module's (`amneziawg-linux-kernel-module`, README and `netlink.c`):
//! `S*` and `H*` must be equal on both ends, `J*` and `I*` may differ.
//!
//! [`AwgProfile::generate`] draws a profile in the module's recommended ranges using only the
//! parameters every AmneziaWG client understands (AmneziaWG 1.0: single `H` values, no `S3`/`S4`,
//! no `I1`–`I5`), so configs work in the AmneziaVPN and AmneziaWG apps of every version and in
//! `awg-quick`: a 1.0 client refuses a config with lines it does not know, and the apps choose
//! their own `I1` when the config has none. Profiles with `S3`/`S4`, `H` ranges and the special
//! junk packets `I1`–`I5` ([`SpecialJunk`], AmneziaWG 1.5/2.0) are valid too, when an operator sets
//! them; the `I*` values are sent by whichever end starts a handshake (almost always the client),
//! so they matter mostly in the client configs, which carry them.

use std::fmt;
use std::str::FromStr;

use rand_core::{OsRng, RngCore};
use serde::{Deserialize, Serialize};

mod special_junk;

pub use special_junk::{MAX_PACKET_SIZE as MAX_SPECIAL_JUNK_PACKET, SpecialJunk, SpecialJunkError};

/// The WireGuard protocol a node speaks to its clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub enum Protocol {
    /// Plain WireGuard: the `wireguard` kernel module, any WireGuard app.
    #[default]
    #[serde(rename = "wireguard")]
    WireGuard,
    /// AmneziaWG: the `amneziawg` kernel module, the AmneziaVPN or AmneziaWG apps.
    #[serde(rename = "amneziawg")]
    AmneziaWg,
}

impl Protocol {
    /// The spelling used in the database, on the command line, in Ansible and on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::WireGuard => "wireguard",
            Protocol::AmneziaWg => "amneziawg",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a string is not a protocol.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown protocol {0:?} (expected wireguard or amneziawg)")]
pub struct UnknownProtocol(pub String);

impl FromStr for Protocol {
    type Err = UnknownProtocol;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "wireguard" => Ok(Protocol::WireGuard),
            "amneziawg" => Ok(Protocol::AmneziaWg),
            other => Err(UnknownProtocol(other.chars().take(32).collect())),
        }
    }
}

/// Largest packet the module's rules assume (an internet path MTU of 1280).
const PATH_MTU: u16 = 1280;
/// WireGuard's handshake initiation, handshake response and cookie reply sizes.
const INITIATION_SIZE: u16 = 148;
const RESPONSE_SIZE: u16 = 92;
const COOKIE_REPLY_SIZE: u16 = 64;
/// The header of a WireGuard data packet (type, receiver, counter) plus its tag.
const TRANSPORT_OVERHEAD: u16 = 32;
/// The smallest message-type value a profile may use: 1–4 are WireGuard's own.
pub const MIN_HEADER: u32 = 5;
/// Most characters `I1`–`I5` may have together. A client config travels as one QR code (error
/// correction M, at most 2331 bytes); the largest config without `I*` lines takes about 600 of
/// them (`the_largest_amneziawg_config_fits_a_qr_code` in the backend's tests proves the sum
/// fits), which leaves this much for the descriptions with room for a longer endpoint.
pub const MAX_SPECIAL_JUNK_TEXT: usize = 1536;

/// Why a profile would be refused by the module or break clients.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProfileError {
    #[error("Jc must be 1 to 128, got {0}")]
    JunkCount(u16),
    #[error("Jmin must be below Jmax and Jmax at most {PATH_MTU}, got Jmin {jmin}, Jmax {jmax}")]
    JunkSize { jmin: u16, jmax: u16 },
    #[error("{name} must be at most {max}, got {value}")]
    Padding {
        name: &'static str,
        value: u16,
        max: u16,
    },
    #[error(
        "padded handshake messages would have equal sizes ({0}); change S1, S2 or S3 (S1 + 56 must differ from S2)"
    )]
    EqualSizes(&'static str),
    #[error("{0} is not a header value or range: expected N or N-M with {MIN_HEADER} <= N <= M")]
    Header(String),
    #[error("{0} and {1} overlap; H1 to H4 must be distinct")]
    HeadersOverlap(&'static str, &'static str),
    #[error(
        "I1 to I5 have {0} characters together, more than {MAX_SPECIAL_JUNK_TEXT} \
         (the client config must still fit one QR code)"
    )]
    SpecialJunkTooLong(usize),
}

/// One message-type value (`H1 = 1234567`) or an inclusive range the sender picks from
/// (`H1 = 100-200`, AmneziaWG 1.5 and later).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct HeaderRange {
    low: u32,
    high: u32,
}

impl HeaderRange {
    pub fn single(value: u32) -> Result<Self, ProfileError> {
        Self::new(value, value)
    }

    pub fn new(low: u32, high: u32) -> Result<Self, ProfileError> {
        if low < MIN_HEADER || high < low {
            return Err(ProfileError::Header(format!("{low}-{high}")));
        }
        Ok(Self { low, high })
    }

    pub fn low(self) -> u32 {
        self.low
    }

    pub fn high(self) -> u32 {
        self.high
    }

    fn overlaps(self, other: Self) -> bool {
        self.low <= other.high && other.low <= self.high
    }

    /// The module's netlink encoding (`u32_range_t`): high half the upper bound, low half the
    /// lower bound.
    pub fn to_netlink(self) -> u64 {
        (u64::from(self.high) << 32) | u64::from(self.low)
    }

    /// Reads the module's netlink encoding back. A zero (unset) or malformed value is an error.
    pub fn from_netlink(packed: u64) -> Result<Self, ProfileError> {
        // Truncation is the encoding: each half is one u32.
        Self::new(packed as u32, (packed >> 32) as u32)
    }
}

impl fmt::Display for HeaderRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.low == self.high {
            write!(f, "{}", self.low)
        } else {
            write!(f, "{}-{}", self.low, self.high)
        }
    }
}

impl FromStr for HeaderRange {
    type Err = ProfileError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || ProfileError::Header(s.chars().take(40).collect());
        let number = |t: &str| t.trim().parse::<u32>().map_err(|_| bad());
        match s.split_once('-') {
            Some((low, high)) => Self::new(number(low)?, number(high)?).map_err(|_| bad()),
            None => Self::single(number(s)?).map_err(|_| bad()),
        }
    }
}

impl Serialize for HeaderRange {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for HeaderRange {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// The obfuscation parameters of an AmneziaWG node, shared by the node's interface and every
/// client config issued for it. Construct through [`AwgProfile::generate`] or deserialize and
/// [`AwgProfile::validate`]; every boundary (database, Redis, the command line) validates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwgProfile {
    /// Junk packets sent before each handshake initiation, and their size bounds.
    pub jc: u16,
    pub jmin: u16,
    pub jmax: u16,
    /// Random bytes in front of a handshake initiation, response, cookie reply, data packet.
    pub s1: u16,
    pub s2: u16,
    #[serde(default)]
    pub s3: u16,
    #[serde(default)]
    pub s4: u16,
    /// Message types of initiation, response, cookie reply, data.
    pub h1: HeaderRange,
    pub h2: HeaderRange,
    pub h3: HeaderRange,
    pub h4: HeaderRange,
    /// Special junk packets sent before each handshake initiation, in order; unset ones are not
    /// sent. Absent from profiles stored before PVPN knew them (and from their JSON when unset,
    /// so agents from before then still read such profiles).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub i1: Option<SpecialJunk>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub i2: Option<SpecialJunk>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub i3: Option<SpecialJunk>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub i4: Option<SpecialJunk>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub i5: Option<SpecialJunk>,
}

impl AwgProfile {
    /// Checks the module's rules and the ones that keep clients working.
    pub fn validate(&self) -> Result<(), ProfileError> {
        if !(1..=128).contains(&self.jc) {
            return Err(ProfileError::JunkCount(self.jc));
        }
        if self.jmin >= self.jmax || self.jmax > PATH_MTU {
            return Err(ProfileError::JunkSize {
                jmin: self.jmin,
                jmax: self.jmax,
            });
        }
        for (name, value, base) in [
            ("S1", self.s1, INITIATION_SIZE),
            ("S2", self.s2, RESPONSE_SIZE),
            ("S3", self.s3, COOKIE_REPLY_SIZE),
            ("S4", self.s4, TRANSPORT_OVERHEAD),
        ] {
            let max = PATH_MTU - base;
            if value > max {
                return Err(ProfileError::Padding { name, value, max });
            }
        }
        // The receiver tells handshake messages apart by their padded size.
        let initiation = INITIATION_SIZE + self.s1;
        let response = RESPONSE_SIZE + self.s2;
        let cookie = COOKIE_REPLY_SIZE + self.s3;
        if initiation == response {
            return Err(ProfileError::EqualSizes("initiation and response"));
        }
        if cookie == initiation || cookie == response {
            return Err(ProfileError::EqualSizes(
                "cookie reply and a handshake message",
            ));
        }
        let headers = self.headers();
        for (i, (a_name, a)) in headers.iter().enumerate() {
            for (b_name, b) in &headers[i + 1..] {
                if a.overlaps(*b) {
                    return Err(ProfileError::HeadersOverlap(a_name, b_name));
                }
            }
        }
        // Each description is valid by construction (`SpecialJunk` parses); their sum is not.
        let text: usize = self
            .special_junk()
            .iter()
            .filter_map(|(_, junk)| junk.map(|j| j.as_str().len()))
            .sum();
        if text > MAX_SPECIAL_JUNK_TEXT {
            return Err(ProfileError::SpecialJunkTooLong(text));
        }
        Ok(())
    }

    /// `I1`–`I5` with their names.
    pub fn special_junk(&self) -> [(&'static str, Option<&SpecialJunk>); 5] {
        [
            ("I1", self.i1.as_ref()),
            ("I2", self.i2.as_ref()),
            ("I3", self.i3.as_ref()),
            ("I4", self.i4.as_ref()),
            ("I5", self.i5.as_ref()),
        ]
    }

    /// `H1`–`H4` with their names.
    pub fn headers(&self) -> [(&'static str, HeaderRange); 4] {
        [
            ("H1", self.h1),
            ("H2", self.h2),
            ("H3", self.h3),
            ("H4", self.h4),
        ]
    }

    /// A fresh random profile in the module's recommended ranges (Jc 4–12, Jmin 8–64, Jmax up to
    /// 1000, S1/S2 15–150, distinct H values in 5–2³¹−1), with AmneziaWG 1.0 parameters only.
    pub fn generate() -> Self {
        let mut rng = OsRng;
        let mut pick = |low: u32, high: u32| low + rng.next_u32() % (high - low + 1);
        loop {
            // Every value below is in u16 range by construction of the bounds.
            let jmin = pick(8, 64) as u16;
            let candidate = Self {
                jc: pick(4, 12) as u16,
                jmin,
                jmax: jmin + pick(32, 936) as u16,
                s1: pick(15, 150) as u16,
                s2: pick(15, 150) as u16,
                s3: 0,
                s4: 0,
                h1: HeaderRange::single_unchecked(pick(MIN_HEADER, i32::MAX as u32)),
                h2: HeaderRange::single_unchecked(pick(MIN_HEADER, i32::MAX as u32)),
                h3: HeaderRange::single_unchecked(pick(MIN_HEADER, i32::MAX as u32)),
                h4: HeaderRange::single_unchecked(pick(MIN_HEADER, i32::MAX as u32)),
                // AmneziaWG 1.0 clients refuse `I*` lines (see the module docs above).
                i1: None,
                i2: None,
                i3: None,
                i4: None,
                i5: None,
            };
            // Rare collisions (S1 + 56 = S2, two equal H values): draw again.
            if candidate.validate().is_ok() {
                return candidate;
            }
        }
    }

    /// The `[Interface]` lines a client config carries (`Jc = 4` …), in the order the apps
    /// write them. `S3`/`S4` and each `I*` appear only when set, so AmneziaWG 1.0 clients accept
    /// the file of a profile without them.
    pub fn client_config_lines(&self) -> Vec<(&'static str, String)> {
        let mut lines = vec![
            ("Jc", self.jc.to_string()),
            ("Jmin", self.jmin.to_string()),
            ("Jmax", self.jmax.to_string()),
            ("S1", self.s1.to_string()),
            ("S2", self.s2.to_string()),
        ];
        if self.s3 != 0 || self.s4 != 0 {
            lines.push(("S3", self.s3.to_string()));
            lines.push(("S4", self.s4.to_string()));
        }
        for (name, range) in self.headers() {
            lines.push((name, range.to_string()));
        }
        for (name, junk) in self.special_junk() {
            if let Some(junk) = junk {
                lines.push((name, junk.to_string()));
            }
        }
        lines
    }
}

impl HeaderRange {
    /// For [`AwgProfile::generate`], whose values are in range by construction.
    fn single_unchecked(value: u32) -> Self {
        Self {
            low: value,
            high: value,
        }
    }
}

/// Why a node's interface spec is inconsistent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InterfaceSpecError {
    #[error("an AmneziaWG node needs an obfuscation profile")]
    MissingProfile,
    #[error("a plain WireGuard node has no obfuscation profile")]
    UnexpectedProfile,
    #[error("invalid obfuscation profile: {0}")]
    Profile(#[from] ProfileError),
}

/// What a node's interface is, beyond its peers: the protocol and, for AmneziaWG, the profile.
/// The backend publishes it next to the node's snapshot (see
/// [`crate::redis_keys::RegionKeys::node_interface`]); the agent checks the interface against it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InterfaceSpec {
    pub protocol: Protocol,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amneziawg: Option<AwgProfile>,
}

impl InterfaceSpec {
    pub fn wireguard() -> Self {
        Self {
            protocol: Protocol::WireGuard,
            amneziawg: None,
        }
    }

    pub fn amneziawg(profile: AwgProfile) -> Self {
        Self {
            protocol: Protocol::AmneziaWg,
            amneziawg: Some(profile),
        }
    }

    /// A profile exactly when the protocol is AmneziaWG, and a valid one.
    pub fn validate(&self) -> Result<(), InterfaceSpecError> {
        match (self.protocol, &self.amneziawg) {
            (Protocol::WireGuard, None) => Ok(()),
            (Protocol::WireGuard, Some(_)) => Err(InterfaceSpecError::UnexpectedProfile),
            (Protocol::AmneziaWg, None) => Err(InterfaceSpecError::MissingProfile),
            (Protocol::AmneziaWg, Some(profile)) => Ok(profile.validate()?),
        }
    }
}

#[cfg(test)]
mod tests;
