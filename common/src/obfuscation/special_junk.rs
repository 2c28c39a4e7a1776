//! AmneziaWG's special junk packets `I1`–`I5`: before each handshake initiation the sender sends
//! up to five packets built from a description such as `<b 0xc0ff><r 16><t>`, so the first
//! packets of a connection can imitate another protocol.
//!
//! The grammar is the kernel module's (`src/junk.c`, `jp_parse_tags`), parsed here strictly so a
//! bad value is refused with a reason before it reaches a node (the module answers only
//! `EINVAL`, and silently ignores text outside tags):
//!
//! | tag | bytes it adds |
//! |---|---|
//! | `<b 0xHEX>` | the bytes written in hex (an even number of digits) |
//! | `<r N>` | `N` random bytes |
//! | `<rc N>` | `N` random ASCII letters |
//! | `<rd N>` | `N` random ASCII digits |
//! | `<c>` | a 4-byte packet counter |
//! | `<t>` | a 4-byte Unix time |
//!
//! Tags follow each other directly or separated by spaces. PVPN adds the limits the module's
//! README sets for the other junk packets: a packet is at most 1280 bytes (a path MTU of 1280),
//! and it is not empty (an empty description sends nothing; leave the value unset instead).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Largest packet one description may generate, in bytes.
pub const MAX_PACKET_SIZE: usize = 1280;
/// The size of a `<c>` or `<t>` tag's value (a big-endian u32).
const WORD: usize = 4;

/// Why a description is not a special junk packet the module (and PVPN) accepts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecialJunkError {
    #[error("empty: a packet needs at least one tag; leave the value out to send none")]
    Empty,
    #[error("starts or ends with a space (clients trim it; write the tags only)")]
    Untrimmed,
    #[error(
        "{0:?} outside a tag: write tags only (<b 0x…>, <r N>, <rc N>, <rd N>, <c>, <t>), \
         separated by nothing or spaces"
    )]
    OutsideTag(String),
    #[error("a tag opened with < is not closed with >")]
    Unclosed,
    #[error("unknown tag <{0}> (expected b, r, rc, rd, c or t)")]
    UnknownTag(String),
    #[error("<b {0}>: expected 0x and an even, non-zero number of hex digits")]
    Bytes(String),
    #[error("<{tag} {value}>: expected a byte count from 1 to {MAX_PACKET_SIZE}")]
    Count { tag: &'static str, value: String },
    #[error("<{0}> takes no value")]
    UnexpectedValue(&'static str),
    #[error("the packet would have {0} bytes, more than {MAX_PACKET_SIZE}")]
    TooLarge(usize),
}

/// One validated special junk packet description, kept as written (the module stores and reports
/// the text itself, so the agent compares it as a string).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SpecialJunk {
    text: String,
    packet_size: usize,
}

impl SpecialJunk {
    /// The description, as the module, `awg` and the client apps take it.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Bytes of the packet it generates.
    pub fn packet_size(&self) -> usize {
        self.packet_size
    }
}

impl FromStr for SpecialJunk {
    type Err = SpecialJunkError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.trim() != text {
            return Err(SpecialJunkError::Untrimmed);
        }
        let mut packet_size = 0usize;
        let mut rest = text;
        while !rest.is_empty() {
            rest = rest.trim_start_matches(' ');
            let Some(after) = rest.strip_prefix('<') else {
                let stray: String = rest.chars().take_while(|c| *c != '<').take(20).collect();
                return Err(SpecialJunkError::OutsideTag(stray));
            };
            let (tag, tail) = after.split_once('>').ok_or(SpecialJunkError::Unclosed)?;
            if tag.contains('<') {
                return Err(SpecialJunkError::Unclosed);
            }
            packet_size += tag_size(tag)?;
            if packet_size > MAX_PACKET_SIZE {
                return Err(SpecialJunkError::TooLarge(packet_size));
            }
            rest = tail;
        }
        if packet_size == 0 {
            return Err(SpecialJunkError::Empty);
        }
        Ok(Self {
            text: text.to_string(),
            packet_size,
        })
    }
}

/// The bytes one tag (its text between `<` and `>`) adds, as `jp_parse_tags` reads it: the key up
/// to the first space, the rest its value.
fn tag_size(tag: &str) -> Result<usize, SpecialJunkError> {
    let (key, value) = match tag.split_once(' ') {
        Some((key, value)) => (key, Some(value)),
        None => (tag, None),
    };
    let short = |s: &str| s.chars().take(20).collect::<String>();
    match (key, value) {
        ("b", Some(value)) => {
            let hex = value
                .strip_prefix("0x")
                .filter(|h| !h.is_empty() && h.len() % 2 == 0)
                .filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit()))
                .ok_or_else(|| SpecialJunkError::Bytes(short(value)))?;
            Ok(hex.len() / 2)
        }
        ("b", None) => Err(SpecialJunkError::Bytes(String::new())),
        ("c" | "t", None) => Ok(WORD),
        ("c", Some(_)) => Err(SpecialJunkError::UnexpectedValue("c")),
        ("t", Some(_)) => Err(SpecialJunkError::UnexpectedValue("t")),
        ("r" | "rc" | "rd", value) => {
            let tag = match key {
                "r" => "r",
                "rc" => "rc",
                _ => "rd",
            };
            let value = value.unwrap_or_default();
            let bad = || SpecialJunkError::Count {
                tag,
                value: short(value),
            };
            // Digits only: the module's kstrtoint would also take a sign, and a negative size.
            if value.is_empty() || value.len() > 4 || !value.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            let count: usize = value.parse().map_err(|_| bad())?;
            if !(1..=MAX_PACKET_SIZE).contains(&count) {
                return Err(bad());
            }
            Ok(count)
        }
        (other, _) => Err(SpecialJunkError::UnknownTag(short(other))),
    }
}

impl fmt::Display for SpecialJunk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Serialize for SpecialJunk {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for SpecialJunk {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(|e| {
            let shown: String = text.chars().take(40).collect();
            serde::de::Error::custom(format!("special junk packet {shown:?}: {e}"))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn size(text: &str) -> usize {
        text.parse::<SpecialJunk>()
            .unwrap_or_else(|e| panic!("{text}: {e}"))
            .packet_size()
    }

    #[test]
    fn every_tag_of_the_module_counts_its_bytes() {
        assert_eq!(size("<b 0xc0ff>"), 2);
        assert_eq!(size("<b 0xC0FFee>"), 3);
        assert_eq!(size("<r 16>"), 16);
        assert_eq!(size("<rc 8>"), 8);
        assert_eq!(size("<rd 3>"), 3);
        assert_eq!(size("<c>"), 4);
        assert_eq!(size("<t>"), 4);
        assert_eq!(size("<b 0x01><c><t><r 2>"), 1 + 4 + 4 + 2);
        assert_eq!(size("<b 0x01> <rc 5>  <rd 1>"), 7, "spaces between tags");
        assert_eq!(size("<r 1280>"), MAX_PACKET_SIZE);
        assert_eq!(size("<r 1276><t>"), MAX_PACKET_SIZE);
        let kept = "<b 0x0a0b> <t>".parse::<SpecialJunk>().unwrap();
        assert_eq!(kept.as_str(), "<b 0x0a0b> <t>", "kept as written");
    }

    #[test]
    fn what_the_module_refuses_or_ignores_is_refused() {
        use SpecialJunkError as E;
        let cases: &[(&str, SpecialJunkError)] = &[
            ("", E::Empty),
            (" <r 5>", E::Untrimmed),
            ("<r 5> ", E::Untrimmed),
            ("<r 5>x", E::OutsideTag("x".into())),
            ("hello <r 5>", E::OutsideTag("hello ".into())),
            ("<r 5", E::Unclosed),
            ("<r <t>", E::Unclosed),
            ("<>", E::UnknownTag(String::new())),
            ("<x 5>", E::UnknownTag("x".into())),
            ("<B 0x00>", E::UnknownTag("B".into())),
            ("<b>", E::Bytes(String::new())),
            ("<b 00>", E::Bytes("00".into())),
            ("<b 0x>", E::Bytes("0x".into())),
            ("<b 0xabc>", E::Bytes("0xabc".into())),
            ("<b 0xzz>", E::Bytes("0xzz".into())),
            ("<b 0xab cd>", E::Bytes("0xab cd".into())),
            (
                "<r>",
                E::Count {
                    tag: "r",
                    value: String::new(),
                },
            ),
            (
                "<r 0>",
                E::Count {
                    tag: "r",
                    value: "0".into(),
                },
            ),
            (
                "<rc -5>",
                E::Count {
                    tag: "rc",
                    value: "-5".into(),
                },
            ),
            (
                "<rd +5>",
                E::Count {
                    tag: "rd",
                    value: "+5".into(),
                },
            ),
            (
                "<r 1281>",
                E::Count {
                    tag: "r",
                    value: "1281".into(),
                },
            ),
            (
                "<r 5 6>",
                E::Count {
                    tag: "r",
                    value: "5 6".into(),
                },
            ),
            ("<c >", E::UnexpectedValue("c")),
            ("<t 1>", E::UnexpectedValue("t")),
            ("<r 1000><r 281>", E::TooLarge(1281)),
            ("<r 1280><c>", E::TooLarge(1284)),
        ];
        for (text, want) in cases {
            assert_eq!(text.parse::<SpecialJunk>().as_ref(), Err(want), "{text:?}");
        }
    }

    #[test]
    fn json_round_trips_and_names_the_bad_value() {
        let junk: SpecialJunk = serde_json::from_str(r#""<b 0x01><r 3>""#).unwrap();
        assert_eq!(serde_json::to_string(&junk).unwrap(), r#""<b 0x01><r 3>""#);
        let error = serde_json::from_str::<SpecialJunk>(r#""<q 3>""#)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("\"<q 3>\"") && error.contains("unknown tag <q>"),
            "{error}"
        );
    }
}
