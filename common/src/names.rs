//! Validated names: region codes and node names, and the device names users type.
//!
//! Region codes and node names end up inside Redis key names, consumer group names, file names and
//! Telegram callback payloads, so they are restricted to lowercase ASCII letters, digits and inner
//! hyphens. Device names are free text users type (any script, emoji), shown back to them and to
//! admins, so [`DeviceName`] refuses only what can make a shown name lie: control characters,
//! bidirectional overrides and invisible zero-width characters.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Longest accepted region code or node name.
pub const MAX_NAME_LEN: usize = 32;

/// Why a string is not a valid region code or node name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("{kind} must not be empty")]
    Empty { kind: &'static str },
    #[error("{kind} {value:?} is longer than {MAX_NAME_LEN} characters")]
    TooLong { kind: &'static str, value: String },
    #[error("{kind} {value:?} may only contain lowercase letters a-z, digits and '-'")]
    InvalidChar { kind: &'static str, value: String },
    #[error("{kind} {value:?} must not start or end with '-'")]
    EdgeHyphen { kind: &'static str, value: String },
}

fn validate(kind: &'static str, value: &str) -> Result<(), NameError> {
    if value.is_empty() {
        return Err(NameError::Empty { kind });
    }
    // Keep the error message bounded even for huge inputs.
    let shown = || value.chars().take(MAX_NAME_LEN + 8).collect::<String>();
    if value.len() > MAX_NAME_LEN {
        return Err(NameError::TooLong {
            kind,
            value: shown(),
        });
    }
    if !value
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(NameError::InvalidChar {
            kind,
            value: shown(),
        });
    }
    if value.starts_with('-') || value.ends_with('-') {
        return Err(NameError::EdgeHyphen {
            kind,
            value: shown(),
        });
    }
    Ok(())
}

macro_rules! validated_name {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            /// Parses and validates `value`.
            pub fn new(value: impl Into<String>) -> Result<Self, NameError> {
                let value = value.into();
                validate($kind, &value)?;
                Ok(Self(value))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = NameError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::new(s)
            }
        }

        impl TryFrom<String> for $name {
            type Error = NameError;
            fn try_from(s: String) -> Result<Self, Self::Error> {
                Self::new(s)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::new(s).map_err(serde::de::Error::custom)
            }
        }
    };
}

validated_name!(
    /// A region users pick, such as `nl` or `us-east`.
    RegionCode,
    "region code"
);
validated_name!(
    /// One VPN server inside a region, such as `nl-1`.
    NodeName,
    "node name"
);

/// Longest device name, in characters (the database allows 32).
pub const MAX_DEVICE_NAME_CHARS: usize = 32;

/// Why a typed device name is refused. The messages are shown to users.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeviceNameError {
    #[error("a device name has 1 to {MAX_DEVICE_NAME_CHARS} characters")]
    Length,
    #[error("a device name cannot contain control characters or line breaks (found U+{0:04X})")]
    Control(u32),
    #[error(
        "a device name cannot contain characters that reverse the text direction (found U+{0:04X})"
    )]
    Bidi(u32),
    #[error("a device name cannot contain invisible characters (found U+{0:04X})")]
    Invisible(u32),
}

/// A device name as a user typed it, trimmed and checked: the one owner of the rules for the
/// bot's name prompt and the service's grant.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DeviceName(String);

impl DeviceName {
    pub fn new(typed: &str) -> Result<Self, DeviceNameError> {
        let name = typed.trim();
        let count = name.chars().count();
        if count == 0 || count > MAX_DEVICE_NAME_CHARS {
            return Err(DeviceNameError::Length);
        }
        for c in name.chars() {
            let code = u32::from(c);
            if c.is_control() {
                return Err(DeviceNameError::Control(code));
            }
            // Embedding/override (U+202A-202E), isolates (U+2066-2069), and the direction
            // marks (U+200E, U+200F, U+061C) that do the same more quietly.
            if matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' | '\u{061C}')
            {
                return Err(DeviceNameError::Bidi(code));
            }
            if matches!(c, '\u{200B}'..='\u{200D}' | '\u{2060}' | '\u{FEFF}') {
                return Err(DeviceNameError::Invisible(code));
            }
        }
        Ok(Self(name.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DeviceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_valid_names() {
        for ok in ["nl", "us-east", "a", "node-01", &"x".repeat(MAX_NAME_LEN)] {
            assert_eq!(RegionCode::new(ok).unwrap().as_str(), ok);
            assert_eq!(NodeName::new(ok).unwrap().to_string(), ok);
        }
    }

    #[test]
    fn rejects_invalid_names_with_typed_errors() {
        assert!(matches!(RegionCode::new(""), Err(NameError::Empty { .. })));
        assert!(matches!(
            RegionCode::new("x".repeat(MAX_NAME_LEN + 1)),
            Err(NameError::TooLong { .. })
        ));
        for bad in ["NL", "n l", "nl:1", "nl{x}", "ü", "a_b", "a/b", "a*"] {
            assert!(
                matches!(NodeName::new(bad), Err(NameError::InvalidChar { .. })),
                "{bad:?}"
            );
        }
        for bad in ["-a", "a-", "-"] {
            assert!(matches!(
                NodeName::new(bad),
                Err(NameError::EdgeHyphen { .. })
            ));
        }
    }

    #[test]
    fn serde_validates() {
        let ok: RegionCode = serde_json::from_str("\"de\"").unwrap();
        assert_eq!(ok.as_str(), "de");
        assert!(serde_json::from_str::<RegionCode>("\"DE\"").is_err());
    }

    #[test]
    fn device_names_accept_text_in_any_script() {
        for ok in [
            "Phone",
            "  laptop 2  ",
            "Телефон мамы",
            "📱 iPhone",
            "عربى",
            "家のPC",
        ] {
            let name = DeviceName::new(ok).unwrap();
            assert_eq!(name.as_str(), ok.trim());
        }
        assert!(DeviceName::new(&"x".repeat(32)).is_ok());
        assert!(
            DeviceName::new(&"ж".repeat(32)).is_ok(),
            "characters, not bytes"
        );
    }

    #[test]
    fn device_names_refuse_each_class_with_a_clear_message() {
        assert_eq!(DeviceName::new(""), Err(DeviceNameError::Length));
        assert_eq!(DeviceName::new("   "), Err(DeviceNameError::Length));
        assert_eq!(
            DeviceName::new(&"x".repeat(33)),
            Err(DeviceNameError::Length)
        );
        for c in ['\n', '\r', '\t', '\0', '\u{7F}', '\u{85}', '\u{9B}'] {
            assert_eq!(
                DeviceName::new(&format!("a{c}b")),
                Err(DeviceNameError::Control(u32::from(c))),
                "{:04X}",
                u32::from(c)
            );
        }
        for code in (0x202A..=0x202E)
            .chain(0x2066..=0x2069)
            .chain([0x200E, 0x200F, 0x061C])
        {
            let c = char::from_u32(code).unwrap();
            assert_eq!(
                DeviceName::new(&format!("phone{c}gpj.exe")),
                Err(DeviceNameError::Bidi(code)),
                "{code:04X}"
            );
        }
        for code in [0x200B, 0x200C, 0x200D, 0x2060, 0xFEFF] {
            let c = char::from_u32(code).unwrap();
            assert_eq!(
                DeviceName::new(&format!("ad{c}min")),
                Err(DeviceNameError::Invisible(code)),
                "{code:04X}"
            );
        }
        let shown = DeviceName::new("a\u{202E}b").unwrap_err().to_string();
        assert!(
            shown.contains("U+202E") && shown.contains("direction"),
            "{shown}"
        );
    }
}
